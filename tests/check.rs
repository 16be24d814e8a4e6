//! The pure core end to end: generated submissions (real .docx/.xlsx/JPEG/PNG in the styles
//! of real mail clients) → findings. Every rule code has a test that triggers it; the valid
//! submissions of every client must come out with no finding at all.

use studio_intake::config::{Config, Unit, UnitKind};
use studio_intake::core::findings::Code;
use studio_intake::convert::Converters;
use studio_intake::core::rules::KnownStudio;
use studio_intake::core::{self, Context, Outcome, Verdict};
use studio_intake::fixtures::{
    self, DocTool, MailClient, MailSpec, SheetTool, StudioSpec, SubmissionOptions, UnitSpec, ZipMode,
};

const CLIENTS: [MailClient; 7] = [
    MailClient::Outlook,
    MailClient::OutlookRtf,
    MailClient::Foxmail,
    MailClient::QqMail,
    MailClient::AppleMail,
    MailClient::Webmail163,
    MailClient::Wps,
];

fn config_for(u: &UnitSpec) -> Config {
    let mut c = Config::builtin();
    c.units.retain(|x| x.name != u.unit);
    c.units.push(Unit { name: u.unit.clone(), kind: UnitKind::County, senders: vec![u.sender.clone()] });
    c
}

fn converters() -> &'static Converters {
    static CONVERTERS: std::sync::OnceLock<Converters> = std::sync::OnceLock::new();
    CONVERTERS.get_or_init(|| Converters::detect(std::time::Duration::from_secs(60)))
}

fn process_with<'a>(raw: &[u8], config: &'a Config, tweak: impl FnOnce(&mut Context<'a>)) -> Outcome {
    let mut ctx = Context::new(config.policy(), converters());
    tweak(&mut ctx);
    core::process(raw, &ctx).expect("a mail")
}

fn process(u: &UnitSpec, raw: &[u8]) -> Outcome {
    process_with(raw, &config_for(u), |_| {})
}


fn show(o: &Outcome) -> String {
    let mut s = String::new();
    for f in &o.findings {
        s.push_str(&format!("\n  {} [{}] {} @ {} found={} expected={}", f.code.as_str(), f.studio.as_deref().unwrap_or("-"), f.message, f.location, f.found, f.expected));
    }
    for a in &o.submission.attachments {
        s.push_str(&format!("\n  attachment {} {:?} {:?}", a.file, a.kind, a.studio));
    }
    s
}

fn has(o: &Outcome, code: Code) -> bool {
    o.findings.iter().any(|f| f.code == code)
}

fn assert_only(o: &Outcome, code: Code) {
    assert!(has(o, code), "expected {} in:{}", code.as_str(), show(o));
    let others: Vec<_> = o.findings.iter().filter(|f| f.code != code).collect();
    assert!(others.is_empty(), "expected only {} in:{}", code.as_str(), show(o));
}

/// A valid submission has no finding but the warning for each leader who is not titled
/// (the samples, like real units, recommend some of those).
fn assert_clean(u: &UnitSpec, o: &Outcome, what: &str) {
    let untitled = u.studios.iter().filter(|s| s.titled.trim() == "否").count();
    let warned = o.findings.iter().filter(|f| f.code == Code::FormLeaderNotTitled).count();
    let others = o.findings.iter().filter(|f| f.code != Code::FormLeaderNotTitled).count();
    assert!(others == 0 && warned == untitled, "{what}:{}", show(o));
}

fn unit(studios: usize) -> UnitSpec {
    UnitSpec::sample(1, studios)
}

fn mail_with(u: &UnitSpec, client: MailClient, o: &SubmissionOptions, edit: impl FnOnce(&mut MailSpec)) -> Vec<u8> {
    let mut m = fixtures::submission_mail(u, client, o);
    edit(&mut m);
    fixtures::build_eml(&m)
}

fn with_studio(edit: impl FnOnce(&mut StudioSpec)) -> (UnitSpec, Vec<u8>) {
    let mut u = unit(2);
    edit(&mut u.studios[0]);
    let raw = fixtures::submission(&u, MailClient::Outlook);
    (u, raw)
}

