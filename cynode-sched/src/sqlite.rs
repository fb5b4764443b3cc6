//! The SQLite backend: one file, zero setup.
//!
//! SQLite allows one writer at a time, so every write runs in a `BEGIN IMMEDIATE`
//! transaction on a single writer connection: claims, finishes and limit checks are
//! serialised by the database itself, and a second process on the same file waits for
//! the lock instead of failing half-way. Reads use a small pool of read-only
//! connections (WAL mode). The journal is synced at every commit (`synchronous =
//! FULL`), so an acknowledged enqueue survives a crash or power loss. Wake-ups are
//! in-process only; consumers in other processes poll. Times come from an injectable
//! [`Clock`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::cron::{self, Schedule};
use crate::limits::{self, Bucket, Candidate, LimitSet, Usage};
use crate::memory::LEASE_EXPIRED;
use crate::model::*;
use crate::placement::Requirements;
use crate::sql::{MIGRATIONS_TABLE, check_version, db, map_migrate};
use crate::store::QueueStore;
use crate::{Error, JobId, NodeId, Result, Timestamp};

const JOB_COLS: &str = "id, queue, kind, payload, priority, state, attempt, max_attempts, run_at, \
    idempotency_key, concurrency_key, lease_id, lease_expires_at, worker_id, last_error, result, reason, \
    requirements, affinity_key, node_id, created_at, started_at, ended_at, updated_at";

/// How many queued jobs one claim under limits looks at.
const LIMITED_SCAN: i64 = 1000;

/// Where a [`SqliteQueue`] keeps its data.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SqliteQueueConfig {
    /// Database file (created with its directory if missing); a private in-memory
    /// database when `None`.
    pub path: Option<PathBuf>,
    /// How long a write waits for another process's lock (default 10 s).
    pub busy_timeout: Option<Duration>,
}

/// The SQLite queue. Cheap to clone (shared pools).
#[derive(Clone, Debug)]
pub struct SqliteQueue {
    writer: SqlitePool,
    reader: SqlitePool,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<QueueEvent>,
}

fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations/sqlite");
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

fn ts(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

fn from_ts(col: &str, v: i64) -> Result<Timestamp> {
    chrono::DateTime::from_timestamp_micros(v)
        .ok_or_else(|| Error::internal(format!("stored value of column {col} is out of range")))
}

fn corrupt(col: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Internal {
        message: format!("stored value of column {col} could not be read"),
        source: Some(Box::new(e)),
    }
}

fn json_list(v: &[String]) -> String {
    serde_json::Value::from(v.to_vec()).to_string()
}

impl SqliteQueue {
    /// Opens (creating if missing) the database and brings the scheduler's tables up to
    /// date, refusing a newer schema with [`Error::SchemaTooNew`].
    pub async fn open(config: &SqliteQueueConfig) -> Result<Self> {
        let busy = config.busy_timeout.unwrap_or(Duration::from_secs(10));
        let (writer, reader) = match &config.path {
            None => {
                let opts = SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(db("open an in-memory SQLite database"))?;
                let pool = pool(1)
                    .connect_with(opts)
                    .await
                    .map_err(db("open an in-memory SQLite database"))?;
                (pool.clone(), pool)
            }
            Some(path) => Self::open_file(path, busy).await?,
        };
        let m = migrator();
        let exists: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        )
        .bind(MIGRATIONS_TABLE)
        .fetch_one(&writer)
        .await
        .map_err(db("read the scheduler schema version"))?;
        if exists {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT max(version) FROM _cynode_sched_migrations")
                    .fetch_one(&writer)
                    .await
                    .map_err(db("read the scheduler schema version"))?;
            check_version(found, &m)?;
        }
        m.run(&writer).await.map_err(map_migrate)?;
        Ok(Self {
            writer,
            reader,
            clock: Arc::new(SystemClock),
            events: broadcast::channel(4096).0,
        })
    }

    /// Opens the database file at `path` with default settings.
    pub async fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(&SqliteQueueConfig {
            path: Some(path.as_ref().to_path_buf()),
            ..SqliteQueueConfig::default()
        })
        .await
    }

    async fn open_file(path: &Path, busy: Duration) -> Result<(SqlitePool, SqlitePool)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::Unavailable {
                message: format!(
                    "cannot create the directory {} for the queue database",
                    parent.display()
                ),
                source: Some(Box::new(e)),
            })?;
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(busy)
            .synchronous(SqliteSynchronous::Full);
        let action = format!("open the SQLite queue database at {}", path.display());
        let writer = pool(1)
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal),
            )
            .await
            .map_err(db(&action))?;
        let reader = pool(4)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(db(&action))?;
        Ok((writer, reader))
    }

    /// Uses `clock` for every time this queue records or compares.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The schema version this build creates and understands.
    pub fn supported_schema_version() -> i64 {
        migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Closes the connections; later calls fail with [`Error::Unavailable`].
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    fn now_ts(&self) -> Timestamp {
        truncate(self.clock.now())
    }

    async fn write(&self, action: &str) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db(action))
    }

    fn notify(&self, e: QueueEvent) {
        let _ = self.events.send(e);
    }
}

