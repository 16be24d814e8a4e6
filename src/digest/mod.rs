//! The staff digest and the consolidated 推荐汇总表.
//!
//! # Layout
//! - [`schedule`]: when digests go out (cron in the campaign's time zone, daily until the
//!   deadline, one final the morning after, a missed day sent once on return). Pure.
//! - [`facts`]: everything a digest says, read from the store once.
//! - [`render`]: Chinese text and Outlook/Foxmail/QQ Mail-safe HTML (tables, inline styles,
//!   table-cell bars, no images).
//! - [`xlsx`]: the consolidated 推荐汇总表 workbook (附件2's 16 columns + open findings).
//! - Here: [`build`], [`export`], the mail, and the scheduler task ([`drive`],
//!   [`run_scheduler`], [`spawn`]).
//!
//! # Never twice
//! The scheduler takes the day in the store ([`Store::claim_digest`], one row per day and
//! kind) *before* it builds and queues the mail, and queues it under a Message-ID derived from
//! the day ([`digest_message_id`]). A restart or a second instance on the same database finds
//! the day taken and does nothing. The price: a crash between the claim and the commit of the
//! outbox row loses that day's digest (logged), which is the right side to err on for a
//! report that is re-sent in full the next morning.
//!
//! # Time
//! Nothing here reads the clock except [`Clock::System`]. Tests drive the scheduler with
//! [`Clock::virtual_from`] under `tokio::time::pause()`.

pub mod files;
pub mod facts;
pub mod render;
pub mod schedule;
pub mod xlsx;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::watch;
use tracing::{Instrument as _, info, info_span, warn};

use crate::config::{Config, load_secret};
use crate::app::App;
use crate::outbox::{self, OutAttachment, OutgoingMail, Transport};
use crate::store::{NewOutgoing, Store};

pub use facts::{Facts, Totals, UnitRow, gather};
pub use schedule::{Plan, Slot, SlotKind};

pub const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// One digest, ready to mail.
#[derive(Debug, Clone)]
pub struct Digest {
    pub kind: SlotKind,
    /// The digest day (local date of `now`).
    pub day: NaiveDate,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The consolidated 推荐汇总表.
    pub xlsx: Vec<u8>,
    /// The attachment's file name.
    pub xlsx_name: String,
    /// The numbers behind it.
    pub facts: Facts,
}

/// The digest as of `now`: [`SlotKind::Final`] after the deadline, else daily.
pub async fn build(store: &Store, config: &Config, now: DateTime<Utc>) -> anyhow::Result<Digest> {
    let kind = if now > config.campaign.deadline { SlotKind::Final } else { SlotKind::Daily };
    build_kind(store, config, now, kind).await
}

/// The digest of a given kind as of `now`.
pub async fn build_kind(store: &Store, config: &Config, now: DateTime<Utc>, kind: SlotKind) -> anyhow::Result<Digest> {
    let facts = gather(store, config, now).await.context("reading the digest's data")?;
    let r = render::render(&facts, config, kind);
    let xlsx = xlsx::workbook(&facts, config)?;
    Ok(Digest {
        kind,
        day: facts.today,
        subject: r.subject,
        text: r.text,
        html: r.html,
        xlsx,
        xlsx_name: format!("{}（截至{}）.xlsx", xlsx::TITLE, facts.today.format("%Y-%m-%d")),
        facts,
    })
}

/// The consolidated 推荐汇总表 of all current studios: the same bytes as the digest's
/// attachment for the same database.
pub async fn export(store: &Store, config: &Config) -> anyhow::Result<Vec<u8>> {
    // The workbook does not depend on the time; `gather` only needs one for the text.
    let facts = gather(store, config, config.campaign.deadline.with_timezone(&Utc)).await?;
    xlsx::workbook(&facts, config)
}

/// `<digest-2020-09-20-daily@domain>`: one per day and kind, so enqueueing it twice is a
/// no-op in the outbox too.
pub fn digest_message_id(config: &Config, day: NaiveDate, kind: SlotKind) -> String {
    format!("<digest-{}-{}@{}>", day.format("%Y-%m-%d"), kind.as_str(), from_domain(config))
}

