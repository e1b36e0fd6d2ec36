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

/// Deletes every key under `prefix:` (a scratch deployment's keys, e.g. after a test).
pub async fn delete_prefixed(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    use bb8_redis::redis::{AsyncCommands, AsyncIter, Client};
    let mut conn = Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut keys = Vec::new();
    {
        let mut iter: AsyncIter<String> = conn.scan_match(format!("{prefix}:*")).await?;
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
    }
    for chunk in keys.chunks(1000) {
        let _: () = conn.del(chunk).await?;
    }
    Ok(())
}
