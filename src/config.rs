//! The one TOML file administrators edit, as typed, validated settings.
//!
//! Every section has defaults: with no file at all the daemon runs the 2020 Leshan campaign
//! (乐工经〔2020〕24号) on the sample inbox in `examples/inbox`, SQLite in `var/` and a file
//! outbox. `config/studio-intake.example.toml` documents every key; `INTERFACE.md` lists the
//! keys that outside tooling relies on (never rename those).
//!
//! Secrets are never in the file: `password_env` names an environment variable,
//! `password_file` a file (systemd `LoadCredential`); [`Secret`] never prints its value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::core::Limits;
pub use crate::core::policy::{RuleSettings, Unit, UnitKind};
use crate::core::policy::{self, Policy};
use crate::convert::Converters;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub campaign: Campaign,
    pub rules: RuleSettings,
    #[serde(default = "default_units")]
    pub units: Vec<Unit>,
    pub source: Source,
    pub outbox: Outbox,
    pub database: Database,
    pub digest: Digest,
    pub limits: Limits,
    pub converters: ConverterSettings,
    pub health: Health,
    pub security: Security,
}

/// Who may change a unit's dossier (`RULES.md`, "Who speaks for a unit").
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    pub sender_auth: SenderAuth,
    /// `Authentication-Results` headers honoured, by authserv-id (the receiving server's own,
    /// e.g. `mx.qq.com`); every other such header is ignored wherever it stands.
    pub trusted_authserv_ids: Vec<String>,
    /// The DNS server DKIM keys are looked up at (`127.0.0.1:53`, a local resolver), instead
    /// of the system's (`/etc/resolv.conf`).
    pub dns_server: Option<String>,
}

pub use crate::core::policy::SenderAuth;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Campaign {
    /// Shown in replies and digests.
    pub title: String,
    /// Receipt time after this → `submission.late`.
    #[serde(with = "rfc3339")]
    pub deadline: DateTime<FixedOffset>,
    /// IANA time zone for the digest schedule and the dates in replies.
    pub timezone: String,
    /// Start of the call (date of the notice): first digest day.
    pub opens: NaiveDate,
    /// Studios to be named; more accepted than this → `campaign.over_quota`.
    pub quota: u32,
    /// County/district unions and the high-tech zone recommend at least this many.
    pub min_per_county: u32,
    /// Studios already named at city level or higher → `submission.already_named`.
    pub named_studios: Vec<String>,
    /// Whom applicants may call, printed at the end of every reply.
    pub contact: String,
}

impl Default for Campaign {
    fn default() -> Self {
        Campaign {
            title: "2020年乐山市劳模和工匠人才创新工作室推荐申报".into(),
            deadline: DateTime::parse_from_rfc3339("2020-09-25T23:59:59+08:00").expect("literal"),
            timezone: "Asia/Shanghai".into(),
            opens: NaiveDate::from_ymd_opt(2020, 8, 3).expect("literal"),
            quota: 33,
            min_per_county: 2,
            named_studios: Vec::new(),
            contact: "毛娴，电话 2133419".into(),
        }
    }
}

/// The units of the shipped sample inbox and the addresses they write from (all invented).
pub const SAMPLE_SENDERS: &[(&str, &str)] = &[
    ("犍为县总工会", "jwxzgh@example.cn"),
    ("四川沙湾钒钛钢铁有限公司工会", "swftgh@example.cn"),
    ("五通桥区总工会", "wtqqzgh@example.cn"),
    ("峨眉山市总工会", "emsszgh@example.cn"),
    ("夹江县总工会", "jjxzgh@example.cn"),
    ("市中区总工会", "szqzgh@example.cn"),
    // Sample 07 comes from an address not listed here: it is held, and this address is asked
    // to confirm it.
    ("沐川县总工会", "mcxzgh@example.cn"),
];

