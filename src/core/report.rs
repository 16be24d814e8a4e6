//! Findings → what people read: the reply to the sender in Chinese (plain text and HTML,
//! verdict first, then each problem with where it is and how to fix it) and the JSON of
//! `check` (`INTERFACE.md`).

use serde::Serialize;

use super::findings::{Finding, Severity};
use super::submission::{AttachmentInfo, Studio};
use super::{Outcome, Verdict};
use crate::config::Config;

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
        studios: &o.submission.studios,
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
    let is_bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let cleaned: String = subject.chars().map(|c| if c.is_control() { ' ' } else { c }).filter(|&c| !is_bidi(c)).collect();
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

/// The verdict in a few words. A late mail cannot be mended by resending it, so it does not
/// ask for that.
fn verdict_line(v: Verdict, late: bool) -> &'static str {
    match (v, late) {
        (Verdict::Accepted, _) => "审核通过",
        (Verdict::Rejected, true) => "未通过：晚于报送截止时间",
        (Verdict::Rejected, false) => "未通过，请修改后重新发送",
    }
}

fn is_late(o: &Outcome) -> bool {
    o.findings.iter().any(|f| f.code == super::findings::Code::SubmissionLate)
}

/// What to do next, for a rejected mail.
fn next_step(late: bool) -> &'static str {
    if late {
        "本邮件晚于报送截止时间送达，重新发送也无法改变这一点；如对接收时间有疑问，请与工作人员联系。"
    } else {
        "修改后请重新发送邮件并附上该工作室的全部材料（附件1、附件3、场景照）及本单位的推荐汇总表（附件2），新邮件将替代此前的版本。"
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
    format!("（实际：{}；要求：{}）", f.found, f.expected)
}

/// The reply to the sender. Only findings the sender can act on are in it (see
/// [`super::findings::Code::for_sender`]); the verdict still counts every error.
pub fn reply(o: &Outcome, config: &Config, superseded: &[String]) -> Reply {
    let verdict = o.verdict();
    let tz = config.timezone().unwrap_or(chrono_tz::Asia::Shanghai);
    let shown: Vec<&Finding> = o.findings.iter().filter(|f| f.code.for_sender()).collect();
    let errors: Vec<&&Finding> = shown.iter().filter(|f| f.severity == Severity::Error).collect();
    let warnings: Vec<&&Finding> = shown.iter().filter(|f| f.severity == Severity::Warning).collect();
    let original = &shown_subject(&o.message.subject);
    let late = is_late(o);
    let subject = format!("【{}】回复：{}", verdict_line(verdict, late), original);

    let mut t = String::new();
    let greeting = o.unit.as_deref().unwrap_or("您好");
    if o.unit.is_some() {
        t.push_str(&format!("{greeting}：\n\n"));
    } else {
        t.push_str("您好：\n\n");
    }
    let when = o
        .received_at
        .map(|r| r.with_timezone(&tz).format("%Y年%m月%d日 %H:%M").to_string())
        .unwrap_or_else(|| "近日".into());
    t.push_str(&format!("您于{when}发送的邮件《{original}》已收到。系统自动审核结果：\n\n"));
    t.push_str(&format!("  ■ {}", verdict_line(verdict, late)));
    match verdict {
        Verdict::Accepted if warnings.is_empty() => t.push_str("。材料齐全，无需再发。\n\n"),
        Verdict::Accepted => t.push_str(&format!("。另有 {} 条提醒，无需重新发送。\n\n", warnings.len())),
        Verdict::Rejected => t.push_str(&format!(
            "。共 {} 个必须修改的问题{}。\n\n",
            errors.len(),
            if warnings.is_empty() { String::new() } else { format!("、{} 条提醒", warnings.len()) }
        )),
    }
    if !errors.is_empty() {
        t.push_str("一、必须修改的问题\n");
        for (i, f) in errors.iter().enumerate() {
            push_item(&mut t, i + 1, f);
        }
        t.push('\n');
    }
    if !warnings.is_empty() {
        t.push_str(if errors.is_empty() { "一、提醒（无需重新发送）\n" } else { "二、提醒（无需重新发送）\n" });
        for (i, f) in warnings.iter().enumerate() {
            push_item(&mut t, i + 1, f);
        }
        t.push('\n');
    }
    if !o.submission.studios.is_empty() {
        t.push_str("本次收到的工作室：\n");
        for (i, s) in o.submission.studios.iter().enumerate() {
            t.push_str(&format!("  {}. {}：{}\n", i + 1, s.name, parts_line(s)));
        }
        t.push('\n');
    }
    for name in superseded {
        t.push_str(&format!("说明：“{name}”此前已报送，本次邮件中的材料将替代之前的版本。\n"));
    }
    if !superseded.is_empty() {
        t.push('\n');
    }
    if verdict == Verdict::Rejected {
        t.push_str(next_step(late));
        t.push('\n');
    }
    t.push_str(&format!("纸质件一式2份请按通知要求报送。本邮件由系统自动发送。{}\n", config.campaign_contact_line()));
    t.push_str(&format!("\n{}\n", config.outbox_from_name()));

    let html = html_reply(o, config, verdict, &errors, &warnings, &when, original, superseded);
    Reply { subject, text: t, html }
}

fn push_item(t: &mut String, n: usize, f: &Finding) {
    let who = f.studio.as_deref().map(|s| format!("【{s}】")).unwrap_or_default();
    let at = place(f);
    t.push_str(&format!("  {n}. {who}{}\n", f.message));
    if !at.is_empty() {
        t.push_str(&format!("     位置：{at}{}\n", detail(f)));
    }
}

