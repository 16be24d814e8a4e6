//! The outbox against real servers (a private Postfix + Dovecot, `tests/mailstack/`) and
//! its pure parts: rendering, loop protection, the file transport, backoff.

mod support {
    pub mod smtp_stack;
}

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use studio_intake::config::{Outbox, OutboxKind, Secret, Tls, load_secret};
use studio_intake::core::Limits;
use studio_intake::core::mime::{AutoMail, Message, parse};
use studio_intake::outbox::*;
use support::smtp_stack::{SmtpStack, part_headers_with};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const ATTACHMENT_NAME: &str = "附件2：乐山市劳模和工匠人才创新工作室推荐汇总表（市中区总工会）.xlsx";
const SUBJECT: &str = "【未通过，请修改后重新发送】回复：关于推荐2020年乐山市劳模和工匠人才创新工作室的报告";

fn xlsx_bytes() -> Vec<u8> {
    // Zip magic, then every byte value: base64 must carry it unchanged.
    let mut b = b"PK\x03\x04".to_vec();
    b.extend((0..=255u8).cycle().take(40_000));
    b
}

fn reply_to(to: &str, hash: &str) -> OutgoingMail {
    OutgoingMail {
        from: "乐山市总工会经保女工部 <intake@example.test>".into(),
        to: vec![to.into()],
        subject: SUBJECT.into(),
        text: "市中区总工会：\n\n您于2020年09月20日 10:00发送的邮件已收到。\n\n.\n单独一行的点也要送到。\n".into(),
        html: Some("<p>市中区总工会：</p><p>您的邮件已收到。</p>".into()),
        message_id: reply_message_id(hash, "example.test"),
        in_reply_to: Some("<20200920100000.abc@qq.com>".into()),
        references: vec!["<first.xyz@qq.com>".into()],
        auto_submitted: true,
        attachments: vec![OutAttachment { file_name: ATTACHMENT_NAME.into(), content_type: XLSX.into(), data: xlsx_bytes() }],
    }
}

fn smtp(port: u16, tls: Tls, username: &str, ca_file: Option<PathBuf>) -> Outbox {
    Outbox {
        kind: OutboxKind::Smtp,
        host: "127.0.0.1".into(),
        port,
        tls,
        username: username.into(),
        ca_file,
        ..Outbox::default()
    }
}

fn secret(value: &str) -> Option<Secret> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, format!("{value}\n")).unwrap();
    load_secret(None, Some(&path)).unwrap()
}

/// Decodes `name="=?utf-8?B?…?= =?utf-8?B?…?="` (our own output) from a Content-Type line.
fn decode_name_parameter(content_type: &str) -> String {
    let start = content_type.find("name=\"").expect("name= parameter") + 6;
    let value = &content_type[start..start + content_type[start..].find('"').unwrap()];
    value
        .split_whitespace()
        .map(|w| {
            let b64 = w.strip_prefix("=?utf-8?B?").and_then(|w| w.strip_suffix("?=")).expect("B encoded-word");
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
        })
        .collect()
}

fn check_delivered(raw: &[u8], sent: &OutgoingMail) -> Message {
    let m = parse(raw, &Limits::default()).expect("delivered mail parses");
    assert_eq!(m.subject, sent.subject);
    assert_eq!(m.message_id.as_deref(), Some(sent.message_id.as_str()));
    assert_eq!(m.in_reply_to.as_deref(), Some("<20200920100000.abc@qq.com>"));
    assert_eq!(m.references, vec!["<first.xyz@qq.com>".to_string(), "<20200920100000.abc@qq.com>".to_string()]);
    assert_eq!(m.auto, Some(AutoMail::AutoSubmitted("auto-replied".into())));
    let from = m.from.as_ref().unwrap();
    assert_eq!((from.name.as_deref(), from.address.as_str()), (Some("乐山市总工会经保女工部"), "intake@example.test"));
    let body = m.body_text.replace("\r\n", "\n");
    assert!(body.contains("您于2020年09月20日 10:00发送的邮件已收到。\n\n.\n单独一行的点也要送到。"), "{body}");
    assert_eq!(m.attachments.len(), 1);
    let a = &m.attachments[0];
    assert_eq!(a.file_name, ATTACHMENT_NAME);
    assert_eq!(a.content_type, XLSX);
    assert!(a.data == sent.attachments[0].data, "attachment bytes changed");
    // What Outlook and QQ Mail read: Content-Type name= (encoded-word), besides filename*=.
    let headers = part_headers_with(raw, &format!("Content-Type: {XLSX}")).expect("attachment part");
    assert_eq!(decode_name_parameter(&headers), ATTACHMENT_NAME, "{headers}");
    assert!(headers.contains("filename*0*=utf-8''"), "{headers}");
    let top = String::from_utf8_lossy(raw);
    assert!(top.contains("\r\nAuto-Submitted: auto-replied\r\n"));
    assert!(top.contains("\r\nX-Auto-Response-Suppress: All\r\n"));
    m
}

