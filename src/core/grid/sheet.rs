//! Spreadsheets through calamine, guarded: package sizes and the cell bounding box are
//! checked from the raw XML before calamine allocates anything.

use std::io::{BufReader, Cursor, Read};

use calamine::{Data, Dimensions, Ods, Range, Reader, Xls, Xlsx};
use quick_xml::events::Event;

use super::pkg::{self, Zip};
use super::{Block, Document, Format, Table, bomb, corrupt, guarded, tidy_rows, truncate};
use crate::core::{Limits, Unreadable};

fn check_cells(rows: u64, cols: u64, what: &str, limits: &Limits) -> Result<(), Unreadable> {
    let cells = rows.saturating_mul(cols);
    if cells > limits.max_cells {
        return Err(bomb(format!(
            "{what}: {rows} rows × {cols} columns = {cells} cells (limit {})",
            limits.max_cells
        )));
    }
    Ok(())
}

/// `B3` → (row 2, col 1), 0-based. `None` if not a cell reference.
fn parse_cell_ref(s: &str) -> Option<(u64, u64)> {
    let s = s.trim().trim_start_matches('$');
    let letters: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let rest = s[letters.len()..].trim_start_matches('$');
    if letters.is_empty() || letters.len() > 7 || rest.is_empty() || rest.len() > 12 {
        return None;
    }
    let mut col: u64 = 0;
    for c in letters.chars() {
        col = col * 26 + (c.to_ascii_uppercase() as u64 - 'A' as u64 + 1);
    }
    let row: u64 = rest.parse().ok()?;
    if row == 0 {
        return None;
    }
    Some((row - 1, col - 1))
}

fn attr_value(e: &quick_xml::events::BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .map(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap_or(a.value.clone()).into_owned())
}

/// Scans one XML part of a workbook: a worksheet's `<dimension ref>` and the positions of
/// all cells that hold a value, refusing anything whose bounding box from A1 exceeds
/// `max_cells`; the shared-string count; shared formulas.
/// Returns the cells calamine will lay out for the part (the bounding box from A1 of its
/// valued cells), which the caller adds up over all sheets.
fn scan_xlsx_sheet<R: Read>(part: R, name: &str, limits: &Limits) -> Result<u64, Unreadable> {
    let mut reader = quick_xml::Reader::from_reader(BufReader::new(part));
    let mut buf = Vec::new();
    let mut in_sheet_data = false;
    let mut row: u64 = 0;
    let mut next_row: u64 = 0;
    let mut col: u64 = 0;
    let mut next_col: u64 = 0;
    let mut in_cell = false;
    let (mut max_r, mut max_c): (Option<u64>, u64) = (None, 0);
    loop {
        buf.clear();
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| corrupt(format!("{name}: {}", truncate(&e.to_string(), 120))))?;
        match ev {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(ev, Event::Empty(_));
                match e.local_name().as_ref() {
                    // calamine reserves room for `uniqueCount` strings up front (2147483647
                    // asked for 96 GiB and aborted the process: found by tests/fuzz.rs).
                    "sst" => {
                        for attr in ["uniqueCount", "count"] {
                            if let Some(v) = attr_value(e, attr) {
                                let n = v.trim().parse::<u64>().unwrap_or(u64::MAX);
                                if n > limits.max_cells {
                                    return Err(bomb(format!("{name}: {attr}={} over {} strings", truncate(&v, 20), limits.max_cells)));
                                }
                            }
                        }
                    }
                    "dimension" => {
                        if let Some(r) = attr_value(e, "ref") {
                            let end = r.rsplit(':').next().unwrap_or("");
                            if let Some((r1, c1)) = parse_cell_ref(end) {
                                check_cells(r1 + 1, c1 + 1, &format!("{name} dimension {r}"), limits)?;
                            }
                        }
                    }
                    "sheetData" if !is_empty => in_sheet_data = true,
                    "row" if in_sheet_data => {
                        row = attr_value(e, "r")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .filter(|&v| v > 0)
                            .map_or(next_row, |v| v - 1);
                        next_row = row + 1;
                        next_col = 0;
                    }
                    "c" if in_sheet_data => {
                        col = attr_value(e, "r")
                            .and_then(|v| parse_cell_ref(&v))
                            .map_or(next_col, |(_, c)| c);
                        if let Some((r, _)) = attr_value(e, "r").and_then(|v| parse_cell_ref(&v)) {
                            row = r;
                        }
                        next_col = col + 1;
                        in_cell = !is_empty;
                    }
                    "v" | "is" | "f" if in_cell => {
                        max_r = Some(max_r.map_or(row, |m| m.max(row)));
                        max_c = max_c.max(col);
                        check_cells(row + 1, max_c + 1, &format!("{name} cell data"), limits)?;
                        if e.local_name().as_ref() == "f" {
                            check_shared_formula(e, name, limits)?;
                        }
                    }
                    _ => {}
                }
            }
            Event::End(ref e) => match e.local_name().as_ref() {
                "sheetData" => in_sheet_data = false,
                "c" => in_cell = false,
                _ => {}
            },
            _ => {}
        }
    }
    match max_r {
        Some(r) => {
            check_cells(r + 1, max_c + 1, name, limits)?;
            Ok((r + 1).saturating_mul(max_c + 1))
        }
        None => Ok(0),
    }
}

