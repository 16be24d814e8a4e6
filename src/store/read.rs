//! Reads for the digest and the consolidated export. Sorting happens here in Rust, not in
//! SQL, so NULL placement and text collation cannot differ between the backends.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use chrono::NaiveDate;
use sqlx::Row;

use super::{Counts, FindingRecord, MailToRead, MailVerdict, Store, StudioRow, StudioVersion, join_fixed, parse_ts};

impl Store {
    /// Current studio versions, sorted by unit (unknown last), then rank (none last), then
    /// name.
    pub async fn current_studios(&self) -> anyhow::Result<Vec<StudioRow>> {
        let rows = sqlx::query(
            "SELECT s.id, s.submission_id, s.owner_unit, s.unit, s.name, s.key, s.leader, s.verdict, s.rank,
                    s.data, sub.received_at, sub.received_offset
             FROM studios s JOIN submissions sub ON sub.id = s.submission_id
             WHERE s.is_current = 1",
        )
        .fetch_all(&self.pool)
        .await?;
        // Error codes of each current version: its own findings and its mail's general ones.
        let code_rows = sqlx::query(
            "SELECT s.id, f.code FROM studios s
             JOIN submissions sub ON sub.id = s.submission_id
             JOIN findings f ON f.submission_id = s.submission_id
                            AND (f.studio_id = s.id
                                 OR (f.studio_key IS NULL AND (f.on_file = 1 OR sub.applied = 0)))
             WHERE s.is_current = 1 AND f.severity = 'error'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut codes: HashMap<i64, BTreeSet<String>> = HashMap::new();
        for row in code_rows {
            codes.entry(row.try_get("id")?).or_default().insert(row.try_get("code")?);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let data: String = row.try_get("data")?;
            out.push(StudioRow {
                id,
                submission_id: row.try_get("submission_id")?,
                unit: row.try_get("owner_unit")?,
                recommending_unit: row.try_get("unit")?,
                name: row.try_get("name")?,
                key: row.try_get("key")?,
                leader: row.try_get("leader")?,
                verdict: row.try_get::<String, _>("verdict")?.parse()?,
                rank: row.try_get("rank")?,
                data: serde_json::from_str(&data).context("bad stored studio data")?,
                received_at: join_fixed(row.try_get("received_at")?, row.try_get("received_offset")?)?,
                error_codes: codes.remove(&id).unwrap_or_default().into_iter().collect(),
            });
        }
        out.sort_by(|a, b| {
            (a.unit.is_none(), &a.unit, a.rank.is_none(), a.rank, &a.name, a.id)
                .cmp(&(b.unit.is_none(), &b.unit, b.rank.is_none(), b.rank, &b.name, b.id))
        });
        Ok(out)
    }

    /// Every version of the studio `key` of `unit` (`None`: versions with no known unit),
    /// oldest first.
    pub async fn studio_versions(&self, unit: Option<&str>, key: &str) -> anyhow::Result<Vec<StudioVersion>> {
        let rows = match unit {
            Some(unit) => {
                sqlx::query(
                    "SELECT id, submission_id, name, verdict, is_current, superseded_by FROM studios
                     WHERE owner_unit = $1 AND key = $2 ORDER BY id",
                )
                .bind(unit)
                .bind(key)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, submission_id, name, verdict, is_current, superseded_by FROM studios
                     WHERE owner_unit IS NULL AND key = $1 ORDER BY id",
                )
                .bind(key)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|row| {
                let current: i64 = row.try_get("is_current")?;
                Ok(StudioVersion {
                    id: row.try_get("id")?,
                    submission_id: row.try_get("submission_id")?,
                    name: row.try_get("name")?,
                    verdict: row.try_get::<String, _>("verdict")?.parse()?,
                    current: current != 0,
                    superseded_by: row.try_get("superseded_by")?,
                })
            })
            .collect()
    }

    pub async fn counts(&self) -> anyhow::Result<Counts> {
        let row = sqlx::query(
            "SELECT
                (SELECT COUNT(*) FROM raw_messages) AS mails,
                (SELECT COUNT(*) FROM raw_messages WHERE status = 'failed') AS mails_failed,
                (SELECT COUNT(*) FROM submissions) AS submissions,
                (SELECT COUNT(*) FROM submissions WHERE verdict = 'accepted') AS submissions_accepted,
                (SELECT COUNT(*) FROM submissions WHERE verdict = 'rejected') AS submissions_rejected,
                (SELECT COUNT(*) FROM submissions WHERE verdict = 'ignored') AS submissions_ignored,
                (SELECT COUNT(DISTINCT unit) FROM submissions WHERE verdict <> 'ignored') AS units,
                (SELECT COUNT(*) FROM studios WHERE is_current = 1) AS studios_current,
                (SELECT COUNT(*) FROM studios WHERE is_current = 1 AND verdict = 'accepted') AS studios_accepted,
                (SELECT COUNT(*) FROM studios WHERE is_current = 1 AND verdict = 'rejected') AS studios_rejected",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            mails: row.try_get("mails")?,
            mails_failed: row.try_get("mails_failed")?,
            submissions: row.try_get("submissions")?,
            submissions_accepted: row.try_get("submissions_accepted")?,
            submissions_rejected: row.try_get("submissions_rejected")?,
            submissions_ignored: row.try_get("submissions_ignored")?,
            units: row.try_get("units")?,
            studios_current: row.try_get("studios_current")?,
            studios_accepted: row.try_get("studios_accepted")?,
            studios_rejected: row.try_get("studios_rejected")?,
        })
    }

