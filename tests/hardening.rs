//! Issue 11, items 3 and 4: secrets at every log level, a lying IMAP server, loopback-only
//! plain text, private files, no password for a file outbox.
//!
//! - The real daemon (`run --once`, `RUST_LOG=trace` with every dependency asked for
//!   `trace`) against the test Dovecot and Postfix, logging in as a user whose password is a
//!   canary (IMAP LOGIN, SMTP AUTH): the canary is nowhere in the captured log, neither in
//!   clear nor in any base64 form, and Postfix confirms the SASL login happened.
//! - A fake IMAP server on loopback that declares 2 KiB in RFC822.SIZE and then announces a
//!   `{900000000}` literal: refused at the announcement, the mail reported as too large, the
//!   process's peak memory barely moves.
//! - `127.0.0.1.nip.io` with `tls = "none"`: the daemon refuses to start.
//! - Started under umask 022, the daemon creates its database, folders and outbox files
//!   0600/0700, with a file outbox whose `password_file` does not exist.

#[path = "support/mailstack.rs"]
mod mailstack;
#[path = "support/intake.rs"]
mod intake;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use studio_intake::config::{Source as SourceConfig, SourceKind, Tls, load_secret};
use studio_intake::fixtures::{self, MailClient, UnitSpec};
use studio_intake::mailbox::{Handler, ImapSource, Incoming, MemoryState};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const CANARY: &str = "Canary-7f3e9a1b2c4d5e6f";

/// Adds `canary@DOMAIN` (password [`CANARY`]) to the stack's Dovecot users (read on every
/// login; Postfix authenticates through the same Dovecot).
fn canary_user() -> String {
    static ONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let s = mailstack::stack();
        let users = s.dir.join("users");
        let text = std::fs::read_to_string(&users).unwrap();
        let model = text.lines().find(|l| l.starts_with("intake@")).expect("intake user");
        let intake = s.user("intake");
        let canary = format!("canary@{}", s.domain);
        let line = model.replace(&intake, &canary).replace(&format!("{{PLAIN}}{}:", s.password), &format!("{{PLAIN}}{CANARY}:"));
        assert!(line.contains(CANARY) && line.contains(&canary), "{line}");
        std::fs::write(&users, format!("{text}{line}\n")).unwrap();
        canary
    })
    .clone()
}

async fn append_as(port: u16, user: &str, password: &str, raw: &[u8]) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().unwrap();
    let mut s = client.login(user, password).await.map_err(|(e, _)| e).unwrap();
    s.append("INBOX", None, Some("\"20-Sep-2020 10:00:00 +0800\""), raw).await.unwrap();
    let _ = s.logout().await;
}

/// Every form the canary could take in a log line: clear, and base64 of it alone and inside
/// `\0user\0pass` / `user\0user\0pass` (AUTH PLAIN) at any alignment.
fn canary_forms(user: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![CANARY.to_string(), b64.encode(CANARY)];
    for blob in [format!("\0{user}\0{CANARY}"), format!("{user}\0{user}\0{CANARY}"), format!("\0\0{CANARY}")] {
        forms.push(b64.encode(&blob));
    }
    // The runs that depend only on the canary's bytes, at the three alignments (8+ chars).
    for skip in 0..3 {
        let rest = &CANARY.as_bytes()[skip..];
        forms.push(b64.encode(&rest[..rest.len() / 3 * 3]));
    }
    forms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_show_the_password() {
    let s = mailstack::stack();
    let dept = canary_user();
    let sender = s.user("unit3");
    s.empty(&[&sender]);
    let mut unit = UnitSpec::sample(3, 1);
    unit.sender = sender.clone();
    append_as(s.imap_port, &dept, CANARY, &fixtures::submission(&unit, MailClient::QqMail)).await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("intake.db");
    let mut cfg = intake::imap_config(&dept, &format!("sqlite://{}", db.display()), &[&unit]);
    cfg.source.password_env = Some("INTAKE_CANARY_PASSWORD".into());
    cfg.outbox.username = dept.clone();
    cfg.outbox.password_env = Some("INTAKE_CANARY_PASSWORD".into());
    let cfg_path = dir.path().join("intake.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_studio-intake"))
        .args(["run", "--once", "--config"])
        .arg(&cfg_path)
        .env("INTAKE_CANARY_PASSWORD", CANARY)
        // Everything, and each credential-printing dependency asked for by name.
        .env("RUST_LOG", "trace,lettre=trace,lettre::transport::smtp=trace,async_imap=trace,imap_proto=trace")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(" DEBUG studio_intake::mailbox::imap:") && log.lines().count() > 20, "a verbose log was captured:\n{log}");
    for form in canary_forms(&dept) {
        assert!(!log.contains(&form), "{form:?} found in the log:\n{}", log.lines().filter(|l| l.contains(&form)).collect::<Vec<_>>().join("\n"));
    }
    // The reply went out through an authenticated SMTP session as the canary user.
    let replies = s.wait_for_mail(&sender, 1, Duration::from_secs(20));
    assert_eq!(replies.len(), 1);
    let postfix = std::fs::read_to_string(s.dir.join("postfix.log")).unwrap_or_default();
    assert!(postfix.contains(&format!("sasl_username={dept}")), "SMTP AUTH as the canary user:\n{postfix}");
}

