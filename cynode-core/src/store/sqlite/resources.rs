//! Skills and system settings.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::audit::{auth_row, chat_row, mcp_row};
use super::preferences::{fetch_pref, scope_key};
use super::{RowExt, SqliteStore, db, json_text, opt_json_text, to_i32, ts};
use crate::model::{AuditKind, AuditRecord, PreferenceEntry, Scope, json_type_name};
use crate::store::memory::now;
use crate::store::preference_audit as pa;
use crate::store::settings::{check_version, validate_write};
use crate::store::skills::{
    system_skill_read_only, validate_content, validate_name, validate_scope, validate_update,
};
use crate::store::*;
use crate::{Error, Result};

const SKILL_COLUMNS: &str = "id, name, content, scope, owner_id, is_system, created_at, updated_at";

fn skill_row(r: &SqliteRow) -> Result<Skill> {
    Ok(Skill {
        id: r.id("id")?,
        name: r.text("name")?,
        content: r.text("content")?,
        scope: r.text("scope")?,
        owner_id: r.opt_id("owner_id")?,
        is_system: r.flag("is_system")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

async fn fetch_skill(
    conn: &mut SqliteConnection,
    id: uuid::Uuid,
    action: &str,
) -> Result<Option<Skill>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SKILL_COLUMNS} FROM skills WHERE id = ?1"
    )))
    .bind(id.to_string())
    .fetch_optional(conn)
    .await
    .map_err(db(action))?;
    row.as_ref().map(skill_row).transpose()
}

#[async_trait]
impl SkillStore for SqliteStore {
    async fn ensure_system_skill(&self, content: &str) -> Result<Skill> {
        const ACTION: &str = "store the system skill";
        validate_content(content)?;
        let mut tx = self.write(ACTION).await?;
        let t = now();
        let existing = fetch_skill(&mut tx, SYSTEM_SKILL_ID, ACTION).await?;
        let current = existing.as_ref().is_some_and(|s| {
            s.content == content
                && s.name == SYSTEM_SKILL_NAME
                && s.scope == "global"
                && s.is_system
                && s.owner_id.is_none()
        });
        if !current {
            sqlx::query(
                "INSERT INTO skills (id, name, content, scope, owner_id, is_system, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'global', NULL, 1, ?4, ?4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, content = excluded.content,
                     scope = 'global', owner_id = NULL, is_system = 1, updated_at = excluded.updated_at",
            )
            .bind(SYSTEM_SKILL_ID.to_string())
            .bind(SYSTEM_SKILL_NAME)
            .bind(content)
            .bind(ts(t))
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        }
        let skill = fetch_skill(&mut tx, SYSTEM_SKILL_ID, ACTION)
            .await?
            .ok_or_else(|| Error::internal("the system skill vanished while it was written"))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(skill)
    }

