//! The store, on SQLite (a temp dir) and on PostgreSQL (a fresh database per test).
//!
//! PostgreSQL: `INTAKE_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! names a server where the tests may create databases; when it is not reachable the
//! PostgreSQL tests fail and say so.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::json;
use sqlx::{Connection, Executor};
use studio_intake::core::findings::Severity;
use studio_intake::store::*;

// ---------------------------------------------------------------------------------------------
// Harness

struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    sqlite_file: Option<std::path::PathBuf>,
    pg: Option<(String, String)>, // (admin url, database name)
}

fn admin_url() -> String {
    std::env::var("INTAKE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{:x}_{}", std::process::id(), nanos & 0xffff_ffff_ffff, N.fetch_add(1, Ordering::Relaxed))
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        // A folder that does not exist yet: connect creates it.
        let file = dir.path().join("var").join("intake.db");
        let store = Store::connect(&format!("sqlite://{}", file.display()), 4).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        TestDb { store, _dir: Some(dir), sqlite_file: Some(file), pg: None }
    }

    async fn postgres() -> TestDb {
        let admin = admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => panic!(
                "PostgreSQL is not reachable at {admin} ({e}). The store tests need a PostgreSQL server \
                 where they may CREATE DATABASE; start one or set INTAKE_TEST_PG_URL."
            ),
        };
        let name = format!("intake_test_{}", unique_suffix());
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        conn.close().await.unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let store = Store::connect(&format!("{base}/{name}"), 5).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        TestDb { store, _dir: None, sqlite_file: None, pg: Some((admin, name)) }
    }

    async fn finish(self) {
        self.store.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort, also when the test panicked: drop the database from a thread of its
        // own (Drop cannot await on the test's runtime).
        if let Some((admin, name)) = self.pg.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .await
                        .ok()?;
                    conn.close().await.ok()
                })
            })
            .join();
        }
    }
}

/// Each scenario runs once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = super::TestDb::sqlite().await;
                    if let Err(e) = super::$name(&db).await {
                        panic!("{e:#}");
                    }
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = super::TestDb::postgres().await;
                    if let Err(e) = super::$name(&db).await {
                        panic!("{e:#}");
                    }
                    db.finish().await;
                }
            )*
        }
    };
}

on_both!(
    connect_and_ping,
    put_raw_dedupe,
    claim_raw_exactly_once_concurrently,
    raw_lease_expiry_and_failures,
    record_is_atomic_and_idempotent,
    studios_are_versions,
    outbox_lifecycle,
    outbox_enqueue_is_idempotent,
    outbox_concurrent_claims,
    bookkeeping,
    counts_and_reads,
    dossier_versions,
    senders_held_and_confirmations,
);

// ---------------------------------------------------------------------------------------------
// Builders

fn raw(mailbox: &str, uidvalidity: Option<i64>, uid: Option<i64>, body: &str) -> NewRaw {
    let bytes = format!("From: a@example.cn\r\nSubject: test\r\n\r\n{body}\r\n").into_bytes();
    NewRaw {
        mailbox: mailbox.into(),
        uidvalidity,
        uid,
        sha256: sha256_hex(&bytes),
        size: bytes.len() as i64,
        bytes,
        received_at: Some(DateTime::parse_from_rfc3339("2020-09-20T10:00:00+08:00").unwrap()),
    }
}

fn studio(name: &str, verdict: &str, rank: i64) -> StudioRecord {
    StudioRecord {
        name: name.into(),
        key: name.replace(' ', ""),
        unit: Some("as written".into()),
        leader: Some("张三".into()),
        verdict: verdict.parse().unwrap(),
        rank: Some(rank),
        data: json!({ "序号": rank, "创新工作室名称": name, "成员人数": 8 }),
    }
}

fn submission(unit: Option<&str>, verdict: &str, studios: Vec<StudioRecord>) -> SubmissionRecord {
    SubmissionRecord {
        message_id: Some("<m@example.cn>".into()),
        sender: Some("jwxzgh@example.cn".into()),
        unit: unit.map(Into::into),
        subject: "推荐申报".into(),
        received_at: Some(DateTime::parse_from_rfc3339("2020-09-20T10:00:00+08:00").unwrap()),
        verdict: verdict.parse().unwrap(),
        ignored_reason: None,
        studios,
        findings: Vec::new(),
        summary_table: false,
        ..Default::default()
    }
}

fn finding(code: &str, severity: &str, studio_key: Option<&str>) -> FindingRecord {
    FindingRecord {
        code: code.into(),
        severity: if severity == "error" { Severity::Error } else { Severity::Warning },
        studio_key: studio_key.map(Into::into),
        file: Some("附件1.docx".into()),
        location: "表格1 第6行".into(),
        found: "4".into(),
        expected: ">= 5".into(),
        message: "创新团队人数为4人，申报条件要求5人以上。".into(),
        on_file: false,
    }
}

