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
use crate::store::{DossierUpdate, FindingRecord, HeldMail, MailVerdict, NewOutgoing, NewRaw, PutRaw, StudioRecord, StudioVerdict, SubmissionRecord};

/// The handler the mailbox calls for each message.
pub struct Intake {
    pub app: Arc<App>,
}

impl Handler for Intake {
    type Prepared = Prepared;

    /// Stores the raw bytes and reads the mail on a task of its own, so that it goes on while
    /// the source commits the messages before it.
    fn prepare(&self, m: Incoming) -> impl Future<Output = Prepared> + Send {
        let app = self.app.clone();
        let span = info_span!("mail", mailbox = %m.mailbox, uid = m.uid.unwrap_or(0), size = m.size);
        let task = tokio::spawn(async move { prepare(&app, m).await }.instrument(span.clone()));
        async move {
            let stage = match task.await {
                Ok(stage) => stage,
                Err(join) => Err(anyhow::anyhow!("preparing the message failed: {join}")),
            };
            Prepared { span, stage }
        }
    }

    fn commit(&self, p: Prepared) -> impl Future<Output = anyhow::Result<()>> + Send {
        let app = self.app.clone();
        async move { commit(&app, p.stage?).await }.instrument(p.span)
    }
}

/// A message stored and read, waiting for its turn to be judged.
pub struct Prepared {
    span: tracing::Span,
    stage: anyhow::Result<Stage>,
}

enum Stage {
    /// Processed before (the same UID, or the same bytes).
    Done,
    /// Over the size limit, not downloaded: its header stands in for it (kept and hashed), so
    /// it is deduplicated and recorded like any other.
    TooLarge { raw: StoredRaw, why: report::Unprocessed },
    /// Read (or failed to be read: the failure counts as an attempt when its turn comes).
    Read { raw: StoredRaw, read: anyhow::Result<ReadMail> },
}

struct StoredRaw {
    id: i64,
    /// Stored before this offer (the same UID or bytes): maybe processed meanwhile.
    known: bool,
    sha256: String,
    bytes: Vec<u8>,
    received_at: Option<DateTime<FixedOffset>>,
}

/// What needs no other message: the core's first step and, where senders must authenticate,
/// the DKIM check (DNS round trips).
struct ReadMail {
    mail: Result<core::Mail, report::Unprocessed>,
    auth: Option<(bool, String)>,
}

async fn prepare(app: &App, m: Incoming) -> anyhow::Result<Stage> {
    let (bytes, too_large) = match m.raw {
        Ok(b) => (b, None),
        Err(t) => {
            warn!(size = t.size, limit = t.limit, "refused: larger than the message size limit");
            (t.header, Some(report::Unprocessed::TooLarge { size: t.size, limit: t.limit }))
        }
    };
    let sha256 = hex(&Sha256::digest(&bytes));
    let new = NewRaw {
        mailbox: m.mailbox.clone(),
        uidvalidity: m.uidvalidity.map(i64::from),
        uid: m.uid.map(i64::from),
        sha256: sha256.clone(),
        bytes,
        received_at: m.received_at,
        size: m.size as i64,
    };
    let (id, known) = match app.store.put_raw(&new).await? {
        PutRaw::New(id) => (id, false),
        PutRaw::Known { processed: true, .. } => return Ok(Stage::Done),
        PutRaw::Known { id, .. } => (id, true),
    };
    let raw = StoredRaw { id, known, sha256, bytes: new.bytes, received_at: m.received_at };
    Ok(match too_large {
        Some(why) => Stage::TooLarge { raw, why },
        None => {
            let read = read_mail(app, raw.id, &raw.bytes, raw.received_at).await;
            Stage::Read { raw, read }
        }
    })
}

