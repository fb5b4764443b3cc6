//! Scoped preferences with optimistic concurrency.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::{RowExt, SqliteStore, db, json_text, to_i32, ts};
use crate::model::*;
use crate::store::memory::now;
use crate::store::{PreferenceStore, validate};
use crate::{Error, PreferenceId, Result};

/// The scope id as matched by the unique index: `''` for the system scope.
pub(super) fn scope_key(scope: &Scope) -> String {
    scope.id().map(|u| u.to_string()).unwrap_or_default()
}

fn pref_row(r: &SqliteRow) -> Result<PreferenceEntry> {
    let scope_id: Option<uuid::Uuid> = r.opt_id("scope_id")?;
    let scope_type = r.text("scope_type")?;
    let scope = Scope::from_parts(&scope_type, scope_id).map_err(|e| Error::Internal {
        message: "stored preference scope could not be read".into(),
        source: Some(Box::new(e)),
    })?;
    Ok(PreferenceEntry {
        id: r.id("id")?,
        scope,
        key: r.text("key")?,
        value: r.json("value")?,
        value_type: r.text("value_type")?,
        version: to_i32("version", r.int("version")?)?,
        updated_at: r.time("updated_at")?,
        updated_by: r.opt_text("updated_by")?,
    })
}

pub(super) async fn fetch_pref(
    conn: &mut SqliteConnection,
    scope: &Scope,
    key: &str,
    action: &str,
) -> Result<Option<PreferenceEntry>> {
    let row = sqlx::query(
        "SELECT id, scope_type, scope_id, key, value, value_type, version, updated_at, updated_by
         FROM preference_entries
         WHERE scope_type = ?1 AND ifnull(scope_id, '') = ?2 AND key = ?3",
    )
    .bind(scope.type_str())
    .bind(scope_key(scope))
    .bind(key)
    .fetch_optional(conn)
    .await
    .map_err(db(action))?;
    row.as_ref().map(pref_row).transpose()
}

fn version_conflict(key: &str, stored: i32, expected: i32) -> Error {
    Error::conflict(format!(
        "preference '{key}' is at version {stored}, not {expected}"
    ))
}

#[async_trait]
impl PreferenceStore for SqliteStore {
    async fn get_preference(&self, scope: Scope, key: &str) -> Result<PreferenceEntry> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(db("read the preference"))?;
        fetch_pref(&mut conn, &scope, key, "read the preference")
            .await?
            .ok_or_else(|| Error::not_found("preference", key))
    }

    async fn list_preferences(&self, scope: Scope, prefix: &str) -> Result<Vec<PreferenceEntry>> {
        let rows = sqlx::query(
            "SELECT id, scope_type, scope_id, key, value, value_type, version, updated_at, updated_by
             FROM preference_entries
             WHERE scope_type = ?1 AND ifnull(scope_id, '') = ?2 AND substr(key, 1, length(?3)) = ?3
             ORDER BY key",
        )
        .bind(scope.type_str())
        .bind(scope_key(&scope))
        .bind(prefix)
        .fetch_all(&self.reader)
        .await
        .map_err(db("list preferences"))?;
        rows.iter().map(pref_row).collect()
    }

    async fn put_preference(
        &self,
        scope: Scope,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        updated_by: Option<&str>,
    ) -> Result<PreferenceEntry> {
        const ACTION: &str = "store the preference";
        validate::text("preference key", key, 255)?;
        let mut tx = self.write(ACTION).await?;
        let t = now();
        let entry = match fetch_pref(&mut tx, &scope, key, ACTION).await? {
            Some(mut p) => {
                if let Some(v) = expected_version
                    && v != p.version
                {
                    return Err(version_conflict(key, p.version, v));
                }
                p.value_type = json_type_name(&value).into();
                p.value = value;
                p.version += 1;
                p.updated_at = t;
                p.updated_by = updated_by.map(str::to_string);
                sqlx::query(
                    "UPDATE preference_entries
                     SET value = ?2, value_type = ?3, version = ?4, updated_at = ?5, updated_by = ?6
                     WHERE id = ?1",
                )
                .bind(p.id.to_string())
                .bind(json_text(&p.value))
                .bind(&p.value_type)
                .bind(p.version)
                .bind(ts(t))
                .bind(&p.updated_by)
                .execute(&mut *tx)
                .await
                .map_err(db(ACTION))?;
                p
            }
            None => {
                if let Some(v) = expected_version
                    && v != 0
                {
                    return Err(Error::conflict(format!(
                        "preference '{key}' does not exist (expected version {v})"
                    )));
                }
                let p = PreferenceEntry {
                    id: PreferenceId::new(),
                    scope,
                    key: key.to_string(),
                    value_type: json_type_name(&value).into(),
                    value,
                    version: 1,
                    updated_at: t,
                    updated_by: updated_by.map(str::to_string),
                };
                sqlx::query(
                    "INSERT INTO preference_entries
                         (id, scope_type, scope_id, key, value, value_type, version, updated_at, updated_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8)",
                )
                .bind(p.id.to_string())
                .bind(scope.type_str())
                .bind(scope.id().map(|u| u.to_string()))
                .bind(&p.key)
                .bind(json_text(&p.value))
                .bind(&p.value_type)
                .bind(ts(t))
                .bind(&p.updated_by)
                .execute(&mut *tx)
                .await
                .map_err(db(ACTION))?;
                p
            }
        };
        tx.commit().await.map_err(db(ACTION))?;
        Ok(entry)
    }

    async fn delete_preference(
        &self,
        scope: Scope,
        key: &str,
        expected_version: Option<i32>,
    ) -> Result<()> {
        const ACTION: &str = "delete the preference";
        let mut tx = self.write(ACTION).await?;
        let p = fetch_pref(&mut tx, &scope, key, ACTION)
            .await?
            .ok_or_else(|| Error::not_found("preference", key))?;
        if let Some(v) = expected_version
            && v != p.version
        {
            return Err(version_conflict(key, p.version, v));
        }
        sqlx::query("DELETE FROM preference_entries WHERE id = ?1")
            .bind(p.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))
    }
}
