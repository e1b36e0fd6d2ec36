//! Assembles the application: pools, the GraphQL schema, the HTTP router and the server.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    middleware,
    response::IntoResponse,
    routing::{get, post},
};
use diesel::ConnectionError;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

use crate::{
    config::{Config, JobsConfig},
    db::{self, PgPool},
    graphql::{
        self,
        http::{self, Endpoint, Guard},
    },
    jobs, redis,
    state::AppState,
};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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
            router: router(state, config),
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
            let router = self
                .router
                .into_make_service_with_connect_info::<SocketAddr>();
            let served = axum::serve(self.listener, router)
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

pub fn router(app: AppState, config: &Config) -> Router {
    let endpoint = Endpoint {
        schema: graphql::schema(app.clone(), &config.limits),
        app: app.clone(),
        documents: Arc::default(),
        limits: Arc::new(config.limits.clone()),
        trusted_proxies: config.http.trusted_proxies.clone().into(),
    };
    let graphql = Router::new()
        .route("/graphql", post(http::post).get(http::graphiql))
        .with_state(endpoint)
        .route_layer(middleware::from_fn_with_state(
            Guard::new(&config.http),
            http::guard,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(app)
        .merge(graphql)
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(CatchPanicLayer::custom(http::panicked))
        .layer(TraceLayer::new_for_http())
}

/// 200 when Postgres (migrated) and Redis answer; 503 naming what is down otherwise.
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
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
