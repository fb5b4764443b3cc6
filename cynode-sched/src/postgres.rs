//! The PostgreSQL backend.
//!
//! - **Claims** are one statement: the runnable rows are picked in claim order with
//!   `FOR UPDATE SKIP LOCKED` and moved to `running` with a lease, so any number of
//!   consumers and replicas claim batches concurrently without ever sharing a job.
//! - **Limits**: jobs no limit applies to take that fast path; jobs under a limit are
//!   claimed in a transaction serialised by an advisory lock, which counts running jobs
//!   and charges rate buckets before it starts any.
//! - **Wake-ups**: an enqueue (and a re-queue) sends `NOTIFY cynode_sched_jobs` in its
//!   own transaction; a cancel sends `NOTIFY cynode_sched_cancel`. One listener
//!   connection per [`PgQueue`] turns them into [`QueueEvent`]s, so idle consumers
//!   wake within milliseconds instead of polling.
//! - **Time** is the database server's (`now()`), so replicas agree on leases and ticks.
//! - **Durability**: every call commits before it returns (`synchronous_commit` as the
//!   server has it; keep it `on` for acknowledged enqueues to survive a crash).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cron::{self, Schedule};
use crate::limits::{self, Bucket, Candidate, LimitSet, Usage};
use crate::memory::LEASE_EXPIRED;
use crate::model::*;
use crate::placement::Requirements;
use crate::sql::{MIGRATIONS_TABLE, check_version, db, map_migrate};
use crate::store::QueueStore;
use crate::{Error, JobId, NodeId, Result, Timestamp};

/// The job columns, qualified with `j.`, as a literal for `concat!`.
macro_rules! job_cols {
    () => {
        "j.id, j.queue, j.kind, j.payload, j.priority, j.state, j.attempt, j.max_attempts, \
    j.run_at, j.idempotency_key, j.concurrency_key, j.lease_id, j.lease_expires_at, j.worker_id, \
    j.last_error, j.result, j.reason, j.requirements, j.affinity_key, j.node_id, j.created_at, \
    j.started_at, j.ended_at, j.updated_at"
    };
}

const CH_JOBS: &str = "cynode_sched_jobs";
const CH_CANCEL: &str = "cynode_sched_cancel";
/// Advisory lock key serialising limited claims (any constant; ASCII "cyn_schd").
const LIMITS_LOCK: i64 = 0x6379_6e5f_7363_6864;
/// How many queued limited jobs one limited claim looks at.
const LIMITED_SCAN: i64 = 1000;

/// Connection settings of a [`PgQueue`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct PgQueueConfig {
    /// `postgres://user@host:port/db` URL.
    pub url: String,
    /// Pool size (default 10). The listener takes one more connection of its own.
    pub max_connections: u32,
    /// How long a call waits for a free connection (default 10 s).
    pub acquire_timeout: Duration,
    /// Listen for wake-ups (default true). Without it, consumers poll only.
    pub listen: bool,
}

impl Default for PgQueueConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            listen: true,
        }
    }
}

impl PgQueueConfig {
    /// Default settings for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

/// Aborts the listener task when the last clone of the queue goes.
#[derive(Debug)]
struct ListenerGuard(Option<JoinHandle<()>>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// "Is any limit configured?", remembered for a short while.
#[derive(Debug, Default)]
struct LimitCache(std::sync::Mutex<Option<(std::time::Instant, bool)>>);

impl LimitCache {
    const TTL: Duration = Duration::from_millis(250);
    fn get(&self) -> Option<bool> {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.filter(|(t, _)| t.elapsed() < Self::TTL).map(|(_, v)| v)
    }
    fn set(&self, v: bool) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), v));
    }
    fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The PostgreSQL queue. Cheap to clone (shared pool and listener).
#[derive(Clone, Debug)]
pub struct PgQueue {
    pool: PgPool,
    limit_cache: Arc<LimitCache>,
    events: broadcast::Sender<QueueEvent>,
    _listener: Arc<ListenerGuard>,
}

fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations/postgres");
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

impl PgQueue {
    /// Connects, brings the scheduler's tables up to date (refusing a newer schema with
    /// [`Error::SchemaTooNew`]) and starts listening for wake-ups.
    ///
    /// Errors: [`Error::InvalidInput`] for a malformed URL; [`Error::Unavailable`] when
    /// the server cannot be reached.
    pub async fn connect(config: &PgQueueConfig) -> Result<Self> {
        let opts = PgConnectOptions::from_str(&config.url)
            .map_err(|_| Error::invalid("the PostgreSQL URL is malformed"))?
            .application_name("cynode-sched");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(opts)
            .await
            .map_err(db("connect to PostgreSQL"))?;
        Self::migrate(&pool).await?;
        let (events, _) = broadcast::channel(4096);
        let limit_cache = Arc::new(LimitCache::default());
        let listener = if config.listen {
            Some(tokio::spawn(listen(
                pool.clone(),
                events.clone(),
                limit_cache.clone(),
            )))
        } else {
            None
        };
        Ok(Self {
            pool,
            limit_cache,
            events,
            _listener: Arc::new(ListenerGuard(listener)),
        })
    }

