//! Raw messages: stored first, deduplicated, then claimed for processing with a lease.

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    Backend, FailedRaw, MAX_RAW_ATTEMPTS, NewRaw, PutRaw, RawMessage, Store, UnprocessedMail, delta, join_fixed,
    parse_ts, sha256_hex, split_fixed, ts,
};

const CLAIM_RAW_SQLITE: &str = "\
UPDATE raw_messages SET status = 'claimed', claimed_by = $1, lease_until = $2, attempts = attempts + 1
WHERE id = (SELECT id FROM raw_messages
            WHERE (status = 'new' AND (next_attempt_at IS NULL OR next_attempt_at <= $3))
               OR (status = 'claimed' AND lease_until <= $3 AND attempts < $4)
            ORDER BY id LIMIT 1)
RETURNING id, mailbox, uidvalidity, uid, bytes, received_at, received_offset, attempts";

const CLAIM_RAW_POSTGRES: &str = "\
UPDATE raw_messages SET status = 'claimed', claimed_by = $1, lease_until = $2, attempts = attempts + 1
WHERE id = (SELECT id FROM raw_messages
            WHERE (status = 'new' AND (next_attempt_at IS NULL OR next_attempt_at <= $3))
               OR (status = 'claimed' AND lease_until <= $3 AND attempts < $4)
            ORDER BY id LIMIT 1
            FOR UPDATE SKIP LOCKED)
RETURNING id, mailbox, uidvalidity, uid, bytes, received_at, received_offset, attempts";

/// Wait before the next try after the n-th attempt failed: 30 s, 2 min, 8 min, 32 min, capped
/// at an hour.
pub fn raw_backoff(attempts: i64) -> TimeDelta {
    let exp = attempts.clamp(1, 6) - 1;
    let secs = 30i64 * 4i64.pow(exp as u32);
    TimeDelta::seconds(secs.min(3600))
}

