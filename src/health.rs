//! `[health] listen`: a tiny HTTP/1.1 responder on loopback for probes and Prometheus.
//!
//! - `GET /healthz`: `200` with `{"database":"ok","mailbox":"ok"|"standby",
//!   "last_mailbox_contact":"…"|null,"mailbox_stale_after_secs":N,"outbox_depth":N,
//!   "failed_mails":N,"degraded":bool}` (degraded: mails set aside in the failed folder), or
//!   `503` with `"database":"error: …"` when the database does not answer or
//!   `"mailbox":"stale"` when the polling instance has not reached the mailbox for longer
//!   than `[health] mailbox_stale_secs`.
//! - `GET /metrics`: [`crate::metrics`] in the Prometheus text format.
//! - Anything else: `404` (`405` for another method on those two paths).
//!
//! One request per connection: the request head is read with a size and time limit, the
//! answer written, the connection closed. No keep-alive, no body, no TLS (loopback only;
//! the config refuses another address).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::app::App;
use crate::metrics::metrics;

/// Longest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a probe may take on the database.
const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// Bind `[health] listen` (port 0 picks a free port); logs the bound address.
pub async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("[health] cannot listen on {listen}: {e}"))?;
    info!(addr = %listener.local_addr()?, "health and metrics listening");
    Ok(listener)
}

/// Answer requests until `shutdown` resolves. Each connection is served on its own task.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()> + Send) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: do not spin.
                    warn!("health: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, &app).await {
                debug!(%peer, "health: {e}");
            }
        });
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, app: &App) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return respond(&mut stream, 400, "text/plain", "bad request\n").await,
        Ok(Err(e)) => return Err(e),
        Err(_) => return respond(&mut stream, 408, "text/plain", "request timeout\n").await,
    };
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    debug!(%peer, method, path, "health request");
    match (method, path) {
        ("GET", "/healthz") => {
            let (status, body) = healthz(app).await;
            respond(&mut stream, status, "application/json", &body).await
        }
        ("GET", "/metrics") => {
            refresh_gauges(app).await;
            respond(&mut stream, 200, "text/plain; version=0.0.4; charset=utf-8", &metrics().render()).await
        }
        (_, "/healthz" | "/metrics") => respond(&mut stream, 405, "text/plain", "method not allowed\n").await,
        _ => respond(&mut stream, 404, "text/plain", "not found\n").await,
    }
}

/// The request head up to the blank line (or up to the request line when the client closes
/// early); `None` when it is too long or not text.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
    if !buf.contains(&b'\n') {
        return Ok(None);
    }
    Ok(String::from_utf8(buf).ok())
}

async fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "",
    };
    let allow = if status == 405 { "Allow: GET\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Gauges read from the store at scrape time.
async fn refresh_gauges(app: &App) {
    if let Ok(Ok(depth)) = tokio::time::timeout(DB_TIMEOUT, app.store.outbox_depth()).await {
        metrics().set_outbox_depth(depth);
    }
    if let Ok(Ok(failed)) = tokio::time::timeout(DB_TIMEOUT, app.store.failed_count()).await {
        metrics().set_mails_failed(failed);
    }
}

/// The `/healthz` status and JSON body.
pub async fn healthz(app: &App) -> (u16, String) {
    let db = match tokio::time::timeout(DB_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("no answer within {} s", DB_TIMEOUT.as_secs())),
    };
    let depth = match &db {
        Ok(()) => match tokio::time::timeout(DB_TIMEOUT, app.store.outbox_depth()).await {
            Ok(Ok(d)) => {
                metrics().set_outbox_depth(d);
                Some(d)
            }
            _ => None,
        },
        Err(_) => None,
    };
    // Mails set aside after repeated failures: not a reason for 503 (the daemon goes on), but
    // "degraded" is what staff alert on.
    let failed = match &db {
        Ok(()) => tokio::time::timeout(DB_TIMEOUT, app.store.failed_count()).await.ok().and_then(Result::ok),
        Err(_) => None,
    };
    if let Some(n) = failed {
        metrics().set_mails_failed(n);
    }
    let last_contact = metrics().last_mailbox_contact();
    let stale_after = app.config.mailbox_stale_after();
    let mailbox = mailbox_health(chrono::Utc::now(), metrics().polling_since(), last_contact, stale_after);
    let body = serde_json::json!({
        "database": match &db { Ok(()) => "ok".to_owned(), Err(e) => format!("error: {e}") },
        "mailbox": mailbox.as_str(),
        "last_mailbox_contact": last_contact.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "mailbox_stale_after_secs": stale_after.as_secs(),
        "outbox_depth": depth,
        "failed_mails": failed,
        "degraded": failed.unwrap_or(0) > 0,
    });
    let healthy = db.is_ok() && mailbox != MailboxHealth::Stale;
    (if healthy { 200 } else { 503 }, format!("{body}\n"))
}

/// The mailbox side of `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxHealth {
    /// This instance does not poll: another one holds the mailbox lease (or polling has not
    /// started). Healthy: the standby takes over when the lease runs out.
    Standby,
    /// Polling, and the mailbox answered within the staleness limit.
    Ok,
    /// Polling, but the mailbox has not answered for longer than the limit (server down,
    /// password changed, network cut): someone has to look.
    Stale,
}

impl MailboxHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxHealth::Standby => "standby",
            MailboxHealth::Ok => "ok",
            MailboxHealth::Stale => "stale",
        }
    }
}

/// Pure: polling since `polling_since`, last answer at `last_contact`. Time is counted from
/// the later of the two, so a contact made before this instance took the lease does not
/// count against it, nor does the start-up before the first pass.
pub fn mailbox_health(
    now: chrono::DateTime<chrono::Utc>,
    polling_since: Option<chrono::DateTime<chrono::Utc>>,
    last_contact: Option<chrono::DateTime<chrono::Utc>>,
    stale_after: Duration,
) -> MailboxHealth {
    let Some(since) = polling_since else { return MailboxHealth::Standby };
    let reference = last_contact.map_or(since, |c| c.max(since));
    let silent = (now - reference).to_std().unwrap_or(Duration::ZERO);
    if silent > stale_after { MailboxHealth::Stale } else { MailboxHealth::Ok }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn mailbox_health_counts_from_the_later_of_lease_and_contact() {
        let t = |s: i64| Utc.timestamp_opt(1_600_000_000 + s, 0).unwrap();
        let limit = Duration::from_secs(60);
        assert_eq!(mailbox_health(t(1000), None, Some(t(0)), limit), MailboxHealth::Standby);
        assert_eq!(mailbox_health(t(50), Some(t(0)), None, limit), MailboxHealth::Ok, "starting up");
        assert_eq!(mailbox_health(t(61), Some(t(0)), None, limit), MailboxHealth::Stale, "never reached");
        assert_eq!(mailbox_health(t(100), Some(t(0)), Some(t(90)), limit), MailboxHealth::Ok);
        assert_eq!(mailbox_health(t(160), Some(t(0)), Some(t(90)), limit), MailboxHealth::Stale);
        // A contact of a previous holder (same process) before the lease was taken again.
        assert_eq!(mailbox_health(t(130), Some(t(100)), Some(t(10)), limit), MailboxHealth::Ok);
        // A clock step back never makes it stale.
        assert_eq!(mailbox_health(t(0), Some(t(100)), Some(t(100)), limit), MailboxHealth::Ok);
    }
}
