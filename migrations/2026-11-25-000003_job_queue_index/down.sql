DROP INDEX fang_tasks_due;
