//! `studio_intake::mailbox` against a real Dovecot (tests/mailstack) and real folders.
//!
//! Every IMAP test uses a user of its own (`unitN`), so they run in parallel on one stack.
//! The test that restarts Dovecot takes the write side of `DOVECOT`; all others hold the read
//! side while they talk to it.

#[path = "support/mailstack.rs"]
mod mailstack;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use studio_intake::config::{Config, Secret, Source as SourceConfig, SourceKind, Tls, load_secret};
use studio_intake::mailbox::{Handler, ImapError, ImapSource, Incoming, MaildirSource, MemoryState, Source, TooLarge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static DOVECOT: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

// ---------------------------------------------------------------- helpers --------

/// Records every message; refuses those whose bytes contain `fail_marker`.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Incoming>>,
    fail_marker: Mutex<Option<String>>,
}

impl Recorder {
    fn failing(marker: &str) -> Recorder {
        Recorder { fail_marker: Mutex::new(Some(marker.to_owned())), ..Recorder::default() }
    }
    fn seen(&self) -> Vec<Incoming> {
        self.seen.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    async fn wait_for(&self, n: usize, within: Duration) -> Duration {
        let start = Instant::now();
        while self.count() < n {
            assert!(start.elapsed() < within, "handler saw {} of {n} messages within {within:?}", self.count());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    }
}

impl Handler for Recorder {
    type Prepared = Incoming;

    async fn prepare(&self, m: Incoming) -> Incoming {
        m
    }

    async fn commit(&self, m: Incoming) -> anyhow::Result<()> {
        let marker = self.fail_marker.lock().unwrap().clone();
        let fail = match (&marker, &m.raw) {
            (Some(mark), Ok(raw)) => raw.windows(mark.len()).any(|w| w == mark.as_bytes()),
            _ => false,
        };
        self.seen.lock().unwrap().push(m);
        if fail { anyhow::bail!("refused by the test handler") } else { Ok(()) }
    }
}

/// A CRLF message of about `body_bytes`.
fn mail(n: u32, subject: &str, body_bytes: usize) -> Vec<u8> {
    let mut m = format!(
        "From: unit{n} <sender{n}@example.cn>\r\nTo: intake@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <m{n}.{subject}@example.cn>\r\nDate: Sun, 20 Sep 2020 10:00:00 +0800\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    .into_bytes();
    let line = "推荐申报材料 abcdefghijklmnopqrstuvwxyz 0123456789\r\n";
    while m.len() < body_bytes {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

fn date(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn secret(dir: &Path, value: &str) -> Secret {
    let path = dir.join(format!("pw-{}", value.len()));
    std::fs::write(&path, format!("{value}\n")).unwrap();
    load_secret(None, Some(&path)).unwrap().unwrap()
}

fn imap_config(user: &str, port: u16, tls: Tls) -> SourceConfig {
    let s = mailstack::stack();
    SourceConfig {
        kind: SourceKind::Imap,
        host: "127.0.0.1".into(),
        port,
        tls,
        username: user.into(),
        folder: "INBOX".into(),
        processed_folder: Some("Processed".into()),
        ca_file: Some(s.ca_cert.clone()),
        poll_secs: 1,
        idle_secs: 20,
        command_timeout_secs: 5,
        ..SourceConfig::default()
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    state: Arc<MemoryState>,
    source: ImapSource,
}

fn imap_source(cfg: SourceConfig, max_message_bytes: u64) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let state = Arc::new(MemoryState::new());
    let password = secret(tmp.path(), &mailstack::stack().password);
    let source = ImapSource::new(cfg, password, max_message_bytes, state.clone()).unwrap();
    Fixture { _tmp: tmp, state, source }
}

const MB: u64 = 1 << 20;

/// The handler has seen a message; the MOVE follows right after it.
async fn wait_inbox_empty(user: &str) {
    let start = Instant::now();
    while !mailstack::stack().mailbox_uids(user, "INBOX").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(3), "not moved to Processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback TCP proxy in front of Dovecot that records what the client sends, counts what
/// the server sends, and can hide the server's IDLE capability (`IDLE` → `XDLE`).
struct Proxy {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    received: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(target: u16, hide_idle: bool) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(AtomicU64::new(0));
        let (sent2, received2) = (sent.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { continue };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let sent = sent2.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = sw.shutdown().await;
                });
                let received = received2.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        received.fetch_add(n as u64, Ordering::Relaxed);
                        let chunk = &mut buf[..n];
                        if hide_idle {
                            for i in 0..chunk.len().saturating_sub(4) {
                                if &chunk[i..i + 5] == b" IDLE" {
                                    chunk[i + 1] = b'X';
                                }
                            }
                        }
                        if cw.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = cw.shutdown().await;
                });
            }
        });
        Proxy { port, sent, received }
    }

