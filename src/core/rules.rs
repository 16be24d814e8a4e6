//! Records → findings: each rule of `RULES.md` that one submission can decide, as a small
//! function. `unit.*` and `campaign.*` need every submission and live with the digest.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate};

use super::findings::{Code, Finding};
use super::forms::{self, ApprovalForm, FieldKey, FromApproval, Kind, Required, SummaryRow, SummaryTable, SUMMARY_COLUMNS};
use super::submission::{Studio, Submission};
use super::text::{self, fmt_number, squash};
use super::policy::{Policy, RuleSettings};

/// A studio another unit has recommended (for `submission.duplicate_studio`).
#[derive(Debug, Clone)]
pub struct KnownStudio {
    pub unit: String,
    pub name: String,
}

/// What the rules need besides the submission itself.
pub struct RuleContext<'a> {
    pub policy: &'a Policy,
    pub sender: Option<&'a str>,
    /// The unit this submission is from (by sender address or by its 推荐单位).
    pub unit: Option<&'a str>,
    pub received_at: Option<DateTime<FixedOffset>>,
    pub others: &'a [KnownStudio],
    /// The mail had more MIME parts than `[limits] max_parts`; the rest was not read.
    pub parts_truncated: bool,
    /// This mail carried a 附件2 that cannot be read (or only a scan of it): the dossier's
    /// missing 附件2 is that file's finding, not a second one.
    pub summary_unreadable: bool,
    /// This mail carried a file named as a 附件1 (readable or not).
    pub form_file_seen: bool,
    /// Download links in the mail body instead of attachments.
    pub download_links: &'a [String],
    /// The daemon decided who the sender is (registered addresses in the store,
    /// authentication); `check` decides from the policy alone.
    pub identity_known: bool,
    /// Why the mail is held, if it is.
    pub held: Option<Code>,
    /// What the authentication found, for the finding.
    pub auth_note: Option<&'a str>,
}

pub const NAME_SUFFIX: &str = "劳模和工匠人才创新工作室";

/// The findings about the mail itself, whatever the dossier holds: late, who sent it, what in
/// it cannot be read, download links, no documents at all.
pub fn mail_rules(mail: &Submission, ctx: &RuleContext) -> Vec<Finding> {
    let mut out = Vec::new();
    let policy = ctx.policy;
    if let Some(at) = ctx.received_at
        && at > policy.deadline
    {
        // In the campaign's time zone, as the notice states the deadline: a server's +0000
        // receipt of 00:05 Beijing time is 26 September, not 25 September 16:05.
        let at = at.with_timezone(&policy.timezone).fixed_offset();
        let deadline = policy.deadline.with_timezone(&policy.timezone).fixed_offset();
        out.push(
            Finding::new(Code::SubmissionLate)
                .at("邮件接收时间")
                .found(at.to_rfc3339())
                .expected(format!("不晚于 {}", deadline.to_rfc3339()))
                .says(format!(
                    "本邮件于{}送达，已超过报送截止时间{}，邮件中的材料未计入本单位的申报（此前按时报送的材料不受影响）。",
                    at.format("%Y年%m月%d日 %H:%M"),
                    deadline.format("%Y年%m月%d日 %H:%M")
                )),
        );
    }
    let held = match ctx.held {
        Some(code) => Some(code),
        // `check`: the policy alone decides.
        None if !ctx.identity_known && ctx.sender.is_some_and(|s| policy.unit_of_sender(s).is_none()) => Some(Code::SubmissionUnknownSender),
        None => None,
    };
    match (held, ctx.sender) {
        (Some(Code::SubmissionUnknownSender), Some(sender)) => out.push(
            Finding::new(Code::SubmissionUnknownSender)
                .at("发件人")
                .found(sender.to_owned())
                .expected("推荐单位登记的发件邮箱")
                .says("发件地址未登记为任何推荐单位的邮箱：邮件已暂存，经推荐单位确认或工作人员核实后才计入。"),
        ),
        (Some(Code::SubmissionSenderNotAuthenticated), Some(sender)) => {
            out.push(sender_not_authenticated(sender, ctx.auth_note.unwrap_or("未通过验证")))
        }
        _ => {}
    }
    if ctx.parts_truncated {
        let limit = ctx.policy.limits.max_parts;
        out.push(
            Finding::new(Code::SubmissionUnreadableAttachment)
                .at("邮件结构")
                .found(format!("超过 {limit} 个邮件部分，其余部分未读取"))
                .expected(format!("不超过 {limit} 个部分"))
                .says(format!("邮件包含的部分（附件、正文、嵌套邮件）超过 {limit} 个，超出部分未读取。请只附上申报所需文件后重新发送。")),
        );
    }
    for att in mail.attachments.iter().filter(|a| a.problem.is_some()) {
        let problem = att.problem.as_ref().expect("filtered");
        out.push(
            Finding::new(Code::SubmissionUnreadableAttachment)
                .studio(att.studio.as_deref())
                .file(&att.file)
                .at("整个文件")
                .found(problem.chinese())
                .expected("可以打开的 .docx / .xlsx / 图片文件")
                .says(format!("附件“{}”无法读取：{}", att.file, problem.advice())),
        );
    }
    for studio in &mail.studios {
        for &n in &studio.not_typed {
            let nt = &mail.not_typed[n];
            if nt.kind != Kind::ApprovalForm {
                out.push(not_typed_other(nt, Some(&studio.name)));
            }
        }
    }
    for (n, nt) in mail.not_typed.iter().enumerate() {
        if nt.kind != Kind::ApprovalForm && !mail.studios.iter().any(|s| s.not_typed.contains(&n)) {
            out.push(not_typed_other(nt, None));
        }
    }
    if !ctx.download_links.is_empty() {
        let shown: Vec<&str> = ctx.download_links.iter().take(3).map(String::as_str).collect();
        let limit_mb = ctx.policy.limits.max_message_bytes / (1024 * 1024);
        out.push(
            Finding::new(Code::SubmissionDownloadLink)
                .at("邮件正文")
                .found(format!("下载链接：{}", shown.join(" ")))
                .expected("文件直接作为邮件附件")
                .says(format!(
                    "邮件中的文件是下载链接（如QQ邮箱“超大附件”、网盘链接），系统无法下载。请将文件直接添加为附件发送，或压缩为一个ZIP文件（整封邮件不超过{limit_mb}MB）；文件较多时可分几封邮件发送。"
                )),
        );
    } else if !mail.has_documents() {
        out.push(
            Finding::new(Code::SubmissionNoDocuments)
                .at("邮件附件")
                .found(if mail.attachments.iter().any(|a| a.kind == Kind::CoverLetter) { "只有推荐函，没有申报文件".to_owned() } else { "没有申报文件".to_owned() })
                .expected("附件1 推荐审批表、附件2 推荐汇总表、附件3 申报材料、场景照")
                .says("本邮件未附申报文件，未改变本单位已报送的材料；工作人员会阅读邮件内容。"),
        );
    }
    out
}

