//! End-to-end load: one `cynode-orchestrator serve` on PostgreSQL and two
//! `cynode-worker` processes on the local Podman socket, all on this machine, run N
//! trivial sandbox jobs (`true`) submitted through the user gateway.
//!
//! Measured, per task (every timestamp comes from the same host clock):
//!
//! - `created`   core task row inserted by `POST /v1/tasks` (tasks.created_at);
//! - `dispatched` the dispatcher marked the job running and calls the Worker API
//!   (jobs.started_at);
//! - `c_start` / `c_end` the container started / exited, as the worker reports them in
//!   its result (RunJobResponse started_at / ended_at, stored in jobs.result);
//! - `ingested` the orchestrator stored the worker's result (jobs.ended_at);
//! - `done`      the task became terminal (tasks.updated_at).
//!
//! Figures: jobs/s end to end (first submit -> last completion), latency = done -
//! created, in-container = c_end - c_start, orchestrator share = latency - in-container,
//! split into queue wait (dispatched - created), sandbox overhead (ingested -
//! dispatched - in-container: Worker API call, container create/start/remove, result
//! upload) and completion (done - ingested). After the load run a short serial pass
//! (one job at a time) shows the same split without queueing.
//!
//! `cargo bench -p cynode-benches --bench e2e -- --pg-url URL --docker-host URL
//!  --image IMAGE --bin-dir DIR [-n N] [-c SUBMIT_CONCURRENCY] [--serial S]
//!  [--warmup W] [--max-concurrency M] [--log-dir DIR] [--timeout SECS]`
//! (`--pg-url` is a maintenance database of a server on which the benchmark may create
//! and drop a database). `benches/e2e.sh` builds the binaries and passes these.
//! No assertions on timing: the benchmark only reports.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use uuid::Uuid;

