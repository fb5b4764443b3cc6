//! Shared harness of the dispatcher tests: real stores (SQLite files, PostgreSQL), nodes
//! written the way the control plane writes them, and a small Worker API fixture on a
//! real socket that speaks node protocol §6.2–6.3 and can misbehave on purpose (401,
//! 503, vanish mid-job, hold until released or dropped).
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cynode_core::model::{Job, NewJob, NewTask, NewUser, Node, NodeStatus, NodeUpdate, Task, User};
use cynode_core::store::{SqliteStore, Store};
use cynode_core::{JobId, TaskId};
use cynode_sched::{QueueStore, RetryPolicy, SqliteQueue};
use cynode_server::dispatch::DispatchConfig;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A store and a queue.
pub struct Env {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn QueueStore>,
    pub dir: Option<tempfile::TempDir>,
}

/// Core store and queue in SQLite files of one temporary directory.
pub async fn sqlite_env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("core.db"))
        .await
        .expect("open core sqlite");
    let queue = SqliteQueue::open_path(dir.path().join("queue.db"))
        .await
        .expect("open queue sqlite");
    Env {
        store: Arc::new(store),
        queue: Arc::new(queue),
        dir: Some(dir),
    }
}

impl Env {
    /// A second queue handle on the same SQLite file (another replica).
    pub async fn second_sqlite_queue(&self) -> Arc<dyn QueueStore> {
        let dir = self.dir.as_ref().expect("sqlite env");
        Arc::new(
            SqliteQueue::open_path(dir.path().join("queue.db"))
                .await
                .expect("open queue sqlite"),
        )
    }
}

/// Short intervals so tests spend their time on behaviour.
pub fn fast_config() -> DispatchConfig {
    DispatchConfig {
        poll_interval: Duration::from_millis(100),
        placement_retry: Duration::from_millis(150),
        node_cache_ttl: Duration::ZERO,
        lease_ttl: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(1),
        retry: RetryPolicy {
            base: Duration::from_millis(200),
            factor: 2.0,
            max: Duration::from_secs(1),
            jitter: 0.0,
        },
        reconcile_interval: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(5),
        ..Default::default()
    }
}

pub async fn user(store: &Arc<dyn Store>, handle: &str) -> User {
    store
        .create_user(NewUser {
            handle: handle.into(),
            email: None,
            password: None,
        })
        .await
        .expect("create user")
}

/// The `sandbox` object of a commands-mode task (as the gateway writes it).
pub fn shell(cmd: &str) -> Value {
    json!({"image": "alpine:latest", "command": ["sh", "-c", cmd], "env": {},
           "timeout_seconds": 300, "network_policy": "none", "use_inference": false,
           "job_spec_json": ""})
}

/// Same, with the inference socket.
pub fn shell_inference(cmd: &str) -> Value {
    let mut v = shell(cmd);
    v["use_inference"] = json!(true);
    v
}

/// Stores a task and its queued job the way the gateway does.
pub async fn task(store: &Arc<dyn Store>, owner: &User, sandbox: Value) -> (Task, Job) {
    let n = uuid::Uuid::new_v4().simple().to_string();
    let task = store
        .create_task(NewTask {
            created_by: Some(owner.id),
            project_id: Some(store.default_project(owner.id).await.expect("project").id),
            name: format!("t-{n}"),
            prompt: sandbox["command"]
                .get(2)
                .and_then(Value::as_str)
                .map(String::from),
            ..Default::default()
        })
        .await
        .expect("create task");
    let job_id = JobId::new();
    let payload = json!({"version": 1, "task_id": task.id.to_string(),
                         "job_id": job_id.to_string(), "sandbox": sandbox});
    let job = store
        .create_job(NewJob {
            id: job_id,
            task_id: task.id,
            payload,
        })
        .await
        .expect("create job");
    (task, job)
}