#[test]
fn valid_submissions_of_every_client_have_no_findings() {
    for (i, client) in CLIENTS.iter().enumerate() {
        for studios in [1, 3] {
            let u = UnitSpec::sample(i, studios);
            let o = process(&u, &fixtures::submission(&u, *client));
            assert_clean(&u, &o, &format!("{client:?} with {studios} studios"));
            assert_eq!(o.verdict(), Verdict::Accepted);
            assert_eq!(o.submission.studios.len(), studios, "{client:?}:{}", show(&o));
            assert!(o.submission.studios.iter().all(|s| s.has_approval_form && s.has_summary_row && s.has_materials && s.has_photo));
            assert_eq!(o.unit.as_deref(), Some(u.unit.as_str()));
        }
    }
}

#[test]
fn valid_submissions_in_every_tool_and_packaging() {
    let variants: Vec<SubmissionOptions> = vec![
        SubmissionOptions { zip: ZipMode::Gbk, ..Default::default() },
        SubmissionOptions { zip: ZipMode::Utf8, ..Default::default() },
        SubmissionOptions { approval_as_xlsx: true, sheet_tool: Some(SheetTool::Excel), ..Default::default() },
        SubmissionOptions { approval_as_xlsx: true, sheet_tool: Some(SheetTool::Wps), ..Default::default() },
        SubmissionOptions { approval_as_xlsx: true, sheet_tool: Some(SheetTool::LibreOffice), ..Default::default() },
        SubmissionOptions { summary_as_docx: true, doc_tool: Some(DocTool::Word), ..Default::default() },
        SubmissionOptions { summary_as_docx: true, doc_tool: Some(DocTool::Wps), ..Default::default() },
        SubmissionOptions { doc_tool: Some(DocTool::LibreOffice), sheet_tool: Some(SheetTool::LibreOffice), ..Default::default() },
    ];
    for (k, o) in variants.iter().enumerate() {
        let u = UnitSpec::enterprise(k, 2);
        let out = process(&u, &fixtures::submission_with(&u, MailClient::Foxmail, o));
        assert_clean(&u, &out, &format!("variant {k} {o:?}"));
        assert_eq!(out.submission.studios.len(), 2, "variant {k}:{}", show(&out));
    }
}

#[test]
fn json_has_the_interface_shape() {
    let u = unit(1);
    let o = process(&u, &fixtures::submission(&u, MailClient::QqMail));
    let v = serde_json::to_value(core::report::check_json("x.eml", &o)).unwrap();
    for key in ["source", "message_id", "sender", "unit", "received_at", "verdict", "attachments", "studios", "findings"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["verdict"], "accepted");
    assert!(v["message_id"].as_str().unwrap().starts_with('<'));
    let studio = &v["studios"][0];
    for key in ["name", "unit", "leader", "created", "members", "rank", "has_approval_form", "has_summary_row", "has_materials", "has_photo"] {
        assert!(studio.get(key).is_some(), "studio missing {key}");
    }
    let kinds: Vec<&str> = v["attachments"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"approval_form") && kinds.contains(&"summary_table") && kinds.contains(&"materials") && kinds.contains(&"photo"), "{kinds:?}");
}

// ---- submission.* ----

#[test]
fn late_by_the_received_header_and_by_the_server_time() {
    let u = unit(1);
    let late = SubmissionOptions { date: Some("Sun, 27 Sep 2020 09:00:00 +0800".into()), received: Some("Sun, 27 Sep 2020 09:00:05 +0800".into()), ..Default::default() };
    assert_only(&process(&u, &fixtures::submission_with(&u, MailClient::AppleMail, &late)), Code::SubmissionLate);
    // One second before the deadline is on time; the sender's clock does not count.
    let edge = SubmissionOptions { date: Some("Sat, 26 Sep 2020 09:00:00 +0800".into()), received: Some("Fri, 25 Sep 2020 23:59:59 +0800".into()), ..Default::default() };
    assert!(process(&u, &fixtures::submission_with(&u, MailClient::AppleMail, &edge)).findings.is_empty());
    // The server's receipt time wins over the headers.
    let raw = fixtures::submission(&u, MailClient::Outlook);
    let o = process_with(&raw, &config_for(&u), |c| c.received_at = Some(chrono::DateTime::parse_from_rfc3339("2020-09-26T00:00:00+08:00").unwrap()));
    assert_only(&o, Code::SubmissionLate);
    // A receipt stamped in UTC is said in Beijing time, as the deadline is.
    let utc = SubmissionOptions { received: Some("Fri, 25 Sep 2020 16:05:00 +0000".into()), ..Default::default() };
    let o = process(&u, &fixtures::submission_with(&u, MailClient::AppleMail, &utc));
    assert_only(&o, Code::SubmissionLate);
    assert!(o.findings[0].message.contains("本邮件于2020年09月26日 00:05送达"), "{}", o.findings[0].message);
    assert_eq!(o.findings[0].found, "2020-09-26T00:05:00+08:00");
}

