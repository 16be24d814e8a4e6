//! Writes the shipped sample inbox (`examples/inbox/*.eml`), deterministically; with
//! `--nasty`, the hostile corpus of `fixtures::nasty_mails` instead (to try with `check`).
//!
//! Usage: `cargo run --features fixtures --bin make-fixtures -- examples/inbox`
//!        `cargo run --features fixtures --bin make-fixtures -- --nasty target/nasty`

use std::path::PathBuf;

use studio_intake::fixtures::{
    DocTool, MailClient, SheetTool, SubmissionOptions, UnitSpec, ZipMode, nasty_mails,
    submission_with,
};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let nasty = args.first().is_some_and(|a| a == "--nasty");
    if nasty {
        args.remove(0);
    }
    let default_dir = if nasty { "target/nasty" } else { "examples/inbox" };
    let dir = PathBuf::from(args.first().cloned().unwrap_or_else(|| default_dir.into()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("make-fixtures: cannot create {}: {e}", dir.display());
        std::process::exit(2);
    }
    let samples = if nasty { nasty_samples() } else { samples() };
    let mut total = 0usize;
    for (name, bytes) in &samples {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, bytes) {
            eprintln!("make-fixtures: cannot write {}: {e}", path.display());
            std::process::exit(2);
        }
        total += bytes.len();
        println!("{:>9} bytes  {}", bytes.len(), path.display());
    }
    println!("{total:>9} bytes  total");
}

/// The corpus from a sender to the department address of the notice; the over-size mail
/// is just over the default 50 MiB limit.
fn nasty_samples() -> Vec<(String, Vec<u8>)> {
    let limit = studio_intake::core::Limits::default().max_message_bytes as usize;
    nasty_mails("unit@example.cn", "3764264@qq.com", limit + 1024 * 1024)
        .into_iter()
        .enumerate()
        .map(|(i, m)| (format!("{i:02}_{}.eml", m.name), m.raw))
        .collect()
}

fn samples() -> Vec<(String, Vec<u8>)> {
    let mut samples: Vec<(&str, Vec<u8>)> = Vec::new();

    // (1) A valid 2-studio county union, Outlook 2016, Word documents, Excel summary.
    let u1 = UnitSpec::sample(0, 2);
    samples.push(("01_jianwei_county_outlook_valid.eml", submission_with(&u1, MailClient::Outlook, &SubmissionOptions::default())));

    // (2) A valid 1-studio enterprise union, Foxmail, everything in a zip with GBK names.
    let u2 = UnitSpec::enterprise(3, 1);
    let o2 = SubmissionOptions { zip: ZipMode::Gbk, ..Default::default() };
    samples.push(("02_enterprise_foxmail_gbk_zip_valid.eml", submission_with(&u2, MailClient::Foxmail, &o2)));

    // (3) Problems: team of 4, materials of 1500 characters, no photo, an empty summary cell.
    let mut u3 = UnitSpec::sample(2, 1);
    {
        let s = &mut u3.studios[0];
        s.intro = s.intro.replace(&format!("现有成员{}人", s.members), "现有成员4人");
        s.members = 4;
        s.male = 3;
        s.female = 1;
        s.party = s.party.min(4);
        s.phd = 0;
        s.master = 1;
        s.bachelor = 2;
        s.college = 1;
        s.highschool = 0;
        s.phone = String::new(); // 联系电话 left empty in 附件2 (附件1 has no phone field)
    }
    let o3 = SubmissionOptions { materials_chars: Some(1500), photos: false, ..Default::default() };
    samples.push(("03_wutongqiao_qqmail_problems.eml", submission_with(&u3, MailClient::QqMail, &o3)));

    // (4) Late: received by the server on 2020-09-27, after the 2020-09-25 deadline.
    let u4 = UnitSpec::sample(1, 2);
    let o4 = SubmissionOptions {
        date: Some("Sun, 27 Sep 2020 09:12:40 +0800".into()),
        received: Some("Sun, 27 Sep 2020 09:15:02 +0800".into()),
        ..Default::default()
    };
    samples.push(("04_emeishan_applemail_late.eml", submission_with(&u4, MailClient::AppleMail, &o4)));

    // (5) Valid, 163 webmail, 附件1 typed into spreadsheets, LibreOffice documents.
    let u5 = UnitSpec::sample(5, 2);
    let o5 = SubmissionOptions { approval_as_xlsx: true, ..Default::default() };
    samples.push(("05_jiajiang_163_xlsx_forms_valid.eml", submission_with(&u5, MailClient::Webmail163, &o5)));

    // (6) Valid, a Windows client writing raw 8-bit GBK file names, WPS documents,
    //     summary table as .docx.
    let u6 = UnitSpec::sample(4, 2);
    let o6 = SubmissionOptions {
        summary_as_docx: true,
        doc_tool: Some(DocTool::Wps),
        sheet_tool: Some(SheetTool::Wps),
        ..Default::default()
    };
    samples.push(("06_shizhong_raw_gbk_names_valid.eml", submission_with(&u6, MailClient::Wps, &o6)));

    // (7) Held: a complete, valid submission for 沐川县总工会 from an address nobody registered
    //     (a staff member's private mailbox, or someone pretending): it changes nothing until
    //     the unit confirms it or staff approve the address (`studio-intake held`).
    let mut u7 = UnitSpec::sample(9, 1);
    u7.sender = "wang.private2020@example.com".into();
    samples.push(("07_muchuan_unregistered_sender_held.eml", submission_with(&u7, MailClient::QqMail, &SubmissionOptions::default())));
    samples.into_iter().map(|(n, b)| (n.to_owned(), b)).collect()
}
