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

    // No sandbox of this node is left behind.
    let rt = DockerRuntime::connect(&DockerConfig::new(&host))
        .await
        .unwrap();
    let owner = format!("node-{slug}");
    let left = rt.list_owned(&owner).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}
