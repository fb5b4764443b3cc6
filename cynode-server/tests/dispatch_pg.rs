//! The dispatcher on PostgreSQL (`CYNODE_TEST_PG_URL`; each test creates its own
//! database): a job end to end, two replicas sharing 100 jobs with every job run once,
//! and a replica killed mid-run whose jobs are taken over and complete once.

mod dispatch_support;
#[path = "common/pg.rs"]
mod pg;

use std::sync::Arc;
use std::time::Duration;

use cynode_core::model::JobStatus;
use cynode_core::store::Store;
use cynode_sched::{PgQueue, PgQueueConfig, QueueStore};
use cynode_server::dispatch::{DispatchConfig, Dispatcher};
use cynode_server::gateway::TaskDispatcher;
use dispatch_support::*;
use pg::TestDatabase;

const TOKEN: &str = "worker-token-pg";

/// One replica's view of a fresh database: its own pools for the core store and the
/// queue.
async fn replica(db: &TestDatabase) -> (Arc<dyn Store>, Arc<dyn QueueStore>) {
    let store = pg::store(db).await;
    let queue = PgQueue::connect(&PgQueueConfig::new(db.url.clone()))
        .await
        .expect("connect queue");
    (store, Arc::new(queue))
}

fn config() -> DispatchConfig {
    DispatchConfig {
        lease_ttl: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
        ..fast_config()
    }
}

#[tokio::test]
async fn a_task_runs_end_to_end_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (store, queue) = replica(&db).await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &store,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 4),
    )
    .await;
    let d = Dispatcher::new(store.clone(), queue, config()).expect("dispatcher");
    let h = d.spawn().expect("spawn");
    let u = user(&store, "ada").await;
    let (task, job) = task(&store, &u, shell("echo hello")).await;
    d.task_created(&task, &job).await.expect("enqueue");
    let done = wait_ended(&store, job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(result_of(&done)["stdout"], "hello\n");
    wait_task(&store, task.id, "completed").await;

    // Cancel reaches the holder through the queue: the call is dropped.
    let (t2, j2) = dispatch_support::task(&store, &u, shell("sleep 300")).await;
    d.task_created(&t2, &j2).await.expect("enqueue");
    eventually("the job running", || async {
        (w.active() == 1).then_some(())
    })
    .await;
    let t2 = store
        .set_task_status(t2.id, cynode_core::model::TaskStatus::Canceled)
        .await
        .expect("cancel task");
    store
        .update_job(
            j2.id,
            cynode_core::model::JobUpdate {
                status: Some(JobStatus::Canceled),
                lease: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("cancel job");
    d.task_canceled(&t2, &[j2.id]).await.expect("cancel");
    eventually("the node to see the call dropped", || async {
        (w.dropped() == vec![j2.id.to_string()]).then_some(())
    })
    .await;
    w.release_all();
    let s = h.shutdown().await;
    assert_eq!(s.completed, 1);
    assert_eq!(
        store.get_job(j2.id).await.expect("job").status,
        JobStatus::Canceled
    );
    pg::drop(db).await;
}

#[tokio::test]
async fn two_replicas_share_jobs_and_a_killed_replica_loses_nothing() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (s1, q1) = replica(&db).await;
    let (s2, q2) = replica(&db).await;
    let w = FakeWorker::start(TOKEN).await;
    add_node(
        &s1,
        "node-a",
        &w.url(),
        TOKEN,
        caps("node-a", &[], true, 64),
    )
    .await;
    let d1 = Dispatcher::new(s1.clone(), q1, config()).expect("dispatcher 1");
    let d2 = Dispatcher::new(s2.clone(), q2, config()).expect("dispatcher 2");
    let u = user(&s1, "ada").await;

    // Part 1: a replica is killed while it runs jobs.
    let h1 = d1.spawn().expect("spawn 1");
    let mut held = Vec::new();
    for _ in 0..6 {
        let (t, j) = task(&s1, &u, shell("sleep 1")).await;
        d1.task_created(&t, &j).await.expect("enqueue");
        held.push(j.id);
    }
    eventually("six jobs running on replica 1", || async {
        (w.active() == 6).then_some(())
    })
    .await;
    drop(h1); // as abrupt as a kill: its calls are dropped, its leases left to expire
    eventually("the node to see six calls dropped", || async {
        (w.dropped().len() == 6).then_some(())
    })
    .await;
    w.release_all();
    let h2 = d2.spawn().expect("spawn 2");
    for id in &held {
        let j = wait_ended(&s2, *id).await;
        assert_eq!(j.status, JobStatus::Completed);
        assert_eq!(result_of(&j)["stdout"], "slept\n");
    }
    for id in &held {
        let id = id.to_string();
        let answered = w.answered().iter().filter(|a| **a == id).count();
        assert_eq!(answered, 1, "job {id} answered once");
    }

    // Part 2: both replicas take 100 jobs; each runs once.
    let h1 = d1.spawn().expect("spawn 1 again");
    let before = w.calls().len();
    let mut jobs = Vec::new();
    for i in 0..100 {
        let (t, j) = task(&s1, &u, shell(&format!("echo n{i}"))).await;
        let d = if i % 2 == 0 { &d1 } else { &d2 };
        d.task_created(&t, &j).await.expect("enqueue");
        jobs.push((i, j.id));
    }
    for (i, id) in &jobs {
        let j = wait_ended(&s1, *id).await;
        assert_eq!(j.status, JobStatus::Completed);
        assert_eq!(result_of(&j)["stdout"], format!("n{i}\n"));
    }
    let calls = w.calls();
    assert_eq!(calls.len() - before, 100);
    let counts = w.call_counts();
    for (_, id) in &jobs {
        assert_eq!(counts.get(&id.to_string()), Some(&1));
    }
    let a = h1.shutdown().await;
    let b = h2.shutdown().await;
    assert_eq!(a.completed + b.completed, 106, "{a:?} {b:?}");
    pg::drop(db).await;
}
