//! Golden `.eml` fixtures (tests/fixtures/eml/) in the shapes real clients write, plus
//! generated hostile inputs. Payloads are small fake bytes: the mime layer must hand back
//! exactly the bytes that went in, with the right decoded names and context.

use std::io::Write as _;

use base64::Engine as _;
use studio_intake::core::mime::{self, Attachment, AutoMail, Message, MimeError};
use studio_intake::core::{Limits, Unreadable};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/eml/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(raw: &[u8]) -> Message {
    mime::parse(raw, &Limits::default()).expect("parses")
}

fn names(m: &Message) -> Vec<&str> {
    m.attachments.iter().map(|a| a.name.as_str()).collect()
}

fn att<'m>(m: &'m Message, name: &str) -> &'m Attachment {
    m.attachments
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no attachment {name:?} in {:?}", names(m)))
}

fn b64(data: &[u8]) -> String {
    let e = base64::engine::general_purpose::STANDARD.encode(data);
    e.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn gbk_word(s: &str) -> String {
    let (bytes, _, _) = encoding_rs::GBK.encode(s);
    format!(
        "=?GBK?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    )
}

/// A Foxmail-style message carrying the given (name, content type, bytes) attachments.
fn mail_with(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut s = String::from(
        "Date: Tue, 15 Sep 2020 10:20:31 +0800\r\nFrom: \"x\" <x@qq.com>\r\nTo: studio@lszgh.org.cn\r\n\
         Subject: test\r\nX-Mailer: Foxmail 7.2.18.95[cn]\r\nMime-Version: 1.0\r\n\
         Message-ID: <t@qq.com>\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"----=_001_NextPart1_=----\"\r\n\r\n\
         ------=_001_NextPart1_=----\r\nContent-Type: text/plain; charset=\"GB2312\"\r\n\r\nbody\r\n",
    );
    for (name, ct, data) in parts {
        let w = gbk_word(name);
        s.push_str(&format!(
            "------=_001_NextPart1_=----\r\nContent-Type: {ct};\r\n\tname=\"{w}\"\r\n\
             Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n\tfilename=\"{w}\"\r\n\r\n{}\r\n\r\n",
            b64(data)
        ));
    }
    s.push_str("------=_001_NextPart1_=------\r\n");
    s.into_bytes()
}

// ------------------------------------------------------------------------------------
// A tiny handwritten zip writer: zip 9's writer always sets the UTF-8 flag for non-ASCII
// names, but Windows tools (WinRAR, 360压缩, Bandizip) write raw GBK without it.
// ------------------------------------------------------------------------------------

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

struct ZEntry {
    name: Vec<u8>,
    data: Vec<u8>,
    flags: u16,
}

fn zentry(name: &[u8], data: &[u8]) -> ZEntry {
    ZEntry {
        name: name.to_vec(),
        data: data.to_vec(),
        flags: 0,
    }
}

fn gbk(s: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(s).0.into_owned()
}

/// Stored (uncompressed) zip with the given raw names and flags.
fn stored_zip(entries: &[ZEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let crc = crc32(&e.data);
        let len = e.data.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&e.flags.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x5121u16.to_le_bytes()); // date 2020-09-01
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by: DOS
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&e.flags.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0x5121u16.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, int attr, ext attr
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(&e.name);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Deflated zip written by the zip crate (ASCII names).
fn deflated_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

// ------------------------------------------------------------------------------------
// Client fixtures
// ------------------------------------------------------------------------------------

#[test]
fn outlook_2016_gb2312_names_headers_and_body() {
    let m = parse(&fixture("outlook2016.eml"));
    let from = m.from.as_ref().unwrap();
    assert_eq!(from.address, "zhangsan@qianwei.gov.cn");
    assert_eq!(from.name.as_deref(), Some("张三"));
    assert_eq!(m.subject, "犍为县推荐材料");
    assert_eq!(
        m.message_id.as_deref(),
        Some("<000001d68a3c$5f2b1e40$1d815ac0$@qianwei.gov.cn>")
    );
    assert_eq!(m.date.unwrap().to_rfc3339(), "2020-09-14T09:12:33+08:00");
    // topmost Received header, with its "(CST)" comment
    assert_eq!(
        m.received_at.unwrap().to_rfc3339(),
        "2020-09-14T09:12:40+08:00"
    );
    assert!(
        m.body_text.contains("附件是我县推荐材料"),
        "{}",
        m.body_text
    );
    assert_eq!(names(&m), ["附件1-推荐审批表.docx", "工作室场景照.jpg"]);
    let docx = att(&m, "附件1-推荐审批表.docx");
    assert_eq!(docx.data, b"fake docx: approval form ".repeat(5));
    assert_eq!(
        docx.content_type,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    assert!(docx.problem.is_none() && docx.context.is_empty() && docx.archive.is_none());
    assert_eq!(
        att(&m, "工作室场景照.jpg").data,
        (0..=255u8).collect::<Vec<_>>()
    );
    assert_eq!(m.auto, None);
}

#[test]
fn foxmail_72_gbk_encoded_words_in_quotes() {
    let m = parse(&fixture("foxmail72.eml"));
    assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("李四"));
    assert_eq!(m.subject, "沐川县总工会推荐汇总表");
    assert_eq!(m.body_text, "请查收附件。");
    assert_eq!(names(&m), ["附件2-推荐汇总表.xlsx"]);
    assert_eq!(m.attachments[0].data, b"fake xlsx: summary table");
    assert_eq!(m.auto, None, "Return-Path with an address is not a bounce");
}

#[test]
fn qq_mail_gb18030_octet_stream_with_charset() {
    let m = parse(&fixture("qqmail.eml"));
    assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("王芳"));
    assert_eq!(m.from.as_ref().unwrap().address, "123456789@qq.com");
    assert_eq!(m.subject, "峨边县推荐申报材料");
    assert_eq!(m.body_text, "申报材料见附件");
    assert_eq!(names(&m), ["附件3-申报材料（峨边）.docx"]);
    assert_eq!(m.attachments[0].content_type, "application/octet-stream");
    assert_eq!(m.attachments[0].data, b"fake docx: materials");
}

#[test]
fn apple_mail_rfc2231_inline_attachment_and_split_body() {
    let m = parse(&fixture("applemail.eml"));
    assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("王五"));
    assert_eq!(m.subject, "金口河区推荐材料");
    assert_eq!(names(&m), ["附件1-推荐审批表（王五）.docx"]);
    let a = &m.attachments[0];
    assert!(
        !a.inline_cid,
        "inline disposition without Content-ID is a plain attachment"
    );
    assert_eq!(a.data, b"fake docx from a Mac");
    assert!(
        m.body_text.contains("Hello, see attached.") && m.body_text.contains("Sent from my Mac")
    );
}

#[test]
fn webmail_163_coremail() {
    let m = parse(&fixture("163webmail.eml"));
    assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("赵六"));
    assert_eq!(m.subject, "夹江县工作室场景照");
    assert_eq!(m.date.unwrap().to_rfc3339(), "2020-09-17T16:30:22+08:00");
    assert_eq!(m.body_text, "照片见附件");
    assert_eq!(names(&m), ["夹江县木雕工作室.jpg"]);
    assert_eq!(m.attachments[0].content_type, "image/jpeg");
}

