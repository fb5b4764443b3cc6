//! Embed the scheduler in-process on SQLite with a custom handler: enqueue three jobs
//! (a duplicate is absorbed by its idempotency key, one job fails once and is retried),
//! run a worker until they are done, and print each result.
//!
//! `cargo run -p cynode-examples --example scheduler`

use std::sync::Arc;
use std::time::Duration;

use cynode_sched::{JobContext, JobError, JobResult, NewJob, QueueStore, SqliteQueue};
use cynode_sched::{Worker, WorkerConfig};
use serde_json::json;

/// The handler: greets by name; the first attempt for Linus fails and is retried.
async fn greet(ctx: JobContext) -> JobResult {
    let name = ctx.payload()["name"]
        .as_str()
        .ok_or_else(|| JobError::fatal("no name"))?;
    if name == "Linus" && ctx.attempt() == 1 {
        return Err(JobError::retry_after(
            "flaky network",
            Duration::from_millis(100),
        ));
    }
    Ok(Some(json!(format!(
        "hello, {name} (attempt {})",
        ctx.attempt()
    ))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("cynode-sched-example-{}", std::process::id()));
    let queue = Arc::new(SqliteQueue::open_path(dir.join("queue.db")).await?);
    let mut ids = Vec::new();
    for name in ["Ada", "Grace", "Linus", "Ada"] {
        let job = NewJob::new("greet", json!({ "name": name })).idempotency_key(name);
        let e = queue.enqueue(job).await?;
        ids.extend(e.created.then_some(e.id));
    }

    let worker = Worker::new(queue.clone(), WorkerConfig::default())
        .handle("greet", greet)
        .start()?;
    while queue.stats(None).await?.completed < ids.len() as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = worker.shutdown().await;

    for id in ids {
        let job = queue.get(id).await?;
        let result = job.result.unwrap_or_default();
        println!("{} {}: {result}", job.kind, job.state);
    }
    println!("completed {}, retried {}", stats.completed, stats.retried);
    queue.close().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
