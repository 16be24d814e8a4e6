//! The IMAP source.
//!
//! async-imap 0.12 provides the connection, tagging, response parsing, LOGIN/AUTHENTICATE and
//! the IDLE handle. Its typed commands are *not* used for anything whose failure matters:
//! `select`, `uid_search`, `uid_fetch`, `uid_store`, `noop`, `capabilities`, `expunge` all read
//! responses with `take_while(tag != ours)`, so a tagged `NO`/`BAD` and even an EOF end the
//! stream quietly (an empty search, a `Mailbox` without UIDVALIDITY, a NOOP that "succeeds" on
//! a dead socket). [`Conn::exec`] runs every such command itself: it reads until the tagged
//! completion, fails on `NO`/`BAD`/EOF, and runs under `command_timeout_secs` (async-imap has
//! no timeouts, #63).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{AttributeValue, Capability, MailboxDatum, Response, ResponseCode, Status};
use async_imap::types::UnsolicitedResponse;
use async_imap::{Authenticator, Client, Session};
use base64::Engine as _;
use chrono::{DateTime, FixedOffset};
use futures::FutureExt as _;
use futures::future::FusedFuture;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use super::net::{LiteralGuard, Stream, tls_connector};
use super::{Handler, Incoming, MailboxState, TooLarge};
use crate::config::{Secret, Source as SourceConfig, Tls};
use crate::metrics::{Metrics, metrics};

type Sess = Session<Stream>;

/// Why an IMAP operation failed (inside the `anyhow::Error` the methods return; downcast to
/// tell a refused login from a network problem).
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("IMAP login as {user} refused by the server: {text}")]
    Login { user: String, text: String },
    #[error("IMAP {command}: server answered {status}: {text}")]
    Refused { command: String, status: &'static str, text: String },
    #[error("IMAP {command}: no answer within {secs} s")]
    Timeout { command: String, secs: u64 },
    #[error("IMAP connection closed by the server{0}")]
    Closed(String),
}

/// Reads one IMAP folder; see the module documentation of [`crate::mailbox`].
pub struct ImapSource {
    cfg: SourceConfig,
    password: Secret,
    max_message_bytes: u64,
    state: Arc<dyn MailboxState>,
    tls: Option<TlsConnector>,
    id: String,
}

impl std::fmt::Debug for ImapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSource").field("mailbox", &self.id).field("tls", &self.cfg.tls).finish_non_exhaustive()
    }
}

/// What one pass over the folder did.
#[derive(Debug, Default, Clone, Copy)]
struct Pass {
    ok: usize,
    failed: usize,
}

enum Wake {
    Changed,
    Timeout,
    Shutdown,
}

