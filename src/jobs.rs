//! Background jobs, run by fang. The registration transaction writes the confirmation task
//! row itself (fang's queue cannot join our transaction), so its format is fixed here.

/// fang's `task_type` column for confirmation tasks (the queue a worker polls).
pub const CONFIRMATION_QUEUE: &str = "confirmation";
/// The typetag name fang stores as `metadata.type` for a confirmation task.
pub const CONFIRMATION_TASK: &str = "ConfirmRegistration";
