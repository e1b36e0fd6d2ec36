//! Configuration: every setting is a flag and an environment variable (`.env` is read first).

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    str::FromStr,
};

use clap::Args;
use ipnet::IpNet;

pub use crate::{
    graphql::{limits::DocumentLimits, ws::LiveLimits},
    throttle::RateLimits,
};

/// Settings shared by every subcommand. Deliberately not `Debug`: it holds the JWT secret.
#[derive(Args, Clone)]
pub struct Config {
    /// Postgres URL; the database is created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL
    )]
    pub database_url: String,

    /// Largest number of Postgres connections this process opens.
    #[arg(long, env = "DATABASE_POOL_SIZE", global = true, default_value_t = DEFAULT_DATABASE_POOL_SIZE)]
    pub database_pool_size: u32,

    #[arg(
        long,
        env = "REDIS_URL",
        global = true,
        hide_env_values = true,
        default_value = DEFAULT_REDIS_URL
    )]
    pub redis_url: String,

    /// HS256 signing secret, at least 32 bytes and not a placeholder. Unset: a random
    /// per-process secret (tokens die with the process).
    #[arg(long, env = "JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Start even with a short or placeholder `JWT_SECRET` (development only: anyone who
    /// guesses it can mint ORGANIZER tokens).
    #[arg(long, env = "ALLOW_WEAK_JWT_SECRET", global = true)]
    pub allow_weak_jwt_secret: bool,

    #[arg(long, env = "JWT_TTL_SECS", global = true, default_value_t = DEFAULT_JWT_TTL_SECS)]
    pub jwt_ttl_secs: u64,

    /// Prefix of every Redis key this service writes (to share a Redis between deployments).
    #[arg(
        long,
        env = "REDIS_KEY_PREFIX",
        global = true,
        default_value = DEFAULT_REDIS_KEY_PREFIX
    )]
    pub redis_key_prefix: String,

    /// How long an in-flight request holds its key; bounds the wait after a crash.
    #[arg(
        long,
        env = "IDEMPOTENCY_LOCK_SECS",
        global = true,
        default_value_t = DEFAULT_IDEMPOTENCY_LOCK_SECS
    )]
    pub idempotency_lock_secs: u64,

    #[arg(
        long,
        env = "BIND_ADDR",
        global = true,
        default_value_t = DEFAULT_BIND_ADDR
    )]
    pub bind_addr: SocketAddr,

    #[command(flatten)]
    pub http: HttpConfig,

    #[command(flatten)]
    pub limits: DocumentLimits,

    #[command(flatten)]
    pub rate_limits: RateLimits,

    #[command(flatten)]
    pub live: LiveLimits,

    #[command(flatten)]
    pub jobs: JobsConfig,
}

// Every default is written once, here (or beside its settings' struct), and used by the
// CLI and by `Default`, which tests and the load tool start from.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@localhost:5432/mini_compete";
pub const DEFAULT_DATABASE_POOL_SIZE: u32 = 16;
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_JWT_TTL_SECS: u64 = 3600;
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "mini-compete";
pub const DEFAULT_IDEMPOTENCY_LOCK_SECS: u64 = 60;
pub const DEFAULT_BIND_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3000));

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_pool_size: DEFAULT_DATABASE_POOL_SIZE,
            redis_url: DEFAULT_REDIS_URL.to_owned(),
            jwt_secret: None,
            allow_weak_jwt_secret: false,
            jwt_ttl_secs: DEFAULT_JWT_TTL_SECS,
            redis_key_prefix: DEFAULT_REDIS_KEY_PREFIX.to_owned(),
            idempotency_lock_secs: DEFAULT_IDEMPOTENCY_LOCK_SECS,
            bind_addr: DEFAULT_BIND_ADDR,
            http: HttpConfig::default(),
            limits: DocumentLimits::default(),
            rate_limits: RateLimits::default(),
            live: LiveLimits::default(),
            jobs: JobsConfig::default(),
        }
    }
}

pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// How the HTTP server protects itself and finds its clients.
#[derive(Args, Clone, Debug)]
pub struct HttpConfig {
    /// Time budget of one request; past it the client gets `SERVICE_UNAVAILABLE` (503).
    #[arg(
        long,
        env = "REQUEST_TIMEOUT_SECS",
        global = true,
        default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub request_timeout_secs: u64,

