//! What every request handler and resolver shares.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{
    accounts::Accounts,
    auth::JwtKeys,
    config::Config,
    db::{self, PgPool},
    idempotency::IdempotencyStore,
    jobs,
    live::{Changes, Hub},
    redis::{self, Breaker, RedisPool},
    registrar::Registrar,
    throttle::Throttle,
};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: RedisPool,
    pub jwt: JwtKeys,
    /// The accounts bearer tokens name (deleted ones are refused).
    pub accounts: Accounts,
    pub idempotency: IdempotencyStore,
    /// Takes concurrent registrations together.
    pub registrar: Registrar,
    /// Rate limits on log-in and sign-up.
    pub throttle: Arc<Throttle>,
    /// Wakes the workers when a registration queued a confirmation.
    pub jobs: jobs::Waker,
    /// Publishes what changed to every process's subscribers.
    pub changes: Changes,
    /// This process's subscriptions.
    pub live: Hub,
    /// False until migrations have run (Postgres may be down when the server starts).
    pub migrated: watch::Receiver<bool>,
}

impl AppState {
    /// The state and the sender that reports migrations done.
    pub fn new(config: &Config) -> anyhow::Result<(Self, watch::Sender<bool>)> {
        let jwt = match &config.jwt_secret {
            Some(secret) if !secret.is_empty() => {
                if let Some(weakness) = weakness(secret) {
                    anyhow::ensure!(
                        config.allow_weak_jwt_secret,
                        "JWT_SECRET {weakness}: anyone who guesses it can sign tokens. Set a \
                         random one (e.g. `openssl rand -base64 48`), or ALLOW_WEAK_JWT_SECRET=true \
                         for development"
                    );
                    tracing::warn!("JWT_SECRET {weakness}; allowed by ALLOW_WEAK_JWT_SECRET");
                }
                JwtKeys::new(secret.as_bytes(), config.jwt_ttl_secs)
            }
            _ => {
                tracing::warn!(
                    "JWT_SECRET is not set: using a random per-process secret; tokens stop \
                     working on restart and across processes. Production must set JWT_SECRET."
                );
                JwtKeys::random(config.jwt_ttl_secs)
            }
        };
        let redis = redis::pool(&config.redis_url)?;
        // One view of Redis's health for the whole process: what one caller learns, the
        // others need not wait for.
        let breaker = Breaker::default();
        let db = db::pool(&config.database_url, config.database_pool_size);
        let (migrated_tx, migrated) = watch::channel(false);
        let state = Self {
            jobs: jobs::Waker::spawn(db.clone()),
            changes: Changes::spawn(db.clone()),
            live: Hub::spawn(db.clone(), config.database_url.clone(), migrated.clone()),
            idempotency: IdempotencyStore::new(
                redis.clone(),
                breaker.clone(),
                db.clone(),
                &config.redis_key_prefix,
                config.jobs.idempotency_ttl_secs,
                config.idempotency_lock_secs,
            ),
            accounts: Accounts::new(db.clone()),
            registrar: Registrar::spawn(db.clone()),
            db,
            throttle: Arc::new(Throttle::new(
                redis.clone(),
                breaker,
                &config.redis_key_prefix,
                config.rate_limits.clone(),
            )),
            redis,
            jwt,
            migrated,
        };
        Ok((state, migrated_tx))
    }
}

/// Shortest `JWT_SECRET` accepted: HS256's key should be at least its 256-bit output.
const MIN_JWT_SECRET_BYTES: usize = 32;

/// Why `secret` must not sign tokens, if it must not.
fn weakness(secret: &str) -> Option<&'static str> {
    let lowered = secret.to_lowercase();
    if ["change-me", "changeme", "change_me", "placeholder"]
        .iter()
        .any(|placeholder| lowered.contains(placeholder))
    {
        Some("is a published placeholder")
    } else if secret.len() < MIN_JWT_SECRET_BYTES {
        Some("is shorter than 32 bytes")
    } else {
        None
    }
}
