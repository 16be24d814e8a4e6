//! A unit's dossier: what it has sent so far, over many mails.
//!
//! The dossier holds the unit's current 附件2 and, per studio, its current 附件1 (and a scan
//! of it, if one came), 附件3 and scene photo — each part remembering the mail it came from.
//! [`merge`] is pure: the parts on file plus one mail's parts give the new dossier and the
//! list of what changed. A mail replaces exactly the parts it carries; a 附件2 row with no
//! files yet is an *expected* studio, seen by [`view`], never stored as a studio that could
//! replace one on file. The rules then judge [`view`] of the dossier, not the mail alone.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::findings::{Finding, Severity};
use super::forms::{ApprovalForm, FieldKey, Kind, Materials, Photo, SummaryTable};
use super::submission::{self, BadPhoto, NotTyped, Studio, StudioOnFile, Submission};
use super::text::squash;

/// Which mail a part came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The store's id of the mail's submission; `None` for the mail being merged until the
    /// store records it ([`Dossier::stamp`]).
    pub submission: Option<i64>,
    pub message_id: Option<String>,
    pub received_at: Option<DateTime<FixedOffset>>,
    /// The attachment as the mail named it (inside an archive: `archive.zip/inner/name`).
    pub file: String,
}

/// One part on file and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnFile<T> {
    pub part: T,
    pub from: Provenance,
}

/// A scene photo on file: it may have arrived unreadable (then `photo.unreadable` stays open
/// until a readable one replaces it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PhotoPart {
    Readable(Photo),
    Unreadable(BadPhoto),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DossierStudio {
    /// The name of its current 附件1 (or of the file that first named it).
    pub name: String,
    pub leader: Option<String>,
    pub unit: Option<String>,
    pub form: Option<OnFile<ApprovalForm>>,
    /// A stamped scan of the 附件1, kept beside the typed form.
    pub scan: Option<OnFile<NotTyped>>,
    pub materials: Option<OnFile<Materials>>,
    pub photo: Option<OnFile<PhotoPart>>,
}

impl DossierStudio {
    fn new(name: String) -> DossierStudio {
        DossierStudio { name, leader: None, unit: None, form: None, scan: None, materials: None, photo: None }
    }

    /// A picture inside its 附件3 or 附件1 that serves as the scene photo when no separate
    /// photo is on file.
    pub fn picture_inside(&self) -> Option<&Photo> {
        if self.photo.is_some() {
            return None;
        }
        self.materials.iter().flat_map(|m| m.part.pictures.iter()).chain(self.form.iter().flat_map(|f| f.part.pictures.iter())).next()
    }

    /// Every file of the studio on file, with its part.
    pub fn files(&self) -> Vec<(Part, &Provenance)> {
        let mut out = Vec::new();
        if let Some(f) = &self.form {
            out.push((Part::ApprovalForm, &f.from));
        }
        if let Some(s) = &self.scan {
            out.push((Part::Scan, &s.from));
        }
        if let Some(m) = &self.materials {
            out.push((Part::Materials, &m.from));
        }
        if let Some(p) = &self.photo {
            out.push((Part::Photo, &p.from));
        }
        out
    }
}

/// The unit's record: its current 附件2 and its studios' current parts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dossier {
    pub summary: Option<OnFile<SummaryTable>>,
    pub studios: Vec<DossierStudio>,
    /// Photos and materials that could not yet be told to belong to a studio (a photo sent
    /// before any form named its studio): kept, and given to their studio as soon as a later
    /// mail makes it known, as a person sorting the mail by hand would.
    #[serde(default)]
    pub pending: Vec<Pending>,
}

/// A part waiting for its studio to become known.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub part: PendingPart,
    /// What names it: file name, folder or forwarded subject, the head of its text.
    pub hints: Vec<String>,
    pub from: Provenance,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingPart {
    Photo(PhotoPart),
    Materials(Materials),
}

/// The parts a dossier is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    SummaryTable,
    ApprovalForm,
    Scan,
    Materials,
    Photo,
}

impl Part {
    pub fn chinese(self) -> &'static str {
        match self {
            Part::SummaryTable => "推荐汇总表（附件2）",
            Part::ApprovalForm => "推荐审批表（附件1）",
            Part::Scan => "审批表盖章扫描件",
            Part::Materials => "申报材料（附件3）",
            Part::Photo => "场景照",
        }
    }
}

