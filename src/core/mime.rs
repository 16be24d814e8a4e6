//! Raw message bytes → [`Message`]: headers, sender, receipt time and a flat list of
//! attachments (nested `message/rfc822` and `.zip` members expanded, names decoded).
//!
//! # Why not mail-parser's own part tree
//! mail-parser 0.11.9 (with `full_encoding`) parses the address headers (`From`,
//! `Reply-To`) and the dates. The part tree itself is split here, line by line, because
//! 0.11.9 gets the things that matter most for this daemon wrong (see
//! `../shared/notes/CRATES.md`): a boundary string in the middle of a line silently
//! truncates a part (#156), a filename folded right after `=` is lost (#165), GBK
//! encoded-words or RFC 2231 continuations split in the middle of a character and raw 8-bit
//! GBK header bytes come out as U+FFFD. Splitting ourselves also lets the part, depth and
//! size limits apply *before* anything is decoded.
//!
//! # Layout
//! - `header`: header block splitting, unfolding, RFC 2047/2231 decoding with GB18030
//!   fallback.
//! - `archive`: `.zip` expansion with GB18030 member names and bomb limits.
//! - this file: the walk, classification of parts, the top-level header fields, auto-mail
//!   detection.
//!
//! Everything here is pure (no I/O, no clock) and must not panic on any input; the entry
//! point also runs behind `catch_unwind` as a second line of defence.

mod archive;
mod header;
mod tnef;

use std::panic::{AssertUnwindSafe, catch_unwind};

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
    /// Set when the walk stopped at `Limits::max_parts`: later parts are missing from
    /// `attachments`.
    pub parts_truncated: bool,
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

use header::{Entity, decode_charset, decode_words, parse_structured, split_entity, unfold};

/// Hard cap on multipart nesting (independent of `Limits`): keeps recursion far from the
/// stack limit whatever the configuration says.
const MAX_MIME_NESTING: u32 = 40;
/// Hard cap on message/zip nesting, whatever `Limits::max_depth` says.
const MAX_DEPTH_CAP: u32 = 32;

/// Parses one raw message into headers, body text and a flat attachment list.
///
/// Pure and panic-free. Errors only for input that is not a message at all
/// ([`MimeError::NotAMessage`]) or is over `limits.max_message_bytes`
/// ([`MimeError::TooLarge`]); every problem with a single part is recorded on that
/// [`Attachment`] as an [`Unreadable`].
pub fn parse(raw: &[u8], limits: &Limits) -> Result<Message, MimeError> {
    if raw.len() as u64 > limits.max_message_bytes {
        return Err(MimeError::TooLarge {
            limit: limits.max_message_bytes,
        });
    }
    match catch_unwind(AssertUnwindSafe(|| parse_inner(raw, limits))) {
        Ok(result) => result,
        Err(_) => Err(MimeError::NotAMessage(
            "the message could not be parsed (internal parser failure)".into(),
        )),
    }
}

fn parse_inner(raw: &[u8], limits: &Limits) -> Result<Message, MimeError> {
    let entity = split_entity(raw, true)
        .ok_or_else(|| MimeError::NotAMessage("no header block at the start of the data".into()))?;
    if !looks_like_message(raw, &entity) {
        return Err(MimeError::NotAMessage(
            "no e-mail header fields found".into(),
        ));
    }
    let mut msg = Message::default();
    fill_headers(&mut msg, raw, &entity);

    let mut walker = Walker::new(limits);
    walker.walk(&entity, 0, &[], Scope::Top, 0);
    msg.parts_truncated = walker.parts_over;
    msg.body_text = if !walker.plain.is_empty() {
        walker.plain.join("\n").trim().to_string()
    } else {
        walker
            .html
            .iter()
            .map(|h| html_to_text(h))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    };
    msg.auto = detect_auto(&entity, &msg, walker.report);
    msg.attachments = walker.out;
    Ok(msg)
}

/// Header names that make a header block an e-mail header block.
const KNOWN_FIELDS: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "received",
    "mime-version",
    "content-type",
    "return-path",
    "sender",
    "reply-to",
    "delivered-to",
    "x-mailer",
];

fn looks_like_message(raw: &[u8], e: &Entity<'_>) -> bool {
    let header_len = raw.len() - e.body.len();
    let block = &raw[..header_len];
    if block.contains(&0) {
        return false;
    }
    e.fields
        .iter()
        .any(|f| KNOWN_FIELDS.contains(&f.name.as_str()))
}

// ---------------------------------------------------------------------------------------
// Top-level header fields
// ---------------------------------------------------------------------------------------

