//! The unit's dossier in the pure core: a submission sent over many mails, in any grouping
//! and order, ends where the same submission sent in one mail ends; corrections replace
//! exactly the parts they carry; late mails, questions, cover letters and download links
//! change nothing on file. Real .docx/.xlsx/JPEG files from the fixture builders.

use proptest::prelude::*;
use studio_intake::config::{Config, Unit, UnitKind};
use studio_intake::core::dossier::{Dossier, Part};
use studio_intake::core::findings::Code;
use studio_intake::convert::Converters;
use studio_intake::core::{self, Context, Outcome, Verdict};
use studio_intake::fixtures::{self, DocTool, MailClient, MailSpec, UnitSpec};

fn config_for(u: &UnitSpec) -> Config {
    let mut c = Config::builtin();
    c.units.retain(|x| x.name != u.unit);
    c.units.push(Unit { name: u.unit.clone(), kind: UnitKind::County, senders: vec![u.sender.clone()] });
    c
}

fn converters() -> &'static Converters {
    static C: std::sync::OnceLock<Converters> = std::sync::OnceLock::new();
    C.get_or_init(Converters::none)
}

/// Judge `raw` against `on_file` as the daemon does.
fn judge(config: &Config, raw: &[u8], on_file: &Dossier) -> Outcome {
    let ctx = Context::new(config.policy(), converters());
    core::judge(core::read(raw, &ctx).expect("a mail"), on_file, &ctx)
}

/// Send `mails` one after the other; the outcome of each.
fn campaign(config: &Config, mails: &[Vec<u8>]) -> Vec<Outcome> {
    let mut on_file = Dossier::default();
    let mut out = Vec::new();
    for raw in mails {
        let o = judge(config, raw, &on_file);
        on_file = o.dossier.clone();
        out.push(o);
    }
    out
}

/// A mail of the unit carrying `files` (names and bytes), the `n`-th of its campaign.
fn mail(full: &MailSpec, n: usize, files: Vec<(String, Vec<u8>)>, subject: &str, body: &str) -> Vec<u8> {
    let mut m = full.clone();
    m.attachments = files;
    m.message_id = format!("<part-{n}@example.cn>");
    m.subject = subject.to_owned();
    m.body = body.to_owned();
    let day = 14 + n.min(9);
    m.date = format!("Mon, {day} Sep 2020 09:{:02}:00 +0800", n % 60);
    m.received = Some(m.date.clone());
    fixtures::build_eml(&m)
}

fn reply_text(o: &Outcome, config: &Config) -> String {
    core::report::reply(o, &config.policy()).text
}

/// What staff sign off: per studio its 序号, parts and the 16 columns of the consolidated
/// table, and the open findings (without the mails' provenance, which differs by design).
fn signed_off(o: &Outcome) -> (Vec<String>, Vec<String>) {
    let rec = studio_intake::intake::submission_record(o);
    let mut studios: Vec<String> = rec.studios.iter().map(|s| format!("{}|{:?}|{}|{}", s.key, s.rank, s.verdict, s.data)).collect();
    studios.sort();
    let mut findings: Vec<String> = o
        .findings
        .iter()
        .filter(|f| f.on_file)
        .map(|f| format!("{}|{:?}|{:?}|{}|{}|{}", f.code.as_str(), f.studio, f.file, f.location, f.found, f.expected))
        .collect();
    findings.sort();
    (studios, findings)
}

fn two_studio_unit() -> (UnitSpec, MailSpec) {
    let u = UnitSpec::sample(3, 2);
    let full = fixtures::submission_mail(&u, MailClient::Outlook, &Default::default());
    (u, full)
}

fn file<'a>(full: &'a MailSpec, word: &str, nth: usize) -> (String, Vec<u8>) {
    full.attachments.iter().filter(|(n, _)| n.contains(word)).nth(nth).cloned().unwrap_or_else(|| panic!("no {word} #{nth}"))
}

