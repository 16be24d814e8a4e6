-- Who speaks for a unit (issue 10). Keep in step with migrations/postgres.

-- Addresses staff approved for a unit (besides the config's [[units]] senders).
CREATE TABLE registered_senders (
    address     TEXT PRIMARY KEY,      -- lower-cased
    unit        TEXT NOT NULL,
    source      TEXT NOT NULL,         -- staff | confirmation
    approved_at TEXT COLLATE "C" NOT NULL
);

-- A held mail: read, checked and kept, but applied to no dossier until confirmed.
ALTER TABLE submissions ADD COLUMN held TEXT;             -- finding code why, NULL = not held
ALTER TABLE submissions ADD COLUMN held_state TEXT;       -- held | applied | discarded
ALTER TABLE submissions ADD COLUMN suggested_unit TEXT;   -- the unit its forms name (a suggestion for staff)
ALTER TABLE submissions ADD COLUMN auth TEXT;             -- how the sender was authenticated, for the record
CREATE INDEX submissions_held ON submissions (held_state);

-- Confirmation requests sent to a unit's registered addresses for a held mail: a reply to
-- one (In-Reply-To / References) from a registered address of that unit applies the mail.
CREATE TABLE confirmations (
    message_id  TEXT PRIMARY KEY,
    raw_id      BIGINT NOT NULL REFERENCES raw_messages (id),
    unit        TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    used_at     TEXT
);