async fn commit(app: &App, stage: Stage) -> anyhow::Result<()> {
    match stage {
        Stage::Done => {
            info!("already processed");
            Ok(())
        }
        Stage::TooLarge { raw, why } => {
            // The header block ends at the blank line the parser looks for.
            let mut head = raw.bytes;
            head.extend_from_slice(b"\r\n");
            let rec = record_unprocessed(app, raw.id, &raw.sha256, &head, raw.received_at, why).await?;
            metrics().mail_processed(rec.verdict.as_str(), rec.findings.iter().map(|f| &f.code), Duration::ZERO);
            Ok(())
        }
        Stage::Read { raw, read } => {
            // The same bytes twice in one batch: the first one's commit did it.
            if raw.known && app.store.raw_processed(raw.id).await? {
                info!("already processed");
                return Ok(());
            }
            let started = Instant::now();
            let result = match read {
                Ok(read) => judge_and_record(app, &raw, read).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(rec) => {
                    metrics().mail_processed(rec.verdict.as_str(), rec.findings.iter().map(|f| &f.code), started.elapsed());
                    Ok(())
                }
                // A failure counts as an attempt in the store; a mail that fails every time is
                // set aside after a few (the source moves it to the failed folder), never
                // offered forever.
                Err(e) => {
                    let reason = format!("{e:#}");
                    if app.store.raw_failed(raw.id, &reason).await? {
                        metrics().mail_set_aside();
                        warn!(raw = raw.id, "set aside after {} attempts: {reason}", crate::store::MAX_RAW_ATTEMPTS);
                        return Err(crate::mailbox::SetAside { attempts: crate::store::MAX_RAW_ATTEMPTS, reason }.into());
                    }
                    Err(e)
                }
            }
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
        verdict: MailVerdict::Ignored,
        ignored_reason: Some(why.to_string()),
        ..Default::default()
    };
    let mut outgoing = Vec::new();
    if let Some(msg) = &message {
        let registered = match &rec.sender {
            Some(s) => registered_unit(app, s).await?,
            None => None,
        };
        match reply_target(app, msg, registered.as_deref()).await? {
            Err(no_reply) => rec.ignored_reason = Some(format!("{why}; {no_reply}")),
            Ok(to) => {
                // Only a registered sender hears its own subject repeated.
                let subject = registered.as_ref().map(|_| msg.subject.as_str());
                let reply = report::unprocessed_reply(subject, &why, &app.policy);
                push_reply(&mut outgoing, &mut rec.ignored_reason, reply_row(app, msg, reply, &to, our_message_id(app, sha256, ""), "reply", raw_id));
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

/// Whom to answer, or why nobody: automatic mail, our own address, no usable sender, the
/// per-sender hourly cap (a loop with a robot) or the global one (a flood of forged
/// senders). The From address, or its Reply-To when that is itself a registered address of
/// the same `unit` — an attacker's Reply-To never gets a unit's results.
async fn reply_target(app: &App, msg: &core::mime::Message, unit: Option<&str>) -> anyhow::Result<Result<String, String>> {
    if let Err(why) = outbox::should_reply(msg, &app.own_addresses()) {
        return Ok(Err(format!("不回复：{why}")));
    }
    let Some(from) = msg.from.as_ref().map(|m| m.address.clone()) else {
        return Ok(Err(format!("不回复：{}", outbox::NoReply::NoSender)));
    };
    let mut to = from;
    if let (Some(unit), Some(reply_to)) = (unit, msg.reply_to.as_ref())
        && registered_addresses(app, unit).await?.contains(&reply_to.address.to_lowercase())
    {
        to = reply_to.address.clone();
    }
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let recent = app.store.replies_to_since(&to, hour_ago).await?;
    if recent >= app.config.outbox.replies_per_sender_per_hour as i64 {
        return Ok(Err(format!("不回复：一小时内已向{to}回复{recent}封（[outbox] replies_per_sender_per_hour）")));
    }
    if let Err(why) = under_global_ceiling(app).await? {
        return Ok(Err(why));
    }
    Ok(Ok(to))
}

/// `[outbox] replies_per_hour`: all replies together (digests exempt).
async fn under_global_ceiling(app: &App) -> anyhow::Result<Result<(), String>> {
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let all = app.store.replies_since(hour_ago).await?;
    if all >= app.config.outbox.replies_per_hour as i64 {
        warn!(replies = all, limit = app.config.outbox.replies_per_hour, "the hourly reply ceiling is reached: no reply");
        return Ok(Err(format!("不回复：一小时内已回复{all}封，达到上限{}（[outbox] replies_per_hour）", app.config.outbox.replies_per_hour)));
    }
    Ok(Ok(()))
}

/// Every address registered for `unit`: in the configuration and approved by staff
/// (lower-cased).
pub async fn registered_addresses(app: &App, unit: &str) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> =
        app.policy.units.iter().filter(|u| u.name == unit).flat_map(|u| u.senders.iter().map(|s| s.trim().to_lowercase())).collect();
    for (address, u) in app.store.registered_senders().await? {
        if u == unit && !out.contains(&address) {
            out.push(address);
        }
    }
    Ok(out)
}

/// The unit a From address speaks for: configured, else approved by staff.
async fn registered_unit(app: &App, address: &str) -> anyhow::Result<Option<String>> {
    if let Some(u) = app.policy.unit_of_sender(address) {
        return Ok(Some(u.name.clone()));
    }
    app.store.registered_unit(address).await
}

/// DKIM aligned with the From domain (verified here), or a pass in a trusted server's
/// Authentication-Results: whether it passed, and how, in a few words for the record.
async fn authenticate(app: &App, raw: &[u8], sender: &str) -> (bool, String) {
    let Some(authenticator) = &app.authenticator else {
        return (false, "no authenticator configured".into());
    };
    let outcome = authenticator.authenticate(raw, sender, &app.policy.trusted_authserv_ids).await;
    let note = match &outcome {
        crate::auth::AuthOutcome::DkimAligned { domain } => format!("DKIM 签名通过（d={domain}）"),
        crate::auth::AuthOutcome::TrustedResults { authserv_id, method } => format!("{authserv_id} 验证 {method}=pass"),
        crate::auth::AuthOutcome::Failed { reason } => format!("未通过验证：{reason}"),
    };
    (outcome.passed(), note)
}

/// Who the sender is: the unit its address is registered to, and whether the mail must be
/// held (an unregistered address; or, with `sender_auth = "authenticated"`, a From that
/// does not pass).
async fn sender_identity(app: &App, sender: Option<&str>, raw: &[u8], checked: Option<(bool, String)>) -> anyhow::Result<core::SenderIdentity> {
    use core::findings::Code;
    let Some(sender) = sender else {
        return Ok(core::SenderIdentity { unit: None, held: Some(Code::SubmissionUnknownSender), auth: None });
    };
    let Some(unit) = registered_unit(app, sender).await? else {
        return Ok(core::SenderIdentity { unit: None, held: Some(Code::SubmissionUnknownSender), auth: None });
    };
    match app.policy.sender_auth {
        core::policy::SenderAuth::Registered => Ok(core::SenderIdentity { unit: Some(unit), held: None, auth: Some("registered address".into()) }),
        core::policy::SenderAuth::Authenticated => {
            let (passed, note) = match checked {
                Some(done) => done,
                None => authenticate(app, raw, sender).await,
            };
            let held = (!passed).then_some(Code::SubmissionSenderNotAuthenticated);
            Ok(core::SenderIdentity { unit: Some(unit), held, auth: Some(note) })
        }
    }
}

/// Run the core on one stored message and commit its results and reply in one transaction
/// (the daemon's retry of stored messages; the sources go through [`Handler`]).
pub async fn process_raw(app: &App, raw_id: i64, bytes: &[u8], sha256: &str, received_at: Option<DateTime<FixedOffset>>) -> anyhow::Result<()> {
    let started = Instant::now();
    let raw = StoredRaw { id: raw_id, known: true, sha256: sha256.to_owned(), bytes: bytes.to_vec(), received_at };
    let read = read_mail(app, raw_id, bytes, received_at).await?;
    let recorded = judge_and_record(app, &raw, read).await?;
    metrics().mail_processed(recorded.verdict.as_str(), recorded.findings.iter().map(|f| &f.code), started.elapsed());
    Ok(())
}

/// The core's first step (guarded) and, with `sender_auth = "authenticated"`, the sender's
/// authentication when the address is registered.
async fn read_mail(app: &App, raw_id: i64, bytes: &[u8], received_at: Option<DateTime<FixedOffset>>) -> anyhow::Result<ReadMail> {
    let mail = read_guarded(app, raw_id, bytes, received_at).await?;
    let mut auth = None;
    if app.policy.sender_auth == core::policy::SenderAuth::Authenticated
        && let Ok(mail) = &mail
        && let Some(sender) = mail.sender.as_deref()
        && registered_unit(app, sender).await?.is_some()
    {
        auth = Some(authenticate(app, bytes, sender).await);
    }
    Ok(ReadMail { mail, auth })
}

/// The core's second step, in arrival order: with the unit's dossier loaded from the store,
/// *judge* (merge and rules); the new dossier version, the findings and the reply are
/// committed in one transaction. Returns what was recorded.
async fn judge_and_record(app: &App, raw: &StoredRaw, read: ReadMail) -> anyhow::Result<SubmissionRecord> {
    let (raw_id, bytes, sha256, received_at) = (raw.id, raw.bytes.as_slice(), raw.sha256.as_str(), raw.received_at);
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
            verdict: MailVerdict::Ignored,
            ignored_reason: Some(format!("重复投递：与已处理的邮件（记录{first}）Message-ID 和发件人相同")),
            ..Default::default()
        };
        app.store.record(raw_id, &rec, &[]).await?;
        return Ok(rec);
    }
    let mail = match read.mail {
        Ok(mail) => mail,
        Err(why) => return record_unprocessed(app, raw_id, sha256, bytes, received_at, why).await,
    };
    // Who speaks: the unit the From address is registered to (configured, or approved by
    // staff) — never the unit the forms name, which is only a suggestion for staff.
    let identity = sender_identity(app, mail.sender.as_deref(), bytes, read.auth).await?;
    let suggested = mail.written_unit.clone();
    // A registered sender's answer to a confirmation request applies the held mail it names.
    let confirmed = match (&identity.unit, identity.held) {
        (Some(unit), None) => confirm_held(app, &mail, unit).await?,
        _ => None,
    };
    let unit = identity.unit.clone();
    let on_file = match (&unit, identity.held) {
        (Some(u), None) => app.store.current_dossier(u).await?,
        _ => None,
    };
    let others = other_units_studios(app, unit.as_deref()).await?;
    let judged = {
        let mut ctx = Context::new(app.policy.clone(), &app.converters);
        ctx.received_at = received_at;
        ctx.others = &others;
        ctx.identity = Some(identity.clone());
        let empty = core::dossier::Dossier::default();
        let dossier = on_file.as_ref().map(|v| &v.dossier).unwrap_or(&empty);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core::judge(mail, dossier, &ctx)))
    };
    let outcome = match judged {
        Ok(o) => o,
        Err(panic) => {
            let why = report::Unprocessed::Failed { reason: format!("处理时程序出错（{}）", panic_message(&panic)) };
            warn!(raw = raw_id, "{why}");
            return record_unprocessed(app, raw_id, sha256, bytes, received_at, why).await;
        }
    };
    let mut rec = submission_record(&outcome);
    rec.held = identity.held.map(|c| c.as_str().to_owned());
    rec.suggested_unit = suggested.clone();
    rec.auth = identity.auth.clone();
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
    if let Some(reason) = identity.held {
        // Held: its sender gets a fixed acknowledgement that repeats nothing of the mail;
        // the unit's registered addresses are asked to confirm it.
        match reply_target(app, &outcome.message, None).await? {
            Ok(to) => push_reply(
                &mut outgoing,
                &mut rec.ignored_reason,
                reply_row(app, &outcome.message, report::held_ack(&app.policy), &to, our_message_id(app, sha256, ""), "ack", raw_id),
            ),
            Err(no_reply) => rec.ignored_reason = Some(no_reply),
        }
        let ask = unit.clone().or_else(|| suggested.clone().filter(|u| app.policy.units.iter().any(|x| &x.name == u)));
        if outcome.submission.has_documents()
            && let Some(ask) = ask
        {
            let summary = report::HeldSummary {
                sender: outcome.sender.clone().unwrap_or_default(),
                received_at: outcome.received_at,
                reason,
                files: outcome
                    .submission
                    .attachments
                    .iter()
                    .filter(|a| a.duplicate_of.is_none())
                    .map(|a| (a.file.clone(), a.kind, a.studio.clone()))
                    .collect(),
            };
            let request = report::confirmation_request(&ask, &summary, &app.policy);
            let sender = outcome.sender.clone().unwrap_or_default();
            for address in registered_addresses(app, &ask).await?.into_iter().filter(|a| *a != sender) {
                if under_global_ceiling(app).await?.is_err() {
                    break;
                }
                let message_id = our_message_id(app, sha256, &format!("confirm:{address}"));
                push_reply(&mut outgoing, &mut rec.ignored_reason, reply_row(app, &outcome.message, request.clone(), &address, message_id.clone(), "confirm", raw_id));
                rec.confirmations.push((message_id, ask.clone()));
            }
        }
    } else if let Some(first) = confirmed.filter(|_| !outcome.submission.has_documents()) {
        // The confirmation itself: the held mail's result went to this sender.
        rec.ignored_reason = Some(format!("确认了暂存邮件（记录{first}），已计入"));
    } else {
        match reply_target(app, &outcome.message, unit.as_deref()).await? {
            Err(no_reply) => rec.ignored_reason = Some(no_reply),
            Ok(to) => {
                let reply = report::reply(&outcome, &app.policy);
                push_reply(&mut outgoing, &mut rec.ignored_reason, reply_row(app, &outcome.message, reply, &to, our_message_id(app, sha256, ""), "reply", raw_id));
            }
        }
    }
    app.store.record(raw_id, &rec, &outgoing).await?;
    info!(
        from = outcome.sender.as_deref().unwrap_or("?"),
        unit = outcome.unit.as_deref().unwrap_or("?"),
        held = rec.held.as_deref().unwrap_or("no"),
        verdict = outcome.verdict().as_str(),
        findings = outcome.findings.len(),
        studios = outcome.view.studios.len(),
        changed = outcome.changes.len(),
        complete = outcome.standing.complete(),
        replies = outgoing.len(),
        "processed"
    );
    if !outgoing.is_empty() {
        app.outbox_ready.notify_one();
    }
    Ok(rec)
}

