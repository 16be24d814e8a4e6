//! Where mail comes from: an IMAP mailbox (async-imap over tokio-rustls) or a folder of
//! `.eml` files / a Maildir (the embedded default, `examples/inbox`).
//!
//! A source offers each new message to a [`Handler`] as an [`Incoming`]. Only when the handler
//! returns `Ok(())` — its results are committed — does the source mark the message processed
//! (IMAP: MOVE to `processed_folder`, or a flag; Maildir: `new/` → `cur/`). An `Err` leaves the
//! message where it is, and it is offered again on a later pass. A crash at any point therefore
//! leads to reprocessing, never to silence; the store dedupes by (mailbox, UIDVALIDITY, UID)
//! and by a hash of the raw bytes.
//!
//! The IMAP source keeps no bookkeeping of its own: (UIDVALIDITY, last UID) per mailbox lives
//! behind the [`MailboxState`] trait object, which the daemon implements on the store
//! ([`MemoryState`] for tests).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use futures::future::BoxFuture;

use crate::config::{self, Config, SourceKind};

mod imap;
mod maildir;
mod net;

pub use imap::{ImapError, ImapSource, encode_mailbox_name};
pub use maildir::MaildirSource;

/// One message offered by a source.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Stable id of the source, e.g. `imap://intake%40example.test@127.0.0.1:10143/INBOX` or
    /// `maildir:/abs/path`. Together with `uidvalidity`/`uid` it identifies the message.
    pub mailbox: String,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
    /// IMAP INTERNALDATE (the server's receipt time); `None` for files.
    pub received_at: Option<DateTime<FixedOffset>>,
    /// Size in bytes (RFC822.SIZE, or the file's length).
    pub size: u64,
    /// The raw message, or [`TooLarge`] when it was refused by size before downloading it.
    pub raw: Result<Vec<u8>, TooLarge>,
}

/// A message above `limits.max_message_bytes`: not downloaded. The handler should still reply
/// ("too large") and return `Ok` so that the message is marked processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message of {size} bytes is over the limit of {limit} bytes")]
pub struct TooLarge {
    pub size: u64,
    pub limit: u64,
    /// The start of the header block (at most [`HEADER_PEEK_BYTES`]), so the handler can tell
    /// the sender why the mail was refused.
    pub header: Vec<u8>,
}

/// How much of a refused message's header is read (`BODY.PEEK[HEADER]<0.N>`).
pub const HEADER_PEEK_BYTES: u64 = 64 * 1024;

/// The handler gave up on a message after repeated attempts (recorded in the store with its
/// reason): the source moves it to the failed folder (IMAP `[source] failed_folder`, Maildir
/// `failed/`), where it is never offered again unless staff move it back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("set aside after {attempts} failed attempts: {reason}")]
pub struct SetAside {
    pub attempts: i64,
    pub reason: String,
}

