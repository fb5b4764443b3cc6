//! [`AccessControlStore`]: access-control rules and their audit log.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;

use super::{RowExt, SqliteStore, db, opt_json_text, stored, to_i32, ts};
use crate::store::access::{validate_audit, validate_rule};
use crate::store::memory::now;
use crate::store::{
    AccessAudit, AccessAuditFilter, AccessControlStore, AccessRule, AccessRuleFilter,
    NewAccessRule, validate,
};
use crate::{Error, Result};

const RULE_COLUMNS: &str = "id, subject_type, subject_id, action, resource_type, resource_pattern, \
     effect, priority, conditions, created_at, updated_at, updated_by";

const RULE_ORDER: &str = " ORDER BY priority DESC, created_at, id";

const AUDIT_COLUMNS: &str = "id, subject_type, subject_id, action, resource_type, resource, \
     decision, reason, task_id, job_id, duration_ms, created_at";

fn rule_row(r: &SqliteRow) -> Result<AccessRule> {
    Ok(AccessRule {
        id: r.id("id")?,
        subject_type: r.text("subject_type")?,
        subject_id: r.opt_id("subject_id")?,
        action: r.text("action")?,
        resource_type: r.text("resource_type")?,
        resource_pattern: r.text("resource_pattern")?,
        effect: r.parsed("effect")?,
        priority: to_i32("priority", r.int("priority")?)?,
        conditions: r.opt_json("conditions")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        updated_by: r.opt_text("updated_by")?,
    })
}

fn audit_row(r: &SqliteRow) -> Result<AccessAudit> {
    Ok(AccessAudit {
        id: r.id("id")?,
        subject_type: r.text("subject_type")?,
        subject_id: r.opt_id("subject_id")?,
        action: r.text("action")?,
        resource_type: r.text("resource_type")?,
        resource: r.text("resource")?,
        decision: r.parsed("decision")?,
        reason: r.opt_text("reason")?,
        task_id: r.opt_id("task_id")?,
        job_id: r.opt_id("job_id")?,
        duration_ms: r
            .opt_int("duration_ms")?
            .map(|d| to_i32("duration_ms", d))
            .transpose()?,
        created_at: r.time("created_at")?,
    })
}

fn opt_str<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|x| x.to_string())
}

#[async_trait]
impl AccessControlStore for SqliteStore {
    async fn create_access_rule(&self, new: NewAccessRule) -> Result<AccessRule> {
        const ACTION: &str = "store the access rule";
        validate_rule(&new)?;
        let t = now();
        let rule = AccessRule {
            id: uuid::Uuid::new_v4(),
            subject_type: new.subject_type,
            subject_id: new.subject_id,
            action: new.action,
            resource_type: new.resource_type,
            resource_pattern: new.resource_pattern,
            effect: new.effect,
            priority: new.priority,
            conditions: new.conditions,
            created_at: t,
            updated_at: t,
            updated_by: new.updated_by,
        };
        let mut tx = self.write(ACTION).await?;
        sqlx::query(
            "INSERT INTO access_control_rules
                 (id, subject_type, subject_id, action, resource_type, resource_pattern, effect,
                  priority, conditions, created_at, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
        )
        .bind(rule.id.to_string())
        .bind(&rule.subject_type)
        .bind(opt_str(rule.subject_id))
        .bind(&rule.action)
        .bind(&rule.resource_type)
        .bind(&rule.resource_pattern)
        .bind(rule.effect.as_str())
        .bind(rule.priority)
        .bind(opt_json_text(&rule.conditions))
        .bind(ts(t))
        .bind(&rule.updated_by)
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(rule)
    }

    async fn get_access_rule(&self, id: uuid::Uuid) -> Result<AccessRule> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM access_control_rules WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("read the access rule"))?;
        row.as_ref()
            .map(rule_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("access rule", id))
    }

    async fn list_access_rules(&self, f: &AccessRuleFilter) -> Result<Vec<AccessRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM access_control_rules
             WHERE (?1 IS NULL OR subject_type = ?1) AND (?2 IS NULL OR subject_id = ?2)
               AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR resource_type = ?4)
             {RULE_ORDER}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&f.subject_type)
            .bind(opt_str(f.subject_id))
            .bind(&f.action)
            .bind(&f.resource_type)
            .fetch_all(&self.reader)
            .await
            .map_err(db("list access rules"))?;
        rows.iter().map(rule_row).collect()
    }

    async fn rules_for_subject(
        &self,
        subject_type: &str,
        subject_id: Option<uuid::Uuid>,
        action: &str,
        resource_type: &str,
    ) -> Result<Vec<AccessRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM access_control_rules
             WHERE subject_type = ?1 AND subject_id IS ?2 AND action = ?3 AND resource_type = ?4
             {RULE_ORDER}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(subject_type)
            .bind(opt_str(subject_id))
            .bind(action)
            .bind(resource_type)
            .fetch_all(&self.reader)
            .await
            .map_err(db("load access rules"))?;
        rows.iter().map(rule_row).collect()
    }

    async fn delete_access_rule(&self, id: uuid::Uuid) -> Result<()> {
        const ACTION: &str = "delete the access rule";
        let mut tx = self.write(ACTION).await?;
        let done = sqlx::query("DELETE FROM access_control_rules WHERE id = ?1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("access rule", id));
        }
        tx.commit().await.map_err(db(ACTION))
    }

    async fn record_access(&self, a: AccessAudit) -> Result<()> {
        const ACTION: &str = "record the access decision";
        validate_audit(&a)?;
        let mut tx = self.write(ACTION).await?;
        sqlx::query(
            "INSERT INTO access_control_audit_log
                 (id, subject_type, subject_id, action, resource_type, resource, decision, reason,
                  task_id, job_id, duration_ms, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .bind(a.id.to_string())
        .bind(&a.subject_type)
        .bind(opt_str(a.subject_id))
        .bind(&a.action)
        .bind(&a.resource_type)
        .bind(&a.resource)
        .bind(a.decision.as_str())
        .bind(&a.reason)
        .bind(opt_str(a.task_id))
        .bind(opt_str(a.job_id))
        .bind(a.duration_ms)
        .bind(ts(stored(a.created_at)))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))
    }

    async fn list_access_audit(&self, f: &AccessAuditFilter) -> Result<Vec<AccessAudit>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM access_control_audit_log
             WHERE (?1 IS NULL OR task_id = ?1) AND (?2 IS NULL OR subject_id = ?2)
               AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR created_at >= ?4)
             ORDER BY created_at DESC, rowid DESC LIMIT ?5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(opt_str(f.task_id))
            .bind(opt_str(f.subject_id))
            .bind(&f.action)
            .bind(f.since.map(ts))
            .bind(i64::from(validate::limit(f.limit)))
            .fetch_all(&self.reader)
            .await
            .map_err(db("list access decisions"))?;
        rows.iter().map(audit_row).collect()
    }
}
