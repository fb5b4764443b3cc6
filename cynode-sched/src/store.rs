//! The storage capability the scheduler runs on, and what every backend promises.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::model::*;
use crate::{JobId, NodeId, Result, Timestamp};

/// A durable job queue. Implemented by [`crate::MemoryQueue`] (always),
/// `SqliteQueue` (feature `sqlite`) and `PgQueue` (feature `postgres`); shared as
/// `Arc<dyn QueueStore>`.
///
/// Promises every backend keeps (the conformance suite checks them):
/// - a call returns after its write is durable (committed); an acknowledged enqueue
///   survives a crash of the process or the database server;
/// - a job is held by at most one lease at a time; claims by any number of consumers
///   and replicas never hand out one job twice;
/// - finishing, renewing and placing are fenced by the lease: a holder whose lease
///   expired, or whose job was canceled, cannot change the job;
/// - limits hold across all consumers of the store;
/// - a cron entry fires once per tick, however many replicas call
///   [`QueueStore::fire_due_cron`];
/// - errors use [`crate::Error`] kinds; driver text stays in `source`.
#[async_trait]
pub trait QueueStore: Send + Sync + fmt::Debug {
    /// Short backend name (`memory`, `sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Wake-up events (new work, cancellations). A slow receiver may miss events
    /// (it then sees `Lagged`); consumers poll as well, so nothing is lost for good.
    fn events(&self) -> broadcast::Receiver<QueueEvent>;

    /// Enqueues one job; see [`QueueStore::enqueue_many`].
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let mut v = self.enqueue_many(vec![job]).await?;
        v.pop()
            .ok_or_else(|| crate::Error::internal("enqueue returned no job"))
    }

    /// Enqueues jobs in one transaction (all or none) and returns one answer per job, in
    /// order. A job whose idempotency key is already stored is not added: its answer is
    /// the existing job with `created: false`. Invalid input rejects the whole batch.
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>>;

    /// A job by id ([`crate::Error::NotFound`] if unknown).
    async fn get(&self, id: JobId) -> Result<Job>;

    /// Claims up to `claim.max` runnable jobs (queued, `run_at` reached, within limits),
    /// lowest priority value first, then earliest `run_at`, then id. Each claim counts an
    /// attempt and starts a lease of `claim.lease_ttl`.
    async fn claim(&self, claim: &Claim) -> Result<Vec<Lease>>;

    /// Renews leases; one status per `(job, lease)` pair, in order.
    async fn heartbeat(
        &self,
        held: &[(JobId, Uuid)],
        ttl: Duration,
    ) -> Result<Vec<HeartbeatStatus>>;

    /// Applies finishes (fenced by lease); one result per finish, in order. A
    /// [`Outcome::Retry`] of a job with no attempts left fails it permanently.
    async fn finish(&self, done: &[Finish]) -> Result<Vec<FinishResult>>;

    /// Records the node a running job was placed on (fenced; `false` if the lease is no
    /// longer current). Clears the job's waiting reason.
    async fn assign_node(&self, job: JobId, lease: Uuid, node: NodeId) -> Result<bool>;

    /// Cancels a job. A queued job never runs; a running job's holder learns it through
    /// a [`QueueEvent::Canceled`] and its next heartbeat. Canceled never flips back.
    async fn cancel(&self, id: JobId) -> Result<CancelResult>;

    /// Puts running jobs whose lease expired back in the queue (the attempt stays
    /// counted; a job without attempts left fails with a "lease expired" error).
    /// Returns how many jobs it moved. Safe to call from every replica.
    async fn reap_expired(&self) -> Result<u64>;

    /// Sets (creates or replaces) the limit of a scope.
    async fn set_limit(&self, scope: &LimitScope, limit: &Limit) -> Result<()>;
    /// Removes a scope's limit; `false` if there was none.
    async fn remove_limit(&self, scope: &LimitScope) -> Result<bool>;
    /// All limits, ordered by scope.
    async fn limits(&self) -> Result<Vec<(LimitScope, Limit)>>;

    /// Creates or replaces a cron entry. Its next tick is computed from now (a changed
    /// schedule or time zone restarts it; an unchanged one keeps its next tick).
    async fn put_cron(&self, cron: &CronJob) -> Result<CronEntry>;
    /// Removes a cron entry; `false` if there was none.
    async fn remove_cron(&self, name: &str) -> Result<bool>;
    /// All cron entries, by name.
    async fn list_cron(&self) -> Result<Vec<CronEntry>>;
    /// Enqueues the job of every enabled entry whose tick is due, once per tick across
    /// all replicas, and moves each entry to its next tick after now (missed ticks are
    /// not replayed). Returns the ids of the jobs it enqueued.
    async fn fire_due_cron(&self) -> Result<Vec<JobId>>;

    /// Running jobs per node they were placed on.
    async fn node_loads(&self) -> Result<HashMap<NodeId, u32>>;
    /// The node of the most recent placed job with this affinity key.
    async fn affinity_node(&self, key: &str) -> Result<Option<NodeId>>;

    /// Jobs by state, of one queue or of all.
    async fn stats(&self, queue: Option<&str>) -> Result<QueueStats>;

    /// Deletes finished (completed, failed, canceled) jobs that ended before `before`;
    /// returns how many. Their idempotency keys become free.
    async fn prune(&self, before: Timestamp) -> Result<u64>;

    /// The store's current time (the database server's for PostgreSQL).
    async fn now(&self) -> Result<Timestamp>;
}
