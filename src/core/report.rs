//! Findings → what people read: the reply to the sender in Chinese (plain text and HTML,
//! verdict first, then each problem with where it is and how to fix it) and the JSON of
//! `check` (`INTERFACE.md`).

use serde::Serialize;

use chrono::{DateTime, FixedOffset};

use super::findings::{Finding, Severity};
use super::forms::Kind;
use super::text::is_invisible;
use super::submission::{AttachmentInfo, Studio};
use super::{Outcome, Verdict};
use super::policy::Policy;

/// The JSON document of `check --format json`, one per path.
#[derive(Debug, Serialize)]
pub struct CheckJson<'a> {
    pub source: &'a str,
    pub message_id: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub unit: Option<&'a str>,
    pub received_at: Option<String>,
    pub verdict: Verdict,
    pub attachments: &'a [AttachmentInfo],
    pub studios: &'a [Studio],
    pub findings: &'a [Finding],
}

pub fn check_json<'a>(source: &'a str, o: &'a Outcome) -> CheckJson<'a> {
    CheckJson {
        source,
        message_id: o.message.message_id.as_deref(),
        sender: o.sender.as_deref(),
        unit: o.unit.as_deref(),
        received_at: o.received_at.map(|t| t.to_rfc3339()),
        verdict: o.verdict(),
        attachments: &o.submission.attachments,
        studios: &o.view.studios,
        findings: &o.findings,
    }
}

/// A reply ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The sender's subject as the reply quotes it: without control and bidi-override characters
/// (a CR LF from a decoded encoded-word, a right-to-left override hiding the real text),
/// whitespace runs as one space, at most [`SUBJECT_SHOWN_CHARS`] characters.
pub fn shown_subject(subject: &str) -> String {
    let cleaned: String = subject.chars().map(|c| if c.is_control() { ' ' } else { c }).filter(|&c| !is_invisible(c)).collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.is_empty() {
        return "（无主题）".into();
    }
    if joined.chars().count() <= SUBJECT_SHOWN_CHARS {
        return joined;
    }
    let mut cut: String = joined.chars().take(SUBJECT_SHOWN_CHARS).collect();
    cut.push('…');
    cut
}

/// Enough for any real subject line (the notice's own title is under 40 characters).
pub const SUBJECT_SHOWN_CHARS: usize = 100;

/// The verdict in a few words.
fn verdict_line(o: &Outcome) -> &'static str {
    match o.verdict() {
        Verdict::Accepted => "审核通过",
        Verdict::NotASubmission => "已收到：邮件未附申报文件",
        Verdict::Rejected if o.is_late() => "未通过：晚于报送截止时间",
        Verdict::Rejected if !o.download_links.is_empty() && !o.submission.has_documents() => "未能接收：附件为下载链接",
        Verdict::Rejected => "未通过：尚有问题需补发或更正",
    }
}

/// The heading of the errors: for a late mail they are what its files hold, for the record —
/// nothing the unit can still correct.
fn errors_title(o: &Outcome) -> &'static str {
    if o.is_late() { "逾期邮件及其所附文件的问题（仅供参考，均未计入）" } else { "需要补发或更正的问题" }
}

/// What to do next.
fn next_step(o: &Outcome) -> Option<String> {
    match o.verdict() {
        Verdict::Accepted => None,
        Verdict::NotASubmission => Some(format!(
            "如需报送，每个工作室请发送：附件1 推荐审批表、附件3 申报材料（2000字以上）、工作室场景照1幅；每个推荐单位另发附件2 推荐汇总表1份。可一次发送，也可分几封邮件发送。{}",
            if o.standing.studios.is_empty() && !o.standing.has_summary_table { "" } else { "本单位已报送的材料见上表。" }
        )),
        Verdict::Rejected if o.is_late() => Some(
            "本邮件晚于报送截止时间送达，邮件中的材料未计入本单位的申报，此前按时报送的材料不受影响；重新发送也无法改变接收时间。如有疑问，请与工作人员联系。".into(),
        ),
        Verdict::Rejected => Some(
            "请只补发缺少的文件或更正后的文件（可分几封邮件发送，无需重发已收到的全部材料）；新收到的文件将替代同一工作室此前的同类文件。".into(),
        ),
    }
}

