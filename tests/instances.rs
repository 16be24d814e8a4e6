//! Several instances on one PostgreSQL against one mailbox: exactly one polls at a time (the
//! mailbox lease), every mail is processed and answered once, and when the polling instance
//! dies the other takes over. A test binary of its own: it gets its own mail stack.

#[path = "support/mailstack.rs"]
mod mailstack;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/intake.rs"]
mod intake;

use std::time::Duration;

use chrono::DateTime;
use studio_intake::fixtures::{self, MailClient, UnitSpec};
use studio_intake::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_one_mailbox_every_mail_answered_once_and_takeover() {
    let s = mailstack::stack();
    let dept = s.user("intake");
    let senders: Vec<String> = (1..=8).map(|n| s.user(&format!("unit{n}"))).collect();
    let units: Vec<UnitSpec> = senders
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut u = UnitSpec::sample(i, 1);
            u.sender = a.clone();
            u
        })
        .collect();
    let database = postgres::fresh_database("intake_instances").await;
    let mut cfg = intake::imap_config(&dept, &database, &units.iter().collect::<Vec<_>>());
    cfg.source.lease_secs = 3;

    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("intake.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_studio-intake"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("INTAKE_TEST_PASSWORD", &s.password)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut daemons = vec![spawn(), spawn()];
    tokio::time::sleep(Duration::from_secs(3)).await;

    let when = DateTime::parse_from_rfc3339("2020-09-20T10:00:00+08:00").ok();
    for u in &units[..6] {
        s.append(&dept, &fixtures::submission(u, MailClient::Outlook), when);
    }
    let wait = |sender: String, secs: u64| tokio::task::spawn_blocking(move || mailstack::stack().wait_for_mail(&sender, 1, Duration::from_secs(secs)));
    for sender in &senders[..6] {
        assert_eq!(wait(sender.clone(), 30).await.unwrap().len(), 1, "{sender}");
    }

    // The instance holding the mailbox lease dies (SIGKILL): nothing is released.
    let st = Store::connect(&cfg.database.url, 2).await.unwrap();
    let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name LIKE 'mailbox:%'")
        .fetch_one(&sqlx::PgPool::connect(&cfg.database.url).await.unwrap())
        .await
        .unwrap();
    let poller = daemons
        .iter()
        .position(|c| holder.split(':').nth(1) == Some(&c.id().to_string()))
        .unwrap_or_else(|| panic!("the lease holder {holder} is one of the two daemons"));
    let mut dead = daemons.remove(poller);
    dead.kill().unwrap();
    dead.wait().unwrap();
    for u in &units[6..] {
        s.append(&dept, &fixtures::submission(u, MailClient::Foxmail), when);
    }
    for sender in &senders[6..] {
        assert_eq!(wait(sender.clone(), 40).await.unwrap().len(), 1, "{sender}: answered after the takeover");
    }
    for mut d in daemons {
        // SIGTERM: finish the message in hand, then exit 0.
        let _ = std::process::Command::new("kill").args(["-TERM", &d.id().to_string()]).status();
        let status = d.wait().unwrap();
        assert!(status.success(), "clean shutdown on SIGTERM: {status:?}");
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    for sender in &senders {
        assert_eq!(s.fetch_all(sender, "INBOX").len(), 1, "{sender} answered exactly once");
    }
    let counts = st.counts().await.unwrap();
    assert_eq!((counts.mails, counts.submissions), (8, 8), "each mail processed once");
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty());
}
