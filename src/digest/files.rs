//! `export --files DIR`: every current file of every dossier, laid out for the review
//! committee — `DIR/<unit>/<序号>-<studio>/` holding the studio's 附件1 (and its stamped scan),
//! 附件3 and photo under their original names, `DIR/<unit>/` the unit's 附件2. Superseded
//! versions never appear. The bytes come from the stored raw mails (the store keeps every
//! mail as it came); no name from a mail is trusted as a path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Config;
use crate::core::dossier::{self, Provenance};
use crate::core::mime;
use crate::store::Store;

/// Write the files; returns how many were written.
pub async fn export_files(store: &Store, config: &Config, dir: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    // Each stored mail is parsed once, however many parts came from it.
    let mut mails: HashMap<i64, Vec<mime::Attachment>> = HashMap::new();
    for version in store.current_dossiers().await? {
        let unit_dir = dir.join(safe_name(&version.unit));
        let d = &version.dossier;
        let view = dossier::view(d, None);
        let mut parts: Vec<(PathBuf, &Provenance)> = Vec::new();
        if let Some(s) = &d.summary {
            parts.push((unit_dir.clone(), &s.from));
        }
        // Studios the unit took off its 附件2 are not for the reviewers.
        for (k, s) in d.studios.iter().enumerate().filter(|(_, s)| !view.withdrawn.contains(&s.name)) {
            let rank = view.studios.iter().find(|v| v.name == s.name).and_then(|v| v.rank);
            let prefix = rank.map(|r| format!("{r:02}")).unwrap_or_else(|| format!("未排序{:02}", k + 1));
            let studio_dir = unit_dir.join(safe_name(&format!("{prefix}-{}", s.name)));
            for (_, from) in s.files() {
                parts.push((studio_dir.clone(), from));
            }
        }
        for (target, from) in parts {
            let Some(submission) = from.submission else { continue };
            if !mails.contains_key(&submission) {
                let raw = store.raw_of_submission(submission).await?.with_context(|| format!("the mail of submission {submission} is not stored"))?;
                let message = mime::parse(&raw, &config.limits).map_err(|e| anyhow::anyhow!("submission {submission}: {e}"))?;
                mails.insert(submission, message.attachments);
            }
            let Some(att) = mails[&submission].iter().find(|a| a.name == from.file && a.problem.is_none()) else {
                tracing::warn!(submission, file = %from.file, "a file on file is not in its stored mail");
                continue;
            };
            std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
            let path = unique(&target, &safe_name(&att.file_name));
            std::fs::write(&path, &att.data).with_context(|| format!("cannot write {}", path.display()))?;
            written += 1;
        }
    }
    Ok(written)
}

/// `name` as a file name every system accepts: no path separators or characters Windows
/// refuses, no control characters, no trailing dots or spaces, not a reserved device name,
/// at most 100 characters (the extension kept).
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() || matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*') { '_' } else { c })
        .filter(|&c| !crate::core::text::is_invisible(c))
        .collect();
    let mut cleaned = cleaned.trim().trim_end_matches(['.', ' ']).trim_start_matches('.').to_owned();
    if cleaned.chars().count() > 100 {
        let ext: String = cleaned.rsplit_once('.').map(|(_, e)| e).filter(|e| e.len() <= 8).map(|e| format!(".{e}")).unwrap_or_default();
        cleaned = cleaned.chars().take(100 - ext.chars().count()).collect::<String>() + &ext;
    }
    let stem = cleaned.split('.').next().unwrap_or("").to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT")) && stem.len() == 4 && stem.as_bytes()[3].is_ascii_digit());
    if cleaned.is_empty() || reserved {
        cleaned = format!("_{cleaned}");
    }
    cleaned
}

/// `dir/name`, or `dir/name (2)` … when two parts have the same name.
fn unique(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s.to_owned(), format!(".{e}")),
        None => (name.to_owned(), String::new()),
    };
    (2..).map(|n| dir.join(format!("{stem} ({n}){ext}"))).find(|p| !p.exists()).expect("a free name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_on_windows() {
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name("附件1：推荐审批表?.docx"), "附件1：推荐审批表_.docx");
        assert_eq!(safe_name("CON.txt"), "_CON.txt");
        assert_eq!(safe_name("com1"), "_com1");
        assert_eq!(safe_name("name. . "), "name");
        assert_eq!(safe_name("a\u{202e}b\r\nc"), "ab__c");
        assert_eq!(safe_name(""), "_");
        let long = format!("{}.docx", "申".repeat(300));
        let cut = safe_name(&long);
        assert!(cut.ends_with(".docx") && cut.chars().count() == 100, "{cut}");
    }
}