/// Whoever makes a message durable, in two steps so that a source can work on several
/// messages at once without changing the order in which they take effect:
///
/// - [`Handler::prepare`] does what depends on no other message (store the raw bytes, read the
///   mail). Sources call it for up to [`PREPARE_AHEAD`] messages at once; an implementation
///   that wants the work to go on while the source awaits something else spawns it.
/// - [`Handler::commit`] does the rest, called one message at a time in arrival order (a
///   unit's dossier grows mail by mail). `Ok(())` = results committed: the source may now mark
///   the message processed. `Err` = leave it; it will be offered again — unless the error is a
///   [`SetAside`], then the source moves it to the failed folder.
///
/// A message prepared but never committed (shutdown in between) is simply offered again.
pub trait Handler: Send + Sync {
    /// What `prepare` hands on to `commit`.
    type Prepared: Send;
    fn prepare(&self, m: Incoming) -> impl Future<Output = Self::Prepared> + Send;
    fn commit(&self, p: Self::Prepared) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// How many messages are prepared ahead of the one being committed. Preparing is mostly
/// reading (CPU on the blocking pool, a converter at worst) and one store write: a few at a
/// time keep both cores busy while commits go on in order.
pub const PREPARE_AHEAD: usize = 4;

/// A source's batch: at most this many messages are downloaded before they are handled…
pub const BATCH_MESSAGES: usize = 32;
/// …and at most this many bytes of them (a batch always holds at least one message).
pub const BATCH_BYTES: u64 = 48 * 1024 * 1024;

/// Hands `batch` to `h`: prepared up to [`PREPARE_AHEAD`] at once, committed one by one in
/// the order given. Returns each message's key with its commit result, in that order; stops
/// early (the rest not returned, to be offered again) when `stop()` says so between commits.
pub(crate) async fn handle_in_order<H: Handler, K>(
    h: &H,
    batch: Vec<(K, Incoming)>,
    stop: &mut (dyn FnMut() -> bool + Send),
) -> Vec<(K, anyhow::Result<()>)> {
    use futures::StreamExt as _;
    let mut results = Vec::with_capacity(batch.len());
    let mut prepared = futures::stream::iter(batch).map(|(key, m)| async move { (key, h.prepare(m).await) }).buffered(PREPARE_AHEAD);
    while let Some((key, p)) = prepared.next().await {
        results.push((key, h.commit(p).await));
        if stop() {
            break;
        }
    }
    results
}

/// Per-mailbox (UIDVALIDITY, last UID) bookkeeping, owned by the caller (the store).
///
/// `last_uid` is a low-water mark: every UID up to it has been processed. The IMAP source
/// never moves it past a message whose handler failed, so that message is offered again.
pub trait MailboxState: Send + Sync {
    fn get<'a>(&'a self, mailbox: &'a str) -> BoxFuture<'a, anyhow::Result<Option<(u32, u32)>>>;
    fn set<'a>(&'a self, mailbox: &'a str, uidvalidity: u32, last_uid: u32) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// [`MailboxState`] in memory: for tests and one-shot runs.
#[derive(Debug, Default)]
pub struct MemoryState {
    map: Mutex<HashMap<String, (u32, u32)>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored (uidvalidity, last_uid) of a mailbox.
    pub fn peek(&self, mailbox: &str) -> Option<(u32, u32)> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(mailbox).copied()
    }
}

impl MailboxState for MemoryState {
    fn get<'a>(&'a self, mailbox: &'a str) -> BoxFuture<'a, anyhow::Result<Option<(u32, u32)>>> {
        Box::pin(async move { Ok(self.peek(mailbox)) })
    }

    fn set<'a>(&'a self, mailbox: &'a str, uidvalidity: u32, last_uid: u32) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.map.lock().unwrap_or_else(|e| e.into_inner()).insert(mailbox.to_owned(), (uidvalidity, last_uid));
            Ok(())
        })
    }
}

/// The configured source.
#[allow(clippy::large_enum_variant)] // one per process
pub enum Source {
    Imap(ImapSource),
    Maildir(MaildirSource),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Source").field(&self.mailbox_id()).finish()
    }
}

impl Source {
    /// Build the source of `[source]`: the password comes from `password_env`/`password_file`
    /// (never from the file itself), the size limit from `[limits] max_message_bytes`.
    pub fn from_config(config: &Config, state: Arc<dyn MailboxState>) -> anyhow::Result<Source> {
        let s = &config.source;
        match s.kind {
            SourceKind::Imap => {
                let password = config::load_secret(s.password_env.as_deref(), s.password_file.as_deref())?
                    .ok_or_else(|| anyhow::anyhow!("[source] kind = \"imap\" needs password_env or password_file"))?;
                Ok(Source::Imap(ImapSource::new(s.clone(), password, config.limits.max_message_bytes, state)?))
            }
            SourceKind::Maildir => Ok(Source::Maildir(MaildirSource::new(
                &s.path,
                config.limits.max_message_bytes,
                Duration::from_secs(s.poll_secs.max(1)),
            ))),
        }
    }

    /// The stable id that goes into [`Incoming::mailbox`].
    pub fn mailbox_id(&self) -> String {
        match self {
            Source::Imap(s) => s.mailbox_id().to_owned(),
            Source::Maildir(s) => s.mailbox_id().to_owned(),
        }
    }

    /// One pass: offer every new message, mark the ones the handler accepted. Returns how many
    /// were handled `Ok`.
    pub async fn run_once(&self, h: &impl Handler) -> anyhow::Result<usize> {
        match self {
            Source::Imap(s) => s.run_once(h).await,
            Source::Maildir(s) => s.run_once(h).await,
        }
    }

    /// Forever, until `shutdown` resolves (after finishing the message in hand).
    pub async fn run(&self, h: &impl Handler, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        match self {
            Source::Imap(s) => s.run(h, shutdown).await,
            Source::Maildir(s) => s.run(h, shutdown).await,
        }
    }
}
