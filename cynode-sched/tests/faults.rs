//! Correctness under faults on real PostgreSQL: replicas racing, a job holder killed
//! with SIGKILL, a database server crash-restart, and a 10,000-job run with random
//! kills. Every outcome is counted in the database: a trigger writes one row per
//! transition to `completed` in the same transaction as the fenced completion.
//!
//! Child processes are this test binary run again with `CYNODE_SCHED_CHILD` set (see
//! [`child_entry`]).

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use cynode_sched::*;
use cynode_testkit::env::TestDatabase;
use rand::Rng;
use serde_json::json;
use sqlx::Connection;

const CHILD_ENV: &str = "CYNODE_SCHED_CHILD";

/// Short leases so expiry-driven recovery happens within a second or two.
fn fault_config(worker_id: &str, queue: &str, concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        worker_id: worker_id.to_string(),
        queues: vec![queue.to_string()],
        concurrency,
        prefetch: concurrency,
        lease_ttl: Duration::from_millis(1000),
        heartbeat_interval: Duration::from_millis(250),
        poll_interval: Duration::from_millis(100),
        reap_interval: Duration::from_millis(200),
        retry: RetryPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            ..RetryPolicy::default()
        },
        shutdown_grace: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

/// Adds the completion ledger: one row per transition to `completed`, written by the
/// database in the completing transaction, plus a table of handler executions.
async fn install_ledger(url: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE completions (job_id uuid NOT NULL, attempt int NOT NULL, worker_id text);
         CREATE TABLE executions (job_id uuid NOT NULL, worker_id text NOT NULL);
         CREATE FUNCTION record_completion() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO completions VALUES (NEW.id, NEW.attempt, NEW.worker_id);
             RETURN NEW;
         END $$;
         CREATE TRIGGER sched_completion AFTER UPDATE OF state ON sched_jobs
             FOR EACH ROW WHEN (NEW.state = 'completed' AND OLD.state <> 'completed')
             EXECUTE FUNCTION record_completion();",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.ok();
}

/// (completion rows, distinct jobs among them).
async fn ledger(url: &str) -> (i64, i64) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let r: (i64, i64) = sqlx::query_as("SELECT count(*), count(DISTINCT job_id) FROM completions")
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.ok();
    r
}

async fn executions(url: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.ok();
    n
}

async fn queue(url: &str) -> Arc<dyn QueueStore> {
    Arc::new(
        PgQueue::connect(&PgQueueConfig {
            max_connections: 5,
            ..PgQueueConfig::new(url)
        })
        .await
        .unwrap(),
    )
}

// ------------------------------------------------------------------ child processes

/// Kills its child process (SIGKILL) when dropped, so a failing test leaves none behind.
struct Proc(Child);

impl Proc {
    fn spawn(mode: &str, url: &str, worker_id: &str) -> Self {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args([
                "child_entry",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode)
            .env("CYNODE_SCHED_CHILD_URL", url)
            .env("CYNODE_SCHED_CHILD_ID", worker_id)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// SIGKILL and reap.
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The child side: runs only when started by a test with `CYNODE_SCHED_CHILD` set.
#[test]
#[ignore = "run as a child process by the fault tests"]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = std::env::var("CYNODE_SCHED_CHILD_URL").unwrap();
    let id = std::env::var("CYNODE_SCHED_CHILD_ID").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let q = queue(&url).await;
        let parent = std::os::unix::process::parent_id();
        let w = match mode.as_str() {
            // Takes the job and never finishes it: the parent kills this process.
            "hold" => Worker::new(q.clone(), fault_config(&id, "hold", 1))
                .handle("hold", |_ctx: JobContext| async move {
                    std::future::pending::<()>().await;
                    Ok(None)
                })
                .start()
                .unwrap(),
            // Runs stress jobs, recording each execution, until killed or done.
            "consumer" => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect(&url)
                    .await
                    .unwrap();
                let me = id.clone();
                Worker::new(q.clone(), fault_config(&id, "stress", 4))
                    .handle("stress", move |ctx: JobContext| {
                        let pool = pool.clone();
                        let me = me.clone();
                        async move {
                            sqlx::query("INSERT INTO executions VALUES ($1, $2)")
                                .bind(ctx.id().0)
                                .bind(&me)
                                .execute(&pool)
                                .await?;
                            let ms = ctx.payload()["ms"].as_u64().unwrap_or(5);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            Ok(None)
                        }
                    })
                    .start()
                    .unwrap()
            }
            other => panic!("unknown child mode {other}"),
        };
        // Exit when the parent is gone or the work is done.
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if std::os::unix::process::parent_id() != parent {
                break;
            }
            if let Ok(s) = q.stats(Some("stress")).await
                && mode == "consumer"
                && s.completed > 0
                && s.queued + s.running == 0
            {
                break;
            }
        }
        w.shutdown().await;
    });
}

