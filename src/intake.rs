//! The intake task: what happens to each message the mailbox hands over. Raw bytes are
//! stored (durable, deduped), the core reads the mail, the unit's dossier is loaded, the core
//! judges the merged dossier, and submission, dossier version, findings and reply are
//! committed in one transaction. Only then does the source mark or move the message, so a
//! crash anywhere leads to reprocessing, which the store turns into a no-op.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, info_span, warn};

use crate::app::{App, address_of};
use crate::core::mime::MimeError;
use crate::core::{self, Context, Outcome, report, text};
use crate::mailbox::{Handler, Incoming};
use crate::metrics::metrics;
use crate::outbox::{self, OutgoingMail};
use crate::store::{DossierUpdate, FindingRecord, NewOutgoing, NewRaw, PutRaw, StudioRecord, SubmissionRecord};

/// The handler the mailbox calls for each message.
pub struct Intake {
    pub app: Arc<App>,
}

impl Handler for Intake {
    fn handle(&self, m: Incoming) -> impl Future<Output = anyhow::Result<()>> + Send {
        let app = self.app.clone();
        let span = info_span!("mail", mailbox = %m.mailbox, uid = m.uid.unwrap_or(0), size = m.size);
        async move { intake(&app, m).await }.instrument(span)
    }
}

async fn intake(app: &App, m: Incoming) -> anyhow::Result<()> {
    // A mail over the size limit was not downloaded: its header stands in for it (kept and
    // hashed), so it is deduplicated and recorded like any other.
    let (bytes, too_large) = match m.raw {
        Ok(b) => (b, None),
        Err(t) => {
            warn!(size = t.size, limit = t.limit, "refused: larger than the message size limit");
            (t.header, Some(report::Unprocessed::TooLarge { size: t.size, limit: t.limit }))
        }
    };
    let sha256 = hex(&Sha256::digest(&bytes));
    let raw = NewRaw {
        mailbox: m.mailbox.clone(),
        uidvalidity: m.uidvalidity.map(i64::from),
        uid: m.uid.map(i64::from),
        sha256: sha256.clone(),
        bytes,
        received_at: m.received_at,
        size: m.size as i64,
    };
    let id = match app.store.put_raw(&raw).await? {
        PutRaw::New(id) => id,
        PutRaw::Known { processed: true, .. } => {
            info!("already processed");
            return Ok(());
        }
        PutRaw::Known { id, .. } => id,
    };
    match too_large {
        None => process_raw(app, id, &raw.bytes, &sha256, m.received_at).await,
        Some(why) => {
            // The header block ends at the blank line the parser looks for.
            let mut head = raw.bytes.clone();
            head.extend_from_slice(b"\r\n");
            let rec = record_unprocessed(app, id, &sha256, &head, m.received_at, why).await?;
            metrics().mail_processed(&rec.verdict, rec.findings.iter().map(|f| &f.code), Duration::ZERO);
            Ok(())
        }
    }
}

/// Record a stored message the core gave no outcome for (too large, not a message, or the
/// core failed) as `ignored` with the reason, and queue a reply built from its header (one
/// transaction).
async fn record_unprocessed(
    app: &App,
    raw_id: i64,
    sha256: &str,
    bytes: &[u8],
    received_at: Option<DateTime<FixedOffset>>,
    why: report::Unprocessed,
) -> anyhow::Result<SubmissionRecord> {
    let message = headers_of(bytes);
    let mut rec = SubmissionRecord {
        message_id: message.as_ref().and_then(|m| m.message_id.clone()),
        sender: message.as_ref().and_then(|m| m.from.as_ref().map(|f| f.address.clone())),
        unit: None,
        subject: message.as_ref().map(|m| m.subject.clone()).unwrap_or_default(),
        received_at,
        verdict: "ignored".into(),
        ignored_reason: Some(why.to_string()),
        ..Default::default()
    };
    let mut outgoing = Vec::new();
    if let Some(msg) = &message {
        match reply_address(app, msg).await? {
            Err(no_reply) => rec.ignored_reason = Some(format!("{why}; {no_reply}")),
            Ok(to) => {
                let reply = report::unprocessed_reply(&msg.subject, &why, &app.policy);
                outgoing.push(reply_row(app, msg, reply, &to, sha256, raw_id)?);
            }
        }
    }
    app.store.record(raw_id, &rec, &outgoing).await?;
    info!(reason = %why, reply = if outgoing.is_empty() { "none" } else { "queued" }, "recorded without an outcome");
    if !outgoing.is_empty() {
        app.outbox_ready.notify_one();
    }
    Ok(rec)
}