    fn client_said(&self, needle: &str) -> usize {
        let sent = self.sent.lock().unwrap();
        sent.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
    }
}

// ------------------------------------------------------------------ tests --------

#[tokio::test]
async fn run_once_offers_every_new_message_with_its_internaldate_and_moves_it() {
    let _g = DOVECOT.read().await;
    let s = mailstack::stack();
    let user = s.user("unit1");
    let dates = ["2020-09-20T10:00:00+08:00", "2020-09-21T11:30:00+08:00", "2020-09-22T09:15:00+08:00", "2020-09-23T16:45:00+08:00", "2020-09-25T23:59:59+08:00"];
    let mails: Vec<Vec<u8>> = (0..5).map(|i| mail(i, &format!("submission-{i}"), 2000 + i as usize * 500)).collect();
    for (m, d) in mails.iter().zip(dates) {
        s.append(&user, m, Some(date(d)));
    }

    let proxy = Proxy::start(s.imap_port, false).await;
    let f = imap_source(imap_config(&user, proxy.port, Tls::None), 50 * MB);
    let rec = Recorder::default();
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 5);

    let seen = rec.seen();
    assert_eq!(seen.len(), 5);
    let mut uids = HashSet::new();
    for (i, m) in seen.iter().enumerate() {
        assert_eq!(m.raw.as_ref().unwrap(), &mails[i], "message {i} bytes");
        assert_eq!(m.size, mails[i].len() as u64);
        assert_eq!(m.received_at.unwrap(), date(dates[i]), "INTERNALDATE of message {i}");
        assert_eq!(m.mailbox, format!("imap://unit1%40example.test@127.0.0.1:{}/INBOX", proxy.port));
        assert!(m.uidvalidity.is_some());
        uids.insert(m.uid.unwrap());
    }
    assert_eq!(uids.len(), 5);
    assert!(s.mailbox_uids(&user, "INBOX").is_empty(), "INBOX should be empty");
    assert_eq!(s.fetch_all(&user, "Processed"), mails);
    let (uv, last) = f.state.peek(f.source.mailbox_id()).unwrap();
    assert_eq!((Some(uv), Some(last)), (seen[4].uidvalidity, seen[4].uid));
    assert_eq!(proxy.client_said("ID (\"name\" \"studio-intake\""), 1, "IMAP ID sent");
    // One batch: sizes and dates in one FETCH, the bodies in another, one MOVE for all five.
    assert_eq!(proxy.client_said(" UID MOVE "), 1, "one MOVE for the batch");
    assert_eq!(proxy.client_said(" BODY.PEEK[]"), 1, "one FETCH of the bodies");
    assert_eq!(proxy.client_said(" (UID RFC822.SIZE INTERNALDATE)"), 1, "one FETCH of the sizes");

    assert_eq!(f.source.run_once(&rec).await.unwrap(), 0);
    assert_eq!(rec.count(), 5);
}

