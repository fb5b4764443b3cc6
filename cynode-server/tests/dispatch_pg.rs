//! The dispatcher on PostgreSQL (`CYNODE_TEST_PG_URL`; each test creates its own
//! database): a job end to end, two replicas sharing 100 jobs with every job run once,
//! and a replica killed mid-run whose jobs are taken over and complete once.

mod dispatch_support;

use std::sync::Arc;
use std::time::Duration;

use cynode_core::model::JobStatus;
use cynode_core::store::{PgStore, Store};
use cynode_sched::{PgQueue, PgQueueConfig, QueueStore};
use cynode_server::dispatch::{DispatchConfig, Dispatcher};
use cynode_server::gateway::TaskDispatcher;
use dispatch_support::*;
use sqlx::{Connection, PgConnection};

const TOKEN: &str = "worker-token-pg";

fn service_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            if std::env::var("CYNODE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!("{name} is not set, but CYNODE_REQUIRE_SERVICES=1 requires it");
            }
            eprintln!("skipped: {name} not set");
            None
        }
    }
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{db}?{q}"),
        None => format!("{host}/{db}"),
    }
}

/// A fresh database; dropped when the value is.
struct Db {
    admin_url: String,
    name: String,
    url: String,
}

impl Db {
    async fn create() -> Option<Db> {
        let admin_url = service_var("CYNODE_TEST_PG_URL")?;
        let name = format!("cynode_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to CYNODE_TEST_PG_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create database");
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        Some(Db {
            admin_url,
            name,
            url,
        })
    }

    /// One replica's view: its own pools for the core store and the queue.
    async fn replica(&self) -> (Arc<dyn Store>, Arc<dyn QueueStore>) {
        let store = PgStore::connect(&self.url, 5).await.expect("connect store");
        let queue = PgQueue::connect(&PgQueueConfig::new(self.url.clone()))
            .await
            .expect("connect queue");
        (Arc::new(store), Arc::new(queue))
    }

    async fn drop_db(self) {
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .expect("connect admin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("drop database");
        admin.close().await.ok();
    }
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
    let Some(db) = Db::create().await else { return };
    let (store, queue) = db.replica().await;
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
    h.shutdown().await;
    db.drop_db().await;
}

#[tokio::test]
async fn two_replicas_share_jobs_and_a_killed_replica_loses_nothing() {
    let Some(db) = Db::create().await else { return };
    let (s1, q1) = db.replica().await;
    let (s2, q2) = db.replica().await;
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
    db.drop_db().await;
}
