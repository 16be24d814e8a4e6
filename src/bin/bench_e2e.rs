//! End-to-end benchmark through a real Dovecot (IMAP, IDLE) and Postfix (SMTP): N generated
//! submissions are APPENDed to the department mailbox while the daemon runs in-process; the
//! replies are picked up as Dovecot delivers them into the senders' Maildirs and matched to
//! the submissions by `In-Reply-To`.
//!
//! ```text
//! cargo run --release --features fixtures --bin bench-e2e -- [N=1000] [RATE=0]
//! cargo run --release --features fixtures --bin bench-e2e -- --soak SECS [RATE=5]
//! ```
//!
//! `BENCH_PG_URL=postgres://…/postgres`: the daemon's store is a fresh database on that server
//! (created, dropped at the end) instead of SQLite in a temp dir.
//!
//! `RATE` is the APPEND pace in mails/s (0 = as fast as one IMAP session goes). Prints total
//! time, throughput, per-message latency APPEND → reply delivered (p50/p90/p99/max), the reply
//! count (the exit status is non-zero unless it equals N) and peak memory (VmHWM).
//!
//! `--soak SECS`: mail arrives continuously at `RATE` for `SECS` seconds, one in
//! [`HOSTILE_EVERY`] from the hostile corpus (`fixtures::nasty_mails`); the daemon's memory
//! (VmRSS) is sampled every [`SAMPLE_EVERY`] and printed as it goes. At the end: every mail
//! answered once, none left in the inbox, every raw message recorded and no reply waiting,
//! and the memory trend (the exit status is non-zero unless all hold and memory is flat).
//!
//! Needs Dovecot and Postfix installed (`bash tests/mailstack/install.sh`) and root (the stack
//! stores mail as uid 65534). The stack runs in a fresh `/tmp/mailstack-bench.*` folder on its
//! own port block and is stopped at the end, on error, and (through a detached watcher) when
//! this process is killed. `BENCH_KEEP=1` keeps the folder; `BENCH_TIMEOUT_SECS` (900) bounds
//! the whole run; `RUST_LOG` shows the daemon's logs (default: warnings only).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use studio_intake::config::{Config, OutboxKind, SourceKind, Tls, Unit, UnitKind};
use studio_intake::core::mime;
use studio_intake::fixtures::{self, MailClient, UnitSpec};

/// Distinct senders (`unit1@` … `unit20@`, users every stack has).
const SENDERS: usize = 20;
const DOMAIN: &str = "example.test";
const PASSWORD_ENV: &str = "BENCH_E2E_PASSWORD";
/// INTERNALDATE of every APPEND: inside the campaign (deadline 2020-09-25), so no `late`.
const INTERNALDATE: &str = "\"20-Sep-2020 10:00:00 +0800\"";
/// In a soak, every n-th mail is a hostile one.
const HOSTILE_EVERY: usize = 10;
/// In a soak, the memory sampling interval.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// What the run is: a benchmark of N mails, or a soak of a duration.
#[derive(Clone, Copy)]
enum Mode {
    Bench,
    Soak,
}

