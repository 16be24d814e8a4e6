//! The digest as Chinese text and HTML.
//!
//! The HTML is written for the clients staff read it in: Outlook (Word's renderer: no CSS
//! layout, no `<style>` blocks, no background images, widths only from attributes), Foxmail
//! and QQ Mail (which strip `<style>`). So: nested `<table>`s for layout, inline styles and
//! the old `bgcolor`/`width` attributes, no external images. Bars are table cells of a given
//! pixel width with a background colour.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset};
use chrono_tz::Tz;

use crate::config::Config;
use crate::core::findings::Code;
use crate::store::{HeldMail, MailToRead, StudioVerdict};

use super::facts::{Facts, UNKNOWN_UNIT};
use super::schedule::SlotKind;
use super::xlsx::severity_label;

const BLUE: &str = "#2e75b6";
const GREEN: &str = "#70ad47";
const ORANGE: &str = "#ed7d31";
const GREY: &str = "#d9d9d9";
const FONT: &str = "font-family:'Microsoft YaHei','微软雅黑',SimSun,'宋体',Arial,sans-serif;font-size:14px;color:#222222;";
const TH: &str = "padding:4px 8px;border:1px solid #bfbfbf;background-color:#deebf7;font-weight:bold;text-align:left;";
const TD: &str = "padding:4px 8px;border:1px solid #bfbfbf;";
/// Widest bar, in pixels.
const BAR_MAX: u32 = 300;

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn render(f: &Facts, config: &Config, kind: SlotKind) -> Rendered {
    let tz: Tz = config.timezone().unwrap_or(chrono_tz::Asia::Shanghai);
    let title = &config.campaign.title;
    let label = match kind {
        SlotKind::Daily => "每日汇总",
        SlotKind::Final => "截止汇总",
    };
    let subject = format!(
        "【{label}】{title} {}：收到{}个工作室，通过{}个{}",
        f.today.format("%Y-%m-%d"),
        f.totals.studios,
        f.totals.accepted,
        if f.closed { "（已截止）".to_owned() } else { format!("，距截止{}天", f.days_left.max(0)) }
    );
    Rendered { subject, text: text(f, config, label, tz), html: html(f, config, label, tz) }
}

fn when(f: &Facts, tz: Tz) -> String {
    f.now.with_timezone(&tz).format("%Y年%-m月%-d日 %H:%M").to_string()
}

fn deadline_line(f: &Facts, tz: Tz) -> String {
    let d = fmt_deadline(f.deadline, tz);
    if f.closed {
        format!("申报已于{d}截止。")
    } else if f.days_left == 0 {
        format!("今天（{d}）截止。")
    } else {
        format!("距截止（{d}）还有 {} 天。", f.days_left)
    }
}

fn fmt_deadline(d: DateTime<FixedOffset>, tz: Tz) -> String {
    d.with_timezone(&tz).format("%Y年%-m月%-d日 %H:%M").to_string()
}

fn totals_line(f: &Facts) -> String {
    let t = &f.totals;
    format!(
        "收到邮件 {} 封；已报送单位 {} 个（共 {} 个推荐单位）；工作室 {} 个，其中通过 {} 个、退回 {} 个。",
        t.mails, t.units_heard_from, t.units_configured, t.studios, t.accepted, t.rejected
    )
}

fn quota_line(f: &Facts) -> String {
    if f.over_quota {
        format!(
            "通过审核 {} 个，超过拟命名名额 {} 个（{}：{}），需择优确定。",
            f.totals.accepted,
            f.quota,
            Code::CampaignOverQuota.as_str(),
            Code::CampaignOverQuota.title()
        )
    } else {
        format!("通过审核 {} 个 / 拟命名名额 {} 个。", f.totals.accepted, f.quota)
    }
}

fn progress_text(u: &super::facts::UnitRow) -> String {
    match u.minimum {
        Some(min) if u.below_minimum => format!("{}/{min} 不足（{}）", u.accepted, Code::UnitBelowMinimum.as_str()),
        Some(min) => format!("{}/{min} 已达到", u.accepted),
        None => "—".into(),
    }
}

/// The studio's open errors in the words staff read, each code after it as an aside:
/// `团队不足5人〔form.team_too_small〕`.
fn studio_codes(s: &crate::store::StudioRow) -> String {
    if s.error_codes.is_empty() {
        return "—".into();
    }
    s.error_codes.iter().map(|c| code_words(c)).collect::<Vec<_>>().join("、")
}

