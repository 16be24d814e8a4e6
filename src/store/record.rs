//! One transaction per processed message: submission, studio versions, findings, outbox rows,
//! and the raw message marked processed.

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use chrono::Utc;
use sqlx::{Any, Row, Transaction};

use super::{Backend, DossierUpdate, DossierVersion, NewOutgoing, RecordResult, Store, SubmissionRecord, split_fixed, ts};

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
                 verdict, ignored_reason, summary_table, recorded_at, applied, attachments, download_links,
                 held, held_state, suggested_unit, auth)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             RETURNING id",
        )
        .bind(raw_id)
        .bind(&rec.message_id)
        .bind(&rec.sender)
        .bind(&rec.unit)
        .bind(&rec.subject)
        .bind(received_at)
        .bind(received_offset)
        .bind(rec.verdict.as_str())
        .bind(&rec.ignored_reason)
        .bind(i16::from(rec.summary_table))
        .bind(&now)
        .bind(i16::from(rec.dossier.is_some()))
        .bind(if rec.attachments.is_null() { "[]".to_owned() } else { rec.attachments.to_string() })
        .bind(serde_json::to_string(&rec.download_links)?)
        .bind(&rec.held)
        .bind(rec.held.as_ref().map(|_| "held"))
        .bind(&rec.suggested_unit)
        .bind(&rec.auth)
        .fetch_one(&mut *tx)
        .await
        .context("inserting the submission")?;
        for (message_id, unit) in &rec.confirmations {
            sqlx::query("INSERT INTO confirmations (message_id, raw_id, unit, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (message_id) DO NOTHING")
                .bind(message_id)
                .bind(raw_id)
                .bind(unit)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        let superseded = write_outcome(&mut tx, submission_id, rec, &now).await?;
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

    /// Apply a held mail (recorded earlier by [`Store::record`] with `held` set): its
    /// submission takes the outcome `rec` (judged now, against the unit's current dossier),
    /// its earlier findings are replaced, and `outgoing` is queued — one transaction. A mail
    /// that is no longer held (applied or discarded meanwhile) is left alone: `Ok(false)`.
    pub async fn apply_held(&self, submission_id: i64, rec: &SubmissionRecord, outgoing: &[NewOutgoing]) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE studios IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        }
        let state: Option<Option<String>> = sqlx::query_scalar("SELECT held_state FROM submissions WHERE id = $1")
            .bind(submission_id)
            .fetch_optional(&mut *tx)
            .await?;
        match state {
            None => bail!("no submission {submission_id}"),
            Some(Some(s)) if s == "held" => {}
            Some(_) => {
                tx.commit().await?;
                return Ok(false);
            }
        }
        let now = ts(Utc::now());
        sqlx::query(
            "UPDATE submissions SET unit = $2, verdict = $3, ignored_reason = $4, summary_table = $5, applied = $6,
                 attachments = $7, download_links = $8, held_state = 'applied', auth = COALESCE($9, auth)
             WHERE id = $1",
        )
        .bind(submission_id)
        .bind(&rec.unit)
        .bind(rec.verdict.as_str())
        .bind(&rec.ignored_reason)
        .bind(i16::from(rec.summary_table))
        .bind(i16::from(rec.dossier.is_some()))
        .bind(if rec.attachments.is_null() { "[]".to_owned() } else { rec.attachments.to_string() })
        .bind(serde_json::to_string(&rec.download_links)?)
        .bind(&rec.auth)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM findings WHERE submission_id = $1").bind(submission_id).execute(&mut *tx).await?;
        write_outcome(&mut tx, submission_id, rec, &now).await?;
        for m in outgoing {
            super::outbox::enqueue_in(&mut tx, m, Utc::now()).await?;
        }
        tx.commit().await.context("committing the applied held mail")?;
        Ok(true)
    }

    /// Mark a held mail discarded: kept on record, never applied. `Ok(false)` when it is not
    /// (or no longer) held.
    pub async fn discard_held(&self, submission_id: i64) -> anyhow::Result<bool> {
        let n = sqlx::query("UPDATE submissions SET held_state = 'discarded' WHERE id = $1 AND held_state = 'held'")
            .bind(submission_id)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}

