//! A real server per test on a free port, backed by a fresh database that is dropped after.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use mini_compete::{
    config::{Config, JobsConfig},
    db, jobs,
    startup::Application,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256";
pub const PASSWORD: &str = "Correct-Horse-1";
/// 1 once a backend of the test's database waits for the mailbox's lock: a worker is
/// confirming while the test holds the mailbox.
pub const MAIL_INSERTS_BLOCKED: &str = "
SELECT (count(*) >= 1)::int FROM pg_locks
 WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND relation = 'mailbox'::regclass AND NOT granted";

/// The server the tests point at: `DATABASE_URL`'s server, or the local default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@localhost:5432/postgres".to_owned())
}

fn with_database(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.into()
}

pub fn test_config() -> Config {
    let name = format!("mc_test_{}", Uuid::new_v4().simple());
    Config {
        database_url: with_database(&server_url(), &name),
        redis_url: std::env::var("REDIS_URL")
            .unwrap_or_else(|_| mini_compete::config::DEFAULT_REDIS_URL.to_owned()),
        redis_key_prefix: name,
        jwt_secret: Some(JWT_SECRET.to_owned()),
        bind_addr: "127.0.0.1:0".parse().expect("literal address"),
        jobs: test_jobs_config(),
        ..Config::default()
    }
}

/// The defaults, but waiting less: tests must not wait out production-sized delays.
pub fn test_jobs_config() -> JobsConfig {
    JobsConfig {
        job_stall_timeout_secs: 300,
        job_retry_backoff_ms: 10,
        job_poll_interval_ms: 200,
        job_drain_secs: 10,
        ..JobsConfig::default()
    }
}

/// Workers started by a test inside its own process; stopped (and drained) by `stop`.
pub struct TestWorkers {
    stop: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestWorkers {
    pub async fn stop(self) {
        self.stop.cancel();
        let mut workers = self;
        (&mut workers.running)
            .await
            .expect("workers stop")
            .expect("workers ran");
    }
}

impl Drop for TestWorkers {
    fn drop(&mut self) {
        self.running.abort();
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub config: Config,
    server: tokio::task::JoinHandle<()>,
}

pub struct Account {
    pub id: String,
    pub token: String,
    pub email: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(test_config()).await
    }

    /// Without in-process workers: queued tasks stay queued until a test starts workers.
    pub async fn spawn_without_workers() -> Self {
        let mut config = test_config();
        config.jobs.worker_concurrency = 0;
        Self::spawn_with(config).await
    }

    pub async fn spawn_with(config: Config) -> Self {
        let app = Application::build(&config)
            .await
            .expect("application builds");
        let addr = app.local_addr().expect("bound address");
        let server = tokio::spawn(async move {
            app.run_until(std::future::pending())
                .await
                .expect("server runs");
        });
        Self {
            addr,
            client: reqwest::Client::new(),
            config,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a GraphQL document, with a bearer token when given.
    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        assert!(response.status().is_success(), "HTTP {}", response.status());
        response.json().await.expect("JSON response")
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(None, query, variables).await
    }

    pub async fn signup(&self, role: &str) -> Account {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let body = self
            .gql(
                "mutation($input: SignupInput!) { signup(input: $input) { token user { id } } }",
                json!({ "input": { "name": "Test User", "email": email, "password": PASSWORD, "role": role } }),
            )
            .await;
        let payload = &body["data"]["signup"];
        Account {
            id: payload["user"]["id"].as_str().expect("user id").to_owned(),
            token: payload["token"].as_str().expect("token").to_owned(),
            email,
        }
    }

    /// Creates a competition as `organizer`; `overrides` replace fields of a valid input.
    pub async fn create_competition(&self, organizer: &Account, overrides: Value) -> Value {
        let mut input = json!({
            "title": "Test Cup",
            "description": "A test competition",
            "capacity": 10,
            "regDeadline": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339(),
        });
        if let (Some(input), Some(overrides)) = (input.as_object_mut(), overrides.as_object()) {
            input.extend(overrides.clone());
        }
        self.gql_as(
            Some(&organizer.token),
            "mutation($input: CreateCompetitionInput!) { createCompetition(input: $input) {
                id title tags capacity registeredCount seatsLeft isOpen regDeadline startDate
                organizer { id } } }",
            json!({ "input": input }),
        )
        .await
    }

    /// Creates a competition as `organizer` (see `create_competition`); its id.
    pub async fn new_competition(&self, organizer: &Account, overrides: Value) -> String {
        let body = self.create_competition(organizer, overrides).await;
        body["data"]["createCompetition"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned()
    }

    /// `count` participants inserted straight into the database (hashing passwords is not
    /// what these tests exercise), with valid tokens.
    pub async fn bulk_participants(&self, count: usize) -> Vec<Account> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use mini_compete::{
            auth::JwtKeys,
            schema::users,
            users::{Role, User},
        };

        let rows: Vec<_> = (0..count)
            .map(|_| {
                let email = format!("{}@example.com", Uuid::new_v4().simple());
                (
                    users::name.eq("Bulk Participant"),
                    users::email.eq(email),
                    users::password_hash.eq("not-a-login-account"),
                    users::role.eq(Role::Participant),
                )
            })
            .collect();
        let created: Vec<User> = diesel::insert_into(users::table)
            .values(&rows)
            .returning(User::as_returning())
            .get_results(&mut self.db().await)
            .await
            .expect("participants inserted");
        let keys = JwtKeys::new(JWT_SECRET.as_bytes(), 3600);
        created
            .into_iter()
            .map(|user| Account {
                id: user.id.to_string(),
                token: keys.issue(&user).expect("token"),
                email: user.email,
            })
            .collect()
    }

