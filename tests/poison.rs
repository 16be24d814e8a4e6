//! Poison mail through the real daemon: mails with header values a reply cannot repeat are
//! answered anyway (the odd values dropped), and a mail the daemon still cannot finish is
//! set aside after the attempt limit — moved to the failed folder (IMAP `Failed`, Maildir
//! `failed/`), recorded with its reason, listed in the digest with sender and subject,
//! counted in `/metrics` and reported by `/healthz` as degraded — never offered again.
//!
//! "Cannot finish" is made real, not mocked: the test gives the database a trigger that
//! refuses to record mails with a marker subject, as a broken constraint would.

#[path = "support/mailstack.rs"]
mod mailstack;
#[path = "support/intake.rs"]
mod intake;

use std::time::Duration;

use sqlx::{Connection, Executor};
use studio_intake::fixtures::{self, MailClient, UnitSpec};
use studio_intake::store::{MAX_RAW_ATTEMPTS, Store};


/// A trigger that refuses to record a mail whose subject carries `POISON`.
async fn poison_the_database(url: &str) {
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    conn.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON submissions
         WHEN NEW.subject LIKE '%POISON%' BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END;",
    )
    .await
    .unwrap();
    conn.close().await.unwrap();
}

fn odd_mails(u: &UnitSpec) -> Vec<(&'static str, Vec<u8>)> {
    let base = |id: &str| {
        let mut m = fixtures::submission_mail(u, MailClient::Outlook, &Default::default());
        m.message_id = format!("<{id}@example.cn>");
        fixtures::build_eml(&m)
    };
    let replace = |raw: Vec<u8>, from: &str, to: &str| String::from_utf8_lossy(&raw).replacen(from, to, 1).into_bytes();
    vec![
        // A Message-ID with non-ASCII characters (some webmail systems write them).
        ("non-ascii-message-id", replace(base("odd1"), "<odd1@example.cn>", "<报送材料-001@example.cn>")),
        // A References id with spaces and no '@'.
        ("odd-references", {
            let mut raw = b"References: <not an id> <also bad>\r\nIn-Reply-To: garbage\r\n".to_vec();
            raw.extend_from_slice(&base("odd2"));
            raw
        }),
        // A quoted local part in From (valid RFC 5322, refused by many libraries).
        ("quoted-local-part", replace(base("odd3"), &format!("<{}>", u.sender), &format!("<\"{}\"@example.cn>", u.sender.split('@').next().unwrap()))),
    ]
}

#[tokio::test]
async fn odd_header_values_are_answered_and_a_mail_that_cannot_be_finished_is_set_aside() {
    let inbox = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let u = UnitSpec::sample(0, 1);
    let cfg = intake::file_config(inbox.path(), state.path(), &[&u]);
    // Create the database, then poison it.
    studio_intake::daemon::run_once(cfg.clone()).await.unwrap();
    poison_the_database(&cfg.database.url).await;

    for (name, raw) in odd_mails(&u) {
        std::fs::write(inbox.path().join(format!("{name}.eml")), raw).unwrap();
    }
    let mut poison = fixtures::submission_mail(&u, MailClient::Foxmail, &Default::default());
    poison.message_id = "<poison@example.cn>".into();
    poison.subject = "POISON 申报材料".into();
    std::fs::write(inbox.path().join("zz-poison.eml"), fixtures::build_eml(&poison)).unwrap();

    for pass in 1..=MAX_RAW_ATTEMPTS {
        studio_intake::daemon::run_once(cfg.clone()).await.unwrap();
        let left = inbox.path().join("zz-poison.eml").exists();
        assert_eq!(left, pass < MAX_RAW_ATTEMPTS, "pass {pass}: the poison mail is offered until the limit, then moved");
    }
    assert!(inbox.path().join("failed/zz-poison.eml").exists(), "moved to failed/");
    // Another pass: nothing offered again, nothing new recorded.
    studio_intake::daemon::run_once(cfg.clone()).await.unwrap();

    let st = Store::connect(&cfg.database.url, 2).await.unwrap();
    // The three odd mails: recorded and answered.
    let outbox: Vec<String> = std::fs::read_dir(state.path().join("outbox")).unwrap().flatten().map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned()).collect();
    assert_eq!(outbox.len(), 3, "one reply per odd mail");
    assert!(outbox.iter().all(|r| !r.contains("not an id") && !r.contains("garbage")));
    // The poison: failed, with its reason, sender and subject for staff.
    assert_eq!(st.failed_count().await.unwrap(), 1);
    let unprocessed = st.unprocessed_mails().await.unwrap();
    let p = unprocessed.iter().find(|m| m.reason.contains("refused by the test trigger")).expect("listed with its reason");
    assert_eq!(p.sender.as_deref(), Some(u.sender.as_str()));
    assert!(p.subject.as_deref().is_some_and(|s| s.contains("POISON")), "{p:?}");
    let app = studio_intake::app::App::build(cfg.clone()).await.unwrap();
    let digest = studio_intake::digest::build(&app.store, &app.config, chrono::Utc::now()).await.unwrap();
    let section = digest.text.split("八、").nth(1).unwrap();
    assert!(section.contains("POISON") && section.contains(&u.sender), "{section}");
    assert!(p.set_aside, "{p:?}");
    assert!(section.contains("多次处理未成功，已移入失败文件夹（"), "said in Chinese, the error as an aside: {section}");
    let (status, body) = studio_intake::health::healthz(&app).await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["degraded"], true, "{body}");
    assert_eq!(health["failed_mails"], 1, "{body}");
    let metrics = studio_intake::metrics::metrics().render();
    assert!(metrics.contains("studio_intake_mails_failed 1\n"), "{metrics}");
    assert!(metrics.contains("studio_intake_mails_set_aside_total 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_that_cannot_be_finished_ends_in_the_imap_failed_folder() {
    let s = mailstack::stack();
    let dept = s.user("unit1");
    let sender = s.user("unit2");
    s.empty(&[&dept, &sender]);
    let mut u = UnitSpec::sample(0, 1);
    u.sender = sender.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("intake.db").display());
    let cfg = intake::imap_config(&dept, &db, &[&u]);
    studio_intake::daemon::run_once(cfg.clone()).await.unwrap();
    poison_the_database(&db).await;
    let mut poison = fixtures::submission_mail(&u, MailClient::Outlook, &Default::default());
    poison.subject = "POISON".into();
    let on_time = Some(chrono::DateTime::parse_from_rfc3339("2020-09-20T09:00:00+08:00").unwrap());
    s.append(&dept, &fixtures::build_eml(&poison), on_time);
    for _ in 0..MAX_RAW_ATTEMPTS {
        studio_intake::daemon::run_once(cfg.clone()).await.unwrap();
    }
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty(), "not in the inbox any more");
    assert_eq!(s.mailbox_uids(&dept, "Failed").len(), 1, "in the failed folder");
    assert!(s.mailbox_uids(&dept, "Processed").is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = Store::connect(&db, 2).await.unwrap();
    assert_eq!(st.failed_count().await.unwrap(), 1);
}