/// `submission.sender_not_authenticated` for `sender`, with what the authentication found.
pub fn sender_not_authenticated(sender: &str, note: &str) -> Finding {
    Finding::new(Code::SubmissionSenderNotAuthenticated)
        .at("发件人身份验证")
        .found(format!("{sender}：{note}"))
        .expected("DKIM 签名与发件域名一致，或可信收信服务器的验证结果为通过")
        .says("发件人身份未通过验证：邮件已暂存，经推荐单位确认或工作人员核实后才计入。")
}

fn not_typed_other(nt: &super::submission::NotTyped, studio: Option<&str>) -> Finding {
    Finding::new(Code::SubmissionUnreadableAttachment)
        .studio(studio)
        .file(&nt.file)
        .at("整个文件")
        .found("图片或扫描件")
        .expected(format!("{}的电子文档", nt.kind.chinese()))
        .says(format!("{}只收到图片或扫描件，无法读取内容，请发送电子文档（Word/Excel）。", nt.kind.chinese()))
}

/// The findings about what is on file: `sub` is the unit's dossier as
/// [`super::dossier::view`] shows it (for `check`, the one mail).
pub fn check(sub: &Submission, ctx: &RuleContext) -> Vec<Finding> {
    let mut out = Vec::new();
    submission_rules(sub, ctx, &mut out);
    for studio in &sub.studios {
        if let Some(f) = studio.form {
            approval_form_rules(&sub.forms[f], studio, ctx, &mut out);
        }
        if let (Some(f), Some((t, r))) = (studio.form, studio.row) {
            mismatch_rules(&sub.forms[f], &sub.summaries[t], &sub.summaries[t].rows[r], studio, &mut out);
        }
        for &m in &studio.materials {
            materials_rules(&sub.materials[m], studio, &ctx.policy.rules, &mut out);
        }
        for &p in &studio.photos {
            let photo = &sub.photos[p];
            let side = photo.width.min(photo.height);
            if side < ctx.policy.rules.photo_min_side {
                out.push(
                    Finding::new(Code::PhotoLowResolution)
                        .studio(Some(&studio.name))
                        .file(&photo.file)
                        .at("图片尺寸")
                        .found(format!("{}×{} 像素", photo.width, photo.height))
                        .expected(format!("短边不少于 {} 像素", ctx.policy.rules.photo_min_side))
                        .says(format!("场景照分辨率偏低（{}×{}），建议发送原图。", photo.width, photo.height)),
                );
            }
        }
    }
    // Bad photos that belong to no studio still need a word.
    for (i, bad) in sub.bad_photos.iter().enumerate() {
        let studio = sub.studios.iter().find(|s| s.bad_photos.contains(&i)).map(|s| s.name.as_str());
        out.push(
            Finding::new(Code::PhotoUnreadable)
                .studio(studio)
                .file(&bad.file)
                .at("整个文件")
                .found(bad.reason.clone())
                .expected("可以打开的图片（JPG、PNG 等）")
                .says(format!("场景照无法打开：{}。请重新发送照片原图。", bad.reason)),
        );
    }
    for table in &sub.summaries {
        summary_rules(table, sub, &mut out);
    }
    out
}