/// A finding code as staff read it: its Chinese title, the code after it.
pub fn code_words(code: &str) -> String {
    match Code::parse(code) {
        Some(c) => format!("{}〔{code}〕", c.title()),
        None => code.to_owned(),
    }
}

/// A held mail for staff: when, who, the unit its forms name, why, what it carries, and the
/// exact commands that decide it.
fn held_cells(h: &HeldMail, tz: Tz) -> [String; 5] {
    let reason = Code::parse(&h.reason).map(|c| code_words(c.as_str())).unwrap_or_else(|| h.reason.clone());
    let files: Vec<String> = h.attachments.iter().filter(|(_, k)| k != "other").map(|(f, _)| f.clone()).collect();
    let unit = h.suggested_unit.clone();
    let approve = format!(
        "studio-intake held approve {}{}",
        h.submission_id,
        unit.as_deref().map(|u| format!(" --unit {u}")).unwrap_or_else(|| " --unit 单位名称".into())
    );
    [
        h.received_at.map(|t| t.with_timezone(&tz).format("%m-%d %H:%M").to_string()).unwrap_or_else(|| "—".into()),
        h.sender.clone().unwrap_or_else(|| "（无发件人）".into()),
        format!("{}；{}", unit.unwrap_or_else(|| "表格未写明单位".into()), reason),
        if files.is_empty() { "无申报文件".into() } else { files.join("、") },
        format!("确认计入：{approve}；不予计入：studio-intake held discard {}", h.submission_id),
    ]
}

/// Why a mail is among those to read, and what it carried.
fn to_read_cells(m: &MailToRead, tz: Tz) -> [String; 5] {
    let what = if m.late {
        let carried: Vec<String> = m
            .attachments
            .iter()
            .filter(|(_, kind, _)| kind != "other")
            .map(|(file, kind, studio)| {
                let kind = serde_json::from_value::<crate::core::forms::Kind>(serde_json::Value::String(kind.clone()))
                    .map(|k| k.chinese().to_owned())
                    .unwrap_or_else(|_| kind.clone());
                match studio {
                    Some(s) => format!("{kind}（{s}）{file}"),
                    None => format!("{kind} {file}"),
                }
            })
            .collect();
        format!("逾期送达，未计入；所附：{}", if carried.is_empty() { "无申报文件".to_owned() } else { carried.join("；") })
    } else if !m.download_links.is_empty() {
        format!("附件为下载链接（已请对方直接附上文件）：{}", m.download_links.join(" "))
    } else {
        "未附申报文件（询问、致谢或推荐函等），请阅读".to_owned()
    };
    [
        m.received_at.map(|t| t.with_timezone(&tz).format("%m-%d %H:%M").to_string()).unwrap_or_else(|| "—".into()),
        m.sender.clone().unwrap_or_else(|| "（无发件人）".into()),
        m.unit.clone().unwrap_or_else(|| UNKNOWN_UNIT.into()),
        crate::core::report::shown_subject(&m.subject),
        what,
    ]
}

/// Time, sender, subject and reason of a mail staff must check by hand; the subject is
/// shown as replies quote it (no control or bidi characters, at most 100 characters).
fn unprocessed_cells(m: &crate::store::UnprocessedMail, tz: Tz) -> [String; 4] {
    [
        m.stored_at.with_timezone(&tz).format("%m-%d %H:%M").to_string(),
        m.sender.clone().unwrap_or_else(|| "（无发件人）".into()),
        crate::core::report::shown_subject(m.subject.as_deref().unwrap_or_default()),
        // The reason of a mail set aside is the last error, for whoever debugs it: a Chinese
        // lead says what became of the mail.
        if m.set_aside { format!("多次处理未成功，已移入失败文件夹（{}）", m.reason) } else { m.reason.clone() },
    ]
}

/// The studios units took off their 附件2, for staff signing off the table.
fn withdrawn_line(f: &Facts) -> Option<String> {
    (!f.withdrawn.is_empty()).then(|| {
        let list: Vec<String> = f.withdrawn.iter().map(|(unit, studio)| format!("{unit}·{studio}")).collect();
        format!("已撤回的工作室（本单位最新的推荐汇总表不再列入，不计入汇总，材料存档）：{}", list.join("、"))
    })
}

