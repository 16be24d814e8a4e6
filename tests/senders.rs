//! Who speaks for a unit, through the real daemon (the maildir default, and IMAP/SMTP on the
//! test Dovecot and Postfix): an outsider's claim is held and changes nothing, the unit
//! confirms it by replying, staff approve or discard with `studio-intake held`, no content
//! reply reaches an unregistered address or a foreign Reply-To, and the global reply ceiling
//! holds under a burst of forged senders.

#[path = "support/mailstack.rs"]
mod mailstack;
#[path = "support/intake.rs"]
mod intake;

use std::path::{Path, PathBuf};
use std::time::Duration;

use studio_intake::config::Config;
use studio_intake::core::mime::{self, Message};
use studio_intake::fixtures::{self, MailClient, MailSpec, UnitSpec};
use studio_intake::store::Store;


async fn store(db: &Path) -> Store {
    Store::connect(&format!("sqlite://{}", db.display()), 2).await.unwrap()
}

/// The maildir daemon in temp folders: write a mail, run one pass, get the mails it sent.
struct Folder {
    inbox: tempfile::TempDir,
    state: tempfile::TempDir,
    config: Config,
    n: usize,
}

impl Folder {
    fn new(units: &[&UnitSpec]) -> Folder {
        let inbox = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let config = intake::file_config(inbox.path(), state.path(), units);
        Folder { inbox, state, config, n: 0 }
    }

    fn outbox(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.state.path().join("outbox")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        v.sort();
        v
    }

    /// Deliver `raw`, run one pass; the mails sent because of it, parsed, with their `To:`.
    async fn send(&mut self, raw: &[u8]) -> Vec<(String, Message, Vec<u8>)> {
        self.n += 1;
        let before = self.outbox();
        std::fs::write(self.inbox.path().join(format!("{:04}.eml", self.n)), raw).unwrap();
        studio_intake::daemon::run_once(self.config.clone()).await.unwrap();
        self.outbox().into_iter().filter(|p| !before.contains(p)).map(|p| parsed(std::fs::read(p).unwrap())).collect()
    }

    async fn store(&self) -> Store {
        store(&self.state.path().join("intake.db")).await
    }
}

fn parsed(raw: Vec<u8>) -> (String, Message, Vec<u8>) {
    let m = mime::parse(&raw, &Default::default()).unwrap();
    let head = String::from_utf8_lossy(&raw[..raw.len().min(4000)]).into_owned();
    let to = head.lines().find(|l| l.starts_with("To:")).unwrap_or("").to_lowercase();
    (to, m, raw)
}

fn with_id(mut m: MailSpec, id: &str) -> MailSpec {
    m.message_id = format!("<{id}@example.cn>");
    m
}

/// The unit's genuine complete submission, then an outsider's claim with other values.
fn unit_and_outsider() -> (UnitSpec, MailSpec, MailSpec) {
    let u = UnitSpec::sample(0, 2);
    let genuine = with_id(fixtures::submission_mail(&u, MailClient::Outlook, &Default::default()), "genuine");
    let mut fake = u.clone();
    fake.sender = "attacker@evil.example".into();
    fake.studios[0].phone = "13900000000".into();
    fake.studios[0].benefit_wan = "9999".into();
    let mut outsider = with_id(fixtures::submission_mail(&fake, MailClient::QqMail, &Default::default()), "outsider");
    outsider.subject = "犍为县总工会 更正材料 请点击 http://evil.example/x".into();
    (u, genuine, outsider)
}

