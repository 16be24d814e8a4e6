//! studio-intake: e-mail intake for the 2020 Leshan model-worker and craftsman innovation
//! studio call (乐工经〔2020〕24号).
//!
//! # Layout
//! - [`core`]: the pure pipeline mime → grid → forms → rules → report (no I/O).
//! - [`config`]: the one TOML file, typed and validated; built-in 2020 Leshan defaults.
//! - [`cli`]: the `studio-intake` command line.
//! - [`fixtures`]: builders of realistic mails, forms and photos for tests and benchmarks.
//! - [`mailbox`]: where mail comes from: IMAP (IDLE, poll, reconnect) or a Maildir/`.eml` folder.
pub mod cli;
pub mod config;
pub mod core;
pub mod fixtures;
pub mod mailbox;
