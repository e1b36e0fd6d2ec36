//! A scenario's world: a scratch database, the server (in-process or at `--url`), and
//! users, tokens and competitions made in bulk straight in the database.

use std::time::Duration;

use anyhow::Context;
use diesel::{
    QueryableByName,
    prelude::*,
    sql_query,
    sql_types::{BigInt, Integer, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use mini_compete::{
    auth::JwtKeys,
    config::{Config, JobsConfig, RateLimits},
    db::{self, PgPool},
    schema::users,
    startup::Application,
    users::{Role, User},
};
use tokio::{sync::oneshot, task::JoinHandle};
use uuid::Uuid;

pub struct Target {
    /// Postgres server of the scratch databases (`DATABASE_URL`'s server).
    pub database_url: String,
    pub redis_url: String,
    /// A running server to load instead of an in-process one.
    pub url: Option<String>,
    /// The running server's `JWT_SECRET` (with `url`).
    pub jwt_secret: Option<String>,
}

struct InProcess {
    stop: oneshot::Sender<()>,
    serving: JoinHandle<anyhow::Result<()>>,
    redis_url: String,
    redis_prefix: String,
    /// To start more servers on the same database.
    config: Config,
}

/// A `mini-compete serve` process on the same database, without workers: its memory is
/// its own (an in-process server's would include the load tool's clients).
pub struct ServerProcess {
    pub graphql_url: String,
    child: tokio::process::Child,
}

impl ServerProcess {
    /// The most memory the process has held (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        status_mib(&status, "VmHWM:")
    }

    /// Stops it as an operator would (SIGTERM) and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("the server process did not stop")??;
        anyhow::ensure!(status.success(), "the server process ended with {status}");
        Ok(())
    }
}

pub struct Env {
    pub graphql_url: String,
    pub database_url: String,
    pub db: PgPool,
    jwt: JwtKeys,
    server: Option<InProcess>,
}

