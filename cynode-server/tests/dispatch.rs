//! The dispatcher on SQLite files with Worker API fixtures on real sockets: placement,
//! retries, cancel, waiting reasons, load sharing, exactly-once results.

mod dispatch_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use cynode_core::model::{JobStatus, NodeStatus, NodeUpdate};
use cynode_server::dispatch::{DispatchConfig, Dispatcher};
use cynode_server::gateway::TaskDispatcher;
use dispatch_support::*;
use serde_json::{Value, json};

const TOKEN: &str = "worker-token-7c1e";

fn dispatcher(env: &Env, config: DispatchConfig) -> Dispatcher {
    Dispatcher::new(env.store.clone(), env.queue.clone(), config).expect("dispatcher")
}

#[tokio::test]
async fn happy_path_completes_the_task_and_stores_stdout() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("echo hello")).await;
    d.task_created(&task, &job).await.expect("enqueue");

    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    let r = result_of(&done);
    assert_eq!(r["stdout"], "hello\n");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["job_id"], job.id.to_string());
    wait_task(&env.store, task.id, "completed").await;
    let node = env.store.get_node_by_slug("node-a").await.expect("node");
    assert_eq!(done.node_id, Some(node.id));
    assert!(done.started_at.is_some() && done.ended_at.is_some());
    assert_eq!(w.calls(), vec![job.id.to_string()]);

    // Creating the same job again is harmless (idempotency key = job id).
    assert!(!d.enqueue(&task, &job).await.expect("enqueue again"));
    let stats = h.shutdown().await;
    assert_eq!((stats.completed, stats.calls, stats.enqueued), (1, 1, 1));
    assert_eq!(w.calls().len(), 1, "the job ran once");
}

#[tokio::test]
async fn worker_failures_and_timeouts_fail_the_job_and_keep_the_worker_status() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (t1, j1) = task(&env.store, &u, shell("timeout")).await;
    let (t2, j2) = task(&env.store, &u, shell("exit 3")).await;
    d.task_created(&t1, &j1).await.expect("enqueue");
    d.task_created(&t2, &j2).await.expect("enqueue");

    let a = wait_ended(&env.store, j1.id).await;
    assert_eq!(a.status, JobStatus::Failed);
    assert_eq!(result_of(&a)["status"], "timeout");
    assert_eq!(result_of(&a)["exit_code"], -1);
    wait_task(&env.store, t1.id, "failed").await;
    let b = wait_ended(&env.store, j2.id).await;
    assert_eq!(b.status, JobStatus::Failed);
    assert_eq!(result_of(&b)["status"], "failed");
    assert_eq!(result_of(&b)["exit_code"], 3);
    // Final outcomes are not retried.
    assert_eq!(w.calls().len(), 2);
}

#[tokio::test]
async fn a_sandbox_only_node_never_gets_an_inference_job() {
    let env = sqlite_env().await;
    let edge = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "edge-1",
        &edge.url(),
        TOKEN,
        caps("edge-1", &["sandbox_only"], true, 4),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (ti, ji) = task(&env.store, &u, shell_inference("echo needs-model")).await;
    let (tp, jp) = task(&env.store, &u, shell("echo plain")).await;
    d.task_created(&ti, &ji).await.expect("enqueue");
    d.task_created(&tp, &jp).await.expect("enqueue");

    // The plain job runs on the sandbox-only node.
    let plain = wait_ended(&env.store, jp.id).await;
    assert_eq!(plain.status, JobStatus::Completed);
    // The inference job waits, saying why.
    let waiting = eventually("a waiting reason", || async {
        let j = env.store.get_job(ji.id).await.expect("job");
        let r = result_of(&j);
        (r["status"] == "queued").then_some((j, r))
    })
    .await;
    assert_eq!(waiting.0.status, JobStatus::Queued);
    assert_eq!(
        waiting.1["reason"],
        "waiting for a worker node (needs inference): edge-1: sandbox-only (no inference)"
    );
    assert_eq!(task_status(&env.store, ti.id).await, "pending");

    // A node with inference appears: the job goes there, never to the edge node.
    let gpu = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "gpu-1",
        &gpu.url(),
        TOKEN,
        caps("gpu-1", &[], true, 4),
    )
    .await;
    let done = wait_ended(&env.store, ji.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(result_of(&done)["stdout"], "needs-model\n");
    assert_eq!(gpu.calls(), vec![ji.id.to_string()]);
    assert!(!edge.calls().contains(&ji.id.to_string()));
    assert_eq!(edge.calls(), vec![jp.id.to_string()]);
}

