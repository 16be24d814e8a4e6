//! The durable state of the daemon: raw messages, submissions, studio versions, findings, the
//! outbox, mailbox bookkeeping, digest runs and leases.
//!
//! # One code path, two databases
//! SQLite (the default, one instance) and PostgreSQL (several instances) run the same code
//! through sqlx's `Any` driver. The schema lives twice, in `migrations/sqlite` and
//! `migrations/postgres`, and is kept in step by hand. Queries are plain SQL with `$n`
//! placeholders (SQLite accepts `$NNN` too); where the dialects differ (claiming work: `FOR
//! UPDATE SKIP LOCKED` on PostgreSQL, a single `UPDATE … RETURNING` under SQLite's one-writer
//! lock; write transactions: `BEGIN IMMEDIATE` on SQLite) the code branches on [`Backend`].
//!
//! # Representation
//! - `Any` has no chrono support, so times are RFC 3339 UTC text of fixed width
//!   (`2020-09-20T02:00:00.000000Z`, see [`ts`]): text order is time order on both backends
//!   (PostgreSQL columns are `COLLATE "C"`). A time taken from a mail keeps its offset in a
//!   sibling `*_offset` column so it reads back exactly as it was recorded.
//! - Bytes are `BLOB`/`BYTEA`; JSON is text; flags are integers 0/1 written as literals.
//!
//! # Work queues
//! Raw messages and outgoing mails are claimed with a lease (`claimed_by`, `lease_until`):
//! a worker that dies leaves its row to be claimed again once the lease expires. Each claim
//! counts as an attempt, so a message that kills its worker every time still ends up
//! `failed` instead of looping.

mod outbox;
mod raw;
mod read;
mod record;
mod senders;
mod migrations;
mod state;
mod words;

pub use words::{MailVerdict, StudioVerdict, UnknownWord};

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::core::findings::Severity;
use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, TimeDelta, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor};

/// Claims of a raw message before it is set aside as `failed`.
pub const MAX_RAW_ATTEMPTS: i64 = 5;


#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone (pools inside).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where every write goes. SQLite takes one writer at a time: with writers spread over
    /// the pool's connections they meet at the file lock, and the loser sleeps in SQLite's
    /// busy handler (1, 2, 5, 10 … ms) — a burst of mail spent most of its time there. One
    /// connection for all writes queues them in the process instead, first come first served;
    /// the busy timeout remains for other processes (the CLI beside the daemon). On
    /// PostgreSQL (and in-memory SQLite, one connection anyway) it is the same pool.
    writer: AnyPool,
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs and outputs

/// A message as fetched, before anything is known about it.
#[derive(Debug, Clone)]
pub struct NewRaw {
    pub mailbox: String,
    pub uidvalidity: Option<i64>,
    pub uid: Option<i64>,
    /// Lower-case hex SHA-256 of `bytes` (see [`sha256_hex`]).
    pub sha256: String,
    pub bytes: Vec<u8>,
    /// The server's receipt time (IMAP INTERNALDATE), if known.
    pub received_at: Option<DateTime<FixedOffset>>,
    pub size: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRaw {
    /// Stored now under this id.
    New(i64),
    /// Already stored (same mailbox/UIDVALIDITY/UID, or same bytes).
    Known { id: i64, processed: bool },
}

impl PutRaw {
    pub fn id(self) -> i64 {
        match self {
            PutRaw::New(id) | PutRaw::Known { id, .. } => id,
        }
    }
}

/// A raw message claimed for processing.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub id: i64,
    pub mailbox: String,
    pub uidvalidity: Option<i64>,
    pub uid: Option<i64>,
    pub bytes: Vec<u8>,
    pub received_at: Option<DateTime<FixedOffset>>,
    /// Earlier attempts (failed or crashed); 0 on the first claim.
    pub attempts: i64,
}

/// A raw message set aside after [`MAX_RAW_ATTEMPTS`] (for the digest).
#[derive(Debug, Clone)]
pub struct FailedRaw {
    pub id: i64,
    pub mailbox: String,
    pub uid: Option<i64>,
    pub sha256: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub stored_at: DateTime<Utc>,
}

/// A held mail: from an unregistered or unauthenticated sender, kept but applied to no
/// dossier until confirmed by the unit or approved by staff.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldMail {
    pub submission_id: i64,
    pub raw_id: i64,
    pub received_at: Option<DateTime<FixedOffset>>,
    pub sender: Option<String>,
    pub subject: String,
    /// The unit its forms name (a suggestion; never what applies it).
    pub suggested_unit: Option<String>,
    /// The finding code why it is held.
    pub reason: String,
    /// held | applied | discarded
    pub state: String,
    /// (file, kind) of what it carried.
    pub attachments: Vec<(String, String)>,
}

/// A mail staff should read: it changed nothing on file because it carried no documents (a
/// question, a thank-you, a cover letter alone), only download links, or came late.
#[derive(Debug, Clone, PartialEq)]
pub struct MailToRead {
    pub submission_id: i64,
    pub received_at: Option<DateTime<FixedOffset>>,
    pub sender: Option<String>,
    pub unit: Option<String>,
    pub subject: String,
    pub verdict: MailVerdict,
    pub late: bool,
    pub download_links: Vec<String>,
    /// What it carried: (file, kind as in `check --format json`, studio).
    pub attachments: Vec<(String, String, Option<String>)>,
}

