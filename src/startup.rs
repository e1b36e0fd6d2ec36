//! Assembles the application: pools, the GraphQL schema, the HTTP router and the server.

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware,
    response::IntoResponse,
    routing::{get, post},
};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{mpsc, oneshot, watch},
};
use tokio_util::sync::CancellationToken;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
};

use crate::{
    config::{Config, HttpConfig, JobsConfig},
    db,
    graphql::{
        self,
        http::{self, Guard},
        ws::{self, Sockets},
    },
    jobs, metrics, redis, request_log,
    state::AppState,
};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections the kernel holds for the accept loop (it caps this at `net.core.somaxconn`).
/// A flash crowd connects all at once: with the default of 128, every connection past the
/// queue was dropped and waited a second for its SYN to be sent again.
const LISTEN_BACKLOG: u32 = 4096;
/// How long closing the WebSockets may take on shutdown.
const SOCKETS_DRAIN: Duration = Duration::from_secs(5);

/// A listener on `addr` with room for a flash crowd's connections (`LISTEN_BACKLOG`).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    /// The WebSockets, closed (going away) on shutdown.
    sockets: Sockets,
    workers: Option<Workers>,
    /// `/metrics` on a listener of its own (`METRICS_ADDR`).
    metrics: Option<(TcpListener, metrics::Sources)>,
    /// A failure found after start-up that waiting will not fix (e.g. Postgres came up
    /// but refuses our password): the application stops with it.
    fatal: mpsc::Receiver<anyhow::Error>,
}

/// The in-process worker pool of `serve` (none when `WORKER_CONCURRENCY` is 0).
struct Workers {
    database_url: String,
    settings: JobsConfig,
    migrated: watch::Receiver<bool>,
}

impl Workers {
    /// Starts once migrations have run, so a server started before Postgres still works.
    /// The workers get connections of their own: queueing behind the HTTP requests for the
    /// same ones, they fell behind under load.
    async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            migrated = self.migrated.wait_for(|done| *done) => {
                if migrated.is_err() {
                    return Ok(());
                }
            }
        }
        let pool_size = u32::try_from(self.settings.worker_concurrency + 2).unwrap_or(u32::MAX);
        let db = db::pool(&self.database_url, pool_size);
        jobs::run_workers(db, self.database_url, self.settings, stop).await
    }
}

impl Application {
    /// Creates the database and migrates (in the background, retrying, while Postgres is
    /// unreachable), then binds the listener. Fails, naming the cause, on what waiting
    /// will not fix: credentials, a malformed URL, the address taken.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        metrics::install();
        let (state, migrated) = AppState::new(config)?;
        check_redis(&state).await?;
        let workers = (config.jobs.worker_concurrency > 0).then(|| Workers {
            database_url: config.database_url.clone(),
            settings: config.jobs.clone(),
            migrated: state.migrated.clone(),
        });
        let (fatal_tx, fatal) = mpsc::channel(1);
        let sockets = Sockets::new(config.live.clone());
        prepare_database(config.database_url.clone(), migrated, fatal_tx).await?;
        let listener = listen(config.bind_addr)
            .with_context(|| format!("cannot listen on {} (BIND_ADDR)", config.bind_addr))?;
        let metrics = match config.http.metrics_addr {
            Some(addr) => Some((metrics::bind(addr).await?, metrics::Sources::from(&state))),
            None => None,
        };
        Ok(Self {
            listener,
            metrics,
            router: router(state, config, sockets.clone()).await,
            sockets,
            workers,
            fatal,
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
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "listening");
        let stop = CancellationToken::new();
        let (fatal_seen, mut fatal_error) = oneshot::channel();
        let signal = {
            let (stop, mut fatal) = (stop.clone(), self.fatal);
            let sockets = self.sockets.shutdown.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    Some(error) = fatal.recv() => {
                        let _ = fatal_seen.send(error);
                    }
                }
                stop.cancel();
                sockets.cancel();
            }
        };
        let router = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = async {
            let served = axum::serve(self.listener, router)
                .with_graceful_shutdown(signal)
                .await;
            stop.cancel();
            served
        };
        let workers = async {
            match self.workers {
                Some(workers) => workers.run(stop.clone()).await,
                None => Ok(()),
            }
        };
        let metrics = async {
            if let Some((listener, sources)) = self.metrics {
                metrics::serve(listener, sources, stop.clone()).await;
            }
        };
        let (served, worked, ()) = tokio::join!(server, workers, metrics);
        // Every socket has been told to go away; let the close frames out.
        self.sockets.tracker.close();
        if tokio::time::timeout(SOCKETS_DRAIN, self.sockets.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("WebSockets still open at the drain deadline");
        }
        if let Ok(error) = fatal_error.try_recv() {
            return Err(error);
        }
        served?;
        worked
    }
}

