//! The consumer runtime: claims jobs in batches, runs handlers with bounded
//! concurrency, renews leases, reacts to cancellations, batches completions, and runs
//! the maintenance duties (lease reaper, cron) that any number of replicas may share.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::model::*;
use crate::placement::{self, NodeInfo};
use crate::retry::RetryPolicy;
use crate::store::QueueStore;
use crate::{Error, JobId, NodeId, Result};

/// What a handler returns: an optional result document, or why the attempt failed.
pub type JobResult = std::result::Result<Option<Value>, JobError>;

/// Why an attempt did not succeed. Any `std::error::Error` converts into a retryable
/// one, so handlers can use `?`.
#[derive(Debug)]
pub struct JobError {
    message: String,
    kind: JobErrorKind,
}

#[derive(Debug, Clone)]
enum JobErrorKind {
    Retry(Option<Duration>),
    Fatal,
    Snooze(Duration),
}

impl JobError {
    /// A failure worth retrying after the policy's back-off.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: JobErrorKind::Retry(None),
        }
    }
    /// A failure worth retrying after `delay`.
    pub fn retry_after(message: impl Into<String>, delay: Duration) -> Self {
        Self {
            message: message.into(),
            kind: JobErrorKind::Retry(Some(delay)),
        }
    }
    /// A failure that must not be retried: the job fails permanently.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: JobErrorKind::Fatal,
        }
    }
    /// Not a failure: put the job back for `delay` without counting the attempt;
    /// `reason` is stored on the job for users to read.
    pub fn snooze(delay: Duration, reason: impl Into<String>) -> Self {
        Self {
            message: reason.into(),
            kind: JobErrorKind::Snooze(delay),
        }
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(e: E) -> Self {
        Self::retry(e.to_string())
    }
}

/// What a handler gets: the job, its lease, its node, and a cancellation signal.
#[derive(Clone)]
pub struct JobContext {
    job: Arc<Job>,
    lease_id: Uuid,
    node: Option<NodeInfo>,
    token: CancellationToken,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.job.id)
            .field("kind", &self.job.kind)
            .field("lease_id", &self.lease_id)
            .finish()
    }
}

impl JobContext {
    /// The job as claimed.
    pub fn job(&self) -> &Job {
        &self.job
    }
    /// The job id.
    pub fn id(&self) -> JobId {
        self.job.id
    }
    /// The payload.
    pub fn payload(&self) -> &Value {
        &self.job.payload
    }
    /// This attempt's number (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.job.attempt
    }
    /// The lease id of this attempt.
    pub fn lease_id(&self) -> Uuid {
        self.lease_id
    }
    /// The node the job was placed on (jobs with placement requirements only).
    pub fn node(&self) -> Option<&NodeInfo> {
        self.node.as_ref()
    }
    /// Whether the job was canceled, lost its lease, or the worker is shutting down
    /// past its grace period. The handler's future is dropped soon after.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
    /// Resolves when [`JobContext::is_cancelled`] becomes true.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }
}

type BoxFut = Pin<Box<dyn Future<Output = JobResult> + Send>>;

/// Runs jobs of one kind.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt.
    fn run(&self, ctx: JobContext) -> BoxFut;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = JobResult> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> BoxFut {
        Box::pin(self(ctx))
    }
}

/// Where placement learns which worker nodes exist.
#[async_trait::async_trait]
pub trait NodeDirectory: Send + Sync + fmt::Debug {
    /// The nodes now. Their `in_flight` is replaced by the queue's own count of running
    /// jobs placed on each node.
    async fn nodes(&self) -> Result<Vec<NodeInfo>>;
}