/// A mail staff must look at by hand: recorded without an outcome (`ignored`: over the size
/// limit, not a message, the core failed on it) or set aside after repeated failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnprocessedMail {
    pub raw_id: i64,
    pub stored_at: DateTime<Utc>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    /// Set aside after `MAX_RAW_ATTEMPTS` failures (in the failed folder), rather than recorded
    /// without an outcome.
    pub set_aside: bool,
    pub reason: String,
}

/// What the core decided about one message, flattened for storage.
#[derive(Debug, Clone, Default)]
pub struct SubmissionRecord {
    pub message_id: Option<String>,
    pub sender: Option<String>,
    pub unit: Option<String>,
    pub subject: String,
    pub received_at: Option<DateTime<FixedOffset>>,
    pub verdict: MailVerdict,
    pub ignored_reason: Option<String>,
    pub studios: Vec<StudioRecord>,
    pub findings: Vec<FindingRecord>,
    /// This mail carried a 附件2 推荐汇总表.
    pub summary_table: bool,
    /// What the mail carried: a JSON array of `{"file", "kind", "studio"}`.
    pub attachments: serde_json::Value,
    /// Download links found in the mail instead of attachments.
    pub download_links: Vec<String>,
    /// The mail was merged into its unit's dossier: the new version. Then `studios` are the
    /// dossier's studios and replace every current studio of the unit.
    pub dossier: Option<DossierUpdate>,
    /// Held (no dossier changes until confirmed): the finding code why
    /// (`submission.unknown_sender`, `submission.sender_not_authenticated`).
    pub held: Option<String>,
    /// The unit the mail's forms name: a suggestion for staff, never what applies it.
    pub suggested_unit: Option<String>,
    /// How the sender was authenticated (for the record).
    pub auth: Option<String>,
    /// Confirmation requests sent for this held mail: (Message-ID, unit asked).
    pub confirmations: Vec<(String, String)>,
}

/// A new version of a unit's dossier, made by merging one mail into `base`.
#[derive(Debug, Clone)]
pub struct DossierUpdate {
    pub unit: String,
    /// The version the mail was merged into (`None`: the unit had none). Recording fails when
    /// another version became current meanwhile, so the mail is merged again, never lost.
    pub base: Option<i64>,
    pub dossier: crate::core::dossier::Dossier,
    pub changes: Vec<crate::core::dossier::Change>,
}

/// A unit's current dossier version.
#[derive(Debug, Clone)]
pub struct DossierVersion {
    pub id: i64,
    pub unit: String,
    pub submission_id: i64,
    pub dossier: crate::core::dossier::Dossier,
    pub changes: Vec<crate::core::dossier::Change>,
}

