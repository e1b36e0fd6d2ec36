//! Redis: the connection pool.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

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

/// What Redis says when our credentials are wrong: waiting will not help.
const FATAL: [&str; 4] = [
    "NOAUTH",
    "WRONGPASS",
    "invalid password",
    "invalid username-password",
];

pub fn is_fatal(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    FATAL.iter().any(|cause| text.contains(cause))
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

/// How long Redis is skipped after a failure.
const COOL_DOWN: Duration = Duration::from_secs(2);
/// The longest a caller with a fallback waits for Redis before using the fallback.
pub const FALLBACK_AFTER: Duration = Duration::from_millis(500);

/// Remembers a recent Redis failure, so that callers with a fallback skip Redis for a
/// moment instead of each waiting for a connection while it is down. Redis is tried again
/// after `COOL_DOWN`, so the fast path comes back by itself.
#[derive(Clone, Default)]
pub struct Breaker {
    open_until: Arc<Mutex<Option<Instant>>>,
}

impl Breaker {
    /// False while Redis is being skipped after a failure.
    pub fn allows(&self) -> bool {
        let open_until = self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open_until.is_none_or(|until| Instant::now() >= until)
    }

    pub fn failed(&self) {
        *self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + COOL_DOWN);
    }

    pub fn succeeded(&self) {
        *self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs `call` against Redis unless it is being skipped, within `FALLBACK_AFTER`; `None`
    /// means "use the fallback" (the failure is remembered).
    pub async fn call<T, E: std::fmt::Display>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        if !self.allows() {
            return None;
        }
        match tokio::time::timeout(FALLBACK_AFTER, call).await {
            Ok(Ok(value)) => {
                self.succeeded();
                Some(value)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "Redis failed; using the fallback for a while");
                self.failed();
                None
            }
            Err(_) => {
                tracing::warn!("Redis timed out; using the fallback for a while");
                self.failed();
                None
            }
        }
    }
}