fn submission_rules(sub: &Submission, ctx: &RuleContext, out: &mut Vec<Finding>) {
    if sub.summaries.is_empty() && !ctx.summary_unreadable {
        out.push(
            Finding::new(Code::SubmissionNoSummaryTable)
                .at("邮件附件")
                .found("尚未收到推荐汇总表")
                .expected("附件2 乐山市劳模和工匠人才创新工作室推荐汇总表（每个推荐单位1份）")
                .says("尚未收到本单位的推荐汇总表（附件2），请补发（Excel 格式，可单独发送）。"),
        );
    }
    if sub.studios.is_empty() {
        if !ctx.form_file_seen {
            out.push(
                Finding::new(Code::SubmissionMissingApprovalForm)
                    .at("邮件附件")
                    .found("尚未收到任何工作室的推荐审批表")
                    .expected("每个工作室1份附件1 推荐审批表")
                    .says("尚未收到任何工作室的推荐审批表（附件1），请按通知要求补发。"),
            );
        }
    }
    for studio in &sub.studios {
        let name = Some(studio.name.as_str());
        if studio.form.is_none() && studio.not_typed.iter().all(|&n| sub.not_typed[n].kind != Kind::ApprovalForm) && !studio.unreadable.contains(&Kind::ApprovalForm) {
            out.push(
                Finding::new(Code::SubmissionMissingApprovalForm)
                    .studio(name)
                    .at("邮件附件")
                    .found("尚未收到该工作室的推荐审批表")
                    .expected("附件1 推荐审批表")
                    .says(format!("“{}”尚缺推荐审批表（附件1），请补发（可单独发送）。", studio.name)),
            );
        }
        if studio.materials.is_empty() && !studio.unreadable.contains(&Kind::Materials) {
            out.push(
                Finding::new(Code::SubmissionMissingMaterials)
                    .studio(name)
                    .at("邮件附件")
                    .found("尚未收到该工作室的申报材料")
                    .expected("附件3 申报材料（2000字以上）")
                    .says(format!(
                        "“{}”尚缺申报材料（附件3），请补发；如已发送，请在文件名中写明工作室或带头人姓名。",
                        studio.name
                    )),
            );
        }
        if studio.photos.is_empty() && studio.bad_photos.is_empty() && !studio.unreadable.contains(&Kind::Photo) {
            out.push(
                Finding::new(Code::SubmissionMissingPhoto)
                    .studio(name)
                    .at("邮件附件")
                    .found("尚未收到该工作室的场景照")
                    .expected("工作室场景照1幅（格式不限）")
                    .says(format!(
                        "“{}”尚缺工作室场景照，请补发；如已发送，请在照片文件名中写明工作室或带头人姓名。",
                        studio.name
                    )),
            );
        }
        // A scan of the 附件1 counts against the studio only while no typed form is on file
        // (the view holds the scan only then).
        for &n in &studio.not_typed {
            let nt = &sub.not_typed[n];
            if nt.kind == Kind::ApprovalForm && studio.form.is_none() {
                out.push(
                    Finding::new(Code::FormNotTyped)
                        .studio(name)
                        .file(&nt.file)
                        .at("整个文件")
                        .found("图片或扫描件")
                        .expected("打印填写的电子文档（.docx 或 .xlsx）")
                        .says("推荐审批表只收到照片或扫描件。通知要求“此表打印填写，禁止手工填写”，请另发填写好的电子文档（扫描件可一并保留）。"),
                );
            }
        }
        let squashed = squash(&studio.name);
        if ctx.policy.named_studios.iter().any(|n| squash(n) == squashed) {
            out.push(
                Finding::new(Code::SubmissionAlreadyNamed)
                    .studio(name)
                    .at("创新工作室名称")
                    .found(studio.name.clone())
                    .expected("尚未命名为市级及以上的工作室")
                    .says(format!("“{}”已是市级及以上劳模和工匠人才创新工作室，按通知不重复申报。", studio.name)),
            );
        }
        for other in ctx.others.iter().filter(|o| squash(&o.name) == squashed && Some(o.unit.as_str()) != ctx.unit) {
            out.push(
                Finding::new(Code::SubmissionDuplicateStudio)
                    .studio(name)
                    .at("创新工作室名称")
                    .found(format!("{}也推荐了该工作室", other.unit))
                    .expected("每个工作室只由一个单位推荐")
                    .says(format!("“{}”同时由{}推荐，请工作人员核实。", studio.name, other.unit)),
            );
        }
    }
}

