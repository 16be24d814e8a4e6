//! Optional external converters: LibreOffice `soffice` (legacy Word/WPS/ODT → docx,
//! odd `.xls`/`.et` → xlsx) and poppler `pdftotext`, run in a box ([`Sandbox`]): a private
//! temp folder with fixed file names that is also HOME, a cleared environment (PATH, HOME,
//! LANG, TMPDIR and nothing else: no `INTAKE_*` password reaches them), a network namespace
//! of their own (no interface but a loopback that is down) where the kernel allows it,
//! memory/process/file-size limits, and a timeout that kills the whole process group.
//! LibreOffice additionally gets a private profile that blocks linked content (images,
//! OLE links, DDE) from untrusted documents, so an attachment cannot make it fetch a URL
//! even where no namespace can be had.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::core::grid::{Convert, DOC_NAME, Document, Format, PDF_NAME, lines_to_paragraphs, read_converted, truncate};
use crate::core::{Limits, Unreadable};

/// LibreOffice and poppler as found on this machine (or configured), run in a [`Sandbox`]:
/// the [`Convert`] implementation the daemon gives the core. `None` = not available.
#[derive(Debug, Clone, Default)]
pub struct Converters {
    /// LibreOffice `soffice` (for `.doc`, `.wps`, `.et`, `.odt`).
    pub soffice: Option<PathBuf>,
    /// poppler `pdftotext`.
    pub pdftotext: Option<PathBuf>,
    pub timeout: Duration,
    /// The box each converter run gets (environment, network namespace, limits).
    pub sandbox: Sandbox,
}

impl Converters {
    /// No external programs: legacy formats become [`Unreadable::Unsupported`].
    pub fn none() -> Self {
        Converters { soffice: None, pdftotext: None, timeout: Duration::from_secs(60), sandbox: Sandbox::default() }
    }

    /// Looks for `soffice`/`libreoffice` and `pdftotext` on `PATH` (and LibreOffice's usual
    /// install folders).
    pub fn detect(timeout: Duration) -> Self {
        Converters {
            soffice: find_program(&["soffice", "libreoffice"]).or_else(find_soffice_elsewhere),
            pdftotext: find_program(&["pdftotext"]),
            timeout,
            sandbox: Sandbox::default(),
        }
    }
}

impl Convert for Converters {
    fn can_office(&self) -> bool {
        self.soffice.is_some()
    }
    fn can_pdf(&self) -> bool {
        self.pdftotext.is_some()
    }
    fn office(&self, data: &[u8], format: Format, in_ext: Option<&str>, limits: &Limits) -> Result<Document, Unreadable> {
        via_soffice_as(data, format, in_ext, limits, self)
    }
    fn pdf(&self, data: &[u8], limits: &Limits) -> Result<Document, Unreadable> {
        via_pdftotext(data, limits, self)
    }
}

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

/// How each converter run is boxed in: `[converters]` `isolate_network`, `require_isolation`,
/// `memory_limit_mb`, `process_limit` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Give each run a network namespace of its own (a user namespace too when the daemon is
    /// not privileged): the converter sees no interface but a loopback that is down.
    pub isolate_network: bool,
    /// Refuse to run a converter when no namespace can be made (the file is then reported as
    /// unreadable, asking for `.docx`), instead of running it with only LibreOffice's own
    /// link blocking between a hostile file and the network.
    pub require_isolation: bool,
    /// Address-space limit of each converter process, bytes (0: none).
    pub memory_limit_bytes: u64,
    /// Processes and threads a converter may have (0: none). Counted in its own user
    /// namespace when it has one; a root daemon without one is not limited by the kernel.
    pub process_limit: u64,
}

impl Default for Sandbox {
    fn default() -> Self {
        // soffice converting a form peaks near 0.5 GB of address space; 2 GiB leaves room
        // for a photo-heavy document and still stops a runaway one.
        Sandbox { isolate_network: true, require_isolation: false, memory_limit_bytes: 2048 << 20, process_limit: 256 }
    }
}

/// Whether this process can give a converter a network namespace of its own. Tried once, by
/// running `true` in the box; the first call logs the answer (a warning when unavailable).
pub fn network_isolation() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let r = probe_network_isolation();
            match &r {
                Ok(()) => tracing::info!("converters run in a network namespace of their own"),
                Err(e) => tracing::warn!(
                    reason = %e,
                    "converters cannot be cut off from the network here (no network namespace); \
                     LibreOffice still blocks linked content. Set [converters] require_isolation = true \
                     to refuse conversions instead"
                ),
            }
            r
        })
        .clone()
}

fn probe_network_isolation() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let prog = find_program(&["true"]).unwrap_or_else(|| PathBuf::from("/bin/true"));
        let mut cmd = Command::new(&prog);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).env_clear();
        let probe = Sandbox { isolate_network: true, require_isolation: true, memory_limit_bytes: 0, process_limit: 0 };
        Jail::new(&probe, 0).apply(&mut cmd);
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("{} in a new network namespace exited with {s}", prog.display())),
            Err(e) => Err(format!("cannot create a network namespace: {e}")),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("network namespaces need Linux".into())
    }
}

/// What the child does between fork and exec, prepared before the fork (nothing may
/// allocate after it).
#[cfg(target_os = "linux")]
struct Jail {
    netns: bool,
    required: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    rlimits: Vec<(Resource, u64)>,
}

/// The resource argument of `setrlimit` (glibc declares its own type for it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(all(target_os = "linux", not(target_env = "gnu")))]
type Resource = libc::c_int;

