//! PostgreSQL-specific behaviour of `PgStore`, against a real PostgreSQL 18 + pgvector
//! server (`CYNODE_TEST_PG_URL`, a superuser URL of a maintenance database). Each test
//! creates its own database and drops it at the end. What every backend must do is in
//! the conformance suite; this file covers what only PostgreSQL can show: the migration
//! history, transactions rolled back by the server, connection loss, and the planner
//! using the vector index.

use std::time::Duration;

use cynode_core::Error;
use cynode_core::model::*;
use cynode_core::store::{PgOptions, PgStore, StoreAdmin, TaskStore, UserStore, VectorStore};
use cynode_testkit::env::{TestDatabase as TestDb, service_var};
use sqlx::{Connection, PgConnection};

/// Drops a test database; a failure is only noted.
async fn drop_db(db: &TestDb) {
    if let Err(e) = db.drop_db().await {
        eprintln!("note: could not drop test database {}: {e}", db.name);
    }
}

async fn count(conn: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.expect(sql)
}

/// Deterministic pseudo-random unit-ish vectors (xorshift), so runs are reproducible.
fn vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.max(1);
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    (0..n).map(|_| (0..dim).map(|_| next()).collect()).collect()
}

/// A plan with long literals (query vectors) cut short, for failure messages.
fn short(plan: &str) -> String {
    plan.lines()
        .map(|l| l.chars().take(160).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn chunk(project: cynode_core::ProjectId, ns: &str, i: usize, e: Vec<f32>) -> NewVectorItem {
    NewVectorItem {
        project_id: project,
        namespace: ns.into(),
        source_type: "note".into(),
        source_ref: Some(format!("doc-{}", i / 10)),
        chunk_index: i32::try_from(i).unwrap(),
        content_text: format!("chunk {i}"),
        embedding_model: "minilm".into(),
        embedding: e,
        ..Default::default()
    }
}

#[tokio::test]
async fn connect_migrates_once_and_reports_backend() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url, 2)
        .await
        .expect("first connect migrates");
    assert_eq!(store.backend(), "postgres");
    store.ping().await.expect("ping");
    store.close().await;
    // A second start on an up-to-date database applies nothing and succeeds.
    let store = PgStore::connect(&db.url, 2).await.expect("second connect");
    let mut c = db.connect().await;
    let applied = count(
        &mut c,
        "SELECT count(*) FROM _sqlx_migrations WHERE success",
    )
    .await;
    let max: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(applied >= 2, "both migrations are recorded, got {applied}");
    assert_eq!(max, PgStore::supported_schema_version());
    let ext = count(
        &mut c,
        "SELECT count(*) FROM pg_extension WHERE extname = 'vector'",
    )
    .await;
    assert_eq!(ext, 1, "the vector extension is created");
    c.close().await.ok();
    store.close().await;
    drop_db(&db).await;
}

#[tokio::test]
async fn refuses_a_schema_newer_than_the_build() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url, 2)
        .await
        .expect("connect migrates");
    store.close().await;
    let supported = PgStore::supported_schema_version();
    let future = supported + 1_000;
    let mut c = db.connect().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer build', true, '\\x00'::bytea, 0)",
    )
    .bind(future)
    .execute(&mut c)
    .await
    .expect("record a migration this build does not know");
    c.close().await.ok();

    match PgStore::connect(&db.url, 2).await {
        Err(Error::SchemaTooNew {
            found,
            supported: s,
        }) => {
            assert_eq!(found, future);
            assert_eq!(s, supported);
        }
        Err(e) => panic!("expected SchemaTooNew, got {e:?}"),
        Ok(_) => panic!("a database migrated by a newer build was accepted"),
    }
    drop_db(&db).await;
}

