//! One e-mail → what it submits: every attachment classified and parsed, and the studios it
//! recommends with the files that belong to each.

use serde::Serialize;

use super::Unreadable;
use super::forms::{self, ApprovalForm, FieldKey, Kind, Materials, Photo, SummaryTable};
use super::grid::{self, Convert, Format};
use super::mime::Attachment;
use super::text::{self, PartialDate, squash};
use super::Limits;

/// One attachment as the JSON of `check` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentInfo {
    pub file: String,
    pub kind: Kind,
    pub studio: Option<String>,
    #[serde(skip)]
    pub problem: Option<Unreadable>,
    /// What the name says it is (for an unreadable file: which part is missing because of it).
    #[serde(skip)]
    pub named_kind: Option<Kind>,
    #[serde(skip)]
    pub(crate) hints: Vec<String>,
    /// The same bytes came earlier in the mail under this name (files attached loose and
    /// again in a zip, or twice): the copy is listed, not read again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

/// A form that came only as a picture or an image-only PDF (`form.not_typed`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NotTyped {
    pub file: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BadPhoto {
    pub file: String,
    pub reason: String,
}

/// A studio the submission recommends, with the indexes of its parts.
#[derive(Debug, Clone, Serialize)]
pub struct Studio {
    pub name: String,
    pub unit: Option<String>,
    pub leader: Option<String>,
    pub created: Option<String>,
    pub members: Option<u32>,
    pub rank: Option<u32>,
    pub has_approval_form: bool,
    pub has_summary_row: bool,
    pub has_materials: bool,
    pub has_photo: bool,
    #[serde(skip)]
    pub form: Option<usize>,
    /// (summary table index, row index)
    #[serde(skip)]
    pub row: Option<(usize, usize)>,
    #[serde(skip)]
    pub materials: Vec<usize>,
    #[serde(skip)]
    pub photos: Vec<usize>,
    #[serde(skip)]
    pub bad_photos: Vec<usize>,
    #[serde(skip)]
    pub not_typed: Vec<usize>,
    /// Kinds of this studio's files that could not be read.
    #[serde(skip)]
    pub unreadable: Vec<Kind>,
    /// A studio of the unit's dossier, not named by this mail's forms or 附件2: a candidate
    /// owner for the mail's unnamed files (kept only when it receives one).
    #[serde(skip)]
    pub on_file: Option<usize>,
}

impl Studio {
    pub(crate) fn new(name: String) -> Studio {
        Studio {
            name,
            unit: None,
            leader: None,
            created: None,
            members: None,
            rank: None,
            has_approval_form: false,
            has_summary_row: false,
            has_materials: false,
            has_photo: false,
            form: None,
            row: None,
            materials: Vec::new(),
            photos: Vec::new(),
            bad_photos: Vec::new(),
            not_typed: Vec::new(),
            unreadable: Vec::new(),
            on_file: None,
        }
    }

    /// The name without the notice's suffix: what people write in file names.
    fn short_name(&self) -> String {
        short_name(&self.name)
    }

    /// Did this mail bring any file of this studio?
    pub fn has_files(&self) -> bool {
        self.form.is_some() || !self.materials.is_empty() || !self.photos.is_empty() || !self.bad_photos.is_empty() || !self.not_typed.is_empty()
    }
}

/// A studio's name without the notice's suffix: what people write in file names.
pub fn short_name(name: &str) -> String {
    {
        let n = squash(name);
        for suffix in ["劳模和工匠人才创新工作室", "劳模创新工作室", "创新工作室", "工作室"] {
            if let Some(s) = n.strip_suffix(suffix) {
                return s.to_owned();
            }
        }
        n
    }
}