/// Fields of 附件1 that hold counts (a negative or non-numeric value is implausible).
const COUNT_FIELDS: &[FieldKey] = &[
    FieldKey::Members, FieldKey::Male, FieldKey::Female, FieldKey::Party, FieldKey::Phd, FieldKey::Master, FieldKey::Bachelor, FieldKey::College, FieldKey::Highschool,
    FieldKey::SeniorTechnician, FieldKey::Technician, FieldKey::SeniorWorker, FieldKey::MidWorker, FieldKey::JuniorWorker, FieldKey::AssistantEngineer,
    FieldKey::Engineer, FieldKey::SeniorEngineer, FieldKey::Researcher, FieldKey::Area, FieldKey::Equipment, FieldKey::Books, FieldKey::Funding, FieldKey::Training,
    FieldKey::Achievements, FieldKey::Transformed, FieldKey::UtilityPatents, FieldKey::InventionPatents, FieldKey::Benefit, FieldKey::AwardsIntl,
    FieldKey::AwardsNational, FieldKey::AwardsProvincial, FieldKey::AwardsCity, FieldKey::AwardsTotal, FieldKey::AvgAge,
];

fn approval_form_rules(form: &ApprovalForm, studio: &Studio, ctx: &RuleContext, out: &mut Vec<Finding>) {
    let rules = &ctx.policy.rules;
    let name = Some(studio.name.as_str());
    let base = |code: Code, key: FieldKey| Finding::new(code).studio(name).file(&form.file).at(location(form, key));

    // form.field_missing: every field, each its own finding.
    for field in &form.fields {
        let needed = match forms::required(field.key) {
            Required::Always => true,
            Required::Never => false,
            Required::WhenTitled => !form.leader_untitled(),
        };
        if needed && field.filled().is_none() {
            let what = forms::shown_label(field.label);
            out.push(
                base(Code::FormFieldMissing, field.key)
                    .found(if field.value.is_none() { "表中没有此栏".to_owned() } else { "空白".to_owned() })
                    .expected("填写内容（没有的填“无”或“0”）")
                    .says(format!("推荐审批表“{what}”未填写。")),
            );
        }
    }

    // Counts: numbers, not negative.
    for &key in COUNT_FIELDS {
        let Some(raw) = form.get(key) else { continue };
        let label = forms::shown_label(form.field(key).map_or(key.label(), |f| f.label));
        match text::parse_number(raw) {
            None => out.push(
                base(Code::FormImplausibleValue, key)
                    .found(raw.to_owned())
                    .expected("一个数字")
                    .says(format!("“{label}”应填写数字，实际为“{raw}”。")),
            ),
            Some(v) if v < 0.0 => out.push(
                base(Code::FormImplausibleValue, key)
                    .found(raw.to_owned())
                    .expected("不小于0的数")
                    .says(format!("“{label}”不应为负数（{raw}）。")),
            ),
            _ => {}
        }
    }

    if let Some(n) = form.studio_name() {
        let squashed = squash(n);
        let leader = form.leader().map(squash).unwrap_or_default();
        let suffix_ok = squashed.ends_with(NAME_SUFFIX);
        let leader_ok = leader.is_empty() || squashed.contains(&leader);
        if !suffix_ok || !leader_ok {
            let mut why = Vec::new();
            if !suffix_ok {
                why.push(format!("应以“{NAME_SUFFIX}”结尾"));
            }
            if !leader_ok {
                why.push(format!("应含带头人姓名“{}”", form.leader().unwrap_or_default().trim()));
            }
            out.push(
                base(Code::FormNameFormat, FieldKey::StudioName)
                    .found(n.trim().to_owned())
                    .expected(format!("单位+劳模姓名+{NAME_SUFFIX}"))
                    .says(format!(
                        "工作室名称“{}”不符合“单位+劳模姓名”的统一格式：{}。例如：xx公司张三劳模和工匠人才创新工作室。",
                        n.trim(),
                        why.join("，")
                    )),
            );
        }
    }

    if let Some(members) = form.number(FieldKey::Members) {
        if members < rules.min_members as f64 {
            out.push(
                base(Code::FormTeamTooSmall, FieldKey::Members)
                    .found(fmt_number(members))
                    .expected(format!(">= {}", rules.min_members))
                    .says(format!(
                        "创新团队人数为{}人，申报条件要求{}人以上的创新团队。",
                        fmt_number(members),
                        rules.min_members
                    )),
            );
        }
        let sum = |keys: &[FieldKey]| -> Option<f64> { keys.iter().map(|&k| form.number(k)).sum() };
        if let Some(mf) = sum(&[FieldKey::Male, FieldKey::Female])
            && mf != members
        {
            out.push(
                base(Code::FormMemberSums, FieldKey::Male)
                    .found(format!("男+女 = {}", fmt_number(mf)))
                    .expected(format!("= 共 {} 人", fmt_number(members)))
                    .says(format!("男女人数之和（{}）与总人数（{}）不一致。", fmt_number(mf), fmt_number(members))),
            );
        }
        if let Some(edu) = sum(&[FieldKey::Phd, FieldKey::Master, FieldKey::Bachelor, FieldKey::College, FieldKey::Highschool])
            && edu != members
        {
            out.push(
                base(Code::FormMemberSums, FieldKey::Phd)
                    .found(format!("博士+硕士+本科+大专+高中（含）以下 = {}", fmt_number(edu)))
                    .expected(format!("= 共 {} 人", fmt_number(members)))
                    .says(format!("各学历人数之和（{}）与总人数（{}）不一致。", fmt_number(edu), fmt_number(members))),
            );
        }
        if let Some(party) = form.number(FieldKey::Party)
            && party > members
        {
            out.push(
                base(Code::FormImplausibleValue, FieldKey::Party)
                    .found(fmt_number(party))
                    .expected(format!("<= 共 {} 人", fmt_number(members)))
                    .says(format!("中共党员人数（{}）多于总人数（{}）。", fmt_number(party), fmt_number(members))),
            );
        }
    }

    if let Some(created) = form.date(FieldKey::Created) {
        let deadline = ctx.policy.deadline.date_naive();
        let latest = deadline
            .with_year(deadline.year() - rules.min_years_running as i32)
            .unwrap_or(deadline);
        if created.earliest() > deadline {
            out.push(
                base(Code::FormImplausibleValue, FieldKey::Created)
                    .found(created.to_string())
                    .expected(format!("不晚于{}", deadline))
                    .says(format!("创建时间{created}晚于申报截止日期，请核对。")),
            );
        } else if created.earliest() > latest {
            out.push(
                base(Code::FormTooYoung, FieldKey::Created)
                    .found(created.to_string())
                    .expected(format!("不晚于{}", latest.format("%Y年%m月%d日")))
                    .says(format!(
                        "工作室创建于{created}，申报条件要求有效运行{}年以上（{}前创建）。",
                        rules.min_years_running,
                        latest.format("%Y年%m月%d日")
                    )),
            );
        }
    } else if let Some(raw) = form.get(FieldKey::Created) {
        out.push(
            base(Code::FormImplausibleValue, FieldKey::Created)
                .found(raw.to_owned())
                .expected("日期，如 2016年5月")
                .says(format!("创建时间“{raw}”不是可识别的日期，请写成“2016年5月”的形式。")),
        );
    }

    if let Some(birth) = form.date(FieldKey::Birth) {
        let deadline = ctx.policy.deadline.date_naive();
        let age = deadline.year() - birth.year;
        if !(16..=80).contains(&age) {
            out.push(
                base(Code::FormImplausibleValue, FieldKey::Birth)
                    .found(birth.to_string())
                    .expected("带头人年龄在16至80岁之间")
                    .says(format!("带头人出生年月{birth}不合常理（按此计算年龄为{age}岁），请核对。")),
            );
        }
    }

    if let Some(age) = form.number(FieldKey::AvgAge)
        && !(rules.min_average_age..=rules.max_average_age).contains(&age)
    {
        out.push(
            base(Code::FormImplausibleValue, FieldKey::AvgAge)
                .found(fmt_number(age))
                .expected(format!("{}–{} 岁", fmt_number(rules.min_average_age), fmt_number(rules.max_average_age)))
                .says(format!("平均年龄{}岁不合常理，请核对。", fmt_number(age))),
        );
    }

    let awards: Option<f64> = [FieldKey::AwardsIntl, FieldKey::AwardsNational, FieldKey::AwardsProvincial, FieldKey::AwardsCity].iter().map(|&k| form.number(k)).sum();
    if let (Some(parts), Some(total)) = (awards, form.number(FieldKey::AwardsTotal))
        && parts != total
    {
        out.push(
            base(Code::FormAwardSums, FieldKey::AwardsTotal)
                .found(format!("国际级+国家级+省部级+地市级 = {}", fmt_number(parts)))
                .expected(format!("= 共计 {}", fmt_number(total)))
                .says(format!("获奖项数之和（{}）与“共计”（{}）不一致。", fmt_number(parts), fmt_number(total))),
        );
    }

    for (key, what) in [(FieldKey::Area, "工作场地面积"), (FieldKey::Equipment, "仪器设备"), (FieldKey::Funding, "年均专项经费")] {
        if form.number(key) == Some(0.0) {
            out.push(
                base(Code::FormNoFacilities, key)
                    .found(form.get(key).unwrap_or("0").to_owned())
                    .expected("> 0")
                    .says(format!("{what}为0。申报条件要求具有固定的工作场地、必需的设施设备和专项经费。")),
            );
        }
    }

    if let Some(a) = form.number(FieldKey::Achievements)
        && a < 1.0
    {
        out.push(
            base(Code::FormNoAchievement, FieldKey::Achievements)
                .found(fmt_number(a))
                .expected(">= 1")
                .says("创新成果为0项。申报条件要求至少完成1项得到认可的创新成果。"),
        );
    }

    if let Some(intro) = form.get(FieldKey::Intro) {
        let n = text::count_chars(intro);
        if n > rules.intro_max_chars {
            out.push(
                base(Code::FormIntroTooLong, FieldKey::Intro)
                    .found(format!("{n}字"))
                    .expected(format!("不超过{}字", rules.intro_max_chars))
                    .says(format!("工作室简介及主要先进事迹共{n}字，要求{}字以内，请精简。", rules.intro_max_chars)),
            );
        }
    }

    if form.leader_untitled() {
        out.push(
            base(Code::FormLeaderNotTitled, FieldKey::Titled)
                .found(form.get(FieldKey::Titled).unwrap_or("否").trim().to_owned())
                .expected("是（带头人为劳模或工匠人才）")
                .says("带头人未荣获过劳模和工匠称号；申报条件要求以劳模或工匠人才为带头人，请工作人员留意。"),
        );
    }
}