fn parts_line(s: &Studio) -> String {
    let mark = |b: bool| if b { "✓" } else { "✗" };
    format!(
        "审批表{} 汇总表{} 申报材料{} 场景照{}",
        mark(s.has_approval_form),
        mark(s.has_summary_row),
        mark(s.has_materials),
        mark(s.has_photo)
    )
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
            Unprocessed::TooLarge { size, limit } => write!(f, "邮件过大：{size} bytes, over the limit of {limit} bytes"),
            Unprocessed::Failed { reason } => write!(f, "系统未能处理：processing failed: {reason}"),
            Unprocessed::NotAMessage { reason } => write!(f, "不是有效的邮件：{reason}"),
        }
    }
}

/// The reply to a mail that could not be processed: what happened and what to do.
pub fn unprocessed_reply(subject: &str, why: &Unprocessed, config: &Config) -> Reply {
    let original = &shown_subject(subject);
    let mb = |b: u64| format!("{:.1}MB", b as f64 / 1024.0 / 1024.0);
    let (title, body) = match why {
        Unprocessed::TooLarge { size, limit } => (
            "未能接收：邮件过大",
            format!(
                "您发送的邮件《{original}》大小为{}，超过系统可接收的上限{}，未能处理。\n\n请压缩照片（场景照1幅即可，无需原始大图）、删除无关附件后重新发送；材料较多时可分两封邮件发送，每封注明推荐单位。",
                mb(*size),
                mb(*limit)
            ),
        ),
        // Nothing the sender did wrong can be named: staff check the mail by hand (the
        // digest lists it), so a resend would only add a copy.
        Unprocessed::Failed { .. } => (
            "已收到，待人工核对",
            format!("您发送的邮件《{original}》已收到，但系统未能自动核对其附件。工作人员将人工核对并与您联系，请勿重复发送。"),
        ),
        Unprocessed::NotAMessage { .. } => (
            "未能读取邮件",
            format!("您发送的邮件《{original}》无法按电子邮件格式读取。请用常用邮箱重新发送，附件直接添加为附件。"),
        ),
    };
    let text = format!("您好：\n\n  ■ {title}\n\n{body}\n\n本邮件由系统自动发送。{}\n\n{}\n", config.campaign_contact_line(), config.outbox_from_name());
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:'Microsoft YaHei',SimSun,sans-serif;font-size:14px\"><p>您好：</p><p style=\"color:#b3261e;font-weight:bold\">{title}</p><p>{}</p><p style=\"color:#666\">本邮件由系统自动发送。{}</p><p>{}</p></body></html>",
        escape(&body).replace('\n', "<br>"),
        escape(&config.campaign_contact_line()),
        escape(&config.outbox_from_name())
    );
    Reply { subject: format!("【{title}】回复：{original}"), text, html }
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
fn html_reply(o: &Outcome, config: &Config, verdict: Verdict, errors: &[&&Finding], warnings: &[&&Finding], when: &str, original: &str, superseded: &[String]) -> String {
    // Table layout and inline styles only: Outlook's Word renderer, Foxmail and QQ Mail all
    // ignore <style> blocks in part and flexbox entirely.
    let (colour, bg) = match verdict {
        Verdict::Accepted => ("#1a7f37", "#e6f4ea"),
        Verdict::Rejected => ("#b3261e", "#fdecea"),
    };
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:'Microsoft YaHei',SimSun,sans-serif;font-size:14px;color:#222\">");
    h.push_str(&format!("<p>{}：</p>", escape(o.unit.as_deref().unwrap_or("您好"))));
    h.push_str(&format!("<p>您于{}发送的邮件《{}》已收到。系统自动审核结果：</p>", escape(when), escape(original)));
    h.push_str(&format!(
        "<table cellpadding=\"8\" cellspacing=\"0\" style=\"border:1px solid {colour};background:{bg}\"><tr><td style=\"color:{colour};font-size:16px;font-weight:bold\">{}</td><td>必须修改：{} 项　提醒：{} 项</td></tr></table>",
        verdict_line(verdict, is_late(o)),
        errors.len(),
        warnings.len()
    ));
    let section = |h: &mut String, title: &str, items: &[&&Finding]| {
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
                escape(&f.found),
                escape(&f.expected)
            ));
        }
        h.push_str("</table>");
    };
    section(&mut h, "必须修改的问题", errors);
    section(&mut h, "提醒（无需重新发送）", warnings);
    if !o.submission.studios.is_empty() {
        h.push_str("<h3 style=\"font-size:15px\">本次收到的工作室</h3><table cellpadding=\"6\" cellspacing=\"0\" border=\"1\" style=\"border-collapse:collapse;border-color:#ccc\"><tr style=\"background:#f2f2f2\"><th>工作室</th><th>审批表</th><th>汇总表</th><th>申报材料</th><th>场景照</th></tr>");
        let mark = |b: bool| if b { "<span style=\"color:#1a7f37\">✓</span>" } else { "<span style=\"color:#b3261e\">✗ 缺</span>" };
        for s in &o.submission.studios {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&s.name),
                mark(s.has_approval_form),
                mark(s.has_summary_row),
                mark(s.has_materials),
                mark(s.has_photo)
            ));
        }
        h.push_str("</table>");
    }
    for name in superseded {
        h.push_str(&format!("<p>说明：“{}”此前已报送，本次邮件中的材料将替代之前的版本。</p>", escape(name)));
    }
    if verdict == Verdict::Rejected {
        h.push_str(&format!("<p>{}</p>", next_step(is_late(o))));
    }
    h.push_str(&format!("<p style=\"color:#666\">纸质件一式2份请按通知要求报送。本邮件由系统自动发送。{}</p>", escape(&config.campaign_contact_line())));
    h.push_str(&format!("<p>{}</p></body></html>", escape(&config.outbox_from_name())));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

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
