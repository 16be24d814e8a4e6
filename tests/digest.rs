//! The staff digest and the consolidated 推荐汇总表: the schedule (pure, and the loop under
//! tokio's paused clock), no double send across restarts and instances (SQLite and
//! PostgreSQL), the numbers against a database seeded through the real pipeline, the
//! workbook read back cell by cell, and delivery through the real Postfix/Dovecot stack.
//!
//! PostgreSQL: `INTAKE_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! a fresh database per test.

#[path = "support/mailstack.rs"]
mod mailstack;

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calamine::{Data, Reader, Xlsx};
use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use chrono_tz::Asia::Shanghai;
use sqlx::{Connection, Executor};
use studio_intake::config::{Config, OutboxKind, SourceKind, Tls, Unit, UnitKind};
use studio_intake::core::forms::SUMMARY_COLUMNS;
use studio_intake::app::App;
use studio_intake::digest::{self, Clock, Plan, Slot, SlotKind, SlotOutcome, xlsx};
use studio_intake::fixtures::{self, MailClient, SubmissionOptions, UnitSpec};
use tokio::sync::watch;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn plan(schedule: &str) -> Plan {
    Plan::new(
        schedule,
        Shanghai,
        day("2020-08-03"),
        DateTime::parse_from_rfc3339("2020-09-25T23:59:59+08:00").unwrap(),
    )
    .unwrap()
}

fn local(s: &Slot) -> String {
    s.at.format("%Y-%m-%d %H:%M %a").to_string()
}

// ---------------------------------------------------------------------------------------------
// Schedule (pure)

#[test]
fn daily_until_the_deadline_then_one_final_then_none() {
    let p = plan("0 0 8 * * *");
    let next = p.upcoming(t("2020-09-20T09:00:00+08:00"), 10);
    let shown: Vec<(String, SlotKind)> = next.iter().map(|s| (local(s), s.kind)).collect();
    assert_eq!(
        shown,
        vec![
            ("2020-09-21 08:00 Mon".into(), SlotKind::Daily),
            ("2020-09-22 08:00 Tue".into(), SlotKind::Daily),
            ("2020-09-23 08:00 Wed".into(), SlotKind::Daily),
            ("2020-09-24 08:00 Thu".into(), SlotKind::Daily),
            ("2020-09-25 08:00 Fri".into(), SlotKind::Daily),
            ("2020-09-26 08:00 Sat".into(), SlotKind::Final),
        ]
    );
    assert_eq!(next.last().unwrap().day, day("2020-09-26"));
    // 08:00 Shanghai is 00:00 UTC.
    assert_eq!(next[0].at.with_timezone(&Utc), t("2020-09-21T00:00:00Z"));
    assert_eq!(p.next_after(t("2020-09-26T08:00:00+08:00")), None);
    assert_eq!(p.next_after(t("2021-01-01T00:00:00+08:00")), None);
    // Between the deadline and the final slot, the final is next.
    assert_eq!(p.next_after(t("2020-09-26T00:10:00+08:00")).unwrap().kind, SlotKind::Final);
    // The first slot is on the opening day, and the whole campaign has 29 + 25 daily slots.
    let all = p.upcoming(t("2020-01-01T00:00:00Z"), 1000);
    assert_eq!(local(&all[0]), "2020-08-03 08:00 Mon");
    assert_eq!(all.len(), 55);
    assert_eq!(all.iter().filter(|s| s.kind == SlotKind::Final).count(), 1);
    // Digest day = local date: 2020-09-25T16:30Z is already 09-26 in Shanghai.
    assert_eq!(p.day_of(&t("2020-09-25T16:30:00Z")), day("2020-09-26"));
    assert_eq!(p.day_of(&t("2020-09-25T15:59:59Z")), day("2020-09-25"));
    // Five fields (a Unix crontab line) are refused with a useful message.
    let err = Plan::new("0 8 * * *", Shanghai, day("2020-08-03"), DateTime::parse_from_rfc3339("2020-09-25T23:59:59+08:00").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("6 or 7"), "{err}");
}

