//! One reader over tables and text: `.xlsx/.xls/.ods` through calamine (guarded against
//! dimension and decompression bombs and its panics; hidden sheets, rows and columns left
//! out), `.docx` through zip + quick-xml following the package's relationships (merged cells
//! resolved, `altChunk` parts and form headers read, only the text Word shows), legacy
//! `.doc`/`.pdf` (and WPS `.wps`/`.et`) through optional external converters. Every text
//! goes through [`crate::core::text::normalize`].


use serde::Serialize;

use super::{Limits, Unreadable};

mod docx;
mod html;
mod pkg;
mod sheet;
mod sniff;

/// What a file really is, decided from its bytes (the name is only a tie-breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Docx,
    Xlsx,
    Xls,
    Ods,
    Odt,
    /// Word 97-2003 binary (or WPS `.wps`).
    Doc,
    Pdf,
    Zip,
    /// Outlook's `winmail.dat` (TNEF): a container the MIME walk opens like a zip.
    Tnef,
    /// RAR, 7z, gzip, tar…: archives we do not open.
    OtherArchive,
    Jpeg,
    Png,
    Gif,
    Bmp,
    Webp,
    Heic,
    Tiff,
    /// Encrypted OOXML (CFB with `EncryptedPackage`) or an encrypted zip.
    Encrypted,
    Text,
    Unknown,
}

/// A table as read: every covered cell of a merged region (spreadsheet merges, `gridSpan`,
/// `vMerge`) repeats the region's value, so a reader can look "right of" or "below" a label
/// without knowing the merge layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// Where the table is, for findings: `工作表“Sheet1”` or `表格1`.
    pub label: String,
    /// True for spreadsheet sheets (locations print as `B3`), false for document tables
    /// (locations print as `第3行第2列`).
    pub is_sheet: bool,
    /// Cell text as [`crate::core::text::normalize`] leaves it (line breaks `\n`, no
    /// invisible characters or `_x000D_` escapes, lines trimmed); paragraphs inside a cell
    /// joined with `\n`; numbers without a trailing `.0`; date cells as `YYYY-MM-DD`. Rows
    /// and columns the spreadsheet hides are empty (a merged cell shown across them stays).
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Block {
    Paragraph(String),
    Table(Table),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub format: Format,
    /// Content in reading order.
    pub blocks: Vec<Block>,
    /// Pictures embedded in the document (docx `word/media/*`, xlsx `xl/media/*`).
    pub embedded_images: usize,
    /// The pictures of a `.docx` whose size could be read (at most [`MAX_PICTURES`]).
    pub pictures: Vec<Picture>,
}

/// A picture inside a document: its part name, format and pixel size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Picture {
    pub name: String,
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

/// Pictures measured in one document; a scene photo pasted into 附件3 is among the first.
pub const MAX_PICTURES: usize = 16;

/// External converters for legacy formats (`.doc`/`.wps`/`.odt`/odd `.xls` → Office Open XML,
/// `.pdf` → text). The core calls them; it does not own them: the daemon provides
/// [`crate::convert::Converters`] (LibreOffice and poppler in a box), tests may provide none
/// ([`NoConverters`]). A format without a converter becomes [`Unreadable::Unsupported`] naming
/// the format to resend in.
pub trait Convert: Send + Sync {
    /// An office suite is available for [`Convert::office`].
    fn can_office(&self) -> bool;
    /// A PDF text extractor is available for [`Convert::pdf`].
    fn can_pdf(&self) -> bool;
    /// `data` in `format` (opened as `in_ext` when given: `html`, `mht`, `rtf`) converted and
    /// read; the document keeps the original format.
    fn office(&self, data: &[u8], format: Format, in_ext: Option<&str>, limits: &Limits) -> Result<Document, Unreadable>;
    /// A PDF's text, one paragraph per line; none for a scan.
    fn pdf(&self, data: &[u8], limits: &Limits) -> Result<Document, Unreadable>;
}

/// No converter at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConverters;

impl Convert for NoConverters {
    fn can_office(&self) -> bool {
        false
    }
    fn can_pdf(&self) -> bool {
        false
    }
    fn office(&self, _: &[u8], format: Format, _: Option<&str>, _: &Limits) -> Result<Document, Unreadable> {
        Err(match format {
            Format::Odt => unsupported("OpenDocument 文本（.odt）", ".docx"),
            Format::Xls => unsupported("Excel 97-2003（.xls）", ".xlsx"),
            _ => unsupported(DOC_NAME, ".docx"),
        })
    }
    fn pdf(&self, _: &[u8], _: &Limits) -> Result<Document, Unreadable> {
        Err(unsupported(PDF_NAME, ".docx"))
    }
}

