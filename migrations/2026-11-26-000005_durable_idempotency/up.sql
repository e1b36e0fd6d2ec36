-- Redis accelerates, Postgres decides: the registering statement records each key it
-- used, in the same statement, so a record exists if and only if its registration does.
-- A replay is answered from here whenever Redis lost the key (restart, eviction, outage).
-- No foreign keys: registrations are never deleted, and the statement writes both rows.
CREATE TABLE idempotency_keys (
    user_id         uuid        NOT NULL,
    key             text        NOT NULL,
    competition_id  uuid        NOT NULL,
    registration_id uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
-- The scheduled prune deletes by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Which database this is. Redis keys carry it, so a database created afresh (even one
-- dropped and created again under the same name) never meets the keys of an earlier one.
CREATE TABLE deployment (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    singleton  boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO deployment DEFAULT VALUES;

-- Every activation of a registration (the first, and each re-registration after a
-- cancellation) gets its own confirmation mail, still exactly one per activation.
ALTER TABLE registrations ADD COLUMN activation integer NOT NULL DEFAULT 1;
ALTER TABLE mailbox ADD COLUMN activation integer NOT NULL DEFAULT 1;
ALTER TABLE mailbox DROP CONSTRAINT mailbox_once_per_kind;
ALTER TABLE mailbox ADD CONSTRAINT mailbox_once_per_activation
    UNIQUE (registration_id, kind, activation);