fn outgoing(message_id: &str, to: &str) -> NewOutgoing {
    NewOutgoing {
        kind: "reply".into(),
        message_id: message_id.into(),
        envelope_from: "intake@example.cn".into(),
        recipients: vec![to.into()],
        bytes: format!("Message-ID: {message_id}\r\n\r\nok\r\n").into_bytes(),
        submission_raw_id: None,
    }
}

/// Store a raw message and record `rec` for it.
async fn store_and_record(s: &Store, body: &str, rec: &SubmissionRecord) -> anyhow::Result<RecordResult> {
    let id = s.put_raw(&raw("INBOX", None, None, body)).await?.id();
    s.record(id, rec, &[]).await
}

const LEASE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn connect_and_ping(db: &TestDb) -> anyhow::Result<()> {
    db.store.ping().await?;
    db.store.migrate().await.context("migrating twice")?;
    if let Some(file) = &db.sqlite_file {
        db.store.put_raw(&raw("INBOX", None, None, "x")).await?;
        let wal = file.with_extension("db-wal");
        ensure!(wal.exists(), "SQLite is not in WAL mode: no {}", wal.display());
        // In memory: one connection kept for the life of the pool.
        let mem = Store::connect("sqlite::memory:", 4).await?;
        mem.migrate().await?;
        mem.put_raw(&raw("INBOX", None, None, "in memory")).await?;
        ensure!(mem.counts().await?.mails == 1);
    }
    ensure!(Store::connect("mysql://x", 1).await.is_err());
    Ok(())
}

async fn put_raw_dedupe(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    let a = raw("INBOX", Some(7), Some(10), "mail A");
    let PutRaw::New(id_a) = s.put_raw(&a).await? else { anyhow::bail!("first put is not New") };
    ensure!(s.put_raw(&a).await? == PutRaw::Known { id: id_a, processed: false }, "same uid twice");
    // Same bytes under a new UID, and after a UIDVALIDITY change.
    let again = NewRaw { uid: Some(11), ..a.clone() };
    ensure!(s.put_raw(&again).await? == PutRaw::Known { id: id_a, processed: false });
    let moved = NewRaw { uidvalidity: Some(8), uid: Some(1), ..a.clone() };
    ensure!(s.put_raw(&moved).await? == PutRaw::Known { id: id_a, processed: false });
    // Same UID, other bytes: the UID decides.
    let other_bytes = raw("INBOX", Some(7), Some(10), "mail A, refetched differently");
    ensure!(s.put_raw(&other_bytes).await? == PutRaw::Known { id: id_a, processed: false });
    // The same UID in another mailbox is another message (unless the bytes are known).
    let elsewhere = raw("Other", Some(7), Some(10), "mail C");
    ensure!(matches!(s.put_raw(&elsewhere).await?, PutRaw::New(_)));
    // No UID: by bytes only.
    let b = raw("maildir", None, None, "mail B");
    let PutRaw::New(id_b) = s.put_raw(&b).await? else { anyhow::bail!("mail B is not New") };
    ensure!(id_b != id_a);
    ensure!(s.put_raw(&b).await? == PutRaw::Known { id: id_b, processed: false });
    // A wrong hash is refused.
    let mut bad = raw("INBOX", None, None, "mail D");
    bad.sha256 = "00".repeat(32);
    ensure!(s.put_raw(&bad).await.is_err(), "sha256 mismatch accepted");
    // Processed shows.
    s.record(id_a, &submission(Some("A"), "accepted", vec![]), &[]).await?;
    ensure!(s.put_raw(&a).await? == PutRaw::Known { id: id_a, processed: true });
    ensure!(s.put_raw(&again).await? == PutRaw::Known { id: id_a, processed: true });
    let got = s.claim_raw("w", LEASE).await?.context("mail C or B unclaimed")?;
    ensure!(got.id != id_a);
    ensure!(got.received_at == a.received_at && got.received_at.unwrap().offset().local_minus_utc() == 8 * 3600);
    Ok(())
}

async fn claim_raw_exactly_once_concurrently(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    let mut all = HashSet::new();
    for i in 0..50 {
        all.insert(s.put_raw(&raw("INBOX", Some(1), Some(i), &format!("mail {i}"))).await?.id());
    }
    let mut tasks = Vec::new();
    for w in 0..2 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = s.claim_raw(&format!("worker-{w}"), LEASE).await? {
                got.push(m.id);
                tokio::task::yield_now().await;
            }
            anyhow::Ok(got)
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await??);
    }
    let distinct: HashSet<i64> = seen.iter().copied().collect();
    ensure!(seen.len() == 50, "claimed {} times for 50 messages", seen.len());
    ensure!(distinct == all, "not every message claimed exactly once");
    ensure!(s.claim_raw("late", LEASE).await?.is_none());
    Ok(())
}

