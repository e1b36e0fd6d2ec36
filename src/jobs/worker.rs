//! The worker loop: claims due tasks, runs them with bounded concurrency, retries with
//! exponential backoff, records the last failure in `failed_jobs`, rescues tasks of dead
//! workers and drains on shutdown.
//!
//! Claiming is one statement (`SELECT … FOR UPDATE SKIP LOCKED` feeding an `UPDATE`), so
//! two live workers never take the same task. Under load it takes tasks in batches (once
//! half the slots are free) and deletes the tasks finished since the last claim in the same
//! statement. The first attempt of a confirmation, nearly all the work, is done by the
//! claiming statement itself (set-based, then the task deleted); a confirmation that failed
//! once is claimed and run like any other task, alone if it fails in a batch. So Postgres
//! sees well under one queue statement per task besides its effect.
//! Idle workers sleep until a `NOTIFY` on `WAKE_CHANNEL` (sent by `Waker`) or the poll
//! interval, whichever comes first.
//!
//! Leases, as graphile-worker and Oban keep them: a process renews `updated_at` of every
//! task it holds (running, finished but not yet deleted, or waiting to record its outcome)
//! every third of `JOB_STALL_TIMEOUT_SECS`, so only a dead worker's tasks go stale and are
//! rescued. When Postgres goes away mid-task the worker keeps its tasks and runs them again
//! once Postgres is back, without counting an attempt; and no one rescues anything until
//! Postgres, and the rescuer's own connection, have been up for a whole lease, so that the
//! live holders renewed theirs first.

use std::{
    collections::HashSet,
    pin::pin,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use anyhow::Context;
use diesel::{
    QueryableByName, sql_query,
    sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use fang::{AsyncQueue, AsyncQueueable, AsyncRunnable, FangError, Scheduled};
use futures_util::StreamExt;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    CONFIRMATION_QUEUE, CONFIRMATION_TASK, ConfirmRegistration, HOUSEKEEPING_QUEUE, MAX_ATTEMPTS,
    PruneIdempotencyKeys, QUEUES, REMINDER_QUEUE, SendReminders, WAKE_CHANNEL,
    tasks::{TASK, TaskContext, UNAVAILABLE},
};
use crate::{
    config::JobsConfig,
    db::{PgPool, prepared},
    error::AppError,
    live::{Change, Changes},
    mail, metrics,
};

/// Confirmations confirmed together in one statement.
const CONFIRMATION_BATCH: usize = 64;
/// The least time between two claims that found some work but not a full claim: what a
/// worker's batches gather at a trickle. A full claim means a backlog, which is claimed again
/// as soon as slots are free: a fixed pause there would cap the confirmations per second.
const GATHER: Duration = Duration::from_millis(100);
/// How long to wait before reconnecting the LISTEN connection or retrying the start.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Under load, at most one `NOTIFY` per this interval and process: a wake-up per round trip
/// would cost Postgres nearly a statement per registration, while busy workers claim again
/// on their own.
const MIN_WAKE_INTERVAL: Duration = Duration::from_millis(10);

/// Wakes idle workers of every process after tasks were queued. Wake-ups are coalesced:
/// at most one `NOTIFY` is in flight per process, however many registrations commit, and it
/// is sent outside the registration's transaction (a NOTIFY inside would serialise commits).
#[derive(Clone)]
pub struct Waker {
    pending: mpsc::Sender<()>,
}

impl Waker {
    /// Starts the sender; it stops when the last `Waker` clone is dropped.
    pub fn spawn(db: PgPool) -> Self {
        let (pending, mut wakeups) = mpsc::channel(1);
        tokio::spawn(async move {
            while wakeups.recv().await.is_some() {
                if let Err(error) = notify(&db).await {
                    tracing::debug!(%error, "could not wake the workers; they will poll");
                }
                // Another registration during that round trip means a busy server.
                if !wakeups.is_empty() {
                    tokio::time::sleep(MIN_WAKE_INTERVAL).await;
                }
            }
        });
        Self { pending }
    }

    pub fn wake(&self) {
        // Full means a wake-up is already pending, which covers this one too.
        let _ = self.pending.try_send(());
    }
}

async fn notify(db: &PgPool) -> anyhow::Result<()> {
    let mut conn = db.get().await?;
    prepared("SELECT pg_notify($1, '')")
        .bind::<Text, _>(WAKE_CHANNEL)
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Runs workers until `shutdown` is cancelled, then lets running tasks finish for at most
/// `JOB_DRAIN_SECS`. Retries its start while Postgres is unreachable; fails on what waiting
/// will not fix (a wrong password, an unknown role).
pub async fn run_workers(
    db: PgPool,
    database_url: String,
    settings: JobsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let worker = loop {
        match Worker::start(
            db.clone(),
            &database_url,
            settings.clone(),
            shutdown.clone(),
        )
        .await
        {
            Ok(worker) => break Arc::new(worker),
            Err(error) if crate::db::is_fatal(&error) => return Err(error),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "workers cannot start yet");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(RECONNECT_DELAY) => {}
                }
            }
        }
    };
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(database_url, wake.clone()));
    let heartbeat = tokio::spawn(worker.clone().renew_leases());
    tracing::info!(concurrency = settings.worker_concurrency, "workers started");
    worker.run(wake).await;
    listener.abort();
    heartbeat.abort();
    Ok(())
}

