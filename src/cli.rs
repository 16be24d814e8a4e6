//! The command line (`INTERFACE.md`): thin wiring from arguments to the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::{DateTime, FixedOffset};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::core::{self, Context, Outcome, Verdict, report};

#[derive(Parser, Debug)]
#[command(name = "studio-intake", version, about = "E-mail intake for the 2020 Leshan innovation studio call (乐工经〔2020〕24号)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The daemon: fetch new mail, process, reply, until SIGTERM/Ctrl-C (finishing the message in hand).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// One pass over the mailbox, send what is due, then exit 0.
        #[arg(long)]
        once: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Build today's digest from the database and print it (text), or send it with --send.
    Digest {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Queue the digest to [digest] recipients and send it now through the configured outbox.
        #[arg(long)]
        send: bool,
    },
    /// Write the consolidated 推荐汇总表 of all current studios (by unit, then 序号).
    Export {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The .xlsx file to write.
        #[arg(long)]
        out: PathBuf,
        /// Also write every current file of every dossier for the reviewers:
        /// DIR/<unit>/<序号>-<studio>/ with its 附件1, 附件3 and photo, DIR/<unit>/ its 附件2.
        #[arg(long)]
        files: Option<PathBuf>,
    },
    /// Held mails (unregistered or unauthenticated senders): list them, approve a sender for a
    /// unit (its held mails are applied in arrival order), or discard one.
    Held {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(subcommand)]
        action: Option<HeldAction>,
    },
    /// Validate submissions offline: each PATH is an .eml file or a folder of loose attachments.
    Check {
        /// TOML configuration (built-in 2020 Leshan defaults without it).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Receipt time to judge lateness by (RFC 3339), instead of the Received:/Date: headers.
        #[arg(long, value_parser = parse_rfc3339)]
        received_at: Option<DateTime<FixedOffset>>,
        /// With --format text: also print the reply the sender would get.
        #[arg(long)]
        show_reply: bool,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum HeldAction {
    /// The held mails waiting for a decision (the default).
    List,
    /// Register the mail's sender for the unit (default: the unit its forms name) and apply
    /// its held mails to that unit's dossier, in arrival order.
    Approve {
        id: i64,
        #[arg(long)]
        unit: Option<String>,
    },
    /// Keep the mail on record, never apply it.
    Discard { id: i64 },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

fn parse_rfc3339(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s).map_err(|e| format!("not an RFC 3339 time like 2020-09-20T10:00:00+08:00: {e}"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon's allocator settings, before any thread starts. Not for one-shot commands:
    // `check` over camera photos would map and fault in fresh pages for every large buffer.
    if matches!(cli.command, Command::Run { .. }) {
        crate::memory::tune_allocator();
    }
    crate::logging::init(if matches!(cli.command, Command::Run { .. }) { "info" } else { "warn" });
    match cli.command {
        Command::Run { config, once } => edge("run", async move {
            let config = load_config(config.as_deref())?;
            if once {
                crate::daemon::run_once(config).await
            } else {
                crate::daemon::run(config, crate::daemon::shutdown_signal()).await
            }
        }),
        Command::Migrate { config } => edge("migrate", async move {
            let config = load_config(config.as_deref())?;
            let store = crate::store::Store::connect(&config.database.url, config.database.max_connections).await?;
            store.migrate().await?;
            eprintln!("migrations applied to {}", config.database.url.split('@').next_back().unwrap_or(""));
            Ok(())
        }),
        Command::Digest { config, send } => edge("digest", async move {
            let config = load_config(config.as_deref())?;
            let app = crate::app::App::build(config).await?;
            let now = chrono::Utc::now();
            if send {
                let id = crate::digest::send_now(&app, now).await?;
                eprintln!("digest {id} sent to {}", app.config.digest.recipients.join(", "));
            } else {
                let d = crate::digest::build(&app.store, &app.config, now).await?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "主题：{}\n\n{}", d.subject, d.text)?;
            }
            Ok(())
        }),
        Command::Export { config, out, files } => edge("export", async move {
            let config = load_config(config.as_deref())?;
            let app = crate::app::App::build(config).await?;
            let bytes = crate::digest::export(&app.store, &app.config).await?;
            std::fs::write(&out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("wrote {}", out.display());
            if let Some(dir) = files {
                let n = crate::digest::files::export_files(&app.store, &app.config, &dir).await?;
                eprintln!("wrote {n} files under {}", dir.display());
            }
            Ok(())
        }),
        Command::Held { config, format, action } => edge("held", async move {
            let config = load_config(config.as_deref())?;
            let app = crate::app::App::build(config).await?;
            match action.unwrap_or(HeldAction::List) {
                HeldAction::List => held_list(&app, format).await,
                HeldAction::Approve { id, unit } => {
                    let (unit, applied) = crate::intake::approve_held(&app, id, unit.as_deref()).await?;
                    println!("approved: the sender of mail {id} now speaks for {unit}; applied {} held mail(s): {:?}", applied.len(), applied);
                    println!("their replies are queued; the daemon (or `run --once`) sends them");
                    Ok(())
                }
                HeldAction::Discard { id } => {
                    if !app.store.discard_held(id).await? {
                        bail!("mail {id} is not a held mail (or was already applied or discarded)");
                    }
                    println!("discarded: mail {id} stays on record and is never applied");
                    Ok(())
                }
            }
        }),
        Command::Check { config, format, received_at, show_reply, paths } => {
            match check(config.as_deref(), format, received_at, show_reply, &paths) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("studio-intake check: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Run an async command on a fresh runtime; errors become one line on stderr and exit 1.
fn edge(name: &str, f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("studio-intake {name}: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("studio-intake {name}: {e:#}");
            ExitCode::from(1)
        }
    }
}

pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::builtin()),
    }
}

/// `held list`: id, received, sender, the unit its forms name, why held, what it carries.
async fn held_list(app: &crate::app::App, format: Format) -> anyhow::Result<()> {
    let held = app.store.held_mails().await?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let docs: Vec<serde_json::Value> = held
                .iter()
                .map(|h| {
                    serde_json::json!({
                        "id": h.submission_id,
                        "received_at": h.received_at.map(|t| t.to_rfc3339()),
                        "sender": h.sender,
                        "unit": h.suggested_unit,
                        "reason": h.reason,
                        "attachments": h.attachments.iter().map(|(file, kind)| serde_json::json!({"file": file, "kind": kind})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
        }
        Format::Text => {
            if held.is_empty() {
                writeln!(out, "no held mail")?;
            }
            for h in &held {
                writeln!(
                    out,
                    "{}  {}  {}  unit by its forms: {}  ({})",
                    h.submission_id,
                    h.received_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "?".into()),
                    h.sender.as_deref().unwrap_or("?"),
                    h.suggested_unit.as_deref().unwrap_or("?"),
                    h.reason
                )?;
                for (file, kind) in &h.attachments {
                    writeln!(out, "      {kind}: {file}")?;
                }
                let unit = h.suggested_unit.as_deref().map(|u| format!(" --unit {u}")).unwrap_or_else(|| " --unit NAME".into());
                writeln!(out, "      approve: studio-intake held approve {}{unit}    discard: studio-intake held discard {}", h.submission_id, h.submission_id)?;
            }
        }
    }
    Ok(())
}

/// With `sender_auth = "authenticated"`, `check` says whether a registered sender would pass
/// — offline, so from the trusted `Authentication-Results` headers and a DKIM check without
/// DNS (no key can be fetched: only a trusted header can pass here). A failure is the warning
/// `submission.sender_not_authenticated`; the mail is still judged as if it were applied.
fn offline_authentication(config: &Config, raw: &[u8], o: &mut Outcome) {
    if config.security.sender_auth != crate::config::SenderAuth::Authenticated {
        return;
    }
    let Some(sender) = o.sender.clone().filter(|s| config.unit_of_sender(s).is_some()) else { return };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let outcome = rt.block_on(crate::auth::Authenticator::with_records(Vec::new()).authenticate(raw, &sender, &config.security.trusted_authserv_ids));
    if let crate::auth::AuthOutcome::Failed { reason } = outcome {
        o.findings.push(crate::core::rules::sender_not_authenticated(&sender, &reason));
    }
}

/// `check`: exit 0 when no path has an error finding, 1 when one has, 2 on usage or I/O errors.
fn check(config: Option<&Path>, format: Format, received_at: Option<DateTime<FixedOffset>>, show_reply: bool, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let converters = config.converters.resolve(std::time::Duration::from_secs(config.limits.converter_timeout_secs));
    // Read everything first: a missing file is a usage error before any output.
    let mut inputs = Vec::new();
    for path in paths {
        inputs.push((path, read_input(path, &config)?));
    }
    // Each mail is read once; judged again only when several paths make their studios known
    // to each other.
    let empty = core::dossier::Dossier::default();
    let mut mails: Vec<core::Mail> = Vec::new();
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    for (path, raw) in &inputs {
        let mut ctx = Context::new(config.policy(), &converters);
        ctx.received_at = received_at;
        let mail = core::read(raw, &ctx).with_context(|| format!("{} is not an e-mail message", path.display()))?;
        // Kept for the second judgement only when there will be one (attachments are large).
        if inputs.len() > 1 {
            mails.push(mail.clone());
        }
        let mut outcome = core::judge(mail, &empty, &ctx);
        offline_authentication(&config, raw, &mut outcome);
        outcomes.push((path.display().to_string(), outcome));
    }
    // Several paths: studios recommended by one are known to the others.
    if outcomes.len() > 1 {
        let known: Vec<core::rules::KnownStudio> = outcomes
            .iter()
            .flat_map(|(_, o)| {
                o.submission.studios.iter().filter_map(|s| {
                    Some(core::rules::KnownStudio { unit: o.unit.clone()?, name: s.name.clone() })
                })
            })
            .collect();
        for (((_, outcome), (_, raw)), mail) in outcomes.iter_mut().zip(&inputs).zip(mails) {
            let others: Vec<_> = known.iter().filter(|k| Some(&k.unit) != outcome.unit.as_ref()).cloned().collect();
            if others.is_empty() {
                continue;
            }
            let mut ctx = Context::new(config.policy(), &converters);
            ctx.received_at = received_at;
            ctx.others = &others;
            *outcome = core::judge(mail, &empty, &ctx);
            offline_authentication(&config, raw, outcome);
        }
    }
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let docs: Vec<_> = outcomes.iter().map(|(p, o)| report::check_json(p, o)).collect();
            let text = if docs.len() == 1 { serde_json::to_string_pretty(&docs[0])? } else { serde_json::to_string_pretty(&docs)? };
            writeln!(out, "{text}")?;
        }
        Format::Text => {
            for (path, o) in &outcomes {
                write_text(&mut out, path, o)?;
                if show_reply {
                    let reply = report::reply(o, &config.policy());
                    writeln!(out, "---- 回复邮件 ----\n主题：{}\n\n{}", reply.subject, reply.text)?;
                }
            }
        }
    }
    let rejected = outcomes.iter().any(|(_, o)| o.verdict() == Verdict::Rejected);
    Ok(if rejected { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn write_text(out: &mut impl Write, path: &str, o: &Outcome) -> std::io::Result<()> {
    let verdict = match o.verdict() {
        Verdict::Accepted => "ACCEPTED",
        Verdict::Rejected => "REJECTED",
        Verdict::NotASubmission => "NOT A SUBMISSION",
    };
    writeln!(out, "{path}: {verdict}")?;
    writeln!(
        out,
        "  from {} · unit {} · received {}",
        o.sender.as_deref().unwrap_or("?"),
        o.unit.as_deref().unwrap_or("?"),
        o.received_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "?".into())
    )?;
    for a in &o.submission.attachments {
        let copy = a.duplicate_of.as_deref().map(|f| format!(" (copy of {f})")).unwrap_or_default();
        writeln!(out, "  attachment {} [{:?}]{}{copy}", a.file, a.kind, a.studio.as_deref().map(|s| format!(" → {s}")).unwrap_or_default())?;
    }
    for s in &o.view.studios {
        writeln!(
            out,
            "  studio {} (form {}, row {}, materials {}, photo {})",
            s.name, s.has_approval_form, s.has_summary_row, s.has_materials, s.has_photo
        )?;
    }
    for f in &o.findings {
        let sev = match f.severity {
            core::findings::Severity::Error => "error",
            core::findings::Severity::Warning => "warning",
        };
        writeln!(out, "  {sev:7} {} {}", f.code.as_str(), f.message)?;
        writeln!(
            out,
            "          at {}{} · found {} · expected {}",
            f.file.as_deref().map(|x| format!("{x}: ")).unwrap_or_default(),
            f.location,
            f.found,
            f.expected
        )?;
    }
    writeln!(out)
}

/// An `.eml` file as it is, or a folder of loose attachments wrapped into one message so it
/// takes exactly the same path through the core (zip expansion, name handling, limits).
fn read_input(path: &Path, config: &Config) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut files = Vec::new();
        collect_files(path, path, &mut files, config.limits.max_parts as usize)?;
        if files.is_empty() {
            bail!("{} is an empty folder", path.display());
        }
        return Ok(wrap_files(&files));
    }
    if meta.len() > config.limits.max_message_bytes {
        bail!("{} is larger than the message size limit ({} bytes)", path.display(), config.limits.max_message_bytes);
    }
    Ok(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>, max: usize) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if e.file_type()?.is_dir() {
            collect_files(root, &p, out, max)?;
        } else if e.file_type()?.is_file() {
            if out.len() >= max {
                bail!("{} holds more than {max} files", root.display());
            }
            let name = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            if name.starts_with('.') {
                continue;
            }
            out.push((name, std::fs::read(&p)?));
        }
    }
    Ok(())
}

/// A minimal multipart/mixed message around loose files (RFC 2231 UTF-8 names).
pub fn wrap_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    use base64::Engine;
    let boundary = "=_studio-intake-folder";
    let mut m = format!("MIME-Version: 1.0\r\nSubject: folder\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").into_bytes();
    for (name, data) in files {
        let mut enc = String::new();
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                enc.push(b as char);
            } else {
                enc.push_str(&format!("%{b:02X}"));
            }
        }
        m.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename*=utf-8''{enc}\r\n\r\n"
            )
            .as_bytes(),
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        for chunk in b64.as_bytes().chunks(76) {
            m.extend_from_slice(chunk);
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    m
}
