//! Text as applicants type it: full-width digits and punctuation, spaces inside labels,
//! numbers with units (`8人`, `120㎡`, `15万元`), dates in half a dozen shapes.

use chrono::NaiveDate;
use serde::Serialize;

/// Map full-width ASCII (`０-９`, `（`, `：`, …) to half-width and the ideographic space to a
/// space. Chinese punctuation without an ASCII twin (`，`, `。`, `、`) is kept.
pub fn halfwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            c if is_space(c) => ' ',
            _ => c,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Layout inside values: the one place where line breaks, tabs, odd spaces, invisible
// characters and Office's `_xHHHH_` escapes are dealt with. The readers call [`normalize`]
// on every paragraph and cell; the form parsers keep a value with [`clean_value`] (one
// line) or [`clean_text`] (free text); comparisons use [`squash`].
// ---------------------------------------------------------------------------------------

/// A space a person sees as a space: the ASCII one, no-break spaces, the ideographic space
/// and the other Unicode spaces (not line breaks or tabs).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{3000}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{1680}')
}

/// Characters that print as nothing: zero-width spaces and joiners, direction marks and
/// bidi overrides/isolates (they disguise text), the byte-order mark, soft hyphens. The one
/// list every reader, reply and file name uses.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{ad}' | '\u{180e}' | '\u{061c}'
    )
}

/// Line breaks of any kind: LF, CR, vertical tab (Excel's Alt+Enter in some writers), form
/// feed, NEL and the Unicode line and paragraph separators.
fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `_x000D_`, `_x000a_`, `_x0009_`: Office's escape of a control character in a string. A
/// writer that escapes twice (or a program that copies the stored form) leaves them in the
/// text; they stand for a line break or a tab, never for the letters.
fn layout_escape(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.len() < 7 || b[0] != b'_' || !(b[1] == b'x' || b[1] == b'X') || b[6] != b'_' {
        return None;
    }
    let hex = std::str::from_utf8(&b[2..6]).ok()?;
    let code = u32::from_str_radix(hex, 16).ok()?;
    match code {
        0x0a | 0x0d => Some(('\n', 7)),
        0x09 => Some(('\t', 7)),
        0x00..=0x1f => Some(('\u{200b}', 7)),
        _ => None,
    }
}

/// What every reader does to the text it extracts (a paragraph, a cell): layout escapes
/// decoded, every line break made `\n` (CR LF counting once), invisible characters and
/// control characters dropped, odd spaces made ASCII spaces, each line's ends trimmed, blank
/// lines dropped. Words, tabs inside a line and full-width characters stay as written.
pub fn normalize(s: &str) -> String {
    let plain = |c: char| !c.is_control() && !is_invisible(c) && !is_line_break(c) && (c == ' ' || !is_space(c));
    if s.chars().all(plain) && !s.contains("_x") && !s.contains("_X") && s.trim_matches([' ', '\u{3000}']) == s {
        return s.to_owned();
    }
    let mut chars = String::with_capacity(s.len());
    let mut rest = s;
    let mut prev_cr = false;
    while let Some(c) = rest.chars().next() {
        let (c, len) = if c == '_' { layout_escape(rest).unwrap_or((c, 1)) } else { (c, c.len_utf8()) };
        rest = &rest[len..];
        if c == '\n' && prev_cr {
            prev_cr = false;
            continue;
        }
        prev_cr = c == '\r';
        if is_line_break(c) {
            chars.push('\n');
        } else if c == '\t' {
            chars.push('\t');
        } else if is_space(c) {
            chars.push(if c == '\u{3000}' { c } else { ' ' });
        } else if !c.is_control() && !is_invisible(c) {
            chars.push(c);
        }
    }
    let lines: Vec<&str> = chars.split('\n').map(|l| l.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\u{3000}')).filter(|l| !l.is_empty()).collect();
    lines.join("\n")
}

/// CJK ideographs, kana, hangul and full-width punctuation: scripts written without spaces,
/// where a line break inside a value is only where the cell wrapped.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2e80..=0x2fff | 0x3001..=0x303f | 0x3040..=0x30ff | 0x3100..=0x31ff | 0x3400..=0x4dbf
        | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff | 0xfe30..=0xfe4f | 0xff00..=0xffef
        | 0x20000..=0x3134f)
}

