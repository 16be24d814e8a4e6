//! The consolidated 推荐汇总表 (`.xlsx`): sheet 1 in the 16-column layout of 附件2 of the
//! notice, one row per current studio grouped by recommending unit in 序号 order; sheet 2 the
//! open findings.
//!
//! The bytes depend only on the data (the document's creation time is the newest receipt
//! time of a listed mail), so the digest's attachment and `studio-intake export` give the
//! same file for the same database.

use anyhow::Context as _;
use chrono::{Datelike, NaiveDate, Timelike, Utc};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, FormatAlign, FormatBorder, Workbook, Worksheet, XlsxError};

use crate::config::Config;
use crate::core::findings::{Code, Severity};
use crate::core::forms::{FieldKey, SUMMARY_COLUMNS};

use super::facts::{Facts, UNKNOWN_UNIT, campaign_findings};

pub const TITLE: &str = "乐山市劳模和工匠人才创新工作室推荐汇总表";
pub const SHEET_SUMMARY: &str = "推荐汇总表";
pub const SHEET_FINDINGS: &str = "未解决问题";

/// Row 3 of 附件2 (merged down over row 4 for columns A–D).
pub const HEADER_TOP: [&str; 4] = ["序号", "创新工作室所属单位名称", "创新工作室名称", "创建时间"];
/// The two spanning headers of row 3: E–H and I–P.
pub const HEADER_LEADER: &str = "创新工作室负责人（带头人）基本情况";
pub const HEADER_WORK: &str = "创新工作室工作开展基本情况";
/// Row 4 of 附件2, columns E–P, exactly as in the notice (the parser's
/// `SUMMARY_COLUMNS` holds the shorter labels it matches and findings quote).
pub const HEADER_SUB: [&str; 12] = [
    "姓名",
    "工作单位及职务",
    "是否荣获各级各类劳动模范(先进工作者)、工匠称号，若是，请注明何年获何种劳动模范称号",
    "联系电话",
    "创新工作室成员人数（人）",
    "工作场地面积（㎡）",
    "仪器设备（台/套）",
    "年均专项经费（万元）",
    "创新课题或攻关项目累计（项）",
    "创新成果数累计（项）",
    "专利数累计（项）",
    "创新成果转化应用节创经济效益累计（万元）",
];
/// Sheet 2's header.
pub const FINDINGS_HEADER: [&str; 9] = ["推荐单位", "工作室", "问题", "严重程度", "文件", "位置", "发现值", "应为", "说明"];
/// The first row (0-based) of data on sheet 1: title, 推荐单位/填报人 line, two header rows.
pub const FIRST_DATA_ROW: u32 = 4;

/// The 推荐单位 group row's text: `推荐单位：犍为县总工会（2个）`.
pub fn group_label(unit: &str, studios: usize) -> String {
    format!("推荐单位：{unit}（{studios}个）")
}

/// The workbook bytes.
pub fn workbook(f: &Facts, config: &Config) -> anyhow::Result<Vec<u8>> {
    build(f, config).context("cannot write the 推荐汇总表 workbook")
}

