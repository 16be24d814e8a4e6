//! Converters in a box (issue 11): a hostile attachment cannot make LibreOffice talk to the
//! network, and no converter sees the daemon's secrets or runs without limits.
//!
//! - An `.odt` with a linked image and a linked section pointing at a listener on loopback,
//!   converted by the real LibreOffice, with the network namespace (where the kernel allows
//!   it) and without it (the fallback: LibreOffice's own link blocking alone): no connection
//!   arrives. The same file converted by a bare `soffice` does connect (the fixture is live).
//! - A `.docx` with an external image relationship: read natively, nothing fetched.
//! - A converter script run by the real `studio-intake check`, started with `INTAKE_*`
//!   passwords in its environment: it sees only PATH, HOME, TMPDIR and LANG, another network
//!   namespace, and the configured memory and process limits.
//! - `require_isolation` without isolation (turned off, or a kernel that gives none: the
//!   binary run where user and network namespaces are limited to zero): the file is answered
//!   as unreadable, the converter never runs, and the start-up warning says why, once.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use studio_intake::convert::{Converters, Sandbox};
use studio_intake::core::grid::{self, Format};
use studio_intake::core::{Limits, Unreadable};

/// Counts the connections made to a port on 127.0.0.1 (keeping each request's first line).
struct Listener {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            loop {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
                        let mut buf = [0u8; 256];
                        let n = c.read(&mut buf).unwrap_or(0);
                        let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string();
                        h.lock().unwrap().push(line);
                    }
                    Err(_) if s.load(Ordering::Relaxed) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Listener { port, hits, stop, thread: Some(thread) }
    }

    /// Stops listening (after taking what is in the backlog) and returns the requests seen.
    fn finish(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.hits.lock().unwrap().clone()
    }
}

fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in members {
        let method = if *name == "mimetype" { zip::CompressionMethod::Stored } else { zip::CompressionMethod::Deflated };
        w.start_file(*name, SimpleFileOptions::default().compression_method(method)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// An OpenDocument text whose picture and section are links to `http://127.0.0.1:PORT/…`.
fn linked_odt(port: u16) -> Vec<u8> {
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" office:version="1.2">
<office:body><office:text>
<text:p>劳模和工匠人才创新工作室推荐审批表</text:p>
<text:p><draw:frame draw:name="img1" text:anchor-type="as-char" svg:width="2cm" svg:height="2cm"><draw:image xlink:href="http://127.0.0.1:{port}/odt-image.png" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/></draw:frame></text:p>
<text:section text:name="s1"><text:section-source xlink:href="http://127.0.0.1:{port}/odt-section.odt" xlink:type="simple"/></text:section>
</office:text></office:body></office:document-content>"#
    );
    let manifest = r#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">
<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>
<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>"#;
    zip(&[
        ("mimetype", b"application/vnd.oasis.opendocument.text"),
        ("META-INF/manifest.xml", manifest.as_bytes()),
        ("content.xml", content.as_bytes()),
    ])
}

/// A Word document whose picture is an external relationship to `http://127.0.0.1:PORT/…`.
fn linked_docx(port: u16) -> Vec<u8> {
    let types = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    let rels = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    let doc_rels = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="http://127.0.0.1:{port}/docx-image.png" TargetMode="External"/></Relationships>"#
    );
    let document = r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture"><w:body><w:p><w:r><w:t>劳模和工匠人才创新工作室推荐审批表</w:t></w:r></w:p><w:p><w:r><w:drawing><wp:inline><wp:extent cx="720000" cy="720000"/><wp:docPr id="1" name="p"/><a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture"><pic:pic><pic:nvPicPr><pic:cNvPr id="1" name="p"/><pic:cNvPicPr/></pic:nvPicPr><pic:blipFill><a:blip r:link="rId9"/></pic:blipFill><pic:spPr/></pic:pic></a:graphicData></a:graphic></wp:inline></w:drawing></w:r></w:p></w:body></w:document>"#;
    zip(&[
        ("[Content_Types].xml", types.as_bytes()),
        ("_rels/.rels", rels.as_bytes()),
        ("word/_rels/document.xml.rels", doc_rels.as_bytes()),
        ("word/document.xml", document.as_bytes()),
    ])
}

fn soffice() -> Option<Converters> {
    let c = Converters::detect(Duration::from_secs(60));
    if c.soffice.is_none() {
        println!("SKIPPED: soffice (LibreOffice) not found on PATH");
        return None;
    }
    Some(c)
}