fn pool(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire(false)
}

fn job_from_row(r: &SqliteRow) -> Result<Job> {
    const A: &str = "read a job";
    let g_text = |c: &str| -> Result<String> { r.try_get::<String, _>(c).map_err(db(A)) };
    let g_opt =
        |c: &str| -> Result<Option<String>> { r.try_get::<Option<String>, _>(c).map_err(db(A)) };
    let g_int = |c: &str| -> Result<i64> { r.try_get::<i64, _>(c).map_err(db(A)) };
    let g_opt_int =
        |c: &str| -> Result<Option<i64>> { r.try_get::<Option<i64>, _>(c).map_err(db(A)) };
    let uuid = |c: &str, s: &str| Uuid::parse_str(s).map_err(|e| corrupt(c, e));
    let json = |c: &str, s: &str| serde_json::from_str::<Value>(s).map_err(|e| corrupt(c, e));
    let opt_time =
        |c: &str| -> Result<Option<Timestamp>> { g_opt_int(c)?.map(|v| from_ts(c, v)).transpose() };
    Ok(Job {
        id: JobId(uuid("id", &g_text("id")?)?),
        queue: g_text("queue")?,
        kind: g_text("kind")?,
        payload: json("payload", &g_text("payload")?)?,
        priority: i16::try_from(g_int("priority")?).map_err(|e| corrupt("priority", e))?,
        state: g_text("state")?
            .parse()
            .map_err(|e: Error| corrupt("state", e))?,
        attempt: u32::try_from(g_int("attempt")?).unwrap_or(0),
        max_attempts: u32::try_from(g_int("max_attempts")?).unwrap_or(1),
        run_at: from_ts("run_at", g_int("run_at")?)?,
        idempotency_key: g_opt("idempotency_key")?,
        concurrency_key: g_opt("concurrency_key")?,
        lease_id: g_opt("lease_id")?
            .map(|s| uuid("lease_id", &s))
            .transpose()?,
        lease_expires_at: opt_time("lease_expires_at")?,
        worker_id: g_opt("worker_id")?,
        last_error: g_opt("last_error")?,
        result: g_opt("result")?.map(|s| json("result", &s)).transpose()?,
        reason: g_opt("reason")?,
        placement: g_opt("requirements")?
            .map(|s| {
                serde_json::from_str::<Requirements>(&s).map_err(|e| corrupt("requirements", e))
            })
            .transpose()?,
        affinity_key: g_opt("affinity_key")?,
        node_id: g_opt("node_id")?
            .map(|s| uuid("node_id", &s).map(NodeId))
            .transpose()?,
        created_at: from_ts("created_at", g_int("created_at")?)?,
        started_at: opt_time("started_at")?,
        ended_at: opt_time("ended_at")?,
        updated_at: from_ts("updated_at", g_int("updated_at")?)?,
    })
}