#[tokio::test]
async fn create_task_with_a_missing_dependency_writes_nothing() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url, 2).await.expect("connect");
    let user = store
        .create_user(NewUser {
            handle: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let dep = store
        .create_task(NewTask {
            created_by: Some(user.id),
            name: "first".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let missing = cynode_core::TaskId::new();
    let err = store
        .create_task(NewTask {
            created_by: Some(user.id),
            name: "second".into(),
            // The first dependency exists; the second does not, so the failure comes
            // after the task row and one dependency row were written.
            depends_on: vec![dep.id, missing],
            artifacts: vec![NewArtifact {
                path: "input/a.txt".into(),
                storage_ref: String::new(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect_err("a missing dependency is refused");
    assert!(matches!(err, Error::InvalidInput(_)), "got {err:?}");
    let msg = err.to_string();
    assert!(
        !msg.contains("INSERT") && !msg.contains("violates"),
        "no SQL or server text: {msg}"
    );

    let mut c = db.connect().await;
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM tasks WHERE name = 'second'").await,
        0
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM tasks").await, 1);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM task_dependencies").await,
        0
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM task_artifacts").await,
        0
    );

    // The name is still free: the same task without the bad dependency is accepted.
    let ok = store
        .create_task(NewTask {
            created_by: Some(user.id),
            name: "second".into(),
            depends_on: vec![dep.id],
            ..Default::default()
        })
        .await
        .expect("retry without the missing dependency");
    assert_eq!(store.task_dependencies(ok.id).await.unwrap(), vec![dep.id]);
    c.close().await.ok();
    store.close().await;
    drop_db(&db).await;
}

#[tokio::test]
async fn a_vector_batch_with_one_bad_chunk_writes_nothing() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url, 2).await.expect("connect");
    let user = store
        .create_user(NewUser {
            handle: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let project = store.default_project(user.id).await.unwrap();
    let mut batch: Vec<NewVectorItem> = vectors(1500, 8, 7)
        .into_iter()
        .enumerate()
        .map(|(i, e)| chunk(project.id, "docs", i, e))
        .collect();
    // The last chunk (in the second INSERT statement of the batch) names a project
    // that does not exist.
    if let Some(last) = batch.last_mut() {
        last.project_id = cynode_core::ProjectId::new();
    }
    let err = store
        .insert_vectors(batch)
        .await
        .expect_err("dangling project");
    assert!(matches!(err, Error::InvalidInput(_)), "got {err:?}");
    let mut c = db.connect().await;
    assert_eq!(count(&mut c, "SELECT count(*) FROM vector_items").await, 0);
    c.close().await.ok();
    store.close().await;
    drop_db(&db).await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_retryable() {
    // Only needs the URL shape of the test server: a port nobody listens on.
    let Some(admin_url) = service_var("CYNODE_TEST_PG_URL") else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let user = admin_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or("postgres", |(u, _)| u);
    let mut o = PgOptions::new(format!("postgres://{user}@127.0.0.1:{port}/postgres"));
    o.max_connections = 1;
    o.acquire_timeout = Duration::from_secs(2);
    match PgStore::connect_with(&o).await {
        Err(e) => {
            assert_eq!(e.kind(), "unavailable", "got {e:?}");
            assert!(e.is_retryable());
        }
        Ok(_) => panic!("connected to a closed port"),
    }
}

#[tokio::test]
async fn a_connection_killed_mid_call_is_unavailable_and_the_next_call_works() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    // One connection, so the killed one is the one the store was using.
    let store = PgStore::connect(&db.url, 1).await.expect("connect");
    let user = store
        .create_user(NewUser {
            handle: "carol".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Hold the user's row lock elsewhere, so the store's update waits inside the server.
    let mut locker = db.connect().await;
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(user.id.0)
        .execute(&mut locker)
        .await
        .unwrap();
    let blocked = {
        let store = store.clone();
        tokio::spawn(async move { store.set_user_active(user.id, false).await })
    };

    // Find the store's backend waiting on that lock and terminate it.
    let mut admin = db.connect().await;
    let mut pid: Option<i32> = None;
    for _ in 0..1000 {
        pid = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
        .fetch_optional(&mut admin)
        .await
        .unwrap();
        if pid.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = pid.expect("the store's update never waited on the lock");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(terminated);

    let err = blocked
        .await
        .unwrap()
        .expect_err("the call lost its connection");
    assert_eq!(err.kind(), "unavailable", "got {err:?}");
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(
        !msg.contains("UPDATE") && !msg.contains("terminating"),
        "plain words only: {msg}"
    );

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    locker.close().await.ok();
    admin.close().await.ok();
    // The pool replaces the dead connection: retrying the same call succeeds.
    let u = store
        .set_user_active(user.id, false)
        .await
        .expect("retry after reconnect");
    assert!(!u.is_active);
    store.close().await;
    drop_db(&db).await;
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_server_is_replaced_without_an_error() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url, 1).await.expect("connect");
    let user = store
        .create_user(NewUser {
            handle: "frank".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The store's only connection is idle in its pool now: end it from the server side.
    let mut admin = db.connect().await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'cynode'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, 1, "one pooled connection");
    admin.close().await.ok();
    // Longer than the idle time after which the pool checks a connection before use.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let u = store
        .get_user(user.id)
        .await
        .expect("the pool replaced the dead connection");
    assert_eq!(u.handle, "frank");
    store.close().await;
    drop_db(&db).await;
}

#[tokio::test]
async fn constraint_violations_are_typed_and_worded_plainly() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url, 2).await.expect("connect");
    let user = store
        .create_user(NewUser {
            handle: "dave".into(),
            email: Some("d@example.org".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let dup = store
        .create_user(NewUser {
            handle: "dave2".into(),
            email: Some("d@example.org".into()),
            ..Default::default()
        })
        .await
        .expect_err("duplicate e-mail");
    assert!(matches!(dup, Error::Conflict(_)), "got {dup:?}");
    assert!(
        dup.to_string().contains("e-mail"),
        "says what clashed: {dup}"
    );

    // A NUL byte cannot be stored in PostgreSQL text: invalid input, not a crash.
    let nul = store
        .create_task(NewTask {
            created_by: Some(user.id),
            name: "a\0b".into(),
            ..Default::default()
        })
        .await
        .expect_err("NUL in text");
    assert!(matches!(nul, Error::InvalidInput(_)), "got {nul:?}");

    // A dangling project reference is invalid input.
    let fk = store
        .create_task(NewTask {
            created_by: Some(user.id),
            project_id: Some(cynode_core::ProjectId::new()),
            name: "t".into(),
            ..Default::default()
        })
        .await
        .expect_err("dangling project");
    assert!(matches!(fk, Error::InvalidInput(_)), "got {fk:?}");
    for e in [&dup, &nul, &fk] {
        let m = e.to_string();
        assert!(
            !m.contains("violates") && !m.contains("INSERT") && !m.contains("constraint"),
            "no server text in {m}"
        );
    }
    store.close().await;
    drop_db(&db).await;
}

#[tokio::test]
async fn search_of_an_indexed_dimension_uses_the_hnsw_index() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url, 2).await.expect("connect");
    let user = store
        .create_user(NewUser {
            handle: "erin".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let project = store.default_project(user.id).await.unwrap();
    let items: Vec<NewVectorItem> = vectors(5000, 384, 42)
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            // One chunk in four is public, the rest confidential.
            let sensitivity = if i % 4 == 0 {
                Sensitivity::Public
            } else {
                Sensitivity::Confidential
            };
            NewVectorItem {
                sensitivity: Some(sensitivity),
                ..chunk(project.id, "docs", i, e)
            }
        })
        .collect();
    let stored = store
        .insert_vectors(items)
        .await
        .expect("insert 5000 chunks");
    let mut c = db.connect().await;
    sqlx::query("ANALYZE vector_items")
        .execute(&mut c)
        .await
        .unwrap();

    let target = &stored[1];
    let query = VectorQuery {
        project_ids: vec![project.id],
        namespaces: vec!["docs".into()],
        max_sensitivity: Sensitivity::Restricted,
        embedding_model: "minilm".into(),
        embedding: target.embedding.clone(),
        k: 10,
    };
    let plan = store.explain_vector_search(&query).await.expect("explain");
    assert!(
        plan.contains("Index Scan using vector_items_embedding_384_hnsw"),
        "the HNSW index is not used:\n{}",
        short(&plan)
    );
    let hits = store.search_vectors(&query).await.expect("search");
    assert_eq!(hits.len(), 10);
    assert_eq!(
        hits[0].item.id, target.id,
        "the stored vector itself is the nearest"
    );
    assert!(
        hits[0].distance.abs() < 1e-5,
        "distance to itself: {}",
        hits[0].distance
    );
    assert!(
        hits.windows(2).all(|w| w[0].distance <= w[1].distance),
        "nearest first"
    );

    // Only 1 chunk in 4 passes the sensitivity filter. A plain HNSW scan yields
    // `hnsw.ef_search` (100) candidates, about 25 of which pass, fewer than k = 50; the
    // iterative scan keeps going until k chunks pass, so the result is not cut short.
    // The query is a public chunk, so the nearest hit is that chunk; the rest agree
    // with an exhaustive search: at least half of them, a floor well under the recall
    // an approximate index reaches on uniformly random vectors (its hardest input, about
    // 80 % here) and far above what unrelated chunks would share (about 2 of 50).
    let public_target = &stored[0];
    let public = VectorQuery {
        max_sensitivity: Sensitivity::Public,
        embedding: public_target.embedding.clone(),
        k: 50,
        ..query.clone()
    };
    let plan = store.explain_vector_search(&public).await.expect("explain");
    assert!(
        plan.contains("Index Scan using vector_items_embedding_384_hnsw"),
        "the filtered search does not use the HNSW index:\n{}",
        short(&plan)
    );
    let hits = store
        .search_vectors(&public)
        .await
        .expect("filtered search");
    assert_eq!(
        hits.len(),
        50,
        "k hits although 3 in 4 chunks are filtered out"
    );
    assert!(
        hits.iter()
            .all(|h| h.item.sensitivity == Some(Sensitivity::Public))
    );
    assert_eq!(hits[0].item.id, public_target.id);
    assert!(
        hits.windows(2).all(|w| w[0].distance <= w[1].distance),
        "nearest first"
    );
    let mut exact: Vec<(f32, cynode_core::VectorItemId)> = stored
        .iter()
        .filter(|v| v.sensitivity == Some(Sensitivity::Public))
        .map(|v| {
            (
                cosine_distance(&v.embedding, &public_target.embedding),
                v.id,
            )
        })
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));
    let expected: Vec<_> = exact.iter().take(50).map(|(_, id)| *id).collect();
    let found = hits
        .iter()
        .filter(|h| expected.contains(&h.item.id))
        .count();
    eprintln!("filtered search recall: {found}/50");
    assert!(
        found >= 25,
        "recall {found}/50 against an exhaustive search"
    );

    // A large k raises the candidate list for its own transaction.
    let wide = VectorQuery {
        k: 300,
        ..query.clone()
    };
    let hits = store
        .search_vectors(&wide)
        .await
        .expect("search with k = 300");
    assert_eq!(hits.len(), 300);
    assert_eq!(hits[0].item.id, target.id);
    assert!(
        hits.windows(2).all(|w| w[0].distance <= w[1].distance),
        "nearest first"
    );

    // A dimension without an index is searched exactly, and says so in its plan.
    let small = VectorQuery {
        embedding: vec![0.1, 0.2, 0.3],
        ..query
    };
    let plan = store.explain_vector_search(&small).await.unwrap();
    assert!(
        !plan.contains("hnsw"),
        "no index for 3 dimensions:\n{}",
        short(&plan)
    );
    c.close().await.ok();
    store.close().await;
    drop_db(&db).await;
}