#[test]
fn no_summary_table() {
    let u = unit(1);
    let o = process(&u, &fixtures::submission_with(&u, MailClient::Outlook, &SubmissionOptions { no_summary: true, ..Default::default() }));
    assert_only(&o, Code::SubmissionNoSummaryTable);
    // One already on file from this unit (its dossier) is enough.
    let config = config_for(&u);
    let first = process(&u, &fixtures::submission(&u, MailClient::Outlook));
    let raw = fixtures::submission_with(&u, MailClient::Outlook, &SubmissionOptions { no_summary: true, ..Default::default() });
    let ctx = Context::new(config.policy(), converters());
    let again = core::judge(core::read(&raw, &ctx).unwrap(), &first.dossier, &ctx);
    assert!(again.findings.is_empty(), "{}", show(&again));
}

fn drop_attachment(m: &mut MailSpec, pred: impl Fn(&str) -> bool) {
    let before = m.attachments.len();
    let mut removed = false;
    m.attachments.retain(|(n, _)| {
        if !removed && pred(n) {
            removed = true;
            false
        } else {
            true
        }
    });
    assert_eq!(m.attachments.len() + 1, before, "nothing removed");
}

#[test]
fn missing_approval_form_materials_and_photo() {
    let u = unit(2);
    let leader = u.studios[1].leader.clone();
    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| drop_attachment(m, |n| n.contains("审批表") && n.contains(&leader)));
    let o = process(&u, &raw);
    assert_only(&o, Code::SubmissionMissingApprovalForm);
    assert_eq!(o.findings[0].studio.as_deref(), Some(u.studios[1].name.as_str()));

    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| drop_attachment(m, |n| n.contains("申报材料") && n.contains(&leader)));
    let o = process(&u, &raw);
    assert_only(&o, Code::SubmissionMissingMaterials);
    assert_eq!(o.findings[0].studio.as_deref(), Some(u.studios[1].name.as_str()));

    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| drop_attachment(m, |n| n.contains("场景照") && n.contains(&leader)));
    let o = process(&u, &raw);
    assert_only(&o, Code::SubmissionMissingPhoto);
    assert_eq!(o.findings[0].studio.as_deref(), Some(u.studios[1].name.as_str()));
}

/// Senders attach the files and, to be safe, a zip of the same files: one studio each,
/// no doubled findings.
#[test]
fn the_same_forms_loose_and_zipped_are_one_submission() {
    let u = unit(2);
    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| {
        let zip = fixtures::zip_archive(&m.attachments, false);
        m.attachments.push(("全部材料.zip".into(), zip));
    });
    let o = process(&u, &raw);
    assert_clean(&u, &o, "loose and zipped");
    assert_eq!(o.submission.studios.len(), 2, "{}", show(&o));
}

#[test]
fn a_lone_studio_owns_every_photo_whatever_its_name() {
    let u = unit(1);
    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| {
        for (n, _) in m.attachments.iter_mut() {
            if n.ends_with(".jpg") {
                *n = "IMG_20200915_101010.jpg".into();
            }
        }
    });
    assert!(process(&u, &raw).findings.is_empty());
}

#[test]
fn unreadable_attachments_each_get_a_finding() {
    let u = unit(1);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("其他材料.rar", b"Rar!\x1a\x07\x01\x00garbage".to_vec()),
        ("空文件.docx", Vec::new()),
        ("补充说明.docx", fixtures::approval_form_docx(&u.studios[0], DocTool::Word)[..900].to_vec()),
    ];
    for (name, data) in cases {
        let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| m.attachments.push((name.to_owned(), data.clone())));
        let o = process(&u, &raw);
        assert_only(&o, Code::SubmissionUnreadableAttachment);
        assert_eq!(o.findings[0].file.as_deref(), Some(name), "{}", show(&o));
        assert!(!o.findings[0].message.is_empty());
    }
}

