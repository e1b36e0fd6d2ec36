//! First registration attempts of concurrent requests, taken together in one statement.
//!
//! Registering one participant costs Postgres far more around its rows than for them: a
//! statement's start (its relations, indexes and locks), a round trip and a commit (a WAL
//! flush). Requests registering at the same moment share those: each queues its attempt
//! and waits; a few lanes take turns with the pool like any request, and each takes every
//! attempt queued by then and registers them all with `REGISTER_TOGETHER`, one statement
//! and one commit. There is no timer: a lone registration is a batch of one, and batches
//! grow only while the lanes are busy anyway.
//!
//! The statement takes only what is certain: a fresh participant, a fresh key and a free
//! seat of an open competition. Every other attempt (a full or closed competition, a
//! participant registered before, a key used before, a failed statement) is answered "not
//! taken", and the request goes its own way with `registrations::REGISTER` and its
//! companions, which tell every case apart exactly as before. A lost connection is each
//! request's error, as it would have been alone.

use std::{
    collections::{HashMap, HashSet},
    pin::pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use diesel::{
    QueryableByName,
    sql_types::{Array, BigInt, Text, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::{
    db::{Lent, PgPool, prepared},
    error::{AppResult, connection_lost},
    jobs,
    registrations::Registration,
};

/// Statements registering at once: each lane runs one at a time. More lanes overlap more
/// commits; fewer make larger batches.
const LANES: usize = 4;

/// Most attempts one statement takes: larger batches hold their competitions' row locks
/// longer for little more saving.
const MOST_TOGETHER: usize = 64;

/// Registers the participants `$1` for the competitions `$2` under the idempotency keys
/// `$3` (arrays side by side), with each registration's confirmation task (`$4` task name,
/// `$5` queue) and key record, in one statement; answers the registrations made, with the
/// 1-based position of their attempt. The competitions' rows are locked in id order (two
/// batches cannot deadlock on them), and each takes, in attempt order, at most its free
/// seats. Left out, to go their own way: a participant's second attempt for the same
/// competition, a key with a record, a participant registered already (`ON CONFLICT`), and
/// attempts for which no seat is left. A key recorded meanwhile by another transaction
/// violates `idempotency_keys_pkey` and aborts the statement, which then took nothing.
/// Each key is looked up by a `LATERAL … LIMIT 1` rather than `NOT EXISTS`: the cached
/// plan is made on the statement's sixth run, when the keys' table may be nearly empty,
/// and an anti-join planned then hashed the whole table on every run after (a spread run
/// fell to 1 700 registrations a second).
const REGISTER_TOGETHER: &str = "
WITH attempt AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY
        AS a (user_id, competition_id, key, position)
), open AS (
    SELECT id, capacity - registered_count AS free FROM competitions
     WHERE id = ANY($2) AND registered_count < capacity
       AND reg_deadline > now() AND cancelled_at IS NULL
     ORDER BY id
       FOR NO KEY UPDATE
), fresh AS (
    SELECT DISTINCT ON (a.user_id, a.competition_id) a.* FROM attempt a
      LEFT JOIN LATERAL (
          SELECT true AS used FROM idempotency_keys k
           WHERE k.user_id = a.user_id AND k.key = a.key
           LIMIT 1
      ) record ON true
     WHERE record.used IS NULL
     ORDER BY a.user_id, a.competition_id, a.position
), chosen AS (
    SELECT fresh.* FROM (
        SELECT *, row_number() OVER (PARTITION BY competition_id ORDER BY position) AS place
          FROM fresh
    ) fresh
      JOIN open ON open.id = fresh.competition_id
     WHERE fresh.place <= open.free
), registered AS (
    INSERT INTO registrations (user_id, competition_id)
    SELECT user_id, competition_id FROM chosen ORDER BY position
        ON CONFLICT ON CONSTRAINT registrations_one_per_user DO NOTHING
    RETURNING *
), seated AS (
    UPDATE competitions c SET registered_count = c.registered_count + taken.seats
      FROM (SELECT competition_id, count(*) AS seats FROM registered GROUP BY competition_id)
        AS taken
     WHERE c.id = taken.competition_id
), task AS (
    INSERT INTO fang_tasks (metadata, task_type)
    SELECT jsonb_build_object('type', $4::text, 'registration_id', id, 'activation', activation),
           $5
      FROM registered
), recorded AS (
    INSERT INTO idempotency_keys (user_id, key, competition_id, registration_id)
    SELECT r.user_id, c.key, r.competition_id, r.id
      FROM registered r JOIN chosen c USING (user_id, competition_id)
)
SELECT c.position, r.id, r.user_id, r.competition_id, r.status, r.created_at, r.confirmed_at,
       r.cancelled_at, r.waitlist_seq
  FROM registered r JOIN chosen c USING (user_id, competition_id)";

/// Gathers first attempts; one per process, shared by every request.
#[derive(Clone)]
pub struct Registrar {
    db: PgPool,
    shared: Arc<Shared>,
    /// Stops the lanes when the last handle goes.
    _lanes: Arc<DropGuard>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Rung when there may be attempts for a lane to take.
    work: Notify,
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    waiting: Vec<Waiting>,
    /// Competitions a lane is registering for.
    held: HashSet<Uuid>,
}

/// An attempt waiting to be taken.
struct Waiting {
    id: u64,
    user_id: Uuid,
    competition_id: Uuid,
    key: String,
    /// The registration made; None: the request goes its own way; or Postgres's loss.
    answer: oneshot::Sender<AppResult<Option<Registration>>>,
}

/// An attempt in the queue; leaves it when its request goes away before it is taken.
struct Queued<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.shared
            .lock()
            .waiting
            .retain(|waiting| waiting.id != self.id);
    }
}