fn fill_headers(msg: &mut Message, raw: &[u8], e: &Entity<'_>) {
    msg.message_id = e
        .raw("message-id")
        .and_then(|v| header::msg_ids(v).into_iter().next());
    msg.in_reply_to = e
        .raw("in-reply-to")
        .and_then(|v| header::msg_ids(v).into_iter().next());
    msg.references = e.raw("references").map(header::msg_ids).unwrap_or_default();
    msg.subject = clean_text(&e.text("subject").unwrap_or_default());
    msg.date = e.text("date").and_then(|d| parse_date(&d));
    msg.received_at = e.raw("received").and_then(|v| {
        let s = String::from_utf8_lossy(&unfold(v)).to_string();
        let (_, date) = s.rsplit_once(';')?;
        parse_date(date)
    });

    // Addresses: mail-parser's address grammar (groups, comments, quoting), display names
    // from our own decoder (split encoded-words, raw GBK).
    let header_len = raw.len() - e.body.len();
    let (mp_from, mp_reply) = catch_unwind(AssertUnwindSafe(|| {
        let parsed = mail_parser::MessageParser::default().parse_headers(&raw[..header_len]);
        let first = |a: Option<&mail_parser::Address<'_>>| {
            a.and_then(|a| a.first())
                .and_then(|a| a.address.as_ref())
                .map(|s| s.to_string())
        };
        match parsed {
            Some(m) => (first(m.from()), first(m.reply_to())),
            None => (None, None),
        }
    }))
    .unwrap_or((None, None));
    msg.from = e.raw("from").and_then(|v| mailbox(v, mp_from));
    msg.reply_to = e.raw("reply-to").and_then(|v| mailbox(v, mp_reply));
}

fn mailbox(raw: &[u8], parsed_address: Option<String>) -> Option<Mailbox> {
    let text = decode_words(&unfold(raw));
    let (name, own_address) = match (text.find('<'), text.rfind('>')) {
        (Some(a), Some(b)) if b > a => (text[..a].to_string(), text[a + 1..b].to_string()),
        _ => {
            // bare address, maybe with a "(comment)" name
            let (addr, comment) = match (text.find('('), text.rfind(')')) {
                (Some(a), Some(b)) if b > a => (
                    format!("{}{}", &text[..a], &text[b + 1..]),
                    text[a + 1..b].to_string(),
                ),
                _ => (text.clone(), String::new()),
            };
            (comment, addr)
        }
    };
    let address = parsed_address
        .filter(|a| a.contains('@'))
        .unwrap_or(own_address)
        .trim()
        .trim_matches(|c| c == '<' || c == '>' || c == '"')
        .to_lowercase();
    let address = clean_text(&address).replace(' ', "");
    if address.is_empty() {
        return None;
    }
    let name = clean_text(name.trim().trim_matches('"').trim());
    let name = (!name.is_empty() && name.to_lowercase() != address).then_some(name);
    Some(Mailbox { name, address })
}

/// Lenient RFC 2822 date: with or without weekday, `(CST)` comments, `+0800`.
fn parse_date(s: &str) -> Option<DateTime<FixedOffset>> {
    let mut cleaned = String::with_capacity(s.len());
    let mut depth = 0u32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(d) = DateTime::parse_from_rfc2822(&cleaned) {
        return Some(d);
    }
    let d = catch_unwind(|| mail_parser::DateTime::parse_rfc822(&cleaned))
        .ok()
        .flatten()?;
    if !d.is_valid() {
        return None;
    }
    let offset_secs =
        (d.tz_hour as i32 * 3600 + d.tz_minute as i32 * 60) * if d.tz_before_gmt { -1 } else { 1 };
    let tz = FixedOffset::east_opt(offset_secs)?;
    let naive = chrono::NaiveDate::from_ymd_opt(d.year as i32, d.month as u32, d.day as u32)?
        .and_hms_opt(d.hour as u32, d.minute as u32, d.second as u32)?;
    naive.and_local_timezone(tz).single()
}

// ---------------------------------------------------------------------------------------
// Automatic mail
// ---------------------------------------------------------------------------------------

