//! Prometheus metrics at `GET /metrics`. Counters and histograms are recorded with the
//! `metrics` macros where things happen; the pools' and the queue's gauges are read when
//! scraped, so an idle process does no work for them.
//!
//! Every label has a bounded set of values: routes, not paths; codes from `AppError`;
//! operation names only while fewer than `MAX_OPERATION_NAMES` were seen (clients choose
//! them), then `other`.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Mutex, OnceLock, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use bb8_redis::bb8;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    db::{PgPool, PoolState, prepared},
    redis::RedisPool,
    state::AppState,
};

/// Latency buckets, in seconds: 1 ms … 10 s (the request time budget's default).
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const MAX_OPERATION_NAMES: usize = 200;
const MAX_OPERATION_NAME_LENGTH: usize = 64;
/// How often histograms' recent samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The queue's gauges are read when scraped; a slow Postgres must not hang the scrape.
const QUEUE_READ_TIMEOUT: Duration = Duration::from_secs(2);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. One per process, whatever the number
/// of servers in it (tests run many).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics stays empty");
        }
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            })
            .ok();
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route"
    );
    describe_counter!(
        "graphql_operations_total",
        "GraphQL operations, by operation name, type and result code (OK, or the first error's extensions.code)"
    );
    describe_histogram!(
        "graphql_operation_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer a GraphQL operation, by operation name and type"
    );
    describe_counter!(
        "registrations_total",
        "register mutations, by outcome (the registration's status, or the error code)"
    );
    describe_counter!(
        "rate_limit_refusals_total",
        "Requests refused by a limit: password_attempts, in_flight, time_budget"
    );
    describe_counter!(
        "jobs_tasks_total",
        "Background tasks run, by task type and outcome (succeeded, retried, failed)"
    );
    describe_histogram!(
        "jobs_confirmation_lag_seconds",
        metrics::Unit::Seconds,
        "From a confirmation task's creation (the registration's commit) to CONFIRMED"
    );
    describe_gauge!(
        "jobs_queue_depth",
        "Tasks in fang_tasks, by task type and state, when scraped"
    );
    describe_gauge!(
        "pool_connections",
        "Connections of a pool (postgres, redis), by state (in_use, idle), when scraped"
    );
    describe_counter!(
        "pool_waits_total",
        "Times a caller waited for a pool's connection (postgres, redis)"
    );
    describe_counter!(
        "pool_timeouts_total",
        "Times a caller gave up waiting for a pool's connection (postgres, redis)"
    );
    describe_gauge!("websocket_connections", "Open WebSockets (/graphql/ws)");
}

/// What `/graphql` did, left in its response for `track` to count.
#[derive(Clone)]
pub struct GraphqlOutcome {
    pub operation: String,
    pub kind: &'static str,
    pub code: &'static str,
}

/// The label for a client-chosen operation name.
pub fn operation_label(name: Option<&str>) -> String {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Some(name) = name else {
        return "anonymous".into();
    };
    let valid = name.len() <= MAX_OPERATION_NAME_LENGTH
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return "other".into();
    }
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.contains(name) || seen.len() < MAX_OPERATION_NAMES {
        seen.insert(name.to_owned());
        name.to_owned()
    } else {
        "other".into()
    }
}

/// Counts every HTTP request (and the GraphQL operation it carried).
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    counter!(
        "http_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    histogram!("http_request_duration_seconds", "route" => route).record(elapsed);
    if let Some(outcome) = response.extensions().get::<GraphqlOutcome>() {
        counter!(
            "graphql_operations_total",
            "operation" => outcome.operation.clone(),
            "type" => outcome.kind,
            "code" => outcome.code
        )
        .increment(1);
        histogram!(
            "graphql_operation_duration_seconds",
            "operation" => outcome.operation.clone(),
            "type" => outcome.kind
        )
        .record(elapsed);
    }
    response
}