#[test]
fn outlook_forward_as_attachment_gives_context() {
    let m = parse(&fixture("outlook_forward_rfc822.eml"));
    assert_eq!(m.subject, "转发: 五通桥区马边工作室材料");
    assert_eq!(
        m.body_text, "见转发的邮件",
        "the forwarded body is not the body"
    );
    assert_eq!(names(&m), ["场景照.png"]);
    let png = &m.attachments[0];
    assert_eq!(png.context, ["五通桥区马边工作室材料"]);
    assert_eq!(png.data, b"\x89PNG\r\n\x1a\nfake png");
}

#[test]
fn raw_8bit_gbk_filename_and_subject() {
    let m = parse(&fixture("raw_gbk_filename.eml"));
    assert_eq!(m.subject, "峨眉山市推荐");
    assert_eq!(m.body_text, "正文");
    assert_eq!(names(&m), ["附件2-推荐汇总表（峨眉山）.xlsx"]);
    assert_eq!(m.attachments[0].data, b"fake xlsx raw gbk");
}

#[test]
fn rfc2231_continuation_split_mid_character() {
    let m = parse(&fixture("rfc2231_split.eml"));
    assert_eq!(names(&m), ["附件3-申报材料.docx"]);
    assert_eq!(m.attachments[0].data, b"fake docx rfc2231");
    assert_eq!(m.body_text, "see attachment");
}

