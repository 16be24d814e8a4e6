//! Process-wide counters, gauges and one histogram, rendered in the Prometheus text
//! exposition format (version 0.0.4) for `GET /metrics` (see [`crate::health`]).
//!
//! Plain atomics; labelled counters keep their few label values in a `Mutex<BTreeMap>` (the
//! label sets are small and bounded: verdicts and finding codes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Upper bounds (seconds) of the `processing_seconds` buckets; `+Inf` is implied.
pub const PROCESSING_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A counter with one label.
#[derive(Default)]
pub struct LabelledCounter(Mutex<BTreeMap<String, u64>>);

impl LabelledCounter {
    pub fn inc(&self, label: &str) {
        self.add(label, 1);
    }

    pub fn add(&self, label: &str, n: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(label) {
            Some(v) => *v += n,
            None => {
                map.insert(label.to_owned(), n);
            }
        }
    }

    pub fn get(&self, label: &str) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(label).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// A histogram with the fixed [`PROCESSING_BUCKETS`].
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; PROCESSING_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_nanos: AtomicU64::new(0), count: AtomicU64::new(0) }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = PROCESSING_BUCKETS.iter().position(|&le| secs <= le).unwrap_or(PROCESSING_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// All metrics of the process; get it with [`metrics()`].
#[derive(Default)]
pub struct Metrics {
    pub mails_processed: LabelledCounter,
    pub findings: LabelledCounter,
    pub outbox_sent: AtomicU64,
    pub outbox_retries: AtomicU64,
    pub outbox_dead: AtomicU64,
    pub imap_reconnects: AtomicU64,
    pub processing: Histogram,
    pub outbox_depth: AtomicI64,
    /// Mails set aside after repeated failures (in the failed folder), as the store counts them.
    pub mails_failed: AtomicI64,
    /// Mails this process set aside since it started.
    pub mails_set_aside: AtomicU64,
    /// Unix time in milliseconds of the last successful mailbox pass or wake; 0 = never.
    last_contact_ms: AtomicI64,
    /// Unix time in milliseconds since this instance polls the mailbox; 0 = it does not.
    polling_since_ms: AtomicI64,
}

/// The process-global registry.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// A message given up on after repeated failures (moved to the failed folder).
    pub fn mail_set_aside(&self) {
        self.mails_set_aside.fetch_add(1, Ordering::Relaxed);
        self.mails_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_mails_failed(&self, n: i64) {
        self.mails_failed.store(n, Ordering::Relaxed);
    }

    /// One message recorded with this verdict (`accepted`, `rejected`, `ignored`).
    pub fn mail_processed(&self, verdict: &str, finding_codes: impl IntoIterator<Item = impl AsRef<str>>, took: Duration) {
        self.mails_processed.inc(verdict);
        for code in finding_codes {
            self.findings.inc(code.as_ref());
        }
        self.processing.observe(took);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The mailbox answered: a pass finished or a wait ended normally.
    pub fn mailbox_contact(&self) {
        self.last_contact_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// This instance holds the mailbox lease and polls from now on (`false`: it stopped, or
    /// stands by while another instance polls).
    pub fn set_polling(&self, polling: bool) {
        let since = if polling { Utc::now().timestamp_millis() } else { 0 };
        self.polling_since_ms.store(since, Ordering::Relaxed);
    }

    pub fn polling_since(&self) -> Option<DateTime<Utc>> {
        match self.polling_since_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    pub fn last_mailbox_contact(&self) -> Option<DateTime<Utc>> {
        match self.last_contact_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    pub fn set_outbox_depth(&self, depth: i64) {
        self.outbox_depth.store(depth, Ordering::Relaxed);
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let o = &mut out;
        labelled(o, "studio_intake_mails_processed_total", "Mails recorded, by verdict.", "verdict", &self.mails_processed);
        labelled(o, "studio_intake_findings_total", "Findings reported, by code.", "code", &self.findings);
        counter(o, "studio_intake_outbox_sent_total", "Outgoing mails sent.", &self.outbox_sent);
        counter(o, "studio_intake_outbox_retries_total", "Outgoing mails that failed and were scheduled again.", &self.outbox_retries);
        counter(o, "studio_intake_outbox_dead_total", "Outgoing mails given up on (dead letters).", &self.outbox_dead);
        counter(o, "studio_intake_imap_reconnects_total", "IMAP reconnections after a failed or ended session.", &self.imap_reconnects);
        counter(o, "studio_intake_mails_set_aside_total", "Mails given up on after repeated failures and moved to the failed folder.", &self.mails_set_aside);
        header(o, "studio_intake_mails_failed", "Mails in the failed folder (set aside, waiting for staff).", "gauge");
        let _ = writeln!(o, "studio_intake_mails_failed {}", self.mails_failed.load(Ordering::Relaxed));
        header(o, "studio_intake_outbox_depth", "Mails waiting in the outbox (pending or being sent).", "gauge");
        let _ = writeln!(o, "studio_intake_outbox_depth {}", self.outbox_depth.load(Ordering::Relaxed));
        header(o, "studio_intake_last_mailbox_contact_timestamp_seconds", "Unix time of the last successful mailbox contact (0: none yet).", "gauge");
        let ms = self.last_contact_ms.load(Ordering::Relaxed);
        let _ = writeln!(o, "studio_intake_last_mailbox_contact_timestamp_seconds {}", number(ms as f64 / 1000.0));
        let h = &self.processing;
        let name = "studio_intake_processing_seconds";
        header(o, name, "Time to process and record one stored message.", "histogram");
        let mut cumulative = 0;
        for (i, le) in PROCESSING_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(o, "{name}_bucket{{le=\"{}\"}} {cumulative}", number(*le));
        }
        cumulative += h.buckets[PROCESSING_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(o, "{name}_sum {}", number(h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9));
        // Read apart from the buckets: use the cumulative total so that `_count` equals the
        // `+Inf` bucket in every scrape.
        let _ = writeln!(o, "{name}_count {cumulative}");
        out
    }
}

fn header(o: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn counter(o: &mut String, name: &str, help: &str, c: &AtomicU64) {
    header(o, name, help, "counter");
    let _ = writeln!(o, "{name} {}", c.load(Ordering::Relaxed));
}

fn labelled(o: &mut String, name: &str, help: &str, label: &str, c: &LabelledCounter) {
    header(o, name, help, "counter");
    for (value, n) in c.snapshot() {
        let _ = writeln!(o, "{name}{{{label}=\"{}\"}} {n}", escape(&value));
    }
}

/// A label value: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A float as Prometheus reads it (`0.05`, `1`, `30`).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_exposition_format() {
        let m = Metrics::default();
        m.mail_processed("accepted", ["photo.small"], Duration::from_millis(70));
        m.mail_processed("rejected", Vec::<String>::new(), Duration::from_secs(40));
        m.findings.inc("we\"ird\\\n");
        Metrics::inc(&m.outbox_retries);
        let text = m.render();
        assert!(text.contains("# TYPE studio_intake_mails_processed_total counter\n"), "{text}");
        assert!(text.contains("studio_intake_mails_processed_total{verdict=\"accepted\"} 1\n"));
        assert!(text.contains("studio_intake_findings_total{code=\"photo.small\"} 1\n"));
        assert!(text.contains("studio_intake_findings_total{code=\"we\\\"ird\\\\\\n\"} 1\n"));
        assert!(text.contains("studio_intake_outbox_retries_total 1\n"));
        assert!(text.contains("studio_intake_processing_seconds_bucket{le=\"0.05\"} 0\n"));
        assert!(text.contains("studio_intake_processing_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("studio_intake_processing_seconds_bucket{le=\"30\"} 1\n"));
        assert!(text.contains("studio_intake_processing_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("studio_intake_processing_seconds_count 2\n"));
        assert!(text.contains("studio_intake_processing_seconds_sum 40.07\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("not a sample: {line}"));
        }
    }
}
