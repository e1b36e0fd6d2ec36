//! Idempotency keys in Redis, scoped per user.
//!
//! One key holds either `pending:<competition>:<attempt>` (a request is running; expires
//! after the short lock TTL so a crashed attempt cannot block the key forever) or
//! `done:<competition>:<registration>` (kept for the long TTL).

use bb8_redis::redis::{self, AsyncCommands};
use uuid::Uuid;

use crate::{
    error::{AppError, AppResult, bad_input},
    redis::RedisPool,
};

const MAX_KEY_LEN: usize = 255;
/// Compare-and-delete: a slow attempt whose lock expired must not free a newer holder's key.
const RELEASE_IF_OURS: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

#[derive(Clone)]
pub struct IdempotencyStore {
    pool: RedisPool,
    prefix: String,
    ttl_secs: u64,
    lock_secs: u64,
}

/// What a reservation found.
#[derive(Debug)]
pub enum Reservation {
    /// This request owns the key and must `complete` or `release` it.
    Acquired(Attempt),
    /// An earlier request with this key registered this registration.
    Completed(Uuid),
}

/// One request's hold on a key.
#[derive(Debug)]
pub struct Attempt {
    redis_key: String,
    pending_value: String,
    competition_id: Uuid,
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

impl IdempotencyStore {
    pub fn new(pool: RedisPool, prefix: &str, ttl_secs: u64, lock_secs: u64) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
            ttl_secs,
            lock_secs,
        }
    }

    /// Reserves `key` for a registration to `competition_id` in one round trip
    /// (`SET NX GET`), or reports what already holds it.
    pub async fn reserve(
        &self,
        user_id: Uuid,
        key: &str,
        competition_id: Uuid,
    ) -> AppResult<Reservation> {
        let redis_key = format!("{}:idem:{user_id}:{key}", self.prefix);
        let pending_value = format!("pending:{competition_id}:{}", Uuid::new_v4());
        let mut conn = self.pool.get().await?;
        let previous: Option<String> = redis::cmd("SET")
            .arg(&redis_key)
            .arg(&pending_value)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(self.lock_secs)
            .query_async(&mut *conn)
            .await?;
        let Some(previous) = previous else {
            return Ok(Reservation::Acquired(Attempt {
                redis_key,
                pending_value,
                competition_id,
            }));
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
            (Some("pending"), _) => Err(AppError::RequestInProgress),
            _ => Err(AppError::Internal(format!(
                "unreadable idempotency entry {previous:?}"
            ))),
        }
    }

    /// Records the outcome, so replays return the same registration.
    pub async fn complete(&self, attempt: &Attempt, registration_id: Uuid) -> AppResult<()> {
        let done = format!("done:{}:{registration_id}", attempt.competition_id);
        let mut conn = self.pool.get().await?;
        let _: () = conn.set_ex(&attempt.redis_key, done, self.ttl_secs).await?;
        Ok(())
    }

    /// Frees the key after a failure, unless another attempt holds it by now.
    pub async fn release(&self, attempt: &Attempt) -> AppResult<()> {
        let mut conn = self.pool.get().await?;
        let _: i64 = redis::cmd("EVAL")
            .arg(RELEASE_IF_OURS)
            .arg(1)
            .arg(&attempt.redis_key)
            .arg(&attempt.pending_value)
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }
}
