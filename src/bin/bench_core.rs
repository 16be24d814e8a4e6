//! Benchmark of the pure core: generated submissions (a unit with 2 studios: 2 approval
//! forms, 1 summary table, 2 materials, 2 photos) through `core::process`, against the
//! floor of only base64-decoding and inflating the same attachments; then a set of camera
//! mails as phones send them (a 12 MP JPEG of 3-5 MB, a HEIC photo, a 附件3 with a camera
//! picture pasted in), timed per submission on their own.
//!
//! `cargo run --release --features fixtures --bin bench-core [-- SECONDS] [--write DIR]
//! [--only core|camera]`
//! - `SECONDS`: time per measurement (default 5).
//! - `--write DIR`: also write every mail of both sets to `DIR` (`office-NN.eml`,
//!   `camera-NN.eml`) to feed `studio-intake check` and `bench/python_pipeline.py`
//!   (`bench/check_vs_python.sh`); with `SECONDS` 0, only write them.
//! - `--only core` / `--only camera`: time only the core over that set (for a profiler).

use std::io::Read;
use std::time::{Duration, Instant};

use base64::Engine;
use studio_intake::config::Config;
use studio_intake::convert::Converters;
use studio_intake::core::{self, Context, grid::{self, Format}, mime};
use studio_intake::fixtures::{self, MailClient, SubmissionOptions, UnitSpec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let write_dir = flag("--write");
    let only = flag("--only");

    let clients = [MailClient::Outlook, MailClient::Foxmail, MailClient::QqMail, MailClient::AppleMail, MailClient::Webmail163];
    let mut mails = Vec::new();
    if only.as_deref() != Some("camera") {
        for i in 0..10 {
            let unit = UnitSpec::sample(i, 2);
            let spec = fixtures::submission_mail(&unit, clients[i % clients.len()], &Default::default());
            mails.push(fixtures::build_eml(&spec));
        }
    }
    let camera = if only.as_deref() == Some("core") { Vec::new() } else { camera_mails() };
    if let Some(dir) = &write_dir {
        write_mails(dir, &mails, &camera);
        if seconds == 0.0 {
            return;
        }
    }

    let config = Config::builtin();
    let converters = Converters::none();
    let ctx = Context::new(config.policy(), &converters);
    let limits = &config.limits;

    // Warm up and check the inputs are what we think they are.
    for m in &mails {
        let o = core::process(m, &ctx).expect("a mail");
        assert_eq!(o.submission.studios.len(), 2, "generated unit has 2 studios");
    }
    for m in &camera {
        let o = core::process(m, &ctx).expect("a mail");
        assert_eq!(o.submission.studios.len(), 1, "camera mail is from a unit with 1 studio");
        assert!(o.message.attachments.iter().all(|a| a.problem.is_none()), "camera attachments are readable");
        assert_eq!(o.submission.photos.len(), 2, "the camera JPEG and the HEIC are photos");
    }
    match only.as_deref() {
        Some("core") => {
            let (rate, rounds) = measure(seconds, || run_core(&mails, &ctx));
            println!("core only: {:.1} submissions/s ({rounds} rounds)", rate * mails.len() as f64);
            return;
        }
        Some("camera") => {
            let (rate, rounds) = measure(seconds, || run_core(&camera, &ctx));
            println!("camera only: {:.3} ms per submission ({rounds} rounds)", 1000.0 / rate / camera.len() as f64);
            return;
        }
        _ => {}
    }

    // The floor's inputs are the attachments the core itself finds in the mails (re-encoded
    // as plain base64), so both measure the same files (members of a mailed zip are inflated
    // with their zip, not again).
    let floor_inputs = |set: &[Vec<u8>]| -> Vec<Vec<String>> {
        set.iter()
            .map(|m| {
                let msg = mime::parse(m, limits).expect("a mail");
                assert!(msg.attachments.iter().all(|a| a.problem.is_none()), "generated attachments are readable");
                msg.attachments.iter().filter(|a| a.archive.is_none()).map(|a| base64::engine::general_purpose::STANDARD.encode(&a.data)).collect()
            })
            .collect()
    };
    let encoded = floor_inputs(&mails);
    let parsed: Vec<_> = mails.iter().map(|m| mime::parse(m, limits).expect("a mail")).collect();
    let attachments: usize = parsed.iter().map(|m| m.attachments.len()).sum();
    let bytes_per_round: usize = mails.iter().map(Vec::len).sum();

    let (core_rate, core_rounds) = measure(seconds, || run_core(&mails, &ctx));
    let (floor_rate, _) = measure(seconds, || run_floor(&encoded));
    // Stages, each measured alone: mime (parse + decode + unzip), grid (sniff + read of the
    // documents), the rest (photos, forms, grouping, rules) = whole core minus both.
    let (mime_rate, _) = measure(seconds / 2.0, || {
        for m in &mails {
            std::hint::black_box(mime::parse(m, limits).expect("a mail"));
        }
    });
    let (grid_rate, _) = measure(seconds / 2.0, || {
        for msg in &parsed {
            for a in &msg.attachments {
                if !matches!(grid::sniff(&a.file_name, &a.data), Format::Jpeg | Format::Png | Format::Gif | Format::Bmp | Format::Webp | Format::Heic | Format::Tiff) {
                    let _ = std::hint::black_box(grid::read(&a.file_name, &a.data, limits, &converters));
                }
            }
        }
    });
    let n = mails.len() as f64;
    let mb = bytes_per_round as f64 / 1e6;
    println!("core:  {:8.1} submissions/s  {:7.1} MB/s  ({} rounds of {} mails, {:.2} MB each round)", core_rate * n, core_rate * mb, core_rounds, mails.len(), mb);
    println!("floor: {:8.1} submissions/s  {:7.1} MB/s  (base64 decode + inflate of the same attachments)", floor_rate * n, floor_rate * mb);
    println!("ratio: core takes {:.2}x the floor (target: within 3x)", floor_rate / core_rate);
    let ms = |rate: f64| 1000.0 / rate / n;
    let (t_core, t_mime, t_grid) = (ms(core_rate), ms(mime_rate), ms(grid_rate));
    println!(
        "per submission ({attachments} attachments in {} mails): core {t_core:.3} ms = mime {t_mime:.3} ms + grid {t_grid:.3} ms + photos/forms/rules {:.3} ms; floor {:.3} ms",
        mails.len(),
        (t_core - t_mime - t_grid).max(0.0),
        ms(floor_rate)
    );

    // Camera mails: few, large; per submission.
    let camera_encoded = floor_inputs(&camera);
    let camera_mb = camera.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let (cam_rate, cam_rounds) = measure(seconds, || run_core(&camera, &ctx));
    let (cam_floor, _) = measure(seconds, || run_floor(&camera_encoded));
    let cn = camera.len() as f64;
    println!(
        "camera mails ({} mails, {:.1} MB each on average: a 12 MP JPEG, a HEIC, a 附件3 with a camera picture inside): core {:.3} ms per submission ({:.0} MB/s, {cam_rounds} rounds), floor {:.3} ms, ratio {:.2}x",
        camera.len(),
        camera_mb / cn,
        1000.0 / cam_rate / cn,
        cam_rate * camera_mb,
        1000.0 / cam_floor / cn,
        cam_floor / cam_rate
    );
    println!("peak memory (VmHWM): {}", peak_memory().unwrap_or_else(|| "unknown".into()));
}

