//! The queue's vocabulary: jobs, their states, leases, outcomes, limits and cron entries.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::placement::Requirements;
use crate::{Error, JobId, NodeId, Result, Timestamp};

/// The queue a job goes to when none is named.
pub const DEFAULT_QUEUE: &str = "default";
/// Attempts a job gets when none is set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Longest accepted queue, kind or key name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Largest accepted `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10_000;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to run (now, or at `run_at`, or after a retry back-off).
    Queued,
    /// Claimed by a consumer that holds its lease.
    Running,
    /// Finished successfully.
    Completed,
    /// Failed permanently (attempts used up or a fatal error); `last_error` says why.
    Failed,
    /// Canceled; never runs (again).
    Canceled,
}

impl JobState {
    /// The stored name (`queued`, `running`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the job will never change state again.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            other => return Err(Error::invalid(format!("unknown job state '{other}'"))),
        })
    }
}

/// A job to enqueue. Build it with [`NewJob::new`] and the builder methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// A pre-assigned id (for example one embedded in the payload); a fresh time-ordered
    /// id when `None`. Reusing the id of an existing job is a conflict.
    pub id: Option<JobId>,
    /// Queue name ([`DEFAULT_QUEUE`] unless set).
    pub queue: String,
    /// Kind: selects the handler.
    pub kind: String,
    /// Input handed to the handler.
    pub payload: Value,
    /// Lower values run first; 0 is the default, negative values jump ahead.
    pub priority: i16,
    /// Earliest start; now when `None`.
    pub run_at: Option<Timestamp>,
    /// Attempts before the job fails permanently (at least 1).
    pub max_attempts: u32,
    /// A second enqueue with the same key returns the existing job instead of a new one
    /// (for as long as that job is stored).
    pub idempotency_key: Option<String>,
    /// Groups jobs for per-key concurrency and rate limits (for example a tenant id).
    pub concurrency_key: Option<String>,
    /// What a worker node needs to run this job (see [`crate::placement`]).
    pub placement: Option<Requirements>,
    /// Jobs sharing this key prefer the node an earlier one of them ran on (for example
    /// the task id).
    pub affinity_key: Option<String>,
}

impl NewJob {
    /// A job of `kind` with `payload`, on the default queue, priority 0, runnable now,
    /// [`DEFAULT_MAX_ATTEMPTS`] attempts.
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            id: None,
            queue: DEFAULT_QUEUE.to_string(),
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            idempotency_key: None,
            concurrency_key: None,
            placement: None,
            affinity_key: None,
        }
    }

    /// Uses a pre-assigned id.
    pub fn id(mut self, id: JobId) -> Self {
        self.id = Some(id);
        self
    }
    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }
    /// Sets the priority (lower runs first).
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }
    /// Delays the start until `at`.
    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }
    /// Sets the number of attempts.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    /// Sets the concurrency key.
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }
    /// Sets the placement requirements.
    pub fn placement(mut self, req: Requirements) -> Self {
        self.placement = Some(req);
        self
    }
    /// Sets the affinity key.
    pub fn affinity_key(mut self, key: impl Into<String>) -> Self {
        self.affinity_key = Some(key.into());
        self
    }

    /// Checks the fields a backend relies on.
    pub(crate) fn validate(&self) -> Result<()> {
        check_name("queue", &self.queue)?;
        check_name("kind", &self.kind)?;
        if let Some(k) = &self.idempotency_key {
            check_name("idempotency key", k)?;
        }
        if let Some(k) = &self.concurrency_key {
            check_name("concurrency key", k)?;
        }
        if let Some(k) = &self.affinity_key {
            check_name("affinity key", k)?;
        }
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS_LIMIT {
            return Err(Error::invalid(format!(
                "max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, not {}",
                self.max_attempts
            )));
        }
        Ok(())
    }
}

