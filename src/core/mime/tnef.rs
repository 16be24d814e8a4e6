//! `winmail.dat` (`application/ms-tnef`): Outlook's container for a mail written in Rich
//! Text Format and sent to a server outside Exchange. The forms are inside it, so it is
//! opened like a zip: each attachment it carries becomes a member.
//!
//! The format is Microsoft's [MS-OXTNEF]: a signature, then attribute records (level,
//! id, length, data, checksum). An attachment starts with `attAttachRendData`; its bytes
//! are `attAttachData`, its 8.3 or OEM-code-page name `attAttachTitle`, and its long
//! (Unicode) name a MAPI property inside `attAttachment`. Every length is checked against
//! what is left; nothing is copied beyond the input, so memory stays bounded by the
//! attachment's own size.

use encoding_rs::{Encoding, GB18030};

use super::archive::{Expanded, Member, components};
use crate::core::{Limits, Unreadable};

/// `78 9F 3E 22`: the first four bytes of every TNEF stream.
pub(crate) const SIGNATURE: [u8; 4] = [0x78, 0x9F, 0x3E, 0x22];

const LEVEL_ATTACHMENT: u8 = 0x02;

const ATT_OEM_CODEPAGE: u32 = 0x0006_9007;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACHMENT: u32 = 0x0006_9005;

const PR_DISPLAY_NAME: u16 = 0x3001;
const PR_ATTACH_DATA_OBJ: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_METHOD: u16 = 0x3705;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;

/// `PR_ATTACH_METHOD` of an attached Outlook item (a mail, a contact): a MAPI message of
/// its own, not a file.
const ATTACH_EMBEDDED_MSG: u32 = 5;

const PT_SHORT: u16 = 0x0002;
const PT_LONG: u16 = 0x0003;
const PT_FLOAT: u16 = 0x0004;
const PT_DOUBLE: u16 = 0x0005;
const PT_CURRENCY: u16 = 0x0006;
const PT_APPTIME: u16 = 0x0007;
const PT_ERROR: u16 = 0x000A;
const PT_BOOLEAN: u16 = 0x000B;
const PT_OBJECT: u16 = 0x000D;
const PT_I8: u16 = 0x0014;
const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
const PT_SYSTIME: u16 = 0x0040;
const PT_CLSID: u16 = 0x0048;
const PT_BINARY: u16 = 0x0102;
const MV_FLAG: u16 = 0x1000;

/// Whether `data` is a TNEF stream.
pub(crate) fn is_tnef(data: &[u8]) -> bool {
    data.starts_with(&SIGNATURE)
}

/// The attachments of one TNEF stream, in order. A stream cut short keeps the attachments
/// read whole before the cut, and the container is corrupt.
pub(crate) fn expand(data: &[u8], limits: &Limits) -> Expanded {
    let mut out = Expanded { members: Vec::new(), problem: None };
    if !is_tnef(data) || data.len() < 6 {
        out.problem = Some(Unreadable::Corrupt { detail: "not a TNEF stream".into() });
        return out;
    }
    let mut at = 6; // signature, legacy key
    let mut codepage: Option<&'static Encoding> = None;
    let mut parts: Vec<Part> = Vec::new();
    let mut cut = false;
    while at < data.len() {
        let Some((level, id, value, next)) = record(data, at) else {
            cut = true;
            break;
        };
        at = next;
        match id {
            ATT_OEM_CODEPAGE => codepage = value.get(..4).and_then(|c| encoding_of(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ATT_ATTACH_REND_DATA if level == LEVEL_ATTACHMENT => {
                if parts.len() >= limits.max_archive_members as usize {
                    out.problem = Some(Unreadable::ArchiveBomb { detail: format!("more than {} attachments", limits.max_archive_members) });
                    break;
                }
                parts.push(Part::default());
            }
            ATT_ATTACH_TITLE if level == LEVEL_ATTACHMENT => {
                if let Some(p) = parts.last_mut() {
                    p.title = Some(value);
                }
            }
            ATT_ATTACH_DATA if level == LEVEL_ATTACHMENT => {
                if let Some(p) = parts.last_mut() {
                    p.data = Some(value);
                }
            }
            ATT_ATTACHMENT if level == LEVEL_ATTACHMENT => {
                if let Some(p) = parts.last_mut() {
                    p.props = properties(value, codepage);
                }
            }
            _ => {}
        }
    }
    // Files lost with the cut are named nowhere: the sender hears the container is damaged.
    if cut && out.problem.is_none() {
        out.problem = Some(Unreadable::Corrupt { detail: "the TNEF stream is cut short".into() });
    }
    // The attachment being read when the stream ended has no bytes: it is left out.
    for (i, p) in parts.into_iter().enumerate() {
        if let Some(member) = p.member(i, codepage, limits) {
            out.members.push(member);
        }
    }
    out
}

#[derive(Default)]
struct Part<'a> {
    title: Option<&'a [u8]>,
    data: Option<&'a [u8]>,
    props: Props<'a>,
}

#[derive(Default)]
struct Props<'a> {
    long_name: Option<String>,
    short_name: Option<String>,
    display_name: Option<String>,
    data_obj: Option<&'a [u8]>,
    method: Option<u32>,
}

