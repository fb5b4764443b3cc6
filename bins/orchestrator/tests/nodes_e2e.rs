//! End to end with the real binaries: `cynode-orchestrator serve` on PostgreSQL and
//! `cynode-worker` processes on the Podman socket. Every test has its own database,
//! orchestrator and workers on free loopback ports; tasks go through the user gateway
//! over HTTP, node tokens through the control plane.
//!
//! Scenarios: a shell job runs on a registered worker and its output is served; a
//! wrong pre-shared key is refused and registers nothing; forged and expired node tokens
//! are refused; a worker killed mid-job and an orchestrator killed mid-job lose nothing
//! and run the job to one completion; two workers share load; an inference job never
//! goes to a sandbox-only node and waits, with a readable reason, until a node with
//! inference appears.
//!
//! Test environment contract: `CYNODE_TEST_PG_URL`, `CYNODE_TEST_DOCKER_HOST`,
//! `CYNODE_TEST_IMAGE` (missing: fail under `CYNODE_REQUIRE_SERVICES=1`, else skip).
//! The `cynode-worker` binary is taken from this build's target directory and built
//! with cargo when it is not there.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cynode_core::auth::{JwtKey, JwtKeys, issue_node_token};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{JWT, create_db, drop_db, free_port, login, orchestrator, pg_url, podman};
use tokio::io::{AsyncBufReadExt, BufReader};

const PSK: &str = "e2e-registration-psk";
const ADMIN_PASSWORD: &str = "e2e admin password";
/// Generous: a loaded 2-core machine running several of these tests at once.
const DEADLINE: Duration = Duration::from_secs(120);

struct Env {
    admin_url: String,
    docker_host: String,
    image: String,
}

fn test_env() -> Option<Env> {
    let admin_url = pg_url()?;
    let p = podman()?;
    Some(Env {
        admin_url,
        docker_host: p.docker_host,
        image: p.image,
    })
}

/// The `cynode-worker` binary next to the orchestrator's; built once when missing.
fn worker_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(support::BIN)
            .parent()
            .expect("binary directory")
            .to_path_buf();
        let bin = dir.join("cynode-worker");
        if !bin.is_file() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "cynode-worker"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build -p cynode-worker");
            assert!(status.success(), "cargo build -p cynode-worker failed");
        }
        assert!(bin.is_file(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// Collects a child's stderr lines for failure messages.
fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().expect("log lock").push(l);
        }
    });
    log
}

