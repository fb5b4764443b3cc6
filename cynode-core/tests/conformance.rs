//! The storage conformance suite against every backend compiled in: memory always,
//! SQLite with feature `sqlite` (a fresh file per case), PostgreSQL with feature
//! `postgres` (a fresh database per case on `CYNODE_TEST_PG_URL`, dropped afterwards).

use cynode_core::conformance::TestStore;
use cynode_core::store::MemoryStore;

/// Reads a service variable of the test environment contract. Missing: the case fails
/// when `CYNODE_REQUIRE_SERVICES=1`, and is skipped (with a note) otherwise.
#[allow(dead_code)]
fn service_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            if std::env::var("CYNODE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!("{name} is not set, but CYNODE_REQUIRE_SERVICES=1 requires it");
            }
            eprintln!("skipped: {name} not set");
            None
        }
    }
}

async fn memory() -> TestStore {
    TestStore::new(MemoryStore::new())
}

cynode_core::conformance_suite!(memory, memory());

#[cfg(feature = "sqlite")]
async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = cynode_core::store::SqliteStore::open(&dir.path().join("conformance.db"))
        .await
        .expect("open a fresh SQLite store");
    TestStore::new(store).keep_alive(dir)
}

#[cfg(feature = "sqlite")]
cynode_core::conformance_suite!(sqlite, sqlite());

/// Replaces the database name in a PostgreSQL URL (keeping any `?options`).
#[cfg(feature = "postgres")]
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

#[cfg(feature = "postgres")]
async fn postgres() -> Option<TestStore> {
    use sqlx::Connection;

    let admin_url = service_var("CYNODE_TEST_PG_URL")?;
    let db = format!("cynode_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to CYNODE_TEST_PG_URL");
    // The name is generated above from a UUID: safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
        .execute(&mut admin)
        .await
        .expect("create a fresh test database");
    let _ = admin.close().await;
    let store = cynode_core::store::PgStore::connect(&with_database(&admin_url, &db), 4)
        .await
        .expect("open a PgStore on the fresh database");
    Some(TestStore::new(store).with_teardown(move || async move {
        let dropped = async {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await?;
            admin.close().await
        };
        if let Err(e) = dropped.await {
            eprintln!("note: could not drop test database {db}: {e}");
        }
    }))
}

#[cfg(feature = "postgres")]
cynode_core::conformance_suite!(postgres, postgres());

#[cfg(feature = "postgres")]
#[test]
fn database_url_rewrite() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:55432/postgres", "x"),
        "postgres://postgres@127.0.0.1:55432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