#[test]
fn encoded_word_split_mid_character() {
    let m = parse(&fixture("encoded_word_split.eml"));
    assert_eq!(m.subject, "推荐审批表（沙湾区）");
    assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("推荐单位"));
    assert_eq!(names(&m), ["附件1-推荐审批表.doc"]);
    assert_eq!(m.attachments[0].data, b"fake doc split word");
}

#[test]
fn octet_stream_without_disposition_folded_name_midline_boundary_inline_logo() {
    let m = parse(&fixture("octet_stream_no_disposition.eml"));
    // mail-parser #156: "--XYZ" mid-line must not end the part.
    assert!(
        m.body_text
            .contains("the boundary --XYZ may appear in text"),
        "{}",
        m.body_text
    );
    assert!(m.body_text.contains("and this line must survive"));
    assert_eq!(m.attachments.len(), 3, "{:?}", names(&m));
    assert_eq!(att(&m, "report.docx").data, b"fake docx octet");
    // mail-parser #165: filename folded right after '='.
    assert_eq!(att(&m, "folded after equals.pdf").data, b"%PDF-1.4 fake");
    let logo = &m.attachments[2];
    assert!(logo.inline_cid);
    assert!(
        logo.name.starts_with("inline-") && logo.name.ends_with(".png"),
        "{}",
        logo.name
    );
    assert_eq!(logo.content_type, "image/png");
}

// ------------------------------------------------------------------------------------
// Automatic mail
// ------------------------------------------------------------------------------------

#[test]
fn bounce_multipart_report() {
    let m = parse(&fixture("bounce_report.eml"));
    assert_eq!(m.auto, Some(AutoMail::Bounce));
    assert_eq!(
        m.from.as_ref().unwrap().address,
        "mailer-daemon@lszgh.org.cn"
    );
}

#[test]
fn auto_submitted_auto_replied() {
    let m = parse(&fixture("auto_replied.eml"));
    assert_eq!(m.auto, Some(AutoMail::AutoSubmitted("auto-replied".into())));
    assert_eq!(m.body_text, "您好，邮件已收到。");
}

#[test]
fn qq_auto_reply_by_subject() {
    let m = parse(&fixture("qq_autoreply_subject.eml"));
    assert!(
        matches!(m.auto, Some(AutoMail::AutoReply(_))),
        "{:?}",
        m.auto
    );
}

#[test]
fn outlook_oof() {
    let m = parse(&fixture("outlook_oof.eml"));
    assert!(
        matches!(m.auto, Some(AutoMail::AutoReply(ref r)) if r.contains("all")),
        "{:?}",
        m.auto
    );
}

#[test]
fn list_and_precedence() {
    let base = "From: a@b.cn\r\nSubject: x\r\n";
    let m = parse(format!("{base}Precedence: bulk\r\n\r\nhi").as_bytes());
    assert_eq!(m.auto, Some(AutoMail::Precedence("bulk".into())));
    let m = parse(format!("{base}List-Unsubscribe: <mailto:u@b.cn>\r\n\r\nhi").as_bytes());
    assert_eq!(m.auto, Some(AutoMail::MailingList));
    let m = parse(format!("{base}Auto-Submitted: no\r\n\r\nhi").as_bytes());
    assert_eq!(m.auto, None);
    let m = parse("From: a@b.cn\r\nSubject: 自动答复: 推荐材料\r\n\r\nhi".as_bytes());
    assert!(matches!(m.auto, Some(AutoMail::AutoReply(_))));
    let m = parse("From: a@b.cn\r\nSubject: 回复: 自动回复的问题\r\n\r\nhi".as_bytes());
    assert_eq!(m.auto, None, "a human reply mentioning 自动回复 is not automatic");
    let m = parse(format!("{base}Return-Path: <>\r\n\r\nhi").as_bytes());
    assert_eq!(m.auto, Some(AutoMail::Bounce));
}