/// Keeps a LISTEN connection open and turns its notifications into wake-ups.
async fn listen(database_url: String, wake: Arc<Notify>) {
    loop {
        if let Err(error) = listen_once(&database_url, &wake).await {
            tracing::warn!(%error, "wake-up channel lost; polling until it is back");
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn listen_once(database_url: &str, wake: &Notify) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    sql_query(format!("LISTEN {WAKE_CHANNEL}"))
        .execute(&mut conn)
        .await?;
    // Tasks queued while nobody listened are due now.
    wake.notify_one();
    let mut notifications = pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        notification?;
        wake.notify_one();
    }
    anyhow::bail!("connection closed")
}

#[derive(QueryableByName)]
struct ClaimedTask {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    /// When it was queued: for a confirmation, when its registration committed.
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Jsonb)]
    metadata: serde_json::Value,
    #[diesel(sql_type = Integer)]
    retries: i32,
}

/// Deletes the finished tasks `$3` (fang's `RemoveFinished` retention: the effect is the
/// record) and takes up to `$2` due tasks of the types `$1`, oldest due first, atomically:
/// one statement and one commit, instead of one per finished task.
///
/// The first attempts of confirmation tasks (`$4` task type, `$5` metadata type; no type
/// matches `''`) are not claimed but done here and deleted: their registrations confirmed
/// and mailed (`mail::confirm_wanted`), in the same statement and commit. That spares each
/// of them the `in_progress` write, and each batch a round trip and a commit of its own;
/// a worker that dies meanwhile rolls it all back, leaving the tasks due. The other tasks
/// are set `in_progress` and answered (`confirmed` false); each confirmation done answers
/// when it was queued and the registration it confirmed (none when it was cancelled).
/// `wanted` reads the task's JSON as `ConfirmRegistration`'s serde does, defaults included;
/// should a row not read, the statement fails, and the worker claims once without
/// confirming, so that the task fails alone.
const CLAIM: &str = concat!(
    "
WITH finished AS (
    DELETE FROM fang_tasks WHERE id = ANY($3)
), due AS (
    SELECT id, state = 'new' AND task_type = $4 AND metadata->>'type' = $5 AS confirm_now
      FROM fang_tasks
     WHERE state IN ('new', 'retried') AND scheduled_at <= now() AND task_type = ANY($1)
     ORDER BY scheduled_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE fang_tasks t SET state = 'in_progress', updated_at = now()
      FROM due
     WHERE t.id = due.id AND NOT due.confirm_now
    RETURNING t.id, t.created_at, t.metadata, t.retries
), taken AS (
    DELETE FROM fang_tasks t
     USING due
     WHERE t.id = due.id AND due.confirm_now
    RETURNING t.created_at, t.metadata
), wanted AS (
    SELECT (metadata->>'registration_id')::uuid AS registration_id,
           coalesce((metadata->>'activation')::integer, 1) AS activation,
           coalesce((metadata->>'promoted')::boolean, false) AS promoted,
           created_at
      FROM taken
), ",
    mail::confirm_wanted!(),
    "
SELECT false AS confirmed, id, created_at, metadata, retries,
       NULL::uuid AS registration_id, NULL::uuid AS user_id
  FROM claimed
UNION ALL
SELECT true, NULL, w.created_at, NULL, NULL, c.id, c.user_id
  FROM wanted w
  LEFT JOIN confirmed c ON c.id = w.registration_id AND c.activation = w.activation"
);