const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl ImapSource {
    /// `config` is `[source]` (kind = imap); `max_message_bytes` is `[limits]`'s; `state` holds
    /// the (UIDVALIDITY, last UID) bookkeeping. Reads `ca_file` now, so a bad one fails early.
    pub fn new(
        config: SourceConfig,
        password: Secret,
        max_message_bytes: u64,
        state: Arc<dyn MailboxState>,
    ) -> anyhow::Result<ImapSource> {
        anyhow::ensure!(!config.host.is_empty(), "[source] host is empty");
        anyhow::ensure!(!config.username.is_empty(), "[source] username is empty");
        anyhow::ensure!(!config.folder.is_empty(), "[source] folder is empty");
        let processed_folder = config.processed_folder.as_deref().map(str::trim).filter(|f| !f.is_empty());
        if processed_folder.is_none() {
            let flag = &config.processed_flag;
            anyhow::ensure!(
                !flag.is_empty() && flag.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"]".contains(&b)),
                "[source] processed_flag {flag:?} is not an IMAP flag (like $Processed or \\Seen)"
            );
        }
        let tls = match config.tls {
            Tls::None => {
                anyhow::ensure!(
                    crate::config::is_loopback_host(&config.host),
                    "[source] tls = \"none\" is only allowed for a loopback host, not {}",
                    config.host
                );
                None
            }
            Tls::Implicit | Tls::Starttls => Some(tls_connector(config.ca_file.as_deref())?),
        };
        let id = format!(
            "imap://{}@{}:{}/{}",
            url_escape(&config.username),
            config.host,
            config.port,
            url_escape(&config.folder)
        );
        Ok(ImapSource { cfg: config, password, max_message_bytes, state, tls, id })
    }

    /// `imap://USER@HOST:PORT/FOLDER` (user and folder %-escaped): the stable id of this mailbox.
    pub fn mailbox_id(&self) -> &str {
        &self.id
    }

    fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.command_timeout_secs.max(1))
    }

    /// Where set-aside messages go (`[source] failed_folder`, default `Failed`).
    fn failed_folder(&self) -> &str {
        self.cfg.failed_folder.as_deref().map(str::trim).filter(|f| !f.is_empty()).unwrap_or("Failed")
    }

    fn processed_folder(&self) -> Option<&str> {
        self.cfg.processed_folder.as_deref().map(str::trim).filter(|f| !f.is_empty())
    }

    /// Connect, process every new message, mark the accepted ones, log out. Returns how many
    /// the handler accepted; the ones it refused stay and are offered on the next run.
    pub async fn run_once(&self, h: &impl Handler) -> anyhow::Result<usize> {
        let mut conn = self.connect().await?;
        let pass = self.pass(&mut conn, h, &mut || false).await?;
        conn.logout().await;
        Ok(pass.ok)
    }

    /// Forever: connect, process, then IDLE (re-issued every `idle_secs`) or poll every
    /// `poll_secs`; on any error or timeout reconnect with exponential backoff (1 s … 60 s).
    /// Returns `Ok` when `shutdown` resolves, after finishing the message in hand.
    pub async fn run(&self, h: &impl Handler, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut shutdown = pin!(shutdown.fuse());
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let connected = tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
                c = self.connect() => c,
            };
            match connected {
                Ok(mut conn) => {
                    info!(mailbox = %self.id, idle = conn.has("IDLE"), "IMAP connected");
                    match self.serve(&mut conn, h, shutdown.as_mut()).await {
                        Ok(()) => {
                            conn.logout().await;
                            info!(mailbox = %self.id, "IMAP source stopped");
                            return Ok(());
                        }
                        Err(e) => warn!(mailbox = %self.id, error = %format!("{e:#}"), "IMAP session ended"),
                    }
                }
                Err(e) => warn!(mailbox = %self.id, error = %format!("{e:#}"), "IMAP connect failed"),
            }
            if shutdown.is_terminated() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_secs(1);
            }
            info!(mailbox = %self.id, retry_in_secs = backoff.as_secs(), "IMAP reconnecting");
            Metrics::inc(&metrics().imap_reconnects);
            tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connected session: passes and waits until shutdown (`Ok`) or an error.
    async fn serve<S: Future<Output = ()> + Send>(
        &self,
        conn: &mut Conn,
        h: &impl Handler,
        mut shutdown: std::pin::Pin<&mut futures::future::Fuse<S>>,
    ) -> anyhow::Result<()> {
        let idle = Duration::from_secs(self.cfg.idle_secs.clamp(1, 29 * 60 - 1));
        let poll = Duration::from_secs(self.cfg.poll_secs.max(1));
        loop {
            let pass = {
                let mut stop = || shutdown.as_mut().now_or_never().is_some();
                self.pass(conn, h, &mut stop).await?
            };
            metrics().mailbox_contact();
            if shutdown.is_terminated() {
                return Ok(());
            }
            if conn.changed {
                continue; // EXISTS arrived while we worked: look again before waiting
            }
            // A refused message is offered again after a short while, not only on new mail.
            let retry = Duration::from_secs(30);
            if conn.has("IDLE") {
                let wait = if pass.failed > 0 { idle.min(retry) } else { idle };
                match conn.idle(wait, shutdown.as_mut()).await? {
                    Wake::Shutdown => return Ok(()),
                    // The server spoke; a timeout is followed by a pass, which counts then.
                    Wake::Changed => metrics().mailbox_contact(),
                    Wake::Timeout => {}
                }
            } else {
                let wait = if pass.failed > 0 { poll.min(retry) } else { poll };
                tokio::select! {
                    biased;
                    _ = shutdown.as_mut() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                conn.exec("NOOP").await?;
                metrics().mailbox_contact();
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<Conn> {
        let t = self.command_timeout();
        let secs = t.as_secs();
        let (host, port) = (self.cfg.host.as_str(), self.cfg.port);
        let tcp = timeout(t, TcpStream::connect((host, port)))
            .await
            .map_err(|_| ImapError::Timeout { command: format!("connect to {host}:{port}"), secs })?
            .with_context(|| format!("cannot connect to {host}:{port}"))?;
        let _ = tcp.set_nodelay(true);
        // No literal above the message size limit is ever read (see `LiteralGuard`).
        let guard = LiteralGuard::new(self.max_message_bytes);
        let (mut client, greeting_caps) = match (&self.cfg.tls, &self.tls) {
            (Tls::Implicit, Some(tls)) => {
                let tls = timeout(t, tls.connect(self.server_name()?, tcp))
                    .await
                    .map_err(|_| ImapError::Timeout { command: "TLS handshake".into(), secs })?
                    .with_context(|| format!("TLS handshake with {host}:{port} failed"))?;
                let mut client = Client::new(Stream::tls(tls, guard.clone()));
                let caps = greeting(&mut client, t).await?;
                (client, caps)
            }
            (Tls::Starttls, Some(tls)) => {
                let mut client = Client::new(Stream::plain(tcp, guard.clone()));
                greeting(&mut client, t).await?;
                timeout(t, client.run_command_and_check_ok("STARTTLS", None))
                    .await
                    .map_err(|_| ImapError::Timeout { command: "STARTTLS".into(), secs })?
                    .with_context(|| format!("{host}:{port} refused STARTTLS"))?;
                let Some(tcp) = client.into_inner().into_plain() else { unreachable!("plain before STARTTLS") };
                let tls = timeout(t, tls.connect(self.server_name()?, tcp))
                    .await
                    .map_err(|_| ImapError::Timeout { command: "TLS handshake".into(), secs })?
                    .with_context(|| format!("TLS handshake with {host}:{port} (after STARTTLS) failed"))?;
                // No second greeting after STARTTLS (RFC 3501 6.2.1); the capabilities
                // from before it must be asked again.
                (Client::new(Stream::tls(tls, guard.clone())), None)
            }
            _ => {
                let mut client = Client::new(Stream::plain(tcp, guard.clone()));
                let caps = greeting(&mut client, t).await?;
                (client, caps)
            }
        };
        let pre_caps = match greeting_caps {
            Some(caps) => caps,
            None => prelogin_caps(&mut client, t).await?,
        };
        let sess = self.login(client, pre_caps, t).await?;
        let mut conn =
            Conn { sess: Some(sess), caps: HashSet::new(), timeout: t, uidvalidity: 0, changed: false, folders_ready: HashSet::new(), guard };
        conn.caps = conn.capabilities().await?;
        if conn.has("ID") {
            // 163/126 refuse SELECT ("Unsafe Login") until the client identifies itself.
            let cmd = format!("ID (\"name\" \"studio-intake\" \"version\" \"{}\")", env!("CARGO_PKG_VERSION"));
            if let Err(e) = conn.exec(&cmd).await {
                debug!(error = %format!("{e:#}"), "IMAP ID refused");
            }
        }
        let folder = encode_mailbox_name(&self.cfg.folder);
        let mut uidvalidity = None;
        conn.exec_with(&format!("SELECT {}", quote(&folder)), |r| {
            if let Response::Data { status: Status::Ok, outcome } = r
                && let Some(ResponseCode::UidValidity(v)) = outcome.code
            {
                uidvalidity = Some(v);
            }
        })
        .await?;
        conn.uidvalidity = uidvalidity
            .ok_or_else(|| anyhow::anyhow!("SELECT {}: the server sent no UIDVALIDITY", self.cfg.folder))?;
        conn.changed = false;
        Ok(conn)
    }

    fn server_name(&self) -> anyhow::Result<ServerName<'static>> {
        let host = self.cfg.host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned()).with_context(|| format!("[source] host {host:?} is not a valid TLS server name"))
    }

    async fn login(&self, client: Client<Stream>, pre_caps: HashSet<String>, t: Duration) -> anyhow::Result<Sess> {
        let user = self.cfg.username.as_str();
        let refused = |e: async_imap::error::Error| -> anyhow::Error {
            match e {
                async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => {
                    ImapError::Login { user: user.to_owned(), text: outcome_text(&text) }.into()
                }
                other => anyhow::Error::new(other).context(format!("IMAP login as {user}")),
            }
        };
        let timed_out = |_| ImapError::Timeout { command: "login".into(), secs: t.as_secs() };
        if pre_caps.contains("LOGINDISABLED") {
            let plain = PlainAuth(format!("\0{user}\0{}", self.password.expose()).into_bytes());
            return timeout(t, client.authenticate("PLAIN", plain)).await.map_err(timed_out)?.map_err(|(e, _)| refused(e));
        }
        timeout(t, client.login(user, self.password.expose())).await.map_err(timed_out)?.map_err(|(e, _)| refused(e))
    }

    /// Offer every message above the low-water mark; mark the accepted ones; advance the mark
    /// over the leading run of accepted ones.
    async fn pass(&self, conn: &mut Conn, h: &impl Handler, stop: &mut (dyn FnMut() -> bool + Send)) -> anyhow::Result<Pass> {
        let uidvalidity = conn.uidvalidity;
        let last = match self.state.get(&self.id).await.context("reading mailbox state")? {
            Some((v, last)) if v == uidvalidity => last,
            Some((v, _)) => {
                warn!(mailbox = %self.id, old = v, new = uidvalidity, "UIDVALIDITY changed: starting again from UID 1");
                0
            }
            None => 0,
        };
        conn.changed = false;
        let search = format!("UID SEARCH UID {}:* {}", last.saturating_add(1), self.unprocessed_key());
        let mut uids: Vec<u32> = Vec::new();
        conn.exec_with(&search, |r| {
            if let Response::MailboxData(MailboxDatum::Search(ids)) = r {
                uids.extend(ids.iter().filter(|&&uid| uid > last)); // `UID n:*` always matches the highest UID
            }
        })
        .await?;
        uids.sort_unstable();
        uids.dedup();
        debug!(mailbox = %self.id, last_uid = last, new = uids.len(), "IMAP search");

        let mut pass = Pass::default();
        let mut blocked = false;
        let mut queue: VecDeque<u32> = uids.into();
        while !queue.is_empty() {
            if stop() {
                break;
            }
            let batch = self.fetch_batch(conn, &mut queue).await?;
            // A long pass is contact too: /healthz must not call a busy mailbox stale.
            metrics().mailbox_contact();
            let gone: HashSet<u32> = batch.iter().filter(|(_, m)| m.is_none()).map(|(uid, _)| *uid).collect();
            let order: Vec<u32> = batch.iter().map(|(uid, _)| *uid).collect();
            let present: Vec<(u32, Incoming)> = batch.into_iter().filter_map(|(uid, m)| m.map(|m| (uid, m))).collect();
            let sizes: HashMap<u32, (u64, bool)> = present.iter().map(|(uid, m)| (*uid, (m.size, m.raw.is_err()))).collect();
            let mut results: HashMap<u32, anyhow::Result<()>> = super::handle_in_order(h, present, stop).await.into_iter().collect();

            // Committed ones are marked together (one MOVE or STORE for the batch); the mark
            // advances over the leading run of messages that are done (processed, set aside,
            // or gone), never past one left for later or not handled before a stop.
            let committed: Vec<u32> = order.iter().copied().filter(|uid| matches!(results.get(uid), Some(Ok(())))).collect();
            if !committed.is_empty() {
                self.mark_processed(conn, &committed).await?;
            }
            let mut mark = None;
            for uid in order {
                if gone.contains(&uid) {
                    debug!(mailbox = %self.id, uid, "message gone before it was fetched");
                } else {
                    let (size, too_large) = sizes.get(&uid).copied().unwrap_or_default();
                    match results.remove(&uid) {
                        None => break, // stopped before it was handled: offered again
                        Some(Ok(())) => {
                            pass.ok += 1;
                            info!(mailbox = %self.id, uid, size, too_large, result = "ok", "message processed");
                        }
                        Some(Err(e)) if e.downcast_ref::<super::SetAside>().is_some() => {
                            let failed = self.failed_folder().to_owned();
                            self.move_to(conn, &failed, &uid.to_string()).await?;
                            pass.failed += 1;
                            warn!(mailbox = %self.id, uid, size, result = "failed", error = %format!("{e:#}"), "message moved to the failed folder");
                        }
                        Some(Err(e)) => {
                            blocked = true;
                            pass.failed += 1;
                            warn!(mailbox = %self.id, uid, size, too_large, result = "error", error = %format!("{e:#}"), "message left for later");
                        }
                    }
                }
                if !blocked {
                    mark = Some(uid);
                }
            }
            if let Some(uid) = mark {
                self.state.set(&self.id, uidvalidity, uid).await.context("writing mailbox state")?;
            }
            if stop() {
                break;
            }
        }
        Ok(pass)
    }

    /// The next messages of `queue`, downloaded: sizes and dates of up to
    /// [`super::BATCH_MESSAGES`] in one FETCH, then the bodies of those that fit the size
    /// limit in another, as many as [`super::BATCH_BYTES`] allows (the rest go back to the
    /// queue). `None` for a message gone before it was fetched. When a literal is larger than
    /// its message's RFC822.SIZE said (a lying server) the batch is fetched again one message
    /// at a time, where such a message is refused unread on its own.
    async fn fetch_batch(&self, conn: &mut Conn, queue: &mut VecDeque<u32>) -> anyhow::Result<Vec<(u32, Option<Incoming>)>> {
        let take = queue.len().min(super::BATCH_MESSAGES);
        let mut uids: Vec<u32> = queue.drain(..take).collect();
        if uids.len() == 1 {
            return Ok(vec![(uids[0], self.fetch(conn, uids[0]).await?)]);
        }
        let mut meta: HashMap<u32, FetchAttrs> = HashMap::new();
        conn.exec_with(&format!("UID FETCH {} (UID RFC822.SIZE INTERNALDATE)", uid_set(&uids)), |r| FetchAttrs::collect(&mut meta, r)).await?;
        let limit = self.max_message_bytes;
        let fits = |uid: &u32| meta.get(uid).is_some_and(|a| a.size.is_none_or(|s| s <= limit));
        let downloads: Vec<u64> = uids.iter().map(|uid| if fits(uid) { meta.get(uid).and_then(|a| a.size).unwrap_or(0) } else { 0 }).collect();
        let keep = within_budget(&downloads, super::BATCH_BYTES);
        for uid in uids.drain(keep..).rev() {
            queue.push_front(uid);
        }
        let wanted: Vec<u32> = uids.iter().copied().filter(fits).collect();
        let mut bodies: HashMap<u32, FetchAttrs> = HashMap::new();
        if !wanted.is_empty() {
            let fetched = conn.exec_with(&format!("UID FETCH {} BODY.PEEK[]", uid_set(&wanted)), |r| FetchAttrs::collect(&mut bodies, r)).await;
            if let Err(e) = fetched {
                if conn.guard.take_refused().is_none() {
                    return Err(e);
                }
                // That connection is out of step now.
                *conn = self.connect().await?;
                let mut out = Vec::with_capacity(uids.len());
                for uid in uids {
                    out.push((uid, self.fetch(conn, uid).await?));
                }
                return Ok(out);
            }
        }
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            let Some(attrs) = meta.remove(&uid) else {
                out.push((uid, None));
                continue;
            };
            let raw = match attrs.size {
                Some(size) if size > limit => Err(TooLarge { size, limit, header: self.peek_header(conn, uid).await? }),
                _ => match bodies.remove(&uid).and_then(|a| a.body) {
                    Some(raw) if raw.len() as u64 > limit => {
                        let header = raw[..header_end(&raw).min(super::HEADER_PEEK_BYTES as usize)].to_vec();
                        Err(TooLarge { size: raw.len() as u64, limit, header })
                    }
                    Some(raw) => Ok(raw),
                    None => {
                        out.push((uid, None));
                        continue;
                    }
                },
            };
            let size = match &raw {
                Ok(raw) => raw.len() as u64,
                Err(t) => t.size,
            };
            let m = Incoming { mailbox: self.id.clone(), uidvalidity: Some(conn.uidvalidity), uid: Some(uid), received_at: attrs.internal_date, size, raw };
            out.push((uid, Some(m)));
        }
        Ok(out)
    }

    /// `UNDELETED`, plus `UNKEYWORD flag` (or `UNSEEN` for `\Seen`, …) in flag mode.
    fn unprocessed_key(&self) -> String {
        if self.processed_folder().is_some() {
            return "UNDELETED".into();
        }
        let flag = self.cfg.processed_flag.as_str();
        let system = match flag.to_ascii_lowercase().as_str() {
            "\\seen" => Some("UNSEEN"),
            "\\flagged" => Some("UNFLAGGED"),
            "\\answered" => Some("UNANSWERED"),
            "\\draft" => Some("UNDRAFT"),
            _ => None,
        };
        match system {
            Some(key) => format!("UNDELETED {key}"),
            None => format!("UNDELETED UNKEYWORD {flag}"),
        }
    }

    /// One message: size and date first; the body only when it is within the limit. `None`
    /// when the message is gone.
    async fn fetch(&self, conn: &mut Conn, uid: u32) -> anyhow::Result<Option<Incoming>> {
        let mut meta = None;
        conn.exec_with(&format!("UID FETCH {uid} (UID RFC822.SIZE INTERNALDATE)"), |r| FetchAttrs::visit(&mut meta, uid, r))
            .await?;
        let Some(attrs) = meta else { return Ok(None) };
        let limit = self.max_message_bytes;
        let raw = match attrs.size {
            Some(size) if size > limit => Err(TooLarge { size, limit, header: self.peek_header(conn, uid).await? }),
            _ => {
                let mut body = None;
                let fetched = conn.exec_with(&format!("UID FETCH {uid} BODY.PEEK[]"), |r| FetchAttrs::visit(&mut body, uid, r)).await;
                match (fetched, conn.guard.take_refused()) {
                    (Err(_), Some(announced)) => {
                        // RFC822.SIZE said it fits, the literal says otherwise: refused before
                        // a byte of it was buffered. That connection is out of step now.
                        warn!(mailbox = %self.id, uid, announced, limit, declared = ?attrs.size,
                            "IMAP server sent a message larger than it declared; refused unread");
                        *conn = self.connect().await?;
                        Err(TooLarge { size: announced, limit, header: self.peek_header(conn, uid).await? })
                    }
                    (Err(e), None) => return Err(e),
                    (Ok(()), _) => match body.and_then(|a| a.body) {
                        Some(raw) if raw.len() as u64 > limit => {
                            let header = raw[..header_end(&raw).min(super::HEADER_PEEK_BYTES as usize)].to_vec();
                            Err(TooLarge { size: raw.len() as u64, limit, header })
                        }
                        Some(raw) => Ok(raw),
                        None => return Ok(None),
                    },
                }
            }
        };
        let size = match &raw {
            Ok(raw) => raw.len() as u64,
            Err(t) => t.size,
        };
        Ok(Some(Incoming {
            mailbox: self.id.clone(),
            uidvalidity: Some(conn.uidvalidity),
            uid: Some(uid),
            received_at: attrs.internal_date,
            size,
            raw,
        }))
    }

    /// The start of the header of a message refused by size (`BODY.PEEK[HEADER]<0.N>`), no
    /// literal above N accepted; empty when the server sends a bigger one anyway (the
    /// connection is then made again).
    async fn peek_header(&self, conn: &mut Conn, uid: u32) -> anyhow::Result<Vec<u8>> {
        let peek = super::HEADER_PEEK_BYTES;
        let mut head = None;
        let before = conn.guard.limit();
        conn.guard.set_limit(peek);
        let r = conn.exec_with(&format!("UID FETCH {uid} BODY.PEEK[HEADER]<0.{peek}>"), |r| FetchAttrs::visit(&mut head, uid, r)).await;
        conn.guard.set_limit(before);
        match (r, conn.guard.take_refused()) {
            (Ok(()), _) => Ok(head.and_then(|a| a.body).unwrap_or_default()),
            (Err(_), Some(announced)) => {
                warn!(mailbox = %self.id, uid, announced, peek, "IMAP server sent a header peek larger than asked; refused unread");
                *conn = self.connect().await?;
                Ok(Vec::new())
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Mark `uids` processed: one MOVE to the processed folder, or one STORE of the flag.
    async fn mark_processed(&self, conn: &mut Conn, uids: &[u32]) -> anyhow::Result<()> {
        let set = uid_set(uids);
        let Some(folder) = self.processed_folder() else {
            let flag = &self.cfg.processed_flag;
            // A server that cannot keep the keyword answers OK and drops it: check.
            let mut kept = HashSet::new();
            conn.exec_with(&format!("UID STORE {set} +FLAGS ({flag})"), |r| {
                if let Response::Fetch(_, attrs) = r
                    && attrs.iter().any(|a| match a {
                        AttributeValue::Flags(flags) => flags.iter().any(|f| f.eq_ignore_ascii_case(flag)),
                        _ => false,
                    })
                    && let Some(uid) = attrs.iter().find_map(|a| match a {
                        AttributeValue::Uid(u) => Some(*u),
                        _ => None,
                    })
                {
                    kept.insert(uid);
                }
            })
            .await?;
            anyhow::ensure!(
                uids.iter().all(|u| kept.contains(u)),
                "the server did not keep flag {flag} on UID {set} (PERMANENTFLAGS?)"
            );
            return Ok(());
        };
        self.move_to(conn, folder, &set).await
    }

    /// Move the messages of UID set `uid` to `folder` (created on first use): MOVE, or COPY +
    /// delete + EXPUNGE.
    async fn move_to(&self, conn: &mut Conn, folder: &str, uid: &str) -> anyhow::Result<()> {
        let target = quote(&encode_mailbox_name(folder));
        if !conn.folders_ready.contains(folder) {
            match conn.exec(&format!("CREATE {target}")).await {
                Ok(_) => {
                    info!(mailbox = %self.id, folder, "created the folder");
                    let _ = conn.exec(&format!("SUBSCRIBE {target}")).await;
                }
                // NO [ALREADYEXISTS] (or a server's own wording of it): fine.
                Err(e) if is_refusal(&e) => debug!(folder, error = %format!("{e:#}"), "CREATE refused (exists)"),
                Err(e) => return Err(e),
            }
            conn.folders_ready.insert(folder.to_owned());
        }
        if conn.has("MOVE") {
            conn.exec(&format!("UID MOVE {uid} {target}")).await?;
        } else {
            conn.exec(&format!("UID COPY {uid} {target}")).await?;
            conn.exec(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)")).await?;
            if conn.has("UIDPLUS") {
                conn.exec(&format!("UID EXPUNGE {uid}")).await?;
            } else {
                conn.exec("EXPUNGE").await?;
            }
        }
        Ok(())
    }
}

/// One selected IMAP session.
struct Conn {
    /// `None` only while IDLE holds it (or after IDLE failed: the connection is then dropped).
    sess: Option<Sess>,
    caps: HashSet<String>,
    timeout: Duration,
    uidvalidity: u32,
    /// An EXISTS/RECENT came in since the last search.
    changed: bool,
    /// Folders known to exist (created or found) on this connection.
    folders_ready: HashSet<String>,
    /// The literal-size guard under this session.
    guard: LiteralGuard,
}

enum Seen {
    Done(Result<(), (&'static str, String)>),
    Bye(String),
    Keep { exists: bool },
}

impl Conn {
    fn has(&self, cap: &str) -> bool {
        self.caps.contains(cap)
    }

    fn sess(&mut self) -> anyhow::Result<&mut Sess> {
        self.sess.as_mut().ok_or_else(|| ImapError::Closed(" (session lost during IDLE)".into()).into())
    }

    async fn exec(&mut self, cmd: &str) -> anyhow::Result<()> {
        self.exec_with(cmd, |_| {}).await
    }

    /// Run one command to its tagged completion, under the command timeout. Fails on NO/BAD,
    /// on EOF and on timeout; each untagged response goes to `visit`. (async-imap's
    /// `ResponseData` cannot be named outside the crate, so responses are visited, not kept.)
    async fn exec_with(&mut self, cmd: &str, visit: impl FnMut(&Response<'_>) + Send) -> anyhow::Result<()> {
        let verb = command_name(cmd);
        let secs = self.timeout.as_secs();
        match timeout(self.timeout, self.exec_inner(cmd, &verb, visit)).await {
            Ok(r) => r,
            Err(_) => Err(ImapError::Timeout { command: verb, secs }.into()),
        }
    }

    async fn exec_inner(&mut self, cmd: &str, verb: &str, mut visit: impl FnMut(&Response<'_>) + Send) -> anyhow::Result<()> {
        let sess = self.sess()?;
        let tag = sess.run_command(cmd).await.with_context(|| format!("IMAP {verb}: sending"))?;
        let mut bye = String::new();
        let mut changed = false;
        loop {
            let Some(resp) = sess.read_response().await.with_context(|| format!("IMAP {verb}: reading"))? else {
                return Err(ImapError::Closed(bye).into());
            };
            let seen = match resp.parsed() {
                Response::Done { tag: t, status, outcome } if *t == tag => Seen::Done(match status {
                    Status::Ok => Ok(()),
                    Status::No => Err(("NO", outcome_string(outcome))),
                    Status::Bad => Err(("BAD", outcome_string(outcome))),
                    _ => Err(("an unexpected status", outcome_string(outcome))),
                }),
                Response::Data { status: Status::Bye, outcome } => Seen::Bye(format!(": * BYE {}", outcome_string(outcome))),
                r @ Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_)) => {
                    visit(r);
                    Seen::Keep { exists: true }
                }
                r => {
                    visit(r);
                    Seen::Keep { exists: false }
                }
            };
            match seen {
                Seen::Done(result) => {
                    self.changed |= changed;
                    return match result {
                        Ok(()) => Ok(()),
                        Err((status, text)) => {
                            Err(ImapError::Refused { command: verb.to_owned(), status, text }.into())
                        }
                    };
                }
                Seen::Bye(text) => bye = text,
                Seen::Keep { exists } => changed |= exists,
            }
        }
    }

    async fn capabilities(&mut self) -> anyhow::Result<HashSet<String>> {
        let mut caps = HashSet::new();
        self.exec_with("CAPABILITY", |r| {
            if let Response::Capabilities(list) = r {
                caps.extend(list.iter().map(cap_name));
            }
        })
        .await?;
        Ok(caps)
    }

    /// IDLE until something changes, `dur` passes, or shutdown. Then DONE.
    async fn idle<S: Future<Output = ()> + Send>(
        &mut self,
        dur: Duration,
        mut shutdown: std::pin::Pin<&mut futures::future::Fuse<S>>,
    ) -> anyhow::Result<Wake> {
        let t = self.timeout;
        let secs = t.as_secs();
        let sess = self.sess.take().ok_or_else(|| ImapError::Closed(" (no session)".into()))?;
        let rx = sess.unsolicited_responses.clone();
        while rx.try_recv().is_ok() {}
        let mut handle = sess.idle();
        timeout(t, handle.init())
            .await
            .map_err(|_| ImapError::Timeout { command: "IDLE".into(), secs })?
            .context("IMAP IDLE")?;
        // Untagged responses before "+ idling" go to the unsolicited channel, not to wait().
        let mut pending = false;
        while let Ok(u) = rx.try_recv() {
            pending |= matches!(u, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
        }
        let wake = if pending {
            Wake::Changed
        } else {
            // wait_with_timeout's timer restarts on every response, and Dovecot says
            // "* OK Still here" every few minutes: bound the whole wait ourselves.
            let (wait, _interrupt) = handle.wait_with_timeout(dur);
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => Wake::Shutdown,
                r = timeout(dur, wait) => match r {
                    Err(_) | Ok(Ok(IdleResponse::Timeout)) => Wake::Timeout,
                    Ok(Ok(IdleResponse::NewData(data))) => {
                        debug!(response = ?data.parsed(), "IDLE woke up");
                        Wake::Changed
                    }
                    // The stream ended: the server closed the connection.
                    Ok(Ok(IdleResponse::ManualInterrupt)) => return Err(ImapError::Closed(" during IDLE".into()).into()),
                    Ok(Err(e)) => return Err(anyhow::Error::new(e).context("IMAP IDLE")),
                },
            }
        };
        let sess = timeout(t, handle.done())
            .await
            .map_err(|_| ImapError::Timeout { command: "DONE".into(), secs })?
            .context("IMAP IDLE DONE")?;
        self.sess = Some(sess);
        Ok(wake)
    }

    /// Best effort: the work is done whatever the server says to LOGOUT.
    async fn logout(&mut self) {
        if self.sess.is_some()
            && let Err(e) = self.exec("LOGOUT").await
            && !matches!(e.downcast_ref::<ImapError>(), Some(ImapError::Closed(_)))
        {
            debug!(error = %format!("{e:#}"), "IMAP LOGOUT");
        }
        self.sess = None;
    }
}

/// The greeting: `* OK` (returns its CAPABILITY code, if any) or `* BYE` (refuse).
async fn greeting(client: &mut Client<Stream>, t: Duration) -> anyhow::Result<Option<HashSet<String>>> {
    let resp = timeout(t, client.read_response())
        .await
        .map_err(|_| ImapError::Timeout { command: "greeting".into(), secs: t.as_secs() })?
        .context("IMAP greeting")?
        .ok_or_else(|| ImapError::Closed(" before its greeting".into()))?;
    match resp.parsed() {
        Response::Data { status: Status::Ok, outcome } => Ok(match &outcome.code {
            Some(ResponseCode::Capabilities(caps)) => Some(caps.iter().map(cap_name).collect()),
            _ => None,
        }),
        Response::Data { status: Status::PreAuth, .. } => {
            anyhow::bail!("the IMAP server greeted with PREAUTH; a login is required here")
        }
        Response::Data { status: Status::Bye, outcome } => {
            Err(ImapError::Closed(format!(": * BYE {}", outcome_string(outcome))).into())
        }
        other => anyhow::bail!("unexpected IMAP greeting: {other:?}"),
    }
}

/// CAPABILITY before login. async-imap's `Client` has no command that returns untagged data,
/// so this one is written by hand, with a tag of its own (`pre1`, never one of async-imap's
/// `A0001`…).
async fn prelogin_caps(client: &mut Client<Stream>, t: Duration) -> anyhow::Result<HashSet<String>> {
    use tokio::io::AsyncWriteExt as _;
    let run = async {
        let stream = client.get_mut();
        stream.write_all(b"pre1 CAPABILITY\r\n").await?;
        stream.flush().await?;
        let mut caps = HashSet::new();
        loop {
            let resp = client.read_response().await?.ok_or_else(|| ImapError::Closed(" (CAPABILITY)".into()))?;
            match resp.parsed() {
                Response::Capabilities(list) => caps.extend(list.iter().map(cap_name)),
                Response::Done { tag, status, outcome } if tag.0 == "pre1" => {
                    if *status != Status::Ok {
                        debug!(answer = %outcome_string(outcome), "pre-login CAPABILITY refused");
                    }
                    return anyhow::Ok(caps);
                }
                _ => {}
            }
        }
    };
    timeout(t, run).await.map_err(|_| ImapError::Timeout { command: "CAPABILITY".into(), secs: t.as_secs() })?
}

struct PlainAuth(Vec<u8>);

impl Authenticator for PlainAuth {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.0.clone()
    }
}

#[derive(Default)]
struct FetchAttrs {
    size: Option<u64>,
    internal_date: Option<DateTime<FixedOffset>>,
    body: Option<Vec<u8>>,
}

impl FetchAttrs {
    /// Take the attributes of every FETCH response that carries a UID, by UID.
    fn collect(into: &mut HashMap<u32, FetchAttrs>, r: &Response<'_>) {
        let Response::Fetch(_, attrs) = r else { return };
        let Some(uid) = attrs.iter().find_map(|a| match a {
            AttributeValue::Uid(u) => Some(*u),
            _ => None,
        }) else {
            return;
        };
        let mut one = into.remove(&uid);
        Self::visit(&mut one, uid, r);
        if let Some(one) = one {
            into.insert(uid, one);
        }
    }

    /// Take the attributes of the FETCH response for `uid` (other FETCHes — flag updates of
    /// other messages — are ignored).
    fn visit(into: &mut Option<FetchAttrs>, uid: u32, r: &Response<'_>) {
        let Response::Fetch(_, attrs) = r else { return };
        if !attrs.iter().any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid)) {
            return;
        }
        let out = into.get_or_insert_with(FetchAttrs::default);
        for a in attrs {
            match a {
                AttributeValue::Rfc822Size(n) => out.size = Some(u64::from(*n)),
                AttributeValue::InternalDate(d) => out.internal_date = parse_internal_date(d.as_ref()),
                AttributeValue::BodySection { data: Some(data), .. } | AttributeValue::Rfc822(Some(data)) => {
                    out.body = Some(data.to_vec())
                }
                _ => {}
            }
        }
    }
}

/// How many of a batch's messages, in order, to download now: as many as fit `budget` bytes
/// together (by declared size; 0 for one refused by size), and always the first.
fn within_budget(sizes: &[u64], budget: u64) -> usize {
    let mut total = 0u64;
    sizes.iter().position(|&s| {
        total += s;
        total > budget
    })
    .map_or(sizes.len(), |i| i.max(1))
}

/// `1,2,3,7,9` → `1:3,7,9` (the UIDs sorted first).
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            out.push_str(&format!("{}:{}", sorted[i], sorted[j]));
        } else {
            out.push_str(&sorted[i].to_string());
        }
        i = j + 1;
    }
    out
}