/// A Chinese personal name as written: the spaces that pad a two-character name to the width
/// of three (`王  刚`, `李　四`) or spread one out (`王 小 刚`) are layout, not part of it.
/// Anything else (a Latin name, two names `张三 李四`, a note) is left as it is.
pub fn person_name(s: &str) -> String {
    let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    let ideograph = |c: &char| matches!(*c as u32, 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0x20000..=0x3134f) || matches!(c, '·' | '•');
    if (2..=3).contains(&chars.len()) && chars.iter().all(ideograph) && chars.len() < s.chars().count() {
        chars.into_iter().collect()
    } else {
        s.to_owned()
    }
}

/// A one-line value as a person reads it off the printed form: [`normalize`]d, then the
/// layout inside it taken out — a line break or tab between two CJK characters is where the
/// cell wrapped (nothing), elsewhere it is a space; runs of spaces become one. `甲公司张三\n
/// 劳模和工匠人才创新工作室` is `甲公司张三劳模和工匠人才创新工作室`; `甲公司 班长` stays.
pub fn clean_value(s: &str) -> String {
    let n = normalize(s);
    let chars: Vec<char> = n.chars().collect();
    let mut out = String::with_capacity(n.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' || c == '\t' || is_space(c) {
            let start = i;
            let mut layout = false;
            while i < chars.len() && (chars[i] == '\n' || chars[i] == '\t' || is_space(chars[i])) {
                layout |= chars[i] == '\n' || chars[i] == '\t';
                i += 1;
            }
            let before = out.chars().last();
            let after = chars.get(i).copied();
            let (Some(b), Some(a)) = (before, after) else { continue };
            if layout && (is_cjk(b) || is_cjk(a)) {
                continue;
            }
            // An ideographic space between words is kept as the writer's own spacing.
            if !layout && chars[start..i].iter().all(|&c| c == '\u{3000}') {
                out.push('\u{3000}');
            } else {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Free text (简介, opinions, materials) as a person reads it: [`normalize`]d paragraphs,
/// each line [`clean_value`]d, kept on their own lines.
pub fn clean_text(s: &str) -> String {
    normalize(s).lines().map(clean_value).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

/// The comparison form of a label or name: half-width, without any white space, layout
/// escapes or invisible characters, so `创新工\n作室基\n本情况` == `创新工作室基本情况` and
/// `张三_x000D_` == `张三`.
pub fn squash(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Called for every cell of every form, over and over: the characters kept as they are
    // (CJK, letters, digits — nearly all of them) are skipped byte-wise and copied as whole
    // runs; only the ones squashing changes go through the slow path.
    let b = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            // Printable ASCII but `_` (maybe a layout escape).
            0x21..=0x5e | 0x60..=0x7e => {
                i += 1;
                continue;
            }
            // U+4000..=U+9FFF (CJK ideographs, hexagrams): three bytes, kept.
            0xe4..=0xe9 => {
                i += 3;
                continue;
            }
            // U+3001..=U+3FFF (CJK punctuation such as `。`, kana, CJK extension A): three
            // bytes, kept; U+3000, the ideographic space (E3 80 80), is squashed.
            0xe3 if b.get(i + 1..i + 3) != Some(&[0x80, 0x80]) => {
                i += 3;
                continue;
            }
            _ => {}
        }
        let rest = &s[i..];
        let Some(c) = rest.chars().next() else { break };
        if kept_as_is(c) {
            i += c.len_utf8();
            continue;
        }
        out.push_str(&s[run..i]);
        let (c, len) = if c == '_' { layout_escape(rest).unwrap_or((c, 1)) } else { (c, c.len_utf8()) };
        i += len;
        run = i;
        let c = match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            c => c,
        };
        if !c.is_whitespace() && !is_invisible(c) && !c.is_control() {
            out.push(c);
        }
    }
    out.push_str(&s[run..]);
    out
}

/// A character [`squash`] keeps unchanged: printable ASCII but `_` (maybe a layout escape),
/// CJK punctuation, kana and ideographs (U+3001..U+9FFF), and any other character that is not white space, invisible, a
/// control character or full-width ASCII. Cheap range tests first.
#[inline]
fn kept_as_is(c: char) -> bool {
    match c as u32 {
        0x21..=0x7e => c != '_',
        0x3001..=0x3fff | 0x4000..=0x9fff => true,
        0..=0x20 | 0x7f..=0x9f | 0xff01..=0xff5e => false,
        _ => !c.is_whitespace() && !is_invisible(c),
    }
}

/// Check-box glyphs as Word, WPS and the symbol fonts draw them: (glyph, ticked).
const BOXES: &[(char, bool)] = &[
    ('☐', false), ('□', false), ('○', false), ('◯', false), ('〇', false),
    ('☑', true), ('☒', true), ('■', true), ('√', true), ('✓', true), ('✔', true), ('●', true), ('◉', true), ('⊙', true), ('▣', true),
];

/// `☑是 □否` → `是`: when a value is a row of check boxes, the options whose box is ticked
/// (joined with `、`). `None` when the value is not a row of check boxes (fewer than two
/// boxes, or none ticked, or text before the first box).
pub fn ticked_options(s: &str) -> Option<String> {
    let t = squash(s);
    let boxes = t.chars().filter(|c| BOXES.iter().any(|(b, _)| b == c)).count();
    if boxes < 2 || !t.starts_with(|c: char| BOXES.iter().any(|(b, _)| *b == c)) {
        return None;
    }
    let mut ticked = Vec::new();
    let mut current: Option<(bool, String)> = None;
    for c in t.chars() {
        if let Some((_, on)) = BOXES.iter().find(|(b, _)| *b == c) {
            if let Some((true, text)) = current.take() {
                ticked.push(text);
            }
            current = Some((*on, String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push(c);
        }
    }
    if let Some((true, text)) = current {
        ticked.push(text);
    }
    let ticked: Vec<String> = ticked.into_iter().map(|t| t.trim_matches([',', '，', '、', ';', '；']).to_owned()).filter(|t| !t.is_empty()).collect();
    (!ticked.is_empty()).then(|| ticked.join("、"))
}

/// The glyph a symbol-font character draws (`w:sym w:font="Wingdings" w:char="F0FE"`), for
/// the check boxes and ticks forms use; `None` for anything else.
pub fn symbol_glyph(font: &str, code: u32) -> Option<char> {
    let code = if (0xf000..=0xf0ff).contains(&code) { code - 0xf000 } else { code };
    let font = font.to_ascii_lowercase();
    let c = if font.starts_with("wingdings 2") {
        match code {
            0x52 | 0x51 => '☑',
            0x53 | 0x54 | 0x4f => '☒',
            0xa3 | 0x2a | 0xa2 => '☐',
            0x50 => '✓',
            _ => return None,
        }
    } else if font.starts_with("wingdings") {
        match code {
            0xfe => '☑',
            0xfd | 0x78 => '☒',
            0xa8 | 0x6f | 0x71 => '☐',
            0xfc => '✓',
            0xfb => '✗',
            0xa1 => '○',
            0xa4 => '◉',
            _ => return None,
        }
    } else {
        let c = char::from_u32(code)?;
        if c.is_control() { return None } else { c }
    };
    Some(c)
}

/// Characters as the notice counts them (字数): every non-whitespace character, a CJK
/// character counting one.
pub fn count_chars(s: &str) -> usize {
    s.chars().filter(|&c| counts(c)).count()
}

/// No character [`count_chars`] would count (stops at the first one).
pub fn is_blank(s: &str) -> bool {
    !s.chars().any(counts)
}

fn counts(c: char) -> bool {
    !c.is_whitespace() && !is_invisible(c)
}

/// Is this cell text "filled"? Any value counts, including `无`, `0`, `否` (RULES.md); only
/// white space, underscores and the printed placeholders of the blank form do not.
pub fn is_filled(s: &str) -> bool {
    let t = squash(s);
    !t.is_empty() && !t.chars().all(|c| matches!(c, '_' | '-' | '/' | '—' | '…' | '.'))
}

/// A number as typed in a form cell: `8`, `８`, `8人`, `约300`, `1,200`, `12.5万元`, `无`,
/// `零`, `八`, `十二`. Returns `None` when the text holds no number.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = squash(s);
    if t.is_empty() {
        return None;
    }
    if matches!(t.as_str(), "无" | "没有" | "暂无" | "零" | "否") {
        return Some(0.0);
    }
    // First run of digits (with one decimal point and thousands separators).
    let mut num = String::new();
    let mut started = false;
    let mut negative = false;
    let chars: Vec<char> = t.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_digit() {
            started = true;
            num.push(c);
        } else if started && c == '.' && !num.contains('.') && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()) {
            num.push(c);
        } else if started && c == ',' && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()) {
            continue;
        } else if !started && c == '-' && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()) {
            negative = true;
        } else if started {
            break;
        }
    }
    if !num.is_empty() {
        let v: f64 = num.parse().ok()?;
        return Some(if negative { -v } else { v });
    }
    chinese_numeral(&t)
}