fn header_word(e: &Entity<'_>, name: &str) -> Option<String> {
    e.text(name).map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

fn detect_auto(e: &Entity<'_>, msg: &Message, report: bool) -> Option<AutoMail> {
    let ct = e
        .raw("content-type")
        .map(parse_structured)
        .unwrap_or_default();
    if report || ct.value == "multipart/report" || ct.value == "message/delivery-status" {
        return Some(AutoMail::Bounce);
    }
    if let Some(v) = header_word(e, "auto-submitted")
        && !v.is_empty()
        && v != "no"
    {
        return Some(AutoMail::AutoSubmitted(v));
    }
    if let Some(from) = &msg.from {
        let local = from.address.split('@').next().unwrap_or("");
        if local == "mailer-daemon" || local == "postmaster" {
            return Some(AutoMail::Bounce);
        }
    }
    if let Some(rp) = e.raw("return-path") {
        let rp: String = String::from_utf8_lossy(rp)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if rp == "<>" {
            return Some(AutoMail::Bounce);
        }
    }
    for name in ["x-autoreply", "x-autorespond"] {
        if let Some(v) = header_word(e, name)
            && v != "no"
            && v != "false"
        {
            return Some(AutoMail::AutoReply(format!("{name}: {v}")));
        }
    }
    if let Some(v) = header_word(e, "x-auto-response-suppress")
        && v.split(|c: char| c == ',' || c.is_whitespace())
            .any(|t| t == "oof" || t == "all")
    {
        return Some(AutoMail::AutoReply(format!(
            "x-auto-response-suppress: {v}"
        )));
    }
    let subject = msg.subject.trim_start();
    let lower = subject.to_lowercase();
    let reply_prefix = [
        "自动回复:",
        "自动回复：",
        "自动回复 :",
        "【自动回复】",
        "[自动回复]",
        // Outlook zh-CN out-of-office prefix.
        "自动答复:",
        "自动答复：",
    ]
    .iter()
    .any(|p| subject.starts_with(p))
        || [
            "auto reply",
            "auto-reply:",
            "autoreply:",
            "automatic reply:",
            "automatic reply：",
        ]
        .iter()
        .any(|p| lower.starts_with(p));
    if reply_prefix {
        return Some(AutoMail::AutoReply(format!(
            "subject: {}",
            subject.chars().take(40).collect::<String>()
        )));
    }
    if let Some(v) = header_word(e, "precedence")
        && matches!(v.as_str(), "bulk" | "junk" | "list")
    {
        return Some(AutoMail::Precedence(v));
    }
    if e.has("list-id") || e.has("list-unsubscribe") {
        return Some(AutoMail::MailingList);
    }
    None
}

// ---------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Parts of the received message: unnamed text parts are its body.
    Top,
    /// Parts of a forwarded message: unnamed text parts are ignored.
    Forwarded,
}

struct Walker<'l> {
    limits: &'l Limits,
    max_depth: u32,
    parts: u32,
    parts_over: bool,
    /// Bytes inflated from archives so far (whole message).
    inflated: u64,
    out: Vec<Attachment>,
    plain: Vec<String>,
    html: Vec<String>,
    generated: u32,
    report: bool,
}

impl<'l> Walker<'l> {
    fn new(limits: &'l Limits) -> Self {
        Walker {
            limits,
            max_depth: limits.max_depth.min(MAX_DEPTH_CAP),
            parts: 0,
            parts_over: false,
            inflated: 0,
            out: Vec::new(),
            plain: Vec::new(),
            html: Vec::new(),
            generated: 0,
            report: false,
        }
    }

    /// Counts one part; false once the limit is passed.
    fn count_part(&mut self) -> bool {
        if self.parts_over {
            return false;
        }
        self.parts += 1;
        if self.parts > self.limits.max_parts {
            self.parts_over = true;
            return false;
        }
        true
    }

    /// `level`: 0 for the received message, +1 per forwarded message or archive.
    fn walk(&mut self, e: &Entity<'_>, level: u32, ctx: &[String], scope: Scope, nest: u32) {
        if !self.count_part() {
            return;
        }
        let ct = e
            .raw("content-type")
            .map(parse_structured)
            .unwrap_or_default();
        let mime = if ct.value.contains('/') {
            ct.value.clone()
        } else {
            "text/plain".to_string()
        };
        if mime.starts_with("multipart/") {
            if scope == Scope::Top && mime == "multipart/report" {
                self.report = true;
            }
            if let Some(boundary) = ct.param("boundary").filter(|b| !b.is_empty()) {
                if nest >= MAX_MIME_NESTING {
                    return;
                }
                for child in split_multipart(e.body, boundary) {
                    if self.parts_over {
                        break;
                    }
                    let ce = split_entity(child, false).unwrap_or(Entity {
                        fields: Vec::new(),
                        body: child,
                    });
                    self.walk(&ce, level, ctx, scope, nest + 1);
                }
                return;
            }
            // A multipart without a boundary: treat it as one text part.
        }
        self.leaf(e, &ct, &mime, level, ctx, scope, nest);
    }

    #[allow(clippy::too_many_arguments)]
    fn leaf(
        &mut self,
        e: &Entity<'_>,
        ct: &header::Structured,
        mime: &str,
        level: u32,
        ctx: &[String],
        scope: Scope,
        nest: u32,
    ) {
        let disp = e
            .raw("content-disposition")
            .map(parse_structured)
            .unwrap_or_default();
        let name = pick_name(disp.param("filename"), ct.param("name"));
        let is_attachment = disp.value == "attachment";
        let cte = e
            .text("content-transfer-encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if scope == Scope::Top && mime == "message/delivery-status" {
            self.report = true;
        }
        if (mime == "text/plain" || mime == "text/html") && name.is_none() && !is_attachment {
            if scope == Scope::Top {
                let (bytes, _) = decode_transfer(e.body, &cte);
                let text = decode_charset(&bytes, ct.param("charset"));
                if mime == "text/plain" {
                    self.plain.push(text)
                } else {
                    self.html.push(text)
                }
            }
            return;
        }
        let (data, problem) = decode_transfer(e.body, &cte);
        let inline_cid = !is_attachment && e.has("content-id");
        let name = match name {
            Some(n) => n,
            None if mime.starts_with("message/rfc822") || mime == "message/global" => {
                // Name a forwarded message after its subject.
                let subject = split_entity(&data, true)
                    .and_then(|fe| fe.text("subject"))
                    .map(|s| clean_file_name(&s))
                    .unwrap_or_default();
                if subject.is_empty() {
                    self.generated_name("forwarded", mime)
                } else {
                    format!("{subject}.eml")
                }
            }
            None => self.generated_name(if inline_cid { "inline" } else { "attachment" }, mime),
        };
        let file = NewFile {
            name: name.clone(),
            file_name: name,
            content_type: mime.to_string(),
            context: ctx.to_vec(),
            archive: None,
            inline_cid,
        };
        self.add_file(file, data, problem, level, nest);
    }

