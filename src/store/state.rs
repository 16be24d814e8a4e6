//! Small pieces of shared state: mailbox UID bookkeeping, digest runs, leases.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Store, delta, parse_day, ts};

impl Store {
    /// (UIDVALIDITY, last UID seen) of a mailbox, if any was recorded.
    pub async fn mailbox_state(&self, mailbox: &str) -> anyhow::Result<Option<(i64, i64)>> {
        let row = sqlx::query("SELECT uidvalidity, last_uid FROM mailbox_state WHERE mailbox = $1")
            .bind(mailbox)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("uidvalidity")?, r.try_get("last_uid")?))).transpose()
    }

    pub async fn set_mailbox_state(&self, mailbox: &str, uidvalidity: i64, last_uid: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO mailbox_state (mailbox, uidvalidity, last_uid, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (mailbox) DO UPDATE
             SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, updated_at = excluded.updated_at",
        )
        .bind(mailbox)
        .bind(uidvalidity)
        .bind(last_uid)
        .bind(ts(Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Take the digest of `day` (`kind` daily | final) before building and sending it. True:
    /// this caller owns it; false: it was taken before (a restart, or another instance).
    pub async fn claim_digest(&self, day: NaiveDate, kind: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO digest_runs (day, kind, claimed_at) VALUES ($1, $2, $3) ON CONFLICT (day, kind) DO NOTHING",
        )
        .bind(day.format("%Y-%m-%d").to_string())
        .bind(kind)
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The latest day a digest (of any kind) was taken for.
    pub async fn last_digest_day(&self) -> anyhow::Result<Option<NaiveDate>> {
        let day: Option<String> = sqlx::query_scalar("SELECT MAX(day) FROM digest_runs").fetch_one(&self.pool).await?;
        day.as_deref().map(parse_day).transpose()
    }

    /// Take or renew the lease `name` for `holder` until `now + ttl`. True when `holder` has
    /// it: it was free, expired, or already `holder`'s. False while someone else's lease runs.
    pub async fn try_lease(&self, name: &str, holder: &str, ttl: Duration, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(ts(now + delta(ttl)?))
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give the lease up (on shutdown) if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