async fn raw_lease_expiry_and_failures(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    let id = s.put_raw(&raw("INBOX", Some(1), Some(1), "crashes its worker")).await?.id();
    let first = s.claim_raw("w1", Duration::from_millis(300)).await?.context("not claimable")?;
    ensure!(first.id == id && first.attempts == 0);
    ensure!(s.claim_raw("w2", LEASE).await?.is_none(), "claimed while the lease runs");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let second = s.claim_raw("w2", LEASE).await?.context("expired lease not reclaimed")?;
    ensure!(second.id == id && second.attempts == 1);

    // Failures: back to new after a backoff, failed after MAX_RAW_ATTEMPTS.
    s.raw_failed(id, "boom 2").await?;
    ensure!(s.claim_raw("w", LEASE).await?.is_none(), "claimed during backoff");
    let mut t = Utc::now();
    for attempt in 3..=MAX_RAW_ATTEMPTS {
        t += TimeDelta::hours(2);
        let m = s.claim_raw_at("w", t, LEASE).await?.context("not claimable after backoff")?;
        ensure!(m.attempts == attempt - 1, "attempts {} on try {attempt}", m.attempts);
        s.raw_failed(id, &format!("boom {attempt}")).await?;
    }
    ensure!(s.claim_raw_at("w", t + TimeDelta::days(1), LEASE).await?.is_none(), "failed message claimed");
    let failed = s.failed_raws().await?;
    ensure!(failed.len() == 1 && failed[0].id == id && failed[0].attempts == MAX_RAW_ATTEMPTS);
    ensure!(failed[0].last_error.as_deref() == Some("boom 5"));
    ensure!(s.counts().await?.mails_failed == 1);

    // A message whose worker dies every time ends up failed too.
    let id2 = s.put_raw(&raw("INBOX", Some(1), Some(2), "kills the process")).await?.id();
    let mut t = Utc::now();
    for _ in 0..MAX_RAW_ATTEMPTS {
        ensure!(s.claim_raw_at("w", t, LEASE).await?.map(|m| m.id) == Some(id2));
        t += TimeDelta::minutes(2);
    }
    ensure!(s.claim_raw_at("w", t, LEASE).await?.is_none());
    ensure!(s.failed_raws().await?.iter().any(|f| f.id == id2));
    Ok(())
}

async fn record_is_atomic_and_idempotent(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    let id = s.put_raw(&raw("INBOX", Some(1), Some(1), "submission")).await?.id();
    ensure!(s.claim_raw("w", LEASE).await?.map(|m| m.id) == Some(id));
    let mut rec = submission(Some("犍为县总工会"), "rejected", vec![studio("甲 工作室", "rejected", 1)]);
    rec.findings = vec![finding("form.team_too_small", "error", Some("甲工作室")), finding("x.note", "warning", None)];
    rec.summary_table = true;

    // A failure inside the transaction leaves nothing behind.
    let mut broken = outgoing("<r1@intake>", "jwxzgh@example.cn");
    broken.recipients.clear();
    ensure!(s.record(id, &rec, &[broken]).await.is_err(), "record with a bad outgoing mail succeeded");
    let c = s.counts().await?;
    ensure!(c.submissions == 0 && c.studios_current == 0, "partial record left behind: {c:?}");
    ensure!(s.outbox_depth().await? == 0);
    ensure!(s.current_dossier("犍为县总工会").await?.is_none());
    ensure!(s.record(9_999_999, &rec, &[]).await.is_err(), "record for a missing raw message");

    let reply = NewOutgoing { submission_raw_id: Some(id), ..outgoing("<r1@intake>", "jwxzgh@example.cn") };
    let first = s.record(id, &rec, std::slice::from_ref(&reply)).await?;
    ensure!(first.superseded.is_empty());
    let second = s.record(id, &rec, std::slice::from_ref(&reply)).await?;
    ensure!(second == first, "second record differs: {second:?} vs {first:?}");
    let c = s.counts().await?;
    ensure!(c.submissions == 1 && c.submissions_rejected == 1 && c.studios_current == 1, "{c:?}");
    ensure!(s.outbox_depth().await? == 1);
    ensure!(s.put_raw(&raw("INBOX", Some(1), Some(1), "submission")).await? == PutRaw::Known { id, processed: true });
    ensure!(s.claim_raw_at("w", Utc::now() + TimeDelta::days(1), LEASE).await?.is_none(), "processed raw claimable");
    let rows = s.current_studios().await?;
    ensure!(rows.len() == 1 && rows[0].error_codes == vec!["form.team_too_small".to_string()], "{rows:?}");
    let sent = s.outgoing_by_message_id("<r1@intake>").await?.context("reply not queued")?;
    ensure!(sent.submission_raw_id == Some(id) && sent.recipients == vec!["jwxzgh@example.cn".to_string()]);
    Ok(())
}

