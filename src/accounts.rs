//! The accounts that bearer tokens name, as recently read from the database.
//!
//! A token stays valid after its account is deleted (or after the database was reset under
//! the same secret); every operation must then answer `UNAUTHENTICATED`, and the role that
//! counts is the account's current one, not the one the token was issued with. So every
//! authenticated request needs the account, and a flash crowd of fresh tokens would need a
//! query each. Two things keep that off the hot path: an account read is trusted for a
//! minute (log-in and sign-up put it there at once), and lookups are coalesced: while one
//! query is out, every account asked for meanwhile waits for the next, which reads them all
//! (no timer: a lone lookup goes at once).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use diesel::sql_types::{Array, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    auth::Claims,
    db::{PgPool, prepared},
    error::{AppError, AppResult, internal},
    users::{Role, User},
};

/// How long an account read is trusted without asking the database again.
const RECHECK_AFTER: Duration = Duration::from_secs(60);
const CACHED: usize = 100_000;
const FIND_ROLES: &str = "SELECT id, role FROM users WHERE id = ANY($1)";

type Waiter = oneshot::Sender<AppResult<Option<Role>>>;

#[derive(Clone)]
pub struct Accounts(Arc<Inner>);

struct Inner {
    db: PgPool,
    known: quick_cache::sync::Cache<Uuid, (Role, Instant)>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: HashMap<Uuid, Vec<Waiter>>,
    reading: bool,
}

#[derive(diesel::QueryableByName)]
struct AccountRole {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    role: Role,
}

impl Accounts {
    pub fn new(db: PgPool) -> Self {
        Self(Arc::new(Inner {
            db,
            known: quick_cache::sync::Cache::new(CACHED),
            queue: Mutex::default(),
        }))
    }

    /// The claims of a verified token, checked against the account as it is now.
    pub async fn confirm(&self, mut claims: Claims) -> AppResult<Claims> {
        if let Some((role, seen)) = self.0.known.get(&claims.sub)
            && seen.elapsed() < RECHECK_AFTER
        {
            claims.role = role;
            return Ok(claims);
        }
        let role = self.read(claims.sub).await?.ok_or(AppError::ACCOUNT_GONE)?;
        claims.role = role;
        Ok(claims)
    }

    /// An account just read or written elsewhere (log-in, sign-up).
    pub fn remember(&self, user: &User) {
        self.0.known.insert(user.id, (user.role, Instant::now()));
    }

    async fn read(&self, id: Uuid) -> AppResult<Option<Role>> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut queue = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.entry(id).or_default().push(answer);
            !std::mem::replace(&mut queue.reading, true)
        };
        if lead {
            // A task of its own: a request that gives up must not strand the others.
            tokio::spawn(self.clone().read_queued());
        }
        answered
            .await
            .unwrap_or_else(|_| Err(internal("an account lookup was dropped")))
    }

    /// Reads every queued account, batch after batch, until none is waiting.
    async fn read_queued(self) {
        loop {
            let batch = {
                let mut queue = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.waiting.is_empty() {
                    queue.reading = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            let ids: Vec<Uuid> = batch.keys().copied().collect();
            let found = self.roles(ids).await;
            for (id, waiters) in batch {
                let answer = found.as_ref().map(|roles| roles.get(&id).copied());
                for waiter in waiters {
                    let _ = waiter.send(answer.map_err(Clone::clone));
                }
            }
        }
    }

    async fn roles(&self, ids: Vec<Uuid>) -> AppResult<HashMap<Uuid, Role>> {
        let mut conn = self.0.db.get().await?;
        let rows: Vec<AccountRole> = prepared(FIND_ROLES)
            .bind::<Array<SqlUuid>, _>(ids)
            .load(&mut conn)
            .await?;
        let now = Instant::now();
        Ok(rows
            .into_iter()
            .map(|row| {
                self.0.known.insert(row.id, (row.role, now));
                (row.id, row.role)
            })
            .collect())
    }
}