#[tokio::test]
async fn a_refused_message_stays_and_is_offered_again() {
    let _g = DOVECOT.read().await;
    let s = mailstack::stack();
    let user = s.user("unit2");
    let mails: Vec<Vec<u8>> = ["first", "REFUSE-ME", "third"].iter().enumerate().map(|(i, subj)| mail(i as u32, subj, 800)).collect();
    for m in &mails {
        s.append(&user, m, None);
    }
    let f = imap_source(imap_config(&user, s.imap_port, Tls::None), 50 * MB);
    let rec = Recorder::failing("REFUSE-ME");
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 2);
    assert_eq!(rec.count(), 3);
    assert_eq!(s.fetch_all(&user, "INBOX"), vec![mails[1].clone()]);
    assert_eq!(s.fetch_all(&user, "Processed"), vec![mails[0].clone(), mails[2].clone()]);
    // The low-water mark stops before the refused message.
    let first_uid = rec.seen()[0].uid.unwrap();
    assert_eq!(f.state.peek(f.source.mailbox_id()).unwrap().1, first_uid);

    // Still refused: offered again, nothing else is.
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 0);
    assert_eq!(rec.count(), 4);
    assert_eq!(rec.seen()[3].raw.as_ref().unwrap(), &mails[1]);

    *rec.fail_marker.lock().unwrap() = None;
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 1);
    assert_eq!(rec.seen()[4].raw.as_ref().unwrap(), &mails[1]);
    assert!(s.mailbox_uids(&user, "INBOX").is_empty());
    assert_eq!(f.state.peek(f.source.mailbox_id()).unwrap().1, rec.seen()[4].uid.unwrap());
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 0);
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_by_size_without_downloading_it() {
    let _g = DOVECOT.read().await;
    let s = mailstack::stack();
    let user = s.user("unit3");
    let big = mail(1, "big", 300_000);
    let small = mail(2, "small", 1_000);
    s.append(&user, &big, None);
    s.append(&user, &small, None);

    let proxy = Proxy::start(s.imap_port, false).await;
    let f = imap_source(imap_config(&user, proxy.port, Tls::None), 100_000);
    let rec = Recorder::default();
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 2);
    let seen = rec.seen();
    let Err(TooLarge { size, limit, header }) = &seen[0].raw else { panic!("refused by size") };
    assert_eq!((*size, *limit), (big.len() as u64, 100_000));
    assert!(header.starts_with(b"From:") || header.windows(5).any(|w| w == b"From:"), "the header was read so the sender can be told");
    assert!(header.len() < 10_000, "only the header, not the body");
    assert_eq!(seen[0].size, big.len() as u64);
    assert_eq!(seen[1].raw.as_ref().unwrap(), &small);
    let downloaded = proxy.received.load(Ordering::Relaxed);
    assert!(downloaded < 50_000, "{downloaded} bytes came from the server: the big message was downloaded");
    assert_eq!(proxy.client_said("BODY.PEEK[]"), 1, "only the small message's body was fetched");
    // Accepted (the handler replied "too large"): moved like any other.
    assert!(s.mailbox_uids(&user, "INBOX").is_empty());
    assert_eq!(s.mailbox_uids(&user, "Processed").len(), 2);
}

