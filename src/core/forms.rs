//! Attachments → typed records: 附件1 推荐审批表, 附件2 推荐汇总表, 附件3 申报材料 and photos.
//!
//! Values are found by their labels, never by coordinates: a label cell is recognised in its
//! squashed form (no spaces or line breaks, half-width punctuation), its value is the next
//! *different* cell to the right (merged cells repeat their value, see [`grid::Table`]), and
//! the fill-in sentences of the form (`共 8 人。其中男 6 人…`) are cut into segments and
//! matched as label + value + unit.

use serde::{Deserialize, Serialize};

use super::grid::{self, Block, Document, Format, Table};
use super::text::{self, PartialDate, squash};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ApprovalForm,
    SummaryTable,
    Materials,
    Photo,
    Archive,
    /// 推荐函 / 报送函: a letter that accompanies the forms; never a form or a studio.
    CoverLetter,
    /// A stamped scan of a form (image or image-only PDF), kept beside the typed file.
    Scan,
    Other,
}

impl Kind {
    pub fn chinese(self) -> &'static str {
        match self {
            Kind::ApprovalForm => "附件1 推荐审批表",
            Kind::SummaryTable => "附件2 推荐汇总表",
            Kind::Materials => "附件3 申报材料",
            Kind::Photo => "工作室场景照",
            Kind::Archive => "压缩包",
            Kind::CoverLetter => "推荐函",
            Kind::Scan => "扫描件",
            Kind::Other => "其他文件",
        }
    }
}

/// What a file's name says it is. The form titles first (a photo of the approval form is a
/// scan of the form), then photo words, then the bare 附件N numbers, so that a company named
/// 光伏材料公司 does not turn its scene photo into application materials. Content wins over this.
pub fn kind_from_name(name: &str) -> Option<Kind> {
    let n = squash(name).to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if has(&["审批表"]) {
        Some(Kind::ApprovalForm)
    } else if has(&["汇总表"]) {
        Some(Kind::SummaryTable)
    } else if has(&["申报材料", "申报书"]) {
        Some(Kind::Materials)
    } else if has(&["场景", "照片", "照", "图片", "photo", "img_", "dsc"]) {
        Some(Kind::Photo)
    } else if has(&["附件1"]) {
        Some(Kind::ApprovalForm)
    } else if has(&["附件2"]) {
        Some(Kind::SummaryTable)
    } else if has(&["附件3"]) {
        Some(Kind::Materials)
    } else {
        None
    }
}

/// What a document's content says it is: the title first, then its structure.
///
/// A title is a short line near the top (a sentence of a letter that mentions 推荐审批表 is
/// not one). A letter — 关于推荐…的函 / 推荐函 / 报送函 — is a cover letter unless it carries a
/// form's table.
pub fn kind_from_content(doc: &Document) -> Option<Kind> {
    // The title sits in the first few paragraphs or the first rows of the first table.
    let mut titles: Vec<String> = Vec::new();
    for block in doc.blocks.iter().take(12) {
        match block {
            Block::Paragraph(p) => {
                let s = squash(p);
                if !s.is_empty() && s.chars().count() <= TITLE_MAX_CHARS && !s.starts_with("附件:") {
                    titles.push(s);
                }
            }
            Block::Table(t) => {
                for row in t.rows.iter().take(3) {
                    for cell in row {
                        let s = squash(cell);
                        if s.chars().count() <= TITLE_MAX_CHARS {
                            titles.push(s);
                        }
                    }
                }
                break;
            }
        }
    }
    let titled = |word: &str| titles.iter().any(|t| t.contains(word));
    let has_summary_table = doc.tables().any(|t| summary_header(t).is_some());
    let form_labels = doc
        .tables()
        .flat_map(|t| t.rows.iter().flatten())
        .filter(|c| {
            let s = squash(c);
            s == "创新工作室名称" || s == "创建时间" || s.starts_with("是否荣获过")
        })
        .count();
    if !has_summary_table && form_labels < 2 && titles.iter().take(3).any(|t| is_letter_title(t)) {
        return Some(Kind::CoverLetter);
    }
    if titled("推荐审批表") {
        return Some(Kind::ApprovalForm);
    }
    if titled("推荐汇总表") {
        return Some(Kind::SummaryTable);
    }
    if titled("申报材料") {
        return Some(Kind::Materials);
    }
    if has_summary_table {
        return Some(Kind::SummaryTable);
    }
    if form_labels >= 2 {
        return Some(Kind::ApprovalForm);
    }
    if text::count_chars(&doc.text()) >= 500 {
        return Some(Kind::Materials);
    }
    None
}

/// Titles are short; the notice's longest form title is under 40 characters.
const TITLE_MAX_CHARS: usize = 60;

/// 关于推荐…的函, 推荐函, 报送函, 关于报送…的报告: the title of an official letter.
fn is_letter_title(t: &str) -> bool {
    let t = t.trim_end_matches(['。', '.']);
    t.ends_with("推荐函")
        || t.ends_with("报送函")
        || (t.starts_with("关于") && (t.ends_with('函') || t.ends_with("的报告") || t.ends_with("的请示")))
}

macro_rules! field_keys {
    ($($variant:ident = $key:literal,)+) => {
        /// Every value the forms hold: the fields of 附件1 and the columns of 附件2 (a column
        /// that repeats a field of 附件1 has the field's key). The key string names the value
        /// in stored records (`Field::key`, the studio `data` JSON the digest and export read):
        /// stable, never renamed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FieldKey { $($variant),+ }

        impl FieldKey {
            pub const ALL: &'static [FieldKey] = &[$(FieldKey::$variant),+];

            /// The stored key, e.g. `studio_name`.
            pub const fn as_str(self) -> &'static str {
                match self { $(FieldKey::$variant => $key),+ }
            }

            pub fn parse(s: &str) -> Option<FieldKey> {
                match s { $($key => Some(FieldKey::$variant),)+ _ => None }
            }
        }
    };
}

field_keys! {
    StudioName = "studio_name",
    Created = "created",
    Unit = "unit",
    Leader = "leader",
    LeaderWorkplace = "leader_workplace",
    Gender = "gender",
    Birth = "birth",
    NativePlace = "native_place",
    Ethnicity = "ethnicity",
    Political = "political",
    Education = "education",
    ProfessionalTitle = "professional_title",
    TechGrade = "tech_grade",
    Titled = "titled",
    WhenTitled = "when_titled",
    Members = "members",
    Male = "male",
    Female = "female",
    Party = "party",
    AvgAge = "avg_age",
    Phd = "phd",
    Master = "master",
    Bachelor = "bachelor",
    College = "college",
    Highschool = "highschool",
    SeniorTechnician = "senior_technician",
    Technician = "technician",
    SeniorWorker = "senior_worker",
    MidWorker = "mid_worker",
    JuniorWorker = "junior_worker",
    AssistantEngineer = "assistant_engineer",
    Engineer = "engineer",
    SeniorEngineer = "senior_engineer",
    Researcher = "researcher",
    Area = "area",
    Equipment = "equipment",
    Books = "books",
    Funding = "funding",
    Training = "training",
    Achievements = "achievements",
    Transformed = "transformed",
    UtilityPatents = "utility_patents",
    InventionPatents = "invention_patents",
    Benefit = "benefit",
    AwardsIntl = "awards_intl",
    AwardsNational = "awards_national",
    AwardsProvincial = "awards_provincial",
    AwardsCity = "awards_city",
    AwardsTotal = "awards_total",
    Intro = "intro",
    OpinionUnit = "opinion_unit",
    OpinionCounty = "opinion_county",
    OpinionCity = "opinion_city",
    Rank = "rank",
    Phone = "phone",
    Projects = "projects",
    Patents = "patents",
}

