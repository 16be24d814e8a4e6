//! Where rendered bytes go: an SMTP relay (lettre, pooled) or a folder of `.eml` files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls as LettreTls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Tokio1Executor};

use crate::config::{Outbox, OutboxKind, Secret, Tls};

/// SMTP connections kept open at once (lettre's pool), one per sending lane of the outbox.
pub const SMTP_CONNECTIONS: u32 = 4;

/// Connect, each command, each read and write: at most this long.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole SMTP transaction (connect, TLS, AUTH, MAIL, RCPT, DATA): a server that answers
/// every command just before [`SMTP_TIMEOUT`] still cannot hold a send forever.
const SEND_DEADLINE: Duration = Duration::from_secs(300);

pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Each mail becomes `<dir>/<sanitised Message-ID>.eml`.
    File(PathBuf),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Smtp(_) => f.write_str("Transport::Smtp"),
            Transport::File(dir) => f.debug_tuple("Transport::File").field(dir).finish(),
        }
    }
}

/// A failed send. `transient`: try again later (4xx replies, refused or dropped
/// connections, timeouts); otherwise the mail will never go out as it is (5xx replies,
/// authentication refused, certificate not trusted, invalid addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub transient: bool,
    pub message: String,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.transient { "temporary" } else { "permanent" };
        write!(f, "{kind} send failure: {}", self.message)
    }
}

impl std::error::Error for SendError {}

impl SendError {
    fn permanent(message: impl Into<String>) -> SendError {
        SendError { transient: false, message: message.into() }
    }

    fn transient(message: impl Into<String>) -> SendError {
        SendError { transient: true, message: message.into() }
    }

    fn from_smtp(e: &lettre::transport::smtp::Error) -> SendError {
        let message = e.to_string();
        let transient = if e.is_transient() {
            true // 4xx
        } else if e.is_permanent() || e.is_client() {
            // 5xx (rejected recipient, 535 authentication failed); or the client refused to
            // go on (no common AUTH mechanism): retrying changes nothing.
            false
        } else if untrusted_peer(e) {
            // The certificate is not trusted or does not match the host, or no common TLS
            // version: a configuration problem. rustls reports it inside an io::Error, so
            // lettre calls it a connection error.
            false
        } else if e.is_timeout() || has_io_error(e) {
            // Connection refused/reset, timeout, EOF — also in the middle of a TLS handshake.
            true
        } else if e.is_tls() {
            // The certificate is not trusted or does not match: a configuration problem.
            false
        } else {
            // Garbled response, transport shut down: worth another try.
            true
        };
        SendError { transient, message }
    }
}

fn untrusted_peer(e: &(dyn std::error::Error + 'static)) -> bool {
    use tokio_rustls::rustls::Error as RustlsError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let tls = s.downcast_ref::<RustlsError>().or_else(|| {
            s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|i| i.downcast_ref::<RustlsError>())
        });
        if let Some(tls) = tls {
            return matches!(
                tls,
                RustlsError::InvalidCertificate(_)
                    | RustlsError::NoCertificatesPresented
                    | RustlsError::UnsupportedNameType
                    | RustlsError::PeerIncompatible(_)
            );
        }
        source = s.source();
    }
    false
}

fn has_io_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

impl Transport {
    /// The transport `[outbox]` describes. `password` is the secret named by
    /// `password_env`/`password_file` (see [`crate::config::load_secret`]); it is required
    /// when `username` is set.
    ///
    /// Must be called inside a Tokio runtime: lettre's connection pool spawns its reaper task
    /// when it is built (it would panic otherwise; here it is an error).
    pub fn from_config(cfg: &Outbox, password: Option<Secret>) -> anyhow::Result<Transport> {
        if cfg.kind == OutboxKind::File {
            return Ok(Transport::File(cfg.path.clone()));
        }
        let host = cfg.host.trim();
        if host.is_empty() {
            bail!("[outbox] host is empty");
        }
        tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("the SMTP transport must be built inside the Tokio runtime"))?;

        let tls = match cfg.tls {
            Tls::None => {
                if !is_loopback(host) {
                    bail!("[outbox] tls = \"none\" is only allowed to a loopback host, not {host:?}");
                }
                LettreTls::None
            }
            Tls::Implicit => LettreTls::Wrapper(tls_parameters(host, cfg.ca_file.as_deref())?),
            Tls::Starttls => LettreTls::Required(tls_parameters(host, cfg.ca_file.as_deref())?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(SMTP_CONNECTIONS).idle_timeout(Duration::from_secs(60)));
        let username = cfg.username.trim();
        if !username.is_empty() {
            let Some(password) = password else {
                bail!("[outbox] username is set but no password (password_env or password_file)");
            };
            builder = builder.credentials(Credentials::new(username.to_owned(), password.expose().to_owned()));
        }
        Ok(Transport::Smtp(builder.build()))
    }