    fn generated_name(&mut self, stem: &str, mime: &str) -> String {
        self.generated += 1;
        format!("{stem}-{}.{}", self.generated, ext_for_type(mime))
    }

    /// Adds a file (MIME leaf or archive member), expanding archives and forwarded
    /// messages. Returns nothing: the attachment (if any) is pushed onto `out`.
    fn add_file(
        &mut self,
        f: NewFile,
        data: Vec<u8>,
        problem: Option<Unreadable>,
        level: u32,
        nest: u32,
    ) {
        let mut att = Attachment {
            name: f.name,
            file_name: f.file_name,
            content_type: f.content_type,
            data,
            context: f.context,
            archive: f.archive,
            inline_cid: f.inline_cid,
            problem,
        };
        if att.problem.is_none() {
            if att.data.len() as u64 > self.limits.max_attachment_bytes {
                att.problem = Some(Unreadable::TooLarge {
                    limit: self.limits.max_attachment_bytes,
                });
                att.data = Vec::new();
            } else if att.data.is_empty() {
                att.problem = Some(Unreadable::Empty);
            }
        }
        if att.problem.is_some() {
            self.out.push(att);
            return;
        }
        match kind(&att.file_name, &att.content_type, &att.data) {
            Kind::Zip => {
                att.content_type = "application/zip".into();
                let index = self.out.len();
                self.out.push(att);
                let names = format!("{}/", self.out[index].name);
                self.expand_container(index, level, nest, names, |walker, data| archive::expand(data, walker.limits, &mut walker.inflated));
            }
            Kind::Tnef => {
                att.content_type = "application/ms-tnef".into();
                let index = self.out.len();
                self.out.push(att);
                // The sender attached files, not a winmail.dat (Outlook made it on the way
                // out): what it holds goes by the names the sender gave, where it stood.
                let names = self.out[index].name.rsplit_once('/').map(|(parent, _)| format!("{parent}/")).unwrap_or_default();
                self.expand_container(index, level, nest, names, |walker, data| tnef::expand(data, walker.limits));
            }
            Kind::Message => self.nested_message(att, level, nest),
            Kind::Unsupported(format) => {
                att.problem = Some(Unreadable::Unsupported {
                    format: format.into(),
                    resend_as: "ZIP压缩包或直接以附件发送".into(),
                });
                self.out.push(att);
            }
            Kind::Plain => self.out.push(att),
        }
    }

    fn nested_message(&mut self, mut att: Attachment, level: u32, nest: u32) {
        let inner = level + 1;
        if inner > self.max_depth {
            att.problem = Some(Unreadable::TooDeep {
                limit: self.max_depth,
            });
            att.data = Vec::new();
            self.out.push(att);
            return;
        }
        let data = std::mem::take(&mut att.data);
        let entity = split_entity(&data, true).filter(|fe| looks_like_message(&data, fe));
        let Some(entity) = entity else {
            att.problem = Some(Unreadable::Corrupt {
                detail: "not an e-mail message".into(),
            });
            att.data = data;
            self.out.push(att);
            return;
        };
        let subject = clean_text(&entity.text("subject").unwrap_or_default());
        let label = if subject.is_empty() {
            att.file_name.clone()
        } else {
            subject
        };
        let mut ctx = att.context.clone();
        ctx.push(label);
        // The forwarded message's own parts count towards max_parts but the message itself
        // is not listed: its attachments are what the sender meant to send.
        self.walk(&entity, inner, &ctx, Scope::Forwarded, nest + 1);
    }