impl FieldKey {
    /// The label as printed in the notice: 附件1's for its fields, 附件2's header for the
    /// columns only the summary table has.
    pub fn label(self) -> &'static str {
        APPROVAL_FIELDS
            .iter()
            .find(|f| f.key == self)
            .map(|f| f.label)
            .or_else(|| SummaryColumn::of(self).map(|c| c.label))
            .unwrap_or("")
    }
}

impl std::fmt::Display for FieldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FieldKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        FieldKey::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown form field {s:?}")))
    }
}

/// A value found in a form, with where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub key: FieldKey,
    /// The label as printed in the notice.
    pub label: &'static str,
    /// `None` when the label itself was not found in the file.
    pub value: Option<String>,
    /// `表格1 第3行第2列` / `工作表“Sheet1” C3`.
    pub location: String,
}

/// A stored field: the key and label name the static entry of the form it belongs to (an
/// approval-form field or a summary-table column), so a record read back from the database
/// is the same value the reader produced.
impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            key: FieldKey,
            label: String,
            value: Option<String>,
            location: String,
        }
        let s = Stored::deserialize(d)?;
        // The label of the entry the reader used; a label of an older release falls back to
        // the key's current one.
        let labels = || APPROVAL_FIELDS.iter().map(|f| (f.key, f.label)).chain(SUMMARY_COLUMNS.iter().map(|c| (c.key, c.label)));
        let label = labels().find(|&(k, l)| k == s.key && l == s.label).map_or_else(|| s.key.label(), |(_, l)| l);
        let key = s.key;
        Ok(Field { key, label, value: s.value, location: s.location })
    }
}

impl Field {
    pub fn filled(&self) -> Option<&str> {
        self.value.as_deref().filter(|v| text::is_filled(v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    Always,
    /// The opinion cells the unions fill by hand after printing.
    Never,
    /// 何时获何种劳模称号: only when 是否荣获过劳模和工匠称号 is not 否.
    WhenTitled,
}

/// How a field appears on the form.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A label cell with the value in the next cell (or after a colon in the same cell).
    Labelled,
    /// Like `Labelled`, but the value may also be below the label or after it in the same cell
    /// (the long free-text cells).
    Block,
    /// A blank inside a printed sentence: label, value, unit (`共 8 人`).
    Blank { unit: &'static str },
}

struct Spec {
    key: FieldKey,
    label: &'static str,
    aliases: &'static [&'static str],
    shape: Shape,
    required: Required,
}

const fn lab(key: FieldKey, label: &'static str, aliases: &'static [&'static str]) -> Spec {
    Spec { key, label, aliases, shape: Shape::Labelled, required: Required::Always }
}

const fn blank(key: FieldKey, label: &'static str, aliases: &'static [&'static str], unit: &'static str) -> Spec {
    Spec { key, label, aliases, shape: Shape::Blank { unit }, required: Required::Always }
}

/// Every field of 附件1, in the order of the form.
const APPROVAL_FIELDS: &[Spec] = &[
    lab(FieldKey::StudioName, "创新工作室名称", &["工作室名称"]),
    lab(FieldKey::Created, "创建时间", &["成立时间", "创建日期"]),
    lab(FieldKey::Unit, "创新工作室所属单位名称", &["所属单位名称", "所属单位"]),
    lab(FieldKey::Leader, "姓名", &["负责人姓名", "带头人姓名"]),
    lab(FieldKey::LeaderWorkplace, "工作单位及职务", &["工作单位及职务职称", "工作单位"]),
    lab(FieldKey::Gender, "性别", &[]),
    lab(FieldKey::Birth, "出生年月", &["出生日期", "出生年月日"]),
    lab(FieldKey::NativePlace, "籍贯", &[]),
    lab(FieldKey::Ethnicity, "民族", &[]),
    lab(FieldKey::Political, "政治面貌", &[]),
    lab(FieldKey::Education, "学历", &["文化程度"]),
    lab(FieldKey::ProfessionalTitle, "职称", &[]),
    lab(FieldKey::TechGrade, "技术等级", &["技能等级"]),
    lab(FieldKey::Titled, "是否荣获过劳模和工匠称号", &["是否荣获过劳模或工匠称号", "是否荣获劳模和工匠称号"]),
    Spec { key: FieldKey::WhenTitled, label: "何时获何种劳模称号", aliases: &["何时获何种称号", "何时获何种劳模和工匠称号"], shape: Shape::Labelled, required: Required::WhenTitled },
    blank(FieldKey::Members, "共…人", &["共"], "人"),
    blank(FieldKey::Male, "男…人", &["其中男", "男"], "人"),
    blank(FieldKey::Female, "女…人", &["女"], "人"),
    blank(FieldKey::Party, "中共党员…人", &["中共党员", "党员"], "人"),
    blank(FieldKey::AvgAge, "平均年龄…岁", &["平均年龄"], "岁"),
    blank(FieldKey::Phd, "博士…人", &["博士"], "人"),
    blank(FieldKey::Master, "硕士…人", &["硕士"], "人"),
    blank(FieldKey::Bachelor, "本科…人", &["本科"], "人"),
    blank(FieldKey::College, "大专…人", &["大专"], "人"),
    blank(FieldKey::Highschool, "高中（含）以下…人", &["高中(含)以下", "高中及以下", "高中以下"], "人"),
    blank(FieldKey::SeniorTechnician, "高级技师…人", &["高级技师"], "人"),
    blank(FieldKey::Technician, "技师…人", &["技师"], "人"),
    blank(FieldKey::SeniorWorker, "高级工…人", &["高级工"], "人"),
    blank(FieldKey::MidWorker, "中级工…人", &["中级工"], "人"),
    blank(FieldKey::JuniorWorker, "初级工…人", &["初级工"], "人"),
    blank(FieldKey::AssistantEngineer, "助理工程师…人", &["助理工程师"], "人"),
    blank(FieldKey::Engineer, "工程师…人", &["工程师"], "人"),
    blank(FieldKey::SeniorEngineer, "高级工程师…人", &["高级工程师"], "人"),
    blank(FieldKey::Researcher, "研究员…人", &["研究员"], "人"),
    blank(FieldKey::Area, "工作场地（所）面积…㎡", &["工作场地(所)面积", "工作场地面积", "场地面积"], "㎡"),
    blank(FieldKey::Equipment, "仪器设备…台（套）", &["仪器设备"], "台(套)"),
    blank(FieldKey::Books, "专业技术书籍资料…册", &["专业技术书籍资料", "书籍资料"], "册"),
    blank(FieldKey::Funding, "年均专项经费…万元", &["年均专项经费", "专项经费"], "万元"),
    blank(FieldKey::Training, "年均技能培训…人次", &["年均技能培训", "技能培训"], "人次"),
    blank(FieldKey::Achievements, "创新成果…项", &["创新成果"], "项"),
    blank(FieldKey::Transformed, "成果转化…项", &["成果转化"], "项"),
    blank(FieldKey::UtilityPatents, "实用新型专利…项", &["实用新型专利"], "项"),
    blank(FieldKey::InventionPatents, "发明专利…项", &["发明专利"], "项"),
    blank(FieldKey::Benefit, "创新成果节创经济效益累计…万元", &["创新成果节创经济效益累计", "节创经济效益累计", "节创经济效益"], "万元"),
    blank(FieldKey::AwardsIntl, "国际级…项", &["国际级"], "项"),
    blank(FieldKey::AwardsNational, "国家级…项", &["国家级"], "项"),
    blank(FieldKey::AwardsProvincial, "省部级…项", &["省部级"], "项"),
    blank(FieldKey::AwardsCity, "地市级…项", &["地市级"], "项"),
    blank(FieldKey::AwardsTotal, "共计…项", &["共计"], "项"),
    Spec { key: FieldKey::Intro, label: "创新工作室简介及主要先进事迹", aliases: &["简介及主要先进事迹", "工作室简介"], shape: Shape::Block, required: Required::Always },
    Spec { key: FieldKey::OpinionUnit, label: "所在单位工会意见", aliases: &[], shape: Shape::Block, required: Required::Never },
    Spec { key: FieldKey::OpinionCounty, label: "县（市、区）总工会意见", aliases: &["县(市、区)总工会意见"], shape: Shape::Block, required: Required::Never },
    Spec { key: FieldKey::OpinionCity, label: "乐山市总工会意见", aliases: &[], shape: Shape::Block, required: Required::Never },
];

/// Labels of the form that head a block and are never values.
const SECTION_LABELS: &[&str] = &[
    "创新工作室负责人(带头人)基本情况",
    "创新工作室基本情况",
    "创新工作室获奖情况",
];

/// A label as people read it: the blank of a fill-in sentence shown as the form prints it,
/// `女…人` → `女（　）人` (not `女人`, which says something else).
pub fn shown_label(label: &str) -> String {
    label.replace('…', "（　）")
}

pub fn required(key: FieldKey) -> Required {
    APPROVAL_FIELDS.iter().find(|s| s.key == key).map(|s| s.required).unwrap_or(Required::Always)
}

/// 附件1 推荐审批表 as read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalForm {
    pub file: String,
    pub fields: Vec<Field>,
    /// Pictures inside the form document (a scene photo pasted into it).
    #[serde(default)]
    pub pictures: Vec<Photo>,
}

impl ApprovalForm {
    pub fn field(&self, key: FieldKey) -> Option<&Field> {
        self.fields.iter().find(|f| f.key == key)
    }
    pub fn get(&self, key: FieldKey) -> Option<&str> {
        self.field(key).and_then(Field::filled)
    }
    pub fn number(&self, key: FieldKey) -> Option<f64> {
        self.get(key).and_then(text::parse_number)
    }
    pub fn date(&self, key: FieldKey) -> Option<PartialDate> {
        self.get(key).and_then(text::parse_date)
    }
    pub fn location(&self, key: FieldKey) -> String {
        self.field(key).map(|f| f.location.clone()).unwrap_or_default()
    }
    pub fn studio_name(&self) -> Option<&str> {
        self.get(FieldKey::StudioName)
    }
    pub fn leader(&self) -> Option<&str> {
        self.get(FieldKey::Leader)
    }
    /// 否 in 是否荣获过劳模和工匠称号.
    pub fn leader_untitled(&self) -> bool {
        self.get(FieldKey::Titled).is_some_and(|v| {
            let v = squash(v);
            v.starts_with('否') || v == "无" || v.starts_with("没有") || v.eq_ignore_ascii_case("no")
        })
    }
}

/// A table with every cell's squashed text computed once (label matching compares squashed
/// text over and over).
struct Grid<'a> {
    table: &'a Table,
    squashed: Vec<Vec<String>>,
}

fn prepare(doc: &Document) -> Vec<Grid<'_>> {
    doc.tables()
        .map(|t| Grid { table: t, squashed: t.rows.iter().map(|r| r.iter().map(|c| squash(c)).collect()).collect() })
        .collect()
}

/// One cell as the label walk sees it.
#[derive(Clone, Copy)]
struct At<'a> {
    grid: &'a Grid<'a>,
    row: usize,
    col: usize,
}

