-- These served fang's own fetch query, which we do not run: our workers claim through
-- fang_tasks_due. Each index is written on every insert, claim and delete of a task.
DROP INDEX fang_tasks_state_index;
DROP INDEX fang_tasks_type_index;
DROP INDEX fang_tasks_scheduled_at_index;