async fn studios_are_versions(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    let a1 = store_and_record(s, "A1", &submission(Some("A"), "rejected", vec![studio("X", "rejected", 1), studio("Y", "accepted", 2)])).await?;
    ensure!(a1.superseded.is_empty());
    let a2 = store_and_record(s, "A2", &submission(Some("A"), "accepted", vec![studio("X", "accepted", 1)])).await?;
    ensure!(a2.superseded == vec!["X".to_string()], "{:?}", a2.superseded);
    // Another unit with the same studio name supersedes nothing.
    let b1 = store_and_record(s, "B1", &submission(Some("B"), "accepted", vec![studio("X", "accepted", 1)])).await?;
    ensure!(b1.superseded.is_empty(), "{:?}", b1.superseded);
    // Unknown unit: the studio's own unit is the identity.
    let u1 = store_and_record(s, "U1", &submission(None, "accepted", vec![studio("Z", "accepted", 1)])).await?;
    ensure!(u1.superseded.is_empty());

    let history = s.studio_versions(Some("A"), "X").await?;
    ensure!(history.len() == 2, "{history:?}");
    ensure!(!history[0].current && history[0].superseded_by == Some(history[1].id) && history[0].verdict == "rejected");
    ensure!(history[1].current && history[1].superseded_by.is_none() && history[1].submission_id == a2.submission_id);
    ensure!(s.studio_versions(Some("B"), "X").await?.len() == 1);

    let current = s.current_studios().await?;
    let names: Vec<(Option<&str>, &str)> = current.iter().map(|r| (r.unit.as_deref(), r.name.as_str())).collect();
    ensure!(
        names == vec![(Some("A"), "X"), (Some("A"), "Y"), (Some("B"), "X"), (Some("as written"), "Z")],
        "{names:?}"
    );
    ensure!(current[0].verdict == "accepted" && current[0].submission_id == a2.submission_id);
    ensure!(current[0].data["创新工作室名称"] == "X" && current[0].recommending_unit.as_deref() == Some("as written"));
    ensure!(
        s.current_studios_of_other_units(Some("A")).await?
            == vec![("B".to_string(), "X".to_string()), ("as written".to_string(), "Z".to_string())]
    );
    ensure!(s.current_studios_of_other_units(None).await?.len() == 4);

    // The same studio twice in one mail: the later one is current, nothing "superseded".
    let twice = store_and_record(s, "A3", &submission(Some("A"), "accepted", vec![studio("W", "accepted", 3), studio("W", "accepted", 4)])).await?;
    ensure!(twice.superseded.is_empty(), "{:?}", twice.superseded);
    let w = s.studio_versions(Some("A"), "W").await?;
    ensure!(w.len() == 2 && !w[0].current && w[1].current);

    // A third version of X; replaying the second mail's record still reports what it replaced.
    let a4 = store_and_record(s, "A4", &submission(Some("A"), "accepted", vec![studio("X", "accepted", 1)])).await?;
    ensure!(a4.superseded == vec!["X".to_string()]);
    let a2_raw = s.put_raw(&raw("INBOX", None, None, "A2")).await?.id();
    let replay = s.record(a2_raw, &submission(Some("A"), "accepted", vec![]), &[]).await?;
    ensure!(replay == a2, "{replay:?} vs {a2:?}");
    ensure!(s.studio_versions(Some("A"), "X").await?.iter().filter(|v| v.current).count() == 1);

    // Concurrent mails of one unit carrying the same studio: all recorded, one current.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let rec = submission(Some("C"), "accepted", vec![studio("Q", "accepted", 1)]);
            store_and_record(&s, &format!("C{i}"), &rec).await
        }));
    }
    let mut replaced = 0;
    for t in tasks {
        replaced += t.await??.superseded.len();
    }
    let q = s.studio_versions(Some("C"), "Q").await?;
    ensure!(q.len() == 4 && q.iter().filter(|v| v.current).count() == 1 && replaced == 3, "{q:?}");
    Ok(())
}

