-- studio-intake store, SQLite flavour. Keep in step with migrations/postgres.
-- Timestamps: RFC 3339 UTC text of fixed width (2020-09-20T02:00:00.000000Z), so text order
-- is time order. Times taken from a mail (received_at) keep their offset in *_offset
-- (seconds east of UTC). Flags are INTEGER 0/1 (SMALLINT on PostgreSQL), compared with literals.

-- Every message as it came in, deduplicated by (mailbox, uidvalidity, uid) and by sha256.
CREATE TABLE raw_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox         TEXT    NOT NULL,
    uidvalidity     INTEGER,
    uid             INTEGER,
    sha256          TEXT    NOT NULL UNIQUE,
    size            INTEGER NOT NULL,
    bytes           BLOB    NOT NULL,
    received_at     TEXT,
    received_offset INTEGER,
    stored_at       TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'new'
                    CHECK (status IN ('new', 'claimed', 'processed', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,   -- claims started so far
    next_attempt_at TEXT,                         -- backoff after a failure
    claimed_by      TEXT,
    lease_until     TEXT,
    last_error      TEXT,
    processed_at    TEXT,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX raw_messages_todo ON raw_messages (status, next_attempt_at);

-- One processed message (exactly one per raw message).
CREATE TABLE submissions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    raw_id          INTEGER NOT NULL UNIQUE REFERENCES raw_messages (id),
    message_id      TEXT,
    sender          TEXT,
    unit            TEXT,
    subject         TEXT    NOT NULL,
    received_at     TEXT,
    received_offset INTEGER,
    verdict         TEXT    NOT NULL CHECK (verdict IN ('accepted', 'rejected', 'ignored')),
    ignored_reason  TEXT,
    summary_table   INTEGER NOT NULL DEFAULT 0 CHECK (summary_table IN (0, 1)),
    recorded_at     TEXT    NOT NULL
);
CREATE INDEX submissions_unit ON submissions (unit);

-- Studio versions. Identity = (owner_unit, key); a later mail of the same unit carrying the
-- studio again makes a new current row and points the old one at it.
CREATE TABLE studios (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    submission_id   INTEGER NOT NULL REFERENCES submissions (id),
    owner_unit      TEXT,                 -- the submission's unit, else the studio's own
    key             TEXT    NOT NULL,     -- normalised name
    name            TEXT    NOT NULL,
    unit            TEXT,                 -- recommending unit as written in the forms
    leader          TEXT,
    verdict         TEXT    NOT NULL,
    rank            INTEGER,
    data            TEXT    NOT NULL,     -- JSON: the 推荐汇总表 columns
    is_current      INTEGER NOT NULL DEFAULT 1 CHECK (is_current IN (0, 1)),
    superseded_by   INTEGER REFERENCES studios (id),
    created_at      TEXT    NOT NULL
);
CREATE UNIQUE INDEX studios_one_current ON studios (owner_unit, key) WHERE is_current = 1;
CREATE INDEX studios_submission ON studios (submission_id);
CREATE INDEX studios_superseded_by ON studios (superseded_by);

CREATE TABLE findings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    submission_id   INTEGER NOT NULL REFERENCES submissions (id),
    studio_id       INTEGER REFERENCES studios (id),
    studio_key      TEXT,
    code            TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    file            TEXT,
    location        TEXT    NOT NULL,
    found           TEXT    NOT NULL,
    expected        TEXT    NOT NULL,
    message         TEXT    NOT NULL
);
CREATE INDEX findings_submission ON findings (submission_id);
CREATE INDEX findings_studio ON findings (studio_id);

-- Complete outgoing mails. message_id is unique: enqueueing twice is a no-op.
CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT    NOT NULL,   -- reply | digest | refusal
    message_id        TEXT    NOT NULL UNIQUE,
    envelope_from     TEXT    NOT NULL,
    recipients        TEXT    NOT NULL,   -- JSON array, as given
    bytes             BLOB    NOT NULL,
    submission_raw_id INTEGER REFERENCES raw_messages (id),
    status            TEXT    NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'claimed', 'sent', 'dead')),
    attempts          INTEGER NOT NULL DEFAULT 0,   -- claims started so far
    next_attempt_at   TEXT    NOT NULL,
    claimed_by        TEXT,
    lease_until       TEXT,
    last_error        TEXT,
    created_at        TEXT    NOT NULL,
    sent_at           TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- One row per (mail, lower-cased recipient): the per-sender hourly reply limit counts these.
CREATE TABLE outbox_recipients (
    outbox_id  INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    address    TEXT    NOT NULL,
    PRIMARY KEY (outbox_id, address)
);
CREATE INDEX outbox_recipients_address ON outbox_recipients (address);

CREATE TABLE mailbox_state (
    mailbox     TEXT    PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL
);

-- A digest day is claimed before it is built and sent: never twice, never by two instances.
CREATE TABLE digest_runs (
    day        TEXT NOT NULL,   -- YYYY-MM-DD in the campaign time zone
    kind       TEXT NOT NULL,   -- daily | final
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (day, kind)
);

-- Named leases (leader election between instances).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
