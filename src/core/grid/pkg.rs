//! Zip package checks done before any parser sees an OOXML/ODF package: member count,
//! declared and actual inflated sizes.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::{bomb, corrupt};
use crate::core::{Limits, Unreadable};

pub type Zip<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// Members allowed in one document package: a package is not an archive of attachments, a
/// real `.xlsx` with many sheets and pictures has a few hundred parts.
fn max_members(limits: &Limits) -> usize {
    (limits.max_archive_members as usize).saturating_mul(10).max(100)
}

pub fn open(data: &[u8]) -> Result<Zip<'_>, Unreadable> {
    ZipArchive::new(Cursor::new(data)).map_err(|e| corrupt(format!("zip: {e}")))
}

pub fn zip_has_member(data: &[u8], name: &str) -> bool {
    ZipArchive::new(Cursor::new(data))
        .map(|z| z.file_names_raw().any(|n| n == name.as_bytes()))
        .unwrap_or(false)
}

/// Names of all members, in central-directory order.
pub fn names(zip: &Zip<'_>) -> Vec<String> {
    zip.file_names_raw().map(|n| String::from_utf8_lossy(n).into_owned()).collect()
}

/// Checks the central directory (count, declared sizes, encryption), then inflates every XML
/// part through a capped reader to prove the declared sizes are honest. After this the
/// package can be handed to calamine, which reads without limits. Pictures are never read by
/// the parsers, so they are not inflated.
pub fn verify(zip: &mut Zip<'_>, limits: &Limits) -> Result<(), Unreadable> {
    verify_directory(zip, limits)?;
    for i in 0..zip.len() {
        let f = zip.by_index(i).map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        if f.is_dir() || !(name.ends_with(".xml") || name.ends_with(".rels") || name.ends_with(".bin")) {
            continue;
        }
        let declared = f.size();
        let got = std::io::copy(&mut f.take(declared.saturating_add(1)), &mut std::io::sink())
            .map_err(|e| corrupt(format!("{name}: {e}")))?;
        if got > declared {
            return Err(bomb(format!("{name} inflates beyond its declared size {declared}")));
        }
    }
    Ok(())
}

/// Like [`verify`], but keeps what it inflated: every XML/rels/bin part, each inflated once
/// through a capped reader. Returns (name, bytes) in central-directory order.
pub fn verify_and_read(zip: &mut Zip<'_>, limits: &Limits) -> Result<Vec<(String, Vec<u8>)>, Unreadable> {
    verify_directory(zip, limits)?;
    let mut parts = Vec::new();
    for i in 0..zip.len() {
        let f = zip.by_index(i).map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        if f.is_dir() || !(name.ends_with(".xml") || name.ends_with(".rels") || name.ends_with(".bin")) {
            continue;
        }
        let declared = f.size();
        // The directory check bounds `declared` by `max_attachment_bytes`.
        let mut buf = Vec::with_capacity(declared as usize);
        f.take(declared.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| corrupt(format!("{name}: {e}")))?;
        if buf.len() as u64 > declared {
            return Err(bomb(format!("{name} inflates beyond its declared size {declared}")));
        }
        parts.push((name, buf));
    }
    Ok(parts)
}

/// A zip holding `parts` uncompressed: what calamine reads instead of the original package,
/// so nothing is inflated a second time and nothing it sees was left unchecked.
pub fn stored_zip(parts: &[(String, Vec<u8>)]) -> Result<Vec<u8>, Unreadable> {
    use std::io::Write;
    let size: usize = parts.iter().map(|(n, d)| d.len() + 2 * n.len() + 100).sum();
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(size + 100)));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    for (name, data) in parts {
        w.start_file(name.as_str(), opts).map_err(|e| corrupt(format!("repack {name}: {e}")))?;
        w.write_all(data).map_err(|e| corrupt(format!("repack {name}: {e}")))?;
    }
    Ok(w.finish().map_err(|e| corrupt(format!("repack: {e}")))?.into_inner())
}

