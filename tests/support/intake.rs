//! The daemon's configuration against the test mail stack (tests/support/mailstack.rs):
//! IMAP source, SMTP outbox, short poll and retry times. Include it after `mailstack` with
//! `#[path = "support/intake.rs"] mod intake;`.
#![allow(dead_code)]

use studio_intake::config::{Config, OutboxKind, SourceKind, Tls, Unit, UnitKind};
use studio_intake::fixtures::UnitSpec;

/// The embedded default in temp folders (a folder of .eml files, SQLite, file outbox): no
/// servers needed. `units` become county unions with their senders.
pub fn file_config(inbox: &std::path::Path, state: &std::path::Path, units: &[&UnitSpec]) -> Config {
    let mut c = Config::builtin();
    c.source.kind = SourceKind::Maildir;
    c.source.path = inbox.to_owned();
    c.outbox.kind = OutboxKind::File;
    c.outbox.path = state.join("outbox");
    c.database.url = format!("sqlite://{}", state.join("intake.db").display());
    for u in units {
        c.units.retain(|x| x.name != u.unit);
        c.units.push(Unit { name: u.unit.clone(), kind: UnitKind::County, senders: vec![u.sender.clone()] });
    }
    c
}

/// The environment variable the configs name for the stack's password.
pub const PASSWORD_ENV: &str = "INTAKE_TEST_PASSWORD";

/// Polls `dept` over IMAP (moving processed mail to `Processed`), answers through the
/// stack's Postfix from `dept`, stores in `database_url`; `units` become county unions
/// with their senders (several specs of one unit add up).
pub fn imap_config(dept: &str, database_url: &str, units: &[&UnitSpec]) -> Config {
    let s = crate::mailstack::stack();
    // SAFETY: every test sets the same value; tests never read it concurrently with a change.
    unsafe { std::env::set_var(PASSWORD_ENV, &s.password) };
    let mut c = Config::builtin();
    c.source.kind = SourceKind::Imap;
    c.source.host = s.host.clone();
    c.source.port = s.imap_port;
    c.source.tls = Tls::None;
    c.source.username = dept.to_owned();
    c.source.password_env = Some(PASSWORD_ENV.into());
    c.source.processed_folder = Some("Processed".into());
    c.source.poll_secs = 2;
    c.source.command_timeout_secs = 10;
    c.outbox.kind = OutboxKind::Smtp;
    c.outbox.host = s.host.clone();
    c.outbox.port = s.smtp_port;
    c.outbox.tls = Tls::None;
    c.outbox.from = format!("乐山市总工会经保女工部 <{dept}>");
    c.outbox.retry_base_secs = 1;
    c.database.url = database_url.to_owned();
    for u in units {
        c.units.retain(|x| x.name != u.unit);
    }
    for u in units {
        match c.units.iter_mut().find(|x| x.name == u.unit) {
            Some(x) => x.senders.push(u.sender.clone()),
            None => c.units.push(Unit { name: u.unit.clone(), kind: UnitKind::County, senders: vec![u.sender.clone()] }),
        }
    }
    c
}