#[tokio::test]
async fn an_outsiders_claim_is_held_and_the_unit_confirms_it_by_reply() {
    let (u, genuine, outsider) = unit_and_outsider();
    let mut f = Folder::new(&[&u]);
    let sent = f.send(&fixtures::build_eml(&genuine)).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1.subject.contains("审核通过"), "{}", sent[0].1.subject);
    let st = f.store().await;
    let before = st.current_dossier(&u.unit).await.unwrap().unwrap();

    // The outsider: held, nothing on file changes.
    let sent = f.send(&fixtures::build_eml(&outsider)).await;
    let after = st.current_dossier(&u.unit).await.unwrap().unwrap();
    assert_eq!(after.id, before.id, "an unregistered sender changed the dossier");
    let rows = st.current_studios().await.unwrap();
    assert!(rows.iter().all(|r| r.data.get("phone").and_then(|v| v.as_str()) != Some("13900000000")), "{rows:?}");
    // Its sender: one fixed acknowledgement that repeats nothing of the mail.
    let to_outsider: Vec<_> = sent.iter().filter(|(to, _, _)| to.contains("attacker@evil.example")).collect();
    assert_eq!(to_outsider.len(), 1, "{:?}", sent.iter().map(|s| &s.0).collect::<Vec<_>>());
    let (_, ack, raw) = to_outsider[0];
    let whole = String::from_utf8_lossy(raw);
    for leaked in ["evil.example/x", "更正材料", &u.unit, &u.studios[0].name, &u.studios[0].leader, "13900000000", "审批表"] {
        assert!(!ack.subject.contains(leaked) && !ack.body_text.contains(leaked), "the acknowledgement repeats {leaked}: {}", ack.body_text);
    }
    assert!(!whole.contains("evil.example/x"));
    // The unit's registered address: a confirmation request listing what arrived.
    let to_unit: Vec<_> = sent.iter().filter(|(to, _, _)| to.contains(&u.sender)).collect();
    assert_eq!(to_unit.len(), 1);
    let (_, request, _) = to_unit[0];
    assert!(request.subject.contains("请确认") && request.body_text.contains("attacker@evil.example"), "{}", request.body_text);
    assert!(request.body_text.contains("推荐审批表"), "{}", request.body_text);
    let held = st.held_mails().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].suggested_unit.as_deref(), Some(u.unit.as_str()));
    assert_eq!(held[0].reason, "submission.unknown_sender");

    // The unit answers the request from its registered address: the held mail is applied and
    // the result goes to the unit, never to the outsider.
    let mut answer = with_id(fixtures::submission_mail(&u, MailClient::Outlook, &Default::default()), "answer");
    answer.attachments.clear();
    answer.subject = format!("Re: {}", request.subject);
    answer.body = "确认，是我单位报送。".into();
    let mut raw = fixtures::build_eml(&answer);
    let in_reply_to = format!("In-Reply-To: {}\r\nReferences: {}\r\n", request.message_id.as_deref().unwrap(), request.message_id.as_deref().unwrap());
    raw.splice(0..0, in_reply_to.into_bytes());
    let sent = f.send(&raw).await;
    assert!(sent.iter().all(|(to, _, _)| !to.contains("attacker")), "a content reply reached the outsider");
    assert_eq!(sent.len(), 1, "{:?}", sent.iter().map(|s| (&s.0, &s.1.subject)).collect::<Vec<_>>());
    assert!(sent[0].0.contains(&u.sender));
    let now = st.current_dossier(&u.unit).await.unwrap().unwrap();
    assert_ne!(now.id, before.id, "the confirmed mail is applied");
    let rows = st.current_studios().await.unwrap();
    assert!(rows.iter().any(|r| r.data.get("phone").and_then(|v| v.as_str()) == Some("13900000000")));
    assert!(st.held_mails().await.unwrap().is_empty());
}

#[tokio::test]
async fn staff_approve_or_discard_held_mail_with_the_held_command() {
    let (u, genuine, outsider) = unit_and_outsider();
    let mut f = Folder::new(&[&u]);
    f.send(&fixtures::build_eml(&genuine)).await;
    f.send(&fixtures::build_eml(&outsider)).await;
    // A second outsider mail that staff will throw away.
    let mut junk = with_id(outsider.clone(), "junk");
    junk.from = "junk@evil.example".into();
    f.send(&fixtures::build_eml(&junk)).await;

    // The real binary, as staff run it.
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("intake.toml");
    std::fs::write(&cfg_path, toml::to_string(&f.config).unwrap()).unwrap();
    let bin = env!("CARGO_BIN_EXE_studio-intake");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).arg("held").args(["--config", cfg_path.to_str().unwrap()]).args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, json, err) = run(&["list", "--format", "json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{json}");
    for key in ["id", "received_at", "sender", "unit", "reason", "attachments"] {
        assert!(list[0].get(key).is_some(), "{key} missing in {json}");
    }
    let id_of = |sender: &str| list.iter().find(|h| h["sender"] == sender).unwrap()["id"].as_i64().unwrap();
    let (ok, _, err) = run(&["discard", &id_of("junk@evil.example").to_string()]);
    assert!(ok, "{err}");
    let (ok, text, err) = run(&["approve", &id_of("attacker@evil.example").to_string(), "--unit", &u.unit]);
    assert!(ok, "{err}");
    assert!(text.contains("applied 1"), "{text}");
    let st = f.store().await;
    assert!(st.held_mails().await.unwrap().is_empty());
    assert_eq!(st.registered_unit("attacker@evil.example").await.unwrap().as_deref(), Some(u.unit.as_str()));
    let history = st.dossier_history(&u.unit).await.unwrap();
    assert_eq!(history.len(), 2, "the approved mail is a new version; the discarded one is not");
    // The approved sender now speaks for the unit: its next mail is applied at once.
    let mut next = with_id(outsider.clone(), "next");
    next.subject = "再次报送".into();
    let sent = f.send(&fixtures::build_eml(&next)).await;
    // The approved mail's result (queued by `held approve`, sent by this pass) and the new one.
    assert_eq!(sent.len(), 2, "{:?}", sent.iter().map(|s| (&s.0, &s.1.subject)).collect::<Vec<_>>());
    assert!(sent.iter().all(|(to, m, _)| to.contains("attacker@evil.example") && !m.subject.contains("暂存")));
    assert_eq!(st.dossier_history(&u.unit).await.unwrap().len(), 3);
    // Unknown ids are refused with a one-line reason.
    let (ok, _, err) = run(&["approve", "999999"]);
    assert!(!ok && err.contains("999999"), "{err}");
}

