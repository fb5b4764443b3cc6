//! The Worker API router served on a real TCP socket, running jobs on the real engine
//! (node protocol §13 scenarios 9, 10, 12, 16, 20, 21 and the Rust additions: 409, 503
//! at max concurrency, cancel on disconnect, drain).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cynode_sandbox::node::{Telemetry, WorkerApiConfig, WorkerApiState, worker_api_router};
use cynode_sandbox::{DockerConfig, Driver, InferenceConfig};
use serde_json::{Value, json};

const TOKEN: &str = "test-worker-token-3f9c";

struct Node {
    base: String,
    state: WorkerApiState,
    t: common::TestDriver,
    http: reqwest::Client,
}

async fn serve(state: WorkerApiState) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = worker_api_router(state);
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

async fn node(
    env: &common::TestEnv,
    tweak: impl FnOnce(&mut cynode_sandbox::DriverConfig),
    api: impl FnOnce(&mut WorkerApiConfig),
) -> Node {
    let t = common::driver(env, tweak).await;
    let mut config = WorkerApiConfig {
        node_slug: "node-test".into(),
        runtime_version: "test-version".into(),
        state_dir: t.mount_root.parent().unwrap().to_path_buf(),
        ..Default::default()
    };
    api(&mut config);
    let state = WorkerApiState::new(t.driver.clone(), config, Arc::new(Telemetry::new()));
    state.set_bearer_token(Some(TOKEN));
    state.mark_configured();
    let addr = serve(state.clone()).await;
    Node {
        base: format!("http://{addr}"),
        state,
        t,
        http: reqwest::Client::new(),
    }
}