/// calamine lays out every sheet densely: the sheets of one workbook together stay within
/// `max_cells` too (a thousand sheets each just under the limit would not).
fn add_sheet_cells(total: &mut u64, cells: u64, limits: &Limits) -> Result<(), Unreadable> {
    *total = total.saturating_add(cells);
    if *total > limits.max_cells {
        return Err(bomb(format!("the sheets together hold more than {} cells", limits.max_cells)));
    }
    Ok(())
}

/// A shared formula's index `si` sizes a table calamine allocates (`si` = 2147483646 asked
/// for 48 GiB and aborted the process: found by tests/fuzz.rs), and its `ref` range is
/// expanded cell by cell: both must stay within `max_cells`.
fn check_shared_formula(e: &quick_xml::events::BytesStart<'_>, name: &str, limits: &Limits) -> Result<(), Unreadable> {
    if let Some(si) = attr_value(e, "si") {
        let index = si.trim().parse::<u64>().unwrap_or(u64::MAX);
        if index >= limits.max_cells {
            return Err(bomb(format!("{name}: shared formula index {} over {}", truncate(&si, 20), limits.max_cells)));
        }
    }
    if let Some(range) = attr_value(e, "ref") {
        for end in range.split(':') {
            if let Some((r, c)) = parse_cell_ref(end) {
                check_cells(r + 1, c + 1, &format!("{name} shared formula range {}", truncate(&range, 40)), limits)?;
            }
        }
    }
    Ok(())
}

fn open_verified<'a>(data: &'a [u8], limits: &Limits) -> Result<(Zip<'a>, Vec<String>), Unreadable> {
    let mut zip = pkg::open(data)?;
    pkg::verify(&mut zip, limits)?;
    let names = pkg::names(&zip);
    Ok((zip, names))
}

pub fn read_xlsx(data: &[u8], limits: &Limits) -> Result<Document, Unreadable> {
    // Each XML part is inflated once (capped, sizes proven honest), scanned for dimension
    // bombs from those bytes, and calamine reads a stored re-pack of the same bytes.
    let mut zip = pkg::open(data)?;
    let parts = pkg::verify_and_read(&mut zip, limits)?;
    let names = pkg::names(&zip);
    // Every XML part, not only xl/: the workbook's relationships may put its parts anywhere.
    let mut total = 0;
    for (name, bytes) in &parts {
        if name.ends_with(".xml") {
            let cells = scan_xlsx_sheet(bytes.as_slice(), name, limits)?;
            add_sheet_cells(&mut total, cells, limits)?;
        }
    }
    let visibility = xlsx_visibility(&mut zip, &names, &parts);
    let repacked = pkg::stored_zip(&parts)?;
    drop(parts);
    let embedded_images = pkg::count_prefix(&names, "xl/media/");
    let tables = guarded(|| {
        let mut wb = Xlsx::new(Cursor::new(repacked.as_slice())).map_err(|e| xlsx_err(&e.to_string()))?;
        let mut tables = Vec::new();
        let mut hidden_tables = Vec::new();
        for sheet in wb.sheet_names() {
            let range = match wb.worksheet_range(&sheet) {
                Ok(r) => r,
                Err(e) => return Err(xlsx_err(&format!("sheet {sheet}: {e}"))),
            };
            let merges = wb.merge_cells_by_sheet_name(&sheet).unwrap_or_default();
            let vis = visibility.get(&sheet);
            if let Some(t) = to_table(&sheet, &range, &merges, vis, limits)? {
                if vis.is_some_and(|v| v.hidden_sheet) {
                    hidden_tables.push(t);
                } else {
                    tables.push(t);
                }
            }
        }
        // A hidden sheet is not what the sender shows; Excel always keeps one sheet
        // visible, so a workbook whose only content is hidden is read as it is.
        if tables.is_empty() {
            tables = hidden_tables;
        }
        Ok(tables)
    })?;
    Ok(doc(Format::Xlsx, tables, embedded_images))
}

/// What a spreadsheet hides in one sheet: the sheet itself (xlsx `state="hidden"`/
/// `"veryHidden"`, ods `table:display="false"`, xls `hsState`), rows (xlsx `hidden` or a
/// custom height of 0, ods `table:visibility="collapse"`/`"filter"`, xls `fDyZero`) and
/// columns (xlsx `hidden` or a width of 0, ods `collapse`, xls `COLINFO fHidden`).
#[derive(Debug, Default)]
pub(crate) struct Hidden {
    hidden_sheet: bool,
    /// Inclusive 0-based row ranges.
    rows: Vec<(u64, u64)>,
    /// Inclusive 0-based column ranges.
    cols: Vec<(u64, u64)>,
}

impl Hidden {
    fn add_rows(&mut self, first: u64, last: u64) {
        if self.rows.len() < MAX_HIDDEN {
            self.rows.push((first, last.max(first)));
        }
    }
    fn add_cols(&mut self, first: u64, last: u64) {
        if self.cols.len() < MAX_HIDDEN {
            self.cols.push((first, last.max(first)));
        }
    }
}