#[test]
fn real_servers_plain_tls_auth_errors_and_restart() {
    let stack = SmtpStack::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ca = Some(stack.ca_cert());
    rt.block_on(async {
        // 1. Plain SMTP from loopback (no AUTH): the reply arrives intact.
        let plain = Transport::from_config(&smtp(stack.port("SMTP_PORT"), Tls::None, "", None), None).unwrap();
        let mail = reply_to("unit1@example.test", "a1b2c3d4e5f60718293a4b5c6d7e8f90aabbccdd");
        let bytes = render(&mail).unwrap();
        plain.send("intake@example.test", &mail.to, &bytes).await.unwrap();
        let raw = stack.wait_for("unit1@example.test", &mail.message_id, Duration::from_secs(10));
        check_delivered(&raw, &mail);

        // 2. Implicit TLS (smtps) + AUTH, trusting the stack's CA from ca_file.
        let smtps = smtp(stack.port("SMTPS_PORT"), Tls::Implicit, "intake@example.test", ca.clone());
        let t = Transport::from_config(&smtps, secret("secret")).unwrap();
        let mail = reply_to("unit2@example.test", "2222222222222222222222222222");
        t.send("intake@example.test", &mail.to, &render(&mail).unwrap()).await.unwrap();
        check_delivered(&stack.wait_for("unit2@example.test", &mail.message_id, Duration::from_secs(10)), &mail);

        // 3. STARTTLS (required) + AUTH on submission.
        let sub = smtp(stack.port("SUBMISSION_PORT"), Tls::Starttls, "intake@example.test", ca.clone());
        let t = Transport::from_config(&sub, secret("secret")).unwrap();
        let mail = reply_to("unit3@example.test", "3333333333333333333333333333");
        t.send("intake@example.test", &mail.to, &render(&mail).unwrap()).await.unwrap();
        check_delivered(&stack.wait_for("unit3@example.test", &mail.message_id, Duration::from_secs(10)), &mail);

        // 4. Wrong password: 535, permanent (retrying cannot help).
        let t = Transport::from_config(&smtps, secret("wrong")).unwrap();
        let err = t.send("intake@example.test", &mail.to, &bytes).await.unwrap_err();
        assert!(!err.transient, "{err}");
        assert!(err.message.contains("535"), "{err}");
        let t = Transport::from_config(&sub, secret("wrong")).unwrap();
        assert!(!t.send("intake@example.test", &mail.to, &bytes).await.unwrap_err().transient);

        // 5. The server's certificate without ca_file: not trusted, permanent.
        let untrusted = Transport::from_config(&smtp(stack.port("SMTPS_PORT"), Tls::Implicit, "intake@example.test", None), secret("secret")).unwrap();
        let err = untrusted.send("intake@example.test", &mail.to, &bytes).await.unwrap_err();
        assert!(!err.transient, "{err}");

        // 6. A recipient Postfix does not know: 550 at RCPT, permanent.
        let err = plain.send("intake@example.test", &["nobody@example.test".into()], &bytes).await.unwrap_err();
        assert!(!err.transient && err.message.contains("550"), "{err}");

        // 7. Postfix down: connection refused, transient — on the same pooled transport that
        //    still holds an idle connection to the old server. Back up: the send goes through.
        stack.run("stop-postfix.sh");
        let mail = reply_to("unit4@example.test", "4444444444444444444444444444");
        let bytes = render(&mail).unwrap();
        let err = plain.send("intake@example.test", &mail.to, &bytes).await.unwrap_err();
        assert!(err.transient, "{err}");
        stack.run("start-postfix.sh");
        plain.send("intake@example.test", &mail.to, &bytes).await.unwrap();
        check_delivered(&stack.wait_for("unit4@example.test", &mail.message_id, Duration::from_secs(10)), &mail);
        assert_eq!(stack.fetch_inbox("unit4@example.test").len(), 1);
    });
}