/// A row of `CLAIM`.
#[derive(QueryableByName)]
struct ClaimedOrConfirmed {
    #[diesel(sql_type = Bool)]
    confirmed: bool,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    id: Option<Uuid>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    metadata: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Integer>)]
    retries: Option<i32>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    registration_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    user_id: Option<Uuid>,
}

/// What a claim brought: tasks to run, and confirmations it already did.
#[derive(Default)]
struct Claimed {
    tasks: Vec<ClaimedTask>,
    /// When each confirmation done by the claim was queued.
    confirmed_queued_at: Vec<chrono::DateTime<chrono::Utc>>,
    /// What those confirmations changed, to publish.
    changes: Vec<Change>,
}

impl Claimed {
    fn len(&self) -> usize {
        self.tasks.len() + self.confirmed_queued_at.len()
    }
}

impl FromIterator<ClaimedOrConfirmed> for Claimed {
    fn from_iter<I: IntoIterator<Item = ClaimedOrConfirmed>>(rows: I) -> Self {
        let mut claimed = Self::default();
        for row in rows {
            if row.confirmed {
                claimed.confirmed_queued_at.push(row.created_at);
                if let (Some(registration_id), Some(user_id)) = (row.registration_id, row.user_id) {
                    claimed.changes.push(Change::Registration {
                        user_id,
                        registration_id,
                    });
                }
            } else if let (Some(id), Some(metadata), Some(retries)) =
                (row.id, row.metadata, row.retries)
            {
                // A claimed task's row always has these (they are its columns).
                claimed.tasks.push(ClaimedTask {
                    id,
                    created_at: row.created_at,
                    metadata,
                    retries,
                });
            }
        }
        claimed
    }
}

/// Deals with tasks that a dead worker left `in_progress`, their lease older than `$1` s: the
/// stalled attempt counts as failed, so it is retried, or dead-lettered if it was attempt
/// `$2` (the last). A task that kills its worker every time thus ends like any failing one.
const RESCUE_STALLED: &str = "
WITH stalled AS (
    SELECT id FROM fang_tasks
     WHERE state = 'in_progress' AND updated_at < now() - make_interval(secs => $1)
       -- Right after a restart of Postgres every lease looks stale: wait until the live
       -- holders had a lease's time to renew theirs.
       AND pg_postmaster_start_time() < now() - make_interval(secs => $1)
       FOR UPDATE SKIP LOCKED
), requeued AS (
    UPDATE fang_tasks t
       SET state = 'retried', retries = retries + 1, scheduled_at = now(), updated_at = now(),
           error_message = 'stalled: its worker stopped before finishing it'
      FROM stalled s
     WHERE t.id = s.id AND t.retries + 1 < $2
    RETURNING t.id
), failed AS (
    UPDATE fang_tasks t
       SET state = 'failed', updated_at = now(),
           error_message = 'stalled on its last attempt: its worker stopped before finishing it'
      FROM stalled s
     WHERE t.id = s.id AND t.retries + 1 >= $2
    RETURNING t.id, t.task_type, t.metadata, t.retries, t.error_message
), recorded AS (
    INSERT INTO failed_jobs (task_id, task_type, metadata, error_message, retries)
    SELECT id, task_type, metadata, error_message, retries FROM failed
    ON CONFLICT (task_id) DO UPDATE
       SET error_message = EXCLUDED.error_message, retries = EXCLUDED.retries,
           failed_at = now()
)
SELECT (SELECT count(*) FROM requeued) AS requeued, (SELECT count(*) FROM failed) AS failed";

#[derive(QueryableByName)]
struct Rescued {
    #[diesel(sql_type = BigInt)]
    requeued: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
}