/// `len` flags, set where one of `ranges` covers the index.
fn mask(ranges: &[(u64, u64)], len: usize) -> Vec<bool> {
    let mut m = vec![false; len];
    for &(a, b) in ranges {
        let a = usize::try_from(a).unwrap_or(usize::MAX);
        let b = usize::try_from(b).unwrap_or(usize::MAX).min(len.saturating_sub(1));
        if a < len {
            m[a..=b].iter_mut().for_each(|x| *x = true);
        }
    }
    m
}

/// Hidden rows and columns remembered per sheet: a sheet with more is not a form.
const MAX_HIDDEN: usize = 100_000;

fn is_true(v: &str) -> bool {
    matches!(v.trim(), "1" | "true")
}

/// Which sheets, rows and columns of a workbook are hidden, by sheet name: the workbook is
/// found through the package's relationships, its sheets through the workbook's.
fn xlsx_visibility(zip: &mut Zip<'_>, names: &[String], parts: &[(String, Vec<u8>)]) -> std::collections::HashMap<String, Hidden> {
    let mut out = std::collections::HashMap::new();
    let workbook = pkg::main_part(zip, names).map_or_else(|| "xl/workbook.xml".to_owned(), |(p, _)| p);
    let part = |name: &str| parts.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, b)| b.as_slice());
    let Some(wb_xml) = part(&workbook) else { return out };
    let rels = pkg::rels_of(zip, names, &workbook);
    let mut reader = quick_xml::Reader::from_reader(wb_xml);
    let mut buf = Vec::new();
    let mut sheets = Vec::new();
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(ref e)) | Ok(Event::Empty(ref e)) if e.local_name().as_ref() == "sheet" => {
                let name = attr_value(e, "name").unwrap_or_default();
                let state = attr_value(e, "state").unwrap_or_default();
                let id = attr_value(e, "id");
                if sheets.len() < 10_000 {
                    sheets.push((name, state, id));
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    // Each part scanned once, however many sheets name it.
    let mut scanned: std::collections::HashMap<String, (Vec<(u64, u64)>, Vec<(u64, u64)>)> = std::collections::HashMap::new();
    for (name, state, id) in sheets {
        let mut hidden = Hidden { hidden_sheet: matches!(state.trim(), "hidden" | "veryHidden"), ..Hidden::default() };
        let target = id.and_then(|id| rels.iter().find(|r| r.id == id).map(|r| r.target.clone()));
        if let Some(target) = target {
            let (rows, cols) = scanned.entry(target.clone()).or_insert_with(|| {
                let mut h = Hidden::default();
                if let Some(xml) = part(&target) {
                    scan_hidden(xml, &mut h);
                }
                (h.rows, h.cols)
            });
            hidden.rows = rows.clone();
            hidden.cols = cols.clone();
        }
        out.insert(name, hidden);
    }
    out
}

fn scan_hidden(xml: &[u8], hidden: &mut Hidden) {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut next_row: u64 = 0;
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(ref e)) | Ok(Event::Empty(ref e)) => match e.local_name().as_ref() {
                "row" => {
                    let row = attr_value(e, "r")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .filter(|&v| v > 0)
                        .map_or(next_row, |v| v - 1);
                    next_row = row + 1;
                    let zero_height = attr_value(e, "ht").and_then(|h| h.trim().parse::<f64>().ok()) == Some(0.0);
                    if attr_value(e, "hidden").is_some_and(|v| is_true(&v)) || zero_height {
                        hidden.add_rows(row, row);
                    }
                }
                "col" => {
                    let num = |a: &str| attr_value(e, a).and_then(|v| v.trim().parse::<u64>().ok()).filter(|&v| v > 0);
                    let zero_width = attr_value(e, "width").and_then(|w| w.trim().parse::<f64>().ok()) == Some(0.0);
                    if (attr_value(e, "hidden").is_some_and(|v| is_true(&v)) || zero_width)
                        && let Some(min) = num("min")
                    {
                        let max = num("max").unwrap_or(min).max(min);
                        hidden.add_cols(min - 1, max.min(1 << 20) - 1);
                    }
                }
                _ => {}
            },
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
}

fn xlsx_err(msg: &str) -> Unreadable {
    if msg.to_ascii_lowercase().contains("password") || msg.contains("encrypt") {
        Unreadable::Encrypted
    } else {
        corrupt(format!("xlsx: {}", truncate(msg, 200)))
    }
}

// BIFF record types (MS-XLS 2.3) that the .xls guard looks at.
const BIFF_BOF: u16 = 0x0809;
const BIFF_EOF: u16 = 0x000A;
const BIFF_BOUNDSHEET: u16 = 0x0085;
const BIFF_DIMENSIONS: u16 = 0x0200;
const BIFF_MULRK: u16 = 0x00BD;
/// Cell records calamine keeps, each starting with its row and column (u16 each): Number,
/// Label, RString, BoolErr, Rk, LabelSst, Formula.
const BIFF_CELLS: &[u16] = &[0x0203, 0x0204, 0x00D6, 0x0205, 0x027E, 0x00FD, 0x0006];

