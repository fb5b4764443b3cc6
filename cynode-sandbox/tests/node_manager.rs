//! The node manager against the real control-plane router on a real socket, with the
//! Worker API on the real engine: register → config → ack → heartbeat; token renewal;
//! 401 → re-register; control plane down then up; fatal start-up errors.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cynode_core::store::{Store, StoreConfig};
use cynode_sandbox::DockerConfig;
use cynode_sandbox::node::{
    NodeManager, NodeManagerConfig, ShutdownOutcome, Telemetry, WorkerApiConfig, WorkerApiState,
    worker_api_router,
};
use cynode_server::control_plane::{ControlPlaneConfig, ControlPlaneState, router};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const PSK: &str = "test-psk-7d1e";
const CP_TOKEN: &str = "cp-issued-worker-token-91b2";

/// A control plane served on a fixed address until stopped.
struct ControlPlane {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    async fn start(addr: SocketAddr, store: Arc<dyn Store>, jwt_secret: &str, ttl: u64) -> Self {
        let config = ControlPlaneConfig {
            registration_psk: PSK.into(),
            jwt_secret: jwt_secret.into(),
            node_token_ttl_secs: ttl,
            public_url: format!("http://{addr}"),
            worker_api_bearer_token: Some(CP_TOKEN.into()),
            readiness_requires_pma: false,
            ..ControlPlaneConfig::default()
        };
        let state = ControlPlaneState::new(store, config);
        let mut listener = None;
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listener = listener.expect("bind the control-plane address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

async fn free_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

struct Worker {
    api: WorkerApiState,
    base: String,
    _t: common::TestDriver,
}

async fn worker(env: &common::TestEnv) -> Worker {
    let t = common::driver(env, |_| {}).await;
    let api = WorkerApiState::new(
        t.driver.clone(),
        WorkerApiConfig {
            node_slug: "node-m".into(),
            ..Default::default()
        },
        Arc::new(Telemetry::new()),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let app = worker_api_router(api.clone());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Worker { api, base, _t: t }
}

fn manager_config(
    env: &common::TestEnv,
    cp: SocketAddr,
    w: &Worker,
    slug: &str,
) -> NodeManagerConfig {
    let mut c = NodeManagerConfig::new(format!("http://{cp}"), PSK, slug, w.base.clone());
    c.docker = DockerConfig::new(&env.docker_host);
    c.labels = vec!["region_test".into()];
    c.sandbox_only = true;
    c.report_interval = Duration::from_millis(300);
    c.http_timeout = Duration::from_secs(5);
    c.backoff_initial = Duration::from_millis(100);
    c.backoff_max = Duration::from_millis(500);
    c.readiness_timeout = Some(Duration::from_secs(30));
    c.drain_grace = Duration::from_secs(1);
    c
}

/// Polls `f` until it returns `Some` (bounded: 60 s).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn manager_log_messages(w: &Worker) -> Vec<String> {
    let r = reqwest::Client::new()
        .get(format!(
            "{}/v1/worker/telemetry/logs?source_kind=service&source_name=node_manager",
            w.base
        ))
        .bearer_auth(CP_TOKEN)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn registers_applies_config_acks_and_heartbeats() {
    let env = require_env!();
    let store = cynode_core::store::open(&StoreConfig::Memory)
        .await
        .unwrap();
    let cp_addr = free_addr().await;
    let cp = ControlPlane::start(cp_addr, store.clone(), "secret-a", 3600).await;
    let w = worker(&env).await;
    let manager =
        NodeManager::new(manager_config(&env, cp_addr, &w, "node-m1"), w.api.clone()).unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let run = tokio::spawn(manager.run(async move {
        let _ = stop_rx.await;
    }));

    let node = eventually("config applied", || {
        let store = store.clone();
        async move {
            let n = store.get_node_by_slug("node-m1").await.ok()?;
            (n.config_ack_status.as_deref() == Some("applied")).then_some(n)
        }
    })
    .await;
    assert_eq!(node.worker_api_target_url.as_deref(), Some(w.base.as_str()));
    assert!(node.config_version.is_some());
    let first_seen = node.last_seen_at.expect("last_seen_at");

    // Heartbeats advance last_seen_at.
    eventually("a heartbeat", || {
        let store = store.clone();
        async move {
            let n = store.get_node_by_slug("node-m1").await.ok()?;
            (n.last_seen_at? > first_seen).then_some(())
        }
    })
    .await;

    // The capability snapshot carries measured values and the labels.
    let snap = store
        .latest_capabilities(node.id)
        .await
        .unwrap()
        .expect("snapshot");
    let s = &snap.snapshot;
    assert!(s["compute"]["ram_mb"].as_u64().unwrap() > 0);
    let labels: Vec<&str> = s["node"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(labels.contains(&"region_test") && labels.contains(&"sandbox_only"));
    assert_eq!(s["inference"]["mode"], "disabled");
    assert_eq!(s["worker_api"]["base_url"], w.base);

    // The Worker API now takes the token from the configuration and is ready.
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/readyz", w.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/v1/worker/jobs:run", w.base))
        .bearer_auth(CP_TOKEN)
        .json(
            &json!({"version": 1, "task_id": "t-1", "job_id": uuid::Uuid::new_v4().to_string(),
            "sandbox": {"image": env.image, "command": ["sh", "-c", "echo via-config"]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["stdout"], "via-config\n");

    let msgs = manager_log_messages(&w).await;
    assert!(msgs.iter().any(|m| m.contains("start")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m == "configuration applied"),
        "{msgs:?}"
    );

    stop_tx.send(()).unwrap();
    let outcome = run.await.unwrap();
    assert!(matches!(outcome, ShutdownOutcome::Clean(_)), "{outcome:?}");
    let msgs = manager_log_messages(&w).await;
    assert!(
        msgs.iter().any(|m| m == "node manager shutdown"),
        "{msgs:?}"
    );
    cp.stop().await;
}

#[tokio::test]
async fn renews_short_lived_tokens_and_reregisters_after_401_and_outage() {
    let env = require_env!();
    let store = cynode_core::store::open(&StoreConfig::Memory)
        .await
        .unwrap();
    let cp_addr = free_addr().await;
    // Tokens live 3 s: the manager must renew them to keep reporting.
    let cp = ControlPlane::start(cp_addr, store.clone(), "secret-a", 3).await;
    let w = worker(&env).await;
    let manager =
        NodeManager::new(manager_config(&env, cp_addr, &w, "node-m2"), w.api.clone()).unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let run = tokio::spawn(manager.run(async move {
        let _ = stop_rx.await;
    }));
    let node_id = eventually("registered", || {
        let store = store.clone();
        async move {
            let n = store.get_node_by_slug("node-m2").await.ok()?;
            (n.config_ack_status.as_deref() == Some("applied")).then_some(n.id)
        }
    })
    .await;
    // Past two token lifetimes, reports still arrive.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let before = store.get_node(node_id).await.unwrap().last_seen_at.unwrap();
    eventually("reports after token expiry", || {
        let store = store.clone();
        async move {
            let n = store.get_node(node_id).await.ok()?;
            (n.last_seen_at? > before).then_some(())
        }
    })
    .await;
    let msgs = manager_log_messages(&w).await;
    assert!(msgs.iter().any(|m| m.contains("near expiry")), "{msgs:?}");

    // Outage, then a control plane with another signing key (and long tokens): the old
    // token is refused with 401 and the node registers again, under the same id.
    cp.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cp = ControlPlane::start(cp_addr, store.clone(), "secret-b", 3600).await;
    let resumed = chrono::Utc::now();
    eventually("reports resume after the restart", || {
        let store = store.clone();
        async move {
            let n = store.get_node(node_id).await.ok()?;
            (n.last_seen_at? > resumed).then_some(())
        }
    })
    .await;
    let msgs = manager_log_messages(&w).await;
    assert!(
        msgs.iter()
            .any(|m| m.contains("refused; registering again") || m.contains("near expiry")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("control plane call failed") || m == "registration failed"),
        "{msgs:?}"
    );
    assert_eq!(store.list_nodes().await.unwrap().len(), 1);

    stop_tx.send(()).unwrap();
    assert!(matches!(run.await.unwrap(), ShutdownOutcome::Clean(_)));
    cp.stop().await;
}

#[tokio::test]
async fn wrong_psk_or_absent_control_plane_is_fatal_at_start() {
    let env = require_env!();
    let store = cynode_core::store::open(&StoreConfig::Memory)
        .await
        .unwrap();
    let cp_addr = free_addr().await;
    let cp = ControlPlane::start(cp_addr, store.clone(), "secret-a", 3600).await;
    let w = worker(&env).await;
    let mut c = manager_config(&env, cp_addr, &w, "node-m3");
    c.registration_psk = "wrong".into();
    let outcome = NodeManager::new(c, w.api.clone())
        .unwrap()
        .run(std::future::pending())
        .await;
    match outcome {
        ShutdownOutcome::Failed(m) => assert!(m.contains("401"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(store.get_node_by_slug("node-m3").await.is_err());
    cp.stop().await;

    let mut c = manager_config(&env, free_addr().await, &w, "node-m4");
    c.readiness_timeout = Some(Duration::from_secs(2));
    let outcome = NodeManager::new(c, w.api.clone())
        .unwrap()
        .run(std::future::pending())
        .await;
    assert!(matches!(outcome, ShutdownOutcome::Failed(m) if m.contains("not reachable")));
}
