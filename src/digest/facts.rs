//! What a digest says, gathered from the store once: every number the text, the HTML and the
//! workbook show comes from one [`Facts`], so they cannot disagree.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

use crate::config::{Config, UnitKind};
use crate::core::findings::{Code, Severity};
use crate::store::{FindingRecord, HeldMail, MailToRead, Store, StudioRow, StudioVerdict, UnprocessedMail};

use super::schedule::days_left;

/// The label of studios and findings whose unit is not known.
pub const UNKNOWN_UNIT: &str = "（未识别单位）";

#[derive(Debug, Clone)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// `now`'s local date in the campaign time zone.
    pub today: NaiveDate,
    pub deadline: DateTime<FixedOffset>,
    /// Whole days from today to the deadline's date (0 on the last day, negative after).
    pub days_left: i64,
    /// `now` is after the deadline.
    pub closed: bool,
    pub totals: Totals,
    /// Configured units in config order, then other units seen, then [`UNKNOWN_UNIT`] when a
    /// studio has no unit.
    pub units: Vec<UnitRow>,
    /// Configured units without any (non-ignored) mail yet, in config order.
    pub not_heard_from: Vec<String>,
    /// County/district unions and the high-tech zone with fewer accepted studios than the
    /// minimum (`unit.below_minimum`), in config order.
    pub below_minimum: Vec<String>,
    /// Current studios grouped by unit (the order of `units`), then by 序号, then name.
    pub studios: Vec<StudioRow>,
    /// (unit, studio) of the studios a unit took off its current 附件2: not in `studios` nor
    /// the consolidated table, kept on file (see [`crate::core::dossier::view`]).
    pub withdrawn: Vec<(String, String)>,
    pub quota: u32,
    pub min_per_county: u32,
    /// Accepted studios exceed the quota (`campaign.over_quota`).
    pub over_quota: bool,
    /// Non-ignored submissions per local day, oldest first.
    pub per_day: Vec<(NaiveDate, i64)>,
    /// Open findings as (unit, studio, finding), grouped like `studios`.
    pub findings: Vec<(Option<String>, Option<String>, FindingRecord)>,
    pub dead_letters: Vec<DeadLetter>,
    /// Mails recorded without an outcome or set aside: staff check them by hand (their
    /// senders were told so).
    pub unprocessed: Vec<UnprocessedMail>,
    /// Mails that changed nothing on file and that staff should read: questions and cover
    /// letters, download links instead of attachments, late mails with what they carried.
    pub to_read: Vec<MailToRead>,
    /// Held mails waiting for a decision (unregistered or unauthenticated senders).
    pub held: Vec<HeldMail>,
    /// Addresses that sent a submission but are listed for no unit (lower-cased, sorted),
    /// with the unit the mail was tied to anyway (from its forms), if any.
    pub unknown_senders: Vec<(String, Option<String>)>,
    /// Mails still waiting in the outbox.
    pub outbox_depth: i64,
    /// The newest receipt time of a current studio's mail (the workbook's creation time).
    pub latest_received: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Mails received (stored raw messages).
    pub mails: i64,
    /// Distinct units with a non-ignored submission.
    pub units_heard_from: i64,
    /// Units in the configuration.
    pub units_configured: i64,
    /// Current studio versions.
    pub studios: i64,
    pub accepted: i64,
    pub rejected: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub name: String,
    /// `None`: a unit that is not in the configuration.
    pub kind: Option<UnitKind>,
    /// Non-ignored submissions.
    pub mails: i64,
    pub studios: i64,
    pub accepted: i64,
    pub rejected: i64,
    /// Open error-severity findings of the unit.
    pub open_errors: i64,
    /// The minimum for county/district unions and the high-tech zone.
    pub minimum: Option<u32>,
    /// `unit.below_minimum`.
    pub below_minimum: bool,
}

/// A mail given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub kind: String,
    pub recipients: Vec<String>,
    pub attempts: i64,
    pub error: String,
    pub created_at: DateTime<Utc>,
}

