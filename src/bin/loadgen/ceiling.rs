//! The raw-SQL ceiling: pgbench running the same SQL straight against the same Postgres.

use std::time::Duration;

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use url::Url;
use uuid::Uuid;

use mini_compete::db;

const SCHEMA: &str = include_str!("../../../bench/ceilings/schema.sql");
pub const HOT: &str = include_str!("../../../bench/ceilings/hot.sql");
pub const SPREAD: &str = include_str!("../../../bench/ceilings/spread.sql");
pub const READS: &str = include_str!("../../../bench/ceilings/reads.sql");

/// pgbench opens one connection per client, and Postgres allows 100 by default: more
/// clients than this are capped (the server under test uses at most its pool of 16).
pub const MAX_PGBENCH_CLIENTS: usize = 80;

/// The single-statement registration on the toy schema of `../shared/ceilings`, in a
/// scratch database of `database_url`'s server.
pub async fn registration(
    database_url: &str,
    script: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let name = format!("ceiling_{}", Uuid::new_v4().simple());
    let mut url = Url::parse(database_url)?;
    url.set_path(&format!("/{name}"));
    db::create_database_if_missing(url.as_str()).await?;
    let measured = async {
        let mut conn = AsyncPgConnection::establish(url.as_str()).await?;
        conn.batch_execute(SCHEMA).await?;
        drop(conn);
        pgbench(url.as_str(), script, clients, duration).await
    }
    .await;
    db::drop_database(url.as_str()).await?;
    measured
}

/// Runs `script` with pgbench for `duration`; its transactions per second.
pub async fn pgbench(
    database_url: &str,
    script: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let url = Url::parse(database_url)?;
    let file = std::env::temp_dir().join(format!("loadgen-{}.sql", Uuid::new_v4().simple()));
    tokio::fs::write(&file, script).await?;
    let clients = clients.clamp(1, MAX_PGBENCH_CLIENTS);
    let mut command = tokio::process::Command::new("pgbench");
    command
        .args(["-n", "-j", "2"])
        // The registration scripts count their own unique user ids from here.
        .args(["-D", "seq=0"])
        .args(["-c", &clients.to_string()])
        .args(["-T", &duration.as_secs().max(1).to_string()])
        .args(["-h", url.host_str().unwrap_or("localhost")])
        .args(["-p", &url.port().unwrap_or(5432).to_string()])
        .args([
            "-U",
            if url.username().is_empty() {
                "postgres"
            } else {
                url.username()
            },
        ])
        .arg("-f")
        .arg(&file)
        .arg(url.path().trim_start_matches('/'));
    if let Some(password) = url.password() {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().await;
    let _ = tokio::fs::remove_file(&file).await;
    let output = output.context("pgbench is not installed")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .context("no tps in pgbench's output")
}
