//! Postgres: the connection pool, database creation and embedded migrations.

use std::{
    marker::PhantomData,
    ops::{Deref, DerefMut},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use diesel::{
    OptionalExtension, QueryResult, QueryableByName,
    pg::Pg,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    serialize::ToSql,
    sql_query,
    sql_types::{HasSqlType, Text},
};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod, bb8,
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

/// The Postgres pool, lending connections in the order they were asked for.
///
/// bb8 alone is not fair: a returned connection wakes the longest waiter, but a caller that
/// arrives meanwhile takes it first, and the woken waiter queues again at the back. Under a
/// flash crowd (more requests than connections) some requests lost many turns, which was most
/// of the latency tail. A FIFO semaphore with one permit per connection orders the callers; a
/// permit's holder always finds a connection, because every loan is returned to the pool
/// before its permit is released.
#[derive(Clone)]
pub struct PgPool {
    connections: bb8::Pool<AsyncPgConnection>,
    turns: Arc<Semaphore>,
    /// Callers that waited for their turn, and that gave up: bb8 no longer sees them wait.
    waited: Arc<AtomicU64>,
    timed_out: Arc<AtomicU64>,
}

/// The pool as `/metrics` reports it.
pub struct PoolState {
    pub connections: u32,
    pub idle_connections: u32,
    /// Callers that waited for a connection (their turn, or one being opened).
    pub waited: u64,
    /// Callers that gave up waiting.
    pub timed_out: u64,
}

/// A connection on loan; fields drop in order, so the connection is back in the pool before
/// the turn is handed to the next caller.
pub struct Lent<'pool> {
    connection: bb8::PooledConnection<'pool, AsyncPgConnection>,
    _turn: OwnedSemaphorePermit,
}

impl Deref for Lent<'_> {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.connection
    }
}

impl DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.connection
    }
}

/// How long a caller waits for a connection, its turn included, before it is told the
/// database is unavailable.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

impl PgPool {
    /// A connection, after every caller that asked before.
    pub async fn get(&self) -> Result<Lent<'_>, bb8::RunError> {
        self.in_turn(self.connections.get()).await
    }

    /// `get`, for a holder that cannot borrow the pool (a task run by fang).
    pub async fn get_owned(&self) -> Result<Lent<'static>, bb8::RunError> {
        self.in_turn(self.connections.get_owned()).await
    }

    /// Waits for this caller's turn, then for `connection`.
    async fn in_turn<'pool>(
        &self,
        connection: impl Future<
            Output = Result<bb8::PooledConnection<'pool, AsyncPgConnection>, bb8::RunError>,
        >,
    ) -> Result<Lent<'pool>, bb8::RunError> {
        let lent = async {
            let turn = match Arc::clone(&self.turns).try_acquire_owned() {
                Ok(turn) => turn,
                Err(_) => {
                    self.waited.fetch_add(1, Ordering::Relaxed);
                    Arc::clone(&self.turns)
                        .acquire_owned()
                        .await
                        .expect("the pool never closes its semaphore")
                }
            };
            Ok(Lent {
                connection: connection.await?,
                _turn: turn,
            })
        };
        let lent = tokio::time::timeout(CONNECTION_TIMEOUT, lent).await;
        lent.unwrap_or_else(|_| {
            self.timed_out.fetch_add(1, Ordering::Relaxed);
            Err(bb8::RunError::TimedOut)
        })
    }

    /// Connections open and idle, and callers that waited, for `/metrics`.
    pub fn state(&self) -> PoolState {
        let state = self.connections.state();
        PoolState {
            connections: state.connections,
            idle_connections: state.idle_connections,
            // A caller with its turn waits in bb8 only while a connection is being opened.
            waited: AtomicU64::load(&self.waited, Ordering::Relaxed) + state.statistics.get_waited,
            timed_out: AtomicU64::load(&self.timed_out, Ordering::Relaxed),
        }
    }
}

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Serialises migrations of concurrent processes (serve + workers starting together).
const MIGRATION_LOCK_ID: i64 = 0x6d69_6e69_636f_6d70;

