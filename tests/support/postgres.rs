//! A fresh PostgreSQL database for one test, on the server of the test setup
//! (`INTAKE_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`). Include it with
//! `#[path = "support/postgres.rs"] mod postgres;`.
#![allow(dead_code)]

/// Creates a database named after `prefix`, the process and the time; returns its URL. Fails
/// the test with a clear message when the server is not reachable.
pub async fn fresh_database(prefix: &str) -> String {
    use sqlx::{Connection, Executor};
    let admin = std::env::var("INTAKE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin} ({e}); start it or set INTAKE_TEST_PG_URL"));
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{prefix}_{}_{:x}_{n}", std::process::id(), nanos & 0xffff_ffff_ffff);
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}
