//! `.zip` expansion for attachments: member names decoded (GB18030 when the UTF-8 flag is
//! off, as Windows zip tools write them), junk skipped, bombs stopped twice: once on the
//! sizes the central directory declares and again while inflating (declared sizes can lie).
//!
//! Nothing is written to disk: member names are only display strings.

use std::io::{Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use encoding_rs::GB18030;
use zip::ZipArchive;

use super::clean_component;
use crate::core::{Limits, Unreadable};

/// General purpose flag bit 11: file name and comment are UTF-8.
const FLAG_UTF8: u16 = 1 << 11;
/// Declared inflated/compressed ratio above which a large member counts as a bomb.
const MAX_RATIO: u64 = 500;
/// Members smaller than this are never judged by their ratio.
const RATIO_MIN_SIZE: u64 = 16 * 1024 * 1024;

pub(crate) struct Member {
    /// Cleaned path components (folders…, file name); never empty.
    pub path: Vec<String>,
    pub data: Vec<u8>,
    pub problem: Option<Unreadable>,
}

pub(crate) struct Expanded {
    pub members: Vec<Member>,
    /// Problem of the archive itself (corrupt, encrypted, bomb).
    pub problem: Option<Unreadable>,
}

fn corrupt(detail: impl Into<String>) -> Expanded {
    Expanded {
        members: Vec::new(),
        problem: Some(Unreadable::Corrupt {
            detail: detail.into(),
        }),
    }
}

fn bomb(detail: String) -> Expanded {
    Expanded {
        members: Vec::new(),
        problem: Some(Unreadable::ArchiveBomb { detail }),
    }
}

/// Decodes a raw member name: UTF-8 when flagged (or when it simply is valid UTF-8, as
/// macOS Archive Utility writes it without the flag), else GB18030.
pub(crate) fn decode_name(raw: &[u8], utf8_flag: bool) -> String {
    if utf8_flag || raw.is_ascii() {
        return String::from_utf8_lossy(raw).into_owned();
    }
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => GB18030.decode_without_bom_handling(raw).0.into_owned(),
    }
}

/// Splits a decoded name into display components, dropping `..`, `.`, empty components
/// (leading `/`), drive letters and control/bidi characters.
pub(crate) fn components(name: &str) -> Vec<String> {
    let mut out: Vec<String> = name
        .split(['/', '\\'])
        .map(clean_component)
        .filter(|c| !c.is_empty())
        .collect();
    if out
        .first()
        .is_some_and(|c| c.len() == 2 && c.ends_with(':'))
    {
        out.remove(0);
    }
    out
}

fn is_junk(path: &[String]) -> bool {
    path.iter().any(|c| c == "__MACOSX")
        || path.last().is_some_and(|f| {
            let f = f.to_ascii_lowercase();
            f == ".ds_store" || f == "thumbs.db" || f == "desktop.ini" || f.starts_with("._")
        })
}

fn is_password_error(e: &zip::result::ZipError) -> bool {
    let s = e.to_string().to_ascii_lowercase();
    matches!(e, zip::result::ZipError::InvalidPassword)
        || s.contains("password")
        || s.contains("encrypt")
}

/// Expands one zip. `inflated` is the running total of inflated bytes for the message.
pub(crate) fn expand(data: &[u8], limits: &Limits, inflated: &mut u64) -> Expanded {
    match catch_unwind(AssertUnwindSafe(|| expand_inner(data, limits, inflated))) {
        Ok(e) => e,
        Err(_) => corrupt("the zip reader failed on this archive"),
    }
}