#[test]
fn reply_headers_and_received_without_weekday() {
    let raw = b"Received: from a by b; 14 Sep 2020 09:12:40 +0800 (CST)\r\n\
        From: <A@B.CN>\r\nReply-To: =?GBK?B?1cXI/Q==?= <Reply@B.cn>\r\nSubject: Re: x\r\n\
        In-Reply-To: <orig@b.cn>\r\nReferences: <r1@b.cn>\r\n <orig@b.cn>\r\nMessage-ID: no-brackets@b.cn\r\n\r\nhi\r\n";
    let m = parse(raw);
    assert_eq!(
        m.received_at.unwrap().to_rfc3339(),
        "2020-09-14T09:12:40+08:00"
    );
    assert_eq!(m.from.as_ref().unwrap().address, "a@b.cn");
    assert_eq!(m.reply_to.as_ref().unwrap().name.as_deref(), Some("张三"));
    assert_eq!(m.reply_to.as_ref().unwrap().address, "reply@b.cn");
    assert_eq!(m.in_reply_to.as_deref(), Some("<orig@b.cn>"));
    assert_eq!(m.references, ["<r1@b.cn>", "<orig@b.cn>"]);
    assert_eq!(m.message_id.as_deref(), Some("<no-brackets@b.cn>"));
}

#[test]
fn html_only_body_is_stripped() {
    let raw = "From: a@b.cn\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
        <html><head><style>p{}</style></head><body><p>第一行</p><p>a &amp; b&nbsp;c</p><script>x()</script></body></html>";
    let m = parse(raw.as_bytes());
    assert_eq!(m.body_text, "第一行\na & b c");
}

// ------------------------------------------------------------------------------------
// Archives
// ------------------------------------------------------------------------------------

#[test]
fn zip_gbk_member_names_without_utf8_flag() {
    let mut utf8 = zentry("汇总/附件2-推荐汇总表.xlsx".as_bytes(), b"summary");
    utf8.flags = 1 << 11;
    let zip = stored_zip(&[
        zentry(&gbk("犍为县/"), b""),
        zentry(&gbk("犍为县/附件1-推荐审批表.docx"), b"approval"),
        zentry(&gbk("犍为县/场景照/木雕.jpg"), b"\xff\xd8photo"),
        utf8,
        zentry(b"__MACOSX/._x.docx", b"junk"),
        zentry(b"folder/.DS_Store", b"junk"),
        zentry(b"Thumbs.db", b"junk"),
        zentry(b"../../evil.txt", b"traversal"),
        zentry("\u{202E}xcod.exe".as_bytes(), b"bidi"),
    ]);
    let m = parse(&mail_with(&[(
        "犍为县材料.zip",
        "application/x-zip-compressed",
        &zip,
    )]));
    assert_eq!(
        names(&m),
        [
            "犍为县材料.zip",
            "犍为县材料.zip/犍为县/附件1-推荐审批表.docx",
            "犍为县材料.zip/犍为县/场景照/木雕.jpg",
            "犍为县材料.zip/汇总/附件2-推荐汇总表.xlsx",
            "犍为县材料.zip/evil.txt",
            "犍为县材料.zip/xcod.exe",
        ]
    );
    assert_eq!(m.attachments[0].content_type, "application/zip");
    assert_eq!(m.attachments[0].data, zip, "the zip itself keeps its bytes");
    let photo = &m.attachments[2];
    assert_eq!(photo.file_name, "木雕.jpg");
    assert_eq!(photo.archive, Some(0));
    assert_eq!(photo.context, ["犍为县材料.zip", "犍为县", "场景照"]);
    assert_eq!(photo.content_type, "image/jpeg");
    assert_eq!(photo.data, b"\xff\xd8photo");
    assert_eq!(
        att(&m, "犍为县材料.zip/犍为县/附件1-推荐审批表.docx").data,
        b"approval"
    );
    assert!(m.attachments.iter().all(|a| a.problem.is_none()));
}

#[test]
fn zip_detected_by_magic_without_extension_and_nested_zip() {
    let inner = stored_zip(&[zentry(b"a/photo.png", b"png")]);
    let outer = stored_zip(&[
        zentry(b"inner.zip", &inner),
        zentry(b"form.docx", b"PK\x03\x04 docx"),
    ]);
    let m = parse(&mail_with(&[(
        "package",
        "application/octet-stream",
        &outer,
    )]));
    assert_eq!(
        names(&m),
        [
            "package",
            "package/inner.zip",
            "package/inner.zip/a/photo.png",
            "package/form.docx"
        ]
    );
    let photo = &m.attachments[2];
    assert_eq!(photo.archive, Some(1));
    assert_eq!(photo.context, ["package", "inner.zip", "a"]);
    // a .docx is a zip too but is never expanded
    assert!(m.attachments[3].problem.is_none());

    // nesting limit
    let limits = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    let m = mime::parse(
        &mail_with(&[("outer.zip", "application/zip", &outer)]),
        &limits,
    )
    .unwrap();
    assert_eq!(
        att(&m, "outer.zip/inner.zip").problem,
        Some(Unreadable::TooDeep { limit: 1 })
    );
}

