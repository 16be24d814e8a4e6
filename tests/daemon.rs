//! The daemon end to end against a real Dovecot (IMAP) and Postfix (SMTP) on loopback:
//! submissions appended to the department mailbox, replies read back from the senders'
//! mailboxes, records read from the database.
//!
//! Tests share one mail stack; each uses its own users (`unitN`). Tests that stop or restart
//! a server hold the write side of `SERVERS`, the others the read side.

#[path = "support/mailstack.rs"]
mod mailstack;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/intake.rs"]
mod intake;

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use studio_intake::config::Config;
use studio_intake::core::mime;
use studio_intake::fixtures::{self, MailClient, UnitSpec};
use studio_intake::store::Store;

static SERVERS: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SERVERS.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    SERVERS.write().unwrap_or_else(|e| e.into_inner())
}

/// A unit whose sender is the stack user `unitN`.
fn unit_as(i: usize, studios: usize, user: &str) -> UnitSpec {
    let mut u = UnitSpec::sample(i, studios);
    u.sender = user.to_owned();
    u
}

fn config(dept: &str, db: &Path, units: &[&UnitSpec]) -> Config {
    intake::imap_config(dept, &format!("sqlite://{}", db.display()), units)
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("intake.db");
    (dir, db)
}

fn sept(day: u32, hour: u32) -> Option<DateTime<FixedOffset>> {
    Some(DateTime::parse_from_rfc3339(&format!("2020-09-{day:02}T{hour:02}:00:00+08:00")).unwrap())
}

fn subject_of(raw: &[u8]) -> String {
    mime::parse(raw, &Default::default()).unwrap().subject
}

async fn store(db: &Path) -> Store {
    Store::connect(&format!("sqlite://{}", db.display()), 2).await.unwrap()
}