/// The core's first step on the blocking pool (it is CPU-bound and may run a converter),
/// guarded: a panic or a run over `[limits] process_timeout_secs` is a defect on this input,
/// recorded as such (a thread that overran cannot be stopped; it finishes on its own).
async fn read_guarded(app: &App, raw_id: i64, bytes: &[u8], received_at: Option<DateTime<FixedOffset>>) -> anyhow::Result<Result<core::Mail, report::Unprocessed>> {
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
    Ok(match tokio::time::timeout(limit, run).await {
        Ok(Ok(Ok(Ok(mail)))) => Ok(mail),
        Ok(Ok(Ok(Err(e)))) => {
            warn!(raw = raw_id, "not an e-mail message: {e}");
            Err(match e {
                MimeError::TooLarge { limit } => report::Unprocessed::TooLarge { size: bytes.len() as u64, limit },
                MimeError::NotAMessage(reason) => report::Unprocessed::NotAMessage { reason },
            })
        }
        Ok(Ok(Err(panic))) => {
            let why = failed(format!("处理时程序出错（{}）", panic_message(&panic)));
            warn!(raw = raw_id, "{why}");
            Err(why)
        }
        Ok(Err(join)) => anyhow::bail!("the processing task of message {raw_id} failed: {join}"),
        Err(_) => {
            let why = failed(format!("处理超时：{} 秒内未完成（[limits] process_timeout_secs）", limit.as_secs()));
            warn!(raw = raw_id, "{why}");
            Err(why)
        }
    })
}