#[derive(Debug, Clone)]
pub struct StudioRecord {
    pub name: String,
    /// Normalised name: with the unit, the studio's identity.
    pub key: String,
    /// The recommending unit as written in the forms.
    pub unit: Option<String>,
    pub leader: Option<String>,
    pub verdict: StudioVerdict,
    pub rank: Option<i64>,
    /// Everything the consolidated 推荐汇总表 needs (its 16 columns).
    pub data: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct FindingRecord {
    pub code: String,
    pub severity: Severity,
    /// The [`StudioRecord::key`] this finding belongs to, if any.
    pub studio_key: Option<String>,
    pub file: Option<String>,
    pub location: String,
    pub found: String,
    pub expected: String,
    pub message: String,
    /// Judged on the unit's dossier: open until a later version of the dossier.
    pub on_file: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordResult {
    pub submission_id: i64,
    /// Names of studios whose earlier version (same unit + key) this mail replaced.
    pub superseded: Vec<String>,
}

/// A complete mail to send.
#[derive(Debug, Clone)]
pub struct NewOutgoing {
    /// reply | digest | refusal
    pub kind: String,
    /// Unique: enqueueing the same message twice is a no-op.
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub bytes: Vec<u8>,
    pub submission_raw_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingStatus {
    Pending,
    Claimed,
    Sent,
    Dead,
}

impl OutgoingStatus {
    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "pending" => OutgoingStatus::Pending,
            "claimed" => OutgoingStatus::Claimed,
            "sent" => OutgoingStatus::Sent,
            "dead" => OutgoingStatus::Dead,
            other => bail!("unknown outbox status {other:?}"),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: i64,
    pub kind: String,
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub bytes: Vec<u8>,
    pub submission_raw_id: Option<i64>,
    pub status: OutgoingStatus,
    /// Claims so far, this one included. A sender that died while sending shows up here too,
    /// so compare with the configured maximum before sending, not only after a failure.
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A current studio version, for the digest and the consolidated export.
#[derive(Debug, Clone, PartialEq)]
pub struct StudioRow {
    pub id: i64,
    pub submission_id: i64,
    /// The unit the studio belongs to (the submission's unit, else the one written in the
    /// forms); `None` when neither is known.
    pub unit: Option<String>,
    /// The recommending unit as written in the forms.
    pub recommending_unit: Option<String>,
    pub name: String,
    pub key: String,
    pub leader: Option<String>,
    pub verdict: StudioVerdict,
    pub rank: Option<i64>,
    pub data: serde_json::Value,
    /// The submission's receipt time.
    pub received_at: Option<DateTime<FixedOffset>>,
    /// Distinct codes of error findings of this version: its own and its mail's
    /// (findings with no studio), sorted.
    pub error_codes: Vec<String>,
}

/// One version of a studio, for its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudioVersion {
    pub id: i64,
    pub submission_id: i64,
    pub name: String,
    pub verdict: StudioVerdict,
    pub current: bool,
    /// The version that replaced this one.
    pub superseded_by: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Raw messages stored.
    pub mails: i64,
    /// Raw messages set aside as failed.
    pub mails_failed: i64,
    pub submissions: i64,
    pub submissions_accepted: i64,
    pub submissions_rejected: i64,
    pub submissions_ignored: i64,
    /// Distinct units of non-ignored submissions.
    pub units: i64,
    pub studios_current: i64,
    pub studios_accepted: i64,
    pub studios_rejected: i64,
}

// ---------------------------------------------------------------------------------------------
// Connection

impl Store {
    /// Connect to `sqlite://path` (the file and its parent folder are created; WAL, busy
    /// timeout 5 s, foreign keys on) or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            bail!("database url must start with sqlite:// or postgres://, not {:?}", redact(url));
        };
        let in_memory = backend == Backend::Sqlite && prepare_sqlite(url).await?;
        let options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30));
        // An in-memory SQLite database lives as long as its one connection: keep exactly one,
        // forever.
        let options = if in_memory {
            options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            options
        };
        let options = match backend {
            // The sqlx defaults already say busy_timeout 5 s and foreign keys on; say it
            // again per connection so nothing depends on a default.
            Backend::Sqlite => options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let writer_options = (backend == Backend::Sqlite && !in_memory).then(|| options.clone().max_connections(1));
        let pool = options
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to the database {}", redact(url)))?;
        let writer = match writer_options {
            Some(o) => o.connect(url).await.with_context(|| format!("cannot connect to the database {}", redact(url)))?,
            None => pool.clone(),
        };
        Ok(Store { pool, writer, backend })
    }

    /// Apply the embedded migrations of this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &*migrations::SQLITE_MIGRATOR,
            Backend::Postgres => &*migrations::POSTGRES_MIGRATOR,
        };
        migrator.run(&self.writer).await.context("database migration failed")?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        let one: i64 = sqlx::query_scalar("SELECT CAST(1 AS BIGINT)").fetch_one(&self.pool).await?;
        anyhow::ensure!(one == 1, "database answered {one} to SELECT 1");
        Ok(())
    }

    /// Close the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// A write transaction. On SQLite `BEGIN IMMEDIATE` takes the write lock up front (waiting
    /// under the busy timeout), so a transaction that reads and then writes never fails on
    /// a lock upgrade.
    async fn begin_write(&self) -> anyhow::Result<sqlx::Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }
}

/// Create the SQLite file and its folder, and switch it to WAL once (the journal mode is
/// stored in the file; setting it needs an exclusive lock, so not on every connection).
/// True for an in-memory database (nothing to prepare).
async fn prepare_sqlite(url: &str) -> anyhow::Result<bool> {
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("bad SQLite url {url:?}"))?
        .create_if_missing(true);
    let file = options.get_filename().to_owned();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory") || file.as_os_str().is_empty();
    if in_memory {
        return Ok(true);
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    let conn = options
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot open SQLite database {}", file.display()))?;
    conn.close().await?;
    Ok(false)
}

/// The url without its password, for error messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &rest[..colon], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Representation helpers

/// A UTC time as stored: fixed-width RFC 3339 with microseconds, so text order is time order.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(s).with_context(|| format!("bad stored time {s:?}"))?.with_timezone(&Utc))
}

fn parse_ts_opt(s: Option<String>) -> anyhow::Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

/// A mail's time → (UTC text, offset seconds).
fn split_fixed(t: Option<DateTime<FixedOffset>>) -> (Option<String>, Option<i64>) {
    match t {
        Some(t) => (Some(ts(t.with_timezone(&Utc))), Some(i64::from(t.offset().local_minus_utc()))),
        None => (None, None),
    }
}

fn join_fixed(utc: Option<String>, offset: Option<i64>) -> anyhow::Result<Option<DateTime<FixedOffset>>> {
    let Some(utc) = utc else { return Ok(None) };
    let t = parse_ts(&utc)?;
    let offset = offset
        .and_then(|o| i32::try_from(o).ok())
        .and_then(FixedOffset::east_opt)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
    Ok(Some(t.with_timezone(&offset)))
}

fn delta(d: Duration) -> anyhow::Result<TimeDelta> {
    TimeDelta::from_std(d).context("duration out of range")
}

fn parse_day(s: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| format!("bad stored day {s:?}"))
}

/// Lower-case hex SHA-256, as [`NewRaw::sha256`] expects.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
