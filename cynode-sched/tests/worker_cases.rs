//! Worker runtime cases, run against every backend.
#![allow(dead_code, missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cynode_sched::*;
use serde_json::json;

use crate::common::{Q, eventually};

pub fn fast_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        prefetch: 4,
        lease_ttl: Duration::from_millis(1000),
        heartbeat_interval: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        reap_interval: Duration::from_millis(100),
        cron_interval: Duration::from_millis(100),
        retry: RetryPolicy {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        shutdown_grace: Duration::from_secs(10),
        placement_retry: Duration::from_millis(50),
        ..WorkerConfig::default()
    }
}

async fn state_is(q: &Q, id: JobId, s: JobState) -> bool {
    q.get(id).await.unwrap().state == s
}

pub async fn runs_jobs_and_stores_results(q: Q) {
    let ids: Vec<JobId> = q
        .enqueue_many(
            (0..40)
                .map(|i| NewJob::new("double", json!({"n": i})))
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let w = Worker::new(q.clone(), fast_config())
        .handle("double", |ctx: JobContext| async move {
            let n = ctx.payload()["n"]
                .as_i64()
                .ok_or_else(|| JobError::fatal("no n"))?;
            Ok(Some(json!(n * 2)))
        })
        .start()
        .unwrap();
    let q2 = q.clone();
    eventually("all jobs complete", || {
        let q2 = q2.clone();
        async move { q2.stats(None).await.unwrap().completed == 40 }
    })
    .await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(q.get(*id).await.unwrap().result, Some(json!(i as i64 * 2)));
    }
    let stats = w.shutdown().await;
    assert_eq!(stats.completed, 40);
}

