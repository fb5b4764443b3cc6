//! The storage conformance suite against every backend compiled in: memory always,
//! SQLite with feature `sqlite` (a fresh file per case), PostgreSQL with feature
//! `postgres` (a fresh database per case on `CYNODE_TEST_PG_URL`, dropped afterwards).

use cynode_core::conformance::TestStore;
use cynode_core::store::MemoryStore;

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

#[cfg(feature = "postgres")]
async fn postgres() -> Option<TestStore> {
    let db = cynode_testkit::env::TestDatabase::create().await?;
    let store = cynode_core::store::PgStore::connect(&db.url, 4)
        .await
        .expect("open a PgStore on the fresh database");
    Some(TestStore::new(store).with_teardown(move || async move {
        if let Err(e) = db.drop_db().await {
            eprintln!("note: could not drop test database {}: {e}", db.name);
        }
    }))
}

#[cfg(feature = "postgres")]
cynode_core::conformance_suite!(postgres, postgres());