fn build(f: &Facts, config: &Config) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let created = match f.latest_received {
        Some(t) => {
            let t = t.with_timezone(&Utc);
            ExcelDateTime::from_ymd(t.year() as u16, t.month() as u8, t.day() as u8)?.and_hms(
                t.hour() as u16,
                t.minute() as u8,
                t.second() as f64,
            )?
        }
        None => {
            let d: NaiveDate = config.campaign.opens;
            ExcelDateTime::from_ymd(d.year() as u16, d.month() as u8, d.day() as u8)?
        }
    };
    wb.set_properties(&DocProperties::new().set_title(TITLE).set_author(config.outbox_from_name()).set_creation_datetime(&created));

    let title = Format::new().set_bold().set_font_size(18).set_align(FormatAlign::Center).set_align(FormatAlign::VerticalCenter);
    let plain = Format::new().set_align(FormatAlign::VerticalCenter);
    let label = Format::new()
        .set_bold()
        .set_text_wrap()
        .set_border(FormatBorder::Thin)
        .set_align(FormatAlign::Center)
        .set_align(FormatAlign::VerticalCenter);
    let group = Format::new()
        .set_bold()
        .set_border(FormatBorder::Thin)
        .set_background_color(0xDDEBF7)
        .set_align(FormatAlign::VerticalCenter);
    let cell = Format::new().set_text_wrap().set_border(FormatBorder::Thin).set_align(FormatAlign::VerticalCenter);

    // Sheet 1: 推荐汇总表.
    let ws = wb.add_worksheet();
    ws.set_name(SHEET_SUMMARY)?;
    ws.set_landscape();
    ws.set_print_fit_to_pages(1, 0);
    let widths = [5.0, 18.0, 26.0, 10.0, 8.0, 16.0, 22.0, 13.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 10.0];
    for (i, w) in widths.iter().enumerate() {
        ws.set_column_width(i as u16, *w)?;
    }
    ws.merge_range(0, 0, 0, 15, TITLE, &title)?;
    ws.set_row_height(0, 36)?;
    let line = format!(
        "推荐单位（盖章）：{}（各推荐单位汇总）                                  填报人：{}",
        config.outbox_from_name(),
        "studio-intake 自动汇总"
    );
    ws.merge_range(1, 0, 1, 15, &line, &plain)?;
    for (i, t) in HEADER_TOP.iter().enumerate() {
        ws.merge_range(2, i as u16, 3, i as u16, t, &label)?;
    }
    ws.merge_range(2, 4, 2, 7, HEADER_LEADER, &label)?;
    ws.merge_range(2, 8, 2, 15, HEADER_WORK, &label)?;
    for (i, t) in HEADER_SUB.iter().enumerate() {
        ws.write_string_with_format(3, 4 + i as u16, *t, &label)?;
    }
    ws.set_row_height(3, 120)?;
    ws.set_repeat_rows(2, 3)?;
    ws.set_freeze_panes(FIRST_DATA_ROW, 0)?;

    let mut r = FIRST_DATA_ROW;
    let mut current: Option<&str> = None;
    for s in &f.studios {
        let unit = s.unit.as_deref().unwrap_or(UNKNOWN_UNIT);
        if current != Some(unit) {
            let n = f.studios.iter().filter(|x| x.unit.as_deref().unwrap_or(UNKNOWN_UNIT) == unit).count();
            ws.merge_range(r, 0, r, 15, &group_label(unit, n), &group)?;
            r += 1;
            current = Some(unit);
        }
        for (c, column) in SUMMARY_COLUMNS.iter().enumerate() {
            let key = column.key;
            let value = match key {
                FieldKey::Rank => s.rank.map(|n| n.to_string()).or_else(|| text(&s.data, key)),
                FieldKey::StudioName => text(&s.data, key).or_else(|| Some(s.name.clone())),
                FieldKey::Leader => text(&s.data, key).or_else(|| s.leader.clone()),
                _ => text(&s.data, key),
            };
            write_value(ws, r, c as u16, column.numeric, value.as_deref(), &cell)?;
        }
        r += 1;
    }

    // Sheet 2: open findings, then the unit and campaign warnings.
    let ws = wb.add_worksheet();
    ws.set_name(SHEET_FINDINGS)?;
    let widths = [18.0, 30.0, 26.0, 8.0, 30.0, 24.0, 16.0, 16.0, 60.0];
    for (i, w) in widths.iter().enumerate() {
        ws.set_column_width(i as u16, *w)?;
    }
    for (i, t) in FINDINGS_HEADER.iter().enumerate() {
        ws.write_string_with_format(0, i as u16, *t, &label)?;
    }
    ws.set_freeze_panes(1, 0)?;
    let extra = campaign_findings(f);
    let rows = f
        .findings
        .iter()
        .map(|(u, s, x)| (u.as_deref(), s.as_deref(), x))
        .chain(extra.iter().map(|(u, x)| (u.as_deref(), None, x)));
    for (r, (unit, studio, x)) in (1u32..).zip(rows) {
        let unit = match (unit, x.code.as_str()) {
            (None, c) if c == Code::CampaignOverQuota.as_str() => "（全市）",
            (None, _) => UNKNOWN_UNIT,
            (Some(u), _) => u,
        };
        let problem = super::render::code_words(&x.code);
        let values = [
            unit,
            studio.unwrap_or(""),
            problem.as_str(),
            severity_label(x.severity),
            x.file.as_deref().unwrap_or(""),
            x.location.as_str(),
            x.found.as_str(),
            x.expected.as_str(),
            x.message.as_str(),
        ];
        for (c, v) in values.iter().enumerate() {
            ws.write_string_with_format(r, c as u16, *v, &cell)?;
        }
    }
    wb.save_to_buffer()
}

/// `error` → 错误, `warning` → 警告.
pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Error => "错误",
        Severity::Warning => "警告",
    }
}

fn text(data: &serde_json::Value, key: FieldKey) -> Option<String> {
    match data.get(key.as_str())? {
        serde_json::Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Numbers as numbers (序号 and the eight counts), everything else as the text the forms had.
fn write_value(ws: &mut Worksheet, r: u32, c: u16, numeric: bool, v: Option<&str>, f: &Format) -> Result<(), XlsxError> {
    let Some(v) = v else {
        ws.write_blank(r, c, f)?;
        return Ok(());
    };
    match v.parse::<f64>() {
        Ok(x) if numeric && x.is_finite() => ws.write_number_with_format(r, c, x, f)?,
        _ => ws.write_string_with_format(r, c, v, f)?,
    };
    Ok(())
}