async fn outbox_lifecycle(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    ensure!(s.next_due().await?.is_none());
    ensure!(s.enqueue(&outgoing("<m1@intake>", "Unit <Sender@Example.cn>")).await?);
    let now = Utc::now() + TimeDelta::seconds(1);
    ensure!(s.outbox_depth().await? == 1);
    ensure!(s.next_due().await?.is_some_and(|t| t <= now));
    ensure!(s.claim_outgoing("w", now - TimeDelta::minutes(5), LEASE).await?.is_none(), "claimed before due");
    let m = s.claim_outgoing("w", now, LEASE).await?.context("due mail not claimed")?;
    ensure!(m.attempts == 1 && m.status == OutgoingStatus::Claimed && m.message_id == "<m1@intake>");
    ensure!(m.recipients == vec!["Unit <Sender@Example.cn>".to_string()] && m.bytes.starts_with(b"Message-ID"));
    ensure!(s.claim_outgoing("w2", now, LEASE).await?.is_none(), "claimed twice");

    // Temporary failure: not before next_attempt_at.
    let retry_at = now + TimeDelta::minutes(10);
    s.outgoing_failed(m.id, "421 try later", Some(retry_at)).await?;
    ensure!(s.next_due().await?.map(ts) == Some(ts(retry_at)));
    ensure!(s.claim_outgoing("w", now + TimeDelta::minutes(5), LEASE).await?.is_none(), "claimed before retry time");
    let m = s.claim_outgoing("w", now + TimeDelta::minutes(11), LEASE).await?.context("retry not claimed")?;
    ensure!(m.attempts == 2 && m.last_error.as_deref() == Some("421 try later"));
    // Permanent failure: dead, kept.
    s.outgoing_failed(m.id, "550 no such user", None).await?;
    ensure!(s.outbox_depth().await? == 0);
    ensure!(s.claim_outgoing("w", now + TimeDelta::days(1), LEASE).await?.is_none());
    let dead = s.dead_letters().await?;
    ensure!(dead.len() == 1 && dead[0].status == OutgoingStatus::Dead && dead[0].last_error.as_deref() == Some("550 no such user"));
    ensure!(s.next_due().await?.is_none());

    // Sent.
    s.enqueue(&outgoing("<m2@intake>", "sender@example.cn")).await?;
    let m2 = s.claim_outgoing("w", Utc::now() + TimeDelta::seconds(1), LEASE).await?.context("m2")?;
    s.outgoing_sent(m2.id, Utc::now()).await?;
    let m2 = s.outgoing_by_message_id("<m2@intake>").await?.context("m2 gone")?;
    ensure!(m2.status == OutgoingStatus::Sent && m2.sent_at.is_some());
    ensure!(s.outbox_depth().await? == 0);

    // A crashed sender's claim comes back after its lease.
    s.enqueue(&outgoing("<m3@intake>", "other@example.cn")).await?;
    let t = Utc::now() + TimeDelta::seconds(1);
    let m3 = s.claim_outgoing("dies", t, LEASE).await?.context("m3")?;
    ensure!(s.next_due().await?.map(ts) == Some(ts(t + TimeDelta::from_std(LEASE)?)));
    ensure!(s.claim_outgoing("w", t + TimeDelta::seconds(30), LEASE).await?.is_none());
    ensure!(s.claim_outgoing("w", t + TimeDelta::seconds(61), LEASE).await?.map(|m| (m.id, m.attempts)) == Some((m3.id, 2)));

    // The per-sender limit counts what was queued for an address, any spelling.
    let since = Utc::now() - TimeDelta::hours(1);
    ensure!(s.replies_to_since("SENDER@example.cn", since).await? == 2);
    ensure!(s.replies_to_since("<sender@example.cn>", since).await? == 2);
    ensure!(s.replies_to_since("sender@example.cn", Utc::now() + TimeDelta::minutes(1)).await? == 0);
    let digest = NewOutgoing { kind: "digest".into(), ..outgoing("<d1@intake>", "sender@example.cn") };
    s.enqueue(&digest).await?;
    ensure!(s.replies_to_since("sender@example.cn", since).await? == 2, "digests count as replies");
    Ok(())
}

async fn outbox_enqueue_is_idempotent(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    let m = NewOutgoing {
        recipients: vec!["a@example.cn".into(), "A@example.cn".into(), "b@example.cn".into()],
        ..outgoing("<same@intake>", "a@example.cn")
    };
    ensure!(s.enqueue(&m).await?);
    ensure!(!s.enqueue(&m).await?, "second enqueue inserted");
    let changed = NewOutgoing { bytes: b"other".to_vec(), ..m.clone() };
    ensure!(!s.enqueue(&changed).await?);
    ensure!(s.outbox_depth().await? == 1);
    let stored = s.outgoing_by_message_id("<same@intake>").await?.context("missing")?;
    ensure!(stored.bytes == m.bytes && stored.recipients == m.recipients);
    ensure!(s.replies_to_since("a@example.cn", Utc::now() - TimeDelta::hours(1)).await? == 1);
    // Enqueued again after it was sent: still one row, still sent.
    let c = s.claim_outgoing("w", Utc::now() + TimeDelta::seconds(1), LEASE).await?.context("claim")?;
    s.outgoing_sent(c.id, Utc::now()).await?;
    ensure!(!s.enqueue(&m).await?);
    ensure!(s.outbox_depth().await? == 0);
    // Concurrent enqueues of one message: one row.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.enqueue(&outgoing("<race@intake>", "r@example.cn")).await }));
    }
    let mut inserted = 0;
    for t in tasks {
        inserted += usize::from(t.await??);
    }
    ensure!(inserted == 1, "{inserted} concurrent enqueues inserted");
    ensure!(s.outbox_depth().await? == 1);
    Ok(())
}

async fn outbox_concurrent_claims(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    for i in 0..40 {
        s.enqueue(&outgoing(&format!("<c{i}@intake>"), "x@example.cn")).await?;
    }
    let now = Utc::now() + TimeDelta::seconds(1);
    let mut tasks = Vec::new();
    for w in 0..2 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = s.claim_outgoing(&format!("sender-{w}"), now, LEASE).await? {
                got.push(m.id);
                tokio::task::yield_now().await;
                s.outgoing_sent(m.id, now).await?;
            }
            anyhow::Ok(got)
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await??);
    }
    let distinct: HashSet<i64> = seen.iter().copied().collect();
    ensure!(seen.len() == 40 && distinct.len() == 40, "{} claims, {} distinct", seen.len(), distinct.len());
    ensure!(s.outbox_depth().await? == 0);
    Ok(())
}

