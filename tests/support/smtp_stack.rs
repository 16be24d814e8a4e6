//! A private Postfix + Dovecot for one test binary (scripts in `tests/mailstack/`), on a
//! port block derived from the process id so parallel test binaries never share ports, and
//! a tiny blocking IMAP reader to fetch what was delivered.
//!
//! Use: `let stack = SmtpStack::start();` — stopped (both daemons) when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "secret";

pub struct SmtpStack {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mailstack").join(name)
}

/// Five consecutive ports (IMAP, IMAPS, SMTP, SMTPS, submission) in 20000..65000, chosen
/// by the process id; `attempt` moves to another block when one is taken.
fn port_block(attempt: u32) -> u16 {
    let slot = (std::process::id() + attempt * 97) % 900;
    20_000 + (slot as u16) * 50
}

impl SmtpStack {
    pub fn start() -> SmtpStack {
        for tool in ["postfix", "dovecot"] {
            let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output();
            assert!(
                found.map(|o| o.status.success()).unwrap_or(false),
                "{tool} is not installed: run tests/mailstack/install.sh (needs root and apt)"
            );
        }
        let mut last_error = String::new();
        for attempt in 0..4 {
            let dir = tempfile::Builder::new().prefix("ob.").tempdir_in("/tmp").expect("temp dir");
            let base = port_block(attempt);
            let out = Command::new(script("start.sh"))
                .arg(dir.path())
                .env("IMAP_PORT", base.to_string())
                .env("IMAPS_PORT", (base + 1).to_string())
                .env("SMTP_PORT", (base + 2).to_string())
                .env("SMTPS_PORT", (base + 3).to_string())
                .env("SUBMISSION_PORT", (base + 4).to_string())
                .env_remove("MAILSTACK_PORT_OFFSET")
                .output()
                .expect("run tests/mailstack/start.sh");
            if out.status.success() {
                let text = std::fs::read_to_string(dir.path().join("env")).expect("DIR/env");
                let env = text
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                return SmtpStack { dir, env };
            }
            last_error = format!(
                "ports {base}..{}: {}{}",
                base + 4,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = Command::new(script("stop.sh")).arg(dir.path()).output();
        }
        panic!("tests/mailstack/start.sh failed four times; last: {last_error}");
    }

    pub fn port(&self, key: &str) -> u16 {
        self.env[key].parse().expect("port number")
    }

    pub fn ca_cert(&self) -> PathBuf {
        PathBuf::from(&self.env["CA_CERT"])
    }

    /// `stop-postfix.sh`, `start-postfix.sh`, … on this stack's folder.
    pub fn run(&self, helper: &str) {
        let out = Command::new(script(helper)).arg(self.dir.path()).output().expect("run helper");
        assert!(
            out.status.success(),
            "{helper} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every message in `user`'s INBOX, read over IMAP (oldest first).
    pub fn fetch_inbox(&self, user: &str) -> Vec<Vec<u8>> {
        imap_fetch_all(self.port("IMAP_PORT"), user, PASSWORD).unwrap_or_else(|e| panic!("IMAP fetch for {user}: {e}"))
    }

    /// Polls `user`'s INBOX until a message contains `needle` (e.g. its Message-ID).
    pub fn wait_for(&self, user: &str, needle: &str, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.fetch_inbox(user).into_iter().find(|m| contains(m, needle.as_bytes())) {
                return m;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default();
                panic!("no message with {needle:?} in {user}'s INBOX after {timeout:?}; postfix.log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpStack {
    fn drop(&mut self) {
        let _ = Command::new(script("stop.sh")).arg(self.dir.path()).output();
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// LOGIN, SELECT INBOX, FETCH 1:* BODY.PEEK[], LOGOUT — just enough IMAP for tests.
pub fn imap_fetch_all(port: u16, user: &str, password: &str) -> Result<Vec<Vec<u8>>, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
    if !line.starts_with(b"* OK") {
        return Err(format!("greeting {:?}", String::from_utf8_lossy(&line)));
    }
    let mut command = |tag: &str, cmd: &str| -> Result<(Vec<String>, Vec<Vec<u8>>), String> {
        write!(w, "{tag} {cmd}\r\n").map_err(|e| e.to_string())?;
        let mut lines = Vec::new();
        let mut literals = Vec::new();
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".into());
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if let Some(open) = text.rfind('{')
                && text.ends_with('}')
                && let Ok(n) = text[open + 1..text.len() - 1].parse::<usize>()
            {
                let mut lit = vec![0u8; n];
                r.read_exact(&mut lit).map_err(|e| e.to_string())?;
                literals.push(lit);
            }
            if let Some(rest) = text.strip_prefix(&format!("{tag} ")) {
                if rest.starts_with("OK") {
                    return Ok((lines, literals));
                }
                return Err(format!("{cmd}: {rest}"));
            }
            lines.push(text);
        }
    };
    command("a1", &format!("LOGIN \"{user}\" \"{password}\""))?;
    let (lines, _) = command("a2", "SELECT INBOX")?;
    let exists = lines
        .iter()
        .find_map(|l| l.strip_prefix("* ").and_then(|l| l.strip_suffix(" EXISTS")).and_then(|n| n.parse::<u32>().ok()))
        .unwrap_or(0);
    let messages = if exists == 0 { Vec::new() } else { command("a3", "FETCH 1:* BODY.PEEK[]")?.1 };
    let _ = command("a4", "LOGOUT");
    Ok(messages)
}

/// The header block of the MIME part whose headers contain `marker`, unfolded.
pub fn part_headers_with(raw: &[u8], marker: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    text.split("\n\n")
        .map(|block| block.rsplit("--").next().unwrap_or(block))
        .find(|block| block.contains(marker))
        .map(|block| block.replace("\n ", " ").replace("\n\t", " "))
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