/// Small Chinese numerals (`八`, `十二`, `二十五`, `一百二十`), enough for counts in a form.
fn chinese_numeral(t: &str) -> Option<f64> {
    let digit = |c: char| "零一二三四五六七八九".chars().position(|d| d == c).or(if c == '两' { Some(2) } else { None });
    let mut total = 0u32;
    let mut current = 0u32;
    let mut any = false;
    for c in t.chars() {
        if let Some(d) = digit(c) {
            current = d as u32;
            any = true;
        } else if c == '十' {
            total += if current == 0 { 10 } else { current * 10 };
            current = 0;
            any = true;
        } else if c == '百' {
            total += if current == 0 { 100 } else { current * 100 };
            current = 0;
            any = true;
        } else if any {
            break;
        }
    }
    any.then(|| (total + current) as f64)
}

/// A date as written, with the precision the writer gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PartialDate {
    pub year: i32,
    pub month: Option<u32>,
    pub day: Option<u32>,
}

impl PartialDate {
    /// The earliest day the writer could have meant (benefit of the doubt for `2018`).
    pub fn earliest(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month.unwrap_or(1), self.day.unwrap_or(1))
            .unwrap_or(NaiveDate::MIN)
    }

    /// `YYYY-MM-DD` with unknown parts as `01`.
    pub fn iso(&self) -> String {
        self.earliest().format("%Y-%m-%d").to_string()
    }

    /// Equal at the precision both sides have: `2016.5` matches `2016-05-01`.
    pub fn agrees_with(&self, other: &PartialDate) -> bool {
        self.year == other.year
            && (self.month.is_none() || other.month.is_none() || self.month == other.month)
            && (self.day.is_none() || other.day.is_none() || self.day == other.day)
    }
}

