-- fang's table, as fang 0.11's own postgres migration defines it (we create it here so that
-- fang's libpq-based migration features stay off).
CREATE TYPE fang_task_state AS ENUM ('new', 'in_progress', 'failed', 'finished', 'retried');

CREATE TABLE fang_tasks (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    metadata      jsonb           NOT NULL,
    error_message text,
    state         fang_task_state NOT NULL DEFAULT 'new',
    task_type     text            NOT NULL DEFAULT 'common',
    uniq_hash     text,
    retries       integer         NOT NULL DEFAULT 0,
    scheduled_at  timestamptz     NOT NULL DEFAULT now(),
    created_at    timestamptz     NOT NULL DEFAULT now(),
    updated_at    timestamptz     NOT NULL DEFAULT now()
);
CREATE INDEX fang_tasks_state_index ON fang_tasks (state);
CREATE INDEX fang_tasks_type_index ON fang_tasks (task_type);
CREATE INDEX fang_tasks_scheduled_at_index ON fang_tasks (scheduled_at);
CREATE INDEX fang_tasks_uniq_hash ON fang_tasks (uniq_hash);

-- Dead letters: fang's retention deletes failed tasks, so the last failure is kept here.
CREATE TABLE failed_jobs (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id       uuid        NOT NULL UNIQUE,
    task_type     text        NOT NULL,
    metadata      jsonb       NOT NULL,
    error_message text        NOT NULL,
    retries       integer     NOT NULL,
    failed_at     timestamptz NOT NULL DEFAULT now()
);