/// A pool that does not connect until first used, so the server can start while Postgres
/// is down and recover when it returns.
pub fn pool(database_url: &str, max_size: u32) -> PgPool {
    let mut config = ManagerConfig::default();
    config.recycling_method =
        RecyclingMethod::CustomFunction(Box::new(|conn| Box::pin(async move { lendable(conn) })));
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    PgPool {
        connections: bb8::Pool::builder()
            .max_size(max_size)
            .connection_timeout(CONNECTION_TIMEOUT)
            .build_unchecked(manager),
        turns: Arc::new(Semaphore::new(max_size as usize)),
        waited: Arc::default(),
        timed_out: Arc::default(),
    }
}

/// Whether a pooled connection may be lent, checked without a round trip: the default
/// check (`SELECT 1` before every loan) would cost each request one more round trip than
/// its own statements. A connection whose server ended it (a restart, a terminated
/// backend) has its socket closed, which `is_broken` sees; one the server ends while it
/// is lent fails that request with `SERVICE_UNAVAILABLE` and is dropped on its return.
fn lendable(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    if conn.is_broken() {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new("the connection was closed".to_owned()),
        ))
    } else {
        Ok(())
    }
}

/// Creates the database if it is missing, then runs pending migrations.
pub async fn prepare(database_url: &str) -> anyhow::Result<()> {
    create_database_if_missing(database_url).await?;
    run_migrations(database_url).await
}

/// What Postgres (or the URL) says when waiting will not help: the credentials, the role
/// or its rights are wrong, or the URL is.
const FATAL: [&str; 8] = [
    "password authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
    "is not permitted to log in",
    "role \"",
    "not a valid URL",
    "invalid connection string",
    "names no database",
];

/// True when `error` (from connecting, creating or migrating) will not go away by
/// itself; anything else — refused connections, a server starting up — is worth a retry.
pub fn is_fatal(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    FATAL.iter().any(|cause| text.contains(cause))
}

