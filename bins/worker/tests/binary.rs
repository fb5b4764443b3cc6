//! The real `cynode-worker` binary: `--help`, configuration errors, and a full run
//! against an in-process control plane ending with a SIGTERM drain while a job runs.
//!
//! Test environment contract: `CYNODE_TEST_DOCKER_HOST`, `CYNODE_TEST_IMAGE` (skipped
//! when missing unless `CYNODE_REQUIRE_SERVICES` is set).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use cynode_core::store::StoreConfig;
use cynode_sandbox::runtime::DockerRuntime;
use cynode_sandbox::{DockerConfig, SandboxRuntime};
use cynode_server::control_plane::{ControlPlaneConfig, ControlPlaneState, router};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_cynode-worker");

fn services() -> Option<(String, String)> {
    let host = std::env::var("CYNODE_TEST_DOCKER_HOST")
        .ok()
        .filter(|s| !s.is_empty());
    let image = std::env::var("CYNODE_TEST_IMAGE")
        .ok()
        .filter(|s| !s.is_empty());
    match (host, image) {
        (Some(h), Some(i)) => Some((h, i)),
        _ => {
            assert!(
                std::env::var_os("CYNODE_REQUIRE_SERVICES").is_none(),
                "CYNODE_REQUIRE_SERVICES is set but CYNODE_TEST_DOCKER_HOST / CYNODE_TEST_IMAGE are not"
            );
            eprintln!("skipped: CYNODE_TEST_DOCKER_HOST / CYNODE_TEST_IMAGE not set");
            None
        }
    }
}

#[test]
fn help_names_the_environment_variables() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for var in [
        "ORCHESTRATOR_URL",
        "NODE_REGISTRATION_PSK",
        "NODE_SLUG",
        "LISTEN_ADDR",
        "WORKER_PUBLIC_URL",
        "CONTAINER_HOST",
        "OLLAMA_BASE_URL",
        "NODE_LABELS",
        "SANDBOX_DEFAULT_IMAGE",
        "SANDBOX_MAX_CONCURRENCY",
        "LOG_FORMAT",
    ] {
        assert!(text.contains(var), "--help does not mention {var}");
    }
}