#[tokio::test]
async fn with_no_capable_node_the_job_waits_with_a_reason_then_runs() {
    let env = sqlite_env().await;
    let d = dispatcher(&env, fast_config());
    let h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("echo later")).await;
    d.task_created(&task, &job).await.expect("enqueue");

    let reason = eventually("a waiting reason", || async {
        let j = env.store.get_job(job.id).await.expect("job");
        result_of(&j)["reason"].as_str().map(String::from)
    })
    .await;
    assert_eq!(reason, "waiting for a worker node: no node is registered");
    assert_eq!(
        env.store.get_job(job.id).await.expect("job").status,
        JobStatus::Queued
    );

    // A node that registered but never applied its configuration is not used.
    let w = FakeWorker::start(TOKEN).await;
    let n = env.store.upsert_node("node-a").await.expect("node");
    env.store
        .record_capabilities(n.id, caps("node-a", &[], true, 4), chrono::Utc::now())
        .await
        .expect("caps");
    let reason = eventually("the unconfigured node named", || async {
        let j = env.store.get_job(job.id).await.expect("job");
        result_of(&j)["reason"]
            .as_str()
            .filter(|r| r.contains("node-a"))
            .map(String::from)
    })
    .await;
    assert_eq!(
        reason,
        "waiting for a worker node: node-a: not dispatchable"
    );
    assert!(w.calls().is_empty());

    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(result_of(&done)["stdout"], "later\n");
    wait_task(&env.store, task.id, "completed").await;
    let stats = h.shutdown().await;
    assert!(stats.waited >= 2, "{stats:?}");
    assert_eq!(stats.retried, 0, "waiting does not use attempts");
}

#[tokio::test]
async fn a_worker_refusing_the_token_fails_the_task_with_an_error_result() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        "not-the-token",
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("echo hi")).await;
    d.task_created(&task, &job).await.expect("enqueue");

    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(
        result_of(&done),
        json!({"version": 1, "status": "failed",
               "error": "node node-a: the worker refused the job (HTTP 401): Invalid or missing bearer token"})
    );
    wait_task(&env.store, task.id, "failed").await;
    assert_eq!(
        w.state.unauthorized.load(Ordering::SeqCst),
        1,
        "401 is final: no retry"
    );
    assert!(w.calls().is_empty());
}

#[tokio::test]
async fn a_worker_that_is_down_is_retried_and_the_job_runs_once_when_it_is_back() {
    let env = sqlite_env().await;
    let port = free_port().await;
    add_node(
        &env.store,
        "node-a",
        &format!("http://127.0.0.1:{port}"),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(
        &env,
        DispatchConfig {
            max_attempts: 50,
            ..fast_config()
        },
    );
    let h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("echo back")).await;
    d.task_created(&task, &job).await.expect("enqueue");

    let reason = eventually("a retry reason", || async {
        let j = env.store.get_job(job.id).await.expect("job");
        result_of(&j)["reason"]
            .as_str()
            .filter(|r| r.starts_with("retrying"))
            .map(String::from)
    })
    .await;
    assert!(
        reason.contains("node node-a: cannot reach the worker"),
        "{reason}"
    );

    let w = FakeWorker::start_on(port, TOKEN).await;
    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(result_of(&done)["stdout"], "back\n");
    assert_eq!(w.calls(), vec![job.id.to_string()], "ran exactly once");
    let stats = h.shutdown().await;
    assert!(stats.retried >= 1, "{stats:?}");
}