// ------------------------------------------------------------------ lying IMAP server

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Incoming>>,
}

impl Handler for Recorder {
    type Prepared = Incoming;

    async fn prepare(&self, m: Incoming) -> Incoming {
        m
    }

    async fn commit(&self, m: Incoming) -> anyhow::Result<()> {
        self.seen.lock().unwrap().push(m);
        Ok(())
    }
}

/// A scripted IMAP server: one message (UID 5) that declares 2 KiB and, fetched, announces
/// a literal of `lie` bytes and streams them for as long as the client reads.
/// With `honest`, UID 6 follows: a small message that tells the truth, so the liar arrives in
/// a batch of two (sizes and bodies fetched by UID set).
async fn lying_server(listener: tokio::net::TcpListener, lie: u64, honest: bool, streamed: Arc<AtomicU64>, connections: Arc<AtomicUsize>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        connections.fetch_add(1, Ordering::Relaxed);
        let streamed = streamed.clone();
        tokio::spawn(async move {
            let (r, mut w) = tcp.into_split();
            let mut lines = BufReader::new(r);
            let _ = w.write_all(b"* OK [CAPABILITY IMAP4rev1 MOVE UIDPLUS] fake\r\n").await;
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let (tag, cmd) = line.trim_end().split_once(' ').unwrap_or(("*", ""));
                let up = cmd.to_ascii_uppercase();
                let reply: Vec<u8> = if up.starts_with("CAPABILITY") {
                    format!("* CAPABILITY IMAP4rev1 MOVE UIDPLUS\r\n{tag} OK done\r\n").into_bytes()
                } else if up.starts_with("SELECT") || up.starts_with("EXAMINE") {
                    format!("* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 6] ok\r\n{tag} OK [READ-WRITE] done\r\n").into_bytes()
                } else if up.starts_with("UID SEARCH") {
                    format!("* SEARCH 5{}\r\n{tag} OK done\r\n", if honest { " 6" } else { "" }).into_bytes()
                } else if up.starts_with("UID FETCH") && up.contains("RFC822.SIZE") {
                    let mut r = String::new();
                    if !up.starts_with("UID FETCH 6 ") {
                        r += "* 1 FETCH (UID 5 RFC822.SIZE 2048 INTERNALDATE \"20-Sep-2020 10:00:00 +0800\")\r\n";
                    }
                    if honest && !up.starts_with("UID FETCH 5 ") {
                        r += &format!("* 2 FETCH (UID 6 RFC822.SIZE {} INTERNALDATE \"20-Sep-2020 10:05:00 +0800\")\r\n", HONEST.len());
                    }
                    format!("{r}{tag} OK done\r\n").into_bytes()
                } else if up.starts_with("UID FETCH 6 ") && up.contains("BODY.PEEK[]") {
                    format!("* 2 FETCH (UID 6 BODY[] {{{}}}\r\n{HONEST})\r\n{tag} OK done\r\n", HONEST.len()).into_bytes()
                } else if up.starts_with("UID FETCH") && up.contains("BODY.PEEK[HEADER]") {
                    let header = "From: unit9 <unit9@example.cn>\r\nSubject: =?utf-8?B?5o6o6I2Q?=\r\nMessage-ID: <lie@example.cn>\r\n\r\n";
                    format!("* 1 FETCH (UID 5 BODY[HEADER]<0> {{{}}}\r\n{header})\r\n{tag} OK done\r\n", header.len()).into_bytes()
                } else if up.starts_with("UID FETCH") && up.contains("BODY.PEEK[]") {
                    if w.write_all(format!("* 1 FETCH (UID 5 BODY[] {{{lie}}}\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut sent = 0u64;
                    while sent < lie {
                        if w.write_all(&chunk).await.is_err() {
                            break;
                        }
                        sent += chunk.len() as u64;
                        streamed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                    return;
                } else if up.starts_with("LOGOUT") {
                    format!("* BYE bye\r\n{tag} OK done\r\n").into_bytes()
                } else {
                    format!("{tag} OK done\r\n").into_bytes()
                };
                if w.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The message after the liar.
const HONEST: &str = "From: unit9 <unit9@example.cn>\r\nSubject: honest\r\nMessage-ID: <honest@example.cn>\r\n\r\nbody\r\n";

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

/// One pass of an [`ImapSource`] (limit 25 MiB) over a server that lies by `lie` bytes (and,
/// with `honest`, has an honest message after the liar).
async fn fetch_from_a_liar(lie: u64, honest: bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let streamed = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(lying_server(listener, lie, honest, streamed.clone(), connections.clone()));

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("pw"), "x\n").unwrap();
    let password = load_secret(None, Some(&tmp.path().join("pw"))).unwrap().unwrap();
    let cfg = SourceConfig {
        kind: SourceKind::Imap,
        host: "127.0.0.1".into(),
        port,
        tls: Tls::None,
        username: "intake".into(),
        folder: "INBOX".into(),
        processed_folder: Some("Processed".into()),
        command_timeout_secs: 5,
        ..SourceConfig::default()
    };
    let limit = 25 * 1024 * 1024;
    let source = ImapSource::new(cfg, password, limit, Arc::new(MemoryState::new())).unwrap();
    let recorder = Recorder::default();
    let before = peak_rss_kib();
    let start = Instant::now();
    let handled = source.run_once(&recorder).await.unwrap();
    let took = start.elapsed();
    let grew_mib = (peak_rss_kib() - before) / 1024;
    server.abort();

    assert_eq!(handled, 1 + usize::from(honest));
    let seen = recorder.seen.lock().unwrap();
    assert_eq!(seen.len(), 1 + usize::from(honest));
    assert_eq!(seen[0].uid, Some(5), "arrival order kept");
    if honest {
        // The batch was fetched again one by one on a new connection: the honest one whole.
        assert_eq!(seen[1].uid, Some(6));
        assert_eq!(seen[1].raw.as_deref().ok(), Some(HONEST.as_bytes()), "the honest message, whole");
    }
    let Err(too_large) = &seen[0].raw else { panic!("not refused: {:?}", seen[0].size) };
    assert_eq!((too_large.size, too_large.limit), (lie, limit), "reported with the announced size");
    assert!(String::from_utf8_lossy(&too_large.header).contains("Message-ID: <lie@example.cn>"), "header peeked on a new connection");
    assert!(connections.load(Ordering::Relaxed) >= 2, "the refused connection was replaced");
    let streamed_mib = streamed.load(Ordering::Relaxed) >> 20;
    println!("{lie}-byte literal refused in {took:?}; the server got {streamed_mib} MiB into the socket; peak RSS grew {grew_mib} MiB");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(grew_mib < 64, "peak RSS grew {grew_mib} MiB");
    assert!(streamed_mib < 64, "the client stopped reading: {streamed_mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_larger_than_declared_is_refused_before_it_is_read() {
    // Over async-imap's own 512 MiB buffer cap (which fails the pass, mail stuck for ever)…
    fetch_from_a_liar(900_000_000, false).await;
    // …and under it (which async-imap alone would read into memory whole).
    fetch_from_a_liar(400_000_000, false).await;
    // In a batch with an honest message: the liar refused, the other one fetched whole.
    fetch_from_a_liar(400_000_000, true).await;
}

// ------------------------------------------------------------------ start-up checks

fn run_binary(args: &[&str], config: &Path, umask: &str) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_studio-intake");
    let cmd = format!("umask {umask}; exec \"$0\" \"$@\"");
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .arg(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_name_that_only_looks_like_loopback_is_refused_for_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    for (section, kind) in [("source", "imap"), ("outbox", "smtp")] {
        let cfg = dir.path().join(format!("{section}.toml"));
        std::fs::write(&cfg, format!("[{section}]\nkind = \"{kind}\"\nhost = \"127.0.0.1.nip.io\"\ntls = \"none\"\n")).unwrap();
        let out = run_binary(&["run", "--once"], &cfg, "077");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{section}: {err}");
        assert!(err.contains("loopback") && err.contains("127.0.0.1.nip.io"), "{section}: {err}");
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[test]
fn files_are_private_whatever_the_umask_and_a_file_outbox_needs_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut unit = UnitSpec::sample(4, 1);
    unit.sender = "unit4@example.cn".into();
    std::fs::write(inbox.join("1.eml"), fixtures::submission(&unit, MailClient::Foxmail)).unwrap();
    let var = dir.path().join("var/deeper");
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nkind = \"maildir\"\npath = \"{inbox}\"\n\n[outbox]\nkind = \"file\"\npath = \"{var}/outbox\"\n\
             password_file = \"/run/credentials/studio-intake.service/smtp-password\"\n\n\
             [database]\nurl = \"sqlite://{var}/intake.db\"\n\n[converters]\nsoffice = \"none\"\npdftotext = \"none\"\n",
            inbox = inbox.display(),
            var = var.display()
        ),
    )
    .unwrap();
    let out = run_binary(&["run", "--once"], &cfg, "022");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let outbox = var.join("outbox");
    let replies: Vec<_> = std::fs::read_dir(&outbox).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    for folder in [var.parent().unwrap(), var.as_path(), outbox.as_path()] {
        assert_eq!(mode(folder), 0o700, "{}", folder.display());
    }
    assert_eq!(mode(&replies[0]), 0o600, "{}", replies[0].display());
    for f in std::fs::read_dir(&var).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_file()) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&var.join("intake.db")), 0o600);
}