    /// Hands one rendered mail over. `envelope_from` is the SMTP `MAIL FROM` (empty for the
    /// null sender `<>`); `to` the `RCPT TO` addresses.
    pub async fn send(&self, envelope_from: &str, to: &[String], bytes: &[u8]) -> Result<(), SendError> {
        match self {
            Transport::Smtp(smtp) => {
                let envelope = envelope(envelope_from, to)?;
                match tokio::time::timeout(SEND_DEADLINE, smtp.send_raw(&envelope, bytes)).await {
                    Ok(Ok(_response)) => Ok(()),
                    Ok(Err(e)) => Err(SendError::from_smtp(&e)),
                    Err(_) => Err(SendError::transient(format!(
                        "SMTP transaction took longer than {} s",
                        SEND_DEADLINE.as_secs()
                    ))),
                }
            }
            Transport::File(dir) => {
                let dir = dir.clone();
                let bytes = bytes.to_vec();
                tokio::task::spawn_blocking(move || write_eml(&dir, &bytes))
                    .await
                    .map_err(|e| SendError::transient(format!("file outbox task failed: {e}")))?
            }
        }
    }
}

fn tls_parameters(host: &str, ca_file: Option<&Path>) -> anyhow::Result<TlsParameters> {
    let mut b = TlsParameters::builder(host.to_owned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("cannot read [outbox] ca_file {}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .with_context(|| format!("[outbox] ca_file {} holds no PEM certificate", path.display()))?;
        b = b.add_root_certificate(cert);
    }
    b.build().context("TLS settings for [outbox]")
}

use crate::config::is_loopback_host as is_loopback;

fn envelope(from: &str, to: &[String]) -> Result<Envelope, SendError> {
    let from = from.trim().trim_start_matches('<').trim_end_matches('>');
    let from = if from.is_empty() {
        None
    } else {
        Some(from.parse::<Address>().map_err(|e| SendError::permanent(format!("invalid envelope sender {from:?}: {e}")))?)
    };
    let rcpt = to
        .iter()
        .map(|t| {
            let t = t.trim().trim_start_matches('<').trim_end_matches('>');
            t.parse::<Address>().map_err(|e| SendError::permanent(format!("invalid recipient {t:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(from, rcpt).map_err(|e| SendError::permanent(format!("invalid envelope: {e}")))
}

static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `<dir>/<name>.eml` through a temporary file in the same folder and a rename, so
/// a reader never sees half a mail. The name comes from the Message-ID: sending the same
/// mail again replaces the file instead of adding a second one.
fn write_eml(dir: &Path, bytes: &[u8]) -> Result<(), SendError> {
    use std::io::Write as _;
    let io_err = |what: &str, e: std::io::Error| SendError {
        transient: !matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem),
        message: format!("{what}: {e}"),
    };
    private_dir_all(dir).map_err(|e| io_err(&format!("cannot create {}", dir.display()), e))?;
    let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = header_message_id(bytes).map(|id| sanitise(&id)).filter(|s| !s.is_empty()).unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("mail-{nanos}-{}-{n}", std::process::id())
    });
    let target = dir.join(format!("{stem}.eml"));
    let tmp = dir.join(format!(".{stem}.{}-{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&format!("cannot write {}", target.display()), e));
    }
    Ok(())
}

/// `create_dir_all` with the folders it creates 0700 (replies are personal data; `main` sets
/// umask 077 too, this holds for library callers).
fn private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// A new file (truncated if there), 0600 when created.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// The `Message-ID` of the top header block, without the angle brackets.
fn header_message_id(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut found: Option<String> = None;
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if let Some(v) = found.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("message-id")
        {
            found = Some(value.trim().to_owned());
        }
    }
    let v = found?;
    let inner = v.trim().trim_start_matches('<');
    let inner = inner.split('>').next().unwrap_or(inner);
    Some(inner.to_owned())
}

/// Letters, digits and `.-_@+` only, at most 150 characters, never starting with a dot.
fn sanitise(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+') { c } else { '_' })
        .take(150)
        .collect();
    s.trim_start_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_from_headers() {
        let m = b"From: a@b\r\nMessage-ID:\r\n <x/../y@z>\r\n\r\nMessage-ID: <no@body>\r\n";
        assert_eq!(header_message_id(m).as_deref(), Some("x/../y@z"));
        assert_eq!(sanitise("x/../y@z"), "x_.._y@z");
        assert_eq!(sanitise("../x"), "_x");
        assert_eq!(header_message_id(b"From: a@b\r\n\r\nMessage-ID: <no@body>\r\n"), None);
    }

    #[test]
    fn plain_text_only_to_loopback() {
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost") && is_loopback("[::1]"));
        assert!(!is_loopback("smtp.qq.com") && !is_loopback("10.0.0.1"));
    }
}