/// Rejects empty, over-long or control-character names.
pub(crate) fn check_name(what: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{what} is longer than {MAX_NAME_LEN} bytes"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// The answer to an enqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id (the existing job's, for a duplicate idempotency key).
    pub id: JobId,
    /// `false` when an existing job with the same idempotency key was returned.
    pub created: bool,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Input.
    pub payload: Value,
    /// Priority (lower runs first).
    pub priority: i16,
    /// State.
    pub state: JobState,
    /// Attempts started so far (a claim starts one).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Earliest (next) start.
    pub run_at: Timestamp,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Concurrency key.
    pub concurrency_key: Option<String>,
    /// Current lease (set while running; kept on a canceled job so its holder can learn).
    pub lease_id: Option<Uuid>,
    /// When the current lease ends unless renewed.
    pub lease_expires_at: Option<Timestamp>,
    /// Consumer holding (or that last held) the job.
    pub worker_id: Option<String>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Output of the successful attempt.
    pub result: Option<Value>,
    /// Why the job is waiting, in words a user can read (for example no node can take it).
    pub reason: Option<String>,
    /// Placement requirements.
    pub placement: Option<Requirements>,
    /// Affinity key.
    pub affinity_key: Option<String>,
    /// Node the job was placed on.
    pub node_id: Option<NodeId>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Start of the latest attempt.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal state.
    pub ended_at: Option<Timestamp>,
    /// Last change.
    pub updated_at: Timestamp,
}

/// What a consumer asks for when it claims work.
#[derive(Clone, Debug)]
pub struct Claim {
    /// Queues to take from (at least one).
    pub queues: Vec<String>,
    /// Only these kinds (empty: any kind).
    pub kinds: Vec<String>,
    /// At most this many jobs.
    pub max: u32,
    /// Name of the claiming consumer, stored on the job.
    pub worker_id: String,
    /// Lease length; the holder must renew before it ends.
    pub lease_ttl: Duration,
}

/// A claimed job and the lease that fences its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// The job as claimed (state `running`, attempt counted).
    pub job: Job,
    /// The lease id; only a finish carrying it is applied.
    pub lease_id: Uuid,
}

/// What a lease renewal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatStatus {
    /// Lease extended.
    Renewed,
    /// The job was canceled: stop working on it.
    Canceled,
    /// The lease is gone (expired and re-queued, or finished): stop working on it.
    Lost,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Success, with an optional result document.
    Completed {
        /// Result stored on the job.
        result: Option<Value>,
    },
    /// Failure worth retrying after `delay`; fails permanently when attempts are used up.
    Retry {
        /// Error kept as `last_error`.
        error: String,
        /// Back-off before the next attempt.
        delay: Duration,
    },
    /// Failure that must not be retried.
    Failed {
        /// Error kept as `last_error`.
        error: String,
    },
    /// Not run: put back after `delay` without counting the attempt (for example no
    /// node could take the job, or a graceful shutdown released it).
    Snooze {
        /// Wait before the job becomes runnable again.
        delay: Duration,
        /// Why, stored as the job's `reason`.
        reason: Option<String>,
    },
}

/// A fenced finish: applied only if `lease_id` is still the job's lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    /// Job.
    pub job_id: JobId,
    /// Lease it was claimed with.
    pub lease_id: Uuid,
    /// Outcome.
    pub outcome: Outcome,
}

/// What happened to a [`Finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishResult {
    /// Applied; the job is now in this state.
    Applied(JobState),
    /// Discarded: the lease was no longer current (expired, canceled or finished).
    Stale,
}

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelResult {
    /// The job is now canceled; `was_running` tells whether a holder was told to stop.
    Canceled {
        /// Whether the job was running.
        was_running: bool,
    },
    /// Nothing changed: the job had already ended in this state.
    AlreadyFinished(JobState),
}

/// What a limit applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", content = "name", rename_all = "snake_case")]
pub enum LimitScope {
    /// All jobs of a queue together.
    Queue(String),
    /// All jobs of a kind together.
    Kind(String),
    /// The jobs with this concurrency key together (overrides [`LimitScope::EachKey`]).
    Key(String),
    /// Each concurrency key separately, for keys without their own [`LimitScope::Key`].
    EachKey,
}

