//! One transaction per processed message: submission, studio versions, findings, outbox rows,
//! and the raw message marked processed.

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use chrono::Utc;
use sqlx::{Any, Row, Transaction};

use super::{Backend, NewOutgoing, RecordResult, Store, SubmissionRecord, split_fixed, ts};

impl Store {
    /// Record what the core decided about raw message `raw_id`, queue its outgoing mails and
    /// mark the raw message processed, all in one transaction.
    ///
    /// Studios are versions keyed by (unit, key), where the unit is the submission's unit,
    /// else the one written in the forms: a studio carried again by a later mail of the same
    /// unit supersedes the earlier version (`current = 0`, `superseded_by` set; history kept).
    /// With no unit at all a studio never supersedes anything.
    ///
    /// Calling it again for a raw message that already has its submission changes nothing and
    /// returns that submission (exactly once under crash and retry).
    pub async fn record(
        &self,
        raw_id: i64,
        rec: &SubmissionRecord,
        outgoing: &[NewOutgoing],
    ) -> anyhow::Result<RecordResult> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Serialise recorders: superseding reads the current versions and then replaces
            // them, which two concurrent transactions must not interleave. Plain reads go on.
            sqlx::query("LOCK TABLE studios IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        }
        let raw = sqlx::query("SELECT id FROM raw_messages WHERE id = $1")
            .bind(raw_id)
            .fetch_optional(&mut *tx)
            .await?;
        if raw.is_none() {
            bail!("record: raw message {raw_id} does not exist");
        }
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM submissions WHERE raw_id = $1")
            .bind(raw_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(submission_id) = existing {
            let superseded = superseded_by_submission(&mut tx, submission_id).await?;
            tx.commit().await?;
            return Ok(RecordResult { submission_id, superseded });
        }

        let now = ts(Utc::now());
        let (received_at, received_offset) = split_fixed(rec.received_at);
        let submission_id: i64 = sqlx::query_scalar(
            "INSERT INTO submissions (raw_id, message_id, sender, unit, subject, received_at, received_offset,
                 verdict, ignored_reason, summary_table, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             RETURNING id",
        )
        .bind(raw_id)
        .bind(&rec.message_id)
        .bind(&rec.sender)
        .bind(&rec.unit)
        .bind(&rec.subject)
        .bind(received_at)
        .bind(received_offset)
        .bind(&rec.verdict)
        .bind(&rec.ignored_reason)
        .bind(i16::from(rec.summary_table))
        .bind(&now)
        .fetch_one(&mut *tx)
        .await
        .context("inserting the submission")?;

        let mut superseded = Vec::new();
        let mut studio_ids: HashMap<&str, i64> = HashMap::new();
        for studio in &rec.studios {
            let owner = rec.unit.as_deref().or(studio.unit.as_deref());
            // Retire the current version first: a partial unique index allows one current
            // row per (unit, key).
            let old = match owner {
                Some(owner) => {
                    sqlx::query(
                        "UPDATE studios SET is_current = 0
                         WHERE owner_unit = $1 AND key = $2 AND is_current = 1
                         RETURNING id, name, submission_id",
                    )
                    .bind(owner)
                    .bind(&studio.key)
                    .fetch_all(&mut *tx)
                    .await?
                }
                None => Vec::new(),
            };
            let new_id: i64 = sqlx::query_scalar(
                "INSERT INTO studios (submission_id, owner_unit, key, name, unit, leader, verdict, rank, data,
                     is_current, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)
                 RETURNING id",
            )
            .bind(submission_id)
            .bind(owner)
            .bind(&studio.key)
            .bind(&studio.name)
            .bind(&studio.unit)
            .bind(&studio.leader)
            .bind(&studio.verdict)
            .bind(studio.rank)
            .bind(studio.data.to_string())
            .bind(&now)
            .fetch_one(&mut *tx)
            .await
            .context("inserting a studio version")?;
            for row in old {
                let old_id: i64 = row.try_get("id")?;
                let old_submission: i64 = row.try_get("submission_id")?;
                sqlx::query("UPDATE studios SET superseded_by = $2 WHERE id = $1")
                    .bind(old_id)
                    .bind(new_id)
                    .execute(&mut *tx)
                    .await?;
                // The same studio twice in one mail is not a replacement of an earlier mail.
                if old_submission != submission_id {
                    let name: String = row.try_get("name")?;
                    if !superseded.contains(&name) {
                        superseded.push(name);
                    }
                }
            }
            studio_ids.insert(studio.key.as_str(), new_id);
        }

        for f in &rec.findings {
            let studio_id = f.studio_key.as_deref().and_then(|k| studio_ids.get(k).copied());
            sqlx::query(
                "INSERT INTO findings (submission_id, studio_id, studio_key, code, severity, file, location,
                     found, expected, message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(submission_id)
            .bind(studio_id)
            .bind(&f.studio_key)
            .bind(&f.code)
            .bind(&f.severity)
            .bind(&f.file)
            .bind(&f.location)
            .bind(&f.found)
            .bind(&f.expected)
            .bind(&f.message)
            .execute(&mut *tx)
            .await
            .context("inserting a finding")?;
        }

        for m in outgoing {
            super::outbox::enqueue_in(&mut tx, m, Utc::now()).await?;
        }

        sqlx::query(
            "UPDATE raw_messages SET status = 'processed', processed_at = $2, claimed_by = NULL,
                 lease_until = NULL, next_attempt_at = NULL
             WHERE id = $1",
        )
        .bind(raw_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await.context("committing the submission")?;
        Ok(RecordResult { submission_id, superseded })
    }

    /// The unit has a submission that carried a 附件2 推荐汇总表.
    pub async fn summary_on_file(&self, unit: &str) -> anyhow::Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM submissions WHERE unit = $1 AND summary_table = 1")
            .bind(unit)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Current studios of every unit but `unit` (all of them when `unit` is `None`), as
    /// (unit, name), sorted. Studios with no known unit are left out.
    pub async fn current_studios_of_other_units(&self, unit: Option<&str>) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT owner_unit, name FROM studios WHERE is_current = 1 AND owner_unit IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let owner: String = row.try_get("owner_unit")?;
            if Some(owner.as_str()) != unit {
                out.push((owner, row.try_get("name")?));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Names of the studio versions that the versions of `submission_id` replaced, excluding
/// replacements within the same submission.
async fn superseded_by_submission(tx: &mut Transaction<'static, Any>, submission_id: i64) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT o.name FROM studios o JOIN studios n ON o.superseded_by = n.id
         WHERE n.submission_id = $1 AND o.submission_id <> $1
         ORDER BY n.id, o.id",
    )
    .bind(submission_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut out: Vec<String> = Vec::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}