pub async fn errors_are_retried_then_fail_with_the_last_error(q: Q) {
    let id = q
        .enqueue(NewJob::new("flaky", json!({})).max_attempts(3))
        .await
        .unwrap()
        .id;
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let w = Worker::new(q.clone(), fast_config())
        .handle("flaky", move |ctx: JobContext| {
            let c2 = c2.clone();
            async move {
                c2.fetch_add(1, Ordering::SeqCst);
                let n: u32 = format!("not a number {}", ctx.attempt()).parse()?;
                Ok(Some(json!(n)))
            }
        })
        .start()
        .unwrap();
    let q2 = q.clone();
    eventually("the job fails permanently", || {
        let q2 = q2.clone();
        async move { state_is(&q2, id, JobState::Failed).await }
    })
    .await;
    let j = q.get(id).await.unwrap();
    assert_eq!(j.attempt, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(j.last_error.unwrap().contains("invalid digit"));
    let s = w.shutdown().await;
    assert_eq!((s.retried, s.failed), (2, 1));
}

pub async fn a_panicking_handler_is_retried(q: Q) {
    let id = q
        .enqueue(NewJob::new("panicky", json!({})))
        .await
        .unwrap()
        .id;
    let w = Worker::new(q.clone(), fast_config())
        .handle("panicky", |ctx: JobContext| async move {
            if ctx.attempt() == 1 {
                panic!("first attempt explodes");
            }
            Ok(None)
        })
        .start()
        .unwrap();
    let q2 = q.clone();
    eventually("the second attempt completes", || {
        let q2 = q2.clone();
        async move { state_is(&q2, id, JobState::Completed).await }
    })
    .await;
    let j = q.get(id).await.unwrap();
    assert_eq!(j.attempt, 2);
    assert!(j.last_error.unwrap().contains("first attempt explodes"));
    w.shutdown().await;
}

/// Sets its flag when dropped (the handler's future was dropped or finished).
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub async fn cancel_stops_a_running_handler(q: Q) {
    let id = q
        .enqueue(NewJob::new("forever", json!({})))
        .await
        .unwrap()
        .id;
    let started = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (s2, d2) = (started.clone(), dropped.clone());
    let w = Worker::new(q.clone(), fast_config())
        .handle("forever", move |_ctx: JobContext| {
            let (s2, d2) = (s2.clone(), d2.clone());
            async move {
                let _guard = DropFlag(d2);
                s2.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok(None)
            }
        })
        .start()
        .unwrap();
    let st = started.clone();
    eventually("the handler starts", || {
        let st = st.clone();
        async move { st.load(Ordering::SeqCst) }
    })
    .await;
    assert_eq!(
        q.cancel(id).await.unwrap(),
        CancelResult::Canceled { was_running: true }
    );
    let d = dropped.clone();
    eventually("the handler is stopped", || {
        let d = d.clone();
        async move { d.load(Ordering::SeqCst) }
    })
    .await;
    assert_eq!(q.get(id).await.unwrap().state, JobState::Canceled);
    let s = w.shutdown().await;
    assert_eq!(s.aborted, 1);
    assert_eq!(s.completed, 0);
}

pub async fn heartbeats_keep_a_long_job_and_expiry_reruns_an_abandoned_one(q: Q) {
    // A job that outlives several lease lengths completes on its first attempt.
    let long = q.enqueue(NewJob::new("slow", json!({}))).await.unwrap().id;
    let w = Worker::new(q.clone(), fast_config())
        .handle("slow", |_ctx: JobContext| async move {
            tokio::time::sleep(Duration::from_millis(3000)).await;
            Ok(None)
        })
        .start()
        .unwrap();
    let q2 = q.clone();
    eventually("the long job completes", || {
        let q2 = q2.clone();
        async move { state_is(&q2, long, JobState::Completed).await }
    })
    .await;
    assert_eq!(
        q.get(long).await.unwrap().attempt,
        1,
        "renewed, never re-run"
    );
    w.shutdown().await;

    // A job claimed by a holder that vanished (no heartbeats) runs again elsewhere.
    let lost = q.enqueue(NewJob::new("slow", json!({}))).await.unwrap().id;
    let mut c = crate::common::claim(1);
    c.lease_ttl = Duration::from_millis(300);
    let abandoned = q.claim(&c).await.unwrap().remove(0);
    let w = Worker::new(q.clone(), fast_config())
        .handle("slow", |_ctx: JobContext| async move {
            Ok(Some(json!("second holder")))
        })
        .start()
        .unwrap();
    let q2 = q.clone();
    eventually("the abandoned job is re-run", || {
        let q2 = q2.clone();
        async move { state_is(&q2, lost, JobState::Completed).await }
    })
    .await;
    let j = q.get(lost).await.unwrap();
    assert_eq!(j.attempt, 2);
    assert_eq!(j.result, Some(json!("second holder")));
    assert_eq!(
        crate::common::complete(&q, &abandoned).await,
        FinishResult::Stale
    );
    w.shutdown().await;
}

pub async fn graceful_shutdown_finishes_running_and_releases_buffered(q: Q) {
    let n = 12;
    q.enqueue_many((0..n).map(|i| NewJob::new("nap", json!(i))).collect())
        .await
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let s2 = started.clone();
    let mut cfg = fast_config();
    cfg.concurrency = 2;
    cfg.prefetch = 4;
    let w = Worker::new(q.clone(), cfg)
        .handle("nap", move |_ctx: JobContext| {
            let s2 = s2.clone();
            async move {
                s2.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(None)
            }
        })
        .start()
        .unwrap();
    let st = started.clone();
    eventually("two handlers run", || {
        let st = st.clone();
        async move { st.load(Ordering::SeqCst) >= 2 }
    })
    .await;
    let stats = w.shutdown().await;
    let s = q.stats(None).await.unwrap();
    assert_eq!(s.running, 0, "nothing left holding a lease");
    assert_eq!(s.completed, stats.completed);
    assert!(stats.completed >= 2, "running handlers finished: {stats:?}");
    assert_eq!(s.completed + s.queued, n);
    // Released jobs did not use up an attempt.
    let again = q.claim(&crate::common::claim(100)).await.unwrap();
    assert!(
        again.iter().all(|l| l.job.attempt == 1),
        "released jobs keep their attempts"
    );
}

#[derive(Debug)]
struct Nodes(Mutex<Vec<NodeInfo>>);

#[async_trait::async_trait]
impl NodeDirectory for Nodes {
    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(self.0.lock().unwrap().clone())
    }
}

