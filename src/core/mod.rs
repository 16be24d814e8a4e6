//! The pure core: raw mail bytes → attachments → tables → typed forms → findings → report.
//!
//! Nothing in here opens a socket, touches a database or reads the clock. The only
//! side effect allowed is running an *optional* external converter (LibreOffice, pdftotext)
//! for legacy formats, and that is injected through the [`grid::Convert`] interface (the
//! implementation lives outside the core, in [`crate::convert`]).

pub mod grid;
pub mod mime;

use serde::Serialize;

/// Limits on everything that comes from outside. Defaults are generous for real
/// submissions (a 2-studio unit sends a few MB) and small enough to stop bombs.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Whole raw message.
    pub max_message_bytes: u64,
    /// One decoded attachment (also one archive member once inflated).
    pub max_attachment_bytes: u64,
    /// Members taken from one archive.
    pub max_archive_members: u32,
    /// Sum of inflated bytes of all archives (and of one .docx/.xlsx package) in a message.
    pub max_decompressed_bytes: u64,
    /// Nesting: forwarded message inside forwarded message, zip inside zip.
    pub max_depth: u32,
    /// MIME parts in one message.
    pub max_parts: u32,
    /// Cells read from one spreadsheet (guards against the XFD1048576 dimension bomb).
    pub max_cells: u64,
    /// Seconds an external converter (soffice, pdftotext) may run.
    pub converter_timeout_secs: u64,
    /// Seconds the daemon gives the whole processing of one message (converters included)
    /// before it records the message as failed, tells the sender and goes on.
    pub process_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 50 * 1024 * 1024,
            max_attachment_bytes: 25 * 1024 * 1024,
            max_archive_members: 200,
            max_decompressed_bytes: 200 * 1024 * 1024,
            max_depth: 5,
            max_parts: 500,
            max_cells: 200_000,
            converter_timeout_secs: 60,
            process_timeout_secs: 300,
        }
    }
}

/// Why an attachment could not be read. Each variant renders as a Chinese sentence the
/// sender can act on (see [`Unreadable::advice`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unreadable {
    #[error("file is empty (0 bytes)")]
    Empty,
    #[error("file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("file is corrupt: {detail}")]
    Corrupt { detail: String },
    #[error("file is encrypted or password protected")]
    Encrypted,
    #[error("archive expands beyond the limits ({detail})")]
    ArchiveBomb { detail: String },
    #[error("nesting deeper than {limit} levels")]
    TooDeep { limit: u32 },
    #[error("format {format} cannot be read here; resend as {resend_as}")]
    Unsupported { format: String, resend_as: String },
    #[error("converter failed: {detail}")]
    ConverterFailed { format: String, resend_as: String, detail: String },
}

impl Unreadable {
    /// What is wrong, in a few Chinese words (the finding's "found").
    pub fn chinese(&self) -> String {
        match self {
            Unreadable::Empty => "文件为空（0字节）".into(),
            Unreadable::TooLarge { limit } => format!("文件超过{}MB的大小上限", limit / (1024 * 1024)),
            Unreadable::Corrupt { .. } => "文件已损坏，无法打开".into(),
            Unreadable::Encrypted => "文件已加密或设置了密码".into(),
            Unreadable::ArchiveBomb { .. } => "压缩包解压后过大或文件过多".into(),
            Unreadable::TooDeep { limit } => format!("嵌套超过{limit}层"),
            Unreadable::Unsupported { format, .. } => format!("无法读取的{format}格式"),
            Unreadable::ConverterFailed { format, .. } => format!("{format}格式的文件转换失败"),
        }
    }

    /// One Chinese sentence for the reply: what is wrong and what to send instead.
    pub fn advice(&self) -> String {
        match self {
            Unreadable::Empty => "文件为空（0字节），请重新附上该文件。".into(),
            Unreadable::TooLarge { limit } => format!(
                "文件超过大小上限（{}MB），请压缩图片或拆分后重新发送。",
                limit / (1024 * 1024)
            ),
            Unreadable::Corrupt { .. } => "文件已损坏、无法打开，请重新保存后再发送。".into(),
            Unreadable::Encrypted => "文件设置了密码或已加密，请取消密码后重新发送。".into(),
            Unreadable::ArchiveBomb { .. } => {
                "压缩包解压后过大或文件过多，请直接以附件形式发送各文件。".into()
            }
            Unreadable::TooDeep { .. } => {
                "邮件或压缩包嵌套层数过多，请直接以附件形式发送各文件。".into()
            }
            Unreadable::Unsupported { format, resend_as }
            | Unreadable::ConverterFailed { format, resend_as, .. } => format!(
                "系统无法读取{format}格式的文件，请另存为{resend_as}格式后重新发送。"
            ),
        }
    }
}