/// One part a mail brought: new, or replacing the version from an earlier mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `None` for the unit's 附件2, or for a part whose studio is not known yet.
    pub studio: Option<String>,
    pub part: Part,
    pub file: String,
    /// The version it replaced.
    pub replaced: Option<Provenance>,
    /// A part of an earlier mail that waited for its studio and found it with this mail.
    #[serde(default)]
    pub earlier: bool,
    /// The part on file came from a mail received after this one (a held mail applied once
    /// the unit had sent a correction): it stays current, this one is kept in the history.
    #[serde(default)]
    pub newer_on_file: Option<Provenance>,
}

/// Puts `part` in `slot` unless the part there was received after it (a mail applied late,
/// such as a held mail confirmed after the unit's correction, never undoes the correction).
/// Returns (the version it replaced, the newer version it left in place).
fn place<T>(slot: &mut Option<OnFile<T>>, part: T, from: Provenance) -> (Option<Provenance>, Option<Provenance>) {
    if let (Some(on_file), Some(new)) = (slot.as_ref(), from.received_at)
        && on_file.from.received_at.is_some_and(|t| t > new)
    {
        return (None, Some(on_file.from.clone()));
    }
    (slot.replace(OnFile { part, from }).map(|o| o.from), None)
}

impl Dossier {
    pub fn is_empty(&self) -> bool {
        self.summary.is_none() && self.studios.is_empty() && self.pending.is_empty()
    }

    /// The studios on file as the grouping of a new mail sees them (same order).
    pub fn studios_on_file(&self) -> Vec<StudioOnFile> {
        self.studios
            .iter()
            .map(|s| StudioOnFile {
                name: s.name.clone(),
                leader: s.leader.clone(),
                unit: s.unit.clone(),
                created: s.form.as_ref().and_then(|f| f.part.date(FieldKey::Created)).map(|d| d.iso()),
                has_form: s.form.is_some(),
                has_materials: s.materials.is_some(),
                has_photo: s.photo.is_some() || s.picture_inside().is_some(),
            })
            .collect()
    }

    /// Fill in the submission id of the parts that came with the mail being recorded.
    pub fn stamp(&mut self, submission_id: i64) {
        let fill = |p: &mut Provenance| {
            if p.submission.is_none() {
                p.submission = Some(submission_id);
            }
        };
        if let Some(s) = &mut self.summary {
            fill(&mut s.from);
        }
        for st in &mut self.studios {
            if let Some(x) = &mut st.form {
                fill(&mut x.from);
            }
            if let Some(x) = &mut st.scan {
                fill(&mut x.from);
            }
            if let Some(x) = &mut st.materials {
                fill(&mut x.from);
            }
            if let Some(x) = &mut st.photo {
                fill(&mut x.from);
            }
        }
        for p in &mut self.pending {
            fill(&mut p.from);
        }
    }
}

/// Where the mail being merged came from (its parts' provenance).
#[derive(Debug, Clone, Default)]
pub struct MailSource {
    pub message_id: Option<String>,
    pub received_at: Option<DateTime<FixedOffset>>,
}

