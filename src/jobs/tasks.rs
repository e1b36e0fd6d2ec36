//! The tasks, as fang `AsyncRunnable`s. Their logic lives in the `mail` module; a task only
//! finds a connection and reports the outcome.

use async_trait::async_trait;
use fang::{AsyncQueueable, AsyncRunnable, FangError, Scheduled};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CONFIRMATION_QUEUE, HOUSEKEEPING_QUEUE, MAX_ATTEMPTS, REMINDER_QUEUE};
use crate::{
    db::{Lent, PgPool},
    error::AppError,
    idempotency,
    live::Changes,
    mail,
};

/// What a running task needs of its worker.
#[derive(Clone)]
pub(super) struct TaskContext {
    pub db: PgPool,
    /// Where what a task changed is published, once it committed.
    pub changes: Changes,
}

tokio::task_local! {
    /// fang builds tasks from their JSON, so they cannot hold the pool; the worker provides
    /// it around each run.
    pub(super) static TASK: TaskContext;
}

fn context() -> Result<TaskContext, FangError> {
    TASK.try_with(TaskContext::clone).map_err(|_| FangError {
        description: "task run outside a worker".into(),
    })
}

async fn connection() -> Result<Lent<'static>, FangError> {
    context()?
        .db
        .get_owned()
        .await
        .map_err(|error| failure(error.into()))
}

/// Starts the description of a failure that was Postgres being unreachable, which the
/// worker retries without counting an attempt.
pub(super) const UNAVAILABLE: &str = "postgres unavailable: ";

/// The task's error as fang records it (in `fang_tasks`, `failed_jobs` and the log only).
fn failure(error: AppError) -> FangError {
    let detail = error
        .internal_detail()
        .map_or_else(|| error.to_string(), str::to_owned);
    let description = match error {
        AppError::Unavailable(_) => format!("{UNAVAILABLE}{detail}"),
        _ => detail,
    };
    FangError { description }
}

/// Confirms one activation of a registration and mails its participant.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConfirmRegistration {
    pub registration_id: Uuid,
    /// Which activation (1, then one more for each re-registration); tasks queued before
    /// activations existed confirm the first.
    #[serde(default = "first_activation")]
    pub activation: i32,
    /// The seat came from the waiting list: the mail says PROMOTED.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoted: bool,
}

impl ConfirmRegistration {
    pub fn target(&self) -> mail::ToConfirm {
        mail::ToConfirm {
            registration_id: self.registration_id,
            activation: self.activation,
            promoted: self.promoted,
        }
    }
}

fn first_activation() -> i32 {
    1
}

#[typetag::serde(name = "ConfirmRegistration")]
#[async_trait]
impl AsyncRunnable for ConfirmRegistration {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let mut conn = connection().await?;
        let confirmed = mail::confirm_many(&mut conn, &[self.target()])
            .await
            .map_err(failure)?;
        context()?.changes.publish_all(confirmed);
        Ok(())
    }

    fn task_type(&self) -> String {
        CONFIRMATION_QUEUE.into()
    }

    fn max_retries(&self) -> i32 {
        MAX_ATTEMPTS - 1
    }
}

/// Sends the reminders that are due and closes the waiting lists past their deadline; fang
/// schedules it again on its cron after every run.
#[derive(Debug, Serialize, Deserialize)]
pub struct SendReminders {
    /// fang's 7-field cron pattern (it reads the schedule from the task itself).
    pub cron: String,
}

#[typetag::serde(name = "SendReminders")]
#[async_trait]
impl AsyncRunnable for SendReminders {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let mut conn = connection().await?;
        let sent = mail::send_due_reminders(&mut conn).await.map_err(failure)?;
        if sent > 0 {
            tracing::info!(sent, "reminders sent");
        }
        // The same tick closes the waiting lists whose deadline has passed.
        let closed = mail::close_waitlists(&mut conn).await.map_err(failure)?;
        if !closed.is_empty() {
            tracing::info!(
                changes = closed.len(),
                "waiting lists closed at their deadline"
            );
            context()?.changes.publish_all(closed);
        }
        Ok(())
    }

    fn task_type(&self) -> String {
        REMINDER_QUEUE.into()
    }

    fn cron(&self) -> Option<Scheduled> {
        Some(Scheduled::CronPattern(self.cron.clone()))
    }

    /// One pending reminder task per pattern, however many workers schedule it.
    fn uniq(&self) -> bool {
        true
    }

    fn max_retries(&self) -> i32 {
        MAX_ATTEMPTS - 1
    }
}

/// Deletes the idempotency records older than `ttl_secs`; scheduled on its own cron.
#[derive(Debug, Serialize, Deserialize)]
pub struct PruneIdempotencyKeys {
    pub cron: String,
    pub ttl_secs: u64,
}

#[typetag::serde(name = "PruneIdempotencyKeys")]
#[async_trait]
impl AsyncRunnable for PruneIdempotencyKeys {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        let mut conn = connection().await?;
        let pruned = idempotency::prune(&mut conn, self.ttl_secs)
            .await
            .map_err(failure)?;
        if pruned > 0 {
            tracing::info!(pruned, "old idempotency records deleted");
        }
        Ok(())
    }

    fn task_type(&self) -> String {
        HOUSEKEEPING_QUEUE.into()
    }

    fn cron(&self) -> Option<Scheduled> {
        Some(Scheduled::CronPattern(self.cron.clone()))
    }

    fn uniq(&self) -> bool {
        true
    }

    fn max_retries(&self) -> i32 {
        MAX_ATTEMPTS - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::CONFIRMATION_TASK;

    /// The registration statement writes this task's JSON by hand; it must match typetag's.
    #[test]
    fn confirmation_metadata_is_what_registration_writes() {
        let id = Uuid::new_v4();
        let task: &dyn AsyncRunnable = &ConfirmRegistration {
            registration_id: id,
            activation: 2,
            promoted: false,
        };
        let metadata = serde_json::to_value(task).expect("serialisable");
        assert_eq!(
            metadata,
            serde_json::json!({ "type": CONFIRMATION_TASK, "registration_id": id, "activation": 2 })
        );
        let back: Box<dyn AsyncRunnable> = serde_json::from_value(metadata).expect("decodable");
        assert_eq!(back.task_type(), CONFIRMATION_QUEUE);
    }
}