#[test]
fn unknown_sender_is_a_warning() {
    let mut u = unit(1);
    u.sender = "someone@unlisted.example".into();
    let o = process_with(&fixtures::submission(&u, MailClient::Outlook), &Config::builtin(), |_| {});
    assert_only(&o, Code::SubmissionUnknownSender);
    assert_eq!(o.verdict(), Verdict::Accepted);
    // The unit is still known from the summary table's 推荐单位.
    assert_eq!(o.unit.as_deref(), Some(u.unit.as_str()));
}

#[test]
fn already_named_and_duplicate_studio() {
    let u = unit(1);
    let raw = fixtures::submission(&u, MailClient::Outlook);
    let mut c = config_for(&u);
    c.campaign.named_studios.push(u.studios[0].name.clone());
    assert_only(&process_with(&raw, &c, |_| {}), Code::SubmissionAlreadyNamed);

    let others = vec![KnownStudio { unit: "乐山电力股份有限公司工会".into(), name: u.studios[0].name.clone() }];
    let o = process_with(&raw, &config_for(&u), |c| c.others = &others);
    assert_only(&o, Code::SubmissionDuplicateStudio);
    let same_unit = vec![KnownStudio { unit: u.unit.clone(), name: u.studios[0].name.clone() }];
    assert!(process_with(&raw, &config_for(&u), |c| c.others = &same_unit).findings.is_empty());
}

// ---- form.* ----

#[test]
fn field_missing_names_the_field() {
    let (u, raw) = with_studio(|s| s.native_place = String::new());
    let o = process(&u, &raw);
    assert_only(&o, Code::FormFieldMissing);
    assert!(o.findings[0].message.contains("籍贯"), "{}", show(&o));
    assert!(o.findings[0].location.contains("籍贯"));
    // Each empty field is its own finding.
    let (u, raw) = with_studio(|s| {
        s.native_place = String::new();
        s.ethnicity = String::new();
    });
    assert_eq!(process(&u, &raw).findings.len(), 2);
    // A blank of a fill-in sentence is named as the form prints it, not “平均年龄岁”.
    let (u, raw) = with_studio(|s| s.avg_age = String::new());
    let o = process(&u, &raw);
    assert_only(&o, Code::FormFieldMissing);
    assert!(o.findings[0].message.contains("“平均年龄（　）岁”未填写"), "{}", show(&o));
}

#[test]
fn when_titled_is_not_required_when_not_titled() {
    let (u, raw) = with_studio(|s| {
        s.titled = "否".into();
        s.when_titled = String::new();
    });
    assert_only(&process(&u, &raw), Code::FormLeaderNotTitled);
    let (u, raw) = with_studio(|s| s.when_titled = String::new());
    assert_only(&process(&u, &raw), Code::FormFieldMissing);
}

#[test]
fn name_format() {
    let (u, raw) = with_studio(|s| s.name = format!("{}{}创新工作室", s.unit_short(), s.leader));
    let o = process(&u, &raw);
    assert!(has(&o, Code::FormNameFormat), "{}", show(&o));
    let (u, raw) = with_studio(|s| s.name = format!("{}李雷劳模和工匠人才创新工作室", s.unit_short()));
    assert!(has(&process(&u, &raw), Code::FormNameFormat));
}

#[test]
fn team_too_small() {
    let (u, raw) = with_studio(|s| {
        s.members = 4;
        s.male = 3;
        s.female = 1;
        (s.phd, s.master, s.bachelor, s.college, s.highschool) = (0, 0, 2, 1, 1);
        s.party = s.party.min(4);
    });
    let o = process(&u, &raw);
    assert_only(&o, Code::FormTeamTooSmall);
    assert_eq!(o.findings[0].found, "4");
    let (u, raw) = with_studio(|s| {
        s.members = 5;
        s.male = 4;
        s.female = 1;
        (s.phd, s.master, s.bachelor, s.college, s.highschool) = (0, 0, 3, 1, 1);
        s.party = s.party.min(5);
    });
    assert!(process(&u, &raw).findings.is_empty(), "5 is enough");
}

#[test]
fn too_young() {
    let (u, raw) = with_studio(|s| s.created = "2018年10月".into());
    assert_only(&process(&u, &raw), Code::FormTooYoung);
    let (u, raw) = with_studio(|s| s.created = "2018.9".into());
    assert!(process(&u, &raw).findings.is_empty(), "September 2018 may be before the 25th");
}