/// The default unit list of `RULES.md`: Leshan's county-level unions, the high-tech zone and
/// the two scenic areas. Sender addresses are unknown until an administrator lists them.
pub fn default_units() -> Vec<Unit> {
    let counties = [
        "市中区", "沙湾区", "五通桥区", "金口河区", "犍为县", "井研县", "夹江县", "沐川县",
        "峨边彝族自治县", "马边彝族自治县", "峨眉山市",
    ];
    let mut units: Vec<Unit> = counties
        .iter()
        .map(|c| Unit { name: format!("{c}总工会"), kind: UnitKind::County, senders: vec![] })
        .collect();
    units.push(Unit { name: "乐山高新区工会".into(), kind: UnitKind::Zone, senders: vec![] });
    for s in ["峨眉山景区管委会工会", "乐山大佛景区管委会工会"] {
        units.push(Unit { name: s.into(), kind: UnitKind::Scenic, senders: vec![] });
    }
    units
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tls {
    Implicit,
    Starttls,
    /// Plain text: only allowed to a loopback host.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Imap,
    /// A folder of `.eml` files or a Maildir.
    Maildir,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Source {
    pub kind: SourceKind,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub folder: String,
    /// Moved here after processing (MOVE, or COPY + EXPUNGE).
    pub processed_folder: Option<String>,
    /// Set instead of moving when `processed_folder` is not set.
    pub processed_flag: String,
    /// A mail the daemon still cannot finish after a few attempts is moved here (Maildir: a
    /// `failed/` folder beside the mail), recorded with its reason and listed in the digest;
    /// it is never offered again unless staff move it back.
    pub failed_folder: Option<String>,
    /// Extra CA certificate (PEM) to trust, e.g. a test server's self-signed one.
    pub ca_file: Option<PathBuf>,
    /// `kind = "maildir"`: the folder to read.
    pub path: PathBuf,
    /// Seconds between polls when the server has no IDLE.
    pub poll_secs: u64,
    /// Seconds before an IDLE is re-issued (RFC 2177: below 29 minutes).
    pub idle_secs: u64,
    /// Seconds any single IMAP command may take.
    pub command_timeout_secs: u64,
    /// Several instances on one database: the one holding the mailbox lease polls; a lease
    /// not renewed for this many seconds (its holder died) is taken over by another.
    pub lease_secs: u64,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            kind: SourceKind::Maildir,
            host: "127.0.0.1".into(),
            port: 993,
            tls: Tls::Implicit,
            username: String::new(),
            password_env: None,
            password_file: None,
            folder: "INBOX".into(),
            processed_folder: Some("Processed".into()),
            processed_flag: "$Processed".into(),
            failed_folder: Some("Failed".into()),
            ca_file: None,
            path: PathBuf::from("examples/inbox"),
            poll_secs: 60,
            idle_secs: 20 * 60,
            command_timeout_secs: 60,
            lease_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    Smtp,
    /// Write each outgoing mail as an `.eml` file into `path`.
    File,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Outbox {
    pub kind: OutboxKind,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// The `From:` of replies and digests.
    pub from: String,
    /// `kind = "file"`: the folder the outgoing `.eml` files go to.
    pub path: PathBuf,
    /// Attempts before a mail is set aside as dead (the digest lists those).
    pub max_attempts: u32,
    /// At most this many replies to one sender per hour.
    pub replies_per_sender_per_hour: u32,
    /// All replies together per hour (acknowledgements and confirmation requests included,
    /// digests exempt): the ceiling a flood of forged senders meets.
    pub replies_per_hour: u32,
    /// First retry delay in seconds; each further retry doubles it (capped at one hour).
    pub retry_base_secs: u64,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            kind: OutboxKind::File,
            host: "127.0.0.1".into(),
            port: 465,
            tls: Tls::Implicit,
            username: String::new(),
            password_env: None,
            password_file: None,
            ca_file: None,
            from: "乐山市总工会经保女工部 <3764264@qq.com>".into(),
            path: PathBuf::from("var/outbox"),
            max_attempts: 8,
            replies_per_sender_per_hour: 10,
            replies_per_hour: 200,
            retry_base_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    /// `sqlite://var/intake.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for Database {
    fn default() -> Self {
        Database { url: "sqlite://var/intake.db".into(), max_connections: 5 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Digest {
    /// cron, 6 fields (sec min hour day month weekday), in `campaign.timezone`.
    pub schedule: String,
    pub recipients: Vec<String>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest { schedule: "0 0 8 * * *".into(), recipients: Vec::new() }
    }
}

/// `[health]`: `/healthz` and `/metrics` over HTTP on a loopback address; off when `listen`
/// is not set. Port 0 picks a free port (the bound address is logged).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Health {
    /// `127.0.0.1:9187`, `[::1]:9187` or `localhost:9187`.
    pub listen: Option<String>,
    /// `/healthz` answers 503 when the instance polling the mailbox has not reached it for
    /// this long. Unset: twice the longest normal wait (IDLE or poll interval) plus two
    /// command timeouts, see [`Config::mailbox_stale_after`].
    pub mailbox_stale_secs: Option<u64>,
}

impl Health {
    fn validate(&self) -> Result<(), ConfigError> {
        let Some(listen) = &self.listen else { return Ok(()) };
        let loopback = match listen.parse::<std::net::SocketAddr>() {
            Ok(a) => a.ip().is_loopback(),
            Err(_) => listen.strip_prefix("localhost:").is_some_and(|p| p.parse::<u16>().is_ok()),
        };
        if self.mailbox_stale_secs == Some(0) {
            return Err(ConfigError::Invalid("[health] mailbox_stale_secs must be at least 1".into()));
        }
        if loopback {
            Ok(())
        } else {
            Err(ConfigError::Invalid(format!(
                "[health] listen must be a loopback address with a port, like 127.0.0.1:9187, not {listen:?}"
            )))
        }
    }
}

/// External converters for legacy formats: `"auto"` (look on PATH), `"none"`, or a path;
/// and the box they run in (see [`crate::convert::Sandbox`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConverterSettings {
    pub soffice: String,
    pub pdftotext: String,
    /// Run each converter in a network namespace of its own (Linux; a user namespace too
    /// when the daemon is not root). Off only to test the fallback.
    pub isolate_network: bool,
    /// Refuse to convert when no network namespace can be made here: such files are then
    /// answered as unreadable (resend as `.docx`). Off: the daemon warns once at start and
    /// converts with LibreOffice's own link blocking only.
    pub require_isolation: bool,
    /// Address-space limit of each converter process, MiB (0: none).
    pub memory_limit_mb: u64,
    /// Processes and threads one converter run may have (0: none).
    pub process_limit: u64,
}

impl Default for ConverterSettings {
    fn default() -> Self {
        let sandbox = crate::convert::Sandbox::default();
        ConverterSettings {
            soffice: "auto".into(),
            pdftotext: "auto".into(),
            isolate_network: sandbox.isolate_network,
            require_isolation: sandbox.require_isolation,
            memory_limit_mb: sandbox.memory_limit_bytes >> 20,
            process_limit: sandbox.process_limit,
        }
    }
}

impl ConverterSettings {
    /// Resolve to concrete programs. Looks at PATH for `"auto"` and, when a converter is
    /// there, tries once whether it can be given its own network namespace (logged): the only
    /// I/O here, done once at start-up, never in the core.
    pub fn resolve(&self, timeout: Duration) -> Converters {
        let found = Converters::detect(timeout);
        let pick = |setting: &str, detected: Option<PathBuf>| match setting {
            "auto" => detected,
            "none" | "" => None,
            path => Some(PathBuf::from(path)),
        };
        let converters = Converters {
            soffice: pick(&self.soffice, found.soffice),
            pdftotext: pick(&self.pdftotext, found.pdftotext),
            timeout,
            sandbox: crate::convert::Sandbox {
                isolate_network: self.isolate_network,
                require_isolation: self.require_isolation,
                memory_limit_bytes: self.memory_limit_mb.saturating_mul(1 << 20),
                process_limit: self.process_limit,
            },
        };
        if converters.soffice.is_some() || converters.pdftotext.is_some() {
            if self.isolate_network {
                let _ = crate::convert::network_isolation();
            } else {
                tracing::warn!(
                    "[converters] isolate_network = false: converters share the daemon's network{}",
                    if self.require_isolation { "; require_isolation = true, so none will run" } else { "" }
                );
            }
        }
        converters
    }
}

/// Whether plain text (`tls = "none"`) may go to `host`: a loopback IP literal (`127.0.0.1`,
/// any `127.x.y.z`, `::1`, `[::1]`) or the name `localhost`. No other name, whatever it
/// looks like: `127.0.0.1.nip.io` resolves to whatever its owner likes.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A password that never shows up in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Read a password from the named environment variable or file (file wins when both are set,
/// since credentials directories are the hardened path). Trailing newlines are dropped.
/// Every secret read is also registered with [`crate::logging::register_secret`], so no log
/// line shows it (nor its base64 forms in an SMTP/IMAP authentication).
pub fn load_secret(env: Option<&str>, file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
    let secret = if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Secret(text.trim_end_matches(['\r', '\n']).to_owned())
    } else if let Some(var) = env {
        match std::env::var(var) {
            Ok(v) => Secret(v),
            Err(_) => return Err(ConfigError::Invalid(format!("environment variable {var} is not set"))),
        }
    } else {
        return Ok(None);
    };
    crate::logging::register_secret(secret.expose());
    Ok(Some(secret))
}

impl Config {
    /// Load and validate a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parse and validate TOML text.
    ///
    /// A file outbox (`[outbox] kind = "file"`) sends nothing and needs no password: its
    /// `password_env`/`password_file` (left over from an SMTP setup) are dropped here, so a
    /// credentials file that is not there does not stop the daemon.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        config.validate()?;
        if config.outbox.kind == OutboxKind::File {
            config.outbox.password_env = None;
            config.outbox.password_file = None;
        }
        Ok(config)
    }

    /// Built-in defaults (no file): the 2020 Leshan campaign.
    /// The embedded default: the 2020 Leshan campaign, with the sample units of
    /// `examples/inbox` registered under their sample addresses so that the README's first
    /// command shows accepted, rejected and held mail. A configuration file never inherits
    /// these addresses: there, each unit's `senders` are what the administrator lists.
    pub fn builtin() -> Config {
        let mut units = default_units();
        for (unit, address) in SAMPLE_SENDERS {
            match units.iter_mut().find(|u| u.name == *unit) {
                Some(u) => u.senders.push((*address).into()),
                None => units.push(Unit { name: (*unit).into(), kind: UnitKind::Enterprise, senders: vec![(*address).into()] }),
            }
        }
        Config { units, ..Config::default() }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.timezone()?;
        let loopback = is_loopback_host;
        if self.source.kind == SourceKind::Imap && self.source.tls == Tls::None && !loopback(&self.source.host) {
            return Err(ConfigError::Invalid(format!(
                "[source] tls = \"none\" is only allowed for a loopback host, not {}",
                self.source.host
            )));
        }
        if self.outbox.kind == OutboxKind::Smtp && self.outbox.tls == Tls::None && !loopback(&self.outbox.host) {
            return Err(ConfigError::Invalid(format!(
                "[outbox] tls = \"none\" is only allowed for a loopback host, not {}",
                self.outbox.host
            )));
        }
        if self.source.idle_secs == 0 || self.source.idle_secs >= 29 * 60 {
            return Err(ConfigError::Invalid("[source] idle_secs must be between 1 and 1739 (RFC 2177: under 29 minutes)".into()));
        }
        let mut seen = std::collections::HashMap::new();
        for unit in &self.units {
            if unit.name.trim().is_empty() {
                return Err(ConfigError::Invalid("[[units]] name must not be empty".into()));
            }
            for s in &unit.senders {
                if !s.contains('@') {
                    return Err(ConfigError::Invalid(format!("[[units]] {}: sender {s:?} is not an e-mail address", unit.name)));
                }
                if let Some(other) = seen.insert(s.to_lowercase(), unit.name.clone()) {
                    return Err(ConfigError::Invalid(format!(
                        "sender {s} is listed for two units: {other} and {}",
                        unit.name
                    )));
                }
            }
        }
        self.health.validate()?;
        if self.rules.min_average_age >= self.rules.max_average_age {
            return Err(ConfigError::Invalid("[rules] min_average_age must be below max_average_age".into()));
        }
        Ok(())
    }

    /// `如有疑问请联系：…` for the end of replies (empty when no contact is set).
    pub fn campaign_contact_line(&self) -> String {
        if self.campaign.contact.trim().is_empty() {
            String::new()
        } else {
            format!("如有疑问请联系：{}。", self.campaign.contact.trim())
        }
    }

    /// The display name of `[outbox] from` (`乐山市总工会经保女工部`), or the address.
    pub fn outbox_from_name(&self) -> String {
        let from = self.outbox.from.trim();
        match from.find('<') {
            Some(i) if i > 0 => from[..i].trim().trim_matches('"').to_owned(),
            _ => from.trim_matches(['<', '>']).to_owned(),
        }
    }

    pub fn timezone(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.campaign
            .timezone
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("unknown time zone {:?}", self.campaign.timezone)))
    }

    /// How long the mailbox may go without contact before `/healthz` calls it stale: the
    /// configured `[health] mailbox_stale_secs`, else twice the longest wait between two
    /// contacts (the IDLE renewal for IMAP, the poll interval otherwise) plus two command
    /// timeouts (a slow pass is not an outage).
    pub fn mailbox_stale_after(&self) -> std::time::Duration {
        let secs = self.health.mailbox_stale_secs.unwrap_or_else(|| {
            let wait = match self.source.kind {
                SourceKind::Imap => self.source.idle_secs.max(self.source.poll_secs),
                SourceKind::Maildir => self.source.poll_secs,
            };
            2 * wait + 2 * self.source.command_timeout_secs
        });
        std::time::Duration::from_secs(secs)
    }

    /// The unit that owns a sender address, if configured.
    pub fn unit_of_sender(&self, address: &str) -> Option<&Unit> {
        policy::unit_of_sender(&self.units, address)
    }

    /// A configured unit by (normalised) name, as written in a summary table's 推荐单位.
    pub fn unit_named(&self, name: &str) -> Option<&Unit> {
        policy::unit_named(&self.units, name)
    }

    /// The narrow value the core works with: campaign dates, thresholds, units and their
    /// senders, limits, the reply's signature. The core never sees the TOML types.
    pub fn policy(&self) -> Policy {
        Policy {
            deadline: self.campaign.deadline,
            timezone: self.timezone().unwrap_or(chrono_tz::Asia::Shanghai),
            named_studios: self.campaign.named_studios.clone(),
            rules: self.rules.clone(),
            limits: self.limits.clone(),
            units: self.units.clone(),
            contact_line: self.campaign_contact_line(),
            sender_auth: self.security.sender_auth,
            trusted_authserv_ids: self.security.trusted_authserv_ids.clone(),
            signature: self.outbox_from_name(),
        }
    }
}

