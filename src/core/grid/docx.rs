//! `.docx` through zip + quick-xml: paragraphs and tables of `w:body` in reading order,
//! with `gridSpan`, `vMerge`, `gridBefore`/`gridAfter` resolved.
//!
//! The package is followed as Word follows it: `_rels/.rels` (then `[Content_Types].xml`)
//! names the main part, wherever it is; the main part's relationships bring in `w:altChunk`
//! bodies (an embedded .docx, HTML/MHT/RTF through LibreOffice when it is there, plain
//! HTML and text without it) and the headers and footers that carry part of the form. The
//! text read is the text Word shows: tracked deletions and moved-away text, field codes,
//! hidden (`w:vanish`) runs, ruby guides and deleted table rows are left out; insertions,
//! field results, content controls, smart tags, text boxes (one branch of
//! `mc:AlternateContent`, never both), symbol-font check boxes and legacy form fields
//! (check boxes, drop-downs) are read.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use std::collections::HashMap;

use super::pkg;
use super::{Block, Convert, Document, Format, Table, bomb, corrupt, tidy_rows, truncate};
use crate::core::text;
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

/// Every local name the walk below compares against (W and MC namespaces): `KNOWN`, and
/// `known` giving a local name's `&'static str` or `"?"` — a `match` (a switch on the
/// length, then one compare), not a scan of the list for every element.
macro_rules! known_names {
    ($($name:literal),* $(,)?) => {
        #[allow(dead_code)]
        const KNOWN: &[&str] = &[$($name),*];
        fn known(local: &str) -> &'static str {
            match local {
                $($name => $name,)*
                _ => "?",
            }
        }
    };
}
known_names!(
    "document", "body", "hdr", "ftr", "p", "r", "t", "tab", "ptab", "br", "cr", "noBreakHyphen", "txbxContent", "tbl",
    "tr", "tc", "trPr", "tcPr", "gridSpan", "vMerge", "gridBefore", "gridAfter", "sdt", "sdtContent", "customXml",
    "ins", "moveTo", "smartTag", "AlternateContent", "Choice", "Fallback", "altChunk", "sym", "fldChar", "ffData",
    "checkBox", "checked", "default", "ddList", "result", "listEntry",
);
/// Elements whose value attribute the walk reads (`w:val`; `fldCharType`, `r:id`, the
/// font and code of a symbol).
const WITH_VAL: &[&str] =
    &["gridSpan", "vMerge", "gridBefore", "gridAfter", "altChunk", "sym", "fldChar", "checked", "default", "result", "listEntry"];
/// Empty elements that carry something (text breaks, table properties, cells, symbols,
/// fields); any other empty element is dropped while parsing (proofErr, bookmarks,
/// lastRenderedPageBreak, permStart …).
const KEPT_EMPTY: &[&str] = &[
    "tab", "ptab", "br", "cr", "noBreakHyphen", "gridSpan", "vMerge", "gridBefore", "gridAfter", "tc", "tr", "tbl",
    "altChunk", "sym", "fldChar", "checked", "default", "result", "listEntry",
];
/// `Node::val` of a run formatted as hidden text and of a row deleted with track changes.
const HIDDEN_RUN: &str = "\u{0}vanish";
const DELETED_ROW: &str = "\u{0}deleted";
/// `Node::val` of a content control that shows its placeholder text (nothing filled in).
const PLACEHOLDER: &str = "\u{0}placeholder";

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
            | "rt" | "endnoteReference" | "commentReference"
    )
}

/// What quick-xml's `NsReader` does (the same `NamespaceResolver`, pushed and popped at the
/// same events, so the same namespaces and the same errors), without its cost on every
/// element of a Word body: an element whose tag has no `xmlns` in it binds nothing, so only
/// the nesting level moves (no attribute parse); and the namespace of a prefix is looked up
/// once and kept until the bindings change (Word declares some thirty on the root, and the
/// resolver scans them for every element).
struct Namespaces {
    resolver: quick_xml::name::NamespaceResolver,
    /// An `Empty` or `End` event's scope is popped before the next event (as `NsReader`).
    pending_pop: bool,
    /// Levels of the elements that declared bindings, innermost last.
    binding_levels: Vec<u16>,
    /// (prefix, namespace) looked up under the current bindings.
    cache: Vec<(Box<str>, Ns)>,
}

impl Namespaces {
    fn new() -> Self {
        Namespaces { resolver: Default::default(), pending_pop: false, binding_levels: Vec::new(), cache: Vec::new() }
    }