#[tokio::test]
async fn busy_workers_are_retried_and_attempts_are_bounded() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    w.state.busy.store(1, Ordering::SeqCst);
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (t1, j1) = task(&env.store, &u, shell("echo after-503")).await;
    d.task_created(&t1, &j1).await.expect("enqueue");
    let done = wait_ended(&env.store, j1.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(w.calls(), vec![j1.id.to_string()]);

    // A node that never answers: the job fails after max_attempts.
    let port = free_port().await;
    let env2 = sqlite_env().await;
    add_node(
        &env2.store,
        "node-b",
        &format!("http://127.0.0.1:{port}"),
        TOKEN,
        caps("node-b", &[], true, 4),
    )
    .await;
    let d2 = Dispatcher::new(
        env2.store.clone(),
        env2.queue.clone(),
        DispatchConfig {
            max_attempts: 2,
            ..fast_config()
        },
    )
    .expect("dispatcher");
    let _h2 = d2.spawn().expect("spawn");
    let u2 = user(&env2.store, "bob").await;
    let (t2, j2) = task(&env2.store, &u2, shell("echo never")).await;
    d2.task_created(&t2, &j2).await.expect("enqueue");
    let failed = wait_ended(&env2.store, j2.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let err = result_of(&failed)["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        err.starts_with("node node-b: cannot reach the worker")
            && err.ends_with("(gave up after 2 attempts)"),
        "{err}"
    );
    wait_task(&env2.store, t2.id, "failed").await;
}

#[tokio::test]
async fn cancel_of_a_running_job_drops_the_call_and_stays_canceled() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("sleep 300")).await;
    d.task_created(&task, &job).await.expect("enqueue");

    eventually("the job to run on the node", || async {
        (w.active() == 1).then_some(())
    })
    .await;
    let running = env.store.get_job(job.id).await.expect("job");
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(task_status(&env.store, task.id).await, "running");

    // What the gateway's cancel does: storage first, then the dispatcher.
    let t = env
        .store
        .set_task_status(task.id, cynode_core::model::TaskStatus::Canceled)
        .await
        .expect("cancel task");
    env.store
        .update_job(
            job.id,
            cynode_core::model::JobUpdate {
                status: Some(JobStatus::Canceled),
                ended_at: Some(chrono::Utc::now()),
                lease: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("cancel job");
    d.task_canceled(&t, &[job.id]).await.expect("cancel");

    eventually("the node to see the call dropped", || async {
        (w.dropped() == vec![job.id.to_string()]).then_some(())
    })
    .await;
    assert_eq!(w.active(), 0);
    // Letting held jobs answer now changes nothing: canceled never flips back.
    w.release_all();
    let after = d.reconcile().await.expect("reconcile");
    assert_eq!(after.applied, 0);
    let j = env.store.get_job(job.id).await.expect("job");
    assert_eq!(j.status, JobStatus::Canceled);
    assert_eq!(task_status(&env.store, task.id).await, "canceled");
    assert!(w.answered().is_empty());
    assert_eq!(w.calls().len(), 1, "not run again");
}

#[tokio::test]
async fn two_nodes_share_the_load() {
    let env = sqlite_env().await;
    let a = FakeWorker::start(TOKEN).await;
    let b = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &a.url(),
        TOKEN,
        caps("node-a", &[], true, 2),
    )
    .await;
    add_node(
        &env.store,
        "node-b",
        &b.url(),
        TOKEN,
        caps("node-b", &[], true, 2),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let (t, j) = task(&env.store, &u, shell("sleep 5")).await;
        d.task_created(&t, &j).await.expect("enqueue");
        jobs.push(j.id);
    }
    // Four slots in all: two per node, the fifth job waits for a free slot.
    eventually("four jobs running", || async {
        (a.active() + b.active() == 4).then_some(())
    })
    .await;
    assert_eq!((a.active(), b.active()), (2, 2));
    let waiting = eventually("the fifth job waiting", || async {
        let mut found = None;
        for id in &jobs {
            let j = env.store.get_job(*id).await.expect("job");
            if j.status == JobStatus::Queued && result_of(&j)["reason"].is_string() {
                found = Some(result_of(&j)["reason"].as_str().unwrap_or("").to_string());
            }
        }
        found
    })
    .await;
    assert_eq!(
        waiting,
        "waiting for a worker node: node-a: busy (2/2 jobs); node-b: busy (2/2 jobs)"
    );
    a.release_all();
    b.release_all();
    for id in &jobs {
        assert_eq!(
            wait_ended(&env.store, *id).await.status,
            JobStatus::Completed
        );
    }
    let calls: Vec<String> = a.calls().into_iter().chain(b.calls()).collect();
    assert_eq!(calls.len(), 5, "each job ran once: {calls:?}");
    assert!(a.calls().len() >= 2 && b.calls().len() >= 2);
}

#[tokio::test]
async fn a_node_that_vanishes_mid_job_leads_to_one_rerun() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    w.state.vanish.store(1, Ordering::SeqCst);
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("echo again")).await;
    d.task_created(&task, &job).await.expect("enqueue");

    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(result_of(&done)["stdout"], "again\n");
    let id = job.id.to_string();
    assert_eq!(
        w.calls(),
        vec![id.clone(), id.clone()],
        "lost once, run again once"
    );
    assert_eq!(w.answered(), vec![id]);
    let stats = h.shutdown().await;
    assert_eq!((stats.retried, stats.completed), (1, 1));
}

