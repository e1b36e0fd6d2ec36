//! Idempotency keys: Redis accelerates, Postgres decides.
//!
//! The registering statement records (user, key) → (competition, registration) in Postgres
//! in the same statement (`registrations::REGISTER`), so that record exists if and only if
//! the registration does, and a replay can always be answered from it. Redis sits in front:
//! one `SET NX GET` reserves a key (`pending:<competition>:<attempt>`, expiring after the
//! short lock TTL so a crashed attempt cannot block the key forever) or finds its outcome
//! (`done:<competition>:<registration>`, kept for the long TTL). It turns concurrent
//! duplicates away early and answers most replays without touching Postgres. When Redis is
//! unreachable (or lost the key), registering takes the Postgres path alone, with the same
//! guarantees: a duplicate then waits on the record's primary key for the first request
//! and replays its outcome.
//!
//! Redis keys carry the database's `deployment` id, so a database created afresh never
//! meets the keys of an earlier one of the same name.

use bb8_redis::redis::{self, AsyncCommands};
use diesel::{
    OptionalExtension, QueryableByName,
    sql_types::{Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::{
    db::{PgPool, prepared},
    error::{AppError, AppResult, bad_input},
    redis::{Breaker, RedisPool},
};

const MAX_KEY_LEN: usize = 255;
/// Compare-and-delete: a slow attempt whose lock expired must not free a newer holder's key.
const RELEASE_IF_OURS: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
const FIND_RECORD: &str =
    "SELECT competition_id, registration_id FROM idempotency_keys WHERE user_id = $1 AND key = $2";
const PRUNE: &str =
    "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)";

#[derive(Clone)]
pub struct IdempotencyStore {
    pool: RedisPool,
    breaker: Breaker,
    db: PgPool,
    /// `<REDIS_KEY_PREFIX>:idem:<deployment id>`, read from Postgres once.
    namespace: std::sync::Arc<OnceCell<String>>,
    prefix: String,
    ttl_secs: u64,
    lock_secs: u64,
}

/// What a reservation found.
#[derive(Debug)]
pub enum Reservation {
    /// This request owns the key in Redis and must `complete` or `release` it.
    Acquired(Attempt),
    /// An earlier request with this key registered this registration.
    Completed(Uuid),
    /// Redis says another request with this key is running (or one that Redis forgot to
    /// complete): Postgres has the last word.
    InProgress,
    /// Redis is unreachable: Postgres alone decides.
    Unavailable,
}

/// One request's hold on a key.
#[derive(Debug)]
pub struct Attempt {
    redis_key: String,
    pending_value: String,
    competition_id: Uuid,
}

/// A key's durable record: what the request that first used it registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Record {
    #[diesel(sql_type = SqlUuid)]
    pub competition_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub registration_id: Uuid,
}

/// The key from the `Idempotency-Key` header and/or the `idempotencyKey` argument.
pub fn resolve_key(header: Option<&str>, argument: Option<&str>) -> AppResult<String> {
    let key = match (header, argument) {
        (Some(header), Some(argument)) if header != argument => {
            return Err(bad_input(
                "the Idempotency-Key header and the idempotencyKey argument differ",
            ));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => {
            return Err(bad_input(
                "an Idempotency-Key header or idempotencyKey argument is required",
            ));
        }
    };
    let printable = key.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if key.is_empty() || key.len() > MAX_KEY_LEN || !printable {
        return Err(bad_input(
            "the idempotency key must be 1 to 255 printable ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

#[derive(QueryableByName)]
struct DeploymentId {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

impl IdempotencyStore {
    pub fn new(
        pool: RedisPool,
        breaker: Breaker,
        db: PgPool,
        prefix: &str,
        ttl_secs: u64,
        lock_secs: u64,
    ) -> Self {
        Self {
            pool,
            breaker,
            db,
            namespace: std::sync::Arc::default(),
            prefix: prefix.to_owned(),
            ttl_secs,
            lock_secs,
        }
    }

    async fn namespace(&self) -> AppResult<&str> {
        let namespace = self
            .namespace
            .get_or_try_init(|| async {
                let mut conn = self.db.get().await?;
                let deployment = prepared("SELECT id FROM deployment")
                    .get_result::<DeploymentId>(&mut conn)
                    .await?;
                Ok::<_, AppError>(format!("{}:idem:{}", self.prefix, deployment.id))
            })
            .await?;
        Ok(namespace)
    }

    /// Reserves `key` for a registration to `competition_id` in one round trip
    /// (`SET NX GET`), or reports what already holds it.
    pub async fn reserve(
        &self,
        user_id: Uuid,
        key: &str,
        competition_id: Uuid,
    ) -> AppResult<Reservation> {
        let redis_key = format!("{}:{user_id}:{key}", self.namespace().await?);
        let pending_value = format!("pending:{competition_id}:{}", Uuid::new_v4());
        let reserved = self.breaker.call(async {
            let mut conn = self.pool.get().await?;
            redis::cmd("SET")
                .arg(&redis_key)
                .arg(&pending_value)
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(self.lock_secs)
                .query_async::<Option<String>>(&mut *conn)
                .await
                .map_err(anyhow::Error::from)
        });
        let previous = match reserved.await {
            None => return Ok(Reservation::Unavailable),
            Some(None) => {
                return Ok(Reservation::Acquired(Attempt {
                    redis_key,
                    pending_value,
                    competition_id,
                }));
            }
            Some(Some(previous)) => previous,
        };
        let mut parts = previous.splitn(3, ':');
        let (state, competition, detail) = (parts.next(), parts.next(), parts.next());
        if competition != Some(competition_id.to_string().as_str()) {
            return Err(AppError::IdempotencyKeyReused);
        }
        match (state, detail.map(Uuid::parse_str)) {
            (Some("done"), Some(Ok(registration_id))) => {
                Ok(Reservation::Completed(registration_id))
            }
            (Some("pending"), _) => Ok(Reservation::InProgress),
            _ => Err(AppError::Internal(format!(
                "unreadable idempotency entry {previous:?}"
            ))),
        }
    }

    /// Records the outcome in Redis, so replays return the same registration without
    /// asking Postgres (which holds it already). A failure only costs that shortcut.
    pub async fn complete(&self, attempt: &Attempt, registration_id: Uuid) {
        let done = format!("done:{}:{registration_id}", attempt.competition_id);
        let completed = self.breaker.call(async {
            let mut conn = self.pool.get().await?;
            conn.set_ex::<_, _, ()>(&attempt.redis_key, done, self.ttl_secs)
                .await
                .map_err(anyhow::Error::from)
        });
        if completed.await.is_none() {
            tracing::warn!("could not record an idempotency outcome in Redis; Postgres has it");
        }
    }

    /// Frees the key after a failure, unless another attempt holds it by now. Should
    /// Redis fail here, the key frees itself after the lock TTL.
    pub async fn release(&self, attempt: &Attempt) {
        let released = self.breaker.call(async {
            let mut conn = self.pool.get().await?;
            redis::cmd("EVAL")
                .arg(RELEASE_IF_OURS)
                .arg(1)
                .arg(&attempt.redis_key)
                .arg(&attempt.pending_value)
                .query_async::<i64>(&mut *conn)
                .await
                .map_err(anyhow::Error::from)
        });
        if released.await.is_none() {
            tracing::warn!("could not release an idempotency key; it expires by itself");
        }
    }
}

/// The durable record of `key`, if a registration was made with it.
pub async fn find_record(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    key: &str,
) -> AppResult<Option<Record>> {
    Ok(prepared(FIND_RECORD)
        .bind::<SqlUuid, _>(user_id)
        .bind::<Text, _>(key.to_owned())
        .get_result::<Record>(conn)
        .await
        .optional()?)
}

/// Deletes the records older than `ttl_secs` (the scheduled job); returns how many.
pub async fn prune(conn: &mut AsyncPgConnection, ttl_secs: u64) -> AppResult<usize> {
    Ok(prepared(PRUNE)
        .bind::<diesel::sql_types::Double, _>(ttl_secs as f64)
        .execute(conn)
        .await?)
}
