//! The conformance suite and worker tests on SQLite: a fresh file per test.

mod common;
mod worker_cases;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use common::Q;
use cynode_sched::{QueueStore, SqliteQueue, SqliteQueueConfig};

async fn make() -> Option<(Q, Pin<Box<dyn Future<Output = ()> + Send>>)> {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open_path(dir.path().join("queue.db"))
        .await
        .unwrap();
    let q2 = q.clone();
    Some((
        Arc::new(q) as Q,
        Box::pin(async move {
            q2.close().await;
            drop(dir);
        }),
    ))
}

conformance_suite!(make());
worker_suite!(make());

#[tokio::test]
async fn acknowledged_jobs_survive_reopening_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let q = SqliteQueue::open_path(&path).await.unwrap();
    let id = q
        .enqueue(cynode_sched::NewJob::new("k", serde_json::json!({"x": 1})))
        .await
        .unwrap()
        .id;
    q.close().await;
    let q = SqliteQueue::open_path(&path).await.unwrap();
    assert_eq!(
        q.get(id).await.unwrap().payload,
        serde_json::json!({"x": 1})
    );
    q.close().await;
    // Pretend a newer build migrated the file.
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    let v = SqliteQueue::supported_schema_version();
    sqlx::query(
        "INSERT INTO _cynode_sched_migrations (version, description, success, checksum, execution_time)
         VALUES (?1, 'from the future', 1, x'00', 0)",
    )
    .bind(v + 1)
    .execute(&mut c)
    .await
    .unwrap();
    drop(c);
    match SqliteQueue::open_path(&path).await {
        Err(cynode_sched::Error::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (v + 1, v))
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn in_memory_database_and_a_directory_in_the_way() {
    let q = SqliteQueue::open(&SqliteQueueConfig::default())
        .await
        .unwrap();
    q.enqueue(cynode_sched::NewJob::new("k", serde_json::json!(null)))
        .await
        .unwrap();
    assert_eq!(q.stats(None).await.unwrap().queued, 1);
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteQueue::open_path(dir.path()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}