#[tokio::test]
async fn two_replicas_run_each_job_once() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 64),
    )
    .await;
    let q2 = env.second_sqlite_queue().await;
    let d1 = dispatcher(&env, fast_config());
    let d2 = Dispatcher::new(env.store.clone(), q2, fast_config()).expect("dispatcher");
    let h1 = d1.spawn().expect("spawn 1");
    let h2 = d2.spawn().expect("spawn 2");
    let u = user(&env.store, "ada").await;
    let mut jobs = Vec::new();
    for i in 0..40 {
        let (t, j) = task(&env.store, &u, shell(&format!("echo job-{i}"))).await;
        // Both replicas are told (as two gateways behind a balancer could be).
        d1.task_created(&t, &j).await.expect("enqueue");
        d2.task_created(&t, &j).await.expect("enqueue");
        jobs.push((i, j.id));
    }
    for (i, id) in &jobs {
        let j = wait_ended(&env.store, *id).await;
        assert_eq!(j.status, JobStatus::Completed);
        assert_eq!(result_of(&j)["stdout"], format!("job-{i}\n"));
    }
    let counts = w.call_counts();
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let s1 = h1.shutdown().await;
    let s2 = h2.shutdown().await;
    assert_eq!(s1.completed + s2.completed, 40, "{s1:?} {s2:?}");
    assert_eq!(s1.enqueued + s2.enqueued, 40);
}

#[tokio::test]
async fn a_restart_mid_job_reruns_it_and_applies_one_result() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(
        &env,
        DispatchConfig {
            shutdown_grace: Duration::from_millis(200),
            ..fast_config()
        },
    );
    let h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("sleep 1")).await;
    d.task_created(&task, &job).await.expect("enqueue");
    eventually("the job running", || async {
        (w.active() == 1).then_some(())
    })
    .await;

    // Stop the replica: the call is dropped, so the node stops the job.
    h.shutdown().await;
    eventually("the node to see the call dropped", || async {
        (w.dropped().len() == 1).then_some(())
    })
    .await;
    w.release_all();

    // A new replica takes over.
    let d2 = dispatcher(&env, fast_config());
    let h2 = d2.spawn().expect("spawn again");
    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(w.calls().len(), 2);
    assert_eq!(w.answered().len(), 1);
    // Nothing is applied again later.
    let r = d2.reconcile().await.expect("reconcile");
    assert_eq!((r.enqueued, r.applied), (0, 0));
    let s = h2.shutdown().await;
    assert_eq!(s.completed, 1);
}

#[tokio::test]
async fn reconcile_enqueues_jobs_the_dispatcher_never_heard_of() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let u = user(&env.store, "ada").await;
    // Stored while no dispatcher was listening (e.g. the queue was down).
    let (task, job) = task(&env.store, &u, shell("echo recovered")).await;
    let d = dispatcher(&env, fast_config());
    let h = d.spawn().expect("spawn");
    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(result_of(&done)["stdout"], "recovered\n");
    wait_task(&env.store, task.id, "completed").await;
    let s = h.shutdown().await;
    assert_eq!(s.reconciled, 1);
}

#[tokio::test]
async fn stale_or_disabled_nodes_take_no_jobs() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    let n = add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    env.store
        .update_node(
            n.id,
            NodeUpdate {
                status: Some(NodeStatus::Drained),
                ..Default::default()
            },
        )
        .await
        .expect("drain");
    let d = dispatcher(&env, fast_config());
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("echo x")).await;
    d.task_created(&task, &job).await.expect("enqueue");
    let reason = eventually("a waiting reason", || async {
        let j = env.store.get_job(job.id).await.expect("job");
        result_of(&j)["reason"].as_str().map(String::from)
    })
    .await;
    assert_eq!(
        reason,
        "waiting for a worker node: node-a: not dispatchable"
    );

    // Active again but silent for longer than NODE_STALE_AFTER.
    env.store
        .update_node(
            n.id,
            NodeUpdate {
                status: Some(NodeStatus::Active),
                last_seen_at: Some(chrono::Utc::now() - chrono::Duration::seconds(600)),
                ..Default::default()
            },
        )
        .await
        .expect("revive");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(w.calls().is_empty());
    env.store
        .update_node(
            n.id,
            NodeUpdate {
                last_seen_at: Some(chrono::Utc::now()),
                ..Default::default()
            },
        )
        .await
        .expect("heartbeat");
    assert_eq!(
        wait_ended(&env.store, job.id).await.status,
        JobStatus::Completed
    );
}

