//! [`AccessControlStore`]: access-control rules and their audit log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::error::db_err;
use crate::store::access::{validate_audit, validate_rule};
use crate::store::memory::now;
use crate::store::{
    AccessAudit, AccessAuditFilter, AccessControlStore, AccessRule, AccessRuleFilter,
    NewAccessRule, validate,
};
use crate::{Error, Result};

macro_rules! rule_columns {
    () => {
        "id, subject_type, subject_id, action, resource_type, resource_pattern, effect, \
         priority, conditions, created_at, updated_at, updated_by"
    };
}

macro_rules! rule_order {
    () => {
        " ORDER BY priority DESC, created_at, id"
    };
}

macro_rules! audit_columns {
    () => {
        "id, subject_type, subject_id, action, resource_type, resource, decision, reason, \
         task_id, job_id, duration_ms, created_at"
    };
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: Uuid,
    subject_type: String,
    subject_id: Option<Uuid>,
    action: String,
    resource_type: String,
    resource_pattern: String,
    effect: String,
    priority: i32,
    conditions: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    updated_by: Option<String>,
}

impl TryFrom<RuleRow> for AccessRule {
    type Error = Error;
    fn try_from(r: RuleRow) -> Result<Self> {
        Ok(AccessRule {
            id: r.id,
            subject_type: r.subject_type,
            subject_id: r.subject_id,
            action: r.action,
            resource_type: r.resource_type,
            resource_pattern: r.resource_pattern,
            effect: r.effect.parse().map_err(|_| {
                Error::internal(format!(
                    "stored effect '{}' is not understood by this build",
                    r.effect
                ))
            })?,
            priority: r.priority,
            conditions: r.conditions,
            created_at: r.created_at,
            updated_at: r.updated_at,
            updated_by: r.updated_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    subject_type: String,
    subject_id: Option<Uuid>,
    action: String,
    resource_type: String,
    resource: String,
    decision: String,
    reason: Option<String>,
    task_id: Option<Uuid>,
    job_id: Option<Uuid>,
    duration_ms: Option<i32>,
    created_at: DateTime<Utc>,
}

impl TryFrom<AuditRow> for AccessAudit {
    type Error = Error;
    fn try_from(r: AuditRow) -> Result<Self> {
        Ok(AccessAudit {
            id: r.id,
            subject_type: r.subject_type,
            subject_id: r.subject_id,
            action: r.action,
            resource_type: r.resource_type,
            resource: r.resource,
            decision: r.decision.parse().map_err(|_| {
                Error::internal(format!(
                    "stored decision '{}' is not understood by this build",
                    r.decision
                ))
            })?,
            reason: r.reason,
            task_id: r.task_id.map(Into::into),
            job_id: r.job_id.map(Into::into),
            duration_ms: r.duration_ms,
            created_at: r.created_at,
        })
    }
}

#[async_trait]
impl AccessControlStore for PgStore {
    async fn create_access_rule(&self, new: NewAccessRule) -> Result<AccessRule> {
        validate_rule(&new)?;
        let t = now();
        let row: RuleRow = sqlx::query_as(concat!(
            "INSERT INTO access_control_rules (id, subject_type, subject_id, action, \
             resource_type, resource_pattern, effect, priority, conditions, created_at, \
             updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
             RETURNING ",
            rule_columns!()
        ))
        .bind(Uuid::new_v4())
        .bind(&new.subject_type)
        .bind(new.subject_id)
        .bind(&new.action)
        .bind(&new.resource_type)
        .bind(&new.resource_pattern)
        .bind(new.effect.as_str())
        .bind(new.priority)
        .bind(&new.conditions)
        .bind(t)
        .bind(&new.updated_by)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        row.try_into()
    }

    async fn get_access_rule(&self, id: Uuid) -> Result<AccessRule> {
        let row: Option<RuleRow> = sqlx::query_as(concat!(
            "SELECT ",
            rule_columns!(),
            " FROM access_control_rules WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.ok_or_else(|| Error::not_found("access rule", id))?
            .try_into()
    }

    async fn list_access_rules(&self, f: &AccessRuleFilter) -> Result<Vec<AccessRule>> {
        let rows: Vec<RuleRow> = sqlx::query_as(concat!(
            "SELECT ",
            rule_columns!(),
            " FROM access_control_rules \
             WHERE ($1::text IS NULL OR subject_type = $1) AND ($2::uuid IS NULL OR subject_id = $2) \
               AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR resource_type = $4)",
            rule_order!()
        ))
        .bind(&f.subject_type)
        .bind(f.subject_id)
        .bind(&f.action)
        .bind(&f.resource_type)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn rules_for_subject(
        &self,
        subject_type: &str,
        subject_id: Option<Uuid>,
        action: &str,
        resource_type: &str,
    ) -> Result<Vec<AccessRule>> {
        let rows: Vec<RuleRow> = sqlx::query_as(concat!(
            "SELECT ",
            rule_columns!(),
            " FROM access_control_rules \
             WHERE subject_type = $1 AND subject_id IS NOT DISTINCT FROM $2 \
               AND action = $3 AND resource_type = $4",
            rule_order!()
        ))
        .bind(subject_type)
        .bind(subject_id)
        .bind(action)
        .bind(resource_type)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn delete_access_rule(&self, id: Uuid) -> Result<()> {
        let done = sqlx::query("DELETE FROM access_control_rules WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("access rule", id));
        }
        Ok(())
    }

    async fn record_access(&self, a: AccessAudit) -> Result<()> {
        validate_audit(&a)?;
        sqlx::query(
            "INSERT INTO access_control_audit_log (id, subject_type, subject_id, action, \
             resource_type, resource, decision, reason, task_id, job_id, duration_ms, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(a.id)
        .bind(&a.subject_type)
        .bind(a.subject_id)
        .bind(&a.action)
        .bind(&a.resource_type)
        .bind(&a.resource)
        .bind(a.decision.as_str())
        .bind(&a.reason)
        .bind(a.task_id.map(|t| t.as_uuid()))
        .bind(a.job_id.map(|j| j.as_uuid()))
        .bind(a.duration_ms)
        .bind(
            DateTime::from_timestamp_micros(a.created_at.timestamp_micros())
                .unwrap_or(a.created_at),
        )
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn list_access_audit(&self, f: &AccessAuditFilter) -> Result<Vec<AccessAudit>> {
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM access_control_audit_log \
             WHERE ($1::uuid IS NULL OR task_id = $1) AND ($2::uuid IS NULL OR subject_id = $2) \
               AND ($3::text IS NULL OR action = $3) AND ($4::timestamptz IS NULL OR created_at >= $4) \
             ORDER BY created_at DESC, seq DESC LIMIT $5"
        ))
        .bind(f.task_id.map(|t| t.as_uuid()))
        .bind(f.subject_id)
        .bind(&f.action)
        .bind(f.since)
        .bind(i64::from(validate::limit(f.limit)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