/// The dossier after `mail` (grouped against `on_file.studios_on_file()`) is merged into
/// `on_file`, and what changed. Pure.
pub fn merge(on_file: &Dossier, mail: &Submission, source: &MailSource) -> (Dossier, Vec<Change>) {
    let mut d = on_file.clone();
    let mut changes = Vec::new();
    let from = |file: &str| Provenance {
        submission: None,
        message_id: source.message_id.clone(),
        received_at: source.received_at,
        file: file.to_owned(),
    };
    if let Some(table) = mail.summaries.first() {
        let (replaced, newer_on_file) = place(&mut d.summary, table.clone(), from(&table.file));
        changes.push(Change { studio: None, part: Part::SummaryTable, file: table.file.clone(), replaced, earlier: false, newer_on_file });
    }
    for s in mail.studios.iter().filter(|s| s.has_files()) {
        // A studio on file under exactly this name is this one, whatever the grouping
        // matched: a corrected name never lands on a second studio of the same name.
        let exact = d.studios.iter().position(|x| squash(&x.name) == squash(&s.name));
        let k = match exact.or(s.on_file) {
            Some(k) if k < d.studios.len() => k,
            _ => {
                d.studios.push(DossierStudio::new(s.name.clone()));
                d.studios.len() - 1
            }
        };
        let ds = &mut d.studios[k];
        if let Some(f) = s.form {
            let form = &mail.forms[f];
            let (replaced, newer_on_file) = place(&mut ds.form, form.clone(), from(&form.file));
            if newer_on_file.is_none() {
                // A corrected form may correct the studio's name too.
                ds.name = s.name.clone();
                ds.leader = s.leader.clone().or(ds.leader.take());
                ds.unit = s.unit.clone().or(ds.unit.take());
            }
            changes.push(Change { studio: Some(ds.name.clone()), part: Part::ApprovalForm, file: form.file.clone(), replaced, earlier: false, newer_on_file });
        }
        if let Some(&n) = s.not_typed.iter().find(|&&n| mail.not_typed[n].kind == Kind::ApprovalForm) {
            let scan = &mail.not_typed[n];
            let (replaced, newer_on_file) = place(&mut ds.scan, scan.clone(), from(&scan.file));
            changes.push(Change { studio: Some(ds.name.clone()), part: Part::Scan, file: scan.file.clone(), replaced, earlier: false, newer_on_file });
        }
        if let Some(&m) = s.materials.first() {
            let materials = &mail.materials[m];
            let (replaced, newer_on_file) = place(&mut ds.materials, materials.clone(), from(&materials.file));
            changes.push(Change { studio: Some(ds.name.clone()), part: Part::Materials, file: materials.file.clone(), replaced, earlier: false, newer_on_file });
        }
        let photo = s
            .photos
            .first()
            .map(|&p| (PhotoPart::Readable(mail.photos[p].clone()), mail.photos[p].file.clone()))
            .or_else(|| s.bad_photos.first().map(|&b| (PhotoPart::Unreadable(mail.bad_photos[b].clone()), mail.bad_photos[b].file.clone())));
        if let Some((part, file)) = photo {
            let (replaced, newer_on_file) = place(&mut ds.photo, part, from(&file));
            changes.push(Change { studio: Some(ds.name.clone()), part: Part::Photo, file, replaced, earlier: false, newer_on_file });
        }
    }
    // Parts of this mail whose studio is not known yet wait in the dossier.
    let owned = |list: fn(&Studio) -> &Vec<usize>, k: usize| mail.studios.iter().any(|s| list(s).contains(&k));
    for (k, p) in mail.photos.iter().enumerate().filter(|&(k, _)| !owned(|s| &s.photos, k)) {
        let hints = mail.attachments.get(mail.photo_of.get(k).copied().unwrap_or(usize::MAX)).map(|a| a.hints.clone()).unwrap_or_default();
        d.pending.push(Pending { part: PendingPart::Photo(PhotoPart::Readable(p.clone())), hints, from: from(&p.file) });
        changes.push(Change { studio: None, part: Part::Photo, file: p.file.clone(), replaced: None, earlier: false, newer_on_file: None });
    }
    for (k, b) in mail.bad_photos.iter().enumerate().filter(|&(k, _)| !owned(|s| &s.bad_photos, k)) {
        let hints = mail.attachments.get(mail.bad_photo_of.get(k).copied().unwrap_or(usize::MAX)).map(|a| a.hints.clone()).unwrap_or_default();
        d.pending.push(Pending { part: PendingPart::Photo(PhotoPart::Unreadable(b.clone())), hints, from: from(&b.file) });
    }
    for (k, m) in mail.materials.iter().enumerate().filter(|&(k, _)| !owned(|s| &s.materials, k)) {
        let hints = mail.attachments.get(mail.material_of.get(k).copied().unwrap_or(usize::MAX)).map(|a| a.hints.clone()).unwrap_or_default();
        d.pending.push(Pending { part: PendingPart::Materials(m.clone()), hints, from: from(&m.file) });
        changes.push(Change { studio: None, part: Part::Materials, file: m.file.clone(), replaced: None, earlier: false, newer_on_file: None });
    }
    place_pending(&mut d, &mut changes);
    (d, changes)
}

