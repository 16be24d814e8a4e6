//! Header block splitting, unfolding and decoding that survives what Chinese mail clients send:
//! GBK encoded-words split in the middle of a character, RFC 2231 continuations split the
//! same way, raw 8-bit GBK bytes, parameters folded right after `=` (mail-parser #165).

use base64::Engine as _;
use encoding_rs::{Encoding, GB18030, UTF_8};

/// One header field: lower-cased name and the raw (still folded) value bytes.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    pub name: String,
    pub value: &'a [u8],
}

/// An entity (message or body part) split into its header fields and its body.
#[derive(Debug, Clone)]
pub(crate) struct Entity<'a> {
    pub fields: Vec<Field<'a>>,
    pub body: &'a [u8],
}

impl<'a> Entity<'a> {
    /// First field with this (lower-case) name.
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.value)
    }

    /// Unfolded, decoded (RFC 2047, raw GBK) text of the first field with this name.
    pub fn text(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(|v| decode_words(&unfold(v)).trim().to_string())
    }

    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.name == name)
    }
}

/// True when `line` (without its line ending) has the shape `field-name ":"`.
fn header_name_len(line: &[u8]) -> Option<usize> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let name = trim_end_ws(name); // "Subject :" is seen in the wild
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b) && b != b':') {
        return None;
    }
    Some(colon)
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && matches!(s[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    &s[..end]
}

fn trim_ws(s: &[u8]) -> &[u8] {
    let s = trim_end_ws(s);
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(s.len());
    &s[start..]
}

/// Iterates over lines: (start, end without line ending, next line start). The line
/// breaks are found with `memchr` (SIMD, the same search quick-xml uses).
pub(crate) fn lines(data: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        let start = pos;
        let (end, next) = match memchr::memchr(b'\n', &data[pos..]) {
            Some(i) => {
                let nl = pos + i;
                let end = if nl > start && data[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                (end, nl + 1)
            }
            None => (data.len(), data.len()),
        };
        pos = next;
        Some((start, end, next))
    })
}

/// Splits an entity into header fields and body. `strict` (top-level message): the first
/// line must be a header field (an mbox `From ` line is skipped), else `None`.
pub(crate) fn split_entity(data: &[u8], strict: bool) -> Option<Entity<'_>> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    // (name, value start, value end) of the field being collected.
    let mut current: Option<(String, usize, usize)> = None;
    let mut body_start = data.len();
    let mut first = true;
    for (start, end, next) in lines(data) {
        let line = &data[start..end];
        if first && strict && line.starts_with(b"From ") {
            first = false;
            continue;
        }
        if line.is_empty() {
            body_start = next;
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(cur) = current.as_mut() {
                cur.2 = end;
            }
            first = false;
            continue;
        }
        match header_name_len(line) {
            Some(colon) => {
                if let Some((name, s, e)) = current.take() {
                    fields.push(Field {
                        name,
                        value: &data[s..e],
                    });
                }
                let name =
                    String::from_utf8_lossy(trim_end_ws(&line[..colon])).to_ascii_lowercase();
                current = Some((name, start + colon + 1, end));
            }
            None => {
                if first && strict {
                    return None;
                }
                if fields.is_empty() && current.is_none() {
                    // A part without headers whose body does not start with an empty line.
                    body_start = start;
                    break;
                }
                // Garbage line inside the header block: skip it (mail clients do).
            }
        }
        first = false;
    }
    if let Some((name, s, e)) = current.take() {
        fields.push(Field {
            name,
            value: &data[s..e],
        });
    }
    Some(Entity {
        fields,
        body: &data[body_start.min(data.len())..],
    })
}

/// RFC 5322 unfolding: CRLF followed by white space becomes that white space.
pub(crate) fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' | b'\n' => {}
            b => out.push(b),
        }
        i += 1;
    }
    let t = trim_ws(&out);
    t.to_vec()
}

/// Bytes → text: UTF-8 when valid, else GB18030 (what Chinese Windows clients send raw).
pub(crate) fn bytes_to_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => GB18030.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

/// Charset label → encoding. The Chinese family all decode as GB18030 (a superset).
pub(crate) fn charset(label: &str) -> Option<&'static Encoding> {
    let l = label.trim().trim_matches('"').to_ascii_lowercase();
    let l = l.split('*').next().unwrap_or(""); // RFC 2231 language suffix: utf-8*zh
    match l {
        "gb2312" | "gbk" | "gb18030" | "x-gbk" | "cp936" | "euc-cn" | "x-euc-cn" | "hz-gb-2312"
        | "gb_2312-80" | "chinese" | "csgb2312" | "ms936" | "windows-936" => Some(GB18030),
        "" | "us-ascii" | "ascii" | "utf8" | "unicode-1-1-utf-8" => Some(UTF_8),
        other => Encoding::for_label(other.as_bytes()),
    }
}