fn main() -> ExitCode {
    // As the daemon's own main does (the daemon runs in this process).
    studio_intake::memory::tune_allocator();
    let mut args = std::env::args().skip(1).peekable();
    let mode = if args.peek().is_some_and(|a| a == "--soak") {
        args.next();
        Mode::Soak
    } else {
        Mode::Bench
    };
    let first: Option<f64> = match args.next().map(|s| s.parse::<f64>()) {
        None => None,
        Some(Ok(v)) if v > 0.0 => Some(v),
        _ => return usage(),
    };
    let rate: f64 = match args.next().map(|s| s.parse()) {
        None if matches!(mode, Mode::Soak) => 5.0,
        None => 0.0,
        Some(Ok(r)) if r >= 0.0 => r,
        _ => return usage(),
    };
    let n = match mode {
        Mode::Bench => first.map_or(1000, |v| v as usize),
        Mode::Soak if rate > 0.0 => (first.unwrap_or(300.0) * rate).ceil() as usize,
        Mode::Soak => return usage(),
    };
    studio_intake::logging::init("warn");
    let timeout = Duration::from_secs(std::env::var("BENCH_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(900));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(bench(n, rate, timeout, mode)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench-e2e: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A database of its own on the PostgreSQL server of `BENCH_PG_URL`, for one run.
struct FreshPg {
    admin: String,
    name: String,
    url: String,
}

impl FreshPg {
    async fn create(admin: &str) -> anyhow::Result<FreshPg> {
        use sqlx::Connection as _;
        let name = format!("bench_e2e_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(admin).await.context("BENCH_PG_URL: cannot connect")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&mut conn).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        let base = admin.split('?').next().unwrap_or(admin);
        let url = match base.rfind('/') {
            Some(i) if i > "postgres://".len() => format!("{}/{name}", &base[..i]),
            _ => format!("{base}/{name}"),
        };
        Ok(FreshPg { admin: admin.to_owned(), name, url })
    }

    async fn drop(self) {
        use sqlx::Connection as _;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).execute(&mut conn).await;
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: bench-e2e [N=1000] [RATE mails/s, 0 = as fast as possible]");
    eprintln!("       bench-e2e --soak SECS [RATE mails/s > 0, default 5]");
    ExitCode::from(2)
}

async fn bench(n: usize, rate: f64, timeout: Duration, mode: Mode) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    let t0 = Instant::now();
    let stack = tokio::task::spawn_blocking(Stack::start).await??;
    println!("mail stack: {} (IMAP {}, SMTP {}), ready in {:.1} s", stack.dir.display(), stack.imap_port, stack.smtp_port, t0.elapsed().as_secs_f64());

    // One template per sender; each APPEND gets a Message-ID of its own (so its bytes, hash and
    // reply are its own). A sender's later mails are resubmissions of the same studios.
    let clients = [MailClient::Outlook, MailClient::Foxmail, MailClient::QqMail, MailClient::AppleMail, MailClient::Webmail163, MailClient::Wps];
    let units: Vec<UnitSpec> = (0..SENDERS)
        .map(|k| {
            let mut u = UnitSpec::sample(k, 1 + k % 2);
            u.sender = format!("unit{}@{DOMAIN}", k + 1);
            u
        })
        .collect();
    let templates: Vec<Vec<u8>> = units.iter().enumerate().map(|(k, u)| fixtures::submission(u, clients[k % clients.len()])).collect();
    let sizes: Vec<usize> = templates.iter().map(Vec::len).collect();
    // Hostile mails that get a reply, from the first sender (the over-size one would only
    // measure the APPEND of 50 MiB).
    let hostile: Vec<Vec<u8>> = match mode {
        Mode::Bench => Vec::new(),
        Mode::Soak => fixtures::nasty_mails(&units[0].sender, &format!("intake@{DOMAIN}"), 0)
            .into_iter()
            .filter(|m| m.answered && m.name != "too-large")
            .map(|m| m.raw)
            .collect(),
    };
    let template = |i: usize| -> &[u8] {
        if !hostile.is_empty() && i % HOSTILE_EVERY == HOSTILE_EVERY - 1 {
            &hostile[(i / HOSTILE_EVERY) % hostile.len()]
        } else {
            &templates[i % SENDERS]
        }
    };
    println!(
        "submissions: {n} from {SENDERS} senders, {:.0} KiB average ({}..{} KiB), {} studios per mail on average",
        sizes.iter().sum::<usize>() as f64 / sizes.len() as f64 / 1024.0,
        sizes.iter().min().unwrap() / 1024,
        sizes.iter().max().unwrap() / 1024,
        (0..n).map(|i| units[i % SENDERS].studios.len()).sum::<usize>() as f64 / n as f64,
    );

    let db_dir = tempfile::Builder::new().prefix("bench-e2e-db.").tempdir().context("temp dir for the database")?;
    let mut config = daemon_config(&stack, &units, &db_dir.path().join("intake.db"));
    // BENCH_PG_URL: the same run on a fresh PostgreSQL database of that server (dropped after).
    let postgres = match std::env::var("BENCH_PG_URL") {
        Ok(url) if !url.is_empty() => Some(FreshPg::create(&url).await?),
        _ => None,
    };
    if let Some(pg) = &postgres {
        config.database.url = pg.url.clone();
    }
    // SAFETY: set before the daemon (the only reader) starts; no other thread touches the env.
    unsafe { std::env::set_var(PASSWORD_ENV, &stack.password) };

    let rss_before = proc_status("VmRSS");
    let hwm_before = proc_status("VmHWM");
    println!("memory before the daemon starts: VmRSS {} (VmHWM {})", fmt_kb(rss_before), fmt_kb(hwm_before));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut daemon = tokio::spawn(studio_intake::daemon::run(config, async move {
        let _ = stop_rx.await;
    }));
    // Let it connect, do its first (empty) pass and enter IDLE.
    tokio::select! {
        r = &mut daemon => bail!("the daemon stopped before the benchmark began: {}", describe(r)),
        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
    }

    // Replies are seen as files in the senders' Maildirs (new/, or cur/ once a client read them).
    let delivered: Arc<Mutex<Delivered>> = Arc::default();
    let watch_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let dirs: Vec<PathBuf> = units.iter().map(|u| stack.maildir(&u.sender)).collect();
        let (delivered, stop) = (delivered.clone(), watch_stop.clone());
        std::thread::spawn(move || watch_maildirs(&dirs, &delivered, &stop))
    };

    // Memory samples (seconds since the start, VmRSS kB), printed as they come in a soak.
    let samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        let delivered = delivered.clone();
        let soak = matches!(mode, Mode::Soak);
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                let Some(rss) = proc_status("VmRSS") else { return };
                let at = t0.elapsed().as_secs_f64();
                samples.lock().unwrap().push((at, rss));
                if soak {
                    println!("  t={at:>5.0} s  VmRSS {:>6.1} MiB  replies so far {}", rss as f64 / 1024.0, delivered.lock().unwrap().first.len());
                }
            }
        })
    };

    // APPEND, one IMAP session, recording when each APPEND completed.
    let run_id = format!("{:x}", std::process::id());
    let mut appended: HashMap<String, Instant> = HashMap::with_capacity(n);
    let mut session = imap_login(stack.imap_port, &format!("intake@{DOMAIN}"), &stack.password).await?;
    let start = Instant::now();
    for i in 0..n {
        if rate > 0.0 {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        }
        if Instant::now() > deadline {
            bail!("timeout after {timeout:?} while appending ({i} of {n} appended)");
        }
        if daemon.is_finished() {
            bail!("the daemon stopped while mail was being appended: {}", describe((&mut daemon).await));
        }
        let id = format!("bench-{i}-{run_id}@bench.{DOMAIN}");
        let raw = with_message_id(template(i), &format!("<{id}>"));
        tokio::time::timeout(Duration::from_secs(60), session.append("INBOX", None, Some(INTERNALDATE), &raw))
            .await
            .context("APPEND timed out")?
            .with_context(|| format!("APPEND of submission {i}"))?;
        appended.insert(id, Instant::now());
    }
    let append_secs = start.elapsed().as_secs_f64();
    let _ = session.logout().await;
    println!("appended {n} in {append_secs:.1} s ({:.1} mails/s); waiting for the replies…", n as f64 / append_secs);

    // Wait for every reply (or the deadline, or a dead daemon).
    let mut last_report = Instant::now();
    let outcome = loop {
        let got = delivered.lock().unwrap().matched(&appended);
        if got >= n {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err(format!("timeout after {timeout:?}: {got} of {n} replies delivered"));
        }
        if daemon.is_finished() {
            break Err(format!("the daemon stopped with {got} of {n} replies delivered: {}", describe((&mut daemon).await)));
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  … {got} of {n} replies after {:.0} s", start.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let total = start.elapsed();
    // A little longer, to catch duplicate replies that would arrive right behind.
    if outcome.is_ok() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    watch_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    let peak = proc_status("VmHWM");

    let _ = stop_tx.send(());
    if !daemon.is_finished() {
        match tokio::time::timeout(Duration::from_secs(30), &mut daemon).await {
            Ok(r) => {
                if let Err(e) = r.map_err(anyhow::Error::from).and_then(|r| r) {
                    eprintln!("bench-e2e: the daemon ended with an error: {e:#}");
                }
            }
            Err(_) => {
                eprintln!("bench-e2e: the daemon did not stop within 30 s of the shutdown signal");
                daemon.abort();
            }
        }
    }

    sampler.abort();
    // What a soak must not leave, read before the figures (no lock held across the await).
    let left = match mode {
        Mode::Bench => Vec::new(),
        Mode::Soak => left_behind(&stack, &db_dir.path().join("intake.db"), n).await?,
    };

    // Figures.
    let d = delivered.lock().unwrap();
    let mut lat: Vec<f64> = appended.iter().filter_map(|(id, t)| d.first.get(id).map(|r| r.at.saturating_duration_since(*t).as_secs_f64())).collect();
    lat.sort_by(f64::total_cmp);
    let replies = lat.len();
    let accepted = appended.keys().filter_map(|id| d.first.get(id)).filter(|r| r.accepted).count();
    println!();
    println!("== bench-e2e: {n} submissions through Dovecot (IMAP IDLE) → studio-intake → Postfix → Dovecot LMTP ==");
    println!("append pace:          {}", if rate > 0.0 { format!("{rate} mails/s") } else { "as fast as possible (1 IMAP session)".into() });
    println!("append phase:         {append_secs:.2} s ({:.1} mails/s)", n as f64 / append_secs);
    println!("total time:           {:.2} s (first APPEND → last reply delivered)", total.as_secs_f64());
    println!("throughput:           {:.2} mails/s end to end", replies as f64 / total.as_secs_f64());
    if !lat.is_empty() {
        let mean = lat.iter().sum::<f64>() / lat.len() as f64;
        println!(
            "latency APPEND→reply: p50 {:.2} s  p90 {:.2} s  p99 {:.2} s  max {:.2} s  (min {:.2} s, mean {:.2} s)",
            pct(&lat, 50.0),
            pct(&lat, 90.0),
            pct(&lat, 99.0),
            lat[lat.len() - 1],
            lat[0],
            mean
        );
    }
    println!("replies delivered:    {replies} of {n} ({accepted} 审核通过, {} other verdicts)", replies - accepted);
    if d.duplicates > 0 || d.unmatched > 0 || d.unreadable > 0 {
        println!("odd mail:             {} duplicate replies, {} without a known In-Reply-To, {} unreadable", d.duplicates, d.unmatched, d.unreadable);
    }
    println!("memory:               VmRSS before the daemon {}; peak VmHWM {} (+{} for the daemon and the run)", fmt_kb(rss_before), fmt_kb(peak), fmt_kb(match (peak, rss_before) {
        (Some(p), Some(b)) => Some(p.saturating_sub(b)),
        _ => None,
    }));
    println!("                      (one process: the VmHWM includes the bench's {SENDERS} templates, {:.1} MiB, and its APPEND buffers)", sizes.iter().sum::<usize>() as f64 / 1048576.0);
    println!(
        "machine:              {} CPUs; {}; IMAP and SMTP plain on 127.0.0.1",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        if postgres.is_some() { "PostgreSQL on 127.0.0.1 (BENCH_PG_URL)" } else { "SQLite in a temp dir" }
    );
    if let Some(pg) = postgres {
        pg.drop().await;
    }
    drop(d);
    let soak_ok = match mode {
        Mode::Bench => true,
        Mode::Soak => {
            let memory_flat = print_memory_trend(&samples.lock().unwrap());
            println!("left behind:          {}", if left.is_empty() { "nothing (inbox empty, every mail recorded, no reply waiting, none failed)".into() } else { left.join("; ") });
            memory_flat && left.is_empty()
        }
    };
    drop(stack); // stop.sh, before the exit status is decided
    match outcome {
        Ok(()) if !soak_ok => {
            eprintln!("bench-e2e: FAILED: the soak left something behind or memory grew (see above)");
            Ok(false)
        }
        Ok(()) if replies == n && d_ok(&delivered) => Ok(true),
        Ok(()) => {
            eprintln!("bench-e2e: FAILED: odd replies (see above)");
            Ok(false)
        }
        Err(msg) => {
            eprintln!("bench-e2e: FAILED: {msg}");
            Ok(false)
        }
    }
}

/// Prints the VmRSS samples after the first minute (warm-up: pools, caches, the first
/// converter) as a trend; flat when the median of the last third of the run is within 5 %
/// (at least 4 MiB) of the median of the first third. Medians, not peaks: a sample taken
/// while a zip bomb is being inflated shows work in hand, not memory kept.
fn print_memory_trend(samples: &[(f64, u64)]) -> bool {
    let warm: Vec<(f64, f64)> = samples.iter().filter(|(t, _)| *t >= 60.0).map(|&(t, kb)| (t, kb as f64 / 1024.0)).collect();
    if warm.len() < 6 {
        println!("memory trend:         too short to judge ({} samples after the first minute)", warm.len());
        return true;
    }
    let third = warm.len() / 3;
    let peak = |xs: &[(f64, f64)]| xs.iter().map(|x| x.1).fold(0.0, f64::max);
    let median = |xs: &[(f64, f64)]| {
        let mut v: Vec<f64> = xs.iter().map(|x| x.1).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (first, last) = (median(&warm[..third]), median(&warm[2 * third..]));
    // Least-squares slope, MiB per minute.
    let n = warm.len() as f64;
    let (mt, mr) = (warm.iter().map(|x| x.0).sum::<f64>() / n, warm.iter().map(|x| x.1).sum::<f64>() / n);
    let cov: f64 = warm.iter().map(|x| (x.0 - mt) * (x.1 - mr)).sum();
    let var: f64 = warm.iter().map(|x| (x.0 - mt).powi(2)).sum();
    let slope = if var > 0.0 { cov / var * 60.0 } else { 0.0 };
    let flat = last <= first + (first * 0.05).max(4.0);
    println!(
        "memory trend:         VmRSS after warm-up {:.1}..{:.1} MiB; median of the first third {first:.1} MiB, of the last third {last:.1} MiB; slope {slope:+.2} MiB/min → {}",
        warm.iter().map(|x| x.1).fold(f64::MAX, f64::min),
        peak(&warm),
        if flat { "flat" } else { "GROWING" }
    );
    flat
}

/// What a soak must not leave: mail in the department inbox, raw messages without a record
/// or set aside as failed, replies not yet sent.
async fn left_behind(stack: &Stack, db: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let mut left = Vec::new();
    let inbox = stack.maildir(&format!("intake@{DOMAIN}"));
    let in_inbox: usize = ["new", "cur"].iter().map(|d| std::fs::read_dir(inbox.join(d)).map(|e| e.count()).unwrap_or(0)).sum();
    if in_inbox > 0 {
        left.push(format!("{in_inbox} mails still in the inbox"));
    }
    let store = studio_intake::store::Store::connect(&format!("sqlite://{}", db.display()), 1).await?;
    let counts = store.counts().await?;
    if counts.mails != n as i64 || counts.submissions != n as i64 {
        left.push(format!("{} raw messages and {} records for {n} mails", counts.mails, counts.submissions));
    }
    let failed = store.failed_raws().await?.len();
    if failed > 0 {
        left.push(format!("{failed} raw messages set aside as failed"));
    }
    let waiting = store.outbox_depth().await?;
    if waiting > 0 {
        left.push(format!("{waiting} replies still in the outbox"));
    }
    Ok(left)
}

fn d_ok(d: &Mutex<Delivered>) -> bool {
    let d = d.lock().unwrap();
    d.duplicates == 0
}

fn describe(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "it returned".into(),
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => format!("{e}"),
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn daemon_config(stack: &Stack, units: &[UnitSpec], db: &Path) -> Config {
    let mut c = Config::builtin();
    c.source.kind = SourceKind::Imap;
    c.source.host = "127.0.0.1".into();
    c.source.port = stack.imap_port;
    c.source.tls = Tls::None;
    c.source.username = format!("intake@{DOMAIN}");
    c.source.password_env = Some(PASSWORD_ENV.into());
    c.source.processed_folder = Some("Processed".into());
    c.source.poll_secs = 2;
    c.source.command_timeout_secs = 30;
    c.outbox.kind = OutboxKind::Smtp;
    c.outbox.host = "127.0.0.1".into();
    c.outbox.port = stack.smtp_port;
    c.outbox.tls = Tls::None;
    c.outbox.from = format!("乐山市总工会经保女工部 <intake@{DOMAIN}>");
    c.outbox.retry_base_secs = 1;
    c.outbox.replies_per_sender_per_hour = 1_000_000;
    c.outbox.replies_per_hour = 1_000_000;
    c.database.url = format!("sqlite://{}", db.display());
    // Samples of the same county share its union's name: one unit, several senders.
    let mut by_name: Vec<(String, Vec<String>)> = Vec::new();
    for u in units {
        match by_name.iter_mut().find(|(name, _)| *name == u.unit) {
            Some((_, senders)) => senders.push(u.sender.clone()),
            None => by_name.push((u.unit.clone(), vec![u.sender.clone()])),
        }
    }
    for (name, senders) in by_name {
        let kind = c.units.iter().find(|x| x.name == name).map(|x| x.kind).unwrap_or(UnitKind::County);
        c.units.retain(|x| x.name != name);
        c.units.push(Unit { name, kind, senders });
    }
    c
}

/// Replace the top-level `Message-ID` header (or add one).
fn with_message_id(raw: &[u8], id: &str) -> Vec<u8> {
    let head_end = find(raw, b"\r\n\r\n").or_else(|| find(raw, b"\n\n")).unwrap_or(raw.len());
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut pos = 0;
    let mut replaced = false;
    while pos < head_end {
        let end = raw[pos..].iter().position(|&b| b == b'\n').map(|k| pos + k + 1).unwrap_or(raw.len());
        let line = &raw[pos..end];
        if !replaced && line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            out.extend_from_slice(format!("Message-ID: {id}").as_bytes());
            out.extend_from_slice(if line.ends_with(b"\r\n") { b"\r\n" } else { b"\n" });
            replaced = true;
        } else {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    out.extend_from_slice(&raw[pos..]);
    if !replaced {
        let mut with = format!("Message-ID: {id}\r\n").into_bytes();
        with.extend_from_slice(&out);
        return with;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---- replies, as Dovecot writes them -----------------------------------------------------

struct Reply {
    at: Instant,
    accepted: bool,
}

#[derive(Default)]
struct Delivered {
    /// By the submission's Message-ID (no angle brackets): the first reply seen.
    first: HashMap<String, Reply>,
    duplicates: usize,
    unmatched: usize,
    unreadable: usize,
}

impl Delivered {
    fn matched(&self, appended: &HashMap<String, Instant>) -> usize {
        self.first.keys().filter(|id| appended.contains_key(*id)).count()
    }
}

fn watch_maildirs(dirs: &[PathBuf], delivered: &Mutex<Delivered>, stop: &std::sync::atomic::AtomicBool) {
    let mut seen: HashSet<String> = HashSet::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for dir in dirs {
            for sub in ["new", "cur"] {
                let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
                for e in entries.flatten() {
                    // The base name is stable when a file moves new/ → cur/ (":2,S" is added).
                    let name = e.file_name().to_string_lossy().split(':').next().unwrap_or_default().to_owned();
                    if seen.contains(&name) {
                        continue;
                    }
                    let at = Instant::now();
                    let Ok(bytes) = std::fs::read(e.path()) else { continue }; // moved meanwhile: next round
                    seen.insert(name);
                    let mut d = delivered.lock().unwrap();
                    match mime::parse(&bytes, &Default::default()) {
                        Ok(m) => match m.in_reply_to.as_deref().map(|s| s.trim().trim_matches(|c| c == '<' || c == '>').to_owned()) {
                            Some(id) if !id.is_empty() => {
                                let accepted = m.subject.contains("审核通过");
                                if d.first.contains_key(&id) {
                                    d.duplicates += 1;
                                } else {
                                    d.first.insert(id, Reply { at, accepted });
                                }
                            }
                            _ => d.unmatched += 1,
                        },
                        Err(_) => d.unreadable += 1,
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- the mail stack -------------------------------------------------------------------------

struct Stack {
    dir: PathBuf,
    imap_port: u16,
    smtp_port: u16,
    password: String,
    maildir_root: PathBuf,
    keep: bool,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailstack").join(name)
}

impl Stack {
    /// `tests/mailstack/start.sh` into a fresh `/tmp` folder on a port block derived from the
    /// process id (the next block is tried when a port is taken).
    fn start() -> anyhow::Result<Stack> {
        let keep = std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1");
        let pid = std::process::id();
        let mut last_log = String::new();
        for attempt in 0..6u32 {
            // 6 ports per block in 11000..32000, below Linux's ephemeral range.
            let block = (pid.wrapping_mul(7).wrapping_add(attempt.wrapping_mul(977)) + 1733) % 3500;
            let base = 11000 + block * 6;
            let dir = tempfile::Builder::new().prefix("mailstack-bench.").tempdir_in("/tmp").context("temp dir")?.keep();
            let log_path = dir.join("start.log");
            let log = std::fs::File::create(&log_path)?;
            let status = Command::new(script("start.sh"))
                .arg(&dir)
                .env("IMAP_PORT", base.to_string())
                .env("IMAPS_PORT", (base + 1).to_string())
                .env("SMTP_PORT", (base + 2).to_string())
                .env("SMTPS_PORT", (base + 3).to_string())
                .env("SUBMISSION_PORT", (base + 4).to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .status()
                .with_context(|| format!("cannot run {}", script("start.sh").display()))?;
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if status.success() {
                let env: HashMap<String, String> = std::fs::read_to_string(dir.join("env"))?
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                let get = |k: &str| env.get(k).cloned().with_context(|| format!("{k} missing in {}/env", dir.display()));
                let stack = Stack {
                    imap_port: get("IMAP_PORT")?.parse()?,
                    smtp_port: get("SMTP_PORT")?.parse()?,
                    password: get("MAILSTACK_PASSWORD")?,
                    maildir_root: PathBuf::from(get("MAILDIR_ROOT")?),
                    dir,
                    keep,
                };
                stack.stop_when_we_exit();
                return Ok(stack);
            }
            let _ = Command::new(script("stop.sh")).arg(&dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
            let _ = std::fs::remove_dir_all(&dir);
            if !last_log.contains("already in use") {
                break;
            }
        }
        bail!("tests/mailstack/start.sh failed (Dovecot/Postfix installed? bash tests/mailstack/install.sh):\n{last_log}")
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.maildir_root.join(user).join("Maildir")
    }

    /// A detached watcher (own process group, so Ctrl-C does not reach it) that stops the stack
    /// once this process is gone, also when it is killed and `Drop` never runs.
    fn stop_when_we_exit(&self) {
        use std::os::unix::process::CommandExt as _;
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#"while kill -0 "$0" 2>/dev/null; do sleep 0.5; done; [ -f "$2/env" ] || exit 0; "$1" "$2" >/dev/null 2>&1; [ "$3" = 1 ] || rm -rf "$2""#)
            .arg(std::process::id().to_string())
            .arg(script("stop.sh"))
            .arg(&self.dir)
            .arg(if self.keep { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new(script("stop.sh")).arg(&self.dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if self.keep {
            eprintln!("bench-e2e: kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn imap_login(port: u16, user: &str, password: &str) -> anyhow::Result<async_imap::Session<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.context("connect to IMAP")?;
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.context("IMAP greeting")?.context("IMAP greeting")?;
    client.login(user, password).await.map_err(|(e, _)| e).context("IMAP LOGIN")
}

// ---- memory ---------------------------------------------------------------------------------

/// A `kB` field of `/proc/self/status` (VmRSS, VmHWM).
fn proc_status(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    line[key.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

fn fmt_kb(kb: Option<u64>) -> String {
    match kb {
        Some(kb) => format!("{:.1} MiB", kb as f64 / 1024.0),
        None => "unknown".into(),
    }
}
