//! Versioned schema migrations: plain SQL files applied in order, recorded with a
//! checksum in `cynode_schema_migrations`.

use sqlx::SqlitePool;

use super::{RowExt, db, ts};
use crate::model::sha256_hex;
use crate::store::memory::now;
use crate::{Error, Result};

/// One migration shipped with this build.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append new files; never edit an applied one (the
/// checksum check refuses a database migrated with a different text).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial schema",
        sql: include_str!("../../../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "system settings and preference audit",
        sql: include_str!("../../../migrations/sqlite/0002_settings_and_preference_audit.sql"),
    },
    Migration {
        version: 3,
        description: "access audit job and duration",
        sql: include_str!("../../../migrations/sqlite/0003_access_audit_job.sql"),
    },
];

/// Highest version this build ships.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the schema up to date in one write transaction, or refuses a newer one.
///
/// All of it runs under the write lock, so two processes opening the same fresh file
/// cannot both apply a migration.
pub(super) async fn run(pool: &SqlitePool) -> Result<()> {
    const ACTION: &str = "apply the database schema";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db(ACTION))?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS cynode_schema_migrations (
             version     INTEGER NOT NULL PRIMARY KEY,
             description TEXT    NOT NULL,
             checksum    TEXT    NOT NULL,
             applied_at  INTEGER NOT NULL
         ) STRICT",
    )
    .execute(&mut *tx)
    .await
    .map_err(db(ACTION))?;

    let applied =
        sqlx::query("SELECT version, checksum FROM cynode_schema_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ACTION))?;
    let supported = latest_version();
    if let Some(found) = applied.last().map(|r| r.int("version")).transpose()?
        && found > supported
    {
        return Err(Error::SchemaTooNew { found, supported });
    }
    for row in &applied {
        let version = row.int("version")?;
        let checksum = row.text("checksum")?;
        match MIGRATIONS.iter().find(|m| m.version == version) {
            Some(m) if sha256_hex(m.sql) == checksum => {}
            Some(_) => {
                return Err(Error::internal(format!(
                    "schema migration {version} recorded in the database differs from the one \
                     this build ships; the database was changed by a different build"
                )));
            }
            None => {
                return Err(Error::internal(format!(
                    "schema migration {version} recorded in the database is unknown to this build"
                )));
            }
        }
    }

    for m in MIGRATIONS {
        if applied
            .iter()
            .any(|r| r.int("version").ok() == Some(m.version))
        {
            continue;
        }
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        sqlx::query(
            "INSERT INTO cynode_schema_migrations (version, description, checksum, applied_at)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(m.version)
        .bind(m.description)
        .bind(sha256_hex(m.sql))
        .bind(ts(now()))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tracing::info!(
            version = m.version,
            description = m.description,
            "applied SQLite migration"
        );
    }
    tx.commit().await.map_err(db(ACTION))?;
    Ok(())
}
