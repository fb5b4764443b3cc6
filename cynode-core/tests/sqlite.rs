//! SQLite-specific behaviour: schema versioning, atomicity of multi-row writes (checked
//! by counting rows in the file directly), durability across close and reopen,
//! concurrent writers, and clear errors for unusable locations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Duration, Utc};
use cynode_core::model::*;
use cynode_core::store::*;
use cynode_core::{AuditId, Error, ProjectId, TaskId};
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

// ------------------------------------------------------------------ helpers

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nested").join("cynode.db")
}

/// A raw connection to the file, bypassing the store (to count rows and to plant
/// faults the way a broken disk or a bug would).
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection to the test database")
}

async fn count(path: &Path, table: &str) -> i64 {
    let mut c = raw(path).await;
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut c)
        .await
        .expect("count rows");
    c.close().await.ok();
    n
}

async fn exec(path: &Path, sql: &str) {
    let mut c = raw(path).await;
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .expect("execute raw SQL");
    c.close().await.ok();
}

async fn user(store: &SqliteStore, handle: &str) -> User {
    store
        .create_user(NewUser {
            handle: handle.into(),
            ..Default::default()
        })
        .await
        .expect("create user")
}

fn pw() -> PasswordHash {
    PasswordHash {
        hash: b"$argon2id$v=19$stub".to_vec(),
        alg: "argon2id".into(),
    }
}

/// Asserts a message reads as plain words, not as SQL or driver output.
fn assert_plain(e: &Error) {
    let msg = e.to_string();
    for leak in [
        "constraint failed",
        "INSERT",
        "UPDATE",
        "SELECT",
        "SQLITE",
        "(code:",
        "sqlx",
    ] {
        assert!(
            !msg.contains(leak),
            "error message leaks driver text ({leak}): {msg}"
        );
    }
}

// ------------------------------------------------------------------ opening and schema

#[tokio::test]
async fn open_creates_file_and_parent_dir_in_wal_mode_with_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    assert!(!path.parent().expect("parent").exists());
    let store = SqliteStore::open(&path).await.expect("open");
    assert_eq!(store.backend(), "sqlite");
    assert_eq!(store.path(), Some(path.as_path()));
    store.ping().await.expect("ping");
    assert!(path.is_file(), "database file created");

    let mut c = raw(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM cynode_schema_migrations")
        .fetch_one(&mut c)
        .await
        .expect("schema version");
    assert_eq!(version, SqliteStore::supported_schema_version());

    // Foreign keys are enforced by the store's connections: a task pointing at a
    // project that does not exist is refused.
    let err = store
        .create_task(NewTask {
            name: "t".into(),
            project_id: Some(ProjectId::new()),
            ..Default::default()
        })
        .await
        .expect_err("dangling project");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    store.close().await;
}

#[tokio::test]
async fn reopening_an_up_to_date_database_applies_nothing_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    user(&store, "alice").await;
    store.close().await;
    let applied = count(&path, "cynode_schema_migrations").await;
    assert!(applied >= 1);
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.list_users().await.expect("list").len(), 1);
    assert_eq!(
        count(&path, "cynode_schema_migrations").await,
        SqliteStore::supported_schema_version(),
        "one row per migration, none applied twice"
    );
    store.close().await;
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    user(&store, "alice").await;
    store.close().await;

    let newer = SqliteStore::supported_schema_version() + 1;
    exec(
        &path,
        &format!(
            "INSERT INTO cynode_schema_migrations (version, description, checksum, applied_at)
             VALUES ({newer}, 'from the future', 'x', 0)"
        ),
    )
    .await;
    let err = SqliteStore::open(&path)
        .await
        .expect_err("newer schema must be refused");
    match err {
        Error::SchemaTooNew { found, supported } => {
            assert_eq!(found, newer);
            assert_eq!(supported, SqliteStore::supported_schema_version());
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    // The generic entry point refuses it the same way, and nothing was touched.
    let err = open(&StoreConfig::Sqlite { path: path.clone() })
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), "schema_too_new");
    assert_eq!(count(&path, "users").await, 1);
}

#[tokio::test]
async fn a_migration_changed_after_it_was_applied_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    SqliteStore::open(&path).await.expect("open").close().await;
    exec(
        &path,
        "UPDATE cynode_schema_migrations SET checksum = 'tampered' WHERE version = 1",
    )
    .await;
    let err = SqliteStore::open(&path)
        .await
        .expect_err("tampered history");
    assert_eq!(err.kind(), "internal", "{err:?}");
    assert!(err.to_string().contains("migration 1"), "{err}");
}

