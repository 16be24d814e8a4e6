//! Outgoing mail: rendering replies and digests to RFC 5322 bytes, loop protection, and
//! handing the bytes to SMTP or to a folder of `.eml` files.
//!
//! # What goes out
//! [`render`] builds the message with lettre's builder (UTF-8 everywhere, the subject and
//! display names as RFC 2047 encoded-words) and then fixes what lettre 0.11.23 gets wrong for
//! the clients this department's correspondents use:
//!
//! - lettre writes an attachment's name only as RFC 2231 `filename*0*=utf-8''…` in the
//!   `Content-Disposition`. Outlook and QQ Mail ignore that for non-ASCII names and show
//!   "untitled"/"未命名". Every attachment therefore also gets
//!   `Content-Type: …; name="=?utf-8?B?…?="` (what Outlook itself writes), folded into
//!   encoded-words of at most 75 characters that never split a character.
//! - Loop protection (RFC 3834): `Auto-Submitted: auto-replied` when asked, and always
//!   `X-Auto-Response-Suppress: All` so Exchange/Outlook do not answer with out-of-office
//!   replies.
//! - Threading: `In-Reply-To` and `References` (the parent's id is appended to `References`
//!   when the caller left it out), and a `Message-ID` the caller derives from the submission
//!   ([`reply_message_id`]), so a retried reply is recognisably the same mail.
//!
//! # Who gets a reply
//! [`should_reply`] refuses automatic mail (as detected by [`crate::core::mime`]), mail
//! without a usable sender and mail from our own addresses.
//!
//! # Sending
//! [`Transport`] wraps lettre's pooled `AsyncSmtpTransport` (implicit TLS, STARTTLS, or
//! plain text to loopback only; AUTH when a username is set; an extra trusted root from
//! `ca_file`) or a folder where each mail is written atomically as `<message id>.eml`.
//! [`SendError::transient`] tells the retry loop whether to try again after [`backoff`].

pub mod sender;
mod transport;

pub use transport::{SendError, Transport};

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use base64::Engine as _;
use lettre::message::header::{
    ContentDisposition, ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::core::mime::{AutoMail, Message};

/// One mail ready to be rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMail {
    /// `名称 <addr>` or a bare address.
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// With the angle brackets: `<reply-…@domain>`.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// Adds `Auto-Submitted: auto-replied` (RFC 3834): set it on every automatic reply.
    pub auto_submitted: bool,
    pub attachments: Vec<OutAttachment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutAttachment {
    /// Any Unicode name: `汇总表.xlsx`.
    pub file_name: String,
    /// `application/vnd.openxmlformats-officedocument.spreadsheetml.sheet`; an unparsable
    /// value becomes `application/octet-stream`.
    pub content_type: String,
    pub data: Vec<u8>,
}

/// The complete message bytes (CRLF line ends): `multipart/alternative` (text, and HTML when
/// given) alone, or as the first part of a `multipart/mixed` with the attachments.
///
/// Errors for unusable addresses or message ids (nothing that depends on the network).
pub fn render(m: &OutgoingMail) -> anyhow::Result<Vec<u8>> {
    render_at(m, SystemTime::now())
}

fn render_at(m: &OutgoingMail, date: SystemTime) -> anyhow::Result<Vec<u8>> {
    let from = mailbox(&m.from).with_context(|| format!("invalid From address {:?}", m.from))?;
    if m.to.is_empty() {
        bail!("a mail needs at least one recipient");
    }
    let message_id = msg_id(&m.message_id).context("Message-ID")?;

    let mut b = lettre::Message::builder()
        .from(from)
        .subject(one_line(&m.subject))
        .date(date)
        .message_id(Some(message_id))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".into(),
        ));
    for to in &m.to {
        let mb = mailbox(to).with_context(|| format!("invalid To address {to:?}"))?;
        b = b.to(mb);
    }
    // Threading ids come from the mail we answer: one that cannot be written as a header
    // (non-ASCII, spaces, no '@') is dropped — the reply matters more than its threading.
    let mut references: Vec<String> = m.references.iter().filter_map(|r| msg_id(r).ok()).collect();
    if let Some(parent) = m.in_reply_to.as_deref().and_then(|p| msg_id(p).ok()) {
        if !references.contains(&parent) {
            references.push(parent.clone());
        }
        b = b.in_reply_to(parent);
    }
    if !references.is_empty() {
        b = b.references(references.join(" "));
    }
    if m.auto_submitted {
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".into(),
        ));
    }

    let body = match &m.html {
        Some(html) => MultiPart::alternative()
            .singlepart(SinglePart::plain(m.text.clone()))
            .singlepart(SinglePart::html(html.clone())),
        None => MultiPart::alternative().singlepart(SinglePart::plain(m.text.clone())),
    };
    let message = if m.attachments.is_empty() {
        b.multipart(body)?
    } else {
        let mut mixed = MultiPart::mixed().multipart(body);
        for a in &m.attachments {
            mixed = mixed.singlepart(attachment_part(a));
        }
        b.multipart(mixed)?
    };
    Ok(message.formatted())
}