/// A capability report (§3.2).
pub fn caps(slug: &str, labels: &[&str], inference: bool, max_concurrency: u32) -> Value {
    json!({
        "version": 1, "reported_at": chrono::Utc::now().to_rfc3339(),
        "node": {"node_slug": slug, "labels": labels},
        "platform": {"os": "linux", "arch": "amd64"},
        "compute": {"cpu_cores": 2, "ram_mb": 4096},
        "container_runtime": {"runtime": "podman"},
        "sandbox": {"supported": true, "features": ["netns"], "max_concurrency": max_concurrency},
        "inference": if labels.contains(&"sandbox_only") {
            json!({"supported": inference, "mode": "disabled"})
        } else {
            json!({"supported": inference, "running": inference})
        },
    })
}

/// A registered, configured, dispatchable node, as the control plane stores one.
pub async fn add_node(
    store: &Arc<dyn Store>,
    slug: &str,
    url: &str,
    token: &str,
    report: Value,
) -> Node {
    let n = store.upsert_node(slug).await.expect("upsert node");
    let now = chrono::Utc::now();
    store
        .record_capabilities(n.id, report, now)
        .await
        .expect("record capabilities");
    store
        .update_node(
            n.id,
            NodeUpdate {
                status: Some(NodeStatus::Active),
                worker_api_target_url: Some(Some(url.into())),
                worker_api_bearer_token: Some(Some(token.into())),
                config_version: Some(Some("v1".into())),
                config_ack: Some((now, "applied".into(), None)),
                last_seen_at: Some(now),
                ..Default::default()
            },
        )
        .await
        .expect("activate node")
}

/// Polls `check` until it gives a value (a hang guard of 90 s, not a timing claim).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..1800 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until the core job is terminal and returns it.
pub async fn wait_ended(store: &Arc<dyn Store>, id: JobId) -> Job {
    eventually(&format!("job {id} to end"), || async {
        let j = store.get_job(id).await.expect("get job");
        j.status.is_terminal().then_some(j)
    })
    .await
}

pub async fn task_status(store: &Arc<dyn Store>, id: TaskId) -> String {
    store
        .get_task(id)
        .await
        .expect("task")
        .status
        .as_str()
        .to_string()
}

/// Waits until the task shows `status` (the task is written just after its job).
pub async fn wait_task(store: &Arc<dyn Store>, id: TaskId, status: &str) {
    eventually(&format!("task {id} to be {status}"), || async {
        (task_status(store, id).await == status).then_some(())
    })
    .await
}

/// The job's result document as JSON.
pub fn result_of(job: &Job) -> Value {
    match job.result.clone() {
        Some(Value::String(s)) => serde_json::from_str(&s).expect("result json"),
        Some(v) => v,
        None => Value::Null,
    }
}

/// A free local port (bound and released).
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

// ------------------------------------------------------------------ Worker API fixture

/// Worker API fixture: what it saw and how it behaves.
#[derive(Default)]
pub struct FakeState {
    pub token: String,
    /// Job ids of authorized `jobs:run` requests, in arrival order (vanished ones too).
    pub calls: Mutex<Vec<String>>,
    /// Bodies of authorized `jobs:run` requests, in arrival order.
    pub requests: Mutex<Vec<Value>>,
    /// Job ids answered with a result.
    pub answered: Mutex<Vec<String>>,
    /// Job ids whose request was dropped by the caller before an answer (cancel).
    pub dropped: Mutex<Vec<String>>,
    /// Requests currently held open.
    pub active: AtomicUsize,
    /// Connections to accept and then drop after reading the request ("vanish").
    pub vanish: AtomicUsize,
    /// Requests to answer 503 with `Retry-After: 1`.
    pub busy: AtomicUsize,
    /// Requests seen with a wrong token.
    pub unauthorized: AtomicUsize,
    release: Mutex<Option<watch::Sender<bool>>>,
}

