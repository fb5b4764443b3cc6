//! Storage throughput, PostgreSQL + pgvector and SQLite side by side in one run:
//! task inserts and fetches, and filtered top-k vector search over 100k 384-dim
//! embeddings (with recall against exact search).
//!
//! `benches/storage.sh` starts PostgreSQL and runs this; by hand:
//! `CYNODE_BENCH_PG_URL=postgres://postgres@127.0.0.1:55432/EMPTY_DB cargo bench -p cynode-benches --bench storage`
//! Sizes: `CYNODE_BENCH_TASKS` (default 5000), `CYNODE_BENCH_VECTORS` (default 100000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cynode_core::model::*;
use cynode_core::store::{Store, StoreConfig, open};
use cynode_core::{ProjectId, TaskId};

const DIM: usize = 384;
const QUERIES: usize = 200;
const K: u32 = 10;
const CONCURRENCY: usize = 8;

/// Deterministic xorshift generator, so both backends see identical data.
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    /// Points around 64 cluster centres, like embeddings of related texts.
    fn embedding(&mut self, centres: &[Vec<f32>]) -> Vec<f32> {
        let c = &centres[(self.0 % centres.len() as u64) as usize];
        let v: Vec<f32> = c.iter().map(|x| x + 0.35 * self.next_f32()).collect();
        self.next_f32();
        v
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

struct Figures {
    insert_seq: f64,
    insert_conc: f64,
    fetch_seq: f64,
    fetch_conc: f64,
    vec_load: f64,
    q_p50: f64,
    q_p99: f64,
    qps: f64,
    recall: f64,
}

async fn bench(store: Arc<dyn Store>, tasks: usize, vectors: usize) -> Result<Figures, Box<dyn std::error::Error>> {
    let user = store.create_user(NewUser { handle: "bench".into(), ..Default::default() }).await?;
    let project = store.default_project(user.id).await?;

    // Sequential inserts: one client, one durable commit each.
    let half = tasks / 2;
    let t0 = Instant::now();
    let mut ids: Vec<TaskId> = Vec::with_capacity(tasks);
    for i in 0..half {
        let t = store
            .create_task(NewTask {
                created_by: Some(user.id),
                project_id: Some(project.id),
                name: format!("task-{i}"),
                prompt: Some(format!("benchmark prompt number {i}")),
                metadata: Some(serde_json::json!({"mode": "prompt", "i": i})),
                ..Default::default()
            })
            .await?;
        ids.push(t.id);
    }
    let insert_seq = half as f64 / t0.elapsed().as_secs_f64();

    // Concurrent inserts: CONCURRENCY clients.
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for c in 0..CONCURRENCY {
        let store = store.clone();
        let n = (tasks - half) / CONCURRENCY;
        let (uid, pid) = (user.id, project.id);
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let t = store
                    .create_task(NewTask {
                        created_by: Some(uid),
                        project_id: Some(pid),
                        name: format!("task-c{c}-{i}"),
                        prompt: Some("concurrent".into()),
                        ..Default::default()
                    })
                    .await?;
                out.push(t.id);
            }
            Ok::<_, cynode_core::Error>(out)
        }));
    }
    let mut conc_n = 0;
    for h in handles {
        let v = h.await??;
        conc_n += v.len();
        ids.extend(v);
    }
    let insert_conc = conc_n as f64 / t0.elapsed().as_secs_f64();

    // Fetches by id.
    let t0 = Instant::now();
    for id in &ids {
        store.get_task(*id).await?;
    }
    let fetch_seq = ids.len() as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let ids = Arc::new(ids);
    let mut handles = Vec::new();
    for c in 0..CONCURRENCY {
        let (store, ids) = (store.clone(), ids.clone());
        handles.push(tokio::spawn(async move {
            for id in ids.iter().skip(c).step_by(CONCURRENCY) {
                store.get_task(*id).await?;
            }
            Ok::<_, cynode_core::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let fetch_conc = ids.len() as f64 / t0.elapsed().as_secs_f64();

    // Vector memory: two projects, three namespaces; the query filters to one project and
    // two namespaces, so the index has to honour filters.
    let other = store
        .create_project(NewProject { slug: "bench-other".into(), display_name: "Other".into(), description: None })
        .await?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let centres: Vec<Vec<f32>> = (0..64).map(|_| (0..DIM).map(|_| rng.next_f32()).collect()).collect();
    let namespaces = ["docs", "project_memory", "code_index"];
    // Kept for the exact (brute-force) answers recall is measured against.
    let mut allowed: Vec<(usize, Vec<f32>)> = Vec::new();
    let t0 = Instant::now();
    let mut done = 0;
    while done < vectors {
        let n = 1000.min(vectors - done);
        let batch: Vec<NewVectorItem> = (0..n)
            .map(|i| {
                let g = done + i;
                let embedding = rng.embedding(&centres);
                let (in_project, ns, sens) = (g % 4 != 3, g % 3, g % 4);
                // Mirrors the query filter below: project, namespaces 0..=1, rank <= 2.
                if in_project && ns < 2 && sens <= 2 {
                    allowed.push((g, embedding.clone()));
                }
                NewVectorItem {
                    project_id: if in_project { project.id } else { other.id },
                    namespace: namespaces[ns].into(),
                    sensitivity: Some(Sensitivity::ALL[sens]),
                    source_type: "note".into(),
                    source_ref: Some(format!("doc-{}", g / 10)),
                    chunk_index: (g % 10) as i32,
                    content_text: format!("chunk {g}"),
                    embedding_model: "bench-384".into(),
                    embedding,
                    ..Default::default()
                }
            })
            .collect();
        store.insert_vectors(batch).await?;
        done += n;
        if done % 20_000 == 0 {
            eprintln!("  [{}] loaded {done}/{vectors} vectors", store.backend());
        }
    }
    let vec_load = vectors as f64 / t0.elapsed().as_secs_f64();

    let query = |e: Vec<f32>, k: u32, pid: ProjectId| VectorQuery {
        project_ids: vec![pid],
        namespaces: vec!["docs".into(), "project_memory".into()],
        max_sensitivity: Sensitivity::Confidential,
        embedding_model: "bench-384".into(),
        embedding: e,
        k,
    };
    let mut lat = Vec::with_capacity(QUERIES);
    let mut queries = Vec::with_capacity(QUERIES);
    let t0 = Instant::now();
    for _ in 0..QUERIES {
        let e = rng.embedding(&centres);
        let q0 = Instant::now();
        let hits = store.search_vectors(&query(e.clone(), K, project.id)).await?;
        lat.push(q0.elapsed());
        queries.push((e, hits));
    }
    let qps = QUERIES as f64 / t0.elapsed().as_secs_f64();

    // Recall@K against the exact answer over the same filtered rows.
    let mut found = 0usize;
    for (e, hits) in &queries {
        let mut exact: Vec<(f32, usize)> =
            allowed.iter().map(|(g, v)| (cosine_distance(v, e), *g)).collect();
        exact.select_nth_unstable_by(K as usize - 1, |a, b| a.0.total_cmp(&b.0));
        let truth: std::collections::HashSet<String> =
            exact[..K as usize].iter().map(|(_, g)| format!("chunk {g}")).collect();
        found += hits.iter().filter(|h| truth.contains(&h.item.content_text)).count();
    }
    let recall = found as f64 / (queries.len() * K as usize) as f64;

    Ok(Figures {
        insert_seq,
        insert_conc,
        fetch_seq,
        fetch_conc,
        vec_load,
        q_p50: pct(lat.clone(), 0.5),
        q_p99: pct(lat, 0.99),
        qps,
        recall,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks = env_usize("CYNODE_BENCH_TASKS", 5000);
    let vectors = env_usize("CYNODE_BENCH_VECTORS", 100_000);
    let dir = tempfile_dir()?;
    let mut rows = Vec::new();

    eprintln!("sqlite: {tasks} tasks, {vectors} vectors");
    let sqlite = open(&StoreConfig::Sqlite { path: dir.join("bench.db") }).await?;
    rows.push(("sqlite", bench(sqlite, tasks, vectors).await?));

    match std::env::var("CYNODE_BENCH_PG_URL") {
        Ok(url) => {
            eprintln!("postgres: {tasks} tasks, {vectors} vectors");
            let pg = open(&StoreConfig::Postgres { url, max_connections: 16 }).await?;
            rows.push(("postgres", bench(pg, tasks, vectors).await?));
        }
        Err(_) => eprintln!("postgres: skipped (CYNODE_BENCH_PG_URL not set; benches/storage.sh sets it)"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&rows, tasks, vectors);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("cynode-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[allow(clippy::print_stdout)]
fn print_table(rows: &[(&str, Figures)], tasks: usize, vectors: usize) {
    println!("storage benchmark: {tasks} tasks, {vectors} x {DIM}-dim vectors, {QUERIES} queries top-{K}, {CONCURRENCY} concurrent clients");
    println!(
        "{:<9} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>9} {:>8}",
        "backend", "insert/s", "insert/s x8", "fetch/s", "fetch/s x8", "vec load/s", "q p50 ms", "q p99 ms", "q/s", "recall"
    );
    for (name, f) in rows {
        println!(
            "{:<9} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>10.2} {:>10.2} {:>9.1} {:>8.3}",
            name, f.insert_seq, f.insert_conc, f.fetch_seq, f.fetch_conc, f.vec_load, f.q_p50, f.q_p99, f.qps, f.recall
        );
    }
    if let [(a, fa), (b, fb)] = rows {
        println!(
            "ratio {b}/{a}: insert {:.2}x, insert x8 {:.2}x, fetch {:.2}x, fetch x8 {:.2}x, query p50 {:.2}x (lower is faster)",
            fb.insert_seq / fa.insert_seq, fb.insert_conc / fa.insert_conc, fb.fetch_seq / fa.fetch_seq,
            fb.fetch_conc / fa.fetch_conc, fb.q_p50 / fa.q_p50
        );
    }
}