#[tokio::test]
async fn replies_go_only_to_registered_addresses() {
    let u = UnitSpec::sample(1, 1);
    let mut f = Folder::new(&[&u]);
    // A registered From with an attacker's Reply-To: the result goes to the From.
    let m = with_id(fixtures::submission_mail(&u, MailClient::Foxmail, &Default::default()), "reply-to");
    let mut raw = b"Reply-To: collector@evil.example\r\n".to_vec();
    raw.extend_from_slice(&fixtures::build_eml(&m));
    let sent = f.send(&raw).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].0.contains(&u.sender) && !sent[0].0.contains("evil"), "{}", sent[0].0);
    // A Reply-To that is itself registered for the same unit is followed.
    let colleague = "office2@example.cn";
    f.config.units.iter_mut().find(|x| x.name == u.unit).unwrap().senders.push(colleague.into());
    let m = with_id(fixtures::submission_mail(&u, MailClient::Foxmail, &Default::default()), "reply-to-2");
    let mut raw = format!("Reply-To: {colleague}\r\n").into_bytes();
    raw.extend_from_slice(&fixtures::build_eml(&m));
    let sent = f.send(&raw).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].0.contains(colleague), "{}", sent[0].0);
    // Invisible characters never leave: a studio name with a bidi override in the forms.
    let mut v = u.clone();
    v.studios[0].native_place = "四川\u{202e}乐山".into();
    v.studios[0].members = 3;
    let m = with_id(fixtures::submission_mail(&v, MailClient::Foxmail, &Default::default()), "bidi");
    let sent = f.send(&fixtures::build_eml(&m)).await;
    let text = &sent[0].1.body_text;
    assert!(!text.contains('\u{202e}'), "{text}");
}

