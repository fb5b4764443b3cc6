//! The dispatcher: takes the jobs of user tasks to worker nodes (node protocol §12.2).
//!
//! A task's job lives in two places: the core `jobs` row (what users see through the
//! gateway) and a job of the durable queue ([`cynode_sched`]) with the **same id**, which
//! carries the lease, attempts and back-off. The flow:
//!
//! 1. The gateway stores the task and its job, then calls
//!    [`TaskDispatcher::task_created`]: the dispatcher enqueues a queue job (idempotency
//!    key = the core job id, so a second enqueue is harmless).
//! 2. A queue [`Worker`] claims it and runs one attempt: it loads the core job, reads
//!    the nodes from [`NodeStore`] (dispatchable, newest capability report, jobs in
//!    flight), places the job with [`cynode_sched::place`] (a job needing inference never
//!    goes to a sandbox-only node), marks the core job and task `running`, and calls the
//!    node's Worker API `jobs:run` with the node's bearer token. The queue renews the
//!    lease while the call is open.
//! 3. The outcome is first applied to the queue job, fenced by the lease
//!    ([`QueueStore::finish`]); only when that is applied is it copied to the core job and
//!    task. A second replica, a stale holder or a restart therefore never applies a
//!    result twice, and a canceled job never flips back (the core store refuses to change
//!    a terminal job).
//! 4. [`TaskDispatcher::task_canceled`] cancels the queue job; its holder drops the HTTP
//!    call, and the node stops the container when the connection closes (§6.5).
//!
//! **Waiting, visible to users.** When no node can take a job, it stays `queued` (the
//! attempt is not counted) and is tried again after [`DispatchConfig::placement_retry`].
//! The reason is written to the job's result document, so
//! `GET /v1/tasks/{id}/result` shows it while the job waits:
//!
//! ```json
//! {"version": 1, "status": "queued",
//!  "reason": "waiting for a worker node (needs inference): edge-1: sandbox-only (no inference)"}
//! ```
//!
//! A retry after a failed attempt is shown the same way (`"reason": "retrying: ..."`).
//! The document is replaced by the worker's result when the job ends.
//!
//! **Retries** (§12.2): only when the job cannot have started (connection refused, DNS,
//! `503`, `409`) or when the node went away mid-job (the connection broke without an
//! answer: a living node always answers, so the job was lost with the node). Back-off
//! 1 s → 30 s, at most [`DispatchConfig::max_attempts`] attempts, then `failed`. A
//! `400`/`401`/`413`/`500`, a client timeout and a job that ran and failed are final.
//!
//! **Wiring** (what an orchestrator does): one queue on the same database as the store,
//! the dispatcher as the gateway's task hook on every replica, and [`Dispatcher::spawn`]
//! where jobs should run (`DISPATCHER_ENABLED`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use cynode_core::auth::{JwtKey, JwtKeys};
//! use cynode_core::store::{SqliteStore, Store};
//! use cynode_sched::{QueueStore, SqliteQueue};
//! use cynode_server::dispatch::{DispatchConfig, Dispatcher};
//! use cynode_server::gateway::{GatewayState, router};
//!
//! # async fn demo() -> cynode_core::Result<()> {
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open("cynode.db".as_ref()).await?);
//! let queue: Arc<dyn QueueStore> = Arc::new(SqliteQueue::open_path("cynode.db").await?);
//! let dispatcher = Dispatcher::new(store.clone(), queue, DispatchConfig::default())?;
//! let keys = JwtKeys::new(JwtKey::new("k1", b"a long random signing secret".to_vec()));
//! let gateway = router(
//!     GatewayState::builder(store, keys)
//!         .dispatcher(Arc::new(dispatcher.clone()))
//!         .build(),
//! );
//! let running = dispatcher.spawn()?;
//! // ... serve `gateway` until shutdown ...
//! # drop(gateway);
//! running.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The core job's `lease_id`/`lease_expires_at` record the attempt that dispatched it and
//! that lease's first expiry; the live lease (renewed every
//! [`DispatchConfig::heartbeat_interval`]) is the queue job's.
//!
//! **Recovery.** [`Dispatcher::reconcile`] (run periodically by [`Dispatcher::spawn`])
//! enqueues open core jobs that have no queue job (e.g. the queue was down when the task
//! was created) and copies the outcome of queue jobs that ended without their result
//! reaching the core job (e.g. attempts used up by lease expiry).