#[test]
fn forms_today_photo_tomorrow_completes_the_studio() {
    let (u, full) = two_studio_unit();
    let config = config_for(&u);
    let no_photos: Vec<_> = full.attachments.iter().filter(|(n, _)| !n.contains("场景照")).cloned().collect();
    let photos: Vec<_> = full.attachments.iter().filter(|(n, _)| n.contains("场景照")).cloned().collect();
    let outcomes = campaign(&config, &[mail(&full, 1, no_photos, "申报材料", "请查收"), mail(&full, 2, photos, "补发照片", "补发场景照")]);
    let first = &outcomes[0];
    assert_eq!(first.verdict(), Verdict::Rejected);
    assert!(first.findings.iter().all(|f| f.code == Code::SubmissionMissingPhoto), "{:#?}", first.findings);
    assert!(reply_text(first, &config).contains("可分几封邮件发送"));
    let second = &outcomes[1];
    assert_eq!(second.verdict(), Verdict::Accepted, "{:#?}", second.findings);
    assert!(second.standing.complete());
    let text = reply_text(second, &config);
    assert!(text.contains("均已齐全"), "{text}");
    assert_eq!(second.changes.iter().filter(|c| c.part == Part::Photo && c.studio.is_some()).count(), 2, "{:?}", second.changes);
}

#[test]
fn a_correction_replaces_only_the_part_it_carries() {
    let (mut u, full) = two_studio_unit();
    let config = config_for(&u);
    let first = judge(&config, &mail(&full, 1, full.attachments.clone(), "申报", ""), &Dossier::default());
    assert_eq!(first.verdict(), Verdict::Accepted, "{:#?}", first.findings);
    // A corrected 附件1 alone (one more member) and a corrected 附件2 alone.
    u.studios[0].members += 1;
    u.studios[0].male += 1;
    u.studios[0].bachelor += 1;
    let corrected = fixtures::approval_form_docx(&u.studios[0], DocTool::Word);
    let (a1_name, _) = file(&full, "审批表", 0);
    let form_only = judge(&config, &mail(&full, 2, vec![(a1_name.clone(), corrected)], "更正审批表", ""), &first.dossier);
    // Form and 附件2 now disagree on the members: the studio keeps its other parts.
    assert!(form_only.findings.iter().all(|f| f.code == Code::SummaryMismatch), "{:#?}", form_only.findings);
    assert!(form_only.standing.studios.iter().all(|s| s.has_materials && s.has_photo && s.has_approval_form));
    let c = &form_only.changes;
    assert!(c.len() == 1 && c[0].part == Part::ApprovalForm && c[0].replaced.is_some(), "{c:?}");
    assert!(reply_text(&form_only, &config).contains("替代"));
    let summary = fixtures::summary_table_xlsx(&u, fixtures::SheetTool::Excel);
    let (a2_name, _) = file(&full, "汇总表", 0);
    let both = judge(&config, &mail(&full, 3, vec![(a2_name, summary)], "更正汇总表", ""), &form_only.dossier);
    assert_eq!(both.verdict(), Verdict::Accepted, "{:#?}", both.findings);
    assert!(both.standing.complete());
}

#[test]
fn a_third_studio_added_later_leaves_the_first_two_alone() {
    let (_, full2) = two_studio_unit();
    let u3 = UnitSpec::sample(3, 3);
    let full3 = fixtures::submission_mail(&u3, MailClient::Outlook, &Default::default());
    let config = config_for(&u3);
    let first = judge(&config, &mail(&full2, 1, full2.attachments.clone(), "申报", ""), &Dossier::default());
    assert!(first.standing.complete(), "{:#?}", first.findings);
    // The third studio's files and the updated 附件2 (three rows): the first two stay as they are.
    let third: Vec<_> = full3.attachments.iter().filter(|(n, _)| n.contains(&u3.studios[2].leader) || n.contains("汇总表")).cloned().collect();
    let added = judge(&config, &mail(&full3, 2, third, "增报一个工作室", ""), &first.dossier);
    assert_eq!(added.verdict(), Verdict::Accepted, "{:#?}", added.findings);
    assert_eq!(added.standing.studios.len(), 3);
    for s in &first.dossier.studios {
        let now = added.dossier.studios.iter().find(|x| x.name == s.name).expect("still on file");
        assert_eq!(now.form.as_ref().unwrap().from, s.form.as_ref().unwrap().from, "{} replaced", s.name);
    }
    // A 附件2 row with no files yet is an expected studio, missing its parts, not a version.
    let u4 = UnitSpec::sample(3, 4);
    let summary4 = fixtures::summary_table_xlsx(&u4, fixtures::SheetTool::Excel);
    let expected = judge(&config, &mail(&full3, 3, vec![("附件2-推荐汇总表.xlsx".into(), summary4)], "汇总表", ""), &added.dossier);
    assert_eq!(expected.dossier.studios.len(), 3, "no studio made from a 附件2 row alone");
    let missing: Vec<_> = expected.findings.iter().filter(|f| f.studio.as_deref() == Some(u4.studios[3].name.as_str())).map(|f| f.code).collect();
    assert_eq!(missing, vec![Code::SubmissionMissingApprovalForm, Code::SubmissionMissingMaterials, Code::SubmissionMissingPhoto]);
    assert_eq!(expected.standing.studios.iter().filter(|s| s.complete()).count(), 3);
}