/// Length of the header block (up to and including the blank line), or all of `raw`.
pub(crate) fn header_end(raw: &[u8]) -> usize {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len())
}

/// `14-Mar-2020 01:30:00 +0000` (the day may be space-padded).
fn parse_internal_date(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z").ok()
}

fn cap_name(c: &Capability<'_>) -> String {
    match c {
        Capability::Imap4rev1 => "IMAP4REV1".into(),
        Capability::Auth(a) => format!("AUTH={}", a.to_ascii_uppercase()),
        Capability::Atom(a) => a.to_ascii_uppercase(),
    }
}

fn outcome_string(o: &async_imap::imap_proto::Outcome<'_>) -> String {
    let code = o.code.as_ref().map(|c| format!("[{c:?}] ")).unwrap_or_default();
    format!("{code}{}", o.information.as_deref().unwrap_or(""))
}

/// async-imap formats NO/BAD as `code: None, info: Some("…")`: keep the server's words.
fn outcome_text(s: &str) -> String {
    match (s.find("info: Some(\""), s.rfind("\")")) {
        (Some(a), Some(b)) if a + 12 <= b => s[a + 12..b].replace("\\\"", "\""),
        _ => s.to_owned(),
    }
}

fn is_refusal(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<ImapError>(), Some(ImapError::Refused { status: "NO", .. }))
}

