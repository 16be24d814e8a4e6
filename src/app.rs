//! The state every task of the daemon shares: configuration, store, converters and the
//! outbox's wake-up. Its own module so that the tasks (intake, sender, digest, health) import
//! it without importing each other or the wiring in [`crate::daemon`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use tokio::sync::Notify;

use crate::config::Config;
use crate::convert::Converters;
use crate::store::Store;

/// Everything the tasks share.
pub struct App {
    pub config: Config,
    /// What the core needs of `config`, built once.
    pub policy: crate::core::policy::Policy,
    /// Verifies senders when `[security] sender_auth = "authenticated"`.
    pub authenticator: Option<crate::auth::Authenticator>,
    pub store: Store,
    pub converters: Converters,
    /// Wakes the sender when a new outbox row is committed.
    pub outbox_ready: Notify,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Arc<App>> {
        let store = Store::connect(&config.database.url, config.database.max_connections)
            .await
            .with_context(|| format!("cannot open database {}", redact(&config.database.url)))?;
        store.migrate().await.context("database migrations failed")?;
        let converters = config.converters.resolve(Duration::from_secs(config.limits.converter_timeout_secs));
        let authenticator = match config.security.sender_auth {
            crate::config::SenderAuth::Registered => None,
            crate::config::SenderAuth::Authenticated => {
                let a = match &config.security.dns_server {
                    Some(server) => {
                        let addr: std::net::SocketAddr =
                            server.parse().with_context(|| format!("[security] dns_server must be IP:port, not {server:?}"))?;
                        crate::auth::Authenticator::with_nameserver(addr)?
                    }
                    None => crate::auth::Authenticator::system().context("cannot read the system DNS configuration for DKIM")?,
                };
                Some(a.with_max_dkim_bytes(config.limits.max_message_bytes))
            }
        };
        Ok(Arc::new(App { policy: config.policy(), authenticator, config, store, converters, outbox_ready: Notify::new() }))
    }

    /// Our own addresses: never answered (mail loops).
    pub fn own_addresses(&self) -> Vec<String> {
        let mut own = vec![address_of(&self.config.outbox.from)];
        if self.config.source.username.contains('@') {
            own.push(self.config.source.username.to_lowercase());
        }
        own
    }
}

pub fn address_of(from: &str) -> String {
    match (from.find('<'), from.find('>')) {
        (Some(a), Some(b)) if b > a => from[a + 1..b].trim().to_lowercase(),
        _ => from.trim().to_lowercase(),
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Unique per task and process: names the holder of claims and leases.
pub fn worker_name() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    format!("{host}:{}:{}:{}", std::process::id(), Utc::now().timestamp_millis(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

