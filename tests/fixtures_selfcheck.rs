//! Self-checks of the fixture builder: the generated files are what they claim to be.

use std::io::Read;

use mail_parser::{MessageParser, MimeHeaders};
use studio_intake::fixtures::*;

const DOC_TOOLS: [DocTool; 3] = [DocTool::Word, DocTool::Wps, DocTool::LibreOffice];
const SHEET_TOOLS: [SheetTool; 3] = [SheetTool::Excel, SheetTool::Wps, SheetTool::LibreOffice];
const CLIENTS: [MailClient; 6] = [
    MailClient::Outlook,
    MailClient::Foxmail,
    MailClient::QqMail,
    MailClient::AppleMail,
    MailClient::Webmail163,
    MailClient::Wps,
];

fn zip_parts(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("valid zip");
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).expect("member");
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("read member");
        out.push((f.name().expect("member name").to_string(), data));
    }
    out
}

fn part<'a>(parts: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &parts.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("missing part {name}")).1
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// Text of every `<w:t>` element, in order (a deliberately simple scan).
fn docx_text(docx: &[u8]) -> String {
    let parts = zip_parts(docx);
    let xml = String::from_utf8(part(&parts, "word/document.xml").to_vec()).expect("utf-8 xml");
    let mut out = String::new();
    let mut rest = xml.as_str();
    while let Some(i) = rest.find("<w:t") {
        let after = &rest[i + 4..];
        // <w:t> or <w:t xml:space=...>, but not <w:tbl>, <w:tc>, <w:tr>, <w:tab/> …
        if !(after.starts_with('>') || after.starts_with(' ')) {
            rest = after;
            continue;
        }
        let gt = after.find('>').expect("tag end");
        if after[..gt].ends_with('/') {
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let end = body.find("</w:t>").expect("closing w:t");
        out.push_str(&unescape(&body[..end]));
        out.push('\n');
        rest = &body[end + 6..];
    }
    out
}

fn non_ws(s: &str) -> usize {
    s.chars().filter(|c| !c.is_whitespace()).count()
}

#[test]
fn samples_are_valid_and_varied() {
    let mut names = std::collections::HashSet::new();
    for i in 0..60 {
        let s = StudioSpec::sample(i);
        assert!(names.insert(s.name.clone()), "duplicate studio name {}", s.name);
        assert!(s.name.ends_with("劳模和工匠人才创新工作室"), "{}", s.name);
        assert!(s.name.contains(&s.leader));
        assert!(s.members >= 5);
        assert_eq!(s.male + s.female, s.members, "{i}");
        assert_eq!(s.phd + s.master + s.bachelor + s.college + s.highschool, s.members, "{i}");
        assert_eq!(s.awards_intl + s.awards_national + s.awards_provincial + s.awards_city, s.awards_total);
        assert!(s.intro.chars().count() <= 600, "intro {} chars", s.intro.chars().count());
        assert!(s.achievements.parse::<u32>().unwrap() >= 1);
        assert!(s.patents_total().is_some());
        assert!(!s.phone.is_empty());
    }
    for i in 0..12 {
        let u = UnitSpec::sample(i, 3);
        assert_eq!(u.studios.len(), 3);
        let leaders: std::collections::HashSet<_> = u.studios.iter().map(|s| s.leader.clone()).collect();
        assert_eq!(leaders.len(), 3, "leaders distinct within a unit");
        assert!(u.sender.contains('@'));
    }
    assert_eq!(UnitSpec::sample(0, 1).unit, "犍为县总工会");
    assert!(UnitSpec::enterprise(0, 1).unit.ends_with("公司工会"));
}

#[test]
fn docx_packages_have_the_right_parts() {
    let s = StudioSpec::sample(3);
    let u = UnitSpec::sample(1, 2);
    for tool in DOC_TOOLS {
        for (what, bytes) in [
            ("approval", approval_form_docx(&s, tool)),
            ("summary", summary_table_docx(&u, tool)),
            ("materials", materials_docx(&s, 2300, true, tool)),
        ] {
            let parts = zip_parts(&bytes);
            for p in [
                "[Content_Types].xml",
                "_rels/.rels",
                "word/document.xml",
                "word/_rels/document.xml.rels",
                "word/styles.xml",
            ] {
                assert!(!part(&parts, p).is_empty(), "{what} {tool:?}: {p}");
            }
            let xml = String::from_utf8(part(&parts, "word/document.xml").to_vec()).unwrap();
            assert!(xml.starts_with("<?xml"));
            assert_eq!(xml.matches("<w:tbl>").count(), xml.matches("</w:tbl>").count());
            assert_eq!(xml.matches("<w:tc>").count(), xml.matches("</w:tc>").count());
            assert_eq!(xml.matches("<w:p>").count() + xml.matches("<w:p ").count(), xml.matches("</w:p>").count());
        }
    }
}

#[test]
fn approval_form_docx_layout() {
    let s = StudioSpec::sample(5);
    for tool in DOC_TOOLS {
        let bytes = approval_form_docx(&s, tool);
        let xml = String::from_utf8(part(&zip_parts(&bytes), "word/document.xml").to_vec()).unwrap();
        let text = docx_text(&bytes);
        let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(flat.contains("乐山市劳模和工匠人才创新工作室推荐审批表"));
        assert!(flat.contains(&s.name), "{tool:?}");
        assert!(flat.contains(&format!("共{}人。其中男{}人，女{}人", s.members, s.male, s.female)), "{tool:?}: {flat}");
        assert!(flat.contains("获奖明细情况如下"));
        assert!(flat.contains("填表说明"));
        assert!(flat.contains("年月日"));
        assert!(xml.contains("w:gridSpan"));
        assert!(xml.contains(r#"<w:vMerge w:val="restart"/>"#));
        match tool {
            DocTool::Word => {
                assert!(xml.contains("<w:vMerge/>"));
                assert!(xml.contains("w:rsidR="));
            }
            _ => assert!(xml.contains(r#"<w:vMerge w:val="continue"/>"#)),
        }
    }
}

#[test]
fn materials_has_exact_character_count() {
    let s = StudioSpec::sample(7);
    for tool in DOC_TOOLS {
        for outline in [true, false] {
            for chars in [0, 5, 30, 120, 1500, 1999, 2000, 2001, 2300, 4800] {
                let bytes = materials_docx(&s, chars, outline, tool);
                let text = docx_text(&bytes);
                assert_eq!(non_ws(&text), chars, "{tool:?} outline={outline} chars={chars}");
                if outline && chars >= 2000 {
                    for h in ["一、基本情况", "二、近两年工作情况", "三、近两年主要成效", "（一）制度建立情况"] {
                        assert!(text.contains(h), "{tool:?} missing {h}");
                    }
                }
                if !outline && chars >= 2000 {
                    assert!(!text.contains("二、近两年工作情况"));
                }
                if chars >= 100 {
                    assert!(text.contains("乐山市劳模和工匠人才创新工作室申报材料"));
                }
            }
        }
    }
}

#[test]
fn xlsx_files_are_valid() {
    let s = StudioSpec::sample(2);
    let u = UnitSpec::sample(4, 3);
    for tool in SHEET_TOOLS {
        for bytes in [approval_form_xlsx(&s, tool), summary_table_xlsx(&u, tool)] {
            let parts = zip_parts(&bytes);
            for p in ["[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml", "xl/sharedStrings.xml"] {
                assert!(!part(&parts, p).is_empty(), "{tool:?}: {p}");
            }
            let sheet = String::from_utf8(part(&parts, "xl/worksheets/sheet1.xml").to_vec()).unwrap();
            assert!(sheet.contains("<mergeCell "), "{tool:?}: merged cells");
        }
        let parts = zip_parts(&summary_table_xlsx(&u, tool));
        let ss = String::from_utf8(part(&parts, "xl/sharedStrings.xml").to_vec()).unwrap();
        for t in ["推荐汇总表", "创新工作室负责人（带头人）基本情况", "创新工作室工作开展基本情况", "填表要求", &u.studios[2].name] {
            assert!(ss.contains(t), "{tool:?}: {t}");
        }
        assert!(ss.contains(&u.filler));
    }
    // Same input, same bytes.
    assert_eq!(summary_table_xlsx(&u, SheetTool::Excel), summary_table_xlsx(&u, SheetTool::Excel));
}

fn jpeg_size(b: &[u8]) -> (u32, u32) {
    assert_eq!(&b[..2], &[0xFF, 0xD8], "SOI");
    let mut i = 2;
    while i + 9 < b.len() {
        assert_eq!(b[i], 0xFF);
        let marker = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if marker == 0xC0 {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
            return (w, h);
        }
        assert!(!(0xC1..=0xCF).contains(&marker) || marker == 0xC4 || marker == 0xCC, "not baseline: {marker:X}");
        i += 2 + len;
    }
    panic!("no SOF0");
}

#[test]
fn photos_have_requested_dimensions() {
    for (w, h) in [(800, 600), (640, 480), (599, 1000), (1, 1), (1920, 1080)] {
        let j = photo_jpeg(w, h);
        assert_eq!(jpeg_size(&j), (w, h));
        assert_eq!(&j[j.len() - 2..], &[0xFF, 0xD9]);
        let p = photo_png(w, h);
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&p[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(p[16..20].try_into().unwrap()), w);
        assert_eq!(u32::from_be_bytes(p[20..24].try_into().unwrap()), h);
    }
    assert!(photo_jpeg(800, 600).len() < 200_000);
}

fn check_mime_lines(raw: &[u8], client: MailClient) {
    // CRLF everywhere.
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "{client:?}: bare LF at {i}");
        }
    }
    // Base64 bodies wrapped at ≤ 76 columns; QP bodies too.
    let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
    let mut cte: Option<String> = None;
    let mut in_body = false;
    let mut b64_lines = 0;
    for l in lines {
        let s = String::from_utf8_lossy(l);
        if s.starts_with("--") {
            in_body = false;
            cte = None;
            continue;
        }
        if !in_body {
            if let Some(v) = s.strip_prefix("Content-Transfer-Encoding:") {
                cte = Some(v.trim().to_ascii_lowercase());
            }
            if s.is_empty() && cte.is_some() {
                in_body = true;
            }
            continue;
        }
        match cte.as_deref() {
            Some("base64") => {
                assert!(l.len() <= 76, "{client:?}: base64 line of {} columns", l.len());
                assert!(l.iter().all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(c)), "{client:?}: {s}");
                b64_lines += 1;
            }
            Some("quoted-printable") => assert!(l.len() <= 76, "{client:?}: QP line of {}", l.len()),
            _ => {}
        }
    }
    assert!(b64_lines > 10, "{client:?}: base64 bodies found");
}

#[test]
fn emails_parse_as_mime() {
    let u = UnitSpec::sample(0, 2);
    for client in CLIENTS {
        let raw = submission(&u, client);
        check_mime_lines(&raw, client);
        let msg = MessageParser::default().parse(&raw).unwrap_or_else(|| panic!("{client:?}: parse"));
        assert!(msg.subject().is_some());
        assert_eq!(msg.from().and_then(|f| f.first()).and_then(|a| a.address()), Some(u.sender.as_str()));
        let atts: Vec<_> = msg.attachments().collect();
        assert_eq!(atts.len(), 2 * 3 + 1, "{client:?}: attachments");
        let names: Vec<String> = atts.iter().map(|a| a.attachment_name().unwrap_or("").to_string()).collect();
        if client != MailClient::Wps {
            // Raw 8-bit GBK names are the one style a standard parser cannot decode.
            assert!(names.iter().any(|n| n.contains(&u.studios[0].leader)), "{client:?}: {names:?}");
            assert!(names.iter().all(|n| !n.is_empty() && !n.contains("=?")), "{client:?}: {names:?}");
        }
        // The attachments decode to what was put in.
        for a in &atts {
            let data = a.contents();
            assert!(
                data.starts_with(b"PK\x03\x04") || data.starts_with(&[0xFF, 0xD8]) || data.starts_with(b"\x89PNG"),
                "{client:?}: attachment content"
            );
        }
        // Deterministic.
        assert_eq!(raw, submission(&u, client), "{client:?}: deterministic");
    }
}

#[test]
fn apple_mail_long_names_use_rfc2231_continuations() {
    let mut u = UnitSpec::sample(2, 1);
    u.studios[0].leader = "欧阳晓明".into();
    let m = submission_mail(&u, MailClient::AppleMail, &SubmissionOptions::default());
    let raw = String::from_utf8_lossy(&build_eml(&m)).to_string();
    assert!(raw.contains("filename*=utf-8''") || raw.contains("filename*0*=utf-8''"));
    assert!(raw.contains("x-unix-mode=0644"));
    assert!(raw.contains("Apple-Mail="));
    let msg = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert!(msg.attachments().any(|a| a.attachment_name().unwrap_or("").contains("申报材料")));
}

#[test]
fn received_header_and_dates() {
    let u = UnitSpec::sample(3, 1);
    let o = SubmissionOptions { received: Some("Sun, 27 Sep 2020 09:15:02 +0800".into()), ..Default::default() };
    let raw = submission_with(&u, MailClient::AppleMail, &o);
    let msg = MessageParser::default().parse(&raw).unwrap();
    let first = String::from_utf8_lossy(&raw[..400]).to_string();
    assert!(first.starts_with("Received: "), "{first}");
    assert!(first.contains("27 Sep 2020 09:15:02 +0800"));
    assert!(msg.date().is_some());
}

#[test]
fn gbk_zip_has_no_utf8_flag() {
    let members = vec![
        ("犍为县总工会/附件1：推荐审批表.docx".to_string(), approval_form_docx(&StudioSpec::sample(0), DocTool::Word)),
        ("张明工作室场景照.jpg".to_string(), photo_jpeg(64, 48)),
    ];
    let z = zip_archive(&members, true);
    assert_eq!(&z[..4], b"PK\x03\x04");
    let flags = u16::from_le_bytes([z[6], z[7]]);
    assert_eq!(flags & 0x0800, 0, "no UTF-8 flag");
    let nlen = u16::from_le_bytes([z[26], z[27]]) as usize;
    let name = &z[30..30 + nlen];
    let (decoded, _, bad) = encoding_rs::GBK.decode(name);
    assert!(!bad);
    assert_eq!(decoded, members[0].0);
    assert!(std::str::from_utf8(name).is_err(), "names are not UTF-8");
    // A standard reader opens it and gets the data back.
    let mut za = zip::ZipArchive::new(std::io::Cursor::new(&z)).expect("zip opens");
    assert_eq!(za.len(), 2);
    let mut f = za.by_index(1).unwrap();
    let mut data = Vec::new();
    f.read_to_end(&mut data).unwrap();
    assert_eq!(data, members[1].1);
    // UTF-8 flavour round-trips names.
    let z8 = zip_archive(&members, false);
    let parts = zip_parts(&z8);
    assert_eq!(parts[0].0, members[0].0);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn zipped_submission_carries_everything() {
    let u = UnitSpec::enterprise(0, 1);
    let o = SubmissionOptions { zip: ZipMode::Gbk, ..Default::default() };
    let raw = submission_with(&u, MailClient::Foxmail, &o);
    let msg = MessageParser::default().parse(&raw).unwrap();
    let atts: Vec<_> = msg.attachments().collect();
    assert_eq!(atts.len(), 1);
    assert!(atts[0].attachment_name().unwrap().ends_with(".zip"));
    let za = zip::ZipArchive::new(std::io::Cursor::new(atts[0].contents().to_vec())).unwrap();
    assert_eq!(za.len(), 4);
}

fn soffice() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("PATH")?;
    std::env::split_paths(&p).map(|d| d.join("soffice")).find(|p| p.is_file())
}

#[test]
fn libreoffice_opens_generated_files() {
    let Some(bin) = soffice() else {
        eprintln!("SKIP: soffice not installed; cannot prove LibreOffice opens the files");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = StudioSpec::sample(1);
    let u = UnitSpec::sample(0, 2);
    let files = [
        ("approval_word.docx", approval_form_docx(&s, DocTool::Word)),
        ("approval_wps.docx", approval_form_docx(&s, DocTool::Wps)),
        ("materials_lo.docx", materials_docx(&s, 2300, true, DocTool::LibreOffice)),
        ("summary_excel.xlsx", summary_table_xlsx(&u, SheetTool::Excel)),
        ("approval_lo.xlsx", approval_form_xlsx(&s, SheetTool::LibreOffice)),
    ];
    let mut paths = Vec::new();
    for (n, b) in &files {
        let p = dir.path().join(n);
        std::fs::write(&p, b).unwrap();
        paths.push(p);
    }
    let profile = format!("-env:UserInstallation=file://{}/profile", dir.path().display());
    let out = std::process::Command::new(bin)
        .arg(&profile)
        .args(["--headless", "--convert-to", "pdf", "--outdir"])
        .arg(dir.path())
        .args(&paths)
        .output()
        .expect("run soffice");
    for (n, _) in &files {
        let pdf = dir.path().join(n.rsplit_once('.').unwrap().0.to_string() + ".pdf");
        let meta = std::fs::metadata(&pdf).unwrap_or_else(|_| {
            panic!(
                "soffice did not convert {n}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(meta.len() > 1000, "{n}: tiny pdf");
    }
}

/// The `winmail.dat` builder writes what an independent TNEF reader (Debian's `tnef`, which
/// tests/run.sh installs) unpacks into the same files: the names from the Unicode MAPI
/// property (Outlook) or the GBK 8-bit one (Exchange 2003, which the tool writes as raw GBK
/// bytes), the bytes from `attAttachData` or `PR_ATTACH_DATA_OBJ`.
#[test]
fn winmail_dat_unpacks_with_the_tnef_tool() {
    use std::os::unix::ffi::OsStrExt;
    let u = UnitSpec::sample(2, 1);
    let s = &u.studios[0];
    let files = vec![
        (format!("附件1：{}推荐审批表.docx", s.leader), approval_form_docx(s, DocTool::Word)),
        (format!("{}工作室场景照.jpg", s.leader), photo_jpeg(640, 480)),
        ("附件2-推荐汇总表.xlsx".to_owned(), summary_table_xlsx(&u, SheetTool::Excel)),
    ];
    for style in [TnefStyle::Outlook, TnefStyle::Exchange2003] {
        let dir = tempfile::tempdir().unwrap();
        let dat = dir.path().join("winmail.dat");
        std::fs::write(&dat, winmail_dat(&files, style)).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let status = std::process::Command::new("tnef")
            .arg("-C")
            .arg(&out)
            .arg("-f")
            .arg(&dat)
            .status()
            .expect("the `tnef` tool (Debian package tnef; tests/run.sh installs it)");
        assert!(status.success(), "{style:?}: tnef exited with {status}");
        let mut got: Vec<(String, Vec<u8>)> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| {
                let raw = e.file_name().as_bytes().to_vec();
                let name = String::from_utf8(raw.clone()).unwrap_or_else(|_| encoding_rs::GBK.decode(&raw).0.into_owned());
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        got.sort();
        let mut want = files.clone();
        want.sort();
        assert_eq!(got.iter().map(|f| &f.0).collect::<Vec<_>>(), want.iter().map(|f| &f.0).collect::<Vec<_>>(), "{style:?}");
        assert!(got == want, "{style:?}: the bytes differ");
    }
}
