//! The sender task: drains the outbox through the configured transport, retrying transient
//! failures with backoff and setting the rest aside as dead (the digest lists them).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::app::{App, worker_name};
use crate::config::{Config, load_secret};
use crate::metrics::{Metrics, metrics};
use crate::outbox::{self, Transport};

/// Mails sent at once: as many as the SMTP transport keeps connections (an SMTP transaction
/// is mostly waiting for the server, so one at a time leaves a burst of replies queueing).
pub const PARALLEL_SENDS: usize = super::transport::SMTP_CONNECTIONS as usize;

/// Send what is due, [`PARALLEL_SENDS`] at a time; returns how many were handled. Transient
/// failures are retried with backoff until `max_attempts`, then set aside as dead (the digest
/// lists them).
pub async fn send_due(app: &App, transport: &Transport, worker: &str) -> anyhow::Result<usize> {
    let lanes = futures::future::join_all((0..PARALLEL_SENDS).map(|_| send_lane(app, transport, worker))).await;
    let mut handled = 0;
    for lane in lanes {
        handled += lane?;
    }
    Ok(handled)
}

/// One lane of [`send_due`]: claim, send, record, until nothing is due. The store's claim
/// gives each row to one lane only.
async fn send_lane(app: &App, transport: &Transport, worker: &str) -> anyhow::Result<usize> {
    let mut handled = 0;
    while let Some(mail) = app.store.claim_outgoing(worker, Utc::now(), Duration::from_secs(300)).await? {
        handled += 1;
        let span = info_span!("send", id = mail.id, message_id = %mail.message_id);
        async {
            match transport.send(&mail.envelope_from, &mail.recipients, &mail.bytes).await {
                Ok(()) => {
                    info!(to = %mail.recipients.join(","), "sent");
                    // Counted once the store says so: /metrics never shows a mail sent and
                    // still waiting in the outbox.
                    app.store.outgoing_sent(mail.id, Utc::now()).await?;
                    Metrics::inc(&metrics().outbox_sent);
                    anyhow::Ok(())
                }
                Err(e) => {
                    // The store counts the claim in hand as an attempt.
                    let attempts = mail.attempts.max(1) as u32;
                    let next = (e.transient && attempts < app.config.outbox.max_attempts)
                        .then(|| Utc::now() + chrono::Duration::from_std(retry_delay(&app.config, attempts)).unwrap_or_default());
                    warn!(attempts, transient = e.transient, dead = next.is_none(), "send failed: {}", e.message);
                    app.store.outgoing_failed(mail.id, &e.message, next).await?;
                    Metrics::inc(if next.is_some() { &metrics().outbox_retries } else { &metrics().outbox_dead });
                    anyhow::Ok(())
                }
            }
        }
        .instrument(span)
        .await?;
    }
    Ok(handled)
}

/// The outbox backoff (30 s, 1 min, 2 min … 1 h) scaled to `[outbox] retry_base_secs`.
fn retry_delay(config: &Config, attempts: u32) -> Duration {
    outbox::backoff(attempts).mul_f64(config.outbox.retry_base_secs as f64 / 30.0).min(Duration::from_secs(3600))
}

pub fn transport(config: &Config) -> anyhow::Result<Transport> {
    let password = load_secret(config.outbox.password_env.as_deref(), config.outbox.password_file.as_deref())?;
    Transport::from_config(&config.outbox, password)
}

/// Run the sender until `stop` turns true: [`PARALLEL_SENDS`] lanes, each sending what is due,
/// then sleeping until the next due row, a new row (`outbox_ready` wakes one lane per
/// notification) or 30 s. Lanes that find nothing to claim wait; a busy one keeps claiming.
pub fn spawn(app: Arc<App>, transport: Arc<Transport>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let worker = worker_name();
        let lanes = (0..PARALLEL_SENDS).map(|_| {
            let (app, transport, worker, mut stop) = (app.clone(), transport.clone(), worker.clone(), stop.clone());
            async move {
                loop {
                    if let Err(e) = send_lane(&app, &transport, &worker).await {
                        warn!("outbox: {e:#}");
                    }
                    let wait = match app.store.next_due().await {
                        Ok(Some(t)) => (t - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(Duration::from_secs(30)),
                        _ => Duration::from_secs(30),
                    };
                    tokio::select! {
                        _ = app.outbox_ready.notified() => {}
                        _ = tokio::time::sleep(wait.max(Duration::from_millis(200))) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        });
        futures::future::join_all(lanes).await;
    })
}
