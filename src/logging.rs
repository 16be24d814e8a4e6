//! Log output that never carries a password, whatever `RUST_LOG` says.
//!
//! Two layers, because an administrator raises the level exactly when something is wrong:
//!
//! 1. **Caps on the dependencies that print credentials.** lettre logs the SMTP dialogue at
//!    `debug` (`AUTH PLAIN <base64 of \0user\0password>`, the whole message); async-imap logs
//!    every command at `trace` (`LOGIN "user" "password"`, the `AUTHENTICATE` response).
//!    Their records above [`DEPENDENCY_CAP`] are dropped by a filter that is combined with
//!    (not overridable by) `RUST_LOG`: `RUST_LOG=lettre=trace` still shows `info` at most.
//! 2. **A scrubber on every line written.** Each secret [`crate::config::load_secret`] reads
//!    is registered here; the writer replaces it, and the base64 forms it takes inside an
//!    `AUTH PLAIN`/`AUTH LOGIN` exchange, with `***` before the line reaches stderr. This
//!    also covers our own code and any crate not capped above.
//!
//! What each level shows is listed in `deploy/README.md` ("Logs").

use std::io::Write;
use std::sync::RwLock;

use base64::Engine as _;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt as _, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// The most verbose level let through from the crates that log credentials or mail content.
pub const DEPENDENCY_CAP: LevelFilter = LevelFilter::INFO;

/// Crates whose verbose records carry credentials (see the module documentation).
pub const CAPPED_TARGETS: &[&str] = &["lettre", "async_imap", "imap_proto"];

/// The filter of `RUST_LOG` (or `default` when unset or invalid), with [`CAPPED_TARGETS`]
/// capped at [`DEPENDENCY_CAP`].
///
/// `RUST_LOG` takes comma-separated `level` and `target=level` directives (`info`,
/// `studio_intake=debug,sqlx=warn`). tracing-subscriber's `EnvFilter` would also take span and
/// field filters, but it brings a regex engine into the build for a syntax nobody here uses;
/// such a directive is refused and `default` applies (with a line saying so).
pub fn filter(default: &str) -> impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + Send + Sync + use<> {
    let fallback = || default.parse::<Targets>().unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let targets = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("RUST_LOG={spec:?} not understood ({e}): using {default:?}");
            fallback()
        }),
        _ => fallback(),
    };
    capped(targets)
}

/// `env` and the caps of [`CAPPED_TARGETS`]: an event passes only when both let it.
pub fn capped(env: Targets) -> impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + Send + Sync {
    let caps = CAPPED_TARGETS
        .iter()
        .fold(Targets::new().with_default(LevelFilter::TRACE), |t, target| t.with_target(*target, DEPENDENCY_CAP));
    env.and(caps)
}

/// Installs the process-wide subscriber: `RUST_LOG` (else `default`), capped, to stderr
/// through the scrubber. Also routes `log` records (async-imap uses `log`) through it.
pub fn init(default: &str) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer().with_writer(ScrubbedStderr).with_ansi(ansi).with_filter(filter(default));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

static SECRETS: RwLock<Vec<Vec<u8>>> = RwLock::new(Vec::new());