async fn other_units_studios(app: &App, unit: Option<&str>) -> anyhow::Result<Vec<core::rules::KnownStudio>> {
    Ok(app
        .store
        .current_studios_of_other_units(unit)
        .await?
        .into_iter()
        .map(|(unit, name)| core::rules::KnownStudio { unit, name })
        .collect())
}

/// If `mail` answers an open confirmation request sent to `unit`, apply the held mail it was
/// sent for (its result goes to this sender). Returns the held submission's id.
async fn confirm_held(app: &App, mail: &core::Mail, unit: &str) -> anyhow::Result<Option<i64>> {
    let mut ids: Vec<String> = mail.message.in_reply_to.iter().cloned().collect();
    ids.extend(mail.message.references.iter().cloned());
    let Some((_, raw_id, asked)) = app.store.open_confirmation(&ids).await? else { return Ok(None) };
    if asked != unit {
        warn!(asked, unit, "a confirmation answered by another unit's address: ignored");
        return Ok(None);
    }
    let Some(held) = app.store.held_mail_of_raw(raw_id).await? else { return Ok(None) };
    let to = mail.sender.clone().unwrap_or_default();
    let applied = apply_held(app, &held, unit, &to, "confirmed by the unit").await?;
    app.store.close_confirmations(raw_id).await?;
    info!(held = held.submission_id, unit, by = %to, applied, "held mail confirmed by the unit");
    Ok(Some(held.submission_id))
}

