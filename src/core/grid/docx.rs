//! `.docx` through zip + quick-xml: paragraphs and tables of `w:body` in reading order,
//! with `gridSpan`, `vMerge`, `gridBefore`/`gridAfter` resolved.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use super::pkg;
use super::{Block, Document, Format, Table, bomb, corrupt, tidy_rows, truncate};
use crate::core::{Limits, Unreadable};

const W_NS: [&str; 2] = [
    "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "http://purl.oclc.org/ooxml/wordprocessingml/main",
];
const MC_NS: &str = "http://schemas.openxmlformats.org/markup-compatibility/2006";

/// Deeper nesting than this is refused (it would only serve to exhaust the stack).
const MAX_DEPTH: usize = 400;
/// Widest table row we build (gridSpan values are attacker-controlled).
const MAX_GRID_COLS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    W,
    Mc,
    Other,
}

#[derive(Debug)]
struct Node {
    ns: Ns,
    /// The local name when it is one the walk looks at ([`KNOWN`]), else `"?"`: no
    /// allocation per element.
    name: &'static str,
    /// The `w:val` attribute (or an unprefixed `val`), read only where [`WITH_VAL`] says.
    val: Option<Box<str>>,
    children: Vec<Child>,
}

/// Every local name the walk below compares against (W and MC namespaces).
const KNOWN: &[&str] = &[
    "document", "body", "p", "r", "t", "tab", "ptab", "br", "cr", "noBreakHyphen", "txbxContent", "tbl", "tr",
    "tc", "trPr", "tcPr", "gridSpan", "vMerge", "gridBefore", "gridAfter", "sdt", "sdtContent", "customXml", "ins",
    "moveTo", "smartTag", "AlternateContent", "Choice", "Fallback",
];
/// Elements whose `val` the walk reads.
const WITH_VAL: &[&str] = &["gridSpan", "vMerge", "gridBefore", "gridAfter"];
/// Empty elements that carry something (text breaks, table properties, cells); any other
/// empty element is dropped while parsing (proofErr, bookmarks, lastRenderedPageBreak …).
const KEPT_EMPTY: &[&str] = &["tab", "ptab", "br", "cr", "noBreakHyphen", "gridSpan", "vMerge", "gridBefore", "gridAfter", "tc", "tr", "tbl"];

fn known(local: &str) -> &'static str {
    KNOWN.iter().find(|k| **k == local).copied().unwrap_or("?")
}

#[derive(Debug)]
enum Child {
    El(Node),
    Text(String),
}

impl Node {
    fn is(&self, name: &str) -> bool {
        self.ns == Ns::W && self.name == name
    }
    fn elements(&self) -> impl Iterator<Item = &Node> {
        self.children.iter().filter_map(|c| match c {
            Child::El(n) => Some(n),
            Child::Text(_) => None,
        })
    }
    fn child(&self, name: &str) -> Option<&Node> {
        self.elements().find(|n| n.is(name))
    }
    fn is_alternate_content(&self) -> bool {
        self.ns == Ns::Mc && self.name == "AlternateContent"
    }
    /// The one branch of `mc:AlternateContent` we read: the first `mc:Choice`, else the
    /// `mc:Fallback` (never both: they carry the same text).
    fn chosen_branch(&self) -> Option<&Node> {
        self.elements()
            .find(|n| n.ns == Ns::Mc && n.name == "Choice")
            .or_else(|| self.elements().find(|n| n.ns == Ns::Mc && n.name == "Fallback"))
    }
}

/// W elements whose whole subtree carries nothing we read.
fn skipped(name: &str) -> bool {
    matches!(
        name,
        "rPr" | "pPr" | "sectPr" | "tblPr" | "tblGrid" | "tblPrEx" | "del" | "delText"
            | "instrText" | "delInstrText" | "moveFrom" | "sdtPr" | "sdtEndPr"
            | "rPrChange" | "pPrChange" | "tcPrChange" | "trPrChange" | "footnoteReference"
    )
}