/// The central-directory half of [`verify`]: enough for readers that only read members
/// through [`read_member`], whose own cap stops a member that lies about its size.
pub fn verify_directory(zip: &mut Zip<'_>, limits: &Limits) -> Result<(), Unreadable> {
    let n = zip.len();
    if n > max_members(limits) {
        return Err(bomb(format!("{n} members in the package (limit {})", max_members(limits))));
    }
    let mut total: u64 = 0;
    for i in 0..n {
        let f = zip.by_index_raw(i).map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        if f.encrypted() {
            return Err(Unreadable::Encrypted);
        }
        let size = f.size();
        if size > limits.max_attachment_bytes {
            return Err(bomb(format!(
                "member {} inflates to {size} bytes (limit {})",
                String::from_utf8_lossy(f.name_raw()),
                limits.max_attachment_bytes
            )));
        }
        total = total.saturating_add(size);
    }
    if total > limits.max_decompressed_bytes {
        return Err(bomb(format!(
            "package inflates to {total} bytes (limit {})",
            limits.max_decompressed_bytes
        )));
    }
    Ok(())
}

/// Reads one member in full (after [`verify`], so its size is known and bounded).
pub fn read_member(zip: &mut Zip<'_>, name: &str, cap: u64) -> Result<Option<Vec<u8>>, Unreadable> {
    let f = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(corrupt(format!("{name}: {e}"))),
    };
    let mut buf = Vec::with_capacity(f.size().min(cap) as usize);
    f.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| corrupt(format!("{name}: {e}")))?;
    if buf.len() as u64 > cap {
        return Err(bomb(format!("{name} is larger than {cap} bytes")));
    }
    Ok(Some(buf))
}

/// Members whose name starts with `prefix` (e.g. `word/media/`).
pub fn count_prefix(names: &[String], prefix: &str) -> usize {
    names.iter().filter(|n| n.starts_with(prefix) && !n.ends_with('/')).count()
}

// ---------------------------------------------------------------------------------------
// Open Packaging Conventions: relationships and content types, so a reader finds a part as
// Office does (by what the package says), not by where one writer happens to put it.
// ---------------------------------------------------------------------------------------

/// One relationship of a part (`Id`, `Type`, resolved target part name, external or not).
#[derive(Debug, Clone)]
pub struct Rel {
    pub id: String,
    pub kind: String,
    /// The target as a part name inside the package (no leading `/`), or the raw target of
    /// an external relationship.
    pub target: String,
    pub external: bool,
}

impl Rel {
    /// Is the relationship of this kind (the last segment of its type URI: `officeDocument`,
    /// `header`, `aFChunk`)? Transitional and strict URIs end the same way.
    pub fn is(&self, kind: &str) -> bool {
        self.kind.rsplit('/').next().is_some_and(|k| k.eq_ignore_ascii_case(kind))
    }
}

/// Relationships and content-type entries read per package: more is not a document.
const MAX_ENTRIES: usize = 10_000;
/// The XML of a relationships or content-types part is small; a bigger one is not read.
const MAX_META_BYTES: u64 = 4 << 20;

fn attr(e: &quick_xml::events::BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .map(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap_or(a.value.clone()).into_owned())
}

/// Elements named `local` in a small XML part, as their attribute lists (`names`).
fn elements(xml: &[u8], local: &str, names: &[&str]) -> Vec<Vec<Option<String>>> {
    // Events borrowed from the part's bytes (no copy into a buffer per event).
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(ref e)) | Ok(quick_xml::events::Event::Empty(ref e))
                if e.local_name().as_ref() == local =>
            {
                out.push(names.iter().map(|n| attr(e, n)).collect());
                if out.len() >= MAX_ENTRIES {
                    break;
                }
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

/// The member holding part `name` (part names compare without case, as OPC says).
pub fn member_name(names: &[String], part: &str) -> Option<String> {
    let part = part.trim_start_matches('/');
    names.iter().find(|n| n.as_str() == part).or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(part))).cloned()
}

/// `word/document.xml` → `word/_rels/document.xml.rels`; `` (the package) → `_rels/.rels`.
pub fn rels_name(part: &str) -> String {
    match part.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/_rels/{file}.rels"),
        None if part.is_empty() => "_rels/.rels".into(),
        None => format!("_rels/{part}.rels"),
    }
}