/// Read everything a digest needs, as of `now`.
pub async fn gather(store: &Store, config: &Config, now: DateTime<Utc>) -> anyhow::Result<Facts> {
    let tz = config.timezone()?;
    let counts = store.counts().await?;
    let mut studios = store.current_studios().await?;
    let findings = store.open_findings().await?;
    let per_unit_mails: HashMap<String, i64> = store.submissions_per_unit().await?.into_iter().collect();

    // Unit order: as configured, then the others seen, then the unknown unit.
    let mut order: Vec<(String, Option<UnitKind>)> = config.units.iter().map(|u| (u.name.clone(), Some(u.kind))).collect();
    let mut extra: Vec<String> = studios
        .iter()
        .filter_map(|s| s.unit.clone())
        .chain(per_unit_mails.keys().cloned())
        .filter(|u| !order.iter().any(|(n, _)| n == u))
        .collect();
    extra.sort();
    extra.dedup();
    order.extend(extra.into_iter().map(|u| (u, None)));
    if studios.iter().any(|s| s.unit.is_none()) || findings.iter().any(|f| f.0.is_none()) {
        order.push((UNKNOWN_UNIT.to_owned(), None));
    }
    let position = |unit: Option<&str>| -> usize {
        let name = unit.unwrap_or(UNKNOWN_UNIT);
        order.iter().position(|(n, _)| n == name).unwrap_or(order.len())
    };
    // Stable: keeps the store's rank/name order inside a unit.
    studios.sort_by_key(|s| position(s.unit.as_deref()));
    let mut findings = findings;
    findings.sort_by_key(|f| position(f.0.as_deref()));

    let mut units = Vec::with_capacity(order.len());
    for (name, kind) in &order {
        let mine = |s: &&StudioRow| s.unit.as_deref().unwrap_or(UNKNOWN_UNIT) == name;
        let accepted = studios.iter().filter(mine).filter(|s| s.verdict == StudioVerdict::Accepted).count() as i64;
        let minimum = kind.filter(|k| k.has_minimum()).map(|_| config.campaign.min_per_county);
        units.push(UnitRow {
            name: name.clone(),
            kind: *kind,
            mails: per_unit_mails.get(name).copied().unwrap_or(0),
            studios: studios.iter().filter(mine).count() as i64,
            accepted,
            rejected: studios.iter().filter(mine).filter(|s| s.verdict == StudioVerdict::Rejected).count() as i64,
            open_errors: findings
                .iter()
                .filter(|f| f.0.as_deref().unwrap_or(UNKNOWN_UNIT) == name && f.2.severity == Severity::Error)
                .count() as i64,
            minimum,
            below_minimum: minimum.is_some_and(|m| accepted < i64::from(m)),
        });
    }
    let not_heard_from = config
        .units
        .iter()
        .filter(|u| per_unit_mails.get(&u.name).copied().unwrap_or(0) == 0)
        .map(|u| u.name.clone())
        .collect();
    let below_minimum = units.iter().filter(|u| u.below_minimum).map(|u| u.name.clone()).collect();
    let dead_letters = store
        .dead_letters()
        .await?
        .into_iter()
        .map(|o| DeadLetter {
            kind: o.kind,
            recipients: o.recipients,
            attempts: o.attempts,
            error: o.last_error.unwrap_or_default(),
            created_at: o.created_at,
        })
        .collect();
    let latest_received = studios.iter().filter_map(|s| s.received_at).max();
    Ok(Facts {
        now,
        today: now.with_timezone(&tz).date_naive(),
        deadline: config.campaign.deadline,
        days_left: days_left(now, config.campaign.deadline, tz),
        closed: now > config.campaign.deadline,
        totals: Totals {
            mails: counts.mails,
            units_heard_from: counts.units,
            units_configured: config.units.len() as i64,
            studios: counts.studios_current,
            accepted: counts.studios_accepted,
            rejected: counts.studios_rejected,
        },
        units,
        not_heard_from,
        below_minimum,
        studios,
        withdrawn: withdrawn(store).await?,
        quota: config.campaign.quota,
        min_per_county: config.campaign.min_per_county,
        over_quota: counts.studios_accepted > i64::from(config.campaign.quota),
        per_day: store.submissions_per_day(tz).await?,
        findings,
        dead_letters,
        unprocessed: store.unprocessed_mails().await?,
        to_read: store.mails_to_read().await?,
        held: store.held_mails().await?,
        unknown_senders: unknown_senders(store, config).await?,
        outbox_depth: store.outbox_depth().await?,
        latest_received,
    })
}

async fn withdrawn(store: &Store) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for version in store.current_dossiers().await? {
        for name in crate::core::dossier::view(&version.dossier, None).withdrawn {
            out.push((version.unit.clone(), name));
        }
    }
    Ok(out)
}

async fn unknown_senders(store: &Store, config: &Config) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for (sender, unit) in store.senders().await? {
        if config.unit_of_sender(&sender).is_some() {
            continue;
        }
        match out.iter_mut().find(|(s, _)| *s == sender) {
            Some(entry) => {
                if entry.1.is_none() {
                    entry.1 = unit;
                }
            }
            None => out.push((sender, unit)),
        }
    }
    Ok(out)
}

/// The unit- and campaign-level warnings of `RULES.md` that only the digest can tell, as
/// (unit, finding): `unit.below_minimum` per unit, `campaign.over_quota`.
pub fn campaign_findings(f: &Facts) -> Vec<(Option<String>, FindingRecord)> {
    let mut out = Vec::new();
    for u in f.units.iter().filter(|u| u.below_minimum) {
        let min = u.minimum.unwrap_or(f.min_per_county);
        out.push((
            Some(u.name.clone()),
            FindingRecord {
                code: Code::UnitBelowMinimum.as_str().into(),
                severity: Severity::Warning,
                studio_key: None,
                file: None,
                location: "本单位通过审核的工作室".into(),
                found: u.accepted.to_string(),
                expected: format!(">= {min}"),
                message: format!("{}目前通过审核的工作室{}个，通知要求县（市、区）总工会、高新区工会至少申报{min}个。", u.name, u.accepted),
                on_file: true,
            },
        ));
    }
    if f.over_quota {
        out.push((
            None,
            FindingRecord {
                code: Code::CampaignOverQuota.as_str().into(),
                severity: Severity::Warning,
                studio_key: None,
                file: None,
                location: "全市通过审核的工作室".into(),
                found: f.totals.accepted.to_string(),
                expected: format!("<= {}", f.quota),
                message: format!("通过审核的工作室{}个，超过拟命名名额{}个，需择优确定。", f.totals.accepted, f.quota),
                on_file: true,
            },
        ));
    }
    out
}
