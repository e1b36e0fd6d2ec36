//! Background jobs on fang: confirming registrations and sending reminders.
//!
//! Tasks live in fang's `fang_tasks` table and implement fang's `AsyncRunnable`; fang's
//! queue schedules the reminder cron. The worker loop is our own (`worker`), because fang
//! 0.11's pool can hand one task to two workers, never rescues tasks of a worker that died,
//! cannot be stopped gracefully and sleeps seconds when idle. Every task's effect is
//! idempotent regardless, since a rescued task runs again.

mod tasks;
mod worker;

pub use tasks::{ConfirmRegistration, PruneIdempotencyKeys, SendReminders};
pub use worker::{Waker, run_workers};

/// fang's `task_type` of confirmation tasks.
pub const CONFIRMATION_QUEUE: &str = "confirmation";
/// The typetag name fang stores as `metadata.type` of a confirmation task. The registration
/// statement writes that row itself (fang's queue cannot join our transaction).
pub const CONFIRMATION_TASK: &str = "ConfirmRegistration";
/// fang's `task_type` of the reminder cron task.
pub const REMINDER_QUEUE: &str = "reminders";
/// fang's `task_type` of the idempotency records' prune.
pub const HOUSEKEEPING_QUEUE: &str = "housekeeping";
/// The task types a worker runs.
pub const QUEUES: [&str; 3] = [CONFIRMATION_QUEUE, REMINDER_QUEUE, HOUSEKEEPING_QUEUE];
/// A task runs at most this many times before it is recorded in `failed_jobs`.
pub const MAX_ATTEMPTS: i32 = 5;
/// Postgres channel on which workers are woken when tasks are queued.
pub const WAKE_CHANNEL: &str = "mini_compete_jobs";