#[test]
fn schedule_with_weekday_names_and_quartz_numbers() {
    let p = plan("0 30 9 * * Mon-Fri");
    let next = p.upcoming(t("2020-09-18T10:00:00+08:00"), 10); // a Friday, after 09:30
    let shown: Vec<String> = next.iter().map(local).collect();
    assert_eq!(
        shown,
        vec![
            "2020-09-21 09:30 Mon",
            "2020-09-22 09:30 Tue",
            "2020-09-23 09:30 Wed",
            "2020-09-24 09:30 Thu",
            "2020-09-25 09:30 Fri",
            // The deadline is Friday night: the final digest is the next slot, on Monday.
            "2020-09-28 09:30 Mon",
        ]
    );
    assert_eq!(next.last().unwrap().kind, SlotKind::Final);
    // cron numbers weekdays the Quartz way: 2 = Monday (1 = Sunday).
    let p2 = plan("0 0 8 * * 2");
    for s in p2.upcoming(t("2020-08-01T00:00:00Z"), 20) {
        assert_eq!(s.at.weekday(), Weekday::Mon, "{}", local(&s));
    }
}

#[test]
fn missed_days_are_caught_up_with_one_send() {
    let p = plan("0 0 8 * * *");
    // Down from the 11th to the 14th at noon; the 10th was the last day sent.
    let due = p.due(t("2020-09-14T12:00:00+08:00"), Some(day("2020-09-10"))).unwrap();
    assert_eq!((local(&due), due.kind), ("2020-09-14 08:00 Mon".into(), SlotKind::Daily));
    // Once that day is taken nothing else is due: the 11th–13th are not sent one by one.
    assert_eq!(p.due(t("2020-09-14T12:00:00+08:00"), Some(day("2020-09-14"))), None);
    // Back before today's slot: yesterday's is the one.
    assert_eq!(local(&p.due(t("2020-09-14T07:00:00+08:00"), Some(day("2020-09-10"))).unwrap()), "2020-09-13 08:00 Sun");
    // Before the call opens: nothing; never sent and back after the final: only the final.
    assert_eq!(p.due(t("2020-08-03T07:59:59+08:00"), None), None);
    let fin = p.due(t("2020-10-30T12:00:00+08:00"), Some(day("2020-09-20"))).unwrap();
    assert_eq!((local(&fin), fin.kind), ("2020-09-26 08:00 Sat".into(), SlotKind::Final));
    assert_eq!(p.due(t("2020-10-30T12:00:00+08:00"), Some(day("2020-09-26"))), None);
    // Between the deadline and the final slot, the last daily slot (the 25th) is the due one.
    assert_eq!(local(&p.due(t("2020-09-26T01:00:00+08:00"), Some(day("2020-09-24"))).unwrap()), "2020-09-25 08:00 Fri");
}

// ---------------------------------------------------------------------------------------------
// The scheduler loop under tokio's paused clock

type Calls = Arc<Mutex<Vec<(Slot, DateTime<Utc>)>>>;