/// Bulk-made participants (and their tokens), never logged in: login cost is not measured.
pub struct Participant {
    pub id: Uuid,
    pub token: String,
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Env {
    /// A fresh database (and in-process server with `workers` worker slots), or, with
    /// `--url`, the given server and its database.
    pub async fn start(target: &Target, workers: usize) -> anyhow::Result<Self> {
        if let Some(url) = &target.url {
            let secret = target
                .jwt_secret
                .as_deref()
                .context("--url needs --jwt-secret (the server's JWT_SECRET)")?;
            return Ok(Self {
                graphql_url: format!("{}/graphql", url.trim_end_matches('/')),
                database_url: target.database_url.clone(),
                db: db::pool(&target.database_url, 8),
                jwt: JwtKeys::new(secret.as_bytes(), 24 * 3600),
                server: None,
            });
        }
        let name = format!("loadgen_{}", Uuid::new_v4().simple());
        let mut url = url::Url::parse(&target.database_url).context("DATABASE_URL")?;
        url.set_path(&format!("/{name}"));
        let secret = Uuid::new_v4().simple().to_string().repeat(2);
        let config = Config {
            database_url: url.to_string(),
            redis_url: target.redis_url.clone(),
            jwt_secret: Some(secret.clone()),
            jwt_ttl_secs: 24 * 3600,
            redis_key_prefix: name.clone(),
            bind_addr: "127.0.0.1:0".parse()?,
            // login-flood measures what hashing does to the rest of the API, so its logins
            // must reach the hasher rather than the rate limit.
            rate_limits: RateLimits {
                per_address: u32::MAX,
                per_account: u32::MAX,
                ..RateLimits::default()
            },
            jobs: JobsConfig {
                worker_concurrency: workers,
                job_drain_secs: 5,
                ..JobsConfig::default()
            },
            ..Config::default()
        };
        let app = Application::build(&config).await?;
        let addr = app.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            graphql_url: format!("http://{addr}/graphql"),
            database_url: config.database_url.clone(),
            db: db::pool(&config.database_url, 8),
            jwt: JwtKeys::new(secret.as_bytes(), 24 * 3600),
            server: Some(InProcess {
                stop,
                serving,
                redis_url: config.redis_url.clone(),
                redis_prefix: name,
                config,
            }),
        })
    }

    /// `binary serve` on this database, without workers, with `environment` on top.
    pub async fn spawn_server(
        &self,
        binary: &std::path::Path,
        environment: &[(&str, &str)],
    ) -> anyhow::Result<ServerProcess> {
        let server = self
            .server
            .as_ref()
            .context("a server process needs an in-process first one (no --url)")?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = tokio::process::Command::new(binary)
            .arg("serve")
            .env("DATABASE_URL", &server.config.database_url)
            .env("REDIS_URL", &server.redis_url)
            .env("REDIS_KEY_PREFIX", &server.redis_prefix)
            .env(
                "JWT_SECRET",
                server.config.jwt_secret.as_deref().unwrap_or_default(),
            )
            .env("BIND_ADDR", addr.to_string())
            .env("WORKER_CONCURRENCY", "0")
            .env("RUST_LOG", "warn")
            .envs(environment.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it: cargo build --release --bin mini-compete)",
                    binary.display()
                )
            })?;
        let process = ServerProcess {
            graphql_url: format!("http://{addr}/graphql"),
            child,
        };
        let ready = format!("http://{addr}/readyz");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = reqwest::get(&ready).await
                && response.status().is_success()
            {
                return Ok(process);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the server process was not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn in_process(&self) -> bool {
        self.server.is_some()
    }

    /// Stops the in-process server and drops everything it made.
    pub async fn finish(self) -> anyhow::Result<()> {
        let Some(server) = self.server else {
            return Ok(());
        };
        let _ = server.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), server.serving)
            .await
            .context("server did not stop")???;
        drop(self.db);
        db::drop_database(&self.database_url).await?;
        mini_compete::redis::delete_prefixed(&server.redis_url, &server.redis_prefix).await
    }

    pub async fn connection(&self) -> anyhow::Result<AsyncPgConnection> {
        Ok(AsyncPgConnection::establish(&self.database_url).await?)
    }

    pub async fn participants(&self, count: usize) -> anyhow::Result<Vec<Participant>> {
        let mut conn = self.connection().await?;
        let batch = Uuid::new_v4().simple().to_string();
        let created: Vec<User> = sql_query(
            "INSERT INTO users (name, email, password_hash, role)
             SELECT 'Load ' || g, $1 || '-' || g || '@load.example', '!', 'PARTICIPANT'
               FROM generate_series(1, $2) g
             RETURNING id, name, email, role, created_at",
        )
        .bind::<Text, _>(&batch)
        .bind::<Integer, _>(i32::try_from(count)?)
        .load::<UserRow>(&mut conn)
        .await?
        .into_iter()
        .map(User::from)
        .collect();
        created
            .iter()
            .map(|user| {
                Ok(Participant {
                    id: user.id,
                    token: self.jwt.issue(user).map_err(|e| anyhow::anyhow!("{e}"))?,
                })
            })
            .collect()
    }

    /// `count` competitions of one organizer, open for a week, `capacity` seats each.
    /// Runs `statements` on the scenario's database, in order.
    pub async fn execute(&self, statements: &[&str]) -> anyhow::Result<()> {
        let mut conn = self.connection().await?;
        for sql in statements {
            sql_query(*sql).execute(&mut conn).await?;
        }
        Ok(())
    }

    /// A token of the organizer of `competitions`' competitions.
    pub async fn organizer_token(&self) -> anyhow::Result<String> {
        let organizer: User = sql_query(
            "SELECT id, name, email, role, created_at FROM users WHERE role = 'ORGANIZER' LIMIT 1",
        )
        .get_result::<UserRow>(&mut self.connection().await?)
        .await?
        .into();
        self.jwt
            .issue(&organizer)
            .map_err(|error| anyhow::anyhow!("{error}"))
    }

    pub async fn competitions(&self, count: usize, capacity: i32) -> anyhow::Result<Vec<Uuid>> {
        let mut conn = self.connection().await?;
        let organizer: Uuid = diesel::insert_into(users::table)
            .values((
                users::name.eq("Load Organizer"),
                users::email.eq(format!("{}@organizer.example", Uuid::new_v4().simple())),
                users::password_hash.eq("!"),
                users::role.eq(Role::Organizer),
            ))
            .returning(users::id)
            .get_result(&mut conn)
            .await?;
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        let ids = sql_query(
            "INSERT INTO competitions (organizer_id, title, description, capacity, reg_deadline, start_date)
             SELECT $1, 'Load Cup ' || g, 'Made by loadgen', $2, now() + interval '7 days',
                    now() + interval '8 days'
               FROM generate_series(1, $3) g
             RETURNING id",
        )
        .bind::<diesel::sql_types::Uuid, _>(organizer)
        .bind::<Integer, _>(capacity)
        .bind::<Integer, _>(i32::try_from(count)?)
        .load::<Id>(&mut conn)
        .await?;
        Ok(ids.into_iter().map(|row| row.id).collect())
    }

    /// Seats taken beyond capacity, summed over competitions, counted from the rows.
    pub async fn oversold(&self) -> anyhow::Result<i64> {
        self.number(
            "SELECT coalesce(sum(greatest(taken - capacity, 0)), 0)::bigint AS n FROM (
                SELECT c.capacity, count(r.id) AS taken
                  FROM competitions c
                  LEFT JOIN registrations r ON r.competition_id = c.id
                        AND r.status IN ('PENDING', 'CONFIRMED')
                 GROUP BY c.id) seats",
        )
        .await
    }

    /// Rows of (`id`, `user_id`) uuids, e.g. registrations and who holds them.
    pub async fn pairs(&self, sql: &str) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
        #[derive(QueryableByName)]
        struct Pair {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            user_id: Uuid,
        }
        let mut conn = self.connection().await?;
        let rows: Vec<Pair> = sql_query(sql).load(&mut conn).await?;
        Ok(rows.into_iter().map(|row| (row.id, row.user_id)).collect())
    }

    pub async fn number(&self, sql: &str) -> anyhow::Result<i64> {
        let mut conn = self.connection().await?;
        Ok(sql_query(sql).get_result::<Number>(&mut conn).await?.n)
    }
}

#[derive(QueryableByName)]
#[diesel(table_name = users)]
struct UserRow {
    id: Uuid,
    name: String,
    email: String,
    role: Role,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            email: row.email,
            role: row.role,
            created_at: row.created_at,
        }
    }
}

/// This process's resident memory in MiB (the in-process server and the load generator).
pub fn rss_mib() -> Option<f64> {
    status_mib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
}

/// A `/proc/<pid>/status` memory figure, in MiB.
fn status_mib(status: &str, field: &str) -> Option<f64> {
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