/// Mailbox state, digest runs and leases: separate tables, one database (fewer databases to
/// create and drop keeps the PostgreSQL half of this file fast).
async fn bookkeeping(db: &TestDb) -> anyhow::Result<()> {
    mailbox_state_round_trip(db).await.context("mailbox state")?;
    digest_runs(db).await.context("digest runs")?;
    leases(db).await.context("leases")
}

async fn digest_runs(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    let day = NaiveDate::from_ymd_opt(2020, 9, 20).unwrap();
    let now = Utc::now();
    ensure!(s.last_digest_day().await?.is_none());
    ensure!(s.claim_digest(day, "daily", now).await?);
    ensure!(!s.claim_digest(day, "daily", now).await?, "same day claimed twice");
    ensure!(s.claim_digest(day, "final", now).await?);
    ensure!(s.last_digest_day().await? == Some(day));
    let next = day.succ_opt().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.claim_digest(next, "daily", now).await }));
    }
    let mut owners = 0;
    for t in tasks {
        owners += usize::from(t.await??);
    }
    ensure!(owners == 1, "{owners} concurrent owners of one digest day");
    ensure!(s.last_digest_day().await? == Some(next));
    ensure!(s.claim_digest(NaiveDate::from_ymd_opt(2020, 9, 1).unwrap(), "daily", now).await?);
    ensure!(s.last_digest_day().await? == Some(next));
    Ok(())
}

async fn mailbox_state_round_trip(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    ensure!(s.mailbox_state("INBOX").await?.is_none());
    s.set_mailbox_state("INBOX", 1_700_000_000, 100).await?;
    ensure!(s.mailbox_state("INBOX").await? == Some((1_700_000_000, 100)));
    s.set_mailbox_state("INBOX", 1_700_000_001, 3).await?;
    s.set_mailbox_state("Processed", 5, 9).await?;
    ensure!(s.mailbox_state("INBOX").await? == Some((1_700_000_001, 3)));
    ensure!(s.mailbox_state("Processed").await? == Some((5, 9)));
    Ok(())
}

async fn leases(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    let t0 = Utc::now();
    let ttl = Duration::from_secs(30);
    ensure!(s.try_lease("imap:INBOX", "a", ttl, t0).await?);
    ensure!(!s.try_lease("imap:INBOX", "b", ttl, t0 + TimeDelta::seconds(10)).await?, "taken while held");
    ensure!(s.try_lease("imap:INBOX", "a", ttl, t0 + TimeDelta::seconds(10)).await?, "renewal refused");
    // Renewed until t0 + 40 s.
    ensure!(!s.try_lease("imap:INBOX", "b", ttl, t0 + TimeDelta::seconds(35)).await?, "renewal not kept");
    ensure!(s.try_lease("other", "b", ttl, t0).await?, "leases are per name");
    ensure!(s.try_lease("imap:INBOX", "b", ttl, t0 + TimeDelta::seconds(41)).await?, "expired lease not taken");
    ensure!(!s.try_lease("imap:INBOX", "a", ttl, t0 + TimeDelta::seconds(42)).await?);
    s.release_lease("imap:INBOX", "a").await?; // not a's: no effect
    ensure!(!s.try_lease("imap:INBOX", "a", ttl, t0 + TimeDelta::seconds(43)).await?);
    s.release_lease("imap:INBOX", "b").await?;
    ensure!(s.try_lease("imap:INBOX", "a", ttl, t0 + TimeDelta::seconds(44)).await?);
    // Two contenders at once: one wins.
    let mut tasks = Vec::new();
    for h in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.try_lease("race", &format!("h{h}"), ttl, t0).await }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await??);
    }
    ensure!(winners == 1, "{winners} holders of one lease");
    Ok(())
}