fn le_u16(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 2).map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
}

fn le_u32(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 4).map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// BIFF records (type, payload), split by their length fields as calamine splits them;
/// ends at the first truncated record.
fn biff_records(stream: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = stream;
    std::iter::from_fn(move || {
        let typ = le_u16(rest, 0)? as u16;
        let len = le_u16(rest, 2)? as usize;
        let payload = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some((typ, payload))
    })
}

/// Rows × columns calamine reserves for a `DIMENSIONS` record (its `parse_dimensions`); an
/// inverted range wraps around in its arithmetic, so it counts as the largest.
fn biff_dimensions(d: &[u8]) -> Option<(u64, u64)> {
    let (first_row, last_row, mut first_col, last_col) = match d.len() {
        10 => (le_u16(d, 0)?, le_u16(d, 2)?, le_u16(d, 4)?, le_u16(d, 6)?),
        14 | 16 => (le_u32(d, 0)?, le_u32(d, 4)?, le_u16(d, 8)?, le_u16(d, 10)?),
        _ => return None,
    };
    if first_col > 0xFF || last_col < first_col {
        first_col = 0;
    }
    let (end_row, end_col) =
        if last_row >= 1 && last_col >= 1 { (last_row - 1, last_col - 1) } else { (first_row, first_col) };
    let rows = end_row.checked_sub(first_row).map_or(u64::MAX, |n| n + 1);
    let cols = end_col.checked_sub(first_col).map_or(u64::MAX, |n| n + 1);
    Some((rows, cols))
}

/// One sheet substream, walked as calamine walks it (nested chart substreams skipped, up
/// to its own EOF): the `DIMENSIONS` it reserves for and the bounding box from A1 of the
/// cells it would lay out densely, which it returns.
fn scan_xls_sheet(sheet: &[u8], limits: &Limits) -> Result<u64, Unreadable> {
    let (mut rows, mut cols) = (0u64, 0u64);
    let mut seen_bof = false;
    let mut depth = 0usize;
    for (typ, d) in biff_records(sheet) {
        if depth > 0 {
            match typ {
                BIFF_BOF => depth += 1,
                BIFF_EOF => depth -= 1,
                _ => {}
            }
            continue;
        }
        let cell = match typ {
            BIFF_BOF if seen_bof => {
                depth += 1;
                None
            }
            BIFF_BOF => {
                seen_bof = true;
                None
            }
            BIFF_EOF => break,
            BIFF_DIMENSIONS => {
                if let Some((r, c)) = biff_dimensions(d) {
                    check_cells(r, c, "xls DIMENSIONS record", limits)?;
                }
                None
            }
            // MulRk: row, first column, …, last column.
            BIFF_MULRK => le_u16(d, 0).zip(le_u16(d, 2)).map(|(r, c)| (r, c.max(le_u16(d, d.len().saturating_sub(2)).unwrap_or(0)))),
            t if BIFF_CELLS.contains(&t) => le_u16(d, 0).zip(le_u16(d, 2)),
            _ => None,
        };
        if let Some((r, c)) = cell {
            rows = rows.max(r + 1);
            cols = cols.max(c + 1);
            check_cells(rows, cols, "xls cells", limits)?;
        }
    }
    Ok(rows.saturating_mul(cols))
}

/// The workbook stream of an .xls, checked before calamine sees it: calamine fills a dense
/// range over the bounding box of a sheet's cells (a cell at IV65536 next to one at A1 is
/// 16 million cells) and reserves whatever a `DIMENSIONS` record claims (up to 2^32 rows), and
/// a failed allocation aborts the process rather than panicking. Sheets are found as calamine
/// finds them, from the offsets in the `BOUNDSHEET` records.
fn checked_xls_stream(data: &[u8], limits: &Limits) -> Result<Vec<u8>, Unreadable> {
    let stream = std::panic::catch_unwind(|| {
        let mut cf = cfb::CompoundFile::open(Cursor::new(data)).ok()?;
        let path = ["/Workbook", "/Book"].into_iter().find(|p| cf.is_stream(p))?;
        let mut stream = Vec::new();
        cf.open_stream(path).ok()?.take(limits.max_decompressed_bytes).read_to_end(&mut stream).ok()?;
        Some(stream)
    })
    .ok()
    .flatten()
    .ok_or_else(|| corrupt("xls: no readable Workbook stream"))?;
    // Every BOUNDSHEET record is a sheet calamine reads, also when two point at the same
    // offset: each counts against the workbook's total.
    let sheets: Vec<u64> = biff_records(&stream)
        .filter(|(typ, _)| *typ == BIFF_BOUNDSHEET)
        .filter_map(|(_, d)| le_u32(d, 0))
        .collect();
    let mut total = 0;
    let mut scanned: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for pos in sheets {
        let cells = match scanned.get(&pos) {
            Some(&cells) => cells,
            None => {
                let sheet = usize::try_from(pos).ok().and_then(|p| stream.get(p..)).unwrap_or_default();
                let cells = scan_xls_sheet(sheet, limits)?;
                scanned.insert(pos, cells);
                cells
            }
        };
        add_sheet_cells(&mut total, cells, limits)?;
    }
    Ok(stream)
}

