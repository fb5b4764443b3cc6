//! The SQLite backend: one file, zero setup, the embedded default.
//!
//! # Connections
//! SQLite allows one writer at a time. The store keeps two pools over the same file:
//! a **writer pool of exactly one connection**, so writes from this process queue in
//! the pool instead of fighting over the file lock, and a **reader pool** of several
//! `query_only` connections which, in WAL mode, read a consistent snapshot while a
//! write is in progress. Every write runs in a `BEGIN IMMEDIATE` transaction: the write
//! lock is taken up front, so a second process writing the same file waits (up to the
//! busy timeout) instead of failing half-way with `SQLITE_BUSY`.
//!
//! # Durability
//! The journal is in WAL mode with `synchronous = FULL`: the WAL is synced at every
//! commit, so a call that returned has survived a power cut, as the storage traits
//! promise. (`NORMAL` would be faster and still safe against a crashing process, but
//! could lose the last commits on power loss.)
//!
//! # Layout
//! Ids are canonical UUID text, times are integer microseconds since the Unix epoch,
//! JSON is text, embeddings are little-endian `f32` blobs. The schema lives in
//! `migrations/sqlite/*.sql`, applied in order at open inside one transaction; a
//! database migrated by a newer build is refused with [`Error::SchemaTooNew`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::StoreAdmin;
use crate::model::Timestamp;
use crate::{Error, Result};

mod access;
mod audit;
mod chat;
mod credentials;
mod migrate;
mod nodes;
mod preferences;
mod resources;
mod tasks;
mod users;
mod vectors;
mod workflow;

/// How long a connection waits for another process's write lock before giving up with
/// a retryable error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a free connection from a pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of the file readers map into memory (address space, not RAM).
const READER_MMAP_BYTES: u64 = 1 << 30;
/// Bounds of the reader pool (one per core within these limits). A vector search
/// holds a reader for the length of its scan, so keep a few even on small machines.
const MIN_READERS: u32 = 4;
/// See [`MIN_READERS`].
const MAX_READERS: u32 = 8;

/// Storage in one SQLite file (or in memory). Implements every storage trait.
///
/// Open it with [`SqliteStore::open`]; it is cheap to clone (the pools are shared).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if missing, together with its parent directory) the database
    /// file at `path` and brings its schema up to date.
    ///
    /// Errors: [`Error::SchemaTooNew`] when a newer build migrated the file;
    /// [`Error::Unavailable`] when the location cannot be created, opened or written
    /// (missing permissions, read-only file system, a directory in the way) or another
    /// process holds the write lock for longer than the busy timeout.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::Unavailable {
                message: format!(
                    "cannot create the directory {} for the SQLite database: {}",
                    parent.display(),
                    io_words(&e)
                ),
                source: Some(Box::new(e)),
            })?;
        }
        if path.is_dir() {
            return Err(Error::Unavailable {
                message: format!(
                    "cannot open the SQLite database at {}: it is a directory",
                    path.display()
                ),
                source: None,
            });
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Full);
        let opening = format!("open the SQLite database at {}", path.display());

        let writer_opts = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let writer = pool_options(1)
            .connect_with(writer_opts)
            .await
            .map_err(db(&opening))?;
        if let Err(e) = migrate::run(&writer).await {
            writer.close().await;
            return Err(e);
        }

        // Readers open after the writer created the file and switched it to WAL. They
        // are `query_only`, so a bug can never write outside the single-writer path,
        // and read through a memory map, which halves the system time of a full
        // vector scan (no copy of every page into SQLite's cache).
        let readers = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(MAX_READERS))
            .unwrap_or(MIN_READERS)
            .clamp(MIN_READERS, MAX_READERS);
        let reader_opts = base
            .pragma("query_only", "ON")
            .pragma("mmap_size", READER_MMAP_BYTES.to_string());
        let reader = match pool_options(readers).connect_with(reader_opts).await {
            Ok(p) => p,
            Err(e) => {
                writer.close().await;
                return Err(db(&opening)(e));
            }
        };
        Ok(Self {
            reader,
            writer,
            path: Some(path.to_path_buf()),
        })
    }

    /// A private in-memory database, migrated and empty; it disappears when the store
    /// is dropped or closed. Reads and writes share its single connection.
    pub async fn open_in_memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db("open an in-memory SQLite database"))?
            .foreign_keys(true);
        let pool = pool_options(1)
            .connect_with(opts)
            .await
            .map_err(db("open an in-memory SQLite database"))?;
        migrate::run(&pool).await?;
        Ok(Self {
            reader: pool.clone(),
            writer: pool,
            path: None,
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The schema version this build creates and understands.
    pub fn supported_schema_version() -> i64 {
        migrate::latest_version()
    }

    /// Closes every connection (checkpointing the WAL into the main file). Calls made
    /// afterwards fail with [`Error::Unavailable`].
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction holding the database write lock.
    async fn write(&self, action: &str) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db(action))
    }

    /// Starts a read transaction: every query in it sees the same snapshot.
    async fn read(&self, action: &str) -> Result<Transaction<'static, Sqlite>> {
        self.reader.begin().await.map_err(db(action))
    }
}