/// Settings of a [`Worker`]. Every field has a documented default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Name stored on claimed jobs (default: `worker-<pid>-<random>`).
    pub worker_id: String,
    /// Queues to take jobs from (default `["default"]`).
    pub queues: Vec<String>,
    /// Handlers running at once (default 10).
    pub concurrency: usize,
    /// Extra jobs claimed ahead and held locally while all handlers are busy (default:
    /// equal to `concurrency`). Larger values raise throughput on short jobs at the cost
    /// of fairness between replicas.
    pub prefetch: usize,
    /// Lease length (default 30 s).
    pub lease_ttl: Duration,
    /// Lease renewal period (default 10 s; keep it well under `lease_ttl`).
    pub heartbeat_interval: Duration,
    /// Claim attempt period when no wake-up arrives (default 1 s): picks up delayed
    /// jobs, retries and work freed by limits.
    pub poll_interval: Duration,
    /// Run the lease reaper and cron on this worker (default true; safe on every replica).
    pub maintenance: bool,
    /// Lease reaper period (default 5 s).
    pub reap_interval: Duration,
    /// Cron check period (default 1 s).
    pub cron_interval: Duration,
    /// Retry back-off.
    pub retry: RetryPolicy,
    /// How long shutdown waits for running handlers before aborting them (default 30 s).
    pub shutdown_grace: Duration,
    /// Wait before trying again to place a job no node can take (default 1 s).
    pub placement_retry: Duration,
    /// Most finishes written in one store call (default 1000).
    pub finish_batch: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: format!(
                "worker-{}-{}",
                std::process::id(),
                &Uuid::new_v4().simple().to_string()[..8]
            ),
            queues: vec![DEFAULT_QUEUE.to_string()],
            concurrency: 10,
            prefetch: 10,
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            maintenance: true,
            reap_interval: Duration::from_secs(5),
            cron_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(30),
            placement_retry: Duration::from_secs(1),
            finish_batch: 1000,
        }
    }
}

/// A consumer: register handlers per kind, then [`Worker::start`].
pub struct Worker {
    store: Arc<dyn QueueStore>,
    config: WorkerConfig,
    handlers: HashMap<String, Arc<dyn Handler>>,
    nodes: Option<Arc<dyn NodeDirectory>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("store", &self.store.backend())
            .field("config", &self.config)
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Worker {
    /// A worker over `store` with `config` and no handlers yet.
    pub fn new(store: Arc<dyn QueueStore>, config: WorkerConfig) -> Self {
        Self {
            store,
            config,
            handlers: HashMap::new(),
            nodes: None,
        }
    }

    /// Registers the handler of `kind` (replacing an earlier one). The worker claims
    /// only kinds it has handlers for.
    pub fn handle(mut self, kind: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    /// Enables placement: jobs with placement requirements are placed on a node from
    /// `nodes` before their handler runs (see [`crate::placement`]); a job no node can
    /// take is put back with the reason stored on it.
    pub fn with_nodes(mut self, nodes: Arc<dyn NodeDirectory>) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// Starts the worker's tasks on the current Tokio runtime.
    ///
    /// Errors: [`Error::InvalidInput`] for a configuration that cannot work (no queue,
    /// zero concurrency, a heartbeat not shorter than the lease).
    pub fn start(self) -> Result<WorkerHandle> {
        let c = &self.config;
        if c.queues.is_empty() {
            return Err(Error::invalid("a worker needs at least one queue"));
        }
        for q in &c.queues {
            check_name("queue", q)?;
        }
        if c.concurrency == 0 {
            return Err(Error::invalid("worker concurrency must be at least 1"));
        }
        if c.heartbeat_interval.is_zero() || c.heartbeat_interval >= c.lease_ttl {
            return Err(Error::invalid(
                "the heartbeat interval must be positive and shorter than the lease",
            ));
        }
        if c.poll_interval.is_zero() || c.reap_interval.is_zero() || c.cron_interval.is_zero() {
            return Err(Error::invalid("worker intervals must be positive"));
        }
        let (finish_tx, finish_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            epoch: tokio::time::Instant::now(),
            store: self.store,
            handlers: self.handlers,
            nodes: self.nodes,
            held: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            stop_fetch: CancellationToken::new(),
            stop_all: CancellationToken::new(),
            sem: Arc::new(Semaphore::new(self.config.concurrency)),
            finish_tx: Mutex::new(Some(finish_tx)),
            counters: Counters::default(),
            config: self.config,
        });
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(inner.clone().heartbeat_loop()));
        tasks.push(tokio::spawn(inner.clone().event_loop()));
        if inner.config.maintenance {
            tasks.push(tokio::spawn(inner.clone().maintenance_loop()));
        }
        let completer = tokio::spawn(inner.clone().finish_loop(finish_rx));
        let fetcher = tokio::spawn(inner.clone().fetch_loop());
        Ok(WorkerHandle {
            inner,
            fetcher,
            completer,
            tasks,
        })
    }
}