fn location(form: &ApprovalForm, key: FieldKey) -> String {
    match form.field(key) {
        Some(f) => format!("{} ‘{}’", f.location, forms::shown_label(f.label)),
        None => format!("‘{}’", forms::shown_label(key.label())),
    }
}

fn summary_rules(table: &SummaryTable, sub: &Submission, out: &mut Vec<Finding>) {
    let studio_of_row = |r: usize| -> Option<&str> {
        let t = sub.summaries.iter().position(|s| std::ptr::eq(s, table))?;
        sub.studios.iter().find(|s| s.row == Some((t, r))).map(|s| s.name.as_str())
    };
    for (what, value) in [("推荐单位", &table.recommending_unit), ("填报人", &table.filler)] {
        if value.is_none() {
            out.push(
                Finding::new(Code::SummaryHeaderMissing)
                    .file(&table.file)
                    .at(format!("{} ‘{what}’", table.header_location))
                    .found("空白")
                    .expected(format!("填写{what}"))
                    .says(format!("推荐汇总表的“{what}”未填写。")),
            );
        }
    }
    if !table.has_header {
        out.push(
            Finding::new(Code::SummaryCellMissing)
                .file(&table.file)
                .at("表头")
                .found("未找到“序号 … 创新工作室名称”表头")
                .expected("通知附件2的表格格式")
                .says("推荐汇总表中找不到通知附件2的表头（序号、创新工作室名称等），请使用通知所附的表格填写。"),
        );
        return;
    }
    // Columns the table lacks altogether: once per column, not once per row.
    if let Some(first) = table.rows.first() {
        for &forms::SummaryColumn { key, label, .. } in SUMMARY_COLUMNS {
            if first.cell(key).is_none() {
                out.push(
                    Finding::new(Code::SummaryCellMissing)
                        .file(&table.file)
                        .at("表头")
                        .found(format!("没有“{label}”一列"))
                        .expected("通知附件2的16列")
                        .says(format!("推荐汇总表缺少“{label}”一列，请使用通知所附的表格填写。")),
                );
            }
        }
    }
    for (r, row) in table.rows.iter().enumerate() {
        let studio = studio_of_row(r);
        for cell in &row.cells {
            if cell.filled().is_none() {
                out.push(
                    Finding::new(Code::SummaryCellMissing)
                        .studio(studio)
                        .file(&table.file)
                        .at(format!("{} ‘{}’", cell.location, cell.label))
                        .found("空白")
                        .expected("填写内容（没有的填“无”或“0”）")
                        .says(format!("推荐汇总表第{}行“{}”未填写（须逐项填写，不得漏项）。", row_number(row), cell.label)),
                );
            }
        }
        if let Some(phone) = row.get(FieldKey::Phone)
            && !phone_ok(phone)
        {
            out.push(
                Finding::new(Code::SummaryBadPhone)
                    .studio(studio)
                    .file(&table.file)
                    .at(row.cell(FieldKey::Phone).map(|c| format!("{} ‘联系电话’", c.location)).unwrap_or_default())
                    .found(phone.trim().to_owned())
                    .expected("11位手机号（1[3-9]开头）或固定电话（区号可选，7–8位）")
                    .says(format!("联系电话“{}”格式有误，请核对。", phone.trim())),
            );
        }
    }
    if table.rows.len() > 1 {
        let ranks: Vec<Option<u32>> = table
            .rows
            .iter()
            .map(|r| r.get(FieldKey::Rank).and_then(text::parse_number).filter(|v| v.fract() == 0.0 && *v >= 0.0).map(|v| v as u32))
            .collect();
        let mut sorted: Vec<u32> = ranks.iter().flatten().copied().collect();
        sorted.sort_unstable();
        let expected: Vec<u32> = (1..=table.rows.len() as u32).collect();
        if sorted != expected {
            let found: Vec<String> = table.rows.iter().map(|r| r.get(FieldKey::Rank).unwrap_or("空").trim().to_owned()).collect();
            out.push(
                Finding::new(Code::SummaryNotRanked)
                    .file(&table.file)
                    .at(table.rows[0].cell(FieldKey::Rank).map(|c| format!("{} 起 ‘序号’列", c.location)).unwrap_or_else(|| "‘序号’列".into()))
                    .found(found.join("、"))
                    .expected(format!("1至{}各一次", table.rows.len()))
                    .says(format!(
                        "申报{}个工作室，须在“序号”列按推荐顺序排序为1至{}（现为：{}）。",
                        table.rows.len(),
                        table.rows.len(),
                        found.join("、")
                    )),
            );
        }
    }
    // summary.unlisted_studio: forms whose studio has no row in any table.
    if std::ptr::eq(table, &sub.summaries[0]) {
        for studio in sub.studios.iter().filter(|s| s.form.is_some() && s.row.is_none()) {
            out.push(
                Finding::new(Code::SummaryUnlistedStudio)
                    .studio(Some(&studio.name))
                    .file(&table.file)
                    .at("工作室行")
                    .found("汇总表中没有该工作室")
                    .expected(format!("“{}”列入推荐汇总表", studio.name))
                    .says(format!("“{}”有推荐审批表，但未列入推荐汇总表，请在汇总表中补充一行。", studio.name)),
            );
        }
    }
}

