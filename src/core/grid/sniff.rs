//! Format detection from magic bytes and container contents.

use std::io::Cursor;

use super::Format;

const CFB_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

fn ext_of(file_name: &str) -> String {
    file_name
        .rsplit_once('.')
        .map(|(_, e)| e.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

pub fn sniff(file_name: &str, data: &[u8]) -> Format {
    let ext = ext_of(file_name);
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") || data.starts_with(b"PK\x07\x08") {
        return sniff_zip(&ext, data);
    }
    if data.starts_with(CFB_MAGIC) {
        return sniff_cfb(&ext, data);
    }
    let head = &data[..data.len().min(1024)];
    if find(head, b"%PDF-").is_some() {
        return Format::Pdf;
    }
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Format::Jpeg;
    }
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Format::Png;
    }
    if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        return Format::Gif;
    }
    if data.len() >= 26 && data.starts_with(b"BM") && data[6..10] == [0, 0, 0, 0] {
        return Format::Bmp;
    }
    if data.len() >= 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP" {
        return Format::Webp;
    }
    if data.len() >= 12 && &data[4..8] == b"ftyp" {
        let brand = &data[8..12];
        let heif: [&[u8]; 8] = [b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"heim", b"heis", b"avif"];
        if heif.contains(&brand) {
            return Format::Heic;
        }
        // Other ISO-BMFF (mp4, mov): not a document and not a photo we read.
        return Format::Unknown;
    }
    if data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") {
        return Format::Tiff;
    }
    if data.starts_with(&[0x78, 0x9F, 0x3E, 0x22]) {
        return Format::Tnef;
    }
    if data.starts_with(b"Rar!\x1a\x07")
        || data.starts_with(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C])
        || data.starts_with(&[0x1F, 0x8B])
        || data.starts_with(b"BZh")
        || data.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0])
        || (data.len() > 262 && &data[257..262] == b"ustar")
    {
        return Format::OtherArchive;
    }
    if data.starts_with(b"{\\rtf") {
        // RTF (often saved as `.doc`): LibreOffice converts it like a `.doc`.
        return Format::Doc;
    }
    if looks_like_text(data) {
        return Format::Text;
    }
    Format::Unknown
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn looks_like_text(data: &[u8]) -> bool {
    let sample = &data[..data.len().min(8192)];
    let text: std::borrow::Cow<str> = match std::str::from_utf8(sample) {
        Ok(s) => s.into(),
        Err(e) if e.error_len().is_none() && e.valid_up_to() + 4 > sample.len() => {
            // Cut in the middle of a character at the sample's end.
            String::from_utf8_lossy(&sample[..e.valid_up_to()]).into_owned().into()
        }
        Err(_) => {
            let (t, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(sample);
            if had_errors {
                return false;
            }
            t.into_owned().into()
        }
    };
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

fn sniff_zip(ext: &str, data: &[u8]) -> Format {
    match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(mut zip) => {
            let names: Vec<String> = zip
                .file_names_raw()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            let has = |n: &str| names.iter().any(|m| m == n);
            // The package says what it is: its officeDocument relationship and content
            // types name the main part, wherever a writer put it.
            match super::pkg::main_part(&mut zip, &names) {
                Some((_, Some(super::pkg::MainKind::Word))) => return Format::Docx,
                Some((_, Some(super::pkg::MainKind::Excel))) => return Format::Xlsx,
                _ => {}
            }
            if has("word/document.xml") {
                return Format::Docx;
            }
            if has("xl/workbook.xml") {
                return Format::Xlsx;
            }
            if has("mimetype")
                && let Ok(f) = zip.by_name("mimetype") {
                    use std::io::Read;
                    let mut m = String::new();
                    if f.take(200).read_to_string(&mut m).is_ok() {
                        match m.trim() {
                            "application/vnd.oasis.opendocument.spreadsheet" => return Format::Ods,
                            "application/vnd.oasis.opendocument.text" => return Format::Odt,
                            _ => {}
                        }
                    }
                }
            // A zip whose members are encrypted (WinZip/7-Zip password).
            let n = zip.len().min(1000);
            for i in 0..n {
                if let Ok(f) = zip.by_index_raw(i)
                    && f.encrypted() {
                        return Format::Encrypted;
                    }
            }
            Format::Zip
        }
        Err(_) => {
            // Truncated or damaged: look at the local headers' names, then the name.
            if find(data, b"word/document.xml").is_some() || find(data, b"word/_rels").is_some() {
                Format::Docx
            } else if find(data, b"xl/workbook.xml").is_some() || find(data, b"xl/worksheets/").is_some() {
                Format::Xlsx
            } else if find(data, b"application/vnd.oasis.opendocument.spreadsheet").is_some() {
                Format::Ods
            } else if find(data, b"application/vnd.oasis.opendocument.text").is_some() {
                Format::Odt
            } else {
                match ext {
                    "docx" | "docm" | "wpsx" => Format::Docx,
                    "xlsx" | "xlsm" | "etx" => Format::Xlsx,
                    "ods" => Format::Ods,
                    "odt" => Format::Odt,
                    _ => Format::Zip,
                }
            }
        }
    }
}

fn sniff_cfb(ext: &str, data: &[u8]) -> Format {
    let by_name = || match ext {
        "doc" | "wps" | "dot" | "docx" => Format::Doc,
        "xls" | "et" | "xlt" | "ett" | "xlsx" => Format::Xls,
        _ => Format::Unknown,
    };
    let names = std::panic::catch_unwind(|| -> Option<Vec<String>> {
        let cf = cfb::CompoundFile::open(Cursor::new(data)).ok()?;
        Some(cf.walk().map(|e| e.name().to_string()).take(10_000).collect())
    })
    .ok()
    .flatten();
    let Some(names) = names else {
        return by_name();
    };
    let has = |n: &str| names.iter().any(|m| m.eq_ignore_ascii_case(n));
    if has("EncryptedPackage") || has("EncryptionInfo") {
        Format::Encrypted
    } else if has("Workbook") || has("Book") {
        Format::Xls
    } else if has("WordDocument") {
        Format::Doc
    } else {
        by_name()
    }
}