// ------------------------------------------------------------------ the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_run_one_job_twice_at_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = queue(&db.url).await;
    let b = queue(&db.url).await;
    install_ledger(&db.url).await;
    let n = 600;
    a.enqueue_many(
        (0..n)
            .map(|i| NewJob::new("race", json!(i)).queue("race"))
            .collect(),
    )
    .await
    .unwrap();
    let running: Arc<Mutex<HashSet<JobId>>> = Arc::default();
    let overlaps = Arc::new(AtomicU64::new(0));
    let runs = Arc::new(AtomicU64::new(0));
    let make = |q: Arc<dyn QueueStore>, name: &str| {
        let (running, overlaps, runs) = (running.clone(), overlaps.clone(), runs.clone());
        Worker::new(q, fault_config(name, "race", 4))
            .handle("race", move |ctx: JobContext| {
                let (running, overlaps, runs) = (running.clone(), overlaps.clone(), runs.clone());
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    if !running.lock().unwrap().insert(ctx.id()) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    let ms = rand::rng().random_range(0..4);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    running.lock().unwrap().remove(&ctx.id());
                    Ok(None)
                }
            })
            .start()
            .unwrap()
    };
    let wa = make(a.clone(), "replica-a");
    let wb = make(b.clone(), "replica-b");
    let a2 = a.clone();
    eventually("all jobs complete", || {
        let a2 = a2.clone();
        async move { a2.stats(Some("race")).await.unwrap().completed == n as u64 }
    })
    .await;
    let (sa, sb) = (wa.shutdown().await, wb.shutdown().await);
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "a job ran on two replicas at once"
    );
    assert_eq!(runs.load(Ordering::SeqCst), n as u64, "each job ran once");
    assert_eq!(sa.completed + sb.completed, n as u64);
    assert!(
        sa.completed > 0 && sb.completed > 0,
        "both replicas took work: {sa:?} {sb:?}"
    );
    assert_eq!(ledger(&db.url).await, (n as i64, n as i64));
    let _ = db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_leads_to_exactly_one_rerun_after_lease_expiry() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let q = queue(&db.url).await;
    install_ledger(&db.url).await;
    let id = q
        .enqueue(NewJob::new("hold", json!({})).queue("hold"))
        .await
        .unwrap()
        .id;
    let mut child = Proc::spawn("hold", &db.url, "child-holder");
    let q2 = q.clone();
    eventually("the child holds the job", || {
        let q2 = q2.clone();
        async move {
            let j = q2.get(id).await.unwrap();
            j.state == JobState::Running && j.worker_id.as_deref() == Some("child-holder")
        }
    })
    .await;
    child.kill9();
    let held = q.get(id).await.unwrap();
    assert_eq!(held.attempt, 1);

    let reruns = Arc::new(AtomicU64::new(0));
    let r2 = reruns.clone();
    let w = Worker::new(q.clone(), fault_config("parent", "hold", 2))
        .handle("hold", move |_ctx: JobContext| {
            let r2 = r2.clone();
            async move {
                r2.fetch_add(1, Ordering::SeqCst);
                Ok(Some(json!("rerun")))
            }
        })
        .start()
        .unwrap();
    let q2 = q.clone();
    eventually("the job completes", || {
        let q2 = q2.clone();
        async move { q2.get(id).await.unwrap().state == JobState::Completed }
    })
    .await;
    // Give any duplicate a chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    w.shutdown().await;
    let j = q.get(id).await.unwrap();
    assert_eq!(j.attempt, 2, "the killed attempt counted, then one re-run");
    assert_eq!(j.worker_id.as_deref(), Some("parent"));
    assert!(
        j.last_error.unwrap().contains("lease expired"),
        "re-queued by lease expiry"
    );
    assert_eq!(reruns.load(Ordering::SeqCst), 1);
    assert_eq!(ledger(&db.url).await, (1, 1));
    let _ = db.drop_db().await;
}

