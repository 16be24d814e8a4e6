//! Benchmark of the pure core: generated submissions (a unit with 2 studios: 2 approval
//! forms, 1 summary table, 2 materials, 2 photos) through `core::process`, against the
//! floor of only base64-decoding and inflating the same attachments.
//!
//! `cargo run --release --bin bench-core [-- SECONDS]` prints submissions/s, MB/s, peak memory.

use std::io::Read;
use std::time::{Duration, Instant};

use base64::Engine;
use studio_intake::config::Config;
use studio_intake::convert::Converters;
use studio_intake::core::{self, Context, grid::{self, Format}, mime};
use studio_intake::fixtures::{self, MailClient, UnitSpec};

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let clients = [MailClient::Outlook, MailClient::Foxmail, MailClient::QqMail, MailClient::AppleMail, MailClient::Webmail163];
    let mut mails = Vec::new();
    for i in 0..10 {
        let unit = UnitSpec::sample(i, 2);
        let spec = fixtures::submission_mail(&unit, clients[i % clients.len()], &Default::default());
        mails.push(fixtures::build_eml(&spec));
    }
    let bytes_per_round: usize = mails.iter().map(Vec::len).sum();
    let config = Config::builtin();
    let converters = Converters::none();
    let ctx = Context::new(config.policy(), &converters);
    let limits = &config.limits;

    // Warm up and check the inputs are what we think they are. The floor's inputs are the
    // attachments the core itself finds in the mails (re-encoded as plain base64), so both
    // measure the same files (members of a mailed zip are inflated with their zip, not again).
    let mut encoded: Vec<Vec<String>> = Vec::new();
    let mut parsed = Vec::new();
    for m in &mails {
        let o = core::process(m, &ctx).expect("a mail");
        assert_eq!(o.submission.studios.len(), 2, "generated unit has 2 studios");
        let msg = mime::parse(m, limits).expect("a mail");
        assert!(msg.attachments.iter().all(|a| a.problem.is_none()), "generated attachments are readable");
        encoded.push(msg.attachments.iter().filter(|a| a.archive.is_none()).map(|a| base64::engine::general_purpose::STANDARD.encode(&a.data)).collect());
        parsed.push(msg);
    }
    let attachments: usize = parsed.iter().map(|m| m.attachments.len()).sum();

    let (core_rate, core_rounds) = measure(seconds, || {
        for m in &mails {
            std::hint::black_box(core::process(m, &ctx).expect("a mail"));
        }
    });
    let (floor_rate, _) = measure(seconds, || {
        for atts in &encoded {
            for b64 in atts {
                let data = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
                std::hint::black_box(inflate_all(&data));
            }
        }
    });
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
    println!("peak memory (VmHWM): {}", peak_memory().unwrap_or_else(|| "unknown".into()));
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