#[test]
fn file_transport_writes_one_parseable_eml_per_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("outbox");
    let cfg = Outbox { kind: OutboxKind::File, path: out.clone(), ..Outbox::default() };
    // No runtime needed for the file transport itself; send is async.
    let t = Transport::from_config(&cfg, None).unwrap();
    let mail = reply_to("unit1@example.test", "ffeeddccbbaa99887766554433221100");
    let bytes = render(&mail).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        t.send("intake@example.test", &mail.to, &bytes).await.unwrap();
        // A retry of the same reply replaces the file.
        t.send("intake@example.test", &mail.to, &bytes).await.unwrap();
    });
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].file_name().unwrap(), "reply-ffeeddccbbaa998877665544@example.test.eml");
    check_delivered(&std::fs::read(&files[0]).unwrap(), &mail);
}

#[test]
fn config_errors_are_reported_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // lettre's pool spawns a task when built: outside a runtime that is an error here.
    let cfg = smtp(2525, Tls::None, "", None);
    let err = Transport::from_config(&cfg, None).unwrap_err();
    assert!(err.to_string().contains("runtime"), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let remote = Outbox { host: "smtp.qq.com".into(), ..cfg.clone() };
        assert!(Transport::from_config(&remote, None).unwrap_err().to_string().contains("loopback"));
        let auth = smtp(465, Tls::Implicit, "intake@example.test", None);
        assert!(Transport::from_config(&auth, None).unwrap_err().to_string().contains("password"));
        let bad_ca = smtp(465, Tls::Implicit, "", Some(dir.path().join("missing.pem")));
        assert!(Transport::from_config(&bad_ca, None).unwrap_err().to_string().contains("ca_file"));
    });
}

#[test]
fn render_refuses_bad_ids_and_flattens_the_subject() {
    let mut m = reply_to("unit1@example.test", "00");
    m.message_id = "<a b@c>".into();
    assert!(render(&m).is_err());
    // A threading id from the mail we answer that cannot be a header is dropped, never written.
    let mut m = reply_to("unit1@example.test", "00");
    m.in_reply_to = Some("<x@y>\r\nBcc: victim@example.com".into());
    m.references = vec!["<not an id>".into(), "<ok@example.test>".into()];
    let text = String::from_utf8_lossy(&render(&m).unwrap()).into_owned();
    assert!(!text.contains("Bcc:") && !text.contains("victim") && !text.contains("In-Reply-To"), "{text}");
    assert!(text.contains("References: <ok@example.test>") && !text.contains("not an id"), "{text}");
    let mut m = reply_to("unit1@example.test", "00");
    m.subject = "回复\r\nBcc: victim@example.com".into();
    m.attachments.clear();
    m.html = None;
    let raw = render(&m).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("\nBcc:"), "{text}");
    let parsed = parse(&raw, &Limits::default()).unwrap();
    assert_eq!(parsed.subject, "回复 Bcc: victim@example.com");
    assert!(parsed.attachments.is_empty());
    assert!(text.contains("multipart/alternative") && !text.contains("multipart/mixed"));
}

