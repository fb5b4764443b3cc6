//! # cynode-sched
//!
//! The orchestrator's scheduler as an embeddable library: a durable job queue with
//! leases and heartbeats, retries with exponential back-off and jitter, priorities,
//! delayed start, idempotency keys, cancellation, per-queue / per-kind / per-key
//! concurrency and rate limits, cron schedules that fire once per tick across
//! replicas, and placement of jobs on worker nodes.
//!
//! The queue owns its storage behind one narrow trait, [`QueueStore`], with three
//! backends:
//! - [`MemoryQueue`], always available (no durability; injectable clock);
//! - `SqliteQueue` (feature `sqlite`, default): one file, single-writer transactions;
//! - `PgQueue` (feature `postgres`): `FOR UPDATE SKIP LOCKED` batch claims and
//!   `LISTEN/NOTIFY` wake-ups, safe for any number of replicas on one database.
//!
//! Its tables are prefixed `sched_` and versioned by its own migrations (table
//! `_cynode_sched_migrations`), so it can share a database with `cynode-core`.
//!
//! A [`Worker`] runs handlers per job kind:
//!
//! ```no_run
//! use std::sync::Arc;
//! use cynode_sched::{MemoryQueue, NewJob, QueueStore, Worker, WorkerConfig};
//!
//! # async fn demo() -> cynode_sched::Result<()> {
//! let queue = Arc::new(MemoryQueue::new());
//! queue.enqueue(NewJob::new("greet", serde_json::json!({"name": "Ada"}))).await?;
//! let worker = Worker::new(queue.clone(), WorkerConfig::default())
//!     .handle("greet", |ctx: cynode_sched::JobContext| async move {
//!         println!("hello {}", ctx.payload()["name"]);
//!         Ok(None)
//!     })
//!     .start()?;
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Delivery is at least once: a holder that dies mid-job loses its lease and the job
//! runs again; completion is exactly once (fenced by the lease).

pub mod clock;
mod cron;
mod limits;
mod memory;
pub mod model;
pub mod placement;
mod retry;
mod store;
mod worker;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cynode_core::model::Timestamp;
pub use cynode_core::{Error, JobId, NodeId, Result};
pub use memory::MemoryQueue;
pub use model::{
    CancelResult, Claim, CronEntry, CronJob, Enqueued, Finish, FinishResult, HeartbeatStatus, Job,
    JobState, Lease, Limit, LimitScope, NewJob, Outcome, QueueEvent, QueueStats, Rate,
};
pub use placement::{NodeInfo, Requirements, place};
#[cfg(feature = "postgres")]
pub use postgres::{PgQueue, PgQueueConfig};
pub use retry::RetryPolicy;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteQueue, SqliteQueueConfig};
pub use store::QueueStore;
pub use worker::{
    Handler, JobContext, JobError, JobResult, NodeDirectory, Worker, WorkerConfig, WorkerHandle,
    WorkerStats,
};