    /// GraphQL requests served at once; beyond, requests are refused at once with 503 and
    /// `Retry-After` instead of queueing without bound.
    #[arg(
        long,
        env = "MAX_IN_FLIGHT_REQUESTS",
        global = true,
        default_value_t = DEFAULT_MAX_IN_FLIGHT
    )]
    pub max_in_flight: usize,

    /// Reverse proxies (IPs or CIDRs, comma-separated) whose `X-Forwarded-For` names the
    /// client; from anyone else the header is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", global = true, value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,

    /// Origins that browsers may call the API from (comma-separated, or `*`); unset:
    /// same-origin only.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", global = true)]
    pub cors_allowed_origins: Option<String>,

    /// Serve `/metrics` on this address only (e.g. `0.0.0.0:9090`, reachable by the
    /// scraper but not the public); unset: on `BIND_ADDR` beside the API (`serve`) or not
    /// at all (`worker`).
    #[arg(long, env = "METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            trusted_proxies: Vec::new(),
            cors_allowed_origins: None,
            metrics_addr: None,
        }
    }
}

pub const DEFAULT_WORKER_CONCURRENCY: usize = 4;
pub const DEFAULT_JOB_LEASE_SECS: u64 = 30;
pub const DEFAULT_JOB_RETRY_BACKOFF_MS: u64 = 1000;
pub const DEFAULT_JOB_POLL_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_JOB_DRAIN_SECS: u64 = 20;
pub const DEFAULT_REMINDER_CRON: &str = "0 * * * * * *";
pub const DEFAULT_PRUNE_CRON: &str = "0 0 * * * * *";
pub const DEFAULT_IDEMPOTENCY_TTL_SECS: u64 = 86_400;

/// The background workers (in `serve` and in `worker`).
#[derive(Args, Clone, Debug)]
pub struct JobsConfig {
    /// Tasks one process runs at once; `serve` runs no worker when 0.
    #[arg(long, env = "WORKER_CONCURRENCY", global = true, default_value_t = DEFAULT_WORKER_CONCURRENCY)]
    pub worker_concurrency: usize,

    /// The lease of a running task: its worker renews it every third of this; a task whose
    /// lease ran out belonged to a worker that died, and is run again (a failed attempt).
    #[arg(
        long,
        env = "JOB_STALL_TIMEOUT_SECS",
        global = true,
        default_value_t = DEFAULT_JOB_LEASE_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub job_stall_timeout_secs: u64,

    /// Delay before the first retry of a failed task; doubles with every further attempt.
    #[arg(long, env = "JOB_RETRY_BACKOFF_MS", global = true, default_value_t = DEFAULT_JOB_RETRY_BACKOFF_MS)]
    pub job_retry_backoff_ms: u64,

    /// How often an idle worker looks for due tasks when no wake-up notification arrives.
    #[arg(long, env = "JOB_POLL_INTERVAL_MS", global = true, default_value_t = DEFAULT_JOB_POLL_INTERVAL_MS)]
    pub job_poll_interval_ms: u64,

    /// On shutdown, how long running tasks may take to finish.
    #[arg(long, env = "JOB_DRAIN_SECS", global = true, default_value_t = DEFAULT_JOB_DRAIN_SECS)]
    pub job_drain_secs: u64,

    /// When reminders are sent: fang's cron with seconds (sec min hour day month weekday year), UTC.
    #[arg(
        long,
        env = "REMINDER_CRON",
        global = true,
        default_value = DEFAULT_REMINDER_CRON,
        value_parser = parse_cron
    )]
    pub reminder_cron: String,

    /// When idempotency records older than `IDEMPOTENCY_TTL_SECS` are deleted (same format).
    #[arg(
        long,
        env = "PRUNE_CRON",
        global = true,
        default_value = DEFAULT_PRUNE_CRON,
        value_parser = parse_cron
    )]
    pub prune_cron: String,

    /// How long a completed registration answers replays of its Idempotency-Key (the
    /// server's replays; the workers prune older records).
    #[arg(long, env = "IDEMPOTENCY_TTL_SECS", global = true, default_value_t = DEFAULT_IDEMPOTENCY_TTL_SECS)]
    pub idempotency_ttl_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            worker_concurrency: DEFAULT_WORKER_CONCURRENCY,
            job_stall_timeout_secs: DEFAULT_JOB_LEASE_SECS,
            job_retry_backoff_ms: DEFAULT_JOB_RETRY_BACKOFF_MS,
            job_poll_interval_ms: DEFAULT_JOB_POLL_INTERVAL_MS,
            job_drain_secs: DEFAULT_JOB_DRAIN_SECS,
            reminder_cron: DEFAULT_REMINDER_CRON.to_owned(),
            prune_cron: DEFAULT_PRUNE_CRON.to_owned(),
            idempotency_ttl_secs: DEFAULT_IDEMPOTENCY_TTL_SECS,
        }
    }
}

fn parse_cron(pattern: &str) -> Result<String, String> {
    cron::Schedule::from_str(pattern)
        .map(|_| pattern.to_owned())
        .map_err(|error| format!("not a 7-field cron pattern: {error}"))
}