    async fn create_skill(&self, new: NewSkill) -> Result<Skill> {
        const ACTION: &str = "store the skill";
        validate_name(&new.name)?;
        validate_content(&new.content)?;
        validate_scope(&new.scope)?;
        let mut tx = self.write(ACTION).await?;
        let owner = sqlx::query("SELECT 1 FROM users WHERE id = ?1")
            .bind(new.owner_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        if owner.is_none() {
            return Err(Error::not_found("user", new.owner_id));
        }
        let t = now();
        let skill = Skill {
            id: uuid::Uuid::new_v4(),
            name: new.name,
            content: new.content,
            scope: new.scope,
            owner_id: Some(new.owner_id),
            is_system: false,
            created_at: t,
            updated_at: t,
        };
        sqlx::query(
            "INSERT INTO skills (id, name, content, scope, owner_id, is_system, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)",
        )
        .bind(skill.id.to_string())
        .bind(&skill.name)
        .bind(&skill.content)
        .bind(&skill.scope)
        .bind(new.owner_id.to_string())
        .bind(ts(t))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(skill)
    }

    async fn get_skill(&self, id: uuid::Uuid) -> Result<Skill> {
        const ACTION: &str = "read the skill";
        let mut conn = self.reader.acquire().await.map_err(db(ACTION))?;
        fetch_skill(&mut conn, id, ACTION)
            .await?
            .ok_or_else(|| Error::not_found("skill", id))
    }

    async fn list_skills(&self, filter: &SkillFilter) -> Result<Vec<Skill>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SKILL_COLUMNS} FROM skills
             WHERE (?1 IS NULL OR is_system = 1 OR owner_id = ?1 OR scope = 'global')
               AND (?2 IS NULL OR scope = ?2)
               AND (?3 IS NULL OR owner_id = ?3)
             ORDER BY updated_at DESC, id DESC"
        )))
        .bind(filter.visible_to.map(|u| u.to_string()))
        .bind(filter.scope.as_deref())
        .bind(filter.owner_id.map(|u| u.to_string()))
        .fetch_all(&self.reader)
        .await
        .map_err(db("list skills"))?;
        rows.iter().map(skill_row).collect()
    }

    async fn update_skill(&self, id: uuid::Uuid, update: SkillUpdate) -> Result<Skill> {
        const ACTION: &str = "update the skill";
        validate_update(&update)?;
        let mut tx = self.write(ACTION).await?;
        let mut s = fetch_skill(&mut tx, id, ACTION)
            .await?
            .ok_or_else(|| Error::not_found("skill", id))?;
        if s.is_system {
            return Err(system_skill_read_only());
        }
        if let Some(n) = update.name {
            s.name = n;
        }
        if let Some(c) = update.content {
            s.content = c;
        }
        if let Some(sc) = update.scope {
            s.scope = sc;
        }
        s.updated_at = now();
        sqlx::query(
            "UPDATE skills SET name = ?2, content = ?3, scope = ?4, updated_at = ?5 WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(&s.name)
        .bind(&s.content)
        .bind(&s.scope)
        .bind(ts(s.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(s)
    }

    async fn delete_skill(&self, id: uuid::Uuid) -> Result<()> {
        const ACTION: &str = "delete the skill";
        let mut tx = self.write(ACTION).await?;
        let s = fetch_skill(&mut tx, id, ACTION)
            .await?
            .ok_or_else(|| Error::not_found("skill", id))?;
        if s.is_system {
            return Err(system_skill_read_only());
        }
        sqlx::query("DELETE FROM skills WHERE id = ?1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))
    }
}

fn setting_row(r: &SqliteRow) -> Result<SystemSetting> {
    Ok(SystemSetting {
        key: r.text("key")?,
        value: r.opt_json("value")?.unwrap_or(Value::Null),
        value_type: r.text("value_type")?,
        version: to_i32("version", r.int("version")?)?,
        updated_at: r.time("updated_at")?,
        updated_by: r.opt_text("updated_by")?,
    })
}

async fn fetch_setting(
    conn: &mut SqliteConnection,
    key: &str,
    action: &str,
) -> Result<Option<SystemSetting>> {
    let row = sqlx::query(
        "SELECT key, value, value_type, version, updated_at, updated_by
         FROM system_settings WHERE key = ?1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await
    .map_err(db(action))?;
    row.as_ref().map(setting_row).transpose()
}

async fn record_change(
    conn: &mut SqliteConnection,
    change: &SettingChange,
    action: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO system_settings_audit_log
             (id, key, old_value, new_value, changed_at, changed_by, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(change.id.to_string())
    .bind(&change.key)
    .bind(opt_json_text(&change.old_value))
    .bind(opt_json_text(&change.new_value))
    .bind(ts(change.changed_at))
    .bind(&change.changed_by)
    .bind(&change.reason)
    .execute(conn)
    .await
    .map_err(db(action))?;
    Ok(())
}

#[async_trait]
impl SettingStore for SqliteStore {
    async fn get_setting(&self, key: &str) -> Result<SystemSetting> {
        const ACTION: &str = "read the setting";
        let mut conn = self.reader.acquire().await.map_err(db(ACTION))?;
        fetch_setting(&mut conn, key, ACTION)
            .await?
            .ok_or_else(|| Error::not_found("setting", key))
    }

    async fn list_settings(&self, prefix: &str) -> Result<Vec<SystemSetting>> {
        let rows = sqlx::query(
            "SELECT key, value, value_type, version, updated_at, updated_by
             FROM system_settings WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )
        .bind(prefix)
        .fetch_all(&self.reader)
        .await
        .map_err(db("list settings"))?;
        rows.iter().map(setting_row).collect()
    }

    async fn put_setting(
        &self,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<SystemSetting> {
        const ACTION: &str = "store the setting";
        validate_write(key, changed_by)?;
        let mut tx = self.write(ACTION).await?;
        let old = fetch_setting(&mut tx, key, ACTION).await?;
        check_version(key, old.as_ref().map(|s| s.version), expected_version)?;
        let t = now();
        let setting = SystemSetting {
            key: key.into(),
            value_type: json_type_name(&value).into(),
            value: value.clone(),
            version: old.as_ref().map_or(1, |s| s.version + 1),
            updated_at: t,
            updated_by: Some(changed_by.into()),
        };
        sqlx::query(
            "INSERT INTO system_settings (key, value, value_type, version, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, value_type = excluded.value_type,
                 version = excluded.version, updated_at = excluded.updated_at,
                 updated_by = excluded.updated_by",
        )
        .bind(key)
        .bind(json_text(&setting.value))
        .bind(&setting.value_type)
        .bind(setting.version)
        .bind(ts(t))
        .bind(changed_by)
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        let change = SettingChange {
            id: uuid::Uuid::new_v4(),
            key: key.into(),
            old_value: old.map(|s| s.value),
            new_value: Some(value),
            changed_at: t,
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        };
        record_change(&mut tx, &change, ACTION).await?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(setting)
    }

    async fn delete_setting(
        &self,
        key: &str,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        const ACTION: &str = "delete the setting";
        validate_write(key, changed_by)?;
        let mut tx = self.write(ACTION).await?;
        let old = fetch_setting(&mut tx, key, ACTION)
            .await?
            .ok_or_else(|| Error::not_found("setting", key))?;
        check_version(key, Some(old.version), expected_version)?;
        sqlx::query("DELETE FROM system_settings WHERE key = ?1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let change = SettingChange {
            id: uuid::Uuid::new_v4(),
            key: key.into(),
            old_value: Some(old.value),
            new_value: None,
            changed_at: now(),
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        };
        record_change(&mut tx, &change, ACTION).await?;
        tx.commit().await.map_err(db(ACTION))
    }

    async fn setting_history(&self, key: &str) -> Result<Vec<SettingChange>> {
        let rows = sqlx::query(
            "SELECT id, key, old_value, new_value, changed_at, changed_by, reason
             FROM system_settings_audit_log WHERE key = ?1 ORDER BY rowid",
        )
        .bind(key)
        .fetch_all(&self.reader)
        .await
        .map_err(db("read the setting history"))?;
        rows.iter()
            .map(|r| {
                Ok(SettingChange {
                    id: r.id("id")?,
                    key: r.text("key")?,
                    old_value: r.opt_json("old_value")?,
                    new_value: r.opt_json("new_value")?,
                    changed_at: r.time("changed_at")?,
                    changed_by: r.text("changed_by")?,
                    reason: r.opt_text("reason")?,
                })
            })
            .collect()
    }
}

async fn record_pref_change(
    conn: &mut SqliteConnection,
    c: &PreferenceChange,
    action: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO preference_audit_log
             (id, entry_id, scope_type, scope_id, key, old_value, new_value, changed_at, changed_by, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(c.id.to_string())
    .bind(c.entry_id.to_string())
    .bind(c.scope.type_str())
    .bind(c.scope.id().map(|u| u.to_string()))
    .bind(&c.key)
    .bind(opt_json_text(&c.old_value))
    .bind(opt_json_text(&c.new_value))
    .bind(ts(c.changed_at))
    .bind(&c.changed_by)
    .bind(&c.reason)
    .execute(conn)
    .await
    .map_err(db(action))?;
    Ok(())
}

#[async_trait]
impl PreferenceAuditStore for SqliteStore {
    async fn put_preference_audited(
        &self,
        scope: Scope,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<PreferenceEntry> {
        const ACTION: &str = "store the preference";
        pa::validate_write(key, changed_by)?;
        let mut tx = self.write(ACTION).await?;
        let old = fetch_pref(&mut tx, &scope, key, ACTION).await?;
        pa::check_version(key, old.as_ref().map(|p| p.version), expected_version)?;
        let t = now();
        let entry = PreferenceEntry {
            id: old.as_ref().map_or_else(crate::PreferenceId::new, |p| p.id),
            scope,
            key: key.into(),
            value_type: json_type_name(&value).into(),
            value: value.clone(),
            version: old.as_ref().map_or(1, |p| p.version + 1),
            updated_at: t,
            updated_by: Some(changed_by.into()),
        };
        if old.is_some() {
            sqlx::query(
                "UPDATE preference_entries
                 SET value = ?2, value_type = ?3, version = ?4, updated_at = ?5, updated_by = ?6
                 WHERE id = ?1",
            )
            .bind(entry.id.to_string())
            .bind(json_text(&entry.value))
            .bind(&entry.value_type)
            .bind(entry.version)
            .bind(ts(t))
            .bind(changed_by)
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        } else {
            sqlx::query(
                "INSERT INTO preference_entries
                     (id, scope_type, scope_id, key, value, value_type, version, updated_at, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8)",
            )
            .bind(entry.id.to_string())
            .bind(scope.type_str())
            .bind(scope.id().map(|u| u.to_string()))
            .bind(key)
            .bind(json_text(&entry.value))
            .bind(&entry.value_type)
            .bind(ts(t))
            .bind(changed_by)
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        }
        let change = PreferenceChange {
            id: uuid::Uuid::new_v4(),
            entry_id: entry.id,
            scope,
            key: key.into(),
            old_value: old.map(|p| p.value),
            new_value: Some(value),
            changed_at: t,
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        };
        record_pref_change(&mut tx, &change, ACTION).await?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(entry)
    }

    async fn delete_preference_audited(
        &self,
        scope: Scope,
        key: &str,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        const ACTION: &str = "delete the preference";
        pa::validate_write(key, changed_by)?;
        let mut tx = self.write(ACTION).await?;
        let old = fetch_pref(&mut tx, &scope, key, ACTION)
            .await?
            .ok_or_else(|| Error::not_found("preference", key))?;
        pa::check_version(key, Some(old.version), expected_version)?;
        sqlx::query("DELETE FROM preference_entries WHERE id = ?1")
            .bind(old.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let change = PreferenceChange {
            id: uuid::Uuid::new_v4(),
            entry_id: old.id,
            scope,
            key: key.into(),
            old_value: Some(old.value),
            new_value: None,
            changed_at: now(),
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        };
        record_pref_change(&mut tx, &change, ACTION).await?;
        tx.commit().await.map_err(db(ACTION))
    }

    async fn preference_history(&self, scope: Scope, key: &str) -> Result<Vec<PreferenceChange>> {
        let rows = sqlx::query(
            "SELECT id, entry_id, old_value, new_value, changed_at, changed_by, reason
             FROM preference_audit_log
             WHERE scope_type = ?1 AND ifnull(scope_id, '') = ?2 AND key = ?3 ORDER BY rowid",
        )
        .bind(scope.type_str())
        .bind(scope_key(&scope))
        .bind(key)
        .fetch_all(&self.reader)
        .await
        .map_err(db("read the preference history"))?;
        rows.iter()
            .map(|r| {
                Ok(PreferenceChange {
                    id: r.id("id")?,
                    entry_id: r.id("entry_id")?,
                    scope,
                    key: key.into(),
                    old_value: r.opt_json("old_value")?,
                    new_value: r.opt_json("new_value")?,
                    changed_at: r.time("changed_at")?,
                    changed_by: r.text("changed_by")?,
                    reason: r.opt_text("reason")?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl AuditQueryStore for SqliteStore {
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        const ACTION: &str = "read the audit log";
        const FILTER: &str = "WHERE (?1 IS NULL OR user_id = ?1)
               AND (?2 IS NULL OR created_at >= ?2)
               AND (?3 IS NULL OR created_at <= ?3)
               AND (?4 IS NULL OR (created_at, id) < (?4, ?5))
             ORDER BY created_at DESC, id DESC LIMIT ?6";
        let (columns, table, decode): (&str, &str, fn(&SqliteRow) -> Result<AuditRecord>) =
            match q.kind {
                AuditKind::Auth => (
                    "id, event_type, user_id, subject_handle, success, ip_address, user_agent, \
                     reason, created_at",
                    "auth_audit_log",
                    auth_row,
                ),
                AuditKind::Chat => (
                    "id, created_at, user_id, project_id, outcome, error_code, redaction_applied, \
                     redaction_kinds, duration_ms, request_id",
                    "chat_audit_log",
                    chat_row,
                ),
                AuditKind::McpToolCall => (
                    "id, created_at, task_id, project_id, job_id, user_id, tool_name, decision, \
                     status, duration_ms, error_type",
                    "mcp_tool_call_audit_log",
                    mcp_row,
                ),
            };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM {table} {FILTER}"
        )))
        .bind(q.user_id.map(|u| u.to_string()))
        .bind(q.since.map(ts))
        .bind(q.until.map(ts))
        .bind(q.after.map(|(t, _)| ts(t)))
        .bind(q.after.map(|(_, id)| id.to_string()))
        .bind(i64::from(crate::store::validate::limit(q.limit)))
        .fetch_all(&self.reader)
        .await
        .map_err(db(ACTION))?;
        rows.iter().map(decode).collect()
    }
}
