//! Append-only audit tables.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;

use super::{RowExt, SqliteStore, db, to_i32, ts};
use crate::model::*;
use crate::store::{AuditStore, validate};
use crate::{Error, Result};

pub(super) fn auth_row(r: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord::Auth(AuthAudit {
        id: r.id("id")?,
        event_type: r.text("event_type")?,
        user_id: r.opt_id("user_id")?,
        subject_handle: r.opt_text("subject_handle")?,
        success: r.flag("success")?,
        ip_address: r.opt_text("ip_address")?,
        user_agent: r.opt_text("user_agent")?,
        reason: r.opt_text("reason")?,
        created_at: r.time("created_at")?,
    }))
}

pub(super) fn chat_row(r: &SqliteRow) -> Result<AuditRecord> {
    let kinds = match r.opt_json("redaction_kinds")? {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v).map_err(|e| Error::Internal {
            message: "stored value of column redaction_kinds could not be read".into(),
            source: Some(Box::new(e)),
        })?,
    };
    Ok(AuditRecord::Chat(ChatAudit {
        id: r.id("id")?,
        user_id: r.opt_id("user_id")?,
        project_id: r.opt_id("project_id")?,
        outcome: r.text("outcome")?,
        error_code: r.opt_text("error_code")?,
        redaction_applied: r.flag("redaction_applied")?,
        redaction_kinds: kinds,
        duration_ms: r
            .opt_int("duration_ms")?
            .map(|d| to_i32("duration_ms", d))
            .transpose()?,
        request_id: r.opt_text("request_id")?,
        created_at: r.time("created_at")?,
    }))
}

pub(super) fn mcp_row(r: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord::McpToolCall(McpToolCallAudit {
        id: r.id("id")?,
        task_id: r.opt_id("task_id")?,
        project_id: r.opt_id("project_id")?,
        job_id: r.opt_id("job_id")?,
        user_id: r.opt_id("user_id")?,
        tool_name: r.text("tool_name")?,
        decision: r.text("decision")?,
        status: r.text("status")?,
        duration_ms: r
            .opt_int("duration_ms")?
            .map(|d| to_i32("duration_ms", d))
            .transpose()?,
        error_type: r.opt_text("error_type")?,
        created_at: r.time("created_at")?,
    }))
}

fn opt_str<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|x| x.to_string())
}

/// Inserts one audit record inside the caller's write transaction.
pub(super) async fn insert_audit(
    tx: &mut sqlx::SqliteConnection,
    record: &AuditRecord,
    action: &str,
) -> Result<()> {
    let query = match record {
            AuditRecord::Auth(a) => sqlx::query(
                "INSERT INTO auth_audit_log
                     (id, event_type, user_id, subject_handle, success, ip_address, user_agent, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .bind(a.id.to_string())
            .bind(a.event_type.clone())
            .bind(opt_str(a.user_id))
            .bind(a.subject_handle.clone())
            .bind(a.success)
            .bind(a.ip_address.clone())
            .bind(a.user_agent.clone())
            .bind(a.reason.clone())
            .bind(ts(a.created_at)),
            AuditRecord::Chat(c) => sqlx::query(
                "INSERT INTO chat_audit_log
                     (id, created_at, user_id, project_id, outcome, error_code, redaction_applied,
                      redaction_kinds, duration_ms, request_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .bind(c.id.to_string())
            .bind(ts(c.created_at))
            .bind(opt_str(c.user_id))
            .bind(opt_str(c.project_id))
            .bind(c.outcome.clone())
            .bind(c.error_code.clone())
            .bind(c.redaction_applied)
            .bind(serde_json::Value::from(c.redaction_kinds.clone()).to_string())
            .bind(c.duration_ms)
            .bind(c.request_id.clone()),
            AuditRecord::McpToolCall(m) => sqlx::query(
                "INSERT INTO mcp_tool_call_audit_log
                     (id, created_at, task_id, project_id, job_id, user_id, tool_name, decision, status,
                      duration_ms, error_type)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(m.id.to_string())
            .bind(ts(m.created_at))
            .bind(opt_str(m.task_id))
            .bind(opt_str(m.project_id))
            .bind(opt_str(m.job_id))
            .bind(opt_str(m.user_id))
            .bind(m.tool_name.clone())
            .bind(m.decision.clone())
            .bind(m.status.clone())
            .bind(m.duration_ms)
            .bind(m.error_type.clone()),
        };
    query.execute(tx).await.map_err(db(action))?;
    Ok(())
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, record: AuditRecord) -> Result<()> {
        const ACTION: &str = "record the audit event";
        // A single INSERT is atomic on its own; it still goes through the write lock.
        let mut tx = self.write(ACTION).await?;
        insert_audit(&mut tx, &record, ACTION).await?;
        tx.commit().await.map_err(db(ACTION))
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        const ACTION: &str = "read the audit log";
        let (sql, decode): (&'static str, fn(&SqliteRow) -> Result<AuditRecord>) = match f.kind {
            AuditKind::Auth => (
                "SELECT id, event_type, user_id, subject_handle, success, ip_address, user_agent, reason,
                        created_at
                 FROM auth_audit_log
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR created_at >= ?2)
                 ORDER BY created_at DESC, rowid DESC LIMIT ?3",
                auth_row,
            ),
            AuditKind::Chat => (
                "SELECT id, created_at, user_id, project_id, outcome, error_code, redaction_applied,
                        redaction_kinds, duration_ms, request_id
                 FROM chat_audit_log
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR created_at >= ?2)
                 ORDER BY created_at DESC, rowid DESC LIMIT ?3",
                chat_row,
            ),
            AuditKind::McpToolCall => (
                "SELECT id, created_at, task_id, project_id, job_id, user_id, tool_name, decision, status,
                        duration_ms, error_type
                 FROM mcp_tool_call_audit_log
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR created_at >= ?2)
                 ORDER BY created_at DESC, rowid DESC LIMIT ?3",
                mcp_row,
            ),
        };
        let rows = sqlx::query(sql)
            .bind(opt_str(f.user_id))
            .bind(f.since.map(ts))
            .bind(i64::from(validate::limit(f.limit)))
            .fetch_all(&self.reader)
            .await
            .map_err(db(ACTION))?;
        rows.iter().map(decode).collect()
    }
}