pub mod dossier;
pub mod findings;
pub mod forms;
pub mod links;
pub mod policy;
pub mod report;
pub mod rules;
pub mod submission;
pub mod text;

use chrono::{DateTime, FixedOffset};

use dossier::{Change, Dossier, MailSource, Standing};
use findings::{Finding, Severity};
use forms::Kind;
use grid::Convert;
use policy::Policy;
use mime::{Message, MimeError};
use rules::{KnownStudio, RuleContext};
use submission::Submission;

/// What the pipeline needs besides the bytes. Everything that would need I/O (the receipt
/// time from the server, what the store knows) is passed in.
pub struct Context<'a> {
    pub policy: Policy,
    pub converters: &'a dyn Convert,
    /// The server's receipt time (IMAP INTERNALDATE, or `check --received-at`). When `None`,
    /// the newest `Received:` header's date, else the `Date:` header.
    pub received_at: Option<DateTime<FixedOffset>>,
    /// Studios recommended by other units so far.
    pub others: &'a [KnownStudio],
    /// Who the daemon found the sender to be; `None` in `check` (the policy alone decides
    /// and the mail is judged as if it were applied).
    pub identity: Option<SenderIdentity>,
}

/// The sender as the daemon established it: the unit its address is registered to (in the
/// configuration or approved by staff), and why the mail is held, if it is. Form text never
/// decides the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderIdentity {
    pub unit: Option<String>,
    /// `submission.unknown_sender` or `submission.sender_not_authenticated`.
    pub held: Option<findings::Code>,
    /// How authentication went, in a few words (for the finding and the record).
    pub auth: Option<String>,
}

impl<'a> Context<'a> {
    pub fn new(policy: Policy, converters: &'a dyn Convert) -> Self {
        Context { policy, converters, received_at: None, others: &[], identity: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    Rejected,
    /// The mail carries no form, materials, photo or archive (`submission.no_documents`).
    NotASubmission,
}

impl Verdict {
    /// The stable word of `check --format json` and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
            Verdict::NotASubmission => "not_a_submission",
        }
    }
}

/// One mail as read: headers, its parts (classified and parsed, not yet grouped by studio)
/// and the unit it names. The first of the core's two steps ([`read`], then [`judge`]).
#[derive(Debug, Clone)]
pub struct Mail {
    pub message: Message,
    pub sender: Option<String>,
    /// The 推荐单位 written in its 附件2 (mapped to a configured unit's name when it is one).
    pub written_unit: Option<String>,
    pub received_at: Option<DateTime<FixedOffset>>,
    pub submission: Submission,
    /// Download links in the body instead of attachments.
    pub download_links: Vec<String>,
}

impl Mail {
    /// The unit this mail is from: its sender's registered unit, else the one its 附件2 names.
    pub fn unit(&self, policy: &Policy) -> Option<String> {
        self.sender
            .as_deref()
            .and_then(|s| policy.unit_of_sender(s))
            .map(|u| u.name.clone())
            .or_else(|| self.written_unit.clone())
    }

    /// Received after the deadline: it changes nothing on file.
    pub fn is_late(&self, policy: &Policy) -> bool {
        self.received_at.is_some_and(|t| t > policy.deadline)
    }
}

/// Everything the core decided about one message.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Headers and attachment list (attachment bytes dropped once parsed).
    pub message: Message,
    pub sender: Option<String>,
    /// The recommending unit: by sender address, else by the summary table's 推荐单位.
    pub unit: Option<String>,
    pub received_at: Option<DateTime<FixedOffset>>,
    /// What this mail carries, grouped by studio.
    pub submission: Submission,
    /// The unit's dossier after this mail (unchanged when the mail is late or carries no
    /// documents).
    pub dossier: Dossier,
    /// The dossier as the rules judged it: its studios with their parts and 序号.
    pub view: Submission,
    /// What this mail changed in the dossier (empty when nothing).
    pub changes: Vec<Change>,
    /// The mail was merged into the dossier.
    pub applied: bool,
    /// The mail's own findings, then the dossier's (those with `on_file`).
    pub findings: Vec<Finding>,
    pub standing: Standing,
    pub download_links: Vec<String>,
    /// Why the mail is held (nothing applied), if it is.
    pub held: Option<findings::Code>,
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        if self.findings.iter().any(|f| f.code == findings::Code::SubmissionNoDocuments) {
            Verdict::NotASubmission
        } else if self.findings.iter().any(|f| f.severity == Severity::Error) {
            Verdict::Rejected
        } else {
            Verdict::Accepted
        }
    }

    pub fn is_late(&self) -> bool {
        self.findings.iter().any(|f| f.code == findings::Code::SubmissionLate)
    }
}