/// Where a finding is, in one phrase: `附件1.docx，表格1 第6行第2列 ‘共 人’`.
fn place(f: &Finding) -> String {
    match (&f.file, f.location.is_empty()) {
        (Some(file), false) => format!("{file}，{}", f.location),
        (Some(file), true) => file.clone(),
        (None, false) => f.location.clone(),
        (None, true) => String::new(),
    }
}

fn detail(f: &Finding) -> String {
    if f.found.is_empty() && f.expected.is_empty() {
        return String::new();
    }
    format!("（实际：{}；要求：{}）", capped(&f.found), capped(&f.expected))
}

/// A value from a form as a reply echoes it: at most [`ECHOED_VALUE_CHARS`] characters.
fn capped(s: &str) -> String {
    at_most(s, ECHOED_VALUE_CHARS)
}

/// `s` cut to `max` characters, with `…` when something was cut.
fn at_most(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// Longest found/expected value a reply repeats (a form's free-text cell can be 600 characters).
pub const ECHOED_VALUE_CHARS: usize = 120;

/// A date for the reply: `9月20日`.
fn day(t: Option<DateTime<FixedOffset>>, tz: chrono_tz::Tz) -> String {
    t.map(|t| t.with_timezone(&tz).format("%-m月%-d日 %H:%M").to_string()).unwrap_or_else(|| "此前".into())
}

/// What this mail brought, one line per part: `【X工作室】申报材料（附件3）：材料.docx（替代9月20日收到的版本）`.
fn brought_lines(o: &Outcome, tz: chrono_tz::Tz) -> Vec<String> {
    let mut out: Vec<String> = o
        .changes
        .iter()
        .map(|c| {
            let who = c.studio.as_deref().map(|s| format!("【{s}】")).unwrap_or_default();
            let note = if let Some(newer) = &c.newer_on_file {
                format!("（{}收到的版本更新，以其为准；本件已存档）", day(newer.received_at, tz))
            } else if c.earlier {
                "（此前已收到，现归入该工作室）".to_owned()
            } else if c.studio.is_none() && c.part != super::dossier::Part::SummaryTable {
                if o.submission.forms.is_empty() && o.submission.summaries.is_empty() {
                    "（暂不能确定属于哪个工作室，已保留；收到该工作室的审批表或汇总表后自动归入，也可在文件名中写明工作室或带头人姓名后补发）".to_owned()
                } else {
                    // The forms came with it and still did not tell: waiting will not help.
                    "（未能确定属于哪个工作室，已保留；请在文件名中写明工作室或带头人姓名后补发）".to_owned()
                }
            } else {
                c.replaced.as_ref().map(|r| format!("（替代{}收到的版本）", day(r.received_at, tz))).unwrap_or_default()
            };
            format!("{who}{}：{}{note}", c.part.chinese(), c.file)
        })
        .collect();
    if !o.applied {
        // Late mail: what it carried, for the record.
        for a in o.submission.attachments.iter().filter(|a| a.kind != Kind::Other && a.kind != Kind::CoverLetter && a.duplicate_of.is_none()) {
            let who = a.studio.as_deref().map(|s| format!("【{s}】")).unwrap_or_default();
            out.push(format!("{who}{}：{}", a.kind.chinese(), a.file));
        }
    }
    for a in o.submission.attachments.iter().filter(|a| a.kind == Kind::CoverLetter) {
        out.push(format!("推荐函：{}（已收到，无需审核）", a.file));
    }
    out
}

/// One line per studio of the unit: its parts on file and whether it is complete.
/// A studio the unit's current 附件2 no longer lists.
fn withdrawn_line(name: &str) -> String {
    format!("{name}：本单位最新的推荐汇总表已不再列入，视为撤回，不计入汇总（如仍推荐，请在汇总表中补列该工作室）")
}

fn standing_lines(o: &Outcome) -> Vec<String> {
    let mark = |b: bool| if b { "✓" } else { "✗缺" };
    let withdrawn = o.standing.withdrawn.iter().map(|name| withdrawn_line(name));
    o.standing
        .studios
        .iter()
        .map(|s| {
            let rank = s.rank.map(|r| format!("序号{r} ")).unwrap_or_default();
            let state = if s.complete() {
                "齐全".to_owned()
            } else if s.errors > 0 {
                format!("有{}个问题待更正或补发", s.errors)
            } else {
                "待补".to_owned()
            };
            format!(
                "{rank}{}：审批表{} 汇总表{} 申报材料{} 场景照{}{} —— {state}",
                s.name,
                mark(s.has_approval_form),
                mark(s.has_summary_row),
                mark(s.has_materials),
                mark(s.has_photo),
                if s.photo_inside { "（取自文档中的图片）" } else { "" }
            )
        })
        .chain(withdrawn)
        .collect()
}

/// The unit's state in one sentence.
fn standing_sentence(o: &Outcome) -> String {
    let st = &o.standing;
    if st.complete() {
        format!("本单位推荐汇总表所列{}个工作室的材料均已齐全、审核通过，无需再发。", st.studios.len())
    } else if st.studios.is_empty() && !st.has_summary_table {
        "本单位尚未报送任何申报材料。".into()
    } else {
        let complete = st.studios.iter().filter(|s| s.complete()).count();
        format!(
            "本单位目前共{}个工作室，其中{}个材料齐全；{}",
            st.studios.len(),
            complete,
            if st.has_summary_table { "未齐全的见下文。" } else { "尚未收到推荐汇总表（附件2）。" }
        )
    }
}

/// The reply to the sender: the verdict, what this mail brought, where the unit stands, and
/// exactly what is still missing or wrong. Only findings the sender can act on are in it (see
/// [`super::findings::Code::for_sender`]); the verdict still counts every error.
pub fn reply(o: &Outcome, policy: &Policy) -> Reply {
    let tz = policy.timezone;
    let shown: Vec<&Finding> = o.findings.iter().filter(|f| f.code.for_sender()).collect();
    let errors: Vec<&Finding> = shown.iter().copied().filter(|f| f.severity == Severity::Error).collect();
    let warnings: Vec<&Finding> = shown.iter().copied().filter(|f| f.severity == Severity::Warning).collect();
    let original = &shown_subject(&o.message.subject);
    let headline = verdict_line(o);
    let subject = format!("【{headline}】回复：{original}");
    let when = o.received_at.map(|r| r.with_timezone(&tz).format("%Y年%m月%d日 %H:%M").to_string()).unwrap_or_else(|| "近日".into());
    let greeting = o.unit.as_deref().map(shown_value).unwrap_or_else(|| "您好".into());
    let brought = brought_lines(o, tz);
    let standing = standing_lines(o);

    let mut t = String::new();
    t.push_str(&format!("{greeting}：\n\n"));
    t.push_str(&format!("您发送的邮件《{original}》已于{when}收到。系统自动审核结果：\n\n"));
    t.push_str(&format!("  ■ {headline}。"));
    match o.verdict() {
        Verdict::Accepted if warnings.is_empty() => t.push_str("材料齐全，无需再发。\n\n"),
        Verdict::Accepted => t.push_str(&format!("另有 {} 条提醒，无需重新发送。\n\n", warnings.len())),
        Verdict::Rejected | Verdict::NotASubmission => t.push_str(&format!(
            "{}{}\n\n",
            if errors.is_empty() {
                String::new()
            } else if o.is_late() {
                "邮件逾期送达，所附材料未计入".to_owned()
            } else {
                format!("共 {} 个需要补发或更正的问题", errors.len())
            },
            if warnings.is_empty() { String::new() } else { format!("{}{} 条提醒", if errors.is_empty() { "" } else { "、" }, warnings.len()) }
        )),
    }
    let mut n = 0;
    let mut heading = |t: &mut String, title: &str| {
        n += 1;
        t.push_str(&format!("{}、{title}\n", ["一", "二", "三", "四", "五"][(n - 1).min(4)]));
    };
    if !brought.is_empty() {
        heading(&mut t, if o.applied { "本邮件收到的材料" } else { "本邮件所附文件（未计入）" });
        for line in &brought {
            t.push_str(&format!("  - {line}\n"));
        }
        t.push('\n');
    }
    heading(&mut t, "本单位目前已报送的情况");
    t.push_str(&format!("  {}\n", standing_sentence(o)));
    for (i, line) in standing.iter().enumerate() {
        t.push_str(&format!("  {}. {line}\n", i + 1));
    }
    t.push('\n');
    if !errors.is_empty() {
        heading(&mut t, errors_title(o));
        for (i, f) in errors.iter().enumerate() {
            push_item(&mut t, i + 1, f);
        }
        t.push('\n');
    }
    if !warnings.is_empty() {
        heading(&mut t, "提醒（无需重新发送）");
        for (i, f) in warnings.iter().enumerate() {
            push_item(&mut t, i + 1, f);
        }
        t.push('\n');
    }
    if let Some(step) = next_step(o) {
        t.push_str(&step);
        t.push('\n');
    }
    t.push_str(&format!("纸质件一式2份请按通知要求报送。本邮件由系统自动发送。{}\n", policy.contact_line));
    t.push_str(&format!("\n{}\n", policy.signature));

    let html = html_reply(o, policy, headline, &errors, &warnings, &when, original, &brought, &standing, &greeting);
    Reply { subject: strip_invisible(&subject), text: strip_invisible(&t), html: strip_invisible(&html) }
}

/// Characters that change how text is shown without being seen (bidi overrides and
/// isolates, zero-width characters) and control characters other than line breaks: never in
/// anything we send, whatever a mail or its forms contained.
pub fn strip_invisible(s: &str) -> String {
    s.chars()
        .filter(|&c| !(is_invisible(c) || (c.is_control() && c != '\n' && c != '\t')))
        .collect()
}

/// The short fixed acknowledgement a held mail's sender gets. It repeats nothing of the mail
/// (no subject, names, values or file names): a forged From must not turn the mailbox into a
/// relay of someone else's text.
pub fn held_ack(policy: &Policy) -> Reply {
    let body = "您的邮件已收到。发件地址尚未登记为推荐单位的报送邮箱（或未通过发件人身份验证），邮件已暂存，待推荐单位确认或工作人员核实后处理。\n\n如您代表推荐单位报送，请使用本单位登记的邮箱发送，或联系工作人员登记您的邮箱。";
    let text = format!("您好：\n\n{body}\n\n本邮件由系统自动发送。{}\n\n{}\n", policy.contact_line, policy.signature);
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:'Microsoft YaHei',SimSun,sans-serif;font-size:14px\"><p>您好：</p><p>{}</p><p style=\"color:#666\">本邮件由系统自动发送。{}</p><p>{}</p></body></html>",
        escape(body).replace('\n', "<br>"),
        escape(&policy.contact_line),
        escape(&policy.signature)
    );
    Reply { subject: "【已收到】邮件已暂存，待核实发件人".into(), text, html }
}