#[tokio::test]
async fn implicit_tls_and_starttls_with_the_test_ca_and_a_quick_clear_login_error() {
    let _g = DOVECOT.read().await;
    let s = mailstack::stack();
    let user = s.user("unit4");
    s.append(&user, &mail(1, "over-tls", 1000), None);
    let rec = Recorder::default();

    let f = imap_source(imap_config(&user, s.imaps_port, Tls::Implicit), 50 * MB);
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 1);

    s.append(&user, &mail(2, "over-starttls", 1000), None);
    let f = imap_source(imap_config(&user, s.imap_port, Tls::Starttls), 50 * MB);
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 1);
    assert_eq!(rec.count(), 2);

    // Without the test CA the certificate is refused.
    let mut cfg = imap_config(&user, s.imaps_port, Tls::Implicit);
    cfg.ca_file = None;
    let err = imap_source(cfg, 50 * MB).source.run_once(&rec).await.unwrap_err();
    assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");
    assert!(format!("{err:#}").to_lowercase().contains("certificate"), "{err:#}");

    // Wrong password: a clear, quick error that does not show the password.
    let tmp = tempfile::tempdir().unwrap();
    let state = Arc::new(MemoryState::new());
    let wrong = secret(tmp.path(), "wrong-password-123");
    let source = ImapSource::new(imap_config(&user, s.imaps_port, Tls::Implicit), wrong, 50 * MB, state).unwrap();
    let start = Instant::now();
    let err = source.run_once(&rec).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3), "login error took {:?}", start.elapsed());
    let text = format!("{err:#}");
    assert!(matches!(err.downcast_ref::<ImapError>(), Some(ImapError::Login { .. })), "{text}");
    assert!(text.contains("login as unit4@example.test refused") && text.contains("AUTHENTICATIONFAILED"), "{text}");
    assert!(!text.contains("wrong-password-123"), "{text}");
    assert!(!format!("{source:?}").contains("wrong-password-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_idles_sees_new_mail_fast_and_survives_a_dovecot_restart() {
    let _g = DOVECOT.write().await;
    let s = mailstack::stack();
    let user = s.user("unit5");
    let proxy = Proxy::start(s.imap_port, false).await;
    let f = imap_source(imap_config(&user, proxy.port, Tls::None), 50 * MB);
    let rec = Arc::new(Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let rec = rec.clone();
        let source = f.source;
        tokio::spawn(async move {
            source
                .run(&*rec, async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await; // connected and idling

    s.append(&user, &mail(1, "while-idling", 1000), None);
    let took = rec.wait_for(1, Duration::from_secs(3)).await;
    eprintln!("IDLE: seen {took:?} after APPEND");
    // Restarting between the handler's Ok and the MOVE would (rightly) offer it again.
    wait_inbox_empty(&user).await;

    s.restart_dovecot();
    s.append(&user, &mail(2, "after-restart", 1000), None);
    let took = rec.wait_for(2, Duration::from_secs(15)).await;
    eprintln!("after a Dovecot restart: seen {took:?} after APPEND");
    wait_inbox_empty(&user).await;

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), task).await.expect("run() did not stop").unwrap();
    result.unwrap();
    assert_eq!(rec.count(), 2);
    // At least one reconnect (one more when an attempt hits Dovecot while it goes down).
    assert!(proxy.client_said(" LOGIN ") >= 2, "reconnected after the restart");
    assert_eq!(proxy.client_said(" LOGOUT\r\n"), 1, "clean logout on shutdown");
}

#[tokio::test]
async fn idle_is_reissued_and_without_idle_the_source_polls() {
    let _g = DOVECOT.read().await;
    let s = mailstack::stack();

    // IDLE re-issued every second.
    let user = s.user("unit7");
    let proxy = Proxy::start(s.imap_port, false).await;
    let mut cfg = imap_config(&user, proxy.port, Tls::None);
    cfg.idle_secs = 1;
    let f = imap_source(cfg, 50 * MB);
    let rec = Recorder::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = f.source.run(&rec, async {
        let _ = stopped.await;
    });
    let drive = async {
        tokio::time::sleep(Duration::from_millis(2600)).await;
        s.append(&user, &mail(1, "after-reissues", 900), None);
        rec.wait_for(1, Duration::from_secs(3)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(run, drive);
    result.unwrap();
    assert!(proxy.client_said(" IDLE\r\n") >= 3, "IDLE sent {} times", proxy.client_said(" IDLE\r\n"));
    assert_eq!(proxy.client_said("DONE\r\n"), proxy.client_said(" IDLE\r\n"));
    assert_eq!(proxy.client_said(" LOGOUT\r\n"), 1, "clean logout on shutdown");

    // A server without IDLE: NOOP every poll_secs.
    let user = s.user("unit8");
    let proxy = Proxy::start(s.imap_port, true).await;
    let f = imap_source(imap_config(&user, proxy.port, Tls::None), 50 * MB);
    let rec = Recorder::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = f.source.run(&rec, async {
        let _ = stopped.await;
    });
    let drive = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.append(&user, &mail(1, "polled", 900), None);
        rec.wait_for(1, Duration::from_secs(3)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(run, drive);
    result.unwrap();
    assert_eq!(proxy.client_said(" IDLE\r\n"), 0);
    assert!(proxy.client_said(" NOOP\r\n") >= 1);
}

#[tokio::test]
async fn flag_mode_flags_in_place_and_does_not_offer_again() {
    let _g = DOVECOT.read().await;
    let s = mailstack::stack();
    let user = s.user("unit6");
    let mails: Vec<Vec<u8>> = (0..2).map(|i| mail(i, "flag-me", 700)).collect();
    for m in &mails {
        s.append(&user, m, None);
    }
    let mut cfg = imap_config(&user, s.imap_port, Tls::None);
    cfg.processed_folder = None;
    cfg.processed_flag = "$Processed".into();
    let f = imap_source(cfg, 50 * MB);
    let rec = Recorder::default();
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 2);
    let flags = s.flags(&user, "INBOX");
    assert_eq!(flags.len(), 2, "not moved");
    for (uid, fl) in &flags {
        assert!(fl.iter().any(|f| f == "$Processed"), "UID {uid}: {fl:?}");
        assert!(!fl.iter().any(|f| f == "\\Seen"), "BODY.PEEK must not set \\Seen: {fl:?}");
    }
    let (_, last) = f.state.peek(f.source.mailbox_id()).unwrap();
    assert_eq!(last, flags[1].0);
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 0);

    s.append(&user, &mail(3, "later", 700), None);
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 1);
    assert_eq!(rec.count(), 3);
    assert!(s.mailbox_uids(&user, "Processed").is_empty());
}

#[tokio::test]
async fn uidvalidity_change_starts_again_from_the_first_uid() {
    let _g = DOVECOT.read().await;
    let s = mailstack::stack();
    let user = s.user("unit9");
    s.append(&user, &mail(1, "uv", 700), None);
    let mut cfg = imap_config(&user, s.imap_port, Tls::None);
    cfg.processed_folder = None;
    let f = imap_source(cfg, 50 * MB);
    let rec = Recorder::default();
    // A state left by another incarnation of the folder, far ahead.
    use studio_intake::mailbox::MailboxState as _;
    f.state.set(f.source.mailbox_id(), 1, 1_000_000).await.unwrap();
    assert_eq!(f.source.run_once(&rec).await.unwrap(), 1);
    let (uv, last) = f.state.peek(f.source.mailbox_id()).unwrap();
    assert_eq!((Some(uv), Some(last)), (rec.seen()[0].uidvalidity, rec.seen()[0].uid));
}

#[test]
fn source_from_config() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let text = format!(
        "[source]\nkind = \"imap\"\nhost = \"127.0.0.1\"\nport = 10143\ntls = \"none\"\nusername = \"intake@example.test\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    let config = Config::from_toml(&text).unwrap();
    let source = Source::from_config(&config, Arc::new(MemoryState::new())).unwrap();
    assert!(matches!(source, Source::Imap(_)));
    assert_eq!(source.mailbox_id(), "imap://intake%40example.test@127.0.0.1:10143/INBOX");

    let config = Config::from_toml("[source]\nkind = \"imap\"\nusername = \"x\"\n").unwrap();
    let err = Source::from_config(&config, Arc::new(MemoryState::new())).unwrap_err();
    assert!(err.to_string().contains("password_env or password_file"), "{err}");

    let config = Config::builtin();
    let source = Source::from_config(&config, Arc::new(MemoryState::new())).unwrap();
    assert!(matches!(source, Source::Maildir(_)));
    assert!(source.mailbox_id().starts_with("maildir:/") && source.mailbox_id().ends_with("examples/inbox"));
}

// --------------------------------------------------------------- Maildir --------

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn maildir_new_files_are_offered_once_and_moved_to_cur() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    let a = mail(1, "a", 500);
    let b = mail(2, "b", 500);
    std::fs::write(root.join("new/1600000000.M1P1.host"), &a).unwrap();
    std::fs::write(root.join("new/1600000001.M2P1.host"), &b).unwrap();
    std::fs::write(root.join("tmp/1600000002.M3P1.host"), b"half-written").unwrap();
    std::fs::write(root.join("cur/1500000000.M0P1.host:2,S"), b"old").unwrap();

    let source = MaildirSource::new(root, 50 * MB, Duration::from_secs(60));
    let rec = Recorder::failing("Subject: b");
    assert_eq!(source.run_once(&rec).await.unwrap(), 1);
    assert_eq!(files(&root.join("new")), vec!["1600000001.M2P1.host"], "the refused one stays in new/");
    assert_eq!(files(&root.join("cur")), vec!["1500000000.M0P1.host:2,S", "1600000000.M1P1.host:2,S"]);
    let seen = rec.seen();
    assert_eq!(seen[0].raw.as_ref().unwrap(), &a);
    assert_eq!(seen[0].mailbox, format!("maildir:{}", root.display()));
    assert_eq!((seen[0].uid, seen[0].uidvalidity, seen[0].received_at), (None, None, None));

    *rec.fail_marker.lock().unwrap() = None;
    assert_eq!(source.run_once(&rec).await.unwrap(), 1);
    assert!(files(&root.join("new")).is_empty());
    assert_eq!(source.run_once(&rec).await.unwrap(), 0);
    assert_eq!(rec.count(), 3);
}

#[tokio::test]
async fn eml_folder_files_stay_and_run_polls_for_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = tmp.path().to_owned();
    std::fs::write(root.join("02_second.eml"), mail(2, "second", 400)).unwrap();
    std::fs::write(root.join("01_first.EML"), mail(1, "first", 400)).unwrap();
    std::fs::write(root.join("README.md"), "not mail").unwrap();
    std::fs::write(root.join("03_huge.eml"), mail(3, "huge", 5000)).unwrap();

    let source = MaildirSource::new(&root, 4000, Duration::from_millis(100));
    let rec = Recorder::default();
    assert_eq!(source.run_once(&rec).await.unwrap(), 3);
    let seen = rec.seen();
    assert!(seen[0].raw.as_ref().unwrap().windows(13).any(|w| w == b"Subject: firs"), "sorted by name");
    assert!(matches!(seen[2].raw, Err(TooLarge { limit: 4000, .. })));
    assert_eq!(files(&root).len(), 4, "plain .eml files are left in place");
    assert_eq!(source.run_once(&rec).await.unwrap(), 3, "run_once offers them all again (the store dedupes)");

    // run(): offers each file once, then only new ones.
    let rec = Recorder::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = source.run(&rec, async {
        let _ = stopped.await;
    });
    let drive = async {
        rec.wait_for(3, Duration::from_secs(2)).await;
        std::fs::write(root.join("04_fourth.eml"), mail(4, "fourth", 400)).unwrap();
        rec.wait_for(4, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(run, drive);
    result.unwrap();
    assert_eq!(rec.count(), 4);
}

#[tokio::test]
async fn the_sample_inbox_is_a_source() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inbox");
    let source = MaildirSource::new(&dir, 50 * MB, Duration::from_secs(60));
    let rec = Recorder::default();
    let n = source.run_once(&rec).await.unwrap();
    assert_eq!(n, files(&dir).iter().filter(|f| f.ends_with(".eml")).count());
    assert!(n >= 6);
}