fn run_core(mails: &[Vec<u8>], ctx: &Context) {
    for m in mails {
        std::hint::black_box(core::process(m, ctx).expect("a mail"));
    }
}

fn run_floor(encoded: &[Vec<String>]) {
    for atts in encoded {
        for b64 in atts {
            let data = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
            std::hint::black_box(inflate_all(&data));
        }
    }
}

/// Mails as phones send them: a unit with one studio, its 附件1 and 附件2, a 附件3 with a
/// camera picture (3264x2448) pasted in, a 12 MP camera JPEG (4032x3024, 3-5 MB) and a HEIC
/// photo of the same size (≈2.5 MB of payload).
fn camera_mails() -> Vec<Vec<u8>> {
    let clients = [MailClient::AppleMail, MailClient::QqMail, MailClient::Outlook];
    let options = SubmissionOptions { photos: false, ..Default::default() };
    clients
        .iter()
        .enumerate()
        .map(|(i, &client)| {
            let unit = UnitSpec::sample(20 + i, 1);
            let leader = unit.studios[0].leader.clone();
            let mut spec = fixtures::submission_mail(&unit, client, &options);
            let seed = 1000 + i as u64;
            for (name, data) in spec.attachments.iter_mut() {
                if name.contains("附件3") || name.contains("申报材料") {
                    let picture = fixtures::camera_jpeg(3264, 2448, seed);
                    *data = fixtures::with_picture(data, &picture, 3264, 2448);
                }
            }
            spec.attachments.push((format!("{leader}工作室场景照.jpg"), fixtures::camera_jpeg(4032, 3024, seed + 100)));
            spec.attachments.push((format!("{leader}工作室场景照2.heic"), fixtures::heic_photo(4032, 3024, 2_500_000, seed + 200)));
            fixtures::build_eml(&spec)
        })
        .collect()
}

fn write_mails(dir: &str, office: &[Vec<u8>], camera: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {dir}: {e}"));
    let named = office.iter().enumerate().map(|(i, m)| (format!("office-{i:02}.eml"), m)).chain(camera.iter().enumerate().map(|(i, m)| (format!("camera-{i:02}.eml"), m)));
    for (name, m) in named {
        let path = std::path::Path::new(dir).join(name);
        std::fs::write(&path, m).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    println!("wrote {} mails to {dir}", office.len() + camera.len());
}

/// Runs `f` repeatedly for about `seconds`; returns rounds per second and the round count.
fn measure(seconds: f64, mut f: impl FnMut()) -> (f64, u64) {
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) || rounds < 3 {
        f();
        rounds += 1;
    }
    (rounds as f64 / start.elapsed().as_secs_f64(), rounds)
}

/// Inflate every member of a zip container (.docx/.xlsx); other data as is.
fn inflate_all(data: &[u8]) -> usize {
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(data)) else { return data.len() };
    let mut total = 0;
    let mut buf = Vec::new();
    for i in 0..archive.len() {
        if let Ok(mut f) = archive.by_index(i) {
            buf.clear();
            total += f.read_to_end(&mut buf).unwrap_or(0);
        }
    }
    total
}

fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
}