fn limit_from_row(r: &SqliteRow) -> Result<(LimitScope, Limit)> {
    const A: &str = "read a limit";
    let scope: String = r.try_get("scope").map_err(db(A))?;
    let name: String = r.try_get("name").map_err(db(A))?;
    Ok((
        LimitScope::from_parts(&scope, &name)?,
        limits::limit_from_parts(
            r.try_get("max_running").map_err(db(A))?,
            r.try_get("rate_max").map_err(db(A))?,
            r.try_get("rate_period_us").map_err(db(A))?,
        ),
    ))
}

fn cron_from_row(r: &SqliteRow) -> Result<CronEntry> {
    const A: &str = "read a cron entry";
    let job: String = r.try_get("job").map_err(db(A))?;
    let last: Option<i64> = r.try_get("last_fired_at").map_err(db(A))?;
    Ok(CronEntry {
        cron: CronJob {
            name: r.try_get("name").map_err(db(A))?,
            schedule: r.try_get("schedule").map_err(db(A))?,
            time_zone: r.try_get("time_zone").map_err(db(A))?,
            job: serde_json::from_str(&job).map_err(|e| corrupt("job", e))?,
            enabled: r.try_get::<i64, _>("enabled").map_err(db(A))? != 0,
        },
        next_run_at: from_ts("next_run_at", r.try_get("next_run_at").map_err(db(A))?)?,
        last_fired_at: last.map(|v| from_ts("last_fired_at", v)).transpose()?,
    })
}

/// Inserts one job inside a write transaction; `created: false` for a known key.
async fn insert_job(
    tx: &mut Transaction<'static, Sqlite>,
    j: NewJob,
    now: Timestamp,
) -> Result<Enqueued> {
    const A: &str = "enqueue a job";
    if let Some(k) = &j.idempotency_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM sched_jobs WHERE idempotency_key = ?1")
                .bind(k)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db(A))?;
        if let Some(id) = existing {
            return Ok(Enqueued {
                id: JobId(Uuid::parse_str(&id).map_err(|e| corrupt("id", e))?),
                created: false,
            });
        }
    }
    let id = j.id.map_or_else(Uuid::now_v7, |i| i.0);
    let req = j
        .placement
        .map(|p| {
            serde_json::to_string(&p).map_err(|e| Error::internal(format!("encode placement: {e}")))
        })
        .transpose()?;
    sqlx::query(
        "INSERT INTO sched_jobs (id, queue, kind, payload, priority, state, max_attempts, run_at,
             idempotency_key, concurrency_key, requirements, affinity_key, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
    )
    .bind(id.to_string())
    .bind(&j.queue)
    .bind(&j.kind)
    .bind(j.payload.to_string())
    .bind(i64::from(j.priority))
    .bind(i64::from(j.max_attempts))
    .bind(ts(truncate(j.run_at.unwrap_or(now))))
    .bind(&j.idempotency_key)
    .bind(&j.concurrency_key)
    .bind(req)
    .bind(&j.affinity_key)
    .bind(ts(now))
    .execute(&mut **tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            Error::conflict(format!("a job with id {id} already exists"))
        }
        _ => crate::sql::map_sqlx(A, e),
    })?;
    Ok(Enqueued {
        id: JobId(id),
        created: true,
    })
}

#[async_trait]
impl QueueStore for SqliteQueue {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn events(&self) -> broadcast::Receiver<QueueEvent> {
        self.events.subscribe()
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        const A: &str = "enqueue jobs";
        for j in &jobs {
            j.validate()?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_ts();
        let queues: BTreeSet<String> = jobs.iter().map(|j| j.queue.clone()).collect();
        let mut tx = self.write(A).await?;
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            out.push(insert_job(&mut tx, j, now).await?);
        }
        tx.commit().await.map_err(db(A))?;
        for q in queues {
            self.notify(QueueEvent::JobsAvailable(Some(q)));
        }
        Ok(out)
    }

