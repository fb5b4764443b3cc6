//! [`PreferenceStore`]: scoped preferences with optimistic concurrency.
//!
//! Every statement comes in two spellings, one for the system scope (`scope_id IS
//! NULL`) and one for the others (`scope_id = $2`), so both can use the unique index on
//! `(scope_type, scope_id, key)`.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::error::db_err;
use super::rows::*;
use crate::model::*;
use crate::store::memory::now;
use crate::store::{PreferenceStore, validate};
use crate::{Error, Result};

/// Expands to a pair of statements (system scope, other scopes) that differ only in the
/// scope condition. `$1` is the scope type, `$2` the scope id (NULL for system).
macro_rules! scoped {
    ($before:expr, $after:expr) => {
        (
            concat!(
                $before,
                " scope_type = $1 AND scope_id IS NULL AND $2::uuid IS NULL ",
                $after
            ),
            concat!($before, " scope_type = $1 AND scope_id = $2 ", $after),
        )
    };
}

fn pick(scope: Scope, pair: (&'static str, &'static str)) -> &'static str {
    if scope == Scope::System {
        pair.0
    } else {
        pair.1
    }
}

impl PgStore {
    async fn find_preference(&self, scope: Scope, key: &str) -> Result<Option<PreferenceEntry>> {
        let sql = pick(
            scope,
            scoped!(
                concat!(
                    "SELECT ",
                    preference_columns!(),
                    " FROM preference_entries WHERE"
                ),
                "AND key = $3"
            ),
        );
        let row: Option<PreferenceRow> = sqlx::query_as(sql)
            .bind(scope.type_str())
            .bind(scope.id())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(PreferenceEntry::try_from).transpose()
    }
}

#[async_trait]
impl PreferenceStore for PgStore {
    async fn get_preference(&self, scope: Scope, key: &str) -> Result<PreferenceEntry> {
        self.find_preference(scope, key)
            .await?
            .ok_or_else(|| Error::not_found("preference", key))
    }

    async fn list_preferences(&self, scope: Scope, prefix: &str) -> Result<Vec<PreferenceEntry>> {
        let sql = pick(
            scope,
            scoped!(
                concat!(
                    "SELECT ",
                    preference_columns!(),
                    " FROM preference_entries WHERE"
                ),
                "AND starts_with(key, $3) ORDER BY key"
            ),
        );
        let rows: Vec<PreferenceRow> = sqlx::query_as(sql)
            .bind(scope.type_str())
            .bind(scope.id())
            .bind(prefix)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(PreferenceEntry::try_from).collect()
    }

    async fn put_preference(
        &self,
        scope: Scope,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        updated_by: Option<&str>,
    ) -> Result<PreferenceEntry> {
        validate::text("preference key", key, 255)?;
        let t = now();
        let value_type = json_type_name(&value);
        let row: Option<PreferenceRow> = match expected_version {
            // Unconditional: create or bump, atomically.
            None => sqlx::query_as(concat!(
                "INSERT INTO preference_entries (id, scope_type, scope_id, key, value, value_type, \
                 version, updated_at, updated_by) VALUES ($3, $1, $2, $4, $5, $6, 1, $7, $8) \
                 ON CONFLICT (scope_type, scope_id, key) DO UPDATE SET value = EXCLUDED.value, \
                 value_type = EXCLUDED.value_type, version = preference_entries.version + 1, \
                 updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by RETURNING ",
                preference_columns!()
            ))
            .bind(scope.type_str())
            .bind(scope.id())
            .bind(Uuid::new_v4())
            .bind(key)
            .bind(&value)
            .bind(value_type)
            .bind(t)
            .bind(updated_by)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?,
            // Create only.
            Some(0) => sqlx::query_as(concat!(
                "INSERT INTO preference_entries (id, scope_type, scope_id, key, value, value_type, \
                 version, updated_at, updated_by) VALUES ($3, $1, $2, $4, $5, $6, 1, $7, $8) \
                 ON CONFLICT (scope_type, scope_id, key) DO NOTHING RETURNING ",
                preference_columns!()
            ))
            .bind(scope.type_str())
            .bind(scope.id())
            .bind(Uuid::new_v4())
            .bind(key)
            .bind(&value)
            .bind(value_type)
            .bind(t)
            .bind(updated_by)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?,
            // Update only if the stored version matches.
            Some(v) => {
                let sql = pick(
                    scope,
                    scoped!(
                        "UPDATE preference_entries SET value = $4, value_type = $5, \
                         version = version + 1, updated_at = $6, updated_by = $7 WHERE",
                        concat!(
                            "AND key = $3 AND version = $8 RETURNING ",
                            preference_columns!()
                        )
                    ),
                );
                sqlx::query_as(sql)
                    .bind(scope.type_str())
                    .bind(scope.id())
                    .bind(key)
                    .bind(&value)
                    .bind(value_type)
                    .bind(t)
                    .bind(updated_by)
                    .bind(v)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?
            }
        };
        if let Some(row) = row {
            return row.try_into();
        }
        // Nothing written: say why.
        let v = expected_version.unwrap_or_default();
        Err(match self.find_preference(scope, key).await? {
            Some(p) => Error::conflict(format!(
                "preference '{key}' is at version {}, not {v}",
                p.version
            )),
            None => Error::conflict(format!(
                "preference '{key}' does not exist (expected version {v})"
            )),
        })
    }

    async fn delete_preference(
        &self,
        scope: Scope,
        key: &str,
        expected_version: Option<i32>,
    ) -> Result<()> {
        // The subquery sees the snapshot before the delete: the version that was stored.
        let sql = pick(
            scope,
            scoped!(
                "WITH d AS (DELETE FROM preference_entries WHERE",
                "AND key = $3 AND ($4::int IS NULL OR version = $4) RETURNING id) \
                 SELECT (SELECT count(*) FROM d), \
                        (SELECT version FROM preference_entries \
                          WHERE scope_type = $1 AND scope_id IS NOT DISTINCT FROM $2 AND key = $3)"
            ),
        );
        let (deleted, stored): (i64, Option<i32>) = sqlx::query_as(sql)
            .bind(scope.type_str())
            .bind(scope.id())
            .bind(key)
            .bind(expected_version)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        match (deleted, stored) {
            (n, _) if n > 0 => Ok(()),
            (_, Some(version)) => Err(Error::conflict(format!(
                "preference '{key}' is at version {version}, not {}",
                expected_version.unwrap_or_default()
            ))),
            (_, None) => Err(Error::not_found("preference", key)),
        }
    }
}
