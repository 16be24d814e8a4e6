//! Raw message bytes → [`Message`]: headers, sender, receipt time and a flat list of
//! attachments (nested `message/rfc822` and `.zip` members expanded, names decoded).
//!
//! mail-parser 0.11.9 does the MIME walk; this module repairs what it gets wrong for
//! Chinese mail clients (see `../shared/notes/CRATES.md`).

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::{Limits, Unreadable};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub name: Option<String>,
    /// Lower-cased address.
    pub address: String,
}

/// Why a message is automatic and must never be answered (RFC 3834 and friends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoMail {
    /// `Auto-Submitted:` other than `no`.
    AutoSubmitted(String),
    /// `Precedence: bulk|junk|list`.
    Precedence(String),
    /// `List-Id` / `List-Unsubscribe` present.
    MailingList,
    /// Delivery status notification (`multipart/report`, MAILER-DAEMON, `Return-Path: <>`).
    Bounce,
    /// Vacation responders that set `X-Autoreply`, `X-Autorespond`, `X-Auto-Response-Suppress: All`/`OOF`.
    AutoReply(String),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Message {
    /// Always in angle brackets (mail-parser strips them, #42).
    pub message_id: Option<String>,
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    /// `Date:` header.
    pub date: Option<DateTime<FixedOffset>>,
    /// Date of the newest (topmost) `Received:` header, if any parses.
    pub received_at: Option<DateTime<FixedOffset>>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub auto: Option<AutoMail>,
    /// The top-level text body (text/plain, or text/html stripped of tags).
    pub body_text: String,
    /// Every attachment in document order, including archives themselves and their members,
    /// and attachments of forwarded messages.
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// Display path: the decoded file name; for an archive member `outer.zip/folder/name.docx`.
    pub name: String,
    /// Last component of `name` (what the user would call the file name).
    pub file_name: String,
    /// Lower-cased MIME type as declared (or guessed from the name for archive members).
    pub content_type: String,
    #[serde(skip)]
    pub data: Vec<u8>,
    /// Hints from what contains the file, outermost first: folder names inside a zip, the
    /// zip's own name, the subject of a forwarded message. Used to tell which studio a photo
    /// belongs to.
    pub context: Vec<String>,
    /// Set for members of an archive: index of the archive attachment in `Message::attachments`.
    pub archive: Option<usize>,
    /// Inline part (Content-Disposition inline or none) with a Content-ID: maybe a signature logo.
    pub inline_cid: bool,
    /// Why the attachment cannot be used (then `data` may be empty or partial).
    pub problem: Option<Unreadable>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MimeError {
    #[error("message is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("not an e-mail message: {0}")]
    NotAMessage(String),
}