/// Apply a held mail to `unit`'s dossier now (confirmed by the unit, or approved by staff):
/// read its stored bytes again, judge them against the current dossier, commit, and send the
/// result to `to` (a registered address). `Ok(false)` when it was no longer held.
pub async fn apply_held(app: &App, held: &HeldMail, unit: &str, to: &str, how: &str) -> anyhow::Result<bool> {
    let (bytes, received_at) = app.store.raw_bytes(held.raw_id).await?.ok_or_else(|| anyhow::anyhow!("held mail {} has no stored bytes", held.submission_id))?;
    let mail = match read_guarded(app, held.raw_id, &bytes, received_at).await? {
        Ok(m) => m,
        Err(why) => anyhow::bail!("held mail {} cannot be read again: {why}", held.submission_id),
    };
    let on_file = app.store.current_dossier(unit).await?;
    let others = other_units_studios(app, Some(unit)).await?;
    let mut ctx = Context::new(app.policy.clone(), &app.converters);
    ctx.received_at = received_at;
    ctx.others = &others;
    ctx.identity = Some(core::SenderIdentity { unit: Some(unit.to_owned()), held: None, auth: Some(how.to_owned()) });
    let empty = core::dossier::Dossier::default();
    let outcome = core::judge(mail, on_file.as_ref().map(|v| &v.dossier).unwrap_or(&empty), &ctx);
    let mut rec = submission_record(&outcome);
    rec.auth = Some(how.to_owned());
    if outcome.applied {
        rec.dossier = Some(DossierUpdate {
            unit: unit.to_owned(),
            base: on_file.as_ref().map(|v| v.id),
            dossier: outcome.dossier.clone(),
            changes: outcome.changes.clone(),
        });
    }
    let sha = hex(&Sha256::digest(&bytes));
    let mut outgoing = Vec::new();
    if under_global_ceiling(app).await?.is_ok() && !to.is_empty() {
        let reply = report::reply(&outcome, &app.policy);
        push_reply(&mut outgoing, &mut rec.ignored_reason, reply_row(app, &outcome.message, reply, to, our_message_id(app, &sha, "applied"), "reply", held.raw_id));
    }
    let applied = app.store.apply_held(held.submission_id, &rec, &outgoing).await?;
    if applied && !outgoing.is_empty() {
        app.outbox_ready.notify_one();
    }
    Ok(applied)
}