fn row_number(row: &SummaryRow) -> String {
    row.row_label.trim_start_matches(|c: char| c.is_ascii_alphabetic()).trim_start_matches('第').split('行').next().unwrap_or("").to_owned()
}

/// Mainland mobile (11 digits, 1[3-9]…) or landline (area code optional, 7–8 digits); several
/// numbers may be given, separated by `/`, `、`, `；` or spaces.
pub fn phone_ok(s: &str) -> bool {
    let h = text::halfwidth(s);
    let parts: Vec<&str> = h.split(['/', '、', ';', '；', ',', '，']).map(str::trim).filter(|p| !p.is_empty()).collect();
    !parts.is_empty() && parts.iter().all(|p| one_phone_ok(p))
}

fn one_phone_ok(p: &str) -> bool {
    let mut digits: String = p.chars().filter(|c| c.is_ascii_digit()).collect();
    let cleaned_ok = p.chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | ' ' | '(' | ')' | '+'));
    if !cleaned_ok {
        return false;
    }
    if p.trim_start().starts_with("+86") || (digits.starts_with("86") && digits.len() == 13) {
        digits = digits[2..].to_owned();
    }
    let b = digits.as_bytes();
    if b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) {
        return true;
    }
    if (7..=8).contains(&b.len()) && b[0] != b'0' {
        return true;
    }
    // Area code 0 + 2–3 digits, then 7–8 digits.
    b.first() == Some(&b'0') && (10..=12).contains(&b.len())
}

