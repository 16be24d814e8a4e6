//! A real Dovecot (IMAP) + Postfix (SMTP) on loopback for integration tests, shared by all the
//! tests of one test binary. Include it with
//!
//! ```ignore
//! #[path = "support/mailstack.rs"]
//! mod mailstack;
//! let s = mailstack::stack();
//! ```
//!
//! - `MAILSTACK_ENV=/path/to/env` (or `MAILSTACK_DIR=/path/to/dir` holding `env`): use a stack
//!   that is already running (CI starts one with `tests/mailstack/start.sh`), never stop it.
//! - Otherwise `tests/mailstack/start.sh` runs once per test binary into a fresh `/tmp` folder,
//!   on a port block of its own (derived from the process id; the next block is tried when a
//!   port is taken), so test binaries running in parallel do not clash. A small watcher process
//!   runs `stop.sh` and removes the folder when the test binary exits (`MAILSTACK_KEEP=1`
//!   keeps the folder).
//!
//! Users `intake@example.test`, `staff@`, `unit1@` … `unit20@`, `others@`, password `secret`.
//! Tests of one binary share the stack: give each test its own user (`unitN`).
//!
//! The helpers are blocking (each runs a small async-imap session on a thread of its own, so
//! they work inside and outside a tokio runtime) and panic on failure.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use futures::TryStreamExt as _;

pub struct Stack {
    pub dir: PathBuf,
    /// Every `KEY=VALUE` of `DIR/env`.
    pub env: HashMap<String, String>,
    pub host: String,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub smtps_port: u16,
    pub submission_port: u16,
    /// The private CA that signed the servers' certificate (trust this for TLS).
    pub ca_cert: PathBuf,
    pub domain: String,
    pub password: String,
    owned: bool,
}

static STACK: OnceLock<Stack> = OnceLock::new();

/// The stack of this test binary (started on first use).
pub fn stack() -> &'static Stack {
    STACK.get_or_init(|| {
        if let Ok(file) = std::env::var("MAILSTACK_ENV") {
            return Stack::load(Path::new(&file), false);
        }
        if let Ok(dir) = std::env::var("MAILSTACK_DIR") {
            return Stack::load(&Path::new(&dir).join("env"), false);
        }
        Stack::start()
    })
}

pub fn script(name: &str) -> PathBuf {
    let dir = std::env::var_os("MAILSTACK_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailstack"));
    dir.join(name)
}

impl Stack {
    fn load(env_file: &Path, owned: bool) -> Stack {
        let text = std::fs::read_to_string(env_file)
            .unwrap_or_else(|e| panic!("mailstack: cannot read {}: {e}", env_file.display()));
        let env: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let get = |k: &str| env.get(k).cloned().unwrap_or_else(|| panic!("mailstack: {k} missing in {}", env_file.display()));
        let port = |k: &str| get(k).parse::<u16>().unwrap_or_else(|_| panic!("mailstack: {k} is not a port"));
        Stack {
            dir: PathBuf::from(get("MAILSTACK_DIR")),
            host: get("IMAP_HOST"),
            imap_port: port("IMAP_PORT"),
            imaps_port: port("IMAPS_PORT"),
            smtp_port: port("SMTP_PORT"),
            smtps_port: port("SMTPS_PORT"),
            submission_port: port("SUBMISSION_PORT"),
            ca_cert: PathBuf::from(get("CA_CERT")),
            domain: get("MAILSTACK_DOMAIN"),
            password: get("MAILSTACK_PASSWORD"),
            env,
            owned,
        }
    }

