//! Finding codes of `RULES.md` (a stable interface: JSON, database rows, replies, digests)
//! and the finding record itself.

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub const ALL: &'static [Severity] = &[Severity::Error, Severity::Warning];

    /// The stable word of `check --format json` and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl PartialEq<&str> for Severity {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $sev:ident, $title:literal;)*) => {
        /// Every finding code of `RULES.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable code string, e.g. `form.team_too_small`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev),* }
            }

            /// A short Chinese title for lists and digests.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title),* }
            }

            pub fn parse(s: &str) -> Option<Code> {
                match s { $($code => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    SubmissionLate = "submission.late", Error, "逾期报送";
    SubmissionNoSummaryTable = "submission.no_summary_table", Error, "缺少推荐汇总表（附件2）";
    SubmissionMissingApprovalForm = "submission.missing_approval_form", Error, "缺少推荐审批表（附件1）";
    SubmissionMissingMaterials = "submission.missing_materials", Error, "缺少申报材料（附件3）";
    SubmissionMissingPhoto = "submission.missing_photo", Error, "缺少工作室场景照";
    SubmissionUnreadableAttachment = "submission.unreadable_attachment", Error, "附件无法读取";
    SubmissionUnknownSender = "submission.unknown_sender", Warning, "发件地址未登记";
    SubmissionSenderNotAuthenticated = "submission.sender_not_authenticated", Warning, "发件人未通过身份验证";
    SubmissionDownloadLink = "submission.download_link", Error, "附件为下载链接";
    SubmissionNoDocuments = "submission.no_documents", Warning, "邮件未含申报文件";
    SubmissionAlreadyNamed = "submission.already_named", Error, "已命名工作室重复申报";
    SubmissionDuplicateStudio = "submission.duplicate_studio", Warning, "工作室被多个单位推荐";
    FormFieldMissing = "form.field_missing", Error, "审批表漏填";
    FormNameFormat = "form.name_format", Error, "工作室名称不规范";
    FormTeamTooSmall = "form.team_too_small", Error, "团队不足5人";
    FormTooYoung = "form.too_young", Error, "运行不满2年";
    FormMemberSums = "form.member_sums", Error, "人数合计不符";
    FormAwardSums = "form.award_sums", Warning, "获奖项数合计不符";
    FormNoFacilities = "form.no_facilities", Error, "无场地、设备或经费";
    FormNoAchievement = "form.no_achievement", Error, "无创新成果";
    FormIntroTooLong = "form.intro_too_long", Error, "简介超过600字";
    FormLeaderNotTitled = "form.leader_not_titled", Warning, "带头人未获劳模工匠称号";
    FormImplausibleValue = "form.implausible_value", Warning, "数值不合常理";
    FormNotTyped = "form.not_typed", Error, "审批表非打印电子版";
    SummaryHeaderMissing = "summary.header_missing", Error, "汇总表表头漏填";
    SummaryCellMissing = "summary.cell_missing", Error, "汇总表漏项";
    SummaryNotRanked = "summary.not_ranked", Error, "汇总表未排序";
    SummaryMismatch = "summary.mismatch", Error, "汇总表与审批表不一致";
    SummaryUnlistedStudio = "summary.unlisted_studio", Error, "审批表工作室未列入汇总表";
    SummaryBadPhone = "summary.bad_phone", Warning, "联系电话格式有误";
    MaterialsTooShort = "materials.too_short", Error, "申报材料不足2000字";
    MaterialsOutline = "materials.outline", Warning, "申报材料缺少提纲部分";
    PhotoUnreadable = "photo.unreadable", Error, "场景照无法打开";
    PhotoLowResolution = "photo.low_resolution", Warning, "场景照分辨率偏低";
    UnitBelowMinimum = "unit.below_minimum", Warning, "推荐数量不足2个";
    CampaignOverQuota = "campaign.over_quota", Warning, "通过数量超过命名名额";
}

impl Code {
    /// Findings the sender can act on go into the reply; the others (who the sender is,
    /// what other units sent) are for staff only.
    pub fn for_sender(self) -> bool {
        !matches!(
            self,
            Code::SubmissionUnknownSender
                | Code::SubmissionSenderNotAuthenticated
                | Code::SubmissionDuplicateStudio
                | Code::UnitBelowMinimum
                | Code::CampaignOverQuota
        )
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One violation: what, where, found versus expected, and a Chinese sentence for the sender.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub studio: Option<String>,
    pub file: Option<String>,
    pub location: String,
    pub found: String,
    pub expected: String,
    pub message: String,
    /// Judged on the unit's dossier (an open finding of the unit until a later mail resolves
    /// it), not on this mail alone.
    #[serde(skip)]
    pub on_file: bool,
}

impl Finding {
    pub fn new(code: Code) -> Finding {
        Finding {
            code,
            severity: code.severity(),
            studio: None,
            file: None,
            location: String::new(),
            found: String::new(),
            expected: String::new(),
            message: String::new(),
            on_file: false,
        }
    }
    pub fn studio(mut self, s: Option<&str>) -> Self {
        self.studio = s.map(str::to_owned);
        self
    }
    pub fn file(mut self, f: &str) -> Self {
        self.file = Some(f.to_owned());
        self
    }
    pub fn at(mut self, location: impl Into<String>) -> Self {
        self.location = location.into();
        self
    }
    pub fn found(mut self, v: impl Into<String>) -> Self {
        self.found = v.into();
        self
    }
    pub fn expected(mut self, v: impl Into<String>) -> Self {
        self.expected = v.into();
        self
    }
    pub fn says(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_rules_md() {
        let rules = include_str!("../../tests/fixtures/RULES.codes");
        let listed: Vec<&str> = rules.lines().filter(|l| !l.is_empty()).collect();
        let ours: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, ours, "codes must be exactly those of RULES.md, in its order");
        for c in Code::ALL {
            assert_eq!(Code::parse(c.as_str()), Some(*c));
        }
    }
}