async fn counts_and_reads(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    ensure!(s.counts().await? == Counts::default());
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    ensure!(s.submissions_per_day(tz).await?.is_empty());

    let mut a = submission(Some("犍为县总工会"), "accepted", vec![studio("乙", "accepted", 2), studio("甲", "accepted", 1)]);
    a.received_at = Some(DateTime::parse_from_rfc3339("2020-09-20T23:30:00+08:00").unwrap());
    store_and_record(s, "a", &a).await?;
    let mut b = submission(Some("井研县总工会"), "rejected", vec![studio("丙", "rejected", 1)]);
    b.received_at = Some(DateTime::parse_from_rfc3339("2020-09-20T16:30:00Z").unwrap()); // 00:30 on the 21st in Shanghai
    b.findings = vec![
        finding("form.team_too_small", "error", Some("丙")),
        finding("submission.late", "error", None),
        finding("photo.small", "warning", Some("丙")),
        finding("form.team_too_small", "error", Some("someone else")),
    ];
    store_and_record(s, "b", &b).await?;
    let mut stranger = submission(None, "rejected", vec![]);
    stranger.sender = Some("Stranger@Example.com".into());
    store_and_record(s, "c", &stranger).await?;
    let mut bounce = submission(None, "ignored", vec![]);
    bounce.sender = Some("mailer-daemon@example.com".into());
    bounce.ignored_reason = Some("auto-reply".into());
    store_and_record(s, "d", &bounce).await?;
    s.put_raw(&raw("INBOX", None, None, "not yet processed")).await?;

    let c = s.counts().await?;
    let want = Counts {
        mails: 5,
        mails_failed: 0,
        submissions: 4,
        submissions_accepted: 1,
        submissions_rejected: 2,
        submissions_ignored: 1,
        units: 2,
        studios_current: 3,
        studios_accepted: 2,
        studios_rejected: 1,
    };
    ensure!(c == want, "{c:?}");

    let rows = s.current_studios().await?;
    let order: Vec<(&str, Option<i64>)> = rows.iter().map(|r| (r.name.as_str(), r.rank)).collect();
    ensure!(order == vec![("丙", Some(1)), ("甲", Some(1)), ("乙", Some(2))], "{order:?}");
    ensure!(rows[0].error_codes == vec!["form.team_too_small".to_string(), "submission.late".to_string()], "{:?}", rows[0].error_codes);
    ensure!(rows[1].error_codes.is_empty() && rows[1].leader.as_deref() == Some("张三"));
    ensure!(rows[1].received_at == a.received_at && rows[0].received_at == b.received_at);
    ensure!(rows[1].data == json!({ "序号": 1, "创新工作室名称": "甲", "成员人数": 8 }));

    let per_day = s.submissions_per_day(tz).await?;
    let d = |day| NaiveDate::from_ymd_opt(2020, 9, day).unwrap();
    ensure!(per_day == vec![(d(20), 2), (d(21), 1)], "{per_day:?}");
    ensure!(s.unknown_senders().await? == vec!["stranger@example.com".to_string()]);
    Ok(())
}

/// A unit's dossier through the store: each merged mail a version (history kept), parts with
/// the submission they came from, the unit's studio rows replaced by the dossier's, open
/// findings those of the current version, and a merge onto a stale version refused.
async fn dossier_versions(db: &TestDb) -> anyhow::Result<()> {
    use studio_intake::config::{Config, Unit, UnitKind};
    use studio_intake::convert::Converters;
    use studio_intake::core::{self, Context};
    use studio_intake::fixtures::{self, MailClient, UnitSpec};
    let s = &db.store;
    let u = UnitSpec::sample(6, 2);
    let mut config = Config::builtin();
    config.units.retain(|x| x.name != u.unit);
    config.units.push(Unit { name: u.unit.clone(), kind: UnitKind::County, senders: vec![u.sender.clone()] });
    let converters = Converters::none();
    let ctx = Context::new(config.policy(), &converters);
    let full = fixtures::submission_mail(&u, MailClient::Outlook, &Default::default());
    let part = |n: usize, photos: bool| {
        let mut m = full.clone();
        m.attachments.retain(|(name, _)| name.ends_with(".jpg") == photos);
        m.message_id = format!("<dossier-{n}@example.cn>");
        fixtures::build_eml(&m)
    };
    // Judge a mail against the stored dossier and record it as the daemon does.
    let apply = async |n: usize, raw: Vec<u8>, base: Option<i64>| -> anyhow::Result<(i64, core::Outcome)> {
        let current = s.current_dossier(&u.unit).await?;
        let on_file = current.as_ref().map(|v| v.dossier.clone()).unwrap_or_default();
        let o = core::judge(core::read(&raw, &ctx)?, &on_file, &ctx);
        let mut rec = studio_intake::intake::submission_record(&o);
        rec.dossier = Some(DossierUpdate { unit: u.unit.clone(), base, dossier: o.dossier.clone(), changes: o.changes.clone() });
        let raw_id = s.put_raw(&NewRaw { sha256: sha256_hex(&raw), size: raw.len() as i64, bytes: raw, ..self::raw("INBOX", None, Some(n as i64), "") }).await?.id();
        let r = s.record(raw_id, &rec, &[]).await?;
        Ok((r.submission_id, o))
    };
    let (forms_id, first) = apply(1, part(1, false), None).await?;
    ensure!(!first.standing.complete());
    let v1 = s.current_dossier(&u.unit).await?.context("a version after the first mail")?;
    let errors = async || -> anyhow::Result<Vec<String>> {
        Ok(s.open_findings().await?.into_iter().filter(|(_, _, f)| f.severity == "error").map(|(_, _, f)| f.code).collect())
    };
    let open = errors().await?;
    ensure!(open == vec!["submission.missing_photo", "submission.missing_photo"], "{open:?}");

    let (photos_id, second) = apply(2, part(2, true), Some(v1.id)).await?;
    ensure!(second.standing.complete(), "{:#?}", second.findings);
    let history = s.dossier_history(&u.unit).await?;
    ensure!(history.len() == 2 && history[0].id == v1.id && history[1].submission_id == photos_id);
    let current = s.current_dossier(&u.unit).await?.context("current")?;
    ensure!(current.id == history[1].id);
    for st in &current.dossier.studios {
        ensure!(st.form.as_ref().and_then(|f| f.from.submission) == Some(forms_id), "{}: form from the first mail", st.name);
        ensure!(st.photo.as_ref().and_then(|p| p.from.submission) == Some(photos_id), "{}: photo from the second", st.name);
    }
    ensure!(current.changes.len() == 2 && current.changes.iter().all(|c| c.part == studio_intake::core::dossier::Part::Photo));
    // The first version is kept as it was: no photos.
    ensure!(history[0].dossier.studios.iter().all(|st| st.photo.is_none()));
    ensure!(errors().await?.is_empty(), "a later mail that resolves a finding closes it");
    let rows = s.current_studios().await?;
    ensure!(rows.len() == 2 && rows.iter().all(|r| r.verdict == "accepted" && r.submission_id == photos_id), "{rows:?}");
    ensure!(s.counts().await?.studios_current == 2);

    // A merge onto a version that is no longer current is refused, and leaves nothing.
    let stale = apply(3, part(3, true), Some(v1.id)).await;
    ensure!(stale.is_err(), "merge onto a stale version recorded");
    ensure!(s.dossier_history(&u.unit).await?.len() == 2);
    ensure!(s.counts().await?.submissions == 2);
    Ok(())
}