/// Schedules attempt `retries + 2` of task `$1` in `$3` milliseconds.
const RETRY: &str = "
UPDATE fang_tasks
   SET state = 'retried', retries = retries + 1, error_message = $2,
       scheduled_at = now() + make_interval(secs => $3 / 1000.0), updated_at = now()
 WHERE id = $1";

/// Marks task `$1` failed (kept, as fang's `RemoveFinished` retention would) and records it
/// as a dead letter.
const DEAD_LETTER: &str = "
WITH failed AS (
    UPDATE fang_tasks SET state = 'failed', error_message = $2, updated_at = now()
     WHERE id = $1
    RETURNING id, task_type, metadata, retries
)
INSERT INTO failed_jobs (task_id, task_type, metadata, error_message, retries)
SELECT id, task_type, metadata, $2, retries FROM failed
ON CONFLICT (task_id) DO UPDATE
   SET error_message = EXCLUDED.error_message, retries = EXCLUDED.retries, failed_at = now()";

/// Renews the lease of the tasks `$1` this process holds.
const RENEW: &str = "
UPDATE fang_tasks SET updated_at = now() WHERE id = ANY($1) AND state = 'in_progress'";

/// Removes pending tasks of a cron task type `$1` with other settings (they changed).
const DROP_OTHER_SCHEDULES: &str = "
DELETE FROM fang_tasks
 WHERE task_type = $1 AND state IN ('new', 'retried') AND metadata <> $2";

struct Worker {
    db: PgPool,
    /// Publishes what tasks changed (confirmations) to the servers' subscribers.
    changes: Changes,
    /// fang's queue: schedules cron tasks and is what fang hands to a running task.
    queue: AsyncQueue,
    settings: JobsConfig,
    shutdown: CancellationToken,
    /// Tasks this process holds `in_progress`, whose leases it renews.
    held: Mutex<HashSet<Uuid>>,
    /// When this process last failed to reach Postgres: a rescuer that was cut off itself
    /// waits a lease before rescuing.
    last_cut_off: Mutex<Option<Instant>>,
    /// When work still running at shutdown is given up: set when shutdown is first seen.
    drain_by: OnceLock<Instant>,
}