#[test]
fn late_mails_questions_cover_letters_and_links_change_nothing() {
    let (u, full) = two_studio_unit();
    let config = config_for(&u);
    let first = judge(&config, &mail(&full, 1, full.attachments.clone(), "申报", ""), &Dossier::default());
    assert!(first.standing.complete());
    // A late correction.
    let mut late = full.clone();
    late.message_id = "<late@example.cn>".into();
    late.received = Some("Sat, 26 Sep 2020 10:00:00 +0800".into());
    late.date = late.received.clone().unwrap();
    let late = judge(&config, &fixtures::build_eml(&late), &first.dossier);
    assert!(!late.applied && late.changes.is_empty() && late.is_late());
    assert_eq!(late.verdict(), Verdict::Rejected);
    assert!(late.standing.complete(), "the on-time parts stay current");
    let text = reply_text(&late, &config);
    assert!(text.contains("未计入"));
    // Nothing to correct now: the problems of its files are for the record.
    assert!(!text.contains("需要补发或更正"), "{text}");
    // A question, a thank-you.
    let question = judge(&config, &mail(&full, 2, vec![], "是否收到？", "请问材料是否收到？谢谢！"), &first.dossier);
    assert_eq!(question.verdict(), Verdict::NotASubmission);
    assert_eq!(question.findings.iter().map(|f| f.code).collect::<Vec<_>>(), vec![Code::SubmissionNoDocuments]);
    assert!(question.findings.iter().all(|f| !f.on_file));
    let text = reply_text(&question, &config);
    assert!(text.contains("均已齐全") && text.contains("已收到"), "{text}");
    // A cover letter alone (it mentions the forms; it is none of them).
    let letter = fixtures::letter_docx(
        "关于推荐2020年乐山市劳模和工匠人才创新工作室的函",
        &["根据乐工经〔2020〕24号文件要求，经研究，现推荐我单位两个工作室参加评选，推荐审批表、推荐汇总表及申报材料另附。", "特此函告。"],
        DocTool::Wps,
    );
    let cover = judge(&config, &mail(&full, 3, vec![("推荐函.docx".into(), letter)], "推荐函", ""), &first.dossier);
    assert_eq!(cover.verdict(), Verdict::NotASubmission, "{:#?}", cover.findings);
    assert_eq!(cover.submission.attachments[0].kind, studio_intake::core::forms::Kind::CoverLetter);
    assert_eq!(cover.dossier.studios.len(), 2, "no phantom studio");
    // QQ Mail's 超大附件.
    let body = "从QQ邮箱发来的超大附件\n\n申报材料.zip (60.2M, 2020年10月10日 10:00 到期)\n进入下载页面：https://mail.qq.com/cgi-bin/ftnExs_download?k=7d3a&t=exs_ftn_download&code=1a2b";
    let link = judge(&config, &mail(&full, 4, vec![], "申报材料（超大附件）", body), &first.dossier);
    assert_eq!(link.verdict(), Verdict::Rejected);
    assert!(link.findings.iter().any(|f| f.code == Code::SubmissionDownloadLink && f.found.contains("ftnExs_download")));
    assert!(!link.applied && link.standing.complete());
    assert!(reply_text(&link, &config).contains("直接添加为附件"));
}

#[test]
fn scans_pictures_inside_materials_and_chinese_dates() {
    let mut u = UnitSpec::sample(4, 1);
    u.studios[0].created = "二〇一五年三月".into();
    let config = config_for(&u);
    let s = &u.studios[0];
    let photo = fixtures::photo_jpeg(800, 600);
    let materials = fixtures::with_picture(&fixtures::materials_docx(s, 2300, true, DocTool::Word), &photo, 800, 600);
    let files = vec![
        (format!("附件1：{}推荐审批表.docx", s.leader), fixtures::approval_form_docx(s, DocTool::Word)),
        (format!("附件1：{}推荐审批表（盖章）.jpg", s.leader), fixtures::photo_jpeg(1200, 1600)),
        (format!("附件3：{}申报材料.docx", s.leader), materials),
        ("附件2-推荐汇总表.xlsx".into(), fixtures::summary_table_xlsx(&u, fixtures::SheetTool::Excel)),
    ];
    let full = fixtures::submission_mail(&u, MailClient::Foxmail, &Default::default());
    let o = judge(&config, &mail(&full, 1, files, "申报", ""), &Dossier::default());
    assert_eq!(o.verdict(), Verdict::Accepted, "{:#?}", o.findings);
    let kinds: Vec<_> = o.submission.attachments.iter().map(|a| a.kind).collect();
    assert!(kinds.contains(&studio_intake::core::forms::Kind::Scan), "{kinds:?}");
    assert!(o.standing.studios[0].photo_inside);
    assert_eq!(o.view.studios[0].created.as_deref(), Some("2015-03-01"));
    assert!(reply_text(&o, &config).contains("取自文档中的图片"));
}