impl<'a> At<'a> {
    fn text(&self) -> &'a str {
        &self.grid.table.rows[self.row][self.col]
    }
    fn squashed(&self) -> &'a str {
        &self.grid.squashed[self.row][self.col]
    }
    fn at(&self, row: usize, col: usize) -> At<'a> {
        At { grid: self.grid, row, col }
    }
    fn location(&self) -> String {
        format!("{} {}", self.grid.table.label, self.grid.table.cell_ref(self.row, self.col))
    }
}

/// The labels of 附件1, squashed once.
struct Labels {
    /// Labels as whole cells (fields and section heads).
    exact: std::collections::HashSet<String>,
    /// Labels that may carry a remark in brackets: `创新工作室简介及主要先进事迹（600字以内）`.
    prefixes: Vec<String>,
    /// (spec index, squashed label and aliases) of the labelled fields.
    labelled: Vec<(usize, Vec<String>)>,
    /// (squashed alias, spec index, squashed unit) of the fill-in blanks, longest alias first.
    blanks: Vec<(String, usize, String)>,
}

fn labels() -> &'static Labels {
    static LABELS: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    LABELS.get_or_init(|| {
        let mut exact: std::collections::HashSet<String> = SECTION_LABELS.iter().map(|s| squash(s)).collect();
        let mut prefixes = Vec::new();
        let mut labelled = Vec::new();
        let mut blanks = Vec::new();
        for (i, spec) in APPROVAL_FIELDS.iter().enumerate() {
            match spec.shape {
                Shape::Blank { unit } => {
                    for a in spec.aliases {
                        blanks.push((squash(a), i, squash(unit)));
                    }
                }
                _ => {
                    let names: Vec<String> = std::iter::once(spec.label).chain(spec.aliases.iter().copied()).map(squash).collect();
                    exact.extend(names.iter().cloned());
                    prefixes.extend(names.iter().cloned());
                    labelled.push((i, names));
                }
            }
        }
        blanks.sort_by_key(|(a, _, _)| std::cmp::Reverse(a.chars().count()));
        Labels { exact, prefixes, labelled, blanks }
    })
}

/// Does a squashed cell text carry this (squashed) label? Returns the text after the label
/// when the cell holds `label：value` or `label（remark）value`.
fn label_match(cell: &str, alias: &str) -> Option<String> {
    if cell == alias {
        return Some(String::new());
    }
    let rest = cell.strip_prefix(alias)?;
    // `姓名张明` is not `姓名` (could be another label such as 姓名拼音): only accept a
    // separator or a bracketed remark after the label.
    if !rest.starts_with([':', '：', '(']) {
        return None;
    }
    let rest = rest.trim_start_matches([':', '：']);
    let rest = if rest.starts_with('(') {
        match rest.find(')') {
            Some(i) => &rest[i + 1..],
            None => rest,
        }
    } else {
        rest
    };
    Some(rest.trim_start_matches([':', '：']).to_owned())
}

