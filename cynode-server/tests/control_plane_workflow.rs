//! Workflow API routes of the control plane (agents-and-mcp §7.2–7.4): every route
//! and error row, lease semantics with a hand-moved clock, the start gate with real
//! plan rows, and the runner token. SQLite (a file, so the test can add plan rows
//! through its own connection) and PostgreSQL (`CYNODE_TEST_PG_URL`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cynode_core::TaskId;
use cynode_core::model::{NewProject, NewTask, TaskStatus};
use cynode_core::store::{SqliteStore, Store};
use cynode_server::control_plane::{ControlPlaneConfig, ControlPlaneState, router};
use cynode_server::gateway::ManualClock;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tower::ServiceExt;

#[path = "common/pg.rs"]
mod pg;

/// Writes plan rows the storage traits do not expose.
#[async_trait]
trait Plans: Send + Sync {
    async fn plan(&self, project: uuid::Uuid, state: &str, archived: bool) -> uuid::Uuid;
    async fn attach(&self, task: TaskId, plan: uuid::Uuid);
}

struct SqlitePlans(String);

#[async_trait]
impl Plans for SqlitePlans {
    async fn plan(&self, project: uuid::Uuid, state: &str, archived: bool) -> uuid::Uuid {
        let mut c = SqliteConnection::connect(&self.0).await.expect("connect");
        let id = uuid::Uuid::new_v4();
        let now = chrono::Utc::now().timestamp_micros();
        sqlx::query(
            "INSERT INTO project_plans (id, project_id, state, archived, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(state)
        .bind(i64::from(archived))
        .bind(now)
        .execute(&mut c)
        .await
        .expect("insert plan");
        id
    }
    async fn attach(&self, task: TaskId, plan: uuid::Uuid) {
        let mut c = SqliteConnection::connect(&self.0).await.expect("connect");
        sqlx::query("UPDATE tasks SET plan_id = ?1 WHERE id = ?2")
            .bind(plan.to_string())
            .bind(task.to_string())
            .execute(&mut c)
            .await
            .expect("attach plan");
    }
}

struct PgPlans(String);

#[async_trait]
impl Plans for PgPlans {
    async fn plan(&self, project: uuid::Uuid, state: &str, archived: bool) -> uuid::Uuid {
        let mut c = PgConnection::connect(&self.0).await.expect("connect");
        let id = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO project_plans (id, project_id, state, archived) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(project)
        .bind(state)
        .bind(archived)
        .execute(&mut c)
        .await
        .expect("insert plan");
        id
    }
    async fn attach(&self, task: TaskId, plan: uuid::Uuid) {
        let mut c = PgConnection::connect(&self.0).await.expect("connect");
        sqlx::query("UPDATE tasks SET plan_id = $1 WHERE id = $2")
            .bind(plan)
            .bind(task.0)
            .execute(&mut c)
            .await
            .expect("attach plan");
    }
}

struct H {
    state: ControlPlaneState,
    clock: Arc<ManualClock>,
}

struct Resp {
    status: StatusCode,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json")
    }
    #[track_caller]
    fn problem(&self, status: u16, detail: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["detail"], detail, "{v}");
        if status == 409 {
            assert_eq!(v["type"], "https://cynode.ai/specs/conflict");
            assert_eq!(v["title"], "Conflict");
        }
    }
}

impl H {
    fn new(store: Arc<dyn Store>, token: Option<&str>) -> Self {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let state = ControlPlaneState::builder(
            store,
            ControlPlaneConfig {
                workflow_runner_token: token.map(str::to_string),
                ..ControlPlaneConfig::default()
            },
        )
        .clock(clock.clone())
        .build();
        Self { state, clock }
    }
    async fn raw(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut b = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let res = router(self.state.clone())
            .oneshot(b.body(Body::from(body.to_string())).expect("req"))
            .await
            .expect("infallible");
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Resp { status, body }
    }
    async fn post(&self, path: &str, v: Value) -> Resp {
        self.raw(path, &v.to_string(), &[]).await
    }
    async fn task(&self, name: &str, deps: Vec<TaskId>) -> TaskId {
        self.state
            .store()
            .create_task(NewTask {
                name: name.into(),
                depends_on: deps,
                ..Default::default()
            })
            .await
            .expect("task")
            .id
    }
}