fn parse_xml(xml: &[u8]) -> Result<Node, Unreadable> {
    let mut reader = quick_xml::NsReader::from_reader(xml);
    let mut buf = Vec::new();
    let mut stack: Vec<Node> = vec![Node { ns: Ns::Other, name: "?", val: None, children: Vec::new() }];
    // Depth inside a skipped subtree (0 = not skipping).
    let mut skip = 0usize;
    loop {
        buf.clear();
        let (res, ev) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| corrupt(format!("document.xml: {}", truncate(&e.to_string(), 120))))?;
        let ns = match res {
            ResolveResult::Bound(n) => {
                let u: &str = n.as_ref();
                if W_NS.contains(&u) {
                    Ns::W
                } else if u == MC_NS {
                    Ns::Mc
                } else {
                    Ns::Other
                }
            }
            _ => Ns::Other,
        };
        match ev {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                if skip > 0 {
                    if !empty {
                        skip += 1;
                    }
                    continue;
                }
                let local = e.local_name();
                if ns == Ns::W && skipped(local.as_ref()) {
                    if !empty {
                        skip = 1;
                    }
                    continue;
                }
                let name = if ns == Ns::Other { "?" } else { known(local.as_ref()) };
                if empty && !(ns == Ns::W && KEPT_EMPTY.contains(&name)) {
                    continue;
                }
                let val = if ns == Ns::W && WITH_VAL.contains(&name) {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == "val")
                        .map(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap_or(a.value.clone()).as_ref().into())
                } else {
                    None
                };
                let node = Node { ns, name, val, children: Vec::new() };
                if empty {
                    if let Some(top) = stack.last_mut() {
                        top.children.push(Child::El(node));
                    }
                } else {
                    if stack.len() > MAX_DEPTH {
                        return Err(corrupt("document.xml nests too deeply"));
                    }
                    stack.push(node);
                }
            }
            Event::End(_) => {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if stack.len() <= 1 {
                    return Err(corrupt("document.xml: unbalanced end tag"));
                }
                if let Some(node) = stack.pop()
                    && let Some(top) = stack.last_mut()
                {
                    if node.is("t") {
                        // A run's text goes to its parent directly: one node less per run.
                        top.children.extend(node.children);
                    } else if !node.children.is_empty() || node.val.is_some() || (node.ns == Ns::W && KEPT_EMPTY.contains(&node.name)) {
                        top.children.push(Child::El(node));
                    }
                    // Else an element with nothing in it that the walk reads: dropped, as
                    // an empty one is.
                }
            }
            Event::Text(ref t) if skip == 0 => {
                if let Some(top) = stack.last_mut()
                    && top.is("t") {
                        top.children.push(Child::Text(t.xml10_content().into_owned()));
                    }
            }
            Event::CData(ref t) if skip == 0 => {
                if let Some(top) = stack.last_mut()
                    && top.is("t") {
                        top.children.push(Child::Text(t.as_ref().to_string()));
                    }
            }
            Event::GeneralRef(ref r) if skip == 0 => {
                if let Some(top) = stack.last_mut()
                    && top.is("t") {
                        let c = match r.resolve_char_ref() {
                            Ok(Some(c)) => Some(c),
                            _ => match r.as_ref() {
                                "amp" => Some('&'),
                                "lt" => Some('<'),
                                "gt" => Some('>'),
                                "quot" => Some('"'),
                                "apos" => Some('\''),
                                _ => None,
                            },
                        };
                        if let Some(c) = c {
                            top.children.push(Child::Text(c.to_string()));
                        }
                    }
            }
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(corrupt("document.xml is truncated (unclosed elements)"));
    }
    stack.pop().ok_or_else(|| corrupt("document.xml: empty"))
}

pub fn read_docx(data: &[u8], limits: &Limits) -> Result<Document, Unreadable> {
    let mut zip = pkg::open(data)?;
    pkg::verify_directory(&mut zip, limits)?;
    let names = pkg::names(&zip);
    let xml = pkg::read_member(&mut zip, "word/document.xml", limits.max_attachment_bytes)?
        .ok_or_else(|| corrupt("no word/document.xml in the package"))?;
    let root = parse_xml(&xml)?;
    drop(xml);
    let body = root
        .elements()
        .find(|n| n.is("document"))
        .and_then(|d| d.child("body"))
        .ok_or_else(|| corrupt("document.xml has no w:body"))?;
    let mut w = Walker { limits, cells: 0, bytes: 0, depth: 0 };
    let mut blocks = Vec::new();
    w.blocks(body, &mut blocks)?;
    let mut n = 0;
    for b in blocks.iter_mut() {
        if let Block::Table(t) = b {
            n += 1;
            t.label = format!("表格{n}");
        }
    }
    let pictures = measure_pictures(&mut zip, &names);
    Ok(Document {
        format: Format::Docx,
        blocks,
        embedded_images: pkg::count_prefix(&names, "word/media/"),
        pictures,
    })
}