// ------------------------------------------------------------------ atomicity

#[tokio::test]
async fn create_task_failing_on_a_missing_dependency_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    let alice = user(&store, "alice").await;
    let first = store
        .create_task(NewTask {
            created_by: Some(alice.id),
            name: "first".into(),
            ..Default::default()
        })
        .await;
    let first = first.expect("first task");

    // The task row and the first dependency are written before the missing second
    // dependency fails; the artifacts would come after.
    let missing = TaskId::new();
    let err = store
        .create_task(NewTask {
            created_by: Some(alice.id),
            name: "second".into(),
            depends_on: vec![first.id, missing],
            artifacts: vec![NewArtifact {
                path: "input/a.txt".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect_err("missing dependency");
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains(&missing.to_string())),
        "{err:?}"
    );
    assert_plain(&err);

    assert_eq!(count(&path, "tasks").await, 1);
    assert_eq!(count(&path, "task_dependencies").await, 0);
    assert_eq!(count(&path, "task_artifacts").await, 0);
    assert!(
        !store
            .task_name_exists(alice.id, "second")
            .await
            .expect("lookup")
    );

    // The same request without the bad dependency then succeeds in full.
    let second = store
        .create_task(NewTask {
            created_by: Some(alice.id),
            name: "second".into(),
            depends_on: vec![first.id, first.id],
            artifacts: vec![NewArtifact {
                path: "input/a.txt".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("second task");
    assert_eq!(
        store.task_dependencies(second.id).await.expect("deps"),
        vec![first.id]
    );
    assert_eq!(count(&path, "task_artifacts").await, 1);
    store.close().await;
}

#[tokio::test]
async fn create_user_failing_on_the_password_leaves_no_user_and_no_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    // A fault on the last of the three inserts (user, default project, password).
    exec(
        &path,
        "CREATE TRIGGER fail_password BEFORE INSERT ON password_credentials
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .await;
    let err = store
        .create_user(NewUser {
            handle: "bob".into(),
            password: Some(pw()),
            ..Default::default()
        })
        .await
        .expect_err("injected fault");
    assert_plain(&err);
    assert_eq!(count(&path, "users").await, 0);
    assert_eq!(count(&path, "projects").await, 0);
    assert_eq!(count(&path, "password_credentials").await, 0);
    assert!(matches!(
        store.get_user_by_handle("bob").await,
        Err(Error::NotFound { .. })
    ));

    exec(&path, "DROP TRIGGER fail_password").await;
    let bob = store
        .create_user(NewUser {
            handle: "bob".into(),
            password: Some(pw()),
            ..Default::default()
        })
        .await
        .expect("create after the fault is gone");
    assert_eq!(
        store.get_password(bob.id).await.expect("password"),
        Some(pw())
    );
    assert_eq!(
        store.default_project(bob.id).await.expect("project").slug,
        format!("default-{}", bob.id)
    );
    store.close().await;
}

#[tokio::test]
async fn rotate_session_failing_on_the_old_session_keeps_it_and_adds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    let alice = user(&store, "alice").await;
    let expires = Utc::now() + Duration::hours(1);
    let old = store
        .create_session(NewRefreshSession {
            user_id: alice.id,
            token_hash: b"old".to_vec(),
            token_kid: None,
            expires_at: expires,
        })
        .await
        .expect("session");
    // The new session row goes in first; deactivating the old one then fails.
    exec(
        &path,
        "CREATE TRIGGER fail_rotate BEFORE UPDATE ON refresh_sessions
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .await;
    let new = NewRefreshSession {
        user_id: alice.id,
        token_hash: b"new".to_vec(),
        token_kid: None,
        expires_at: expires,
    };
    store
        .rotate_session(old.id, new.clone(), Utc::now())
        .await
        .expect_err("injected fault");
    assert_eq!(count(&path, "refresh_sessions").await, 1);
    assert!(store.get_session(old.id).await.expect("old").is_active);
    assert!(
        store
            .find_active_session(b"new", Utc::now())
            .await
            .expect("lookup")
            .is_none()
    );

    exec(&path, "DROP TRIGGER fail_rotate").await;
    let rotated = store
        .rotate_session(old.id, new, Utc::now())
        .await
        .expect("rotate");
    assert!(!store.get_session(old.id).await.expect("old").is_active);
    assert_eq!(
        store
            .find_active_session(b"new", Utc::now())
            .await
            .expect("lookup")
            .map(|s| s.id),
        Some(rotated.id)
    );
    store.close().await;
}

#[tokio::test]
async fn append_message_failing_on_the_thread_bump_stores_no_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    let alice = user(&store, "alice").await;
    let thread = store
        .create_thread(alice.id, None, Some("t".into()))
        .await
        .expect("thread");
    exec(
        &path,
        "CREATE TRIGGER fail_bump BEFORE UPDATE ON chat_threads
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .await;
    store
        .append_message(thread.id, ChatRole::User, "hello".into(), None)
        .await
        .expect_err("injected fault");
    assert_eq!(count(&path, "chat_messages").await, 0);
    assert_eq!(
        store
            .get_thread(thread.id)
            .await
            .expect("thread")
            .updated_at,
        thread.updated_at
    );
    store.close().await;
}

#[tokio::test]
async fn append_turn_failing_on_its_audit_record_stores_no_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    let alice = user(&store, "alice").await;
    let thread = store
        .create_thread(alice.id, None, None)
        .await
        .expect("thread");
    exec(
        &path,
        "CREATE TRIGGER fail_audit BEFORE INSERT ON chat_audit_log
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .await;
    let turn = ChatTurn {
        thread_id: thread.id,
        messages: vec![
            NewChatMessage::new(ChatRole::User, "question"),
            NewChatMessage::new(ChatRole::Assistant, "answer"),
        ],
        audit: Some(ChatAudit {
            id: AuditId::new(),
            user_id: Some(alice.id),
            project_id: None,
            outcome: "success".into(),
            error_code: None,
            redaction_applied: false,
            redaction_kinds: Vec::new(),
            duration_ms: Some(1),
            request_id: None,
            created_at: Utc::now(),
        }),
    };
    store.append_turn(turn).await.expect_err("injected fault");
    assert_eq!(count(&path, "chat_messages").await, 0);
    assert_eq!(
        store
            .get_thread(thread.id)
            .await
            .expect("thread")
            .updated_at,
        thread.updated_at
    );
    store.close().await;
}

fn chunk(project: ProjectId, text: &str, embedding: Vec<f32>) -> NewVectorItem {
    NewVectorItem {
        project_id: project,
        namespace: "docs".into(),
        source_type: "note".into(),
        source_ref: Some("notes/a.md".into()),
        content_text: text.into(),
        embedding_model: "test-embed".into(),
        embedding,
        ..Default::default()
    }
}

#[tokio::test]
async fn insert_vectors_failing_on_the_last_item_stores_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    let alice = user(&store, "alice").await;
    let project = store.default_project(alice.id).await.expect("project").id;
    let missing = ProjectId::new();
    let err = store
        .insert_vectors(vec![
            chunk(project, "one", vec![1.0, 0.0]),
            chunk(project, "two", vec![0.0, 1.0]),
            chunk(missing, "three", vec![1.0, 1.0]),
        ])
        .await
        .expect_err("dangling project");
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains(&missing.to_string())),
        "{err:?}"
    );
    assert_eq!(count(&path, "vector_items").await, 0);
    store.close().await;
}

// ------------------------------------------------------------------ durability

#[tokio::test]
async fn committed_data_survives_close_and_reopen_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.expect("open");
    let alice = store
        .create_user(NewUser {
            handle: "alice".into(),
            email: Some("a@example.org".into()),
            password: Some(pw()),
        })
        .await
        .expect("user");
    let task = store
        .create_task(NewTask {
            created_by: Some(alice.id),
            name: "durable".into(),
            prompt: Some("keep me".into()),
            acceptance_criteria: Some(json!({"must": ["survive"]})),
            metadata: Some(json!({"n": 1.5, "nested": {"ok": true}})),
            ..Default::default()
        })
        .await
        .expect("task");
    let task = store
        .set_task_status(task.id, TaskStatus::Completed)
        .await
        .expect("status");
    let pref = store
        .put_preference(
            Scope::System,
            "ui.theme",
            json!("dark"),
            Some(0),
            Some("alice"),
        )
        .await
        .expect("preference");
    let project = store.default_project(alice.id).await.expect("project").id;
    let items = store
        .insert_vectors(vec![chunk(project, "remember", vec![0.25, -0.5, 1.0])])
        .await
        .expect("vectors");
    store.close().await;
    drop(store);

    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.get_user(alice.id).await.expect("user"), alice);
    assert_eq!(
        store.get_password(alice.id).await.expect("password"),
        Some(pw())
    );
    assert_eq!(store.get_task(task.id).await.expect("task"), task);
    assert_eq!(
        store
            .get_preference(Scope::System, "ui.theme")
            .await
            .expect("pref"),
        pref
    );
    let hits = store
        .search_vectors(&VectorQuery {
            project_ids: vec![project],
            namespaces: vec!["docs".into()],
            max_sensitivity: Sensitivity::Restricted,
            embedding_model: "test-embed".into(),
            embedding: vec![0.25, -0.5, 1.0],
            k: 5,
        })
        .await
        .expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].item, items[0]);
    assert!(hits[0].distance.abs() < 1e-6);
    store.close().await;
}