/// `prepare`, retried every 2 s while Postgres is unreachable; fails at once, naming the
/// cause, on what waiting will not fix. `None` when `stop` ended the wait.
pub async fn prepare_when_reachable(
    database_url: &str,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<anyhow::Result<()>> {
    loop {
        match prepare(database_url).await {
            Ok(()) => return Some(Ok(())),
            Err(error) if is_fatal(&error) => return Some(Err(error)),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "database not ready; retrying");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Splits `postgres://…/name?opts` into the same server's `postgres` database URL and `name`.
pub fn maintenance_url(database_url: &str) -> anyhow::Result<(String, String)> {
    let mut url = Url::parse(database_url).context("DATABASE_URL is not a valid URL")?;
    let name = url.path().trim_start_matches('/').to_owned();
    anyhow::ensure!(!name.is_empty(), "DATABASE_URL names no database");
    url.set_path("/postgres");
    Ok((url.into(), name))
}

#[derive(QueryableByName)]
struct DatabaseName {
    #[diesel(sql_type = Text)]
    #[allow(dead_code, reason = "only its presence is read")]
    datname: String,
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> QueryResult<bool> {
    sql_query("SELECT datname FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .get_result::<DatabaseName>(conn)
        .await
        .optional()
        .map(|found| found.is_some())
}

/// Checks out a connection and runs a trivial query.
pub async fn ping(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    sql_query("SELECT 1").execute(&mut *conn).await?;
    Ok(())
}

pub async fn create_database_if_missing(database_url: &str) -> anyhow::Result<()> {
    let (maintenance, name) = maintenance_url(database_url)?;
    let mut conn = AsyncPgConnection::establish(&maintenance)
        .await
        .context("cannot connect to the Postgres server")?;
    if database_exists(&mut conn, &name).await? {
        return Ok(());
    }
    let created = sql_query(format!("CREATE DATABASE {}", quote_identifier(&name)))
        .execute(&mut conn)
        .await;
    // Another process may have created it in between: only its absence is an error.
    if let Err(error) = created {
        anyhow::ensure!(
            database_exists(&mut conn, &name).await?,
            "cannot create database {name}: {error}"
        );
    }
    tracing::info!(database = %name, "created database");
    Ok(())
}

pub async fn drop_database(database_url: &str) -> anyhow::Result<()> {
    let (maintenance, name) = maintenance_url(database_url)?;
    let mut conn = AsyncPgConnection::establish(&maintenance).await?;
    sql_query(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_identifier(&name)
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Runs pending migrations under an advisory lock. Needs a multi-thread tokio runtime.
pub async fn run_migrations(database_url: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url)
        .await
        .context("cannot connect to the database")?;
    sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
        .execute(&mut conn)
        .await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map_err(|error| anyhow::anyhow!("migration failed: {error}"))?
        .len();
    let mut conn = harness.into_inner();
    sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
        .execute(&mut conn)
        .await?;
    if applied > 0 {
        tracing::info!(applied, "ran migrations");
    }
    Ok(())
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Stores a fieldless enum as one of a fixed set of `text` values (each table guards the set
/// with a CHECK constraint). The enum derives `AsExpression` and `FromSqlRow` with
/// `sql_type = Text`.
macro_rules! text_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                match bytes.as_bytes() {
                    $(b if b == $text.as_bytes() => Ok(Self::$variant),)+
                    other => Err(format!(
                        "unknown {} {:?}",
                        stringify!($name),
                        String::from_utf8_lossy(other)
                    )
                    .into()),
                }
            }
        }
    };
}
pub(crate) use text_enum;

/// A fixed SQL statement that diesel prepares once per connection and then reuses.
///
/// diesel's `sql_query` marks itself unsafe to cache, so every execution costs an extra
/// round trip to prepare and a fresh plan of the statement; the registration CTE runs
/// thousands of times a second. `$n` in `sql` is bound to the `n`-th `bind` (repeats allowed).
pub struct PreparedSql {
    sql: &'static str,
    binds: Vec<Box<dyn Bind>>,
}

/// `sql` prepared once per connection (see `PreparedSql`).
pub fn prepared(sql: &'static str) -> PreparedSql {
    PreparedSql {
        sql,
        binds: Vec::new(),
    }
}

impl PreparedSql {
    pub fn bind<ST, T>(mut self, value: T) -> Self
    where
        ST: 'static,
        T: ToSql<ST, Pg> + Send + Sync + 'static,
        Pg: HasSqlType<ST>,
    {
        self.binds
            .push(Box::new(TypedBind::<ST, T>(value, PhantomData)));
        self
    }
}

trait Bind: Send + Sync {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct TypedBind<ST, T>(T, PhantomData<fn() -> ST>);

impl<ST, T> Bind for TypedBind<ST, T>
where
    T: ToSql<ST, Pg> + Send + Sync,
    Pg: HasSqlType<ST>,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, T>(&self.0)
    }
}

impl QueryFragment<Pg> for PreparedSql {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut rest = self.sql;
        while let Some(dollar) = rest.find('$') {
            out.push_sql(&rest[..dollar]);
            let digits = rest[dollar + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - dollar - 1);
            let number = &rest[dollar + 1..dollar + 1 + digits];
            let bind = number
                .parse::<usize>()
                .ok()
                .and_then(|n| self.binds.get(n.checked_sub(1)?))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("no bind for ${number} in a prepared statement").into(),
                    )
                })?;
            bind.push(&mut out)?;
            rest = &rest[dollar + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl QueryId for PreparedSql {
    type QueryId = ();
    /// Keyed by its SQL text in diesel's statement cache.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for PreparedSql {
    type SqlType = diesel::sql_types::Untyped;
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::{Integer, Text};

    use super::*;

    /// Every `$n` becomes its own placeholder bound to the n-th value, repeats included.
    #[test]
    fn placeholders_are_bound_by_number() {
        let query = prepared("SELECT $2, $1, $2::text")
            .bind::<Integer, _>(7)
            .bind::<Text, _>("x");
        let rendered = diesel::debug_query::<Pg, _>(&query).to_string();
        assert_eq!(
            rendered,
            "SELECT $1, $2, $3::text -- binds: [\"x\", 7, \"x\"]"
        );
    }
}