#[test]
fn truncated_zip_is_corrupt() {
    let zip = stored_zip(&[zentry(b"a.docx", &[7u8; 300])]);
    let m = parse(&mail_with(&[("材料.zip", "application/zip", &zip[..200])]));
    assert_eq!(m.attachments.len(), 1);
    assert!(
        matches!(m.attachments[0].problem, Some(Unreadable::Corrupt { .. })),
        "{:?}",
        m.attachments[0].problem
    );
}

#[test]
fn zip_bomb_by_declared_size() {
    // 3 MB of zeros compress to a few KB; limit 1 MB.
    let zip = deflated_zip(&[("zeros.bin", vec![0u8; 3 * 1024 * 1024])]);
    assert!(zip.len() < 20_000);
    let limits = Limits {
        max_decompressed_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let m = mime::parse(
        &mail_with(&[("bomb.zip", "application/zip", &zip)]),
        &limits,
    )
    .unwrap();
    assert_eq!(m.attachments.len(), 1, "members of a bomb are not expanded");
    assert!(matches!(
        m.attachments[0].problem,
        Some(Unreadable::ArchiveBomb { .. })
    ));
}

#[test]
fn zip_bomb_with_lying_sizes_is_capped_while_inflating() {
    let mut zip = deflated_zip(&[("zeros.bin", vec![0u8; 4 * 1024 * 1024])]);
    // Patch the declared uncompressed size (local header @22, central header @24) to 100.
    let cd = zip
        .windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    zip[22..26].copy_from_slice(&100u32.to_le_bytes());
    zip[cd + 24..cd + 28].copy_from_slice(&100u32.to_le_bytes());
    let limits = Limits {
        max_decompressed_bytes: 1024 * 1024,
        max_attachment_bytes: 512 * 1024,
        ..Limits::default()
    };
    let m = mime::parse(
        &mail_with(&[("liar.zip", "application/zip", &zip)]),
        &limits,
    )
    .unwrap();
    let total: usize = m.attachments.iter().skip(1).map(|a| a.data.len()).sum();
    assert!(
        total <= 512 * 1024,
        "inflated {total} bytes despite the cap"
    );
    let member_problem = m.attachments.get(1).and_then(|a| a.problem.clone());
    assert!(
        m.attachments[0].problem.is_some() || member_problem.is_some(),
        "{:?}",
        m.attachments
    );
}

#[test]
fn zip_with_too_many_members() {
    let entries: Vec<ZEntry> = (0..30)
        .map(|i| zentry(format!("f{i}.txt").as_bytes(), b"x"))
        .collect();
    let limits = Limits {
        max_archive_members: 20,
        ..Limits::default()
    };
    let m = mime::parse(
        &mail_with(&[("many.zip", "application/zip", &stored_zip(&entries))]),
        &limits,
    )
    .unwrap();
    assert_eq!(m.attachments.len(), 1);
    assert!(matches!(
        m.attachments[0].problem,
        Some(Unreadable::ArchiveBomb { .. })
    ));
}

#[test]
fn encrypted_zip() {
    let mut e = zentry(&gbk("附件1.docx"), b"012345678901secret");
    e.flags = 1; // encrypted
    let m = parse(&mail_with(&[(
        "加密.zip",
        "application/zip",
        &stored_zip(&[e]),
    )]));
    assert_eq!(m.attachments[0].problem, Some(Unreadable::Encrypted));
    assert_eq!(m.attachments[1].name, "加密.zip/附件1.docx");
    assert_eq!(m.attachments[1].problem, Some(Unreadable::Encrypted));
}

#[test]
fn rar_7z_gz_are_unsupported() {
    let m = parse(&mail_with(&[
        (
            "材料.rar",
            "application/octet-stream",
            b"Rar!\x1a\x07\x01\x00rest",
        ),
        (
            "noext",
            "application/octet-stream",
            b"7z\xbc\xaf\x27\x1c rest",
        ),
        ("材料.tar.gz", "application/gzip", b"\x1f\x8b\x08rest"),
    ]));
    let formats: Vec<String> = m
        .attachments
        .iter()
        .map(|a| match &a.problem {
            Some(Unreadable::Unsupported { format, resend_as }) => {
                assert_eq!(resend_as, "ZIP压缩包或直接以附件发送");
                format.clone()
            }
            other => panic!("{}: {other:?}", a.name),
        })
        .collect();
    assert_eq!(formats, ["RAR压缩包", "7z压缩包", "tar.gz压缩包"]);
}

#[test]
fn eml_attachment_is_recursed() {
    let inner = mail_with(&[("照片.jpg", "image/jpeg", b"jpeg")]);
    let inner = String::from_utf8(inner)
        .unwrap()
        .replace("Subject: test", "Subject: inner subject");
    let m = parse(&mail_with(&[(
        "转发.eml",
        "application/octet-stream",
        inner.as_bytes(),
    )]));
    assert_eq!(names(&m), ["照片.jpg"]);
    assert_eq!(m.attachments[0].context, ["inner subject"]);
}

// ------------------------------------------------------------------------------------
// Limits and bad input
// ------------------------------------------------------------------------------------

#[test]
fn empty_and_oversized_attachments() {
    let big = vec![1u8; 4096];
    let limits = Limits {
        max_attachment_bytes: 1000,
        ..Limits::default()
    };
    let m = mime::parse(
        &mail_with(&[
            ("空.docx", "application/msword", b""),
            ("大.jpg", "image/jpeg", &big),
        ]),
        &limits,
    )
    .unwrap();
    assert_eq!(att(&m, "空.docx").problem, Some(Unreadable::Empty));
    let big = att(&m, "大.jpg");
    assert_eq!(big.problem, Some(Unreadable::TooLarge { limit: 1000 }));
    assert!(big.data.is_empty());
}

#[test]
fn malformed_base64_is_corrupt() {
    let raw = "From: a@b.cn\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
        Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0x!!**not base64 at all\r\n--b--\r\n";
    let m = parse(raw.as_bytes());
    assert!(
        matches!(m.attachments[0].problem, Some(Unreadable::Corrupt { .. })),
        "{:?}",
        m.attachments
    );
}

#[test]
fn deep_message_nesting_stops_at_the_limit() {
    let mut msg = mail_with(&[("deep.docx", "application/msword", b"deep")]);
    for level in 0..10 {
        let mut outer = format!(
            "From: a@b.cn\r\nSubject: level {level}\r\nContent-Type: multipart/mixed; boundary=\"L{level}\"\r\n\r\n\
             --L{level}\r\nContent-Type: message/rfc822\r\n\r\n"
        )
        .into_bytes();
        outer.extend_from_slice(&msg);
        outer.extend_from_slice(format!("\r\n--L{level}--\r\n").as_bytes());
        msg = outer;
    }
    let m = parse(&msg);
    assert!(
        m.attachments
            .iter()
            .any(|a| a.problem == Some(Unreadable::TooDeep { limit: 5 })),
        "{:?}",
        names(&m)
    );
    assert!(m.attachments.iter().all(|a| a.name != "deep.docx"));
}

#[test]
fn ten_thousand_parts_stop_at_max_parts() {
    let mut s = String::from(
        "From: a@b.cn\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
    );
    for i in 0..10_000 {
        s.push_str(&format!(
            "--b\r\nContent-Type: application/octet-stream; name=f{i}.bin\r\n\r\nx\r\n"
        ));
    }
    s.push_str("--b--\r\n");
    let limits = Limits {
        max_parts: 100,
        ..Limits::default()
    };
    let m = mime::parse(s.as_bytes(), &limits).unwrap();
    assert!(m.parts_truncated);
    assert_eq!(
        m.attachments.len(),
        99,
        "the multipart container counts as a part"
    );
}

#[test]
fn deep_multipart_nesting_does_not_overflow() {
    let mut s = String::from("From: a@b.cn\r\nSubject: deep\r\n");
    for i in 0..5000 {
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    s.push_str("Content-Type: text/plain\r\n\r\nbottom\r\n");
    let limits = Limits {
        max_parts: 100_000,
        ..Limits::default()
    };
    assert!(mime::parse(s.as_bytes(), &limits).is_ok());
}

#[test]
fn not_a_message() {
    for raw in [
        &b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"[..],
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00random zip bytes",
        b"",
        b"\x00\x01\x02\xff\xfe garbage: \x00 more",
        b"just a line of text\nand another\n",
    ] {
        assert!(
            matches!(
                mime::parse(raw, &Limits::default()),
                Err(MimeError::NotAMessage(_))
            ),
            "{raw:?}"
        );
    }
}

#[test]
fn message_over_the_size_limit() {
    let limits = Limits {
        max_message_bytes: 100,
        ..Limits::default()
    };
    let raw = mail_with(&[("a.txt", "text/plain", &[b'a'; 200])]);
    assert_eq!(
        mime::parse(&raw, &limits).unwrap_err(),
        MimeError::TooLarge { limit: 100 }
    );
}

#[test]
fn dangerous_mime_names_are_cleaned() {
    let raw = "From: a@b.cn\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: application/octet-stream; name=\"..\\\\..\\\\win.ini\"\r\n\r\nx\r\n\
        --b\r\nContent-Disposition: attachment; filename*=utf-8''%E2%80%AEfdp.exe\r\n\r\ny\r\n--b--\r\n";
    let m = parse(raw.as_bytes());
    assert_eq!(names(&m), ["win.ini", "fdp.exe"]);
}

// ------------------------------------------------------------------------------------
// No panics, whatever the input
// ------------------------------------------------------------------------------------

const FIXTURES: &[&str] = &[
    "outlook2016.eml",
    "foxmail72.eml",
    "qqmail.eml",
    "applemail.eml",
    "163webmail.eml",
    "outlook_forward_rfc822.eml",
    "raw_gbk_filename.eml",
    "rfc2231_split.eml",
    "encoded_word_split.eml",
    "octet_stream_no_disposition.eml",
    "bounce_report.eml",
    "auto_replied.eml",
    "qq_autoreply_subject.eml",
    "outlook_oof.eml",
];

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = mime::parse(&raw, &Limits::default());
        }

        #[test]
        fn header_like_bytes_never_panic(
            lines in proptest::collection::vec("[ -~\t]{0,60}|=\\?(gbk|GB2312|utf-8)\\?[BbQq]\\?[A-Za-z0-9+/=%_]{0,20}\\?=|--b|Content-Type: multipart/mixed; boundary=b|filename\\*[0-9]\\*=gbk''%[A-F0-9]{2}", 0..40)
        ) {
            let raw = format!("From: a@b.cn\r\n{}", lines.join("\r\n"));
            let _ = mime::parse(raw.as_bytes(), &Limits::default());
        }

        #[test]
        fn mutated_real_messages_never_panic(
            which in 0..FIXTURES.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..12),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut raw = fixture(FIXTURES[which]);
            for (at, byte, op) in edits {
                let i = at.index(raw.len().max(1)).min(raw.len());
                match op {
                    0 if i < raw.len() => raw[i] = byte,
                    1 => raw.insert(i, byte),
                    _ if i < raw.len() => { raw.remove(i); }
                    _ => {}
                }
            }
            let _ = mime::parse(&raw, &Limits::default());
            let keep = cut.index(raw.len().max(1));
            let _ = mime::parse(&raw[..keep], &Limits::default());
        }

        #[test]
        fn mutated_zips_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut zip = stored_zip(&[zentry(&gbk("文件夹/附件.docx"), b"data data"), zentry(b"b.txt", b"more")]);
            for (at, byte) in edits {
                let i = at.index(zip.len());
                zip[i] = byte;
            }
            let _ = mime::parse(&mail_with(&[("x.zip", "application/zip", &zip)]), &Limits::default());
        }
    }
}