/// Decodes bytes in a declared charset; unknown charsets fall back to UTF-8/GB18030 sniffing.
/// A declared ASCII/UTF-8 charset with invalid UTF-8 bytes is also sniffed (clients lie).
pub(crate) fn decode_charset(bytes: &[u8], label: Option<&str>) -> String {
    match label.and_then(charset) {
        Some(enc) if enc == UTF_8 => bytes_to_text(bytes),
        Some(enc) => enc.decode_without_bom_handling(bytes).0.into_owned(),
        None => bytes_to_text(bytes),
    }
}

/// Lenient base64 for encoded-words and RFC 2231-less headers: ignores white space and
/// missing padding.
pub(crate) fn b64_lenient(text: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let usable = clean.len() - (clean.len() % 4 == 1) as usize;
    engine.decode(&clean[..usable]).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn q_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < text.len() => match (hex_val(text[i + 1]), hex_val(text[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'='),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Percent-decoding for RFC 2231 extended values.
pub(crate) fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%'
            && i + 2 < text.len()
            && let (Some(h), Some(l)) = (hex_val(text[i + 1]), hex_val(text[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

enum Piece {
    Raw(Vec<u8>),
    Word { charset: String, bytes: Vec<u8> },
}

/// Finds one encoded-word `=?cs?e?text?=` starting at `i`; returns (charset, bytes, end).
fn encoded_word_at(s: &[u8], i: usize) -> Option<(String, Vec<u8>, usize)> {
    if !s[i..].starts_with(b"=?") {
        return None;
    }
    let cs_start = i + 2;
    let q1 = cs_start + s[cs_start..].iter().position(|&b| b == b'?')?;
    let enc = *s.get(q1 + 1)?;
    if s.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let rel_end = s[text_start..].windows(2).position(|w| w == b"?=")?;
    let text = &s[text_start..text_start + rel_end];
    let cs = String::from_utf8_lossy(&s[cs_start..q1]).to_string();
    if cs.is_empty() || cs.len() > 40 || cs.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => b64_lenient(text)?,
        b'Q' | b'q' => q_decode(text),
        _ => return None,
    };
    Some((cs, bytes, text_start + rel_end + 2))
}

/// Decodes RFC 2047 encoded-words anywhere in `s` (also inside quotes, as Foxmail and QQ
/// Mail write them). Adjacent encoded-words of one charset are joined as bytes before
/// decoding, so a multi-byte character split between two words comes out whole. Text
/// outside encoded-words is UTF-8 if valid, else GB18030.
pub(crate) fn decode_words(s: &[u8]) -> String {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut raw: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'='
            && s.get(i + 1) == Some(&b'?')
            && let Some((cs, bytes, end)) = encoded_word_at(s, i)
        {
            // White space between two encoded-words is dropped (RFC 2047 §6.2).
            let only_ws = raw.iter().all(|b| b.is_ascii_whitespace());
            let prev_is_word = matches!(pieces.last(), Some(Piece::Word { .. }));
            if !raw.is_empty() && (!only_ws || !prev_is_word) {
                pieces.push(Piece::Raw(std::mem::take(&mut raw)));
            }
            raw.clear();
            match pieces.last_mut() {
                Some(Piece::Word {
                    charset,
                    bytes: prev,
                }) if charset.eq_ignore_ascii_case(&cs) => prev.extend_from_slice(&bytes),
                _ => pieces.push(Piece::Word { charset: cs, bytes }),
            }
            i = end;
            continue;
        }
        raw.push(s[i]);
        i += 1;
    }
    if !raw.is_empty() {
        pieces.push(Piece::Raw(raw));
    }
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Raw(b) => out.push_str(&bytes_to_text(&b)),
            Piece::Word { charset, bytes } => out.push_str(&decode_charset(&bytes, Some(&charset))),
        }
    }
    out
}

/// A parsed structured header (`Content-Type` / `Content-Disposition`): the lower-cased
/// value before the first `;` and its parameters with RFC 2231 continuations joined.
#[derive(Debug, Default, Clone)]
pub(crate) struct Structured {
    pub value: String,
    params: Vec<(String, String)>,
}

impl Structured {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits on `;` outside quotes. Returns raw byte slices.
fn split_params(s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            b';' if !in_quote => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn unquote(v: &[u8]) -> Vec<u8> {
    let v = trim_ws(v);
    if v.first() == Some(&b'"') {
        let mut out = Vec::with_capacity(v.len());
        let mut escaped = false;
        for &b in &v[1..] {
            if escaped {
                out.push(b);
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                break;
            } else {
                out.push(b);
            }
        }
        out
    } else {
        v.to_vec()
    }
}

/// Parses a structured header value (raw, folded bytes).
pub(crate) fn parse_structured(raw: &[u8]) -> Structured {
    let unfolded = unfold(raw);
    let mut parts = split_params(&unfolded).into_iter();
    let value = String::from_utf8_lossy(trim_ws(parts.next().unwrap_or(b"")))
        .to_ascii_lowercase()
        .replace(char::is_whitespace, "");

    // name → segments (index, extended, bytes)
    struct Seg {
        index: u32,
        extended: bool,
        bytes: Vec<u8>,
    }
    let mut order: Vec<String> = Vec::new();
    let mut segs: Vec<(String, Seg)> = Vec::new();
    for p in parts {
        let p = trim_ws(p);
        let Some(eq) = p.iter().position(|&b| b == b'=') else {
            continue;
        };
        let key = String::from_utf8_lossy(trim_ws(&p[..eq])).to_ascii_lowercase();
        if key.is_empty() {
            continue;
        }
        // Value may start after folding white space (mail-parser #165).
        let val = &p[eq + 1..];
        let (base, index, extended) = {
            let extended = key.ends_with('*');
            let k = key.trim_end_matches('*');
            match k.rsplit_once('*') {
                Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => (
                    b.to_string(),
                    n.parse::<u32>().unwrap_or(u32::MAX),
                    extended,
                ),
                _ => (k.to_string(), 0, extended),
            }
        };
        let bytes = if extended {
            trim_ws(val).to_vec()
        } else {
            unquote(val)
        };
        let bytes = if extended && bytes.first() == Some(&b'"') {
            unquote(&bytes)
        } else {
            bytes
        };
        if !order.contains(&base) {
            order.push(base.clone());
        }
        segs.push((
            base,
            Seg {
                index,
                extended,
                bytes,
            },
        ));
    }

    let mut params = Vec::new();
    for name in order {
        let mut mine: Vec<&Seg> = segs
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, s)| s)
            .collect();
        mine.sort_by_key(|s| s.index);
        mine.dedup_by_key(|s| s.index);
        let mut charset_label: Option<String> = None;
        let mut any_extended = false;
        let mut joined: Vec<u8> = Vec::new();
        for (n, s) in mine.iter().enumerate() {
            if s.extended {
                any_extended = true;
                let mut data: &[u8] = &s.bytes;
                if n == 0 {
                    // charset'language'value
                    let mut it = data.splitn(3, |&b| b == b'\'');
                    if let (Some(cs), Some(_lang), Some(rest)) = (it.next(), it.next(), it.next()) {
                        charset_label = Some(String::from_utf8_lossy(cs).to_string());
                        data = rest;
                    }
                }
                joined.extend_from_slice(&percent_decode(data));
            } else {
                joined.extend_from_slice(&s.bytes);
            }
        }
        let text = if any_extended {
            let label = charset_label.filter(|c| !c.is_empty());
            let t = decode_charset(&joined, label.as_deref());
            // Some clients put encoded-words inside RFC 2231 values; decode those too.
            if t.contains("=?") {
                decode_words(t.as_bytes())
            } else {
                t
            }
        } else {
            decode_words(&joined)
        };
        params.push((name, text));
    }
    Structured { value, params }
}

/// All `<...>` message identifiers in a header value, with their brackets.
pub(crate) fn msg_ids(raw: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(&unfold(raw)).to_string();
    let mut out = Vec::new();
    let mut rest = s.as_str();
    while let Some(a) = rest.find('<') {
        let Some(b) = rest[a..].find('>') else { break };
        let id: String = rest[a + 1..a + b]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !id.is_empty() {
            out.push(format!("<{id}>"));
        }
        rest = &rest[a + b + 1..];
    }
    if out.is_empty() {
        for tok in s.split_whitespace() {
            let t = tok.trim_matches(|c| c == '<' || c == '>' || c == ',');
            if t.contains('@') {
                out.push(format!("<{t}>"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_gbk_word() {
        // 张 = D5 C5, split between two encoded words.
        let s = b"=?GBK?B?1Q==?= =?GBK?B?xQ==?=";
        assert_eq!(decode_words(s), "张");
    }

    #[test]
    fn rfc2231_split() {
        let s =
            parse_structured(b" attachment;\r\n filename*0*=gbk''%D5;\r\n filename*1*=%C5.docx");
        assert_eq!(s.param("filename"), Some("张.docx"));
    }

    #[test]
    fn folded_after_equals() {
        let s = parse_structured(b" attachment; filename=\r\n \"a b.docx\"");
        assert_eq!(s.param("filename"), Some("a b.docx"));
    }
}