fn all_cells<'a>(grids: &'a [Grid<'a>]) -> impl Iterator<Item = At<'a>> {
    grids.iter().flat_map(|g| {
        g.table
            .rows
            .iter()
            .enumerate()
            .flat_map(move |(r, row)| (0..row.len()).map(move |c| At { grid: g, row: r, col: c }))
    })
}

fn is_any_label(squashed: &str) -> bool {
    if squashed.is_empty() {
        return false;
    }
    let l = labels();
    l.exact.contains(squashed) || l.prefixes.iter().any(|a| squashed.starts_with(a.as_str()) && squashed[a.len()..].starts_with('('))
}

/// Tables of a document, or for text-only documents (PDF through pdftotext) a table made of
/// its lines, cells split at runs of two or more spaces.
fn tables_of(doc: &Document) -> Document {
    if doc.tables().next().is_some() {
        return doc.clone();
    }
    let rows: Vec<Vec<String>> = doc
        .paragraphs()
        .flat_map(|p| p.lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|line| {
            let line = text::halfwidth(&line);
            let mut cells = Vec::new();
            let mut current = String::new();
            let mut spaces = 0;
            for c in line.chars() {
                if c == ' ' || c == '\t' {
                    spaces += if c == '\t' { 2 } else { 1 };
                } else {
                    if spaces >= 2 && !current.is_empty() {
                        cells.push(std::mem::take(&mut current));
                    } else if spaces == 1 {
                        current.push(' ');
                    }
                    spaces = 0;
                    current.push(c);
                }
            }
            if !current.is_empty() {
                cells.push(current);
            }
            cells
        })
        .filter(|r| !r.is_empty())
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let rows = rows.into_iter().map(|mut r| { r.resize(width, String::new()); r }).collect();
    Document {
        format: doc.format,
        blocks: vec![Block::Table(Table { label: "正文".into(), is_sheet: false, rows })],
        embedded_images: doc.embedded_images,
        pictures: doc.pictures.clone(),
    }
}

/// Parse 附件1 from a document (docx, xlsx, converted doc or PDF text).
pub fn parse_approval_form(file: &str, doc: &Document) -> ApprovalForm {
    let doc = tables_of(doc);
    let grids = prepare(&doc);
    let mut fields: Vec<Field> = Vec::new();
    for (i, names) in &labels().labelled {
        fields.push(find_labelled(&grids, &APPROVAL_FIELDS[*i], names));
    }
    fields.extend(find_blanks(&grids));
    ApprovalForm { file: file.to_owned(), fields, pictures: pictures_of(file, &doc) }
}

/// A value as kept in a record: the layout inside it taken out (see [`text::clean_value`]),
/// free text keeping its lines, a row of check boxes read as the ticked option.
fn keep_value(raw: &str, free_text: bool, key: FieldKey) -> String {
    if free_text {
        return text::clean_text(raw);
    }
    let v = text::clean_value(raw);
    if key == FieldKey::Leader {
        return text::person_name(&v);
    }
    text::ticked_options(&v).unwrap_or(v)
}

fn find_labelled(grids: &[Grid<'_>], spec: &Spec, names: &[String]) -> Field {
    let free_text = matches!(spec.shape, Shape::Block);
    let field = |value: Option<String>, location: String| Field {
        key: spec.key,
        label: spec.label,
        value: value.map(|v| keep_value(&v, free_text, spec.key)),
        location,
    };
    for name in names {
        for at in all_cells(grids) {
            let cell = at.squashed();
            let Some(inline) = label_match(cell, name) else { continue };
            // The same label repeated by a merge to the left: only take the first cell.
            if at.col > 0 && at.at(at.row, at.col - 1).squashed() == cell {
                continue;
            }
            if !inline.is_empty() && !is_any_label(&inline) {
                return field(Some(original_after_label(at.text(), name)), at.location());
            }
            let width = at.grid.table.rows[at.row].len();
            let right = (at.col + 1..width).map(|c| at.at(at.row, c)).find(|v| v.squashed() != cell);
            if let Some(value_at) = right {
                let v = value_at.squashed();
                if !is_any_label(v) && !(matches!(spec.shape, Shape::Block) && v.is_empty()) {
                    return field(Some(value_at.text().trim().to_owned()), value_at.location());
                }
            }
            if matches!(spec.shape, Shape::Block)
                && let Some(below) = at.grid.table.rows.get(at.row + 1)
                && !below.is_empty()
            {
                // Free text below the label (the 简介 box).
                let value_at = at.at(at.row + 1, at.col.min(below.len() - 1));
                if !is_any_label(value_at.squashed()) {
                    return field(Some(value_at.text().trim().to_owned()), value_at.location());
                }
            }
            return field(Some(String::new()), at.location());
        }
    }
    field(None, format!("未找到“{}”一栏", spec.label))
}

/// The text after a label in the original (unsquashed) cell, keeping the writer's spacing.
fn original_after_label(original: &str, label: &str) -> String {
    let label: Vec<char> = squash(label).chars().collect();
    let mut matched = 0;
    let mut cut = 0;
    for (i, c) in original.char_indices() {
        if matched == label.len() {
            cut = i;
            break;
        }
        let hc = text::halfwidth(&c.to_string()).chars().next().unwrap_or(c);
        if hc.is_whitespace() {
            continue;
        }
        if hc == label[matched] {
            matched += 1;
            cut = i + c.len_utf8();
        } else {
            break;
        }
    }
    let rest = original[cut..].trim_start();
    let rest = rest.trim_start_matches([':', '：', ' ']);
    let rest = if rest.starts_with(['(', '（']) {
        match rest.find([')', '）']) {
            Some(i) => &rest[i + rest[i..].chars().next().map_or(1, char::len_utf8)..],
            None => rest,
        }
    } else {
        rest
    };
    rest.trim_start_matches([':', '：']).trim().to_owned()
}

/// Fill-in sentences: cut every distinct cell (and the text of a table-less document) into
/// segments at Chinese punctuation, then read `label value unit` from each segment.
fn find_blanks(grids: &[Grid<'_>]) -> Vec<Field> {
    let labels = labels();
    let mut found: Vec<Option<Field>> = vec![None; APPROVAL_FIELDS.len()];
    let mut previous = "";
    for at in all_cells(grids) {
        let cell = at.squashed();
        if cell.is_empty() || cell == previous || is_any_label(cell) {
            continue;
        }
        previous = cell;
        for segment in segments(cell) {
            let segment = segment.strip_prefix("其中").unwrap_or(segment);
            // The longest label that prefixes the segment is its label: `高级工程师` is never
            // `高级工` + `程师`, even when it holds no value.
            for (alias, i, unit) in &labels.blanks {
                let Some(rest) = segment.strip_prefix(alias.as_str()) else { continue };
                let (value, had_unit) = match rest.strip_suffix(unit.as_str()) {
                    Some(v) => (v, true),
                    None => (strip_any_unit(rest), rest != strip_any_unit(rest)),
                };
                // A blank drawn with underscores (`共__9__人`, templates from WPS or a PDF):
                // the line is the blank, the value is what is typed on it.
                let value = value.trim_matches(['_', '＿']);
                // A blank holds a number (`8`, `约300`, `八`, `无`), not prose that happens to
                // start with a label (`共完成创新项目12项`).
                let words = value.chars().filter(|c| !c.is_ascii_digit() && !matches!(c, '.' | ',' | '-')).count();
                let value_like = value.is_empty()
                    || (text::parse_number(value).is_some() && words <= 3)
                    || matches!(value, "若干" | "不详" | "待定" | "暂无" | "-" | "/");
                if value_like && !(value.is_empty() && !had_unit) && found[*i].is_none() {
                    let spec = &APPROVAL_FIELDS[*i];
                    found[*i] = Some(Field { key: spec.key, label: spec.label, value: Some(value.to_owned()), location: at.location() });
                }
                break;
            }
        }
    }
    APPROVAL_FIELDS
        .iter()
        .zip(found)
        .filter(|(spec, _)| matches!(spec.shape, Shape::Blank { .. }))
        .map(|(spec, f)| f.unwrap_or(Field { key: spec.key, label: spec.label, value: None, location: format!("未找到“{}”", spec.label) }))
        .collect()
}

fn strip_any_unit(s: &str) -> &str {
    for unit in ["平方米", "平米", "m2", "m²", "㎡", "台(套)", "台/套", "台套", "台", "套", "册", "万元", "人次", "人", "项", "岁", "名", "个"] {
        if let Some(v) = s.strip_suffix(unit) {
            return v;
        }
    }
    s
}

/// Cut at sentence punctuation; a comma between digits (`1,200`) is a thousands separator.
fn segments(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let digit_around = k > 0
            && chars[k - 1].1.is_ascii_digit()
            && chars.get(k + 1).is_some_and(|(_, n)| n.is_ascii_digit());
        if matches!(c, '，' | '。' | '；' | ';' | '、' | ':' | '：') || (c == ',' && !digit_around) {
            if i > start {
                out.push(&s[start..i]);
            }
            start = i + c.len_utf8();
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Where the consolidated table takes a column's value when the studio's 附件2 row lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromApproval {
    /// 附件1 has no such field (序号, 联系电话, 创新课题).
    Nothing,
    /// The 附件1 field of the same key.
    Same,
    /// The sum of these 附件1 counts, with how to say so (专利数 = 实用新型 + 发明专利).
    Sum(&'static [FieldKey], &'static str),
}

/// One column of 附件2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryColumn {
    pub key: FieldKey,
    /// The header as printed in the notice.
    pub label: &'static str,
    /// A count or amount: written as a number in the consolidated table and compared with
    /// 附件1 as a number.
    pub numeric: bool,
    pub from_approval: FromApproval,
}

const fn column(key: FieldKey, label: &'static str, numeric: bool, from_approval: FromApproval) -> SummaryColumn {
    SummaryColumn { key, label, numeric, from_approval }
}

/// Columns of 附件2, in the notice's order.
pub const SUMMARY_COLUMNS: &[SummaryColumn] = &[
    column(FieldKey::Rank, "序号", true, FromApproval::Nothing),
    column(FieldKey::Unit, "创新工作室所属单位名称", false, FromApproval::Same),
    column(FieldKey::StudioName, "创新工作室名称", false, FromApproval::Same),
    column(FieldKey::Created, "创建时间", false, FromApproval::Same),
    column(FieldKey::Leader, "姓名", false, FromApproval::Same),
    column(FieldKey::LeaderWorkplace, "工作单位及职务", false, FromApproval::Same),
    column(FieldKey::Titled, "是否荣获各级各类劳动模范(先进工作者)、工匠称号", false, FromApproval::Same),
    column(FieldKey::Phone, "联系电话", false, FromApproval::Nothing),
    column(FieldKey::Members, "创新工作室成员人数（人）", true, FromApproval::Same),
    column(FieldKey::Area, "工作场地面积（㎡）", true, FromApproval::Same),
    column(FieldKey::Equipment, "仪器设备（台/套）", true, FromApproval::Same),
    column(FieldKey::Funding, "年均专项经费（万元）", true, FromApproval::Same),
    column(FieldKey::Projects, "创新课题或攻关项目累计（项）", true, FromApproval::Nothing),
    column(FieldKey::Achievements, "创新成果数累计（项）", true, FromApproval::Same),
    column(FieldKey::Patents, "专利数累计（项）", true, FromApproval::Sum(&[FieldKey::UtilityPatents, FieldKey::InventionPatents], "实用新型+发明专利")),
    column(FieldKey::Benefit, "创新成果转化应用节创经济效益累计（万元）", true, FromApproval::Same),
];

impl SummaryColumn {
    pub fn of(key: FieldKey) -> Option<&'static SummaryColumn> {
        SUMMARY_COLUMNS.iter().find(|c| c.key == key)
    }

    /// What 附件1 says for this column, as the text the table would hold.
    pub fn from_form(&self, form: &ApprovalForm) -> Option<String> {
        match self.from_approval {
            FromApproval::Nothing => None,
            FromApproval::Same => form.get(self.key).map(str::to_owned),
            FromApproval::Sum(..) => self.form_number(form).map(text::fmt_number),
        }
    }

    /// What 附件1 says for this column as a number (`None` when a part is missing).
    pub fn form_number(&self, form: &ApprovalForm) -> Option<f64> {
        match self.from_approval {
            FromApproval::Nothing => None,
            FromApproval::Same => form.number(self.key),
            FromApproval::Sum(parts, _) => parts.iter().map(|&k| form.number(k)).sum(),
        }
    }
}

/// Which column a header text names. Most specific first: 经济效益 before 创新成果, 所属单位
/// before 工作室名称.
fn summary_column(header: &str) -> Option<FieldKey> {
    let h = squash(header);
    let rules: &[(FieldKey, &[&str])] = &[
        (FieldKey::Rank, &["序号", "排序", "排名"]),
        (FieldKey::Benefit, &["经济效益", "节创"]),
        (FieldKey::Unit, &["所属单位"]),
        (FieldKey::StudioName, &["工作室名称", "名称"]),
        (FieldKey::Created, &["创建时间", "成立时间"]),
        (FieldKey::Titled, &["是否荣获", "劳动模范", "称号"]),
        (FieldKey::LeaderWorkplace, &["工作单位", "职务"]),
        (FieldKey::Leader, &["姓名"]),
        (FieldKey::Phone, &["电话", "手机"]),
        (FieldKey::Members, &["成员人数", "人数"]),
        (FieldKey::Area, &["面积"]),
        (FieldKey::Equipment, &["仪器设备", "设备"]),
        (FieldKey::Funding, &["经费"]),
        (FieldKey::Projects, &["课题", "攻关项目"]),
        (FieldKey::Achievements, &["成果数", "创新成果"]),
        (FieldKey::Patents, &["专利"]),
    ];
    rules.iter().find(|(_, keys)| keys.iter().any(|k| h.contains(k))).map(|(k, _)| *k)
}

pub fn summary_column_label(key: FieldKey) -> &'static str {
    SummaryColumn::of(key).map_or("", |c| c.label)
}

/// The header of 附件2 in a table: (first header row, last header row, column of each key).
fn summary_header(t: &Table) -> Option<(usize, usize, Vec<(FieldKey, usize)>)> {
    for (r, row) in t.rows.iter().enumerate().take(40) {
        let squashed: Vec<String> = row.iter().map(|c| squash(c)).collect();
        let has_rank = squashed.iter().any(|c| c == "序号" || c == "排序");
        let has_name = squashed.iter().any(|c| c.contains("工作室名称"));
        if !(has_rank && has_name) {
            continue;
        }
        // A second header row when the next row names sub-columns (姓名 …).
        let second = t.rows.get(r + 1).filter(|next| {
            next.iter().any(|c| {
                let c = squash(c);
                c == "姓名" || c.contains("成员人数") || c.contains("面积")
            })
        });
        let last = if second.is_some() { r + 1 } else { r };
        let mut columns: Vec<(FieldKey, usize)> = Vec::new();
        for c in 0..row.len() {
            let lower = second.and_then(|s| s.get(c)).map(String::as_str).unwrap_or("");
            let upper = &row[c];
            // The sub-header is the more specific one, unless it merely repeats the upper cell.
            let key = summary_column(lower).filter(|_| squash(lower) != squash(upper)).or_else(|| summary_column(upper));
            if let Some(key) = key
                && !columns.iter().any(|(k, _)| *k == key)
            {
                columns.push((key, c));
            }
        }
        return Some((r, last, columns));
    }
    None
}

/// What a row below the summary table's header is, as a person reading the printed table
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// A studio (or an empty row, which the caller skips).
    Studio,
    /// 合计/总计/小计: sums of the rows above, by label or as numbers without any studio.
    Totals,
    /// The column numbers 1…16 (or ①…⑯) printed under the header.
    Numbering,
    /// The header again (a second header row, a header repeated for a new page).
    Header,
    /// One text merged across the table (a remark, a heading for a group of rows).
    Note,
}

/// Words that open a totals row.
const TOTAL_WORDS: &[&str] = &["合计", "总计", "小计", "共计", "总数", "汇总", "累计"];

/// Columns that say which studio a row is; a row with none of them is not a studio.
const IDENTITY_COLUMNS: &[FieldKey] = &[FieldKey::Unit, FieldKey::StudioName, FieldKey::Created, FieldKey::Leader, FieldKey::LeaderWorkplace, FieldKey::Titled, FieldKey::Phone];

/// `3`, `(3)`, `（3）`, `3.`, `③` → 3.
fn column_number(cell: &str) -> Option<u32> {
    let t = cell.trim_matches(['(', ')', '.', '、']);
    if let Some(c) = t.chars().next().filter(|_| t.chars().count() == 1)
        && ('①'..='⑳').contains(&c)
    {
        return Some(c as u32 - '①' as u32 + 1);
    }
    if !t.is_empty() && t.len() <= 3 && t.chars().all(|c| c.is_ascii_digit()) {
        return t.parse().ok();
    }
    None
}

fn row_kind(row: &[String], columns: &[(FieldKey, usize)]) -> RowKind {
    let squashed: Vec<String> = row.iter().map(|c| squash(c)).collect();
    let filled: Vec<&str> = squashed.iter().map(String::as_str).filter(|c| text::is_filled(c)).collect();
    if filled.is_empty() {
        return RowKind::Studio;
    }
    let at = |key: FieldKey| -> &str {
        columns.iter().find(|(k, _)| *k == key).and_then(|&(_, c)| squashed.get(c)).map_or("", String::as_str)
    };
    // Distinct values in reading order (a merged cell repeats its value).
    let mut distinct: Vec<&str> = Vec::new();
    for c in &filled {
        if distinct.last() != Some(c) {
            distinct.push(c);
        }
    }
    let mut unique = distinct.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() == 1 && filled.len() >= 3 {
        return RowKind::Note;
    }
    // 合计 in the first cell or in a column that names a studio.
    let opens_total = |c: &str| TOTAL_WORDS.iter().any(|w| c.starts_with(w)) && c.chars().count() <= 16;
    if opens_total(distinct[0]) || [FieldKey::Rank, FieldKey::Unit, FieldKey::StudioName, FieldKey::Leader].iter().any(|&k| opens_total(at(k))) {
        return RowKind::Totals;
    }
    // 1 2 3 … under the header: every value a small number, each one more than the last.
    let numbers: Vec<u32> = distinct.iter().filter_map(|c| column_number(c)).collect();
    if numbers.len() == distinct.len() && numbers.len() >= 4 && numbers.windows(2).all(|w| w[1] == w[0] + 1) && numbers[0] <= 2 {
        return RowKind::Numbering;
    }
    // The header again: 序号 in the rank column, or most named columns holding their own name.
    let rank = at(FieldKey::Rank);
    let own_names = columns.iter().filter(|&&(k, c)| squashed.get(c).is_some_and(|v| !v.is_empty() && summary_column(v) == Some(k))).count();
    let named = columns.iter().filter(|&&(_, c)| squashed.get(c).is_some_and(|v| !v.is_empty())).count();
    if matches!(rank, "序号" | "排序" | "排名") || (own_names >= 3 && own_names * 5 >= named * 3 && column_number(rank).is_none()) {
        return RowKind::Header;
    }
    // Numbers without a studio and without a 序号 of their own: sums (formulas) under the
    // studios, their label lost or in a column that is not one of the notice's.
    let identity = IDENTITY_COLUMNS.iter().any(|&k| text::is_filled(at(k)));
    if !identity && column_number(rank).is_none() {
        return RowKind::Totals;
    }
    RowKind::Studio
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRow {
    /// 1-based row as the user sees it (spreadsheet row number or table row).
    pub row_label: String,
    pub cells: Vec<Field>,
}

impl SummaryRow {
    pub fn cell(&self, key: FieldKey) -> Option<&Field> {
        self.cells.iter().find(|f| f.key == key)
    }
    pub fn get(&self, key: FieldKey) -> Option<&str> {
        self.cell(key).and_then(Field::filled)
    }
}

/// 附件2 推荐汇总表 as read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryTable {
    pub file: String,
    pub recommending_unit: Option<String>,
    pub filler: Option<String>,
    /// Where the 推荐单位/填报人 line is (or where it should be).
    pub header_location: String,
    pub rows: Vec<SummaryRow>,
    /// False when no header row (序号 … 创新工作室名称) was found.
    pub has_header: bool,
}

pub fn parse_summary_table(file: &str, doc: &Document) -> SummaryTable {
    let mut out = SummaryTable {
        file: file.to_owned(),
        recommending_unit: None,
        filler: None,
        header_location: "表头".into(),
        rows: Vec::new(),
        has_header: false,
    };
    // 推荐单位/填报人 may be a paragraph before the table (docx) or a row above the header.
    let mut before_header: Vec<(String, String)> = Vec::new();
    for block in &doc.blocks {
        match block {
            Block::Paragraph(p) => before_header.push((p.clone(), "表格上方".into())),
            Block::Table(t) => {
                let header = summary_header(t);
                let stop = header.as_ref().map(|h| h.0).unwrap_or(t.rows.len().min(5));
                for (r, row) in t.rows.iter().enumerate().take(stop) {
                    let mut line = String::new();
                    for (c, cell) in row.iter().enumerate() {
                        if c == 0 || *cell != row[c - 1] {
                            line.push_str(cell);
                            line.push_str("  ");
                        }
                    }
                    before_header.push((line, format!("{} {}", t.label, t.cell_ref(r, 0))));
                }
                if let Some((_, last, columns)) = header {
                    out.has_header = true;
                    for (r, row) in t.rows.iter().enumerate().skip(last + 1) {
                        let first = row.iter().map(|c| squash(c)).find(|c| !c.is_empty()).unwrap_or_default();
                        if first.starts_with("填表要求") || first.starts_with("填表说明") || first.starts_with("注") && first.len() > 6 {
                            break;
                        }
                        if row_kind(row, &columns) != RowKind::Studio {
                            continue;
                        }
                        let cells: Vec<Field> = columns
                            .iter()
                            .map(|&(key, c)| Field {
                                key,
                                label: summary_column_label(key),
                                value: Some(keep_value(row.get(c).map_or("", String::as_str), false, key)),
                                location: format!("{} {}", t.label, t.cell_ref(r, c)),
                            })
                            .collect();
                        // A studio row has something besides 序号 (the template's blank rows
                        // sometimes carry pre-printed numbers).
                        let content = cells.iter().any(|f| f.key != FieldKey::Rank && f.filled().is_some());
                        if content {
                            out.rows.push(SummaryRow { row_label: t.cell_ref(r, 0), cells });
                        }
                    }
                    break;
                }
            }
        }
    }
    for (line, location) in &before_header {
        let line = text::halfwidth(line);
        if let Some(i) = line.find("推荐单位") {
            out.header_location = location.clone();
            let rest = &line[i + "推荐单位".len()..];
            let rest = rest.trim_start().trim_start_matches("(盖章)").trim_start_matches("（盖章）");
            let rest = rest.trim_start().trim_start_matches([':', '：']);
            let end = ["填报人", "联系电话", "填报日期", "日期"].iter().filter_map(|k| rest.find(k)).min().unwrap_or(rest.len());
            let unit = text::clean_value(rest[..end].trim().trim_end_matches([':', '：', ' ']));
            out.recommending_unit = Some(unit).filter(|u| text::is_filled(u));
        }
        if let Some(i) = line.find("填报人") {
            let rest = line[i + "填报人".len()..].trim_start().trim_start_matches([':', '：']);
            let end = ["联系电话", "电话", "填报日期", "日期"].iter().filter_map(|k| rest.find(k)).min().unwrap_or(rest.len());
            let filler = text::clean_value(rest[..end].trim().trim_end_matches([':', '：', ' ']));
            out.filler = Some(filler).filter(|f| text::is_filled(f));
        }
    }
    out
}

/// 附件3 申报材料 as read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Materials {
    pub file: String,
    /// Characters as the notice counts them.
    pub chars: usize,
    /// Which of the three outline headings are present.
    pub headings: [bool; 3],
    #[serde(skip)]
    pub text: String,
    /// Pictures inside the document (a scene photo pasted into 附件3).
    #[serde(default)]
    pub pictures: Vec<Photo>,
}