    async fn migrate(pool: &PgPool) -> Result<()> {
        let m = migrator();
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(MIGRATIONS_TABLE)
            .fetch_one(pool)
            .await
            .map_err(db("read the scheduler schema version"))?;
        let found: Option<i64> = if exists {
            sqlx::query_scalar("SELECT max(version) FROM _cynode_sched_migrations")
                .fetch_one(pool)
                .await
                .map_err(db("read the scheduler schema version"))?
        } else {
            None
        };
        check_version(found, &m)?;
        m.run(pool).await.map_err(map_migrate)
    }

    /// The schema version this build creates and understands.
    pub fn supported_schema_version() -> i64 {
        migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Closes the pool; later calls fail with [`Error::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self, action: &str) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db(action))
    }

    async fn notify_queues(&self, queues: &[String]) -> Result<()> {
        if queues.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q")
            .bind(CH_JOBS)
            .bind(queues)
            .execute(&self.pool)
            .await
            .map_err(db("send a wake-up"))?;
        Ok(())
    }

    async fn load_limits(
        &self,
        tx: &mut Transaction<'static, Postgres>,
    ) -> Result<Vec<(LimitScope, Limit)>> {
        let rows = sqlx::query(
            "SELECT scope, name, max_running, rate_max, rate_period_us FROM sched_limits ORDER BY scope, name",
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(db("read the limits"))?;
        rows.iter().map(limit_from_row).collect()
    }

    async fn claim_fast(&self, c: &Claim, max: i64, lease: Uuid) -> Result<Vec<Lease>> {
        // Jobs some limit applies to are left to the limited path. With one queue the
        // ready index gives the claim order directly; with several, each queue's head
        // is read through the index and the heads are merged.
        macro_rules! runnable {
            ($queue:literal) => {
                concat!(
                    "SELECT j.id, j.priority, j.run_at FROM sched_jobs j
                     WHERE j.state = 'queued' AND j.queue = ", $queue, " AND j.run_at <= now()
                       AND (cardinality($2::text[]) = 0 OR j.kind = ANY($2))
                       AND NOT EXISTS (
                           SELECT 1 FROM sched_limits l
                           WHERE (l.scope = 'queue' AND l.name = j.queue)
                              OR (l.scope = 'kind' AND l.name = j.kind)
                              OR (j.concurrency_key IS NOT NULL
                                  AND (l.scope = 'each_key' OR (l.scope = 'key' AND l.name = j.concurrency_key))))
                     ORDER BY j.priority, j.run_at, j.id
                     LIMIT $3
                     FOR UPDATE OF j SKIP LOCKED"
                )
            };
        }
        macro_rules! claim_sql {
            ($pick:expr) => {
                concat!(
                    "WITH c AS (", $pick, ")
                     UPDATE sched_jobs j SET state = 'running', attempt = j.attempt + 1, lease_id = $4,
                            lease_expires_at = now() + $5 * interval '1 microsecond', worker_id = $6,
                            started_at = now(), updated_at = now()
                     FROM c WHERE j.id = c.id
                     RETURNING ",
                    job_cols!()
                )
            };
        }
        const ONE: &str = claim_sql!(runnable!("($1::text[])[1]"));
        const MANY: &str = claim_sql!(concat!(
            "SELECT x.id FROM unnest($1::text[]) AS qn(q) CROSS JOIN LATERAL (",
            runnable!("qn.q"),
            ") x ORDER BY x.priority, x.run_at, x.id LIMIT $3"
        ));
        let sql = if c.queues.len() == 1 { ONE } else { MANY };
        let rows = sqlx::query(sql)
            .bind(&c.queues)
            .bind(&c.kinds)
            .bind(max)
            .bind(lease)
            .bind(micros(c.lease_ttl))
            .bind(&c.worker_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("claim jobs"))?;
        rows.iter()
            .map(|r| {
                Ok(Lease {
                    job: job_from_row(r)?,
                    lease_id: lease,
                })
            })
            .collect()
    }

    /// Whether any limit may exist: cached briefly, refreshed at once when a limit
    /// changes (locally or, through the listener, on another replica).
    async fn limits_may_exist(&self) -> Result<bool> {
        if let Some(v) = self.limit_cache.get() {
            return Ok(v);
        }
        let v: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sched_limits)")
            .fetch_one(&self.pool)
            .await
            .map_err(db("read the limits"))?;
        self.limit_cache.set(v);
        Ok(v)
    }

    async fn claim_limited(&self, c: &Claim, max: usize, lease: Uuid) -> Result<Vec<Lease>> {
        const ACTION: &str = "claim jobs under limits";
        let mut tx = self.begin(ACTION).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LIMITS_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let set = LimitSet::from_pairs(self.load_limits(&mut tx).await?);
        if set.is_empty() {
            return Ok(Vec::new());
        }
        let ex = set.exclusions();
        let now: Timestamp = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let cand_rows = sqlx::query(
            "SELECT id, queue, kind, concurrency_key FROM sched_jobs
             WHERE state = 'queued' AND queue = ANY($1) AND run_at <= now()
               AND (cardinality($2::text[]) = 0 OR kind = ANY($2))
               AND (queue = ANY($3) OR kind = ANY($4)
                    OR (concurrency_key IS NOT NULL AND ($5 OR concurrency_key = ANY($6))))
             ORDER BY priority, run_at, id
             LIMIT $7",
        )
        .bind(&c.queues)
        .bind(&c.kinds)
        .bind(&ex.queues)
        .bind(&ex.kinds)
        .bind(ex.all_keys)
        .bind(&ex.keys)
        .bind(LIMITED_SCAN)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        if cand_rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(cand_rows.len());
        let mut cands = Vec::with_capacity(cand_rows.len());
        for r in &cand_rows {
            ids.push(r.try_get::<Uuid, _>("id").map_err(db(ACTION))?);
            cands.push(Candidate {
                queue: r.try_get("queue").map_err(db(ACTION))?,
                kind: r.try_get("kind").map_err(db(ACTION))?,
                key: r.try_get("concurrency_key").map_err(db(ACTION))?,
            });
        }
        let mut usage = Usage::default();
        let running = sqlx::query(
            "SELECT queue, kind, concurrency_key, count(*) AS n FROM sched_jobs
             WHERE state = 'running' GROUP BY queue, kind, concurrency_key",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        for r in &running {
            let q: String = r.try_get("queue").map_err(db(ACTION))?;
            let k: String = r.try_get("kind").map_err(db(ACTION))?;
            let key: Option<String> = r.try_get("concurrency_key").map_err(db(ACTION))?;
            let n: i64 = r.try_get("n").map_err(db(ACTION))?;
            let n = u64::try_from(n).unwrap_or(0);
            *usage.running.entry(("queue", q)).or_default() += n;
            *usage.running.entry(("kind", k)).or_default() += n;
            if let Some(key) = key {
                *usage.running.entry(("key", key)).or_default() += n;
            }
        }
        let buckets =
            sqlx::query("SELECT scope, name, tokens, refreshed_at FROM sched_rate_buckets")
                .fetch_all(&mut *tx)
                .await
                .map_err(db(ACTION))?;
        for r in &buckets {
            let scope: String = r.try_get("scope").map_err(db(ACTION))?;
            let scope: &'static str = match scope.as_str() {
                "queue" => "queue",
                "kind" => "kind",
                _ => "key",
            };
            usage.buckets.insert(
                (scope, r.try_get("name").map_err(db(ACTION))?),
                Bucket {
                    tokens: r.try_get("tokens").map_err(db(ACTION))?,
                    refreshed_at: r.try_get("refreshed_at").map_err(db(ACTION))?,
                },
            );
        }
        let picked = limits::select(&set, &cands, &mut usage, now, max);
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let chosen: Vec<Uuid> = picked.iter().map(|&i| ids[i]).collect();
        let sql = concat!(
            "UPDATE sched_jobs j SET state = 'running', attempt = j.attempt + 1, lease_id = $2,
                    lease_expires_at = now() + $3 * interval '1 microsecond', worker_id = $4,
                    started_at = now(), updated_at = now()
             WHERE j.id = ANY($1) AND j.state = 'queued'
             RETURNING ",
            job_cols!()
        );
        let rows = sqlx::query(sql)
            .bind(&chosen)
            .bind(lease)
            .bind(micros(c.lease_ttl))
            .bind(&c.worker_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let (mut scopes, mut names, mut tokens, mut times) = (vec![], vec![], vec![], vec![]);
        for id in &usage.touched {
            if let Some(b) = usage.buckets.get(id) {
                scopes.push(id.0.to_string());
                names.push(id.1.clone());
                tokens.push(b.tokens);
                times.push(b.refreshed_at);
            }
        }
        if !scopes.is_empty() {
            sqlx::query(
                "INSERT INTO sched_rate_buckets (scope, name, tokens, refreshed_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::timestamptz[])
                 ON CONFLICT (scope, name) DO UPDATE
                 SET tokens = EXCLUDED.tokens, refreshed_at = EXCLUDED.refreshed_at",
            )
            .bind(&scopes)
            .bind(&names)
            .bind(&tokens)
            .bind(&times)
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        }
        tx.commit().await.map_err(db(ACTION))?;
        rows.iter()
            .map(|r| {
                Ok(Lease {
                    job: job_from_row(r)?,
                    lease_id: lease,
                })
            })
            .collect()
    }
}

/// Forwards notifications to the event channel, reconnecting after connection loss.
async fn listen(pool: PgPool, events: broadcast::Sender<QueueEvent>, limit_cache: Arc<LimitCache>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut l = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect the wake-up listener; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = l.listen_all([CH_JOBS, CH_CANCEL]).await {
            tracing::warn!(error = %e, "cannot subscribe the wake-up listener; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(100);
        // Anything sent while we were not listening is lost: wake every consumer once.
        limit_cache.clear();
        let _ = events.send(QueueEvent::JobsAvailable(None));
        loop {
            match l.try_recv().await {
                Ok(Some(n)) => {
                    let ev = if n.channel() == CH_CANCEL {
                        match Uuid::parse_str(n.payload()) {
                            Ok(id) => QueueEvent::Canceled(JobId(id)),
                            Err(_) => continue,
                        }
                    } else {
                        match n.payload() {
                            "*" => {
                                limit_cache.clear();
                                QueueEvent::JobsAvailable(None)
                            }
                            q => QueueEvent::JobsAvailable(Some(q.to_string())),
                        }
                    };
                    let _ = events.send(ev);
                }
                Ok(None) => {
                    let _ = events.send(QueueEvent::JobsAvailable(None));
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the wake-up listener lost its connection");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    break;
                }
            }
        }
    }
}

fn corrupt(col: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Internal {
        message: format!("stored value of column {col} could not be read"),
        source: Some(Box::new(e)),
    }
}

fn job_from_row(r: &PgRow) -> Result<Job> {
    const A: &str = "read a job";
    let state: String = r.try_get("state").map_err(db(A))?;
    let attempt: i32 = r.try_get("attempt").map_err(db(A))?;
    let max_attempts: i32 = r.try_get("max_attempts").map_err(db(A))?;
    let requirements: Option<Value> = r.try_get("requirements").map_err(db(A))?;
    let placement = requirements
        .map(serde_json::from_value::<Requirements>)
        .transpose()
        .map_err(|e| corrupt("requirements", e))?;
    Ok(Job {
        id: JobId(r.try_get("id").map_err(db(A))?),
        queue: r.try_get("queue").map_err(db(A))?,
        kind: r.try_get("kind").map_err(db(A))?,
        payload: r.try_get("payload").map_err(db(A))?,
        priority: r.try_get("priority").map_err(db(A))?,
        state: state.parse().map_err(|e: Error| corrupt("state", e))?,
        attempt: u32::try_from(attempt).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(1),
        run_at: r.try_get("run_at").map_err(db(A))?,
        idempotency_key: r.try_get("idempotency_key").map_err(db(A))?,
        concurrency_key: r.try_get("concurrency_key").map_err(db(A))?,
        lease_id: r.try_get("lease_id").map_err(db(A))?,
        lease_expires_at: r.try_get("lease_expires_at").map_err(db(A))?,
        worker_id: r.try_get("worker_id").map_err(db(A))?,
        last_error: r.try_get("last_error").map_err(db(A))?,
        result: r.try_get("result").map_err(db(A))?,
        reason: r.try_get("reason").map_err(db(A))?,
        placement,
        affinity_key: r.try_get("affinity_key").map_err(db(A))?,
        node_id: r
            .try_get::<Option<Uuid>, _>("node_id")
            .map_err(db(A))?
            .map(NodeId),
        created_at: r.try_get("created_at").map_err(db(A))?,
        started_at: r.try_get("started_at").map_err(db(A))?,
        ended_at: r.try_get("ended_at").map_err(db(A))?,
        updated_at: r.try_get("updated_at").map_err(db(A))?,
    })
}

fn limit_from_row(r: &PgRow) -> Result<(LimitScope, Limit)> {
    const A: &str = "read a limit";
    let scope: String = r.try_get("scope").map_err(db(A))?;
    let name: String = r.try_get("name").map_err(db(A))?;
    let max_running: Option<i32> = r.try_get("max_running").map_err(db(A))?;
    let rate_max: Option<i32> = r.try_get("rate_max").map_err(db(A))?;
    let period: Option<i64> = r.try_get("rate_period_us").map_err(db(A))?;
    Ok((
        LimitScope::from_parts(&scope, &name)?,
        limits::limit_from_parts(max_running.map(i64::from), rate_max.map(i64::from), period),
    ))
}

fn cron_from_row(r: &PgRow) -> Result<CronEntry> {
    const A: &str = "read a cron entry";
    let job: Value = r.try_get("job").map_err(db(A))?;
    Ok(CronEntry {
        cron: CronJob {
            name: r.try_get("name").map_err(db(A))?,
            schedule: r.try_get("schedule").map_err(db(A))?,
            time_zone: r.try_get("time_zone").map_err(db(A))?,
            job: serde_json::from_value(job).map_err(|e| corrupt("job", e))?,
            enabled: r.try_get("enabled").map_err(db(A))?,
        },
        next_run_at: r.try_get("next_run_at").map_err(db(A))?,
        last_fired_at: r.try_get("last_fired_at").map_err(db(A))?,
    })
}

/// Columns of a batch of new jobs, as arrays for `unnest`.
#[derive(Default)]
struct NewCols {
    id: Vec<Uuid>,
    queue: Vec<String>,
    kind: Vec<String>,
    payload: Vec<Value>,
    priority: Vec<i16>,
    max_attempts: Vec<i32>,
    run_at: Vec<Option<Timestamp>>,
    ikey: Vec<Option<String>>,
    ckey: Vec<Option<String>>,
    req: Vec<Option<Value>>,
    akey: Vec<Option<String>>,
}

impl NewCols {
    fn push(&mut self, j: NewJob) -> Result<()> {
        self.id.push(j.id.map_or_else(Uuid::now_v7, |i| i.0));
        self.queue.push(j.queue);
        self.kind.push(j.kind);
        self.payload.push(j.payload);
        self.priority.push(j.priority);
        self.max_attempts.push(
            i32::try_from(j.max_attempts)
                .map_err(|_| Error::invalid("max_attempts is too large"))?,
        );
        self.run_at.push(j.run_at);
        self.ikey.push(j.idempotency_key);
        self.ckey.push(j.concurrency_key);
        self.req.push(
            j.placement
                .map(|p| {
                    serde_json::to_value(p)
                        .map_err(|e| Error::internal(format!("encode placement: {e}")))
                })
                .transpose()?,
        );
        self.akey.push(j.affinity_key);
        Ok(())
    }
}

const INSERT_JOBS: &str = "
    WITH ins AS (
        INSERT INTO sched_jobs (id, queue, kind, payload, priority, state, max_attempts, run_at,
                                idempotency_key, concurrency_key, requirements, affinity_key,
                                created_at, updated_at)
        SELECT t.id, t.queue, t.kind, t.payload, t.priority, 'queued', t.max_attempts,
               coalesce(t.run_at, now()), t.ikey, t.ckey, t.req, t.akey, now(), now()
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], $6::int4[],
                    $7::timestamptz[], $8::text[], $9::text[], $10::jsonb[], $11::text[])
             AS t(id, queue, kind, payload, priority, max_attempts, run_at, ikey, ckey, req, akey)
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id, queue
    )
    SELECT id, (SELECT count(pg_notify($12, q)) FROM (SELECT DISTINCT queue AS q FROM ins) d) AS n
    FROM ins";

#[async_trait]
impl QueueStore for PgQueue {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn events(&self) -> broadcast::Receiver<QueueEvent> {
        self.events.subscribe()
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        const ACTION: &str = "enqueue jobs";
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut cols = NewCols::default();
        for j in jobs {
            j.validate()?;
            cols.push(j)?;
        }
        let rows = sqlx::query(INSERT_JOBS)
            .bind(&cols.id)
            .bind(&cols.queue)
            .bind(&cols.kind)
            .bind(&cols.payload)
            .bind(&cols.priority)
            .bind(&cols.max_attempts)
            .bind(&cols.run_at)
            .bind(&cols.ikey)
            .bind(&cols.ckey)
            .bind(&cols.req)
            .bind(&cols.akey)
            .bind(CH_JOBS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                    Error::conflict("a job with one of these ids already exists")
                }
                _ => crate::sql::map_sqlx(ACTION, e),
            })?;
        let inserted: HashSet<Uuid> = rows
            .iter()
            .map(|r| r.try_get::<Uuid, _>("id"))
            .collect::<std::result::Result<_, _>>()
            .map_err(db(ACTION))?;
        let missing_keys: Vec<String> = cols
            .id
            .iter()
            .zip(&cols.ikey)
            .filter(|(id, _)| !inserted.contains(id))
            .filter_map(|(_, k)| k.clone())
            .collect();
        let mut by_key: HashMap<String, Uuid> = HashMap::new();
        if !missing_keys.is_empty() {
            let rows = sqlx::query(
                "SELECT id, idempotency_key FROM sched_jobs WHERE idempotency_key = ANY($1)",
            )
            .bind(&missing_keys)
            .fetch_all(&self.pool)
            .await
            .map_err(db(ACTION))?;
            for r in rows {
                by_key.insert(
                    r.try_get("idempotency_key").map_err(db(ACTION))?,
                    r.try_get("id").map_err(db(ACTION))?,
                );
            }
        }
        cols.id
            .iter()
            .zip(&cols.ikey)
            .map(|(id, key)| {
                if inserted.contains(id) {
                    return Ok(Enqueued {
                        id: JobId(*id),
                        created: true,
                    });
                }
                key.as_ref()
                    .and_then(|k| by_key.get(k))
                    .map(|existing| Enqueued {
                        id: JobId(*existing),
                        created: false,
                    })
                    .ok_or_else(|| {
                        Error::conflict(
                            "a job with the same idempotency key was removed meanwhile; retry",
                        )
                    })
            })
            .collect()
    }

    async fn get(&self, id: JobId) -> Result<Job> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_cols!(),
            " FROM sched_jobs j WHERE j.id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("read a job"))?
        .ok_or_else(|| Error::not_found("job", id))?;
        job_from_row(&row)
    }

    async fn claim(&self, c: &Claim) -> Result<Vec<Lease>> {
        if c.max == 0 || c.queues.is_empty() {
            return Ok(Vec::new());
        }
        let max = usize::try_from(c.max).unwrap_or(usize::MAX);
        let lease = Uuid::new_v4();
        let mut out = self.claim_fast(c, i64::from(c.max), lease).await?;
        if out.len() < max && self.limits_may_exist().await? {
            let more = self.claim_limited(c, max - out.len(), lease).await?;
            out.extend(more);
        }
        out.sort_by(|a, b| {
            (a.job.priority, a.job.run_at, a.job.id).cmp(&(b.job.priority, b.job.run_at, b.job.id))
        });
        Ok(out)
    }

    async fn heartbeat(
        &self,
        held: &[(JobId, Uuid)],
        ttl: Duration,
    ) -> Result<Vec<HeartbeatStatus>> {
        const ACTION: &str = "renew leases";
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = held.iter().map(|h| h.0.0).collect();
        let leases: Vec<Uuid> = held.iter().map(|h| h.1).collect();
        let rows = sqlx::query(
            "UPDATE sched_jobs j SET lease_expires_at = now() + $3 * interval '1 microsecond', updated_at = now()
             FROM unnest($1::uuid[], $2::uuid[]) AS h(id, lease)
             WHERE j.id = h.id AND j.lease_id = h.lease AND j.state = 'running'
             RETURNING j.id, j.lease_id",
        )
        .bind(&ids)
        .bind(&leases)
        .bind(micros(ttl))
        .fetch_all(&self.pool)
        .await
        .map_err(db(ACTION))?;
        let mut renewed: HashSet<(Uuid, Uuid)> = HashSet::with_capacity(rows.len());
        for r in &rows {
            renewed.insert((
                r.try_get("id").map_err(db(ACTION))?,
                r.try_get("lease_id").map_err(db(ACTION))?,
            ));
        }
        let mut canceled = HashSet::new();
        if renewed.len() < held.len() {
            let rest: Vec<Uuid> = held
                .iter()
                .filter(|(id, l)| !renewed.contains(&(id.0, *l)))
                .map(|(id, _)| id.0)
                .collect();
            let rows = sqlx::query(
                "SELECT id, lease_id FROM sched_jobs WHERE id = ANY($1) AND state = 'canceled'",
            )
            .bind(&rest)
            .fetch_all(&self.pool)
            .await
            .map_err(db(ACTION))?;
            for r in rows {
                let id: Uuid = r.try_get("id").map_err(db(ACTION))?;
                let lease: Option<Uuid> = r.try_get("lease_id").map_err(db(ACTION))?;
                if let Some(l) = lease {
                    canceled.insert((id, l));
                }
            }
        }
        Ok(held
            .iter()
            .map(|(id, lease)| {
                if renewed.contains(&(id.0, *lease)) {
                    HeartbeatStatus::Renewed
                } else if canceled.contains(&(id.0, *lease)) {
                    HeartbeatStatus::Canceled
                } else {
                    HeartbeatStatus::Lost
                }
            })
            .collect())
    }

    async fn finish(&self, done: &[Finish]) -> Result<Vec<FinishResult>> {
        const ACTION: &str = "record job outcomes";
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let n = done.len();
        let (mut ids, mut leases, mut kinds) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut results, mut errors, mut delays) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for f in done {
            ids.push(f.job_id.0);
            leases.push(f.lease_id);
            let (k, r, e, d) = match &f.outcome {
                Outcome::Completed { result } => ("completed", result.clone(), None, 0),
                Outcome::Retry { error, delay } => {
                    ("retry", None, Some(error.clone()), micros(*delay))
                }
                Outcome::Failed { error } => ("failed", None, Some(error.clone()), 0),
                Outcome::Snooze { delay, reason } => {
                    ("snooze", None, reason.clone(), micros(*delay))
                }
            };
            kinds.push(k);
            results.push(r);
            errors.push(e);
            delays.push(d);
        }
        let rows = sqlx::query(
            "UPDATE sched_jobs j SET
                 state = CASE f.kind WHEN 'completed' THEN 'completed' WHEN 'failed' THEN 'failed'
                                     WHEN 'snooze' THEN 'queued'
                                     ELSE CASE WHEN j.attempt < j.max_attempts THEN 'queued' ELSE 'failed' END END,
                 result = CASE WHEN f.kind = 'completed' THEN f.result ELSE j.result END,
                 last_error = CASE WHEN f.kind IN ('retry', 'failed') THEN f.error ELSE j.last_error END,
                 reason = CASE WHEN f.kind = 'snooze' THEN f.error WHEN f.kind = 'completed' THEN NULL ELSE j.reason END,
                 attempt = CASE WHEN f.kind = 'snooze' THEN greatest(j.attempt - 1, 0) ELSE j.attempt END,
                 run_at = CASE WHEN f.kind IN ('retry', 'snooze') THEN now() + f.delay * interval '1 microsecond'
                               ELSE j.run_at END,
                 ended_at = CASE WHEN f.kind IN ('completed', 'failed')
                                   OR (f.kind = 'retry' AND j.attempt >= j.max_attempts) THEN now() END,
                 lease_id = NULL, lease_expires_at = NULL, updated_at = now()
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::int8[])
                  AS f(id, lease, kind, result, error, delay)
             WHERE j.id = f.id AND j.lease_id = f.lease AND j.state = 'running'
             RETURNING j.id, j.state, j.queue",
        )
        .bind(&ids)
        .bind(&leases)
        .bind(&kinds)
        .bind(&results)
        .bind(&errors)
        .bind(&delays)
        .fetch_all(&self.pool)
        .await
        .map_err(db(ACTION))?;
        let mut applied: HashMap<Uuid, JobState> = HashMap::with_capacity(rows.len());
        let mut requeued: Vec<String> = Vec::new();
        for r in &rows {
            let id: Uuid = r.try_get("id").map_err(db(ACTION))?;
            let state: String = r.try_get("state").map_err(db(ACTION))?;
            let state: JobState = state.parse().map_err(|e: Error| corrupt("state", e))?;
            if state == JobState::Queued {
                let q: String = r.try_get("queue").map_err(db(ACTION))?;
                if !requeued.contains(&q) {
                    requeued.push(q);
                }
            }
            applied.insert(id, state);
        }
        if !requeued.is_empty()
            && let Err(e) = self.notify_queues(&requeued).await
        {
            tracing::debug!(error = %e, "wake-up after re-queue not sent; consumers will poll");
        }
        Ok(done
            .iter()
            .map(|f| {
                applied
                    .get(&f.job_id.0)
                    .map_or(FinishResult::Stale, |s| FinishResult::Applied(*s))
            })
            .collect())
    }

    async fn assign_node(&self, job: JobId, lease: Uuid, node: NodeId) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE sched_jobs SET node_id = $3, reason = NULL, updated_at = now()
             WHERE id = $1 AND lease_id = $2 AND state = 'running'",
        )
        .bind(job.0)
        .bind(lease)
        .bind(node.0)
        .execute(&self.pool)
        .await
        .map_err(db("record a job's node"))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn cancel(&self, id: JobId) -> Result<CancelResult> {
        const ACTION: &str = "cancel a job";
        let mut tx = self.begin(ACTION).await?;
        let row = sqlx::query("SELECT state FROM sched_jobs WHERE id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(ACTION))?
            .ok_or_else(|| Error::not_found("job", id))?;
        let state: String = row.try_get("state").map_err(db(ACTION))?;
        let state: JobState = state.parse().map_err(|e: Error| corrupt("state", e))?;
        if state.is_terminal() {
            return Ok(CancelResult::AlreadyFinished(state));
        }
        sqlx::query(
            "UPDATE sched_jobs SET state = 'canceled', ended_at = now(), updated_at = now(),
                    lease_expires_at = NULL
             WHERE id = $1",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CH_CANCEL)
            .bind(id.0.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(CancelResult::Canceled {
            was_running: state == JobState::Running,
        })
    }

    async fn reap_expired(&self) -> Result<u64> {
        let rows = sqlx::query(
            "UPDATE sched_jobs SET
                 state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
                 ended_at = CASE WHEN attempt >= max_attempts THEN now() END,
                 run_at = now(), last_error = $1, lease_id = NULL, lease_expires_at = NULL,
                 updated_at = now()
             WHERE state = 'running' AND lease_expires_at <= now()
             RETURNING state, queue",
        )
        .bind(LEASE_EXPIRED)
        .fetch_all(&self.pool)
        .await
        .map_err(db("re-queue expired jobs"))?;
        let mut queues = Vec::new();
        for r in &rows {
            let state: String = r.try_get("state").map_err(db("re-queue expired jobs"))?;
            let q: String = r.try_get("queue").map_err(db("re-queue expired jobs"))?;
            if state == "queued" && !queues.contains(&q) {
                queues.push(q);
            }
        }
        if let Err(e) = self.notify_queues(&queues).await {
            tracing::debug!(error = %e, "wake-up after reaping not sent; consumers will poll");
        }
        Ok(rows.len() as u64)
    }

    async fn set_limit(&self, scope: &LimitScope, limit: &Limit) -> Result<()> {
        scope.validate()?;
        limit.validate()?;
        let (s, n) = scope.parts();
        sqlx::query(
            "INSERT INTO sched_limits (scope, name, max_running, rate_max, rate_period_us)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (scope, name) DO UPDATE SET max_running = EXCLUDED.max_running,
                 rate_max = EXCLUDED.rate_max, rate_period_us = EXCLUDED.rate_period_us",
        )
        .bind(s)
        .bind(n)
        .bind(
            limit
                .max_running
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
        )
        .bind(limit.rate.map(|r| i32::try_from(r.max).unwrap_or(i32::MAX)))
        .bind(limit.rate.map(|r| micros(r.per)))
        .execute(&self.pool)
        .await
        .map_err(db("set a limit"))?;
        self.limit_cache.clear();
        self.notify_queues(&["*".to_string()]).await.ok();
        Ok(())
    }

    async fn remove_limit(&self, scope: &LimitScope) -> Result<bool> {
        let (s, n) = scope.parts();
        let removed = sqlx::query("DELETE FROM sched_limits WHERE scope = $1 AND name = $2")
            .bind(s)
            .bind(n)
            .execute(&self.pool)
            .await
            .map_err(db("remove a limit"))?
            .rows_affected()
            == 1;
        self.limit_cache.clear();
        if removed {
            self.notify_queues(&["*".to_string()]).await.ok();
        }
        Ok(removed)
    }

    async fn limits(&self) -> Result<Vec<(LimitScope, Limit)>> {
        let rows = sqlx::query(
            "SELECT scope, name, max_running, rate_max, rate_period_us FROM sched_limits ORDER BY scope, name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("read the limits"))?;
        rows.iter().map(limit_from_row).collect()
    }

    async fn put_cron(&self, c: &CronJob) -> Result<CronEntry> {
        let schedule = cron::validate(c)?;
        let now = self.now().await?;
        let next = schedule.next_after(now)?;
        let job = serde_json::to_value(&c.job)
            .map_err(|e| Error::internal(format!("encode a cron job: {e}")))?;
        let row = sqlx::query(
            "INSERT INTO sched_cron (name, schedule, time_zone, job, enabled, next_run_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, now(), now())
             ON CONFLICT (name) DO UPDATE SET
                 next_run_at = CASE WHEN sched_cron.schedule = EXCLUDED.schedule
                                     AND sched_cron.time_zone IS NOT DISTINCT FROM EXCLUDED.time_zone
                                    THEN sched_cron.next_run_at ELSE EXCLUDED.next_run_at END,
                 schedule = EXCLUDED.schedule, time_zone = EXCLUDED.time_zone, job = EXCLUDED.job,
                 enabled = EXCLUDED.enabled, updated_at = now()
             RETURNING name, schedule, time_zone, job, enabled, next_run_at, last_fired_at",
        )
        .bind(&c.name)
        .bind(&c.schedule)
        .bind(&c.time_zone)
        .bind(job)
        .bind(c.enabled)
        .bind(next)
        .fetch_one(&self.pool)
        .await
        .map_err(db("store a cron entry"))?;
        cron_from_row(&row)
    }

    async fn remove_cron(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM sched_cron WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("remove a cron entry"))?
            .rows_affected()
            == 1)
    }

    async fn list_cron(&self) -> Result<Vec<CronEntry>> {
        let rows = sqlx::query(
            "SELECT name, schedule, time_zone, job, enabled, next_run_at, last_fired_at FROM sched_cron ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("list cron entries"))?;
        rows.iter().map(cron_from_row).collect()
    }

    async fn fire_due_cron(&self) -> Result<Vec<JobId>> {
        const ACTION: &str = "fire cron entries";
        let rows = sqlx::query(
            "SELECT name, schedule, time_zone, job, enabled, next_run_at, last_fired_at, now() AS db_now
             FROM sched_cron WHERE enabled AND next_run_at <= now() ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db(ACTION))?;
        let mut fired = Vec::new();
        for r in &rows {
            let e = cron_from_row(r)?;
            let now: Timestamp = r.try_get("db_now").map_err(db(ACTION))?;
            let schedule = match Schedule::parse(&e.cron.schedule, e.cron.time_zone.as_deref()) {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(cron = %e.cron.name, error = %err, "stored cron entry cannot be parsed");
                    continue;
                }
            };
            let next = cron::next_after_due(&schedule, e.next_run_at, now)?;
            let mut tx = self.begin(ACTION).await?;
            // Only the replica whose conditional update wins fires this tick.
            let won = sqlx::query(
                "UPDATE sched_cron SET next_run_at = $3, last_fired_at = $2, updated_at = now()
                 WHERE name = $1 AND next_run_at = $2 AND enabled",
            )
            .bind(&e.cron.name)
            .bind(e.next_run_at)
            .bind(next)
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?
            .rows_affected()
                == 1;
            if !won {
                continue;
            }
            let mut job = e.cron.job.clone();
            job.id = None;
            job.run_at = None;
            job.idempotency_key = Some(cron::tick_key(&e.cron.name, e.next_run_at));
            job.validate()?;
            let mut cols = NewCols::default();
            cols.push(job)?;
            let ins = sqlx::query(INSERT_JOBS)
                .bind(&cols.id)
                .bind(&cols.queue)
                .bind(&cols.kind)
                .bind(&cols.payload)
                .bind(&cols.priority)
                .bind(&cols.max_attempts)
                .bind(&cols.run_at)
                .bind(&cols.ikey)
                .bind(&cols.ckey)
                .bind(&cols.req)
                .bind(&cols.akey)
                .bind(CH_JOBS)
                .fetch_all(&mut *tx)
                .await
                .map_err(db(ACTION))?;
            tx.commit().await.map_err(db(ACTION))?;
            for r in ins {
                fired.push(JobId(r.try_get("id").map_err(db(ACTION))?));
            }
        }
        Ok(fired)
    }

    async fn node_loads(&self) -> Result<HashMap<NodeId, u32>> {
        let rows = sqlx::query(
            "SELECT node_id, count(*) AS n FROM sched_jobs
             WHERE state = 'running' AND node_id IS NOT NULL GROUP BY node_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("count jobs per node"))?;
        let mut out = HashMap::new();
        for r in rows {
            let id: Uuid = r.try_get("node_id").map_err(db("count jobs per node"))?;
            let n: i64 = r.try_get("n").map_err(db("count jobs per node"))?;
            out.insert(NodeId(id), u32::try_from(n).unwrap_or(u32::MAX));
        }
        Ok(out)
    }

    async fn affinity_node(&self, key: &str) -> Result<Option<NodeId>> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT node_id FROM sched_jobs WHERE affinity_key = $1 AND node_id IS NOT NULL
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("find a job's co-located node"))?;
        Ok(id.map(NodeId))
    }

    async fn stats(&self, queue: Option<&str>) -> Result<QueueStats> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS n FROM sched_jobs WHERE ($1::text IS NULL OR queue = $1) GROUP BY state",
        )
        .bind(queue)
        .fetch_all(&self.pool)
        .await
        .map_err(db("count jobs"))?;
        let mut s = QueueStats::default();
        for r in rows {
            let state: String = r.try_get("state").map_err(db("count jobs"))?;
            let n: i64 = r.try_get("n").map_err(db("count jobs"))?;
            s.add(
                state.parse().map_err(|e: Error| corrupt("state", e))?,
                u64::try_from(n).unwrap_or(0),
            );
        }
        Ok(s)
    }

    async fn prune(&self, before: Timestamp) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM sched_jobs WHERE state IN ('completed', 'failed', 'canceled') AND ended_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(db("delete finished jobs"))?
        .rows_affected())
    }

    async fn now(&self) -> Result<Timestamp> {
        sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await
            .map_err(db("read the database time"))
    }
}