#[test]
fn member_sums() {
    let (u, raw) = with_studio(|s| s.female += 1);
    let o = process(&u, &raw);
    assert_only(&o, Code::FormMemberSums);
    let (u, raw) = with_studio(|s| s.bachelor += 1);
    assert_only(&process(&u, &raw), Code::FormMemberSums);
}

#[test]
fn award_sums() {
    let (u, raw) = with_studio(|s| s.awards_total += 1);
    assert_only(&process(&u, &raw), Code::FormAwardSums);
}

#[test]
fn no_facilities_and_no_achievement() {
    let (u, raw) = with_studio(|s| s.area_m2 = "0".into());
    assert_only(&process(&u, &raw), Code::FormNoFacilities);
    let (u, raw) = with_studio(|s| s.funding_wan = "0".into());
    assert_only(&process(&u, &raw), Code::FormNoFacilities);
    let (u, raw) = with_studio(|s| s.achievements = "0".into());
    assert_only(&process(&u, &raw), Code::FormNoAchievement);
}

#[test]
fn intro_too_long() {
    let (u, raw) = with_studio(|s| s.intro = "工作室坚持创新驱动发展。".repeat(60));
    let o = process(&u, &raw);
    assert_only(&o, Code::FormIntroTooLong);
    assert_eq!(o.findings[0].found, "720字");
    let (u, raw) = with_studio(|s| s.intro = "工作室坚持创新驱动发展。".repeat(50));
    assert!(process(&u, &raw).findings.is_empty(), "600 is allowed");
}

#[test]
fn implausible_average_age() {
    let (u, raw) = with_studio(|s| s.avg_age = "12".into());
    assert_only(&process(&u, &raw), Code::FormImplausibleValue);
}

#[test]
fn form_sent_as_a_photo_is_not_typed() {
    let u = unit(1);
    let raw = mail_with(&u, MailClient::QqMail, &Default::default(), |m| {
        drop_attachment(m, |n| n.contains("审批表"));
        m.attachments.push((format!("{}工作室推荐审批表.jpg", u.studios[0].leader), fixtures::photo_jpeg(1200, 1600)));
    });
    let o = process(&u, &raw);
    // The scan is not the form; the summary table row still names the studio.
    assert_only(&o, Code::FormNotTyped);
}

// ---- summary.* ----

fn replace_summary(m: &mut MailSpec, data: Vec<u8>) {
    let slot = m.attachments.iter_mut().find(|(n, _)| n.contains("汇总表")).expect("summary attachment");
    slot.1 = data;
}

#[test]
fn summary_header_and_cells() {
    let mut u = unit(2);
    u.filler = String::new();
    assert_only(&process(&u, &fixtures::submission(&u, MailClient::Outlook)), Code::SummaryHeaderMissing);

    let (u, raw) = with_studio(|s| s.phone = String::new());
    let o = process(&u, &raw);
    assert_only(&o, Code::SummaryCellMissing);
    assert!(o.findings[0].location.contains("联系电话"), "{}", show(&o));
}

#[test]
fn summary_mismatch_and_unlisted() {
    let u = unit(2);
    let mut other = u.clone();
    other.studios[0].area_m2 = "999".into();
    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| replace_summary(m, fixtures::summary_table_xlsx(&other, SheetTool::Excel)));
    let o = process(&u, &raw);
    assert_only(&o, Code::SummaryMismatch);
    assert_eq!(o.findings[0].found, "999");

    let mut fewer = u.clone();
    fewer.studios.truncate(1);
    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| replace_summary(m, fixtures::summary_table_xlsx(&fewer, SheetTool::Excel)));
    assert_only(&process(&u, &raw), Code::SummaryUnlistedStudio);
}