impl std::fmt::Display for PartialDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.month, self.day) {
            (Some(m), Some(d)) => write!(f, "{}年{}月{}日", self.year, m, d),
            (Some(m), None) => write!(f, "{}年{}月", self.year, m),
            _ => write!(f, "{}年", self.year),
        }
    }
}

/// Dates as typed: `2016.5`, `2016.05.01`, `2016年5月`, `2016年5月1日`, `2016-05-01`,
/// `2016/5/1`, `201605`, `20160501`, and Excel serial numbers (`42491`) from cells whose
/// date format was lost.
pub fn parse_date(s: &str) -> Option<PartialDate> {
    let t = arabic_date_numerals(&squash(s));
    if t.is_empty() {
        return None;
    }
    if let Ok(serial) = t.parse::<f64>()
        && (20000.0..=60000.0).contains(&serial)
        && !t.contains('.')
    {
        let base = NaiveDate::from_ymd_opt(1899, 12, 30)?;
        let d = base.checked_add_days(chrono::Days::new(serial as u64))?;
        return Some(full(d));
    }
    let groups: Vec<&str> = t.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let make = |y: &str, m: Option<&str>, d: Option<&str>| -> Option<PartialDate> {
        let year: i32 = y.parse().ok()?;
        let month = match m {
            Some(m) => Some(m.parse::<u32>().ok().filter(|m| (1..=12).contains(m))?),
            None => None,
        };
        let day = match d {
            Some(d) => Some(d.parse::<u32>().ok().filter(|d| (1..=31).contains(d))?),
            None => None,
        };
        if !(1900..=2100).contains(&year) {
            return None;
        }
        if let (Some(m), Some(d)) = (month, day) {
            NaiveDate::from_ymd_opt(year, m, d)?;
        }
        Some(PartialDate { year, month, day })
    };
    match groups.as_slice() {
        [y] if y.len() == 8 => make(&y[..4], Some(&y[4..6]), Some(&y[6..])),
        [y] if y.len() == 6 => make(&y[..4], Some(&y[4..]), None),
        [y] if y.len() == 4 => make(y, None, None),
        [y, m] if y.len() == 4 => make(y, Some(m), None),
        [y, m, d, ..] if y.len() == 4 => make(y, Some(m), Some(d)),
        _ => None,
    }
}