#[test]
fn reply_ids_come_from_the_submission() {
    let hash = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    assert_eq!(reply_message_id(hash, "example.test"), "<reply-9f86d081884c7d659a2feaa0@example.test>");
    assert_eq!(reply_message_id(hash, "example.test"), reply_message_id(&hash.to_lowercase(), "EXAMPLE.test"));
    assert_ne!(reply_message_id(hash, "example.test"), reply_message_id(&hash[1..], "example.test"));
}

fn mail(headers: &str) -> Message {
    let raw = format!("{headers}\r\nSubject: 推荐材料\r\nDate: Sun, 20 Sep 2020 10:00:00 +0800\r\nMessage-ID: <m1@qq.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n附件请查收。\r\n");
    parse(raw.as_bytes(), &Limits::default()).unwrap()
}

#[test]
fn should_reply_refuses_automatic_mail_and_ourselves() {
    let own = vec!["乐山市总工会经保女工部 <Intake@Example.test>".to_string()];
    assert_eq!(should_reply(&mail("From: 市中区总工会 <unit1@example.test>"), &own), Ok(()));
    let refused = |h: &str| should_reply(&mail(h), &own).unwrap_err();
    assert!(matches!(refused("From: unit1@example.test\r\nAuto-Submitted: auto-replied"), NoReply::AutoMail(AutoMail::AutoSubmitted(_))));
    assert!(matches!(refused("From: unit1@example.test\r\nAuto-Submitted: auto-generated"), NoReply::AutoMail(_)));
    assert!(matches!(refused("From: unit1@example.test\r\nPrecedence: bulk"), NoReply::AutoMail(AutoMail::Precedence(_))));
    // Staff read why in the digest: in Chinese, the header that decided it as an aside.
    assert_eq!(refused("From: unit1@example.test\r\nPrecedence: bulk").to_string(), "群发邮件（Precedence: bulk）");
    assert_eq!(NoReply::NoSender.to_string(), "没有发件地址");
    assert!(matches!(refused("From: unit1@example.test\r\nList-Id: <units.example.test>"), NoReply::AutoMail(AutoMail::MailingList)));
    assert!(matches!(refused("From: MAILER-DAEMON@example.test"), NoReply::AutoMail(AutoMail::Bounce)));
    assert!(matches!(refused("Return-Path: <>\r\nFrom: unit1@example.test"), NoReply::AutoMail(AutoMail::Bounce)));
    assert_eq!(refused("From: intake@EXAMPLE.TEST"), NoReply::OwnAddress);
    assert_eq!(refused("From: unit1@example.test\r\nReply-To: intake@example.test"), NoReply::OwnAddress);
    assert_eq!(refused("To: intake@example.test"), NoReply::NoSender);
    assert_eq!(refused("From: no-reply@example.test"), NoReply::NullSender);
    assert_eq!(refused("From: undisclosed"), NoReply::NullSender);
    // A usable Reply-To wins over a no-reply From.
    assert_eq!(should_reply(&mail("From: noreply@example.test\r\nReply-To: unit1@example.test"), &own), Ok(()));
    // Our own rendered reply, coming back: never answered.
    let ours = parse(&render(&reply_to("unit1@example.test", "00")).unwrap(), &Limits::default()).unwrap();
    assert!(matches!(should_reply(&ours, &[]), Err(NoReply::AutoMail(_))));
}

#[test]
fn backoff_doubles_from_30s_with_jitter_is_monotone_and_capped() {
    let d: Vec<Duration> = (0..=40).map(backoff).collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
    assert_eq!(d[0], d[1]);
    for (attempt, base) in [(1u32, 30u64), (2, 60), (3, 120), (4, 240), (5, 480)] {
        let got = backoff(attempt);
        assert!(got >= Duration::from_secs(base) && got <= Duration::from_secs(base + base / 10), "{attempt}: {got:?}");
    }
    assert!((1..=6).any(|a| !backoff(a).as_millis().is_multiple_of(1000)), "no jitter at all");
    assert_eq!(backoff(8), Duration::from_secs(3600));
    assert_eq!(backoff(u32::MAX), Duration::from_secs(3600));
    assert!(d.iter().all(|x| *x <= Duration::from_secs(3600)));
    assert_eq!(backoff(3), backoff(3), "deterministic");
}