#[cfg(target_os = "linux")]
impl Jail {
    /// `max_file_bytes`: the largest file the converter may write (0: no limit).
    fn new(sandbox: &Sandbox, max_file_bytes: u64) -> Jail {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut rlimits = vec![(libc::RLIMIT_CORE, 0)];
        if sandbox.memory_limit_bytes > 0 {
            rlimits.push((libc::RLIMIT_AS, sandbox.memory_limit_bytes));
        }
        if sandbox.process_limit > 0 {
            rlimits.push((libc::RLIMIT_NPROC, sandbox.process_limit));
        }
        if max_file_bytes > 0 {
            rlimits.push((libc::RLIMIT_FSIZE, max_file_bytes));
        }
        Jail {
            netns: sandbox.isolate_network,
            required: sandbox.require_isolation,
            // The daemon's own ids, mapped to themselves: files keep their owner, and the
            // child has no capability outside the namespace.
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
            rlimits,
        }
    }

    fn apply(self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure only makes system calls (prctl, unshare, open/write/close,
        // setrlimit) on data prepared before the fork; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || self.enter());
        }
    }

    fn enter(&self) -> std::io::Result<()> {
        use std::io::Error;
        // SAFETY: plain system calls on valid pointers (see `apply`).
        unsafe {
            // Die with the daemon; never gain privileges through a setuid program.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong);
            if self.netns {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) == 0 {
                    // Inside a fresh user namespace the ids must be mapped, or every file the
                    // converter creates fails (EOVERFLOW): no way back, so fail either way.
                    if !write_proc(c"/proc/self/setgroups", b"deny")
                        || !write_proc(c"/proc/self/uid_map", &self.uid_map)
                        || !write_proc(c"/proc/self/gid_map", &self.gid_map)
                    {
                        return Err(Error::last_os_error());
                    }
                } else if libc::unshare(libc::CLONE_NEWNET) != 0 && self.required {
                    // (Privileged without user namespaces: the plain network namespace.)
                    return Err(Error::last_os_error());
                }
            }
            for &(resource, value) in &self.rlimits {
                let lim = libc::rlimit { rlim_cur: value as libc::rlim_t, rlim_max: value as libc::rlim_t };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> bool {
    // SAFETY: a valid C string and buffer; the descriptor is closed on every path.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        n == data.len() as isize
    }
}

/// Puts `cmd` in the box: the environment cleared but for PATH, HOME (= `home`, the run's
/// private folder), TMPDIR and LANG; and, on Linux, the namespace and limits of `sandbox`.
/// Refuses (with the reason) when isolation is required and this platform has none.
fn boxed(cmd: &mut Command, home: &Path, converters: &Converters, max_file_bytes: u64) -> Result<(), String> {
    let sandbox = &converters.sandbox;
    if sandbox.isolate_network && sandbox.require_isolation {
        network_isolation().map_err(|e| format!("network isolation required but unavailable: {e}"))?;
    } else if sandbox.require_isolation {
        return Err("network isolation required but turned off ([converters] isolate_network = false)".into());
    }
    let tmp = home.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("temp dir: {e}"))?;
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("HOME", home)
        .env("TMPDIR", &tmp)
        .env("LANG", "C.UTF-8")
        .current_dir(home);
    #[cfg(target_os = "linux")]
    Jail::new(sandbox, max_file_bytes).apply(cmd);
    #[cfg(not(target_os = "linux"))]
    let _ = max_file_bytes;
    Ok(())
}

/// The LibreOffice user profile each run starts from: linked content of documents outside
/// the (empty) trusted locations is never fetched (images, OLE, sounds…), links are never
/// updated on load in Writer (2 = never) or Calc (1 = never), formulas are never recalculated
/// on load (1 = never; a `WEBSERVICE()` cell would fetch a URL), and no macro runs.
/// (Paths and values as in LibreOffice 7.4's `main.xcd`.)
const SOFFICE_PROFILE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="BlockUntrustedRefererLinks" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Writer/Content/Update"><prop oor:name="Link" oor:op="fuse"><value>2</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Content/Update"><prop oor:name="Link" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>1</value></prop></item>
</oor:items>
"#;

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
    #[cfg(target_os = "linux")]
    // SAFETY: kill(2) on the group whose id is the leader's pid (process_group(0)).
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
    #[cfg(not(target_os = "linux"))]
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
    via_soffice_as(data, format, None, limits, converters)
}

/// [`via_soffice`] for an input LibreOffice should open as `in_ext` (`html`, `mht`, `rtf`:
/// the parts Word embeds with `w:altChunk`).
pub fn via_soffice_as(
    data: &[u8],
    format: Format,
    in_ext_override: Option<&str>,
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
    if let Some(ext) = in_ext_override {
        in_ext = ext;
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
    let user = profile.join("user");
    std::fs::create_dir_all(&user)
        .and_then(|()| std::fs::write(user.join("registrymodifications.xcu"), SOFFICE_PROFILE))
        .map_err(|e| failed(human, &resend, format!("profile: {e}")))?;
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
        .arg(&input);
    let max_file = limits.max_attachment_bytes.saturating_mul(4).saturating_add(64 << 20);
    boxed(&mut cmd, dir.path(), converters, max_file).map_err(|e| failed(human, &resend, e))?;
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
    read_converted(&bytes, out_ext, format, &conv_limits)
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
    cmd.arg("-layout").arg("-enc").arg("UTF-8").arg(&input).arg("-");
    boxed(&mut cmd, dir.path(), converters, 64 << 20).map_err(|e| failed(PDF_NAME, ".docx", e))?;
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