// ------------------------------------------------------------------------------------
// Outlook's winmail.dat (TNEF)
// ------------------------------------------------------------------------------------

fn tnef_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("附件1：市中区张明劳模创新工作室推荐审批表.docx".to_owned(), b"PK\x03\x04 approval form bytes".to_vec()),
        ("张明工作室场景照.jpg".to_owned(), vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 5]),
        ("附件2-推荐汇总表.xlsx".to_owned(), b"PK\x03\x04 summary table bytes".to_vec()),
    ]
}

#[test]
fn outlook_rich_text_mail_opens_its_winmail_dat_like_a_zip() {
    use studio_intake::fixtures::{TnefStyle, winmail_dat};
    let files = tnef_files();
    for style in [TnefStyle::Outlook, TnefStyle::Exchange2003] {
        let dat = winmail_dat(&files, style);
        // Outlook names it winmail.dat with application/ms-tnef; some gateways send
        // application/octet-stream or rename it (ATT00001.dat): the signature decides.
        for (name, ct) in [("winmail.dat", "application/ms-tnef"), ("ATT00001.dat", "application/octet-stream")] {
            let m = parse(&mail_with(&[(name, ct, &dat)]));
            let container = att(&m, name);
            assert_eq!(container.content_type, "application/ms-tnef");
            assert!(container.problem.is_none(), "{style:?}: {:?}", container.problem);
            for (file, data) in &files {
                // Named as the sender named them: the winmail.dat is Outlook's, not theirs.
                let a = att(&m, file);
                assert_eq!(&a.data, data, "{style:?} {file}");
                assert_eq!(a.file_name, *file);
                assert_eq!(a.context, vec![name.to_owned()]);
                assert!(a.archive.is_some() && a.problem.is_none());
            }
            assert_eq!(m.attachments.len(), files.len() + 1, "{style:?}: {:?}", names(&m));
        }
    }
}

