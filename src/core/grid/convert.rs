//! Optional external converters: LibreOffice `soffice` (legacy Word/WPS/ODT → docx,
//! odd `.xls`/`.et` → xlsx) and poppler `pdftotext`. Each run gets a private temp folder
//! with fixed file names, a private LibreOffice profile and a timeout that kills the whole
//! process group.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Converters, DOC_NAME, Document, Format, PDF_NAME, lines_to_paragraphs, truncate};
use crate::core::{Limits, Unreadable};

pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if is_executable(&p) {
                return Some(p);
            }
        }
    }
    None
}

pub fn find_soffice_elsewhere() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/lib/libreoffice/program/soffice")];
    if let Ok(rd) = std::fs::read_dir("/opt") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("libreoffice") {
                candidates.push(e.path().join("program/soffice"));
            }
        }
    }
    candidates.push(PathBuf::from("/Applications/LibreOffice.app/Contents/MacOS/soffice"));
    candidates.into_iter().find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

fn timeout_of(converters: &Converters, limits: &Limits) -> Duration {
    let from_limits = Duration::from_secs(limits.converter_timeout_secs.max(1));
    if converters.timeout.is_zero() { from_limits } else { converters.timeout.min(from_limits) }
}

struct Output {
    status: Option<std::process::ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
}

/// Runs `cmd` in its own process group; on expiry kills the group (soffice forks).
fn run(mut cmd: Command, timeout: Duration, stdout_cap: u64) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn()?;
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = out_pipe {
            let mut p = p.take(stdout_cap);
            let _ = p.read_to_end(&mut v);
            // Drain the rest so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut p.into_inner(), &mut std::io::sink());
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = err_pipe {
            let mut p = p.take(64 * 1024);
            let _ = p.read_to_end(&mut v);
            let _ = std::io::copy(&mut p.into_inner(), &mut std::io::sink());
        }
        v
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break Some(s),
            None if Instant::now() >= deadline => {
                timed_out = true;
                kill_group(&mut child);
                break child.wait().ok();
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if !timed_out {
        // The leader is gone; make sure no helper of its group lingers.
        kill_group_quiet(child.id());
    }
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Output { status, stdout, stderr, timed_out })
}

fn kill_group(child: &mut std::process::Child) {
    kill_group_quiet(child.id());
    let _ = child.kill();
}