/// Counts kept by a running worker.
#[derive(Debug, Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    snoozed: AtomicU64,
    stale: AtomicU64,
    aborted: AtomicU64,
}

/// Totals of a worker's activity so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts that completed (finish applied).
    pub completed: u64,
    /// Attempts that failed the job permanently.
    pub failed: u64,
    /// Attempts that failed and were queued for a retry.
    pub retried: u64,
    /// Jobs put back without running (placement, shutdown release, snooze).
    pub snoozed: u64,
    /// Finishes discarded because the lease was no longer current.
    pub stale: u64,
    /// Attempts stopped because of cancel, a lost lease, or shutdown.
    pub aborted: u64,
}

/// A running worker. Drop it to abort everything at once, or call
/// [`WorkerHandle::shutdown`] to stop gracefully.
pub struct WorkerHandle {
    inner: Arc<Inner>,
    fetcher: JoinHandle<()>,
    completer: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("worker_id", &self.inner.config.worker_id)
            .finish()
    }
}

impl WorkerHandle {
    /// The worker's id.
    pub fn worker_id(&self) -> &str {
        &self.inner.config.worker_id
    }

    /// Totals so far.
    pub fn stats(&self) -> WorkerStats {
        let c = &self.inner.counters;
        WorkerStats {
            completed: c.completed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            snoozed: c.snoozed.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            aborted: c.aborted.load(Ordering::Relaxed),
        }
    }

    /// Stops gracefully: claims no more, puts back claimed jobs that have not started,
    /// waits up to `shutdown_grace` for running handlers (then aborts them; their jobs
    /// are retried), writes every pending finish, and stops. Returns the final totals.
    pub async fn shutdown(mut self) -> WorkerStats {
        let inner = self.inner.clone();
        inner.stop_fetch.cancel();
        let _ = (&mut self.fetcher).await;
        let all = u32::try_from(inner.config.concurrency).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(inner.config.shutdown_grace, inner.sem.acquire_many(all)).await;
        if drained.is_err() {
            for h in inner.held().values() {
                h.reason.store(STOP_SHUTDOWN, Ordering::SeqCst);
                h.token.cancel();
            }
            let _ = inner.sem.acquire_many(all).await;
        }
        // Every handler is done; its finish is queued. Close the channel and flush.
        inner.finish_tx_take();
        let _ = (&mut self.completer).await;
        inner.stop_all.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.inner_stats()
    }

