-- Workers claim due tasks by `scheduled_at` among the pending ones only; finished tasks are
-- deleted and failed ones stay, so this keeps claiming cheap however many have failed.
CREATE INDEX fang_tasks_due ON fang_tasks (scheduled_at) WHERE state IN ('new', 'retried');