fn from_domain(config: &Config) -> String {
    let from = address_of(&config.outbox.from);
    let domain: String = from
        .rsplit('@')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    if domain.is_empty() { "studio-intake.invalid".into() } else { domain.to_ascii_lowercase() }
}

fn address_of(from: &str) -> String {
    match (from.find('<'), from.find('>')) {
        (Some(a), Some(b)) if b > a => from[a + 1..b].trim().to_lowercase(),
        _ => from.trim().to_lowercase(),
    }
}

/// The outbox row of a digest to `[digest] recipients`.
pub fn outgoing(config: &Config, d: &Digest, message_id: &str) -> anyhow::Result<NewOutgoing> {
    anyhow::ensure!(!config.digest.recipients.is_empty(), "[digest] recipients is empty: nobody to send the digest to");
    let mail = OutgoingMail {
        from: config.outbox.from.clone(),
        to: config.digest.recipients.clone(),
        subject: d.subject.clone(),
        text: d.text.clone(),
        html: Some(d.html.clone()),
        message_id: message_id.to_owned(),
        in_reply_to: None,
        references: vec![],
        auto_submitted: false,
        attachments: vec![OutAttachment { file_name: d.xlsx_name.clone(), content_type: XLSX_MIME.into(), data: d.xlsx.clone() }],
    };
    Ok(NewOutgoing {
        kind: "digest".into(),
        message_id: message_id.to_owned(),
        envelope_from: address_of(&config.outbox.from),
        recipients: config.digest.recipients.clone(),
        bytes: outbox::render(&mail)?,
        submission_raw_id: None,
    })
}

/// What [`send_scheduled`] did with a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOutcome {
    /// Claimed, built and queued.
    Queued,
    /// This day (or a later one) was already taken: a restart, or another instance.
    AlreadyTaken,
    /// No `[digest] recipients`.
    NoRecipients,
}