/// Give each waiting part to its studio once the dossier knows it (by the names in its
/// hints, or because the unit has only one studio). A studio that meanwhile got that part
/// from a later mail keeps it: the waiting one is older and dropped.
fn place_pending(d: &mut Dossier, changes: &mut Vec<Change>) {
    if d.pending.is_empty() {
        return;
    }
    let candidates = view(d, None).studios;
    let pending = std::mem::take(&mut d.pending);
    for p in pending {
        let target = submission::studio_for(&p.hints, &candidates)
            .or((candidates.len() == 1 && !submission::names_other_studio(&p.hints, &candidates[0])).then_some(0));
        let Some(t) = target else {
            d.pending.push(p);
            continue;
        };
        let name = candidates[t].name.clone();
        let k = match d.studios.iter().position(|s| s.name == name) {
            Some(k) => k,
            None => {
                let mut ds = DossierStudio::new(name.clone());
                ds.leader = candidates[t].leader.clone();
                ds.unit = candidates[t].unit.clone();
                d.studios.push(ds);
                d.studios.len() - 1
            }
        };
        let ds = &mut d.studios[k];
        let earlier = p.from.submission.is_some();
        let file = p.from.file.clone();
        match p.part {
            PendingPart::Photo(photo) if ds.photo.is_none() => {
                ds.photo = Some(OnFile { part: photo, from: p.from });
                record_placed(changes, &name, Part::Photo, file, earlier);
            }
            PendingPart::Materials(m) if ds.materials.is_none() => {
                ds.materials = Some(OnFile { part: m, from: p.from });
                record_placed(changes, &name, Part::Materials, file, earlier);
            }
            _ => {}
        }
    }
}

fn record_placed(changes: &mut Vec<Change>, studio: &str, part: Part, file: String, earlier: bool) {
    // A part of this very mail: its line now names the studio.
    if let Some(c) = changes.iter_mut().find(|c| c.studio.is_none() && c.part == part && c.file == file) {
        c.studio = Some(studio.to_owned());
    } else {
        changes.push(Change { studio: Some(studio.to_owned()), part, file, replaced: None, earlier, newer_on_file: None });
    }
}

/// The dossier as the rules judge it: a [`Submission`] holding the parts on file, one studio
/// per studio on file and per 附件2 row without files (expected), ranked by the current 附件2.
/// `mail` lends its unreadable files: a studio whose 附件3 came unreadable in this mail is
/// told that, not "missing".
pub fn view(d: &Dossier, mail: Option<&Submission>) -> Submission {
    let v = view_of(d, mail);
    let withdrawn = withdrawn_studios(d, &v);
    if withdrawn.is_empty() {
        return v;
    }
    let kept = Dossier {
        studios: d.studios.iter().enumerate().filter(|(k, _)| !withdrawn.contains(k)).map(|(_, s)| s.clone()).collect(),
        ..d.clone()
    };
    let mut v = view_of(&kept, mail);
    v.withdrawn = withdrawn.iter().map(|&k| d.studios[k].name.clone()).collect();
    v
}

/// Studios on file that the unit's current 附件2 does not list although it came after every
/// file of theirs: the unit took them off its list, as a new stamped 汇总表 says. They leave
/// the unit's studios (kept in the history; a later 附件2 that lists them again brings them
/// back). A studio whose files came with or after the 附件2 is one it forgot to list
/// (`summary.unlisted_studio`).
fn withdrawn_studios(d: &Dossier, v: &Submission) -> Vec<usize> {
    let Some(listed_at) = d.summary.as_ref().and_then(|t| t.from.received_at) else { return Vec::new() };
    d.studios
        .iter()
        .enumerate()
        .filter(|(_, ds)| {
            let unlisted = v.studios.iter().any(|s| s.name == ds.name && s.row.is_none());
            let files = ds.files();
            unlisted && !files.is_empty() && files.iter().all(|(_, from)| from.received_at.is_some_and(|t| t < listed_at))
        })
        .map(|(k, _)| k)
        .collect()
}

