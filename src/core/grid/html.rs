//! HTML as Word embeds it (`w:altChunk` parts, MHT bodies) when LibreOffice is not there to
//! convert it: paragraphs and tables (`colspan`/`rowspan` resolved like merged cells), the
//! text a browser shows. A small tolerant scanner, not a full HTML parser: tags are not
//! required to balance, comments, scripts, styles and the head are left out.

use super::{Block, Table, bomb, tidy_rows};
use crate::core::text;
use crate::core::{Limits, Unreadable};

/// Widest row and longest span built (the attributes come from outside).
const MAX_COLS: usize = 1000;
const MAX_SPAN: usize = 1000;

/// Text of an HTML or text part: UTF-8 (with or without BOM), else GB18030 (what a Chinese
/// Windows writes as `charset=gb2312`).
pub fn decode(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) => s.trim_start_matches('\u{feff}').to_owned(),
        Err(_) => encoding_rs::GB18030.decode(data).0.into_owned(),
    }
}

/// The HTML body of an MHT (MIME HTML) file.
pub fn mht_html(data: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse(data)?;
    msg.body_html(0).map(|h| h.into_owned())
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "ensp" | "emsp" | "thinsp" => ' ',
        "middot" => '·',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "ldquo" => '“',
        "rdquo" => '”',
        "lsquo" => '‘',
        "rsquo" => '’',
        "times" => '×',
        "radic" => '√',
        _ => return None,
    })
}

