//! The file source: a Maildir (`new/`, `cur/`) or a plain folder of `.eml` files.
//!
//! - Maildir: every file in `new/` is offered (sorted by name); after `Ok` it moves to
//!   `cur/NAME:2,S`. Files already in `cur/` are never offered.
//! - Plain folder (e.g. the repository's `examples/inbox`): every `*.eml` file is offered
//!   (sorted by name) and left in place; the store dedupes by hash. `run()` remembers what it
//!   handled (path, length, mtime) so that the polls offer only new or changed files.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::FusedFuture;
use tracing::{debug, info, warn};

use super::{Handler, Incoming, TooLarge};

/// A folder of `.eml` files, or a Maildir.
#[derive(Debug, Clone)]
pub struct MaildirSource {
    path: PathBuf,
    max_message_bytes: u64,
    poll: Duration,
    id: String,
}

/// (path, length, mtime): a file as handled.
type FileKey = (PathBuf, u64, Option<SystemTime>);

impl MaildirSource {
    pub fn new(path: impl AsRef<Path>, max_message_bytes: u64, poll: Duration) -> MaildirSource {
        let path = std::path::absolute(path.as_ref()).unwrap_or_else(|_| path.as_ref().to_owned());
        let id = format!("maildir:{}", path.display());
        MaildirSource { path, max_message_bytes, poll: poll.max(Duration::from_millis(10)), id }
    }

    /// `maildir:/abs/path`.
    pub fn mailbox_id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn is_maildir(&self) -> bool {
        self.path.join("new").is_dir() || self.path.join("cur").is_dir()
    }

    /// Offer every file (Maildir: every file in `new/`); returns how many the handler accepted.
    pub async fn run_once(&self, h: &impl Handler) -> anyhow::Result<usize> {
        self.pass(h, None, &mut || false).await
    }

    /// `run_once`, then poll every `poll_secs` until `shutdown` resolves (after finishing the
    /// file in hand). A failing folder (missing, unreadable) is logged and retried.
    pub async fn run(&self, h: &impl Handler, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut shutdown = pin!(shutdown.fuse());
        let mut seen = HashSet::new();
        loop {
            let result = {
                let mut stop = || shutdown.as_mut().now_or_never().is_some();
                self.pass(h, Some(&mut seen), &mut stop).await
            };
            match result {
                Ok(_) => crate::metrics::metrics().mailbox_contact(),
                Err(e) => warn!(mailbox = %self.id, error = %format!("{e:#}"), "reading the mail folder failed"),
            }
            if shutdown.is_terminated() {
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return Ok(()),
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    async fn pass(
        &self,
        h: &impl Handler,
        mut seen: Option<&mut HashSet<FileKey>>,
        stop: &mut (dyn FnMut() -> bool + Send),
    ) -> anyhow::Result<usize> {
        let maildir = self.is_maildir();
        let dir = if maildir { self.path.join("new") } else { self.path.clone() };
        let files = list(&dir, maildir).await.with_context(|| format!("cannot list {}", dir.display()))?;
        let mut ok = 0;
        let mut files = files.into_iter().peekable();
        // Batches of files read into memory (bounded in count and bytes), handed over in order.
        while files.peek().is_some() {
            if stop() {
                break;
            }
            let mut batch = Vec::new();
            let mut bytes = 0u64;
            while batch.len() < super::BATCH_MESSAGES && (batch.is_empty() || bytes < super::BATCH_BYTES) {
                let Some(file) = files.next() else { break };
                let meta = match tokio::fs::metadata(&file).await {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // taken by someone else
                    Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
                };
                let key: FileKey = (file.clone(), meta.len(), meta.modified().ok());
                if seen.as_ref().is_some_and(|s| s.contains(&key)) {
                    continue;
                }
                let size = meta.len();
                let limit = self.max_message_bytes;
                let raw = if size > limit {
                    Err(TooLarge { size, limit, header: read_head(&file).await })
                } else {
                    match tokio::fs::read(&file).await {
                        Ok(raw) => Ok(raw),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
                    }
                };
                bytes += raw.as_ref().map_or(0, |r| r.len() as u64);
                let incoming = Incoming { mailbox: self.id.clone(), uidvalidity: None, uid: None, received_at: None, size, raw };
                batch.push((key, incoming));
            }
            for ((file, size, mtime), result) in super::handle_in_order(h, batch, stop).await {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                match result {
                    Ok(()) => {
                        if maildir {
                            mark_seen(&self.path, &file).await?;
                        } else if let Some(seen) = seen.as_deref_mut() {
                            seen.insert((file.clone(), size, mtime));
                        }
                        ok += 1;
                        info!(mailbox = %self.id, file = %name, size, result = "ok", "message processed");
                    }
                    Err(e) if e.downcast_ref::<super::SetAside>().is_some() => {
                        let target = self.path.join("failed");
                        tokio::fs::create_dir_all(&target).await.with_context(|| format!("cannot create {}", target.display()))?;
                        tokio::fs::rename(&file, target.join(&name)).await.with_context(|| format!("cannot move {} to failed/", file.display()))?;
                        warn!(mailbox = %self.id, file = %name, size, result = "failed", error = %format!("{e:#}"), "message moved to failed/");
                    }
                    Err(e) => {
                        warn!(mailbox = %self.id, file = %name, size, result = "error", error = %format!("{e:#}"), "message left for later");
                    }
                }
            }
        }
        Ok(ok)
    }
}

/// The candidate files of `dir`, sorted by name: Maildir `new/` takes every regular file,
/// a plain folder only `*.eml`. Dot files are skipped.
async fn list(dir: &Path, maildir: bool) -> io::Result<Vec<PathBuf>> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !entry.file_type().await?.is_file() {
            continue;
        }
        if maildir || name.to_ascii_lowercase().ends_with(".eml") {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// `new/NAME` → `cur/NAME:2,S` (keeping existing flags, in ASCII order as Maildir wants).
async fn mark_seen(root: &Path, file: &Path) -> anyhow::Result<()> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let target_name = match name.split_once(":2,") {
        Some((base, flags)) if flags.contains('S') => format!("{base}:2,{flags}"),
        Some((base, flags)) => {
            let mut f: Vec<char> = flags.chars().chain(['S']).collect();
            f.sort_unstable();
            format!("{base}:2,{}", f.into_iter().collect::<String>())
        }
        None => format!("{name}:2,S"),
    };
    let cur = root.join("cur");
    tokio::fs::create_dir_all(&cur).await.with_context(|| format!("cannot create {}", cur.display()))?;
    let target = cur.join(target_name);
    match tokio::fs::rename(file, &target).await {
        Ok(()) => {
            debug!(from = %file.display(), to = %target.display(), "Maildir: moved to cur/");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            warn!(file = %file.display(), "Maildir: file vanished before it could be moved to cur/");
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot move {} to {}", file.display(), target.display())),
    }
}

/// The header block of a file too large to read whole.
async fn read_head(file: &Path) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    if let Ok(f) = tokio::fs::File::open(file).await {
        let _ = f.take(super::HEADER_PEEK_BYTES).read_to_end(&mut buf).await;
    }
    let end = super::imap::header_end(&buf);
    buf.truncate(end);
    buf
}