/// A compound file holding only `stream` as `Workbook`: what calamine reads instead of the
/// original, so it sees exactly the records that were checked (its own CFB reader could
/// otherwise find a different stream in a damaged file).
fn repacked_xls(stream: &[u8]) -> Result<Vec<u8>, Unreadable> {
    use std::io::Write;
    let repack = |e: std::io::Error| corrupt(format!("xls repack: {e}"));
    let mut cf = cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new())).map_err(repack)?;
    cf.create_stream("/Workbook").and_then(|mut s| s.write_all(stream)).map_err(repack)?;
    cf.flush().map_err(repack)?;
    Ok(cf.into_inner().into_inner())
}

// BIFF records for what Excel hides: a row's `fDyZero`, a column range's `fHidden`.
const BIFF_ROW: u16 = 0x0208;
const BIFF_COLINFO: u16 = 0x007D;

/// Hidden rows and columns of every sheet of an .xls, in `BOUNDSHEET` order (the order
/// calamine lists the sheets in); the sheet state comes from calamine's metadata.
fn xls_hidden(stream: &[u8]) -> Vec<Hidden> {
    let offsets: Vec<u64> = biff_records(stream).filter(|(typ, _)| *typ == BIFF_BOUNDSHEET).filter_map(|(_, d)| le_u32(d, 0)).collect();
    offsets
        .into_iter()
        .map(|pos| {
            let mut hidden = Hidden::default();
            let sheet = usize::try_from(pos).ok().and_then(|p| stream.get(p..)).unwrap_or_default();
            let (mut depth, mut seen_bof) = (0usize, false);
            for (typ, d) in biff_records(sheet) {
                match typ {
                    BIFF_BOF if seen_bof => depth += 1,
                    BIFF_BOF => seen_bof = true,
                    BIFF_EOF if depth == 0 => break,
                    BIFF_EOF => depth -= 1,
                    BIFF_ROW if depth == 0 => {
                        if let (Some(r), Some(flags)) = (le_u16(d, 0), le_u16(d, 12))
                            && flags & 0x0020 != 0
                        {
                            hidden.add_rows(r, r);
                        }
                    }
                    BIFF_COLINFO if depth == 0 => {
                        if let (Some(a), Some(b), Some(flags)) = (le_u16(d, 0), le_u16(d, 2), le_u16(d, 8))
                            && flags & 0x0001 != 0
                        {
                            hidden.add_cols(a, b.min(a + 16_384));
                        }
                    }
                    _ => {}
                }
            }
            hidden
        })
        .collect()
}

/// Sheets calamine reports as hidden (xlsx state, ods `table:display`, xls `hsState`).
fn hidden_by_state(meta: &[calamine::Sheet]) -> std::collections::HashSet<String> {
    meta.iter().filter(|m| m.visible != calamine::SheetVisible::Visible).map(|m| m.name.clone()).collect()
}

pub fn read_xls(data: &[u8], limits: &Limits) -> Result<Document, Unreadable> {
    let stream = checked_xls_stream(data, limits)?;
    let mut hidden = xls_hidden(&stream);
    let repacked = repacked_xls(&stream)?;
    drop(stream);
    let tables = guarded(|| {
        let mut wb = Xls::new(Cursor::new(repacked.as_slice())).map_err(|e| xls_err(&e))?;
        let hidden_sheets = hidden_by_state(wb.sheets_metadata());
        if hidden.len() != wb.sheets_metadata().len() {
            hidden.clear();
        }
        let mut tables = Vec::new();
        let mut hidden_tables = Vec::new();
        for (i, sheet) in wb.sheet_names().into_iter().enumerate() {
            let range = wb.worksheet_range(&sheet).map_err(|e| xls_err(&e))?;
            let merges = wb.merge_cells_by_sheet_name(&sheet).unwrap_or_default();
            if let Some(t) = to_table(&sheet, &range, &merges, hidden.get(i), limits)? {
                if hidden_sheets.contains(&sheet) { hidden_tables.push(t) } else { tables.push(t) }
            }
        }
        Ok(if tables.is_empty() { hidden_tables } else { tables })
    })?;
    Ok(doc(Format::Xls, tables, 0))
}

fn xls_err(e: &calamine::XlsError) -> Unreadable {
    match e {
        calamine::XlsError::Password => Unreadable::Encrypted,
        e => corrupt(format!("xls: {}", truncate(&e.to_string(), 200))),
    }
}

/// A span found in ODS `content.xml`: sheet name, top-left (row, col), rows, cols.
type OdsSpan = (String, u64, u64, u64, u64);

/// Attributes that make calamine keep an ODS cell (and lay out the empty cells before it):
/// a value of any type, with or without `office:value-type`, or a formula.
const ODS_VALUE_ATTRS: &[&str] =
    &["value-type", "value", "string-value", "date-value", "time-value", "boolean-value", "formula"];