pub fn registration(outcome: &'static str) {
    counter!("registrations_total", "outcome" => outcome).increment(1);
}

pub fn refused(limit: &'static str) {
    counter!("rate_limit_refusals_total", "limit" => limit).increment(1);
}

pub fn task(task_type: &str, outcome: &'static str, count: u64) {
    counter!("jobs_tasks_total", "task" => task_type.to_owned(), "outcome" => outcome)
        .increment(count);
}

pub fn confirmation_lag(lag: Duration) {
    histogram!("jobs_confirmation_lag_seconds").record(lag.as_secs_f64());
}

pub fn websocket_opened() {
    gauge!("websocket_connections").increment(1);
}

pub fn websocket_closed() {
    gauge!("websocket_connections").decrement(1);
}

/// What the scrape reads its gauges from: a `worker` has no Redis pool.
#[derive(Clone)]
pub struct Sources {
    pub db: PgPool,
    pub redis: Option<RedisPool>,
}

impl From<&AppState> for Sources {
    fn from(app: &AppState) -> Self {
        Self {
            db: app.db.clone(),
            redis: Some(app.redis.clone()),
        }
    }
}

/// `/metrics` alone, for `METRICS_ADDR`.
pub fn router(sources: Sources) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(sources)
}

/// Serves `router` on `listener` until `stop`.
pub async fn serve(listener: TcpListener, sources: Sources, stop: CancellationToken) {
    let served = axum::serve(listener, router(sources))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the metrics listener failed");
    }
}

/// Binds `METRICS_ADDR`, naming it when that fails.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (METRICS_ADDR)"))
}

/// `GET /metrics`: the Prometheus text format.
pub async fn scrape(State(sources): State<Sources>) -> Response {
    pools("postgres", sources.db.state());
    if let Some(redis) = &sources.redis {
        pools("redis", redis.state().into());
    }
    if let Ok(Err(error)) = tokio::time::timeout(QUEUE_READ_TIMEOUT, queue(&sources.db)).await {
        tracing::debug!(%error, "cannot read the queue's depth for /metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        install().render(),
    )
        .into_response()
}

fn pools(pool: &'static str, state: PoolState) {
    let idle = state.idle_connections;
    let in_use = state.connections.saturating_sub(idle);
    gauge!("pool_connections", "pool" => pool, "state" => "in_use").set(f64::from(in_use));
    gauge!("pool_connections", "pool" => pool, "state" => "idle").set(f64::from(idle));
    counter!("pool_waits_total", "pool" => pool).absolute(state.waited);
    counter!("pool_timeouts_total", "pool" => pool).absolute(state.timed_out);
}

impl From<bb8::State> for PoolState {
    fn from(state: bb8::State) -> Self {
        Self {
            connections: state.connections,
            idle_connections: state.idle_connections,
            waited: state.statistics.get_waited,
            timed_out: state.statistics.get_timed_out,
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Depth {
    #[diesel(sql_type = Text)]
    task_type: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    tasks: i64,
}

/// Sets the queue's gauges; a (type, state) seen before and now empty goes back to 0.
async fn queue(db: &PgPool) -> anyhow::Result<()> {
    static SEEN: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);
    let depths: Vec<Depth> = prepared(
        "SELECT task_type, state::text AS state, count(*) AS tasks
           FROM fang_tasks GROUP BY 1, 2",
    )
    .load(&mut *db.get().await?)
    .await?;
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashSet::new);
    for (task_type, state) in seen.iter() {
        if !depths
            .iter()
            .any(|depth| &depth.task_type == task_type && &depth.state == state)
        {
            gauge!("jobs_queue_depth", "task" => task_type.clone(), "state" => state.clone())
                .set(0.0);
        }
    }
    for depth in depths {
        gauge!("jobs_queue_depth", "task" => depth.task_type.clone(), "state" => depth.state.clone())
            .set(depth.tasks as f64);
        seen.insert((depth.task_type, depth.state));
    }
    Ok(())
}