/// Pixel sizes of the first pictures in `word/media/`, read from their headers only (a
/// bounded prefix of each: a JPEG's size sits before its image data, after EXIF at most
/// 64 KiB). A picture that cannot be measured is left out.
fn measure_pictures(zip: &mut pkg::Zip<'_>, names: &[String]) -> Vec<super::Picture> {
    const HEADER_BYTES: u64 = 256 * 1024;
    let mut out = Vec::new();
    for name in names.iter().filter(|n| n.starts_with("word/media/") && !n.ends_with('/')) {
        if out.len() >= super::MAX_PICTURES {
            break;
        }
        let Ok(f) = zip.by_name(name) else { continue };
        let mut head = Vec::new();
        if std::io::Read::read_to_end(&mut std::io::Read::take(f, HEADER_BYTES), &mut head).is_err() {
            continue;
        }
        let format = super::sniff(name, &head);
        if !matches!(format, Format::Jpeg | Format::Png | Format::Gif | Format::Bmp | Format::Webp | Format::Heic | Format::Tiff) {
            continue;
        }
        if let Ok(size) = imagesize::blob_size(&head)
            && size.width > 0
            && size.height > 0
        {
            let short = name.trim_start_matches("word/media/").to_owned();
            out.push(super::Picture { name: short, format, width: size.width as u32, height: size.height as u32 });
        }
    }
    out
}

struct Walker<'a> {
    limits: &'a Limits,
    /// Table cells built so far (all tables), against `max_cells`.
    cells: u64,
    /// Bytes of cell text built so far (spans and nested tables copy text), against
    /// `max_decompressed_bytes`.
    bytes: u64,
    depth: usize,
}

/// A paragraph, or a table with the tables nested in it (outermost first).
enum Item {
    Para(String),
    Table(Table, Vec<Table>),
}

struct Cell {
    text: String,
    span: usize,
    /// `Some(true)` restart, `Some(false)` continue, `None` no vertical merge.
    vmerge: Option<bool>,
}