/// A private PostgreSQL server (so restarting it disturbs no other test).
struct PrivatePg {
    bin: std::path::PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

impl PrivatePg {
    fn as_pgrun(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let bin = self.bin.join(tool);
        let mut cmd = if nix_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "pgrun", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        cmd.args(args).output().unwrap()
    }

    fn start() -> Option<Self> {
        let bin = std::path::PathBuf::from(
            std::env::var("CYNODE_TEST_PG_BIN")
                .unwrap_or_else(|_| "/opt/cynode-pg/pgserver/pginstall/bin".into()),
        );
        if !bin.join("pg_ctl").exists() {
            assert!(
                std::env::var("CYNODE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "no PostgreSQL binaries at {} (set CYNODE_TEST_PG_BIN)",
                bin.display()
            );
            eprintln!("skipped: no PostgreSQL binaries at {}", bin.display());
            return None;
        }
        let data = tempfile::Builder::new()
            .prefix("cynode-sched-pg")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if nix_is_root() {
            let st = Command::new("chown")
                .args(["-R", "pgrun"])
                .arg(data.path())
                .status()
                .unwrap();
            assert!(st.success(), "chown the data directory to pgrun");
        }
        let pg = Self { bin, data, port };
        let dir = pg.data.path().join("d");
        let out = pg.as_pgrun(
            "initdb",
            &[
                "-D",
                dir.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.ctl("start");
        Some(pg)
    }

    fn ctl(&self, action: &str) {
        let dir = self.data.path().join("d");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            dir.display()
        );
        let log = dir.join("log");
        let mut args = vec![
            "-D",
            dir.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
        ];
        if action == "restart" {
            args.extend(["-m", "immediate"]);
        }
        args.extend(["-o", &opts, action]);
        let out = self.as_pgrun("pg_ctl", &args);
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let dir = self.data.path().join("d");
        let _ = self.as_pgrun(
            "pg_ctl",
            &["-D", dir.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_restart_loses_no_acknowledged_job() {
    if cynode_testkit::service_var("CYNODE_TEST_PG_URL").is_none() {
        return;
    }
    let Some(server) = PrivatePg::start() else {
        return;
    };
    let server = Arc::new(server);
    let url = server.url();
    let q = queue(&url).await;
    install_ledger(&url).await;
    let acked: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let failures = Arc::new(AtomicU64::new(0));
    let done = flag();
    // Producer: enqueue one job at a time; only an Ok counts as acknowledged.
    let producer = {
        let (q, acked, failures, done) = (q.clone(), acked.clone(), failures.clone(), done.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !done.load(Ordering::SeqCst) {
                match q
                    .enqueue(NewJob::new("stress", json!({"i": i, "ms": 0})).queue("stress"))
                    .await
                {
                    Ok(e) => acked.lock().unwrap().push(e.id),
                    Err(e) => {
                        assert!(e.is_retryable(), "a lost server is retryable: {e:?}");
                        failures.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                i += 1;
            }
        })
    };
    let w = Worker::new(q.clone(), fault_config("survivor", "stress", 4))
        .handle("stress", |_ctx: JobContext| async move { Ok(None) })
        .start()
        .unwrap();
    let a2 = acked.clone();
    eventually("300 jobs acknowledged", || {
        let a2 = a2.clone();
        async move { a2.lock().unwrap().len() >= 300 }
    })
    .await;
    // Crash the server (immediate shutdown: no checkpoint, WAL recovery on start).
    let before = acked.lock().unwrap().len();
    let s2 = server.clone();
    tokio::task::spawn_blocking(move || s2.ctl("restart"))
        .await
        .unwrap();
    let a2 = acked.clone();
    eventually("300 more jobs acknowledged after the restart", || {
        let a2 = a2.clone();
        async move { a2.lock().unwrap().len() >= before + 300 }
    })
    .await;
    done.store(true, Ordering::SeqCst);
    producer.await.unwrap();
    let ids: Vec<JobId> = acked.lock().unwrap().clone();
    // Every acknowledged job exists and completes exactly once.
    let q2 = q.clone();
    let ids2 = ids.clone();
    eventually("every acknowledged job completes", || {
        let (q2, ids2) = (q2.clone(), ids2.clone());
        async move {
            for id in ids2.iter().rev().take(50) {
                if q2
                    .get(*id)
                    .await
                    .map(|j| j.state != JobState::Completed)
                    .unwrap_or(true)
                {
                    return false;
                }
            }
            q2.stats(Some("stress"))
                .await
                .map(|s| s.queued + s.running == 0)
                .unwrap_or(false)
        }
    })
    .await;
    w.shutdown().await;
    for id in &ids {
        let j = q.get(*id).await.expect("an acknowledged job is stored");
        assert_eq!(j.state, JobState::Completed);
    }
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.0).collect();
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT job_id) FROM completions WHERE job_id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        (rows, distinct),
        (ids.len() as i64, ids.len() as i64),
        "each acknowledged job completed once"
    );
    eprintln!(
        "restart: {} acknowledged ({} before the crash), {} enqueue calls failed during it",
        ids.len(),
        before,
        failures.load(Ordering::SeqCst)
    );
}

fn flag() -> Arc<std::sync::atomic::AtomicBool> {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_two_replicas_eight_consumers_random_kills_each_done_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let q = queue(&db.url).await;
    install_ledger(&db.url).await;
    let n: u64 = 10_000;
    for start in (0..n).step_by(2000) {
        q.enqueue_many(
            (start..n.min(start + 2000))
                .map(|i| {
                    NewJob::new("stress", json!({"i": i, "ms": 3}))
                        .queue("stress")
                        .max_attempts(1000)
                })
                .collect(),
        )
        .await
        .unwrap();
    }
    // Two replica processes with four consumers each.
    let mut generation = [0u32; 2];
    let mut procs: Vec<Proc> = (0..2)
        .map(|r| Proc::spawn("consumer", &db.url, &format!("replica-{r}-gen-0")))
        .collect();
    let mut kills = 0;
    let mut rng = rand::rng();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not finish in 300 s"
        );
        let s = q.stats(Some("stress")).await.unwrap();
        if s.completed == n {
            break;
        }
        if kills < 6 && s.completed > 0 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(400..1200))).await;
            let r = rng.random_range(0..2);
            procs[r].kill9();
            kills += 1;
            generation[r] += 1;
            procs[r] = Proc::spawn(
                "consumer",
                &db.url,
                &format!("replica-{r}-gen-{}", generation[r]),
            );
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(procs);
    let s = q.stats(Some("stress")).await.unwrap();
    assert_eq!(
        s,
        QueueStats {
            completed: n,
            ..Default::default()
        }
    );
    let (rows, distinct) = ledger(&db.url).await;
    assert_eq!(
        (rows, distinct),
        (n as i64, n as i64),
        "every job completed exactly once"
    );
    let ran = executions(&db.url).await;
    assert!(ran >= n as i64);
    eprintln!("10k: {kills} kills, {ran} handler executions for {n} jobs (at-least-once delivery)");
    let _ = db.drop_db().await;
}