fn sender_label((address, unit): &(String, Option<String>)) -> String {
    match unit {
        Some(u) => format!("{address}（表格所署单位：{u}）"),
        None => address.clone(),
    }
}

fn verdict_label(v: StudioVerdict) -> &'static str {
    match v {
        StudioVerdict::Accepted => "通过",
        StudioVerdict::Rejected => "退回",
    }
}

// ---------------------------------------------------------------------------------------------
// Text

fn text(f: &Facts, config: &Config, label: &str, tz: Tz) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}——{label}（{}）", config.campaign.title, when(f, tz));
    let _ = writeln!(o, "{}", deadline_line(f, tz));
    let _ = writeln!(o);
    let _ = writeln!(o, "一、总体情况");
    let _ = writeln!(o, "  {}", totals_line(f));
    let _ = writeln!(o, "  {}", quota_line(f));
    if !f.unprocessed.is_empty() {
        let _ = writeln!(o, "  另有 {} 封邮件无法自动处理，请人工查看（见第八部分）。", f.unprocessed.len());
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "二、各推荐单位（邮件 / 工作室 / 通过 / 未解决错误 / 最低申报数进度）");
    for u in &f.units {
        let _ = writeln!(
            o,
            "  {}：邮件 {}，工作室 {}，通过 {}，未解决错误 {}，进度 {}",
            u.name,
            u.mails,
            u.studios,
            u.accepted,
            u.open_errors,
            progress_text(u)
        );
    }
    if !f.below_minimum.is_empty() {
        let _ = writeln!(
            o,
            "  推荐数量不足{}个（{}）：{}",
            f.min_per_county,
            Code::UnitBelowMinimum.as_str(),
            f.below_minimum.join("、")
        );
    }
    if let Some(line) = withdrawn_line(f) {
        let _ = writeln!(o, "  {line}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "三、尚未报送的单位（{} 个）", f.not_heard_from.len());
    if f.not_heard_from.is_empty() {
        let _ = writeln!(o, "  无");
    } else {
        let _ = writeln!(o, "  {}", f.not_heard_from.join("、"));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "四、工作室明细（{} 个）", f.studios.len());
    for s in &f.studios {
        let _ = writeln!(
            o,
            "  [{}] {} · {} · 序号 {} · {} · 错误：{}",
            verdict_label(s.verdict),
            s.unit.as_deref().unwrap_or(UNKNOWN_UNIT),
            s.name,
            s.rank.map(|r| r.to_string()).unwrap_or_else(|| "—".into()),
            s.leader.as_deref().unwrap_or("—"),
            studio_codes(s)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "五、每日收件");
    let max = f.per_day.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    for (d, n) in &f.per_day {
        let width = ((*n * 30 + max - 1) / max) as usize;
        let _ = writeln!(o, "  {} {:>3} {}", d.format("%m-%d"), n, "█".repeat(width));
    }
    if f.per_day.is_empty() {
        let _ = writeln!(o, "  尚无");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "六、无法投递的回复（{} 封）", f.dead_letters.len());
    for d in &f.dead_letters {
        let _ = writeln!(
            o,
            "  {} → {}（尝试 {} 次）：{}",
            d.created_at.with_timezone(&tz).format("%m-%d %H:%M"),
            d.recipients.join(", "),
            d.attempts,
            d.error
        );
    }
    if f.dead_letters.is_empty() {
        let _ = writeln!(o, "  无");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "七、未登记的发件地址（{} 个）", f.unknown_senders.len());
    if f.unknown_senders.is_empty() {
        let _ = writeln!(o, "  无");
    } else {
        for s in &f.unknown_senders {
            let _ = writeln!(o, "  {}", sender_label(s));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "八、需人工查看的邮件（{} 封）", f.unprocessed.len());
    for m in &f.unprocessed {
        let [time, sender, subject, reason] = unprocessed_cells(m, tz);
        let _ = writeln!(o, "  {time} {sender} 《{subject}》：{reason}");
    }
    if f.unprocessed.is_empty() {
        let _ = writeln!(o, "  无");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "九、暂存待确认的邮件（发件地址未登记或未通过验证，{} 封）", f.held.len());
    for h in &f.held {
        let [time, sender, unit, files, commands] = held_cells(h, tz);
        let _ = writeln!(o, "  {time} {sender}（{unit}）：{files}\n      {commands}");
    }
    if f.held.is_empty() {
        let _ = writeln!(o, "  无");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "十、需阅读的邮件：询问与来函、下载链接、逾期邮件（{} 封）", f.to_read.len());
    for m in &f.to_read {
        let [time, sender, unit, subject, what] = to_read_cells(m, tz);
        let _ = writeln!(o, "  {time} {sender}（{unit}）《{subject}》：{what}");
    }
    if f.to_read.is_empty() {
        let _ = writeln!(o, "  无");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "附件：{}（第1页按推荐单位分组、组内按序号排列；第2页为未解决问题）。", super::xlsx::TITLE);
    if f.outbox_depth > 0 {
        let _ = writeln!(o, "待发送邮件 {} 封。", f.outbox_depth);
    }
    o
}

// ---------------------------------------------------------------------------------------------
// HTML

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// A horizontal bar of `width` pixels (nothing for 0): a one-cell table with a background.
fn bar(width: u32, color: &str) -> String {
    if width == 0 {
        return String::new();
    }
    format!(
        "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"border-collapse:collapse;\"><tr>\
         <td width=\"{width}\" height=\"14\" bgcolor=\"{color}\" style=\"width:{width}px;height:14px;background-color:{color};font-size:1px;line-height:1px;\">&nbsp;</td>\
         </tr></table>"
    )
}

/// `min` boxes, the first `done` filled: progress toward the minimum.
fn boxes(done: i64, min: u32) -> String {
    let mut o = String::from(
        "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"2\" border=\"0\"><tr>",
    );
    let color = if done >= i64::from(min) { GREEN } else { ORANGE };
    for k in 0..min {
        let c = if i64::from(k) < done { color } else { GREY };
        let _ = write!(
            o,
            "<td width=\"28\" height=\"14\" bgcolor=\"{c}\" style=\"width:28px;height:14px;background-color:{c};font-size:1px;line-height:1px;\">&nbsp;</td>"
        );
    }
    o.push_str("</tr></table>");
    o
}

fn table_open(o: &mut String) {
    o.push_str("<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" width=\"100%\" style=\"border-collapse:collapse;margin:0 0 16px 0;\">");
}

fn th_row(o: &mut String, cells: &[&str]) {
    o.push_str("<tr>");
    for c in cells {
        let _ = write!(o, "<th align=\"left\" style=\"{TH}{FONT}\">{}</th>", esc(c));
    }
    o.push_str("</tr>");
}

/// A row of cells whose content is already HTML.
fn td_row(o: &mut String, cells: &[String], highlight: bool) {
    let bg = if highlight { "background-color:#fff2cc;" } else { "" };
    o.push_str("<tr>");
    for c in cells {
        let _ = write!(o, "<td valign=\"top\" style=\"{TD}{FONT}{bg}\">{c}</td>");
    }
    o.push_str("</tr>");
}

/// A listing section: a table of `rows` (cells already escaped) under `headers`, or "无".
fn table_or_none(o: &mut String, headers: &[&str], rows: impl Iterator<Item = Vec<String>>, highlight: bool) {
    let mut inner = String::new();
    table_open(&mut inner);
    th_row(&mut inner, headers);
    let mut any = false;
    for row in rows {
        td_row(&mut inner, &row, highlight);
        any = true;
    }
    inner.push_str("</table>");
    if any {
        block(o, &inner);
    } else {
        para(o, "无", "");
    }
}

fn heading(o: &mut String, s: &str) {
    let _ = write!(
        o,
        "<tr><td style=\"{FONT}font-size:16px;font-weight:bold;color:{BLUE};padding:12px 0 6px 0;\">{}</td></tr>",
        esc(s)
    );
}

fn para(o: &mut String, s: &str, style: &str) {
    let _ = write!(o, "<tr><td style=\"{FONT}padding:2px 0;{style}\">{}</td></tr>", esc(s));
}

/// Wrap a block (a table) as one row of the outer layout table.
fn block(o: &mut String, inner: &str) {
    let _ = write!(o, "<tr><td style=\"padding:0;\">{inner}</td></tr>");
}

fn html(f: &Facts, config: &Config, label: &str, tz: Tz) -> String {
    let mut o = String::new();
    o.push_str("<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">");
    let _ = write!(o, "<title>{}</title></head>", esc(label));
    let _ = write!(o, "<body style=\"margin:0;padding:0;background-color:#ffffff;{FONT}\">");
    o.push_str("<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" width=\"100%\" bgcolor=\"#ffffff\"><tr><td align=\"left\" style=\"padding:16px;\">");
    o.push_str("<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" width=\"900\" style=\"width:900px;\">");
    let _ = write!(
        o,
        "<tr><td style=\"{FONT}font-size:20px;font-weight:bold;padding:0 0 4px 0;\">{}——{}</td></tr>",
        esc(&config.campaign.title),
        esc(label)
    );
    para(&mut o, &format!("截至 {}", when(f, tz)), "color:#666666;");
    para(
        &mut o,
        &deadline_line(f, tz),
        &format!("font-size:16px;font-weight:bold;color:{};", if f.closed || f.days_left <= 3 { ORANGE } else { BLUE }),
    );

    // Totals.
    heading(&mut o, "一、总体情况");
    let t = &f.totals;
    let mut inner = String::new();
    table_open(&mut inner);
    th_row(&mut inner, &["收到邮件", "已报送单位", "工作室", "通过", "退回", "拟命名名额"]);
    td_row(
        &mut inner,
        &[
            t.mails.to_string(),
            format!("{} / {}", t.units_heard_from, t.units_configured),
            t.studios.to_string(),
            t.accepted.to_string(),
            t.rejected.to_string(),
            f.quota.to_string(),
        ],
        false,
    );
    inner.push_str("</table>");
    block(&mut o, &inner);
    para(&mut o, &quota_line(f), if f.over_quota { "color:#c00000;font-weight:bold;" } else { "" });
    // Accepted against the quota, as a bar.
    let scale = f.totals.accepted.max(i64::from(f.quota)).max(1);
    let w_acc = (f.totals.accepted * i64::from(BAR_MAX) / scale) as u32;
    let w_quota = (i64::from(f.quota) * i64::from(BAR_MAX) / scale) as u32;
    block(
        &mut o,
        &format!(
            "<table role=\"presentation\" cellpadding=\"2\" cellspacing=\"0\" border=\"0\"><tr><td style=\"{FONT}\" width=\"60\">通过</td><td>{}</td></tr><tr><td style=\"{FONT}\" width=\"60\">名额</td><td>{}</td></tr></table>",
            bar(w_acc, if f.over_quota { ORANGE } else { GREEN }),
            bar(w_quota, GREY)
        ),
    );
    if !f.unprocessed.is_empty() {
        para(&mut o, &format!("另有 {} 封邮件无法自动处理，请人工查看（见第八部分）。", f.unprocessed.len()), "color:#c00000;");
    }

    // Units.
    heading(&mut o, "二、各推荐单位");
    let mut inner = String::new();
    table_open(&mut inner);
    th_row(&mut inner, &["推荐单位", "邮件", "工作室", "通过", "未解决错误", &format!("至少{}个", f.min_per_county), "进度"]);
    for u in &f.units {
        let progress = match u.minimum {
            Some(min) => boxes(u.accepted, min),
            None => "—".into(),
        };
        td_row(
            &mut inner,
            &[
                esc(&u.name),
                u.mails.to_string(),
                u.studios.to_string(),
                u.accepted.to_string(),
                if u.open_errors > 0 { format!("<span style=\"color:#c00000;\">{}</span>", u.open_errors) } else { "0".into() },
                progress,
                esc(&progress_text(u)),
            ],
            u.below_minimum,
        );
    }
    inner.push_str("</table>");
    block(&mut o, &inner);
    if !f.below_minimum.is_empty() {
        para(
            &mut o,
            &format!(
                "推荐数量不足{}个（{}）：{}",
                f.min_per_county,
                Code::UnitBelowMinimum.as_str(),
                f.below_minimum.join("、")
            ),
            "color:#c55a11;",
        );
    }

    if let Some(line) = withdrawn_line(f) {
        para(&mut o, &line, "");
    }

    heading(&mut o, &format!("三、尚未报送的单位（{} 个）", f.not_heard_from.len()));
    para(&mut o, &if f.not_heard_from.is_empty() { "无".to_owned() } else { f.not_heard_from.join("、") }, "");

    // Studios.
    heading(&mut o, &format!("四、工作室明细（{} 个）", f.studios.len()));
    let mut inner = String::new();
    table_open(&mut inner);
    th_row(&mut inner, &["推荐单位", "序号", "工作室", "带头人", "结果", "未解决错误"]);
    for s in &f.studios {
        let verdict = match s.verdict {
            StudioVerdict::Accepted => format!("<span style=\"color:{GREEN};font-weight:bold;\">通过</span>"),
            StudioVerdict::Rejected => "<span style=\"color:#c00000;font-weight:bold;\">退回</span>".to_owned(),
        };
        td_row(
            &mut inner,
            &[
                esc(s.unit.as_deref().unwrap_or(UNKNOWN_UNIT)),
                s.rank.map(|r| r.to_string()).unwrap_or_else(|| "—".into()),
                esc(&s.name),
                esc(s.leader.as_deref().unwrap_or("—")),
                verdict,
                esc(&studio_codes(s)),
            ],
            false,
        );
    }
    if f.studios.is_empty() {
        td_row(&mut inner, &["尚无".into(), String::new(), String::new(), String::new(), String::new(), String::new()], false);
    }
    inner.push_str("</table>");
    block(&mut o, &inner);

    // Per day.
    heading(&mut o, "五、每日收件");
    let mut inner = String::new();
    table_open(&mut inner);
    let max = f.per_day.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    for (d, n) in &f.per_day {
        let w = (*n * i64::from(BAR_MAX) / max) as u32;
        td_row(&mut inner, &[d.format("%m-%d").to_string(), n.to_string(), bar(w.max(2), BLUE)], false);
    }
    if f.per_day.is_empty() {
        td_row(&mut inner, &["尚无".into()], false);
    }
    inner.push_str("</table>");
    block(&mut o, &inner);

    heading(&mut o, &format!("六、无法投递的回复（{} 封）", f.dead_letters.len()));
    let dead = f.dead_letters.iter().map(|d| {
        vec![
            d.created_at.with_timezone(&tz).format("%m-%d %H:%M").to_string(),
            esc(&d.recipients.join(", ")),
            d.attempts.to_string(),
            esc(&d.error),
        ]
    });
    table_or_none(&mut o, &["时间", "收件人", "尝试次数", "错误"], dead, true);

    heading(&mut o, &format!("七、未登记的发件地址（{} 个）", f.unknown_senders.len()));
    let senders: Vec<String> = f.unknown_senders.iter().map(sender_label).collect();
    para(&mut o, &if senders.is_empty() { "无".to_owned() } else { senders.join("；") }, "");

    heading(&mut o, &format!("八、需人工查看的邮件（{} 封）", f.unprocessed.len()));
    let unprocessed = f.unprocessed.iter().map(|m| unprocessed_cells(m, tz).map(|c| esc(&c)).to_vec());
    table_or_none(&mut o, &["收到时间", "发件人", "主题", "原因"], unprocessed, true);

    heading(&mut o, &format!("九、暂存待确认的邮件（发件地址未登记或未通过验证，{} 封）", f.held.len()));
    let held = f.held.iter().map(|h| held_cells(h, tz).map(|c| esc(&c)).to_vec());
    table_or_none(&mut o, &["收到时间", "发件人", "表格所署单位；原因", "所附文件", "处理命令"], held, true);

    heading(&mut o, &format!("十、需阅读的邮件：询问与来函、下载链接、逾期邮件（{} 封）", f.to_read.len()));
    let to_read = f.to_read.iter().map(|m| to_read_cells(m, tz).map(|c| esc(&c)).to_vec());
    table_or_none(&mut o, &["收到时间", "发件人", "单位", "主题", "内容"], to_read, false);

    heading(&mut o, "未解决问题");
    let findings = f.findings.iter().map(|(u, s, x)| {
        let title = Code::parse(&x.code).map(|c| c.title()).unwrap_or("");
        vec![
            esc(u.as_deref().unwrap_or(UNKNOWN_UNIT)),
            esc(s.as_deref().unwrap_or("—")),
            format!("{}<br><span style=\"color:#666666;font-size:12px;\">{}</span>", esc(title), esc(&x.code)),
            esc(severity_label(x.severity)),
            esc(&x.message),
        ]
    });
    table_or_none(&mut o, &["推荐单位", "工作室", "问题", "严重程度", "说明"], findings, false);
    para(
        &mut o,
        &format!("附件：{}.xlsx（第1页按推荐单位分组、组内按序号排列；第2页为未解决问题）。", super::xlsx::TITLE),
        "color:#666666;padding-top:12px;",
    );
    o.push_str("</table></td></tr></table></body></html>");
    o
}
