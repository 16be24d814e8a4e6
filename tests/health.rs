//! `[health] listen`: the daemon in-process on the embedded default (a folder of `.eml`
//! files, SQLite, file outbox), probed over real TCP.
//!
//! The metrics are process-global: one test drives the daemon, so the counts are exact.

use std::path::Path;
use std::time::{Duration, Instant};

use studio_intake::config::{Config, OutboxKind, SourceKind, Unit, UnitKind};
use studio_intake::fixtures::{self, MailClient, UnitSpec};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn file_config(inbox: &Path, state: &Path, u: &UnitSpec) -> Config {
    let mut c = Config::builtin();
    c.source.kind = SourceKind::Maildir;
    c.source.path = inbox.to_owned();
    c.source.poll_secs = 1;
    c.outbox.kind = OutboxKind::File;
    c.outbox.path = state.join("outbox");
    c.database.url = format!("sqlite://{}", state.join("intake.db").display());
    c.units.retain(|x| x.name != u.unit);
    c.units.push(Unit { name: u.unit.clone(), kind: UnitKind::County, senders: vec![u.sender.clone()] });
    c.health.listen = Some("127.0.0.1:0".into());
    c
}

/// One raw HTTP exchange: (status, body).
async fn request(addr: std::net::SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.expect("the server closes").unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line: {out:?}"));
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {out:?}"));
    assert!(head.contains("Connection: close"), "{head}");
    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
    assert_eq!(len, body.len(), "Content-Length");
    (status, body.to_owned())
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")).await
}

struct Running {
    addr: std::net::SocketAddr,
    app: std::sync::Arc<studio_intake::app::App>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    daemon: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The daemon on `cfg`, and a health server with an App of its own on a listener the test
/// binds itself (port 0). The daemon serves `[health]` on port 0 too, exercising the wiring
/// in run(), but its port is not known here.
async fn start(cfg: Config) -> Running {
    let listener = studio_intake::health::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = studio_intake::app::App::build(cfg.clone()).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(studio_intake::health::serve(listener, app.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    let daemon = {
        let mut stop = stop_rx.clone();
        tokio::spawn(studio_intake::daemon::run(cfg, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    Running { addr, app, stop_tx, server, daemon }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_of_a_running_daemon() {
    let inbox = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let u = UnitSpec::sample(0, 1);
    std::fs::write(inbox.path().join("0.eml"), fixtures::submission(&u, MailClient::Outlook)).unwrap();
    let cfg = file_config(inbox.path(), state.path(), &u);

    let Running { addr, app, stop_tx, server, daemon } = start(cfg).await;

    // Wait until the mail is processed and its reply written.
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        if body.contains("mails_processed_total{verdict=\"accepted\"} 1\n") && body.contains("outbox_sent_total 1\n") {
            break body;
        }
        assert!(!daemon.is_finished(), "the daemon stopped: {:?}", daemon.await);
        assert!(Instant::now() < deadline, "not processed in time:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metrics.contains("# TYPE studio_intake_mails_processed_total counter\n"), "{metrics}");
    assert!(metrics.contains("# TYPE studio_intake_processing_seconds histogram\n"), "{metrics}");
    assert!(metrics.contains("studio_intake_processing_seconds_bucket{le=\"+Inf\"} 1\n"), "{metrics}");
    assert!(metrics.contains("studio_intake_processing_seconds_count 1\n"), "{metrics}");
    assert!(metrics.contains("studio_intake_outbox_dead_total 0\n"), "{metrics}");
    assert!(metrics.contains("studio_intake_imap_reconnects_total 0\n"), "{metrics}");
    assert!(metrics.contains("studio_intake_outbox_depth 0\n"), "{metrics}");
    assert!(!metrics.contains("mails_processed_total{verdict=\"rejected\"}"), "{metrics}");

    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["database"], "ok", "{v}");
    assert_eq!(v["outbox_depth"], 0, "{v}");
    let contact = v["last_mailbox_contact"].as_str().unwrap_or_else(|| panic!("a pass was made: {v}"));
    chrono::DateTime::parse_from_rfc3339(contact).unwrap();

    // Anything else: 404 or 405; a query string is ignored; a junk request gets 400.
    assert_eq!(get(addr, "/").await.0, 404);
    assert_eq!(get(addr, "/healthz/../metrics").await.0, 404);
    assert_eq!(get(addr, "/metrics?x=1").await.0, 200);
    assert_eq!(request(addr, "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await.0, 405);
    assert_eq!(request(addr, "GET /healthz").await.0, 400, "no end of line before the client closed");

    // A database that no longer answers: 503.
    app.store.close().await;
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"database\":\"error"), "{body}");

    stop_tx.send(true).unwrap();
    daemon.await.unwrap().unwrap();
    server.await.unwrap();

    // A mailbox that cannot be reached (nothing listens on its port): once the polling
    // instance has had no contact for `mailbox_stale_secs`, /healthz says so with a 503.
    let state = tempfile::tempdir().unwrap();
    let mut cfg = file_config(inbox.path(), state.path(), &u);
    cfg.source.kind = SourceKind::Imap;
    cfg.source.host = "127.0.0.1".into();
    cfg.source.port = closed_port();
    cfg.source.username = "intake@example.test".into();
    cfg.source.password_env = Some("PATH".into()); // any set variable: the login is never reached
    cfg.source.command_timeout_secs = 2;
    cfg.health.mailbox_stale_secs = Some(2);
    let Running { addr, stop_tx, server, daemon, .. } = start(cfg).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get(addr, "/healthz").await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "never stale: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["mailbox"], "stale", "{v}");
    assert_eq!(v["database"], "ok", "{v}");
    assert_eq!(v["mailbox_stale_after_secs"], 2, "{v}");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), daemon).await.expect("stops while reconnecting").unwrap().unwrap();
    server.await.unwrap();
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