#[test]
fn summary_not_ranked() {
    use rust_xlsxwriter::Workbook;
    let u = unit(2);
    // A plain one-row-header table, as some units retype it, with both studios ranked 1.
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write(0, 0, "乐山市劳模和工匠人才创新工作室推荐汇总表").unwrap();
    ws.write(1, 0, format!("推荐单位（盖章）：{}    填报人：{}", u.unit, u.filler)).unwrap();
    let header = ["序号", "创新工作室所属单位名称", "创新工作室名称", "创建时间", "姓名", "工作单位及职务", "是否荣获各级各类劳动模范(先进工作者)、工匠称号", "联系电话", "创新工作室成员人数（人）", "工作场地面积（㎡）", "仪器设备（台/套）", "年均专项经费（万元）", "创新课题或攻关项目累计（项）", "创新成果数累计（项）", "专利数累计（项）", "创新成果转化应用节创经济效益累计（万元）"];
    for (c, h) in header.iter().enumerate() {
        ws.write(2, c as u16, *h).unwrap();
    }
    for (r, s) in u.studios.iter().enumerate() {
        let row = [
            "1".to_string(), s.unit.clone(), s.name.clone(), s.created.clone(), s.leader.clone(), s.leader_workplace_title.clone(),
            s.titled_summary(), s.phone.clone(), s.members.to_string(), s.area_m2.clone(), s.equipment.clone(), s.funding_wan.clone(),
            s.projects.clone(), s.achievements.clone(), s.patents_total().unwrap().to_string(), s.benefit_wan.clone(),
        ];
        for (c, v) in row.iter().enumerate() {
            ws.write(3 + r as u32, c as u16, v.as_str()).unwrap();
        }
    }
    let data = wb.save_to_buffer().unwrap();
    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| replace_summary(m, data));
    let o = process(&u, &raw);
    assert_only(&o, Code::SummaryNotRanked);
}

#[test]
fn summary_bad_phone() {
    let (u, raw) = with_studio(|s| s.phone = "213341".into());
    assert_only(&process(&u, &raw), Code::SummaryBadPhone);
}

// ---- materials.* and photo.* ----

#[test]
fn materials_length_at_the_boundary() {
    let u = unit(1);
    let o = process(&u, &fixtures::submission_with(&u, MailClient::Outlook, &SubmissionOptions { materials_chars: Some(1999), ..Default::default() }));
    assert_only(&o, Code::MaterialsTooShort);
    assert_eq!(o.findings[0].found, "1999字");
    let o = process(&u, &fixtures::submission_with(&u, MailClient::Outlook, &SubmissionOptions { materials_chars: Some(2000), ..Default::default() }));
    assert!(o.findings.is_empty(), "{}", show(&o));
}

#[test]
fn materials_outline() {
    let u = unit(1);
    let o = process(&u, &fixtures::submission_with(&u, MailClient::Outlook, &SubmissionOptions { outline: false, materials_chars: Some(2600), ..Default::default() }));
    assert!(has(&o, Code::MaterialsOutline), "{}", show(&o));
    assert!(o.findings.iter().all(|f| f.code == Code::MaterialsOutline));
    assert_eq!(o.verdict(), Verdict::Accepted);
}

#[test]
fn photo_low_resolution_and_unreadable() {
    let u = unit(1);
    let o = process(&u, &fixtures::submission_with(&u, MailClient::Outlook, &SubmissionOptions { photo_size: (500, 375), ..Default::default() }));
    assert_only(&o, Code::PhotoLowResolution);
    let o = process(&u, &fixtures::submission_with(&u, MailClient::Outlook, &SubmissionOptions { photo_size: (800, 600), ..Default::default() }));
    assert!(o.findings.is_empty());

    let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| {
        let photo = m.attachments.iter_mut().find(|(n, _)| n.ends_with(".jpg")).unwrap();
        photo.1.truncate(photo.1.len() / 3);
    });
    assert_only(&process(&u, &raw), Code::PhotoUnreadable);
}

#[test]
fn reply_is_chinese_verdict_first_with_places() {
    let (u, raw) = with_studio(|s| s.native_place = String::new());
    let o = process(&u, &raw);
    let r = core::report::reply(&o, &config_for(&u).policy());
    assert!(r.subject.contains("未通过"), "{}", r.subject);
    let first_lines: String = r.text.lines().take(5).collect::<Vec<_>>().join("\n");
    assert!(first_lines.contains("未通过：尚有问题需补发或更正"), "{first_lines}");
    assert!(r.text.contains("籍贯") && r.text.contains("位置："), "{}", r.text);
    assert!(r.html.contains("籍贯") && r.html.contains("<table"));
    let u = unit(1);
    let ok = process(&u, &fixtures::submission(&u, MailClient::Outlook));
    let r = core::report::reply(&ok, &config_for(&u).policy());
    assert!(r.subject.contains("审核通过"), "{}", r.subject);
}

// ---- hostile attachments, end to end: each is a finding, never a panic ----