fn tail(log: &Mutex<Vec<String>>) -> String {
    let l = log.lock().expect("log lock");
    l[l.len().saturating_sub(40)..].join("\n")
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Polls `f` until it yields a value; panics with `what` and `context()` after
/// [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, context: impl Fn() -> String, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One `orchestrator serve` on its own database, restartable on the same ports.
struct Orchestrator {
    child: Option<tokio::process::Child>,
    log: Arc<Mutex<Vec<String>>>,
    data: tempfile::TempDir,
    db_url: String,
    db_name: String,
    admin_url: String,
    gw_port: u16,
    cp_port: u16,
    image: String,
    db: PgPool,
    http: reqwest::Client,
    token: String,
}

impl Orchestrator {
    async fn start(env: &Env) -> Self {
        let (db_url, db_name) = create_db(&env.admin_url).await;
        let db = PgPool::connect(&db_url).await.expect("connect test db");
        let mut o = Self {
            child: None,
            log: Arc::default(),
            data: tempfile::tempdir().expect("tempdir"),
            db_url,
            db_name,
            admin_url: env.admin_url.clone(),
            gw_port: free_port(),
            cp_port: free_port(),
            image: env.image.clone(),
            db,
            http: reqwest::Client::new(),
            token: String::new(),
        };
        o.spawn().await;
        o.token = o.login().await;
        o
    }

    fn gw(&self) -> String {
        format!("http://127.0.0.1:{}", self.gw_port)
    }

    fn cp(&self) -> String {
        format!("http://127.0.0.1:{}", self.cp_port)
    }

    /// Starts the process and waits until the gateway answers `/healthz`.
    async fn spawn(&mut self) {
        let mut cmd = orchestrator(self.data.path());
        cmd.arg("serve")
            .env("DATABASE_URL", &self.db_url)
            .env("JWT_SECRET", JWT)
            .env("NODE_REGISTRATION_PSK", PSK)
            .env("BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("API_EGRESS_DISABLED", "true")
            .env(
                "USER_GATEWAY_LISTEN_ADDR",
                format!("127.0.0.1:{}", self.gw_port),
            )
            .env(
                "CONTROL_PLANE_LISTEN_ADDR",
                format!("127.0.0.1:{}", self.cp_port),
            )
            .env("ORCHESTRATOR_PUBLIC_URL", self.cp())
            // The gateway's shell jobs name alpine:latest; no registry here.
            .env(
                "SANDBOX_IMAGE_ALIASES",
                format!("alpine:latest={}", self.image),
            )
            .env("DISPATCH_POLL_INTERVAL", "200ms")
            .env("RUST_LOG", "info,cynode_server=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .expect("start orchestrator serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = collect(stderr);
        self.log = log.clone();
        self.child = Some(child);
        let url = format!("{}/healthz", self.gw());
        let http = self.http.clone();
        let child = self.child.as_mut().expect("child");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("orchestrator exited with {status}:\n{}", tail(&log));
            }
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway never answered /healthz:\n{}",
                tail(&log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`, then the same command again on the same database and ports.
    async fn kill9_and_restart(&mut self) {
        let mut child = self.child.take().expect("running");
        signal(child.id().expect("pid"), "-KILL");
        let _ = child.wait().await;
        self.spawn().await;
    }

    async fn login(&self) -> String {
        login(&self.http, &self.gw(), "admin", ADMIN_PASSWORD).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.gw()))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/tasks` with shell commands; the task id.
    async fn create_task(&self, commands: &str, use_inference: bool) -> String {
        let r = self
            .http
            .post(format!("{}/v1/tasks", self.gw()))
            .bearer_auth(&self.token)
            .json(&json!({"prompt": commands, "input_mode": "commands",
                          "use_inference": use_inference}))
            .send()
            .await
            .expect("create task");
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(s, 201, "create task: {v}");
        v["task_id"].as_str().expect("task_id").into()
    }

    /// Waits until the task's status is `status`; its `/result` document.
    async fn wait_task(&self, id: &str, status: &str) -> Value {
        eventually(
            &format!("task {id} to be {status}"),
            || tail(&self.log),
            || async {
                let (_, v) = self.get(&format!("/v1/tasks/{id}/result")).await;
                (v["status"] == status).then_some(v)
            },
        )
        .await
    }

    /// Waits until the node `slug` is active, configured and has reported capabilities;
    /// its id.
    async fn wait_node(&self, slug: &str) -> uuid::Uuid {
        eventually(
            &format!("node {slug} to be active and configured"),
            || tail(&self.log),
            || async {
                sqlx::query_as::<_, (uuid::Uuid,)>(
                    "SELECT id FROM nodes WHERE node_slug = $1 AND status = 'active' \
                     AND config_ack_status = 'applied' AND last_capability_at IS NOT NULL",
                )
                .bind(slug)
                .fetch_optional(&self.db)
                .await
                .expect("query nodes")
                .map(|r| r.0)
            },
        )
        .await
    }

    /// `(job status, node id)` of every job of a task.
    async fn jobs_of(&self, task: &str) -> Vec<(String, Option<uuid::Uuid>)> {
        sqlx::query_as(
            "SELECT status, node_id FROM jobs WHERE task_id = $1::uuid ORDER BY created_at",
        )
        .bind(task)
        .fetch_all(&self.db)
        .await
        .expect("query jobs")
    }

    async fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                signal(pid, "-TERM");
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), c.wait()).await;
        }
        self.db.close().await;
        drop_db(&self.admin_url, &self.db_name).await;
    }
}

/// The result document of a task's `n`th job, parsed from its JSON text.
fn result_doc(result: &Value, n: usize) -> Value {
    result["jobs"][n]["result"]
        .as_str()
        .map(|t| serde_json::from_str(t).expect("result is JSON"))
        .unwrap_or(Value::Null)
}

/// One `cynode-worker` process, restartable with the same slug, port and state.
struct Worker {
    child: Option<tokio::process::Child>,
    log: Arc<Mutex<Vec<String>>>,
    slug: String,
    port: u16,
    state: tempfile::TempDir,
    extra: Vec<(String, String)>,
    cp: String,
    docker_host: String,
    image: String,
    psk: String,
}