/// Scans ODS `content.xml` for the bounding box of valued cells per table (guard), the
/// spaces `<text:s text:c="…"/>` expands to (calamine writes them all out, unbounded), and
/// the merged regions (`number-columns-spanned` / `number-rows-spanned`), which calamine
/// does not report for ODS.
fn scan_ods<R: Read>(part: R, limits: &Limits) -> Result<(Vec<OdsSpan>, std::collections::HashMap<String, Hidden>), Unreadable> {
    let mut hidden: std::collections::HashMap<String, Hidden> = std::collections::HashMap::new();
    let mut column: u64 = 0;
    let mut reader = quick_xml::Reader::from_reader(BufReader::new(part));
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    let mut table = String::new();
    let mut row: u64 = 0;
    let mut row_rep: u64 = 1;
    let mut col: u64 = 0;
    let mut cell: Option<(u64, bool)> = None; // (column repeats, valued)
    let (mut max_r, mut max_c): (Option<u64>, u64) = (None, 0);
    let mut depth_in_cell = 0usize;
    let cap = 1u64 << 40;
    let mut spaces: u64 = 0;
    let mut in_row = false;
    // Cells of the tables read so far (see `add_sheet_cells`).
    let mut total: u64 = 0;
    // Elements open at this point: a content.xml that ends inside one was cut short, and
    // calamine's ODS reader loops forever on some such ends (found by tests/fuzz.rs).
    let mut open: u64 = 0;
    loop {
        buf.clear();
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| corrupt(format!("content.xml: {}", truncate(&e.to_string(), 120))))?;
        match ev {
            Event::Eof if open > 0 => return Err(corrupt("content.xml ends inside an element (the file is cut short)")),
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                if !empty {
                    open += 1;
                }
                if e.name().as_ref() == "text:s" {
                    let count = attr_value(e, "c").map_or(Some(1), |v| v.trim().parse::<u64>().ok()).unwrap_or(0);
                    spaces = spaces.saturating_add(count);
                    if spaces > limits.max_decompressed_bytes {
                        return Err(bomb(format!(
                            "content.xml: <text:s> spaces expand to more than {} bytes",
                            limits.max_decompressed_bytes
                        )));
                    }
                }
                let name = e.name();
                let structural = matches!(
                    name.as_ref(),
                    "table:table" | "table:table-row" | "table:table-cell" | "table:covered-table-cell"
                );
                if cell.is_some() {
                    // calamine and this scan would disagree on rows or cells inside a cell
                    // (a fuzzed file made calamine lay out 1 GB that this scan never saw).
                    if structural {
                        return Err(corrupt("content.xml: a table, row or cell inside a cell"));
                    }
                    if !empty {
                        depth_in_cell += 1;
                    }
                    continue;
                }
                if matches!(name.as_ref(), "table:table-cell" | "table:covered-table-cell") && !in_row {
                    return Err(corrupt("content.xml: a cell outside any row"));
                }
                match e.name().as_ref() {
                    "table:table" => {
                        table = attr_value(e, "name").unwrap_or_default();
                        row = 0;
                        column = 0;
                    }
                    "table:table-column" => {
                        let rep = attr_value(e, "number-columns-repeated").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1).clamp(1, cap);
                        if attr_value(e, "visibility").is_some_and(|v| matches!(v.trim(), "collapse" | "filter")) && hidden.len() < 10_000 {
                            hidden.entry(table.clone()).or_default().add_cols(column, column.saturating_add(rep - 1));
                        }
                        column = column.saturating_add(rep);
                    }
                    "table:table-row" => {
                        in_row = !empty;
                        row_rep = attr_value(e, "number-rows-repeated")
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(1)
                            .clamp(1, cap);
                        if attr_value(e, "visibility").is_some_and(|v| matches!(v.trim(), "collapse" | "filter")) && hidden.len() < 10_000 {
                            hidden.entry(table.clone()).or_default().add_rows(row, row.saturating_add(row_rep - 1));
                        }
                        col = 0;
                        if empty {
                            row = row.saturating_add(row_rep);
                        }
                    }
                    "table:table-cell" | "table:covered-table-cell" => {
                        let rep = attr_value(e, "number-columns-repeated")
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(1)
                            .clamp(1, cap);
                        let valued = ODS_VALUE_ATTRS.iter().any(|a| attr_value(e, a).is_some());
                        if e.name().as_ref() == "table:table-cell" {
                            // A span of 0 (fuzzed, or a broken writer) means no span.
                            let cs = attr_value(e, "number-columns-spanned")
                                .and_then(|v| v.parse::<u64>().ok())
                                .unwrap_or(1)
                                .max(1);
                            let rs = attr_value(e, "number-rows-spanned")
                                .and_then(|v| v.parse::<u64>().ok())
                                .unwrap_or(1)
                                .max(1);
                            if (cs > 1 || rs > 1) && spans.len() < 100_000 {
                                spans.push((table.clone(), row, col, rs.min(cap), cs.min(cap)));
                            }
                        }
                        if empty {
                            if valued {
                                note_cell(&mut max_r, &mut max_c, row, row_rep, col, rep, limits)?;
                            }
                            col = col.saturating_add(rep);
                        } else {
                            cell = Some((rep, valued));
                            depth_in_cell = 0;
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(ref t) if cell.is_some() => {
                if !t.as_ref().trim().is_empty()
                    && let Some((_, v)) = cell.as_mut() {
                        *v = true;
                    }
            }
            Event::End(ref e) => {
                open = open.saturating_sub(1);
                if let Some((rep, valued)) = cell {
                    if depth_in_cell > 0 {
                        depth_in_cell -= 1;
                        continue;
                    }
                    if valued {
                        note_cell(&mut max_r, &mut max_c, row, row_rep, col, rep, limits)?;
                    }
                    col = col.saturating_add(rep);
                    cell = None;
                    continue;
                }
                if e.name().as_ref() == "table:table-row" {
                    in_row = false;
                    row = row.saturating_add(row_rep);
                } else if e.name().as_ref() == "table:table" {
                    if let Some(r) = max_r.take() {
                        add_sheet_cells(&mut total, (r + 1).saturating_mul(max_c + 1), limits)?;
                    }
                    max_c = 0;
                }
            }
            _ => {}
        }
    }
    Ok((spans, hidden))
}

fn note_cell(
    max_r: &mut Option<u64>,
    max_c: &mut u64,
    row: u64,
    row_rep: u64,
    col: u64,
    col_rep: u64,
    limits: &Limits,
) -> Result<(), Unreadable> {
    let last_row = row.saturating_add(row_rep - 1);
    let last_col = col.saturating_add(col_rep - 1);
    *max_r = Some(max_r.map_or(last_row, |m| m.max(last_row)));
    *max_c = (*max_c).max(last_col);
    check_cells(last_row.saturating_add(1), max_c.saturating_add(1), "content.xml cells", limits)
}

pub fn read_ods(data: &[u8], limits: &Limits) -> Result<Document, Unreadable> {
    let (mut zip, names) = open_verified(data, limits)?;
    let (spans, hidden) = {
        let f = zip.by_name("content.xml").map_err(|e| corrupt(format!("content.xml: {e}")))?;
        scan_ods(f, limits)?
    };
    let embedded_images = pkg::count_prefix(&names, "Pictures/");
    let tables = guarded(|| {
        let mut wb = Ods::new(Cursor::new(data))
            .map_err(|e| corrupt(format!("ods: {}", truncate(&e.to_string(), 200))))?;
        let hidden_sheets = hidden_by_state(wb.sheets_metadata());
        let mut tables = Vec::new();
        let mut hidden_tables = Vec::new();
        for sheet in wb.sheet_names() {
            let range = wb
                .worksheet_range(&sheet)
                .map_err(|e| corrupt(format!("ods sheet {sheet}: {}", truncate(&e.to_string(), 200))))?;
            let merges: Vec<Dimensions> = spans
                .iter()
                .filter(|s| s.0 == sheet)
                .map(|&(_, r, c, rs, cs)| {
                    let r = r.min(u32::MAX as u64) as u32;
                    let c = c.min(u32::MAX as u64) as u32;
                    let r1 = r.saturating_add((rs - 1).min(u32::MAX as u64) as u32);
                    let c1 = c.saturating_add((cs - 1).min(u32::MAX as u64) as u32);
                    Dimensions::new((r, c), (r1, c1))
                })
                .collect();
            if let Some(t) = to_table(&sheet, &range, &merges, hidden.get(&sheet), limits)? {
                if hidden_sheets.contains(&sheet) { hidden_tables.push(t) } else { tables.push(t) }
            }
        }
        Ok(if tables.is_empty() { hidden_tables } else { tables })
    })?;
    Ok(doc(Format::Ods, tables, embedded_images))
}

fn doc(format: Format, tables: Vec<Table>, embedded_images: usize) -> Document {
    Document { format, blocks: tables.into_iter().map(Block::Table).collect(), embedded_images, pictures: Vec::new() }
}

/// A calamine range → a table anchored at A1, merged regions filled, hidden rows and columns
/// blanked (they are not on the screen or the paper; cell references stay as in the file),
/// trailing empties trimmed. `None` for an empty sheet.
fn to_table(
    sheet: &str,
    range: &Range<Data>,
    merges: &[Dimensions],
    hidden: Option<&Hidden>,
    limits: &Limits,
) -> Result<Option<Table>, Unreadable> {
    let (Some(start), Some(end)) = (range.start(), range.end()) else {
        return Ok(None);
    };
    let mut height = end.0 as u64 + 1;
    let mut width = end.1 as u64 + 1;
    check_cells(height, width, &format!("sheet {sheet}"), limits)?;
    // Merged regions that reach past the last value (a title merged across the form's
    // width) widen the table, as long as it stays within `max_cells`.
    for m in merges {
        let h = height.max(m.end.0 as u64 + 1);
        let w = width.max(m.end.1 as u64 + 1);
        if h.saturating_mul(w) <= limits.max_cells {
            (height, width) = (h, w);
        }
    }
    let mut rows = vec![vec![String::new(); width as usize]; height as usize];
    for (r, c, v) in range.used_cells() {
        let (ar, ac) = (start.0 as usize + r, start.1 as usize + c);
        if let Some(cell) = rows.get_mut(ar).and_then(|row| row.get_mut(ac)) {
            *cell = cell_text(v);
        }
    }
    // Merge filling copies values: keep the text it makes within the inflation budget.
    let mut bytes: u64 = rows.iter().flatten().map(|c| c.len() as u64).sum();
    for m in merges {
        let (r0, c0) = (m.start.0 as usize, m.start.1 as usize);
        let Some(value) = rows.get(r0).and_then(|r| r.get(c0)).cloned() else { continue };
        if value.is_empty() {
            continue;
        }
        let r1 = (m.end.0 as usize).min(rows.len().saturating_sub(1));
        let c1 = (m.end.1 as usize).min(width as usize - 1);
        for row in rows.iter_mut().take(r1 + 1).skip(r0) {
            for cell in row.iter_mut().take(c1 + 1).skip(c0) {
                if cell.is_empty() {
                    bytes = bytes.saturating_add(value.len() as u64);
                    if bytes > limits.max_decompressed_bytes {
                        return Err(bomb(format!(
                            "sheet {sheet}: merged cells expand to more than {} bytes of text",
                            limits.max_decompressed_bytes
                        )));
                    }
                    *cell = value.clone();
                }
            }
        }
    }
    if let Some(h) = hidden.filter(|h| !h.rows.is_empty() || !h.cols.is_empty()) {
        let hidden_row = mask(&h.rows, rows.len());
        let hidden_col = mask(&h.cols, width as usize);
        // A merged cell that reaches a visible row and column is shown whole, also where it
        // crosses a hidden one (a title merged over a hidden column).
        let visible_in = |m: &[bool], a: u32, b: u32| (a as usize..=b as usize).any(|i| !m.get(i).copied().unwrap_or(false));
        let mut keep = vec![vec![false; width as usize]; rows.len()];
        for m in merges.iter().filter(|m| visible_in(&hidden_row, m.start.0, m.end.0) && visible_in(&hidden_col, m.start.1, m.end.1)) {
            let r1 = (m.end.0 as usize).min(rows.len().saturating_sub(1));
            let c1 = (m.end.1 as usize).min((width as usize).saturating_sub(1));
            for row in keep.iter_mut().take(r1 + 1).skip(m.start.0 as usize) {
                row.iter_mut().take(c1 + 1).skip(m.start.1 as usize).for_each(|k| *k = true);
            }
        }
        for (r, row) in rows.iter_mut().enumerate() {
            for (c, cell) in row.iter_mut().enumerate() {
                if (hidden_row[r] || hidden_col[c]) && !keep[r][c] {
                    cell.clear();
                }
            }
        }
    }
    tidy_rows(&mut rows);
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(Table { label: format!("工作表“{sheet}”"), is_sheet: true, rows }))
}