/// `名称 <addr>` or `addr`. lettre's parser refuses some display names people write (ASCII
/// parentheses are RFC 5322 comments, an unquoted `.` or `,`); those are taken literally and
/// lettre quotes or encodes them when writing the header.
fn mailbox(s: &str) -> anyhow::Result<Mailbox> {
    let s = s.trim();
    if let Ok(mb) = s.parse::<Mailbox>() {
        return Ok(mb);
    }
    match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if b > a => {
            let name = one_line(s[..a].trim().trim_matches('"'));
            let address = s[a + 1..b].trim().parse()?;
            Ok(Mailbox::new(if name.is_empty() { None } else { Some(name) }, address))
        }
        _ => Ok(Mailbox::new(None, s.parse()?)),
    }
}

fn attachment_part(a: &OutAttachment) -> SinglePart {
    let name = clean_file_name(&a.file_name);
    // Only the bare type: parameters the caller put there (an old name=) are dropped.
    let bare = a.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let mime = match ContentType::parse(&bare) {
        Ok(_) if bare.contains('/') => bare,
        _ => "application/octet-stream".to_owned(),
    };
    SinglePart::builder()
        // `filename*=` (RFC 2231), written by lettre; folded and percent-encoded.
        .header(ContentDisposition::attachment(&name))
        .header(NamedContentType { mime, name })
        // Always base64: lettre would pick 7bit for a short run of control bytes.
        .header(ContentTransferEncoding::Base64)
        .body(a.data.clone())
}

/// `Content-Type: type/subtype; name="=?utf-8?B?…?="`: the parameter Outlook and QQ Mail
/// read for the attachment's name (see the module documentation).
#[derive(Debug, Clone)]
struct NamedContentType {
    mime: String,
    name: String,
}

impl Header for NamedContentType {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Type")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (mime, _) = s.split_once(';').unwrap_or((s, ""));
        Ok(NamedContentType { mime: mime.trim().to_owned(), name: String::new() })
    }

    fn display(&self) -> HeaderValue {
        let raw = format!("{}; name=\"{}\"", self.mime, self.name);
        let encoded = format!("{};\r\n name=\"{}\"", self.mime, name_parameter(&self.name));
        HeaderValue::dangerous_new_pre_encoded(Self::name(), raw, encoded)
    }
}

/// The value of `name=` (without the quotes): the name itself when it is plain ASCII that
/// needs no escaping, else RFC 2047 `B` encoded-words of whole characters, each at most 75
/// characters, folded onto their own lines.
fn name_parameter(name: &str) -> String {
    let plain = name.len() <= 60
        && name.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\');
    if plain && !name.contains("=?") {
        return name.to_owned();
    }
    // "=?utf-8?B?" + base64 + "?=" ≤ 75 → base64 ≤ 63 chars → at most 45 bytes per word.
    const MAX_BYTES: usize = 45;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in name.chars() {
        if chunk.len() + c.len_utf8() > MAX_BYTES {
            words.push(encoded_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(encoded_word(&chunk));
    }
    words.join("\r\n ")
}

fn encoded_word(s: &str) -> String {
    format!("=?utf-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))
}

/// A file name for the headers: no control characters, no path, never empty.
fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() { "attachment.bin".to_owned() } else { cleaned.to_owned() }
}

fn one_line(s: &str) -> String {
    s.split(['\r', '\n']).map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `<left@right>`: adds missing angle brackets, refuses whitespace, controls and missing `@`.
fn msg_id(id: &str) -> anyhow::Result<String> {
    let inner = id.trim().trim_start_matches('<').trim_end_matches('>');
    if inner.is_empty()
        || !inner.contains('@')
        || inner.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || !c.is_ascii())
    {
        bail!("{id:?} is not a message id like <left@right>");
    }
    Ok(format!("<{inner}>"))
}

/// The Message-ID of the reply to one submission: `<reply-<first 24 hex of the hash>@domain>`.
/// Derived only from the submission, so every retry of that reply carries the same id.
pub fn reply_message_id(submission_hash_hex: &str, domain: &str) -> String {
    let hex: String = submission_hash_hex
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(24)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let domain = domain.trim().trim_start_matches('@');
    // The part after '@' of an address, or a bare domain.
    let domain = domain.rsplit('@').next().unwrap_or(domain).trim_end_matches('>');
    let domain: String = domain
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let domain = if domain.is_empty() { "studio-intake.invalid".to_owned() } else { domain };
    format!("<reply-{hex}@{domain}>")
}

/// Why a message gets no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoReply {
    /// RFC 3834 auto-submitted, bulk/list precedence, mailing list, bounce, vacation reply.
    /// (Said in Chinese: staff read it in the digest.)
    #[error("{}", auto_mail_words(.0))]
    AutoMail(AutoMail),
    /// `From:` or `Reply-To:` is one of our own addresses (a loop).
    #[error("发自本邮箱自己的地址")]
    OwnAddress,
    /// No `From:` address at all.
    #[error("没有发件地址")]
    NoSender,
    /// The reply would go to a null or system sender (`<>`, no domain, MAILER-DAEMON,
    /// postmaster, no-reply addresses).
    #[error("发件地址为空或为系统地址")]
    NullSender,
}

/// What kind of automatic mail it is, with the header that says so.
fn auto_mail_words(a: &AutoMail) -> String {
    match a {
        AutoMail::AutoSubmitted(v) => format!("自动发送的邮件（Auto-Submitted: {v}）"),
        AutoMail::Precedence(v) => format!("群发邮件（Precedence: {v}）"),
        AutoMail::MailingList => "邮件列表的邮件（List-Id）".to_owned(),
        AutoMail::Bounce => "退信或投递状态通知".to_owned(),
        AutoMail::AutoReply(v) => format!("自动回复（{v}）"),
    }
}

/// Whether an automatic reply may be sent to this message. Replies go to `Reply-To:` when
/// present, else to `From:`; both are checked against `own_addresses` (compared
/// case-insensitively; entries may be written `名称 <addr>`).
pub fn should_reply(msg: &Message, own_addresses: &[String]) -> Result<(), NoReply> {
    if let Some(auto) = &msg.auto {
        return Err(NoReply::AutoMail(auto.clone()));
    }
    let Some(from) = &msg.from else {
        return Err(NoReply::NoSender);
    };
    let own: Vec<String> = own_addresses.iter().map(|a| bare_address(a)).filter(|a| !a.is_empty()).collect();
    for mb in std::iter::once(from).chain(msg.reply_to.as_ref()) {
        if own.contains(&bare_address(&mb.address)) {
            return Err(NoReply::OwnAddress);
        }
    }
    let target = msg.reply_to.as_ref().filter(|r| !is_null_sender(&r.address)).unwrap_or(from);
    if is_null_sender(&target.address) {
        return Err(NoReply::NullSender);
    }
    Ok(())
}

fn bare_address(s: &str) -> String {
    let s = s.trim();
    let inner = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if b > a => &s[a + 1..b],
        _ => s,
    };
    inner.trim().trim_matches('"').to_lowercase()
}

