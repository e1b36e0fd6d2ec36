-- Fewer index writes per registration (each registration inserts a registration, its
-- confirmation task and its key's record; its confirmation updates the registration, claims
-- and deletes the task and inserts a mail).

-- The waiting list's index is over `waitlist_seq`, which is set exactly while WAITLISTED
-- (registrations_waitlisted_in_order), rather than over `status`: an index predicate over
-- `status` made every status change (a confirmation, a cancellation) a non-HOT update that
-- wrote every index of the table again.
DROP INDEX registrations_waiting;
CREATE INDEX registrations_waiting ON registrations (competition_id, waitlist_seq)
    WHERE waitlist_seq IS NOT NULL;
-- Room on each page for the confirmation's new row version (a HOT update stays on its page).
ALTER TABLE registrations SET (fillfactor = 50);

-- Only fang's unique tasks (the scheduled ones) carry a hash, and only they are looked up by
-- it; confirmation tasks no longer write this index.
DROP INDEX fang_tasks_uniq_hash;
CREATE INDEX fang_tasks_uniq_hash ON fang_tasks (uniq_hash) WHERE uniq_hash IS NOT NULL;

-- Records are appended in time order and pruned by age: a BRIN index finds old ones just as
-- well, and appending to the table's last pages costs it nothing.
DROP INDEX idempotency_keys_created_at;
CREATE INDEX idempotency_keys_created_at ON idempotency_keys USING brin (created_at);