/// The competitions one statement registers for, held until it is done with them.
struct Hold<'a> {
    shared: &'a Shared,
    competitions: HashSet<Uuid>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        for competition in &self.competitions {
            queue.held.remove(competition);
        }
        drop(queue);
        // Attempts that waited for these competitions can be taken now.
        self.shared.work.notify_one();
    }
}

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(embed)]
    registration: Registration,
}

impl Registrar {
    /// The registrar and its lanes, which run on the current runtime until the last
    /// handle is dropped.
    pub fn spawn(db: PgPool) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            work: Notify::new(),
        });
        let stop = CancellationToken::new();
        for _ in 0..LANES {
            tokio::spawn(lane(db.clone(), shared.clone(), stop.clone()));
        }
        Self {
            db,
            shared,
            _lanes: Arc::new(stop.drop_guard()),
        }
    }

    /// The pool the registrar takes its connections from.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Registers `user_id` for `competition_id` under `key` together with whatever other
    /// requests are registering now, if certain (see the module); None when the request
    /// must go its own way. Postgres unavailable (no connection, or the statement's
    /// connection lost) is an error, as it would have been alone.
    pub async fn first_attempt(
        &self,
        user_id: Uuid,
        competition_id: Uuid,
        key: &str,
    ) -> AppResult<Option<Registration>> {
        let (answer, answered) = oneshot::channel();
        let _queued = self.shared.enqueue(user_id, competition_id, key, answer);
        self.shared.work.notify_one();
        answered.await.unwrap_or(Ok(None))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(
        &self,
        user_id: Uuid,
        competition_id: Uuid,
        key: &str,
        answer: oneshot::Sender<AppResult<Option<Registration>>>,
    ) -> Queued<'_> {
        let mut queue = self.lock();
        let id = queue.next_id;
        queue.next_id += 1;
        queue.waiting.push(Waiting {
            id,
            user_id,
            competition_id,
            key: key.to_owned(),
            answer,
        });
        Queued { shared: self, id }
    }

    /// The oldest attempts waiting whose competitions no other lane holds, as many as one
    /// statement takes, and the hold on their competitions. (Two statements locking some
    /// of the same rows would queue behind each other, and behind them every statement
    /// needing one of their other rows.)
    fn take(&self) -> Option<(Hold<'_>, Vec<Waiting>)> {
        let mut queue = self.lock();
        let Queue { waiting, held, .. } = &mut *queue;
        let mut batch = Vec::new();
        let mut competitions = HashSet::new();
        let mut left = Vec::with_capacity(waiting.len());
        for attempt in waiting.drain(..) {
            let id = attempt.competition_id;
            if batch.len() < MOST_TOGETHER && (competitions.contains(&id) || !held.contains(&id)) {
                competitions.insert(id);
                batch.push(attempt);
            } else {
                left.push(attempt);
            }
        }
        *waiting = left;
        if batch.is_empty() {
            return None;
        }
        held.extend(&competitions);
        let hold = Hold {
            shared: self,
            competitions,
        };
        Some((hold, batch))
    }
}

/// Takes attempts and registers them, one statement at a time, until `stop`.
async fn lane(db: PgPool, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let (hold, batch) = loop {
            let mut work = pin!(shared.work.notified());
            // Rings from now on count, so none is missed between looking and waiting.
            work.as_mut().enable();
            if let Some(next) = shared.take() {
                break next;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = work => {}
            }
        };
        // Another lane may take what else is waiting meanwhile.
        shared.work.notify_one();
        let taken = match db.get_owned().await {
            Ok(mut connection) => register(&mut connection, &batch).await,
            Err(error) => Err(error.into()),
        };
        drop(hold);
        answer(batch, taken);
    }
}

/// The registrations `REGISTER_TOGETHER` made for `batch`, by the attempt's position; an
/// error when the connection was lost.
async fn register(
    connection: &mut Lent<'static>,
    batch: &[Waiting],
) -> AppResult<HashMap<i64, Registration>> {
    let mut users = Vec::with_capacity(batch.len());
    let mut competitions = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    for waiting in batch {
        users.push(waiting.user_id);
        competitions.push(waiting.competition_id);
        keys.push(waiting.key.clone());
    }
    let taken = prepared(REGISTER_TOGETHER)
        .bind::<Array<SqlUuid>, _>(users)
        .bind::<Array<SqlUuid>, _>(competitions)
        .bind::<Array<Text>, _>(keys)
        .bind::<Text, _>(jobs::CONFIRMATION_TASK)
        .bind::<Text, _>(jobs::CONFIRMATION_QUEUE)
        .load::<Taken>(&mut **connection)
        .await;
    match taken {
        Ok(rows) => Ok(rows
            .into_iter()
            .map(|row| (row.position, row.registration))
            .collect()),
        Err(error) if connection_lost(&error) => Err(error.into()),
        Err(error) => {
            // A key recorded meanwhile, an account deleted, a deadlock: each request
            // learns exactly which on its own way.
            tracing::debug!(%error, attempts = batch.len(), "registering together failed");
            Ok(HashMap::new())
        }
    }
}

/// Answers each of `attempts` with its registration in `taken` (by position), or else "go
/// your own way", or the error.
fn answer(attempts: Vec<Waiting>, taken: AppResult<HashMap<i64, Registration>>) {
    for (position, attempt) in (1..).zip(attempts) {
        let answer = match &taken {
            Ok(taken) => Ok(taken.get(&position).cloned()),
            Err(error) => Err(error.clone()),
        };
        // A request that went away meanwhile finds its key's record when it comes back.
        let _ = attempt.answer.send(answer);
    }
}