fn view_of(d: &Dossier, mail: Option<&Submission>) -> Submission {
    let mut v = Submission::default();
    for ds in &d.studios {
        let mut s = Studio::new(ds.name.clone());
        s.leader = ds.leader.clone();
        s.unit = ds.unit.clone();
        if let Some(f) = &ds.form {
            s.form = Some(v.forms.len());
            s.has_approval_form = true;
            s.created = f.part.date(FieldKey::Created).map(|d| d.iso());
            s.members = f.part.number(FieldKey::Members).filter(|m| *m >= 0.0).map(|m| m as u32);
            v.forms.push(f.part.clone());
        } else if let Some(scan) = &ds.scan {
            s.not_typed.push(v.not_typed.len());
            v.not_typed.push(scan.part.clone());
        }
        if let Some(m) = &ds.materials {
            s.materials.push(v.materials.len());
            s.has_materials = true;
            v.materials.push(m.part.clone());
        }
        match &ds.photo {
            Some(OnFile { part: PhotoPart::Readable(p), .. }) => {
                s.photos.push(v.photos.len());
                s.has_photo = true;
                v.photos.push(p.clone());
            }
            Some(OnFile { part: PhotoPart::Unreadable(b), .. }) => {
                s.bad_photos.push(v.bad_photos.len());
                v.bad_photos.push(b.clone());
            }
            None => {
                if let Some(p) = ds.picture_inside() {
                    s.photos.push(v.photos.len());
                    s.has_photo = true;
                    v.photos.push(p.clone());
                }
            }
        }
        if let Some(mail) = mail {
            let key = squash(&ds.name);
            if let Some(ms) = mail.studios.iter().find(|m| squash(&m.name) == key) {
                s.unreadable = ms.unreadable.clone();
            }
        }
        v.studios.push(s);
    }
    if let Some(t) = &d.summary {
        v.summaries.push(t.part.clone());
        let names: Vec<String> = t.part.rows.iter().map(|row| row.get(FieldKey::StudioName).unwrap_or("").trim().to_owned()).collect();
        let created: Vec<Option<String>> = t.part.rows.iter().map(submission::row_created).collect();
        let named: Vec<submission::Named<'_>> =
            t.part.rows.iter().zip(&names).zip(&created).map(|((row, name), c)| submission::row_named(row, name, c.as_deref())).collect();
        let pairs = submission::pair_up(&v.studios, &named, |s| s.row.is_none());
        for (r, row) in t.part.rows.iter().enumerate() {
            let k = match pairs[r] {
                Some(k) => k,
                None => {
                    let mut s = submission::expected_studio(row);
                    if let Some(mail) = mail
                        && let Some(ms) = mail.studios.iter().find(|m| squash(&m.name) == squash(&s.name))
                    {
                        s.unreadable = ms.unreadable.clone();
                    }
                    v.studios.push(s);
                    v.studios.len() - 1
                }
            };
            let s = &mut v.studios[k];
            s.row = Some((0, r));
            s.has_summary_row = true;
            s.rank = submission::rank_of(row);
        }
    }
    // In the order of the 附件2, then the studios it does not list.
    v.studios.sort_by_key(|s| (s.row.is_none(), s.row.map(|(_, r)| r)));
    v
}

/// Where one studio of the unit stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudioStanding {
    pub name: String,
    pub rank: Option<u32>,
    pub has_approval_form: bool,
    pub has_summary_row: bool,
    pub has_materials: bool,
    pub has_photo: bool,
    /// The photo on file is a picture inside its 附件3/附件1.
    pub photo_inside: bool,
    /// Open errors of this studio (its own and the unit's 附件2 ones).
    pub errors: usize,
}

impl StudioStanding {
    pub fn complete(&self) -> bool {
        self.has_approval_form && self.has_summary_row && self.has_materials && self.has_photo && self.errors == 0
    }
}

/// Where the unit stands: its studios, and whether every studio of its 附件2 is complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub studios: Vec<StudioStanding>,
    /// Studios on file that the current 附件2 no longer lists (see [`view`]).
    pub withdrawn: Vec<String>,
    pub has_summary_table: bool,
    /// Open errors that belong to no studio (e.g. the 附件2 header).
    pub unit_errors: usize,
}

impl Standing {
    pub fn complete(&self) -> bool {
        self.has_summary_table && self.unit_errors == 0 && !self.studios.is_empty() && self.studios.iter().all(StudioStanding::complete)
    }
}

/// The standing of a judged dossier view (`findings`: the dossier's findings).
pub fn standing(d: &Dossier, v: &Submission, findings: &[Finding]) -> Standing {
    let errors = |name: Option<&str>| findings.iter().filter(|f| f.severity == Severity::Error && f.studio.as_deref() == name).count();
    let studios = v
        .studios
        .iter()
        .map(|s| {
            let on_file = d.studios.iter().find(|ds| ds.name == s.name);
            StudioStanding {
                name: s.name.clone(),
                rank: s.rank,
                has_approval_form: s.has_approval_form,
                has_summary_row: s.has_summary_row,
                has_materials: s.has_materials,
                has_photo: s.has_photo,
                photo_inside: on_file.is_some_and(|ds| ds.picture_inside().is_some()),
                errors: errors(Some(&s.name)),
            }
        })
        .collect();
    Standing { studios, withdrawn: v.withdrawn.clone(), has_summary_table: !v.summaries.is_empty(), unit_errors: errors(None) }
}
