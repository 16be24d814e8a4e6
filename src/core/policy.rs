//! The policy: what the core needs to know of the configuration — campaign dates, the rules'
//! thresholds, the units and the addresses they send from, limits, the reply's signature —
//! as one narrow value that [`crate::config::Config::policy`] builds. The core never sees the
//! TOML types, so it can be tested, fuzzed and benchmarked with a value made in place.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::Limits;
use super::text::squash;

/// What the core works with.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Receipt after this → `submission.late`.
    pub deadline: DateTime<FixedOffset>,
    pub timezone: chrono_tz::Tz,
    /// Studios already named at city level or higher (`submission.already_named`).
    pub named_studios: Vec<String>,
    pub rules: RuleSettings,
    pub limits: Limits,
    pub units: Vec<Unit>,
    /// `如有疑问请联系：…。` or empty.
    pub contact_line: String,
    pub sender_auth: SenderAuth,
    /// Authentication-Results headers honoured, by authserv-id.
    pub trusted_authserv_ids: Vec<String>,
    /// The name replies are signed with.
    pub signature: String,
}

impl Policy {
    pub fn unit_of_sender(&self, address: &str) -> Option<&Unit> {
        unit_of_sender(&self.units, address)
    }

    pub fn unit_named(&self, name: &str) -> Option<&Unit> {
        unit_named(&self.units, name)
    }
}

/// What makes a mail speak for the unit its From address is registered to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderAuth {
    /// A registered From address suffices.
    #[default]
    Registered,
    /// The From must also pass: DKIM aligned with its domain (verified by the daemon), or
    /// DMARC/DKIM pass in an `Authentication-Results` header of a trusted server.
    Authenticated,
}

/// The unit `address` is registered to (compared case-insensitively).
pub fn unit_of_sender<'a>(units: &'a [Unit], address: &str) -> Option<&'a Unit> {
    units.iter().find(|u| u.senders.iter().any(|s| s.eq_ignore_ascii_case(address)))
}

/// A unit by (normalised) name, as written in a summary table's 推荐单位.
pub fn unit_named<'a>(units: &'a [Unit], name: &str) -> Option<&'a Unit> {
    let wanted = squash(name);
    if wanted.is_empty() {
        return None;
    }
    units.iter().find(|u| {
        let have = squash(&u.name);
        have == wanted || (wanted.len() >= 6 && (have.contains(&wanted) || wanted.contains(&have)))
    })
}

/// Thresholds of `RULES.md`, each quoting the notice.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSettings {
    /// 5人以上的创新团队
    pub min_members: u32,
    /// 有效运行2年以上: created on or before deadline minus this many years.
    pub min_years_running: u32,
    /// 简介及主要先进事迹（600字以内）
    pub intro_max_chars: usize,
    /// 字数要求：2000字以上
    pub materials_min_chars: usize,
    /// Shorter side of the scene photo, in pixels (warning below).
    pub photo_min_side: u32,
    /// Average age outside this range is implausible.
    pub min_average_age: f64,
    pub max_average_age: f64,
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            min_members: 5,
            min_years_running: 2,
            intro_max_chars: 600,
            materials_min_chars: 2000,
            photo_min_side: 600,
            min_average_age: 18.0,
            max_average_age: 65.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// 县（市、区）总工会
    County,
    /// 乐山高新区工会
    Zone,
    /// 峨眉山景区、乐山大佛景区管委会工会
    Scenic,
    /// 市级系统工会
    System,
    /// 市属企业工会
    Enterprise,
}

impl UnitKind {
    /// County unions and the high-tech zone must recommend a minimum (`unit.below_minimum`).
    pub fn has_minimum(self) -> bool {
        matches!(self, UnitKind::County | UnitKind::Zone)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub name: String,
    pub kind: UnitKind,
    /// Addresses this unit sends from (compared case-insensitively).
    #[serde(default)]
    pub senders: Vec<String>,
}

