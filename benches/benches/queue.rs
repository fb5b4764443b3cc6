//! Queue benchmark, measured the way `../shared/peers/graphile-worker.sh` measures
//! graphile-worker so the figures compare like with like:
//!
//! - throughput: N empty jobs are enqueued in batches of 5000, then a worker with C
//!   handlers runs them; jobs/s = N / (time from the first job start until the last
//!   completion is committed), median of R runs;
//! - latency: with a worker running, jobs are enqueued one at a time at RATE/s for D
//!   seconds; each payload carries its enqueue time, the handler records its start
//!   time (same process, same clock) -> p50/p99 enqueue->start.
//!
//! `cargo bench -p cynode-benches --bench queue -- [--backend all|postgres|sqlite|memory]
//!  [--pg-url URL] [-n N] [-c C] [-r RATE] [-d SECS] [-R REPS] [--prefetch P]`
//! (PostgreSQL needs `--pg-url`, a database the benchmark may fill). One summary line
//! per backend goes to stdout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cynode_sched::{
    JobContext, MemoryQueue, NewJob, PgQueue, PgQueueConfig, QueueStore, SqliteQueue, Worker,
    WorkerConfig,
};
use serde_json::json;

#[derive(Clone, Debug)]
struct Args {
    backends: Vec<String>,
    pg_url: Option<String>,
    n: usize,
    c: usize,
    rate: u32,
    secs: u32,
    reps: usize,
    prefetch: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        backends: vec!["postgres".into(), "sqlite".into(), "memory".into()],
        pg_url: None,
        n: 20_000,
        c: 10,
        rate: 200,
        secs: 10,
        reps: 3,
        prefetch: 500,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|_| format!("bad number '{v}'"));
        match flag.as_str() {
            "--backend" => {
                let v = val()?;
                if v != "all" {
                    a.backends = v.split(',').map(String::from).collect();
                }
            }
            "--pg-url" => a.pg_url = Some(val()?),
            "-n" => a.n = num(val()?)?,
            "-c" => a.c = num(val()?)?,
            "-r" => a.rate = u32::try_from(num(val()?)?).map_err(|e| e.to_string())?,
            "-d" => a.secs = u32::try_from(num(val()?)?).map_err(|e| e.to_string())?,
            "-R" => a.reps = num(val()?)?.max(1),
            "--prefetch" => a.prefetch = num(val()?)?,
            "--bench" => {}
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(a)
}

fn unix_micros() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(0.0)
}

fn config(a: &Args, queue: &str) -> WorkerConfig {
    WorkerConfig {
        queues: vec![queue.to_string()],
        concurrency: a.c,
        prefetch: a.prefetch,
        maintenance: false,
        ..WorkerConfig::default()
    }
}

async fn throughput(q: Arc<dyn QueueStore>, a: &Args, run: usize) -> Result<f64, String> {
    let queue = format!("tp{run}-{}", std::process::id());
    for start in (0..a.n).step_by(5000) {
        let batch: Vec<NewJob> = (start..a.n.min(start + 5000))
            .map(|i| NewJob::new("noop", json!({ "i": i })).queue(&queue))
            .collect();
        q.enqueue_many(batch).await.map_err(|e| e.to_string())?;
    }
    let first: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let f2 = first.clone();
    let w = Worker::new(q.clone(), config(a, &queue))
        .handle("noop", move |_ctx: JobContext| {
            let f2 = f2.clone();
            async move {
                let mut f = f2.lock().unwrap_or_else(|p| p.into_inner());
                if f.is_none() {
                    *f = Some(Instant::now());
                }
                Ok(None)
            }
        })
        .start()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while w.stats().completed < a.n as u64 {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} jobs completed in 300 s",
                w.stats().completed,
                a.n
            ));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let end = Instant::now();
    let started = first
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or(end);
    w.shutdown().await;
    let s = q.stats(Some(&queue)).await.map_err(|e| e.to_string())?;
    if s.completed != a.n as u64 || s.queued + s.running != 0 {
        return Err(format!("queue not drained: {s:?}"));
    }
    let secs = (end - started).as_secs_f64();
    let thr = a.n as f64 / secs;
    eprintln!(
        "[{}] run {run}: {} jobs, first start -> all completed {secs:.3} s = {thr:.0} jobs/s",
        q.backend(),
        a.n
    );
    Ok(thr)
}

