-- Emails are stored trimmed and lower-cased by the application; the CHECK makes that a rule
-- of the data, so the plain UNIQUE index is case-insensitive uniqueness.
CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    email         text        NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('PARTICIPANT', 'ORGANIZER')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE competitions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organizer_id     uuid        NOT NULL REFERENCES users (id),
    title            text        NOT NULL,
    description      text        NOT NULL,
    tags             text[]      NOT NULL DEFAULT '{}',
    capacity         integer     NOT NULL CHECK (capacity > 0),
    registered_count integer     NOT NULL DEFAULT 0,
    reg_deadline     timestamptz NOT NULL,
    start_date       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Defence in depth: even a buggy code path cannot oversell.
    CONSTRAINT competitions_seats CHECK (registered_count BETWEEN 0 AND capacity),
    CONSTRAINT competitions_start_after_deadline CHECK (start_date > reg_deadline)
);
-- Keyset pagination walks (created_at DESC, id DESC).
CREATE INDEX competitions_listing ON competitions (created_at DESC, id DESC);
CREATE INDEX competitions_tags ON competitions USING gin (tags);
CREATE INDEX competitions_organizer ON competitions (organizer_id);
CREATE INDEX competitions_start_date ON competitions (start_date);

CREATE TABLE registrations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid        NOT NULL REFERENCES users (id),
    competition_id uuid        NOT NULL REFERENCES competitions (id),
    status         text        NOT NULL DEFAULT 'PENDING'
                               CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    confirmed_at   timestamptz,
    cancelled_at   timestamptz,
    -- One registration per participant and competition; re-registering reactivates it.
    CONSTRAINT registrations_one_per_user UNIQUE (user_id, competition_id)
);
CREATE INDEX registrations_competition ON registrations (competition_id);

CREATE TABLE mailbox (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid        NOT NULL REFERENCES users (id),
    registration_id uuid        NOT NULL REFERENCES registrations (id),
    kind            text        NOT NULL CHECK (kind IN ('CONFIRMATION', 'REMINDER')),
    to_address      text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    sent_at         timestamptz NOT NULL DEFAULT now(),
    -- A job that runs twice must not mail twice.
    CONSTRAINT mailbox_once_per_kind UNIQUE (registration_id, kind)
);
CREATE INDEX mailbox_by_user ON mailbox (user_id, sent_at DESC);