/// Send the digest of `slot` once across restarts and instances: take the day in the store
/// first, then build and queue the mail and wake the sender.
pub async fn send_scheduled(app: &App, slot: Slot, now: DateTime<Utc>) -> anyhow::Result<SlotOutcome> {
    if app.config.digest.recipients.is_empty() {
        return Ok(SlotOutcome::NoRecipients);
    }
    if let Some(last) = app.store.last_digest_day().await?
        && last >= slot.day
    {
        return Ok(SlotOutcome::AlreadyTaken);
    }
    if !app.store.claim_digest(slot.day, slot.kind.as_str(), now).await? {
        return Ok(SlotOutcome::AlreadyTaken);
    }
    let queued = async {
        let digest = build_kind(&app.store, &app.config, now, slot.kind).await?;
        let row = outgoing(&app.config, &digest, &digest_message_id(&app.config, slot.day, slot.kind))?;
        app.store.enqueue(&row).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = queued {
        // The day is taken: it will not be retried (see the module documentation).
        return Err(e.context(format!("the {} digest of {} was claimed but could not be queued", slot.kind.as_str(), slot.day)));
    }
    app.outbox_ready.notify_one();
    info!(day = %slot.day, kind = slot.kind.as_str(), "digest queued");
    Ok(SlotOutcome::Queued)
}

/// `studio-intake digest --send`: build the digest as of `now`, queue it under a fresh
/// Message-ID (a manual send does not take the scheduled day) and send what is due through
/// the configured outbox. Returns the Message-ID.
pub async fn send_now(app: &App, now: DateTime<Utc>) -> anyhow::Result<String> {
    let digest = build(&app.store, &app.config, now).await?;
    let message_id = format!("<digest-manual-{}@{}>", now.format("%Y%m%dT%H%M%S%6f"), from_domain(&app.config));
    let row = outgoing(&app.config, &digest, &message_id)?;
    app.store.enqueue(&row).await?;
    let password = load_secret(app.config.outbox.password_env.as_deref(), app.config.outbox.password_file.as_deref())?;
    let transport = Transport::from_config(&app.config.outbox, password)?;
    crate::outbox::sender::send_due(app, &transport, &format!("digest-{}", std::process::id())).await?;
    let sent = app.store.outgoing_by_message_id(&message_id).await?;
    match sent.map(|o| o.status) {
        Some(crate::store::OutgoingStatus::Sent) => Ok(message_id),
        Some(status) => {
            anyhow::bail!("the digest was queued but not sent yet ({status:?}); the daemon's sender will retry it")
        }
        None => anyhow::bail!("the digest vanished from the outbox"),
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduler

/// Where the scheduler reads the time.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock (production).
    System,
    /// `origin` at the tokio instant `at`, moving with tokio's clock: under
    /// `tokio::time::pause()` it moves only when the test advances time.
    Virtual { origin: DateTime<Utc>, at: tokio::time::Instant },
}

impl Clock {
    /// A clock showing `origin` now and moving with tokio's (possibly paused) clock.
    pub fn virtual_from(origin: DateTime<Utc>) -> Clock {
        Clock::Virtual { origin, at: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Virtual { origin, at } => {
                *origin + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
            }
        }
    }
}

/// Longest single sleep: the wall clock is looked at again at least this often, so a
/// suspended machine or a clock step does not delay a digest by more than this.
const MAX_NAP: Duration = Duration::from_secs(300);

/// The scheduler loop, independent of what a slot does: on start the latest slot at or
/// before now (catch-up; `fire` decides whether it was already sent), then each next slot at
/// its time, until the final slot has fired (returns) or `stop` turns true. When the clock
/// jumps over several slots only the latest is fired. Errors of `fire` are logged and the
/// loop goes on.
pub async fn drive<F, Fut>(plan: &Plan, clock: Clock, mut stop: watch::Receiver<bool>, mut fire: F)
where
    F: FnMut(Slot, DateTime<Utc>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let now = clock.now();
    if let Some(slot) = plan.latest_at_or_before(now) {
        if let Err(e) = fire(slot, now).await {
            warn!(day = %slot.day, "digest: {e:#}");
        }
        if slot.kind == SlotKind::Final {
            return;
        }
    }
    let mut cursor = now;
    while let Some(next) = plan.next_after(cursor) {
        let at = next.at.with_timezone(&Utc);
        loop {
            if *stop.borrow() {
                return;
            }
            let now = clock.now();
            if now >= at {
                break;
            }
            let wait = (at - now).to_std().unwrap_or_default().min(MAX_NAP);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        let now = clock.now();
        let slot = plan.latest_at_or_before(now).filter(|s| s.at >= next.at).unwrap_or(next);
        if let Err(e) = fire(slot, now).await {
            warn!(day = %slot.day, "digest: {e:#}");
        }
        if slot.kind == SlotKind::Final {
            return;
        }
        cursor = now.max(slot.at.with_timezone(&Utc));
    }
}

/// The daemon's digest task: [`drive`] with [`send_scheduled`].
pub async fn run_scheduler(app: Arc<App>, clock: Clock, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let plan = Plan::from_config(&app.config)?;
    if app.config.digest.recipients.is_empty() {
        info!("no [digest] recipients: no digests are sent");
        return Ok(());
    }
    if let Some(next) = plan.next_after(clock.now()) {
        info!(next = %next.at, kind = next.kind.as_str(), "digest schedule");
    }
    drive(&plan, clock, stop, |slot, now| {
        let app = app.clone();
        async move {
            let outcome = send_scheduled(&app, slot, now).await?;
            if outcome == SlotOutcome::AlreadyTaken {
                info!(day = %slot.day, "digest already sent for this day");
            }
            Ok(())
        }
    })
    .await;
    info!("digest schedule finished");
    Ok(())
}

/// Spawn the digest task on the system clock; it stops when `stop` turns true.
pub fn spawn(app: Arc<App>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            if let Err(e) = run_scheduler(app, Clock::System, stop).await {
                warn!("digest scheduler: {e:#}");
            }
        }
        .instrument(info_span!("digest")),
    )
}