fn convert_odt_with(sandbox: Sandbox) {
    let Some(mut conv) = soffice() else { return };
    conv.sandbox = sandbox;
    let listener = Listener::start();
    let odt = linked_odt(listener.port);
    assert_eq!(grid::sniff("附件1.odt", &odt), Format::Odt);
    let doc = grid::read("附件1.odt", &odt, &Limits::default(), &conv).unwrap();
    assert!(doc.text().contains("推荐审批表"), "converted: {:?}", doc.text());
    let hits = listener.finish();
    assert!(hits.is_empty(), "LibreOffice fetched a linked resource: {hits:?}");
}

#[test]
fn odt_links_are_not_fetched_in_the_box() {
    if let Err(e) = studio_intake::convert::network_isolation() {
        println!("SKIPPED: no network namespace on this machine ({e}); see the fallback test");
        return;
    }
    convert_odt_with(Sandbox { require_isolation: true, ..Sandbox::default() });
}

#[test]
fn odt_links_are_not_fetched_without_a_namespace_either() {
    // The fallback: the converter shares the daemon's network; only LibreOffice's profile
    // (links from untrusted documents blocked, never updated) stands in the way.
    convert_odt_with(Sandbox { isolate_network: false, ..Sandbox::default() });
}

#[test]
fn a_bare_soffice_does_fetch_the_linked_image() {
    // The control: without the box and the profile, the same file makes LibreOffice connect.
    let Some(conv) = soffice() else { return };
    let listener = Listener::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.odt"), linked_odt(listener.port)).unwrap();
    let status = Command::new(conv.soffice.unwrap())
        .arg("--headless")
        .arg(format!("-env:UserInstallation=file://{}/profile", dir.path().display()))
        .args(["--convert-to", "docx:MS Word 2007 XML", "--outdir"])
        .arg(dir.path().join("out"))
        .arg(dir.path().join("in.odt"))
        .env("HOME", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let hits = listener.finish();
    assert!(hits.iter().any(|h| h.contains("/odt-image.png")), "the fixture should be live: {hits:?}");
}

#[test]
fn docx_links_are_not_fetched() {
    let listener = Listener::start();
    let docx = linked_docx(listener.port);
    let conv = Converters::detect(Duration::from_secs(60));
    let doc = grid::read("附件1.docx", &docx, &Limits::default(), &conv).unwrap();
    assert_eq!(doc.format, Format::Docx);
    assert!(doc.text().contains("推荐审批表"));
    assert!(listener.finish().is_empty());
}

/// A fake `soffice` that records what it was given (environment, network namespace, limits)
/// and fails, as a converter that produced nothing.
fn recording_converter(dir: &Path) -> (PathBuf, PathBuf) {
    let script = dir.join("soffice");
    let out = dir.join("seen.txt");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"netns=$(readlink /proc/self/ns/net)\"; sed 's/^/limit:/' /proc/self/limits; env | sed 's/^/env:/'; }} > {out}\nexit 1\n",
            out = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script, out)
}

/// `studio-intake check --format json` over a folder holding `approval.doc`, with `config`
/// and an `INTAKE_*` password in the environment. Returns the JSON text.
fn check_doc(dir: &Path, config: &str) -> String {
    check_doc_in(dir, config, Command::new(env!("CARGO_BIN_EXE_studio-intake"))).0
}

/// [`check_doc`] with the command given (the binary, or a wrapper that runs it); also returns
/// its stderr.
fn check_doc_in(dir: &Path, config: &str, mut cmd: Command) -> (String, String) {
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grid/approval.doc"), files.join("附件1.doc")).unwrap();
    let out = cmd
        .args(["check", "--format", "json", "--config"])
        .arg(&cfg)
        .arg(&files)
        .env("INTAKE_IMAP_PASSWORD", "Canary-Imap-9d2f")
        .env("INTAKE_SMTP_PASSWORD", "Canary-Smtp-41ab")
        .env("INTAKE_DATABASE_URL", "postgres://u:Canary-Db-77@db/x")
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(json.contains("submission.unreadable_attachment"), "status {:?}\n{json}\n{stderr}", out.status);
    (json, stderr)
}