mod attempt;
mod inference;
mod nodes;
mod outcome;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cynode_client::worker::{WorkerApiClient, WorkerClientConfig};
use cynode_core::model::{Job, JobStatus, Task, TaskFilter, TaskStatus};
use cynode_core::store::{NodeStore, Store, TaskStore};
use cynode_core::{Error, JobId};
use cynode_sched::{QueueStore, RetryPolicy, Worker, WorkerConfig, WorkerHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::gateway::TaskDispatcher;

pub use inference::JobInferenceConfig;
pub use nodes::{StoredTokens, WorkerTokens};

/// Kind of the queue jobs the dispatcher creates and runs.
pub const JOB_KIND: &str = "cynode.worker_job";

/// Settings of the [`Dispatcher`]. Every field has a documented default; the defaults
/// are the values of node protocol §12.2.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct DispatchConfig {
    /// Queue the jobs go to (default `dispatch`).
    pub queue: String,
    /// Name of this replica's consumer, stored on claimed jobs (default: generated,
    /// `worker-<pid>-<random>`).
    pub worker_id: Option<String>,
    /// Jobs this replica runs at once, i.e. open `jobs:run` calls (default 64).
    pub concurrency: usize,
    /// Attempts before a job fails for good (default 5). Only attempts that reached no
    /// node or lost their node count; waiting for a node does not.
    pub max_attempts: u32,
    /// Back-off between attempts (default 1 s doubling to 30 s, with jitter).
    pub retry: RetryPolicy,
    /// Lease length of a running job (default 30 s).
    pub lease_ttl: Duration,
    /// Lease renewal period (default 10 s).
    pub heartbeat_interval: Duration,
    /// How often the queue is checked when no wake-up arrives (default 1 s).
    pub poll_interval: Duration,
    /// Wait before trying again to place a job no node can take (default 1 s).
    pub placement_retry: Duration,
    /// How long the node list read for placement is reused (default 1 s). Jobs in
    /// flight per node are always read fresh.
    pub node_cache_ttl: Duration,
    /// A node not heard from for this long takes no jobs, even while its status still
    /// says `active` (default 180 s, `NODE_STALE_AFTER`); `None` disables the check.
    pub node_stale_after: Option<Duration>,
    /// Worker API client settings (connect timeout 10 s; HTTP timeout = the job's
    /// timeout, default 3600 s, at most 10800 s, plus 60 s).
    pub client: WorkerClientConfig,
    /// Image of runner jobs (`job_spec_json` set) that name none (default
    /// `cynodeai-cynode-sba:dev`).
    pub runner_image: String,
    /// Image references rewritten before dispatch, e.g. to a local mirror
    /// (`alpine:latest` → `registry.internal/alpine:3.20`). Default: none.
    pub image_aliases: BTreeMap<String, String>,
    /// How often open jobs are checked against the queue (default 30 s; also once at
    /// start).
    pub reconcile_interval: Duration,
    /// How long shutdown waits for running jobs before it drops their calls (their
    /// nodes then stop them; the jobs are retried) (default 30 s).
    pub shutdown_grace: Duration,
    /// Job-scoped inference grants for jobs that use inference (external models through
    /// the API egress service; see [`JobInferenceConfig`]). Default `None`: no grant,
    /// jobs use their node's own models.
    pub job_inference: Option<JobInferenceConfig>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            queue: "dispatch".into(),
            worker_id: None,
            concurrency: 64,
            max_attempts: 5,
            retry: RetryPolicy::default(),
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            placement_retry: Duration::from_secs(1),
            node_cache_ttl: Duration::from_secs(1),
            node_stale_after: Some(Duration::from_secs(180)),
            client: WorkerClientConfig::default(),
            runner_image: "cynodeai-cynode-sba:dev".into(),
            image_aliases: BTreeMap::new(),
            reconcile_interval: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            job_inference: None,
        }
    }
}

