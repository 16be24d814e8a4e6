//! The wiring of `run`: builds the shared state ([`crate::app::App`]), starts and supervises
//! the tasks — intake ([`crate::intake`]) under the mailbox lease, the outbox sender
//! ([`crate::outbox::sender`]), the digest scheduler and the health endpoint — and drains them
//! on shutdown (the message in hand and the mail being sent are finished first).
//!
//! Invariant: a message is marked/moved on the server only after its raw bytes and its
//! results are committed (the source does that when the intake handler returns `Ok`), so a
//! crash anywhere leads to reprocessing, which the store turns into a no-op.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::app::{App, worker_name};
use crate::config::Config;
use crate::health;
use crate::intake::{Intake, hex, process_raw};
use crate::mailbox;
use crate::metrics::metrics;
use crate::outbox::sender::{self, send_due, transport};
use crate::store::Store;

/// `run --once`: one pass over the mailbox, then send what is due, then return.
pub async fn run_once(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    warn_units_without_senders(&app).await?;
    let transport = transport(&app.config)?;
    let source = mailbox::Source::from_config(&app.config, Arc::new(StoreState(app.store.clone())))?;
    let n = source.run_once(&Intake { app: app.clone() }).await?;
    retry_unprocessed(&app).await?;
    let sent = send_due(&app, &transport, &worker_name()).await?;
    info!(messages = n, sent, "pass done");
    Ok(())
}

/// The configuration, not the first stranger to write, decides who speaks for a unit: say
/// at start which units have no registered address (their mails will be held).
async fn warn_units_without_senders(app: &App) -> anyhow::Result<()> {
    let approved = app.store.registered_senders().await?;
    let silent: Vec<&str> = app
        .policy
        .units
        .iter()
        .filter(|u| u.senders.is_empty() && !approved.iter().any(|(_, unit)| *unit == u.name))
        .map(|u| u.name.as_str())
        .collect();
    if !silent.is_empty() {
        warn!(
            units = %silent.join("、"),
            "these units have no registered sender address: their mails will be held until staff approve one (`studio-intake held`) or [[units]] senders lists it"
        );
    }
    Ok(())
}

/// Messages stored earlier but never recorded (a crash between the two, or a core failure).
async fn retry_unprocessed(app: &App) -> anyhow::Result<()> {
    while let Some(raw) = app.store.claim_raw(&worker_name(), Duration::from_secs(300)).await? {
        let sha = hex(&Sha256::digest(&raw.bytes));
        if let Err(e) = process_raw(app, raw.id, &raw.bytes, &sha, raw.received_at).await {
            warn!(raw = raw.id, "reprocessing failed: {e:#}");
            app.store.raw_failed(raw.id, &format!("{e:#}")).await?;
        }
    }
    Ok(())
}

/// The daemon: mailbox and sender run until `shutdown` resolves; the message in hand and the
/// mail being sent are finished first.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    warn_units_without_senders(&app).await?;
    let transport = Arc::new(transport(&app.config)?);
    let source = mailbox::Source::from_config(&app.config, Arc::new(StoreState(app.store.clone())))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let health = match &app.config.health.listen {
        Some(listen) => {
            let listener = health::bind(listen).await?;
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(health::serve(listener, app.clone(), async move {
                let _ = stop.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };
    retry_unprocessed(&app).await?;

    let sender = sender::spawn(app.clone(), transport.clone(), stop_rx.clone());
    let digests = crate::digest::spawn(app.clone(), stop_rx.clone());
    let intake = Intake { app: app.clone() };
    let result = poll_while_leased(&app, &source, &intake, stop_rx.clone()).await;
    let _ = sender.await;
    let _ = digests.await;
    if let Some(h) = health {
        h.abort();
    }
    info!("stopped");
    result
}

/// Several instances may share one database: only the holder of the mailbox's lease polls it.
/// The holder renews the lease every third of `lease_secs`; when it dies, another instance
/// takes over once the lease has run out. Losing the lease stops polling after the message in
/// hand.
async fn poll_while_leased(app: &Arc<App>, source: &mailbox::Source, intake: &Intake, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let holder = worker_name();
    let name = format!("mailbox:{}", source.mailbox_id());
    let ttl = Duration::from_secs(app.config.source.lease_secs.max(3));
    let renew_every = ttl / 3;
    let mut waiting_logged = false;
    while !*stop.borrow() {
        if !app.store.try_lease(&name, &holder, ttl, Utc::now()).await? {
            if !waiting_logged {
                info!(lease = %name, "another instance polls this mailbox; standing by");
                waiting_logged = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(renew_every) => continue,
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        waiting_logged = false;
        info!(lease = %name, "holding the mailbox lease: polling");
        metrics().set_polling(true);
        let (lost_tx, lost_rx) = watch::channel(false);
        let renewer = {
            let app = app.clone();
            let (name, holder) = (name.clone(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(renew_every).await;
                    match app.store.try_lease(&name, &holder, ttl, Utc::now()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(lease = %name, "mailbox lease lost to another instance");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => warn!(lease = %name, "cannot renew the mailbox lease: {e:#}"),
                    }
                }
            })
        };
        let mut stop_run = stop.clone();
        let mut lost = lost_rx.clone();
        let result = source
            .run(intake, async move {
                tokio::select! {
                    _ = stop_run.wait_for(|s| *s) => {}
                    _ = lost.wait_for(|l| *l) => {}
                }
            })
            .await;
        renewer.abort();
        metrics().set_polling(false);
        result?;
    }
    if let Err(e) = app.store.release_lease(&name, &holder).await {
        warn!("cannot release the mailbox lease: {e:#}");
    }
    Ok(())
}

/// UIDVALIDITY / last-UID bookkeeping kept in the store.
struct StoreState(Store);

impl mailbox::MailboxState for StoreState {
    fn get<'a>(&'a self, mailbox: &'a str) -> futures::future::BoxFuture<'a, anyhow::Result<Option<(u32, u32)>>> {
        Box::pin(async move { Ok(self.0.mailbox_state(mailbox).await?.map(|(v, u)| (v as u32, u as u32))) })
    }
    fn set<'a>(&'a self, mailbox: &'a str, uidvalidity: u32, last_uid: u32) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.0.set_mailbox_state(mailbox, uidvalidity as i64, last_uid as i64).await })
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutdown requested: finishing the message in hand");
}
