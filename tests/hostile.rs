//! Hostile input through the real daemon: the corpus of `fixtures::nasty_mails` (bombs,
//! dangerous names, header injection, broken encodings, garbage, an over-size mail) is
//! appended to a real Dovecot mailbox, the daemon runs on it with Postfix as its outbox,
//! and then a valid submission arrives. Each hostile mail must end recorded with a finding
//! or a reason, answered when it has a sender, moved out of the inbox, and the valid mail
//! after them answered as usual: the daemon goes on.

#[path = "support/mailstack.rs"]
mod mailstack;
#[path = "support/intake.rs"]
mod intake;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::DateTime;
use studio_intake::core::mime;
use studio_intake::fixtures::{self, MailClient, UnitSpec};
use studio_intake::store::Store;

const MAX_MESSAGE_BYTES: u64 = 3 * 1024 * 1024;

fn header<'a>(raw: &'a str, name: &str) -> Vec<&'a str> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().filter_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nasty_mail_gets_a_finding_or_a_reason_and_the_daemon_goes_on() {
    let s = mailstack::stack();
    let dept = s.user("intake");
    let attacker = s.user("unit1");
    let good = {
        let mut u = UnitSpec::sample(3, 1);
        u.sender = s.user("unit2");
        u
    };
    s.empty(&[&dept, &attacker, &good.sender]);
    let corpus = fixtures::nasty_mails(&attacker, &dept, MAX_MESSAGE_BYTES as usize + 512 * 1024);
    let when = DateTime::parse_from_rfc3339("2020-09-21T10:00:00+08:00").ok();
    for m in &corpus {
        s.append(&dept, &m.raw, when);
    }

    let state = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", state.path().join("intake.db").display());
    let mut cfg = intake::imap_config(&dept, &db_url, &[&good]);
    cfg.limits.max_message_bytes = MAX_MESSAGE_BYTES;
    cfg.outbox.replies_per_sender_per_hour = 100;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(studio_intake::daemon::run(cfg, async move {
        let mut stop = stop_rx;
        let _ = stop.wait_for(|s| *s).await;
    }));

    // The daemon is busy with the corpus; a valid submission arrives after it.
    s.append(&dept, &fixtures::submission(&good, MailClient::Outlook), when);
    let sender = good.sender.clone();
    let good_reply = tokio::task::spawn_blocking(move || mailstack::stack().wait_for_mail(&sender, 1, Duration::from_secs(240)))
        .await
        .unwrap();
    assert_eq!(good_reply.len(), 1, "the valid mail after the corpus was answered");
    let good_reply = String::from_utf8_lossy(&good_reply[0]).into_owned();
    let good_subject = mime::parse(good_reply.as_bytes(), &Default::default()).unwrap().subject;
    assert!(good_subject.contains("审核通过"), "{good_subject}");
    assert!(!daemon.is_finished(), "the daemon still runs: {:?}", daemon.await);

    // Every answered mail has exactly one reply, matched by In-Reply-To.
    let expected = corpus.iter().filter(|m| m.answered).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    let replies = loop {
        let got = s.fetch_all(&attacker, "INBOX");
        if got.len() >= expected || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut by_original: HashMap<String, Vec<String>> = HashMap::new();
    for r in &replies {
        let text = String::from_utf8_lossy(r).into_owned();
        let original = header(&text, "In-Reply-To").first().map(|v| v.trim_matches(['<', '>']).to_owned()).unwrap_or_default();
        by_original.entry(original).or_default().push(text);
    }
    for m in &corpus {
        let got = m.message_id.as_ref().and_then(|id| by_original.get(id)).map_or(0, Vec::len);
        assert_eq!(got, usize::from(m.answered), "{}: replies", m.name);
    }
    assert_eq!(replies.len(), expected, "no reply to anyone else: {:?}", by_original.keys().collect::<Vec<_>>());

    for (name, text) in corpus.iter().filter_map(|m| Some((m.name, by_original.get(m.message_id.as_ref()?)?.first()?))) {
        // Header injection: the CR LF of a decoded Subject never reaches the reply's header.
        assert!(header(text, "Bcc").is_empty() && header(text, "X-Injected").is_empty(), "{name}: injected header in\n{text}");
        let to = header(text, "To");
        assert_eq!(to.len(), 1, "{name}: one To: line");
        assert!(to[0].contains(&attacker) && !to[0].contains("flood.test") && !to[0].contains("injected"), "{name}: To: {}", to[0]);
        let reply = mime::parse(text.as_bytes(), &Default::default()).unwrap();
        assert!(!reply.subject.chars().any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)), "{name}: {:?}", reply.subject);
        assert!(reply.subject.chars().count() < 300, "{name}: the reply does not echo a huge subject: {} chars", reply.subject.chars().count());
        assert!(!reply.body_text.contains('\u{1b}') && !reply.body_text.contains('\u{202e}'), "{name}: control or bidi characters in the body");
        assert!(text.len() < 256 * 1024, "{name}: reply of {} bytes", text.len());
    }
    let too_large = by_original.get("too-large@nasty.test").and_then(|v| v.first()).expect("too-large answered");
    assert!(mime::parse(too_large.as_bytes(), &Default::default()).unwrap().subject.contains("邮件过大"));

    // Nothing was written where a traversal name points.
    for p in ["/tmp/studio-intake-traversal.docx", "/tmp/studio-intake-traversal-zip.docx", "/etc/cron.d/studio-intake-traversal"] {
        assert!(!std::path::Path::new(p).exists(), "{p} was written");
    }

    // The inbox is empty: every message was moved once recorded.
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty(), "left in the inbox: {:?}", s.mailbox_uids(&dept, "INBOX"));
    assert_eq!(s.mailbox_uids(&dept, "Processed").len(), corpus.len() + 1);

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), daemon).await.expect("the daemon stops").unwrap().unwrap();

    // Each mail has its record: a finding where the corpus names one, a reason when ignored.
    let store = Store::connect(&db_url, 2).await.unwrap();
    assert!(store.failed_raws().await.unwrap().is_empty(), "no message set aside as failed");
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.mails, counts.submissions), (corpus.len() as i64 + 1, corpus.len() as i64 + 1));
    let rows: Vec<(Option<String>, String, Option<String>, String)> = sqlx::query_as(
        "SELECT s.message_id, s.verdict, s.ignored_reason, COALESCE((SELECT group_concat(code, ',') FROM findings f WHERE f.submission_id = s.id), '')
         FROM submissions s",
    )
    .fetch_all(&sqlx::SqlitePool::connect(&db_url).await.unwrap())
    .await
    .unwrap_or_else(|e| panic!("query: {e}"));
    for m in &corpus {
        let row = match &m.message_id {
            Some(id) => rows.iter().find(|r| r.0.as_deref() == Some(format!("<{id}>").as_str())),
            None => rows.iter().find(|r| r.1 == "ignored" && r.2.as_deref().is_some_and(|w| w.contains("不是有效的邮件"))),
        };
        let (_, verdict, reason, codes) = row.unwrap_or_else(|| panic!("{}: no record among {rows:?}", m.name));
        if let Some(code) = m.finding {
            assert!(codes.split(',').any(|c| c == code), "{}: {code} expected, got {codes:?} ({verdict}, {reason:?})", m.name);
        }
        if verdict == "ignored" {
            assert!(reason.as_deref().is_some_and(|r| !r.is_empty()), "{}: ignored without a reason", m.name);
        } else {
            assert!(matches!(verdict.as_str(), "rejected" | "accepted" | "not_a_submission"), "{}: {verdict}", m.name);
        }
    }

    // Staff see the mails nobody could process in their digest, one line each.
    let cfg = intake::imap_config(&dept, &db_url, &[&good]);
    let digest = studio_intake::digest::build(&store, &cfg, chrono::Utc::now()).await.unwrap();
    let ignored = rows.iter().filter(|r| r.1 == "ignored").count();
    assert_eq!(ignored, 2, "the over-size mail and the garbage: {rows:?}");
    assert!(digest.text.contains(&format!("八、需人工查看的邮件（{ignored} 封）")), "{}", digest.text);
    assert!(digest.text.contains("《超大邮件》"), "{}", digest.text);
    let section = digest.text.split("八、").nth(1).unwrap().split("九、").next().unwrap();
    assert!(section.contains("邮件过大：") && section.contains("MB，超过可接收的上限") && !section.contains("bytes"), "{section}");
    assert!(digest.text.contains("（无发件人）"), "{}", digest.text);
    assert!(digest.html.contains("需人工查看的邮件"));
}

