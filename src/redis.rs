//! Redis: the connection pool, whose handles share one multiplexed connection.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bb8_redis::{
    RedisConnectionManager, bb8,
    redis::{
        Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value,
        aio::{ConnectionLike, MultiplexedConnection},
    },
};
use futures_util::FutureExt;

pub type RedisPool = bb8::Pool<Manager>;

/// A pool that connects lazily, so the server starts while Redis is down.
pub fn pool(redis_url: &str) -> anyhow::Result<RedisPool> {
    let manager = Manager {
        connector: RedisConnectionManager::new(redis_url)?,
        shared: Mutex::default(),
    };
    Ok(bb8::Pool::builder()
        .max_size(32)
        .connection_timeout(Duration::from_secs(2))
        .build_unchecked(manager))
}

/// A connection that answered within this long is lent without a `PING` first (HikariCP's
/// "alive bypass window"). bb8 checks every connection it lends, and bb8-redis checks with a
/// `PING`: under load that doubled the round trips to Redis, one before every command.
const ANSWERED_RECENTLY: Duration = Duration::from_secs(1);

/// bb8-redis's manager, with three changes:
/// - every handle it makes is a clone of one multiplexed connection, so the commands of
///   concurrent requests leave in one write and come back in one read, instead of a write
///   and a read per command on as many sockets (one round trip per command either way);
/// - it lends a handle that answered recently without a `PING`;
/// - it drops a handle whose socket failed (bb8-redis never drops one: it relies on the
///   `PING`), and then connects afresh for the handles made after it.
pub struct Manager {
    connector: RedisConnectionManager,
    shared: Mutex<Shared>,
}

/// The connection that new handles clone, and which one it is.
#[derive(Default)]
struct Shared {
    connection: Option<MultiplexedConnection>,
    generation: u64,
}

/// A pooled Redis handle: it remembers when it last answered, and whether it broke.
pub struct Connection {
    inner: MultiplexedConnection,
    /// Which shared connection it is a clone of.
    generation: u64,
    answered: Instant,
    broken: bool,
}

impl Connection {
    fn new(inner: MultiplexedConnection, generation: u64) -> Self {
        Self {
            inner,
            generation,
            answered: Instant::now(),
            broken: false,
        }
    }

    fn note<T>(&mut self, outcome: &Result<T, RedisError>) {
        match outcome {
            Ok(_) => self.answered = Instant::now(),
            // An error reply leaves the connection usable; a failed socket or a garbled
            // reply does not.
            Err(error) => {
                self.broken |= error.is_io_error()
                    || error.is_unrecoverable_error()
                    || error.kind() == ErrorKind::Parse;
            }
        }
    }
}

impl Manager {
    fn clone_shared(&self) -> Option<Connection> {
        let shared = lock(&self.shared);
        let inner = shared.connection.clone()?;
        Some(Connection::new(inner, shared.generation))
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let outcome = self.inner.req_packed_command(cmd).await;
            self.note(&outcome);
            outcome
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let outcome = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.note(&outcome);
            outcome
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Connection;
    type Error = RedisError;

    async fn connect(&self) -> Result<Connection, RedisError> {
        if let Some(handle) = self.clone_shared() {
            return Ok(handle);
        }
        let fresh = self.connector.connect().await?;
        let mut shared = lock(&self.shared);
        // Another caller may have connected meanwhile: everyone shares the first.
        let inner = shared.connection.get_or_insert(fresh).clone();
        Ok(Connection::new(inner, shared.generation))
    }

    async fn is_valid(&self, conn: &mut Connection) -> Result<(), RedisError> {
        if conn.answered.elapsed() < ANSWERED_RECENTLY {
            return Ok(());
        }
        let checked = self.connector.is_valid(&mut conn.inner).await;
        conn.note(&checked);
        checked
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        if conn.broken {
            let mut shared = lock(&self.shared);
            if shared.generation == conn.generation {
                shared.connection = None;
                shared.generation += 1;
            }
        }
        conn.broken
    }
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