/// The cron tasks every worker keeps scheduled, one pending task each.
fn cron_tasks(settings: &JobsConfig) -> [(&'static str, Box<dyn AsyncRunnable>); 2] {
    [
        (
            REMINDER_QUEUE,
            Box::new(SendReminders {
                cron: settings.reminder_cron.clone(),
            }),
        ),
        (
            HOUSEKEEPING_QUEUE,
            Box::new(PruneIdempotencyKeys {
                cron: settings.prune_cron.clone(),
                ttl_secs: settings.idempotency_ttl_secs,
            }),
        ),
    ]
}

impl Worker {
    async fn start(
        db: PgPool,
        database_url: &str,
        settings: JobsConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut queue = AsyncQueue::builder()
            .uri(database_url)
            .max_pool_size(2_u32)
            .build();
        queue.connect().await.context("fang queue")?;
        let worker = Self {
            changes: Changes::spawn(db.clone()),
            db,
            queue,
            settings,
            shutdown,
            held: Mutex::default(),
            last_cut_off: Mutex::default(),
            drain_by: OnceLock::new(),
        };
        worker.schedule_cron_tasks().await?;
        Ok(worker)
    }

    /// Makes sure exactly one task of each cron task type, with the configured settings,
    /// is pending.
    async fn schedule_cron_tasks(&self) -> anyhow::Result<()> {
        for (task_type, task) in cron_tasks(&self.settings) {
            let metadata = serde_json::to_value(&*task)?;
            let mut conn = self.db.get().await?;
            sql_query(DROP_OTHER_SCHEDULES)
                .bind::<Text, _>(task_type)
                .bind::<Jsonb, _>(metadata)
                .execute(&mut conn)
                .await?;
            self.queue
                .schedule_task(&*task)
                .await
                .with_context(|| format!("scheduling {task_type}"))?;
        }
        Ok(())
    }

    fn hold(&self, id: Uuid) {
        lock(&self.held).insert(id);
    }

    fn let_go(&self, ids: &[Uuid]) {
        let mut held = lock(&self.held);
        for id in ids {
            held.remove(id);
        }
    }

    /// Notes whether Postgres answered, for the rescue's patience.
    fn reached_postgres(&self, reached: bool) {
        if !reached {
            *lock(&self.last_cut_off) = Some(Instant::now());
        }
    }

    /// Renews the leases of the held tasks every third of a lease, until aborted.
    async fn renew_leases(self: Arc<Self>) {
        let every = self.lease() / 3;
        loop {
            tokio::time::sleep(every).await;
            let held: Vec<Uuid> = lock(&self.held).iter().copied().collect();
            let renewed = async {
                let mut conn = self.db.get().await?;
                prepared(RENEW)
                    .bind::<Array<SqlUuid>, _>(held)
                    .execute(&mut conn)
                    .await?;
                anyhow::Ok(())
            };
            match renewed.await {
                Ok(()) => self.reached_postgres(true),
                Err(error) => {
                    self.reached_postgres(false);
                    tracing::warn!(%error, "cannot renew the leases of running tasks");
                }
            }
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.settings.job_stall_timeout_secs.max(1))
    }

    async fn run(self: Arc<Self>, wake: Arc<Notify>) {
        let concurrency = self.settings.worker_concurrency.max(1);
        // Claiming only once half the slots are free takes tasks in batches under load.
        let claim_at = concurrency.div_ceil(2);
        let poll = Duration::from_millis(self.settings.job_poll_interval_ms.max(1));
        let lease = self.lease();
        let sweep_every = (lease / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut next_sweep = Instant::now();
        // After a claim that found some work, the next one waits a moment, so that under
        // load confirmations gather into large batches rather than one statement each.
        let mut claim_after = Instant::now();
        let mut running = JoinSet::new();
        // Succeeded, still `in_progress`: deleted by the next claim (or rescued and run
        // again, harmlessly, if this process dies first).
        let mut finished = Vec::new();
        let mut claim_plainly = false;
        while !self.shutdown.is_cancelled() {
            while let Some(outcome) = running.try_join_next() {
                finished.extend(succeeded(outcome));
            }
            if Instant::now() >= next_sweep {
                self.rescue_stalled(lease).await;
                next_sweep = Instant::now() + sweep_every;
            }
            let free = concurrency - running.len();
            let mut saturated = free < claim_at;
            let gathering = Instant::now() < claim_after;
            if !saturated && !gathering {
                let limit = free * CONFIRMATION_BATCH;
                let claiming = self.claim(limit, &finished, !claim_plainly);
                // A claim that confirms is running work too: at shutdown it may finish
                // within the drain's time.
                let Some(claimed) = self.unless_past_drain(claiming).await else {
                    tracing::warn!(
                        "a claim still running at the drain deadline; its tasks stay due"
                    );
                    break;
                };
                // After a failure of the statement that confirms, one plain claim sends each
                // task its own way, so that a task that cannot be done fails alone.
                claim_plainly = !claim_plainly && claimed.is_err();
                match claimed {
                    Ok(claimed) => {
                        self.let_go(&finished);
                        finished.clear();
                        let found = claimed.len();
                        let full = found == limit;
                        let Claimed {
                            tasks,
                            confirmed_queued_at,
                            changes,
                        } = claimed;
                        self.confirmed_in_claim(&confirmed_queued_at, changes);
                        let (confirmations, others) = batches(tasks);
                        let confirming = confirmations.iter().flatten().map(|(task, _)| task.id);
                        for id in others.iter().map(|task| task.id).chain(confirming) {
                            self.hold(id);
                        }
                        for batch in confirmations {
                            running.spawn(self.clone().confirm(batch));
                        }
                        for task in others {
                            let worker = self.clone();
                            running.spawn(async move {
                                worker.execute(task).await.into_iter().collect()
                            });
                        }
                        if full {
                            // More may be due: claim again as soon as half the slots are free,
                            // which they still are when the claim did the work itself.
                            saturated = concurrency - running.len() < claim_at;
                            if !saturated {
                                continue;
                            }
                        } else if found > 0 {
                            claim_after = Instant::now() + GATHER;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot claim tasks"),
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {}
                Some(outcome) = running.join_next(), if !running.is_empty() => {
                    finished.extend(succeeded(outcome));
                }
                () = wake.notified(), if !saturated && !gathering => {}
                () = tokio::time::sleep(poll), if !saturated && !gathering => {}
                () = tokio::time::sleep_until(claim_after), if !saturated && gathering => {}
                () = tokio::time::sleep_until(next_sweep) => {}
            }
        }
        self.drain(running, finished).await;
    }

    async fn drain(&self, mut running: JoinSet<Vec<Uuid>>, mut finished: Vec<Uuid>) {
        if !running.is_empty() {
            let all_done = async {
                while let Some(outcome) = running.join_next().await {
                    finished.extend(succeeded(outcome));
                }
            };
            if tokio::time::timeout_at(self.drain_deadline(), all_done)
                .await
                .is_err()
            {
                tracing::warn!(
                    "tasks still running at the drain deadline; they will be rescued as stalled"
                );
            }
        }
        if finished.is_empty() {
            return;
        }
        if let Err(error) = self.claim(0, &finished, false).await {
            tracing::error!(%error, "cannot delete finished tasks; they will run again");
        }
    }

    /// When work still running at shutdown is given up (`JOB_DRAIN_SECS` after shutdown was
    /// first seen).
    fn drain_deadline(&self) -> Instant {
        *self.drain_by.get_or_init(|| {
            tracing::info!("letting running tasks finish");
            Instant::now() + Duration::from_secs(self.settings.job_drain_secs)
        })
    }

    /// Awaits `work`; should shutdown come meanwhile, lets it finish until the drain
    /// deadline. `None`: it did not.
    async fn unless_past_drain<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut work = pin!(work);
        tokio::select! {
            done = &mut work => Some(done),
            () = self.shutdown.cancelled() => {
                tokio::time::timeout_at(self.drain_deadline(), work).await.ok()
            }
        }
    }

    /// Deletes `finished` and claims up to `limit` due tasks; with `confirm`, doing the
    /// first attempts of confirmations at once (`CLAIM`).
    async fn claim(
        &self,
        limit: usize,
        finished: &[Uuid],
        confirm: bool,
    ) -> anyhow::Result<Claimed> {
        let claimed = async {
            let mut conn = self.db.get().await?;
            let queues: Vec<&str> = QUEUES.to_vec();
            let confirm_type = if confirm { CONFIRMATION_TASK } else { "" };
            let rows: Vec<ClaimedOrConfirmed> = prepared(CLAIM)
                .bind::<Array<Text>, _>(queues)
                .bind::<BigInt, _>(i64::try_from(limit)?)
                .bind::<Array<SqlUuid>, _>(finished.to_vec())
                .bind::<Text, _>(CONFIRMATION_QUEUE)
                .bind::<Text, _>(confirm_type)
                .load(&mut conn)
                .await?;
            anyhow::Ok(rows.into_iter().collect())
        };
        let claimed = claimed.await;
        self.reached_postgres(claimed.is_ok());
        claimed
    }

    /// Publishes and counts the confirmations a claim did.
    fn confirmed_in_claim(
        &self,
        queued_at: &[chrono::DateTime<chrono::Utc>],
        changes: Vec<Change>,
    ) {
        if queued_at.is_empty() {
            return;
        }
        self.changes.publish_all(changes);
        let now = chrono::Utc::now();
        for queued_at in queued_at {
            if let Ok(lag) = (now - *queued_at).to_std() {
                metrics::confirmation_lag(lag);
            }
        }
        metrics::task(CONFIRMATION_TASK, "succeeded", queued_at.len() as u64);
    }

    async fn rescue_stalled(&self, lease: Duration) {
        let cut_off = *lock(&self.last_cut_off);
        if cut_off.is_some_and(|at| at.elapsed() < lease) {
            // Cut off ourselves a moment ago: the holders may not have renewed yet.
            return;
        }
        let rescued = async {
            let mut conn = self.db.get().await?;
            let rescued = prepared(RESCUE_STALLED)
                .bind::<diesel::sql_types::Double, _>(lease.as_secs_f64())
                .bind::<Integer, _>(MAX_ATTEMPTS)
                .get_result::<Rescued>(&mut conn)
                .await?;
            anyhow::Ok(rescued)
        };
        match rescued.await {
            Ok(Rescued { requeued, failed }) => {
                if requeued > 0 {
                    tracing::warn!(requeued, "re-queued tasks of a worker that died");
                }
                if failed > 0 {
                    tracing::error!(
                        failed,
                        "tasks stalled on their last attempt; recorded in failed_jobs"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "cannot look for stalled tasks"),
        }
    }

    /// Confirms a batch of registrations in one statement; gives back the tasks finished.
    /// While Postgres is away the batch is kept and tried again; any other failure sends
    /// each task its own way, so that a bad row fails (and is retried) alone.
    async fn confirm(self: Arc<Self>, batch: Vec<(ClaimedTask, ConfirmRegistration)>) -> Vec<Uuid> {
        let targets: Vec<mail::ToConfirm> = batch.iter().map(|(_, task)| task.target()).collect();
        let mut outage = Backoff::default();
        loop {
            let confirmed = async {
                let mut conn = self.db.get().await?;
                mail::confirm_many(&mut conn, &targets).await
            };
            match confirmed.await {
                Ok(confirmed) => {
                    self.changes.publish_all(confirmed);
                    let now = chrono::Utc::now();
                    for (task, _) in &batch {
                        if let Ok(lag) = (now - task.created_at).to_std() {
                            metrics::confirmation_lag(lag);
                        }
                    }
                    metrics::task(CONFIRMATION_TASK, "succeeded", batch.len() as u64);
                    return batch.iter().map(|(task, _)| task.id).collect();
                }
                Err(AppError::Unavailable(detail)) if !self.shutdown.is_cancelled() => {
                    self.reached_postgres(false);
                    tracing::warn!(%detail, tasks = batch.len(), "Postgres is unavailable; the confirmations will run when it is back");
                    if !outage.wait(&self.shutdown).await {
                        return Vec::new();
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = error.internal_detail().unwrap_or_default(),
                        tasks = batch.len(),
                        "a batch of confirmations failed; running them one by one"
                    );
                    let mut finished = Vec::new();
                    for (task, _) in batch {
                        finished.extend(self.clone().execute(task).await);
                    }
                    return finished;
                }
            }
        }
    }

    /// Runs one claimed task. Success gives back its id, to delete with the next claim;
    /// a failure is recorded here (a retry or a dead letter). While Postgres is away the
    /// task is kept and run again when it is back, without counting an attempt.
    async fn execute(self: Arc<Self>, task: ClaimedTask) -> Option<Uuid> {
        let runnable: Box<dyn AsyncRunnable> = match serde_json::from_value(task.metadata) {
            Ok(runnable) => runnable,
            Err(error) => {
                let reason = format!("cannot decode the task: {error}");
                self.record(task.id, || self.dead_letter(task.id, &reason))
                    .await;
                return None;
            }
        };
        let mut outage = Backoff::default();
        let result = loop {
            let context = TaskContext {
                db: self.db.clone(),
                changes: self.changes.clone(),
            };
            let result = TASK.scope(context, runnable.run(&self.queue)).await;
            match result {
                Err(error) if is_outage(&error) && !self.shutdown.is_cancelled() => {
                    self.reached_postgres(false);
                    tracing::warn!(task_id = %task.id, "Postgres is unavailable; the task will run again when it is back");
                    if !outage.wait(&self.shutdown).await {
                        // Shutting down mid-outage: the lease runs out and another worker
                        // takes the task.
                        return None;
                    }
                }
                result => break result,
            }
        };
        if let Some(Scheduled::CronPattern(_)) = runnable.cron() {
            // Before finishing this one, so that a crash in between cannot end the chain.
            self.record(task.id, || async {
                self.queue
                    .schedule_task(&*runnable)
                    .await
                    .context("scheduling the next run of a cron task")
                    .map(|_| ())
            })
            .await;
        }
        let task_type = runnable.task_type();
        match result {
            Ok(()) => {
                metrics::task(&task_type, "succeeded", 1);
                return Some(task.id);
            }
            Err(error) if task.retries < runnable.max_retries() => {
                metrics::task(&task_type, "retried", 1);
                tracing::warn!(task_id = %task.id, attempt = task.retries + 1, error = error.description, "task failed; will retry");
                self.record(task.id, || {
                    self.retry(task.id, task.retries, &error.description)
                })
                .await;
            }
            Err(error) => {
                metrics::task(&task_type, "failed", 1);
                tracing::error!(task_id = %task.id, attempts = task.retries + 1, error = error.description, "task failed for good");
                self.record(task.id, || self.dead_letter(task.id, &error.description))
                    .await;
            }
        }
        self.let_go(&[task.id]);
        None
    }

    /// Writes a task's outcome, again and again while Postgres is away (the lease keeps
    /// the task ours meanwhile), until it is written or the process shuts down.
    async fn record<F, Fut>(&self, task_id: Uuid, write: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let mut backoff = Backoff::default();
        loop {
            match write().await {
                Ok(()) => return,
                Err(error) => {
                    self.reached_postgres(false);
                    tracing::warn!(%task_id, %error, "cannot record a task's outcome yet; retrying");
                }
            }
            if !backoff.wait(&self.shutdown).await {
                tracing::error!(%task_id, "shutting down before a task's outcome was recorded; it will be rescued");
                return;
            }
        }
    }

    async fn retry(&self, task_id: Uuid, retries: i32, error: &str) -> anyhow::Result<()> {
        let base = self.settings.job_retry_backoff_ms;
        let delay_ms = base.saturating_mul(1 << retries.clamp(0, 20));
        let mut conn = self.db.get().await?;
        prepared(RETRY)
            .bind::<SqlUuid, _>(task_id)
            .bind::<Text, _>(error.to_owned())
            .bind::<diesel::sql_types::Double, _>(delay_ms as f64)
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    async fn dead_letter(&self, task_id: Uuid, error: &str) -> anyhow::Result<()> {
        let mut conn = self.db.get().await?;
        prepared(DEAD_LETTER)
            .bind::<SqlUuid, _>(task_id)
            .bind::<Text, _>(error.to_owned())
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

/// Confirmation tasks (decoded), in batches of at most `CONFIRMATION_BATCH`, and every
/// other task.
type Batches = (
    Vec<Vec<(ClaimedTask, ConfirmRegistration)>>,
    Vec<ClaimedTask>,
);

fn batches(tasks: Vec<ClaimedTask>) -> Batches {
    let mut confirmations = Vec::new();
    let mut others = Vec::new();
    for task in tasks {
        let is_confirmation = task
            .metadata
            .get("type")
            .and_then(serde_json::Value::as_str)
            == Some(CONFIRMATION_TASK);
        match serde_json::from_value::<ConfirmRegistration>(task.metadata.clone()) {
            Ok(confirmation) if is_confirmation => confirmations.push((task, confirmation)),
            _ => others.push(task),
        }
    }
    let mut chunks = Vec::new();
    while !confirmations.is_empty() {
        let rest = confirmations.split_off(confirmations.len().min(CONFIRMATION_BATCH));
        chunks.push(std::mem::replace(&mut confirmations, rest));
    }
    (chunks, others)
}

/// True when a task failed because Postgres could not be reached (see `tasks::failure`).
fn is_outage(error: &FangError) -> bool {
    error.description.starts_with(UNAVAILABLE)
}

/// Waits between attempts while Postgres is away: 100 ms, doubling up to a second.
#[derive(Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// False when the process is shutting down instead.
    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = Duration::from_millis(100 << self.attempts.min(4)).min(Duration::from_secs(1));
        self.attempts += 1;
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The ids of the tasks a job finished; a panic is logged (its tasks will be rescued as
/// stalled).
fn succeeded(outcome: Result<Vec<Uuid>, tokio::task::JoinError>) -> Vec<Uuid> {
    outcome.unwrap_or_else(|error| {
        tracing::error!(%error, "a task panicked; it will be rescued as stalled");
        Vec::new()
    })
}