fn replace_member(data: &[u8], member: &str, content: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut src = zip::ZipArchive::new(std::io::Cursor::new(data)).unwrap();
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
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

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        z.start_file(*name, opt).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn hostile_attachments_each_get_a_finding() {
    use std::io::Write;
    let u = unit(1);
    let summary = fixtures::summary_table_xlsx(&u, SheetTool::Excel);
    let xfd = replace_member(
        &summary,
        "xl/worksheets/sheet1.xml",
        br#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:XFD1048576"/><sheetData><row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData></worksheet>"#,
    );
    let encrypted = {
        let mut cf = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
        cf.create_stream("/EncryptionInfo").unwrap().write_all(&[4, 0, 4, 0, 0x40, 0, 0, 0]).unwrap();
        cf.create_stream("/EncryptedPackage").unwrap().write_all(&[0u8; 4096]).unwrap();
        cf.flush().unwrap();
        cf.into_inner().into_inner()
    };
    let bomb = zip_of(&[("说明.docx", &vec![0u8; 8 * 1024 * 1024])]);
    let truncated_zip = {
        let z = zip_of(&[("附件3.docx", &fixtures::materials_docx(&u.studios[0], 2100, true, DocTool::Word))]);
        z[..z.len() / 2].to_vec()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("附件2补充表.xlsx", xfd),
        ("加密的审批表.docx", encrypted),
        ("资料.zip", bomb),
        ("材料打包.zip", truncated_zip),
        ("视频.mp4", vec![7u8; 300_000]),
    ];
    let mut config = config_for(&u);
    config.limits.max_decompressed_bytes = 4 * 1024 * 1024;
    config.limits.max_attachment_bytes = 256 * 1024;
    for (name, data) in cases {
        let raw = mail_with(&u, MailClient::Outlook, &Default::default(), |m| m.attachments.push((name.to_owned(), data.clone())));
        let o = process_with(&raw, &config, |_| {});
        let hit = o.findings.iter().find(|f| f.code == Code::SubmissionUnreadableAttachment && f.file.as_deref().is_some_and(|f| f.starts_with(name)));
        assert!(hit.is_some(), "{name}: {}", show(&o));
        assert!(!hit.unwrap().message.is_empty());
        // The good attachments of the same mail are still read.
        assert!(o.submission.studios.iter().all(|s| s.has_approval_form && s.has_materials), "{name}: {}", show(&o));
    }
}

#[test]
fn every_county_sample_is_clean_whatever_its_company_names() {
    // The high-tech zone's companies include 光伏材料公司: its photos are photos.
    for i in 0..14 {
        let u = UnitSpec::sample(i, 2);
        let o = process(&u, &fixtures::submission(&u, MailClient::Foxmail));
        assert_clean(&u, &o, &format!("county sample {i}"));
    }
}

#[test]
fn a_late_reply_does_not_ask_for_a_resend() {
    let u = unit(1);
    let late = SubmissionOptions { date: Some("Sun, 27 Sep 2020 09:00:00 +0800".into()), received: Some("Sun, 27 Sep 2020 09:00:05 +0800".into()), ..Default::default() };
    let o = process(&u, &fixtures::submission_with(&u, MailClient::AppleMail, &late));
    let r = core::report::reply(&o, &config_for(&u).policy());
    assert!(r.subject.contains("截止"), "{}", r.subject);
    assert!(!r.text.contains("修改后请重新发送"), "{}", r.text);
    assert!(r.html.contains("截止时间"));
}

/// A document package with the preview picture WPS and python-docx templates keep.
fn with_thumbnail(package: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(package)).unwrap();
    let mut members = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        members.push((String::from_utf8_lossy(f.name_raw()).into_owned(), data));
    }
    members.push(("docProps/thumbnail.jpeg".to_owned(), fixtures::photo_jpeg(395, 512)));
    fixtures::zip_archive(&members, false)
}