pub const OUTLINE: [&str; 3] = ["一、基本情况", "二、近两年工作情况", "三、近两年主要成效"];

/// Text outside the form's tables below which it is a note, not a studio's materials.
const MATERIALS_AFTER_FORM_MIN_CHARS: usize = 300;

/// 附件3 written into the same document as the studio's 附件1 (one file per studio, often
/// named “申报材料（附件1、3）”): the text outside the form's tables, when it reads as
/// application materials — titled 申报材料, or two of the outline's three sections — and is
/// more than a note. `None` for an ordinary 附件1.
pub fn materials_after_form(file: &str, doc: &Document) -> Option<Materials> {
    let outside = Document {
        format: doc.format,
        blocks: doc.blocks.iter().filter(|b| matches!(b, Block::Paragraph(_))).cloned().collect(),
        embedded_images: doc.embedded_images,
        pictures: doc.pictures.clone(),
    };
    let titled = outside.paragraphs().any(|p| {
        let s = squash(p);
        s.chars().count() <= TITLE_MAX_CHARS && s.contains("申报材料") && !s.contains("推荐审批表")
    });
    let m = parse_materials(file, &outside);
    let sections = m.headings.iter().filter(|&&h| h).count();
    ((titled || sections >= 2) && m.chars >= MATERIALS_AFTER_FORM_MIN_CHARS).then_some(m)
}