/// No mail arrives for `user` within `wait`.
fn assert_no_mail(user: &str, wait: Duration) {
    std::thread::sleep(wait);
    let got = mailstack::stack().fetch_all(user, "INBOX");
    assert!(got.is_empty(), "{user} got {} unexpected mails: {:?}", got.len(), got.iter().map(|r| subject_of(r)).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_answers_every_sender_once_and_moves_the_mail() {
    let _g = shared();
    let s = mailstack::stack();
    let dept = s.user("unit1");
    let senders: Vec<String> = (2..=5).map(|n| s.user(&format!("unit{n}"))).collect();
    s.empty(&std::iter::once(&dept).chain(&senders).collect::<Vec<_>>());
    let mut units: Vec<UnitSpec> = senders.iter().enumerate().map(|(i, a)| unit_as(i, 1 + i % 2, a)).collect();
    // One with problems: a team of four.
    let bad = &mut units[3].studios[0];
    bad.members = 4;
    (bad.male, bad.female) = (3, 1);
    (bad.phd, bad.master, bad.bachelor, bad.college, bad.highschool) = (0, 0, 2, 1, 1);
    bad.party = bad.party.min(4);
    let clients = [MailClient::Outlook, MailClient::Foxmail, MailClient::QqMail, MailClient::AppleMail];
    for (u, c) in units.iter().zip(clients) {
        s.append(&dept, &fixtures::submission(u, c), sept(20, 10));
    }
    let (_dir, db) = temp_db();
    let cfg = config(&dept, &db, &units.iter().collect::<Vec<_>>());
    studio_intake::daemon::run_once(cfg.clone()).await.unwrap();

    for (i, sender) in senders.iter().enumerate() {
        let replies = s.wait_for_mail(sender, 1, Duration::from_secs(20));
        assert_eq!(replies.len(), 1, "{sender}");
        let reply = mime::parse(&replies[0], &Default::default()).unwrap();
        let expected = if i == 3 { "未通过" } else { "审核通过" };
        assert!(reply.subject.contains(expected), "{sender}: {}", reply.subject);
        assert!(reply.in_reply_to.is_some(), "threaded");
        assert_eq!(reply.auto, Some(mime::AutoMail::AutoSubmitted("auto-replied".into())));
    }
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty(), "all moved");
    assert_eq!(s.mailbox_uids(&dept, "Processed").len(), 4);
    let st = store(&db).await;
    let counts = st.counts().await.unwrap();
    assert_eq!((counts.submissions, counts.submissions_accepted, counts.submissions_rejected), (4, 3, 1));
    assert_eq!(counts.studios_current, units.iter().map(|u| u.studios.len() as i64).sum::<i64>());

    // A second pass finds nothing new and sends nothing again.
    studio_intake::daemon::run_once(cfg).await.unwrap();
    std::thread::sleep(Duration::from_secs(1));
    for sender in &senders {
        assert_eq!(s.fetch_all(sender, "INBOX").len(), 1, "{sender} answered once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_then_restarted_processes_each_mail_once() {
    let _g = shared();
    let s = mailstack::stack();
    let dept = s.user("unit6");
    let senders: Vec<String> = (7..=10).map(|n| s.user(&format!("unit{n}"))).collect();
    s.empty(&std::iter::once(&dept).chain(&senders).collect::<Vec<_>>());
    let units: Vec<UnitSpec> = senders.iter().enumerate().map(|(i, a)| unit_as(10 + i, 3, a)).collect();
    // Two mails per sender: eight in the batch.
    for u in &units {
        s.append(&dept, &fixtures::submission(u, MailClient::Outlook), sept(21, 9));
        let mut again = u.clone();
        again.studios[0].intro.push('。');
        s.append(&dept, &fixtures::submission(&again, MailClient::Foxmail), sept(21, 10));
    }
    let (dir, db) = temp_db();
    let cfg = config(&dept, &db, &units.iter().collect::<Vec<_>>());
    let cfg_path = dir.path().join("intake.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();

    let bin = env!("CARGO_BIN_EXE_studio-intake");
    let mut child = std::process::Command::new(bin)
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("INTAKE_TEST_PASSWORD", &s.password)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it mid-batch: as soon as the first mail's results are committed — the rest of the
    // batch is being read or judged, and the batch is moved only when all of it is done.
    let url = format!("sqlite://{}?mode=ro", db.display());
    let committed = || async {
        let Ok(pool) = sqlx::SqlitePool::connect(&url).await else { return 0 };
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM submissions").fetch_one(&pool).await.unwrap_or(0);
        pool.close().await;
        n
    };
    let start = Instant::now();
    while committed().await == 0 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed_before = committed().await;
    let moved_before = s.mailbox_uids(&dept, "Processed").len();
    assert!(committed_before >= 1, "killed after a commit");

    let status = std::process::Command::new(bin)
        .args(["run", "--once", "--config"])
        .arg(&cfg_path)
        .env("INTAKE_TEST_PASSWORD", &s.password)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty());
    assert_eq!(s.mailbox_uids(&dept, "Processed").len(), 8, "committed before the kill: {committed_before}, moved: {moved_before}");
    let counts = store(&db).await.counts().await.unwrap();
    assert_eq!(counts.mails, 8, "each raw mail stored once");
    assert_eq!(counts.submissions, 8, "each mail processed once");
    // Each mail answered once: one reply queued per mail, never two. A reply the killed
    // process had in hand (claimed: perhaps sent, perhaps not) goes again when its claim
    // runs out, minutes later; every other one is delivered by the restart.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.address, o.status FROM outbox o JOIN outbox_recipients r ON r.outbox_id = o.id WHERE o.kind = 'reply'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 8, "one reply per mail: {rows:?}");
    let in_hand = rows.iter().filter(|(_, st)| st == "claimed").count();
    assert!(in_hand <= studio_intake::outbox::sender::PARALLEL_SENDS, "at most one in hand per sending lane: {rows:?}");
    for sender in &senders {
        let mine: Vec<&String> = rows.iter().filter(|(a, _)| a.eq_ignore_ascii_case(sender)).map(|(_, st)| st).collect();
        assert_eq!(mine.len(), 2, "{sender}: a reply queued for each of its mails");
        let sent = mine.iter().filter(|st| st.as_str() == "sent").count();
        let replies = s.wait_for_mail(sender, sent, Duration::from_secs(20));
        assert!(replies.len() >= sent, "{sender} has its sent replies");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_wait_in_the_outbox_while_smtp_is_down() {
    let _g = exclusive();
    let s = mailstack::stack();
    let dept = s.user("unit11");
    let sender = s.user("unit12");
    s.empty(&[&dept, &sender]);
    let u = unit_as(3, 1, &sender);
    s.append(&dept, &fixtures::submission(&u, MailClient::QqMail), sept(22, 9));
    let (_dir, db) = temp_db();
    let cfg = config(&dept, &db, &[&u]);

    s.stop_postfix();
    let result = studio_intake::daemon::run_once(cfg.clone()).await;
    let st = store(&db).await;
    let depth = st.outbox_depth().await.unwrap();
    s.start_postfix();
    result.unwrap();
    assert_eq!(depth, 1, "the reply waits in the outbox");
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty(), "the mail is processed all the same");

    // Retries are due after retry_base_secs (1 s here).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    studio_intake::daemon::run_once(cfg).await.unwrap();
    let replies = s.wait_for_mail(&sender, 1, Duration::from_secs(20));
    assert_eq!(replies.len(), 1);
    assert_eq!(st.outbox_depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_daemon_answers_during_idle_and_survives_a_dovecot_restart() {
    let _g = exclusive();
    let s = mailstack::stack();
    let dept = s.user("unit13");
    let sender = s.user("unit14");
    s.empty(&[&dept, &sender]);
    let u = unit_as(4, 1, &sender);
    let (_dir, db) = temp_db();
    let cfg = config(&dept, &db, &[&u]);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(studio_intake::daemon::run(cfg, async move {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_secs(2)).await; // connected and idling

    let appended = Instant::now();
    s.append(&dept, &fixtures::submission(&u, MailClient::AppleMail), sept(23, 9));
    let replies = tokio::task::spawn_blocking({
        let sender = sender.clone();
        move || mailstack::stack().wait_for_mail(&sender, 1, Duration::from_secs(15))
    })
    .await
    .unwrap();
    assert_eq!(replies.len(), 1);
    let latency = appended.elapsed();
    assert!(latency < Duration::from_secs(10), "answered within a few seconds, took {latency:?}");

    s.restart_dovecot();
    let mut again = u.clone();
    again.studios[0].intro.push('。');
    s.append(&dept, &fixtures::submission(&again, MailClient::Outlook), sept(23, 10));
    let replies = tokio::task::spawn_blocking({
        let sender = sender.clone();
        move || mailstack::stack().wait_for_mail(&sender, 2, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(replies.len(), 2, "reconnected after the restart");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), daemon).await.expect("stops on shutdown").unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmission_supersedes_the_earlier_studio_version() {
    let _g = shared();
    let s = mailstack::stack();
    let dept = s.user("unit15");
    let sender = s.user("unit16");
    s.empty(&[&dept, &sender]);
    let mut u = unit_as(5, 1, &sender);
    u.studios[0].native_place = String::new(); // first version lacks a field
    let (_dir, db) = temp_db();
    let cfg = config(&dept, &db, &[&u]);
    s.append(&dept, &fixtures::submission(&u, MailClient::Outlook), sept(20, 9));
    studio_intake::daemon::run_once(cfg.clone()).await.unwrap();
    u.studios[0].native_place = "四川乐山".into();
    // A new mail (its own Message-ID): the same Message-ID again would be the same mail.
    let mut again = fixtures::submission_mail(&u, MailClient::Outlook, &Default::default());
    again.message_id = "<resend-1@example.cn>".into();
    s.append(&dept, &fixtures::build_eml(&again), sept(21, 9));
    studio_intake::daemon::run_once(cfg).await.unwrap();

    let st = store(&db).await;
    let key = studio_intake::core::text::squash(&u.studios[0].name);
    let versions = st.studio_versions(Some(&u.unit), &key).await.unwrap();
    assert_eq!(versions.len(), 2, "history kept");
    assert_eq!(versions.iter().filter(|v| v.current).count(), 1);
    let current = versions.iter().find(|v| v.current).unwrap();
    assert_eq!(current.verdict, "accepted");
    let replies = s.wait_for_mail(&sender, 2, Duration::from_secs(20));
    let texts: Vec<String> = replies.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
    let second = replies.iter().map(|r| mime::parse(r, &Default::default()).unwrap()).find(|m| m.subject.contains("审核通过")).expect("second reply accepted");
    assert!(second.body_text.contains("替代"), "the reply says the earlier version is replaced: {}", second.body_text);
    assert_eq!(texts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_replies_and_bounces_get_no_reply() {
    let _g = shared();
    let s = mailstack::stack();
    let dept = s.user("unit17");
    let sender = s.user("unit18");
    s.empty(&[&dept, &sender]);
    let auto_reply = format!(
        "From: {sender}\r\nTo: {dept}\r\nSubject: =?UTF-8?B?6Ieq5Yqo5Zue5aSN?=: 关于申报\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <auto-1@example.test>\r\nDate: Mon, 21 Sep 2020 10:00:00 +0800\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n我正在休假，稍后回复。\r\n"
    );
    let bounce = format!(
        "From: MAILER-DAEMON@example.test (Mail Delivery System)\r\nTo: {dept}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-1@example.test>\r\nDate: Mon, 21 Sep 2020 10:00:00 +0800\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; {sender}\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n"
    );
    s.append(&dept, auto_reply.as_bytes(), sept(21, 10));
    s.append(&dept, bounce.as_bytes(), sept(21, 10));
    let (_dir, db) = temp_db();
    let u = unit_as(6, 1, &sender);
    studio_intake::daemon::run_once(config(&dept, &db, &[&u])).await.unwrap();
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty(), "processed and moved");
    assert_eq!(store(&db).await.counts().await.unwrap().mails, 2);
    assert_no_mail(&sender, Duration::from_secs(2));
    assert_eq!(store(&db).await.outbox_depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_over_the_size_limit_is_refused_with_a_reply() {
    let _g = shared();
    let s = mailstack::stack();
    let dept = s.user("unit19");
    let sender = s.user("unit20");
    s.empty(&[&dept, &sender]);
    let u = unit_as(7, 1, &sender);
    let raw = fixtures::submission(&u, MailClient::Outlook);
    s.append(&dept, &raw, sept(22, 11));
    let (_dir, db) = temp_db();
    let mut cfg = config(&dept, &db, &[&u]);
    cfg.limits.max_message_bytes = (raw.len() / 2) as u64;
    studio_intake::daemon::run_once(cfg).await.unwrap();
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty(), "refused mail is moved too");
    let replies = s.wait_for_mail(&sender, 1, Duration::from_secs(20));
    let reply = mime::parse(&replies[0], &Default::default()).unwrap();
    assert!(reply.subject.contains("邮件过大"), "{}", reply.subject);
    assert!(reply.body_text.contains("上限"), "{}", reply.body_text);
    let counts = store(&db).await.counts().await.unwrap();
    assert_eq!((counts.mails, counts.submissions_ignored), (1, 1));
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_pass_on_postgresql() {
    let _g = shared();
    let s = mailstack::stack();
    let dept = s.user("staff");
    let sender = s.user("others");
    s.empty(&[&dept, &sender]);
    let u = unit_as(8, 2, &sender);
    s.append(&dept, &fixtures::submission(&u, MailClient::Webmail163), sept(24, 16));
    let (_dir, db) = temp_db();
    let mut cfg = config(&dept, &db, &[&u]);
    cfg.database.url = postgres::fresh_database("intake_daemon").await;
    studio_intake::daemon::run_once(cfg.clone()).await.unwrap();
    let replies = s.wait_for_mail(&sender, 1, Duration::from_secs(20));
    assert!(subject_of(&replies[0]).contains("审核通过"));
    let st = Store::connect(&cfg.database.url, 2).await.unwrap();
    assert_eq!(st.backend(), studio_intake::store::Backend::Postgres);
    let counts = st.counts().await.unwrap();
    assert_eq!((counts.submissions, counts.studios_current), (1, 2));
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty());
}


#[tokio::test]
async fn replies_per_sender_are_limited_per_hour() {
    let inbox = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let u = unit_as(9, 1, "jwxzgh@example.cn");
    for k in 0..3 {
        let mut v = u.clone();
        v.studios[0].intro.push_str(&"。".repeat(k + 1));
        let mut m = fixtures::submission_mail(&v, MailClient::Outlook, &Default::default());
        m.message_id = format!("<mail-{k}@example.cn>");
        std::fs::write(inbox.path().join(format!("{k}.eml")), fixtures::build_eml(&m)).unwrap();
    }
    let mut cfg = intake::file_config(inbox.path(), state.path(), &[&u]);
    cfg.outbox.replies_per_sender_per_hour = 2;
    studio_intake::daemon::run_once(cfg).await.unwrap();
    let written = std::fs::read_dir(state.path().join("outbox")).unwrap().count();
    assert_eq!(written, 2, "the third mail in the hour gets no reply");
    let counts = store(&state.path().join("intake.db")).await.counts().await.unwrap();
    assert_eq!(counts.submissions, 3, "but it is processed and recorded");
}

/// One unit's campaign, mail by mail, as real units write: forms first, the photos the next
/// day, the same mail delivered twice, a question, a corrected 附件1 alone, a late correction.
/// Each reply tells where the unit stands; the dossier, its history, the consolidated table
/// and the open findings follow.
async fn campaign_steps(mut send: impl AsyncFnMut(&str, Vec<u8>, Option<DateTime<FixedOffset>>) -> Vec<Vec<u8>>, st_path: CampaignStore, u: &UnitSpec) {
    let full = fixtures::submission_mail(u, MailClient::Foxmail, &Default::default());
    let with = |n: usize, files: Vec<(String, Vec<u8>)>, subject: &str, body: &str| {
        let mut m = full.clone();
        m.attachments = files;
        m.message_id = format!("<campaign-{n}@example.cn>");
        m.subject = subject.into();
        m.body = body.into();
        fixtures::build_eml(&m)
    };
    let forms: Vec<_> = full.attachments.iter().filter(|(n, _)| !n.ends_with(".jpg")).cloned().collect();
    let photos: Vec<_> = full.attachments.iter().filter(|(n, _)| n.ends_with(".jpg")).cloned().collect();
    assert_eq!(photos.len(), 2);

    // 1. The forms, no photos: missing photos, "the rest may come in another mail".
    let r = send("1", with(1, forms.clone(), "申报材料", "请查收"), sept(20, 9)).await;
    let first = mime::parse(&r[0], &Default::default()).unwrap();
    assert!(first.subject.contains("未通过"), "{}", first.subject);
    assert!(first.body_text.contains("尚缺工作室场景照") && first.body_text.contains("可分几封邮件发送"), "{}", first.body_text);
    // 2. The photos alone the next day: the unit is complete.
    let photo_mail = with(2, photos.clone(), "补发照片", "补发场景照两张");
    let r = send("2", photo_mail.clone(), sept(21, 9)).await;
    let second = mime::parse(&r[0], &Default::default()).unwrap();
    assert!(second.subject.contains("审核通过"), "{}\n{}", second.subject, second.body_text);
    assert!(second.body_text.contains("均已齐全"), "{}", second.body_text);
    // 3. The same mail again (a server re-delivers it): recorded, not answered.
    let mut redelivered = b"X-Redelivered: yes\r\n".to_vec();
    redelivered.extend_from_slice(&photo_mail);
    assert!(send("3", redelivered, sept(21, 10)).await.is_empty(), "the same mail is answered once");
    // 4. A question: where the unit stands, nothing opened against it.
    let r = send("4", with(4, vec![], "是否收到？", "请问我单位的材料是否收到？"), sept(22, 9)).await;
    let q = mime::parse(&r[0], &Default::default()).unwrap();
    assert!(q.subject.contains("未附申报文件") && q.body_text.contains("均已齐全"), "{}\n{}", q.subject, q.body_text);
    // 5. A corrected 附件1 alone: replaces that form only.
    let a1 = forms.iter().find(|(n, _)| n.contains("审批表")).unwrap().clone();
    let r = send("5", with(5, vec![a1.clone()], "更正审批表", ""), sept(23, 9)).await;
    let fix = mime::parse(&r[0], &Default::default()).unwrap();
    assert!(fix.subject.contains("审核通过") && fix.body_text.contains("替代"), "{}\n{}", fix.subject, fix.body_text);
    // 6. A late correction: answered as late, nothing on file changes.
    let r = send("6", with(6, vec![a1], "再次更正", ""), Some(DateTime::parse_from_rfc3339("2020-09-27T09:00:00+08:00").unwrap())).await;
    let late = mime::parse(&r[0], &Default::default()).unwrap();
    assert!(late.subject.contains("晚于报送截止时间") && late.body_text.contains("未计入"), "{}\n{}", late.subject, late.body_text);

    let st = st_path.open().await;
    let history = st.dossier_history(&u.unit).await.unwrap();
    assert_eq!(history.len(), 3, "forms, photos, corrected form: one version each");
    let current = st.current_dossier(&u.unit).await.unwrap().unwrap();
    assert_eq!(current.id, history[2].id);
    assert_eq!(current.dossier.studios.len(), 2);
    for s in &current.dossier.studios {
        assert!(s.form.is_some() && s.materials.is_some() && s.photo.is_some(), "{}", s.name);
        // Provenance: the photo came with the second mail, the materials with the first.
        assert!(s.photo.as_ref().unwrap().from.submission > s.materials.as_ref().unwrap().from.submission, "{}", s.name);
    }
    let rows = st.current_studios().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.verdict == "accepted" && r.rank.is_some()), "{rows:?}");
    assert!(st.open_findings().await.unwrap().is_empty(), "nothing open once complete");
    let counts = st.counts().await.unwrap();
    assert_eq!(counts.submissions, 6);
}

/// Where a campaign's database is.
enum CampaignStore {
    Sqlite(PathBuf),
}

impl CampaignStore {
    async fn open(&self) -> Store {
        match self {
            CampaignStore::Sqlite(p) => store(p).await,
        }
    }
}

#[tokio::test]
async fn a_units_campaign_over_many_mails_on_the_embedded_default() {
    let inbox = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let u = unit_as(12, 2, "jyxzgh@example.cn");
    let cfg = intake::file_config(inbox.path(), state.path(), &[&u]);
    let outbox = state.path().join("outbox");
    let send = async |name: &str, raw: Vec<u8>, at: Option<DateTime<FixedOffset>>| -> Vec<Vec<u8>> {
        // The maildir source takes the receipt time from the newest Received: header.
        let mut mail = format!("Received: from mx.example.cn by intake; {}\r\n", at.unwrap().to_rfc2822()).into_bytes();
        mail.extend_from_slice(&raw);
        let before: std::collections::BTreeSet<_> = std::fs::read_dir(&outbox).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        std::fs::write(inbox.path().join(format!("{name}.eml")), mail).unwrap();
        studio_intake::daemon::run_once(cfg.clone()).await.unwrap();
        let after: std::collections::BTreeSet<_> = std::fs::read_dir(&outbox).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        after.difference(&before).map(|p| std::fs::read(p).unwrap()).collect()
    };
    campaign_steps(send, CampaignStore::Sqlite(state.path().join("intake.db")), &u).await;

    // The reviewers' folder: every current file once, in the layout of INTERFACE.md.
    let files = tempfile::tempdir().unwrap();
    let st = store(&state.path().join("intake.db")).await;
    let n = studio_intake::digest::files::export_files(&st, &cfg, files.path()).await.unwrap();
    assert_eq!(n, 7, "per studio 附件1, 附件3, photo; the unit's 附件2");
    let unit_dir = files.path().join(&u.unit);
    let mut entries: Vec<String> = std::fs::read_dir(&unit_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries[0].starts_with("01-") && entries[0].ends_with(&u.studios[0].name), "{entries:?}");
    assert!(entries[1].starts_with("02-"), "{entries:?}");
    assert!(entries[2].contains("汇总表") && entries[2].ends_with(".xlsx"), "{entries:?}");
    for studio_dir in &entries[..2] {
        let inside: Vec<String> = std::fs::read_dir(unit_dir.join(studio_dir)).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(inside.len(), 3, "{inside:?}");
        assert!(inside.iter().all(|f| !f.contains(" (2)")), "no superseded copy: {inside:?}");
    }

    // The digest: the question and the late mail among the mails to read, with what the late
    // one carried; nothing open for the complete unit.
    let digest = studio_intake::digest::build(&st, &cfg, chrono::Utc::now()).await.unwrap();
    let section = digest.text.split("十、").nth(1).expect("section 十");
    assert!(section.contains("（2 封）"), "{section}");
    assert!(section.contains("是否收到") && section.contains("未附申报文件"), "{section}");
    assert!(section.contains("逾期送达，未计入") && section.contains("审批表"), "{section}");
    assert!(!digest.text.contains("错误：form."), "codes never stand alone: {}", digest.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_units_campaign_over_many_mails_through_imap_and_smtp() {
    // Alone: the stack's twenty unit mailboxes are all in use by other tests.
    let _g = exclusive();
    let s = mailstack::stack();
    let dept = s.user("unit7");
    let sender = s.user("unit8");
    s.empty(&[&dept, &sender]);
    let u = unit_as(13, 2, &sender);
    let (_dir, db) = temp_db();
    let cfg = config(&dept, &db, &[&u]);
    let mut seen = 0;
    let send = async |_: &str, raw: Vec<u8>, at: Option<DateTime<FixedOffset>>| -> Vec<Vec<u8>> {
        s.append(&dept, &raw, at);
        studio_intake::daemon::run_once(cfg.clone()).await.unwrap();
        // A reply, if any, arrives through Postfix; the duplicate's absence is checked by
        // the count after the next mail.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let all = s.fetch_all(&sender, "INBOX");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut all = all;
        while all.len() == seen && Instant::now() < deadline && !String::from_utf8_lossy(&raw).starts_with("X-Redelivered") {
            tokio::time::sleep(Duration::from_millis(200)).await;
            all = s.fetch_all(&sender, "INBOX");
        }
        let new = all[seen..].to_vec();
        seen = all.len();
        new
    };
    campaign_steps(send, CampaignStore::Sqlite(db.clone()), &u).await;
}

/// One pass over several mails of a unit and a stranger's claim on it: fetched as one batch,
/// read side by side, committed in arrival order — the photos sent after the forms complete
/// the unit exactly as they do one pass at a time, and the stranger changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_takes_effect_in_arrival_order_and_holds_the_stranger() {
    let _g = exclusive();
    let s = mailstack::stack();
    let dept = s.user("unit7");
    let sender = s.user("unit8");
    let stranger = s.user("unit9");
    s.empty(&[&dept, &sender, &stranger]);
    let u = unit_as(14, 2, &sender);
    let (_dir, db) = temp_db();
    let cfg = config(&dept, &db, &[&u]);

    let full = fixtures::submission_mail(&u, MailClient::Foxmail, &Default::default());
    let with = |id: &str, from: &str, files: Vec<(String, Vec<u8>)>| {
        let mut m = full.clone();
        m.attachments = files;
        m.message_id = format!("<{id}@example.cn>");
        m.from = m.from.replace(&sender, from);
        fixtures::build_eml(&m)
    };
    let forms: Vec<_> = full.attachments.iter().filter(|(n, _)| !n.ends_with(".jpg")).cloned().collect();
    let photos: Vec<_> = full.attachments.iter().filter(|(n, _)| n.ends_with(".jpg")).cloned().collect();
    // The stranger's copy names the same unit and would replace both studios if applied.
    s.append(&dept, &with("batch-1", &sender, forms), sept(20, 9));
    s.append(&dept, &with("batch-2", &sender, photos), sept(20, 10));
    s.append(&dept, &with("batch-3", &stranger, full.attachments.clone()), sept(20, 11));
    studio_intake::daemon::run_once(cfg.clone()).await.unwrap();

    assert!(s.mailbox_uids(&dept, "INBOX").is_empty());
    assert_eq!(s.mailbox_uids(&dept, "Processed").len(), 3, "one MOVE for the batch");
    let st = store(&db).await;
    let studios = st.current_studios().await.unwrap();
    assert_eq!(studios.len(), 2, "{studios:?}");
    assert!(studios.iter().all(|x| x.verdict == "accepted"), "{studios:?}");
    let held = st.held_mails().await.unwrap();
    assert_eq!(held.len(), 1, "the stranger's mail is held: {held:?}");
    assert_eq!(held[0].sender.as_deref(), Some(stranger.as_str()));

    // Replies in order: the forms answered as missing photos, the photos as complete.
    let replies: Vec<_> = s.wait_for_mail(&sender, 2, Duration::from_secs(30)).iter().map(|r| mime::parse(r, &Default::default()).unwrap()).collect();
    let to = |id: &str| replies.iter().find(|r| r.in_reply_to.as_deref() == Some(&format!("<{id}@example.cn>")[..])).unwrap_or_else(|| panic!("no reply to {id}"));
    assert!(to("batch-1").body_text.contains("尚缺工作室场景照"), "{}", to("batch-1").body_text);
    assert!(to("batch-2").subject.contains("审核通过") && to("batch-2").body_text.contains("均已齐全"), "{}", to("batch-2").body_text);
    // The stranger hears a fixed acknowledgement that repeats nothing of its mail.
    let ack = s.wait_for_mail(&stranger, 1, Duration::from_secs(30));
    let ack = mime::parse(&ack[0], &Default::default()).unwrap();
    assert!(!ack.body_text.contains(&u.studios[0].name), "{}", ack.body_text);
}