async fn routes_and_leases(store: Arc<dyn Store>, _plans: Arc<dyn Plans>) {
    let h = H::new(store, None);
    let t = h.task("wf-1", vec![]).await;
    let ts = t.to_string();

    // start: validation rows.
    h.raw("/v1/workflow/start", "{", &[])
        .await
        .problem(400, "invalid JSON body");
    h.raw("/v1/workflow/start", "[1]", &[])
        .await
        .problem(400, "invalid JSON body");
    h.post("/v1/workflow/start", json!({"task_id": ts}))
        .await
        .problem(400, "task_id and holder_id required");
    h.post("/v1/workflow/start", json!({"holder_id": "r1"}))
        .await
        .problem(400, "task_id and holder_id required");
    h.post(
        "/v1/workflow/start",
        json!({"task_id": "nope", "holder_id": "r1"}),
    )
    .await
    .problem(400, "invalid task_id");
    h.post(
        "/v1/workflow/start",
        json!({"task_id": TaskId::new().to_string(), "holder_id": "r1"}),
    )
    .await
    .problem(404, "task not found");

    // start → started, idempotent retry → already_running.
    let key = uuid::Uuid::new_v4().to_string();
    let r = h
        .post(
            "/v1/workflow/start",
            json!({"task_id": ts, "holder_id": "r1", "idempotency_key": key}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        (
            v["status"].as_str(),
            v["run_id"].as_str(),
            v["lease_id"].as_str()
        ),
        (Some("started"), Some(key.as_str()), Some(key.as_str()))
    );
    let r = h
        .post(
            "/v1/workflow/start",
            json!({"task_id": ts, "holder_id": "r1", "idempotency_key": key}),
        )
        .await;
    assert_eq!(r.json()["status"], "already_running");
    // Another holder, or the same holder without the key → 409.
    h.post(
        "/v1/workflow/start",
        json!({"task_id": ts, "holder_id": "r2", "idempotency_key": key}),
    )
    .await
    .problem(409, "lease held by another workflow runner");
    h.post(
        "/v1/workflow/start",
        json!({"task_id": ts, "holder_id": "r1"}),
    )
    .await
    .problem(409, "lease held by another workflow runner");

    // renew.
    h.post("/v1/workflow/renew", json!({"task_id": ts}))
        .await
        .problem(400, "lease_id required");
    h.post("/v1/workflow/renew", json!({"lease_id": key}))
        .await
        .problem(400, "task_id required");
    h.post(
        "/v1/workflow/renew",
        json!({"task_id": ts, "lease_id": uuid::Uuid::new_v4().to_string()}),
    )
    .await
    .problem(409, "lease not held");
    h.clock.advance(Duration::from_secs(3000));
    let r = h
        .post(
            "/v1/workflow/renew",
            json!({"task_id": ts, "lease_id": key, "expires_in_sec": 600}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "renewed");
    // Renewed at 3000 s for 600 s: still held at 3599 s.
    h.clock.advance(Duration::from_secs(599));
    h.post(
        "/v1/workflow/start",
        json!({"task_id": ts, "holder_id": "r2"}),
    )
    .await
    .problem(409, "lease held by another workflow runner");

    // release: wrong id is a no-op 204, right id frees it.
    h.post("/v1/workflow/release", json!({"task_id": ts}))
        .await
        .problem(400, "lease_id required");
    let r = h
        .post(
            "/v1/workflow/release",
            json!({"task_id": ts, "lease_id": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    h.post(
        "/v1/workflow/start",
        json!({"task_id": ts, "holder_id": "r2"}),
    )
    .await
    .problem(409, "lease held by another workflow runner");
    for _ in 0..2 {
        let r = h
            .post(
                "/v1/workflow/release",
                json!({"task_id": ts, "lease_id": key}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = h
        .post(
            "/v1/workflow/release",
            json!({"task_id": TaskId::new().to_string(), "lease_id": key}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "idempotent for unknown tasks"
    );
    let r = h
        .post(
            "/v1/workflow/start",
            json!({"task_id": ts, "holder_id": "r2", "idempotency_key": "not-a-uuid",
                   "expires_in_sec": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["status"], "started");
    let lease2 = v["lease_id"].as_str().expect("lease").to_string();
    assert_ne!(lease2, "not-a-uuid");
    assert!(lease2.parse::<uuid::Uuid>().is_ok());

    // Expiry: after 10 s another runner takes over.
    h.clock.advance(Duration::from_secs(11));
    let r = h
        .post(
            "/v1/workflow/start",
            json!({"task_id": ts, "holder_id": "r3"}),
        )
        .await;
    assert_eq!(r.json()["status"], "started");

    // checkpoint / resume.
    h.post("/v1/workflow/resume", json!({"task_id": ts}))
        .await
        .problem(404, "no checkpoint for task");
    h.post("/v1/workflow/resume", json!({}))
        .await
        .problem(400, "task_id required");
    h.post(
        "/v1/workflow/resume",
        json!({"task_id": TaskId::new().to_string()}),
    )
    .await
    .problem(404, "no checkpoint for task");
    h.post(
        "/v1/workflow/checkpoint",
        json!({"task_id": ts, "state": {"a": 1}}),
    )
    .await
    .problem(400, "invalid JSON body");
    h.post(
        "/v1/workflow/checkpoint",
        json!({"task_id": ts, "state": "{not json"}),
    )
    .await
    .problem(400, "state must be valid JSON text");
    h.post("/v1/workflow/checkpoint", json!({"state": "{}"}))
        .await
        .problem(400, "task_id required");
    h.post(
        "/v1/workflow/checkpoint",
        json!({"task_id": TaskId::new().to_string(), "state": "{}"}),
    )
    .await
    .problem(404, "task not found");
    let state = json!({"task_id": ts, "plan": {"steps": ["a", "b"]}, "current_step_index": 1});
    let r = h
        .post(
            "/v1/workflow/checkpoint",
            json!({"task_id": ts, "state": state.to_string(), "last_node_id": "dispatch_step"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.post("/v1/workflow/resume", json!({"task_id": ts})).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["task_id"], ts.as_str());
    assert_eq!(v["last_node_id"], "dispatch_step");
    let back: Value =
        serde_json::from_str(v["state"].as_str().expect("state is a string")).expect("json text");
    assert_eq!(back, state);
    assert!(
        chrono::DateTime::parse_from_rfc3339(v["updated_at"].as_str().expect("ts")).is_ok(),
        "{v}"
    );
}

async fn start_gate(store: Arc<dyn Store>, plans: Arc<dyn Plans>) {
    let h = H::new(store.clone(), None);
    let project = store
        .create_project(NewProject {
            slug: "wf-gate".into(),
            display_name: "Gate".into(),
            description: None,
        })
        .await
        .expect("project");
    let dep = h.task("dep", vec![]).await;
    let t = h.task("gated", vec![dep]).await;
    let start = |pma: bool| {
        let h = &h;
        async move {
            let headers: &[(&str, &str)] = if pma {
                &[("X-Cynode-Workflow-Requested-By", "pma")]
            } else {
                &[]
            };
            h.raw(
                "/v1/workflow/start",
                &json!({"task_id": t.to_string(), "holder_id": "r"}).to_string(),
                headers,
            )
            .await
        }
    };
    // No plan: dependencies are not checked.
    let free = h.task("free", vec![dep]).await;
    let r = h
        .post(
            "/v1/workflow/start",
            json!({"task_id": free.to_string(), "holder_id": "r"}),
        )
        .await;
    assert_eq!(r.json()["status"], "started");

    let draft = plans.plan(project.id.0, "draft", false).await;
    plans.attach(t, draft).await;
    start(false).await.problem(409, "plan not active");
    // PMA skips only the state check; the pending dependency still blocks.
    start(true).await.problem(409, "dependencies not satisfied");
    let archived = plans.plan(project.id.0, "completed", true).await;
    plans.attach(t, archived).await;
    start(true).await.problem(409, "plan is archived");
    let active = plans.plan(project.id.0, "active", false).await;
    plans.attach(t, active).await;
    start(false)
        .await
        .problem(409, "dependencies not satisfied");
    store
        .set_task_status(dep, TaskStatus::Completed)
        .await
        .expect("complete dep");
    let r = start(false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "started");
}

async fn runner_token(store: Arc<dyn Store>, _plans: Arc<dyn Plans>) {
    let h = H::new(store, Some("runner-secret"));
    let t = h.task("tok", vec![]).await;
    let body = json!({"task_id": t.to_string(), "holder_id": "r"}).to_string();
    for path in [
        "/v1/workflow/start",
        "/v1/workflow/renew",
        "/v1/workflow/release",
        "/v1/workflow/checkpoint",
        "/v1/workflow/resume",
    ] {
        h.raw(path, &body, &[])
            .await
            .problem(401, "Missing or invalid workflow runner token");
        h.raw(path, &body, &[("Authorization", "Bearer wrong")])
            .await
            .problem(401, "Missing or invalid workflow runner token");
    }
    let r = h
        .raw(
            "/v1/workflow/start",
            &body,
            &[("Authorization", "Bearer runner-secret")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// Eight runners race for one task: exactly one starts, the others get 409.
async fn racing_starts(store: Arc<dyn Store>, _plans: Arc<dyn Plans>) {
    let h = Arc::new(H::new(store, None));
    let t = h.task("race", vec![]).await;
    let mut joins = Vec::new();
    for i in 0..8 {
        let h = h.clone();
        joins.push(tokio::spawn(async move {
            let r = h
                .post(
                    "/v1/workflow/start",
                    json!({"task_id": t.to_string(), "holder_id": format!("runner-{i}")}),
                )
                .await;
            r.status
        }));
    }
    let mut statuses = Vec::new();
    for j in joins {
        statuses.push(j.await.expect("join"));
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let conflict = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((ok, conflict), (1, 7), "{statuses:?}");
}

// ------------------------------------------------------------------ backends

async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>, Arc<dyn Plans>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wf.db");
    let store = Arc::new(SqliteStore::open(&path).await.expect("sqlite"));
    let plans = Arc::new(SqlitePlans(format!("sqlite://{}", path.display())));
    case(store.clone(), plans).await;
    store.close().await;
}

async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>, Arc<dyn Plans>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = pg::TestDatabase::create().await else {
        return;
    };
    let store = pg::store(&db).await;
    case(store.clone(), Arc::new(PgPlans(db.url.clone()))).await;
    store.close().await;
    pg::drop(db).await;
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite_cases {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::on_sqlite(super::$case).await
                }
            )*
        }
        mod postgres_cases {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::on_postgres(super::$case).await
                }
            )*
        }
    };
}

cases!(routes_and_leases, start_gate, runner_token, racing_starts);