mod rfc3339 {
    use chrono::{DateTime, FixedOffset};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time like 2020-09-25T23:59:59+08:00: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_is_the_2020_leshan_campaign() {
        let c = Config::builtin();
        assert_eq!(c.campaign.deadline.to_rfc3339(), "2020-09-25T23:59:59+08:00");
        assert_eq!(c.campaign.quota, 33);
        assert_eq!(c.units.iter().filter(|u| u.kind.has_minimum()).count(), 12);
        c.validate().unwrap();
    }

    #[test]
    fn example_file_parses_and_matches_interface_keys() {
        let text = include_str!("../config/studio-intake.example.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.source.kind, SourceKind::Imap);
        assert!(c.units.iter().any(|u| u.name == "犍为县总工会"));
    }

    #[test]
    fn deploy_config_parses() {
        let c = Config::from_toml(include_str!("../deploy/studio-intake.toml")).unwrap();
        assert_eq!(c.source.host, "imap.qq.com");
        assert!(c.source.password_file.is_some() || c.source.password_env.is_some());
    }

    #[test]
    fn plain_text_only_to_loopback() {
        let err = Config::from_toml("[source]\nkind = \"imap\"\nhost = \"imap.qq.com\"\ntls = \"none\"\n").unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        Config::from_toml("[source]\nkind = \"imap\"\nhost = \"127.0.0.1\"\ntls = \"none\"\n").unwrap();
    }

    #[test]
    fn plain_text_needs_a_loopback_literal_or_localhost() {
        for ok in ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", "LOCALHOST"] {
            assert!(is_loopback_host(ok), "{ok}");
            for section in ["source", "outbox"] {
                let kind = if section == "source" { "imap" } else { "smtp" };
                Config::from_toml(&format!("[{section}]\nkind = \"{kind}\"\nhost = \"{ok}\"\ntls = \"none\"\n")).unwrap();
            }
        }
        for bad in ["127.0.0.1.nip.io", "127.example.cn", "localhost.example.cn", "127.1", "0.0.0.0", "[::]", "10.0.0.1", "", "[127.0.0.1"] {
            assert!(!is_loopback_host(bad), "{bad}");
            for section in ["source", "outbox"] {
                let kind = if section == "source" { "imap" } else { "smtp" };
                let err = Config::from_toml(&format!("[{section}]\nkind = \"{kind}\"\nhost = \"{bad}\"\ntls = \"none\"\n")).unwrap_err();
                assert!(err.to_string().contains("loopback"), "{section} {bad}: {err}");
            }
        }
    }