impl Worker {
    fn new(env: &Env, o: &Orchestrator, name: &str) -> Self {
        Self {
            child: None,
            log: Arc::default(),
            slug: format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]),
            port: free_port(),
            state: tempfile::tempdir().expect("tempdir"),
            extra: Vec::new(),
            cp: o.cp(),
            docker_host: env.docker_host.clone(),
            image: env.image.clone(),
            psk: PSK.into(),
        }
    }

    fn env(mut self, k: &str, v: &str) -> Self {
        self.extra.push((k.into(), v.into()));
        self
    }

    fn spawn(&mut self) {
        let mut cmd = tokio::process::Command::new(worker_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ORCHESTRATOR_URL", &self.cp)
            .env("NODE_REGISTRATION_PSK", &self.psk)
            .env("NODE_SLUG", &self.slug)
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env(
                "WORKER_PUBLIC_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("CONTAINER_HOST", &self.docker_host)
            .env("SANDBOX_DEFAULT_IMAGE", &self.image)
            .env("SANDBOX_PULL_POLICY", "never")
            .env("SANDBOX_RUN_AS", "10001:10001")
            .env("CYNODE_STATE_DIR", self.state.path())
            .env("CAPABILITY_REPORT_INTERVAL", "1s")
            .env("NODE_DRAIN_GRACE", "2s")
            // Nothing listens here: no inference unless a test sets one.
            .env(
                "OLLAMA_BASE_URL",
                format!("http://127.0.0.1:{}", free_port()),
            )
            .envs(self.extra.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start cynode-worker");
        self.log = collect(child.stderr.take().expect("stderr"));
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .expect("worker running")
    }

    async fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        signal(c.id().expect("pid"), "-KILL");
        let _ = c.wait().await;
    }

    async fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                signal(pid, "-TERM");
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), c.wait()).await;
        }
    }
}

/// Scenarios 1 and 3: registration, a shell job end to end, node tokens checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_worker_runs_a_shell_job_and_bad_node_tokens_are_refused() {
    let Some(env) = test_env() else { return };
    let o = Orchestrator::start(&env).await;
    let mut w = Worker::new(&env, &o, "e2e-one");
    w.spawn();
    let node_id = o.wait_node(&w.slug).await;

    // The admin sees the node through the gateway.
    let (s, nodes) = o.get("/v1/nodes").await;
    assert_eq!(s, 200, "{nodes}");
    assert!(nodes.to_string().contains(&w.slug), "{nodes}");

    let id = o.create_task("echo hello from $(id -u)", false).await;
    let result = o.wait_task(&id, "completed").await;
    let doc = result_doc(&result, 0);
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(doc["exit_code"], 0, "{doc}");
    assert_eq!(doc["stdout"], "hello from 10001\n", "{doc}");
    assert_eq!(result["jobs"][0]["status"], "completed");
    let jobs = o.jobs_of(&id).await;
    assert_eq!(jobs, vec![("completed".to_string(), Some(node_id))]);
    let (_, logs) = o.get(&format!("/v1/tasks/{id}/logs")).await;
    assert_eq!(logs["stdout"], "hello from 10001\n");

    // Node tokens on the control plane (the orchestrator signs them with JWT_SECRET,
    // key id `node`): a valid one works, a forged or expired one is
    // refused.
    let config = format!("{}/v1/nodes/config", o.cp());
    let now = cynode_core::model::Timestamp::from(std::time::SystemTime::now());
    let real = JwtKeys::new(JwtKey::new("node", JWT.as_bytes().to_vec()));
    let other = JwtKeys::new(JwtKey::new(
        "node",
        b"another-signing-key-of-at-least-32-bytes".to_vec(),
    ));
    let node = cynode_core::NodeId::from(node_id);
    let (valid, _) = issue_node_token(&real, node, &w.slug, now, Duration::from_secs(600));
    let (forged, _) = issue_node_token(&other, node, &w.slug, now, Duration::from_secs(600));
    let (expired, _) = issue_node_token(
        &real,
        node,
        &w.slug,
        now - hours(2),
        Duration::from_secs(3600),
    );
    let http = reqwest::Client::new();
    for (token, want) in [(&valid, 200), (&forged, 401), (&expired, 401)] {
        let r = http
            .get(&config)
            .bearer_auth(token)
            .send()
            .await
            .expect("config");
        assert_eq!(
            r.status().as_u16(),
            want,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }
    let r = http.get(&config).send().await.expect("config");
    assert_eq!(r.status(), 401, "no token");

    w.stop().await;
    o.stop().await;
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// Scenario 2: a wrong pre-shared key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_psk_is_refused_and_registers_nothing() {
    let Some(env) = test_env() else { return };
    let o = Orchestrator::start(&env).await;
    let mut w = Worker::new(&env, &o, "e2e-badpsk");
    w.psk = "not-the-registration-psk".into();
    w.spawn();
    let mut child = w.child.take().expect("child");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the worker kept running:\n{}", tail(&w.log)))
        .expect("wait");
    let log = tail(&w.log);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("registration refused") && log.contains("401"),
        "the worker says why: {log}"
    );

    // The same refusal straight on the wire.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/nodes/register", o.cp()))
        .json(&json!({"psk": "not-the-registration-psk",
                      "capability": {"version": 1, "node": {"node_slug": "intruder"}}}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 401);

    let (s, nodes) = o.get("/v1/nodes").await;
    assert_eq!(s, 200, "{nodes}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes")
        .fetch_one(&o.db)
        .await
        .expect("count");
    assert_eq!(count, 0, "nothing registered; /v1/nodes: {nodes}");
    o.stop().await;
}