#[tokio::test]
async fn a_second_store_on_the_same_file_sees_every_committed_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let a = SqliteStore::open(&path).await.expect("open a");
    let b = SqliteStore::open(&path).await.expect("open b");
    let alice = user(&a, "alice").await;
    assert_eq!(b.get_user(alice.id).await.expect("visible in b"), alice);
    a.close().await;
    b.close().await;
}

// ------------------------------------------------------------------ concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_store_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let alice = user(&store, "alice").await;
    let thread = store
        .create_thread(alice.id, None, None)
        .await
        .expect("thread");

    const WRITERS: usize = 16;
    const EACH: usize = 15;
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..EACH {
                let name = format!("task-{w}-{i}");
                store
                    .create_task(NewTask {
                        created_by: Some(alice.id),
                        name,
                        ..Default::default()
                    })
                    .await?;
                store
                    .append_message(thread.id, ChatRole::User, format!("{w}/{i}"), None)
                    .await?;
                // Readers run alongside the writers.
                store
                    .list_tasks(&TaskFilter {
                        created_by: Some(alice.id),
                        ..Default::default()
                    })
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for h in handles {
        h.await.expect("writer task").expect("no writer fails");
    }
    let (_, total) = store
        .list_tasks(&TaskFilter::default())
        .await
        .expect("list");
    assert_eq!(total, (WRITERS * EACH) as u64);
    assert_eq!(
        store
            .list_messages(thread.id)
            .await
            .expect("messages")
            .len(),
        WRITERS * EACH
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_through_separate_stores_on_one_file_all_succeed() {
    // Two stores on one file behave like two processes: each has its own writer
    // connection, and they meet at SQLite's file lock.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let a = Arc::new(SqliteStore::open(&path).await.expect("open a"));
    let b = Arc::new(SqliteStore::open(&path).await.expect("open b"));
    let mut handles = Vec::new();
    for (s, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        handles.push(tokio::spawn(async move {
            for i in 0..20 {
                let u = store
                    .create_user(NewUser {
                        handle: format!("u{s}-{i}"),
                        ..Default::default()
                    })
                    .await?;
                store
                    .put_preference(Scope::User(u.id), "k", json!(i), None, None)
                    .await?;
                store
                    .put_preference(Scope::System, &format!("s{s}"), json!(i), None, None)
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for h in handles {
        h.await
            .expect("writer task")
            .expect("no writer fails with a busy database");
    }
    assert_eq!(count(&path, "users").await, 80);
    assert_eq!(count(&path, "projects").await, 80);
    assert_eq!(count(&path, "preference_entries").await, 84);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_versioned_updates_let_exactly_one_win() {
    let store = Arc::new(SqliteStore::open_in_memory().await.expect("open"));
    store
        .put_preference(Scope::System, "k", json!(0), Some(0), None)
        .await
        .expect("create");
    let mut handles = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .put_preference(Scope::System, "k", json!(i), Some(1), None)
                .await
        }));
    }
    let mut won = 0;
    for h in handles {
        match h.await.expect("task") {
            Ok(p) => {
                won += 1;
                assert_eq!(p.version, 2);
            }
            Err(Error::Conflict(_)) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        store
            .get_preference(Scope::System, "k")
            .await
            .expect("get")
            .version,
        2
    );
}

// ------------------------------------------------------------------ unusable locations

fn assert_unavailable_mentions(err: &Error, path: &Path) {
    eprintln!("error shown to the user: {err}");
    assert_eq!(err.kind(), "unavailable", "{err:?}");
    let msg = err.to_string();
    let shown = path.display().to_string();
    assert!(
        msg.contains(&shown)
            || path
                .ancestors()
                .any(|p| msg.contains(&p.display().to_string()) && p != Path::new("/")),
        "message names the location: {msg}"
    );
    assert_plain(err);
}

#[tokio::test]
async fn a_location_under_a_regular_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("write file");
    let path = blocker.join("sub").join("cynode.db");
    let err = SqliteStore::open(&path)
        .await
        .expect_err("cannot create a directory inside a file");
    assert_unavailable_mentions(&err, &path);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_location_on_a_read_only_file_system_gives_a_clear_error() {
    // procfs accepts no new files or directories, even for root.
    let path = PathBuf::from(format!(
        "/proc/cynode-test-{}/cynode.db",
        uuid::Uuid::new_v4().simple()
    ));
    let err = SqliteStore::open(&path)
        .await
        .expect_err("procfs is not writable");
    assert_unavailable_mentions(&err, &path);
}

#[tokio::test]
async fn a_directory_in_place_of_the_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = SqliteStore::open(dir.path())
        .await
        .expect_err("a directory is not a database");
    assert_unavailable_mentions(&err, dir.path());
}

#[tokio::test]
async fn a_file_that_is_not_a_database_gives_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, vec![b'x'; 8192]).expect("write");
    let err = SqliteStore::open(&path).await.expect_err("not a database");
    assert_eq!(err.kind(), "internal", "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_plain(&err);
}

// ------------------------------------------------------------------ errors and search

#[tokio::test]
async fn constraint_errors_are_typed_and_in_plain_words() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    let alice = user(&store, "alice").await;
    let e = store
        .create_user(NewUser {
            handle: "alice".into(),
            ..Default::default()
        })
        .await
        .expect_err("dup");
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
    assert_plain(&e);
    store
        .create_task(NewTask {
            created_by: Some(alice.id),
            name: "t".into(),
            ..Default::default()
        })
        .await
        .expect("t");
    let e = store
        .create_task(NewTask {
            created_by: Some(alice.id),
            name: "t".into(),
            ..Default::default()
        })
        .await
        .expect_err("dup name");
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
    assert_plain(&e);
    let e = store
        .create_job(NewJob {
            id: Default::default(),
            task_id: TaskId::new(),
            payload: json!({}),
        })
        .await;
    let e = e.expect_err("unknown task");
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    assert_plain(&e);
    // The system scope cannot hold the same key twice (NULL scope id in a unique key).
    store
        .put_preference(Scope::System, "k", json!(1), Some(0), None)
        .await
        .expect("create");
    let e = store
        .put_preference(Scope::System, "k", json!(2), Some(0), None)
        .await
        .expect_err("exists");
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
    assert_eq!(
        store
            .list_preferences(Scope::System, "")
            .await
            .expect("list")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_closed_store_reports_unavailable() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    store.close().await;
    let err = store.ping().await.expect_err("closed");
    assert!(err.is_retryable(), "{err:?}");
    assert_plain(&err);
}

/// A small deterministic generator, so the test needs no extra crates.
struct Lcg(u64);
impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

#[tokio::test]
async fn vector_search_matches_the_reference_backend() {
    let sqlite = SqliteStore::open_in_memory().await.expect("open");
    let memory = MemoryStore::new();
    let mut rng = Lcg(42);
    let dim = 24;
    let mut projects = Vec::new();
    for s in [&sqlite as &dyn Store, &memory as &dyn Store] {
        let a = s.create_project(NewProject {
            slug: "a".into(),
            display_name: "A".into(),
            description: None,
        });
        let b = s.create_project(NewProject {
            slug: "b".into(),
            display_name: "B".into(),
            description: None,
        });
        projects.push((a.await.expect("a").id, b.await.expect("b").id));
    }
    let levels = [
        None,
        Some(Sensitivity::Public),
        Some(Sensitivity::Confidential),
        Some(Sensitivity::Restricted),
    ];
    let mut batches: (Vec<NewVectorItem>, Vec<NewVectorItem>) = (Vec::new(), Vec::new());
    for i in 0..600 {
        let embedding: Vec<f32> = (0..dim).map(|_| rng.next_f32()).collect();
        let model = if i % 7 == 0 {
            "other-model"
        } else {
            "test-embed"
        };
        let ns = if i % 3 == 0 { "code" } else { "docs" };
        for (which, (pa, pb)) in projects.iter().enumerate() {
            let item = NewVectorItem {
                project_id: if i % 2 == 0 { *pa } else { *pb },
                namespace: ns.into(),
                sensitivity: levels[i % levels.len()],
                source_type: "note".into(),
                source_ref: Some(format!("src/{}", i % 10)),
                chunk_index: i as i32,
                content_text: format!("chunk {i}"),
                embedding_model: model.into(),
                embedding: embedding.clone(),
                metadata: Some(json!({"i": i})),
                ..Default::default()
            };
            if which == 0 {
                batches.0.push(item)
            } else {
                batches.1.push(item)
            }
        }
    }
    sqlite
        .insert_vectors(batches.0)
        .await
        .expect("sqlite insert");
    memory
        .insert_vectors(batches.1)
        .await
        .expect("memory insert");

    for (k, max, namespaces, both) in [
        (10, Sensitivity::Restricted, vec!["docs"], false),
        (25, Sensitivity::Public, vec!["docs", "code"], true),
        (1000, Sensitivity::Internal, vec!["code"], true),
    ] {
        let query: Vec<f32> = (0..dim).map(|_| rng.next_f32()).collect();
        let mut results = Vec::new();
        for (s, (pa, pb)) in [
            (&sqlite as &dyn Store, projects[0]),
            (&memory as &dyn Store, projects[1]),
        ] {
            let q = VectorQuery {
                project_ids: if both { vec![pa, pb] } else { vec![pa] },
                namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                max_sensitivity: max,
                embedding_model: "test-embed".into(),
                embedding: query.clone(),
                k,
            };
            let hits = s.search_vectors(&q).await.expect("search");
            results.push(
                hits.into_iter()
                    .map(|h| (h.item.content_text, h.distance))
                    .collect::<Vec<_>>(),
            );
        }
        assert!(!results[0].is_empty());
        assert_eq!(
            results[0], results[1],
            "k={k} max={max:?} namespaces={namespaces:?}"
        );
    }

    // Deleting by source removes exactly that source's chunks in that project.
    let gone = sqlite
        .delete_vectors_by_source(projects[0].0, "src/2")
        .await
        .expect("delete");
    let gone_ref = memory
        .delete_vectors_by_source(projects[1].0, "src/2")
        .await
        .expect("delete");
    assert_eq!(gone, gone_ref);
    assert!(gone > 0);
}

#[tokio::test]
async fn equal_distances_are_ordered_by_item_id() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    let p = store
        .create_project(NewProject {
            slug: "p".into(),
            display_name: "P".into(),
            description: None,
        })
        .await
        .expect("project")
        .id;
    // Six identical embeddings tie exactly; one nearer chunk comes first regardless.
    let mut batch: Vec<NewVectorItem> = (0..6)
        .map(|i| chunk(p, &format!("same {i}"), vec![1.0, 1.0, 0.0]))
        .collect();
    batch.push(chunk(p, "nearest", vec![1.0, 0.0, 0.0]));
    batch.push(chunk(p, "far", vec![-1.0, 0.0, 0.0]));
    let items = store.insert_vectors(batch).await.expect("insert");
    let mut tied: Vec<_> = items
        .iter()
        .filter(|i| i.content_text.starts_with("same"))
        .map(|i| i.id)
        .collect();
    tied.sort();
    let hits = store
        .search_vectors(&VectorQuery {
            project_ids: vec![p],
            namespaces: vec!["docs".into()],
            max_sensitivity: Sensitivity::Public,
            embedding_model: "test-embed".into(),
            embedding: vec![1.0, 0.2, 0.0],
            k: 4,
        })
        .await
        .expect("search");
    let got: Vec<_> = hits.iter().map(|h| h.item.id).collect();
    assert_eq!(hits[0].item.content_text, "nearest");
    assert_eq!(got[1..], tied[..3]);
    assert!(hits[1..].iter().all(|h| h.distance == hits[1].distance));
}
