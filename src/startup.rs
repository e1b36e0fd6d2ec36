//! Assembles the application: pools, the GraphQL schema, the HTTP router and the server.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use diesel::ConnectionError;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tower_http::{catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer, trace::TraceLayer};

use crate::{
    auth::JwtKeys,
    config::{Config, JobsConfig},
    db::{self, PgPool},
    graphql::{self, AppSchema, documents::DocumentCache},
    idempotency::IdempotencyStore,
    jobs,
    redis::{self, RedisPool},
};

/// Largest accepted request body.
const BODY_LIMIT_BYTES: usize = 1024 * 1024;
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: RedisPool,
    pub jwt: JwtKeys,
    pub idempotency: IdempotencyStore,
    /// Wakes the workers when a registration queued a confirmation.
    pub jobs: jobs::Waker,
    /// False until migrations have run (Postgres may be down when the server starts).
    pub migrated: watch::Receiver<bool>,
}

impl AppState {
    /// The state and the sender that reports migrations done.
    pub fn new(config: &Config) -> anyhow::Result<(Self, watch::Sender<bool>)> {
        let jwt = match &config.jwt_secret {
            Some(secret) if !secret.is_empty() => {
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
        let db = db::pool(&config.database_url, config.database_pool_size);
        let (migrated_tx, migrated) = watch::channel(false);
        let state = Self {
            jobs: jobs::Waker::spawn(db.clone()),
            db,
            idempotency: IdempotencyStore::new(
                redis.clone(),
                &config.redis_key_prefix,
                config.idempotency_ttl_secs,
                config.idempotency_lock_secs,
            ),
            redis,
            jwt,
            migrated,
        };
        Ok((state, migrated_tx))
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: AppSchema,
    pub documents: Arc<DocumentCache>,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    workers: Option<Workers>,
}

/// The in-process worker pool of `serve` (none when `WORKER_CONCURRENCY` is 0).
struct Workers {
    db: PgPool,
    database_url: String,
    settings: JobsConfig,
    migrated: watch::Receiver<bool>,
}

impl Workers {
    /// Starts once migrations have run, so a server started before Postgres still works.
    async fn run(mut self, stop: CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => return,
            migrated = self.migrated.wait_for(|done| *done) => {
                if migrated.is_err() {
                    return;
                }
            }
        }
        jobs::run_workers(self.db, self.database_url, self.settings, stop).await;
    }
}

impl Application {
    /// Creates the database and migrates (in the background, retrying, while Postgres is
    /// unreachable), then binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let (state, migrated) = AppState::new(config)?;
        let workers = (config.jobs.worker_concurrency > 0).then(|| Workers {
            db: state.db.clone(),
            database_url: config.database_url.clone(),
            settings: config.jobs.clone(),
            migrated: state.migrated.clone(),
        });
        prepare_database(config.database_url.clone(), migrated).await?;
        let listener = TcpListener::bind(config.bind_addr).await?;
        Ok(Self {
            listener,
            router: router(state),
            workers,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves (and runs the workers) until `shutdown` resolves, then lets in-flight
    /// requests and running tasks finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "listening");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let server = async {
            let served = axum::serve(self.listener, self.router)
                .with_graceful_shutdown(async move {
                    shutdown.await;
                    stopped.cancel();
                })
                .await;
            stop.cancel();
            served
        };
        let workers = async {
            if let Some(workers) = self.workers {
                workers.run(stop.clone()).await;
            }
        };
        let (served, ()) = tokio::join!(server, workers);
        served
    }
}

async fn prepare_database(
    database_url: String,
    migrated: watch::Sender<bool>,
) -> anyhow::Result<()> {
    match db::prepare(&database_url).await {
        Ok(()) => {
            migrated.send_replace(true);
            Ok(())
        }
        Err(error) if error.downcast_ref::<ConnectionError>().is_some() => {
            tracing::warn!(%error, "Postgres unreachable; serving and retrying migrations in the background");
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    match db::prepare(&database_url).await {
                        Ok(()) => {
                            migrated.send_replace(true);
                            tracing::info!("database ready");
                            return;
                        }
                        Err(error) => tracing::warn!(%error, "database still not ready"),
                    }
                }
            });
            Ok(())
        }
        Err(error) => Err(error),
    }
}

pub fn router(app: AppState) -> Router {
    let schema = graphql::schema(app.clone());
    Router::new()
        .route(
            "/graphql",
            post(graphql::http::execute).get(graphql::http::graphiql),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState {
            app,
            schema,
            documents: Arc::default(),
        })
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
}

/// 200 when Postgres (migrated) and Redis answer; 503 naming what is down otherwise.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let app = &state.app;
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, db::ping(&app.db)),
        tokio::time::timeout(PROBE_TIMEOUT, redis::ping(&app.redis)),
    );
    let postgres = match postgres {
        Ok(Ok(())) if *app.migrated.borrow() => "up",
        Ok(Ok(())) => "migrating",
        _ => "down",
    };
    let redis = if matches!(redis, Ok(Ok(()))) {
        "up"
    } else {
        "down"
    };
    let ready = postgres == "up" && redis == "up";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "postgres": postgres,
        "redis": redis,
    });
    (status, Json(body))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