    /// Opens the container at `index` (a zip, Outlook's winmail.dat) and adds its members as
    /// files inside it, each named `names` + its path in the container.
    fn expand_container(&mut self, index: usize, level: u32, nest: u32, names: String, expand: impl FnOnce(&mut Self, &[u8]) -> archive::Expanded) {
        let inner = level + 1;
        if inner > self.max_depth {
            self.out[index].problem = Some(Unreadable::TooDeep {
                limit: self.max_depth,
            });
            return;
        }
        let data = std::mem::take(&mut self.out[index].data);
        let expanded = expand(self, &data);
        let zip_file_name = self.out[index].file_name.clone();
        let base_ctx = self.out[index].context.clone();
        self.out[index].data = data;
        self.out[index].problem = expanded.problem;
        for m in expanded.members {
            if !self.count_part() {
                break;
            }
            let file_name = m.path.last().cloned().unwrap_or_default();
            let mut context = base_ctx.clone();
            context.push(zip_file_name.clone());
            context.extend(m.path[..m.path.len().saturating_sub(1)].iter().cloned());
            let file = NewFile {
                name: format!("{names}{}", m.path.join("/")),
                content_type: type_for_name(&file_name).to_string(),
                file_name,
                context,
                archive: Some(index),
                inline_cid: false,
            };
            self.add_file(file, m.data, m.problem, inner, nest + 1);
        }
    }
}

struct NewFile {
    name: String,
    file_name: String,
    content_type: String,
    context: Vec<String>,
    archive: Option<usize>,
    inline_cid: bool,
}

enum Kind {
    Zip,
    /// Outlook's `winmail.dat`.
    Tnef,
    Message,
    Unsupported(&'static str),
    Plain,
}

/// Extensions of zip-based document formats: these are files, not archives to expand.
const ZIP_DOCUMENTS: &[&str] = &[
    "docx", "xlsx", "pptx", "docm", "xlsm", "pptm", "dotx", "xltx", "odt", "ods", "odp", "ofd",
    "jar", "apk", "epub", "wps", "et", "dps", "xps", "ipa", "vsdx", "key", "pages", "numbers",
];

fn extension(file_name: &str) -> String {
    file_name
        .rsplit_once('.')
        .map(|(_, e)| e.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn kind(file_name: &str, content_type: &str, data: &[u8]) -> Kind {
    let ext = extension(file_name);
    let lower = file_name.to_lowercase();
    let zip_magic = data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06");
    // A zip without a telling name is an archive only if it is not a document package: a
    // .docx whose name lost its extension (Gmail, ATT00001.bin) is a document, not a
    // folder of XML parts and a thumbnail.
    if ext == "zip"
        || (zip_magic
            && !ZIP_DOCUMENTS.contains(&ext.as_str())
            && (ext.is_empty() || ext == "bin" || content_type.contains("zip"))
            && super::grid::sniff(file_name, data) == super::grid::Format::Zip)
    {
        return Kind::Zip;
    }
    if tnef::is_tnef(data) {
        return Kind::Tnef;
    }
    if data.starts_with(b"Rar!\x1a\x07") || ext == "rar" {
        return Kind::Unsupported("RAR压缩包");
    }
    if data.starts_with(b"7z\xbc\xaf\x27\x1c") || ext == "7z" {
        return Kind::Unsupported("7z压缩包");
    }
    if lower.ends_with(".tar.gz") || ext == "tgz" {
        return Kind::Unsupported("tar.gz压缩包");
    }
    if data.starts_with(b"\x1f\x8b") || ext == "gz" {
        return Kind::Unsupported("gz压缩包");
    }
    if matches!(
        ext.as_str(),
        "tar" | "bz2" | "xz" | "tbz" | "txz" | "zst" | "arj" | "cab" | "lzh"
    ) {
        return Kind::Unsupported("tar/bz2/xz等压缩包");
    }
    if content_type.starts_with("message/rfc822")
        || content_type == "message/global"
        || ext == "eml"
    {
        return Kind::Message;
    }
    Kind::Plain
}

/// Splits a multipart body on delimiter lines (`--boundary` at the start of a line, only
/// white space after it; RFC 2046 §5.1.1). Unterminated last parts run to the end.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}").into_bytes();
    split_on_lines(body, &delim, delimiter_candidates(body, &delim))
}

/// [`split_multipart`] over `lines` of `body` (every line, or the candidates for a
/// delimiter line among them).
fn split_on_lines<'a>(body: &'a [u8], delim: &[u8], lines: impl Iterator<Item = (usize, usize, usize)>) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    for (start, end, next) in lines {
        let line = &body[start..end];
        if !line.starts_with(delim) {
            continue;
        }
        let rest = &line[delim.len()..];
        let closing = rest.starts_with(b"--");
        let tail = if closing { &rest[2..] } else { rest };
        if !tail.iter().all(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        if let Some(cs) = current {
            // The line break before the delimiter belongs to the delimiter.
            let mut e = start;
            if e > cs && body[e - 1] == b'\n' {
                e -= 1;
                if e > cs && body[e - 1] == b'\r' {
                    e -= 1;
                }
            }
            parts.push(&body[cs..e.max(cs)]);
        }
        if closing {
            current = None;
            break;
        }
        current = Some(next);
    }
    if let Some(cs) = current
        && cs < body.len()
    {
        parts.push(&body[cs..]);
    }
    parts
}

/// The lines of `body` that may be delimiter lines (those starting with `delim`), as
/// [`header::lines`] gives them: (start, end without line ending, next line start). The
/// delimiter is searched for (`memmem`) instead of walking every line: a part holding a
/// camera photo is a few hundred thousand lines of base64.
fn delimiter_candidates<'a>(body: &'a [u8], delim: &'a [u8]) -> Box<dyn Iterator<Item = (usize, usize, usize)> + 'a> {
    if delim.is_empty() || delim.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Box::new(header::lines(body));
    }
    Box::new(memchr::memmem::find_iter(body, delim).filter(move |&at| at == 0 || body[at - 1] == b'\n').map(move |start| {
        match memchr::memchr(b'\n', &body[start..]) {
            Some(i) => {
                let nl = start + i;
                let end = if nl > start && body[nl - 1] == b'\r' { nl - 1 } else { nl };
                (start, end, nl + 1)
            }
            None => (start, body.len(), body.len()),
        }
    }))
}