impl Walker<'_> {
    fn enter(&mut self) -> Result<(), Unreadable> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(corrupt("document nests too deeply"));
        }
        Ok(())
    }

    /// Block-level content (body, text box, content control) in reading order; tables
    /// nested in a table come out right after that table.
    fn blocks(&mut self, node: &Node, out: &mut Vec<Block>) -> Result<(), Unreadable> {
        let mut items = Vec::new();
        self.items(node, &mut items)?;
        for item in items {
            match item {
                Item::Para(p) => out.push(Block::Paragraph(p)),
                Item::Table(t, inner) => {
                    out.push(Block::Table(t));
                    out.extend(inner.into_iter().map(Block::Table));
                }
            }
        }
        Ok(())
    }

    fn items(&mut self, node: &Node, out: &mut Vec<Item>) -> Result<(), Unreadable> {
        self.enter()?;
        for child in node.elements() {
            if child.is("p") {
                let mut text = String::new();
                let mut boxes = Vec::new();
                inline(child, &mut text, &mut boxes, 0);
                let text = text.trim();
                if !text.is_empty() {
                    out.push(Item::Para(text.to_string()));
                }
                for b in boxes {
                    self.items(b, out)?;
                }
            } else if child.is("tbl") {
                let mut inner = Vec::new();
                let t = self.table(child, &mut inner)?;
                out.push(Item::Table(t, inner));
            } else if child.is_alternate_content() {
                if let Some(b) = child.chosen_branch() {
                    self.items(b, out)?;
                }
            } else if child.ns == Ns::W
                && matches!(child.name, "sdt" | "sdtContent" | "customXml" | "ins" | "moveTo" | "smartTag")
            {
                self.items(child, out)?;
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// Rows of a table (rows and cells may sit inside `w:sdt`/`w:customXml`).
    fn rows<'n>(node: &'n Node, out: &mut Vec<&'n Node>, tag: &str, depth: usize) {
        if depth > 8 {
            return;
        }
        for c in node.elements() {
            if c.is(tag) {
                out.push(c);
            } else if c.ns == Ns::W && matches!(c.name, "sdt" | "sdtContent" | "customXml" | "ins" | "moveTo")
            {
                Self::rows(c, out, tag, depth + 1);
            } else if c.is_alternate_content()
                && let Some(b) = c.chosen_branch() {
                    Self::rows(b, out, tag, depth + 1);
                }
        }
    }

    fn table(&mut self, tbl: &Node, nested: &mut Vec<Table>) -> Result<Table, Unreadable> {
        self.enter()?;
        let mut trs = Vec::new();
        Self::rows(tbl, &mut trs, "tr", 0);
        let mut grid: Vec<Vec<String>> = Vec::with_capacity(trs.len());
        // `tidy_rows` pads every row to the widest one, so the table will hold rows × widest
        // cells however short the other rows are: that is what counts against `max_cells`.
        let mut widest = 0usize;
        for tr in trs {
            let tr_pr = tr.child("trPr");
            let grid_val = |name: &str| -> usize {
                tr_pr
                    .and_then(|p| p.child(name))
                    .and_then(|n| n.val.as_deref())
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(MAX_GRID_COLS)
            };
            let before = grid_val("gridBefore");
            let after = grid_val("gridAfter");
            let mut tcs = Vec::new();
            Self::rows(tr, &mut tcs, "tc", 0);
            let mut cells = Vec::with_capacity(tcs.len());
            for tc in tcs {
                cells.push(self.cell(tc, nested)?);
            }
            let mut row: Vec<String> = vec![String::new(); before];
            for cell in cells {
                let col = row.len();
                let text = match cell.vmerge {
                    Some(false) => grid
                        .last()
                        .and_then(|above| above.get(col))
                        .cloned()
                        .unwrap_or(cell.text),
                    _ => cell.text,
                };
                for _ in 0..cell.span {
                    if row.len() >= MAX_GRID_COLS {
                        break;
                    }
                    self.bytes = self.bytes.saturating_add(text.len() as u64);
                    if self.bytes > self.limits.max_decompressed_bytes {
                        return Err(bomb(format!(
                            "document tables expand to more than {} bytes of text",
                            self.limits.max_decompressed_bytes
                        )));
                    }
                    row.push(text.clone());
                }
            }
            for _ in 0..after {
                if row.len() >= MAX_GRID_COLS {
                    break;
                }
                row.push(String::new());
            }
            widest = widest.max(row.len());
            let padded = ((grid.len() + 1) as u64).saturating_mul(widest as u64);
            if self.cells.saturating_add(padded) > self.limits.max_cells {
                return Err(bomb(format!("document tables exceed {} cells", self.limits.max_cells)));
            }
            grid.push(row);
        }
        tidy_rows(&mut grid);
        let width = grid.first().map_or(0, Vec::len);
        self.cells = self.cells.saturating_add((grid.len() as u64).saturating_mul(width as u64));
        self.depth -= 1;
        Ok(Table { label: String::new(), is_sheet: false, rows: grid })
    }

    fn cell(&mut self, tc: &Node, nested: &mut Vec<Table>) -> Result<Cell, Unreadable> {
        let pr = tc.child("tcPr");
        let span = pr
            .and_then(|p| p.child("gridSpan"))
            .and_then(|n| n.val.as_deref())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, MAX_GRID_COLS);
        let vmerge = pr.and_then(|p| p.child("vMerge")).map(|n| {
            n.val.as_deref().map(str::trim) == Some("restart")
        });
        let mut items = Vec::new();
        self.items(tc, &mut items)?;
        let mut parts: Vec<String> = Vec::new();
        for item in items {
            match item {
                Item::Para(p) => parts.push(p),
                Item::Table(t, inner) => {
                    for row in &t.rows {
                        let mut line: Vec<&str> = Vec::new();
                        for c in row {
                            if !c.is_empty() && line.last() != Some(&c.as_str()) {
                                line.push(c);
                            }
                        }
                        if !line.is_empty() {
                            parts.push(line.join("\t"));
                        }
                    }
                    nested.push(t);
                    nested.extend(inner);
                }
            }
        }
        Ok(Cell { text: parts.join("\n").trim().to_string(), span, vmerge })
    }
}

/// Text of a paragraph's runs; text boxes met on the way are collected for block reading.
fn inline<'n>(node: &'n Node, out: &mut String, boxes: &mut Vec<&'n Node>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for c in &node.children {
        let n = match c {
            // The text of a `w:t`, which the parser hands to the element around it.
            Child::Text(s) => {
                out.push_str(s);
                continue;
            }
            Child::El(n) => n,
        };
        if n.ns == Ns::W {
            match n.name {
                "tab" | "ptab" => out.push('\t'),
                "br" | "cr" => out.push('\n'),
                "noBreakHyphen" => out.push('-'),
                "txbxContent" => boxes.push(n),
                // A nested paragraph can only come from a text box we already collect.
                "p" | "tbl" => {}
                _ => inline(n, out, boxes, depth + 1),
            }
        } else if n.is_alternate_content() {
            if let Some(b) = n.chosen_branch() {
                inline(b, out, boxes, depth + 1);
            }
        } else {
            inline(n, out, boxes, depth + 1);
        }
    }
}