fn node(slug: &str, gpu: bool) -> NodeInfo {
    NodeInfo {
        id: NodeId::new(),
        slug: slug.into(),
        dispatchable: true,
        labels: vec![],
        sandbox_supported: true,
        max_concurrency: 4,
        in_flight: 0,
        inference: true,
        gpu,
        runtime: Some("podman".into()),
    }
}

pub async fn unplaceable_jobs_wait_with_a_reason_then_run_on_a_fitting_node(q: Q) {
    let dir = Arc::new(Nodes(Mutex::new(vec![node("cpu-1", false)])));
    let req = Requirements {
        gpu: true,
        ..Default::default()
    };
    let id = q
        .enqueue(
            NewJob::new("train", json!({}))
                .placement(req)
                .affinity_key("task-1"),
        )
        .await
        .unwrap()
        .id;
    let ran_on = Arc::new(Mutex::new(None));
    let r2 = ran_on.clone();
    let w = Worker::new(q.clone(), fast_config())
        .with_nodes(dir.clone())
        .handle("train", move |ctx: JobContext| {
            let r2 = r2.clone();
            async move {
                *r2.lock().unwrap() = ctx.node().map(|n| n.slug.clone());
                Ok(None)
            }
        })
        .start()
        .unwrap();
    let q2 = q.clone();
    eventually("the job says why it waits", || {
        let q2 = q2.clone();
        async move { q2.get(id).await.unwrap().reason.is_some() }
    })
    .await;
    let j = q.get(id).await.unwrap();
    assert!(!j.state.is_terminal());
    assert_eq!(
        j.reason.as_deref(),
        Some("waiting for a worker node (needs a GPU): cpu-1: no GPU")
    );
    let gpu = node("gpu-1", true);
    let gpu_id = gpu.id;
    dir.0.lock().unwrap().push(gpu);
    let q2 = q.clone();
    eventually("the job runs once a GPU node appears", || {
        let q2 = q2.clone();
        async move { state_is(&q2, id, JobState::Completed).await }
    })
    .await;
    let j = q.get(id).await.unwrap();
    assert_eq!(j.node_id, Some(gpu_id));
    assert_eq!(j.attempt, 1, "waiting for a node used no attempt");
    assert!(j.reason.is_none());
    assert_eq!(ran_on.lock().unwrap().as_deref(), Some("gpu-1"));
    w.shutdown().await;
}

pub async fn worker_config_is_checked(q: Q) {
    let bad = WorkerConfig {
        concurrency: 0,
        ..WorkerConfig::default()
    };
    assert_eq!(
        Worker::new(q.clone(), bad).start().unwrap_err().kind(),
        "invalid_input"
    );
    let bad = WorkerConfig {
        heartbeat_interval: Duration::from_secs(60),
        ..WorkerConfig::default()
    };
    assert_eq!(
        Worker::new(q.clone(), bad).start().unwrap_err().kind(),
        "invalid_input"
    );
    let bad = WorkerConfig {
        queues: vec![],
        ..WorkerConfig::default()
    };
    assert_eq!(
        Worker::new(q, bad).start().unwrap_err().kind(),
        "invalid_input"
    );
}

#[macro_export]
macro_rules! worker_suite {
    ($make:expr) => {
        mod worker {
            use super::*;
            $crate::worker_suite!(@cases $make;
                runs_jobs_and_stores_results, errors_are_retried_then_fail_with_the_last_error,
                a_panicking_handler_is_retried, cancel_stops_a_running_handler,
                heartbeats_keep_a_long_job_and_expiry_reruns_an_abandoned_one,
                graceful_shutdown_finishes_running_and_releases_buffered,
                unplaceable_jobs_wait_with_a_reason_then_run_on_a_fitting_node,
                worker_config_is_checked);
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some((q, cleanup)) = $make.await {
                    worker_cases::$case(q).await;
                    cleanup.await;
                }
            }
        )*
    };
}