/// A running fixture.
pub struct FakeWorker {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
    release: watch::Receiver<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeWorker {
    /// Serves on a fresh port.
    pub async fn start(token: &str) -> FakeWorker {
        Self::start_on(0, token).await
    }

    /// Serves on `port` (0 = any).
    pub async fn start_on(port: u16, token: &str) -> FakeWorker {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind fixture");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        let state = Arc::new(FakeState {
            token: token.into(),
            release: Mutex::new(Some(tx)),
            ..Default::default()
        });
        let app = Router::new()
            .route("/v1/worker/jobs:run", post(run_job))
            .with_state((state.clone(), rx.clone()));
        let l = VanishingListener {
            inner: listener,
            state: state.clone(),
        };
        let server = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        FakeWorker {
            addr,
            state,
            release: rx,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets every held (`sleep`) job answer.
    pub fn release_all(&self) {
        if let Some(tx) = self.state.release.lock().expect("lock").as_ref() {
            let _ = tx.send(true);
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.calls.lock().expect("lock").clone()
    }
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().expect("lock").clone()
    }
    pub fn answered(&self) -> Vec<String> {
        self.state.answered.lock().expect("lock").clone()
    }
    pub fn dropped(&self) -> Vec<String> {
        self.state.dropped.lock().expect("lock").clone()
    }
    pub fn active(&self) -> usize {
        self.state.active.load(Ordering::SeqCst)
    }
    /// How often each job id was called.
    pub fn call_counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for id in self.calls() {
            *m.entry(id).or_insert(0) += 1;
        }
        m
    }
}

/// Accepts connections; the next `vanish` ones are read and then dropped unanswered.
struct VanishingListener {
    inner: TcpListener,
    state: Arc<FakeState>,
}

impl axum::serve::Listener for VanishingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((s, a)) = self.inner.accept().await else {
                continue;
            };
            let take = self
                .state
                .vanish
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if take {
                tokio::spawn(vanish(s, self.state.clone()));
                continue;
            }
            return (s, a);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Reads one whole request, records its job id, waits a moment "running" it, and
/// closes the connection without answering (a node that died mid-job).
async fn vanish(mut s: TcpStream, state: Arc<FakeState>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Ok(n) = s.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body: Value =
                    serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                let id = body["job_id"].as_str().unwrap_or("").to_string();
                state.calls.lock().expect("lock").push(id);
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
}

/// Records a held request that ended without an answer.
struct HoldGuard {
    state: Arc<FakeState>,
    job_id: String,
    answered: bool,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::SeqCst);
        if !self.answered {
            self.state
                .dropped
                .lock()
                .expect("lock")
                .push(self.job_id.clone());
        }
    }
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({"type": "urn:cynodeai:error:x", "title": status.canonical_reason(),
               "status": status.as_u16(), "detail": detail})
        .to_string(),
    )
        .into_response()
}

async fn run_job(
    State((st, mut release)): State<(Arc<FakeState>, watch::Receiver<bool>)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", st.token) {
        st.unauthorized.fetch_add(1, Ordering::SeqCst);
        return problem(StatusCode::UNAUTHORIZED, "Invalid or missing bearer token");
    }
    if st
        .busy
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, "node at max concurrency");
        r.headers_mut()
            .insert(header::RETRY_AFTER, "1".parse().expect("header"));
        return r;
    }
    let Ok(req) = serde_json::from_str::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    if req["version"] != 1 {
        return problem(StatusCode::BAD_REQUEST, "unsupported version");
    }
    let job_id = req["job_id"].as_str().unwrap_or("").to_string();
    let task_id = req["task_id"].as_str().unwrap_or("").to_string();
    if job_id.is_empty() || task_id.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "task_id and job_id are required");
    }
    st.calls.lock().expect("lock").push(job_id.clone());
    st.requests.lock().expect("lock").push(req.clone());
    let script = req["sandbox"]["command"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let started = chrono::Utc::now();
    st.active.fetch_add(1, Ordering::SeqCst);
    let mut guard = HoldGuard {
        state: st.clone(),
        job_id: job_id.clone(),
        answered: false,
    };
    let (status, exit, stdout) = if script.starts_with("sleep") {
        // Held until released, or until the caller drops the connection.
        while !*release.borrow() {
            if release.changed().await.is_err() {
                break;
            }
        }
        ("completed", 0, "slept\n".to_string())
    } else if let Some(rest) = script.strip_prefix("echo ") {
        ("completed", 0, format!("{rest}\n"))
    } else if script == "timeout" {
        ("timeout", -1, String::new())
    } else if let Some(code) = script.strip_prefix("exit ") {
        (
            "failed",
            code.trim().parse::<i64>().unwrap_or(1),
            String::new(),
        )
    } else {
        ("completed", 0, String::new())
    };
    guard.answered = true;
    st.answered.lock().expect("lock").push(job_id.clone());
    let ended = chrono::Utc::now();
    axum::Json(json!({
        "version": 1, "task_id": task_id, "job_id": job_id, "status": status,
        "exit_code": exit, "stdout": stdout, "stderr": "",
        "started_at": started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "ended_at": ended.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "truncated": {"stdout": false, "stderr": false}
    }))
    .into_response()
}