/// Names that lost their extension (a webmail that drops it, Outlook's ATT00001.bin): the
/// documents are read as documents, never opened as zips of XML parts whose preview
/// picture would pass for a scene photo.
#[test]
fn documents_whose_names_lost_their_extension_are_documents() {
    let u = unit(2);
    let strip = |m: &mut MailSpec, photos: bool, bin: bool| {
        m.attachments.retain(|(n, _)| photos || !(n.ends_with(".jpg") || n.ends_with(".jpeg") || n.ends_with(".png")));
        for (i, (name, data)) in m.attachments.iter_mut().enumerate() {
            if name.ends_with(".docx") || name.ends_with(".xlsx") {
                *data = with_thumbnail(data);
            }
            *name = if bin { format!("ATT{:05}.bin", i + 1) } else { name.rsplit_once('.').unwrap().0.to_owned() };
        }
    };
    let o = process(&u, &mail_with(&u, MailClient::Webmail163, &SubmissionOptions::default(), |m| strip(m, true, false)));
    assert_clean(&u, &o, "no extensions");
    assert_eq!(o.verdict(), Verdict::Accepted, "{}", show(&o));
    // Without photos: both studios lack one; no thumbnail stands in.
    let o = process(&u, &mail_with(&u, MailClient::Webmail163, &SubmissionOptions::default(), |m| strip(m, false, false)));
    assert_eq!(o.findings.iter().filter(|f| f.code == Code::SubmissionMissingPhoto).count(), 2, "{}", show(&o));
    for bin in [false, true] {
        let raw = mail_with(&u, MailClient::Outlook, &SubmissionOptions::default(), |m| strip(m, false, bin));
        let o = process(&u, &raw);
        assert!(o.submission.attachments.iter().all(|a| !a.file.contains("docProps") && a.kind != studio_intake::core::forms::Kind::Archive), "{}", show(&o));
        assert!(o.submission.photos.is_empty(), "{}", show(&o));
    }
}

/// One file per studio holding its 附件1 and then its 附件3 (“申报材料（附件1、3）”): both
/// parts are on file; an ordinary 附件1 never passes for materials.
#[test]
fn one_document_with_the_form_and_the_materials_serves_as_both() {
    let u = unit(2);
    let s = &u.studios[0];
    for tool in [DocTool::Word, DocTool::Wps] {
        let raw = mail_with(&u, MailClient::Foxmail, &SubmissionOptions::default(), |m| {
            m.attachments.retain(|(n, _)| !(n.contains(&s.leader) && (n.contains("审批表") || n.contains("申报材料"))));
            m.attachments.push((format!("{}工作室申报材料（附件1、3）.docx", s.leader), fixtures::approval_form_with_materials_docx(s, 2600, tool)));
        });
        let o = process(&u, &raw);
        assert_clean(&u, &o, &format!("{tool:?}"));
        assert_eq!(o.verdict(), Verdict::Accepted, "{tool:?}:{}", show(&o));
        let st = o.submission.studios.iter().find(|x| x.name == s.name).unwrap();
        assert!(st.has_approval_form && st.has_materials, "{tool:?}:{}", show(&o));
    }
    // Too short behind the form: the materials finding names the file it read.
    let raw = mail_with(&u, MailClient::Foxmail, &SubmissionOptions::default(), |m| {
        m.attachments.retain(|(n, _)| !(n.contains(&s.leader) && (n.contains("审批表") || n.contains("申报材料"))));
        m.attachments.push((format!("{}工作室申报材料（附件1、3）.docx", s.leader), fixtures::approval_form_with_materials_docx(s, 900, DocTool::Word)));
    });
    let o = process(&u, &raw);
    assert_only(&o, Code::MaterialsTooShort);
    // An ordinary 附件1 of every tool: no materials inside.
    for tool in [DocTool::Word, DocTool::Wps, DocTool::LibreOffice] {
        let doc = studio_intake::core::grid::read("a.docx", &fixtures::approval_form_docx(s, tool), &Default::default(), converters()).unwrap();
        assert!(studio_intake::core::forms::materials_after_form("a.docx", &doc).is_none(), "{tool:?}");
    }
}

/// Photos named by a word of their studio's company only (`电力公司工作室场景照.jpg`), as a
/// person names them when the unit's studios are in different companies.
#[test]
fn photos_named_by_a_word_of_their_company() {
    let mut u = unit(2);
    u.studios[0].unit = "四川犍为电力有限责任公司".into();
    u.studios[1].unit = "犍为县自来水有限公司".into();
    let words = ["电力", "自来水"];
    let raw = mail_with(&u, MailClient::Foxmail, &SubmissionOptions::default(), |m| {
        let mut k = 0;
        for (name, _) in m.attachments.iter_mut().filter(|(n, _)| n.ends_with(".jpg") || n.ends_with(".jpeg")) {
            *name = format!("{}公司工作室场景照.jpg", words[k]);
            k += 1;
        }
        assert_eq!(k, 2);
    });
    let o = process(&u, &raw);
    assert_clean(&u, &o, "photos named by company");
    assert_eq!(o.verdict(), Verdict::Accepted, "{}", show(&o));
}
