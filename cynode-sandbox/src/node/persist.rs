//! The telemetry database: SQLite at `<state_dir>/telemetry/telemetry.db` (WAL, busy
//! timeout 5 s, a schema-version table; tables `node_boot`, `container_inventory`,
//! `container_event`, `log_event`), written by one background task so the record's
//! writers never wait on disk. Retention runs at start and hourly (logs 7 days, events
//! and stopped containers 30 days), `VACUUM` at start and daily.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use cynode_core::proto::v1::worker::{ContainerRecord, LogEvent};
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS node_boot (boot_id TEXT PRIMARY KEY, booted_at TEXT NOT NULL, \
     node_slug TEXT NOT NULL, build_version TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS container_inventory (container_id TEXT PRIMARY KEY, \
     container_name TEXT NOT NULL, kind TEXT NOT NULL, runtime TEXT NOT NULL, \
     image_ref TEXT NOT NULL, created_at TEXT NOT NULL, last_seen_at TEXT NOT NULL, \
     status TEXT NOT NULL, exit_code INTEGER, task_id TEXT, job_id TEXT, labels TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS container_event (id INTEGER PRIMARY KEY AUTOINCREMENT, \
     container_id TEXT NOT NULL, occurred_at TEXT NOT NULL, event TEXT NOT NULL, exit_code INTEGER)",
    "CREATE TABLE IF NOT EXISTS log_event (id INTEGER PRIMARY KEY AUTOINCREMENT, \
     occurred_at TEXT NOT NULL, source_kind TEXT NOT NULL, source_name TEXT NOT NULL, \
     container_id TEXT, stream TEXT, level TEXT, message TEXT NOT NULL, fields TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS log_event_time ON log_event (occurred_at)",
    "CREATE INDEX IF NOT EXISTS container_event_time ON container_event (occurred_at)",
];

/// One write.
#[derive(Debug)]
pub(crate) enum Op {
    Log(LogEvent),
    Container(ContainerRecord),
    Status {
        container_id: String,
        status: String,
        exit_code: Option<i64>,
        at: DateTime<Utc>,
    },
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// What the database held at start, newest last.
pub(crate) struct Loaded {
    pub logs: Vec<LogEvent>,
    pub containers: Vec<ContainerRecord>,
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

fn db_err(what: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| Error::Internal {
        message: format!("telemetry database: {what}"),
        source: Some(Box::new(e)),
    }
}

/// Opens (creating) the database, applies the schema, records the boot, runs retention
/// and returns the recent history plus the writer's channel.
pub(crate) async fn open(
    path: &Path,
    boot_id: &str,
    booted_at: DateTime<Utc>,
    node_slug: &str,
    build_version: &str,
    max_logs: usize,
    max_containers: usize,
) -> Result<(mpsc::UnboundedSender<Op>, Loaded)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format_args!("create {}", dir.display()), e))?;
    }
    let url = format!("sqlite://{}", path.display());
    let opts = SqliteConnectOptions::from_str(&url)
        .map_err(db_err("bad path"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .map_err(db_err("open"))?;
    for stmt in SCHEMA {
        sqlx::query(*stmt)
            .execute(&pool)
            .await
            .map_err(db_err("create schema"))?;
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&pool)
        .await
        .map_err(db_err("read schema version"))?;
    match version {
        None => {
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(SCHEMA_VERSION)
                .execute(&pool)
                .await
                .map_err(db_err("write schema version"))?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(Error::invalid(format!(
                "telemetry database {} has schema {v}, newer than this worker's {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Some(_) => {}
    }
    sqlx::query(
        "INSERT OR REPLACE INTO node_boot (boot_id, booted_at, node_slug, build_version) VALUES (?, ?, ?, ?)",
    )
    .bind(boot_id)
    .bind(ts(&booted_at))
    .bind(node_slug)
    .bind(build_version)
    .execute(&pool)
    .await
    .map_err(db_err("record boot"))?;
    retention(&pool, true).await;
    let loaded = load(&pool, max_logs, max_containers).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(writer(pool, rx));
    Ok((tx, loaded))
}

async fn retention(pool: &SqlitePool, vacuum: bool) {
    let now = Utc::now();
    let logs = ts(&(now - ChronoDuration::days(7)));
    let events = ts(&(now - ChronoDuration::days(30)));
    for (sql, cutoff) in [
        ("DELETE FROM log_event WHERE occurred_at < ?", &logs),
        ("DELETE FROM container_event WHERE occurred_at < ?", &events),
        (
            "DELETE FROM container_inventory WHERE status != 'running' AND last_seen_at < ?",
            &events,
        ),
        ("DELETE FROM node_boot WHERE booted_at < ?", &events),
    ] {
        if let Err(e) = sqlx::query(sql).bind(cutoff).execute(pool).await {
            tracing::warn!(error = %e, "telemetry retention failed");
        }
    }
    if vacuum && let Err(e) = sqlx::query("VACUUM").execute(pool).await {
        tracing::warn!(error = %e, "telemetry VACUUM failed");
    }
}

async fn load(pool: &SqlitePool, max_logs: usize, max_containers: usize) -> Result<Loaded> {
    let rows = sqlx::query(
        "SELECT occurred_at, source_kind, source_name, container_id, stream, level, message, fields \
         FROM log_event ORDER BY id DESC LIMIT ?",
    )
    .bind(i64::try_from(max_logs).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(db_err("load logs"))?;
    let mut logs: Vec<LogEvent> = rows
        .iter()
        .map(|r| LogEvent {
            occurred_at: parse_ts(r.get::<&str, _>(0)),
            source_kind: r.get(1),
            source_name: r.get(2),
            container_id: r.get(3),
            stream: r.get(4),
            level: r.get(5),
            message: r.get(6),
            fields: serde_json::from_str::<Map<String, Value>>(r.get::<&str, _>(7))
                .unwrap_or_default(),
        })
        .collect();
    logs.reverse();
    let rows = sqlx::query(
        "SELECT container_id, container_name, kind, runtime, image_ref, created_at, last_seen_at, \
         status, exit_code, task_id, job_id, labels FROM container_inventory \
         ORDER BY created_at DESC LIMIT ?",
    )
    .bind(i64::try_from(max_containers).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(db_err("load containers"))?;
    let mut containers: Vec<ContainerRecord> = rows
        .iter()
        .map(|r| ContainerRecord {
            container_id: r.get(0),
            container_name: r.get(1),
            kind: r.get(2),
            runtime: r.get(3),
            image_ref: r.get(4),
            created_at: parse_ts(r.get::<&str, _>(5)),
            last_seen_at: parse_ts(r.get::<&str, _>(6)),
            status: r.get(7),
            exit_code: r.get(8),
            task_id: r.get(9),
            job_id: r.get(10),
            labels: serde_json::from_str(r.get::<&str, _>(11)).unwrap_or_default(),
        })
        .collect();
    containers.reverse();
    Ok(Loaded { logs, containers })
}

/// Applies writes in batches until every sender is gone; hourly retention.
async fn writer(pool: SqlitePool, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    hourly.tick().await;
    let mut ticks: u32 = 0;
    loop {
        let first = tokio::select! {
            op = rx.recv() => match op { Some(op) => op, None => break },
            _ = hourly.tick() => {
                ticks = ticks.wrapping_add(1);
                retention(&pool, ticks.is_multiple_of(24)).await;
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        if let Err(e) = write_batch(&pool, batch, &mut flushes).await {
            tracing::warn!(error = %e, "telemetry write failed");
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
    pool.close().await;
}

async fn write_batch(
    pool: &SqlitePool,
    batch: Vec<Op>,
    flushes: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> std::result::Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for op in batch {
        match op {
            Op::Log(e) => {
                sqlx::query(
                    "INSERT INTO log_event (occurred_at, source_kind, source_name, container_id, \
                     stream, level, message, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(ts(&e.occurred_at))
                .bind(&e.source_kind)
                .bind(&e.source_name)
                .bind(&e.container_id)
                .bind(&e.stream)
                .bind(&e.level)
                .bind(&e.message)
                .bind(serde_json::to_string(&e.fields).unwrap_or_else(|_| "{}".into()))
                .execute(&mut *tx)
                .await?;
            }
            Op::Container(c) => {
                sqlx::query(
                    "INSERT OR REPLACE INTO container_inventory (container_id, container_name, kind, \
                     runtime, image_ref, created_at, last_seen_at, status, exit_code, task_id, job_id, \
                     labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&c.container_id)
                .bind(&c.container_name)
                .bind(&c.kind)
                .bind(&c.runtime)
                .bind(&c.image_ref)
                .bind(ts(&c.created_at))
                .bind(ts(&c.last_seen_at))
                .bind(&c.status)
                .bind(c.exit_code)
                .bind(&c.task_id)
                .bind(&c.job_id)
                .bind(serde_json::to_string(&c.labels).unwrap_or_else(|_| "{}".into()))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO container_event (container_id, occurred_at, event) VALUES (?, ?, ?)",
                )
                .bind(&c.container_id)
                .bind(ts(&c.created_at))
                .bind(&c.status)
                .execute(&mut *tx)
                .await?;
            }
            Op::Status {
                container_id,
                status,
                exit_code,
                at,
            } => {
                sqlx::query(
                    "UPDATE container_inventory SET status = ?, last_seen_at = ?, \
                     exit_code = COALESCE(?, exit_code) WHERE container_id = ?",
                )
                .bind(&status)
                .bind(ts(&at))
                .bind(exit_code)
                .bind(&container_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO container_event (container_id, occurred_at, event, exit_code) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(&container_id)
                .bind(ts(&at))
                .bind(&status)
                .bind(exit_code)
                .execute(&mut *tx)
                .await?;
            }
            Op::Flush(done) => flushes.push(done),
        }
    }
    tx.commit().await
}