#[test]
fn a_converter_sees_no_secret_no_network_and_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (script, seen) = recording_converter(dir.path());
    let config = format!(
        "[converters]\nsoffice = \"{}\"\npdftotext = \"none\"\nmemory_limit_mb = 1024\nprocess_limit = 64\n",
        script.display()
    );
    check_doc(dir.path(), &config);
    let seen = std::fs::read_to_string(&seen).expect("the converter ran");
    let env: Vec<&str> = seen.lines().filter_map(|l| l.strip_prefix("env:")).collect();
    assert!(!seen.contains("Canary") && !seen.contains("INTAKE_"), "{seen}");
    let names: Vec<&str> = env.iter().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    for name in &names {
        // What sh itself adds (PWD, SHLVL, _) aside, only what the converter needs.
        assert!(["PATH", "HOME", "TMPDIR", "LANG", "PWD", "SHLVL", "_", "OLDPWD"].contains(name), "unexpected {name} in {names:?}");
    }
    assert!(env.iter().any(|l| l.starts_with("HOME=/") && l.contains("grid-soffice-")), "private HOME: {env:?}");
    assert!(env.contains(&"LANG=C.UTF-8"), "{env:?}");
    let limit = |name: &str| -> String {
        let line = seen.lines().filter_map(|l| l.strip_prefix("limit:")).find(|l| l.starts_with(name)).unwrap_or("");
        line[name.len().min(line.len())..].split_whitespace().next().unwrap_or("").to_string()
    };
    assert_eq!(limit("Max address space"), (1024u64 << 20).to_string(), "{seen}");
    assert_eq!(limit("Max processes"), "64", "{seen}");
    assert_eq!(limit("Max core file size"), "0", "{seen}");
    assert_ne!(limit("Max file size"), "unlimited", "{seen}");
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let theirs = seen.lines().find_map(|l| l.strip_prefix("netns=")).unwrap_or("");
    if studio_intake::convert::network_isolation().is_ok() {
        assert_ne!(theirs, ours.to_string_lossy(), "the converter has a network namespace of its own");
    } else {
        println!("no network namespace here ({:?}): the converter shares ours", studio_intake::convert::network_isolation());
    }
}

#[test]
fn required_isolation_that_is_missing_refuses_to_convert() {
    let dir = tempfile::tempdir().unwrap();
    let (script, seen) = recording_converter(dir.path());
    let config = format!(
        "[converters]\nsoffice = \"{}\"\npdftotext = \"none\"\nisolate_network = false\nrequire_isolation = true\n",
        script.display()
    );
    let json = check_doc(dir.path(), &config);
    assert!(!seen.exists(), "the converter must not run");
    assert!(json.contains("另存为.docx"), "the sender is told what to send instead: {json}");
}

#[test]
fn a_converter_over_its_memory_limit_fails_cleanly() {
    let Some(mut conv) = soffice() else { return };
    conv.sandbox.memory_limit_bytes = 64 << 20;
    let doc = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grid/approval.doc")).unwrap();
    let start = std::time::Instant::now();
    match grid::read("附件1.doc", &doc, &Limits::default(), &conv) {
        Err(Unreadable::ConverterFailed { .. }) => {}
        other => panic!("LibreOffice in 64 MiB: {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(30));
}

/// The real binary on a kernel that gives it no namespace: run inside a user namespace of
/// its own (`unshare -r`) whose limits allow no further user or network namespace.
fn without_namespaces() -> Option<Command> {
    let script = "echo 0 > /proc/sys/user/max_user_namespaces && echo 0 > /proc/sys/user/max_net_namespaces && exec \"$0\" \"$@\"";
    let ok = Command::new("unshare").args(["-r", "sh", "-c", script, "true"]).status().is_ok_and(|s| s.success());
    if !ok {
        println!("SKIPPED: cannot make a namespace-less environment here (unshare -r)");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-r", "sh", "-c", script, env!("CARGO_BIN_EXE_studio-intake")]);
    Some(cmd)
}

#[test]
fn where_no_namespace_can_be_made_the_daemon_says_so_and_required_isolation_refuses() {
    let Some(cmd) = without_namespaces() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (script, seen) = recording_converter(dir.path());
    let config = format!("[converters]\nsoffice = \"{}\"\npdftotext = \"none\"\nrequire_isolation = true\n", script.display());
    let (json, stderr) = check_doc_in(dir.path(), &config, cmd);
    assert!(stderr.contains("converters cannot be cut off from the network here"), "said once at start: {stderr}");
    assert_eq!(stderr.matches("cannot be cut off").count(), 1, "{stderr}");
    assert!(!seen.exists(), "the converter must not run");
    assert!(json.contains("另存为.docx"), "{json}");

    // Not required: the converter runs, in the daemon's network namespace, still boxed.
    let Some(cmd) = without_namespaces() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (script, seen) = recording_converter(dir.path());
    let config = format!("[converters]\nsoffice = \"{}\"\npdftotext = \"none\"\n", script.display());
    check_doc_in(dir.path(), &config, cmd);
    let seen = std::fs::read_to_string(&seen).expect("the converter ran");
    assert!(!seen.contains("Canary") && !seen.contains("INTAKE_"), "{seen}");
}
