//! Who speaks for a unit: addresses staff approved, held mails, confirmation requests, and
//! the global reply ceiling.

use chrono::{DateTime, FixedOffset, Utc};
use sqlx::Row;

use super::{HeldMail, Store, join_fixed, ts};

/// Outgoing kinds that count against `[outbox] replies_per_hour` (digests do not).
const REPLY_KINDS: &str = "('reply', 'ack', 'confirm', 'refusal')";

impl Store {
    /// The unit an address was approved for by staff (or by a unit's confirmation).
    pub async fn registered_unit(&self, address: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT unit FROM registered_senders WHERE address = $1")
            .bind(address.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Register `address` for `unit` (`source`: staff | confirmation); a second approval
    /// moves it to the new unit.
    pub async fn register_sender(&self, address: &str, unit: &str, source: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO registered_senders (address, unit, source, approved_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (address) DO UPDATE SET unit = excluded.unit, source = excluded.source, approved_at = excluded.approved_at",
        )
        .bind(address.trim().to_lowercase())
        .bind(unit)
        .bind(source)
        .bind(ts(Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Every approved (address, unit), sorted.
    pub async fn registered_senders(&self) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT address, unit FROM registered_senders ORDER BY address").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("address")?, r.try_get("unit")?))).collect()
    }

    /// Replies of any kind but digests queued since `since` (the global ceiling).
    pub async fn replies_since(&self, since: DateTime<Utc>) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM outbox WHERE created_at >= $1 AND kind IN {REPLY_KINDS}"
        )))
        .bind(ts(since))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Held mails still waiting (`held_state = 'held'`), oldest first.
    pub async fn held_mails(&self) -> anyhow::Result<Vec<HeldMail>> {
        self.held_where("s.held_state = 'held'", None).await
    }

    /// One held mail (in any state) by its submission id.
    pub async fn held_mail(&self, submission_id: i64) -> anyhow::Result<Option<HeldMail>> {
        Ok(self.held_where("s.id = $1 AND s.held IS NOT NULL", Some(submission_id)).await?.pop())
    }

    /// The held mail (in any state) recorded from raw message `raw_id`.
    pub async fn held_mail_of_raw(&self, raw_id: i64) -> anyhow::Result<Option<HeldMail>> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM submissions WHERE raw_id = $1 AND held IS NOT NULL")
            .bind(raw_id)
            .fetch_optional(&self.pool)
            .await?;
        match id {
            Some(id) => self.held_mail(id).await,
            None => Ok(None),
        }
    }

    async fn held_where(&self, condition: &str, id: Option<i64>) -> anyhow::Result<Vec<HeldMail>> {
        let sql = format!(
            "SELECT s.id, s.raw_id, s.received_at, s.received_offset, s.sender, s.subject, s.suggested_unit, s.held,
                    s.held_state, s.attachments, r.stored_at
             FROM submissions s JOIN raw_messages r ON r.id = s.raw_id
             WHERE {condition} ORDER BY COALESCE(s.received_at, r.stored_at), s.id"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(id) = id {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let attachments: String = r.try_get("attachments")?;
                let attachments: Vec<serde_json::Value> = serde_json::from_str(&attachments).unwrap_or_default();
                Ok(HeldMail {
                    submission_id: r.try_get("id")?,
                    raw_id: r.try_get("raw_id")?,
                    received_at: join_fixed(r.try_get("received_at")?, r.try_get("received_offset")?)?,
                    sender: r.try_get("sender")?,
                    subject: r.try_get("subject")?,
                    suggested_unit: r.try_get("suggested_unit")?,
                    reason: r.try_get::<Option<String>, _>("held")?.unwrap_or_default(),
                    state: r.try_get::<Option<String>, _>("held_state")?.unwrap_or_default(),
                    attachments: attachments
                        .iter()
                        .filter_map(|a| {
                            let file = a.get("file")?.as_str()?;
                            let kind = a.get("kind").and_then(|k| k.as_str()).unwrap_or("other");
                            Some((file.to_owned(), kind.to_owned()))
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// The held mail a confirmation request with one of these Message-IDs was sent for,
    /// still unused: (Message-ID, raw message id, unit asked).
    pub async fn open_confirmation(&self, message_ids: &[String]) -> anyhow::Result<Option<(String, i64, String)>> {
        for id in message_ids {
            let row = sqlx::query("SELECT message_id, raw_id, unit FROM confirmations WHERE message_id = $1 AND used_at IS NULL")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(r) = row {
                return Ok(Some((r.try_get("message_id")?, r.try_get("raw_id")?, r.try_get("unit")?)));
            }
        }
        Ok(None)
    }

    /// Every confirmation request of a held raw message is used once one is answered.
    pub async fn close_confirmations(&self, raw_id: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE confirmations SET used_at = $2 WHERE raw_id = $1 AND used_at IS NULL")
            .bind(raw_id)
            .bind(ts(Utc::now()))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The stored bytes and receipt time of a raw message.
    pub async fn raw_bytes(&self, raw_id: i64) -> anyhow::Result<Option<(Vec<u8>, Option<DateTime<FixedOffset>>)>> {
        let row = sqlx::query("SELECT bytes, received_at, received_offset FROM raw_messages WHERE id = $1")
            .bind(raw_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("bytes")?, join_fixed(r.try_get("received_at")?, r.try_get("received_offset")?)?))).transpose()
    }
}