/// Counts kept by a dispatcher since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Jobs enqueued (new queue jobs; duplicates not counted).
    pub enqueued: u64,
    /// `jobs:run` calls made.
    pub calls: u64,
    /// Jobs that ended `completed`.
    pub completed: u64,
    /// Jobs that ended `failed` (worker result or dispatch error).
    pub failed: u64,
    /// Attempts put back for a retry.
    pub retried: u64,
    /// Placements that found no node (the job waits).
    pub waited: u64,
    /// Outcomes discarded because the lease was no longer current or the job had been
    /// canceled.
    pub discarded: u64,
    /// Jobs repaired by [`Dispatcher::reconcile`].
    pub reconciled: u64,
}

#[derive(Debug, Default)]
struct Counters {
    enqueued: AtomicU64,
    calls: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    waited: AtomicU64,
    discarded: AtomicU64,
    reconciled: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The dispatcher. Cheap to clone; every clone is the same dispatcher.
///
/// It is the gateway's [`TaskDispatcher`] (enqueue on create, cancel on cancel) on every
/// replica, and runs jobs on the replicas where [`Dispatcher::spawn`] was called.
#[derive(Clone)]
pub struct Dispatcher {
    pub(crate) inner: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) tasks: Arc<dyn TaskStore>,
    pub(crate) nodes: Arc<dyn NodeStore>,
    pub(crate) queue: Arc<dyn QueueStore>,
    pub(crate) config: DispatchConfig,
    pub(crate) client: WorkerApiClient,
    pub(crate) tokens: Arc<dyn WorkerTokens>,
    /// Serializes placement within this replica so two attempts do not both take a
    /// node's last free slot.
    pub(crate) placement: tokio::sync::Mutex<nodes::NodeCache>,
    counters: Counters,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("queue", &self.inner.queue.backend())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over one store (tasks and nodes) and a queue, reading node tokens
    /// as stored ([`StoredTokens`]).
    ///
    /// Errors: [`Error::InvalidInput`] for a configuration that cannot work.
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn QueueStore>,
        config: DispatchConfig,
    ) -> cynode_core::Result<Self> {
        Self::builder(store.clone(), store, queue)
            .config(config)
            .build()
    }

    /// A builder taking the task and node capabilities separately.
    pub fn builder(
        tasks: Arc<dyn TaskStore>,
        nodes: Arc<dyn NodeStore>,
        queue: Arc<dyn QueueStore>,
    ) -> DispatcherBuilder {
        DispatcherBuilder {
            tasks,
            nodes,
            queue,
            config: DispatchConfig::default(),
            tokens: Arc::new(StoredTokens),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &DispatchConfig {
        &self.inner.config
    }

    /// Counts so far.
    pub fn stats(&self) -> DispatchStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DispatchStats {
            enqueued: l(&c.enqueued),
            calls: l(&c.calls),
            completed: l(&c.completed),
            failed: l(&c.failed),
            retried: l(&c.retried),
            waited: l(&c.waited),
            discarded: l(&c.discarded),
            reconciled: l(&c.reconciled),
        }
    }

    /// Enqueues the queue job of a core job (idempotent: a job already enqueued is left
    /// as it is). Returns whether a new queue job was created.
    pub async fn enqueue(&self, task: &Task, job: &Job) -> cynode_core::Result<bool> {
        let s = &self.inner;
        let mut new = cynode_sched::NewJob::new(
            JOB_KIND,
            json!({"task_id": task.id.to_string(), "job_id": job.id.to_string()}),
        )
        .id(job.id)
        .queue(s.config.queue.clone())
        .max_attempts(s.config.max_attempts)
        .idempotency_key(job.id.to_string())
        .affinity_key(task.id.to_string());
        if let Some(user) = task.created_by {
            // Lets an operator cap jobs per user with a `Key`/`EachKey` limit.
            new = new.concurrency_key(user.to_string());
        }
        let done = s.queue.enqueue(new).await?;
        if done.created {
            bump(&s.counters.enqueued);
            tracing::debug!(task_id = %task.id, job_id = %job.id, "job enqueued for dispatch");
        }
        Ok(done.created)
    }

    /// Cancels the queue jobs of core jobs: a waiting job never runs, a running job's
    /// holder drops its call so the node stops the container. Unknown jobs are ignored.
    pub async fn cancel(&self, jobs: &[JobId]) -> cynode_core::Result<()> {
        let mut first_err = None;
        for id in jobs {
            match self.inner.queue.cancel(*id).await {
                Ok(r) => tracing::debug!(job_id = %id, result = ?r, "queue job canceled"),
                Err(Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "could not cancel a queue job");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Starts running jobs on this replica: a queue consumer with the dispatch handler,
    /// and the periodic [`Dispatcher::reconcile`] (also run once at start).
    ///
    /// Errors: [`Error::InvalidInput`] for a configuration the queue worker refuses.
    pub fn spawn(&self) -> cynode_core::Result<DispatcherHandle> {
        let c = &self.inner.config;
        let mut wc = WorkerConfig {
            queues: vec![c.queue.clone()],
            concurrency: c.concurrency,
            prefetch: c.concurrency.min(16),
            lease_ttl: c.lease_ttl,
            heartbeat_interval: c.heartbeat_interval,
            poll_interval: c.poll_interval,
            retry: c.retry,
            shutdown_grace: c.shutdown_grace,
            placement_retry: c.placement_retry,
            ..WorkerConfig::default()
        };
        if let Some(id) = &c.worker_id {
            wc.worker_id = id.clone();
        }
        let me = self.clone();
        let worker = Worker::new(self.inner.queue.clone(), wc)
            .handle(JOB_KIND, move |ctx: cynode_sched::JobContext| {
                let me = me.clone();
                async move { me.attempt(ctx).await }
            })
            .start()?;
        let stop = CancellationToken::new();
        let reconciler = {
            let me = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(me.inner.config.reconcile_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.cancelled() => break,
                    }
                    match me.reconcile().await {
                        Ok(r) if r.enqueued + r.applied > 0 => {
                            tracing::info!(
                                enqueued = r.enqueued,
                                applied = r.applied,
                                "dispatcher reconciled open jobs"
                            );
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "dispatcher reconcile failed"),
                    }
                }
            })
        };
        tracing::info!(worker_id = worker.worker_id(), queue = %c.queue, "dispatcher started");
        Ok(DispatcherHandle {
            dispatcher: self.clone(),
            worker: Some(worker),
            reconciler: Some(reconciler),
            stop,
        })
    }

    /// Checks every open core job (task `queued`/`running`, job not terminal) against the
    /// queue: enqueues those without a queue job, and applies the outcome of queue jobs
    /// that ended without it reaching the core job. Safe on every replica at any time.
    pub async fn reconcile(&self) -> cynode_core::Result<ReconcileReport> {
        let s = &self.inner;
        let mut report = ReconcileReport::default();
        let now = s.queue.now().await?;
        let grace = chrono::Duration::from_std(s.config.lease_ttl).unwrap_or(chrono::Duration::MAX);
        const PAGE: u32 = 200;
        let mut offset = 0u64;
        loop {
            let (tasks, _) = s
                .tasks
                .list_tasks(&TaskFilter {
                    statuses: vec![TaskStatus::Pending, TaskStatus::Running],
                    limit: PAGE,
                    offset,
                    ..Default::default()
                })
                .await?;
            let n = tasks.len();
            for task in &tasks {
                for job in s.tasks.list_jobs(task.id).await? {
                    if job.status.is_terminal() {
                        continue;
                    }
                    report.checked += 1;
                    match s.queue.get(job.id).await {
                        Err(Error::NotFound { .. }) => {
                            if self.enqueue(task, &job).await? {
                                report.enqueued += 1;
                                bump(&s.counters.reconciled);
                            }
                        }
                        Err(e) => return Err(e),
                        // Give the attempt that ended it a lease's time to copy the
                        // outcome itself; after that it is presumed gone.
                        Ok(qj)
                            if qj.state.is_terminal()
                                && qj.ended_at.is_none_or(|t| now - t >= grace) =>
                        {
                            if self.apply_ended_queue_job(&job, &qj).await? {
                                report.applied += 1;
                                bump(&s.counters.reconciled);
                            }
                        }
                        Ok(_) => {}
                    }
                }
            }
            if n < PAGE as usize {
                break;
            }
            offset += u64::from(PAGE);
        }
        Ok(report)
    }
}