/// Step one, pure: raw bytes → the mail's parts.
pub fn read(raw: &[u8], ctx: &Context) -> Result<Mail, MimeError> {
    let mut message = mime::parse(raw, &ctx.policy.limits)?;
    let submission = submission::read(&message.attachments, &ctx.policy.limits, ctx.converters);
    for a in &mut message.attachments {
        a.data = Vec::new();
    }
    let sender = message.from.as_ref().map(|m| m.address.clone());
    let written_unit = submission.summaries.iter().find_map(|s| s.recommending_unit.clone()).map(|written| {
        ctx.policy.unit_named(&written).map(|u| u.name.clone()).unwrap_or(written)
    });
    let received_at = ctx.received_at.or(message.received_at).or(message.date);
    let download_links = links::download_links(&message.body_text);
    Ok(Mail { message, sender, written_unit, received_at, submission, download_links })
}

/// Step two, pure: the mail merged into the unit's dossier `on_file` (empty for `check`),
/// then judged. A late mail and a mail without documents are judged for the reply but
/// change nothing on file.
pub fn judge(mail: Mail, on_file: &Dossier, ctx: &Context) -> Outcome {
    let Mail { message, sender, written_unit: _, received_at, mut submission, download_links } = mail.clone();
    let unit = match &ctx.identity {
        Some(id) => id.unit.clone(),
        None => mail.unit(&ctx.policy),
    };
    let held = ctx.identity.as_ref().and_then(|id| id.held);
    submission::group(&mut submission, &on_file.studios_on_file());
    let rule_ctx = RuleContext {
        policy: &ctx.policy,
        sender: sender.as_deref(),
        unit: unit.as_deref(),
        received_at,
        others: ctx.others,
        parts_truncated: message.parts_truncated,
        summary_unreadable: submission.attachments.iter().any(|a| a.problem.is_some() && a.named_kind == Some(Kind::SummaryTable))
            || submission.not_typed.iter().any(|n| n.kind == Kind::SummaryTable),
        form_file_seen: submission.attachments.iter().any(|a| a.named_kind == Some(Kind::ApprovalForm)),
        download_links: &download_links,
        identity_known: ctx.identity.is_some(),
        held,
        auth_note: ctx.identity.as_ref().and_then(|id| id.auth.as_deref()),
    };
    let mut findings = rules::mail_rules(&submission, &rule_ctx);
    let late = mail.is_late(&ctx.policy);
    let has_documents = submission.has_documents();
    let applied = has_documents && !late && held.is_none();
    // What the mail would make of the dossier: applied, or (late, held) judged for the reply
    // and `check` without changing anything. A mail without documents has nothing to merge.
    let (dossier, changes, view, standing) = if has_documents {
        let source = MailSource { message_id: message.message_id.clone(), received_at };
        let (merged, merge_changes) = dossier::merge(on_file, &submission, &source);
        let view = dossier::view(&merged, Some(&submission));
        let judged = rules::check(&view, &rule_ctx);
        if applied {
            let standing = dossier::standing(&merged, &view, &judged);
            findings.extend(judged.into_iter().map(|mut f| {
                f.on_file = true;
                f
            }));
            (merged, merge_changes, view, standing)
        } else {
            findings.extend(judged);
            unchanged(on_file, &rule_ctx)
        }
    } else {
        unchanged(on_file, &rule_ctx)
    };
    Outcome { message, sender, unit, received_at, submission, dossier, view, changes, applied, findings, standing, download_links, held }
}

/// The dossier as it stays (a mail that changes nothing), with its view and standing.
fn unchanged(on_file: &Dossier, rule_ctx: &RuleContext) -> (Dossier, Vec<Change>, Submission, Standing) {
    let view = dossier::view(on_file, None);
    let standing = dossier::standing(on_file, &view, &rules::check(&view, rule_ctx));
    (on_file.clone(), Vec::new(), view, standing)
}

/// The whole pure pipeline for one message with nothing on file (what `check` does).
pub fn process(raw: &[u8], ctx: &Context) -> Result<Outcome, MimeError> {
    Ok(judge(read(raw, ctx)?, &Dossier::default(), ctx))
}