/// A converter's output (a package we made from the sender's file) read by the core's own
/// readers, with the sender's format kept.
pub fn read_converted(bytes: &[u8], out_ext: &str, format: Format, limits: &Limits) -> Result<Document, Unreadable> {
    let mut doc = match out_ext {
        "xlsx" => sheet::read_xlsx(bytes, limits)?,
        _ => docx::read_docx(bytes, limits)?,
    };
    doc.format = format;
    Ok(doc)
}

/// What a file really is, from its bytes; the name only breaks ties (a CFB container with
/// neither a `Workbook` nor a `WordDocument` stream, a truncated zip package).
pub fn sniff(file_name: &str, data: &[u8]) -> Format {
    sniff::sniff(file_name, data)
}

/// Reads a document (spreadsheet, Word file, PDF) into tables and paragraphs.
///
/// Never panics: every parser runs under `catch_unwind`, and the inputs that would make
/// calamine abort (dimension and decompression bombs) are refused before it sees them.
pub fn read(
    file_name: &str,
    data: &[u8],
    limits: &Limits,
    converters: &dyn Convert,
) -> Result<Document, Unreadable> {
    if data.is_empty() {
        return Err(Unreadable::Empty);
    }
    if data.len() as u64 > limits.max_attachment_bytes {
        return Err(Unreadable::TooLarge { limit: limits.max_attachment_bytes });
    }
    read_sniffed(sniff(file_name, data), data, limits, converters)
}

/// [`read`] for a caller that already knows `format == sniff(file_name, data)` (saves
/// opening the package twice).
pub fn read_sniffed(
    format: Format,
    data: &[u8],
    limits: &Limits,
    converters: &dyn Convert,
) -> Result<Document, Unreadable> {
    if data.is_empty() {
        return Err(Unreadable::Empty);
    }
    if data.len() as u64 > limits.max_attachment_bytes {
        return Err(Unreadable::TooLarge { limit: limits.max_attachment_bytes });
    }
    guarded(|| read_as(format, data, limits, converters))
}

/// Runs `f`, turning a panic into [`Unreadable::Corrupt`].
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, Unreadable>) -> Result<T, Unreadable> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(corrupt(format!("parser panicked: {}", truncate(&msg, 200))))
        }
    }
}

pub(crate) fn corrupt(detail: impl Into<String>) -> Unreadable {
    Unreadable::Corrupt { detail: detail.into() }
}