    async fn get(&self, id: JobId) -> Result<Job> {
        let sql = format!("SELECT {JOB_COLS} FROM sched_jobs WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("read a job"))?
            .ok_or_else(|| Error::not_found("job", id))?;
        job_from_row(&row)
    }

    async fn claim(&self, c: &Claim) -> Result<Vec<Lease>> {
        const A: &str = "claim jobs";
        if c.max == 0 || c.queues.is_empty() {
            return Ok(Vec::new());
        }
        let max = usize::try_from(c.max).unwrap_or(usize::MAX);
        let now = self.now_ts();
        let lease = Uuid::new_v4();
        let mut tx = self.write(A).await?;
        let limit_rows = sqlx::query(
            "SELECT scope, name, max_running, rate_max, rate_period_us FROM sched_limits",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db(A))?;
        let set = LimitSet::from_pairs(
            limit_rows
                .iter()
                .map(limit_from_row)
                .collect::<Result<Vec<_>>>()?,
        );
        let scan = if set.is_empty() {
            i64::from(c.max)
        } else {
            LIMITED_SCAN
        };
        let rows = sqlx::query(
            "SELECT id, queue, kind, concurrency_key FROM sched_jobs
             WHERE state = 'queued' AND run_at <= ?1
               AND queue IN (SELECT value FROM json_each(?2))
               AND (?3 = '[]' OR kind IN (SELECT value FROM json_each(?3)))
             ORDER BY priority, run_at, id LIMIT ?4",
        )
        .bind(ts(now))
        .bind(json_list(&c.queues))
        .bind(json_list(&c.kinds))
        .bind(scan)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(A))?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut cands = Vec::with_capacity(rows.len());
        for r in &rows {
            ids.push(r.try_get::<String, _>("id").map_err(db(A))?);
            cands.push(Candidate {
                queue: r.try_get("queue").map_err(db(A))?,
                kind: r.try_get("kind").map_err(db(A))?,
                key: r.try_get("concurrency_key").map_err(db(A))?,
            });
        }
        let chosen: Vec<String> = if set.is_empty() {
            ids.into_iter().take(max).collect()
        } else {
            let mut usage = Usage::default();
            let running = sqlx::query(
                "SELECT queue, kind, concurrency_key FROM sched_jobs WHERE state = 'running'",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(db(A))?;
            for r in &running {
                let q: String = r.try_get("queue").map_err(db(A))?;
                let k: String = r.try_get("kind").map_err(db(A))?;
                let key: Option<String> = r.try_get("concurrency_key").map_err(db(A))?;
                usage.count_running(&q, &k, key.as_deref());
            }
            for r in sqlx::query("SELECT scope, name, tokens, refreshed_at FROM sched_rate_buckets")
                .fetch_all(&mut *tx)
                .await
                .map_err(db(A))?
            {
                let scope: String = r.try_get("scope").map_err(db(A))?;
                let scope: &'static str = match scope.as_str() {
                    "queue" => "queue",
                    "kind" => "kind",
                    _ => "key",
                };
                usage.buckets.insert(
                    (scope, r.try_get("name").map_err(db(A))?),
                    Bucket {
                        tokens: r.try_get("tokens").map_err(db(A))?,
                        refreshed_at: from_ts(
                            "refreshed_at",
                            r.try_get("refreshed_at").map_err(db(A))?,
                        )?,
                    },
                );
            }
            let picked = limits::select(&set, &cands, &mut usage, now, max);
            for id in &usage.touched {
                if let Some(b) = usage.buckets.get(id) {
                    sqlx::query(
                        "INSERT INTO sched_rate_buckets (scope, name, tokens, refreshed_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (scope, name) DO UPDATE SET tokens = excluded.tokens,
                             refreshed_at = excluded.refreshed_at",
                    )
                    .bind(id.0)
                    .bind(&id.1)
                    .bind(b.tokens)
                    .bind(ts(b.refreshed_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db(A))?;
                }
            }
            picked.into_iter().map(|i| ids[i].clone()).collect()
        };
        if chosen.is_empty() {
            tx.commit().await.map_err(db(A))?;
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE sched_jobs SET state = 'running', attempt = attempt + 1, lease_id = ?1,
                    lease_expires_at = ?2, worker_id = ?3, started_at = ?4, updated_at = ?4
             WHERE id IN (SELECT value FROM json_each(?5)) AND state = 'queued'
             RETURNING {JOB_COLS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease.to_string())
            .bind(ts(add(now, c.lease_ttl)))
            .bind(&c.worker_id)
            .bind(ts(now))
            .bind(json_list(&chosen))
            .fetch_all(&mut *tx)
            .await
            .map_err(db(A))?;
        tx.commit().await.map_err(db(A))?;
        let mut out: Vec<Lease> = rows
            .iter()
            .map(|r| {
                Ok(Lease {
                    job: job_from_row(r)?,
                    lease_id: lease,
                })
            })
            .collect::<Result<_>>()?;
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
        const A: &str = "renew leases";
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_ts();
        let mut tx = self.write(A).await?;
        let mut out = Vec::with_capacity(held.len());
        for (id, lease) in held {
            let n = sqlx::query(
                "UPDATE sched_jobs SET lease_expires_at = ?3, updated_at = ?4
                 WHERE id = ?1 AND lease_id = ?2 AND state = 'running'",
            )
            .bind(id.0.to_string())
            .bind(lease.to_string())
            .bind(ts(add(now, ttl)))
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(db(A))?
            .rows_affected();
            if n == 1 {
                out.push(HeartbeatStatus::Renewed);
                continue;
            }
            let canceled: bool = sqlx::query_scalar(
                "SELECT count(*) > 0 FROM sched_jobs WHERE id = ?1 AND lease_id = ?2 AND state = 'canceled'",
            )
            .bind(id.0.to_string())
            .bind(lease.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db(A))?;
            out.push(if canceled {
                HeartbeatStatus::Canceled
            } else {
                HeartbeatStatus::Lost
            });
        }
        tx.commit().await.map_err(db(A))?;
        Ok(out)
    }

    async fn finish(&self, done: &[Finish]) -> Result<Vec<FinishResult>> {
        const A: &str = "record job outcomes";
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_ts();
        let mut tx = self.write(A).await?;
        let mut out = Vec::with_capacity(done.len());
        let mut requeued = BTreeSet::new();
        for f in done {
            let (kind, result, error, delay) = match &f.outcome {
                Outcome::Completed { result } => (
                    "completed",
                    result.as_ref().map(Value::to_string),
                    None,
                    Duration::ZERO,
                ),
                Outcome::Retry { error, delay } => ("retry", None, Some(error.clone()), *delay),
                Outcome::Failed { error } => ("failed", None, Some(error.clone()), Duration::ZERO),
                Outcome::Snooze { delay, reason } => ("snooze", None, reason.clone(), *delay),
            };
            let row = sqlx::query(
                "UPDATE sched_jobs SET
                     state = CASE ?3 WHEN 'completed' THEN 'completed' WHEN 'failed' THEN 'failed'
                                     WHEN 'snooze' THEN 'queued'
                                     ELSE CASE WHEN attempt < max_attempts THEN 'queued' ELSE 'failed' END END,
                     result = CASE WHEN ?3 = 'completed' THEN ?4 ELSE result END,
                     last_error = CASE WHEN ?3 IN ('retry', 'failed') THEN ?5 ELSE last_error END,
                     reason = CASE WHEN ?3 = 'snooze' THEN ?5 WHEN ?3 = 'completed' THEN NULL ELSE reason END,
                     attempt = CASE WHEN ?3 = 'snooze' THEN max(attempt - 1, 0) ELSE attempt END,
                     run_at = CASE WHEN ?3 IN ('retry', 'snooze') THEN ?6 ELSE run_at END,
                     ended_at = CASE WHEN ?3 IN ('completed', 'failed')
                                       OR (?3 = 'retry' AND attempt >= max_attempts) THEN ?7 END,
                     lease_id = NULL, lease_expires_at = NULL, updated_at = ?7
                 WHERE id = ?1 AND lease_id = ?2 AND state = 'running'
                 RETURNING state, queue",
            )
            .bind(f.job_id.0.to_string())
            .bind(f.lease_id.to_string())
            .bind(kind)
            .bind(result)
            .bind(error)
            .bind(ts(add(now, delay)))
            .bind(ts(now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(A))?;
            match row {
                None => out.push(FinishResult::Stale),
                Some(r) => {
                    let state: String = r.try_get("state").map_err(db(A))?;
                    let state: JobState = state.parse().map_err(|e: Error| corrupt("state", e))?;
                    if state == JobState::Queued {
                        requeued.insert(r.try_get::<String, _>("queue").map_err(db(A))?);
                    }
                    out.push(FinishResult::Applied(state));
                }
            }
        }
        tx.commit().await.map_err(db(A))?;
        for q in requeued {
            self.notify(QueueEvent::JobsAvailable(Some(q)));
        }
        Ok(out)
    }

    async fn assign_node(&self, job: JobId, lease: Uuid, node: NodeId) -> Result<bool> {
        const A: &str = "record a job's node";
        let mut tx = self.write(A).await?;
        let n = sqlx::query(
            "UPDATE sched_jobs SET node_id = ?3, reason = NULL, updated_at = ?4
             WHERE id = ?1 AND lease_id = ?2 AND state = 'running'",
        )
        .bind(job.0.to_string())
        .bind(lease.to_string())
        .bind(node.0.to_string())
        .bind(ts(self.now_ts()))
        .execute(&mut *tx)
        .await
        .map_err(db(A))?
        .rows_affected();
        tx.commit().await.map_err(db(A))?;
        Ok(n == 1)
    }

    async fn cancel(&self, id: JobId) -> Result<CancelResult> {
        const A: &str = "cancel a job";
        let now = self.now_ts();
        let mut tx = self.write(A).await?;
        let state: String = sqlx::query_scalar("SELECT state FROM sched_jobs WHERE id = ?1")
            .bind(id.0.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(A))?
            .ok_or_else(|| Error::not_found("job", id))?;
        let state: JobState = state.parse().map_err(|e: Error| corrupt("state", e))?;
        if state.is_terminal() {
            return Ok(CancelResult::AlreadyFinished(state));
        }
        sqlx::query(
            "UPDATE sched_jobs SET state = 'canceled', ended_at = ?2, updated_at = ?2, lease_expires_at = NULL
             WHERE id = ?1",
        )
        .bind(id.0.to_string())
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(db(A))?;
        tx.commit().await.map_err(db(A))?;
        self.notify(QueueEvent::Canceled(id));
        Ok(CancelResult::Canceled {
            was_running: state == JobState::Running,
        })
    }

    async fn reap_expired(&self) -> Result<u64> {
        const A: &str = "re-queue expired jobs";
        let now = ts(self.now_ts());
        let mut tx = self.write(A).await?;
        let rows = sqlx::query(
            "UPDATE sched_jobs SET
                 state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
                 ended_at = CASE WHEN attempt >= max_attempts THEN ?1 END,
                 run_at = ?1, last_error = ?2, lease_id = NULL, lease_expires_at = NULL, updated_at = ?1
             WHERE state = 'running' AND lease_expires_at <= ?1
             RETURNING state, queue",
        )
        .bind(now)
        .bind(LEASE_EXPIRED)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(A))?;
        tx.commit().await.map_err(db(A))?;
        let mut queues = BTreeSet::new();
        for r in &rows {
            let state: String = r.try_get("state").map_err(db(A))?;
            if state == "queued" {
                queues.insert(r.try_get::<String, _>("queue").map_err(db(A))?);
            }
        }
        for q in queues {
            self.notify(QueueEvent::JobsAvailable(Some(q)));
        }
        Ok(rows.len() as u64)
    }

    async fn set_limit(&self, scope: &LimitScope, limit: &Limit) -> Result<()> {
        const A: &str = "set a limit";
        scope.validate()?;
        limit.validate()?;
        let (s, n) = scope.parts();
        let mut tx = self.write(A).await?;
        sqlx::query(
            "INSERT INTO sched_limits (scope, name, max_running, rate_max, rate_period_us) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (scope, name) DO UPDATE SET max_running = excluded.max_running,
                 rate_max = excluded.rate_max, rate_period_us = excluded.rate_period_us",
        )
        .bind(s)
        .bind(n)
        .bind(limit.max_running.map(i64::from))
        .bind(limit.rate.map(|r| i64::from(r.max)))
        .bind(limit.rate.map(|r| micros(r.per)))
        .execute(&mut *tx)
        .await
        .map_err(db(A))?;
        tx.commit().await.map_err(db(A))?;
        self.notify(QueueEvent::JobsAvailable(None));
        Ok(())
    }

    async fn remove_limit(&self, scope: &LimitScope) -> Result<bool> {
        const A: &str = "remove a limit";
        let (s, n) = scope.parts();
        let mut tx = self.write(A).await?;
        let removed = sqlx::query("DELETE FROM sched_limits WHERE scope = ?1 AND name = ?2")
            .bind(s)
            .bind(n)
            .execute(&mut *tx)
            .await
            .map_err(db(A))?
            .rows_affected()
            == 1;
        tx.commit().await.map_err(db(A))?;
        if removed {
            self.notify(QueueEvent::JobsAvailable(None));
        }
        Ok(removed)
    }

    async fn limits(&self) -> Result<Vec<(LimitScope, Limit)>> {
        let rows = sqlx::query(
            "SELECT scope, name, max_running, rate_max, rate_period_us FROM sched_limits ORDER BY scope, name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db("read the limits"))?;
        rows.iter().map(limit_from_row).collect()
    }

    async fn put_cron(&self, c: &CronJob) -> Result<CronEntry> {
        const A: &str = "store a cron entry";
        let schedule = cron::validate(c)?;
        let now = self.now_ts();
        let next = schedule.next_after(now)?;
        let job = serde_json::to_string(&c.job)
            .map_err(|e| Error::internal(format!("encode a cron job: {e}")))?;
        let mut tx = self.write(A).await?;
        let row = sqlx::query(
            "INSERT INTO sched_cron (name, schedule, time_zone, job, enabled, next_run_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT (name) DO UPDATE SET
                 next_run_at = CASE WHEN sched_cron.schedule = excluded.schedule
                                     AND sched_cron.time_zone IS excluded.time_zone
                                    THEN sched_cron.next_run_at ELSE excluded.next_run_at END,
                 schedule = excluded.schedule, time_zone = excluded.time_zone, job = excluded.job,
                 enabled = excluded.enabled, updated_at = excluded.updated_at
             RETURNING name, schedule, time_zone, job, enabled, next_run_at, last_fired_at",
        )
        .bind(&c.name)
        .bind(&c.schedule)
        .bind(&c.time_zone)
        .bind(job)
        .bind(i64::from(c.enabled))
        .bind(ts(next))
        .bind(ts(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(db(A))?;
        tx.commit().await.map_err(db(A))?;
        cron_from_row(&row)
    }

    async fn remove_cron(&self, name: &str) -> Result<bool> {
        const A: &str = "remove a cron entry";
        let mut tx = self.write(A).await?;
        let n = sqlx::query("DELETE FROM sched_cron WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db(A))?
            .rows_affected();
        tx.commit().await.map_err(db(A))?;
        Ok(n == 1)
    }

    async fn list_cron(&self) -> Result<Vec<CronEntry>> {
        let rows = sqlx::query(
            "SELECT name, schedule, time_zone, job, enabled, next_run_at, last_fired_at FROM sched_cron ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db("list cron entries"))?;
        rows.iter().map(cron_from_row).collect()
    }

    async fn fire_due_cron(&self) -> Result<Vec<JobId>> {
        const A: &str = "fire cron entries";
        let now = self.now_ts();
        let mut tx = self.write(A).await?;
        let rows = sqlx::query(
            "SELECT name, schedule, time_zone, job, enabled, next_run_at, last_fired_at FROM sched_cron
             WHERE enabled != 0 AND next_run_at <= ?1 ORDER BY name",
        )
        .bind(ts(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(db(A))?;
        let mut fired = Vec::new();
        let mut queues = BTreeSet::new();
        for r in &rows {
            let e = cron_from_row(r)?;
            let schedule = match Schedule::parse(&e.cron.schedule, e.cron.time_zone.as_deref()) {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(cron = %e.cron.name, error = %err, "stored cron entry cannot be parsed");
                    continue;
                }
            };
            let next = cron::next_after_due(&schedule, e.next_run_at, now)?;
            let won = sqlx::query(
                "UPDATE sched_cron SET next_run_at = ?3, last_fired_at = ?2, updated_at = ?4
                 WHERE name = ?1 AND next_run_at = ?2 AND enabled != 0",
            )
            .bind(&e.cron.name)
            .bind(ts(e.next_run_at))
            .bind(ts(next))
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(db(A))?
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
            queues.insert(job.queue.clone());
            let r = insert_job(&mut tx, job, now).await?;
            if r.created {
                fired.push(r.id);
            }
        }
        tx.commit().await.map_err(db(A))?;
        for q in queues {
            self.notify(QueueEvent::JobsAvailable(Some(q)));
        }
        Ok(fired)
    }

    async fn node_loads(&self) -> Result<HashMap<NodeId, u32>> {
        const A: &str = "count jobs per node";
        let rows = sqlx::query(
            "SELECT node_id, count(*) AS n FROM sched_jobs WHERE state = 'running' AND node_id IS NOT NULL
             GROUP BY node_id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db(A))?;
        let mut out = HashMap::new();
        for r in rows {
            let id: String = r.try_get("node_id").map_err(db(A))?;
            let n: i64 = r.try_get("n").map_err(db(A))?;
            out.insert(
                NodeId(Uuid::parse_str(&id).map_err(|e| corrupt("node_id", e))?),
                u32::try_from(n).unwrap_or(u32::MAX),
            );
        }
        Ok(out)
    }

    async fn affinity_node(&self, key: &str) -> Result<Option<NodeId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT node_id FROM sched_jobs WHERE affinity_key = ?1 AND node_id IS NOT NULL
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.reader)
        .await
        .map_err(db("find a job's co-located node"))?;
        id.map(|s| {
            Uuid::parse_str(&s)
                .map(NodeId)
                .map_err(|e| corrupt("node_id", e))
        })
        .transpose()
    }

    async fn stats(&self, queue: Option<&str>) -> Result<QueueStats> {
        const A: &str = "count jobs";
        let rows = sqlx::query("SELECT state, count(*) AS n FROM sched_jobs WHERE (?1 IS NULL OR queue = ?1) GROUP BY state")
            .bind(queue)
            .fetch_all(&self.reader)
            .await
            .map_err(db(A))?;
        let mut s = QueueStats::default();
        for r in rows {
            let state: String = r.try_get("state").map_err(db(A))?;
            let n: i64 = r.try_get("n").map_err(db(A))?;
            s.add(
                state.parse().map_err(|e: Error| corrupt("state", e))?,
                u64::try_from(n).unwrap_or(0),
            );
        }
        Ok(s)
    }

    async fn prune(&self, before: Timestamp) -> Result<u64> {
        const A: &str = "delete finished jobs";
        let mut tx = self.write(A).await?;
        let n = sqlx::query("DELETE FROM sched_jobs WHERE state IN ('completed', 'failed', 'canceled') AND ended_at < ?1")
            .bind(ts(before))
            .execute(&mut *tx)
            .await
            .map_err(db(A))?
            .rows_affected();
        tx.commit().await.map_err(db(A))?;
        Ok(n)
    }

    async fn now(&self) -> Result<Timestamp> {
        Ok(self.now_ts())
    }
}