/// A studio already in the unit's dossier, as the grouping of a new mail sees it: a name to
/// match files against, and which parts it already has.
#[derive(Debug, Clone, Default)]
pub struct StudioOnFile {
    pub name: String,
    pub leader: Option<String>,
    pub unit: Option<String>,
    /// 创建时间 of its 附件1, as an ISO date.
    pub created: Option<String>,
    pub has_form: bool,
    pub has_materials: bool,
    pub has_photo: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Submission {
    pub attachments: Vec<AttachmentInfo>,
    pub forms: Vec<ApprovalForm>,
    pub summaries: Vec<SummaryTable>,
    pub materials: Vec<Materials>,
    pub photos: Vec<Photo>,
    pub bad_photos: Vec<BadPhoto>,
    pub not_typed: Vec<NotTyped>,
    pub studios: Vec<Studio>,
    /// Studios of the dossier the unit's current 附件2 no longer lists, though it came after
    /// every file of theirs: taken off the unit's list (see [`super::dossier::view`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<String>,
    /// Index in `attachments` of each item of `materials`, `photos`, `bad_photos`, `not_typed`.
    #[serde(skip)]
    pub(crate) material_of: Vec<usize>,
    #[serde(skip)]
    pub(crate) photo_of: Vec<usize>,
    #[serde(skip)]
    pub(crate) bad_photo_of: Vec<usize>,
    #[serde(skip)]
    not_typed_of: Vec<usize>,
}

impl Submission {
    /// Does the mail carry anything of a submission: a form, materials, a photo, a scan, an
    /// archive, or a file that was meant as one of them but cannot be read?
    pub fn has_documents(&self) -> bool {
        self.attachments.iter().any(|a| {
            matches!(a.kind, Kind::ApprovalForm | Kind::SummaryTable | Kind::Materials | Kind::Photo | Kind::Archive | Kind::Scan)
                || (a.problem.is_some() && a.kind != Kind::CoverLetter)
        })
    }
}

/// Images smaller than this that sit inline in the body are signatures and logos, not photos.
const SIGNATURE_MAX_SIDE: u32 = 300;

/// Classify and parse every attachment, then group the parts by studio (no dossier on file:
/// what `check` does).
pub fn assemble(attachments: &[Attachment], limits: &Limits, converters: &dyn Convert) -> Submission {
    let mut sub = read(attachments, limits, converters);
    group(&mut sub, &[]);
    sub
}

/// Classify and parse every attachment; [`group`] then tells which studio each part is of.
pub fn read(attachments: &[Attachment], limits: &Limits, converters: &dyn Convert) -> Submission {
    let mut sub = Submission::default();
    // Where each parsed item came from, to attach it to a studio later.
    let mut material_of: Vec<usize> = Vec::new();
    let mut photo_of: Vec<usize> = Vec::new();
    let mut bad_photo_of: Vec<usize> = Vec::new();
    let mut not_typed_of: Vec<usize> = Vec::new();
    // (length, hash of head and tail) of the readable files seen so far → (index in
    // `sub.attachments`, name, bytes). A key that matches is a copy only when the bytes are
    // equal: hashing a 4 MB camera photo whole cost more than reading it.
    let mut seen: std::collections::HashMap<(usize, u64), (usize, &str, &[u8])> = std::collections::HashMap::new();
    for att in attachments {
        let named_kind = forms::kind_from_name(&att.file_name);
        let mut hints = att.context.clone();
        hints.push(att.file_name.clone());
        let mut info = AttachmentInfo {
            file: att.name.clone(),
            kind: named_kind.unwrap_or(Kind::Other),
            studio: None,
            problem: att.problem.clone(),
            named_kind,
            hints,
            duplicate_of: None,
        };
        if att.problem.is_none() && !att.data.is_empty() {
            let key = (att.data.len(), content_hash(&att.data));
            // One photo may serve two studios under two names; a form or text is read once.
            let copy = seen.get(&key).copied().filter(|&(_, first_name, first_data)| {
                first_data == att.data.as_slice()
                    && (squash(first_name) == squash(&att.file_name)
                        || !(image_by_name(&att.file_name) || forms::is_image(grid::sniff(&att.file_name, &att.data))))
            });
            if let Some((first, _, _)) = copy {
                let original = &sub.attachments[first];
                info.kind = original.kind;
                info.duplicate_of = Some(original.file.clone());
                sub.attachments.push(info);
                continue;
            }
            seen.insert(key, (sub.attachments.len(), &att.file_name, &att.data));
        }
        let format = grid::sniff(&att.file_name, &att.data);
        if info.problem.is_some() {
            if matches!(format, Format::Zip | Format::Tnef) || att.content_type.contains("zip") {
                info.kind = Kind::Archive;
            }
            sub.attachments.push(info);
            continue;
        }
        let index = sub.attachments.len();
        match format {
            Format::Zip | Format::Tnef => info.kind = Kind::Archive,
            Format::OtherArchive => {
                info.kind = Kind::Archive;
                info.problem = Some(Unreadable::Unsupported {
                    format: "RAR/7z 等压缩包".into(),
                    resend_as: "ZIP压缩包或直接以附件".into(),
                });
            }
            f if forms::is_image(f) || image_by_name(&att.file_name) => {
                match named_kind {
                    Some(k @ (Kind::ApprovalForm | Kind::SummaryTable | Kind::Materials)) => {
                        info.kind = Kind::Scan;
                        not_typed_of.push(index);
                        sub.not_typed.push(NotTyped { file: att.name.clone(), kind: k });
                    }
                    _ => match forms::parse_photo(&att.name, &att.data) {
                        Ok(p) if att.inline_cid && p.width.min(p.height) < SIGNATURE_MAX_SIDE => info.kind = Kind::Other,
                        Ok(p) => {
                            info.kind = Kind::Photo;
                            photo_of.push(index);
                            sub.photos.push(p);
                        }
                        Err(reason) => {
                            info.kind = Kind::Photo;
                            bad_photo_of.push(index);
                            sub.bad_photos.push(BadPhoto { file: att.name.clone(), reason });
                        }
                    },
                }
            }
            Format::Docx | Format::Xlsx | Format::Xls | Format::Ods | Format::Odt | Format::Doc | Format::Pdf | Format::Encrypted => {
                match grid::read_sniffed(format, &att.data, limits, converters) {
                    Err(problem) => info.problem = Some(problem),
                    Ok(doc) => {
                        let kind = forms::kind_from_content(&doc).or(named_kind).unwrap_or(Kind::Other);
                        info.kind = kind;
                        // Nothing a reader would count, without joining the text to count it.
                        let no_text = doc.paragraphs().all(text::is_blank)
                            && doc.tables().all(|t| t.rows.iter().flatten().all(|c| text::is_blank(c)));
                        if no_text && matches!(kind, Kind::ApprovalForm | Kind::SummaryTable) {
                            // A scan pasted into Word or saved as PDF.
                            info.kind = Kind::Scan;
                            not_typed_of.push(index);
                            sub.not_typed.push(NotTyped { file: att.name.clone(), kind });
                        } else {
                            match kind {
                                Kind::ApprovalForm => {
                                    let form = forms::parse_approval_form(&att.name, &doc);
                                    if let Some(n) = form.studio_name() {
                                        info.studio = Some(n.trim().to_owned());
                                    }
                                    if let Some(m) = forms::materials_after_form(&att.name, &doc) {
                                        // The form names the studio the materials belong to.
                                        info.hints.extend(form.studio_name().map(str::to_owned));
                                        info.hints.extend(form.leader().map(str::to_owned));
                                        material_of.push(index);
                                        sub.materials.push(m);
                                    }
                                    sub.forms.push(form);
                                }
                                Kind::SummaryTable => sub.summaries.push(forms::parse_summary_table(&att.name, &doc)),
                                Kind::Materials => {
                                    let m = forms::parse_materials(&att.name, &doc);
                                    // The studio or leader named early in the text identifies it.
                                    info.hints.push(m.text.chars().take(400).collect());
                                    material_of.push(index);
                                    sub.materials.push(m);
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        sub.attachments.push(info);
    }
    sub.material_of = material_of;
    sub.photo_of = photo_of;
    sub.bad_photo_of = bad_photo_of;
    sub.not_typed_of = not_typed_of;
    sub
}

/// A hash of the first and last 4 KiB: enough to tell files apart, equal bytes decide.
fn content_hash(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    const SAMPLE: usize = 4096;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data[..data.len().min(SAMPLE)].hash(&mut h);
    data[data.len().saturating_sub(SAMPLE)..].hash(&mut h);
    h.finish()
}

fn image_by_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    [".jpg", ".jpeg", ".png", ".heic", ".heif", ".bmp", ".gif", ".webp", ".tif", ".tiff"].iter().any(|e| lower.ends_with(e))
}

/// Who a studio is, as a form, a 附件2 row or the dossier names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Named<'a> {
    pub name: &'a str,
    pub leader: Option<&'a str>,
    /// 创新工作室所属单位名称.
    pub unit: Option<&'a str>,
    /// 创建时间 as an ISO date.
    pub created: Option<&'a str>,
}

/// How surely `a` is the studio `b` names, as a person sorting the forms would judge it;
/// 0 = another studio. The same name; a name written shorter or longer; a name corrected by
/// a character or two (a typo, often in the leader's name inside it) within the same 所属单位;
/// the same leader within the same 所属单位. One leader may lead two studios of one unit in
/// different companies: the leader alone never makes them one.
pub(crate) fn match_strength(a: &Studio, b: Named<'_>) -> u8 {
    let n = squash(b.name);
    let own = squash(&a.name);
    if !n.is_empty() && own == n {
        return 4;
    }
    let short = a.short_name();
    if short.chars().count() >= 4 && (n.contains(&short) || own.contains(&n) && n.chars().count() >= 4) {
        return 3;
    }
    let same_unit = units_agree(a.unit.as_deref(), b.unit);
    // Two studios of one company whose leaders' names differ by a character (王刚, 王强) are
    // two studios: a corrected name is the same studio only with the same 创建时间 too.
    let same_created = a.created.is_some() && a.created.as_deref() == b.created;
    if same_unit && same_created && n.chars().count() >= 10 && edit_distance(&own, &n) <= 2 {
        return 2;
    }
    let same_leader = matches!((a.leader.as_deref(), b.leader), (Some(x), Some(y)) if !squash(x).is_empty() && squash(x) == squash(y));
    u8::from(same_leader && same_unit)
}

/// Which of `candidates` (those `free` allows) each of `named` is, each candidate taken at
/// most once: the surest pairs first, so a studio is never taken by a weaker match (the same
/// leader) before its own exact name comes to claim it. Ties go to the earlier ones.
pub(crate) fn pair_up(candidates: &[Studio], named: &[Named<'_>], free: impl Fn(&Studio) -> bool) -> Vec<Option<usize>> {
    let mut pairs: Vec<(u8, usize, usize)> = Vec::new();
    for (j, b) in named.iter().enumerate() {
        for (i, s) in candidates.iter().enumerate().filter(|(_, s)| free(s)) {
            let m = match_strength(s, *b);
            if m > 0 {
                pairs.push((m, j, i));
            }
        }
    }
    pairs.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut out = vec![None; named.len()];
    let mut taken = vec![false; candidates.len()];
    for (_, j, i) in pairs {
        if out[j].is_none() && !taken[i] {
            out[j] = Some(i);
            taken[i] = true;
        }
    }
    out
}

pub(crate) fn same_studio(a: &Studio, name: &str, leader: Option<&str>) -> bool {
    match_strength(a, Named { name, leader, unit: None, created: None }) > 0
}

/// Do two 所属单位 name one company? Unknown on either side agrees; otherwise the same name
/// once the words every company name carries (四川省…, 有限责任公司) are set aside, or one
/// within the other (`犍为电力公司` is `四川犍为电力有限责任公司`).
fn units_agree(a: Option<&str>, b: Option<&str>) -> bool {
    match (a.map(company_core), b.map(company_core)) {
        (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => x == y || x.contains(&y) || y.contains(&x),
        _ => true,
    }
}

/// A company's name without what every company name carries: `四川犍为电力有限责任公司` →
/// `犍为电力`.
fn company_core(unit: &str) -> String {
    let mut s = squash(unit);
    for prefix in ["四川省", "四川", "乐山市", "乐山"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.to_owned();
            break;
        }
    }
    for suffix in ["股份有限公司", "有限责任公司", "有限公司", "集团公司", "公司"] {
        if let Some(rest) = s.strip_suffix(suffix) {
            s = rest.to_owned();
            break;
        }
    }
    s
}

/// Characters to insert, delete or change to turn `a` into `b` (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            row[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

/// Which studio each part of the mail is of. The candidates are the studios its forms and
/// 附件2 name, then the studios already on file (`on_file`, from the unit's dossier): a photo
/// sent alone tomorrow finds the studio whose forms came today.
///
/// Files that name no studio inside go by the names in the file name, then the folder or
/// forwarded mail they came in; when the mail concerns one studio (its only form or
/// materials), or there is only one candidate, that one takes them all; one left-over file
/// goes to the one studio still without that part.
pub fn group(sub: &mut Submission, on_file: &[StudioOnFile]) {
    let mut studios: Vec<Studio> = Vec::new();
    for (i, form) in sub.forms.iter().enumerate() {
        let name = form
            .studio_name()
            .map(|s| s.trim().to_owned())
            .or_else(|| form.leader().map(|l| format!("{l}（审批表未填工作室名称）")))
            .unwrap_or_else(|| format!("（未填名称：{}）", form.file));
        // The same form attached twice (loose and again inside a zip, or in two forwarded
        // mails) is one studio: the first copy counts.
        if !squash(&name).is_empty() && studios.iter().any(|s| squash(&s.name) == squash(&name)) {
            continue;
        }
        let mut s = Studio::new(name);
        s.form = Some(i);
        s.has_approval_form = true;
        s.leader = form.leader().map(|l| l.trim().to_owned());
        s.unit = form.get(FieldKey::Unit).map(|u| u.trim().to_owned());
        s.created = form.date(FieldKey::Created).map(|d| d.iso());
        s.members = form.number(FieldKey::Members).filter(|m| *m >= 0.0).map(|m| m as u32);
        studios.push(s);
    }
    for (t, table) in sub.summaries.iter().enumerate() {
        let names: Vec<String> = table.rows.iter().map(|row| row.get(FieldKey::StudioName).unwrap_or("").trim().to_owned()).collect();
        let created: Vec<Option<String>> = table.rows.iter().map(row_created).collect();
        let named: Vec<Named<'_>> = table.rows.iter().zip(&names).zip(&created).map(|((row, name), c)| row_named(row, name, c.as_deref())).collect();
        let pairs = pair_up(&studios, &named, |s| s.row.is_none());
        for (r, row) in table.rows.iter().enumerate() {
            let s = match pairs[r] {
                Some(k) => &mut studios[k],
                None => {
                    studios.push(expected_studio(row));
                    studios.last_mut().expect("just pushed")
                }
            };
            s.row = Some((t, r));
            s.has_summary_row = true;
            s.rank = rank_of(row);
        }
    }
    // The dossier's studios: the mail's own studios are matched to them (a corrected form
    // is the same studio), the rest are candidates for unnamed files.
    let mut has_on_file: Vec<(bool, bool)> = vec![(false, false); studios.len()];
    let named: Vec<Named<'_>> =
        on_file.iter().map(|k| Named { name: &k.name, leader: k.leader.as_deref(), unit: k.unit.as_deref(), created: k.created.as_deref() }).collect();
    let pairs = pair_up(&studios, &named, |s| s.on_file.is_none());
    for (k, known) in on_file.iter().enumerate() {
        match pairs[k] {
            Some(i) => {
                studios[i].on_file = Some(k);
                has_on_file[i] = (known.has_materials, known.has_photo);
            }
            None => {
                let mut s = Studio::new(known.name.clone());
                s.leader = known.leader.clone();
                s.unit = known.unit.clone();
                s.created = known.created.clone();
                s.on_file = Some(k);
                studios.push(s);
                has_on_file.push((known.has_materials, known.has_photo));
            }
        }
    }
    let named_by_mail = |s: &Studio| s.form.is_some() || s.row.is_some();
    // One candidate in all, or one studio that the mail is about.
    let only = |studios: &[Studio]| -> Option<usize> {
        if studios.len() == 1 {
            return Some(0);
        }
        let concerned: Vec<usize> = (0..studios.len()).filter(|&i| studios[i].form.is_some() || !studios[i].materials.is_empty()).collect();
        (concerned.len() == 1).then(|| concerned[0])
    };
    let assign = |indexes: &[usize], sub: &Submission, studios: &[Studio], has: &dyn Fn(usize) -> bool| -> Vec<Option<usize>> {
        let mut out: Vec<Option<usize>> = indexes.iter().map(|&a| studio_for(&sub.attachments[a].hints, studios)).collect();
        if let Some(one) = only(studios) {
            // Not a file that names another studio (one not known yet).
            return out
                .iter()
                .zip(indexes)
                .map(|(o, &a)| o.or((!names_other_studio(&sub.attachments[a].hints, &studios[one])).then_some(one)))
                .collect();
        }
        let unassigned: Vec<usize> = (0..out.len()).filter(|&k| out[k].is_none()).collect();
        let lacking: Vec<usize> = (0..studios.len()).filter(|&s| !has(s) && !out.contains(&Some(s))).collect();
        // Unless the file names a studio (`彭静工作室场景照`) that is not the one lacking it.
        if unassigned.len() == 1 && lacking.len() == 1 && !names_other_studio(&sub.attachments[indexes[unassigned[0]]].hints, &studios[lacking[0]]) {
            out[unassigned[0]] = Some(lacking[0]);
        }
        out
    };
    let material_of = std::mem::take(&mut sub.material_of);
    let m = assign(&material_of, sub, &studios, &|s| !studios[s].materials.is_empty() || has_on_file[s].0);
    for (k, target) in m.into_iter().enumerate() {
        if let Some(s) = target {
            studios[s].materials.push(k);
            studios[s].has_materials = true;
            sub.attachments[material_of[k]].studio = Some(studios[s].name.clone());
        }
    }
    sub.material_of = material_of;
    let photo_of = std::mem::take(&mut sub.photo_of);
    let p = assign(&photo_of, sub, &studios, &|s| !studios[s].photos.is_empty() || has_on_file[s].1);
    for (k, target) in p.into_iter().enumerate() {
        if let Some(s) = target {
            studios[s].photos.push(k);
            studios[s].has_photo = true;
            sub.attachments[photo_of[k]].studio = Some(studios[s].name.clone());
        }
    }
    sub.photo_of = photo_of;
    let bad_photo_of = std::mem::take(&mut sub.bad_photo_of);
    let b = assign(&bad_photo_of, sub, &studios, &|s| !studios[s].photos.is_empty() || has_on_file[s].1);
    for (k, target) in b.into_iter().enumerate() {
        if let Some(s) = target {
            studios[s].bad_photos.push(k);
            sub.attachments[bad_photo_of[k]].studio = Some(studios[s].name.clone());
        }
    }
    sub.bad_photo_of = bad_photo_of;
    let not_typed_of = std::mem::take(&mut sub.not_typed_of);
    let n = assign(&not_typed_of, sub, &studios, &|s| studios[s].form.is_some());
    for (k, target) in n.into_iter().enumerate() {
        if let Some(s) = target {
            studios[s].not_typed.push(k);
            sub.attachments[not_typed_of[k]].studio = Some(studios[s].name.clone());
        }
    }
    sub.not_typed_of = not_typed_of;
    // Pictures inside a studio's own 附件3 or 附件1 count as its photo.
    for s in studios.iter_mut() {
        let inside = s.materials.iter().any(|&m| !sub.materials[m].pictures.is_empty())
            || s.form.is_some_and(|f| !sub.forms[f].pictures.is_empty());
        if inside {
            s.has_photo = true;
        }
    }
    // Unreadable files: which part of which studio they would have been.
    for att in sub.attachments.iter_mut().filter(|a| a.problem.is_some()) {
        let Some(kind) = att.named_kind.or(match att.kind {
            Kind::Archive => None,
            k => Some(k),
        }) else {
            continue;
        };
        let target = studio_for(&att.hints, &studios).or(only(&studios));
        match target {
            Some(s) => {
                studios[s].unreadable.push(kind);
                att.studio = Some(studios[s].name.clone());
            }
            // Unknown owner: every studio lacking this part may be waiting for it.
            None => studios.iter_mut().for_each(|s| s.unreadable.push(kind)),
        }
    }
    // Studios of the dossier that this mail neither names nor brings a file of are not part
    // of what it submits.
    studios.retain(|s| named_by_mail(s) || s.has_files() || !s.unreadable.is_empty() && s.on_file.is_none());
    sub.studios = studios;
}

/// Does a file name a studio, by a "…工作室" in its name, folder or opening text, that is not
/// `s`? Then it is of a studio not known yet, and "the only studio takes it" must not apply.
pub(crate) fn names_other_studio(hints: &[String], s: &Studio) -> bool {
    let named = named_studios(hints);
    let leader = s.leader.as_deref().map(squash).unwrap_or_default();
    !named.is_empty()
        && !named.iter().any(|n| {
            same_studio(s, n, None)
                || (leader.chars().count() >= 2 && n.contains(&leader))
                || short_name(&s.name).contains(&short_name(n))
                // `电力公司工作室`: the studio of a company, named by its company.
                || s.unit.as_deref().is_some_and(|u| {
                    let c = company_core(&short_name(n));
                    c.chars().count() >= 2 && company_core(u).contains(&c)
                })
        })
}

/// The studio names spelled out in hints: the text before each "工作室" back to punctuation,
/// when it says more than "本工作室".
fn named_studios(hints: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for h in hints {
        let h = squash(h);
        let mut rest = h.as_str();
        while let Some(p) = rest.find("工作室") {
            let before = &rest[..p];
            let start = before
                .char_indices()
                .rev()
                .find(|&(_, c)| !(c.is_alphanumeric() || c == '（' || c == '）' || c == '(' || c == ')') || c.is_ascii_digit())
                .map(|(i, c)| i + c.len_utf8())
                .unwrap_or(0);
            let name = format!("{}工作室", &before[start..]);
            let core = short_name(&name);
            let generic = core.chars().count() < 2 || core.starts_with(['本', '该', '此', '我', '各', '全', '这', '那', '每', '附', '件']);
            if !generic && !out.contains(&name) {
                out.push(name);
            }
            rest = &rest[p + "工作室".len()..];
        }
    }
    out
}

/// A 附件2 row as a name to match (`name` its studio name, trimmed; `created` its 创建时间 as
/// an ISO date, see [`row_created`]).
pub(crate) fn row_named<'a>(row: &'a forms::SummaryRow, name: &'a str, created: Option<&'a str>) -> Named<'a> {
    Named { name, leader: row.get(FieldKey::Leader).map(str::trim), unit: row.get(FieldKey::Unit).map(str::trim), created }
}

/// A 附件2 row's 创建时间 as an ISO date.
pub(crate) fn row_created(row: &forms::SummaryRow) -> Option<String> {
    row.get(FieldKey::Created).and_then(text::parse_date).map(|d: PartialDate| d.iso())
}

/// A studio known only from its 附件2 row (no file of it yet).
pub(crate) fn expected_studio(row: &forms::SummaryRow) -> Studio {
    let name = row.get(FieldKey::StudioName).unwrap_or("").trim().to_owned();
    let display = if name.is_empty() { format!("（汇总表{}行未填名称）", row.row_label) } else { name };
    let mut s = Studio::new(display);
    s.leader = row.get(FieldKey::Leader).map(|l| l.trim().to_owned());
    s.unit = row.get(FieldKey::Unit).map(|u| u.trim().to_owned());
    s.created = row_created(row);
    s.members = row.get(FieldKey::Members).and_then(text::parse_number).map(|m| m.max(0.0) as u32);
    s
}

/// The 序号 of a 附件2 row.
pub(crate) fn rank_of(row: &forms::SummaryRow) -> Option<u32> {
    row.get(FieldKey::Rank).and_then(text::parse_number).filter(|n| *n >= 0.0).map(|n| n as u32)
}

/// The one studio whose name, short name, leader or unit appears in the hints.
pub(crate) fn studio_for(hints: &[String], studios: &[Studio]) -> Option<usize> {
    let hay: String = hints.iter().map(|h| squash(h)).collect::<Vec<_>>().join("|");
    let unique = |pred: &dyn Fn(&Studio) -> bool| -> Option<usize> {
        let hits: Vec<usize> = (0..studios.len()).filter(|&i| pred(&studios[i])).collect();
        (hits.len() == 1).then(|| hits[0])
    };
    let contains = |needle: &str| needle.chars().count() >= 2 && hay.contains(needle);
    unique(&|s| contains(&squash(&s.name)))
        .or_else(|| unique(&|s| s.short_name().chars().count() >= 4 && contains(&s.short_name())))
        .or_else(|| unique(&|s| s.leader.as_deref().is_some_and(|l| contains(&squash(l)))))
        // The company says which studio only when the file names no other studio: two
        // studios of one company are told apart by their own names.
        .or_else(|| unique(&|s| s.unit.as_deref().is_some_and(|u| squash(u).chars().count() >= 3 && contains(&squash(u)))).filter(|&i| !names_other_studio(hints, &studios[i])))
        .or_else(|| {
            // A word of one studio's company that no other studio's company has: `电力公司
            // 工作室场景照` is the photo of 四川犍为电力有限责任公司's studio, not of 犍为县自来水's.
            // Only to tell studios of known companies apart (with one candidate every word
            // is "unique"), and never for a file that names another studio.
            let words: Vec<Vec<String>> = studios.iter().map(|s| s.unit.as_deref().map(|u| pairs_of(&company_core(u))).unwrap_or_default()).collect();
            if words.iter().filter(|w| !w.is_empty()).count() < 2 {
                return None;
            }
            let hits: Vec<usize> = (0..studios.len())
                .filter(|&i| words[i].iter().any(|w| hay.contains(w.as_str()) && words.iter().enumerate().all(|(j, other)| j == i || !other.contains(w))))
                .collect();
            (hits.len() == 1).then(|| hits[0]).filter(|&i| !names_other_studio(hints, &studios[i]))
        })
}

/// The two-character words of `s` (`犍为电力` → 犍为, 为电, 电力).
fn pairs_of(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.windows(2).map(|w| w.iter().collect()).collect()
}
