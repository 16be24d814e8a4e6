//! Reader over real files: xlsx from rust_xlsxwriter, docx written as an OOXML package,
//! legacy .xls/.ods/.doc/.pdf made by LibreOffice (tests/fixtures/grid/), and bad inputs.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use studio_intake::convert::Converters;
use studio_intake::core::grid::{self, Block, Document, Format, Table};
use studio_intake::core::{Limits, Unreadable};

// ---------------------------------------------------------------- builders

const TITLE2: &str = "乐山市劳模和工匠人才创新工作室推荐汇总表";

/// 附件2-like summary table: merged title, two-row header with merged cells, one data row.
fn summary_xlsx() -> Vec<u8> {
    use rust_xlsxwriter::{ExcelDateTime, Format as XFormat, Workbook};
    let mut wb = Workbook::new();
    let plain = XFormat::new();
    let wrap = XFormat::new().set_text_wrap();
    let date = XFormat::new().set_num_format("yyyy-mm-dd");
    let datetime = XFormat::new().set_num_format("yyyy-mm-dd hh:mm");
    let ws = wb.add_worksheet();
    ws.set_name("汇总表").unwrap();
    ws.merge_range(0, 0, 0, 15, TITLE2, &plain).unwrap();
    ws.write_string(1, 0, "推荐单位（盖章）：  ").unwrap();
    for (c, label) in ["序号", "创新工作室所属单位名称", "创新工作室名称", "创建时间"].iter().enumerate() {
        ws.merge_range(2, c as u16, 3, c as u16, label, &plain).unwrap();
    }
    ws.merge_range(2, 4, 2, 7, "创新工作室负责人（带头人）基本情况", &plain).unwrap();
    ws.merge_range(2, 8, 2, 15, "创新工作室工作开展基本情况", &plain).unwrap();
    let sub = [
        "姓名",
        "工作单位及职务",
        "是否荣获各级各类劳动模范(先进工作者)、工匠称号",
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
    for (i, label) in sub.iter().enumerate() {
        ws.write_string(3, 4 + i as u16, *label).unwrap();
    }
    ws.write_number(4, 0, 1.0).unwrap();
    ws.write_string(4, 1, "乐山某机械有限公司").unwrap();
    ws.write_string(4, 2, "乐山某机械有限公司张三劳模和工匠人才创新工作室").unwrap();
    ws.write_datetime_with_format(4, 3, ExcelDateTime::from_ymd(2018, 5, 1).unwrap(), &date).unwrap();
    ws.write_string(4, 4, " 张三 ").unwrap();
    ws.write_string_with_format(4, 5, "乐山某机械有限公司\n车间主任", &wrap).unwrap();
    ws.write_string(4, 6, "是，2015年乐山市劳动模范").unwrap();
    ws.write_number(4, 7, 13812345678.0).unwrap();
    ws.write_number(4, 8, 8.0).unwrap();
    ws.write_number(4, 9, 12.5).unwrap();
    ws.write_number(4, 10, 0.1 + 0.2).unwrap();
    // An Excel serial typed into a General cell stays a number.
    ws.write_number(4, 11, 43952.0).unwrap();
    ws.write_boolean(4, 12, true).unwrap();
    ws.write_datetime_with_format(
        4,
        13,
        ExcelDateTime::from_ymd(2020, 9, 25).unwrap().and_hms(14, 30, 0).unwrap(),
        &datetime,
    )
    .unwrap();
    ws.write_number(4, 14, 3.0).unwrap();
    ws.write_number(4, 15, 120.75).unwrap();
    wb.add_worksheet().set_name("空白").unwrap();
    wb.save_to_buffer().unwrap()
}

fn check_summary(t: &Table) {
    check_summary_with(t, &["TRUE"]);
}

/// `bools`: what the boolean cell may read as (LibreOffice writes TRUE into .xls as the
/// number 1 with a boolean number format).
fn check_summary_with(t: &Table, bools: &[&str]) {
    assert_eq!(t.label, "工作表“汇总表”");
    assert!(t.is_sheet);
    assert_eq!(t.rows.len(), 5, "{:#?}", t.rows);
    assert!(t.rows[0].iter().all(|c| c == TITLE2), "title merged across: {:?}", t.rows[0]);
    assert_eq!(t.rows[1][0], "推荐单位（盖章）：");
    assert_eq!(t.rows[2][0], "序号");
    assert_eq!(t.rows[3][0], "序号", "vertical merge repeats the top-left value");
    assert_eq!(t.rows[3][3], "创建时间");
    for c in 4..8 {
        assert_eq!(t.rows[2][c], "创新工作室负责人（带头人）基本情况");
    }
    for c in 8..16 {
        assert_eq!(t.rows[2][c], "创新工作室工作开展基本情况");
    }
    assert_eq!(t.rows[3][4], "姓名");
    assert_eq!(t.rows[3][7], "联系电话");
    let r = &t.rows[4];
    assert_eq!(r[0], "1");
    assert_eq!(r[3], "2018-05-01");
    assert_eq!(r[4], "张三");
    assert_eq!(r[5], "乐山某机械有限公司\n车间主任");
    assert_eq!(r[7], "13812345678");
    assert_eq!(r[8], "8");
    assert_eq!(r[9], "12.5");
    assert_eq!(r[10], "0.3");
    assert_eq!(r[11], "43952");
    assert!(bools.contains(&r[12].as_str()), "{}", r[12]);
    assert_eq!(r[13], "2020-09-25 14:30:00");
    assert_eq!(r[15], "120.75");
    assert_eq!(t.cell_ref(4, 7), "H5");
    assert_eq!(t.cell_ref(0, 27), "AB1");
}

const NS: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:v="urn:schemas-microsoft-com:vml" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" mc:Ignorable="wps""#;

/// A minimal but valid OOXML word package around `body` (plus optional extra members).
fn docx_with(body: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opt = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let files: Vec<(&str, String)> = vec![
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Default Extension="png" ContentType="image/png"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#
                .to_string(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#
                .to_string(),
        ),
        (
            "word/_rels/document.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"></Relationships>"#
                .to_string(),
        ),
        (
            "word/document.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document {NS}><w:body>{body}<w:sectPr><w:pgSz w:w="11906" w:h="16838"/></w:sectPr></w:body></w:document>"#
            ),
        ),
    ];
    for (name, text) in files {
        z.start_file(name, opt).unwrap();
        z.write_all(text.as_bytes()).unwrap();
    }
    for (name, bytes) in extra {
        z.start_file(*name, opt).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn p(text: &str) -> String {
    format!(r#"<w:p><w:pPr><w:jc w:val="center"/></w:pPr><w:r><w:rPr><w:b/></w:rPr><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
}

fn tc(props: &str, paras: &[&str]) -> String {
    let body: String = if paras.is_empty() { "<w:p/>".into() } else { paras.iter().map(|t| p(t)).collect() };
    format!("<w:tc><w:tcPr><w:tcW w:w=\"1000\" w:type=\"dxa\"/>{props}</w:tcPr>{body}</w:tc>")
}

fn tr(pr: &str, cells: &[String]) -> String {
    format!("<w:tr><w:trPr>{pr}</w:trPr>{}</w:tr>", cells.concat())
}

/// 附件1-like: title paragraphs, a text box (AlternateContent), a content control, and a
/// table with gridSpan, Word and WPS vMerge, gridBefore/After, a cell sdt and a nested table.
fn approval_docx() -> Vec<u8> {
    let textbox = r#"<w:p><w:r><mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wp:anchor><a:graphic><a:graphicData><wps:wsp><wps:txbx><w:txbxContent><w:p><w:r><w:t>编号：（文本框）</w:t></w:r></w:p></w:txbxContent></wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice><mc:Fallback><w:pict><v:shape><v:textbox><w:txbxContent><w:p><w:r><w:t>编号：（文本框）</w:t></w:r></w:p></w:txbxContent></v:textbox></v:shape></w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>"#;
    let title = r#"<w:p><w:r><w:t>乐山市劳模和</w:t></w:r><w:proofErr w:type="spellStart"/><w:r><w:t>工匠人才</w:t></w:r><w:ins w:id="1" w:author="x"><w:r><w:t>创新工作室</w:t></w:r></w:ins><w:del w:id="2" w:author="x"><w:r><w:delText>删除的字</w:delText></w:r></w:del><w:r><w:t>推荐审批表</w:t></w:r></w:p><w:p><w:r><w:t>第</w:t></w:r><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>1</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r><w:r><w:t>页</w:t></w:r></w:p>"#;
    let sdt_block = r#"<w:sdt><w:sdtPr><w:alias w:val="附件号"/></w:sdtPr><w:sdtContent><w:p><w:r><w:t>附件1</w:t></w:r></w:p></w:sdtContent></w:sdt>"#;
    let tabbed = r#"<w:p><w:hyperlink r:id="rId9"><w:r><w:t>推荐单位：</w:t></w:r></w:hyperlink><w:r><w:tab/></w:r><w:smartTag w:uri="x" w:element="place"><w:r><w:t>乐山</w:t></w:r></w:smartTag><w:r><w:br/><w:t>A&amp;B &lt;公司&gt;</w:t></w:r></w:p>"#;
    let nested = format!(
        "<w:tbl><w:tblPr/>{}{}</w:tbl>",
        tr("", &[tc("", &["成员"]), tc("", &["职务"])]),
        tr("", &[tc("", &["李四"]), tc("", &["技师"])])
    );
    let nested_cell = format!("<w:tc><w:tcPr/>{}{nested}<w:p/></w:tc>", p("成员名单"));
    let sdt_cell = format!("<w:sdt><w:sdtPr/><w:sdtContent>{}</w:sdtContent></w:sdt>", tc("", &["内容控件值"]));
    let rows = [
        tr("", &[tc("", &["创新工", "作室基", "本情况"]), tc(r#"<w:gridSpan w:val="3"/>"#, &["乐山某机械有限公司张三劳模和工匠人才创新工作室"])]),
        tr("", &[tc(r#"<w:vMerge w:val="restart"/>"#, &["负责人", "情况"]), tc("", &["姓名"]), tc("", &["张三"]), tc("", &["性别"])]),
        // Word writes a bare <w:vMerge/> for continuation cells.
        tr("", &[tc("<w:vMerge/>", &[]), tc("", &["出生年月"]), tc("", &["1980.01"]), tc("", &["男"])]),
        // WPS writes w:val="continue".
        tr("", &[tc(r#"<w:vMerge w:val="continue"/>"#, &[]), tc(r#"<w:gridSpan w:val="2"/>"#, &["联系电话"]), sdt_cell]),
        tr(r#"<w:gridBefore w:val="1"/><w:gridAfter w:val="1"/>"#, &[tc("", &["学历"]), tc("", &["本科"])]),
        tr("", &[tc("", &["团队"]), nested_cell, tc(r#"<w:gridSpan w:val="2"/>"#, &[])]),
    ];
    let table = format!(
        r#"<w:tbl><w:tblPr><w:tblW w:w="0" w:type="auto"/></w:tblPr><w:tblGrid><w:gridCol w:w="2000"/><w:gridCol w:w="2000"/><w:gridCol w:w="2000"/><w:gridCol w:w="2000"/></w:tblGrid>{}</w:tbl>"#,
        rows.concat()
    );
    let body = format!("{sdt_block}{title}{textbox}{tabbed}{table}{}", p("填表说明：此表打印填写"));
    docx_with(&body, &[("word/media/image1.png", b"\x89PNG\r\n\x1a\nnot really")])
}

/// A plain 附件1-like form as Word would write it (real column widths, no content controls
/// or text boxes): the source of the LibreOffice-made `.doc` and `.pdf` fixtures.
fn plain_approval_docx() -> Vec<u8> {
    let w = |span: u32| format!(r#"<w:tcW w:w="{}" w:type="dxa"/>"#, 2000 * span);
    let cell = |props: &str, paras: &[&str]| {
        let body: String = paras.iter().map(|t| format!("<w:p><w:r><w:t>{t}</w:t></w:r></w:p>")).collect();
        let body = if body.is_empty() { "<w:p/>".to_string() } else { body };
        format!("<w:tc><w:tcPr>{props}</w:tcPr>{body}</w:tc>")
    };
    let firm = "乐山某机械有限公司张三劳模和工匠人才创新工作室";
    let rows = [
        vec![cell(&w(1), &["创新工", "作室基", "本情况"]), cell(&format!(r#"{}<w:gridSpan w:val="3"/>"#, w(3)), &[firm])],
        vec![cell(&format!(r#"{}<w:vMerge w:val="restart"/>"#, w(1)), &["负责人", "情况"]), cell(&w(1), &["姓名"]), cell(&w(1), &["张三"]), cell(&w(1), &["性别"])],
        vec![cell(&format!("{}<w:vMerge/>", w(1)), &[]), cell(&w(1), &["出生年月"]), cell(&w(1), &["1980.01"]), cell(&w(1), &["男"])],
        vec![cell(&format!("{}<w:vMerge/>", w(1)), &[]), cell(&format!(r#"{}<w:gridSpan w:val="2"/>"#, w(2)), &["联系电话"]), cell(&w(1), &["13812345678"])],
    ];
    let rows: String = rows.iter().map(|r| format!("<w:tr>{}</w:tr>", r.concat())).collect();
    let body = format!(
        r#"<w:p><w:r><w:t>附件1</w:t></w:r></w:p><w:p><w:r><w:t>乐山市劳模和工匠人才创新工作室推荐审批表</w:t></w:r></w:p><w:tbl><w:tblPr><w:tblW w:w="8000" w:type="dxa"/><w:tblBorders><w:top w:val="single" w:sz="4"/><w:left w:val="single" w:sz="4"/><w:bottom w:val="single" w:sz="4"/><w:right w:val="single" w:sz="4"/><w:insideH w:val="single" w:sz="4"/><w:insideV w:val="single" w:sz="4"/></w:tblBorders></w:tblPr><w:tblGrid><w:gridCol w:w="2000"/><w:gridCol w:w="2000"/><w:gridCol w:w="2000"/><w:gridCol w:w="2000"/></w:tblGrid>{rows}</w:tbl><w:p><w:r><w:t>填表说明：此表打印填写，禁止手工填写。</w:t></w:r></w:p>"#
    );
    docx_with(&body, &[])
}

#[test]
fn plain_docx_reads() {
    let d = grid::read("附件1.docx", &plain_approval_docx(), &limits(), &none()).unwrap();
    check_plain_approval(&d);
}

fn check_plain_approval(d: &Document) {
    let t = only_table(d);
    assert_eq!(t.label, "表格1");
    let firm = "乐山某机械有限公司张三劳模和工匠人才创新工作室";
    assert_eq!(t.rows[0], vec!["创新工\n作室基\n本情况", firm, firm, firm]);
    assert_eq!(t.rows[1], vec!["负责人\n情况", "姓名", "张三", "性别"]);
    assert_eq!(t.rows[2], vec!["负责人\n情况", "出生年月", "1980.01", "男"]);
    assert_eq!(t.rows[3], vec!["负责人\n情况", "联系电话", "联系电话", "13812345678"]);
    let paras: Vec<&str> = d.paragraphs().collect();
    assert_eq!(paras[..2], ["附件1", "乐山市劳模和工匠人才创新工作室推荐审批表"]);
    assert!(d.text().contains("填表说明"));
}

fn limits() -> Limits {
    Limits::default()
}

fn none() -> Converters {
    Converters::none()
}

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grid").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn detected() -> Converters {
    Converters::detect(Duration::from_secs(120))
}

fn only_table(d: &Document) -> &Table {
    let tables: Vec<&Table> = d.tables().collect();
    assert_eq!(tables.len(), 1, "{d:#?}");
    tables[0]
}

// ---------------------------------------------------------------- spreadsheets

#[test]
fn xlsx_cells_merges_numbers_and_dates() {
    let data = summary_xlsx();
    assert_eq!(grid::sniff("附件2.xlsx", &data), Format::Xlsx);
    let d = grid::read("附件2.xlsx", &data, &limits(), &none()).unwrap();
    assert_eq!(d.format, Format::Xlsx);
    // The empty second sheet is skipped.
    check_summary(only_table(&d));
    assert!(d.text().contains(TITLE2));
    assert_eq!(d.text().matches(TITLE2).count(), 1, "merged title printed once");
}

#[test]
fn xls_and_ods_made_by_libreoffice_read_like_the_xlsx() {
    let from_xlsx = grid::read("a.xlsx", &summary_xlsx(), &limits(), &none()).unwrap();
    for (name, format) in [("summary.xls", Format::Xls), ("summary.ods", Format::Ods)] {
        let data = fixture(name);
        assert_eq!(grid::sniff(name, &data), format);
        let d = grid::read(name, &data, &limits(), &none()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(d.format, format);
        let t = only_table(&d);
        check_summary_with(t, &["TRUE", "1"]);
        let mut rows = t.rows.clone();
        rows[4][12] = "TRUE".into();
        assert_eq!(rows, only_table(&from_xlsx).rows, "{name} reads the same cells");
    }
}

#[test]
fn misnamed_spreadsheets_are_read_by_content() {
    let xlsx = summary_xlsx();
    assert_eq!(grid::sniff("附件2.xls", &xlsx), Format::Xlsx);
    check_summary(only_table(&grid::read("附件2.xls", &xlsx, &limits(), &none()).unwrap()));
    let xls = fixture("summary.xls");
    assert_eq!(grid::sniff("附件2.xlsx", &xls), Format::Xls);
    check_summary_with(only_table(&grid::read("附件2.xlsx", &xls, &limits(), &none()).unwrap()), &["TRUE", "1"]);
    assert_eq!(grid::sniff("附件2.et", &xls), Format::Xls);
    let ods = fixture("summary.ods");
    assert_eq!(grid::sniff("附件2.xlsx", &ods), Format::Ods);
}

// ---------------------------------------------------------------- docx

#[test]
fn docx_paragraphs_textbox_sdt_and_runs() {
    let data = approval_docx();
    assert_eq!(grid::sniff("附件1.docx", &data), Format::Docx);
    let d = grid::read("附件1.docx", &data, &limits(), &none()).unwrap();
    assert_eq!(d.format, Format::Docx);
    assert_eq!(d.embedded_images, 1);
    let paras: Vec<&str> = d.paragraphs().collect();
    assert_eq!(
        paras,
        vec![
            "附件1",
            "乐山市劳模和工匠人才创新工作室推荐审批表",
            "第1页",
            "编号：（文本框）",
            "推荐单位：\t乐山\nA&B <公司>",
            "填表说明：此表打印填写",
        ]
    );
    let text = d.text();
    assert_eq!(text.matches("编号：（文本框）").count(), 1, "text box read once: {text}");
    assert!(!text.contains("删除的字") && !text.contains("PAGE"));
    // Reading order: title before the table, the note after it.
    let i_title = text.find("推荐审批表").unwrap();
    let i_table = text.find("创新工\n作室基\n本情况").unwrap();
    let i_note = text.find("填表说明").unwrap();
    assert!(i_title < i_table && i_table < i_note);
}

#[test]
fn docx_table_gridspan_vmerge_grid_before_after_nested() {
    let d = grid::read("附件1.docx", &approval_docx(), &limits(), &none()).unwrap();
    let tables: Vec<&Table> = d.tables().collect();
    assert_eq!(tables.len(), 2, "outer table then the nested one");
    let t = tables[0];
    assert_eq!(t.label, "表格1");
    assert!(!t.is_sheet);
    let firm = "乐山某机械有限公司张三劳模和工匠人才创新工作室";
    assert_eq!(t.rows[0], vec!["创新工\n作室基\n本情况", firm, firm, firm]);
    assert_eq!(t.rows[1], vec!["负责人\n情况", "姓名", "张三", "性别"]);
    assert_eq!(t.rows[2], vec!["负责人\n情况", "出生年月", "1980.01", "男"], "Word <w:vMerge/>");
    assert_eq!(t.rows[3], vec!["负责人\n情况", "联系电话", "联系电话", "内容控件值"], "WPS continue");
    assert_eq!(t.rows[4], vec!["", "学历", "本科", ""]);
    assert_eq!(t.rows[5][0], "团队");
    assert_eq!(t.rows[5][1], "成员名单\n成员\t职务\n李四\t技师");
    assert_eq!(t.cell_ref(2, 1), "第3行第2列");
    let n = tables[1];
    assert_eq!(n.label, "表格2");
    assert_eq!(n.rows, vec![vec!["成员", "职务"], vec!["李四", "技师"]]);
}

#[test]
fn misnamed_docx_is_read_as_docx() {
    let data = approval_docx();
    assert_eq!(grid::sniff("附件1.doc", &data), Format::Docx);
    let d = grid::read("附件1.doc", &data, &limits(), &none()).unwrap();
    assert_eq!(d.format, Format::Docx);
}

// ---------------------------------------------------------------- converters

fn have_soffice() -> Option<Converters> {
    let c = detected();
    if c.soffice.is_none() {
        println!("SKIPPED: soffice (LibreOffice) not found on PATH");
        return None;
    }
    Some(c)
}

#[test]
fn doc_without_converter_asks_for_docx() {
    let data = fixture("approval.doc");
    assert_eq!(grid::sniff("附件1.doc", &data), Format::Doc);
    match grid::read("附件1.doc", &data, &limits(), &none()) {
        Err(e @ Unreadable::Unsupported { .. }) => {
            let Unreadable::Unsupported { format, resend_as } = &e else { unreachable!() };
            assert!(format.contains(".doc"), "{format}");
            assert_eq!(resend_as, ".docx");
            assert!(e.advice().contains(".docx"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn doc_through_soffice() {
    let Some(conv) = have_soffice() else { return };
    let data = fixture("approval.doc");
    // Also when it is named .docx.
    for name in ["附件1.doc", "附件1.docx", "附件1.wps"] {
        assert_eq!(grid::sniff(name, &data), Format::Doc);
        let d = grid::read(name, &data, &limits(), &conv).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(d.format, Format::Doc);
        check_plain_approval(&d);
    }
}

#[test]
fn soffice_failure_is_converter_failed_not_panic() {
    let Some(conv) = have_soffice() else { return };
    // A CFB with a WordDocument stream full of garbage.
    let data = cfb_with(&[("WordDocument", &[0x55; 4096][..])]);
    match grid::read("坏.doc", &data, &limits(), &conv) {
        Err(Unreadable::ConverterFailed { resend_as, .. }) => assert_eq!(resend_as, ".docx"),
        Err(Unreadable::Corrupt { .. }) => {}
        Ok(d) => assert!(d.tables().next().is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pdf_through_pdftotext() {
    let data = fixture("approval.pdf");
    assert_eq!(grid::sniff("附件3.pdf", &data), Format::Pdf);
    match grid::read("附件3.pdf", &data, &limits(), &none()) {
        Err(Unreadable::Unsupported { format, resend_as }) => {
            assert_eq!(format, "PDF");
            assert_eq!(resend_as, ".docx");
        }
        other => panic!("{other:?}"),
    }
    let conv = detected();
    if conv.pdftotext.is_none() {
        println!("SKIPPED: pdftotext not found on PATH");
        return;
    }
    let d = grid::read("附件3.pdf", &data, &limits(), &conv).unwrap();
    assert_eq!(d.format, Format::Pdf);
    let text = d.text();
    assert!(text.contains("推荐审批表"), "{text}");
    assert!(text.contains("张三"), "{text}");
}

/// A valid one-page PDF whose only content is a grey-scale image (what a scanner makes).
fn image_only_pdf() -> Vec<u8> {
    let (w, h) = (120usize, 60usize);
    let pixels: Vec<u8> = (0..w * h).map(|i| if (i % w / 10) % 2 == 0 { 30 } else { 220 }).collect();
    let content = format!("q {w} 0 0 {h} 36 700 cm /Im0 Do Q");
    let mut objs: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /XObject << /Im0 5 0 R >> >> /Contents 4 0 R >>".to_vec(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()).into_bytes(),
    ];
    let mut img = format!(
        "<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray /BitsPerComponent 8 /Length {} >>\nstream\n",
        pixels.len()
    )
    .into_bytes();
    img.extend_from_slice(&pixels);
    img.extend_from_slice(b"\nendstream");
    objs.push(img);
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objs.len() + 1).as_bytes(),
    );
    out
}

#[test]
fn image_only_pdf_has_no_blocks() {
    let conv = detected();
    if conv.pdftotext.is_none() {
        println!("SKIPPED: pdftotext not found on PATH");
        return;
    }
    let d = grid::read("扫描件.pdf", &image_only_pdf(), &limits(), &conv).unwrap();
    assert_eq!(d.format, Format::Pdf);
    assert!(d.blocks.is_empty(), "{d:?}");
}

#[test]
fn odt_and_rtf_through_soffice() {
    let odt = fixture("approval.odt");
    assert_eq!(grid::sniff("附件1.odt", &odt), Format::Odt);
    assert!(matches!(grid::read("附件1.odt", &odt, &limits(), &none()), Err(Unreadable::Unsupported { .. })));
    let rtf = br"{\rtf1\ansi{\fonttbl\f0 Arial;}\f0 Studio application\par Second line\par}";
    assert_eq!(grid::sniff("附件1.doc", rtf), Format::Doc);
    let Some(conv) = have_soffice() else { return };
    let d = grid::read("附件1.odt", &odt, &limits(), &conv).unwrap();
    assert_eq!(d.format, Format::Odt);
    check_plain_approval(&d);
    let d = grid::read("附件1.doc", rtf, &limits(), &conv).unwrap();
    assert_eq!(d.format, Format::Doc);
    assert_eq!(d.paragraphs().collect::<Vec<_>>(), ["Studio application", "Second line"]);
}

#[test]
fn deeply_nested_docx_is_corrupt_not_a_stack_overflow() {
    let body = format!("{}<w:p><w:r><w:t>x</w:t></w:r></w:p>{}", "<w:sdt><w:sdtContent>".repeat(5000), "</w:sdtContent></w:sdt>".repeat(5000));
    let r = grid::read("附件1.docx", &docx_with(&body, &[]), &limits(), &none());
    assert!(matches!(r, Err(Unreadable::Corrupt { .. })), "{r:?}");
    // Nested tables 40 deep are fine and all come out.
    let mut t = "<w:p><w:r><w:t>core</w:t></w:r></w:p>".to_string();
    for _ in 0..40 {
        t = format!("<w:tbl><w:tr><w:tc>{t}</w:tc></w:tr></w:tbl><w:p/>");
    }
    let d = grid::read("附件1.docx", &docx_with(&t, &[]), &limits(), &none()).unwrap();
    assert_eq!(d.tables().count(), 40);
    assert!(d.tables().all(|t| t.rows[0][0].ends_with("core")));
}

#[test]
fn copies_made_by_merges_are_bounded() {
    // One long cell spanned across many columns and rows (docx) ...
    let long = "长".repeat(20_000);
    let cell = format!(r#"<w:tc><w:tcPr><w:gridSpan w:val="900"/></w:tcPr><w:p><w:r><w:t>{long}</w:t></w:r></w:p></w:tc>"#);
    let rows = format!("<w:tr>{cell}</w:tr>").repeat(50);
    let data = docx_with(&format!("<w:tbl>{rows}</w:tbl>"), &[]);
    let small = Limits { max_decompressed_bytes: 20_000_000, ..Limits::default() };
    let r = grid::read("附件1.docx", &data, &small, &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
    // ... and a long string merged over a big range (xlsx).
    use rust_xlsxwriter::{Format as XFormat, Workbook};
    let mut wb = Workbook::new();
    wb.add_worksheet().merge_range(0, 0, 399, 399, &"长".repeat(10_000), &XFormat::new()).unwrap();
    let data = wb.save_to_buffer().unwrap();
    let r = grid::read("附件2.xlsx", &data, &small, &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
}

#[test]
fn converter_timeout_kills_and_reports() {
    // A fake converter that hangs: the timeout must fire and report ConverterFailed.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("pdftotext");
    let pidfile = dir.path().join("pid");
    std::fs::write(&fake, format!("#!/bin/sh\nsleep 30 &\necho $! > {}\nwait\n", pidfile.display())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let conv = Converters { soffice: None, pdftotext: Some(fake), timeout: Duration::from_millis(500), ..Converters::none() };
    let start = std::time::Instant::now();
    let r = grid::read("x.pdf", b"%PDF-1.4\n%%EOF\n", &limits(), &conv);
    assert!(matches!(r, Err(Unreadable::ConverterFailed { .. })), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // The grandchild (same process group) is gone too.
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
    std::thread::sleep(Duration::from_millis(300));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next().unwrap_or("");
    assert!(stat.is_empty() || state == "Z", "sleep {pid} still alive: {stat}");
}

// ---------------------------------------------------------------- bad inputs

fn cfb_with(streams: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    for (name, bytes) in streams {
        let mut s = cf.create_stream(format!("/{name}")).unwrap();
        s.write_all(bytes).unwrap();
    }
    cf.flush().unwrap();
    cf.into_inner().into_inner()
}

#[test]
fn empty_and_too_large() {
    assert_eq!(grid::read("a.docx", b"", &limits(), &none()), Err(Unreadable::Empty));
    let small = Limits { max_attachment_bytes: 100, ..Limits::default() };
    assert_eq!(
        grid::read("a.xlsx", &summary_xlsx(), &small, &none()),
        Err(Unreadable::TooLarge { limit: 100 })
    );
}

#[test]
fn truncated_packages_are_corrupt() {
    for (name, data) in [("附件2.xlsx", summary_xlsx()), ("附件1.docx", approval_docx())] {
        let half = &data[..data.len() / 2];
        match grid::read(name, half, &limits(), &none()) {
            Err(Unreadable::Corrupt { detail }) => assert!(!detail.is_empty()),
            other => panic!("{name}: {other:?}"),
        }
    }
    let xls = fixture("summary.xls");
    let r = grid::read("附件2.xls", &xls[..xls.len() / 2], &limits(), &none());
    assert!(matches!(r, Err(Unreadable::Corrupt { .. })), "{r:?}");
}

#[test]
fn docx_zip_bomb_is_refused() {
    // 200 MB of spaces inside document.xml, streamed into the deflater.
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opt = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    z.start_file("word/document.xml", opt).unwrap();
    z.write_all(format!("<w:document {NS}><w:body><w:p><w:r><w:t>").as_bytes()).unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..200 {
        z.write_all(&chunk).unwrap();
    }
    z.write_all(b"</w:t></w:r></w:p></w:body></w:document>").unwrap();
    let data = z.finish().unwrap().into_inner();
    assert!(data.len() < 1 << 20, "compressed bomb is small: {}", data.len());
    assert_eq!(grid::sniff("附件1.docx", &data), Format::Docx);
    let r = grid::read("附件1.docx", &data, &limits(), &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
    // Under a per-member cap it is the package total that trips.
    let tight = Limits { max_decompressed_bytes: 1_000, ..Limits::default() };
    let r = grid::read("附件1.docx", &approval_docx(), &tight, &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
}

/// Replaces one member of a zip package.
fn replace_member(data: &[u8], member: &str, content: &[u8]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut src = zip::ZipArchive::new(Cursor::new(data)).unwrap();
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opt = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        z.start_file(name.as_str(), opt).unwrap();
        z.write_all(if name == member { content } else { &buf }).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn xlsx_dimension_bomb_refused_before_calamine() {
    let base = summary_xlsx();
    let sheet = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>x</t></is></c></row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData></worksheet>"#;
    let data = replace_member(&base, "xl/worksheets/sheet1.xml", sheet.as_bytes());
    // If calamine saw this it would try to allocate ~17 billion cells and abort the test.
    let r = grid::read("附件2.xlsx", &data, &limits(), &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
    // The same without a <dimension> (or with a lying one): caught by the cell scan.
    let lying = sheet.replace("A1:XFD1048576", "A1:A1");
    let data = replace_member(&base, "xl/worksheets/sheet1.xml", lying.as_bytes());
    let r = grid::read("附件2.xlsx", &data, &limits(), &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
    // A lone far cell (calamine would pad from A1 for us) is refused too.
    let far = r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData></worksheet>"#;
    let data = replace_member(&base, "xl/worksheets/sheet1.xml", far.as_bytes());
    let r = grid::read("附件2.xlsx", &data, &limits(), &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
}

/// Declared sizes calamine allocates for: the shared-string table's `uniqueCount`
/// (2147483647 asked for 96 GiB and aborted the process: found by tests/fuzz.rs), and, to be
/// safe, a shared formula's index `si` and its `ref` range.
#[test]
fn xlsx_declared_size_bombs_refused_before_calamine() {
    let base = summary_xlsx();
    for f in [r#"<f t="shared" si="2147483646" ref="A1:A2">1+1</f>"#, r#"<f t="shared" si="0" ref="A1:XFD1048576">1+1</f>"#] {
        let sheet = format!(
            r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1">{f}<v>2</v></c></row></sheetData></worksheet>"#
        );
        let data = replace_member(&base, "xl/worksheets/sheet1.xml", sheet.as_bytes());
        let r = grid::read("附件2.xlsx", &data, &limits(), &none());
        assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{f}: {r:?}");
    }
    // The shared-string table's declared size, which calamine reserves up front.
    let sst = r#"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="2147483647"><si><t>x</t></si></sst>"#;
    let data = replace_member(&base, "xl/sharedStrings.xml", sst.as_bytes());
    let r = grid::read("附件2.xlsx", &data, &limits(), &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "uniqueCount: {r:?}");
    // An ordinary shared formula still reads.
    let sheet = r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1"><f t="shared" si="0" ref="A1:A2">1+1</f><v>2</v></c></row><row r="2"><c r="A2"><f t="shared" si="0"/><v>2</v></c></row></sheetData></worksheet>"#;
    let data = replace_member(&base, "xl/worksheets/sheet1.xml", sheet.as_bytes());
    assert!(grid::read("附件2.xlsx", &data, &limits(), &none()).is_ok());
}

/// Rows inside a cell (a fuzzed file): calamine laid out about 1 GB for them while the cell
/// scan, which skips what is inside a cell, saw nothing. Refused as corrupt, as is a cell
/// outside any row.
#[test]
fn ods_rows_inside_a_cell_are_corrupt() {
    let r = grid::read("附件2.ods", &fixture("ods_rows_inside_a_cell.ods"), &limits(), &none());
    assert!(matches!(r, Err(Unreadable::Corrupt { .. })), "{r:?}");
}

/// calamine lays out every sheet densely: sheets each under `max_cells` that together are over
/// it are refused (found by tests/fuzz.rs: an .ods with its table copied many times).
#[test]
fn many_sheets_together_over_the_cell_limit_are_refused() {
    let small = Limits { max_cells: 100_000, ..Limits::default() };
    // xlsx: six sheets, each with one cell at row 200, column 100 (20,000 cells laid out).
    let mut wb = rust_xlsxwriter::Workbook::new();
    for _ in 0..6 {
        wb.add_worksheet().write_string(199, 99, "x").unwrap();
    }
    let xlsx = wb.save_to_buffer().unwrap();
    assert!(grid::read("附件2.xlsx", &xlsx, &Limits { max_cells: 130_000, ..Limits::default() }, &none()).is_ok(), "six sheets fit 130,000");
    let r = grid::read("附件2.xlsx", &xlsx, &small, &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "xlsx: {r:?}");
    // ods: the same table six times.
    let table = r#"<table:table table:name="T"><table:table-row table:number-rows-repeated="199"><table:table-cell/></table:table-row><table:table-row><table:table-cell table:number-columns-repeated="99"/><table:table-cell office:value-type="string"><text:p>x</text:p></table:table-cell></table:table-row></table:table>"#;
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>{}</office:spreadsheet></office:body></office:document-content>"#,
        table.repeat(6)
    );
    let ods = replace_member(&fixture("summary.ods"), "content.xml", content.as_bytes());
    let r = grid::read("附件2.ods", &ods, &small, &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "ods: {r:?}");
}

#[test]
fn encrypted_office_files() {
    let data = cfb_with(&[("EncryptionInfo", &[4, 0, 4, 0][..]), ("EncryptedPackage", &[0u8; 600][..])]);
    for name in ["附件1.docx", "附件2.xlsx", "附件2.xls", "noext"] {
        assert_eq!(grid::sniff(name, &data), Format::Encrypted);
        assert_eq!(grid::read(name, &data, &limits(), &none()), Err(Unreadable::Encrypted));
    }
}

#[test]
fn other_formats_are_unsupported_with_advice() {
    let cases: Vec<(&str, Vec<u8>, Format)> = vec![
        ("照片.jpg", vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0], Format::Jpeg),
        ("照片.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), Format::Png),
        ("照片.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec(), Format::Heic),
        ("a.rar", b"Rar!\x1a\x07\x01\0".to_vec(), Format::OtherArchive),
        ("a.7z", vec![0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C, 0, 4], Format::OtherArchive),
        ("a.gz", vec![0x1F, 0x8B, 8, 0, 0, 0, 0, 0], Format::OtherArchive),
    ];
    for (name, data, format) in cases {
        assert_eq!(grid::sniff(name, &data), format, "{name}");
        match grid::read(name, &data, &limits(), &none()) {
            Err(e @ Unreadable::Unsupported { .. }) => assert!(!e.advice().is_empty()),
            other => panic!("{name}: {other:?}"),
        }
    }
    // A plain zip of photos is not a document.
    let zip = {
        use zip::write::SimpleFileOptions;
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        z.start_file("a.txt", SimpleFileOptions::default()).unwrap();
        z.write_all(b"hello").unwrap();
        z.finish().unwrap().into_inner()
    };
    assert_eq!(grid::sniff("材料.zip", &zip), Format::Zip);
    assert!(matches!(grid::read("材料.zip", &zip, &limits(), &none()), Err(Unreadable::Unsupported { .. })));
}

#[test]
fn random_bytes_are_refused_without_panic() {
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut data = vec![0u8; 4096];
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for name in ["附件1.docx", "附件2.xlsx", "a.xls", "a.doc", "a.pdf", "a"] {
        assert!(grid::read(name, &data, &limits(), &none()).is_err(), "{name}");
    }
    // Random bytes behind each magic.
    for magic in [&b"PK\x03\x04"[..], &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1][..], b"%PDF-1.7"] {
        let mut d = magic.to_vec();
        d.extend_from_slice(&data);
        let r = grid::read("x.xlsx", &d, &limits(), &none());
        assert!(r.is_err(), "{r:?}");
    }
}

#[test]
fn text_files_become_paragraphs() {
    let d = grid::read("说明.txt", "第一行\n\n 第二行 \n".as_bytes(), &limits(), &none()).unwrap();
    assert_eq!(d.format, Format::Text);
    assert_eq!(d.blocks, vec![Block::Paragraph("第一行".into()), Block::Paragraph("第二行".into())]);
}

#[test]
fn number_formatting() {
    use studio_intake::core::grid::column_letters;
    assert_eq!(column_letters(0), "A");
    assert_eq!(column_letters(25), "Z");
    assert_eq!(column_letters(26), "AA");
    assert_eq!(column_letters(16383), "XFD");
}

// ---------------------------------------------------------------- property test

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn seeds() -> Vec<Vec<u8>> {
        vec![summary_xlsx(), approval_docx(), fixture("summary.xls"), fixture("summary.ods")]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn mutated_documents_never_panic(
            which in 0usize..4,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut data = seeds()[which].clone();
            for (i, b) in flips {
                let i = i.index(data.len());
                data[i] = b;
            }
            if let Some(c) = cut {
                let c = c.index(data.len()).max(1);
                data.truncate(c);
            }
            let _ = grid::read("x", &data, &Limits::default(), &Converters::none());
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), name in "[a-z]{0,4}\\.(docx|xlsx|xls|doc|ods|pdf)") {
            let _ = grid::sniff(&name, &data);
            let _ = grid::read(&name, &data, &Limits::default(), &Converters::none());
        }
    }
}

// ---------------------------------------------------------------- fixture generation

/// Regenerates tests/fixtures/grid/* with LibreOffice:
/// `cargo test --test grid -- --ignored regenerate_fixtures`.
#[test]
#[ignore]
fn regenerate_fixtures() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grid");
    std::fs::create_dir_all(&dir).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("summary.xlsx"), summary_xlsx()).unwrap();
    std::fs::write(work.path().join("approval.docx"), plain_approval_docx()).unwrap();
    let profile = format!("-env:UserInstallation=file://{}/profile", work.path().display());
    for (src, to, out) in [
        ("summary.xlsx", "xls:MS Excel 97", "summary.xls"),
        ("summary.xlsx", "ods", "summary.ods"),
        ("approval.docx", "doc:MS Word 97", "approval.doc"),
        ("approval.docx", "pdf:writer_pdf_Export", "approval.pdf"),
        ("approval.docx", "odt", "approval.odt"),
    ] {
        let status = std::process::Command::new("soffice")
            .args(["--headless", "--norestore", &profile, "--convert-to", to, "--outdir"])
            .arg(work.path().join("out"))
            .arg(work.path().join(src))
            .status()
            .unwrap();
        assert!(status.success());
        let produced = work.path().join("out").join(out);
        std::fs::copy(&produced, dir.join(out)).unwrap_or_else(|e| panic!("{out}: {e}"));
    }
}

// ---------------------------------------------------------------- found by tests/fuzz.rs

#[test]
fn docx_cells_are_counted_as_padded() {
    // One row 1000 columns wide, then short rows: padded to a common width the table holds
    // rows × 1000 cells, which is what max_cells must bound (it used to count 1000 + rows).
    let wide = tr("", &[tc(r#"<w:gridSpan w:val="1000"/>"#, &["标题"])]);
    let short = tr("", &[tc("", &["1"])]).repeat(50);
    let data = docx_with(&format!("<w:tbl>{wide}{short}</w:tbl>"), &[]);
    let small = Limits { max_cells: 5000, ..Limits::default() };
    let r = grid::read("附件1.docx", &data, &small, &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
    let d = grid::read("附件1.docx", &data, &limits(), &none()).unwrap();
    assert_eq!((only_table(&d).rows.len(), only_table(&d).width()), (51, 1000));
}

/// The fixture .xls with `edit` applied to its Workbook stream (in a version 3 compound file,
/// which calamine reads).
fn xls_with_stream(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::open(Cursor::new(fixture("summary.xls"))).unwrap();
    let mut stream = Vec::new();
    cf.open_stream("/Workbook").unwrap().read_to_end(&mut stream).unwrap();
    edit(&mut stream);
    let mut out = cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new())).unwrap();
    out.create_stream("/Workbook").unwrap().write_all(&stream).unwrap();
    out.flush().unwrap();
    out.into_inner().into_inner()
}

#[test]
fn xls_dimension_bombs_refused_before_calamine() {
    // The unchanged stream still reads.
    let plain = grid::read("附件2.xls", &xls_with_stream(|_| {}), &limits(), &none()).unwrap();
    assert!(!only_table(&plain).rows.is_empty());
    // A Number record at row 65535, column 65535 before the last sheet's EOF: calamine would
    // fill a dense range of 4 billion cells (the process used to be killed for memory).
    let far = xls_with_stream(|s| {
        let eof = s.len() - 4;
        assert_eq!(&s[eof..], &[0x0A, 0, 0, 0]);
        let mut number = vec![0x03, 0x02, 14, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0];
        number.extend_from_slice(&1.0f64.to_le_bytes());
        s.splice(eof..eof, number);
    });
    let r = grid::read("附件2.xls", &far, &limits(), &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
    // A DIMENSIONS record claiming 4 billion rows: calamine reserves room for all of them.
    let dims = xls_with_stream(|s| {
        let mut i = 0;
        while i + 4 <= s.len() {
            let (typ, len) = (u16::from_le_bytes([s[i], s[i + 1]]), u16::from_le_bytes([s[i + 2], s[i + 3]]) as usize);
            if typ == 0x0200 && len == 14 {
                s[i + 8..i + 12].copy_from_slice(&u32::MAX.to_le_bytes());
            }
            i += 4 + len;
        }
    });
    let r = grid::read("附件2.xls", &dims, &limits(), &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
}

#[test]
fn ods_space_and_formula_bombs_refused_before_calamine() {
    let ods = fixture("summary.ods");
    let content = |table: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet><table:table table:name="汇总表">{table}</table:table></office:spreadsheet></office:body></office:document-content>"#
        )
    };
    // `<text:s text:c="N"/>` makes calamine write N spaces, whatever N is.
    let spaces = content(r#"<table:table-row><table:table-cell office:value-type="string"><text:p>a<text:s text:c="4000000000"/>b</text:p></table:table-cell></table:table-row>"#);
    let r = grid::read("附件2.ods", &replace_member(&ods, "content.xml", spaces.as_bytes()), &limits(), &none());
    assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{r:?}");
    // Cells with a value but no office:value-type (or only a formula) are kept by calamine,
    // with every empty cell before them: they count like any valued cell.
    for cell in [r#"office:value="1""#, r#"table:formula="of:=1""#] {
        let far = content(&format!(
            r#"<table:table-row table:number-rows-repeated="100000"><table:table-cell table:number-columns-repeated="16383"/><table:table-cell {cell}/></table:table-row>"#
        ));
        let r = grid::read("附件2.ods", &replace_member(&ods, "content.xml", far.as_bytes()), &limits(), &none());
        assert!(matches!(r, Err(Unreadable::ArchiveBomb { .. })), "{cell}: {r:?}");
    }
}

/// A content.xml cut short inside a cell, after cells left outside any row, made calamine's
/// ODS reader loop forever (found by tests/fuzz.rs; the file is its input): refused as
/// corrupt before calamine sees it. Read on a thread so a regression fails instead of hanging.
#[test]
fn ods_cut_short_inside_a_cell_is_corrupt_not_a_hang() {
    let ods = fixture("ods_cut_short_in_cell.ods");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(grid::read("附件2.ods", &ods, &limits(), &none())));
    let r = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("read_ods returns");
    assert!(matches!(r, Err(Unreadable::Corrupt { .. })), "{r:?}");
}