/// Scenario 4: the worker running a job is killed with SIGKILL; the job runs again (on
/// the other worker or on the restarted one) and completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_gets_the_job_rerun_exactly_once() {
    let Some(env) = test_env() else { return };
    let o = Orchestrator::start(&env).await;
    let mut workers = [
        Worker::new(&env, &o, "e2e-k1"),
        Worker::new(&env, &o, "e2e-k2"),
    ];
    for w in &mut workers {
        w.spawn();
    }
    let ids = [
        o.wait_node(&workers[0].slug).await,
        o.wait_node(&workers[1].slug).await,
    ];
    let id = o.create_task("sleep 5; echo done", false).await;
    let on = eventually(
        "the job to run on a node",
        || tail(&o.log),
        || async {
            match o.jobs_of(&id).await.as_slice() {
                [(s, Some(n))] if s == "running" => Some(*n),
                _ => None,
            }
        },
    )
    .await;
    let victim = ids.iter().position(|n| *n == on).expect("a known node");
    // The container is up (the job really started) before the kill.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = workers[victim].pid();
    workers[victim].kill9().await;
    // Back after a moment with the same slug, port and state (reaps its orphan).
    workers[victim].spawn();

    let result = o.wait_task(&id, "completed").await;
    let jobs = o.jobs_of(&id).await;
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    assert_eq!(jobs[0].0, "completed");
    let doc = result_doc(&result, 0);
    assert_eq!(doc["stdout"], "done\n", "{doc}");
    let (attempt, state): (i32, String) =
        sqlx::query_as("SELECT attempt, state FROM sched_jobs WHERE id = (SELECT id FROM jobs WHERE task_id = $1::uuid)")
            .bind(&id)
            .fetch_one(&o.db)
            .await
            .expect("queue job");
    assert_eq!(state, "completed");
    assert!(attempt >= 2, "the job ran again: attempt {attempt}");
    let queue_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sched_jobs")
        .fetch_one(&o.db)
        .await
        .expect("count");
    assert_eq!(queue_rows, 1, "no duplicate queue job");
    for w in workers {
        w.stop().await;
    }
    o.stop().await;
}

/// Scenario 5: the orchestrator is killed with SIGKILL while a job runs; after the
/// restart the task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_killed_mid_job_loses_nothing() {
    let Some(env) = test_env() else { return };
    let mut o = Orchestrator::start(&env).await;
    let mut w = Worker::new(&env, &o, "e2e-restart");
    w.spawn();
    o.wait_node(&w.slug).await;
    let id = o.create_task("sleep 5; echo survived", false).await;
    eventually(
        "the job to run",
        || tail(&o.log),
        || async {
            matches!(o.jobs_of(&id).await.as_slice(), [(s, Some(_))] if s == "running")
                .then_some(())
        },
    )
    .await;
    o.kill9_and_restart().await;
    // A task created while the orchestrator was down is not possible; one created right
    // after the restart runs too.
    let id2 = o.create_task("echo after restart", false).await;
    let result = o.wait_task(&id, "completed").await;
    assert_eq!(result_doc(&result, 0)["stdout"], "survived\n", "{result}");
    assert_eq!(o.jobs_of(&id).await.len(), 1);
    let r2 = o.wait_task(&id2, "completed").await;
    assert_eq!(result_doc(&r2, 0)["stdout"], "after restart\n", "{r2}");
    w.stop().await;
    o.stop().await;
}