/// Pool settings shared by readers and the writer: connections live as long as the
/// store (an in-memory database lives only as long as its connection) and are not
/// pinged before use, since a local file connection cannot go stale.
fn pool_options(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
}

#[async_trait]
impl StoreAdmin for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db("reach the database"))?;
        Ok(())
    }
}

// ---------------------------------------------------------------- error mapping

// Primary SQLite result codes (the low byte of an extended code).
const SQLITE_PERM: i32 = 3;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_NOTADB: i32 = 26;

/// Maps a driver error to the storage error kinds. This is the only place that looks
/// at SQLite result codes; the driver's text stays in `source` and never reaches the
/// message. `action` says, in plain words, what was being attempted.
pub(crate) fn map_sqlx_error(action: &str, e: sqlx::Error) -> Error {
    use sqlx::error::ErrorKind;

    fn unavailable(message: String, e: sqlx::Error) -> Error {
        Error::Unavailable {
            message,
            source: Some(Box::new(e)),
        }
    }
    fn internal(message: String, e: sqlx::Error) -> Error {
        Error::Internal {
            message,
            source: Some(Box::new(e)),
        }
    }

    match &e {
        sqlx::Error::Database(d) => {
            let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            match d.kind() {
                ErrorKind::UniqueViolation => {
                    return Error::conflict(format!(
                        "cannot {action}: a record with the same unique key already exists"
                    ));
                }
                ErrorKind::ForeignKeyViolation => {
                    return Error::invalid(format!(
                        "cannot {action}: it refers to a record that does not exist"
                    ));
                }
                ErrorKind::CheckViolation => {
                    return Error::invalid(format!("cannot {action}: a value is out of range"));
                }
                ErrorKind::NotNullViolation => {
                    return Error::invalid(format!("cannot {action}: a required value is missing"));
                }
                _ => {}
            }
            match code & 0xff {
                SQLITE_BUSY | SQLITE_LOCKED => unavailable(
                    format!("cannot {action}: the database is locked by another writer"),
                    e,
                ),
                SQLITE_READONLY | SQLITE_PERM => unavailable(
                    format!("cannot {action}: the database file is read-only or not permitted"),
                    e,
                ),
                SQLITE_CANTOPEN => unavailable(
                    format!("cannot {action}: the database file cannot be opened or created"),
                    e,
                ),
                SQLITE_IOERR | SQLITE_FULL | SQLITE_PROTOCOL => unavailable(
                    format!("cannot {action}: reading or writing the database file failed"),
                    e,
                ),
                SQLITE_CORRUPT | SQLITE_NOTADB => internal(
                    format!("cannot {action}: the file is damaged or not a SQLite database"),
                    e,
                ),
                SQLITE_CONSTRAINT => Error::invalid(format!(
                    "cannot {action}: a database rule rejected the write"
                )),
                _ => internal(format!("cannot {action}"), e),
            }
        }
        sqlx::Error::PoolTimedOut => unavailable(
            format!("cannot {action}: timed out waiting for a database connection"),
            e,
        ),
        sqlx::Error::PoolClosed => unavailable(format!("cannot {action}: the store is closed"), e),
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => unavailable(
            format!("cannot {action}: the database connection failed"),
            e,
        ),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            internal(format!("cannot {action}: stored data could not be read"), e)
        }
        _ => internal(format!("cannot {action}"), e),
    }
}

/// `map_err` adapter for [`map_sqlx_error`].
pub(crate) fn db(action: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| map_sqlx_error(action, e)
}