/// Split the complete submission's attachments into `k` mails.
fn split(full: &MailSpec, groups: &[usize], order: &[usize], summary_in: &[bool]) -> Vec<Vec<u8>> {
    let k = order.len();
    let summary = file(full, "汇总表", 0);
    let mut mails = Vec::new();
    for (n, &g) in order.iter().enumerate() {
        let mut files: Vec<(String, Vec<u8>)> =
            full.attachments.iter().zip(groups).filter(|&(_, &x)| x == g).map(|(f, _)| f.clone()).collect();
        if summary_in[g] && !files.iter().any(|(name, _)| *name == summary.0) {
            files.push(summary.clone());
        }
        if !files.is_empty() {
            mails.push(mail(full, n, files, &format!("申报材料（{}/{k}）", n + 1), "请查收"));
        }
    }
    mails
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any complete on-time submission split into k mails (parts in any grouping and order,
    /// each mail with or without the 附件2) ends in the same studios, export rows and open
    /// findings as sent in one mail, and the last reply says the unit is complete.
    #[test]
    fn any_split_ends_where_one_mail_ends(
        k in 1usize..=5,
        seed in any::<u64>(),
        summary_in in proptest::collection::vec(any::<bool>(), 5),
        which in 0usize..4,
    ) {
        // Two or three studios; two of them in one company (峨眉山市自来水公司) for some.
        let (i, studios) = [(3, 2), (1, 3), (4, 3), (11, 3)][which];
        let u = UnitSpec::sample(i, studios);
        let full = fixtures::submission_mail(&u, MailClient::Outlook, &Default::default());
        let config = config_for(&u);
        let n = full.attachments.len();
        let mut rng = seed;
        let mut next = || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
        let groups: Vec<usize> = (0..n).map(|_| (next() % k as u64) as usize).collect();
        let mut order: Vec<usize> = (0..k).collect();
        for i in (1..k).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let one = judge(&config, &mail(&full, 0, full.attachments.clone(), "申报", ""), &Dossier::default());
        prop_assert!(one.standing.complete());
        let outcomes = campaign(&config, &split(&full, &groups, &order, &summary_in));
        let last = outcomes.last().expect("at least one mail");
        prop_assert_eq!(signed_off(last), signed_off(&one), "groups {:?} order {:?}", groups, order);
        prop_assert!(last.standing.complete(), "{:#?}", last.findings);
        let text = reply_text(last, &config);
        prop_assert!(text.contains("均已齐全"), "{}", text);
    }
}

/// The files of studio `k` of `u` as a unit would name them: company, leader, part.
fn studio_files(u: &UnitSpec, k: usize) -> Vec<(String, Vec<u8>)> {
    let s = &u.studios[k];
    let who = format!("{}{}", s.unit_short(), s.leader);
    vec![
        (format!("附件1：{who}劳模创新工作室推荐审批表.docx"), fixtures::approval_form_docx(s, DocTool::Word)),
        (format!("附件3：{who}劳模创新工作室申报材料.docx"), fixtures::materials_docx(s, 2600, true, DocTool::Word)),
        (format!("{who}工作室场景照.jpg"), fixtures::photo_jpeg(1600, 1200)),
    ]
}

/// 附件2 of `u` listing the studios `order` (by index), ranked in that order.
fn summary_of(u: &UnitSpec, order: &[usize]) -> (String, Vec<u8>) {
    let mut listed = u.clone();
    listed.studios = order.iter().map(|&k| u.studios[k].clone()).collect();
    ("附件2-推荐汇总表.xlsx".to_owned(), fixtures::summary_table_xlsx(&listed, fixtures::SheetTool::Excel))
}

/// One leader, two studios of the unit in two companies (a 劳模 who leads a studio at each):
/// never one studio, whatever the order of the mails and of the 附件2's rows.
#[test]
fn one_leader_in_two_companies_is_two_studios() {
    let mut u = UnitSpec::sample(3, 2);
    let (a, b) = (u.studios[0].leader.clone(), u.studios[1].leader.clone());
    u.studios[1].name = u.studios[1].name.replace(&b, &a);
    u.studios[1].leader = a.clone();
    let config = config_for(&u);
    let (_, full) = two_studio_unit();
    let mut first = studio_files(&u, 0);
    first.push(summary_of(&u, &[0]));
    let mut outcomes = campaign(&config, &[mail(&full, 1, first, "申报", ""), mail(&full, 2, studio_files(&u, 1), "第二个工作室", "")]);
    let second = outcomes.pop().unwrap();
    assert_eq!(second.dossier.studios.len(), 2, "{:#?}", second.dossier.studios.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert!(second.changes.iter().all(|c| c.replaced.is_none()), "nothing of the first studio replaced: {:?}", second.changes);
    let first_studio = second.dossier.studios.iter().find(|s| s.name == u.studios[0].name).unwrap();
    assert!(first_studio.form.is_some() && first_studio.materials.is_some() && first_studio.photo.is_some());
    let codes: Vec<Code> = second.findings.iter().filter(|f| f.on_file).map(|f| f.code).collect();
    assert_eq!(codes, [Code::SummaryUnlistedStudio], "{:#?}", second.findings);
    // The 附件2 that lists both, the second studio first: each row goes to its own studio.
    let third = judge(&config, &mail(&full, 3, vec![summary_of(&u, &[1, 0])], "更新汇总表", ""), &second.dossier);
    assert_eq!(third.verdict(), Verdict::Accepted, "{:#?}", third.findings);
    let rank = |k: usize| third.standing.studios.iter().find(|s| s.name == u.studios[k].name).and_then(|s| s.rank);
    assert_eq!((rank(1), rank(0)), (Some(1), Some(2)));
    // All in one mail, files in one order and rows in the other.
    let mut all = studio_files(&u, 0);
    all.extend(studio_files(&u, 1));
    all.push(summary_of(&u, &[1, 0]));
    let once = judge(&config, &mail(&full, 4, all, "申报", ""), &Dossier::default());
    assert_eq!(once.verdict(), Verdict::Accepted, "{:#?}", once.findings);
    assert_eq!(signed_off(&once), signed_off(&third));
}

/// A typo in the leader's name, written into the studio's name too, corrected by a new 附件1
/// and then a new 附件2: one studio, renamed — not a phantom beside the real one.
#[test]
fn a_corrected_leader_name_renames_the_studio() {
    let u = UnitSpec::sample(3, 2);
    let mut typo = u.clone();
    let right = u.studios[0].leader.clone();
    let wrong: String = right.chars().take(1).chain("建图".chars()).collect();
    typo.studios[0].name = typo.studios[0].name.replace(&right, &wrong);
    typo.studios[0].leader = wrong;
    let config = config_for(&u);
    let (_, full) = two_studio_unit();
    let mut first = studio_files(&typo, 0);
    first.extend(studio_files(&typo, 1));
    first.push(summary_of(&typo, &[0, 1]));
    let (form_name, form) = studio_files(&u, 0).swap_remove(0);
    let outcomes = campaign(
        &config,
        &[mail(&full, 1, first, "申报", ""), mail(&full, 2, vec![(form_name, form)], "更正带头人姓名", ""), mail(&full, 3, vec![summary_of(&u, &[0, 1])], "更正汇总表", "")],
    );
    let names = |o: &Outcome| o.dossier.studios.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(outcomes[0].verdict(), Verdict::Accepted, "{:#?}", outcomes[0].findings);
    assert_eq!(names(&outcomes[1]), [u.studios[0].name.clone(), u.studios[1].name.clone()]);
    let last = &outcomes[2];
    assert_eq!(names(last), [u.studios[0].name.clone(), u.studios[1].name.clone()]);
    assert_eq!(last.verdict(), Verdict::Accepted, "{:#?}", last.findings);
    assert!(last.standing.complete());
}

/// A mail applied after a later one (a held mail confirmed once the unit had already sent a
/// correction): it fills what is missing and never undoes the correction.
#[test]
fn a_mail_applied_late_never_undoes_a_later_correction() {
    let (mut u, full) = two_studio_unit();
    let config = config_for(&u);
    let everything = mail(&full, 1, full.attachments.clone(), "申报", "");
    u.studios[0].members += 1;
    u.studios[0].male += 1;
    u.studios[0].bachelor += 1;
    let (a1_name, _) = file(&full, "审批表", 0);
    let correction = mail(&full, 2, vec![(a1_name, fixtures::approval_form_docx(&u.studios[0], DocTool::Word))], "更正审批表", "");
    // The correction (16 Sep) is on file first; the full set of 15 Sep is applied after it.
    let outcomes = campaign(&config, &[correction, everything]);
    let last = &outcomes[1];
    let studio = last.dossier.studios.iter().find(|s| s.name == u.studios[0].name).unwrap();
    assert_eq!(studio.form.as_ref().unwrap().from.message_id.as_deref(), Some("<part-2@example.cn>"), "the correction stays current");
    assert!(studio.materials.is_some() && studio.photo.is_some() && last.dossier.summary.is_some(), "the rest is filled in");
    let kept = last.changes.iter().find(|c| c.part == Part::ApprovalForm && c.studio.as_deref() == Some(u.studios[0].name.as_str())).unwrap();
    assert!(kept.newer_on_file.is_some() && kept.replaced.is_none(), "{kept:?}");
    let text = reply_text(last, &config);
    assert!(text.contains("收到的版本更新，以其为准"), "{text}");
    // The members on file are the corrected ones (the 附件2 of the older mail now disagrees).
    assert!(last.findings.iter().any(|f| f.on_file && f.code == Code::SummaryMismatch), "{:#?}", last.findings);
}

/// A new 附件2 without a studio whose files all came before it: the unit took the studio off
/// its list. It leaves the unit's studios and the consolidated table (kept in the history),
/// the unit can be complete, and a later 附件2 that lists it again brings it back. A studio
/// whose files come after the 附件2 is one the unit forgot to list.
#[test]
fn a_studio_left_off_a_newer_summary_table_is_withdrawn() {
    let (u, full) = two_studio_unit();
    let config = config_for(&u);
    let mut all = studio_files(&u, 0);
    all.extend(studio_files(&u, 1));
    all.push(summary_of(&u, &[0, 1]));
    let outcomes = campaign(
        &config,
        &[mail(&full, 1, all, "申报", ""), mail(&full, 2, vec![summary_of(&u, &[0])], "撤回一个工作室", "撤回第二个工作室"), mail(&full, 3, vec![summary_of(&u, &[0, 1])], "恢复", "")],
    );
    let withdrawn = &outcomes[1];
    assert_eq!(withdrawn.verdict(), Verdict::Accepted, "{:#?}", withdrawn.findings);
    assert!(withdrawn.standing.complete());
    assert_eq!(withdrawn.standing.withdrawn, [u.studios[1].name.clone()]);
    assert_eq!(withdrawn.dossier.studios.len(), 2, "nothing deleted");
    let (rows, _) = signed_off(withdrawn);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(reply_text(withdrawn, &config).contains("视为撤回"));
    let back = &outcomes[2];
    assert!(back.standing.withdrawn.is_empty() && back.standing.studios.len() == 2 && back.standing.complete());
    // Files that come after the 附件2 that omits their studio: not withdrawn, unlisted.
    let mut first = studio_files(&u, 0);
    first.push(summary_of(&u, &[0]));
    let late_studio = campaign(&config, &[mail(&full, 1, first, "申报", ""), mail(&full, 2, studio_files(&u, 1), "补充", "")]);
    let codes: Vec<Code> = late_studio[1].findings.iter().filter(|f| f.on_file).map(|f| f.code).collect();
    assert_eq!(codes, [Code::SummaryUnlistedStudio]);
    assert!(late_studio[1].standing.withdrawn.is_empty());
}

/// Photos that name no studio, in a mail whose forms came with them: kept, and the reply
/// asks for names rather than promising they will sort themselves out later.
#[test]
fn unnamed_photos_beside_their_forms_are_kept_and_the_reply_asks_for_names() {
    let (u, full) = two_studio_unit();
    let config = config_for(&u);
    let mut files = full.attachments.clone();
    let mut k = 0;
    for (name, _) in files.iter_mut().filter(|(n, _)| n.contains("场景照")) {
        k += 1;
        *name = format!("IMG_000{k}.jpg");
    }
    let o = judge(&config, &mail(&full, 1, files, "申报", ""), &Dossier::default());
    assert_eq!(o.dossier.pending.len(), 2);
    let text = reply_text(&o, &config);
    assert!(text.contains("请在文件名中写明工作室或带头人姓名后补发") && !text.contains("自动归入"), "{text}");
}