impl Part<'_> {
    fn member(self, index: usize, codepage: Option<&'static Encoding>, limits: &Limits) -> Option<Member> {
        let title = self.title.map(|t| decode_string8(t, codepage));
        let name = [self.props.long_name, self.props.display_name, title, self.props.short_name]
            .into_iter()
            .flatten()
            // A name is one file name, never a path: what follows its last separator.
            .filter_map(|n| components(&n).pop())
            .find(|n| !n.is_empty())
            .unwrap_or_else(|| format!("附件{}", index + 1));
        let path = vec![name];
        if self.props.method == Some(ATTACH_EMBEDDED_MSG) {
            return Some(Member {
                path,
                data: Vec::new(),
                problem: Some(Unreadable::Unsupported {
                    format: "Outlook 邮件中附带的 Outlook 项目".into(),
                    resend_as: "文件附件（先将其中的文件另存，再作为附件发送）".into(),
                }),
            });
        }
        let data = self.data.or(self.props.data_obj)?;
        let problem = if data.len() as u64 > limits.max_attachment_bytes {
            Some(Unreadable::TooLarge { limit: limits.max_attachment_bytes })
        } else {
            None
        };
        let data = if problem.is_some() { Vec::new() } else { data.to_vec() };
        Some(Member { path, data, problem })
    }
}

/// One attribute record at `at`: (level, id, data, offset of the next record).
fn record(data: &[u8], at: usize) -> Option<(u8, u32, &[u8], usize)> {
    let level = *data.get(at)?;
    let id = u32_at(data, at + 1)?;
    let len = u32_at(data, at + 5)? as usize;
    let start = at + 9;
    let end = start.checked_add(len)?;
    let value = data.get(start..end)?;
    // The checksum (2 bytes) is not checked: a wrong one changes nothing we read.
    let next = end.checked_add(2)?;
    (next <= data.len()).then_some((level, id, value, next))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn padded(len: usize) -> Option<usize> {
    len.checked_add(3).map(|l| l & !3)
}

/// The MAPI properties of `attAttachment` this reader needs. The list is read in order; at a
/// property type it does not know, it stops and keeps what it has (the names and the data
/// come first in what Outlook writes, and a guess at the size would misread the rest).
fn properties<'a>(data: &'a [u8], codepage: Option<&'static Encoding>) -> Props<'a> {
    let mut props = Props::default();
    let Some(count) = u32_at(data, 0) else { return props };
    let mut at = 4;
    for _ in 0..count {
        let (Some(ty), Some(id)) = (u16_at(data, at), u16_at(data, at + 2)) else { break };
        at += 4;
        if id >= 0x8000 {
            // A named property: GUID, then a number or a UTF-16 name.
            let Some(kind) = u32_at(data, at + 16) else { break };
            at += 20;
            if kind == 0 {
                at += 4;
            } else {
                let Some(len) = u32_at(data, at).map(|l| l as usize) else { break };
                let Some(skip) = padded(len) else { break };
                at += 4 + skip;
            }
        }
        let multi = ty & MV_FLAG != 0;
        let base = ty & !MV_FLAG;
        let values = if multi || matches!(base, PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT) {
            let Some(n) = u32_at(data, at) else { break };
            at += 4;
            n
        } else {
            1
        };
        for v in 0..values {
            let value = match base {
                PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT => {
                    let Some(len) = u32_at(data, at).map(|l| l as usize) else { return props };
                    let Some(bytes) = at.checked_add(4).and_then(|s| data.get(s..s.checked_add(len)?)) else { return props };
                    let Some(skip) = padded(len) else { return props };
                    at += 4 + skip;
                    bytes
                }
                _ => {
                    let Some(size) = fixed_size(base) else { return props };
                    let Some(bytes) = data.get(at..at + size) else { return props };
                    at += padded(size).unwrap_or(size);
                    bytes
                }
            };
            if multi || v > 0 {
                continue;
            }
            let text = || match base {
                PT_UNICODE => Some(decode_unicode(value)),
                PT_STRING8 => Some(decode_string8(value, codepage)),
                _ => None,
            };
            match id {
                PR_ATTACH_LONG_FILENAME => props.long_name = text(),
                PR_ATTACH_FILENAME => props.short_name = text(),
                PR_DISPLAY_NAME => props.display_name = text(),
                PR_ATTACH_METHOD if base == PT_LONG => props.method = u32_at(value, 0),
                // PT_OBJECT data starts with the interface id of what it holds.
                PR_ATTACH_DATA_OBJ if base == PT_BINARY => props.data_obj = Some(value),
                PR_ATTACH_DATA_OBJ if base == PT_OBJECT => props.data_obj = value.get(16..),
                _ => {}
            }
        }
    }
    props
}

fn fixed_size(ty: u16) -> Option<usize> {
    Some(match ty {
        PT_SHORT | PT_BOOLEAN => 2,
        PT_LONG | PT_FLOAT | PT_ERROR => 4,
        PT_DOUBLE | PT_CURRENCY | PT_APPTIME | PT_I8 | PT_SYSTIME => 8,
        PT_CLSID => 16,
        _ => return None,
    })
}

/// The OEM code page `attOemCodepage` names, for the 8-bit strings.
fn encoding_of(codepage: u32) -> Option<&'static Encoding> {
    let label = match codepage {
        65001 => "utf-8",
        936 => "gbk",
        54936 => "gb18030",
        950 => "big5",
        932 => "shift_jis",
        949 => "euc-kr",
        1250..=1258 => return Encoding::for_label(format!("windows-{codepage}").as_bytes()),
        874 => "windows-874",
        _ => return None,
    };
    Encoding::for_label(label.as_bytes())
}

/// An 8-bit string, NUL-terminated: UTF-8 when it is, else the stream's code page, else
/// GB18030 (what a Chinese Windows writes).
fn decode_string8(raw: &[u8], codepage: Option<&'static Encoding>) -> String {
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    if let Ok(s) = std::str::from_utf8(raw) {
        return s.to_owned();
    }
    codepage.unwrap_or(GB18030).decode_without_bom_handling(raw).0.into_owned()
}

fn decode_unicode(raw: &[u8]) -> String {
    let units: Vec<u16> = raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    String::from_utf16_lossy(&units)
}
