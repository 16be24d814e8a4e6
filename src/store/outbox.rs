//! The outbox: complete formatted mails waiting to be sent, claimed with a lease.

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Backend, NewOutgoing, Outgoing, OutgoingStatus, Store, delta, parse_ts, parse_ts_opt, ts};

const COLUMNS: &str = "id, kind, message_id, envelope_from, recipients, bytes, submission_raw_id, status, attempts, \
                       next_attempt_at, last_error, created_at, sent_at";

const CLAIM_SQLITE: &str = "\
UPDATE outbox SET status = 'claimed', claimed_by = $1, lease_until = $2, attempts = attempts + 1
WHERE id = (SELECT id FROM outbox
            WHERE (status = 'pending' AND next_attempt_at <= $3)
               OR (status = 'claimed' AND lease_until <= $3)
            ORDER BY next_attempt_at, id LIMIT 1)
RETURNING id, kind, message_id, envelope_from, recipients, bytes, submission_raw_id, status, attempts,
          next_attempt_at, last_error, created_at, sent_at";

const CLAIM_POSTGRES: &str = "\
UPDATE outbox SET status = 'claimed', claimed_by = $1, lease_until = $2, attempts = attempts + 1
WHERE id = (SELECT id FROM outbox
            WHERE (status = 'pending' AND next_attempt_at <= $3)
               OR (status = 'claimed' AND lease_until <= $3)
            ORDER BY next_attempt_at, id LIMIT 1
            FOR UPDATE SKIP LOCKED)
RETURNING id, kind, message_id, envelope_from, recipients, bytes, submission_raw_id, status, attempts,
          next_attempt_at, last_error, created_at, sent_at";

/// Insert one outgoing mail unless its message_id is already queued. True when inserted.
pub(super) async fn enqueue_in(
    tx: &mut Transaction<'static, Any>,
    m: &NewOutgoing,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    if m.recipients.is_empty() {
        bail!("outgoing mail {} has no recipients", m.message_id);
    }
    let now = ts(now);
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO outbox (kind, message_id, envelope_from, recipients, bytes, submission_raw_id,
             next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (message_id) DO NOTHING
         RETURNING id",
    )
    .bind(&m.kind)
    .bind(&m.message_id)
    .bind(&m.envelope_from)
    .bind(serde_json::to_string(&m.recipients)?)
    .bind(&m.bytes)
    .bind(m.submission_raw_id)
    .bind(&now)
    .fetch_optional(&mut **tx)
    .await
    .context("queueing an outgoing mail")?;
    let Some(id) = id else { return Ok(false) };
    for address in &m.recipients {
        sqlx::query("INSERT INTO outbox_recipients (outbox_id, address) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(normalise_address(address))
            .execute(&mut **tx)
            .await?;
    }
    Ok(true)
}

/// `Name <a@B.cn>` / `a@B.cn` → `a@b.cn`.
fn normalise_address(address: &str) -> String {
    let a = address.trim();
    let a = match (a.rfind('<'), a.rfind('>')) {
        (Some(l), Some(r)) if l < r => &a[l + 1..r],
        _ => a,
    };
    a.trim().to_lowercase()
}

fn outgoing(row: &AnyRow) -> anyhow::Result<Outgoing> {
    let recipients: String = row.try_get("recipients")?;
    let status: String = row.try_get("status")?;
    let next: String = row.try_get("next_attempt_at")?;
    let created: String = row.try_get("created_at")?;
    Ok(Outgoing {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        message_id: row.try_get("message_id")?,
        envelope_from: row.try_get("envelope_from")?,
        recipients: serde_json::from_str(&recipients).context("bad stored recipients")?,
        bytes: row.try_get("bytes")?,
        submission_raw_id: row.try_get("submission_raw_id")?,
        status: OutgoingStatus::parse(&status)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: parse_ts(&next)?,
        last_error: row.try_get("last_error")?,
        created_at: parse_ts(&created)?,
        sent_at: parse_ts_opt(row.try_get("sent_at")?)?,
    })
}

impl Store {
    /// Queue a complete mail, due now. A message_id already queued (in any state) is left as
    /// it is: returns false.
    pub async fn enqueue(&self, m: &NewOutgoing) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let inserted = enqueue_in(&mut tx, m, Utc::now()).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Claim the mail that has been due longest: `pending` with `next_attempt_at <= now`, or
    /// `claimed` with an expired lease. Concurrent callers never get the same row.
    pub async fn claim_outgoing(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Option<Outgoing>> {
        let sql = match self.backend {
            Backend::Sqlite => CLAIM_SQLITE,
            Backend::Postgres => CLAIM_POSTGRES,
        };
        let row = sqlx::query(sql)
            .bind(worker)
            .bind(ts(now + delta(lease)?))
            .bind(ts(now))
            .fetch_optional(&self.writer)
            .await
            .context("claiming an outgoing mail")?;
        row.as_ref().map(outgoing).transpose()
    }

    pub async fn outgoing_sent(&self, id: i64, now: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $2, claimed_by = NULL, lease_until = NULL, last_error = NULL
             WHERE id = $1",
        )
        .bind(id)
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Sending failed: try again at `next_attempt_at`, or set it aside as dead (`None`).
    /// The caller decides, from [`Outgoing::attempts`] and the kind of error.
    pub async fn outgoing_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let (status, next) = match next_attempt_at {
            Some(t) => ("pending", Some(ts(t))),
            None => ("dead", None),
        };
        sqlx::query(
            "UPDATE outbox SET status = $2, next_attempt_at = COALESCE($3, next_attempt_at), last_error = $4,
                 claimed_by = NULL, lease_until = NULL
             WHERE id = $1 AND status <> 'sent'",
        )
        .bind(id)
        .bind(status)
        .bind(next)
        .bind(error)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Mails still to send (pending or being sent).
    pub async fn outbox_depth(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'claimed')")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Mails given up on, oldest first.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<Outgoing>> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE status = 'dead' ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(outgoing).collect()
    }

    /// One outgoing mail by its Message-ID.
    pub async fn outgoing_by_message_id(&self, message_id: &str) -> anyhow::Result<Option<Outgoing>> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE message_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(message_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(outgoing).transpose()
    }

    /// Mails queued for `address` (case-insensitive, display name ignored) since `since`,
    /// digests excluded: for the per-sender hourly reply limit.
    pub async fn replies_to_since(&self, address: &str, since: DateTime<Utc>) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox o JOIN outbox_recipients r ON r.outbox_id = o.id
             WHERE r.address = $1 AND o.created_at >= $2 AND o.kind <> 'digest'",
        )
        .bind(normalise_address(address))
        .bind(ts(since))
        .fetch_one(&self.pool)
        .await?)
    }

    /// When the sender should next look: the earliest `next_attempt_at` of a pending mail or
    /// lease end of a claimed one. `None` when nothing is queued.
    pub async fn next_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let rows: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'
             UNION ALL
             SELECT MIN(lease_until) FROM outbox WHERE status = 'claimed'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut best: Option<DateTime<Utc>> = None;
        for t in rows.into_iter().flatten() {
            let t = parse_ts(&t)?;
            best = Some(best.map_or(t, |b| b.min(t)));
        }
        Ok(best)
    }
}