    /// One number from SQL, e.g. `SELECT count(*) FROM registrations`.
    pub async fn count(&self, sql: &str) -> i64 {
        use diesel::{QueryableByName, sql_types::BigInt};
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        diesel::sql_query(format!("SELECT ({sql})::bigint AS n"))
            .get_result::<Count>(&mut self.db().await)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .n
    }

    /// Runs a statement to arrange what the API cannot (e.g. a deadline in the past).
    pub async fn run_sql(&self, sql: &str) -> usize {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(sql)
            .execute(&mut self.db().await)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Starts workers against this test's database (for apps spawned without them).
    pub fn start_workers(&self, settings: JobsConfig) -> TestWorkers {
        let stop = CancellationToken::new();
        let pool = db::pool(&self.config.database_url, 8);
        let running = tokio::spawn(jobs::run_workers(
            pool,
            self.config.database_url.clone(),
            settings,
            stop.clone(),
        ));
        TestWorkers { stop, running }
    }

    /// Polls `sql` (one number) until it equals `expected`; panics after `within`.
    pub async fn wait_for_count(&self, sql: &str, expected: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.count(sql).await;
            if seen == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for `{sql}` to be {expected}; it is {seen}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// One checksum over every row of every table of ours, to show a refused request
    /// wrote nothing.
    pub async fn checksums(&self) -> String {
        use diesel::{QueryableByName, sql_types::Text};
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Checksum {
            #[diesel(sql_type = Text)]
            sum: String,
        }
        let mut conn = self.db().await;
        let mut all = String::new();
        for table in [
            "users",
            "competitions",
            "registrations",
            "mailbox",
            "fang_tasks",
            "failed_jobs",
            "idempotency_keys",
        ] {
            let row = diesel::sql_query(format!(
                "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS sum FROM {table} t"
            ))
            .get_result::<Checksum>(&mut conn)
            .await
            .unwrap_or_else(|error| panic!("checksum of {table}: {error}"));
            all.push_str(&format!("{table}={} ", row.sum));
        }
        all
    }

    /// A direct connection to this test's database, for arranging what the API cannot.
    pub async fn db(&self) -> diesel_async::AsyncPgConnection {
        use diesel_async::AsyncConnection;
        diesel_async::AsyncPgConnection::establish(&self.config.database_url)
            .await
            .expect("test database reachable")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        let url = self.config.database_url.clone();
        let redis_url = self.config.redis_url.clone();
        let prefix = self.config.redis_key_prefix.clone();
        // Drop runs inside the test's runtime: clean up from a runtime of its own.
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                db::drop_database(&url).await?;
                mini_compete::redis::delete_prefixed(&redis_url, &prefix).await
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) {
            eprintln!("could not clean up after the test: {cleaned:?}");
        }
    }
}

/// The `extensions.code` of the first error.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code, got {body}"))
}

/// A Redis server of the test's own on a free port (tests never stop the shared one).
pub struct TestRedis {
    pub port: u16,
    process: std::process::Child,
}

impl TestRedis {
    pub async fn start() -> Self {
        let port = free_port();
        Self::start_on(port).await
    }

    /// Starts (again) on `port`, empty: it keeps nothing on disk.
    pub async fn start_on(port: u16) -> Self {
        let process = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { port, process }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: nothing is flushed, as in a crash) and waits until it is gone.
    pub fn kill(mut self) -> u16 {
        let _ = self.process.kill();
        let _ = self.process.wait();
        self.port
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A Postgres cluster of the test's own (initdb + pg_ctl of the installed server) on a free
/// port, for outages: tests never stop the shared one. Removed when dropped.
pub struct TestPostgres {
    pub port: u16,
    dir: std::path::PathBuf,
}

impl TestPostgres {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("mc-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let chown = std::process::Command::new("chown")
            .args(["postgres", &dir.to_string_lossy()])
            .status()
            .expect("chown runs");
        assert!(chown.success());
        let cluster = Self {
            port: free_port(),
            dir,
        };
        cluster.pg(&[
            "initdb",
            "-D",
            "data",
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        cluster.start_again().await;
        cluster
    }

    fn bindir() -> String {
        let output = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs a server program as the `postgres` user inside the cluster's directory.
    fn pg(&self, args: &[&str]) {
        let program = format!("{}/{}", Self::bindir(), args[0]);
        let status = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &program])
            .args(&args[1..])
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("runuser runs");
        assert!(status.success(), "{args:?} failed");
    }

    pub async fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.pg(&[
            "pg_ctl", "-D", "data", "-l", "log", "-o", &options, "-w", "start",
        ]);
    }

    /// A fast shutdown: every backend is terminated (SQLSTATE 57P01), as in an outage.
    pub fn stop(&self) {
        self.pg(&["pg_ctl", "-D", "data", "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let program = format!("{}/pg_ctl", Self::bindir());
        let _ = std::process::Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &program,
                "-D",
                "data",
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Installs Debian's `package` when `binary` is missing (`.ci/run` does it ahead of time),
/// so that `cargo test` passes on a fresh machine too. One install at a time: apt holds a
/// lock.
pub fn debian_package(binary: &str, package: &str) {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
    if Path::new(binary).exists() {
        return;
    }
    for args in [&["update"][..], &["install", "-y", package]] {
        let status = std::process::Command::new("apt-get")
            .args(args)
            .status()
            .expect("apt-get runs");
        assert!(status.success(), "apt-get {args:?} failed");
    }
}