impl LimitScope {
    /// Stored (scope, name) pair.
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::Queue(n) => ("queue", n),
            Self::Kind(n) => ("kind", n),
            Self::Key(n) => ("key", n),
            Self::EachKey => ("each_key", ""),
        }
    }

    /// Rebuilds a scope from its stored pair.
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn from_parts(scope: &str, name: &str) -> Result<Self> {
        Ok(match scope {
            "queue" => Self::Queue(name.to_string()),
            "kind" => Self::Kind(name.to_string()),
            "key" => Self::Key(name.to_string()),
            "each_key" => Self::EachKey,
            other => {
                return Err(Error::internal(format!(
                    "stored limit scope '{other}' is unknown"
                )));
            }
        })
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Self::Queue(n) => check_name("queue", n),
            Self::Kind(n) => check_name("kind", n),
            Self::Key(n) => check_name("concurrency key", n),
            Self::EachKey => Ok(()),
        }
    }
}

/// A rate: at most `max` starts per `per`, as a token bucket (bursts up to `max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Starts allowed per period (at least 1).
    pub max: u32,
    /// The period (at least 1 ms).
    pub per: Duration,
}

/// Concurrency and rate limit of one scope, enforced across all consumers and replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// At most this many running at once.
    pub max_running: Option<u32>,
    /// At most this many starts per period.
    pub rate: Option<Rate>,
}

impl Limit {
    /// A concurrency limit.
    pub fn concurrency(max_running: u32) -> Self {
        Self {
            max_running: Some(max_running),
            rate: None,
        }
    }

    /// A rate limit.
    pub fn rate(max: u32, per: Duration) -> Self {
        Self {
            max_running: None,
            rate: Some(Rate { max, per }),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_running.is_none() && self.rate.is_none() {
            return Err(Error::invalid("a limit needs max_running, a rate, or both"));
        }
        if let Some(r) = self.rate {
            if r.max == 0 {
                return Err(Error::invalid("a rate must allow at least one start"));
            }
            if r.per < Duration::from_millis(1) {
                return Err(Error::invalid("a rate period must be at least 1 ms"));
            }
            if r.per > Duration::from_secs(366 * 86_400) {
                return Err(Error::invalid("a rate period must be at most a year"));
            }
        }
        Ok(())
    }
}

/// A recurring job: enqueued once per tick of `schedule`, however many replicas run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CronJob {
    /// Unique name.
    pub name: String,
    /// Cron expression: `min hour day-of-month month day-of-week`, optionally with a
    /// leading seconds field (e.g. `*/5 * * * *`, `0 0 9 * * MON-FRI`).
    pub schedule: String,
    /// IANA time zone the expression is read in (e.g. `Europe/Berlin`); UTC when `None`.
    pub time_zone: Option<String>,
    /// The job enqueued at each tick (its `id`, `run_at` and `idempotency_key` are
    /// ignored: each tick gets the key `cron:<name>:<tick>`).
    pub job: NewJob,
    /// Disabled entries do not fire.
    pub enabled: bool,
}

/// A stored cron entry.
#[derive(Clone, Debug, PartialEq)]
pub struct CronEntry {
    /// The definition.
    pub cron: CronJob,
    /// Next tick to fire.
    pub next_run_at: Timestamp,
    /// Last tick fired.
    pub last_fired_at: Option<Timestamp>,
}

/// Counts of jobs by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Queued (including delayed and backing-off jobs).
    pub queued: u64,
    /// Running.
    pub running: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Canceled.
    pub canceled: u64,
}

impl QueueStats {
    pub(crate) fn add(&mut self, state: JobState, n: u64) {
        match state {
            JobState::Queued => self.queued += n,
            JobState::Running => self.running += n,
            JobState::Completed => self.completed += n,
            JobState::Failed => self.failed += n,
            JobState::Canceled => self.canceled += n,
        }
    }
}

/// Something a consumer may want to react to at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueEvent {
    /// New work may be runnable (on this queue, or any queue when `None`).
    JobsAvailable(Option<String>),
    /// A job was canceled; its holder should stop.
    Canceled(JobId),
}

/// A duration as whole microseconds, saturating.
#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `t + d`, saturating at the far future.
pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// Stored form of a time as it reads back (microsecond precision).
pub(crate) fn truncate(t: Timestamp) -> Timestamp {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}
