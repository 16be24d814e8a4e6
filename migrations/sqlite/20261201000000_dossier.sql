-- no-transaction
-- The unit's dossier (issue 9): what a unit has sent so far, over many mails.
-- SQLite cannot change a CHECK constraint in place: submissions is rebuilt (the documented
-- twelve-step way, foreign keys off while the table is swapped) to allow the verdict
-- 'not_a_submission' and to gain its new columns.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE submissions_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    raw_id          INTEGER NOT NULL UNIQUE REFERENCES raw_messages (id),
    message_id      TEXT,
    sender          TEXT,
    unit            TEXT,
    subject         TEXT    NOT NULL,
    received_at     TEXT,
    received_offset INTEGER,
    verdict         TEXT    NOT NULL
                    CHECK (verdict IN ('accepted', 'rejected', 'ignored', 'not_a_submission')),
    ignored_reason  TEXT,
    summary_table   INTEGER NOT NULL DEFAULT 0 CHECK (summary_table IN (0, 1)),
    recorded_at     TEXT    NOT NULL,
    -- 1 when the mail was merged into its unit's dossier (not late, carries documents).
    applied         INTEGER NOT NULL DEFAULT 0 CHECK (applied IN (0, 1)),
    -- JSON: what the mail carried, [{"file", "kind", "studio"}] (for late and held mails).
    attachments     TEXT    NOT NULL DEFAULT '[]',
    -- JSON: download links found instead of attachments.
    download_links  TEXT    NOT NULL DEFAULT '[]'
);
INSERT INTO submissions_new (id, raw_id, message_id, sender, unit, subject, received_at, received_offset,
        verdict, ignored_reason, summary_table, recorded_at)
    SELECT id, raw_id, message_id, sender, unit, subject, received_at, received_offset,
        verdict, ignored_reason, summary_table, recorded_at FROM submissions;
DROP TABLE submissions;
ALTER TABLE submissions_new RENAME TO submissions;
CREATE INDEX submissions_unit ON submissions (unit);
CREATE INDEX submissions_message_id ON submissions (message_id);

-- 1 when the finding was judged on the unit's dossier (an open finding of the unit while
-- its submission holds the current dossier version), 0 for a finding about the mail alone.
ALTER TABLE findings ADD COLUMN on_file INTEGER NOT NULL DEFAULT 0 CHECK (on_file IN (0, 1));

-- One version of a unit's dossier per mail merged into it; the newest is current. `data`
-- is the dossier as JSON (parts with their provenance), `changes` what that mail changed.
CREATE TABLE dossier_versions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    unit            TEXT    NOT NULL,
    submission_id   INTEGER NOT NULL UNIQUE REFERENCES submissions (id),
    data            TEXT    NOT NULL,
    changes         TEXT    NOT NULL,
    is_current      INTEGER NOT NULL DEFAULT 1 CHECK (is_current IN (0, 1)),
    created_at      TEXT    NOT NULL
);
CREATE UNIQUE INDEX dossier_versions_one_current ON dossier_versions (unit) WHERE is_current = 1;
COMMIT;
PRAGMA foreign_keys = ON;
