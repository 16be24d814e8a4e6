//! studio-intake: e-mail intake for the 2020 Leshan model-worker and craftsman innovation
//! studio call (乐工经〔2020〕24号).
//!
//! # Layout
//! - [`core`]: the pure pipeline mime → grid → forms → rules → report (no I/O).
//! - [`config`]: the one TOML file, typed and validated; built-in 2020 Leshan defaults.
//! - [`store`]: sqlx on SQLite (default) or PostgreSQL: raw mail, records, outbox, digests.
//! - [`mailbox`]: IMAP (IDLE/poll) and Maildir/.eml sources.
//! - [`outbox`]: rendering and sending replies (SMTP or files).
//! - [`app`]: the state the daemon's tasks share; [`intake`]: what happens to each message;
//!   [`daemon`]: the wiring of `run`.
//! - [`digest`]: the staff digest on a cron schedule and the consolidated 推荐汇总表.
//! - [`health`], [`metrics`]: `/healthz` and Prometheus `/metrics` on loopback.
//! - [`cli`]: the `studio-intake` command line.
//! - [`logging`]: the log filter and writer that keep passwords out of every line.
//! - `fixtures` (feature `fixtures`): builders of realistic mails, forms and photos for tests and benchmarks.
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod convert;
pub mod core;
pub mod daemon;
pub mod digest;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod health;
pub mod intake;
pub mod logging;
pub mod mailbox;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod store;