fn kill_group_quiet(pid: u32) {
    #[cfg(unix)]
    {
        // The group id is the leader's pid (process_group(0)).
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{pid}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    #[cfg(not(unix))]
    let _ = pid;
}

fn names_for(format: Format) -> (&'static str, &'static str, &'static str, &'static str) {
    // (input extension, convert-to argument, output extension, human format name)
    match format {
        Format::Xls => ("xls", "xlsx:Calc MS Excel 2007 XML", "xlsx", "Excel 97-2003（.xls）"),
        Format::Odt => ("odt", "docx:MS Word 2007 XML", "docx", "OpenDocument 文本（.odt）"),
        _ => ("doc", "docx:MS Word 2007 XML", "docx", DOC_NAME),
    }
}

fn failed(format: &str, resend_as: &str, detail: String) -> Unreadable {
    Unreadable::ConverterFailed { format: format.into(), resend_as: resend_as.into(), detail }
}

/// Converts with LibreOffice and reads the result; the document keeps the original format.
pub fn via_soffice(
    data: &[u8],
    format: Format,
    limits: &Limits,
    converters: &Converters,
) -> Result<Document, Unreadable> {
    let Some(soffice) = converters.soffice.as_ref() else {
        let (_, _, out_ext, human) = names_for(format);
        return Err(Unreadable::Unsupported { format: human.into(), resend_as: format!(".{out_ext}") });
    };
    let (mut in_ext, to, out_ext, human) = names_for(format);
    if format == Format::Doc && data.starts_with(b"{\\rtf") {
        in_ext = "rtf";
    }
    let resend = format!(".{out_ext}");
    let dir = tempfile::Builder::new()
        .prefix("grid-soffice-")
        .tempdir()
        .map_err(|e| failed(human, &resend, format!("temp dir: {e}")))?;
    let input = dir.path().join(format!("input.{in_ext}"));
    let out_dir = dir.path().join("out");
    let profile = dir.path().join("profile");
    std::fs::write(&input, data).map_err(|e| failed(human, &resend, format!("write input: {e}")))?;
    std::fs::create_dir_all(&out_dir).map_err(|e| failed(human, &resend, format!("out dir: {e}")))?;
    let mut cmd = Command::new(soffice);
    cmd.arg("--headless")
        .arg("--norestore")
        .arg("--nolockcheck")
        .arg("--nodefault")
        .arg(format!("-env:UserInstallation={}", file_url(&profile)))
        .arg("--convert-to")
        .arg(to)
        .arg("--outdir")
        .arg(&out_dir)
        .arg(&input)
        .current_dir(dir.path())
        .env("HOME", dir.path());
    let timeout = timeout_of(converters, limits);
    let out = run(cmd, timeout, 1024 * 1024)
        .map_err(|e| failed(human, &resend, format!("cannot start soffice: {e}")))?;
    if out.timed_out {
        return Err(failed(human, &resend, format!("soffice timed out after {}s", timeout.as_secs())));
    }
    let produced = out_dir.join(format!("input.{out_ext}"));
    let bytes = match std::fs::metadata(&produced) {
        Ok(m) if m.len() > limits.max_attachment_bytes.saturating_mul(4) => {
            return Err(Unreadable::TooLarge { limit: limits.max_attachment_bytes });
        }
        Ok(_) => std::fs::read(&produced).map_err(|e| failed(human, &resend, format!("read output: {e}")))?,
        Err(_) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            if err.to_ascii_lowercase().contains("password") {
                return Err(Unreadable::Encrypted);
            }
            return Err(failed(
                human,
                &resend,
                format!(
                    "soffice produced no output (status {}){}",
                    out.status.map_or("killed".into(), |s| s.to_string()),
                    if err.is_empty() { String::new() } else { format!(": {}", truncate(err, 200)) }
                ),
            ));
        }
    };
    // The converted package is ours, but its size still counts against the limits.
    let conv_limits = Limits {
        max_attachment_bytes: limits.max_attachment_bytes.saturating_mul(4),
        ..limits.clone()
    };
    let mut doc = match out_ext {
        "xlsx" => super::sheet::read_xlsx(&bytes, &conv_limits)?,
        _ => super::docx::read_docx(&bytes, &conv_limits)?,
    };
    doc.format = format;
    Ok(doc)
}

fn file_url(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::from("file://");
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pdftotext -layout`: one paragraph per non-empty line. No text at all (a scanned PDF)
/// gives a document without blocks.
pub fn via_pdftotext(data: &[u8], limits: &Limits, converters: &Converters) -> Result<Document, Unreadable> {
    let Some(prog) = converters.pdftotext.as_ref() else {
        return Err(Unreadable::Unsupported { format: PDF_NAME.into(), resend_as: ".docx".into() });
    };
    let dir = tempfile::Builder::new()
        .prefix("grid-pdf-")
        .tempdir()
        .map_err(|e| failed(PDF_NAME, ".docx", format!("temp dir: {e}")))?;
    let input = dir.path().join("input.pdf");
    std::fs::write(&input, data).map_err(|e| failed(PDF_NAME, ".docx", format!("write input: {e}")))?;
    let mut cmd = Command::new(prog);
    cmd.arg("-layout").arg("-enc").arg("UTF-8").arg(&input).arg("-").current_dir(dir.path());
    let timeout = timeout_of(converters, limits);
    let out = run(cmd, timeout, limits.max_attachment_bytes.saturating_mul(4))
        .map_err(|e| failed(PDF_NAME, ".docx", format!("cannot start pdftotext: {e}")))?;
    if out.timed_out {
        return Err(failed(PDF_NAME, ".docx", format!("pdftotext timed out after {}s", timeout.as_secs())));
    }
    let ok = out.status.is_some_and(|s| s.success());
    if !ok {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if err.to_ascii_lowercase().contains("password") || err.contains("Encrypted") {
            return Err(Unreadable::Encrypted);
        }
        if out.stdout.is_empty() {
            return Err(Unreadable::Corrupt {
                detail: format!("pdftotext failed: {}", truncate(&err, 200)),
            });
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(Document { format: Format::Pdf, blocks: lines_to_paragraphs(&text), embedded_images: 0, pictures: Vec::new() })
}