    fn start() -> Stack {
        let pid = std::process::id();
        let mut last_log = String::new();
        for attempt in 0..6u32 {
            // 6 ports per block in 11000..32000: below Linux's ephemeral range (32768+).
            let block = (pid.wrapping_add(attempt.wrapping_mul(977))) % 3500;
            let base = 11000 + block * 6;
            let dir = tempfile::Builder::new()
                .prefix("mailstack.")
                .tempdir_in("/tmp")
                .expect("mailstack: temp dir")
                .keep();
            let log_path = dir.join("start.log");
            let log = std::fs::File::create(&log_path).expect("mailstack: start.log");
            let status = Command::new(script("start.sh"))
                .arg(&dir)
                .env("IMAP_PORT", (base).to_string())
                .env("IMAPS_PORT", (base + 1).to_string())
                .env("SMTP_PORT", (base + 2).to_string())
                .env("SMTPS_PORT", (base + 3).to_string())
                .env("SUBMISSION_PORT", (base + 4).to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .status()
                .unwrap_or_else(|e| panic!("mailstack: cannot run {}: {e}", script("start.sh").display()));
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if status.success() {
                let stack = Stack::load(&dir.join("env"), true);
                stack.stop_when_we_exit();
                return stack;
            }
            let _ = Command::new(script("stop.sh")).arg(&dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
            let _ = std::fs::remove_dir_all(&dir);
            if !last_log.contains("already in use") {
                break;
            }
        }
        panic!("mailstack: start.sh failed (is Dovecot/Postfix installed? tests/mailstack/install.sh):\n{last_log}");
    }

    /// A detached watcher (own process group, so Ctrl-C of the tests does not kill it first)
    /// that stops the stack once this process is gone: a `static` is never dropped.
    fn stop_when_we_exit(&self) {
        use std::os::unix::process::CommandExt as _;
        let keep = std::env::var("MAILSTACK_KEEP").map(|v| v == "1").unwrap_or(false);
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#"while kill -0 "$0" 2>/dev/null; do sleep 0.5; done; "$1" "$2" >/dev/null 2>&1; [ "$3" = 1 ] || rm -rf "$2""#)
            .arg(std::process::id().to_string())
            .arg(script("stop.sh"))
            .arg(&self.dir)
            .arg(if keep { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
    }

    /// `local@example.test`.
    pub fn user(&self, local: &str) -> String {
        format!("{local}@{}", self.domain)
    }

    fn run_script(&self, name: &str) {
        let out = Command::new(script(name))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("mailstack: {name}: {e}"));
        assert!(
            out.status.success(),
            "mailstack: {name} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop and start Dovecot: every open IMAP session of this stack is dropped, so tests
    /// sharing the stack must not run at the same time (serialize them).
    pub fn restart_dovecot(&self) {
        self.run_script("restart-dovecot.sh");
    }
    pub fn stop_dovecot(&self) {
        self.run_script("stop-dovecot.sh");
    }
    pub fn start_dovecot(&self) {
        self.run_script("start-dovecot.sh");
    }
    pub fn stop_postfix(&self) {
        self.run_script("stop-postfix.sh");
    }
    pub fn start_postfix(&self) {
        self.run_script("start-postfix.sh");
    }

    /// APPEND `raw` to `user`'s INBOX; `internal_date` becomes the server's receipt time.
    pub fn append(&self, user: &str, raw: &[u8], internal_date: Option<DateTime<FixedOffset>>) {
        self.append_to(user, "INBOX", raw, internal_date, None)
    }

    /// APPEND to any folder, with optional flags like `(\Seen)`.
    pub fn append_to(&self, user: &str, folder: &str, raw: &[u8], internal_date: Option<DateTime<FixedOffset>>, flags: Option<&str>) {
        let (user, folder, raw, flags) = (user.to_owned(), folder.to_owned(), raw.to_vec(), flags.map(str::to_owned));
        let date = internal_date.map(|d| format!("\"{}\"", d.format("%d-%b-%Y %H:%M:%S %z")));
        let port = self.imap_port;
        let password = self.password.clone();
        blocking(async move {
            let mut s = login(port, &user, &password).await;
            s.append(&folder, flags.as_deref(), date.as_deref(), &raw).await.expect("mailstack: APPEND");
            let _ = s.logout().await;
        })
    }

    /// The UIDs in a folder, ascending (empty when the folder does not exist).
    pub fn mailbox_uids(&self, user: &str, folder: &str) -> Vec<u32> {
        self.fetch_with_flags(user, folder).into_iter().map(|(uid, _, _)| uid).collect()
    }

    /// Every message of a folder, by UID.
    pub fn fetch_all(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        self.fetch_with_flags(user, folder).into_iter().map(|(_, raw, _)| raw).collect()
    }

    /// (UID, flags) of every message of a folder.
    pub fn flags(&self, user: &str, folder: &str) -> Vec<(u32, Vec<String>)> {
        self.fetch_with_flags(user, folder).into_iter().map(|(uid, _, flags)| (uid, flags)).collect()
    }

    /// (UID, raw, flags) of every message of a folder, by UID.
    pub fn fetch_with_flags(&self, user: &str, folder: &str) -> Vec<(u32, Vec<u8>, Vec<String>)> {
        let (user, folder, password, port) = (user.to_owned(), folder.to_owned(), self.password.clone(), self.imap_port);
        blocking(async move {
            let mut s = login(port, &user, &password).await;
            let mut out = Vec::new();
            if s.examine(&folder).await.is_ok() {
                let fetches: Vec<_> = s
                    .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
                    .await
                    .expect("mailstack: UID FETCH")
                    .try_collect()
                    .await
                    .expect("mailstack: UID FETCH");
                for f in &fetches {
                    let flags = f.flags().map(flag_name).collect();
                    out.push((f.uid.expect("uid"), f.body().unwrap_or_default().to_vec(), flags));
                }
            }
            let _ = s.logout().await;
            out.sort_by_key(|m| m.0);
            out
        })
    }

    /// Wait until `user`'s INBOX holds at least `count` messages; returns them (panics after
    /// `timeout`).
    pub fn wait_for_mail(&self, user: &str, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let all = self.fetch_all(user, "INBOX");
            if all.len() >= count {
                return all;
            }
            assert!(Instant::now() < deadline, "mailstack: {user} has {} of {count} messages after {timeout:?}", all.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Delete every message of a folder.
    /// Empty the folders a test of the daemon reads (INBOX, Processed, Failed) of each user:
    /// one session per user.
    pub fn empty(&self, users: &[&String]) {
        for user in users {
            let (user, password, port) = (user.to_string(), self.password.clone(), self.imap_port);
            blocking(async move {
                let mut s = login(port, &user, &password).await;
                for folder in ["INBOX", "Processed", "Failed"] {
                    if s.select(folder).await.is_ok() {
                        let _ = s.run_command_and_check_ok("STORE 1:* +FLAGS.SILENT (\\Deleted)").await;
                        let _ = s.run_command_and_check_ok("EXPUNGE").await;
                    }
                }
                let _ = s.logout().await;
            });
        }
    }

}

async fn login(port: u16, user: &str, password: &str) -> async_imap::Session<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("mailstack: connect to IMAP");
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.expect("mailstack: greeting").expect("mailstack: greeting");
    client.login(user, password).await.map_err(|(e, _)| e).expect("mailstack: LOGIN")
}

fn flag_name(f: async_imap::types::Flag<'_>) -> String {
    use async_imap::types::Flag;
    match f {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(c) => c.into_owned(),
    }
}

/// Run a future to completion on a fresh current-thread runtime on its own thread.
fn blocking<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let handle = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(fut)
    });
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