/// `held approve`: register the mail's sender for `unit` (default: the unit its forms name)
/// and apply every held mail of that sender, in arrival order. Returns the ids applied.
pub async fn approve_held(app: &App, submission_id: i64, unit: Option<&str>) -> anyhow::Result<(String, Vec<i64>)> {
    let held = app.store.held_mail(submission_id).await?.ok_or_else(|| anyhow::anyhow!("no held mail with id {submission_id}"))?;
    if held.state != "held" {
        anyhow::bail!("mail {submission_id} is not held any more ({})", held.state);
    }
    let sender = held.sender.clone().filter(|s| !s.is_empty()).ok_or_else(|| anyhow::anyhow!("mail {submission_id} has no sender address to register"))?;
    let wanted = unit.map(str::to_owned).or(held.suggested_unit.clone()).ok_or_else(|| {
        anyhow::anyhow!("mail {submission_id} names no unit; say which with --unit NAME")
    })?;
    let unit = app
        .policy
        .unit_named(&wanted)
        .map(|u| u.name.clone())
        .ok_or_else(|| anyhow::anyhow!("{wanted:?} is not a unit of the configuration ([[units]])"))?;
    app.store.register_sender(&sender, &unit, "staff").await?;
    let mut applied = Vec::new();
    for h in app.store.held_mails().await?.into_iter().filter(|h| h.sender.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&sender))) {
        if apply_held(app, &h, &unit, &sender, "approved by staff").await? {
            applied.push(h.submission_id);
        }
    }
    info!(%sender, unit, applied = ?applied, "sender approved by staff");
    Ok((unit, applied))
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