/// Whom to answer (`Reply-To:`, else `From:`), or why nobody: automatic mail, our own
/// address, no usable sender, or the per-sender hourly cap reached (a loop with a robot).
async fn reply_address(app: &App, msg: &core::mime::Message) -> anyhow::Result<Result<String, String>> {
    if let Err(why) = outbox::should_reply(msg, &app.own_addresses()) {
        return Ok(Err(format!("no reply: {why:?}")));
    }
    let Some(to) = msg.reply_to.as_ref().or(msg.from.as_ref()).map(|m| m.address.clone()) else {
        return Ok(Err("no reply: no sender address".into()));
    };
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let recent = app.store.replies_to_since(&to, hour_ago).await?;
    if recent >= app.config.outbox.replies_per_sender_per_hour as i64 {
        return Ok(Err(format!("no reply: {recent} replies to {to} in the last hour")));
    }
    Ok(Ok(to))
}

/// Run the core on one stored message and commit its results and reply in one transaction.
pub async fn process_raw(app: &App, raw_id: i64, bytes: &[u8], sha256: &str, received_at: Option<DateTime<FixedOffset>>) -> anyhow::Result<()> {
    let started = Instant::now();
    let recorded = process_raw_inner(app, raw_id, bytes, sha256, received_at).await?;
    metrics().mail_processed(&recorded.verdict, recorded.findings.iter().map(|f| &f.code), started.elapsed());
    Ok(())
}