    /// Before reading the next event.
    fn before_event(&mut self) {
        if std::mem::take(&mut self.pending_pop) {
            self.resolver.pop();
            let level = self.resolver.level();
            if self.binding_levels.last().is_some_and(|&l| l > level) {
                self.binding_levels.retain(|&l| l <= level);
                self.cache.clear();
            }
        }
    }

    /// The namespace of a `Start`/`Empty`/`End` event's element, its scope opened or
    /// closed as `NsReader` does.
    fn element(&mut self, ev: &Event<'_>) -> Result<Ns, quick_xml::name::NamespaceError> {
        let e = match ev {
            Event::Start(e) => e,
            Event::Empty(e) => {
                self.pending_pop = true;
                e
            }
            Event::End(_) => {
                self.pending_pop = true;
                return Ok(Ns::Other);
            }
            _ => return Ok(Ns::Other),
        };
        let tag: &str = e;
        if memchr::memmem::find(tag.as_bytes(), b"xmlns").is_some() {
            self.resolver.push(e)?;
            self.binding_levels.push(self.resolver.level());
            self.cache.clear();
        } else {
            let level = self.resolver.level().checked_add(1).ok_or(quick_xml::name::NamespaceError::TooDeeplyNested(u16::MAX as usize))?;
            self.resolver.set_level(level);
        }
        let name = e.name();
        let prefix: &str = name.prefix().map_or("", |p| p.into_inner());
        if let Some(&(_, ns)) = self.cache.iter().find(|(p, _)| &**p == prefix) {
            return Ok(ns);
        }
        let ns = match self.resolver.resolve_element(name).0 {
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
        self.cache.push((prefix.into(), ns));
        Ok(ns)
    }
}

fn parse_xml(xml: &[u8]) -> Result<Node, Unreadable> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut namespaces = Namespaces::new();
    let mut stack: Vec<Node> = vec![Node { ns: Ns::Other, name: "?", val: None, children: Vec::new() }];
    // Depth inside a skipped subtree (0 = not skipping).
    let mut skip = 0usize;
    // The skipped subtree is the `w:rPr` of a run (its `w:vanish` hides the run) or the
    // `w:sdtPr` of a content control (its `w:showingPlcHdr` says the content is the grey
    // placeholder, not a value).
    let mut run_props = false;
    let mut sdt_props = false;
    let failed = |e: &dyn std::fmt::Display| corrupt(format!("document.xml: {}", truncate(&e.to_string(), 120)));
    loop {
        namespaces.before_event();
        let ev = reader.read_event().map_err(|e| failed(&e))?;
        let ns = namespaces.element(&ev).map_err(|e| failed(&quick_xml::Error::from(e)))?;
        match ev {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                if skip > 0 {
                    if skip == 1 && ns == Ns::W {
                        let flag = match e.local_name().as_ref() {
                            "vanish" if run_props => Some(HIDDEN_RUN),
                            "showingPlcHdr" if sdt_props => Some(PLACEHOLDER),
                            _ => None,
                        };
                        // The attributes are read only for the two flags (a run's other
                        // properties — fonts, sizes, colours — are many and never read).
                        if let (Some(flag), Some(top)) = (flag, stack.last_mut())
                            && on(e)
                        {
                            top.val = Some(flag.into());
                        }
                    }
                    if !empty {
                        skip += 1;
                    }
                    continue;
                }
                let local = e.local_name();
                if ns == Ns::W && skipped(local.as_ref()) {
                    let top_is = |stack: &[Node], n: &str| stack.last().is_some_and(|t| t.is(n));
                    if local.as_ref() == "del"
                        && top_is(&stack, "trPr")
                        && let Some(top) = stack.last_mut()
                    {
                        top.val = Some(DELETED_ROW.into());
                    }
                    if !empty {
                        run_props = local.as_ref() == "rPr" && top_is(&stack, "r");
                        sdt_props = local.as_ref() == "sdtPr" && top_is(&stack, "sdt");
                        skip = 1;
                    }
                    continue;
                }
                let name = if ns == Ns::Other { "?" } else { known(local.as_ref()) };
                if empty && !(ns == Ns::W && KEPT_EMPTY.contains(&name)) {
                    continue;
                }
                let val = if ns == Ns::W && WITH_VAL.contains(&name) {
                    match name {
                        "fldChar" => attr(e, "fldCharType"),
                        "altChunk" => attr(e, "id"),
                        "sym" => Some(format!("{}\u{0}{}", attr(e, "font").unwrap_or_default(), attr(e, "char").unwrap_or_default())),
                        _ => attr(e, "val"),
                    }
                    .map(String::into_boxed_str)
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

fn attr(e: &quick_xml::events::BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .map(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap_or(a.value.clone()).into_owned())
}

/// An on/off property (`<w:vanish/>`, `<w:vanish w:val="true"/>`) that is on.
fn on(e: &quick_xml::events::BytesStart<'_>) -> bool {
    attr(e, "val").is_none_or(|v| !matches!(v.trim(), "0" | "false" | "off"))
}

/// `altChunk` parts read per document, and how deep an embedded .docx may embed another.
const MAX_CHUNKS: usize = 16;
const MAX_CHUNK_DEPTH: usize = 2;
/// Header and footer parts looked at.
const MAX_HEADERS: usize = 12;

/// A .docx read on its own (the converters' output): no converter for embedded HTML.
pub fn read_docx(data: &[u8], limits: &Limits) -> Result<Document, Unreadable> {
    read_package(data, limits, &super::NoConverters, 0)
}

/// A .docx, with LibreOffice (when configured) for `altChunk` parts in HTML, MHT or RTF.
pub fn read_docx_with(data: &[u8], limits: &Limits, converters: &dyn Convert) -> Result<Document, Unreadable> {
    read_package(data, limits, converters, 0)
}

fn read_package(data: &[u8], limits: &Limits, converters: &dyn Convert, depth: usize) -> Result<Document, Unreadable> {
    let mut zip = pkg::open(data)?;
    pkg::verify_directory(&mut zip, limits)?;
    let names = pkg::names(&zip);
    let types = pkg::content_types(&mut zip, &names);
    let main = match pkg::main_part_with(&mut zip, &names, &types) {
        Some((part, kind)) if kind != Some(pkg::MainKind::Excel) => part,
        _ => pkg::member_name(&names, "word/document.xml").ok_or_else(|| corrupt("no main document part in the package"))?,
    };
    let xml = pkg::read_member(&mut zip, &main, limits.max_attachment_bytes)?
        .ok_or_else(|| corrupt(format!("no {main} in the package")))?;
    let root = parse_xml(&xml)?;
    drop(xml);
    let body = root
        .elements()
        .find(|n| n.is("document"))
        .and_then(|d| d.child("body"))
        .ok_or_else(|| corrupt(format!("{main} has no w:body")))?;
    let rels = pkg::rels_of(&mut zip, &names, &main);

    // Parts the body pulls in with w:altChunk, read first (each within its share of the
    // limits), then put where the body has them.
    let mut ids = Vec::new();
    chunk_ids(body, &mut ids, 0);
    ids.truncate(MAX_CHUNKS);
    let share = Limits {
        max_decompressed_bytes: limits.max_decompressed_bytes / (ids.len() as u64 + 1),
        max_cells: limits.max_cells / (ids.len() as u64 + 1),
        ..limits.clone()
    };
    let mut chunks: HashMap<String, Vec<Block>> = HashMap::new();
    for id in ids {
        let Some(rel) = rels.iter().find(|r| r.id == id && !r.external) else { continue };
        let Some(member) = pkg::member_name(&names, &rel.target) else { continue };
        let Some(bytes) = pkg::read_member(&mut zip, &member, limits.max_attachment_bytes)? else { continue };
        let ctype = pkg::content_type_of(&types, &member);
        match chunk_blocks(&bytes, &member, ctype, &share, converters, depth) {
            Ok(blocks) => {
                chunks.insert(id, blocks);
            }
            Err(e @ (Unreadable::ArchiveBomb { .. } | Unreadable::TooLarge { .. })) => return Err(e),
            // An embedded part that cannot be read leaves the rest of the document as it is.
            Err(_) => {}
        }
    }

    let mut w = Walker { limits, cells: 0, bytes: 0, depth: 0, chunks: &chunks };
    let mut blocks = Vec::new();
    // Headers and footers, when they carry part of the form (see `form_like`).
    let mut heads: Vec<&pkg::Rel> = rels.iter().filter(|r| !r.external && (r.is("header") || r.is("footer"))).collect();
    heads.sort_by(|a, b| (a.is("footer"), &a.target).cmp(&(b.is("footer"), &b.target)));
    let mut footer_blocks = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for rel in heads.into_iter().take(MAX_HEADERS) {
        let Some(member) = pkg::member_name(&names, &rel.target) else { continue };
        let Some(xml) = pkg::read_member(&mut zip, &member, limits.max_attachment_bytes)? else { continue };
        let Ok(root) = parse_xml(&xml) else { continue };
        let Some(part) = root.elements().find(|n| n.is("hdr") || n.is("ftr")) else { continue };
        let mut found = Vec::new();
        w.blocks(part, &mut found)?;
        for b in found {
            let key = block_text(&b);
            if form_like(&key) && !seen.contains(&key) {
                seen.push(key);
                if rel.is("footer") { footer_blocks.push(b) } else { blocks.push(b) }
            }
        }
    }
    w.blocks(body, &mut blocks)?;
    blocks.extend(footer_blocks);
    let mut n = 0;
    for b in blocks.iter_mut() {
        if let Block::Table(t) = b {
            n += 1;
            t.label = format!("表格{n}");
        }
    }
    let media = main.rsplit_once('/').map_or("media/".to_owned(), |(dir, _)| format!("{dir}/media/"));
    let pictures = measure_pictures(&mut zip, &names, &media);
    Ok(Document { format: Format::Docx, blocks, embedded_images: pkg::count_prefix(&names, &media), pictures })
}

/// Text of a block, for the header test and to read a header repeated in several parts once.
fn block_text(b: &Block) -> String {
    match b {
        Block::Paragraph(p) => p.clone(),
        Block::Table(t) => t.rows.iter().flatten().map(String::as_str).collect::<Vec<_>>().join("\n"),
    }
}

/// A header or footer is part of the form when it carries the form's title or its fields
/// (a summary table's 推荐单位/填报人 line repeated on every page); letterheads, page numbers
/// and document numbers are not.
fn form_like(text: &str) -> bool {
    let t = text::squash(text);
    ["推荐单位", "填报人", "审批表", "汇总表", "申报材料", "工作室名称", "创新工作室"].iter().any(|k| t.contains(k))
}

/// The `r:id`s of the `w:altChunk` elements of a body, in document order.
fn chunk_ids(node: &Node, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH || out.len() >= MAX_CHUNKS {
        return;
    }
    for c in node.elements() {
        if c.is("altChunk") {
            if let Some(id) = c.val.as_deref() {
                out.push(id.to_owned());
            }
        } else if !c.is("p") {
            chunk_ids(c, out, depth + 1);
        }
    }
}

/// The blocks of an `altChunk` part, by what it is: a WordprocessingML package (read as a
/// document of its own), HTML, MHT or RTF (LibreOffice when available; HTML without it is
/// read by [`super::html`], MHT through its HTML part), plain text.
fn chunk_blocks(
    bytes: &[u8],
    part: &str,
    content_type: Option<&str>,
    limits: &Limits,
    converters: &dyn Convert,
    depth: usize,
) -> Result<Vec<Block>, Unreadable> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let ext = part.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if bytes.starts_with(b"PK\x03\x04") || ct.contains("wordprocessingml") || matches!(ext.as_str(), "docx" | "docm" | "dotx") {
        if depth >= MAX_CHUNK_DEPTH {
            return Ok(Vec::new());
        }
        return Ok(read_package(bytes, limits, converters, depth + 1)?.blocks);
    }
    let mht = ct.contains("rfc822") || ct.contains("multipart") || matches!(ext.as_str(), "mht" | "mhtml");
    let rtf = ct.contains("rtf") || ext == "rtf" || bytes.starts_with(b"{\\rtf");
    let html = !mht && (ct.contains("html") || matches!(ext.as_str(), "htm" | "html" | "xhtml"));
    if (html || mht || rtf) && converters.can_office() && depth == 0 {
        let in_ext = if mht { "mht" } else if rtf { "rtf" } else { "html" };
        match converters.office(bytes, Format::Doc, Some(in_ext), limits) {
            Ok(d) => return Ok(d.blocks),
            Err(e @ (Unreadable::ArchiveBomb { .. } | Unreadable::TooLarge { .. })) => return Err(e),
            Err(_) => {}
        }
    }
    if html {
        return super::html::read_html(&super::html::decode(bytes), limits);
    }
    if mht {
        return match super::html::mht_html(bytes) {
            Some(h) => super::html::read_html(&h, limits),
            None => Ok(Vec::new()),
        };
    }
    if ct.starts_with("text/plain") || ext == "txt" {
        return Ok(super::lines_to_paragraphs(&super::html::decode(bytes)));
    }
    Ok(Vec::new())
}

/// Pixel sizes of the first pictures in `word/media/`, read from their headers only (a
/// bounded prefix of each: a JPEG's size sits before its image data, after EXIF at most
/// 64 KiB). A picture that cannot be measured is left out.
fn measure_pictures(zip: &mut pkg::Zip<'_>, names: &[String], media: &str) -> Vec<super::Picture> {
    const HEADER_BYTES: u64 = 256 * 1024;
    let mut out = Vec::new();
    for name in names.iter().filter(|n| n.starts_with(media) && !n.ends_with('/')) {
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
            let short = name.trim_start_matches(media).to_owned();
            out.push(super::Picture { name: short, format, width: size.width as u32, height: size.height as u32 });
        }
    }
    out
}

struct Walker<'a> {
    limits: &'a Limits,
    /// The blocks of each `altChunk` part, by relationship id.
    chunks: &'a HashMap<String, Vec<Block>>,
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
                let text = text::normalize(&text);
                if !text.is_empty() {
                    out.push(Item::Para(text));
                }
                for b in boxes {
                    self.items(b, out)?;
                }
            } else if child.is("tbl") {
                let mut inner = Vec::new();
                let t = self.table(child, &mut inner)?;
                out.push(Item::Table(t, inner));
            } else if child.is("altChunk") {
                let blocks = child.val.as_deref().and_then(|id| self.chunks.get(id));
                for b in blocks.into_iter().flatten() {
                    self.bytes = self.bytes.saturating_add(block_text(b).len() as u64);
                    if self.bytes > self.limits.max_decompressed_bytes {
                        return Err(bomb(format!("document text exceeds {} bytes", self.limits.max_decompressed_bytes)));
                    }
                    out.push(match b {
                        Block::Paragraph(p) => Item::Para(p.clone()),
                        Block::Table(t) => Item::Table(t.clone(), Vec::new()),
                    });
                }
            } else if child.is_alternate_content() {
                if let Some(b) = child.chosen_branch() {
                    self.items(b, out)?;
                }
            } else if child.is("sdt") && child.val.as_deref() == Some(PLACEHOLDER) {
                // 单击或点击此处输入文字: the template's prompt, not a value.
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
            // A row deleted with track changes on is not in the table Word shows.
            if tr_pr.is_some_and(|p| p.val.as_deref() == Some(DELETED_ROW)) {
                continue;
            }
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
        Ok(Cell { text: text::normalize(&parts.join("\n")), span, vmerge })
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
                // Hidden text (`w:vanish`) is not on the screen or the paper; a content
                // control showing its placeholder holds no value.
                "r" if n.val.as_deref() == Some(HIDDEN_RUN) => {}
                "sdt" if n.val.as_deref() == Some(PLACEHOLDER) => {}
                "sym" => {
                    let (font, code) = n.val.as_deref().and_then(|v| v.split_once('\u{0}')).unwrap_or(("", ""));
                    if let Some(c) = u32::from_str_radix(code.trim(), 16).ok().and_then(|c| text::symbol_glyph(font, c)) {
                        out.push(c);
                    }
                }
                "fldChar" => {
                    if n.val.as_deref() == Some("begin")
                        && let Some(ff) = n.child("ffData")
                    {
                        form_field(ff, out);
                    }
                }
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

/// What a legacy form field shows where it starts: a check box's glyph (`w:checked`, else its
/// `w:default`), a drop-down's chosen entry. A text field's value is its result, read as text.
fn form_field(ff: &Node, out: &mut String) {
    let flag = |n: &Node| n.val.as_deref().is_none_or(|v| !matches!(v.trim(), "0" | "false" | "off"));
    if let Some(cb) = ff.child("checkBox") {
        let ticked = match cb.child("checked") {
            Some(c) => flag(c),
            None => cb.child("default").is_some_and(flag),
        };
        out.push(if ticked { '☒' } else { '☐' });
    } else if let Some(dd) = ff.child("ddList") {
        let entries: Vec<&str> = dd.elements().filter(|e| e.is("listEntry")).filter_map(|e| e.val.as_deref()).collect();
        let chosen = dd
            .child("result")
            .or_else(|| dd.child("default"))
            .and_then(|r| r.val.as_deref())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if let Some(e) = entries.get(chosen) {
            out.push_str(e);
        }
    }
}