/// The part of a recorded outcome that changes the unit's state: the new dossier version,
/// the studio rows, the findings. Returns the names of studios an earlier mail's version of
/// which was replaced.
async fn write_outcome(tx: &mut Transaction<'static, Any>, submission_id: i64, rec: &SubmissionRecord, now: &str) -> anyhow::Result<Vec<String>> {
    let now = now.to_owned();
    if let Some(update) = &rec.dossier {
        put_dossier_version(tx, update, submission_id, &now).await?;
    }
    {

        let mut superseded = Vec::new();
        let mut studio_ids: HashMap<&str, i64> = HashMap::new();
        // A dossier version replaces every current studio of its unit: the dossier's studios
        // are the unit's studios now.
        let mut retired = match &rec.dossier {
            Some(update) => {
                sqlx::query(
                    "UPDATE studios SET is_current = 0
                     WHERE owner_unit = $1 AND is_current = 1
                     RETURNING id, key, name, submission_id",
                )
                .bind(&update.unit)
                .fetch_all(&mut **tx)
                .await?
            }
            None => Vec::new(),
        };
        for studio in &rec.studios {
            let owner = rec.unit.as_deref().or(studio.unit.as_deref());
            // Retire the current version first: a partial unique index allows one current
            // row per (unit, key).
            let old = match owner {
                _ if rec.dossier.is_some() => {
                    let (same, rest): (Vec<_>, Vec<_>) =
                        retired.into_iter().partition(|row| row.try_get::<String, _>("key").is_ok_and(|k| k == studio.key));
                    retired = rest;
                    same
                }
                Some(owner) => {
                    sqlx::query(
                        "UPDATE studios SET is_current = 0
                         WHERE owner_unit = $1 AND key = $2 AND is_current = 1
                         RETURNING id, name, submission_id",
                    )
                    .bind(owner)
                    .bind(&studio.key)
                    .fetch_all(&mut **tx)
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
            .bind(studio.verdict.as_str())
            .bind(studio.rank)
            .bind(studio.data.to_string())
            .bind(&now)
            .fetch_one(&mut **tx)
            .await
            .context("inserting a studio version")?;
            for row in old {
                let old_id: i64 = row.try_get("id")?;
                let old_submission: i64 = row.try_get("submission_id")?;
                sqlx::query("UPDATE studios SET superseded_by = $2 WHERE id = $1")
                    .bind(old_id)
                    .bind(new_id)
                    .execute(&mut **tx)
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
                     found, expected, message, on_file)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(submission_id)
            .bind(studio_id)
            .bind(&f.studio_key)
            .bind(&f.code)
            .bind(f.severity.as_str())
            .bind(&f.file)
            .bind(&f.location)
            .bind(&f.found)
            .bind(&f.expected)
            .bind(&f.message)
            .bind(i16::from(f.on_file))
            .execute(&mut **tx)
            .await
            .context("inserting a finding")?;
        }

        Ok(superseded)
    }
}

impl Store {
    /// The unit's current dossier version, if it has one.
    pub async fn current_dossier(&self, unit: &str) -> anyhow::Result<Option<DossierVersion>> {
        let row = sqlx::query("SELECT id, unit, submission_id, data, changes FROM dossier_versions WHERE unit = $1 AND is_current = 1")
            .bind(unit)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| dossier_version(&r)).transpose()
    }

    /// Every unit's current dossier, sorted by unit.
    pub async fn current_dossiers(&self) -> anyhow::Result<Vec<DossierVersion>> {
        let rows = sqlx::query("SELECT id, unit, submission_id, data, changes FROM dossier_versions WHERE is_current = 1")
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<DossierVersion> = rows.iter().map(dossier_version).collect::<anyhow::Result<_>>()?;
        out.sort_by(|a, b| a.unit.cmp(&b.unit));
        Ok(out)
    }

    /// Every version of a unit's dossier, oldest first (its history).
    pub async fn dossier_history(&self, unit: &str) -> anyhow::Result<Vec<DossierVersion>> {
        let rows = sqlx::query("SELECT id, unit, submission_id, data, changes FROM dossier_versions WHERE unit = $1 ORDER BY id")
            .bind(unit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(dossier_version).collect()
    }

    /// The submission of an earlier mail with this Message-ID from this sender (a mail
    /// delivered twice, perhaps with other bytes), other than the raw message `raw_id`.
    pub async fn same_mail(&self, message_id: &str, sender: &str, raw_id: i64) -> anyhow::Result<Option<i64>> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM submissions WHERE message_id = $1 AND LOWER(sender) = $2 AND raw_id <> $3 ORDER BY id LIMIT 1",
        )
        .bind(message_id)
        .bind(sender.to_lowercase())
        .bind(raw_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
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

fn dossier_version(r: &sqlx::any::AnyRow) -> anyhow::Result<DossierVersion> {
    let data: String = r.try_get("data")?;
    let changes: String = r.try_get("changes")?;
    Ok(DossierVersion {
        id: r.try_get("id")?,
        unit: r.try_get("unit")?,
        submission_id: r.try_get("submission_id")?,
        dossier: serde_json::from_str(&data).context("bad stored dossier")?,
        changes: serde_json::from_str(&changes).context("bad stored dossier changes")?,
    })
}

/// Make `update` the unit's current dossier version, recorded by `submission_id`. Fails when
/// the current version is no longer the one the mail was merged into.
async fn put_dossier_version(tx: &mut Transaction<'static, Any>, update: &DossierUpdate, submission_id: i64, now: &str) -> anyhow::Result<()> {
    let current: Option<i64> = sqlx::query_scalar("SELECT id FROM dossier_versions WHERE unit = $1 AND is_current = 1")
        .bind(&update.unit)
        .fetch_optional(&mut **tx)
        .await?;
    if current != update.base {
        bail!("the dossier of {} changed while this mail was merged (now version {current:?}, merged onto {:?}); it will be merged again", update.unit, update.base);
    }
    let mut dossier = update.dossier.clone();
    dossier.stamp(submission_id);
    let mut changes = update.changes.clone();
    for c in &mut changes {
        if let Some(r) = &mut c.replaced
            && r.submission.is_none()
        {
            r.submission = Some(submission_id);
        }
    }
    sqlx::query("UPDATE dossier_versions SET is_current = 0 WHERE unit = $1 AND is_current = 1")
        .bind(&update.unit)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO dossier_versions (unit, submission_id, data, changes, is_current, created_at) VALUES ($1, $2, $3, $4, 1, $5)")
        .bind(&update.unit)
        .bind(submission_id)
        .bind(serde_json::to_string(&dossier)?)
        .bind(serde_json::to_string(&changes)?)
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("inserting the dossier version")?;
    Ok(())
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