/// Decodes a part body per `Content-Transfer-Encoding`.
fn decode_transfer(body: &[u8], cte: &str) -> (Vec<u8>, Option<Unreadable>) {
    match cte.trim() {
        "base64" => decode_base64(body),
        "quoted-printable" => (decode_qp(body), None),
        _ => (body.to_vec(), None),
    }
}

const B64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One pass over the lines of an ordinary base64 body: every line but the last a whole
/// number of 4-character groups without padding. `None` for anything else (spaces inside a
/// line, padding in the middle, bad characters), which [`decode_base64_slow`] then handles.
///
/// The lines are packed into one buffer (a memcpy per line, found with `memchr`) and decoded
/// in one call: decoding line by line spent more in the decoder's per-call set-up and tail
/// handling than in decoding. Whole groups decode the same apart as together.
fn decode_base64_lines(body: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let mut packed = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        let (line, after) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let last = rest.iter().all(u8::is_ascii_whitespace);
        if !last && (line.len() % 4 != 0 || memchr::memchr(b'=', line).is_some()) {
            return None;
        }
        packed.extend_from_slice(line);
        if last {
            break;
        }
    }
    B64_LENIENT.decode(&packed).ok()
}

fn decode_base64(body: &[u8]) -> (Vec<u8>, Option<Unreadable>) {
    if let Some(d) = decode_base64_canonical(body) {
        return (d, None);
    }
    match decode_base64_lines(body) {
        Some(d) => (d, None),
        None => decode_base64_slow(body),
    }
}

/// What every mail client writes: canonical, padded base64 broken into lines by CR and LF
/// only. The line breaks are dropped (one compare per line while the lines have the width
/// of the first) and the rest decoded by a SIMD decoder, [`B64_CHUNK`] bytes at a time: a
/// camera photo is a few MB of base64, and this is most of what the core does with it.
/// `None` for anything else (white space in a line, padding or a bad character inside, odd
/// trailing bits), which the lenient paths then handle; whatever this accepts they decode
/// to the same bytes.
fn decode_base64_canonical(body: &[u8]) -> Option<Vec<u8>> {
    decode_base64_canonical_in(body, B64_CHUNK)
}

/// Base64 packed (line breaks out) and decoded at a time: small enough to stay in the cache,
/// so only the decoded file is written to fresh memory, not a second copy of its base64 (on a
/// 13 MB camera mail the page faults of that copy cost more than decoding it).
const B64_CHUNK: usize = 64 * 1024;

fn decode_base64_canonical_in(body: &[u8], chunk: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 3);
    let mut packed = Vec::with_capacity(chunk.min(body.len()) + 128);
    // Decodes the whole 4-character groups packed so far but the last one (it may be the
    // body's last, which alone may hold padding): padding among them is padding in the
    // middle, not canonical.
    let flush = |packed: &mut Vec<u8>, out: &mut Vec<u8>| -> Option<()> {
        let whole = packed.len().saturating_sub(1) / 4 * 4;
        if memchr::memchr(b'=', &packed[..whole]).is_some() {
            return None;
        }
        base64_simd::STANDARD.decode_append(&packed[..whole], out).ok()?;
        packed.drain(..whole);
        Some(())
    };
    let push = |segment: &[u8], packed: &mut Vec<u8>, out: &mut Vec<u8>| -> Option<()> {
        packed.extend_from_slice(segment);
        if packed.len() >= chunk {
            flush(packed, out)?;
        }
        Some(())
    };
    let mut rest = body;
    if let Some(nl) = memchr::memchr(b'\n', body) {
        let stride = nl + 1;
        let width = if nl > 0 && body[nl - 1] == b'\r' { nl - 1 } else { nl };
        while rest.len() >= stride && rest[nl] == b'\n' && (width == nl || rest[width] == b'\r') {
            push(&rest[..width], &mut packed, &mut out)?;
            rest = &rest[stride..];
        }
    }
    let mut start = 0;
    for at in memchr::memchr2_iter(b'\r', b'\n', rest) {
        push(&rest[start..at], &mut packed, &mut out)?;
        start = at + 1;
    }
    push(&rest[start..], &mut packed, &mut out)?;
    base64_simd::STANDARD.decode_append(&packed, &mut out).ok()?;
    Some(out)
}

