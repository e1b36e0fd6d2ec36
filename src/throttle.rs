//! Rate limits on password work (log-in and sign-up), per client address and per account.
//!
//! Each attempt costs an argon2 hash, tens of milliseconds of a core: unlimited, it is both
//! a brute-force channel and a way to starve every other client. The counts live in Redis
//! (fixed windows, one round trip for both keys), so every server process shares them.
//! While Redis is unreachable each process falls back to its own in-memory limits, so
//! logins keep working.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bb8_redis::redis;
use clap::Args;
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use uuid::Uuid;

use crate::{
    error::{AppError, AppResult},
    redis::{Breaker, RedisPool},
};

pub const DEFAULT_PER_ADDRESS: u32 = 30;
pub const DEFAULT_PER_ACCOUNT: u32 = 10;
pub const DEFAULT_WINDOW_SECS: u64 = 60;

/// Counts both keys in one round trip; answers how many milliseconds to wait (0: go on).
const COUNT_ATTEMPT: &str = r"
local wait = 0
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  if count > tonumber(ARGV[i + 1]) and ttl > wait then
    wait = ttl
  end
end
return wait";

/// The in-memory limiters forget idle keys after this many checks.
const PRUNE_EVERY: u64 = 1024;

#[derive(Args, Clone, Debug)]
pub struct RateLimits {
    /// Log-in and sign-up attempts one client address may make per window.
    #[arg(
        long,
        env = "AUTH_ATTEMPTS_PER_ADDRESS",
        global = true,
        default_value_t = DEFAULT_PER_ADDRESS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub per_address: u32,

    /// Log-in and sign-up attempts on one email address per window.
    #[arg(
        long,
        env = "AUTH_ATTEMPTS_PER_ACCOUNT",
        global = true,
        default_value_t = DEFAULT_PER_ACCOUNT,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub per_account: u32,

    /// The window of both limits, in seconds.
    #[arg(
        long,
        env = "AUTH_ATTEMPTS_WINDOW_SECS",
        global = true,
        default_value_t = DEFAULT_WINDOW_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub window_secs: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_address: DEFAULT_PER_ADDRESS,
            per_account: DEFAULT_PER_ACCOUNT,
            window_secs: DEFAULT_WINDOW_SECS,
        }
    }
}

pub struct Throttle {
    redis: RedisPool,
    breaker: Breaker,
    prefix: String,
    limits: RateLimits,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_account: DefaultKeyedRateLimiter<Uuid>,
    local_checks: AtomicU64,
}

/// `per` attempts per `window`, as a burst that refills evenly.
fn quota(per: u32, window: Duration) -> Quota {
    let per = NonZeroU32::new(per).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(window / per.get())
        .unwrap_or_else(|| Quota::per_second(per))
        .allow_burst(per)
}

impl Throttle {
    pub fn new(redis: RedisPool, breaker: Breaker, prefix: &str, limits: RateLimits) -> Self {
        let window = Duration::from_secs(limits.window_secs);
        Self {
            redis,
            breaker,
            prefix: prefix.to_owned(),
            by_address: RateLimiter::keyed(quota(limits.per_address, window)),
            by_account: RateLimiter::keyed(quota(limits.per_account, window)),
            limits,
            local_checks: AtomicU64::new(0),
        }
    }

    /// Counts one password attempt from `address` on the account `email`; `RATE_LIMITED`
    /// once either is over its budget. The email is only hashed into the key: no address
    /// is written to Redis.
    pub async fn password_attempt(&self, address: IpAddr, email: &str) -> AppResult<()> {
        let account = Uuid::new_v5(&Uuid::NAMESPACE_URL, email.trim().to_lowercase().as_bytes());
        let shared = self
            .breaker
            .call(self.count_in_redis(address, account))
            .await;
        let wait = match shared {
            Some(wait) => wait,
            None => self.count_locally(address, account),
        };
        if wait.is_zero() {
            Ok(())
        } else {
            crate::metrics::refused("password_attempts");
            Err(AppError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
        }
    }

    async fn count_in_redis(&self, address: IpAddr, account: Uuid) -> anyhow::Result<Duration> {
        let mut conn = self.redis.get().await?;
        let wait_ms: u64 = redis::cmd("EVAL")
            .arg(COUNT_ATTEMPT)
            .arg(2)
            .arg(format!("{}:throttle:address:{address}", self.prefix))
            .arg(format!("{}:throttle:account:{account}", self.prefix))
            .arg(self.limits.window_secs.saturating_mul(1000))
            .arg(self.limits.per_address)
            .arg(self.limits.per_account)
            .query_async(&mut *conn)
            .await?;
        Ok(Duration::from_millis(wait_ms))
    }

    fn count_locally(&self, address: IpAddr, account: Uuid) -> Duration {
        if self
            .local_checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
        {
            self.by_address.retain_recent();
            self.by_account.retain_recent();
        }
        let now = DefaultClock::default().now();
        let wait = |checked: Result<(), governor::NotUntil<_>>| {
            checked.map_or_else(
                |not_until| not_until.wait_time_from(now),
                |()| Duration::ZERO,
            )
        };
        let by_address = wait(self.by_address.check_key(&address));
        let by_account = wait(self.by_account.check_key(&account));
        by_address.max(by_account)
    }
}