#[tokio::test]
async fn the_global_reply_ceiling_holds_under_a_burst_of_forged_senders() {
    let u = UnitSpec::sample(2, 1);
    let mut f = Folder::new(&[&u]);
    f.config.outbox.replies_per_hour = 40;
    for k in 0..500 {
        let raw = format!(
            "From: <forged{k}@spam{}.example>\r\nTo: <3764264@qq.com>\r\nSubject: =?UTF-8?B?5Lit5aWW6YCa55+l?=\r\nMessage-ID: <burst{k}@spam.example>\r\nDate: Mon, 21 Sep 2020 10:00:00 +0800\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nclick http://spam.example/{k}\r\n",
            k % 37
        );
        std::fs::write(f.inbox.path().join(format!("b{k:04}.eml")), raw).unwrap();
    }
    studio_intake::daemon::run_once(f.config.clone()).await.unwrap();
    let st = f.store().await;
    assert_eq!(st.counts().await.unwrap().submissions, 500, "every mail recorded");
    let sent = f.outbox();
    assert_eq!(sent.len(), 40, "at most replies_per_hour replies in the hour");
    for p in sent {
        let raw = String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        assert!(!raw.contains("spam.example/"), "a reply repeated the mail's content");
    }
    // Nothing the burst sent changed any dossier.
    assert!(st.current_dossiers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsiders_claim_is_held_through_imap_and_smtp() {
    let s = mailstack::stack();
    let dept = s.user("unit1");
    let unit_box = s.user("unit2");
    let outsider_box = s.user("unit3");
    s.empty(&[&dept, &unit_box, &outsider_box]);
    let mut u = UnitSpec::sample(0, 1);
    u.sender = unit_box.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("intake.db").display());
    let cfg = intake::imap_config(&dept, &db, &[&u]);
    let on_time = Some(chrono::DateTime::parse_from_rfc3339("2020-09-20T09:00:00+08:00").unwrap());
    s.append(&dept, &fixtures::build_eml(&with_id(fixtures::submission_mail(&u, MailClient::Outlook, &Default::default()), "imap-genuine")), on_time);
    let mut fake = u.clone();
    fake.sender = outsider_box.clone();
    fake.studios[0].phone = "13900000000".into();
    s.append(&dept, &fixtures::build_eml(&with_id(fixtures::submission_mail(&fake, MailClient::QqMail, &Default::default()), "imap-outsider")), on_time);
    studio_intake::daemon::run_once(cfg).await.unwrap();
    let to_unit = s.wait_for_mail(&unit_box, 2, Duration::from_secs(30));
    let subjects: Vec<String> = to_unit.iter().map(|r| mime::parse(r, &Default::default()).unwrap().subject).collect();
    assert!(subjects.iter().any(|x| x.contains("审核通过")) && subjects.iter().any(|x| x.contains("请确认")), "{subjects:?}");
    let to_outsider = s.wait_for_mail(&outsider_box, 1, Duration::from_secs(30));
    let ack = mime::parse(&to_outsider[0], &Default::default()).unwrap();
    assert!(ack.subject.contains("暂存") && !ack.body_text.contains(&u.unit), "{}", ack.body_text);
    let st = Store::connect(&db, 2).await.unwrap();
    let rows = st.current_studios().await.unwrap();
    assert!(rows.iter().all(|r| r.data.get("phone").and_then(|v| v.as_str()) != Some("13900000000")));
    assert_eq!(st.held_mails().await.unwrap().len(), 1);
}

#[tokio::test]
async fn authenticated_mode_applies_only_mail_that_passes() {
    use studio_intake::config::SenderAuth;
    let u = UnitSpec::sample(3, 1);
    let mut f = Folder::new(&[&u]);
    f.config.security.sender_auth = SenderAuth::Authenticated;
    f.config.security.trusted_authserv_ids = vec!["mx.leshan.example".into()];
    // Nothing answers there: no DKIM key can be fetched, only a trusted header can pass.
    f.config.security.dns_server = Some("127.0.0.1:9".into());
    let domain = u.sender.split('@').nth(1).unwrap().to_owned();
    let mail = |id: &str, headers: &str| {
        let mut raw = headers.as_bytes().to_vec();
        raw.extend_from_slice(&fixtures::build_eml(&with_id(fixtures::submission_mail(&u, MailClient::Foxmail, &Default::default()), id)));
        raw
    };

    // Genuine: the receiving server (trusted) says dkim=pass for the From domain.
    let sent = f.send(&mail("auth-genuine", &format!("Authentication-Results: mx.leshan.example; dkim=pass header.d={domain}; dmarc=pass header.from={domain}\r\n"))).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1.subject.contains("审核通过"), "{}", sent[0].1.subject);
    let st = f.store().await;
    assert_eq!(st.dossier_history(&u.unit).await.unwrap().len(), 1);

    // Forged From: the trusted server says fail; the attacker added a passing header of its
    // own (above it, as a forger would): held, nothing changes.
    let forged = format!(
        "Authentication-Results: mx.leshan.example.attacker.cn; dkim=pass header.d={domain}; dmarc=pass\r\nAuthentication-Results: mx.leshan.example; dkim=fail header.d={domain}; dmarc=fail header.from={domain}\r\n"
    );
    let sent = f.send(&mail("auth-forged", &forged)).await;
    assert!(sent.iter().all(|(_, m, _)| !m.subject.contains("审核")), "{:?}", sent.iter().map(|s| &s.1.subject).collect::<Vec<_>>());
    let held = st.held_mails().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].reason, "submission.sender_not_authenticated");
    assert_eq!(st.dossier_history(&u.unit).await.unwrap().len(), 1, "a forged mail changed the dossier");

    // A registered sender with no authentication at all: held too.
    f.send(&mail("auth-none", "")).await;
    assert_eq!(st.held_mails().await.unwrap().len(), 2);
    assert_eq!(st.dossier_history(&u.unit).await.unwrap().len(), 1);
}