pub(crate) fn bomb(detail: impl Into<String>) -> Unreadable {
    Unreadable::ArchiveBomb { detail: detail.into() }
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

/// Human names of the legacy formats, as they appear in [`Unreadable::Unsupported`].
pub(crate) const DOC_NAME: &str = "Word 97-2003（.doc）";
pub(crate) const PDF_NAME: &str = "PDF";

fn unsupported(format: &str, resend_as: &str) -> Unreadable {
    Unreadable::Unsupported { format: format.into(), resend_as: resend_as.into() }
}

fn read_as(
    format: Format,
    data: &[u8],
    limits: &Limits,
    converters: &dyn Convert,
) -> Result<Document, Unreadable> {
    match format {
        Format::Xlsx => sheet::read_xlsx(data, limits),
        Format::Ods => sheet::read_ods(data, limits),
        Format::Xls => match sheet::read_xls(data, limits) {
            Err(Unreadable::Corrupt { detail }) if converters.can_office() => {
                // WPS `.et` files and odd BIFF variants: LibreOffice usually copes.
                converters.office(data, format, None, limits).map_err(|_| Unreadable::Corrupt { detail })
            }
            other => other,
        },
        Format::Docx => docx::read_docx_with(data, limits, converters),
        Format::Doc | Format::Odt => {
            if converters.can_office() {
                converters.office(data, format, None, limits)
            } else if format == Format::Odt {
                Err(unsupported("OpenDocument 文本（.odt）", ".docx"))
            } else {
                Err(unsupported(DOC_NAME, ".docx"))
            }
        }
        Format::Pdf => {
            if converters.can_pdf() {
                converters.pdf(data, limits)
            } else {
                Err(unsupported(PDF_NAME, ".docx"))
            }
        }
        Format::Text => Ok(read_text(data)),
        Format::Encrypted => Err(Unreadable::Encrypted),
        Format::Zip => {
            if pkg::zip_has_member(data, "xl/workbook.bin") {
                Err(unsupported("Excel 二进制工作簿（.xlsb）", ".xlsx"))
            } else {
                Err(unsupported("ZIP 压缩包（不是文档）", ".docx 或 .xlsx"))
            }
        }
        Format::OtherArchive => Err(unsupported("压缩包（RAR/7z/gz 等）", ".docx 或 .xlsx")),
        Format::Tnef => Err(unsupported("Outlook 的 winmail.dat", "普通附件（Outlook 中改用 HTML 或纯文本格式发送）")),
        Format::Jpeg
        | Format::Png
        | Format::Gif
        | Format::Bmp
        | Format::Webp
        | Format::Heic
        | Format::Tiff => Err(unsupported("图片（不是表格或文档）", ".docx 或 .xlsx")),
        Format::Unknown => Err(unsupported("未知", ".docx 或 .xlsx")),
    }
}

/// Plain text (UTF-8, else GB18030): one paragraph per non-empty line.
fn read_text(data: &[u8]) -> Document {
    let text = match std::str::from_utf8(data) {
        Ok(s) => s.trim_start_matches('\u{feff}').to_string(),
        Err(_) => encoding_rs::GB18030.decode(data).0.into_owned(),
    };
    Document {
        format: Format::Text,
        blocks: lines_to_paragraphs(&text),
        embedded_images: 0,
        pictures: Vec::new(),
    }
}

pub(crate) fn lines_to_paragraphs(text: &str) -> Vec<Block> {
    text.lines()
        .map(crate::core::text::normalize)
        .filter(|l| !l.is_empty())
        .map(Block::Paragraph)
        .collect()
}

impl Document {
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Table(t) => Some(t),
            Block::Paragraph(_) => None,
        })
    }

    pub fn paragraphs(&self) -> impl Iterator<Item = &str> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Paragraph(p) => Some(p.as_str()),
            Block::Table(_) => None,
        })
    }

    /// All text in reading order, one line per paragraph and per table cell (a merged
    /// region's repeated value is printed once per row).
    pub fn text(&self) -> String {
        let mut lines: Vec<&str> = Vec::new();
        for b in &self.blocks {
            match b {
                Block::Paragraph(p) => lines.push(p),
                Block::Table(t) => {
                    for row in &t.rows {
                        let mut prev: Option<&str> = None;
                        for cell in row {
                            if !cell.is_empty() && prev != Some(cell.as_str()) {
                                lines.push(cell);
                            }
                            prev = Some(cell);
                        }
                    }
                }
            }
        }
        lines.join("\n")
    }
}

impl Table {
    /// Where a cell is, for findings: `B3` in a sheet, `第3行第2列` in a document table
    /// (`row`, `col` are 0-based indexes into [`Table::rows`]).
    pub fn cell_ref(&self, row: usize, col: usize) -> String {
        if self.is_sheet {
            format!("{}{}", column_letters(col), row + 1)
        } else {
            format!("第{}行第{}列", row + 1, col + 1)
        }
    }

    /// The cell at (row, col), or `""` outside the table.
    pub fn cell(&self, row: usize, col: usize) -> &str {
        self.rows.get(row).and_then(|r| r.get(col)).map(String::as_str).unwrap_or("")
    }

    /// Number of columns of the widest row.
    pub fn width(&self) -> usize {
        self.rows.iter().map(Vec::len).max().unwrap_or(0)
    }
}

/// 0 → `A`, 25 → `Z`, 26 → `AA`.
pub fn column_letters(col: usize) -> String {
    let mut n = col + 1;
    let mut out = Vec::new();
    while n > 0 {
        let r = (n - 1) % 26;
        out.push(b'A' + r as u8);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Pads rows to a common width and drops trailing empty rows and columns.
pub(crate) fn tidy_rows(rows: &mut Vec<Vec<String>>) {
    while rows.last().is_some_and(|r| r.iter().all(String::is_empty)) {
        rows.pop();
    }
    let width = rows
        .iter()
        .map(|r| r.iter().rposition(|c| !c.is_empty()).map_or(0, |i| i + 1))
        .max()
        .unwrap_or(0);
    for r in rows.iter_mut() {
        r.resize(width, String::new());
    }
}