fn job(env: &common::TestEnv, job_id: &str, script: &str) -> Value {
    json!({"version": 1, "task_id": uuid::Uuid::new_v4().to_string(), "job_id": job_id,
        "sandbox": {"image": env.image, "command": ["sh", "-c", script]}})
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Node {
    async fn post_raw(&self, auth: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/v1/worker/jobs:run", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap()
    }

    async fn run(&self, body: &Value) -> (u16, Value) {
        let r = self
            .post_raw(
                Some(&format!("Bearer {TOKEN}")),
                serde_json::to_vec(body).unwrap(),
            )
            .await;
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Waits (bounded) until a job with this id runs.
    async fn wait_running(&self, n: usize) {
        for _ in 0..600 {
            if self.state.running_jobs() >= n && !self.t.leftovers().await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job never started");
    }
}

fn problem(v: &Value) -> (&str, &str) {
    (
        v["type"].as_str().unwrap_or(""),
        v["detail"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn auth_limits_and_validation() {
    let env = require_env!();
    let n = node(&env, |_| {}, |_| {}).await;
    let body = serde_json::to_vec(&job(&env, &new_id(), "echo hi")).unwrap();

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic dGVzdA=="),
        Some("Bearer"),
    ] {
        let r = n.post_raw(auth, body.clone()).await;
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{auth:?}"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["detail"], "Invalid or missing bearer token");
        assert_eq!(v["status"], 401);
    }
    // The scheme is case-insensitive.
    let r = n
        .post_raw(Some(&format!("bearer {TOKEN}")), body.clone())
        .await;
    assert_eq!(r.status(), 200);

    // 11 MiB body.
    let big = vec![b' '; 11 << 20];
    let r = n.post_raw(Some(&format!("Bearer {TOKEN}")), big).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        problem(&v),
        (
            "urn:cynodeai:error:validation",
            "Request body exceeds maximum size"
        )
    );

    let mut v2 = job(&env, &new_id(), "true");
    v2["version"] = json!(2);
    let (s, v) = n.run(&v2).await;
    assert_eq!((s, problem(&v).1), (400, "unsupported version"));
    assert_eq!(v["received_version"], 2);

    let mut no_id = job(&env, "", "true");
    no_id.as_object_mut().unwrap().remove("job_id");
    let (s, v) = n.run(&no_id).await;
    assert_eq!((s, problem(&v).1), (400, "task_id and job_id are required"));

    let (s, v) = n
        .run(&json!({"version": 1, "task_id": "t", "job_id": "j", "sandbox": {}}))
        .await;
    assert_eq!(
        (s, problem(&v).1),
        (
            400,
            "sandbox.command is required when job_spec_json is not set"
        )
    );

    let mut bad_net = job(&env, &new_id(), "true");
    bad_net["sandbox"]["network_policy"] = json!("open");
    let (s, _) = n.run(&bad_net).await;
    assert_eq!(s, 400);

    let r = n
        .post_raw(Some(&format!("Bearer {TOKEN}")), b"{not json".to_vec())
        .await;
    assert_eq!(r.status(), 400);

    // use_inference on a node without an upstream.
    let mut inf = job(&env, &new_id(), "true");
    inf["sandbox"]["use_inference"] = json!(true);
    let (s, v) = n.run(&inf).await;
    assert_eq!(s, 400, "{v}");
    assert!(n.t.wait_until_clean().await.is_empty());
}

#[tokio::test]
async fn direct_job_returns_the_spec_result() {
    let env = require_env!();
    let n = node(&env, |_| {}, |_| {}).await;
    let id = new_id();
    let (s, v) = n.run(&job(&env, &id, "echo hello")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(v["job_id"], id);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["stdout"], "hello\n");
    assert_eq!(v["truncated"], json!({"stdout": false, "stderr": false}));
    assert!(v["started_at"].as_str().unwrap().ends_with('Z'));
    let d = &v["run_diagnostics"];
    assert_eq!(d["container_started"], true);
    assert_eq!(d["runtime"], n.t.driver.runtime().name());
    assert!(
        d["runtime_argv"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--network=none")
    );

    let (s, v) = n.run(&job(&env, &new_id(), "echo oops >&2; exit 3")).await;
    assert_eq!(s, 200);
    assert_eq!(
        (v["status"].as_str(), v["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );
    assert_eq!(v["stderr"], "oops\n");

    // A job whose env values must never show up in the diagnostics.
    let mut body = job(&env, &new_id(), "echo $SECRET_THING");
    body["sandbox"]["env"] = json!({"SECRET_THING": "s3cr3t-value"});
    let (s, v) = n.run(&body).await;
    assert_eq!(s, 200);
    assert_eq!(v["stdout"], "s3cr3t-value\n");
    assert!(!v["run_diagnostics"].to_string().contains("s3cr3t-value"));

    // A missing image is an attempted job that failed before start.
    let mut body = job(&env, &new_id(), "true");
    body["sandbox"]["image"] = json!("localhost/cynode-no-such-image:never");
    let (s, v) = n.run(&body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["exit_code"], -1);
    assert_eq!(v["run_diagnostics"]["container_started"], false);
    assert!(v["stderr"].as_str().unwrap().contains("no-such-image"));
    assert!(n.t.wait_until_clean().await.is_empty());
}

#[tokio::test]
async fn timeouts_follow_request_node_and_config_limits() {
    let env = require_env!();
    let n = node(&env, |c| c.max_timeout_secs = 30, |_| {}).await;
    let mut body = job(&env, &new_id(), "sleep 60");
    body["sandbox"]["timeout_seconds"] = json!(2);
    let (s, v) = n.run(&body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "timeout");
    assert_eq!(v["exit_code"], -1);
    assert!(n.t.wait_until_clean().await.is_empty());

    // The configuration's constraint caps a larger request.
    n.state.set_constraints(None, Some(2));
    let mut body = job(&env, &new_id(), "sleep 60");
    body["sandbox"]["timeout_seconds"] = json!(100);
    let (s, v) = n.run(&body).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("timeout")), "{v}");
    assert!(n.t.wait_until_clean().await.is_empty());

    // The configuration's body cap applies too.
    n.state.set_constraints(Some(64), None);
    let (s, _) = n.run(&job(&env, &new_id(), &"x".repeat(200))).await;
    assert_eq!(s, 413);
}

#[tokio::test]
async fn duplicate_job_ids_conflict_and_full_nodes_answer_503() {
    let env = require_env!();
    let n = Arc::new(node(&env, |_| {}, |c| c.max_concurrency = 1).await);
    let id = new_id();
    let mut body = job(&env, &id, "sleep 30");
    body["sandbox"]["timeout_seconds"] = json!(4);
    let first = {
        let n = n.clone();
        let body = body.clone();
        tokio::spawn(async move { n.run(&body).await })
    };
    n.wait_running(1).await;

    let (s, v) = n.run(&body).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["type"], "https://cynode.ai/specs/conflict");

    let r = n
        .post_raw(
            Some(&format!("Bearer {TOKEN}")),
            serde_json::to_vec(&job(&env, &new_id(), "true")).unwrap(),
        )
        .await;
    assert_eq!(r.status(), 503);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);

    let (s, v) = first.await.unwrap();
    assert_eq!((s, v["status"].as_str()), (200, Some("timeout")));
    // The slot is free again.
    let (s, v) = n.run(&job(&env, &new_id(), "echo again")).await;
    assert_eq!((s, v["stdout"].as_str()), (200, Some("again\n")));
}

#[tokio::test]
async fn client_disconnect_cancels_the_job() {
    let env = require_env!();
    let n = node(&env, |_| {}, |_| {}).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    let started = tokio::spawn({
        let url = format!("{}/v1/worker/jobs:run", n.base);
        let body = job(&env, &new_id(), "sleep 120");
        async move { client.post(url).bearer_auth(TOKEN).json(&body).send().await }
    });
    n.wait_running(1).await;
    let r = started.await.unwrap();
    assert!(r.is_err(), "the client gave up");
    assert!(
        n.t.wait_until_clean().await.is_empty(),
        "container removed after disconnect"
    );
    assert!(n.state.wait_idle(Duration::from_secs(30)).await);
}

#[tokio::test]
async fn drain_refuses_new_jobs_and_cancels_running_ones() {
    let env = require_env!();
    let n = Arc::new(node(&env, |_| {}, |_| {}).await);
    let running = {
        let n = n.clone();
        let body = job(&env, &new_id(), "sleep 120");
        tokio::spawn(async move { n.run(&body).await })
    };
    n.wait_running(1).await;
    let drain = {
        let st = n.state.clone();
        tokio::spawn(async move {
            st.drain(Duration::from_millis(500), Duration::from_secs(30))
                .await
        })
    };
    for _ in 0..100 {
        if n.state.is_draining() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, v) = n.run(&job(&env, &new_id(), "true")).await;
    assert_eq!((s, problem(&v).1), (503, "node is draining"));
    let report = drain.await.unwrap();
    assert_eq!(report.running_at_start, 1);
    assert_eq!(report.canceled, 1);
    assert_eq!(report.left_running, 0);
    let (s, v) = running.await.unwrap();
    assert_eq!((s, v["status"].as_str()), (200, Some("failed")), "{v}");
    assert!(n.t.wait_until_clean().await.is_empty());
    let r = n
        .http
        .get(format!("{}/readyz", n.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

/// GET over a Unix socket with a hand-written HTTP/1.1 request.
async fn uds_get(path: &Path, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn inference_jobs_get_the_unix_socket_only() {
    let env = require_env!();
    let n = node(
        &env,
        |c| {
            c.inference = Some(InferenceConfig {
                upstream_url: "http://127.0.0.1:11434".into(),
                ..Default::default()
            })
        },
        |_| {},
    )
    .await;
    let id = new_id();
    let mut body = job(
        &env,
        &id,
        "echo \"url=$INFERENCE_PROXY_URL\"; echo \"sock=$(ls /run/cynode)\"; \
         test -S /run/cynode/inference-proxy.sock && echo is_socket=yes; \
         case \"$(env)\" in *11434*) echo tcp=leaked;; *) echo tcp=none;; esac; sleep 3",
    );
    body["sandbox"]["use_inference"] = json!(true);
    let task = {
        let base = n.base.clone();
        let http = n.http.clone();
        tokio::spawn(async move {
            http.post(format!("{base}/v1/worker/jobs:run"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    // While the job runs, its socket answers /healthz on the host side.
    let sock: PathBuf = n.t.mount_root.join(&id).join("run/inference-proxy.sock");
    let mut health = String::new();
    for _ in 0..600 {
        if sock.exists() {
            health = uds_get(&sock, "/healthz").await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );
    let v = task.await.unwrap();
    assert_eq!(v["status"], "completed", "{v}");
    let out = v["stdout"].as_str().unwrap();
    assert!(
        out.contains("url=http+unix://%2Frun%2Fcynode%2Finference-proxy.sock\n"),
        "{out}"
    );
    assert!(out.contains("sock=inference-proxy.sock\n"), "{out}");
    assert!(out.contains("is_socket=yes\n"), "{out}");
    assert!(out.contains("tcp=none\n"), "{out}");
    assert!(n.t.wait_until_clean().await.is_empty());
}

#[tokio::test]
async fn telemetry_reports_node_containers_and_logs() {
    let env = require_env!();
    let n = node(&env, |_| {}, |_| {}).await;
    let id = new_id();
    let body = job(&env, &id, "echo line-one; echo line-two >&2");
    let task_id = body["task_id"].as_str().unwrap().to_string();
    let (s, _) = n.run(&body).await;
    assert_eq!(s, 200);

    let mut bodies = Vec::new();
    let (s, info) = n.get("/v1/worker/telemetry/node:info").await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["node_slug"], "node-test");
    for p in [
        "/build/build_version",
        "/platform/os",
        "/platform/arch",
        "/platform/kernel_version",
    ] {
        assert!(!v.pointer(p).unwrap().as_str().unwrap().is_empty(), "{p}");
    }
    bodies.push(info);

    let (s, stats) = n.get("/v1/worker/telemetry/node:stats").await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&stats).unwrap();
    assert!(v["cpu"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["memory"]["total_mb"].as_u64().unwrap() > 0);
    assert!(v["disk"]["state_dir_total_mb"].as_u64().unwrap() > 0);
    assert_eq!(
        v["container_runtime"]["runtime"],
        n.t.driver.runtime().name()
    );
    assert_eq!(v["container_runtime"]["version"], "test-version");
    bodies.push(stats);

    let (s, list) = n
        .get(&format!("/v1/worker/telemetry/containers?job_id={id}"))
        .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&list).unwrap();
    let c = &v["containers"][0];
    assert_eq!(c["job_id"], id);
    assert_eq!(c["task_id"], task_id);
    assert_eq!(c["kind"], "sandbox");
    assert_eq!(c["exit_code"], 0);
    assert!(
        c["container_name"]
            .as_str()
            .unwrap()
            .starts_with("cynodeai-sbx-")
    );
    let cid = c["container_id"].as_str().unwrap().to_string();
    bodies.push(list);

    let (s, one) = n
        .get(&format!("/v1/worker/telemetry/containers/{cid}"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&one).unwrap()["container"]["job_id"],
        id
    );
    let (s, _) = n.get("/v1/worker/telemetry/containers/nope").await;
    assert_eq!(s, 404);

    let (s, _) = n.get("/v1/worker/telemetry/logs").await;
    assert_eq!(s, 400);
    let (s, logs) = n
        .get("/v1/worker/telemetry/logs?source_kind=service&source_name=worker_api")
        .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&logs).unwrap();
    assert_eq!(v["truncated"]["max_bytes"], 1048576);
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == "job finished" && e["fields"]["job_id"] == id),
        "{v}"
    );
    bodies.push(logs);

    let (s, clogs) = n
        .get(&format!(
            "/v1/worker/telemetry/logs?source_kind=container&container_id={cid}&stream=stderr"
        ))
        .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&clogs).unwrap();
    let msgs: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(msgs, ["line-two"]);

    for b in bodies {
        assert!(
            !b.contains(TOKEN),
            "a telemetry body holds the bearer token"
        );
    }
    // Telemetry needs the bearer too.
    let r = n
        .http
        .get(format!("{}/v1/worker/telemetry/node:info", n.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Forwards a Unix socket to the engine's socket until stopped.
struct SocketRelay {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl SocketRelay {
    async fn start(dir: &Path, engine: &str) -> Self {
        let target = PathBuf::from(engine.strip_prefix("unix://").expect("unix engine socket"));
        let path = dir.join("relay.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut a, _)) = l.accept().await else {
                    return;
                };
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut b) = tokio::net::UnixStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        });
        Self { path, task }
    }

    fn stop(&self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let env = require_env!();
    if !env.docker_host.starts_with("unix://") {
        eprintln!("skipped: readiness relay needs a unix engine socket");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = SocketRelay::start(dir.path(), &env.docker_host).await;
    let mut config = cynode_sandbox::DriverConfig {
        owner: format!("t-{}", uuid::Uuid::new_v4().simple()),
        mount_root: dir.path().join("jobs"),
        ..Default::default()
    };
    config.images.default_image = env.image.clone();
    let driver = Driver::connect(
        &DockerConfig::new(format!("unix://{}", relay.path.display())),
        config,
    )
    .await
    .unwrap();
    let state = WorkerApiState::new(
        driver,
        WorkerApiConfig::default(),
        Arc::new(Telemetry::new()),
    );
    let base = format!("http://{}", serve(state.clone()).await);
    let http = reqwest::Client::new();
    let get = |p: &str| {
        let http = http.clone();
        let url = format!("{base}{p}");
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_string()));
    // Not configured yet: not ready, and the job route is not open.
    let (s, reason) = get("/readyz").await;
    assert_eq!(s, 503);
    assert!(reason.contains("not registered"), "{reason}");
    let r = http
        .post(format!("{base}/v1/worker/jobs:run"))
        .bearer_auth("anything")
        .json(&json!({"version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    state.set_bearer_token(Some(TOKEN));
    state.mark_configured();
    assert_eq!(get("/readyz").await, (200, "ready".to_string()));

    // The engine socket goes away.
    relay.stop();
    let (s, reason) = get("/readyz").await;
    assert_eq!(s, 503);
    assert!(reason.contains("not available"), "{reason}");
    assert!(!reason.contains('\n'));
    assert_eq!(get("/healthz").await.0, 200);
}
