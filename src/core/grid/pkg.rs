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