    fn inner_stats(&self) -> WorkerStats {
        let c = &self.inner.counters;
        WorkerStats {
            completed: c.completed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            snoozed: c.snoozed.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            aborted: c.aborted.load(Ordering::Relaxed),
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.inner.stop_fetch.cancel();
        self.inner.stop_all.cancel();
        for h in self.inner.held().values() {
            h.token.cancel();
        }
    }
}

/// A claimed job waiting for a free handler slot.
type Buffered = (Lease, CancellationToken, Arc<AtomicU8>, Arc<AtomicU64>);

const STOP_NONE: u8 = 0;
const STOP_CANCELED: u8 = 1;
const STOP_LOST: u8 = 2;
const STOP_SHUTDOWN: u8 = 3;

/// A job this worker holds a lease on (buffered or running).
#[derive(Debug)]
struct Held {
    lease: Uuid,
    token: CancellationToken,
    reason: Arc<AtomicU8>,
    /// Local time (ms since `Inner::epoch`) by which the lease may have run out: the
    /// send time of the claim or of the last successful renewal, plus the lease, minus
    /// a safety margin. Past it the handler is stopped even if no heartbeat got through,
    /// so a stalled or cut-off holder never overlaps with the job's next holder.
    deadline: Arc<AtomicU64>,
}

struct Inner {
    epoch: tokio::time::Instant,
    store: Arc<dyn QueueStore>,
    config: WorkerConfig,
    handlers: HashMap<String, Arc<dyn Handler>>,
    nodes: Option<Arc<dyn NodeDirectory>>,
    held: Mutex<HashMap<JobId, Held>>,
    wake: Notify,
    stop_fetch: CancellationToken,
    stop_all: CancellationToken,
    sem: Arc<Semaphore>,
    finish_tx: Mutex<Option<mpsc::UnboundedSender<Finish>>>,
    counters: Counters,
}

impl Inner {
    fn held(&self) -> MutexGuard<'_, HashMap<JobId, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds since the worker started.
    fn millis(&self, t: tokio::time::Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The local lease deadline for a lease granted (or renewed) by a call sent at `sent`.
    fn deadline_after(&self, sent: tokio::time::Instant) -> u64 {
        let ttl = self.config.lease_ttl;
        self.millis(sent + ttl - ttl / 10)
    }

    fn finish_tx_take(&self) {
        self.finish_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn send_finish(&self, f: Finish) {
        let tx = self
            .finish_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match tx {
            Some(tx) => {
                if tx.send(f).is_err() {
                    tracing::warn!("finish dropped: the worker is stopping");
                }
            }
            None => tracing::warn!("finish dropped: the worker has stopped"),
        }
    }

    fn release_held(&self, id: JobId) {
        self.held().remove(&id);
    }

    async fn fetch_loop(self: Arc<Self>) {
        let c = &self.config;
        let capacity = c.concurrency + c.prefetch;
        let refill_at = c.prefetch / 2;
        let kinds: Vec<String> = self.handlers.keys().cloned().collect();
        let mut buffer: VecDeque<Buffered> = VecDeque::new();
        // A claim runs in its own task so handlers keep being fed while it is in flight.
        let mut pending: Option<(JoinHandle<Result<Vec<Lease>>>, usize)> = None;
        // Whether there may be claimable work: set by wake-ups, polls, freed slots and
        // full batches; cleared when a claim starts.
        let mut want = true;
        let mut backoff = Duration::from_millis(50);
        let mut not_before: Option<tokio::time::Instant> = None;
        let mut claim_sent = tokio::time::Instant::now();
        loop {
            if self.stop_fetch.is_cancelled() {
                break;
            }
            let ready = not_before.is_none_or(|t| tokio::time::Instant::now() >= t);
            if pending.is_none() && want && ready && buffer.len() <= refill_at && !kinds.is_empty()
            {
                let running = c.concurrency - self.sem.available_permits().min(c.concurrency);
                let room = capacity.saturating_sub(buffer.len() + running);
                if room > 0 {
                    want = false;
                    let claim = Claim {
                        queues: c.queues.clone(),
                        kinds: kinds.clone(),
                        max: u32::try_from(room).unwrap_or(u32::MAX),
                        worker_id: c.worker_id.clone(),
                        lease_ttl: c.lease_ttl,
                    };
                    let store = self.store.clone();
                    claim_sent = tokio::time::Instant::now();
                    pending = Some((tokio::spawn(async move { store.claim(&claim).await }), room));
                }
            }
            let wait = async {
                match pending.as_mut() {
                    Some((h, _)) => Some(h.await),
                    None => std::future::pending().await,
                }
            };
            let retry_in = not_before.map_or(c.poll_interval, |t| {
                t.saturating_duration_since(tokio::time::Instant::now())
                    .min(c.poll_interval)
            });
            let dispatch = !buffer.is_empty();
            tokio::select! {
                biased;
                _ = self.stop_fetch.cancelled() => break,
                r = wait => {
                    let asked = pending.take().map_or(0, |p| p.1);
                    match r {
                        Some(Ok(Ok(leases))) => {
                            backoff = Duration::from_millis(50);
                            not_before = None;
                            if leases.len() >= asked {
                                want = true;
                            }
                            let deadline = self.deadline_after(claim_sent);
                            let mut held = self.held();
                            for l in leases {
                                let token = self.stop_all.child_token();
                                let reason = Arc::new(AtomicU8::new(STOP_NONE));
                                let until = Arc::new(AtomicU64::new(deadline));
                                held.insert(
                                    l.job.id,
                                    Held {
                                        lease: l.lease_id,
                                        token: token.clone(),
                                        reason: reason.clone(),
                                        deadline: until.clone(),
                                    },
                                );
                                buffer.push_back((l, token, reason, until));
                            }
                        }
                        Some(Ok(Err(e))) => {
                            tracing::warn!(error = %e, "claiming jobs failed; retrying");
                            not_before = Some(tokio::time::Instant::now() + backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            want = true;
                        }
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "the claim task failed");
                            want = true;
                        }
                        None => {}
                    }
                }
                p = self.sem.clone().acquire_owned(), if dispatch => {
                    let Ok(permit) = p else { break };
                    let Some((lease, token, reason, until)) = buffer.pop_front() else {
                        continue;
                    };
                    let me = self.clone();
                    let span = tracing::debug_span!("job", id = %lease.job.id, kind = %lease.job.kind, attempt = lease.job.attempt);
                    tokio::spawn(
                        async move {
                            me.run_job(lease, token, reason, until).await;
                            drop(permit);
                            me.wake.notify_one();
                        }
                        .instrument(span),
                    );
                }
                _ = self.wake.notified() => want = true,
                _ = tokio::time::sleep(retry_in), if !dispatch => want = true,
            }
        }
        // A claim still in flight is waited for, so its jobs are put back too.
        if let Some((h, _)) = pending.take()
            && let Ok(Ok(leases)) = h.await
        {
            for l in leases {
                buffer.push_back((
                    l,
                    CancellationToken::new(),
                    Arc::new(AtomicU8::new(STOP_NONE)),
                    Arc::new(AtomicU64::new(0)),
                ));
            }
        }
        // Put back what was claimed but never started.
        for (l, _, _, _) in buffer {
            self.counters.snoozed.fetch_add(1, Ordering::Relaxed);
            self.send_finish(Finish {
                job_id: l.job.id,
                lease_id: l.lease_id,
                outcome: Outcome::Snooze {
                    delay: Duration::ZERO,
                    reason: None,
                },
            });
        }
    }

    async fn run_job(
        &self,
        lease: Lease,
        token: CancellationToken,
        reason: Arc<AtomicU8>,
        until: Arc<AtomicU64>,
    ) {
        let job_id = lease.job.id;
        if token.is_cancelled() {
            // Canceled or lost while buffered: nothing to run or to finish.
            self.counters.aborted.fetch_add(1, Ordering::Relaxed);
            self.release_held(job_id);
            return;
        }
        let attempt = lease.job.attempt;

        let mut node = None;
        if let (Some(req), Some(dir)) = (lease.job.placement.as_ref(), self.nodes.as_ref()) {
            match self.place(&lease.job, req, dir.as_ref()).await {
                Ok(Ok(n)) => match self.store.assign_node(job_id, lease.lease_id, n.id).await {
                    Ok(true) => node = Some(n),
                    Ok(false) => {
                        self.counters.aborted.fetch_add(1, Ordering::Relaxed);
                        self.release_held(job_id);
                        return;
                    }
                    Err(e) => {
                        self.finish(
                            job_id,
                            lease.lease_id,
                            Outcome::Snooze {
                                delay: self.config.placement_retry,
                                reason: Some(format!("placement could not be recorded: {e}")),
                            },
                        );
                        return;
                    }
                },
                Ok(Err(why)) => {
                    tracing::debug!(job = %job_id, reason = %why, "job not placed");
                    self.finish(
                        job_id,
                        lease.lease_id,
                        Outcome::Snooze {
                            delay: self.config.placement_retry,
                            reason: Some(why),
                        },
                    );
                    return;
                }
                Err(e) => {
                    self.finish(
                        job_id,
                        lease.lease_id,
                        Outcome::Snooze {
                            delay: self.config.placement_retry,
                            reason: Some(format!("waiting for the node list: {e}")),
                        },
                    );
                    return;
                }
            }
        }

        let Some(handler) = self.handlers.get(&lease.job.kind).cloned() else {
            self.finish(
                job_id,
                lease.lease_id,
                Outcome::Failed {
                    error: format!("no handler for kind '{}'", lease.job.kind),
                },
            );
            return;
        };
        let lease_id = lease.lease_id;
        let ctx = JobContext {
            job: Arc::new(lease.job),
            lease_id,
            node,
            token: token.clone(),
        };
        let fut = AssertUnwindSafe(handler.run(ctx)).catch_unwind();
        let guard = async {
            loop {
                let at = self.epoch + Duration::from_millis(until.load(Ordering::SeqCst));
                if tokio::time::Instant::now() >= at {
                    return;
                }
                tokio::time::sleep_until(at).await;
            }
        };
        let res = tokio::select! {
            biased;
            r = fut => Some(r),
            _ = token.cancelled() => None,
            _ = guard => {
                tracing::warn!(job = %job_id, "lease not renewed in time; stopping the attempt");
                reason.store(STOP_LOST, Ordering::SeqCst);
                None
            }
        };
        let outcome = match res {
            None => match reason.load(Ordering::SeqCst) {
                STOP_SHUTDOWN => Outcome::Retry {
                    error: "the worker shut down before the attempt finished".into(),
                    delay: Duration::ZERO,
                },
                _ => {
                    // Canceled or lost: the job is no longer ours to finish.
                    self.counters.aborted.fetch_add(1, Ordering::Relaxed);
                    self.release_held(job_id);
                    return;
                }
            },
            Some(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Outcome::Retry {
                    error: format!("handler panicked: {msg}"),
                    delay: self.config.retry.delay(attempt),
                }
            }
            Some(Ok(Ok(result))) => Outcome::Completed { result },
            Some(Ok(Err(e))) => match e.kind {
                JobErrorKind::Retry(after) => Outcome::Retry {
                    error: e.message,
                    delay: after.unwrap_or_else(|| self.config.retry.delay(attempt)),
                },
                JobErrorKind::Fatal => Outcome::Failed { error: e.message },
                JobErrorKind::Snooze(delay) => Outcome::Snooze {
                    delay,
                    reason: Some(e.message),
                },
            },
        };
        self.finish(job_id, lease_id, outcome);
    }

    async fn place(
        &self,
        job: &Job,
        req: &placement::Requirements,
        dir: &dyn NodeDirectory,
    ) -> Result<std::result::Result<NodeInfo, String>> {
        let mut nodes = dir.nodes().await?;
        let loads = self.store.node_loads().await?;
        for n in &mut nodes {
            n.in_flight = loads.get(&n.id).copied().unwrap_or(0);
        }
        let preferred: Option<NodeId> = match (&job.affinity_key, req.colocate) {
            (Some(k), true) => self.store.affinity_node(k).await?,
            _ => None,
        };
        Ok(placement::place(req, &nodes, preferred)
            .map(|id| nodes.iter().find(|n| n.id == id).cloned())
            .and_then(|n| n.ok_or_else(|| "the chosen node vanished".to_string())))
    }

    fn finish(&self, job_id: JobId, lease_id: Uuid, outcome: Outcome) {
        self.send_finish(Finish {
            job_id,
            lease_id,
            outcome,
        });
    }

    async fn finish_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Finish>) {
        let max = self.config.finish_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            let mut delay = Duration::from_millis(20);
            let results = loop {
                match self.store.finish(&batch).await {
                    Ok(r) => break Some(r),
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(error = %e, n = batch.len(), "writing finishes failed; retrying");
                        if self.stop_all.is_cancelled() {
                            break None;
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, n = batch.len(), "writing finishes failed; their leases will expire");
                        break None;
                    }
                }
            };
            {
                let mut held = self.held();
                for f in &batch {
                    held.remove(&f.job_id);
                }
            }
            if let Some(results) = results {
                for (f, r) in batch.iter().zip(results) {
                    let c = &self.counters;
                    let counter = match (r, &f.outcome) {
                        (FinishResult::Stale, _) => &c.stale,
                        (FinishResult::Applied(JobState::Completed), _) => &c.completed,
                        (FinishResult::Applied(JobState::Failed), _) => &c.failed,
                        (FinishResult::Applied(_), Outcome::Snooze { .. }) => &c.snoozed,
                        (FinishResult::Applied(_), _) => &c.retried,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            batch.clear();
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stop_all.cancelled() => break,
            }
            let pairs: Vec<(JobId, Uuid)> =
                self.held().iter().map(|(id, h)| (*id, h.lease)).collect();
            if pairs.is_empty() {
                continue;
            }
            let sent = tokio::time::Instant::now();
            match self.store.heartbeat(&pairs, self.config.lease_ttl).await {
                Ok(statuses) => {
                    let deadline = self.deadline_after(sent);
                    let held = self.held();
                    for ((id, lease), s) in pairs.iter().zip(statuses) {
                        let why = match s {
                            HeartbeatStatus::Renewed => {
                                if let Some(h) = held.get(id).filter(|h| h.lease == *lease) {
                                    h.deadline.fetch_max(deadline, Ordering::SeqCst);
                                }
                                continue;
                            }
                            HeartbeatStatus::Canceled => STOP_CANCELED,
                            HeartbeatStatus::Lost => STOP_LOST,
                        };
                        if let Some(h) = held.get(id).filter(|h| h.lease == *lease) {
                            tracing::info!(job = %id, canceled = why == STOP_CANCELED, "stopping a job this worker no longer owns");
                            h.reason.store(why, Ordering::SeqCst);
                            h.token.cancel();
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing leases failed"),
            }
        }
    }

    async fn event_loop(self: Arc<Self>) {
        let mut rx = self.store.events();
        let queues: HashSet<String> = self.config.queues.iter().cloned().collect();
        loop {
            let ev = tokio::select! {
                e = rx.recv() => e,
                _ = self.stop_all.cancelled() => break,
            };
            match ev {
                Ok(QueueEvent::JobsAvailable(q)) => {
                    if q.as_ref().is_none_or(|q| queues.contains(q)) {
                        self.wake.notify_one();
                    }
                }
                Ok(QueueEvent::Canceled(id)) => {
                    if let Some(h) = self.held().get(&id) {
                        h.reason.store(STOP_CANCELED, Ordering::SeqCst);
                        h.token.cancel();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.wake.notify_one(),
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    async fn maintenance_loop(self: Arc<Self>) {
        let mut reap = tokio::time::interval(self.config.reap_interval);
        let mut cron = tokio::time::interval(self.config.cron_interval);
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        cron.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = reap.tick() => {
                    match self.store.reap_expired().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(jobs = n, "re-queued jobs whose lease expired"),
                        Err(e) => tracing::warn!(error = %e, "lease reaper failed"),
                    }
                }
                _ = cron.tick() => {
                    match self.store.fire_due_cron().await {
                        Ok(v) if v.is_empty() => {}
                        Ok(v) => tracing::info!(jobs = v.len(), "cron fired"),
                        Err(e) => tracing::warn!(error = %e, "cron check failed"),
                    }
                }
                _ = self.stop_all.cancelled() => break,
            }
        }
    }
}
