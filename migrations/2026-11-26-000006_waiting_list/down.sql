DROP INDEX competitions_organizer;
CREATE INDEX competitions_organizer ON competitions (organizer_id);
DELETE FROM mailbox WHERE kind IN ('PROMOTED', 'WAITLIST_CLOSED', 'COMPETITION_CANCELLED');
ALTER TABLE mailbox
    DROP CONSTRAINT mailbox_kind_check,
    ADD CONSTRAINT mailbox_kind_check CHECK (kind IN ('CONFIRMATION', 'REMINDER'));
UPDATE registrations SET status = 'CANCELLED', waitlist_seq = NULL WHERE status = 'WAITLISTED';
DROP INDEX registrations_waiting;
ALTER TABLE registrations
    DROP CONSTRAINT registrations_waitlisted_in_order,
    DROP CONSTRAINT registrations_status_check,
    ADD CONSTRAINT registrations_status_check CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    DROP COLUMN waitlist_seq;
DROP SEQUENCE registrations_waitlist_seq;
ALTER TABLE competitions
    DROP CONSTRAINT competitions_waitlist,
    DROP COLUMN cancelled_at,
    DROP COLUMN waitlist_count;