#[test]
fn missing_slug_is_a_startup_error() {
    let Some((host, _)) = services() else { return };
    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("CONTAINER_HOST", host)
        .env("NODE_REGISTRATION_PSK", "x")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NODE_SLUG"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn registers_runs_a_job_and_drains_on_sigterm() {
    let Some((host, image)) = services() else {
        return;
    };
    let store = cynode_core::store::open(&StoreConfig::Memory)
        .await
        .unwrap();
    let cp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cp_addr: SocketAddr = cp_listener.local_addr().unwrap();
    let state = ControlPlaneState::new(
        store.clone(),
        ControlPlaneConfig {
            registration_psk: "bin-psk".into(),
            jwt_secret: "bin-jwt-secret".into(),
            public_url: format!("http://{cp_addr}"),
            worker_api_bearer_token: Some("bin-worker-token".into()),
            readiness_requires_pma: false,
            ..ControlPlaneConfig::default()
        },
    );
    tokio::spawn(async move { axum::serve(cp_listener, router(state)).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let worker_url = format!("http://127.0.0.1:{port}");
    let slug = format!("bin-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("ORCHESTRATOR_URL", format!("http://{cp_addr}"))
        .env("NODE_REGISTRATION_PSK", "bin-psk")
        .env("NODE_SLUG", &slug)
        .env("NODE_LABELS", "e2e,sandbox_only")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("WORKER_PUBLIC_URL", &worker_url)
        .env("CONTAINER_HOST", &host)
        .env("SANDBOX_DEFAULT_IMAGE", &image)
        .env("SANDBOX_PULL_POLICY", "never")
        .env("SANDBOX_RUN_AS", "10001:10001")
        .env("CYNODE_STATE_DIR", dir.path())
        .env("CAPABILITY_REPORT_INTERVAL", "1s")
        .env("NODE_DRAIN_GRACE", "2s")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Registered, configured, acknowledged.
    let mut applied = false;
    for _ in 0..300 {
        if let Ok(n) = store.get_node_by_slug(&slug).await
            && n.config_ack_status.as_deref() == Some("applied")
        {
            assert_eq!(
                n.worker_api_target_url.as_deref(),
                Some(worker_url.as_str())
            );
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(applied, "the worker never acknowledged its configuration");

    let http = reqwest::Client::new();
    let job_id = uuid::Uuid::new_v4().to_string();
    let job = tokio::spawn({
        let http = http.clone();
        let url = format!("{worker_url}/v1/worker/jobs:run");
        let body = json!({"version": 1, "task_id": "t-bin", "job_id": job_id,
            "sandbox": {"command": ["sleep", "60"]}});
        async move {
            let r = http
                .post(url)
                .bearer_auth("bin-worker-token")
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    });
    // Running: the container shows up in the node's telemetry.
    let mut running = false;
    for _ in 0..300 {
        let r = http
            .get(format!(
                "{worker_url}/v1/worker/telemetry/containers?status=running&job_id={job_id}"
            ))
            .bearer_auth("bin-worker-token")
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        if v["containers"].as_array().is_some_and(|a| !a.is_empty()) {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running, "the job never started");

    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("the worker exits after SIGTERM")
        .unwrap();
    let (code, body) = job.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["exit_code"], -1);
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(stderr.contains("node manager shutdown"), "{stderr}");
    assert!(
        !stderr.contains("bin-psk") && !stderr.contains("bin-worker-token"),
        "a secret was logged"
    );

    // The telemetry database kept the service log.
    let db = dir.path().join("telemetry/telemetry.db");
    assert!(db.exists(), "telemetry database at {}", db.display());
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let shutdown_rows: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM log_event WHERE source_name = 'node_manager' AND message = 'node manager shutdown'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(shutdown_rows, 1);
    let inventory: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM container_inventory WHERE job_id = ?")
            .bind(&job_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(inventory, 1);

    // No sandbox of this node is left behind.
    let rt = DockerRuntime::connect(&DockerConfig::new(&host))
        .await
        .unwrap();
    let owner = format!("node-{slug}");
    let left = rt.list_owned(&owner).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn inference_proxy_mode_serves_its_socket_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("inference-proxy.sock");
    let mut child = tokio::process::Command::new(BIN)
        .arg("inference-proxy")
        .env_clear()
        .env("INFERENCE_PROXY_SOCKET", &sock)
        .env("OLLAMA_UPSTREAM_URL", "http://host.containers.internal:9")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let encoded = sock.display().to_string().replace('/', "%2F");
    let health = std::process::Command::new(BIN)
        .args(["inference-proxy", "--healthcheck-url"])
        .arg(format!("http+unix://{encoded}/healthz"))
        .env_clear()
        .status()
        .unwrap();
    assert!(health.success());
    let missing = std::process::Command::new(BIN)
        .args(["inference-proxy", "--healthcheck-url"])
        .arg(format!("http+unix://{encoded}x/healthz"))
        .env_clear()
        .status()
        .unwrap();
    assert!(!missing.success());

    // A body over 10 MiB is refused before anything is forwarded.
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let len = (10 << 20) + 1;
    s.write_all(
        format!("POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(!sock.exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn standalone_worker_api_runs_jobs_with_the_env_token() {
    let Some((host, image)) = services() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("WORKER_API_BEARER_TOKEN", "standalone-token")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("CONTAINER_HOST", &host)
        .env("SANDBOX_DEFAULT_IMAGE", &image)
        .env("SANDBOX_PULL_POLICY", "never")
        .env("SANDBOX_RUN_AS", "10001:10001")
        .env("WORKER_API_STATE_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "standalone worker never became ready");
    let r = http
        .post(format!("{base}/v1/worker/jobs:run"))
        .bearer_auth("standalone-token")
        .json(
            &json!({"version": 1, "task_id": "t", "job_id": uuid::Uuid::new_v4().to_string(),
            "sandbox": {"command": ["sh", "-c", "echo standalone"]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["stdout"], "standalone\n", "{v}");
    let r = http
        .post(format!("{base}/v1/worker/jobs:run"))
        .bearer_auth("other")
        .json(&json!({"version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sba_run_args_use_the_unix_socket_and_no_network() {
    let out = std::process::Command::new(BIN)
        .env_clear()
        .args([
            "--print-sba-pod-run-args",
            "--sba-image",
            "cynodeai-cynode-sba:dev",
            "--proxy-image",
            "unused",
            "--upstream-url",
            "http://host.containers.internal:11434",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("--network=none"), "{line}");
    assert!(
        line.contains("INFERENCE_PROXY_URL=http+unix://%2Frun%2Fcynode%2Finference-proxy.sock"),
        "{line}"
    );
    assert!(
        !line.contains("OLLAMA_BASE_URL=http://") && !line.contains("11434"),
        "{line}"
    );
    assert!(
        line.trim_end().ends_with("cynodeai-cynode-sba:dev"),
        "{line}"
    );
}