fn expand_inner(data: &[u8], limits: &Limits, inflated: &mut u64) -> Expanded {
    let mut zip = match ZipArchive::new(Cursor::new(data)) {
        Ok(z) => z,
        Err(e) if is_password_error(&e) => {
            return Expanded {
                members: Vec::new(),
                problem: Some(Unreadable::Encrypted),
            };
        }
        Err(e) => return corrupt(format!("not a readable zip archive ({e})")),
    };

    // 1. What the central directory declares.
    let count = zip.len();
    if count as u64 > limits.max_archive_members as u64 {
        return bomb(format!(
            "{count} entries, the limit is {}",
            limits.max_archive_members
        ));
    }
    struct Entry {
        index: usize,
        path: Vec<String>,
        encrypted: bool,
    }
    let mut entries = Vec::new();
    let mut declared: u64 = 0;
    for index in 0..count {
        let meta = match zip.by_index_data(index) {
            Ok(m) => m,
            Err(e) => return corrupt(format!("entry {index}: {e}")),
        };
        let raw_name = meta.name_raw().to_vec();
        let utf8 = meta.flags().as_u16() & FLAG_UTF8 != 0;
        let name = decode_name(&raw_name, utf8);
        if meta.is_dir() || name.ends_with('/') || name.ends_with('\\') {
            continue;
        }
        let path = components(&name);
        if path.is_empty() || is_junk(&path) {
            continue;
        }
        let size = meta.size();
        let compressed = meta.compressed_size().max(1);
        if size > RATIO_MIN_SIZE && size / compressed > MAX_RATIO {
            return bomb(format!(
                "{} declares {size} bytes from {compressed} compressed (ratio over {MAX_RATIO})",
                path.join("/")
            ));
        }
        declared = declared.saturating_add(size);
        entries.push(Entry {
            index,
            path,
            encrypted: meta.encrypted(),
        });
    }
    if inflated.saturating_add(declared) > limits.max_decompressed_bytes {
        return bomb(format!(
            "declares {declared} bytes uncompressed, the limit is {}",
            limits.max_decompressed_bytes
        ));
    }

    // 2. Inflate, capped whatever the headers said.
    let mut out = Expanded {
        members: Vec::new(),
        problem: None,
    };
    for entry in entries {
        if entry.encrypted {
            out.problem = Some(Unreadable::Encrypted);
            out.members.push(Member {
                path: entry.path,
                data: Vec::new(),
                problem: Some(Unreadable::Encrypted),
            });
            continue;
        }
        let budget = limits.max_decompressed_bytes.saturating_sub(*inflated);
        let cap = limits.max_attachment_bytes.min(budget).saturating_add(1);
        let mut buf = Vec::new();
        let read = match zip.by_index(entry.index) {
            Ok(file) => file.take(cap).read_to_end(&mut buf),
            Err(e) if is_password_error(&e) => {
                out.problem = Some(Unreadable::Encrypted);
                out.members.push(Member {
                    path: entry.path,
                    data: Vec::new(),
                    problem: Some(Unreadable::Encrypted),
                });
                continue;
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        *inflated = inflated.saturating_add(buf.len() as u64);
        if let Err(e) = read {
            let problem = Unreadable::Corrupt {
                detail: format!("cannot inflate this file from the zip ({e})"),
            };
            if out.problem.is_none() {
                out.problem = Some(Unreadable::Corrupt {
                    detail: format!("{}: {e}", entry.path.join("/")),
                });
            }
            out.members.push(Member {
                path: entry.path,
                data: Vec::new(),
                problem: Some(problem),
            });
            continue;
        }
        if buf.len() as u64 > limits.max_attachment_bytes {
            out.members.push(Member {
                path: entry.path,
                data: Vec::new(),
                problem: Some(Unreadable::TooLarge {
                    limit: limits.max_attachment_bytes,
                }),
            });
            if *inflated > limits.max_decompressed_bytes {
                out.problem = Some(Unreadable::ArchiveBomb {
                    detail: format!("inflates beyond {} bytes", limits.max_decompressed_bytes),
                });
                break;
            }
            continue;
        }
        if *inflated > limits.max_decompressed_bytes {
            out.problem = Some(Unreadable::ArchiveBomb {
                detail: format!("inflates beyond {} bytes", limits.max_decompressed_bytes),
            });
            break;
        }
        out.members.push(Member {
            path: entry.path,
            data: buf,
            problem: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        // "附件" in GBK = B8 BD BC FE
        assert_eq!(decode_name(b"\xb8\xbd\xbc\xfe.docx", false), "附件.docx");
        assert_eq!(
            components("../../etc/\u{202E}passwd"),
            vec!["etc", "passwd"]
        );
        assert_eq!(components("C:\\a\\b.txt"), vec!["a", "b.txt"]);
    }
}