pub fn parse_materials(file: &str, doc: &Document) -> Materials {
    let text = doc.text();
    let squashed = squash(&text);
    // Headings by meaning: the numbering style varies (一、 一. （一）), the words do not.
    let keys: [&[&str]; 3] = [&["基本情况"], &["工作情况", "近两年工作", "日常运作"], &["主要成效", "工作成效", "近两年成效"]];
    let mut headings = [false; 3];
    for (i, k) in keys.iter().enumerate() {
        headings[i] = k.iter().any(|k| squashed.contains(k));
    }
    Materials { file: file.to_owned(), chars: text::count_chars(&text), headings, text, pictures: pictures_of(file, doc) }
}

/// A scene photo as read: format and pixel size, or why it is not an image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Photo {
    pub file: String,
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

/// Read a photo's format and dimensions from its header; `Err` says why it is not an image.
pub fn parse_photo(file: &str, data: &[u8]) -> Result<Photo, String> {
    if data.is_empty() {
        return Err("文件为空".into());
    }
    let format = grid::sniff(file, data);
    let size = imagesize::blob_size(data).map_err(|e| format!("无法识别为图片（{e}）"))?;
    if size.width == 0 || size.height == 0 {
        return Err("图片尺寸为0".into());
    }
    // A JPEG cut short still has its header: make sure the data at least has an end.
    if format == Format::Jpeg && !data.ends_with(&[0xff, 0xd9]) && !data[data.len().saturating_sub(64)..].windows(2).any(|w| w == [0xff, 0xd9]) {
        return Err("JPEG 文件不完整（被截断）".into());
    }
    if format == Format::Png && !data.windows(4).rev().take(64).any(|w| w == b"IEND") {
        return Err("PNG 文件不完整（被截断）".into());
    }
    Ok(Photo { file: file.to_owned(), format, width: size.width as u32, height: size.height as u32 })
}

