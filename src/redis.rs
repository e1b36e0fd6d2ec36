//! Redis: the connection pool.

use std::time::Duration;

use bb8_redis::{RedisConnectionManager, bb8};

pub type RedisPool = bb8::Pool<RedisConnectionManager>;

/// A pool that connects lazily, so the server starts while Redis is down.
pub fn pool(redis_url: &str) -> anyhow::Result<RedisPool> {
    let manager = RedisConnectionManager::new(redis_url)?;
    Ok(bb8::Pool::builder()
        .max_size(32)
        .connection_timeout(Duration::from_secs(2))
        .build_unchecked(manager))
}

pub async fn ping(pool: &RedisPool) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    let _: String = bb8_redis::redis::cmd("PING")
        .query_async(&mut *conn)
        .await?;
    Ok(())
}
