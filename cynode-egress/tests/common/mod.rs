//! Shared test support: the test-environment contract and fresh stores on every backend.
#![allow(dead_code)]

use std::sync::Arc;

use cynode_core::store::{MemoryStore, PgStore, SqliteStore, Store};

/// Reads a service variable of the test environment contract. Missing: fails when
/// `CYNODE_REQUIRE_SERVICES=1`, else prints a skip note and gives `None`.
pub fn service_var(name: &str) -> Option<String> {
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

/// Replaces the database name in a PostgreSQL URL (keeping any `?options`).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{db}?{q}"),
        None => format!("{host}/{db}"),
    }
}

/// Storage backend of a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `MemoryStore`.
    Memory,
    /// `SqliteStore` on a file in a temporary directory.
    Sqlite,
    /// `PgStore` on a fresh database of `CYNODE_TEST_PG_URL`.
    Postgres,
}

/// Keeps a test store's resources and removes them when dropped (the temporary
/// directory; the PostgreSQL database, dropped even when the test panicked).
pub struct StoreGuard {
    dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl StoreGuard {
    /// The SQLite directory, if any.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// URL of the PostgreSQL test database, if any.
    pub fn pg_url(&self) -> Option<String> {
        self.pg.as_ref().map(|(admin, db)| with_database(admin, db))
    }
}

impl Drop for StoreGuard {
    fn drop(&mut self) {
        let Some((admin_url, db)) = self.pg.take() else {
            return;
        };
        // Its own thread and runtime: this may run inside (or after) a test runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection;
                let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await else {
                    return;
                };
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
                let _ = admin.close().await;
            });
        })
        .join();
    }
}

/// A fresh, empty store on `backend`; `None` when the backend's service is not
/// configured (and not required).
pub async fn open_store(backend: Backend) -> Option<(Arc<dyn Store>, StoreGuard)> {
    match backend {
        Backend::Memory => Some((
            Arc::new(MemoryStore::new()),
            StoreGuard {
                dir: None,
                pg: None,
            },
        )),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = SqliteStore::open(&dir.path().join("egress.db"))
                .await
                .expect("open SQLite");
            Some((
                Arc::new(store),
                StoreGuard {
                    dir: Some(dir),
                    pg: None,
                },
            ))
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let admin_url = service_var("CYNODE_TEST_PG_URL")?;
            let db = format!("cynode_t_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("connect to CYNODE_TEST_PG_URL");
            // The name is generated from a UUID: safe to splice.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
                .execute(&mut admin)
                .await
                .expect("create a test database");
            let _ = admin.close().await;
            let guard = StoreGuard {
                dir: None,
                pg: Some((admin_url, db)),
            };
            let url = guard.pg_url().expect("pg url");
            let store = PgStore::connect(&url, 4).await.expect("open PgStore");
            Some((Arc::new(store), guard))
        }
    }
}

/// Expands `$case(backend)` (an `async fn(Backend)`) into one `#[tokio::test]` per
/// backend, in a module named after the case.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;
            #[tokio::test]
            async fn memory() {
                super::$case(common::Backend::Memory).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$case(common::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$case(common::Backend::Postgres).await
            }
        }
    )*};
}