async fn latency(q: Arc<dyn QueueStore>, a: &Args) -> Result<(f64, f64, f64, usize), String> {
    let queue = format!("latency-{}", std::process::id());
    let total = (a.rate * a.secs) as usize;
    let lat: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let l2 = lat.clone();
    let mut cfg = config(a, &queue);
    cfg.prefetch = 0;
    let w = Worker::new(q.clone(), cfg)
        .handle("stamp", move |ctx: JobContext| {
            let l2 = l2.clone();
            async move {
                let now = unix_micros();
                let t = ctx.payload()["t"].as_f64().unwrap_or(now);
                l2.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((now - t) / 1000.0);
                Ok(None)
            }
        })
        .start()
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the worker listen
    let start = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let acks: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let mut inflight = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / f64::from(a.rate));
        tokio::time::sleep_until(at.into()).await;
        let q2 = q.clone();
        let queue = queue.clone();
        let s2 = sent.clone();
        let a2 = acks.clone();
        inflight.push(tokio::spawn(async move {
            let t = unix_micros();
            let r = q2
                .enqueue(NewJob::new("stamp", json!({ "t": t })).queue(queue))
                .await;
            a2.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((unix_micros() - t) / 1000.0);
            s2.fetch_add(1, Ordering::Relaxed);
            r.map(|_| ()).map_err(|e| e.to_string())
        }));
    }
    for h in inflight {
        h.await.map_err(|e| e.to_string())??;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while lat.lock().unwrap_or_else(|p| p.into_inner()).len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    w.shutdown().await;
    let mut v = lat.lock().unwrap_or_else(|p| p.into_inner()).clone();
    v.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[i.clamp(1, v.len()) - 1]
    };
    let r = (
        pct(50.0),
        pct(99.0),
        v.last().copied().unwrap_or(f64::NAN),
        v.len(),
    );
    let mut ack = acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ack.sort_by(|x, y| x.total_cmp(y));
    if !ack.is_empty() {
        eprintln!(
            "[{}] enqueue acknowledged after p50={:.2} ms p99={:.2} ms",
            q.backend(),
            ack[ack.len() / 2],
            ack[(ack.len() * 99 / 100).min(ack.len() - 1)]
        );
    }
    eprintln!(
        "[{}] enqueue->start at {}/s over {}/{total} jobs: p50={:.2} ms p99={:.2} ms max={:.2} ms",
        q.backend(),
        a.rate,
        r.3,
        r.0,
        r.1,
        r.2
    );
    Ok(r)
}

async fn bench(q: Arc<dyn QueueStore>, a: &Args) -> Result<String, String> {
    let mut thr = Vec::new();
    for run in 0..a.reps {
        thr.push(throughput(q.clone(), a, run).await?);
    }
    thr.sort_by(|x, y| x.total_cmp(y));
    let median = thr[thr.len() / 2];
    let (p50, p99, max, got) = latency(q.clone(), a).await?;
    Ok(format!(
        "cynode-sched[{}]: throughput_jobs_s={median:.0} p50_ms={p50:.2} p99_ms={p99:.2} max_ms={max:.2} \
         latency_jobs={got} N={} concurrency={} prefetch={} reps={}",
        q.backend(),
        a.n,
        a.c,
        a.prefetch,
        a.reps
    ))
}

#[tokio::main]
async fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("queue bench: {e}");
            std::process::exit(2);
        }
    };
    let mut failed = false;
    for b in &a.backends {
        let store: Result<Arc<dyn QueueStore>, String> = match b.as_str() {
            "memory" => Ok(Arc::new(MemoryQueue::new())),
            "sqlite" => {
                let dir =
                    std::env::temp_dir().join(format!("cynode-queue-bench-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                SqliteQueue::open_path(dir.join("queue.db"))
                    .await
                    .map(|q| Arc::new(q) as Arc<dyn QueueStore>)
                    .map_err(|e| e.to_string())
            }
            "postgres" => match &a.pg_url {
                None => Err("--pg-url is required for the postgres backend".into()),
                Some(url) => PgQueue::connect(&PgQueueConfig::new(url.clone()))
                    .await
                    .map(|q| Arc::new(q) as Arc<dyn QueueStore>)
                    .map_err(|e| e.to_string()),
            },
            other => Err(format!("unknown backend '{other}'")),
        };
        let r = match store {
            Ok(q) => bench(q, &a).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("queue bench [{b}] failed: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
