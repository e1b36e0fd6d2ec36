//! The raw-SQL ceiling: pgbench running the same SQL straight against the same Postgres.

use std::time::Duration;

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use url::Url;
use uuid::Uuid;

use mini_compete::{db, jobs, registrations};

const SCHEMA: &str = include_str!("../../bench/ceilings/schema.sql");
pub const HOT: &str = include_str!("../../bench/ceilings/hot.sql");
pub const SPREAD: &str = include_str!("../../bench/ceilings/spread.sql");
pub const READS: &str = include_str!("../../bench/ceilings/reads.sql");
pub const READ_ONE: &str = include_str!("../../bench/ceilings/read-one.sql");
pub const MY_REGISTRATIONS: &str = include_str!("../../bench/ceilings/my-registrations.sql");
pub const ORGANIZER_VIEW: &str = include_str!("../../bench/ceilings/organizer-view.sql");
/// Numbers the scenario's participants, for `MY_REGISTRATIONS` to pick one at random.
pub const MY_REGISTRATIONS_IDS: &str = "CREATE TABLE bench_users AS
    SELECT row_number() OVER () AS n, id FROM users WHERE role = 'PARTICIPANT'";
/// Numbers the scenario's competitions, for `READ_ONE` and `ORGANIZER_VIEW` to pick one
/// by a random number.
pub const READ_ONE_IDS: &str =
    "CREATE TABLE bench_ids AS SELECT row_number() OVER () AS n, id FROM competitions";

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
    let scratch = Scratch::Plain(SCHEMA.to_owned());
    in_scratch_database(database_url, scratch, script, clients, duration, &[]).await
}

/// How a scratch database is set up before pgbench runs in it.
enum Scratch {
    /// An empty database, then this SQL.
    Plain(String),
    /// Our migrations, then this SQL.
    Migrated(String),
}

/// Runs `script` with pgbench in a scratch database of `database_url`'s server, then drops
/// the database whatever happened.
async fn in_scratch_database(
    database_url: &str,
    scratch: Scratch,
    script: &str,
    clients: usize,
    duration: Duration,
    options: &[&str],
) -> anyhow::Result<f64> {
    let mut url = Url::parse(database_url)?;
    url.set_path(&format!("/ceiling_{}", Uuid::new_v4().simple()));
    let url = url.as_str();
    let setup = match scratch {
        Scratch::Plain(sql) => {
            db::create_database_if_missing(url).await?;
            sql
        }
        Scratch::Migrated(sql) => {
            db::prepare(url).await?;
            sql
        }
    };
    let measured = async {
        let mut conn = AsyncPgConnection::establish(url).await?;
        conn.batch_execute(&setup).await?;
        drop(conn);
        pgbench(url, script, clients, duration, options).await
    }
    .await;
    db::drop_database(url).await?;
    measured
}

/// Ids pgbench can compute: `md5('c' || n)::uuid` is competition n, `md5('u' || n)::uuid`
/// participant n.
const SCHEMA_CEILING_SEED: &str = "
INSERT INTO users (id, name, email, password_hash, role)
VALUES ('00000000-0000-0000-0000-000000000001', 'Ceiling', 'organizer@ceiling.example', '!', 'ORGANIZER');
INSERT INTO users (id, name, email, password_hash, role)
SELECT md5('u' || g)::uuid, 'Ceiling ' || g, g || '@ceiling.example', '!', 'PARTICIPANT'
  FROM generate_series(1, {participants}) g;
INSERT INTO competitions (id, organizer_id, title, description, capacity, reg_deadline, start_date)
SELECT md5('c' || g)::uuid, '00000000-0000-0000-0000-000000000001', 'Ceiling ' || g, '',
       {capacity}, now() + interval '7 days', now() + interval '8 days'
  FROM generate_series(1, {competitions}) g;
ANALYZE;";

/// Participants per second of a schema ceiling run: each transaction takes a fresh one, and
/// pgbench stops with an error if they run out. Client `c` takes ids `c + 1 + 80 k`, so
/// this allows 200 transactions per second to every client, far above what 2 cores do.
const SCHEMA_CEILING_PARTICIPANTS_PER_SEC: u64 = 200 * MAX_PGBENCH_CLIENTS as u64;

/// The statement the server runs to register (`registrations::REGISTER`), on the real,
/// migrated schema with its keys, checks and indexes, prepared once per pgbench client like
/// the server's. The gap between this and the toy ceiling is the schema's cost; the gap
/// between this and the API is everything around the statement.
pub async fn schema_registration(
    database_url: &str,
    competitions: usize,
    capacity: i32,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let seed = SCHEMA_CEILING_SEED
        .replace(
            "{participants}",
            &(SCHEMA_CEILING_PARTICIPANTS_PER_SEC * duration.as_secs().max(1)).to_string(),
        )
        .replace("{capacity}", &capacity.to_string())
        .replace("{competitions}", &competitions.to_string());
    let statement = registrations::REGISTER
        .replace("$1", "md5('c' || :competition)::uuid")
        .replace("$2", "md5('u' || :participant)::uuid")
        .replace("$3", &format!("'{}'", jobs::CONFIRMATION_TASK))
        .replace("$4", &format!("'{}'", jobs::CONFIRMATION_QUEUE))
        .replace("$5", "'key-' || :participant");
    let script = format!(
        "\\set competition random(1, {competitions})\n\\set seq :seq + 1\n\\set participant :client_id + (:seq - 1) * {MAX_PGBENCH_CLIENTS} + 1\n{};\n",
        statement.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let scratch = Scratch::Migrated(seed);
    in_scratch_database(
        database_url,
        scratch,
        &script,
        clients,
        duration,
        &["-M", "prepared"],
    )
    .await
}

/// Runs `script` with pgbench for `duration`; its transactions per second.
pub async fn pgbench(
    database_url: &str,
    script: &str,
    clients: usize,
    duration: Duration,
    options: &[&str],
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
        .args(options)
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