/// A message the core cannot finish in `[limits] process_timeout_secs` (here: a converter
/// that hangs, cut off long before its own timeout) is recorded with the reason, its sender
/// told that staff will check it by hand, and the next mail is processed as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_processing_time_limit_is_answered_and_skipped() {
    use base64::Engine as _;
    let s = mailstack::stack();
    let dept = s.user("unit10");
    let good = {
        let mut u = UnitSpec::sample(5, 1);
        u.sender = s.user("unit11");
        u
    };
    s.empty(&[&dept, &good.sender]);
    let work = tempfile::tempdir().unwrap();
    let hanging = work.path().join("soffice");
    std::fs::write(&hanging, "#!/bin/sh\n# A converter that hangs on this file.\nsleep 8\nexit 1\n").unwrap();
    std::fs::set_permissions(&hanging, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let doc = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grid/approval.doc")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&doc);
    let lines: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let slow = format!(
        "From: {from}\r\nTo: {dept}\r\nSubject: =?utf-8?B?{subject}?=\r\nDate: Mon, 21 Sep 2020 10:00:00 +0800\r\n\
         Message-ID: <slow@nasty.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"s\"\r\n\r\n\
         --s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attachment\r\n\
         --s\r\nContent-Type: application/msword; name=\"approval.doc\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"approval.doc\"\r\n\r\n{body}\r\n--s--\r\n",
        from = good.sender,
        subject = base64::engine::general_purpose::STANDARD.encode("推荐审批表".as_bytes()),
        body = lines.join("\r\n"),
    );
    let when = DateTime::parse_from_rfc3339("2020-09-21T10:00:00+08:00").ok();
    s.append(&dept, slow.as_bytes(), when);
    s.append(&dept, &fixtures::submission(&good, MailClient::Foxmail), when);

    let state = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", state.path().join("intake.db").display());
    let mut cfg = intake::imap_config(&dept, &db_url, &[&good]);
    cfg.limits.process_timeout_secs = 2;
    cfg.converters.soffice = hanging.display().to_string();
    studio_intake::daemon::run_once(cfg).await.unwrap();

    let sender = good.sender.clone();
    let replies = tokio::task::spawn_blocking(move || mailstack::stack().wait_for_mail(&sender, 2, Duration::from_secs(30))).await.unwrap();
    assert_eq!(replies.len(), 2, "both mails answered");
    let subjects: Vec<String> = replies.iter().map(|r| mime::parse(r, &Default::default()).unwrap().subject).collect();
    assert!(subjects.iter().any(|s| s.contains("待人工核对") && s.contains("推荐审批表")), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.contains("审核通过")), "the next mail is processed as usual: {subjects:?}");
    assert!(s.mailbox_uids(&dept, "INBOX").is_empty());

    let store = Store::connect(&db_url, 2).await.unwrap();
    let reason: Option<String> = sqlx::query_scalar("SELECT ignored_reason FROM submissions WHERE message_id = '<slow@nasty.test>'")
        .fetch_one(&sqlx::SqlitePool::connect(&db_url).await.unwrap())
        .await
        .unwrap();
    assert!(reason.as_deref().is_some_and(|r| r.starts_with("系统未能处理：处理超时") && r.contains("process_timeout_secs")), "{reason:?}");
    assert!(store.failed_raws().await.unwrap().is_empty());
}