/// Decodes character references and collapses white space as a browser does.
fn push_text(out: &mut String, raw: &str) {
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if c == '&'
            && let Some(end) = rest[1..].find(';').filter(|&e| e <= 10)
            && let Some(ch) = entity(&rest[1..1 + end])
        {
            out.push(ch);
            rest = &rest[end + 2..];
            continue;
        }
        if c.is_ascii_whitespace() {
            if !out.ends_with([' ', '\n']) && !out.is_empty() {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
}

struct Cell {
    text: String,
    colspan: usize,
    rowspan: usize,
}

#[derive(Default)]
struct TableBuild {
    rows: Vec<Vec<Cell>>,
}

fn attr_num(tag: &str, name: &str) -> usize {
    let lower = tag.to_ascii_lowercase();
    let Some(i) = lower.find(&format!("{name}=")) else { return 1 };
    let v: String = lower[i + name.len() + 1..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    v.parse::<usize>().unwrap_or(1).clamp(1, MAX_SPAN)
}

/// Paragraphs and tables of an HTML document, in reading order.
pub fn read_html(html: &str, limits: &Limits) -> Result<Vec<Block>, Unreadable> {
    let mut blocks = Vec::new();
    let mut para = String::new();
    let mut tables: Vec<TableBuild> = Vec::new();
    let mut cell: Option<String> = None;
    let mut skip_until: Option<&'static str> = None;
    let mut cells: u64 = 0;
    let mut rest = html;
    let flush_para = |para: &mut String, blocks: &mut Vec<Block>| {
        for line in para.split('\n') {
            let line = text::normalize(line);
            if !line.is_empty() {
                blocks.push(Block::Paragraph(line));
            }
        }
        para.clear();
    };
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            let target = cell.as_mut().unwrap_or(&mut para);
            if skip_until.is_none() {
                push_text(target, rest);
            }
            break;
        };
        if skip_until.is_none() {
            let target = cell.as_mut().unwrap_or(&mut para);
            push_text(target, &rest[..lt]);
        }
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(until) = skip_until {
            if closing && name == until {
                skip_until = None;
            }
            continue;
        }
        match (name.as_str(), closing) {
            ("script", false) => skip_until = Some("script"),
            ("style", false) => skip_until = Some("style"),
            ("head", false) => skip_until = Some("head"),
            ("title", false) => skip_until = Some("title"),
            ("table", false) => {
                flush_para(&mut para, &mut blocks);
                if tables.len() < 50 {
                    tables.push(TableBuild::default());
                }
            }
            ("tr", false) => {
                if let Some(t) = tables.last_mut() {
                    t.rows.push(Vec::new());
                }
            }
            ("td" | "th", false) => {
                close_cell(&mut tables, &mut cell);
                cell = Some(String::new());
                if let Some(t) = tables.last_mut() {
                    if t.rows.is_empty() {
                        t.rows.push(Vec::new());
                    }
                    if let Some(r) = t.rows.last_mut()
                        && r.len() < MAX_COLS
                    {
                        cells += 1;
                        if cells > limits.max_cells {
                            return Err(bomb(format!("HTML tables exceed {} cells", limits.max_cells)));
                        }
                        r.push(Cell { text: String::new(), colspan: attr_num(tag, "colspan"), rowspan: attr_num(tag, "rowspan") });
                    }
                }
            }
            ("td" | "th", true) => close_cell(&mut tables, &mut cell),
            ("table", true) => {
                close_cell(&mut tables, &mut cell);
                if let Some(t) = tables.pop() {
                    let table = layout(t, limits)?;
                    if let Some(outer) = tables.last_mut().and_then(|o| o.rows.last_mut()).and_then(|r| r.last_mut()) {
                        // A nested table's text stays in the outer cell.
                        for row in &table.rows {
                            outer.text.push_str(&row.join("\t"));
                            outer.text.push('\n');
                        }
                    }
                    blocks.push(Block::Table(table));
                }
            }
            ("br", _) | ("p" | "div" | "li" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "tr", _) => {
                let target = cell.as_mut().unwrap_or(&mut para);
                target.push('\n');
            }
            _ => {}
        }
    }
    close_cell(&mut tables, &mut cell);
    while let Some(t) = tables.pop() {
        blocks.push(Block::Table(layout(t, limits)?));
    }
    flush_para(&mut para, &mut blocks);
    Ok(blocks)
}

/// The text gathered for the open cell goes into the cell.
fn close_cell(tables: &mut [TableBuild], cell: &mut Option<String>) {
    if let Some(text) = cell.take()
        && let Some(c) = tables.last_mut().and_then(|t| t.rows.last_mut()).and_then(|r| r.last_mut())
    {
        c.text.push_str(&text);
    }
}

/// Rows of cells with spans → a grid where every covered cell repeats the value.
fn layout(t: TableBuild, limits: &Limits) -> Result<Table, Unreadable> {
    let mut grid: Vec<Vec<Option<String>>> = Vec::new();
    let mut bytes: u64 = 0;
    for (r, row) in t.rows.iter().enumerate() {
        if grid.len() <= r {
            grid.push(Vec::new());
        }
        let mut col = 0;
        for cell in row {
            while grid[r].get(col).is_some_and(Option::is_some) {
                col += 1;
            }
            let text = text::normalize(&cell.text);
            for dr in 0..cell.rowspan {
                let rr = r + dr;
                if rr >= t.rows.len() {
                    break;
                }
                while grid.len() <= rr {
                    grid.push(Vec::new());
                }
                for dc in 0..cell.colspan {
                    let cc = col + dc;
                    if cc >= MAX_COLS {
                        break;
                    }
                    if grid[rr].len() <= cc {
                        grid[rr].resize(cc + 1, None);
                    }
                    bytes = bytes.saturating_add(text.len() as u64 + 1);
                    if bytes > limits.max_decompressed_bytes || (grid.len() as u64).saturating_mul(grid[rr].len() as u64) > limits.max_cells {
                        return Err(bomb("HTML table spans expand beyond the limits"));
                    }
                    grid[rr][cc] = Some(text.clone());
                }
            }
            col += cell.colspan;
        }
    }
    let mut rows: Vec<Vec<String>> = grid.into_iter().map(|r| r.into_iter().map(Option::unwrap_or_default).collect()).collect();
    tidy_rows(&mut rows);
    Ok(Table { label: String::new(), is_sheet: false, rows })
}
