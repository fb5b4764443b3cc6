//! The conformance suite and worker tests on PostgreSQL (`CYNODE_TEST_PG_URL`), each
//! test in its own fresh database.

mod common;
mod worker_cases;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use common::Q;
use cynode_sched::{PgQueue, PgQueueConfig, QueueStore};
use cynode_testkit::env::TestDatabase;

async fn make() -> Option<(Q, Pin<Box<dyn Future<Output = ()> + Send>>)> {
    let db = TestDatabase::create().await?;
    let q = PgQueue::connect(&PgQueueConfig::new(db.url.clone()))
        .await
        .unwrap();
    let q2 = q.clone();
    Some((
        Arc::new(q) as Q,
        Box::pin(async move {
            q2.close().await;
            let _ = db.drop_db().await;
        }),
    ))
}

conformance_suite!(make());
worker_suite!(make());

#[tokio::test]
async fn schema_too_new_is_refused_and_tables_share_a_database() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let q = PgQueue::connect(&PgQueueConfig::new(db.url.clone()))
        .await
        .unwrap();
    assert_eq!(q.backend(), "postgres");
    // A second connect to the migrated database is a no-op.
    let again = PgQueue::connect(&PgQueueConfig::new(db.url.clone()))
        .await
        .unwrap();
    again.close().await;
    // Another component's own migrations table and tables do not clash.
    db.exec(
        "CREATE TABLE _sqlx_migrations (version bigint primary key); CREATE TABLE jobs (id int)",
    )
    .await;
    let v = PgQueue::supported_schema_version();
    db.exec(&format!(
        "INSERT INTO _cynode_sched_migrations (version, description, success, checksum, execution_time)
         VALUES ({}, 'from the future', true, '\\x00', 0)",
        v + 1
    ))
    .await;
    let err = PgQueue::connect(&PgQueueConfig::new(db.url.clone()))
        .await
        .unwrap_err();
    match err {
        cynode_sched::Error::SchemaTooNew { found, supported } => {
            assert_eq!((found, supported), (v + 1, v));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    q.close().await;
    let _ = db.drop_db().await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_bad_url_invalid() {
    let err = PgQueue::connect(&PgQueueConfig {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..PgQueueConfig::new("postgres://nobody@127.0.0.1:1/none")
    })
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        !err.to_string().contains("127.0.0.1:1"),
        "no driver text in the message: {err}"
    );
    let err = PgQueue::connect(&PgQueueConfig::new("not a url"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
}