fn decode_base64_slow(body: &[u8]) -> (Vec<u8>, Option<Unreadable>) {
    use base64::Engine as _;
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bad = clean
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='));
    let engine = B64_LENIENT;
    if bad.is_none() {
        if let Ok(d) = engine.decode(&clean) {
            return (d, None);
        }
        // Concatenated base64 blocks (padding in the middle), as some gateways write.
        let mut out = Vec::new();
        let mut ok = true;
        for chunk in clean.split_inclusive(|&b| b == b'=').filter(|c| *c != b"=") {
            let chunk: Vec<u8> = chunk.iter().copied().filter(|&b| b != b'=').collect();
            if chunk.is_empty() {
                continue;
            }
            match header::b64_lenient(&chunk) {
                Some(d) if chunk.len() % 4 != 1 => out.extend(d),
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return (out, None);
        }
    }
    let detail = match bad {
        Some(at) => format!("invalid base64 character at offset {at}"),
        None => "invalid base64 length or padding".into(),
    };
    let partial = header::b64_lenient(&clean[..bad.unwrap_or(clean.len())]).unwrap_or_default();
    (partial, Some(Unreadable::Corrupt { detail }))
}

fn decode_qp(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    while i < body.len() {
        let b = body[i];
        if b == b'=' {
            // soft line break: "=" [spaces] CRLF
            let mut j = i + 1;
            while j < body.len() && (body[j] == b' ' || body[j] == b'\t') {
                j += 1;
            }
            if j < body.len() && (body[j] == b'\r' || body[j] == b'\n') {
                if body[j] == b'\r' && body.get(j + 1) == Some(&b'\n') {
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            if j >= body.len() {
                i = j;
                continue;
            }
            if i + 2 < body.len()
                && let (Some(h), Some(l)) = (hex(body[i + 1]), hex(body[i + 2]))
            {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------
// Names and types
// ---------------------------------------------------------------------------------------

/// Bidi embedding/override/isolate characters and marks: used to disguise extensions.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Removes control and bidi characters; tabs and line breaks become spaces.
pub(crate) fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\t' || c == '\r' || c == '\n' {
            out.push(' ');
        } else if !c.is_control() && !is_bidi(c) {
            out.push(c);
        }
    }
    out.trim().to_string()
}

/// One path component safe for display: no control/bidi characters, no separators, no
/// `..`. Empty when nothing is left.
pub(crate) fn clean_component(s: &str) -> String {
    let c = clean_text(s);
    let c = c.trim();
    if c == "." || c == ".." {
        String::new()
    } else {
        c.to_string()
    }
}

/// A MIME file name: the last usable path component of what the sender's client wrote.
fn clean_file_name(s: &str) -> String {
    s.split(['/', '\\'])
        .map(clean_component)
        .rfind(|c| !c.is_empty())
        .map(|c| c.trim_start_matches(':').to_string())
        .unwrap_or_default()
}

/// Prefers a decodable `filename` (Content-Disposition), else `name` (Content-Type).
fn pick_name(filename: Option<&str>, name: Option<&str>) -> Option<String> {
    let f = filename.map(clean_file_name).filter(|s| !s.is_empty());
    let n = name.map(clean_file_name).filter(|s| !s.is_empty());
    match (f, n) {
        (Some(f), Some(n)) if f.contains('\u{FFFD}') && !n.contains('\u{FFFD}') => Some(n),
        (Some(f), _) => Some(f),
        (None, n) => n,
    }
}

fn ext_for_type(mime: &str) -> &'static str {
    match mime {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/gif" => "gif",
        "image/bmp" => "bmp",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "image/tiff" => "tif",
        "application/pdf" => "pdf",
        "application/zip" | "application/x-zip-compressed" => "zip",
        "application/msword" => "doc",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "message/rfc822" | "message/global" => "eml",
        "text/html" => "html",
        "text/calendar" => "ics",
        m if m.starts_with("text/") || m.starts_with("message/") => "txt",
        _ => "bin",
    }
}

/// MIME type for an archive member from its extension.
pub(crate) fn type_for_name(file_name: &str) -> &'static str {
    match extension(file_name).as_str() {
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "wps" => "application/vnd.ms-works",
        "et" => "application/vnd.ms-excel",
        "pdf" => "application/pdf",
        "jpg" | "jpeg" | "jpe" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "webp" => "image/webp",
        "heic" | "heif" => "image/heic",
        "tif" | "tiff" => "image/tiff",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "htm" | "html" => "text/html",
        "zip" => "application/zip",
        "rar" => "application/vnd.rar",
        "7z" => "application/x-7z-compressed",
        "gz" | "tgz" => "application/gzip",
        "eml" => "message/rfc822",
        _ => "application/octet-stream",
    }
}

/// text/html → plain text: drops script/style, turns block ends into line breaks,
/// decodes the common entities.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &lower[i..];
            for skip in ["script", "style", "head"] {
                if rest.starts_with(&format!("<{skip}")) {
                    let close = format!("</{skip}");
                    i = match rest.find(&close) {
                        Some(p) => i + p,
                        None => bytes.len(),
                    };
                    break;
                }
            }
            if i >= bytes.len() {
                break;
            }
            let rest = &lower[i..];
            let end = rest.find('>').map(|p| i + p + 1).unwrap_or(bytes.len());
            let tag = &lower[i..end];
            if ["<br", "</p", "</div", "</tr", "</li", "</h", "</table"]
                .iter()
                .any(|t| tag.starts_with(t))
            {
                out.push('\n');
            } else if tag.starts_with("</td") || tag.starts_with("</th") {
                out.push('\t');
            } else if tag.starts_with("<a ")
                && let Some(h) = tag.find("href=")
            {
                // Keep where a link points (a download page instead of an attachment is
                // something the reply must name).
                let value = &html[i + h + 5..end];
                let value = value.trim_start_matches(['"', '\'']);
                let url: String = value.chars().take_while(|c| !matches!(c, '"' | '\'' | '>' | ' ')).take(500).collect();
                if url.starts_with("http") {
                    out.push_str(&url);
                    out.push(' ');
                }
            }
            i = end;
            continue;
        }
        if bytes[i] == b'&'
            && let Some(semi) = lower[i..].find(';').filter(|p| *p <= 10)
        {
            let ent = &lower[i + 1..i + semi];
            let decoded = match ent {
                "nbsp" => Some(' '),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                    .ok()
                    .and_then(char::from_u32),
                e if e.starts_with('#') => e[1..].parse::<u32>().ok().and_then(char::from_u32),
                _ => None,
            };
            if let Some(c) = decoded {
                out.push(c);
                i += semi + 1;
                continue;
            }
        }
        // push the whole UTF-8 character
        let ch_len = html[i..].chars().next().map(|c| c.len_utf8()).unwrap_or(1);
        out.push_str(&html[i..i + ch_len]);
        i += ch_len;
    }
    // collapse runs of white space on each line and blank lines
    let mut lines: Vec<String> = Vec::new();
    for line in out.lines() {
        let l = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if l.is_empty() && lines.last().is_some_and(|p| p.is_empty()) {
            continue;
        }
        lines.push(l);
    }
    lines.join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    /// The transfer decoding as it was before the canonical fast path.
    fn decode_base64_lenient(body: &[u8]) -> (Vec<u8>, Option<Unreadable>) {
        match decode_base64_lines(body) {
            Some(d) => (d, None),
            None => decode_base64_slow(body),
        }
    }

    fn wrapped(data: &[u8], width: usize, crlf: bool) -> Vec<u8> {
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = Vec::new();
        for line in text.as_bytes().chunks(width) {
            out.extend_from_slice(line);
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        out
    }

    proptest! {
        #[test]
        fn base64_fast_path_decodes_as_the_lenient_paths(
            data in proptest::collection::vec(any::<u8>(), 0..400),
            width in 1usize..100,
            crlf in any::<bool>(),
            edit in 0usize..7,
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(vec![b' ', b'=', b'-', b'\n', b'\r', b'A', b'/', b'\t', 0x80]),
        ) {
            let mut body = wrapped(&data, width, crlf);
            match edit {
                0 if !body.is_empty() => { let i = at.index(body.len()); body[i] = byte; }
                1 => { let i = at.index(body.len() + 1); body.insert(i, byte); }
                2 => body.retain(|&b| b != b'='),
                3 => body.extend_from_slice(b"\r\n\r\n-- \r\nsignature\r\n"),
                4 => body.insert(0, b'\n'),
                _ => {}
            }
            prop_assert_eq!(decode_base64(&body), decode_base64_lenient(&body));
            // Decoded a few bytes at a time: the same as in one piece.
            let canonical = decode_base64_canonical(&body);
            for chunk in [1, 4, 5, 8, 60, 77] {
                prop_assert_eq!(decode_base64_canonical_in(&body, chunk), canonical.clone());
            }
        }

        #[test]
        fn delimiter_search_splits_as_the_line_walk(
            lines in proptest::collection::vec(prop::sample::select(vec!["--b", "--b--", "--b  ", "--bx", "x--b", "", "text", "--b\t", " --b", "--b--b"]), 0..20),
            crlf in any::<bool>(),
        ) {
            let body = lines.join(if crlf { "\r\n" } else { "\n" }).into_bytes();
            let delim = b"--b";
            prop_assert_eq!(
                split_on_lines(&body, delim, delimiter_candidates(&body, delim)),
                split_on_lines(&body, delim, header::lines(&body))
            );
        }
    }
}