/// Whether a driver error is a unique-key violation (so the caller can phrase the
/// conflict precisely).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Whether a driver error is a foreign-key violation.
fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// An I/O error in plain words (`Permission denied`, `Read-only file system`, ...),
/// without the OS error number.
fn io_words(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

// ---------------------------------------------------------------- encoding helpers

/// Stored form of a time: microseconds since the Unix epoch (sub-microsecond digits
/// are dropped, as PostgreSQL does).
pub(crate) fn ts(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// A time as it will read back after storing (truncated to microseconds).
pub(crate) fn stored(t: Timestamp) -> Timestamp {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// JSON document as stored text.
pub(crate) fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

/// Optional JSON document as stored text.
pub(crate) fn opt_json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(json_text)
}

fn corrupt(column: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Internal {
        message: format!("stored value of column {column} could not be read"),
        source: Some(Box::new(e)),
    }
}

/// Typed reads of the stored encodings from a row.
pub(crate) trait RowExt {
    /// A text column.
    fn text(&self, col: &str) -> Result<String>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    /// A UUID column, converted to a typed id.
    fn id<T: From<uuid::Uuid>>(&self, col: &str) -> Result<T>;
    /// A nullable UUID column.
    fn opt_id<T: From<uuid::Uuid>>(&self, col: &str) -> Result<Option<T>>;
    /// A time column.
    fn time(&self, col: &str) -> Result<Timestamp>;
    /// A nullable time column.
    fn opt_time(&self, col: &str) -> Result<Option<Timestamp>>;
    /// A JSON column that is never NULL.
    fn json(&self, col: &str) -> Result<serde_json::Value>;
    /// A nullable JSON column.
    fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>>;
    /// A 0/1 column.
    fn flag(&self, col: &str) -> Result<bool>;
    /// An integer column.
    fn int(&self, col: &str) -> Result<i64>;
    /// A nullable integer column.
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    /// A blob column.
    fn blob(&self, col: &str) -> Result<Vec<u8>>;
    /// A text column holding one of a closed set of values.
    fn parsed<T: FromStr<Err = Error>>(&self, col: &str) -> Result<T> {
        self.text(col)?.parse().map_err(|e: Error| corrupt(col, e))
    }
}

fn parse_uuid(col: &str, s: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|e| corrupt(col, e))
}

fn parse_time(col: &str, micros: i64) -> Result<Timestamp> {
    chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::internal(format!("stored value of column {col} is not a valid time")))
}

impl RowExt for SqliteRow {
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).map_err(db("read a stored record"))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(db("read a stored record"))
    }
    fn id<T: From<uuid::Uuid>>(&self, col: &str) -> Result<T> {
        Ok(parse_uuid(col, &self.text(col)?)?.into())
    }
    fn opt_id<T: From<uuid::Uuid>>(&self, col: &str) -> Result<Option<T>> {
        self.opt_text(col)?
            .map(|s| parse_uuid(col, &s).map(T::from))
            .transpose()
    }
    fn time(&self, col: &str) -> Result<Timestamp> {
        parse_time(col, self.int(col)?)
    }
    fn opt_time(&self, col: &str) -> Result<Option<Timestamp>> {
        self.opt_int(col)?.map(|m| parse_time(col, m)).transpose()
    }
    fn json(&self, col: &str) -> Result<serde_json::Value> {
        Ok(self.opt_json(col)?.unwrap_or(serde_json::Value::Null))
    }
    fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>> {
        self.opt_text(col)?
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(col, e)))
            .transpose()
    }
    fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.int(col)? != 0)
    }
    fn int(&self, col: &str) -> Result<i64> {
        self.try_get(col).map_err(db("read a stored record"))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(db("read a stored record"))
    }
    fn blob(&self, col: &str) -> Result<Vec<u8>> {
        self.try_get(col).map_err(db("read a stored record"))
    }
}

/// Narrows a stored integer to `i32`, treating an out-of-range value as corruption.
pub(crate) fn to_i32(col: &str, v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|e| corrupt(col, e))
}

/// Whether a row with this id exists in `table` (inside a transaction).
///
/// `sql` must be a `SELECT 1 FROM <table> WHERE id = ?1` statement.
async fn exists(
    conn: &mut sqlx::SqliteConnection,
    sql: &'static str,
    id: String,
    action: &str,
) -> Result<bool> {
    Ok(sqlx::query(sql)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db(action))?
        .is_some())
}
