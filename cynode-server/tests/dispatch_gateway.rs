//! Task create → dispatcher → Worker API → result, through the gateway's HTTP routes
//! on real sockets (SQLite store and queue, a Worker API fixture).

mod dispatch_support;

use std::sync::Arc;

use cynode_server::dispatch::Dispatcher;
use dispatch_support::*;

const TOKEN: &str = "worker-token-gw";

#[tokio::test]
async fn tasks_flow_through_the_gateway_to_a_worker_and_back() {
    let env = sqlite_env().await;
    let d =
        Dispatcher::new(env.store.clone(), env.queue.clone(), fast_config()).expect("dispatcher");
    let h = d.spawn().expect("spawn");
    let gw = Gateway::start(&env.store, Arc::new(d.clone())).await;

    // No node yet: the task waits and says why.
    let id = gw.create_task("echo hello").await;
    let reason = eventually("the waiting reason in the result", || async {
        let (job, doc) = gw.job_result(&id).await;
        (job["status"] == "queued" && doc["status"] == "queued")
            .then(|| doc["reason"].as_str().map(String::from))
            .flatten()
    })
    .await;
    assert_eq!(reason, "waiting for a worker node: no node is registered");
    let (_, t) = gw.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(t["status"], "queued");

    // A node comes up: the task completes; result and logs show the output.
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    gw.wait_status(&id, "completed").await;
    let (job, doc) = gw.job_result(&id).await;
    assert_eq!(job["status"], "completed");
    assert!(
        job["started_at"].is_string() && job["ended_at"].is_string(),
        "{job}"
    );
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["stdout"], "hello\n");
    assert_eq!(doc["task_id"], id);
    let (s, logs) = gw.get(&format!("/v1/tasks/{id}/logs")).await;
    assert_eq!(s, 200);
    assert_eq!(logs["stdout"], "hello\n");
    assert_eq!(logs["stderr"], "");

    // A running task canceled through the API: the call is dropped, it stays canceled.
    let id2 = gw.create_task("sleep 300").await;
    gw.wait_status(&id2, "running").await;
    eventually("the node running it", || async {
        (w.active() == 1).then_some(())
    })
    .await;
    let (s, v) = gw.post(&format!("/v1/tasks/{id2}/cancel"), None).await;
    assert_eq!((s, v["canceled"].as_bool()), (200, Some(true)));
    eventually("the node to see the call dropped", || async {
        (w.dropped().len() == 1).then_some(())
    })
    .await;
    w.release_all();
    let (_, t2) = gw.get(&format!("/v1/tasks/{id2}")).await;
    assert_eq!(t2["status"], "canceled");
    let (job2, _) = gw.job_result(&id2).await;
    assert_eq!(job2["status"], "canceled");
    let stats = h.shutdown().await;
    assert_eq!((stats.completed, stats.calls), (1, 2));
    let (_, t2) = gw.get(&format!("/v1/tasks/{id2}")).await;
    assert_eq!(t2["status"], "canceled", "canceled never flips back");
}
