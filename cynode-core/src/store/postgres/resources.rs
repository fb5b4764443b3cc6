//! [`SkillStore`] and [`SettingStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::error::{db_err, missing_parent};
use super::rows::{
    AuthAuditRow, ChatAuditRow, McpAuditRow, PreferenceRow, auth_audit_columns, chat_audit_columns,
    mcp_audit_columns, preference_columns,
};
use crate::model::{AuditKind, AuditRecord, PreferenceEntry, Scope, json_type_name};
use crate::store::memory::now;
use crate::store::preference_audit as pa;
use crate::store::settings::{check_version, validate_write};
use crate::store::skills::{
    system_skill_read_only, validate_content, validate_name, validate_scope, validate_update,
};
use crate::store::*;
use crate::{Error, Result};

macro_rules! skill_columns {
    () => {
        "id, name, content, scope, owner_id, is_system, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct SkillRow {
    id: Uuid,
    name: String,
    content: String,
    scope: String,
    owner_id: Option<Uuid>,
    is_system: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SkillRow> for Skill {
    fn from(r: SkillRow) -> Self {
        Skill {
            id: r.id,
            name: r.name,
            content: r.content,
            scope: r.scope,
            owner_id: r.owner_id.map(Into::into),
            is_system: r.is_system,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct SettingRow {
    key: String,
    value: Option<Value>,
    value_type: String,
    version: i32,
    updated_at: DateTime<Utc>,
    updated_by: Option<String>,
}

impl From<SettingRow> for SystemSetting {
    fn from(r: SettingRow) -> Self {
        SystemSetting {
            key: r.key,
            value: r.value.unwrap_or(Value::Null),
            value_type: r.value_type,
            version: r.version,
            updated_at: r.updated_at,
            updated_by: r.updated_by,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    id: Uuid,
    key: String,
    old_value: Option<Value>,
    new_value: Option<Value>,
    changed_at: DateTime<Utc>,
    changed_by: String,
    reason: Option<String>,
}

async fn select_skill<'e, E>(exec: E, id: Uuid, lock: bool) -> Result<Option<Skill>>
where
    E: sqlx::PgExecutor<'e>,
{
    let sql = if lock {
        concat!(
            "SELECT ",
            skill_columns!(),
            " FROM skills WHERE id = $1 FOR UPDATE"
        )
    } else {
        concat!("SELECT ", skill_columns!(), " FROM skills WHERE id = $1")
    };
    let row: Option<SkillRow> = sqlx::query_as(sql)
        .bind(id)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?;
    Ok(row.map(Skill::from))
}

#[async_trait]
impl SkillStore for PgStore {
    async fn ensure_system_skill(&self, content: &str) -> Result<Skill> {
        validate_content(content)?;
        // Writes only when something differs, so `updated_at` moves only on change.
        let row: Option<SkillRow> = sqlx::query_as(concat!(
            "INSERT INTO skills (id, name, content, scope, owner_id, is_system, created_at, updated_at) \
             VALUES ($1, $2, $3, 'global', NULL, true, $4, $4) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, content = EXCLUDED.content, \
             scope = 'global', owner_id = NULL, is_system = true, updated_at = EXCLUDED.updated_at \
             WHERE skills.name IS DISTINCT FROM EXCLUDED.name \
                OR skills.content IS DISTINCT FROM EXCLUDED.content \
                OR skills.scope <> 'global' OR skills.owner_id IS NOT NULL OR NOT skills.is_system \
             RETURNING ",
            skill_columns!()
        ))
        .bind(SYSTEM_SKILL_ID)
        .bind(SYSTEM_SKILL_NAME)
        .bind(content)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            Some(r) => Ok(r.into()),
            None => select_skill(&self.pool, SYSTEM_SKILL_ID, false)
                .await?
                .ok_or_else(|| Error::internal("the system skill vanished while it was written")),
        }
    }

    async fn create_skill(&self, new: NewSkill) -> Result<Skill> {
        validate_name(&new.name)?;
        validate_content(&new.content)?;
        validate_scope(&new.scope)?;
        let t = now();
        let row: SkillRow = sqlx::query_as(concat!(
            "INSERT INTO skills (id, name, content, scope, owner_id, is_system, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, false, $6, $6) RETURNING ",
            skill_columns!()
        ))
        .bind(Uuid::new_v4())
        .bind(&new.name)
        .bind(&new.content)
        .bind(&new.scope)
        .bind(new.owner_id.0)
        .bind(t)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| missing_parent(e, "skills_owner_fkey", "user", new.owner_id))?;
        Ok(row.into())
    }

    async fn get_skill(&self, id: Uuid) -> Result<Skill> {
        select_skill(&self.pool, id, false)
            .await?
            .ok_or_else(|| Error::not_found("skill", id))
    }

    async fn list_skills(&self, filter: &SkillFilter) -> Result<Vec<Skill>> {
        let rows: Vec<SkillRow> = sqlx::query_as(concat!(
            "SELECT ",
            skill_columns!(),
            " FROM skills \
             WHERE ($1::uuid IS NULL OR is_system OR owner_id = $1 OR scope = 'global') \
               AND ($2::text IS NULL OR scope = $2) \
               AND ($3::uuid IS NULL OR owner_id = $3) \
             ORDER BY updated_at DESC, id DESC"
        ))
        .bind(filter.visible_to.map(|u| u.0))
        .bind(filter.scope.as_deref())
        .bind(filter.owner_id.map(|u| u.0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Skill::from).collect())
    }

    async fn update_skill(&self, id: Uuid, update: SkillUpdate) -> Result<Skill> {
        validate_update(&update)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let s = select_skill(&mut *tx, id, true)
            .await?
            .ok_or_else(|| Error::not_found("skill", id))?;
        if s.is_system {
            return Err(system_skill_read_only());
        }
        let row: SkillRow = sqlx::query_as(concat!(
            "UPDATE skills SET name = COALESCE($2, name), content = COALESCE($3, content), \
             scope = COALESCE($4, scope), updated_at = $5 WHERE id = $1 RETURNING ",
            skill_columns!()
        ))
        .bind(id)
        .bind(update.name)
        .bind(update.content)
        .bind(update.scope)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(row.into())
    }

    async fn delete_skill(&self, id: Uuid) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let s = select_skill(&mut *tx, id, true)
            .await?
            .ok_or_else(|| Error::not_found("skill", id))?;
        if s.is_system {
            return Err(system_skill_read_only());
        }
        sqlx::query("DELETE FROM skills WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

macro_rules! setting_columns {
    () => {
        "key, value, value_type, version, updated_at, updated_by"
    };
}

async fn select_setting<'e, E>(exec: E, key: &str, lock: bool) -> Result<Option<SystemSetting>>
where
    E: sqlx::PgExecutor<'e>,
{
    let sql = if lock {
        concat!(
            "SELECT ",
            setting_columns!(),
            " FROM system_settings WHERE key = $1 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            setting_columns!(),
            " FROM system_settings WHERE key = $1"
        )
    };
    let row: Option<SettingRow> = sqlx::query_as(sql)
        .bind(key)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?;
    Ok(row.map(SystemSetting::from))
}

async fn record_change<'e, E>(exec: E, c: &SettingChange) -> Result<()>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query(
        "INSERT INTO system_settings_audit_log \
         (id, key, old_value, new_value, changed_at, changed_by, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.id)
    .bind(&c.key)
    .bind(&c.old_value)
    .bind(&c.new_value)
    .bind(c.changed_at)
    .bind(&c.changed_by)
    .bind(&c.reason)
    .execute(exec)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl SettingStore for PgStore {
    async fn get_setting(&self, key: &str) -> Result<SystemSetting> {
        select_setting(&self.pool, key, false)
            .await?
            .ok_or_else(|| Error::not_found("setting", key))
    }

    async fn list_settings(&self, prefix: &str) -> Result<Vec<SystemSetting>> {
        let rows: Vec<SettingRow> = sqlx::query_as(concat!(
            "SELECT ",
            setting_columns!(),
            " FROM system_settings WHERE starts_with(key, $1) ORDER BY key"
        ))
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(SystemSetting::from).collect())
    }

    async fn put_setting(
        &self,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<SystemSetting> {
        validate_write(key, changed_by)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let old = select_setting(&mut *tx, key, true).await?;
        check_version(key, old.as_ref().map(|s| s.version), expected_version)?;
        let t = now();
        let row: SettingRow = match &old {
            // A concurrent create of the same key fails on the primary key: a conflict.
            None => sqlx::query_as(concat!(
                "INSERT INTO system_settings (key, value, value_type, version, updated_at, updated_by) \
                 VALUES ($1, $2, $3, 1, $4, $5) RETURNING ",
                setting_columns!()
            ))
            .bind(key)
            .bind(&value)
            .bind(json_type_name(&value))
            .bind(t)
            .bind(changed_by)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?,
            Some(_) => sqlx::query_as(concat!(
                "UPDATE system_settings SET value = $2, value_type = $3, version = version + 1, \
                 updated_at = $4, updated_by = $5 WHERE key = $1 RETURNING ",
                setting_columns!()
            ))
            .bind(key)
            .bind(&value)
            .bind(json_type_name(&value))
            .bind(t)
            .bind(changed_by)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?,
        };
        let change = SettingChange {
            id: Uuid::new_v4(),
            key: key.into(),
            old_value: old.map(|s| s.value),
            new_value: Some(value),
            changed_at: t,
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        };
        record_change(&mut *tx, &change).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(row.into())
    }

    async fn delete_setting(
        &self,
        key: &str,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        validate_write(key, changed_by)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let old = select_setting(&mut *tx, key, true)
            .await?
            .ok_or_else(|| Error::not_found("setting", key))?;
        check_version(key, Some(old.version), expected_version)?;
        sqlx::query("DELETE FROM system_settings WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let change = SettingChange {
            id: Uuid::new_v4(),
            key: key.into(),
            old_value: Some(old.value),
            new_value: None,
            changed_at: now(),
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        };
        record_change(&mut *tx, &change).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn setting_history(&self, key: &str) -> Result<Vec<SettingChange>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT id, key, old_value, new_value, changed_at, changed_by, reason \
             FROM system_settings_audit_log WHERE key = $1 ORDER BY seq",
        )
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| SettingChange {
                id: r.id,
                key: r.key,
                old_value: r.old_value,
                new_value: r.new_value,
                changed_at: r.changed_at,
                changed_by: r.changed_by,
                reason: r.reason,
            })
            .collect())
    }
}

/// The entry of a scope's key, locked for the rest of the transaction.
async fn lock_pref(
    conn: &mut sqlx::PgConnection,
    scope: Scope,
    key: &str,
) -> Result<Option<PreferenceEntry>> {
    let sql = if scope == Scope::System {
        concat!(
            "SELECT ",
            preference_columns!(),
            " FROM preference_entries WHERE scope_type = $1 AND scope_id IS NULL \
             AND $2::uuid IS NULL AND key = $3 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            preference_columns!(),
            " FROM preference_entries WHERE scope_type = $1 AND scope_id = $2 AND key = $3 \
             FOR UPDATE"
        )
    };
    let row: Option<PreferenceRow> = sqlx::query_as(sql)
        .bind(scope.type_str())
        .bind(scope.id())
        .bind(key)
        .fetch_optional(conn)
        .await
        .map_err(db_err)?;
    row.map(PreferenceEntry::try_from).transpose()
}

async fn record_pref_change(conn: &mut sqlx::PgConnection, c: &PreferenceChange) -> Result<()> {
    sqlx::query(
        "INSERT INTO preference_audit_log \
         (id, entry_id, scope_type, scope_id, key, old_value, new_value, changed_at, changed_by, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(c.id)
    .bind(c.entry_id.0)
    .bind(c.scope.type_str())
    .bind(c.scope.id())
    .bind(&c.key)
    .bind(&c.old_value)
    .bind(&c.new_value)
    .bind(c.changed_at)
    .bind(&c.changed_by)
    .bind(&c.reason)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

impl PgStore {
    async fn try_put_pref_audited(
        &self,
        scope: Scope,
        key: &str,
        value: &Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<PreferenceEntry> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let old = lock_pref(&mut tx, scope, key).await?;
        pa::check_version(key, old.as_ref().map(|p| p.version), expected_version)?;
        let t = now();
        let row: PreferenceRow = match &old {
            // A concurrent create of the same key fails on the unique index: a conflict.
            None => sqlx::query_as(concat!(
                "INSERT INTO preference_entries (id, scope_type, scope_id, key, value, value_type, \
                 version, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8) \
                 RETURNING ",
                preference_columns!()
            ))
            .bind(Uuid::new_v4())
            .bind(scope.type_str())
            .bind(scope.id())
            .bind(key)
            .bind(value)
            .bind(json_type_name(value))
            .bind(t)
            .bind(changed_by)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?,
            Some(p) => sqlx::query_as(concat!(
                "UPDATE preference_entries SET value = $2, value_type = $3, version = version + 1, \
                 updated_at = $4, updated_by = $5 WHERE id = $1 RETURNING ",
                preference_columns!()
            ))
            .bind(p.id.0)
            .bind(value)
            .bind(json_type_name(value))
            .bind(t)
            .bind(changed_by)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?,
        };
        let entry = PreferenceEntry::try_from(row)?;
        let change = PreferenceChange {
            id: Uuid::new_v4(),
            entry_id: entry.id,
            scope,
            key: key.into(),
            old_value: old.map(|p| p.value),
            new_value: Some(value.clone()),
            changed_at: t,
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        };
        record_pref_change(&mut tx, &change).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(entry)
    }
}

#[async_trait]
impl PreferenceAuditStore for PgStore {
    async fn put_preference_audited(
        &self,
        scope: Scope,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<PreferenceEntry> {
        pa::validate_write(key, changed_by)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .try_put_pref_audited(scope, key, &value, expected_version, changed_by, reason)
                .await
            {
                // Without a version condition the only conflict is losing a race to
                // create the entry: the next attempt updates it instead.
                Err(Error::Conflict(_)) if expected_version.is_none() && attempt < 3 => continue,
                other => return other,
            }
        }
    }

    async fn delete_preference_audited(
        &self,
        scope: Scope,
        key: &str,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        pa::validate_write(key, changed_by)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let old = lock_pref(&mut tx, scope, key)
            .await?
            .ok_or_else(|| Error::not_found("preference", key))?;
        pa::check_version(key, Some(old.version), expected_version)?;
        sqlx::query("DELETE FROM preference_entries WHERE id = $1")
            .bind(old.id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let change = PreferenceChange {
            id: Uuid::new_v4(),
            entry_id: old.id,
            scope,
            key: key.into(),
            old_value: Some(old.value),
            new_value: None,
            changed_at: now(),
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        };
        record_pref_change(&mut tx, &change).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn preference_history(&self, scope: Scope, key: &str) -> Result<Vec<PreferenceChange>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: Uuid,
            entry_id: Uuid,
            old_value: Option<Value>,
            new_value: Option<Value>,
            changed_at: DateTime<Utc>,
            changed_by: String,
            reason: Option<String>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, entry_id, old_value, new_value, changed_at, changed_by, reason \
             FROM preference_audit_log \
             WHERE scope_type = $1 AND scope_id IS NOT DISTINCT FROM $2 AND key = $3 ORDER BY seq",
        )
        .bind(scope.type_str())
        .bind(scope.id())
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| PreferenceChange {
                id: r.id,
                entry_id: r.entry_id.into(),
                scope,
                key: key.into(),
                old_value: r.old_value,
                new_value: r.new_value,
                changed_at: r.changed_at,
                changed_by: r.changed_by,
                reason: r.reason,
            })
            .collect())
    }
}

#[async_trait]
impl AuditQueryStore for PgStore {
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        macro_rules! page {
            ($cols:expr, $table:literal, $row:ty) => {{
                let rows: Vec<$row> = sqlx::query_as(concat!(
                    "SELECT ",
                    $cols,
                    " FROM ",
                    $table,
                    " WHERE ($1::uuid IS NULL OR user_id = $1) \
                       AND ($2::timestamptz IS NULL OR created_at >= $2) \
                       AND ($3::timestamptz IS NULL OR created_at <= $3) \
                       AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid)) \
                     ORDER BY created_at DESC, id DESC LIMIT $6"
                ))
                .bind(q.user_id.map(|u| u.0))
                .bind(q.since)
                .bind(q.until)
                .bind(q.after.map(|(t, _)| t))
                .bind(q.after.map(|(_, id)| id.0))
                .bind(i64::from(crate::store::validate::limit(q.limit)))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.into_iter().map(AuditRecord::from).collect()
            }};
        }
        Ok(match q.kind {
            AuditKind::Auth => page!(auth_audit_columns!(), "auth_audit_log", AuthAuditRow),
            AuditKind::Chat => page!(chat_audit_columns!(), "chat_audit_log", ChatAuditRow),
            AuditKind::McpToolCall => {
                page!(mcp_audit_columns!(), "mcp_tool_call_audit_log", McpAuditRow)
            }
        })
    }
}