/// Registered addresses, held mails and confirmation requests: what `held` and the intake
/// rely on, on both backends.
async fn senders_held_and_confirmations(db: &TestDb) -> anyhow::Result<()> {
    let s = &db.store;
    ensure!(s.registered_unit("a@x.cn").await?.is_none());
    s.register_sender("A@X.cn", "犍为县总工会", "staff").await?;
    ensure!(s.registered_unit("a@x.cn").await?.as_deref() == Some("犍为县总工会"));
    s.register_sender("a@x.cn", "井研县总工会", "confirmation").await?;
    ensure!(s.registered_senders().await? == vec![("a@x.cn".to_string(), "井研县总工会".to_string())]);

    // A held mail with two confirmation requests.
    let mut held = submission(None, "accepted", vec![]);
    held.sender = Some("stranger@evil.example".into());
    held.held = Some("submission.unknown_sender".into());
    held.suggested_unit = Some("犍为县总工会".into());
    held.attachments = json!([{"file": "附件1.docx", "kind": "approval_form", "studio": null}]);
    held.confirmations = vec![("<c1@intake>".into(), "犍为县总工会".into()), ("<c2@intake>".into(), "犍为县总工会".into())];
    let raw_id = s.put_raw(&raw("INBOX", None, Some(7), "held")).await?.id();
    let r = s.record(raw_id, &held, &[outgoing("<ack@intake>", "stranger@evil.example")]).await?;
    let list = s.held_mails().await?;
    ensure!(list.len() == 1 && list[0].submission_id == r.submission_id && list[0].state == "held");
    ensure!(list[0].attachments == vec![("附件1.docx".to_string(), "approval_form".to_string())]);
    ensure!(s.held_mail_of_raw(raw_id).await?.is_some());
    ensure!(s.open_confirmation(&["<other@x>".into()]).await?.is_none());
    let c = s.open_confirmation(&["<other@x>".into(), "<c2@intake>".into()]).await?.context("open confirmation")?;
    ensure!(c == ("<c2@intake>".to_string(), raw_id, "犍为县总工会".to_string()));
    s.close_confirmations(raw_id).await?;
    ensure!(s.open_confirmation(&["<c1@intake>".into()]).await?.is_none(), "both requests closed");
    ensure!(s.replies_since(Utc::now() - TimeDelta::hours(1)).await? == 1);

    // Applied once, then no more; a discarded one is never applied.
    let mut applied = submission(Some("犍为县总工会"), "accepted", vec![studio("甲", "accepted", 1)]);
    applied.findings = vec![finding("form.team_too_small", "warning", Some("甲"))];
    ensure!(s.apply_held(r.submission_id, &applied, &[]).await?);
    ensure!(!s.apply_held(r.submission_id, &applied, &[]).await?, "applied twice");
    ensure!(s.held_mails().await?.is_empty());
    ensure!(s.held_mail(r.submission_id).await?.context("still on record")?.state == "applied");
    ensure!(s.current_studios().await?.len() == 1);
    let raw2 = s.put_raw(&raw("INBOX", None, Some(8), "held 2")).await?.id();
    let r2 = s.record(raw2, &SubmissionRecord { confirmations: vec![], ..held.clone() }, &[]).await?;
    ensure!(s.discard_held(r2.submission_id).await?);
    ensure!(!s.discard_held(r2.submission_id).await?);
    ensure!(!s.apply_held(r2.submission_id, &applied, &[]).await?, "a discarded mail was applied");
    Ok(())
}