/// What a confirmation request says about the held mail.
#[derive(Debug, Clone)]
pub struct HeldSummary {
    pub sender: String,
    pub received_at: Option<DateTime<FixedOffset>>,
    /// `submission.unknown_sender` or `submission.sender_not_authenticated`.
    pub reason: super::findings::Code,
    /// (file, kind, studio) of what it carries.
    pub files: Vec<(String, Kind, Option<String>)>,
}

/// Files listed in a confirmation request at most.
const CONFIRM_FILES_SHOWN: usize = 20;

/// The request to a unit's registered addresses: a mail that may speak for the unit arrived
/// from an address that cannot (yet); a reply from a registered address applies it.
pub fn confirmation_request(unit: &str, held: &HeldSummary, policy: &Policy) -> Reply {
    let when = held.received_at.map(|t| t.with_timezone(&policy.timezone).format("%Y年%m月%d日 %H:%M").to_string()).unwrap_or_else(|| "近日".into());
    let sender = shown_value(&held.sender);
    let why = match held.reason {
        super::findings::Code::SubmissionSenderNotAuthenticated => format!("该邮件的发件地址 {sender} 是贵单位登记的邮箱，但未通过发件人身份验证（可能是他人冒用）。"),
        _ => format!("该邮件的发件地址 {sender} 未登记为贵单位的报送邮箱，邮件中的表格写明推荐单位为{}。", shown_value(unit)),
    };
    let mut files: Vec<String> = held
        .files
        .iter()
        .take(CONFIRM_FILES_SHOWN)
        .map(|(f, k, s)| match s {
            Some(s) => format!("{}：{}（{}）", k.chinese(), shown_value(f), shown_value(s)),
            None => format!("{}：{}", k.chinese(), shown_value(f)),
        })
        .collect();
    if held.files.len() > CONFIRM_FILES_SHOWN {
        files.push(format!("……共 {} 个文件", held.files.len()));
    }
    if files.is_empty() {
        files.push("（无申报文件）".into());
    }
    let body = format!(
        "{}：\n\n本系统于{when}收到一封可能代表贵单位报送的邮件。{why}\n\n邮件所附文件：\n{}\n\n在确认之前，该邮件不会改变贵单位已报送的材料。\n  · 如确认该邮件代表贵单位报送，请用贵单位登记的邮箱直接回复本邮件（无需附件），系统即将其计入贵单位的申报，并把审核结果发到回复的邮箱；\n  · 如不是贵单位报送，请忽略本邮件，该邮件不会计入。",
        shown_value(unit),
        files.iter().map(|f| format!("  - {f}")).collect::<Vec<_>>().join("\n")
    );
    let text = format!("{body}\n\n本邮件由系统自动发送。{}\n\n{}\n", policy.contact_line, policy.signature);
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:'Microsoft YaHei',SimSun,sans-serif;font-size:14px\"><p>{}</p><p style=\"color:#666\">本邮件由系统自动发送。{}</p><p>{}</p></body></html>",
        escape(&body).replace('\n', "<br>"),
        escape(&policy.contact_line),
        escape(&policy.signature)
    );
    Reply { subject: "【请确认】有一封邮件待贵单位确认是否计入".into(), text: strip_invisible(&text), html: strip_invisible(&html) }
}