impl Store {
    /// Store a message unless it is already known: by (mailbox, UIDVALIDITY, UID) when there
    /// is a UID, and by the SHA-256 of its bytes (the same mail appended twice, or
    /// re-delivered under a new UIDVALIDITY, is `Known`).
    pub async fn put_raw(&self, m: &NewRaw) -> anyhow::Result<PutRaw> {
        let actual = sha256_hex(&m.bytes);
        if !m.sha256.eq_ignore_ascii_case(&actual) {
            bail!("raw message sha256 {} does not match its bytes ({actual})", m.sha256);
        }
        if let Some(known) = self.find_raw(m, &actual).await? {
            return Ok(known);
        }
        let (received_at, received_offset) = split_fixed(m.received_at);
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO raw_messages (mailbox, uidvalidity, uid, sha256, size, bytes, received_at, received_offset, stored_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(&m.mailbox)
        .bind(m.uidvalidity)
        .bind(m.uid)
        .bind(&actual)
        .bind(m.size)
        .bind(&m.bytes)
        .bind(received_at)
        .bind(received_offset)
        .bind(ts(Utc::now()))
        .fetch_optional(&self.writer)
        .await
        .context("storing a raw message")?;
        match id {
            Some(id) => Ok(PutRaw::New(id)),
            // Lost a race with another instance storing the same message.
            None => match self.find_raw(m, &actual).await? {
                Some(known) => Ok(known),
                None => bail!("raw message conflicted on insert but cannot be found"),
            },
        }
    }

    /// Whether the raw message's results are committed.
    pub async fn raw_processed(&self, id: i64) -> anyhow::Result<bool> {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM raw_messages WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(status.as_deref() == Some("processed"))
    }

    async fn find_raw(&self, m: &NewRaw, sha256: &str) -> anyhow::Result<Option<PutRaw>> {
        let known = |row: AnyRow| -> anyhow::Result<PutRaw> {
            let status: String = row.try_get("status")?;
            Ok(PutRaw::Known { id: row.try_get("id")?, processed: status == "processed" })
        };
        if let Some(uid) = m.uid {
            let row = match m.uidvalidity {
                Some(v) => sqlx::query(
                    "SELECT id, status FROM raw_messages WHERE mailbox = $1 AND uidvalidity = $2 AND uid = $3",
                )
                .bind(&m.mailbox)
                .bind(v)
                .bind(uid)
                .fetch_optional(&self.pool)
                .await?,
                None => sqlx::query(
                    "SELECT id, status FROM raw_messages WHERE mailbox = $1 AND uidvalidity IS NULL AND uid = $2",
                )
                .bind(&m.mailbox)
                .bind(uid)
                .fetch_optional(&self.pool)
                .await?,
            };
            if let Some(row) = row {
                return known(row).map(Some);
            }
        }
        let row = sqlx::query("SELECT id, status FROM raw_messages WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.map(known).transpose()
    }

    /// Claim the oldest unprocessed message: status `new` and due, or `claimed` by a worker
    /// whose lease expired. Exactly one concurrent caller gets each message.
    pub async fn claim_raw(&self, worker: &str, lease: Duration) -> anyhow::Result<Option<RawMessage>> {
        self.claim_raw_at(worker, Utc::now(), lease).await
    }

    /// [`Store::claim_raw`] at a given time (tests, and callers that own the clock).
    pub async fn claim_raw_at(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Option<RawMessage>> {
        let now_s = ts(now);
        // A message whose worker died MAX_RAW_ATTEMPTS times is set aside, not retried.
        sqlx::query(
            "UPDATE raw_messages SET status = 'failed', claimed_by = NULL, lease_until = NULL,
                 last_error = 'the lease of its worker expired (crash or hang) on the last attempt'
             WHERE status = 'claimed' AND lease_until <= $1 AND attempts >= $2",
        )
        .bind(&now_s)
        .bind(MAX_RAW_ATTEMPTS)
        .execute(&self.writer)
        .await?;
        let sql = match self.backend {
            Backend::Sqlite => CLAIM_RAW_SQLITE,
            Backend::Postgres => CLAIM_RAW_POSTGRES,
        };
        let row = sqlx::query(sql)
            .bind(worker)
            .bind(ts(now + delta(lease)?))
            .bind(&now_s)
            .bind(MAX_RAW_ATTEMPTS)
            .fetch_optional(&self.writer)
            .await
            .context("claiming a raw message")?;
        let Some(row) = row else { return Ok(None) };
        let attempts: i64 = row.try_get("attempts")?;
        Ok(Some(RawMessage {
            id: row.try_get("id")?,
            mailbox: row.try_get("mailbox")?,
            uidvalidity: row.try_get("uidvalidity")?,
            uid: row.try_get("uid")?,
            bytes: row.try_get("bytes")?,
            received_at: join_fixed(row.try_get("received_at")?, row.try_get("received_offset")?)?,
            attempts: attempts - 1,
        }))
    }

    /// The raw bytes of the mail a submission was recorded from.
    pub async fn raw_of_submission(&self, submission_id: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let bytes: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT r.bytes FROM raw_messages r JOIN submissions s ON s.raw_id = r.id WHERE s.id = $1",
        )
        .bind(submission_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(bytes)
    }

    /// Processing failed: back to `new` after a backoff ([`raw_backoff`]), or `failed` (kept,
    /// listed by [`Store::failed_raws`]) once it has had [`MAX_RAW_ATTEMPTS`] attempts.
    /// Returns true when the message is (now) set aside as `failed`.
    pub async fn raw_failed(&self, id: i64, error: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT status, attempts FROM raw_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        let Some(row) = row else { bail!("raw message {id} does not exist") };
        let status: String = row.try_get("status")?;
        let mut attempts: i64 = row.try_get("attempts")?;
        if status == "processed" || status == "failed" {
            return Ok(status == "failed");
        }
        if status == "new" {
            // Failed without a claim: count it here.
            attempts += 1;
        }
        let (new_status, next) = if attempts >= MAX_RAW_ATTEMPTS {
            ("failed", None)
        } else {
            ("new", Some(ts(Utc::now() + raw_backoff(attempts))))
        };
        sqlx::query(
            "UPDATE raw_messages SET status = $2, attempts = $3, next_attempt_at = $4, last_error = $5,
                 claimed_by = NULL, lease_until = NULL
             WHERE id = $1 AND status IN ('new', 'claimed')",
        )
        .bind(id)
        .bind(new_status)
        .bind(attempts)
        .bind(next)
        .bind(error)
        .execute(&self.writer)
        .await?;
        Ok(new_status == "failed")
    }

    /// Raw messages set aside as failed (the count `/healthz` and `/metrics` report).
    pub async fn failed_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM raw_messages WHERE status = 'failed'").fetch_one(&self.pool).await?)
    }

    /// Mails staff must look at by hand, oldest first: see [`UnprocessedMail`].
    pub async fn unprocessed_mails(&self) -> anyhow::Result<Vec<UnprocessedMail>> {
        let rows = sqlx::query(
            "SELECT r.id, r.stored_at, s.sender, s.subject, COALESCE(s.ignored_reason, r.last_error, r.status) AS reason, r.status AS raw_status
             FROM raw_messages r LEFT JOIN submissions s ON s.raw_id = r.id
             WHERE s.verdict = 'ignored' OR r.status = 'failed'
             ORDER BY r.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<UnprocessedMail> = rows
            .into_iter()
            .map(|row| {
                let stored_at: String = row.try_get("stored_at")?;
                Ok(UnprocessedMail {
                    raw_id: row.try_get("id")?,
                    stored_at: parse_ts(&stored_at)?,
                    sender: row.try_get("sender")?,
                    subject: row.try_get("subject")?,
                    set_aside: row.try_get::<String, _>("raw_status")? == "failed",
                    reason: row.try_get("reason")?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        // A mail set aside before anything was recorded of it: sender and subject from its
        // own header, so staff know which one it is.
        for m in out.iter_mut().filter(|m| m.sender.is_none() && m.subject.is_none()) {
            if let Some((bytes, _)) = self.raw_bytes(m.raw_id).await? {
                let limits = crate::core::Limits { max_parts: 1, ..Default::default() };
                let head = &bytes[..bytes.len().min(256 * 1024)];
                if let Ok(Ok(msg)) = std::panic::catch_unwind(|| crate::core::mime::parse(head, &limits)) {
                    m.sender = msg.from.map(|f| f.address);
                    m.subject = Some(msg.subject);
                }
            }
        }
        Ok(out)
    }

    /// Raw messages set aside after too many failed attempts, oldest first.
    pub async fn failed_raws(&self) -> anyhow::Result<Vec<FailedRaw>> {
        let rows = sqlx::query(
            "SELECT id, mailbox, uid, sha256, attempts, last_error, stored_at FROM raw_messages
             WHERE status = 'failed' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let stored_at: String = row.try_get("stored_at")?;
                Ok(FailedRaw {
                    id: row.try_get("id")?,
                    mailbox: row.try_get("mailbox")?,
                    uid: row.try_get("uid")?,
                    sha256: row.try_get("sha256")?,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    stored_at: parse_ts(&stored_at)?,
                })
            })
            .collect()
    }
}