/// `check` in authenticated mode says offline whether a registered sender would pass: only a
/// trusted Authentication-Results can (no DNS), an attacker's own header cannot.
#[test]
fn check_reports_an_unauthenticated_sender_offline() {
    use studio_intake::config::SenderAuth;
    let u = UnitSpec::sample(3, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = intake::file_config(dir.path(), dir.path(), &[&u]);
    cfg.security.sender_auth = SenderAuth::Authenticated;
    cfg.security.trusted_authserv_ids = vec!["mx.leshan.example".into()];
    let cfg_path = dir.path().join("intake.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();
    let domain = u.sender.split('@').nth(1).unwrap().to_owned();
    let codes = |header: &str| -> Vec<String> {
        let mut raw = header.as_bytes().to_vec();
        raw.extend_from_slice(&fixtures::build_eml(&with_id(fixtures::submission_mail(&u, MailClient::Foxmail, &Default::default()), "check-auth")));
        let mail = dir.path().join("m.eml");
        std::fs::write(&mail, raw).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_studio-intake"))
            .args(["check", "--format", "json", "--config", cfg_path.to_str().unwrap(), mail.to_str().unwrap()])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        v["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_owned()).collect()
    };
    let none = codes("");
    assert!(none.contains(&"submission.sender_not_authenticated".to_owned()), "{none:?}");
    let forged = codes(&format!("Authentication-Results: mx.leshan.example.evil.cn; dkim=pass header.d={domain}\r\n"));
    assert!(forged.contains(&"submission.sender_not_authenticated".to_owned()), "{forged:?}");
    let trusted = codes(&format!("Authentication-Results: mx.leshan.example; dkim=pass header.d={domain}\r\n"));
    assert!(!trusted.contains(&"submission.sender_not_authenticated".to_owned()), "{trusted:?}");
}

/// A stranger's claim held on 15 September, the unit's own corrected resend on 17 September,
/// then staff approve the stranger: the approved mail fills nothing the unit has since sent
/// again — the unit's values stand in the table — and the reply to it says so.
#[tokio::test]
async fn approving_an_older_held_mail_never_undoes_the_units_later_resend() {
    let (u, _, _) = unit_and_outsider();
    let mut f = Folder::new(&[&u]);
    let at = |day: u32| fixtures::SubmissionOptions {
        date: Some(format!("Tue, {day} Sep 2020 10:00:00 +0800")),
        received: Some(format!("Tue, {day} Sep 2020 10:00:05 +0800")),
        ..Default::default()
    };
    let mut fake = u.clone();
    fake.sender = "stranger@evil.example".into();
    fake.studios[0].phone = "13900000000".into();
    let held = f.send(&fixtures::build_eml(&with_id(fixtures::submission_mail(&fake, MailClient::QqMail, &at(15)), "held"))).await;
    assert!(held.iter().any(|(to, m, _)| to.contains("stranger@evil.example") && m.subject.contains("暂存")), "the stranger is held");
    let mut corrected = u.clone();
    corrected.studios[0].phone = "13811112222".into();
    f.send(&fixtures::build_eml(&with_id(fixtures::submission_mail(&corrected, MailClient::Outlook, &at(17)), "resend"))).await;

    let app = studio_intake::app::App::build(f.config.clone()).await.unwrap();
    let id = app.store.held_mails().await.unwrap()[0].submission_id;
    let (_, applied) = studio_intake::intake::approve_held(&app, id, Some(&u.unit)).await.unwrap();
    assert_eq!(applied.len(), 1);
    let phones: Vec<String> = app
        .store
        .current_studios()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.data.get("phone").and_then(|v| v.as_str()).map(str::to_owned))
        .collect();
    assert!(phones.contains(&"13811112222".to_owned()) && !phones.contains(&"13900000000".to_owned()), "{phones:?}");
    // The approved mail's result, queued by the approval and sent by the next pass.
    let before = f.outbox();
    studio_intake::daemon::run_once(f.config.clone()).await.unwrap();
    let sent: Vec<_> = f.outbox().into_iter().filter(|p| !before.contains(p)).map(|p| parsed(std::fs::read(p).unwrap())).collect();
    let (_, reply, _) = sent.iter().find(|(to, _, _)| to.contains("stranger@evil.example")).expect("the approved sender hears the result");
    assert!(reply.body_text.contains("以其为准"), "{}", reply.body_text);
}