fn mismatch_rules(form: &ApprovalForm, table: &SummaryTable, row: &SummaryRow, studio: &Studio, out: &mut Vec<Finding>) {
    let name = Some(studio.name.as_str());
    let mut report = |col: FieldKey, form_value: String, row_value: String, form_key: FieldKey| {
        let cell = row.cell(col);
        out.push(
            Finding::new(Code::SummaryMismatch)
                .studio(name)
                .file(&table.file)
                .at(format!(
                    "{} ‘{}’（对照 {} {}）",
                    cell.map(|c| c.location.as_str()).unwrap_or(""),
                    forms::summary_column_label(col),
                    form.file,
                    location(form, form_key)
                ))
                .found(row_value.clone())
                .expected(form_value.clone())
                .says(format!(
                    "汇总表“{}”为“{}”，而推荐审批表中为“{}”，请核对一致。",
                    forms::summary_column_label(col),
                    row_value,
                    form_value
                )),
        );
    };
    // Counts and amounts that 附件1 also holds (itself or as a sum of its parts).
    for column in SUMMARY_COLUMNS.iter().filter(|c| c.numeric) {
        let (Some(r), Some(f)) = (row.get(column.key).and_then(text::parse_number), column.form_number(form)) else { continue };
        if (r - f).abs() <= 1e-6 {
            continue;
        }
        let (expected, form_key) = match column.from_approval {
            FromApproval::Sum(parts, what) => (format!("{}（{what}）", fmt_number(f)), parts[0]),
            _ => (fmt_number(f), column.key),
        };
        report(column.key, expected, row.get(column.key).unwrap_or("").trim().to_owned(), form_key);
    }
    if let (Some(r), Some(f)) = (row.get(FieldKey::Created).and_then(text::parse_date), form.date(FieldKey::Created))
        && !r.agrees_with(&f)
    {
        report(FieldKey::Created, f.to_string(), row.get(FieldKey::Created).unwrap_or("").trim().to_owned(), FieldKey::Created);
    }
    if let (Some(r), Some(f)) = (row.get(FieldKey::Leader), form.leader())
        && squash(r) != squash(f)
    {
        report(FieldKey::Leader, f.trim().to_owned(), r.trim().to_owned(), FieldKey::Leader);
    }
}

