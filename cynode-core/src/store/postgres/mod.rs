//! The PostgreSQL backend (feature `postgres`): sqlx with pgvector for vector memory.
//!
//! Opening a [`PgStore`] applies the versioned migrations in
//! `cynode-core/migrations/postgres` (creating the `vector` extension if missing) and
//! refuses a database that a newer build has migrated ([`Error::SchemaTooNew`]).
//! Semantics follow [`MemoryStore`](super::MemoryStore) exactly; driver errors are
//! mapped to [`Error`] kinds in one function ([`error::db_err`]).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreAdmin;
use crate::{Error, Result};

mod access;
mod audit;
mod chat;
mod credentials;
mod error;
mod nodes;
mod preferences;
mod resources;
mod rows;
mod tasks;
mod users;
mod vectors;
mod workflow;

use error::db_err;

/// A pooled connection idle at least this long is pinged before it is used again.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// The migrations this build ships, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connection settings for [`PgStore::connect_with`]. Its `Debug` output hides the
/// password of the URL.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgOptions {
    /// Connection URL (`postgres://user[:password]@host:port/database`).
    pub url: String,
    /// Pool size (at least 1; default 10).
    pub max_connections: u32,
    /// How long a call waits for a free (or new) connection before it fails with a
    /// retryable [`Error::Unavailable`] (default 10 s).
    pub acquire_timeout: Duration,
}

impl PgOptions {
    /// Options for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// The URL with the password of its user-info part replaced by `***`.
fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// PostgreSQL storage with pgvector: the production backend. Cheap to clone (a handle
/// to one connection pool).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects with a pool of `max_connections`, creates the `vector` extension if
    /// missing (pgvector is not a trusted extension: that needs a role allowed to create
    /// it, unless it already exists in the database) and applies pending migrations. A database migrated by a newer build is
    /// refused with [`Error::SchemaTooNew`]; an unreachable server gives a retryable
    /// [`Error::Unavailable`].
    ///
    /// Later, a call whose connection is lost (server restart, network failure) fails
    /// with a retryable [`Error::Unavailable`]; the pool drops that connection and a
    /// retry gets a fresh one. Connections idle for a second or more are checked
    /// before use, so a quiet pool heals without failing calls.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let mut o = PgOptions::new(url);
        o.max_connections = max_connections;
        Self::connect_with(&o).await
    }

    /// [`PgStore::connect`] with explicit options.
    pub async fn connect_with(options: &PgOptions) -> Result<Self> {
        // The URL may carry a password: never echo it.
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|_| Error::invalid("the PostgreSQL connection URL is malformed"))?
            .application_name("cynode")
            // Defaults for approximate vector search on every connection; a search that
            // needs a longer candidate list raises it for its own transaction.
            .options([
                ("hnsw.ef_search", vectors::SESSION_EF_SEARCH.to_string()),
                ("hnsw.iterative_scan", "relaxed_order".to_string()),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            // Every connection is checked when it is given back (sqlx pings it on
            // release, in the background). Checking again on every acquire would double
            // the round trips of each call, so only a connection that sat idle a while
            // (and may have been dropped by the server or the network) is pinged.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < IDLE_BEFORE_PING {
                        return Ok(true);
                    }
                    // A dead connection is discarded and the pool tries another.
                    Ok(sqlx::Connection::ping(conn).await.is_ok())
                })
            })
            .connect_with(connect)
            .await
            .map_err(db_err)?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Highest migration version this build ships.
    pub fn supported_schema_version() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }

    async fn migrate(&self) -> Result<()> {
        let supported = Self::supported_schema_version();
        let has_vector: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        if !has_vector {
            return Err(Error::internal(
                "the PostgreSQL server does not provide the pgvector extension ('vector'); install it",
            ));
        }
        // Look before migrating: a newer build's history must not be touched at all.
        let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(MIGRATOR.table_name.as_ref())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        if table.is_some() {
            let sql = format!("SELECT max(version) FROM {}", MIGRATOR.table_name);
            let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
            if let Some(found) = found
                && found > supported
            {
                return Err(Error::SchemaTooNew { found, supported });
            }
        }
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            // Another process applied a newer migration between the check and the run.
            MigrateError::VersionMissing(found) if found > supported => {
                Error::SchemaTooNew { found, supported }
            }
            e => error::migrate_err(e),
        })
    }

    /// Closes the pool: waits for connections in use to be returned, then closes all.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl StoreAdmin for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// Converts a page size or offset to the `bigint` PostgreSQL expects, saturating.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let o = PgOptions::new("postgres://app:s3cret@db.example:5432/cynode?sslmode=require");
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.example:5432/cynode?sslmode=require"),
            "{shown}"
        );
        assert_eq!(
            redact_password("postgres://app@h/db"),
            "postgres://app@h/db"
        );
        assert_eq!(
            redact_password("postgres://h/db?user=a@b"),
            "postgres://h/db?user=a@b"
        );
        assert_eq!(redact_password("not a url"), "not a url");
    }
}