/// The Message-ID of one of our mails about raw message `sha256`: `purpose` "" for the
/// reply (as before: derived from the mail, so a retry is recognisable), else a name like
/// "applied" or "confirm:addr" hashed in.
fn our_message_id(app: &App, sha256: &str, purpose: &str) -> String {
    let domain = address_of(&app.config.outbox.from).split('@').nth(1).unwrap_or("studio-intake.local").to_owned();
    if purpose.is_empty() {
        outbox::reply_message_id(sha256, &domain)
    } else {
        outbox::reply_message_id(&hex(&Sha256::digest(format!("{sha256}:{purpose}").as_bytes())), &domain)
    }
}

/// [`reply_row`], or why no reply can be written (an address lettre cannot write, e.g. a
/// quoted local part it refuses): that mail is recorded without a reply, never retried for it.
fn push_reply(outgoing: &mut Vec<NewOutgoing>, no_reply: &mut Option<String>, row: anyhow::Result<NewOutgoing>) {
    match row {
        Ok(row) => outgoing.push(row),
        Err(e) => {
            warn!("no reply can be rendered: {e:#}");
            *no_reply = Some(format!("不回复：回复无法生成（{e:#}）"));
        }
    }
}

/// A mail of ours about `original` (threaded under it), ready for the outbox.
fn reply_row(app: &App, original: &core::mime::Message, reply: report::Reply, to: &str, message_id: String, kind: &str, raw_id: i64) -> anyhow::Result<NewOutgoing> {
    let from = app.config.outbox.from.clone();
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
        kind: kind.into(),
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
                    verdict: if errors { StudioVerdict::Rejected } else { StudioVerdict::Accepted },
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
            severity: f.severity,
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
        verdict: o.verdict().into(),
        ignored_reason: None,
        studios,
        findings,
        summary_table: !o.submission.summaries.is_empty(),
        attachments: serde_json::to_value(&o.submission.attachments).unwrap_or_default(),
        download_links: o.download_links.clone(),
        ..Default::default()
    }
}

/// The 16 columns of the consolidated 推荐汇总表 for one studio: from its summary row, with
/// the approval form filling what the row lacks.
fn studio_data(o: &Outcome, s: &core::submission::Studio) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let row = s.row.map(|(t, r)| &o.view.summaries[t].rows[r]);
    let form = s.form.map(|f| &o.view.forms[f]);
    for column in core::forms::SUMMARY_COLUMNS {
        let from_row = row.and_then(|r| r.get(column.key)).map(|v| v.trim().to_owned());
        let from_form = form.and_then(|f| column.from_form(f));
        if let Some(v) = from_row.or(from_form) {
            map.insert(column.key.as_str().to_owned(), serde_json::Value::String(v));
        }
    }
    map.insert("name".into(), serde_json::Value::String(s.name.clone()));
    serde_json::Value::Object(map)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