/// What one [`Dispatcher::reconcile`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Open core jobs looked at.
    pub checked: u64,
    /// Jobs that had no queue job and were enqueued.
    pub enqueued: u64,
    /// Ended queue jobs whose outcome was copied to the core job.
    pub applied: u64,
}

/// Builds a [`Dispatcher`].
pub struct DispatcherBuilder {
    tasks: Arc<dyn TaskStore>,
    nodes: Arc<dyn NodeStore>,
    queue: Arc<dyn QueueStore>,
    config: DispatchConfig,
    tokens: Arc<dyn WorkerTokens>,
}

impl fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DispatcherBuilder {
    /// Sets the configuration.
    pub fn config(mut self, config: DispatchConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets where node bearer tokens come from (default [`StoredTokens`]).
    pub fn tokens(mut self, tokens: Arc<dyn WorkerTokens>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Builds the dispatcher.
    ///
    /// Errors: [`Error::InvalidInput`] for a configuration that cannot work (empty
    /// queue name, zero concurrency or attempts, a heartbeat not shorter than the lease).
    pub fn build(self) -> cynode_core::Result<Dispatcher> {
        let c = &self.config;
        if c.queue.trim().is_empty() {
            return Err(Error::invalid("the dispatch queue name must not be empty"));
        }
        if c.concurrency == 0 {
            return Err(Error::invalid("dispatch concurrency must be at least 1"));
        }
        if c.max_attempts == 0 {
            return Err(Error::invalid("dispatch max_attempts must be at least 1"));
        }
        if c.heartbeat_interval.is_zero() || c.heartbeat_interval >= c.lease_ttl {
            return Err(Error::invalid(
                "the dispatch heartbeat interval must be positive and shorter than the lease",
            ));
        }
        if let Some(ji) = &c.job_inference {
            ji.validate().map_err(Error::invalid)?;
        }
        let client = WorkerApiClient::new(self.config.client.clone())
            .map_err(|e| Error::invalid(e.to_string()))?;
        Ok(Dispatcher {
            inner: Arc::new(Shared {
                tasks: self.tasks,
                nodes: self.nodes,
                queue: self.queue,
                client,
                tokens: self.tokens,
                placement: tokio::sync::Mutex::new(nodes::NodeCache::default()),
                counters: Counters::default(),
                config: self.config,
            }),
        })
    }
}

#[async_trait]
impl TaskDispatcher for Dispatcher {
    async fn task_created(&self, task: &Task, job: &Job) -> cynode_core::Result<()> {
        if job.status != JobStatus::Queued {
            return Ok(());
        }
        self.enqueue(task, job).await.map(|_| ())
    }

    async fn task_canceled(&self, _task: &Task, jobs: &[JobId]) -> cynode_core::Result<()> {
        self.cancel(jobs).await
    }
}

/// A running dispatcher (see [`Dispatcher::spawn`]). Call
/// [`DispatcherHandle::shutdown`] to stop gracefully; dropping it stops at once (open
/// calls are dropped, so their nodes stop the jobs, which are retried later).
pub struct DispatcherHandle {
    dispatcher: Dispatcher,
    worker: Option<WorkerHandle>,
    reconciler: Option<JoinHandle<()>>,
    stop: CancellationToken,
}

impl fmt::Debug for DispatcherHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherHandle")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl DispatcherHandle {
    /// The dispatcher this handle runs.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Stops gracefully: claims nothing more, waits up to
    /// [`DispatchConfig::shutdown_grace`] for running jobs, then drops the remaining
    /// calls (their nodes stop the containers; the jobs are retried by whichever
    /// replica runs next). Returns the final counts.
    pub async fn shutdown(mut self) -> DispatchStats {
        self.stop.cancel();
        if let Some(w) = self.worker.take() {
            w.shutdown().await;
        }
        if let Some(r) = self.reconciler.take() {
            let _ = r.await;
        }
        tracing::info!("dispatcher stopped");
        self.dispatcher.stats()
    }
}

impl Drop for DispatcherHandle {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(r) = self.reconciler.take() {
            r.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_node_protocol() {
        let c = DispatchConfig::default();
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.retry.nominal(1), Duration::from_secs(1));
        assert_eq!(c.retry.nominal(10), Duration::from_secs(30));
        assert_eq!(c.lease_ttl, Duration::from_secs(30));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(c.client.response_grace, Duration::from_secs(60));
        let back: DispatchConfig =
            serde_json::from_value(json!({"queue": "q2", "max_attempts": 3})).expect("config");
        assert_eq!((back.queue.as_str(), back.max_attempts), ("q2", 3));
        assert_eq!(back.concurrency, 64);
    }
}