/// `二〇一七年三月十二日` → `2017年3月12日`: a year written digit by digit (〇/零 … 九), a
/// month or day as a Chinese number (`十二`, `二十三`). Text without Chinese numerals is
/// returned as it is.
fn arabic_date_numerals(t: &str) -> String {
    let digit = |c: char| "〇零一二三四五六七八九".chars().position(|d| d == c).map(|p| if p == 0 { 0 } else { p as u32 - 1 });
    if !t.chars().any(|c| digit(c).is_some() || c == '十') {
        return t.to_owned();
    }
    let mut out = String::with_capacity(t.len());
    let chars: Vec<char> = t.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if digit(chars[i]).is_none() && chars[i] != '十' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (digit(chars[i]).is_some() || chars[i] == '十') {
            i += 1;
        }
        let run = &chars[start..i];
        let value = if run.contains(&'十') {
            // 十 = 10, 十二 = 12, 二十 = 20, 二十三 = 23.
            let pos = run.iter().position(|&c| c == '十').unwrap_or(0);
            let tens = if pos == 0 { Some(1) } else if pos == 1 { digit(run[0]) } else { None };
            let ones = match run.len() - pos - 1 {
                0 => Some(0),
                1 => digit(run[pos + 1]),
                _ => None,
            };
            tens.zip(ones).map(|(t, o)| (t * 10 + o).to_string())
        } else {
            run.iter().map(|&c| digit(c).map(|d| char::from_digit(d, 10).unwrap_or('0'))).collect::<Option<String>>()
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.extend(run),
        }
    }
    out
}

fn full(d: NaiveDate) -> PartialDate {
    use chrono::Datelike;
    PartialDate { year: d.year(), month: Some(d.month()), day: Some(d.day()) }
}