fn is_null_sender(address: &str) -> bool {
    let a = bare_address(address);
    let Some((local, domain)) = a.rsplit_once('@') else {
        return true;
    };
    if local.is_empty() || domain.is_empty() {
        return true;
    }
    let squashed: String = local.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    matches!(squashed.as_str(), "mailerdaemon" | "postmaster" | "noreply" | "donotreply" | "donotrespond")
}

/// Wait before attempt `attempt + 1` after `attempt` failures (1-based; 0 counts as 1):
/// 30 s, 1 min, 2 min, 4 min … doubling, plus up to ~10 % jitter derived from the attempt
/// number, never above one hour. Non-decreasing in `attempt`.
pub fn backoff(attempt: u32) -> Duration {
    const BASE_MS: u64 = 30_000;
    const CAP_MS: u64 = 3_600_000;
    let attempt = attempt.max(1);
    let n = attempt - 1;
    let base = BASE_MS.saturating_mul(1u64 << n.min(20));
    if base >= CAP_MS {
        return Duration::from_millis(CAP_MS);
    }
    // 0..=96 per mille, a fixed function of the attempt (Knuth's multiplicative hash).
    let per_mille = (u64::from(attempt).wrapping_mul(2_654_435_761) >> 7) % 97;
    Duration::from_millis((base + base * per_mille / 1000).min(CAP_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_parameter_words_are_short_and_whole_characters() {
        let name = "乐山市劳模和工匠人才创新工作室推荐汇总表（市中区总工会）2020年最终版.xlsx";
        let p = name_parameter(name);
        let mut decoded = String::new();
        for w in p.split("\r\n ") {
            assert!(w.len() <= 75, "{w}");
            let b64 = w.strip_prefix("=?utf-8?B?").unwrap().strip_suffix("?=").unwrap();
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            decoded.push_str(std::str::from_utf8(&bytes).unwrap());
        }
        assert_eq!(decoded, name);
        assert_eq!(name_parameter("report.xlsx"), "report.xlsx");
    }

    #[test]
    fn display_names_lettre_refuses_are_kept() {
        let mb = mailbox("乐山市总工会 (经保女工部) <a@b.cn>").unwrap();
        assert_eq!(mb.name.as_deref(), Some("乐山市总工会 (经保女工部)"));
        assert_eq!(mb.email.to_string(), "a@b.cn");
        assert!(mailbox("not an address").is_err());
    }

    #[test]
    fn message_ids_are_checked() {
        assert_eq!(msg_id("a@b").unwrap(), "<a@b>");
        assert!(msg_id("<a b@c>").is_err());
        assert!(msg_id("<ab>").is_err());
        assert!(msg_id("<a@b>\r\nBcc: x@y").is_err());
    }
}