fn materials_rules(m: &forms::Materials, studio: &Studio, rules: &RuleSettings, out: &mut Vec<Finding>) {
    let name = Some(studio.name.as_str());
    if m.chars < rules.materials_min_chars {
        out.push(
            Finding::new(Code::MaterialsTooShort)
                .studio(name)
                .file(&m.file)
                .at("全文")
                .found(format!("{}字", m.chars))
                .expected(format!("不少于{}字", rules.materials_min_chars))
                .says(format!("申报材料共{}字（不计空格），要求{}字以上，请补充。", m.chars, rules.materials_min_chars)),
        );
    }
    for (i, present) in m.headings.iter().enumerate() {
        if !present {
            out.push(
                Finding::new(Code::MaterialsOutline)
                    .studio(name)
                    .file(&m.file)
                    .at("提纲标题")
                    .found("缺少该部分")
                    .expected(forms::OUTLINE[i].to_owned())
                    .says(format!("申报材料中没有“{}”部分，请参照通知附件3的提纲补充。", forms::OUTLINE[i])),
            );
        }
    }
}

/// The deadline minus the running years: a studio created after this day is too young.
pub fn youngest_allowed(policy: &Policy) -> NaiveDate {
    let d = policy.deadline.date_naive();
    d.with_year(d.year() - policy.rules.min_years_running as i32).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        for ok in ["13812345678", "138 1234 5678", "0833-2133419", "2133419", "(0833)2133419", "+86 13812345678", "0833-21334190", "13812345678/0833-2133419"] {
            assert!(phone_ok(ok), "{ok}");
        }
        for bad in ["12812345678", "1381234567", "123456", "电话", "0833-213", "13812345678a"] {
            assert!(!phone_ok(bad), "{bad}");
        }
    }
}