    #[test]
    fn unknown_keys_and_bad_deadline_are_refused() {
        assert!(Config::from_toml("[campaign]\ndeadlin = \"x\"\n").is_err());
        let err = Config::from_toml("[campaign]\ndeadline = \"2020-09-25\"\n").unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    #[test]
    fn a_sender_belongs_to_one_unit() {
        let text = "[[units]]\nname=\"A\"\nkind=\"county\"\nsenders=[\"a@x.cn\"]\n[[units]]\nname=\"B\"\nkind=\"system\"\nsenders=[\"A@x.cn\"]\n";
        assert!(Config::from_toml(text).unwrap_err().to_string().contains("two units"));
    }

    #[test]
    fn health_listens_on_loopback_only() {
        assert!(Config::builtin().health.listen.is_none(), "off by default");
        for ok in ["127.0.0.1:9187", "[::1]:9187", "localhost:9187", "127.0.0.1:0"] {
            Config::from_toml(&format!("[health]\nlisten = \"{ok}\"\n")).unwrap();
        }
        for bad in ["0.0.0.0:9187", "192.168.1.5:9187", "example.cn:9187", "127.0.0.1", "[::]:9187"] {
            let err = Config::from_toml(&format!("[health]\nlisten = \"{bad}\"\n")).unwrap_err();
            assert!(err.to_string().contains("loopback"), "{bad}: {err}");
        }
        let err = Config::from_toml("[health]\nlisten = \"127.0.0.1:0\"\nmailbox_stale_secs = 0\n").unwrap_err();
        assert!(err.to_string().contains("mailbox_stale_secs"), "{err}");
    }

    #[test]
    fn mailbox_staleness_follows_the_longest_wait_unless_set() {
        let mut c = Config::builtin();
        c.source.kind = SourceKind::Imap;
        (c.source.idle_secs, c.source.poll_secs, c.source.command_timeout_secs) = (1200, 60, 60);
        assert_eq!(c.mailbox_stale_after().as_secs(), 2 * 1200 + 2 * 60);
        c.source.kind = SourceKind::Maildir;
        assert_eq!(c.mailbox_stale_after().as_secs(), 2 * 60 + 2 * 60, "no IDLE on a folder");
        c.health.mailbox_stale_secs = Some(90);
        assert_eq!(c.mailbox_stale_after().as_secs(), 90);
    }

    #[test]
    fn a_file_outbox_needs_no_password() {
        let c = Config::from_toml(
            "[outbox]\nkind = \"file\"\npath = \"var/outbox\"\npassword_file = \"/run/credentials/none/smtp-password\"\npassword_env = \"INTAKE_UNSET_FOR_TEST\"\n",
        )
        .unwrap();
        assert!(c.outbox.password_file.is_none() && c.outbox.password_env.is_none());
        assert!(load_secret(c.outbox.password_env.as_deref(), c.outbox.password_file.as_deref()).unwrap().is_none());
        // SMTP keeps them.
        let c = Config::from_toml("[outbox]\nkind = \"smtp\"\npassword_env = \"X\"\n").unwrap();
        assert_eq!(c.outbox.password_env.as_deref(), Some("X"));
    }

    #[test]
    fn secret_does_not_print() {
        let s = Secret("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