    /// Non-ignored submissions per calendar day in `tz` (by receipt time, else by the time
    /// they were recorded), oldest day first; days without submissions are absent.
    pub async fn submissions_per_day(&self, tz: chrono_tz::Tz) -> anyhow::Result<Vec<(NaiveDate, i64)>> {
        let rows = sqlx::query("SELECT received_at, recorded_at FROM submissions WHERE verdict <> 'ignored'")
            .fetch_all(&self.pool)
            .await?;
        let mut days: BTreeMap<NaiveDate, i64> = BTreeMap::new();
        for row in rows {
            let received: Option<String> = row.try_get("received_at")?;
            let recorded: String = row.try_get("recorded_at")?;
            let t = parse_ts(received.as_deref().unwrap_or(&recorded))?;
            *days.entry(t.with_timezone(&tz).date_naive()).or_default() += 1;
        }
        Ok(days.into_iter().collect())
    }

    /// Senders of non-ignored submissions that could not be tied to any unit (lower-cased,
    /// sorted, distinct).
    pub async fn unknown_senders(&self) -> anyhow::Result<Vec<String>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT sender FROM submissions WHERE unit IS NULL AND sender IS NOT NULL AND verdict <> 'ignored'",
        )
        .fetch_all(&self.pool)
        .await?;
        let set: BTreeSet<String> = rows.into_iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect();
        Ok(set.into_iter().collect())
    }
    /// Findings still open, as (unit, studio name, finding): for a unit, the findings judged
    /// on its current dossier version (a later mail that resolves one closes it); for a mail
    /// that names no unit, its own findings while its studios are current. Sorted by unit
    /// (unknown last), studio (unit-level first), then in recorded order.
    pub async fn open_findings(&self) -> anyhow::Result<Vec<(Option<String>, Option<String>, FindingRecord)>> {
        let rows = sqlx::query(
            "SELECT f.id, f.submission_id, f.studio_id, f.studio_key, f.code, f.severity, f.file, f.location,
                    f.found, f.expected, f.message, CAST(f.on_file AS BIGINT) AS on_file,
                    sub.unit AS sub_unit, sub.verdict AS sub_verdict, CAST(sub.applied AS BIGINT) AS applied,
                    s.owner_unit, s.name AS studio_name,
                    CAST(COALESCE(s.is_current, 0) AS BIGINT) AS is_current
             FROM findings f JOIN submissions sub ON sub.id = f.submission_id
             LEFT JOIN studios s ON s.id = f.studio_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let current_dossiers: BTreeSet<i64> =
            sqlx::query_scalar::<_, i64>("SELECT submission_id FROM dossier_versions WHERE is_current = 1")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let with_current: BTreeSet<i64> =
            sqlx::query_scalar::<_, i64>("SELECT DISTINCT submission_id FROM studios WHERE is_current = 1")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let mut out = Vec::new();
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let submission_id: i64 = row.try_get("submission_id")?;
            let studio_id: Option<i64> = row.try_get("studio_id")?;
            let sub_unit: Option<String> = row.try_get("sub_unit")?;
            let sub_verdict: MailVerdict = row.try_get::<String, _>("sub_verdict")?.parse()?;
            let on_file = row.try_get::<i64, _>("on_file")? == 1;
            let applied = row.try_get::<i64, _>("applied")? == 1;
            let open = if applied && sub_unit.is_some() {
                on_file && current_dossiers.contains(&submission_id)
            } else {
                matches!(sub_verdict, MailVerdict::Accepted | MailVerdict::Rejected)
                    && match studio_id {
                        Some(_) => row.try_get::<i64, _>("is_current")? == 1,
                        None => with_current.contains(&submission_id) || on_file,
                    }
            };
            if !open {
                continue;
            }
            let owner: Option<String> = row.try_get("owner_unit")?;
            let studio_name: Option<String> = row.try_get("studio_name")?;
            let studio_key: Option<String> = row.try_get("studio_key")?;
            let finding = FindingRecord {
                code: row.try_get("code")?,
                severity: super::words::severity(&row.try_get::<String, _>("severity")?)?,
                studio_key: studio_key.clone(),
                file: row.try_get("file")?,
                location: row.try_get("location")?,
                found: row.try_get("found")?,
                expected: row.try_get("expected")?,
                message: row.try_get("message")?,
                on_file,
            };
            out.push((id, owner.or(sub_unit), studio_name.or(studio_key), finding));
        }
        out.sort_by(|a, b| (a.1.is_none(), &a.1, &a.2, a.0).cmp(&(b.1.is_none(), &b.1, &b.2, b.0)));
        Ok(out.into_iter().map(|(_, unit, studio, f)| (unit, studio, f)).collect())
    }

    /// Mails that changed nothing on file and that staff should read, oldest first: see
    /// [`MailToRead`].
    pub async fn mails_to_read(&self) -> anyhow::Result<Vec<MailToRead>> {
        let rows = sqlx::query(
            "SELECT s.id, s.received_at, s.received_offset, s.sender, s.unit, s.subject, s.verdict,
                    s.download_links, s.attachments,
                    CAST((SELECT COUNT(*) FROM findings f WHERE f.submission_id = s.id AND f.code = 'submission.late') AS BIGINT) AS late
             FROM submissions s
             WHERE s.verdict = 'not_a_submission' OR s.download_links <> '[]'
                OR EXISTS (SELECT 1 FROM findings f WHERE f.submission_id = s.id AND f.code = 'submission.late')
             ORDER BY s.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let links: String = row.try_get("download_links")?;
                let attachments: String = row.try_get("attachments")?;
                let attachments: Vec<serde_json::Value> = serde_json::from_str(&attachments).unwrap_or_default();
                let late: i64 = row.try_get("late")?;
                Ok(MailToRead {
                    submission_id: row.try_get("id")?,
                    received_at: join_fixed(row.try_get("received_at")?, row.try_get("received_offset")?)?,
                    sender: row.try_get("sender")?,
                    unit: row.try_get("unit")?,
                    subject: row.try_get("subject")?,
                    verdict: row.try_get::<String, _>("verdict")?.parse()?,
                    late: late > 0,
                    download_links: serde_json::from_str(&links).unwrap_or_default(),
                    attachments: attachments
                        .iter()
                        .map(|a| {
                            let s = |k: &str| a.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                            (s("file").unwrap_or_default(), s("kind").unwrap_or_default(), s("studio"))
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// Non-ignored submissions per unit (units without any are absent), sorted by unit.
    pub async fn submissions_per_unit(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT unit, COUNT(*) AS n FROM submissions WHERE verdict <> 'ignored' AND unit IS NOT NULL GROUP BY unit",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, i64)> =
            rows.iter().map(|r| Ok((r.try_get("unit")?, r.try_get("n")?))).collect::<anyhow::Result<_>>()?;
        out.sort();
        Ok(out)
    }
    /// Distinct (sender, unit) of non-ignored submissions (senders lower-cased), sorted: the
    /// digest compares them with the configured addresses.
    pub async fn senders(&self) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let rows = sqlx::query("SELECT DISTINCT sender, unit FROM submissions WHERE sender IS NOT NULL AND verdict <> 'ignored'")
            .fetch_all(&self.pool)
            .await?;
        let mut set: BTreeSet<(String, Option<String>)> = BTreeSet::new();
        for row in rows {
            let sender: String = row.try_get("sender")?;
            let sender = sender.trim().to_lowercase();
            if !sender.is_empty() {
                set.insert((sender, row.try_get("unit")?));
            }
        }
        Ok(set.into_iter().collect())
    }
}