/// Scenario 6: two workers share eight one-second jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_load() {
    let Some(env) = test_env() else { return };
    let o = Orchestrator::start(&env).await;
    let mut a = Worker::new(&env, &o, "e2e-a").env("SANDBOX_MAX_CONCURRENCY", "4");
    let mut b = Worker::new(&env, &o, "e2e-b").env("SANDBOX_MAX_CONCURRENCY", "4");
    a.spawn();
    b.spawn();
    let na = o.wait_node(&a.slug).await;
    let nb = o.wait_node(&b.slug).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(
            o.create_task(&format!("sleep 1; echo job-{i}"), false)
                .await,
        );
    }
    let mut per_node = std::collections::BTreeMap::<uuid::Uuid, usize>::new();
    for (i, id) in tasks.iter().enumerate() {
        let r = o.wait_task(id, "completed").await;
        assert_eq!(result_doc(&r, 0)["stdout"], format!("job-{i}\n"));
        let jobs = o.jobs_of(id).await;
        assert_eq!(jobs.len(), 1);
        *per_node
            .entry(jobs[0].1.expect("job has its node"))
            .or_default() += 1;
    }
    assert_eq!(per_node.values().sum::<usize>(), 8);
    assert!(
        per_node.get(&na).is_some_and(|n| *n > 0) && per_node.get(&nb).is_some_and(|n| *n > 0),
        "both nodes ran jobs: {per_node:?} (a={na}, b={nb})"
    );
    a.stop().await;
    b.stop().await;
    o.stop().await;
}

/// Scenarios 7 and 8: an inference job never goes to a sandbox-only node; it waits with
/// a readable reason (first with no node at all, then with only the sandbox-only
/// node) and runs once a node with inference registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_job_waits_for_a_node_with_inference() {
    let Some(env) = test_env() else { return };
    let o = Orchestrator::start(&env).await;
    let id = o.create_task("echo inferred", true).await;
    let reason_of = |v: &Value| {
        result_doc(v, 0)["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let first = eventually(
        "a waiting reason with no node",
        || tail(&o.log),
        || async {
            let (_, v) = o.get(&format!("/v1/tasks/{id}/result")).await;
            let r = reason_of(&v);
            (!r.is_empty()).then_some((v, r))
        },
    )
    .await;
    assert_eq!(first.0["status"], "queued", "{}", first.0);
    assert!(first.1.contains("waiting for a worker node"), "{}", first.1);

    let mut so = Worker::new(&env, &o, "e2e-sbonly").env("NODE_SANDBOX_ONLY", "true");
    so.spawn();
    let so_id = o.wait_node(&so.slug).await;
    // The reason now names the sandbox-only node: placement saw it and passed it by.
    let reason = eventually(
        "a reason naming the sandbox-only node",
        || tail(&o.log),
        || async {
            let (_, v) = o.get(&format!("/v1/tasks/{id}/result")).await;
            let r = reason_of(&v);
            r.contains(&so.slug).then_some(r)
        },
    )
    .await;
    assert!(reason.contains("inference"), "{reason}");
    // A plain shell job still runs on it, and the inference job is still waiting.
    let plain = o.create_task("echo plain", false).await;
    o.wait_task(&plain, "completed").await;
    assert_eq!(o.jobs_of(&plain).await[0].1, Some(so_id));
    let (_, t) = o.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(t["status"], "queued", "{t}");
    assert_eq!(o.jobs_of(&id).await, vec![("queued".to_string(), None)]);

    // A node with an inference service appears: the job runs there.
    let (llm, _llm_handle) = cynode_testkit::MockLlm::start().await;
    let mut inf = Worker::new(&env, &o, "e2e-inf").env("OLLAMA_BASE_URL", &format!("http://{llm}"));
    inf.spawn();
    let inf_id = o.wait_node(&inf.slug).await;
    let result = o.wait_task(&id, "completed").await;
    assert_eq!(result_doc(&result, 0)["stdout"], "inferred\n", "{result}");
    assert_eq!(
        o.jobs_of(&id).await,
        vec![("completed".to_string(), Some(inf_id))]
    );
    so.stop().await;
    inf.stop().await;
    o.stop().await;
}