/// A value from a mail or its forms as the reply shows it: no control or invisible
/// characters, capped in length.
pub fn shown_value(s: &str) -> String {
    let cleaned: String = s.chars().filter(|&c| !(c.is_control() || is_invisible(c))).collect();
    at_most(cleaned.trim(), SHOWN_VALUE_CHARS)
}

/// Longest value echoed in a reply (a unit's or studio's name is well under this).
pub const SHOWN_VALUE_CHARS: usize = 60;

fn push_item(t: &mut String, n: usize, f: &Finding) {
    let who = f.studio.as_deref().map(|s| format!("【{s}】")).unwrap_or_default();
    let at = place(f);
    t.push_str(&format!("  {n}. {who}{}\n", f.message));
    if !at.is_empty() {
        t.push_str(&format!("     位置：{at}{}\n", detail(f)));
    }
}

/// Why a stored message has no outcome of the core: its sender gets a short reply saying so
/// (and staff see it in the digest), instead of silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unprocessed {
    /// Over `[limits] max_message_bytes`: only its header was read.
    TooLarge { size: u64, limit: u64 },
    /// The core failed on it (a defect, or over `[limits] process_timeout_secs`).
    Failed { reason: String },
    /// Not an e-mail message at all (a stray file in the mail folder, garbage): usually
    /// nobody to answer.
    NotAMessage { reason: String },
}