/// [`process_raw`]; returns what was recorded.
///
/// The core runs in two steps: *read* (bytes → the mail's parts) on the blocking pool, then,
/// with the unit's dossier loaded from the store, *judge* (merge and rules). The new dossier
/// version, the findings and the reply are committed in one transaction.
async fn process_raw_inner(app: &App, raw_id: i64, bytes: &[u8], sha256: &str, received_at: Option<DateTime<FixedOffset>>) -> anyhow::Result<SubmissionRecord> {
    // The same mail delivered twice (same Message-ID from the same sender, even with other
    // bytes) is one mail: processed and answered once.
    if let Some(head) = headers_of(bytes)
        && let (Some(message_id), Some(from)) = (&head.message_id, &head.from)
        && let Some(first) = app.store.same_mail(message_id, &from.address, raw_id).await?
    {
        info!(raw = raw_id, first, "the same mail again (Message-ID and sender): recorded, not answered");
        let rec = SubmissionRecord {
            message_id: head.message_id.clone(),
            sender: Some(from.address.clone()),
            subject: head.subject.clone(),
            received_at,
            verdict: "ignored".into(),
            ignored_reason: Some(format!("重复投递：与已处理的邮件（记录{first}）Message-ID 和发件人相同")),
            ..Default::default()
        };
        app.store.record(raw_id, &rec, &[]).await?;
        return Ok(rec);
    }
    // The core is CPU-bound and may run a converter: keep it off the async workers. A panic
    // or a run over the time limit is a defect on this input: record it, tell the sender and
    // go on (a thread that overran cannot be stopped; it finishes on its own).
    let limit = Duration::from_secs(app.config.limits.process_timeout_secs.max(1));
    let run = {
        let policy = app.policy.clone();
        let converters = app.converters.clone();
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut ctx = Context::new(policy, &converters);
            ctx.received_at = received_at;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core::read(&bytes, &ctx)))
        })
    };
    let failed = |reason: String| report::Unprocessed::Failed { reason };
    let mail = match tokio::time::timeout(limit, run).await {
        Ok(Ok(Ok(Ok(mail)))) => mail,
        Ok(Ok(Ok(Err(e)))) => {
            warn!(raw = raw_id, "not an e-mail message: {e}");
            let why = match e {
                MimeError::TooLarge { limit } => report::Unprocessed::TooLarge { size: bytes.len() as u64, limit },
                MimeError::NotAMessage(reason) => report::Unprocessed::NotAMessage { reason },
            };
            return record_unprocessed(app, raw_id, sha256, bytes, received_at, why).await;
        }
        Ok(Ok(Err(panic))) => {
            let why = failed(format!("the core panicked: {}", panic_message(&panic)));
            warn!(raw = raw_id, "{why}");
            return record_unprocessed(app, raw_id, sha256, bytes, received_at, why).await;
        }
        Ok(Err(join)) => anyhow::bail!("the processing task of message {raw_id} failed: {join}"),
        Err(_) => {
            let why = failed(format!("no result within [limits] process_timeout_secs = {} s", limit.as_secs()));
            warn!(raw = raw_id, "{why}");
            return record_unprocessed(app, raw_id, sha256, bytes, received_at, why).await;
        }
    };
    let unit = mail.unit(&app.policy);
    let on_file = match &unit {
        Some(u) => app.store.current_dossier(u).await?,
        None => None,
    };
    let others: Vec<core::rules::KnownStudio> = app
        .store
        .current_studios_of_other_units(unit.as_deref())
        .await?
        .into_iter()
        .map(|(unit, name)| core::rules::KnownStudio { unit, name })
        .collect();
    let judged = {
        let mut ctx = Context::new(app.policy.clone(), &app.converters);
        ctx.received_at = received_at;
        ctx.others = &others;
        let empty = core::dossier::Dossier::default();
        let dossier = on_file.as_ref().map(|v| &v.dossier).unwrap_or(&empty);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core::judge(mail, dossier, &ctx)))
    };
    let outcome = match judged {
        Ok(o) => o,
        Err(panic) => {
            let why = failed(format!("the core panicked: {}", panic_message(&panic)));
            warn!(raw = raw_id, "{why}");
            return record_unprocessed(app, raw_id, sha256, bytes, received_at, why).await;
        }
    };
    let mut rec = submission_record(&outcome);
    if outcome.applied
        && let Some(unit) = &outcome.unit
    {
        rec.dossier = Some(DossierUpdate {
            unit: unit.clone(),
            base: on_file.as_ref().map(|v| v.id),
            dossier: outcome.dossier.clone(),
            changes: outcome.changes.clone(),
        });
    }
    let mut outgoing = Vec::new();
    match reply_address(app, &outcome.message).await? {
        Err(no_reply) => rec.ignored_reason = Some(no_reply),
        Ok(to) => {
            let reply = report::reply(&outcome, &app.policy);
            outgoing.push(reply_row(app, &outcome.message, reply, &to, sha256, raw_id)?);
        }
    }
    app.store.record(raw_id, &rec, &outgoing).await?;
    info!(
        from = outcome.sender.as_deref().unwrap_or("?"),
        unit = outcome.unit.as_deref().unwrap_or("?"),
        verdict = outcome.verdict().as_str(),
        findings = outcome.findings.len(),
        studios = outcome.view.studios.len(),
        changed = outcome.changes.len(),
        complete = outcome.standing.complete(),
        reply = if outgoing.is_empty() { rec.ignored_reason.as_deref().unwrap_or("none") } else { "queued" },
        "processed"
    );
    if !outgoing.is_empty() {
        app.outbox_ready.notify_one();
    }
    Ok(rec)
}

