DROP INDEX idempotency_keys_created_at;
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
DROP INDEX fang_tasks_uniq_hash;
CREATE INDEX fang_tasks_uniq_hash ON fang_tasks (uniq_hash);
ALTER TABLE registrations RESET (fillfactor);
DROP INDEX registrations_waiting;
CREATE INDEX registrations_waiting ON registrations (competition_id, waitlist_seq)
    WHERE status = 'WAITLISTED';