/// The command word(s) for messages: never its arguments (LOGIN never goes through here anyway).
fn command_name(cmd: &str) -> String {
    let mut words = cmd.split(' ');
    let first = words.next().unwrap_or("");
    if first.eq_ignore_ascii_case("UID") {
        format!("UID {}", words.next().unwrap_or(""))
    } else {
        first.to_owned()
    }
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// %-escape for the mailbox id: keeps it one unambiguous URL-ish string.
fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3): `已处理` → `&XfJZBFkE-`,
/// `&` → `&-`; ASCII stays as it is.
pub fn encode_mailbox_name(name: &str) -> String {
    fn flush(out: &mut String, pending: &mut Vec<u16>) {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes).replace('/', ",");
        out.push('&');
        out.push_str(&b64);
        out.push('-');
        pending.clear();
    }
    let mut out = String::new();
    let mut pending = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7() {
        assert_eq!(encode_mailbox_name("INBOX"), "INBOX");
        assert_eq!(encode_mailbox_name("台北"), "&U,BTFw-");
        assert_eq!(encode_mailbox_name("A&B"), "A&-B");
        assert_eq!(encode_mailbox_name("~peter/mail/日本語/台北"), "~peter/mail/&ZeVnLIqe-/&U,BTFw-");
    }

    #[test]
    fn internal_dates() {
        let d = parse_internal_date("14-Mar-2020 01:30:00 +0000").unwrap();
        assert_eq!(d.to_rfc3339(), "2020-03-14T01:30:00+00:00");
        let d = parse_internal_date(" 4-Mar-2020 09:30:00 +0800").unwrap();
        assert_eq!(d.to_rfc3339(), "2020-03-04T09:30:00+08:00");
    }

    #[test]
    fn batch_byte_budget() {
        assert_eq!(within_budget(&[10, 10, 10], 25), 2);
        assert_eq!(within_budget(&[10, 10, 10], 30), 3);
        assert_eq!(within_budget(&[40, 1], 25), 1, "the first always goes, alone when it is over");
        assert_eq!(within_budget(&[0, 0, 30], 25), 2, "a message refused by size costs nothing");
        assert_eq!(within_budget(&[], 25), 0);
    }

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[9, 1, 2, 3, 7, 3]), "1:3,7,9");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[4, 5]), "4:5");
        assert_eq!(uid_set(&[1, 3, 5, 6, 7, 10]), "1,3,5:7,10");
    }

    #[test]
    fn names_and_texts() {
        assert_eq!(command_name("UID FETCH 7 BODY.PEEK[]"), "UID FETCH");
        assert_eq!(command_name("SELECT \"INBOX\""), "SELECT");
        assert_eq!(url_escape("intake@example.test"), "intake%40example.test");
        assert_eq!(
            outcome_text("code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")"),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
