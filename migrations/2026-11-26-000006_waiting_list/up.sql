-- The waiting list and the organizer's controls.
ALTER TABLE competitions
    ADD COLUMN waitlist_count integer NOT NULL DEFAULT 0,
    ADD COLUMN cancelled_at   timestamptz,
    ADD CONSTRAINT competitions_waitlist CHECK (waitlist_count >= 0);

-- A waiting entry is a registration WAITLISTED, ordered by when it joined the list (a
-- sequence: first come, first served, exactly); its position is its rank among those.
CREATE SEQUENCE registrations_waitlist_seq;
ALTER TABLE registrations
    ADD COLUMN waitlist_seq bigint,
    DROP CONSTRAINT registrations_status_check,
    ADD CONSTRAINT registrations_status_check
        CHECK (status IN ('PENDING', 'CONFIRMED', 'WAITLISTED', 'CANCELLED')),
    ADD CONSTRAINT registrations_waitlisted_in_order
        CHECK ((status = 'WAITLISTED') = (waitlist_seq IS NOT NULL));
CREATE INDEX registrations_waiting ON registrations (competition_id, waitlist_seq)
    WHERE status = 'WAITLISTED';

ALTER TABLE mailbox
    DROP CONSTRAINT mailbox_kind_check,
    ADD CONSTRAINT mailbox_kind_check CHECK (kind IN (
        'CONFIRMATION', 'REMINDER', 'PROMOTED', 'WAITLIST_CLOSED', 'COMPETITION_CANCELLED'));

-- One organizer's competitions, newest first.
DROP INDEX competitions_organizer;
CREATE INDEX competitions_organizer ON competitions (organizer_id, created_at DESC, id DESC);