#[tokio::test]
async fn bad_payloads_fail_the_job_without_a_call() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = dispatcher(&env, fast_config());
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, Value::String("not a sandbox".into())).await;
    d.task_created(&task, &job).await.expect("enqueue");
    let done = wait_ended(&env.store, job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    let err = result_of(&done)["error"].as_str().unwrap_or("").to_string();
    assert!(err.starts_with("invalid job payload"), "{err}");
    wait_task(&env.store, task.id, "failed").await;
    assert!(w.calls().is_empty());
}

#[tokio::test]
async fn images_are_aliased_and_runner_jobs_get_the_runner_image() {
    let env = sqlite_env().await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &env.store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let mut config = fast_config();
    config
        .image_aliases
        .insert("alpine:latest".into(), "localhost/mirror/alpine:3".into());
    let d = dispatcher(&env, config);
    let _h = d.spawn().expect("spawn");
    let u = user(&env.store, "ada").await;
    let (t1, j1) = task(&env.store, &u, shell("echo aliased")).await;
    d.task_created(&t1, &j1).await.expect("enqueue");
    assert_eq!(
        wait_ended(&env.store, j1.id).await.status,
        JobStatus::Completed
    );
    let spec = json!({"protocol_version": "1.0", "execution_mode": "agent_inference",
                      "inference": {"allowed_models": ["m"]}})
    .to_string();
    let runner = json!({"image": "", "command": [], "env": {}, "timeout_seconds": 300,
                        "network_policy": "none", "use_inference": true, "job_spec_json": spec});
    let (t2, j2) = task(&env.store, &u, runner).await;
    d.task_created(&t2, &j2).await.expect("enqueue");
    assert_eq!(
        wait_ended(&env.store, j2.id).await.status,
        JobStatus::Completed
    );

    let reqs = w.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["sandbox"]["image"], "localhost/mirror/alpine:3");
    assert_eq!(reqs[0]["task_id"], t1.id.to_string());
    assert_eq!(reqs[0]["job_id"], j1.id.to_string());
    assert_eq!(
        reqs[0]["sandbox"]["command"],
        json!(["sh", "-c", "echo aliased"])
    );
    assert_eq!(reqs[1]["sandbox"]["image"], "cynodeai-cynode-sba:dev");
    assert_eq!(reqs[1]["sandbox"]["job_spec_json"], spec);
}

#[tokio::test]
async fn reconcile_fails_jobs_whose_holder_died_with_no_attempts_left() {
    let env = sqlite_env().await;
    let d = dispatcher(
        &env,
        DispatchConfig {
            max_attempts: 1,
            lease_ttl: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(100),
            ..fast_config()
        },
    );
    let u = user(&env.store, "ada").await;
    let (task, job) = task(&env.store, &u, shell("echo lost")).await;
    d.task_created(&task, &job).await.expect("enqueue");
    // A holder claims the job and dies without a word.
    let leases = env
        .queue
        .claim(&cynode_sched::Claim {
            queues: vec![d.config().queue.clone()],
            kinds: vec![],
            max: 1,
            worker_id: "dead-replica".into(),
            lease_ttl: Duration::from_millis(50),
        })
        .await
        .expect("claim");
    assert_eq!(leases.len(), 1);
    eventually("the lease to be reaped", || async {
        (env.queue.reap_expired().await.expect("reap") == 1).then_some(())
    })
    .await;
    let r = eventually("reconcile to apply the failure", || async {
        let r = d.reconcile().await.expect("reconcile");
        (r.applied == 1).then_some(r)
    })
    .await;
    assert_eq!(r.enqueued, 0);
    let j = env.store.get_job(job.id).await.expect("job");
    assert_eq!(j.status, JobStatus::Failed);
    let doc = result_of(&j);
    assert_eq!(doc["status"], "failed");
    assert!(
        doc["error"].as_str().is_some_and(|e| e.contains("lease")),
        "{doc}"
    );
    wait_task(&env.store, task.id, "failed").await;
    // Applied once: a second pass finds nothing to do.
    let again = d.reconcile().await.expect("reconcile");
    assert_eq!((again.checked, again.applied), (0, 0));
}
