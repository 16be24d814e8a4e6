//! Documents as editors leave them (`fixtures::ooxml_corpus`): each file, made by editing the
//! fixture builders' packages the way Word, WPS and Excel write them, is read and parsed, and
//! the values must be the ones a person sees on screen — nothing deleted, hidden, moved away
//! or coded, no row that is not a studio. With LibreOffice on the machine, every file must
//! also open in it.

use std::time::Duration;

use studio_intake::config::{Config, Unit, UnitKind};
use studio_intake::core::findings::Code;
use studio_intake::core::forms::{self, Kind};
use studio_intake::convert::Converters;
use studio_intake::core::grid::{self, Format};
use studio_intake::core::{self, Context, Limits, text};
use studio_intake::fixtures::{
    self, CorpusCase, Expect, MailClient, SheetTool, StudioSpec, SubmissionOptions, SummaryExtras, UnitSpec, ooxml_corpus,
};

fn format_of(name: &str) -> Format {
    match name.rsplit('.').next() {
        Some("xlsx") => Format::Xlsx,
        Some("ods") => Format::Ods,
        Some("xls") => Format::Xls,
        _ => Format::Docx,
    }
}

/// A value as the records keep it: no line breaks, tabs, control or invisible characters,
/// no `_x000D_` escapes, no check-box glyphs.
fn clean(key: forms::FieldKey, v: &str) -> Result<(), String> {
    if v.chars().any(|c| c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{feff}' | '\u{a0}' | '☐' | '☒' | '☑'))
        || v.contains("_x000")
    {
        return Err(format!("{key} = {v:?} still carries layout"));
    }
    Ok(())
}

fn check_case(c: &CorpusCase, converters: &Converters) -> Result<(), String> {
    let format = grid::sniff(c.name, &c.data);
    if format != format_of(c.name) {
        return Err(format!("sniffed as {format:?}"));
    }
    let doc = grid::read(c.name, &c.data, &Limits::default(), converters).map_err(|e| format!("read: {e:?}"))?;
    let text = doc.text();
    for a in &c.absent {
        if text.contains(a.as_str()) {
            return Err(format!("{a:?} is in the text read, but not on the screen:\n{text}"));
        }
    }
    for o in &c.once {
        let n = text.matches(o.as_str()).count();
        if n != 1 {
            return Err(format!("{o:?} read {n} times, shown once:\n{text}"));
        }
    }
    let kind = forms::kind_from_content(&doc);
    match &c.expect {
        Expect::Approval(fields) => {
            if kind != Some(Kind::ApprovalForm) {
                return Err(format!("kind {kind:?}"));
            }
            let f = forms::parse_approval_form(c.name, &doc);
            for (key, want) in fields {
                let got = f.field(*key).and_then(|x| x.value.clone()).ok_or_else(|| format!("{key}: not found"))?;
                clean(*key, &got)?;
                if text::squash(&got) != text::squash(want) {
                    return Err(format!("{key}: read {got:?}, shown {want:?}"));
                }
                if want.is_empty() && f.get(*key).is_some() {
                    return Err(format!("{key}: {got:?} counts as filled"));
                }
            }
            for field in &f.fields {
                for a in &c.absent {
                    if field.value.as_deref().is_some_and(|v| text::squash(v).contains(&text::squash(a))) {
                        return Err(format!("{}: {:?} holds {a:?}", field.key, field.value));
                    }
                }
            }
        }
        Expect::Summary { unit, filler, studios, cells } => {
            if kind != Some(Kind::SummaryTable) {
                return Err(format!("kind {kind:?}"));
            }
            let s = forms::parse_summary_table(c.name, &doc);
            if s.recommending_unit.as_deref() != Some(unit.as_str()) || s.filler.as_deref() != Some(filler.as_str()) {
                return Err(format!("推荐单位 {:?}, 填报人 {:?}", s.recommending_unit, s.filler));
            }
            let got: Vec<String> = s.rows.iter().map(|r| r.get(forms::FieldKey::StudioName).unwrap_or("").to_owned()).collect();
            if &got != studios {
                return Err(format!("studios read {got:?}, the table has {studios:?}"));
            }
            for row in &s.rows {
                for cell in &row.cells {
                    clean(cell.key, cell.value.as_deref().unwrap_or(""))?;
                }
            }
            for (i, key, want) in cells {
                let got = s.rows[*i].get(*key).unwrap_or("");
                if text::squash(got) != text::squash(want) {
                    return Err(format!("row {i} {key}: read {got:?}, shown {want:?}"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_corpus_file_reads_as_shown() {
    let corpus = ooxml_corpus();
    assert!(corpus.len() >= 15);
    let mut failures = Vec::new();
    for c in &corpus {
        if let Err(e) = check_case(c, &Converters::none()) {
            failures.push(format!("{} ({}): {e}", c.name, c.what));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), corpus.len(), failures.join("\n\n"));
}

#[test]
fn corpus_is_deterministic() {
    let a = ooxml_corpus();
    let b = ooxml_corpus();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.data, y.data, "{}", x.name);
    }
}

#[test]
fn a_package_word_opens_is_not_an_archive() {
    let corpus = ooxml_corpus();
    let moved = corpus.iter().find(|c| c.name == "附件1-主文档.docx").expect("case");
    // Whatever the name says, the package's relationships make it a Word document.
    for name in ["附件1-主文档.docx", "附件1-主文档.zip", "附件1-主文档"] {
        assert_eq!(grid::sniff(name, &moved.data), Format::Docx, "{name}");
    }
    let d = grid::read("附件1-主文档.zip", &moved.data, &Limits::default(), &Converters::none()).unwrap();
    assert!(d.text().contains("推荐审批表"));
}

#[test]
fn the_summary_table_rows_are_studios_only() {
    // Cell by cell, the rows the readers keep and the ones they leave.
    let corpus = ooxml_corpus();
    let totals = corpus.iter().find(|c| c.name == "附件2-合计.xlsx").expect("case");
    let sheet = String::from_utf8_lossy(&zip_member(&totals.data, "xl/worksheets/sheet1.xml")).into_owned();
    assert!(sheet.contains(r#"t="shared""#), "the totals are one shared formula");
    let doc = grid::read(totals.name, &totals.data, &Limits::default(), &Converters::none()).unwrap();
    assert!(doc.text().contains("合计"), "the totals row is read as cells");
    let s = forms::parse_summary_table(totals.name, &doc);
    assert!(s.rows.iter().all(|r| r.get(forms::FieldKey::Rank).is_some_and(|v| v.parse::<u32>().is_ok())));

    let hidden = corpus.iter().find(|c| c.name == "附件2-隐藏行列.xlsx").expect("case");
    let doc = grid::read(hidden.name, &hidden.data, &Limits::default(), &Converters::none()).unwrap();
    assert_eq!(doc.tables().count(), 1, "the hidden sheet is not read");
    let t = doc.tables().next().unwrap();
    assert!(t.label.contains("Sheet1"));
    // The hidden column keeps its place (cell references stay as in the file): empty but
    // where a merged cell shown across it (the title, a group header) covers it.
    assert!(t.rows.iter().all(|r| r.get(5).is_none_or(|c| !c.contains("身份证号") && !c.contains("5111"))));
    assert!(t.rows.iter().any(|r| r.get(5).is_some_and(|c| c.contains("推荐汇总表"))), "the merged title still covers it");
}

fn zip_member(data: &[u8], name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(data)).unwrap();
    let mut out = Vec::new();
    z.by_name(name).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn soffice() -> Option<Converters> {
    let c = Converters::detect(Duration::from_secs(120));
    c.soffice.is_some().then_some(c)
}

/// Each corpus file opens in LibreOffice (converted to PDF without error), and the HTML
/// `altChunk` reads the same through LibreOffice as through the HTML reader.
#[test]
fn libreoffice_opens_every_corpus_file() {
    let Some(conv) = soffice() else {
        eprintln!("soffice not found: skipped");
        return;
    };
    let soffice = conv.soffice.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for (i, c) in ooxml_corpus().iter().enumerate() {
        let ext = if c.name.ends_with(".xlsx") { "xlsx" } else { "docx" };
        let input = dir.path().join(format!("case{i}.{ext}"));
        std::fs::write(&input, &c.data).unwrap();
        let out = std::process::Command::new(&soffice)
            .arg("--headless")
            .arg("--norestore")
            .arg(format!("-env:UserInstallation=file://{}/profile", dir.path().display()))
            .arg("--convert-to")
            .arg("pdf")
            .arg("--outdir")
            .arg(dir.path())
            .arg(&input)
            .output()
            .unwrap();
        let pdf = dir.path().join(format!("case{i}.pdf"));
        if !pdf.exists() || std::fs::metadata(&pdf).map(|m| m.len()).unwrap_or(0) < 500 {
            failed.push(format!("{}: {}", c.name, String::from_utf8_lossy(&out.stderr)));
        }
    }
    assert!(failed.is_empty(), "LibreOffice did not open:\n{}", failed.join("\n"));
    let html = ooxml_corpus().into_iter().find(|c| c.name == "附件1-网页导入.docx").unwrap();
    check_case(&html, &conv).unwrap_or_else(|e| panic!("through LibreOffice: {e}"));

    // The Excel summary tables saved by LibreOffice as .ods and .xls keep their hidden rows,
    // columns and sheets, totals and numbering rows: read the same.
    let mut failed = Vec::new();
    for c in ooxml_corpus().into_iter().filter(|c| c.name.ends_with(".xlsx")) {
        for (ext, filter) in [("ods", "ods"), ("xls", "xls:MS Excel 97")] {
            let input = dir.path().join("in.xlsx");
            std::fs::write(&input, &c.data).unwrap();
            let _ = std::fs::remove_file(dir.path().join(format!("in.{ext}")));
            let out = std::process::Command::new(&soffice)
                .arg("--headless")
                .arg("--norestore")
                .arg(format!("-env:UserInstallation=file://{}/profile", dir.path().display()))
                .arg("--convert-to")
                .arg(filter)
                .arg("--outdir")
                .arg(dir.path())
                .arg(&input)
                .output()
                .unwrap();
            let Ok(data) = std::fs::read(dir.path().join(format!("in.{ext}"))) else {
                failed.push(format!("{} → .{ext}: {}", c.name, String::from_utf8_lossy(&out.stderr)));
                continue;
            };
            let name: &'static str = Box::leak(c.name.replace(".xlsx", &format!(".{ext}")).into_boxed_str());
            let converted = CorpusCase { name, data, ..c.clone() };
            if let Err(e) = check_case(&converted, &Converters::none()) {
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(failed.is_empty(), "saved by LibreOffice:\n{}", failed.join("\n\n"));
}

/// `OOXML_DUMP=dir cargo test --test ooxml dump`: writes the corpus out to look at.
#[test]
fn dump() {
    if let Ok(dir) = std::env::var("OOXML_DUMP") {
        for c in ooxml_corpus() {
            std::fs::write(std::path::Path::new(&dir).join(c.name), &c.data).unwrap();
        }
    }
}

/// A whole submission whose 附件2 carries rows and columns that are not studios (totals,
/// column numbers, the header again, a withdrawn studio in a hidden row, a hidden column, a
/// 备注 column, last year's table in a hidden sheet; or the WPS .docx with 备注, numbers, 合计
/// and a remark): accepted as the same submission without them is, no finding about a studio
/// that does not exist.
#[test]
fn rows_that_are_not_studios_change_nothing_in_the_verdict() {
    let u = UnitSpec::sample(3, 3);
    let mut config = Config::builtin();
    config.units.retain(|x| x.name != u.unit);
    config.units.push(Unit { name: u.unit.clone(), kind: UnitKind::County, senders: vec![u.sender.clone()] });
    let converters = Converters::none();
    let extras = SummaryExtras {
        numbering_row: true,
        hidden_studios: vec![StudioSpec::sample(41)],
        repeated_header: true,
        totals_row: true,
        remark_column: true,
        hidden_column_after_leader: true,
        hidden_sheet_before: Some(UnitSpec::sample(8, 1)),
    };
    let variants: [(&str, Vec<u8>); 2] = [
        ("附件2推荐汇总表.xlsx", fixtures::summary_table_xlsx_with(&u, SheetTool::Excel, &extras)),
        ("附件2推荐汇总表.docx", fixtures::summary_docx_with_extras(&u)),
    ];
    for (name, summary) in variants {
        let mut mail = fixtures::submission_mail(&u, MailClient::Outlook, &SubmissionOptions::default());
        let slot = mail.attachments.iter_mut().find(|(n, _)| n.contains("汇总表") || n.contains("附件2")).expect("the summary table");
        *slot = (name.to_owned(), summary);
        let raw = fixtures::build_eml(&mail);
        let ctx = Context::new(config.policy(), &converters);
        let o = core::process(&raw, &ctx).expect("a mail");
        let untitled = u.studios.iter().filter(|s| s.titled.trim() == "否").count();
        let others: Vec<String> = o
            .findings
            .iter()
            .filter(|f| f.code != Code::FormLeaderNotTitled)
            .map(|f| format!("{} [{}] {} @ {}", f.code.as_str(), f.studio.as_deref().unwrap_or("-"), f.message, f.location))
            .collect();
        assert!(others.is_empty(), "{name}: {others:#?}");
        assert_eq!(o.findings.len(), untitled, "{name}");
    }
}

