//! Assembles the application: pools, the GraphQL schema, the HTTP router and the server.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use diesel::ConnectionError;
use tokio::net::TcpListener;
use tower_http::{catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer, trace::TraceLayer};

use crate::{
    auth::JwtKeys,
    config::Config,
    db::{self, PgPool},
    graphql::{self, AppSchema},
    idempotency::IdempotencyStore,
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
    /// False until migrations have run (Postgres may be down when the server starts).
    pub migrated: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
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
        Ok(Self {
            db: db::pool(&config.database_url, config.database_pool_size),
            idempotency: IdempotencyStore::new(
                redis.clone(),
                &config.redis_key_prefix,
                config.idempotency_ttl_secs,
                config.idempotency_lock_secs,
            ),
            redis,
            jwt,
            migrated: Arc::new(AtomicBool::new(false)),
        })
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: AppSchema,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Creates the database and migrates (in the background, retrying, while Postgres is
    /// unreachable), then binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let state = AppState::new(config)?;
        prepare_database(config.database_url.clone(), state.migrated.clone()).await?;
        let listener = TcpListener::bind(config.bind_addr).await?;
        Ok(Self {
            listener,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn prepare_database(database_url: String, migrated: Arc<AtomicBool>) -> anyhow::Result<()> {
    match db::prepare(&database_url).await {
        Ok(()) => {
            migrated.store(true, Ordering::Release);
            Ok(())
        }
        Err(error) if error.downcast_ref::<ConnectionError>().is_some() => {
            tracing::warn!(%error, "Postgres unreachable; serving and retrying migrations in the background");
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    match db::prepare(&database_url).await {
                        Ok(()) => {
                            migrated.store(true, Ordering::Release);
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
        .with_state(HttpState { app, schema })
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
        Ok(Ok(())) if app.migrated.load(Ordering::Acquire) => "up",
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