/// Remembers `secret` so that no log line shows it: the value itself, its `{:?}` form (a
/// quoted command logged with `Debug` escapes `"` and `\`), and the base64 runs that only
/// depend on its bytes whatever comes before or after it (an `AUTH PLAIN` blob
/// `base64(\0user\0password)` contains one of them, whatever the user name). Values under 4
/// bytes are not registered (scrubbing them would garble every line; the caps still hold),
/// values under 6 bytes only in clear.
pub fn register_secret(secret: &str) {
    let bytes = secret.as_bytes();
    if bytes.len() < 4 {
        return;
    }
    let mut forms = vec![bytes.to_vec()];
    // As an IMAP quoted string (`\` and `"` escaped), and either printed with `{:?}`.
    let quoted = secret.replace('\\', "\\\\").replace('"', "\\\"");
    for form in [secret.escape_debug().to_string(), quoted.escape_debug().to_string(), quoted] {
        if form != secret {
            forms.push(form.into_bytes());
        }
    }
    if bytes.len() >= 6 {
        let b64 = base64::engine::general_purpose::STANDARD;
        // The secret starting at each of the three positions of a base64 group: skip the
        // bytes that share a group with unknown neighbours, encode the whole groups after.
        for skip in 0..3 {
            let rest = &bytes[skip..];
            let whole = rest.len() / 3 * 3;
            if whole >= 3 {
                forms.push(b64.encode(&rest[..whole]).into_bytes());
            }
        }
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for f in forms {
        if !all.contains(&f) {
            all.push(f);
        }
    }
    // Longest first, so a form inside another is not replaced halfway.
    all.sort_by_key(|f| std::cmp::Reverse(f.len()));
}

/// `line` with every registered secret form replaced by `***`.
pub fn scrub(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if secrets.is_empty() || !secrets.iter().any(|s| find(line, s).is_some()) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = line.to_vec();
    for s in secrets.iter() {
        let mut from = 0;
        while let Some(i) = find(&out[from..], s) {
            let at = from + i;
            out.splice(at..at + s.len(), b"***".iter().copied());
            from = at + 3;
        }
    }
    std::borrow::Cow::Owned(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// stderr through [`scrub`]. The fmt layer writes each event with one `write_all`, so a
/// secret is never split across two calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedStderr
    }
}

impl Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(&scrub(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn credential_printing_crates_stay_at_info_whatever_is_asked() {
        let out = Capture::default();
        let spec = "trace,lettre=trace,lettre::transport::smtp::client=trace,async_imap=trace,async_imap::imap_stream=trace";
        let layer = tracing_subscriber::fmt::layer().with_writer(out.clone()).with_ansi(false).with_filter(capped(spec.parse::<Targets>().unwrap()));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "lettre::transport::smtp::client::async_connection", "Wrote: AUTH PLAIN AGxldHRyZQ==");
            tracing::trace!(target: "async_imap::imap_stream", "encode: LOGIN \"u\" \"p\"");
            tracing::debug!(target: "imap_proto::parser", "literal");
            tracing::info!(target: "lettre::transport::smtp", "an info line of lettre");
            tracing::trace!(target: "studio_intake::mailbox::imap", "our own trace line");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("AUTH PLAIN") && !text.contains("LOGIN") && !text.contains("literal"), "{text}");
        assert!(text.contains("an info line of lettre") && text.contains("our own trace line"), "{text}");
    }

    #[test]
    fn secrets_and_their_auth_forms_are_scrubbed() {
        let pw = "Canary-Logs-5f1c2e";
        register_secret(pw);
        let b64 = base64::engine::general_purpose::STANDARD;
        for user in ["", "a", "ab", "intake@example.test", "x@y.cn"] {
            let plain = b64.encode(format!("\0{user}\0{pw}"));
            let with_authz = b64.encode(format!("{user}\0{user}\0{pw}"));
            let login = b64.encode(pw);
            for line in [
                format!("Wrote: AUTH PLAIN {plain}\r\n"),
                format!("Wrote: {with_authz}\r\n"),
                format!("Wrote: {login}\r\n"),
                format!("encode: input: Some(\"A0001\"), Ok(\"LOGIN \\\"{user}\\\" \\\"{pw}\\\"\")"),
            ] {
                let out = scrub(line.as_bytes());
                let out = String::from_utf8_lossy(&out);
                assert!(!out.contains(pw), "{out}");
                for form in [&plain, &with_authz, &login] {
                    assert!(!out.contains(form.as_str()), "{user}: {out}");
                }
                // The part that depends only on the password is gone.
                assert!(out.contains("***"), "{out}");
            }
        }
        assert_eq!(&*scrub(b"nothing to see"), b"nothing to see");
        // Escaped as Debug prints it, and too short to scrub without garbling every line.
        register_secret("pa\"ss\\wörd-2");
        let line = format!("{:?}", "LOGIN \"u\" \"pa\\\"ss\\\\wörd-2\"");
        assert!(!String::from_utf8_lossy(&scrub(line.as_bytes())).contains("wörd"), "{line}");
        register_secret("abc");
        assert_eq!(&*scrub(b"abcdef"), b"abcdef");
    }
}