/// Redis only accelerates, so the server starts without it; but credentials it refuses
/// will not fix themselves.
async fn check_redis(state: &AppState) -> anyhow::Result<()> {
    match tokio::time::timeout(PROBE_TIMEOUT, redis::ping(&state.redis)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if redis::is_fatal(&error) => {
            Err(error.context("Redis refuses our credentials (REDIS_URL)"))
        }
        Ok(Err(error)) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "Redis unreachable; serving without it until it is back"
            );
            Ok(())
        }
        Err(_) => {
            tracing::warn!("Redis does not answer; serving without it until it is back");
            Ok(())
        }
    }
}

/// Migrates now, or — while Postgres is unreachable — in the background, serving
/// meanwhile; `fatal` hears of a failure that waiting will not fix.
async fn prepare_database(
    database_url: String,
    migrated: watch::Sender<bool>,
    fatal: mpsc::Sender<anyhow::Error>,
) -> anyhow::Result<()> {
    match db::prepare(&database_url).await {
        Ok(()) => {
            migrated.send_replace(true);
            Ok(())
        }
        Err(error) if db::is_fatal(&error) => Err(error),
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "Postgres unreachable; serving and retrying migrations in the background"
            );
            tokio::spawn(async move {
                let never = CancellationToken::new();
                match db::prepare_when_reachable(&database_url, &never).await {
                    Some(Ok(())) => {
                        migrated.send_replace(true);
                        tracing::info!("database ready");
                    }
                    Some(Err(error)) => {
                        let _ = fatal.send(error).await;
                    }
                    None => {}
                }
            });
            Ok(())
        }
    }
}

pub async fn router(app: AppState, config: &Config, sockets: Sockets) -> Router {
    let endpoint = graphql::endpoint(app.clone(), config).await;
    // Long-lived: neither the in-flight limit nor the time budget applies.
    let live = Router::new()
        .route("/graphql/ws", get(ws::upgrade))
        .with_state((endpoint.clone(), sockets));
    let graphql = Router::new()
        .route("/graphql", post(http::post).get(http::get))
        .route("/graphiql/{name}", get(graphql::graphiql::asset))
        .with_state(endpoint)
        .route_layer(middleware::from_fn_with_state(
            Guard::new(&config.http),
            http::guard,
        ));
    // On its own listener when METRICS_ADDR says so; then not beside the API.
    let scrape = match config.http.metrics_addr {
        Some(_) => Router::new(),
        None => metrics::router(metrics::Sources::from(&app)),
    };
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(app.clone())
        .merge(graphql)
        .merge(live)
        .merge(scrape)
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed);
    // After the fallbacks: a preflight (OPTIONS) must meet CORS before the 405 fallback.
    let routes = match cors(&config.http) {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        .layer(middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(http::panicked))
        .layer(request_log::layer())
        .layer(middleware::from_fn(request_log::request_id))
}

/// CORS for `CORS_ALLOWED_ORIGINS` (unset: same-origin only, no CORS headers at all).
/// Preflights may send the headers browsers' GraphQL clients use; answers are cached a day.
fn cors(config: &HttpConfig) -> Option<CorsLayer> {
    let origins = config.cors_allowed_origins.as_deref()?.trim();
    let allow_origin = if origins == "*" {
        AllowOrigin::any()
    } else {
        let origins: Vec<HeaderValue> = origins
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .filter_map(|origin| HeaderValue::from_str(origin).ok())
            .collect();
        AllowOrigin::list(origins)
    };
    let headers = [
        "authorization",
        "content-type",
        "idempotency-key",
        "apollographql-client-name",
        "apollographql-client-version",
        "apollo-require-preflight",
        "x-apollo-operation-name",
        "apollo-query-plan-experimental",
    ]
    .map(HeaderName::from_static);
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(headers)
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(24 * 3600)),
    )
}

/// 200 while Postgres answers and is migrated, naming each dependency's state; 503 otherwise.
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
    // Redis only accelerates (idempotency, rate limits fall back without it): an instance
    // without it still serves, and says so.
    let ready = postgres == "up";
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

/// Asks the server listening on `bind_addr` (an unspecified address means this host)
/// whether it is ready: `GET /readyz` must answer 200 within `PROBE_TIMEOUT`.
pub async fn check_ready(bind_addr: SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = bind_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr} (BIND_ADDR)"))?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .context("no answer from /readyz in time")??;
    // "HTTP/1.x 200"
    anyhow::ensure!(
        &head[9..12] == b"200",
        "/readyz answered {}",
        String::from_utf8_lossy(&head[9..12])
    );
    Ok(())
}
