//! The in-memory backend: the reference semantics, for tests and embedding without
//! durability. Everything sits behind one mutex; the clock is injectable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::cron::{self, Schedule};
use crate::limits::{self, Bucket, Candidate, LimitSet, Usage};
use crate::model::*;
use crate::store::QueueStore;
use crate::{Error, JobId, NodeId, Result, Timestamp};

/// How many queued jobs one claim under limits looks at.
const LIMITED_SCAN: usize = 1000;

/// Order of runnable jobs within a queue.
type ReadyKey = (i16, Timestamp, JobId);

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<JobId, Job>,
    /// Queued jobs per queue, in claim order.
    ready: HashMap<String, BTreeSet<ReadyKey>>,
    keys: HashMap<String, JobId>,
    running: BTreeSet<JobId>,
    limits: BTreeMap<LimitScope, Limit>,
    buckets: HashMap<limits::ScopeId, Bucket>,
    cron: BTreeMap<String, CronEntry>,
}

impl State {
    fn unready(&mut self, j: &Job) {
        if let Some(set) = self.ready.get_mut(&j.queue) {
            set.remove(&(j.priority, j.run_at, j.id));
        }
    }
    fn make_ready(&mut self, j: &Job) {
        self.ready
            .entry(j.queue.clone())
            .or_default()
            .insert((j.priority, j.run_at, j.id));
    }

    fn insert(&mut self, new: NewJob, now: Timestamp) -> Result<Enqueued> {
        if let Some(k) = &new.idempotency_key
            && let Some(id) = self.keys.get(k)
        {
            return Ok(Enqueued {
                id: *id,
                created: false,
            });
        }
        let id = new.id.unwrap_or_else(|| JobId(Uuid::now_v7()));
        if self.jobs.contains_key(&id) {
            return Err(Error::conflict(format!(
                "a job with id {id} already exists"
            )));
        }
        let job = Job {
            id,
            queue: new.queue,
            kind: new.kind,
            payload: new.payload,
            priority: new.priority,
            state: JobState::Queued,
            attempt: 0,
            max_attempts: new.max_attempts,
            run_at: truncate(new.run_at.unwrap_or(now)),
            idempotency_key: new.idempotency_key,
            concurrency_key: new.concurrency_key,
            lease_id: None,
            lease_expires_at: None,
            worker_id: None,
            last_error: None,
            result: None,
            reason: None,
            placement: new.placement,
            affinity_key: new.affinity_key,
            node_id: None,
            created_at: now,
            started_at: None,
            ended_at: None,
            updated_at: now,
        };
        if let Some(k) = &job.idempotency_key {
            self.keys.insert(k.clone(), id);
        }
        self.make_ready(&job);
        self.jobs.insert(id, job);
        Ok(Enqueued { id, created: true })
    }

    fn limit_set(&self) -> LimitSet {
        LimitSet::from_pairs(self.limits.iter().map(|(s, l)| (s.clone(), *l)))
    }

    fn start(&mut self, id: JobId, claim: &Claim, lease: Uuid, now: Timestamp) -> Option<Lease> {
        let job = self.jobs.get_mut(&id)?;
        let key = (job.priority, job.run_at, job.id);
        job.state = JobState::Running;
        job.attempt = job.attempt.saturating_add(1);
        job.lease_id = Some(lease);
        job.lease_expires_at = Some(add(now, claim.lease_ttl));
        job.worker_id = Some(claim.worker_id.clone());
        job.started_at = Some(now);
        job.updated_at = now;
        let out = Lease {
            job: job.clone(),
            lease_id: lease,
        };
        let queue = job.queue.clone();
        if let Some(set) = self.ready.get_mut(&queue) {
            set.remove(&key);
        }
        self.running.insert(id);
        Some(out)
    }
}

/// The in-memory queue. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<QueueEvent>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQueue {
    /// An empty queue on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty queue on the given clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            clock,
            events: broadcast::channel(1024).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Timestamp {
        truncate(self.clock.now())
    }

    fn notify(&self, e: QueueEvent) {
        let _ = self.events.send(e);
    }
}

