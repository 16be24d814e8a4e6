//! The byte stream under IMAP: plain TCP (loopback only) or TLS (implicit or after STARTTLS).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use anyhow::Context as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsConnector, rustls};

/// Plain or TLS, so that one `async_imap::Session` type serves all three `tls` modes; every
/// byte read goes through a [`LiteralGuard`].
#[derive(Debug)]
pub(crate) struct Stream {
    io: Io,
    guard: LiteralGuard,
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn plain(tcp: TcpStream, guard: LiteralGuard) -> Stream {
        Stream { io: Io::Plain(tcp), guard }
    }

    pub(crate) fn tls(tls: TlsStream<TcpStream>, guard: LiteralGuard) -> Stream {
        Stream { io: Io::Tls(Box::new(tls)), guard }
    }

    /// The TCP stream of a plain connection (for STARTTLS).
    pub(crate) fn into_plain(self) -> Option<TcpStream> {
        match self.io {
            Io::Plain(tcp) => Some(tcp),
            Io::Tls(_) => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        let r = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = r {
            this.guard.scan(&buf.filled()[start..])?;
        }
        r
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Watches the server's bytes for literal announcements (`{N}` at the end of a line, also
/// `~{N}`) and fails the read when N is over the limit, *before* async-imap sees the line:
/// async-imap would otherwise buffer the whole literal (up to 512 MiB) before anything could
/// look at its size, and a server that lies in RFC822.SIZE could make the daemon hold
/// hundreds of megabytes. The literal's own bytes are skipped, not scanned.
///
/// Clones share the limit and the record of a refusal, so the owner of the session can
/// change the limit per command and tell a refused literal from another I/O error.
#[derive(Debug, Clone)]
pub(crate) struct LiteralGuard {
    shared: Arc<GuardShared>,
    state: Scan,
    /// Bytes of an accepted literal still to pass unscanned.
    skip: u64,
}

#[derive(Debug)]
struct GuardShared {
    limit: AtomicU64,
    /// The size of the last literal refused (0: none).
    refused: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Text,
    Open,
    Digits(u64),
    Close(u64),
    CloseCr(u64),
}

impl LiteralGuard {
    pub(crate) fn new(limit: u64) -> LiteralGuard {
        LiteralGuard {
            shared: Arc::new(GuardShared { limit: AtomicU64::new(limit), refused: AtomicU64::new(0) }),
            state: Scan::Text,
            skip: 0,
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.shared.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_limit(&self, limit: u64) {
        self.shared.limit.store(limit, Ordering::Relaxed);
    }

    /// The announced size of a literal refused since the last call, if any.
    pub(crate) fn take_refused(&self) -> Option<u64> {
        match self.shared.refused.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let b = bytes[0];
            bytes = &bytes[1..];
            self.state = match (self.state, b) {
                (Scan::Open, b'0'..=b'9') => Scan::Digits(u64::from(b - b'0')),
                (Scan::Digits(n), b'0'..=b'9') => Scan::Digits(n.saturating_mul(10).saturating_add(u64::from(b - b'0'))),
                (Scan::Digits(n), b'}') => Scan::Close(n),
                (Scan::Close(n), b'\r') => Scan::CloseCr(n),
                (Scan::Close(n) | Scan::CloseCr(n), b'\n') => {
                    let limit = self.limit();
                    if n > limit {
                        self.shared.refused.store(n.max(1), Ordering::Relaxed);
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the server announced a literal of {n} bytes, over the limit of {limit}: refused unread"),
                        ));
                    }
                    self.skip = n;
                    Scan::Text
                }
                (_, b'{') => Scan::Open,
                _ => Scan::Text,
            };
        }
        Ok(())
    }
}

/// A TLS client config trusting the webpki roots plus, optionally, the CA certificates of a PEM
/// file (a test server's private CA). `ring` is named explicitly so that no process-wide
/// default CryptoProvider is needed.
pub(crate) fn tls_connector(ca_file: Option<&Path>) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let mut added = 0;
        let certs = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("[source] ca_file {}: cannot read", path.display()))?;
        for cert in certs {
            let cert = cert.with_context(|| format!("[source] ca_file {}: not valid PEM", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("[source] ca_file {}: unusable certificate", path.display()))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "[source] ca_file {}: no CERTIFICATE block in it", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(g: &mut LiteralGuard, chunks: &[&[u8]]) -> io::Result<()> {
        chunks.iter().try_for_each(|c| g.scan(c))
    }

    #[test]
    fn literals_over_the_limit_are_refused_at_the_announcement() {
        let mut g = LiteralGuard::new(1000);
        feed(&mut g, &[b"* 1 FETCH (UID 5 BODY[] {1000}\r\n", &[b'{'; 1000], b")\r\nA1 OK done\r\n"]).unwrap();
        assert_eq!(g.take_refused(), None);
        // Split across reads, and the literal's own bytes ({9999999}) are not looked at.
        let mut g = LiteralGuard::new(1000);
        let err = feed(&mut g, &[b"* 1 FETCH (BODY[HEADER] {5}\r\n{9999}", b")\r\n* 2 FETCH (BODY[] {9", b"00000000}", b"\r", b"\n"]).unwrap_err();
        assert!(err.to_string().contains("900000000"), "{err}");
        assert_eq!(g.take_refused(), Some(900_000_000));
        assert_eq!(g.take_refused(), None);
        // Text that only looks like a literal, and binary literals.
        let mut g = LiteralGuard::new(10);
        feed(&mut g, &[b"* OK {99} is not at the end of the line\r\n* OK {x}\r\n"]).unwrap();
        assert!(feed(&mut g, &[b"* 3 FETCH (BINARY[] ~{11}\r\n"]).is_err());
        let mut g = LiteralGuard::new(u64::MAX - 1);
        assert!(feed(&mut g, &[b"{99999999999999999999999999}\r\n"]).is_err(), "saturates, never wraps");
    }
}
