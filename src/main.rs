use clap::{Parser, Subcommand, ValueEnum};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use mini_compete::{config::Config, db, graphql, jobs, metrics, seed, startup};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Mini-Compete: competitions with idempotent, never-oversold registration.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    /// Log lines as `text` (for people) or `json` (one object per line, for collectors).
    #[arg(long, env = "LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if missing, migrate, and serve the GraphQL API (with
    /// `WORKER_CONCURRENCY` in-process workers).
    Serve,
    /// Run background workers only (confirmations and reminders); run as many as you like.
    Worker,
    /// Create the database if missing and run pending migrations.
    Migrate,
    /// Insert demo organizers, participants and competitions (safe to run again).
    Seed,
    /// Print the GraphQL schema (SDL); `schema.graphql` is this output.
    Schema,
    /// Exit 0 when the server at `BIND_ADDR` is ready (`/readyz`), 1 otherwise: a container
    /// healthcheck that needs no curl in the image.
    Healthcheck,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dotenvy::dotenv().ok();
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // Each line carries its request's span (request_id, operation …) as fields.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    mini_compete::allocator::configure();
    let config = cli.config;
    match cli.command {
        Command::Serve => {
            startup::Application::build(&config)
                .await?
                .run_until(startup::shutdown_signal())
                .await?;
        }
        Command::Worker => {
            anyhow::ensure!(
                config.jobs.worker_concurrency > 0,
                "the worker needs WORKER_CONCURRENCY of at least 1"
            );
            let stop = CancellationToken::new();
            tokio::spawn({
                let stop = stop.clone();
                async move {
                    startup::shutdown_signal().await;
                    stop.cancel();
                }
            });
            // Waits for Postgres like `serve` does; only what waiting cannot fix ends it.
            match db::prepare_when_reachable(&config.database_url, &stop).await {
                Some(prepared) => prepared?,
                None => return Ok(()),
            }
            let pool = db::pool(&config.database_url, config.database_pool_size);
            metrics::install();
            let scrape = match config.http.metrics_addr {
                Some(addr) => {
                    let sources = metrics::Sources {
                        db: pool.clone(),
                        redis: None,
                    };
                    let listener = metrics::bind(addr).await?;
                    Some(tokio::spawn(metrics::serve(
                        listener,
                        sources,
                        stop.clone(),
                    )))
                }
                None => None,
            };
            jobs::run_workers(pool, config.database_url, config.jobs, stop.clone()).await?;
            stop.cancel();
            if let Some(scrape) = scrape {
                let _ = scrape.await;
            }
        }
        Command::Migrate => db::prepare(&config.database_url).await?,
        Command::Seed => {
            db::prepare(&config.database_url).await?;
            let mut conn = AsyncPgConnection::establish(&config.database_url).await?;
            let seeded = seed::run(&mut conn).await?;
            println!(
                "seeded {} users and {} competitions (password: {})",
                seeded.users,
                seeded.competitions,
                seed::SEED_PASSWORD
            );
        }
        Command::Schema => print!("{}", graphql::sdl()),
        Command::Healthcheck => {
            if let Err(error) = startup::check_ready(config.bind_addr).await {
                eprintln!("not ready: {error:#}");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