/// Text of one spreadsheet cell (see [`Table::rows`]).
pub fn cell_text(v: &Data) -> String {
    let text = match v {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => format_number(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Data::Error(e) => e.to_string(),
        Data::DateTime(dt) => {
            if dt.is_duration() {
                format_number(dt.as_f64())
            } else {
                format_serial_date(dt.as_f64(), dt.as_datetime())
            }
        }
        Data::DateTimeIso(s) => format_iso_datetime(s),
        Data::DurationIso(s) => s.clone(),
    };
    // Every kind normalised: ISO values and error texts come from the file as written.
    crate::core::text::normalize(&text)
}

/// Up to 10 significant digits, no trailing zeros, no exponent for ordinary values;
/// integral values (phone numbers, ID parts) print in full.
pub fn format_number(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    if f == f.trunc() && f.abs() < 1e17 {
        return format!("{}", f as i64);
    }
    let mag = f.abs().log10().floor() as i64;
    let decimals = (9 - mag).clamp(0, 15) as usize;
    let mut s = format!("{f:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

fn format_serial_date(serial: f64, dt: Option<chrono::NaiveDateTime>) -> String {
    let Some(dt) = dt else { return format_number(serial) };
    // Round to the nearest second (Excel fractions give 23:59:59.9997).
    let ms = chrono::Timelike::nanosecond(&dt.time()) / 1_000_000;
    let dt = if ms >= 500 { dt + chrono::Duration::milliseconds(1000 - ms as i64) } else { dt };
    let dt = dt - chrono::Duration::nanoseconds(chrono::Timelike::nanosecond(&dt.time()) as i64);
    if serial.abs() < 1.0 && serial != 0.0 {
        return dt.format("%H:%M:%S").to_string();
    }
    if dt.time() == chrono::NaiveTime::MIN {
        dt.format("%Y-%m-%d").to_string()
    } else {
        dt.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

fn format_iso_datetime(s: &str) -> String {
    let s = s.trim();
    if let Some((d, t)) = s.split_once('T') {
        let t = t.trim_end_matches('Z');
        if t.trim_start_matches(['0', ':', '.']).is_empty() {
            return d.to_string();
        }
        let t = t.split('.').next().unwrap_or(t);
        return format!("{d} {t}");
    }
    s.to_string()
}