/// The headers of a message without its parts; `None` when it is not a message. Also used
/// on messages the core failed on, so a panic here is caught too.
fn headers_of(bytes: &[u8]) -> Option<core::mime::Message> {
    let limits = crate::core::Limits { max_parts: 1, ..Default::default() };
    std::panic::catch_unwind(|| core::mime::parse(bytes, &limits).ok()).ok().flatten()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn reply_row(app: &App, original: &core::mime::Message, reply: report::Reply, to: &str, sha256: &str, raw_id: i64) -> anyhow::Result<NewOutgoing> {
    let from = app.config.outbox.from.clone();
    let domain = address_of(&from).split('@').nth(1).unwrap_or("studio-intake.local").to_owned();
    let message_id = outbox::reply_message_id(sha256, &domain);
    let mut references = original.references.clone();
    if let Some(id) = &original.message_id
        && !references.contains(id)
    {
        references.push(id.clone());
    }
    let mail = OutgoingMail {
        from: from.clone(),
        to: vec![to.to_owned()],
        subject: reply.subject,
        text: reply.text,
        html: Some(reply.html),
        message_id: message_id.clone(),
        in_reply_to: original.message_id.clone(),
        references,
        auto_submitted: true,
        attachments: vec![],
    };
    Ok(NewOutgoing {
        kind: "reply".into(),
        message_id,
        envelope_from: address_of(&from),
        recipients: vec![to.to_owned()],
        bytes: outbox::render(&mail)?,
        submission_raw_id: Some(raw_id),
    })
}

/// The rows the store keeps of one outcome. The studios are the dossier's (its view), and
/// only when the mail was merged into it: a late mail or one without documents changes no
/// studio.
pub fn submission_record(o: &Outcome) -> SubmissionRecord {
    let studios = if o.applied {
        o.view
            .studios
            .iter()
            .map(|s| {
                let errors = o.findings.iter().any(|f| {
                    f.on_file && f.severity == core::findings::Severity::Error && f.studio.as_deref().is_none_or(|n| n == s.name)
                });
                StudioRecord {
                    name: s.name.clone(),
                    key: text::squash(&s.name),
                    unit: o.unit.clone(),
                    leader: s.leader.clone(),
                    verdict: if errors { "rejected".into() } else { "accepted".into() },
                    rank: s.rank.map(i64::from),
                    data: studio_data(o, s),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let findings = o
        .findings
        .iter()
        .map(|f| FindingRecord {
            code: f.code.as_str().to_owned(),
            severity: match f.severity {
                core::findings::Severity::Error => "error".into(),
                core::findings::Severity::Warning => "warning".into(),
            },
            studio_key: f.studio.as_deref().map(text::squash),
            file: f.file.clone(),
            location: f.location.clone(),
            found: f.found.clone(),
            expected: f.expected.clone(),
            message: f.message.clone(),
            on_file: f.on_file,
        })
        .collect();
    SubmissionRecord {
        message_id: o.message.message_id.clone(),
        sender: o.sender.clone(),
        unit: o.unit.clone(),
        subject: o.message.subject.clone(),
        received_at: o.received_at,
        verdict: o.verdict().as_str().into(),
        ignored_reason: None,
        studios,
        findings,
        summary_table: !o.submission.summaries.is_empty(),
        attachments: serde_json::to_value(&o.submission.attachments).unwrap_or_default(),
        download_links: o.download_links.clone(),
        dossier: None,
    }
}

/// The 16 columns of the consolidated 推荐汇总表 for one studio: from its summary row, with
/// the approval form filling what the row lacks.
fn studio_data(o: &Outcome, s: &core::submission::Studio) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let row = s.row.map(|(t, r)| &o.view.summaries[t].rows[r]);
    let form = s.form.map(|f| &o.view.forms[f]);
    for (key, _) in core::forms::SUMMARY_COLUMNS {
        let from_row = row.and_then(|r| r.get(key)).map(|v| v.trim().to_owned());
        let from_form = form.and_then(|f| match *key {
            "studio_name" => f.get("studio_name").map(str::to_owned),
            "unit" => f.get("unit").map(str::to_owned),
            "created" => f.get("created").map(str::to_owned),
            "leader" => f.get("leader").map(str::to_owned),
            "leader_workplace" => f.get("leader_workplace").map(str::to_owned),
            "titled" => f.get("titled").map(str::to_owned),
            "members" | "area" | "equipment" | "funding" | "achievements" | "benefit" => f.get(key).map(str::to_owned),
            "patents" => {
                let u = f.number("utility_patents")?;
                let i = f.number("invention_patents")?;
                Some(text::fmt_number(u + i))
            }
            _ => None,
        });
        if let Some(v) = from_row.or(from_form) {
            map.insert((*key).to_owned(), serde_json::Value::String(v));
        }
    }
    map.insert("name".into(), serde_json::Value::String(s.name.clone()));
    serde_json::Value::Object(map)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