impl std::fmt::Display for Unprocessed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A Chinese lead for the staff digest, then the detail for whoever debugs it.
        match self {
            Unprocessed::TooLarge { size, limit } => write!(f, "邮件过大：{}，超过可接收的上限{}", megabytes(*size), megabytes(*limit)),
            Unprocessed::Failed { reason } => write!(f, "系统未能处理：{reason}"),
            Unprocessed::NotAMessage { reason } => write!(f, "不是有效的邮件：{reason}"),
        }
    }
}

/// `12.3MB`: sizes as people read them.
fn megabytes(bytes: u64) -> String {
    format!("{:.1}MB", bytes as f64 / 1024.0 / 1024.0)
}

/// The reply to a mail that could not be processed: what happened and what to do.
pub fn unprocessed_reply(subject: Option<&str>, why: &Unprocessed, policy: &Policy) -> Reply {
    // Without the subject (an unregistered sender), the reply repeats nothing of the mail.
    let original = &subject.map(shown_subject).map(|s| format!("《{s}》")).unwrap_or_default();
    let (title, body) = match why {
        Unprocessed::TooLarge { size, limit } => (
            "未能接收：邮件过大",
            format!(
                "您发送的邮件{original}大小为{}，超过系统可接收的上限{}，未能处理。\n\n请压缩照片（场景照1幅即可，无需原始大图）、删除无关附件后重新发送；材料较多时可分两封邮件发送，每封注明推荐单位。",
                megabytes(*size),
                megabytes(*limit)
            ),
        ),
        // Nothing the sender did wrong can be named: staff check the mail by hand (the
        // digest lists it), so a resend would only add a copy.
        Unprocessed::Failed { .. } => (
            "已收到，待人工核对",
            format!("您发送的邮件{original}已收到，但系统未能自动核对其附件。工作人员将人工核对并与您联系，请勿重复发送。"),
        ),
        Unprocessed::NotAMessage { .. } => (
            "未能读取邮件",
            format!("您发送的邮件{original}无法按电子邮件格式读取。请用常用邮箱重新发送，附件直接添加为附件。"),
        ),
    };
    let text = format!("您好：\n\n  ■ {title}\n\n{body}\n\n本邮件由系统自动发送。{}\n\n{}\n", policy.contact_line, policy.signature);
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:'Microsoft YaHei',SimSun,sans-serif;font-size:14px\"><p>您好：</p><p style=\"color:#b3261e;font-weight:bold\">{title}</p><p>{}</p><p style=\"color:#666\">本邮件由系统自动发送。{}</p><p>{}</p></body></html>",
        escape(&body).replace('\n', "<br>"),
        escape(&policy.contact_line),
        escape(&policy.signature)
    );
    let subject = match subject {
        Some(s) => format!("【{title}】回复：{}", shown_subject(s)),
        None => format!("【{title}】"),
    };
    Reply { subject: strip_invisible(&subject), text: strip_invisible(&text), html: strip_invisible(&html) }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn html_reply(
    o: &Outcome,
    policy: &Policy,
    headline: &str,
    errors: &[&Finding],
    warnings: &[&Finding],
    when: &str,
    original: &str,
    brought: &[String],
    standing: &[String],
    greeting: &str,
) -> String {
    // Table layout and inline styles only: Outlook's Word renderer, Foxmail and QQ Mail all
    // ignore <style> blocks in part and flexbox entirely.
    let (colour, bg) = match o.verdict() {
        Verdict::Accepted => ("#1a7f37", "#e6f4ea"),
        Verdict::NotASubmission => ("#555555", "#f2f2f2"),
        Verdict::Rejected => ("#b3261e", "#fdecea"),
    };
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:'Microsoft YaHei',SimSun,sans-serif;font-size:14px;color:#222\">");
    h.push_str(&format!("<p>{}：</p>", escape(greeting)));
    h.push_str(&format!("<p>您发送的邮件《{}》已于{}收到。系统自动审核结果：</p>", escape(original), escape(when)));
    h.push_str(&format!(
        "<table cellpadding=\"8\" cellspacing=\"0\" style=\"border:1px solid {colour};background:{bg}\"><tr><td style=\"color:{colour};font-size:16px;font-weight:bold\">{}</td><td>{}：{} 项　提醒：{} 项</td></tr></table>",
        escape(headline),
        if o.is_late() { "问题（仅供参考）" } else { "需补发或更正" },
        errors.len(),
        warnings.len()
    ));
    let list = |h: &mut String, title: &str, lines: &[String]| {
        if lines.is_empty() {
            return;
        }
        h.push_str(&format!("<h3 style=\"font-size:15px\">{}</h3><ul>", escape(title)));
        for l in lines {
            h.push_str(&format!("<li>{}</li>", escape(l)));
        }
        h.push_str("</ul>");
    };
    list(&mut h, if o.applied { "本邮件收到的材料" } else { "本邮件所附文件（未计入）" }, brought);
    h.push_str(&format!("<h3 style=\"font-size:15px\">本单位目前已报送的情况</h3><p>{}</p>", escape(&standing_sentence(o))));
    if !standing.is_empty() {
        h.push_str("<table cellpadding=\"6\" cellspacing=\"0\" border=\"1\" style=\"border-collapse:collapse;border-color:#ccc\"><tr style=\"background:#f2f2f2\"><th>序号</th><th>工作室</th><th>审批表</th><th>汇总表</th><th>申报材料</th><th>场景照</th><th>状态</th></tr>");
        let mark = |b: bool| if b { "<span style=\"color:#1a7f37\">✓</span>" } else { "<span style=\"color:#b3261e\">✗ 缺</span>" };
        for s in &o.standing.studios {
            let state = if s.complete() { "齐全".to_owned() } else if s.errors > 0 { format!("{}个问题", s.errors) } else { "待补".into() };
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                s.rank.map(|r| r.to_string()).unwrap_or_else(|| "—".into()),
                escape(&s.name),
                mark(s.has_approval_form),
                mark(s.has_summary_row),
                mark(s.has_materials),
                mark(s.has_photo),
                if s.photo_inside { "（文档中的图片）" } else { "" },
                escape(&state)
            ));
        }
        h.push_str("</table>");
    }
    for name in &o.standing.withdrawn {
        h.push_str(&format!("<p>{}。</p>", escape(&withdrawn_line(name))));
    }
    let section = |h: &mut String, title: &str, items: &[&Finding]| {
        if items.is_empty() {
            return;
        }
        h.push_str(&format!("<h3 style=\"font-size:15px\">{}</h3>", escape(title)));
        h.push_str("<table cellpadding=\"6\" cellspacing=\"0\" border=\"1\" style=\"border-collapse:collapse;border-color:#ccc\"><tr style=\"background:#f2f2f2\"><th>序号</th><th>工作室</th><th>问题及修改要求</th><th>位置</th><th>实际</th><th>要求</th></tr>");
        for (i, f) in items.iter().enumerate() {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i + 1,
                escape(f.studio.as_deref().unwrap_or("—")),
                escape(&f.message),
                escape(&place(f)),
                escape(&capped(&f.found)),
                escape(&capped(&f.expected))
            ));
        }
        h.push_str("</table>");
    };
    section(&mut h, errors_title(o), errors);
    section(&mut h, "提醒（无需重新发送）", warnings);
    if let Some(step) = next_step(o) {
        h.push_str(&format!("<p>{}</p>", escape(&step)));
    }
    h.push_str(&format!("<p style=\"color:#666\">纸质件一式2份请按通知要求报送。本邮件由系统自动发送。{}</p>", escape(&policy.contact_line)));
    h.push_str(&format!("<p>{}</p></body></html>", escape(&policy.signature)));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_are_capped_and_cleaned() {
        let long = "值".repeat(ECHOED_VALUE_CHARS + 10);
        assert_eq!(capped(&long).chars().count(), ECHOED_VALUE_CHARS + 1);
        assert_eq!(capped("短"), "短");
        let name = format!("{}\u{202e}X\u{200b}", "名".repeat(SHOWN_VALUE_CHARS + 5));
        let shown = shown_value(&name);
        assert!(shown.ends_with('…') && shown.chars().count() == SHOWN_VALUE_CHARS + 1, "{shown}");
        assert_eq!(shown_value(" 犍为县\u{202e}总工会\r\n"), "犍为县总工会");
        assert_eq!(strip_invisible("a\u{2066}b\u{0007}c\nd"), "abc\nd");
    }

    #[test]
    fn a_confirmation_request_lists_at_most_the_first_files() {
        let policy = crate::config::Config::builtin().policy();
        let files = (0..CONFIRM_FILES_SHOWN + 5).map(|i| (format!("f{i}.docx"), Kind::Other, None)).collect();
        let held = HeldSummary { sender: "x@evil.example".into(), received_at: None, reason: super::super::findings::Code::SubmissionUnknownSender, files };
        let r = confirmation_request("犍为县总工会", &held, &policy);
        assert!(r.text.contains(&format!("f{}.docx", CONFIRM_FILES_SHOWN - 1)) && !r.text.contains(&format!("f{}.docx", CONFIRM_FILES_SHOWN)));
        assert!(r.text.contains(&format!("共 {} 个文件", CONFIRM_FILES_SHOWN + 5)));
    }

    #[test]
    fn shown_subject_drops_control_and_bidi_characters_and_is_capped() {
        assert_eq!(shown_subject("  推荐\r\nBcc: x@y\t材料 "), "推荐 Bcc: x@y 材料");
        assert_eq!(shown_subject("\u{202e}表批审\u{202c}"), "表批审");
        assert_eq!(shown_subject(" \r\n "), "（无主题）");
        let long = "申".repeat(SUBJECT_SHOWN_CHARS + 50);
        let shown = shown_subject(&long);
        assert_eq!(shown.chars().count(), SUBJECT_SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(shown_subject(&"申".repeat(SUBJECT_SHOWN_CHARS)), "申".repeat(SUBJECT_SHOWN_CHARS));
    }
}