#[test]
fn a_damaged_winmail_dat_keeps_what_came_whole_and_never_panics() {
    use studio_intake::fixtures::{TnefStyle, winmail_dat};
    let files = tnef_files();
    let dat = winmail_dat(&files, TnefStyle::Outlook);
    // Cut inside the second attachment's bytes: the first is whole, the second is not there,
    // the container is damaged.
    let second = dat.windows(files[1].1.len()).position(|w| w == files[1].1.as_slice()).unwrap();
    let m = parse(&mail_with(&[("winmail.dat", "application/ms-tnef", &dat[..second + 3])]));
    assert!(matches!(att(&m, "winmail.dat").problem, Some(Unreadable::Corrupt { .. })));
    assert!(m.attachments.iter().any(|a| a.name == files[0].0 && a.data == files[0].1), "{:?}", names(&m));
    assert!(!m.attachments.iter().any(|a| a.name.ends_with(".jpg")), "{:?}", names(&m));
    // Cut before any attachment is whole: only the damaged container.
    let first = dat.windows(files[0].1.len()).position(|w| w == files[0].1.as_slice()).unwrap();
    let m = parse(&mail_with(&[("winmail.dat", "application/ms-tnef", &dat[..first + 3])]));
    assert!(matches!(att(&m, "winmail.dat").problem, Some(Unreadable::Corrupt { .. })), "{:?}", m.attachments);
    assert_eq!(m.attachments.len(), 1, "{:?}", names(&m));
    // More attachments than an archive may hold: stopped, said so.
    let many: Vec<(String, Vec<u8>)> = (0..40).map(|i| (format!("{i}.txt"), vec![b'x'; 3])).collect();
    let limits = Limits { max_archive_members: 10, ..Limits::default() };
    let m = mime::parse(&mail_with(&[("winmail.dat", "application/ms-tnef", &winmail_dat(&many, TnefStyle::Outlook))]), &limits).unwrap();
    assert!(matches!(att(&m, "winmail.dat").problem, Some(Unreadable::ArchiveBomb { .. })));
    assert!(m.attachments.len() <= 11);
    // Every prefix, and every byte set to 0xFF or 0x7F in turn (lengths and counts that lie):
    // no panic, no member larger than the stream.
    for cut in 0..dat.len() {
        let m = parse(&mail_with(&[("winmail.dat", "application/ms-tnef", &dat[..cut])]));
        assert!(m.attachments.iter().all(|a| a.data.len() <= dat.len()));
    }
    for i in 0..dat.len() {
        for b in [0xFF, 0x7F] {
            let mut bad = dat.clone();
            bad[i] = b;
            let m = parse(&mail_with(&[("winmail.dat", "application/ms-tnef", &bad)]));
            assert!(m.attachments.iter().all(|a| a.data.len() <= dat.len()));
        }
    }
}
