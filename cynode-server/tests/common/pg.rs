//! A fresh PostgreSQL database per test (`CYNODE_TEST_PG_URL`), dropped at the end.
//!
//! Shared by the suites as `common::pg` (with the gateway harness) or on its own as
//! `#[path = "common/pg.rs"] mod pg;`.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;

use cynode_core::store::{PgStore, Store};
pub use cynode_testkit::env::TestDatabase;

/// A `PgStore` (pool of 5) on a test database.
pub async fn store(db: &TestDatabase) -> Arc<PgStore> {
    Arc::new(PgStore::connect(&db.url, 5).await.expect("connect store"))
}

/// Drops a test database; a failure fails the test.
pub async fn drop(db: TestDatabase) {
    db.drop_db().await.expect("drop database");
}

/// Runs a case on a fresh database, then drops it.
pub async fn on_fresh_database<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = store(&db).await;
    case(store.clone()).await;
    store.close().await;
    drop(db).await;
}