#[derive(Clone, Debug)]
struct Args {
    pg_url: String,
    docker_host: String,
    image: String,
    bin_dir: PathBuf,
    n: usize,
    c: usize,
    serial: usize,
    warmup: usize,
    workers: usize,
    max_concurrency: Option<usize>,
    log_dir: Option<PathBuf>,
    timeout: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut pg_url = None;
    let mut docker_host = None;
    let mut image = None;
    let mut bin_dir = None;
    let mut a = Args {
        pg_url: String::new(),
        docker_host: String::new(),
        image: String::new(),
        bin_dir: PathBuf::new(),
        n: 1000,
        c: 32,
        serial: 20,
        warmup: 8,
        workers: 2,
        max_concurrency: None,
        log_dir: None,
        timeout: 1800,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|_| format!("bad number '{v}'"));
        match flag.as_str() {
            "--pg-url" => pg_url = Some(val()?),
            "--docker-host" => docker_host = Some(val()?),
            "--image" => image = Some(val()?),
            "--bin-dir" => bin_dir = Some(PathBuf::from(val()?)),
            "-n" => a.n = num(val()?)?,
            "-c" => a.c = num(val()?)?.max(1),
            "--serial" => a.serial = num(val()?)?,
            "--warmup" => a.warmup = num(val()?)?,
            "--workers" => a.workers = num(val()?)?.max(1),
            "--max-concurrency" => a.max_concurrency = Some(num(val()?)?.max(1)),
            "--log-dir" => a.log_dir = Some(PathBuf::from(val()?)),
            "--timeout" => a.timeout = num(val()?)? as u64,
            "--bench" => {}
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    a.pg_url = pg_url.ok_or("--pg-url is required")?;
    a.docker_host = docker_host.ok_or("--docker-host is required")?;
    a.image = image.ok_or("--image is required")?;
    a.bin_dir = bin_dir.ok_or("--bin-dir is required")?;
    Ok(a)
}

use cynode_benches::{BoxErr, ScratchDb};
type Res<T> = Result<T, BoxErr>;

fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A child process stopped with SIGTERM (then SIGKILL) when dropped or stopped.
struct Proc {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, String)],
        log: PathBuf,
    ) -> Res<Proc> {
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(Proc {
            name: name.into(),
            child,
            log,
        })
    }

    fn check_alive(&mut self) -> Res<()> {
        if let Some(st) = self.child.try_wait()? {
            return Err(format!(
                "{} exited ({st}); log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            )
            .into());
        }
        Ok(())
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

struct Stack {
    gw: String,
    orch: Proc,
    workers: Vec<Proc>,
    slugs: Vec<String>,
}

async fn start_stack(a: &Args, db_url: &str, pool: &PgPool, dir: &Path) -> Res<Stack> {
    let gw_port = free_port()?;
    let cp_port = free_port()?;
    let gw = format!("http://127.0.0.1:{gw_port}");
    let psk = Uuid::new_v4().simple().to_string();
    let orch = Proc::spawn(
        "orchestrator",
        &a.bin_dir.join("cynode-orchestrator"),
        &["serve"],
        &[
            ("DATABASE_URL", db_url.to_string()),
            ("CYNODE_DATA_DIR", dir.join("orch").display().to_string()),
            (
                "JWT_SECRET",
                format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
            ),
            ("NODE_REGISTRATION_PSK", psk.clone()),
            ("BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
            ("USER_GATEWAY_LISTEN_ADDR", format!("127.0.0.1:{gw_port}")),
            ("CONTROL_PLANE_LISTEN_ADDR", format!("127.0.0.1:{cp_port}")),
            (
                "ORCHESTRATOR_PUBLIC_URL",
                format!("http://127.0.0.1:{cp_port}"),
            ),
            ("API_EGRESS_DISABLED", "true".into()),
            ("RUST_LOG", "info".into()),
        ],
        dir.join("orchestrator.log"),
    )?;
    let mut stack = Stack {
        gw: gw.clone(),
        orch,
        workers: Vec::new(),
        slugs: Vec::new(),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        stack.orch.check_alive()?;
        if let Ok(r) = http.get(format!("{gw}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        if Instant::now() > deadline {
            return Err("the orchestrator's gateway did not come up within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run = std::process::id();
    for i in 1..=a.workers {
        let port = free_port()?;
        let slug = format!("loadbench-{run}-{i}");
        let state = dir.join(format!("worker{i}"));
        std::fs::create_dir_all(&state)?;
        let mut env = vec![
            ("ORCHESTRATOR_URL", format!("http://127.0.0.1:{cp_port}")),
            ("NODE_REGISTRATION_PSK", psk.clone()),
            ("NODE_SLUG", slug.clone()),
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("WORKER_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("CONTAINER_HOST", a.docker_host.clone()),
            ("SANDBOX_DEFAULT_IMAGE", a.image.clone()),
            ("SANDBOX_PULL_POLICY", "never".into()),
            ("CYNODE_STATE_DIR", state.display().to_string()),
            ("RUST_LOG", "info".into()),
        ];
        if let Some(m) = a.max_concurrency {
            env.push(("SANDBOX_MAX_CONCURRENCY", m.to_string()));
        }
        let p = Proc::spawn(
            &format!("worker {slug}"),
            &a.bin_dir.join("cynode-worker"),
            &[],
            &env,
            dir.join(format!("worker{i}.log")),
        )?;
        stack.workers.push(p);
        stack.slugs.push(slug);
    }
    // Registered and configured: the node acknowledged its configuration.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        stack.orch.check_alive()?;
        for w in &mut stack.workers {
            w.check_alive()?;
        }
        let ready: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM nodes WHERE node_slug = ANY($1) \
             AND config_ack_status = 'applied' AND status = 'active'",
        )
        .bind(&stack.slugs)
        .fetch_one(pool)
        .await?;
        if ready as usize == stack.slugs.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {ready} of {} workers registered within 180 s",
                stack.slugs.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(stack)
}

const ADMIN_PASSWORD: &str = "loadbench admin password";

async fn login(http: &reqwest::Client, gw: &str) -> Res<String> {
    let r = http
        .post(format!("{gw}/v1/auth/login"))
        .json(&json!({"handle": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(format!("login: {}", r.status()).into());
    }
    let v: Value = r.json().await?;
    v["access_token"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| "login: no access_token".into())
}

/// Submits `n` tasks with `c` requests in flight; returns the ids of those accepted
/// and the number refused or failed.
async fn submit(
    http: &reqwest::Client,
    gw: &str,
    token: &str,
    label: &str,
    n: usize,
    c: usize,
) -> (Vec<Uuid>, usize) {
    let sem = Arc::new(tokio::sync::Semaphore::new(c));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let http = http.clone();
        let url = format!("{gw}/v1/tasks");
        let token = token.to_string();
        let name = format!("{label}-{i}");
        set.spawn(async move {
            let _permit = permit;
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"prompt": "true", "input_mode": "commands", "task_name": name}))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["id"].as_str().and_then(|s| Uuid::parse_str(s).ok())),
                Ok(r) => {
                    eprintln!("[e2e] submit refused: {}", r.status());
                    None
                }
                Err(e) => {
                    eprintln!("[e2e] submit failed: {e}");
                    None
                }
            }
        });
    }
    let mut ids = Vec::with_capacity(n);
    let mut failed = 0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Some(id)) => ids.push(id),
            _ => failed += 1,
        }
    }
    (ids, failed)
}