/// A relationship target resolved against the part that holds the relationship.
pub fn resolve(source_part: &str, target: &str) -> String {
    let target = target.split(['#', '?']).next().unwrap_or("");
    let target = percent_decode(target);
    let mut segs: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        source_part.rsplit_once('/').map(|(d, _)| d.split('/').collect()).unwrap_or_default()
    };
    for s in target.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    segs.join("/")
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The relationships of `part` (`""` for the package's own), targets resolved.
pub fn rels_of(zip: &mut Zip<'_>, names: &[String], part: &str) -> Vec<Rel> {
    let Some(member) = member_name(names, &rels_name(part)) else { return Vec::new() };
    let Ok(Some(xml)) = read_member(zip, &member, MAX_META_BYTES) else { return Vec::new() };
    elements(&xml, "Relationship", &["Id", "Type", "Target", "TargetMode"])
        .into_iter()
        .filter_map(|a| {
            let mut a = a.into_iter();
            let (id, kind, target, mode) = (a.next()??, a.next()??, a.next()??, a.next().flatten());
            let external = mode.is_some_and(|m| m.eq_ignore_ascii_case("External"));
            let target = if external { target } else { resolve(part, &target) };
            Some(Rel { id, kind, target, external })
        })
        .collect()
}

/// `[Content_Types].xml`: (part name or `.ext`, content type) for every Override and Default.
pub fn content_types(zip: &mut Zip<'_>, names: &[String]) -> Vec<(String, String)> {
    let Some(member) = member_name(names, "[Content_Types].xml") else { return Vec::new() };
    let Ok(Some(xml)) = read_member(zip, &member, MAX_META_BYTES) else { return Vec::new() };
    let mut out: Vec<(String, String)> = elements(&xml, "Override", &["PartName", "ContentType"])
        .into_iter()
        .filter_map(|a| Some((a[0].clone()?.trim_start_matches('/').to_owned(), a[1].clone()?)))
        .collect();
    out.extend(
        elements(&xml, "Default", &["Extension", "ContentType"])
            .into_iter()
            .filter_map(|a| Some((format!(".{}", a[0].clone()?.to_ascii_lowercase()), a[1].clone()?))),
    );
    out
}

/// The content type of `part`: its Override, else the Default of its extension.
pub fn content_type_of<'a>(types: &'a [(String, String)], part: &str) -> Option<&'a str> {
    let part = part.trim_start_matches('/');
    types
        .iter()
        .find(|(p, _)| !p.starts_with('.') && p.eq_ignore_ascii_case(part))
        .or_else(|| {
            let ext = part.rsplit_once('.').map(|(_, e)| format!(".{}", e.to_ascii_lowercase()))?;
            types.iter().find(|(p, _)| *p == ext)
        })
        .map(|(_, t)| t.as_str())
}

/// What kind of office document a main-part content type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainKind {
    Word,
    Excel,
}

pub fn main_kind(content_type: &str) -> Option<MainKind> {
    // …wordprocessingml.document.main+xml, …template.main+xml, ms-word.document.macroEnabled
    // .main+xml (.docm); the same for spreadsheets (.xlsx, .xltx, .xlsm). A binary workbook
    // (.xlsb, `…sheet.binary.macroEnabled.main`) is not read here.
    let t = content_type.trim().to_ascii_lowercase();
    if !t.ends_with("main+xml") {
        None
    } else if t.contains("wordprocessingml") || t.contains("ms-word") {
        Some(MainKind::Word)
    } else if t.contains("spreadsheetml") || t.contains("ms-excel") {
        Some(MainKind::Excel)
    } else {
        None
    }
}

/// The package's main part as Office finds it: the target of the package's
/// `officeDocument` relationship, else the part whose content type is a main document; with
/// what kind of document it is (from its content type, else its folder).
pub fn main_part(zip: &mut Zip<'_>, names: &[String]) -> Option<(String, Option<MainKind>)> {
    let types = content_types(zip, names);
    main_part_with(zip, names, &types)
}

/// [`main_part`] for a reader that has read `[Content_Types].xml` already ([`content_types`]).
pub fn main_part_with(zip: &mut Zip<'_>, names: &[String], types: &[(String, String)]) -> Option<(String, Option<MainKind>)> {
    let by_rel = rels_of(zip, names, "")
        .into_iter()
        .filter(|r| r.is("officeDocument") && !r.external)
        .find_map(|r| member_name(names, &r.target));
    let by_type = || {
        types
            .iter()
            .filter(|(p, _)| !p.starts_with('.'))
            .find(|(_, t)| main_kind(t).is_some())
            .and_then(|(p, _)| member_name(names, p))
    };
    let part = by_rel.or_else(by_type)?;
    let kind = content_type_of(types, &part).and_then(main_kind).or_else(|| {
        let lower = part.to_ascii_lowercase();
        if lower.starts_with("word/") {
            Some(MainKind::Word)
        } else if lower.starts_with("xl/") {
            Some(MainKind::Excel)
        } else {
            None
        }
    });
    Some((part, kind))
}