#[async_trait]
impl QueueStore for MemoryQueue {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn events(&self) -> broadcast::Receiver<QueueEvent> {
        self.events.subscribe()
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        for j in &jobs {
            j.validate()?;
        }
        let now = self.now();
        let mut queues = BTreeSet::new();
        let out = {
            let mut st = self.lock();
            // All or nothing: check pre-assigned ids first.
            let mut seen = BTreeSet::new();
            for j in &jobs {
                if let Some(id) = j.id {
                    let dup_key = j
                        .idempotency_key
                        .as_ref()
                        .is_some_and(|k| st.keys.contains_key(k));
                    if !dup_key && (st.jobs.contains_key(&id) || !seen.insert(id)) {
                        return Err(Error::conflict(format!(
                            "a job with id {id} already exists"
                        )));
                    }
                }
            }
            let mut out = Vec::with_capacity(jobs.len());
            for j in jobs {
                queues.insert(j.queue.clone());
                out.push(st.insert(j, now)?);
            }
            out
        };
        for q in queues {
            self.notify(QueueEvent::JobsAvailable(Some(q)));
        }
        Ok(out)
    }

    async fn get(&self, id: JobId) -> Result<Job> {
        self.lock()
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("job", id))
    }

    async fn claim(&self, claim: &Claim) -> Result<Vec<Lease>> {
        let now = self.now();
        let max = usize::try_from(claim.max).unwrap_or(usize::MAX);
        if max == 0 || claim.queues.is_empty() {
            return Ok(Vec::new());
        }
        let lease = Uuid::new_v4();
        let mut st = self.lock();
        let limits = st.limit_set();
        // Runnable candidates of the asked queues, merged in claim order.
        let mut cands: Vec<ReadyKey> = Vec::new();
        for q in &claim.queues {
            if let Some(set) = st.ready.get(q) {
                let mut taken = 0usize;
                for k in set.iter() {
                    if k.1 > now {
                        continue;
                    }
                    let Some(j) = st.jobs.get(&k.2) else { continue };
                    if !claim.kinds.is_empty() && !claim.kinds.contains(&j.kind) {
                        continue;
                    }
                    cands.push(*k);
                    taken += 1;
                    // Limited jobs may be skipped: look further than `max` when limits
                    // exist, but not without bound.
                    if (taken >= max && limits.is_empty()) || taken >= LIMITED_SCAN {
                        break;
                    }
                }
            }
        }
        cands.sort();
        let chosen: Vec<JobId> = if limits.is_empty() {
            cands.iter().take(max).map(|k| k.2).collect()
        } else {
            let mut usage = Usage::default();
            for id in &st.running {
                if let Some(j) = st.jobs.get(id) {
                    usage.count_running(&j.queue, &j.kind, j.concurrency_key.as_deref());
                }
            }
            usage.buckets = st.buckets.clone();
            let list: Vec<Candidate> = cands
                .iter()
                .filter_map(|k| st.jobs.get(&k.2))
                .map(|j| Candidate {
                    queue: j.queue.clone(),
                    kind: j.kind.clone(),
                    key: j.concurrency_key.clone(),
                })
                .collect();
            let picked = limits::select(&limits, &list, &mut usage, now, max);
            for id in usage.touched.drain() {
                if let Some(b) = usage.buckets.get(&id) {
                    st.buckets.insert(id, *b);
                }
            }
            picked.into_iter().map(|i| cands[i].2).collect()
        };
        Ok(chosen
            .into_iter()
            .filter_map(|id| st.start(id, claim, lease, now))
            .collect())
    }

    async fn heartbeat(
        &self,
        held: &[(JobId, Uuid)],
        ttl: Duration,
    ) -> Result<Vec<HeartbeatStatus>> {
        let now = self.now();
        let mut st = self.lock();
        Ok(held
            .iter()
            .map(|(id, lease)| match st.jobs.get_mut(id) {
                Some(j) if j.lease_id == Some(*lease) && j.state == JobState::Running => {
                    j.lease_expires_at = Some(add(now, ttl));
                    j.updated_at = now;
                    HeartbeatStatus::Renewed
                }
                Some(j) if j.lease_id == Some(*lease) && j.state == JobState::Canceled => {
                    HeartbeatStatus::Canceled
                }
                _ => HeartbeatStatus::Lost,
            })
            .collect())
    }

    async fn finish(&self, done: &[Finish]) -> Result<Vec<FinishResult>> {
        let now = self.now();
        let mut requeued = BTreeSet::new();
        let out = {
            let mut st = self.lock();
            let mut out = Vec::with_capacity(done.len());
            for f in done {
                let Some(j) = st.jobs.get_mut(&f.job_id) else {
                    out.push(FinishResult::Stale);
                    continue;
                };
                if j.lease_id != Some(f.lease_id) || j.state != JobState::Running {
                    out.push(FinishResult::Stale);
                    continue;
                }
                j.updated_at = now;
                j.lease_id = None;
                j.lease_expires_at = None;
                match &f.outcome {
                    Outcome::Completed { result } => {
                        j.state = JobState::Completed;
                        j.result = result.clone();
                        j.reason = None;
                        j.ended_at = Some(now);
                    }
                    Outcome::Retry { error, delay } if j.attempt < j.max_attempts => {
                        j.state = JobState::Queued;
                        j.last_error = Some(error.clone());
                        j.run_at = add(now, *delay);
                    }
                    Outcome::Retry { error, .. } | Outcome::Failed { error } => {
                        j.state = JobState::Failed;
                        j.last_error = Some(error.clone());
                        j.ended_at = Some(now);
                    }
                    Outcome::Snooze { delay, reason } => {
                        j.state = JobState::Queued;
                        j.attempt = j.attempt.saturating_sub(1);
                        j.reason = reason.clone();
                        j.run_at = add(now, *delay);
                    }
                }
                let state = j.state;
                let snapshot = j.clone();
                st.running.remove(&f.job_id);
                if state == JobState::Queued {
                    requeued.insert(snapshot.queue.clone());
                    st.make_ready(&snapshot);
                }
                out.push(FinishResult::Applied(state));
            }
            out
        };
        for q in requeued {
            self.notify(QueueEvent::JobsAvailable(Some(q)));
        }
        Ok(out)
    }

    async fn assign_node(&self, job: JobId, lease: Uuid, node: NodeId) -> Result<bool> {
        let now = self.now();
        let mut st = self.lock();
        match st.jobs.get_mut(&job) {
            Some(j) if j.lease_id == Some(lease) && j.state == JobState::Running => {
                j.node_id = Some(node);
                j.reason = None;
                j.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn cancel(&self, id: JobId) -> Result<CancelResult> {
        let now = self.now();
        let res = {
            let mut st = self.lock();
            let Some(j) = st.jobs.get(&id).cloned() else {
                return Err(Error::not_found("job", id));
            };
            if j.state.is_terminal() {
                return Ok(CancelResult::AlreadyFinished(j.state));
            }
            let was_running = j.state == JobState::Running;
            st.unready(&j);
            st.running.remove(&id);
            if let Some(m) = st.jobs.get_mut(&id) {
                m.state = JobState::Canceled;
                m.ended_at = Some(now);
                m.updated_at = now;
                m.lease_expires_at = None;
            }
            CancelResult::Canceled { was_running }
        };
        self.notify(QueueEvent::Canceled(id));
        Ok(res)
    }

    async fn reap_expired(&self) -> Result<u64> {
        let now = self.now();
        let mut moved = 0;
        let mut queues = BTreeSet::new();
        {
            let mut st = self.lock();
            let expired: Vec<JobId> = st
                .running
                .iter()
                .filter(|id| {
                    st.jobs
                        .get(id)
                        .and_then(|j| j.lease_expires_at)
                        .is_some_and(|t| t <= now)
                })
                .copied()
                .collect();
            for id in expired {
                st.running.remove(&id);
                let Some(j) = st.jobs.get_mut(&id) else {
                    continue;
                };
                j.lease_id = None;
                j.lease_expires_at = None;
                j.updated_at = now;
                j.last_error = Some(LEASE_EXPIRED.to_string());
                if j.attempt >= j.max_attempts {
                    j.state = JobState::Failed;
                    j.ended_at = Some(now);
                } else {
                    j.state = JobState::Queued;
                    j.run_at = now;
                    let snapshot = j.clone();
                    queues.insert(snapshot.queue.clone());
                    st.make_ready(&snapshot);
                }
                moved += 1;
            }
        }
        for q in queues {
            self.notify(QueueEvent::JobsAvailable(Some(q)));
        }
        Ok(moved)
    }

    async fn set_limit(&self, scope: &LimitScope, limit: &Limit) -> Result<()> {
        scope.validate()?;
        limit.validate()?;
        self.lock().limits.insert(scope.clone(), *limit);
        self.notify(QueueEvent::JobsAvailable(None));
        Ok(())
    }

    async fn remove_limit(&self, scope: &LimitScope) -> Result<bool> {
        let removed = self.lock().limits.remove(scope).is_some();
        if removed {
            self.notify(QueueEvent::JobsAvailable(None));
        }
        Ok(removed)
    }

    async fn limits(&self) -> Result<Vec<(LimitScope, Limit)>> {
        Ok(self
            .lock()
            .limits
            .iter()
            .map(|(s, l)| (s.clone(), *l))
            .collect())
    }

    async fn put_cron(&self, c: &CronJob) -> Result<CronEntry> {
        let schedule = cron::validate(c)?;
        let now = self.now();
        let mut st = self.lock();
        let keep = st
            .cron
            .get(&c.name)
            .filter(|e| e.cron.schedule == c.schedule && e.cron.time_zone == c.time_zone);
        let entry = CronEntry {
            cron: c.clone(),
            next_run_at: match keep {
                Some(e) => e.next_run_at,
                None => schedule.next_after(now)?,
            },
            last_fired_at: keep.and_then(|e| e.last_fired_at),
        };
        st.cron.insert(c.name.clone(), entry.clone());
        Ok(entry)
    }

    async fn remove_cron(&self, name: &str) -> Result<bool> {
        Ok(self.lock().cron.remove(name).is_some())
    }

    async fn list_cron(&self) -> Result<Vec<CronEntry>> {
        Ok(self.lock().cron.values().cloned().collect())
    }

    async fn fire_due_cron(&self) -> Result<Vec<JobId>> {
        let now = self.now();
        let mut fired = Vec::new();
        let mut queues = BTreeSet::new();
        {
            let mut st = self.lock();
            let due: Vec<CronEntry> = st
                .cron
                .values()
                .filter(|e| e.cron.enabled && e.next_run_at <= now)
                .cloned()
                .collect();
            for e in due {
                let schedule = Schedule::parse(&e.cron.schedule, e.cron.time_zone.as_deref())?;
                let next = cron::next_after_due(&schedule, e.next_run_at, now)?;
                let mut job = e.cron.job.clone();
                job.id = None;
                job.run_at = None;
                job.idempotency_key = Some(cron::tick_key(&e.cron.name, e.next_run_at));
                queues.insert(job.queue.clone());
                let r = st.insert(job, now)?;
                if r.created {
                    fired.push(r.id);
                }
                if let Some(m) = st.cron.get_mut(&e.cron.name) {
                    m.last_fired_at = Some(e.next_run_at);
                    m.next_run_at = next;
                }
            }
        }
        for q in queues {
            self.notify(QueueEvent::JobsAvailable(Some(q)));
        }
        Ok(fired)
    }

    async fn node_loads(&self) -> Result<HashMap<NodeId, u32>> {
        let st = self.lock();
        let mut out: HashMap<NodeId, u32> = HashMap::new();
        for id in &st.running {
            if let Some(n) = st.jobs.get(id).and_then(|j| j.node_id) {
                *out.entry(n).or_default() += 1;
            }
        }
        Ok(out)
    }

    async fn affinity_node(&self, key: &str) -> Result<Option<NodeId>> {
        let st = self.lock();
        Ok(st
            .jobs
            .values()
            .filter(|j| j.affinity_key.as_deref() == Some(key) && j.node_id.is_some())
            .max_by_key(|j| (j.created_at, j.id))
            .and_then(|j| j.node_id))
    }

    async fn stats(&self, queue: Option<&str>) -> Result<QueueStats> {
        let st = self.lock();
        let mut s = QueueStats::default();
        for j in st.jobs.values() {
            if queue.is_none_or(|q| q == j.queue) {
                s.add(j.state, 1);
            }
        }
        Ok(s)
    }

    async fn prune(&self, before: Timestamp) -> Result<u64> {
        let mut st = self.lock();
        let old: Vec<JobId> = st
            .jobs
            .values()
            .filter(|j| j.state.is_terminal() && j.ended_at.is_some_and(|t| t < before))
            .map(|j| j.id)
            .collect();
        for id in &old {
            if let Some(j) = st.jobs.remove(id)
                && let Some(k) = j.idempotency_key
            {
                st.keys.remove(&k);
            }
        }
        Ok(old.len() as u64)
    }

    async fn now(&self) -> Result<Timestamp> {
        Ok(self.now())
    }
}

/// `last_error` of a job whose holder stopped renewing its lease.
pub(crate) const LEASE_EXPIRED: &str = "lease expired: the holder stopped heartbeating";