/// Waits until every task in `ids` is terminal; fails when nothing finishes for
/// `stall` or the whole wait exceeds `timeout`.
async fn wait_terminal(
    pool: &PgPool,
    stack: &mut Stack,
    ids: &[Uuid],
    timeout: Duration,
) -> Res<()> {
    let start = Instant::now();
    let stall = Duration::from_secs(180);
    let mut last = (0i64, Instant::now());
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tasks WHERE id = ANY($1) AND closed")
                .bind(ids)
                .fetch_one(pool)
                .await?;
        if done as usize >= ids.len() {
            return Ok(());
        }
        if done != last.0 {
            last = (done, Instant::now());
        }
        stack.orch.check_alive()?;
        for w in &mut stack.workers {
            w.check_alive()?;
        }
        if last.1.elapsed() > stall || start.elapsed() > timeout {
            return Err(format!(
                "{done} of {} tasks terminal after {:.0} s (no progress for {:.0} s)",
                ids.len(),
                start.elapsed().as_secs_f64(),
                last.1.elapsed().as_secs_f64()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One task's timestamps.
#[derive(Debug)]
struct Sample {
    task_status: String,
    jobs: i64,
    node: Option<Uuid>,
    created: DateTime<Utc>,
    done: DateTime<Utc>,
    dispatched: Option<DateTime<Utc>>,
    ingested: Option<DateTime<Utc>>,
    c_start: Option<DateTime<Utc>>,
    c_end: Option<DateTime<Utc>>,
}

async fn collect(pool: &PgPool, ids: &[Uuid]) -> Res<Vec<Sample>> {
    let rows = sqlx::query(
        "SELECT t.status, t.created_at, t.updated_at, \
                (SELECT count(*) FROM jobs x WHERE x.task_id = t.id) AS jobs, \
                j.node_id, j.started_at, j.ended_at, j.result \
         FROM tasks t LEFT JOIN LATERAL \
              (SELECT * FROM jobs WHERE task_id = t.id ORDER BY created_at DESC, id LIMIT 1) j \
              ON true \
         WHERE t.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let ts = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let result: Option<Value> = r.try_get("result")?;
        let result = result.unwrap_or(Value::Null);
        out.push(Sample {
            task_status: r.try_get("status")?,
            jobs: r.try_get("jobs")?,
            node: r.try_get("node_id")?,
            created: r.try_get("created_at")?,
            done: r.try_get("updated_at")?,
            dispatched: r.try_get("started_at")?,
            ingested: r.try_get("ended_at")?,
            c_start: ts(&result, "started_at"),
            c_end: ts(&result, "ended_at"),
        });
    }
    Ok(out)
}

fn ms(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The per-task breakdown (milliseconds) of the completed tasks with full timestamps.
#[derive(Default)]
struct Breakdown {
    latency: Vec<f64>,
    in_container: Vec<f64>,
    share: Vec<f64>,
    queue: Vec<f64>,
    sandbox: Vec<f64>,
    completion: Vec<f64>,
}

fn breakdown(samples: &[Sample]) -> Breakdown {
    let mut b = Breakdown::default();
    for s in samples.iter().filter(|s| s.task_status == "completed") {
        let (Some(d), Some(i), Some(cs), Some(ce)) = (s.dispatched, s.ingested, s.c_start, s.c_end)
        else {
            continue;
        };
        let lat = ms(s.created, s.done);
        let inc = ms(cs, ce);
        b.latency.push(lat);
        b.in_container.push(inc);
        b.share.push(lat - inc);
        b.queue.push(ms(s.created, d));
        b.sandbox.push(ms(d, i) - inc);
        b.completion.push(ms(i, s.done));
    }
    b
}

fn table(title: &str, b: &mut Breakdown) {
    println!("{title} ({} tasks, ms)", b.latency.len());
    println!("  {:<44} {:>9} {:>9} {:>9}", "", "p50", "p99", "max");
    let row = |name: &str, v: &mut Vec<f64>| {
        let (p50, p99, max) = (pct(v, 50.0), pct(v, 99.0), pct(v, 100.0));
        println!("  {name:<44} {p50:>9.1} {p99:>9.1} {max:>9.1}");
    };
    row("latency (created -> completed)", &mut b.latency);
    row(
        "in-container (container start -> exit)",
        &mut b.in_container,
    );
    row("orchestrator share (latency - in-container)", &mut b.share);
    row("  queue wait (created -> dispatched)", &mut b.queue);
    row(
        "  sandbox overhead (dispatch -> result - in-c.)",
        &mut b.sandbox,
    );
    row(
        "  completion (result stored -> task terminal)",
        &mut b.completion,
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run(a: Args) -> Res<()> {
    let db = ScratchDb::create(&a.pg_url, "cynode_e2e").await?;
    let tmp = std::env::temp_dir().join(format!("cynode-e2e-{}", std::process::id()));
    let dir = a.log_dir.clone().unwrap_or(tmp);
    std::fs::create_dir_all(&dir)?;
    let result = run_on(&a, &db.url, &dir).await;
    db.drop_now().await;
    if result.is_err() {
        eprintln!("[e2e] logs kept in {}", dir.display());
    } else if a.log_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_on(a: &Args, db_url: &str, dir: &Path) -> Res<()> {
    // The orchestrator migrates the database at start; the benchmark only reads it.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(db_url)
        .await?;
    eprintln!("[e2e] starting the orchestrator and {} workers", a.workers);
    let mut stack = start_stack(a, db_url, &pool, dir).await?;
    let outcome = measure(a, &pool, &mut stack).await;
    eprintln!("[e2e] stopping");
    for w in stack.workers.drain(..) {
        w.stop().await;
    }
    stack.orch.stop().await;
    pool.close().await;
    outcome
}

async fn measure(a: &Args, pool: &PgPool, stack: &mut Stack) -> Res<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(a.c)
        .build()?;
    let token = login(&http, &stack.gw).await?;
    let timeout = Duration::from_secs(a.timeout);

    if a.warmup > 0 {
        eprintln!("[e2e] warm-up: {} jobs", a.warmup);
        let (ids, _) = submit(&http, &stack.gw, &token, "warm", a.warmup, a.c).await;
        wait_terminal(pool, stack, &ids, timeout).await?;
    }

    eprintln!(
        "[e2e] load: {} jobs, {} submits in flight (load average {})",
        a.n,
        a.c,
        loadavg()
    );
    let load_before = loadavg();
    let first_submit = Utc::now();
    let t0 = Instant::now();
    let (ids, submit_failed) = submit(&http, &stack.gw, &token, "load", a.n, a.c).await;
    let submit_secs = t0.elapsed().as_secs_f64();
    let wait = wait_terminal(pool, stack, &ids, timeout).await;
    let load_after = loadavg();
    if let Err(e) = &wait {
        eprintln!("[e2e] {e}");
    }
    let samples = collect(pool, &ids).await?;
    let completed = samples
        .iter()
        .filter(|s| s.task_status == "completed")
        .count();
    let not_completed = samples.len() - completed;
    let retried = samples.iter().filter(|s| s.jobs > 1).count();
    let last_done = samples
        .iter()
        .filter(|s| s.task_status == "completed")
        .map(|s| s.done)
        .max()
        .unwrap_or(first_submit);
    let wall = ms(first_submit, last_done) / 1000.0;
    let rate = if wall > 0.0 {
        completed as f64 / wall
    } else {
        0.0
    };
    let mut per_node: HashMap<Option<Uuid>, usize> = HashMap::new();
    for s in &samples {
        *per_node.entry(s.node).or_default() += 1;
    }
    let mut split: Vec<usize> = per_node.values().copied().collect();
    split.sort_unstable_by(|x, y| y.cmp(x));
    let mut b = breakdown(&samples);
    let failures = submit_failed + not_completed;

    let mut serial = None;
    if a.serial > 0 && wait.is_ok() {
        eprintln!("[e2e] serial: {} jobs, one at a time", a.serial);
        let mut sids = Vec::new();
        for i in 0..a.serial {
            let (ids, _) = submit(&http, &stack.gw, &token, &format!("serial{i}"), 1, 1).await;
            wait_terminal(pool, stack, &ids, timeout).await?;
            sids.extend(ids);
        }
        let s = collect(pool, &sids).await?;
        serial = Some(breakdown(&s));
    }

    let p = |v: &mut Vec<f64>, q: f64| pct(v, q);
    let mut summary = format!(
        "cynode e2e: {completed}/{n} trivial sandbox jobs, 1 orchestrator (PostgreSQL) + {w} workers: \
         {rate:.1} jobs/s end to end ({wall:.1} s), latency p50 {l50:.0} ms p99 {l99:.0} ms, \
         in-container p50 {ic:.0} ms, orchestrator share p50 {s50:.0} ms p99 {s99:.0} ms",
        n = a.n,
        w = a.workers,
        l50 = p(&mut b.latency, 50.0),
        l99 = p(&mut b.latency, 99.0),
        ic = p(&mut b.in_container, 50.0),
        s50 = p(&mut b.share, 50.0),
        s99 = p(&mut b.share, 99.0),
    );
    if let Some(s) = serial.as_mut() {
        summary.push_str(&format!(
            " (unloaded: latency p50 {:.0} ms, share p50 {:.0} ms, sandbox overhead p50 {:.0} ms)",
            p(&mut s.latency, 50.0),
            p(&mut s.share, 50.0),
            p(&mut s.sandbox, 50.0)
        ));
    }
    summary.push_str(&format!(
        ", failures {failures}, load average {load_before} -> {load_after}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    println!("{summary}");
    println!(
        "submit: {} accepted in {submit_secs:.1} s ({:.0}/s, {} in flight), {submit_failed} refused; \
         not completed {not_completed}; retried {retried}; jobs per worker {split:?}",
        ids.len(),
        ids.len() as f64 / submit_secs.max(1e-9),
        a.c
    );
    table("under load", &mut b);
    if let Some(s) = serial.as_mut() {
        table("serial, one job at a time", s);
    }
    let distinct: HashSet<_> = samples.iter().map(|s| s.task_status.clone()).collect();
    if distinct.len() > 1 || not_completed > 0 {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in &samples {
            *counts.entry(s.task_status.as_str()).or_default() += 1;
        }
        println!("task states: {counts:?}");
    }
    wait
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("e2e: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(a).await {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}
