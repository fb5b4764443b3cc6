//! Shared test support: the test-environment contract and fresh stores on every backend.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use cynode_core::model::{JobStatus, JobUpdate, NewJob, NewTask, NewUser, Task, User};
use cynode_core::store::{MemoryStore, PgStore, SqliteStore, Store};
use cynode_core::{JobId, TaskId};

pub use cynode_testkit::env::{TestDatabase, service_var};

/// A user with `handle` and a task of theirs named `task`.
pub async fn user_with_task(store: &dyn Store, handle: &str, task: &str) -> (User, Task) {
    let user = store
        .create_user(NewUser {
            handle: handle.into(),
            ..Default::default()
        })
        .await
        .expect("create user");
    let task = store
        .create_task(NewTask {
            created_by: Some(user.id),
            name: task.into(),
            ..Default::default()
        })
        .await
        .expect("create task");
    (user, task)
}

/// A job of `task` in `status`, as the dispatcher leaves it (created `queued`, then
/// moved on). The egress service accepts a job token only while its job is `running`.
pub async fn job_in(store: &dyn Store, task: TaskId, status: JobStatus) -> JobId {
    let job = store
        .create_job(NewJob {
            id: JobId::new(),
            task_id: task,
            payload: serde_json::json!({}),
        })
        .await
        .expect("create job");
    if status != JobStatus::Queued {
        set_job_status(store, job.id, status).await;
    }
    job.id
}

/// Moves a job to `status`.
pub async fn set_job_status(store: &dyn Store, job: JobId, status: JobStatus) {
    store
        .update_job(
            job,
            JobUpdate {
                status: Some(status),
                ..Default::default()
            },
        )
        .await
        .expect("update job");
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
    pg: Option<TestDatabase>,
}

impl StoreGuard {
    /// The SQLite directory, if any.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// URL of the PostgreSQL test database, if any.
    pub fn pg_url(&self) -> Option<String> {
        self.pg.as_ref().map(|db| db.url.clone())
    }
}

impl Drop for StoreGuard {
    fn drop(&mut self) {
        let Some(db) = self.pg.take() else {
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
            let _ = rt.block_on(db.drop_db());
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
            let db = TestDatabase::create().await?;
            let store = PgStore::connect(&db.url, 4).await.expect("open PgStore");
            Some((
                Arc::new(store),
                StoreGuard {
                    dir: None,
                    pg: Some(db),
                },
            ))
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
