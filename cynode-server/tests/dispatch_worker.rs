//! The dispatcher against the real Worker API router (`cynode_sandbox::node`) running
//! jobs on Podman (`CYNODE_TEST_DOCKER_HOST`, `CYNODE_TEST_IMAGE`): through the gateway
//! to a container and back, cancel stops the container, timeouts, a refused token, and a
//! Worker API that goes away mid-job.

mod dispatch_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cynode_core::model::JobStatus;
use cynode_sandbox::node::{Telemetry, WorkerApiConfig, WorkerApiState, worker_api_router};
use cynode_sandbox::{DockerConfig, Driver, DriverConfig, ImagePolicy, PullPolicy, RunAs};
use cynode_server::dispatch::{DispatchConfig, Dispatcher};
use cynode_server::gateway::TaskDispatcher;
use cynode_testkit::podman::{PodmanEnv, podman_env};
use dispatch_support::*;
use serde_json::json;
use tokio::net::TcpListener;

const TOKEN: &str = "real-worker-token-5d2a";

/// A worker node's API on a real socket, over a driver with its own owner id.
struct RealNode {
    addr: SocketAddr,
    state: WorkerApiState,
    driver: Driver,
    owner: String,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl RealNode {
    async fn start(env: &PodmanEnv) -> RealNode {
        let dir = tempfile::Builder::new()
            .prefix("cynode-dispatch-test-")
            .tempdir()
            .expect("tempdir");
        let owner = format!("t-{}", uuid::Uuid::new_v4().simple());
        let mut config = DriverConfig {
            owner: owner.clone(),
            mount_root: dir.path().join("jobs"),
            run_as: RunAs {
                uid: 10001,
                gid: 10001,
            },
            images: ImagePolicy {
                default_image: env.image.clone(),
                allowed: vec![],
                pull: PullPolicy::Never,
                pull_timeout_secs: 30,
            },
            default_timeout_secs: 120,
            stop_grace_secs: 2,
            ..Default::default()
        };
        config.default_limits.memory_mb = 256;
        config.default_limits.pids = 128;
        config.default_limits.cpu_cores = 1.0;
        let driver = Driver::connect(&DockerConfig::new(&env.docker_host), config)
            .await
            .expect("connect to the test container engine");
        let api = WorkerApiConfig {
            node_slug: "real-1".into(),
            state_dir: dir.path().to_path_buf(),
            inference_allowed: false,
            ..Default::default()
        };
        let state = WorkerApiState::new(driver.clone(), api, Arc::new(Telemetry::new()));
        state.set_bearer_token(Some(TOKEN));
        state.mark_configured();
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = serve(l, state.clone());
        RealNode {
            addr,
            state,
            driver,
            owner,
            server,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Containers of this node still known to the engine, after waiting for them to go.
    /// (A listing that races a removal can fail on Podman with "container not known";
    /// such a listing is simply taken again.)
    async fn leftovers_after_cleanup(&self) -> usize {
        let mut last = None;
        for _ in 0..300 {
            match self.driver.runtime().list_owned(&self.owner).await {
                Ok(left) if left.is_empty() => return 0,
                Ok(left) => last = Some(left.len()),
                Err(e) => eprintln!("listing containers failed, retrying: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last.expect("containers could never be listed")
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn serve(l: TcpListener, state: WorkerApiState) -> tokio::task::JoinHandle<()> {
    let app = worker_api_router(state);
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    })
}

fn config(env: &PodmanEnv) -> DispatchConfig {
    let mut c = fast_config();
    // The gateway's commands-mode image, mapped to the local test image.
    c.image_aliases
        .insert("alpine:latest".into(), env.image.clone());
    c
}

#[tokio::test]
async fn gateway_to_a_container_and_back_and_cancel_stops_it() {
    let Some(tenv) = podman_env() else { return };
    let env = sqlite_env().await;
    let node = RealNode::start(&tenv).await;
    add_node(
        &env.store,
        "real-1",
        &node.url(),
        TOKEN,
        caps("real-1", &[], false, 4),
    )
    .await;
    let d =
        Dispatcher::new(env.store.clone(), env.queue.clone(), config(&tenv)).expect("dispatcher");
    let h = d.spawn().expect("spawn");
    let gw = Gateway::start(&env.store, Arc::new(d.clone())).await;

    let id = gw.create_task("echo hello").await;
    gw.wait_status(&id, "completed").await;
    let (job, doc) = gw.job_result(&id).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["stdout"], "hello\n");
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["truncated"], json!({"stdout": false, "stderr": false}));
    let (_, logs) = gw.get(&format!("/v1/tasks/{id}/logs")).await;
    assert_eq!(logs["stdout"], "hello\n");

    // Cancel a running sleep: its container goes away and the task stays canceled.
    let id2 = gw.create_task("sleep 300").await;
    gw.wait_status(&id2, "running").await;
    eventually("the container running", || async {
        (node.state.running_jobs() == 1).then_some(())
    })
    .await;
    let (s, v) = gw.post(&format!("/v1/tasks/{id2}/cancel"), None).await;
    assert_eq!((s, v["canceled"].as_bool()), (200, Some(true)));
    eventually("the node to stop the job", || async {
        (node.state.running_jobs() == 0).then_some(())
    })
    .await;
    assert_eq!(node.leftovers_after_cleanup().await, 0, "no container left");
    let (_, t2) = gw.get(&format!("/v1/tasks/{id2}")).await;
    assert_eq!(t2["status"], "canceled");
    let stats = h.shutdown().await;
    assert_eq!(stats.completed, 1);
    let (_, t2) = gw.get(&format!("/v1/tasks/{id2}")).await;
    assert_eq!(t2["status"], "canceled");
}

#[tokio::test]
async fn a_job_past_its_timeout_fails_and_keeps_timeout_in_its_result() {
    let Some(tenv) = podman_env() else { return };
    let env = sqlite_env().await;
    let node = RealNode::start(&tenv).await;
    add_node(
        &env.store,
        "real-1",
        &node.url(),
        TOKEN,
        caps("real-1", &[], false, 4),
    )
    .await;
    let d =
        Dispatcher::new(env.store.clone(), env.queue.clone(), config(&tenv)).expect("dispatcher");
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let mut sb = shell("sleep 60");
    sb["timeout_seconds"] = json!(2);
    let (task, job) = task(&env.store, &u, sb).await;
    d.task_created(&task, &job).await.expect("enqueue");
    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    let doc = result_of(&done);
    assert_eq!(doc["status"], "timeout");
    assert_eq!(doc["exit_code"], -1);
    wait_task(&env.store, task.id, "failed").await;
    assert_eq!(node.leftovers_after_cleanup().await, 0);
}

#[tokio::test]
async fn a_refused_token_fails_the_task_with_the_workers_reason() {
    let Some(tenv) = podman_env() else { return };
    let env = sqlite_env().await;
    let node = RealNode::start(&tenv).await;
    add_node(
        &env.store,
        "real-1",
        &node.url(),
        "stale-token",
        caps("real-1", &[], false, 4),
    )
    .await;
    let d =
        Dispatcher::new(env.store.clone(), env.queue.clone(), config(&tenv)).expect("dispatcher");
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("echo no")).await;
    d.task_created(&task, &job).await.expect("enqueue");
    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(
        result_of(&done),
        json!({"version": 1, "status": "failed",
               "error": "node real-1: the worker refused the job (HTTP 401): Invalid or missing bearer token"})
    );
    wait_task(&env.store, task.id, "failed").await;
}

/// A TCP relay in front of a node: aborting it closes every relayed connection at once,
/// as a network loss or a dead node process would.
struct Relay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(bind: SocketAddr, upstream: SocketAddr) -> Relay {
        let l = TcpListener::bind(bind).await.expect("bind relay");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut down, _)) = l.accept().await {
                conns.spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Relay { addr, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_node_that_goes_away_mid_job_gets_the_job_again_and_it_completes_once() {
    let Some(tenv) = podman_env() else { return };
    let env = sqlite_env().await;
    let node = RealNode::start(&tenv).await;
    let relay = Relay::start("127.0.0.1:0".parse().expect("addr"), node.addr).await;
    let url = format!("http://{}", relay.addr);
    add_node(
        &env.store,
        "real-1",
        &url,
        TOKEN,
        caps("real-1", &[], false, 4),
    )
    .await;
    let d = Dispatcher::new(
        env.store.clone(),
        env.queue.clone(),
        DispatchConfig {
            max_attempts: 20,
            ..config(&tenv)
        },
    )
    .expect("dispatcher");
    let h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("sleep 2; echo finished")).await;
    d.task_created(&task, &job).await.expect("enqueue");
    eventually("the container running", || async {
        (node.state.running_jobs() == 1).then_some(())
    })
    .await;

    // The node drops off the network mid-job: both ends see the connection close; the
    // node stops the job it can no longer report.
    let at = relay.addr;
    drop(relay);
    eventually("the node to stop the orphaned job", || async {
        (node.state.running_jobs() == 0).then_some(())
    })
    .await;
    assert_eq!(node.leftovers_after_cleanup().await, 0);
    // It is reachable again at the same address.
    let _relay = Relay::start(at, node.addr).await;

    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(result_of(&done)["stdout"], "finished\n");
    wait_task(&env.store, task.id, "completed").await;
    let stats = h.shutdown().await;
    assert_eq!(stats.completed, 1);
    assert!(stats.retried >= 1, "{stats:?}");
}