/// Pictures of a document big enough to be a photo (not a logo or a stamp icon), as photos
/// named `document.docx/word/media/image1.jpeg`.
pub fn pictures_of(file: &str, doc: &Document) -> Vec<Photo> {
    doc.pictures
        .iter()
        .filter(|p| p.width.min(p.height) >= EMBEDDED_PHOTO_MIN_SIDE)
        .map(|p| Photo { file: format!("{file}/{}", p.name), format: p.format, width: p.width, height: p.height })
        .collect()
}

/// Pictures smaller than this inside a document are logos, seals or icons, not scene photos.
pub const EMBEDDED_PHOTO_MIN_SIDE: u32 = 300;

pub fn is_image(format: Format) -> bool {
    matches!(format, Format::Jpeg | Format::Png | Format::Gif | Format::Bmp | Format::Webp | Format::Heic | Format::Tiff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_key_names_one_entry_of_the_forms_and_reads_back() {
        let mut seen = std::collections::HashSet::new();
        for &key in FieldKey::ALL {
            assert!(seen.insert(key.as_str()), "{key} twice");
            assert_eq!(FieldKey::parse(key.as_str()), Some(key));
            let in_form = APPROVAL_FIELDS.iter().filter(|f| f.key == key).count();
            let in_table = SUMMARY_COLUMNS.iter().filter(|c| c.key == key).count();
            assert!(in_form <= 1 && in_table <= 1 && in_form + in_table >= 1, "{key}: {in_form} fields, {in_table} columns");
            assert!(!key.label().is_empty());
        }
        assert_eq!(FieldKey::parse("Studio_Name"), None);
        // A column filled from 附件1 names fields 附件1 has.
        for c in SUMMARY_COLUMNS {
            let sources: &[FieldKey] = match c.from_approval {
                FromApproval::Nothing => &[],
                FromApproval::Same => std::slice::from_ref(&c.key),
                FromApproval::Sum(parts, _) => parts,
            };
            for k in sources {
                assert!(APPROVAL_FIELDS.iter().any(|f| f.key == *k), "{} from {k}", c.key);
            }
        }
    }

    #[test]
    fn stored_fields_keep_their_key_strings() {
        // As a record of an earlier release holds it: the key string and the label then used.
        let stored = r#"{"key":"members","label":"共…人","value":"8","location":"表格1 第9行第1列"}"#;
        let f: Field = serde_json::from_str(stored).unwrap();
        assert_eq!((f.key, f.label, f.value.as_deref()), (FieldKey::Members, "共…人", Some("8")));
        assert_eq!(serde_json::to_string(&f).unwrap(), stored);
        // The summary column of the same key keeps the column's label.
        let column = r#"{"key":"members","label":"创新工作室成员人数（人）","value":"8","location":"C5"}"#;
        assert_eq!(serde_json::from_str::<Field>(column).unwrap().label, "创新工作室成员人数（人）");
        // A label no entry has any more: the key's own.
        let old = r#"{"key":"phone","label":"电话","value":null,"location":""}"#;
        assert_eq!(serde_json::from_str::<Field>(old).unwrap().label, "联系电话");
        assert!(serde_json::from_str::<Field>(r#"{"key":"salary","label":"","value":null,"location":""}"#).is_err());
    }

    fn table(rows: &[&[&str]]) -> Document {
        Document {
            format: Format::Docx,
            blocks: vec![Block::Table(Table {
                label: "表格1".into(),
                is_sheet: false,
                rows: rows.iter().map(|r| r.iter().map(|c| c.to_string()).collect()).collect(),
            })],
            embedded_images: 0,
            pictures: Vec::new(),
        }
    }

    #[test]
    fn labels_with_breaks_and_merged_values() {
        let doc = table(&[
            &["创新工作室名称", "甲公司张三劳模和工匠人才创新工作室", "甲公司张三劳模和工匠人才创新工作室", "创建时间", "2016.5"],
            &["创新工\n作室基\n本情况", "共 8 人。其中男 6 人，女 2 人，中共党员 3 人。平均年龄 38 岁。", "", "", ""],
            &["创新工\n作室基\n本情况", "高级技师 1 人，技师 2 人，高级工 3 人；助理工程师 1 人，工程师 1 人，高级工程师 0 人，研究员 0 人。", "", "", ""],
            &["姓名", "张三", "工作单位及\n职务", "甲公司 班长", ""],
        ]);
        let f = parse_approval_form("a.docx", &doc);
        assert_eq!(f.get(FieldKey::StudioName), Some("甲公司张三劳模和工匠人才创新工作室"));
        assert_eq!(f.get(FieldKey::Created), Some("2016.5"));
        assert_eq!(f.number(FieldKey::Members), Some(8.0));
        assert_eq!(f.number(FieldKey::Female), Some(2.0));
        assert_eq!(f.number(FieldKey::AvgAge), Some(38.0));
        assert_eq!(f.number(FieldKey::SeniorWorker), Some(3.0));
        assert_eq!(f.number(FieldKey::Engineer), Some(1.0));
        assert_eq!(f.number(FieldKey::SeniorEngineer), Some(0.0));
        assert_eq!(f.get(FieldKey::LeaderWorkplace), Some("甲公司 班长"));
        assert_eq!(f.location(FieldKey::Leader), "表格1 第4行第2列");
        // Labels that are not on this small table are reported as not found.
        assert_eq!(f.field(FieldKey::NativePlace).unwrap().value, None);
    }

    #[test]
    fn empty_blanks_are_found_but_empty() {
        let doc = table(&[&["创新工作室基本情况", "共    人。其中男    人，女    人，中共党员    人。平均年龄     岁。"]]);
        let f = parse_approval_form("a.docx", &doc);
        let members = f.field(FieldKey::Members).unwrap();
        assert_eq!(members.value.as_deref(), Some(""));
        assert!(members.filled().is_none());
    }

    #[test]
    fn blanks_drawn_with_underscores() {
        let doc = table(&[&["创新工作室基本情况", "共__9__人。其中男__7__人，女＿＿2＿＿人，中共党员______人。平均年龄__38__岁。"]]);
        let f = parse_approval_form("a.docx", &doc);
        assert_eq!(f.number(FieldKey::Members), Some(9.0));
        assert_eq!(f.number(FieldKey::Male), Some(7.0));
        assert_eq!(f.number(FieldKey::Female), Some(2.0));
        assert_eq!(f.number(FieldKey::AvgAge), Some(38.0));
        let party = f.field(FieldKey::Party).unwrap();
        assert_eq!(party.value.as_deref(), Some(""), "an empty line is an empty blank");
        assert_eq!(shown_label(party.label), "中共党员（　）人");
    }

    #[test]
    fn value_after_colon_in_the_same_cell() {
        let doc = table(&[&["姓名：李四", "性别：女"]]);
        let f = parse_approval_form("a.xlsx", &doc);
        assert_eq!(f.get(FieldKey::Leader), Some("李四"));
        assert_eq!(f.get(FieldKey::Gender), Some("女"));
    }

    #[test]
    fn summary_two_row_header() {
        let doc = table(&[
            &["乐山市劳模和工匠人才创新工作室推荐汇总表"; 6],
            &["推荐单位（盖章）：犍为县总工会        填报人：李华"; 6],
            &["序号", "创新工作室所属单位名称", "创新工作室名称", "创建时间", "创新工作室负责人（带头人）基本情况", "创新工作室工作开展基本情况"],
            &["序号", "创新工作室所属单位名称", "创新工作室名称", "创建时间", "姓名", "创新工作室成员人数（人）"],
            &["1", "甲公司", "甲公司张三劳模和工匠人才创新工作室", "2016.05", "张三", "8"],
            &["", "", "", "", "", ""],
            &["填表要求：1.以上项目须逐项如实填写，不得漏项。", "", "", "", "", ""],
        ]);
        let s = parse_summary_table("b.xlsx", &doc);
        assert!(s.has_header);
        assert_eq!(s.recommending_unit.as_deref(), Some("犍为县总工会"));
        assert_eq!(s.filler.as_deref(), Some("李华"));
        assert_eq!(s.rows.len(), 1);
        assert_eq!(s.rows[0].get(FieldKey::Leader), Some("张三"));
        assert_eq!(s.rows[0].get(FieldKey::Members), Some("8"));
        assert_eq!(s.rows[0].get(FieldKey::Rank), Some("1"));
    }

    #[test]
    fn summary_rows_that_are_not_studios() {
        let studio = |rank: &str, name: &str, leader: &str, members: &str| -> Vec<String> {
            [rank, "甲公司", name, "2016.05", leader, members].iter().map(|c| c.to_string()).collect()
        };
        let header1 = ["序号", "创新工作室所属单位名称", "创新工作室名称", "创建时间", "创新工作室负责人（带头人）基本情况", "创新工作室工作开展基本情况"];
        let header2 = ["序号", "创新工作室所属单位名称", "创新工作室名称", "创建时间", "姓名", "创新工作室成员人数（人）"];
        let a = studio("1", "甲公司张三劳模和工匠人才创新工作室", "张三", "8");
        let b = studio("2", "甲公司李四劳模和\n工匠人才创新工作室", "李\u{3000}四", "6");
        let rows: Vec<Vec<String>> = vec![
            vec!["推荐单位（盖章）：犍为县总工会        填报人：李华".into(); 6],
            header1.iter().map(|c| c.to_string()).collect(),
            header2.iter().map(|c| c.to_string()).collect(),
            ["1", "2", "3", "4", "5", "6"].iter().map(|c| c.to_string()).collect(),
            a,
            header2.iter().map(|c| c.to_string()).collect(),
            b,
            ["合 计", "", "", "", "", "14"].iter().map(|c| c.to_string()).collect(),
            ["", "", "", "", "", "14"].iter().map(|c| c.to_string()).collect(),
            vec!["以下为往年推荐名单（仅供参考）".into(); 6],
            ["", "总计：2个", "", "", "", ""].iter().map(|c| c.to_string()).collect(),
        ];
        let doc = Document {
            format: Format::Docx,
            blocks: vec![Block::Table(Table { label: "表格1".into(), is_sheet: false, rows })],
            embedded_images: 0,
            pictures: Vec::new(),
        };
        let s = parse_summary_table("b.docx", &doc);
        let names: Vec<&str> = s.rows.iter().map(|r| r.get(FieldKey::StudioName).unwrap_or("")).collect();
        assert_eq!(names, ["甲公司张三劳模和工匠人才创新工作室", "甲公司李四劳模和工匠人才创新工作室"]);
        assert_eq!(s.rows[1].get(FieldKey::Leader), Some("李四"), "the padding of a two-character name is layout");
        assert_eq!(s.rows[1].row_label, "第7行第1列");
        // Column numbers are not a header nor a studio; ①… and (1)… too.
        let n = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let cols: Vec<(FieldKey, usize)> = vec![(FieldKey::Rank, 0), (FieldKey::Unit, 1), (FieldKey::StudioName, 2), (FieldKey::Leader, 3)];
        assert_eq!(row_kind(&n(&["①", "②", "③", "④"]), &cols), RowKind::Numbering);
        assert_eq!(row_kind(&n(&["(1)", "(2)", "(3)", "(4)"]), &cols), RowKind::Numbering);
        assert_eq!(row_kind(&n(&["1", "甲公司", "甲公司张三劳模和工匠人才创新工作室", "张三"]), &cols), RowKind::Studio);
        assert_eq!(row_kind(&n(&["", "", "", "张三"]), &cols), RowKind::Studio, "a studio without 序号 is still a studio");
        assert_eq!(row_kind(&n(&["小计", "", "", ""]), &cols), RowKind::Totals);
    }

    #[test]
    fn summary_columns_by_meaning() {
        assert_eq!(summary_column("创新成果转化应用节创经济效益累计（万元）"), Some(FieldKey::Benefit));
        assert_eq!(summary_column("创新成果数累计（项）"), Some(FieldKey::Achievements));
        assert_eq!(summary_column("创新工作室所属单位名称"), Some(FieldKey::Unit));
        assert_eq!(summary_column("创新工作室名称"), Some(FieldKey::StudioName));
        assert_eq!(summary_column("是否荣获各级各类劳动模范(先进工作者)、工匠称号，若是，请注明何年获何种劳动模范称号"), Some(FieldKey::Titled));
        assert_eq!(summary_column("工作场地面积（㎡）"), Some(FieldKey::Area));
    }

    #[test]
    fn kind_by_name() {
        assert_eq!(kind_from_name("附件1：张明劳模创新工作室推荐审批表.docx"), Some(Kind::ApprovalForm));
        assert_eq!(kind_from_name("附件2-推荐汇总表.xlsx"), Some(Kind::SummaryTable));
        assert_eq!(kind_from_name("申报材料.docx"), Some(Kind::Materials));
        assert_eq!(kind_from_name("x.docx"), None);
        // A company name with 材料 in it does not make a photo into materials.
        assert_eq!(kind_from_name("高新区光伏材料公司罗文华劳模创新工作室.jpg"), None);
        assert_eq!(kind_from_name("光伏材料公司罗文华工作室场景照.jpg"), Some(Kind::Photo));
        assert_eq!(kind_from_name("张明工作室推荐审批表照片.jpg"), Some(Kind::ApprovalForm));
    }
}