// ------------------------------------------------------------------ gateway on a socket

/// The user gateway served on a real socket, with `dispatcher` as its task dispatcher.
pub struct Gateway {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Gateway {
    /// Serves the gateway, creates user `admin` and logs in.
    pub async fn start(
        store: &Arc<dyn Store>,
        dispatcher: Arc<dyn cynode_server::gateway::TaskDispatcher>,
    ) -> Gateway {
        use cynode_core::auth::{JwtKey, JwtKeys, PasswordParams, hash_password};
        use cynode_server::gateway::{GatewayConfig, GatewayState, router};
        let keys = JwtKeys::new(JwtKey::new("k1", b"dispatch test signing key".to_vec()));
        let config = GatewayConfig {
            password_params: PasswordParams::insecure_fast_for_tests(),
            ..Default::default()
        };
        let state = GatewayState::builder(store.clone(), keys)
            .config(config)
            .dispatcher(dispatcher)
            .build();
        let app = router(state);
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let addr = l.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        let hash = hash_password("admin-pass-1", &PasswordParams::insecure_fast_for_tests())
            .expect("hash");
        store
            .create_user(NewUser {
                handle: "admin".into(),
                email: None,
                password: Some(hash),
            })
            .await
            .expect("create admin");
        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        let r = http
            .post(format!("{base}/v1/auth/login"))
            .json(&json!({"handle": "admin", "password": "admin-pass-1"}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200, "login");
        let v: Value = r.json().await.expect("login body");
        let token = v["access_token"]
            .as_str()
            .expect("access token")
            .to_string();
        Gateway {
            base,
            http,
            token,
            server,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut b = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            b = b.json(&body);
        }
        let r = b.send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates a commands-mode task; returns its id.
    pub async fn create_task(&self, commands: &str) -> String {
        let (s, v) = self
            .post(
                "/v1/tasks",
                Some(json!({"prompt": commands, "input_mode": "commands"})),
            )
            .await;
        assert_eq!(s, 201, "create task: {v}");
        assert_eq!(v["status"], "queued");
        v["task_id"].as_str().expect("task_id").to_string()
    }

    /// Waits until the task's API status is `status`.
    pub async fn wait_status(&self, id: &str, status: &str) {
        eventually(&format!("task {id} to be {status}"), || async {
            let (_, v) = self.get(&format!("/v1/tasks/{id}")).await;
            (v["status"] == status).then_some(())
        })
        .await
    }

    /// The result document of the task's only job (parsed from its JSON text).
    pub async fn job_result(&self, id: &str) -> (Value, Value) {
        let (s, v) = self.get(&format!("/v1/tasks/{id}/result")).await;
        assert_eq!(s, 200, "result: {v}");
        let job = v["jobs"][0].clone();
        let doc = job["result"]
            .as_str()
            .map(|t| serde_json::from_str(t).expect("result is JSON text"))
            .unwrap_or(Value::Null);
        (job, doc)
    }
}