/// Format a number the way a person writes it: `8`, `12.5`.
pub fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_names_lose_their_padding_only() {
        assert_eq!(person_name("王  刚"), "王刚");
        assert_eq!(person_name("李\u{3000}四"), "李四");
        assert_eq!(person_name("王 小 刚"), "王小刚");
        assert_eq!(person_name("张三 李四"), "张三 李四");
        assert_eq!(person_name("John Smith"), "John Smith");
        assert_eq!(person_name("王刚（已退休）"), "王刚（已退休）");
        assert_eq!(person_name("王刚"), "王刚");
    }

    #[test]
    fn squash_removes_breaks_inside_labels() {
        assert_eq!(squash("创新工\n作室基\n本情况"), "创新工作室基本情况");
        assert_eq!(squash("工作场地（所）面积"), "工作场地(所)面积");
        assert_eq!(squash(" 姓\u{3000}名 "), "姓名");
    }

    #[test]
    fn numbers_as_typed() {
        for (s, v) in [("8", 8.0), ("８人", 8.0), ("约300", 300.0), ("1,200", 1200.0), ("12.5万元", 12.5),
            ("无", 0.0), ("八", 8.0), ("十二", 12.0), ("二十五", 25.0), ("一百二十", 120.0), ("-3", -3.0), ("120㎡", 120.0)] {
            assert_eq!(parse_number(s), Some(v), "{s}");
        }
        assert_eq!(parse_number("若干"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn dates_as_typed() {
        let ym = PartialDate { year: 2016, month: Some(5), day: None };
        let ymd = PartialDate { year: 2016, month: Some(5), day: Some(1) };
        for s in ["2016.5", "2016年5月", "2016-05", "201605", "2016/05"] {
            assert_eq!(parse_date(s), Some(ym), "{s}");
        }
        for s in ["2016-05-01", "2016年5月1日", "2016.05.01", "2016/5/1", "20160501", "42491"] {
            assert_eq!(parse_date(s), Some(ymd), "{s}");
        }
        assert_eq!(parse_date("2016年"), Some(PartialDate { year: 2016, month: None, day: None }));
        // Chinese numerals, as some people write dates on official forms.
        assert_eq!(parse_date("二〇一六年五月"), Some(ym));
        assert_eq!(parse_date("二零一六年五月一日"), Some(ymd));
        assert_eq!(parse_date("二〇一七年十二月二十三日"), Some(PartialDate { year: 2017, month: Some(12), day: Some(23) }));
        assert_eq!(parse_date("二〇一七年十月"), Some(PartialDate { year: 2017, month: Some(10), day: None }));
        assert_eq!(parse_date("二〇一七年十三月"), None);
        assert_eq!(parse_date("2016.13"), None);
        assert_eq!(parse_date("去年"), None);
        assert!(ym.agrees_with(&ymd));
        assert!(!ym.agrees_with(&PartialDate { year: 2016, month: Some(6), day: None }));
    }

    #[test]
    fn layout_inside_values() {
        // What every reader does.
        assert_eq!(normalize("  第一行\r\n第二行\r第三行\u{2028}第四行  "), "第一行\n第二行\n第三行\n第四行");
        assert_eq!(normalize("甲_x000D_\n乙_x000a_丙_X0009_丁"), "甲\n乙\n丙\t丁");
        assert_eq!(normalize("张\u{200b}三\u{feff}\u{ad}"), "张三");
        assert_eq!(normalize("a\u{a0}b\u{3000}c\n\n\n d "), "a b\u{3000}c\nd");
        assert_eq!(normalize("_x0041_ stays"), "_x0041_ stays");
        assert_eq!(normalize("plain"), "plain");
        // One-line values: a break between CJK characters is where the cell wrapped.
        assert_eq!(clean_value("甲公司张三劳模和\n工匠人才创新工作室"), "甲公司张三劳模和工匠人才创新工作室");
        assert_eq!(clean_value("\t甲公司\u{a0}班长 "), "甲公司 班长");
        assert_eq!(clean_value("张\u{3000}三"), "张\u{3000}三");
        assert_eq!(clean_value("Zhang\nSan"), "Zhang San");
        assert_eq!(clean_value("甲公司_x000D_\n车间主任"), "甲公司车间主任");
        assert_eq!(clean_text("第一段\n 第二\t段 "), "第一段\n第二段");
        // Comparison: all of it gone.
        assert_eq!(squash("张\u{3000}三_x000D_\n\u{200b}"), "张三");
        assert_eq!(squash("创新工\r\n作室"), "创新工作室");
    }

    /// `squash` as it was before its fast path (one character at a time): the fast path
    /// must give the same text for anything.
    fn squash_reference(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let (c, len) = if c == '_' { layout_escape(rest).unwrap_or((c, 1)) } else { (c, c.len_utf8()) };
            rest = &rest[len..];
            let c = match c {
                '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
                c => c,
            };
            if !c.is_whitespace() && !is_invisible(c) && !c.is_control() {
                out.push(c);
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn squash_fast_path_changes_nothing(s in "[a-z_x0-9AD \t\r\n\u{3000}\u{a0}\u{200b}\u{feff}\u{ff01}-\u{ff5e}\u{85}\u{2028}\u{4e00}-\u{4e10}\u{3001}-\u{3003}\u{3041}\u{30ff}\u{3fff}\u{4000}\u{9fff}\u{1f600}\u{0}-\u{1f}]{0,40}") {
            proptest::prop_assert_eq!(squash(&s), squash_reference(&s));
        }

        #[test]
        fn squash_of_any_text_is_the_reference(s in "\\PC{0,40}") {
            proptest::prop_assert_eq!(squash(&s), squash_reference(&s));
        }
    }

    #[test]
    fn check_boxes() {
        assert_eq!(ticked_options("☑是 □否").as_deref(), Some("是"));
        assert_eq!(ticked_options("☐是　☒否").as_deref(), Some("否"));
        assert_eq!(ticked_options("■本科 □大专 ■硕士").as_deref(), Some("本科、硕士"));
        assert_eq!(ticked_options("☐是 ☐否"), None, "nothing ticked: no value");
        assert_eq!(ticked_options("是"), None);
        assert_eq!(ticked_options("说明：☑是 □否"), None, "text before the boxes is not a row of boxes");
        assert_eq!(symbol_glyph("Wingdings 2", 0xf052), Some('☑'));
        assert_eq!(symbol_glyph("Wingdings 2", 0x00a3), Some('☐'));
        assert_eq!(symbol_glyph("Wingdings", 0xf0fe), Some('☑'));
        assert_eq!(symbol_glyph("Wingdings", 0xf0a8), Some('☐'));
        assert_eq!(symbol_glyph("宋体", 0x221a), Some('√'));
        assert_eq!(symbol_glyph("Symbol", 0x0001), None);
    }

    #[test]
    fn counting_characters() {
        assert_eq!(count_chars("一、基本 情况\n abc"), 9);
        assert!(is_blank(" \u{3000}\n\u{200b}\t"));
        assert!(!is_blank(" \n无"));
    }

    #[test]
    fn filled_means_any_value() {
        assert!(is_filled("无"));
        assert!(is_filled("0"));
        assert!(is_filled("否"));
        assert!(!is_filled("  \n"));
        assert!(!is_filled("____"));
    }
}
