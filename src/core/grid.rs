//! One reader over tables and text: `.xlsx/.xls/.ods` through calamine (guarded against
//! dimension and decompression bombs and its panics), `.docx` through zip + quick-xml
//! (merged cells resolved), legacy `.doc`/`.pdf` (and WPS `.wps`/`.et`) through optional
//! external converters.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{Limits, Unreadable};

/// What a file really is, decided from its bytes (the name is only a tie-breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Cell text, trimmed; paragraphs inside a cell joined with `\n`; numbers without a
    /// trailing `.0`; date cells as `YYYY-MM-DD`.
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
}

/// External programs for legacy formats. `None` = not available: such files become
/// [`Unreadable::Unsupported`] naming the format to resend in.
#[derive(Debug, Clone, Default)]
pub struct Converters {
    /// LibreOffice `soffice` (for `.doc`, `.wps`, `.et`, `.odt`).
    pub soffice: Option<PathBuf>,
    /// poppler `pdftotext`.
    pub pdftotext: Option<PathBuf>,
    pub timeout: Duration,
}