#[tokio::test(start_paused = true)]
async fn the_loop_fires_each_slot_on_time_and_ends_after_the_final() {
    let p = plan("0 0 8 * * *");
    let clock = Clock::virtual_from(t("2020-09-20T07:00:00+08:00"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let calls: Calls = Arc::default();
    let task = {
        let calls = calls.clone();
        tokio::spawn(async move {
            digest::drive(&p, clock, stop_rx, |slot, now| {
                calls.lock().unwrap().push((slot, now));
                async { Ok(()) }
            })
            .await
        })
    };
    // Start: the latest slot before now (yesterday's) is offered once, for catch-up.
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    {
        let c = calls.lock().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(local(&c[0].0), "2020-09-19 08:00 Sat");
        assert_eq!(c[0].1, t("2020-09-20T07:00:00+08:00"));
    }
    // 07:59:59: nothing yet; 08:00: today's.
    tokio::time::sleep(Duration::from_secs(29 * 60 + 59)).await;
    assert_eq!(calls.lock().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls.lock().unwrap().len(), 2);
    // Ten days later the loop has run through the final digest and returned by itself.
    tokio::time::sleep(Duration::from_secs(10 * 86400)).await;
    assert!(task.is_finished());
    task.await.unwrap();
    let c = calls.lock().unwrap();
    let shown: Vec<String> = c.iter().map(|(s, _)| format!("{} {}", local(s), s.kind.as_str())).collect();
    assert_eq!(
        shown,
        vec![
            "2020-09-19 08:00 Sat daily",
            "2020-09-20 08:00 Sun daily",
            "2020-09-21 08:00 Mon daily",
            "2020-09-22 08:00 Tue daily",
            "2020-09-23 08:00 Wed daily",
            "2020-09-24 08:00 Thu daily",
            "2020-09-25 08:00 Fri daily",
            "2020-09-26 08:00 Sat final",
        ]
    );
    // Each on the dot (the virtual clock moves only with tokio's).
    for (slot, now) in &c[1..] {
        assert_eq!(*now, slot.at.with_timezone(&Utc));
    }
    drop(stop_tx);
}

#[tokio::test(start_paused = true)]
async fn the_loop_stops_on_the_shutdown_signal() {
    let p = plan("0 0 8 * * *");
    let clock = Clock::virtual_from(t("2020-09-20T09:00:00+08:00"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let calls: Calls = Arc::default();
    let task = {
        let calls = calls.clone();
        tokio::spawn(async move {
            digest::drive(&p, clock, stop_rx, |slot, now| {
                calls.lock().unwrap().push((slot, now));
                async { Ok(()) }
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(3600)).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(1), task).await.expect("stopped").unwrap();
    // Only the start-up catch-up (today's 08:00) ran.
    assert_eq!(calls.lock().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Harness: databases and configs

fn admin_url() -> String {
    std::env::var("INTAKE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database; dropped when the guard goes.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> PgDb {
        static N: AtomicU64 = AtomicU64::new(0);
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin} ({e}); start one or set INTAKE_TEST_PG_URL"));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("digest_test_{}_{:x}_{}", std::process::id(), nanos & 0xffff_ffff, N.fetch_add(1, Ordering::Relaxed));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        conn.close().await.unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin.clone());
        let url = format!("{base}/{name}");
        PgDb { admin, name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.ok()?;
                Some(())
            })
        })
        .join();
    }
}

fn base_config(dir: &Path, db_url: &str) -> Config {
    let mut c = Config::builtin();
    c.database.url = db_url.to_owned();
    c.source.kind = SourceKind::Maildir;
    c.source.path = dir.join("inbox");
    c.outbox.kind = OutboxKind::File;
    c.outbox.path = dir.join("outbox");
    c.outbox.from = "乐山市总工会经保女工部 <intake@example.test>".into();
    c.digest.recipients = vec!["staff@example.test".into()];
    c.converters.soffice = "none".into();
    c.converters.pdftotext = "none".into();
    c
}

/// Digest rows in the outbox, by their (deterministic) Message-IDs.
async fn digest_rows(app: &App, days: &[(&str, SlotKind)]) -> Vec<bool> {
    let mut out = Vec::new();
    for (d, kind) in days {
        let id = digest::digest_message_id(&app.config, day(d), *kind);
        out.push(app.store.outgoing_by_message_id(&id).await.unwrap().is_some());
    }
    out
}

/// Two scheduler instances on one database, started a moment before 08:00 on a virtual
/// clock, then a third after a "restart": each day is queued exactly once.
async fn no_double_send(url: &str, dir: &Path) {
    let config = base_config(dir, url);
    let a = App::build(config.clone()).await.unwrap();
    let b = App::build(config.clone()).await.unwrap();

    // First: many concurrent attempts on one slot, one winner.
    let slot = plan("0 0 8 * * *").due(t("2020-09-10T09:00:00+08:00"), None).unwrap();
    let now = t("2020-09-10T09:00:00+08:00");
    let attempts = (0..8).map(|k| {
        let app = if k % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { digest::send_scheduled(&app, slot, now).await.unwrap() })
    });
    let outcomes: Vec<SlotOutcome> = futures::future::join_all(attempts).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == SlotOutcome::Queued).count(), 1, "{outcomes:?}");
    assert_eq!(a.store.outbox_depth().await.unwrap(), 1);

    // Then the real loops, both starting 0.8 s before 08:00 on the 20th.
    let (stop_tx, stop_rx) = watch::channel(false);
    let origin = t("2020-09-20T07:59:59.200+08:00");
    let la = tokio::spawn(digest::run_scheduler(a.clone(), Clock::virtual_from(origin), stop_rx.clone()));
    let lb = tokio::spawn(digest::run_scheduler(b.clone(), Clock::virtual_from(origin), stop_rx.clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop_tx.send(true).unwrap();
    la.await.unwrap().unwrap();
    lb.await.unwrap().unwrap();
    // The start-up catch-up (the 19th) and the 20th, once each.
    assert_eq!(
        digest_rows(&a, &[("2020-09-10", SlotKind::Daily), ("2020-09-19", SlotKind::Daily), ("2020-09-20", SlotKind::Daily)]).await,
        vec![true, true, true]
    );
    assert_eq!(a.store.outbox_depth().await.unwrap(), 3);

    // Restart at 09:00: the 20th is taken, nothing new.
    let c = App::build(config.clone()).await.unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let lc = tokio::spawn(digest::run_scheduler(c.clone(), Clock::virtual_from(t("2020-09-20T09:00:00+08:00")), stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    lc.await.unwrap().unwrap();
    assert_eq!(c.store.outbox_depth().await.unwrap(), 3);
    assert!(!c.store.claim_digest(day("2020-09-20"), "daily", now).await.unwrap());
    assert_eq!(c.store.last_digest_day().await.unwrap(), Some(day("2020-09-20")));
    for app in [a, b, c] {
        app.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_double_send_after_restart_or_with_two_instances_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("intake.db").display());
    no_double_send(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_double_send_after_restart_or_with_two_instances_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = PgDb::create().await;
    no_double_send(&db.url, dir.path()).await;
}

// ---------------------------------------------------------------------------------------------
// A database seeded through the real pipeline

struct Seeded {
    _dir: tempfile::TempDir,
    config: Config,
    /// Units with a configured sender, as sent.
    units: Vec<UnitSpec>,
    /// A mail from an address no unit has.
    stranger: UnitSpec,
}

/// 犍为县: two valid studios; 峨眉山市: one (below the minimum); 五通桥区: two, the second with
/// a team of 4 (rejected); and a mail from an unlisted address. Written as .eml files and run
/// through `daemon::run_once` (Maildir source, file outbox, SQLite).
async fn seed() -> Seeded {
    seed_on(None).await
}

/// [`seed`] on the given database (SQLite in the temp folder when `None`).
async fn seed_on(db_url: Option<&str>) -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let url = db_url.map(str::to_owned).unwrap_or_else(|| format!("sqlite://{}", dir.path().join("var/intake.db").display()));
    let mut config = base_config(dir.path(), &url);
    let a = UnitSpec::sample(0, 2);
    let b = UnitSpec::sample(1, 1);
    let mut c = UnitSpec::sample(2, 2);
    c.studios[1].members = 4;
    let mut stranger = UnitSpec::enterprise(0, 1);
    stranger.sender = "someone@unlisted.example".into();
    for u in [&a, &b, &c] {
        let unit = config.units.iter_mut().find(|x| x.name == u.unit).unwrap_or_else(|| panic!("{} configured", u.unit));
        if !unit.senders.contains(&u.sender) {
            unit.senders.push(u.sender.clone());
        }
    }
    // One more configured unit that never writes.
    config.units.push(Unit { name: "市交通运输系统工会".into(), kind: UnitKind::System, senders: vec!["jt@example.cn".into()] });
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for (k, u) in [&a, &b, &c, &stranger].iter().enumerate() {
        std::fs::write(inbox.join(format!("{k:02}.eml")), fixtures::submission(u, MailClient::Outlook)).unwrap();
    }
    studio_intake::daemon::run_once(config.clone()).await.unwrap();
    Seeded { _dir: dir, config, units: vec![a, b, c], stranger }
}

fn unit_row<'a>(f: &'a digest::Facts, name: &str) -> &'a digest::UnitRow {
    f.units.iter().find(|u| u.name == name).unwrap_or_else(|| panic!("no row for {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_numbers_match_a_database_seeded_through_the_pipeline() {
    let s = seed().await;
    let app = App::build(s.config.clone()).await.unwrap();
    let now = t("2020-09-22T08:00:00+08:00");
    let d = digest::build(&app.store, &app.config, now).await.unwrap();
    let f = &d.facts;
    let [a, b, c] = [&s.units[0], &s.units[1], &s.units[2]];

    // DIGEST_DUMP=folder: write the digest out to look at (text, HTML, workbook).
    if let Ok(out) = std::env::var("DIGEST_DUMP") {
        let out = Path::new(&out);
        std::fs::create_dir_all(out).unwrap();
        std::fs::write(out.join("digest.txt"), format!("{}\n\n{}", d.subject, d.text)).unwrap();
        std::fs::write(out.join("digest.html"), &d.html).unwrap();
        std::fs::write(out.join(&d.xlsx_name), &d.xlsx).unwrap();
    }
    assert_eq!(d.kind, SlotKind::Daily);
    assert_eq!(f.days_left, 3);
    assert_eq!(f.totals.mails, 4);
    // The stranger's mail is held (its sender is registered for no unit): no studio of it.
    assert_eq!(f.totals.studios, 5, "{:#?}", f.studios.iter().map(|x| (&x.unit, &x.name, &x.verdict)).collect::<Vec<_>>());
    assert_eq!(f.totals.accepted, 4);
    assert_eq!(f.totals.rejected, 1);
    assert_eq!(f.held.len(), 1);
    assert_eq!(f.held[0].sender.as_deref(), Some(s.stranger.sender.as_str()));
    assert_eq!(f.totals.units_configured, s.config.units.len() as i64);

    let ra = unit_row(f, &a.unit);
    assert_eq!((ra.mails, ra.studios, ra.accepted, ra.rejected, ra.open_errors, ra.below_minimum), (1, 2, 2, 0, 0, false));
    let rb = unit_row(f, &b.unit);
    assert_eq!((rb.mails, rb.studios, rb.accepted, rb.rejected, rb.open_errors, rb.below_minimum), (1, 1, 1, 0, 0, true));
    let rc = unit_row(f, &c.unit);
    assert_eq!((rc.mails, rc.studios, rc.accepted, rc.rejected, rc.below_minimum), (1, 2, 1, 1, true));
    assert!(rc.open_errors >= 1);
    // The rejected studio carries form.team_too_small.
    let bad = f.studios.iter().find(|x| x.name == c.studios[1].name).unwrap();
    assert_eq!(bad.verdict, "rejected");
    assert!(bad.error_codes.contains(&"form.team_too_small".to_owned()), "{:?}", bad.error_codes);
    assert!(f.findings.iter().any(|(u, st, x)| u.as_deref() == Some(c.unit.as_str())
        && st.as_deref() == Some(c.studios[1].name.as_str())
        && x.code == "form.team_too_small"));

    // Below the minimum: every county/zone union with fewer than 2 accepted — 峨眉山市 and
    // 五通桥区 among those heard from, and the silent ones; never 犍为县, never a system union.
    assert!(f.below_minimum.contains(&b.unit) && f.below_minimum.contains(&c.unit));
    assert!(!f.below_minimum.contains(&a.unit));
    assert!(f.below_minimum.contains(&"市中区总工会".to_owned()));
    assert!(!f.below_minimum.contains(&"市交通运输系统工会".to_owned()));
    assert!(!f.below_minimum.contains(&"峨眉山景区管委会工会".to_owned()));
    assert_eq!(unit_row(f, "市交通运输系统工会").minimum, None);

    // Not heard from: every configured unit but the three.
    assert_eq!(f.not_heard_from.len(), s.config.units.len() - 3);
    for u in [a, b, c] {
        assert!(!f.not_heard_from.contains(&u.unit));
    }
    assert!(f.not_heard_from.contains(&"市交通运输系统工会".to_owned()));
    assert!(f.not_heard_from.contains(&"乐山高新区工会".to_owned()));

    // The stranger.
    assert_eq!(f.unknown_senders.len(), 1, "{:?}", f.unknown_senders);
    assert_eq!(f.unknown_senders[0].0, s.stranger.sender);
    assert!(f.per_day.iter().map(|(_, n)| n).sum::<i64>() == 4);
    assert!(!f.over_quota);

    // What staff read says the same.
    assert!(d.subject.contains("收到5个工作室，通过4个"), "{}", d.subject);
    assert!(d.text.contains(&format!("studio-intake held approve {}", f.held[0].submission_id)), "{}", d.text);
    assert!(d.text.contains("距截止（2020年9月25日 23:59）还有 3 天"), "{}", d.text);
    assert!(d.text.contains("收到邮件 4 封"));
    assert!(d.text.contains(&format!("{}：邮件 1，工作室 2，通过 1，", c.unit)));
    assert!(d.text.contains("unit.below_minimum"));
    assert!(d.text.contains(&s.stranger.sender));
    assert!(d.text.contains("通过审核 4 个 / 拟命名名额 33 个"));
    assert!(!d.text.contains("campaign.over_quota"));
    // HTML for Outlook/Foxmail/QQ Mail: tables and inline styles, no <style>, no images.
    for bad in ["<style", "<img", "http://", "https://", "class=", "<div"] {
        assert!(!d.html.contains(bad), "HTML contains {bad}");
    }
    assert!(d.html.contains("bgcolor=\"#2e75b6\""), "per-day bars");
    assert!(d.html.contains(&c.studios[1].name));
    assert!(d.html.contains("form.team_too_small"));

    // Over the quota when the quota is 1.
    let mut over = s.config.clone();
    over.campaign.quota = 1;
    let d1 = digest::build(&app.store, &over, now).await.unwrap();
    assert!(d1.facts.over_quota);
    assert!(d1.text.contains("campaign.over_quota") && d1.text.contains("超过拟命名名额 1 个"), "{}", d1.text);
    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(d1.xlsx.clone())).unwrap();
    let sheet = wb.worksheet_range(xlsx::SHEET_FINDINGS).unwrap();
    assert!(sheet.rows().any(|r| r[2] == Data::String("通过数量超过命名名额〔campaign.over_quota〕".into()) && r[6] == Data::String("4".into())));
    assert!(sheet.rows().any(|r| r[0] == Data::String(b.unit.clone()) && r[2] == Data::String("推荐数量不足2个〔unit.below_minimum〕".into())));

    // After the deadline: the final digest.
    let fin = digest::build(&app.store, &app.config, t("2020-09-26T08:00:00+08:00")).await.unwrap();
    assert_eq!(fin.kind, SlotKind::Final);
    assert!(fin.text.contains("申报已于2020年9月25日 23:59截止"));
    app.store.close().await;
}

/// The same numbers on PostgreSQL (the digest's read queries on the other backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_numbers_on_postgres() {
    let db = PgDb::create().await;
    let s = seed_on(Some(&db.url)).await;
    let app = App::build(s.config.clone()).await.unwrap();
    let d = digest::build(&app.store, &app.config, t("2020-09-22T08:00:00+08:00")).await.unwrap();
    let f = &d.facts;
    assert_eq!((f.totals.mails, f.totals.studios, f.totals.accepted, f.totals.rejected), (4, 5, 4, 1));
    let rc = unit_row(f, &s.units[2].unit);
    assert_eq!((rc.mails, rc.studios, rc.accepted, rc.rejected, rc.below_minimum), (1, 2, 1, 1, true));
    assert!(rc.open_errors >= 1);
    assert_eq!(unit_row(f, &s.units[0].unit).open_errors, 0);
    assert!(f.below_minimum.contains(&s.units[1].unit));
    assert_eq!(f.not_heard_from.len(), s.config.units.len() - 3);
    assert_eq!(f.unknown_senders.len(), 1);
    assert!(f.findings.iter().any(|(_, st, x)| st.as_deref() == Some(s.units[2].studios[1].name.as_str()) && x.code == "form.team_too_small"));
    // The workbook is the same as from SQLite's data would give: one row per studio.
    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(d.xlsx.clone())).unwrap();
    let ws = wb.worksheet_range(xlsx::SHEET_SUMMARY).unwrap();
    let studio_rows = ws.rows().skip(xlsx::FIRST_DATA_ROW as usize).filter(|r| !cell(&r[2]).is_empty()).count();
    assert_eq!(studio_rows, 5);
    app.store.close().await;
}

fn cell(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(x) => fmt_num(*x),
        Data::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 { format!("{}", x as i64) } else { format!("{x}") }
}

/// A value as the workbook shows it: numbers in their shortest form.
fn norm(s: &str) -> String {
    match s.trim().parse::<f64>() {
        Ok(x) => fmt_num(x),
        Err(_) => s.trim().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_workbook_read_back_cell_by_cell() {
    let s = seed().await;
    let app = App::build(s.config.clone()).await.unwrap();
    let bytes = digest::export(&app.store, &app.config).await.unwrap();
    // The digest's attachment is the same file.
    let d = digest::build(&app.store, &app.config, t("2020-09-22T08:00:00+08:00")).await.unwrap();
    assert!(d.xlsx == bytes, "digest attachment and export differ");
    assert!(d.xlsx_name.ends_with(".xlsx") && d.xlsx_name.contains("推荐汇总表"));

    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(bytes.clone())).unwrap();
    assert_eq!(wb.sheet_names(), vec![xlsx::SHEET_SUMMARY.to_owned(), xlsx::SHEET_FINDINGS.to_owned()]);
    let merged: Vec<(u32, u32, u32, u32)> = wb
        .merge_cells_by_sheet_name(xlsx::SHEET_SUMMARY)
        .unwrap()
        .iter()
        .map(|d| (d.start.0, d.start.1, d.end.0, d.end.1))
        .collect();
    let ws = wb.worksheet_range(xlsx::SHEET_SUMMARY).unwrap();
    assert_eq!(ws.start(), Some((0, 0)));
    let at = |r: u32, c: u32| cell(ws.get_value((r, c)).unwrap_or(&Data::Empty));

    // Title, the 推荐单位/填报人 line, and 附件2's two-row header.
    assert_eq!(at(0, 0), "乐山市劳模和工匠人才创新工作室推荐汇总表");
    assert!(merged.contains(&(0, 0, 0, 15)));
    assert!(at(1, 0).starts_with("推荐单位（盖章）：") && at(1, 0).contains("填报人："), "{}", at(1, 0));
    for (i, h) in ["序号", "创新工作室所属单位名称", "创新工作室名称", "创建时间"].iter().enumerate() {
        assert_eq!(at(2, i as u32), *h);
        assert!(merged.contains(&(2, i as u32, 3, i as u32)), "{h} spans two rows");
    }
    assert_eq!(at(2, 4), "创新工作室负责人（带头人）基本情况");
    assert!(merged.contains(&(2, 4, 2, 7)));
    assert_eq!(at(2, 8), "创新工作室工作开展基本情况");
    assert!(merged.contains(&(2, 8, 2, 15)));
    let sub = [
        "姓名",
        "工作单位及职务",
        "是否荣获各级各类劳动模范(先进工作者)、工匠称号，若是，请注明何年获何种劳动模范称号",
        "联系电话",
        "创新工作室成员人数（人）",
        "工作场地面积（㎡）",
        "仪器设备（台/套）",
        "年均专项经费（万元）",
        "创新课题或攻关项目累计（项）",
        "创新成果数累计（项）",
        "专利数累计（项）",
        "创新成果转化应用节创经济效益累计（万元）",
    ];
    for (i, h) in sub.iter().enumerate() {
        assert_eq!(at(3, 4 + i as u32), *h);
    }

    // Body: the units in config order, each a group row and then its studios by 序号.
    let mut expected: Vec<&UnitSpec> = s.units.iter().collect();
    expected.sort_by_key(|u| s.config.units.iter().position(|x| x.name == u.unit).unwrap());
    let mut r = xlsx::FIRST_DATA_ROW;
    let mut studio_rows = 0;
    for u in &expected {
        assert_eq!(at(r, 0), xlsx::group_label(&u.unit, u.studios.len()));
        assert!(merged.contains(&(r, 0, r, 15)));
        r += 1;
        for (k, st) in u.studios.iter().enumerate() {
            assert_eq!(ws.get_value((r, 0)), Some(&Data::Float((k + 1) as f64)), "序号 at row {r}");
            assert_eq!(at(r, 1), st.unit);
            assert_eq!(at(r, 2), st.name);
            assert_eq!(at(r, 4), st.leader);
            assert_eq!(at(r, 5), st.leader_workplace_title);
            assert_eq!(at(r, 6), st.titled_summary());
            assert_eq!(at(r, 7), st.phone);
            assert_eq!(ws.get_value((r, 8)), Some(&Data::Float(st.members as f64)));
            assert_eq!(at(r, 9), norm(&st.area_m2));
            assert_eq!(at(r, 10), norm(&st.equipment));
            assert_eq!(at(r, 11), norm(&st.funding_wan));
            assert_eq!(at(r, 12), norm(&st.projects));
            assert_eq!(at(r, 13), norm(&st.achievements));
            assert_eq!(at(r, 14), st.patents_total().unwrap().to_string());
            assert_eq!(at(r, 15), norm(&st.benefit_wan));
            // And every column equals what the store recorded from the forms.
            let row = d.facts.studios.iter().find(|x| x.name == st.name).unwrap();
            for (c, column) in SUMMARY_COLUMNS.iter().enumerate() {
                let key = column.key;
                let stored = row.data.get(key.as_str()).and_then(|v| v.as_str()).map(norm).unwrap_or_default();
                assert_eq!(at(r, c as u32), stored, "{} column {key}", st.name);
            }
            r += 1;
            studio_rows += 1;
        }
    }
    // The stranger's mail is held: its studio is in no table until staff approve it.
    let rest: Vec<String> = (r..ws.height() as u32).map(|row| at(row, 2)).filter(|x| !x.is_empty()).collect();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(studio_rows, d.facts.studios.len());

    // Sheet 2: the header and the open team_too_small finding of 五通桥区's second studio.
    let f2 = wb.worksheet_range(xlsx::SHEET_FINDINGS).unwrap();
    let header: Vec<String> = f2.rows().next().unwrap().iter().map(cell).collect();
    assert_eq!(header, xlsx::FINDINGS_HEADER.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let c = &s.units[2];
    let hit = f2
        .rows()
        .find(|row| cell(&row[1]) == c.studios[1].name && cell(&row[2]) == "团队不足5人〔form.team_too_small〕")
        .expect("team_too_small row");
    assert_eq!(cell(&hit[0]), c.unit);
    assert_eq!(cell(&hit[3]), "错误");
    assert_eq!(cell(&hit[6]), "4");
    assert!(!cell(&hit[4]).is_empty() && !cell(&hit[8]).is_empty());
    // No finding of the valid units.
    assert!(!f2.rows().skip(1).any(|row| cell(&row[0]) == s.units[0].unit));

    // The command line writes the same bytes, and prints the digest.
    let cfg = s._dir.path().join("intake.toml");
    std::fs::write(&cfg, toml::to_string(&s.config).unwrap()).unwrap();
    let out = s._dir.path().join("汇总.xlsx");
    let exe = env!("CARGO_BIN_EXE_studio-intake");
    let st = std::process::Command::new(exe).arg("export").arg("--config").arg(&cfg).arg("--out").arg(&out).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert!(std::fs::read(&out).unwrap() == bytes, "export --out differs");
    let st = std::process::Command::new(exe).arg("digest").arg("--config").arg(&cfg).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let text = String::from_utf8(st.stdout).unwrap();
    assert!(text.contains("收到邮件 4 封") && text.contains(&c.unit), "{text}");
    app.store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Delivery through the real SMTP server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_arrives_through_the_real_smtp_server_with_the_workbook() {
    let stack = mailstack::stack();
    let staff = stack.user("staff");
    stack.empty(&[&staff]);
    let s = seed().await;
    let mut config = s.config.clone();
    config.outbox.kind = OutboxKind::Smtp;
    config.outbox.host = "127.0.0.1".into();
    config.outbox.port = stack.smtp_port;
    config.outbox.tls = Tls::None;
    config.outbox.username = String::new();
    config.outbox.from = format!("乐山市总工会经保女工部 <{}>", stack.user("intake"));
    config.digest.recipients = vec![staff.clone()];
    let app = App::build(config).await.unwrap();
    let now = Utc::now();
    let id = digest::send_now(&app, now).await.unwrap();
    let mails = stack.wait_for_mail(&staff, 1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1);
    let m = studio_intake::core::mime::parse(&mails[0], &studio_intake::core::Limits::default()).unwrap();
    assert_eq!(m.message_id.as_deref(), Some(id.as_str()));
    assert!(m.subject.contains("汇总") && m.subject.contains("收到5个工作室"), "{}", m.subject);
    assert!(m.body_text.contains("收到邮件 4 封"), "{}", m.body_text);
    let x = m.attachments.iter().find(|a| a.file_name.ends_with(".xlsx")).expect("xlsx attachment");
    assert!(x.file_name.starts_with("乐山市劳模和工匠人才创新工作室推荐汇总表"), "{}", x.file_name);
    let export = digest::export(&app.store, &app.config).await.unwrap();
    assert!(x.data == export, "attachment differs from export");
    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(x.data.clone())).unwrap();
    let ws = wb.worksheet_range(xlsx::SHEET_SUMMARY).unwrap();
    assert_eq!(cell(ws.get_value((0, 0)).unwrap()), xlsx::TITLE);
    // Sent, not left in the outbox.
    assert_eq!(app.store.outbox_depth().await.unwrap(), 0);
    app.store.close().await;
}

/// A unit that sends a new 附件2 without one of its studios took it off its list: the studio
/// leaves the digest's studios and numbers, and staff see it named as withdrawn.
#[tokio::test]
async fn a_withdrawn_studio_is_named_for_staff_and_counted_nowhere() {
    let s = seed().await;
    let a = &s.units[0];
    let mut only_first = a.clone();
    only_first.studios.truncate(1);
    let opts = SubmissionOptions { date: Some("Thu, 24 Sep 2020 18:00:00 +0800".into()), received: Some("Thu, 24 Sep 2020 18:00:05 +0800".into()), ..Default::default() };
    let mut m = fixtures::submission_mail(&only_first, MailClient::Outlook, &opts);
    m.attachments.retain(|(n, _)| n.contains("汇总表"));
    m.message_id = "<withdraw@example.cn>".into();
    let inbox = s._dir.path().join("inbox");
    std::fs::write(inbox.join("10.eml"), fixtures::build_eml(&m)).unwrap();
    studio_intake::daemon::run_once(s.config.clone()).await.unwrap();
    let app = App::build(s.config.clone()).await.unwrap();
    let now = t("2020-09-25T10:00:00+08:00");
    let f = digest::gather(&app.store, &app.config, now).await.unwrap();
    let gone = &a.studios[1].name;
    assert_eq!(f.withdrawn, [(a.unit.clone(), gone.clone())]);
    assert!(f.studios.iter().all(|st| &st.name != gone));
    assert_eq!(unit_row(&f, &a.unit).studios, 1);
    let text = digest::build(&app.store, &app.config, now).await.unwrap().text;
    assert!(text.contains("已撤回的工作室") && text.contains(gone.as_str()), "{text}");
}
