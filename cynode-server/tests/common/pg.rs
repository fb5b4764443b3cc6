//! A fresh PostgreSQL database per test (`CYNODE_TEST_PG_URL`), dropped at the end.
//!
//! Shared by the suites as `common::pg` (with the gateway harness) or on its own as
//! `#[path = "common/pg.rs"] mod pg;`.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;

use cynode_core::store::{PgStore, Store};
use sqlx::{Connection, PgConnection};

/// A service variable of the test environment contract: missing fails the test under
/// `CYNODE_REQUIRE_SERVICES=1`, else the test is skipped with a note.
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

/// A database `cynode_t_<uuid>` created on the `CYNODE_TEST_PG_URL` server; the
/// maintenance connection stays open until [`FreshDatabase::drop_db`].
pub struct FreshDatabase {
    admin: PgConnection,
    name: String,
    url: String,
}

impl FreshDatabase {
    /// Creates the database; `None` (test skipped) when `CYNODE_TEST_PG_URL` is not set.
    pub async fn create() -> Option<Self> {
        let admin_url = service_var("CYNODE_TEST_PG_URL")?;
        let name = format!("cynode_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to CYNODE_TEST_PG_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create database");
        let url = with_database(&admin_url, &name);
        Some(Self { admin, name, url })
    }

    /// URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A `PgStore` (pool of 5) on the fresh database.
    pub async fn store(&self) -> Arc<PgStore> {
        Arc::new(PgStore::connect(&self.url, 5).await.expect("connect store"))
    }

    /// Drops the database, closing whatever connections are still open to it.
    pub async fn drop_db(mut self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut self.admin)
        .await
        .expect("drop database");
        self.admin.close().await.ok();
    }
}

/// Runs a case on a fresh database, then drops it.
pub async fn on_fresh_database<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = FreshDatabase::create().await else {
        return;
    };
    let store = db.store().await;
    case(store.clone()).await;
    store.close().await;
    db.drop_db().await;
}
