//! [`AuditStore`]: the append-only audit tables.

use async_trait::async_trait;

use super::PgStore;
use super::error::db_err;
use super::rows::*;
use crate::Result;
use crate::model::*;
use crate::store::{AuditStore, validate};

/// Inserts one audit record with `ex` (the pool, or a transaction it belongs to). A
/// record is identified by its id: recording it again (a retry after a lost
/// acknowledgement) does not duplicate it.
pub(super) async fn insert_audit<'c>(
    ex: impl sqlx::PgExecutor<'c>,
    record: &AuditRecord,
) -> Result<()> {
    let q = match record {
        AuditRecord::Auth(a) => sqlx::query(
            "INSERT INTO auth_audit_log (id, event_type, user_id, subject_handle, success, \
                 ip_address, user_agent, reason, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(a.id.0)
        .bind(&a.event_type)
        .bind(a.user_id.map(|u| u.0))
        .bind(&a.subject_handle)
        .bind(a.success)
        .bind(&a.ip_address)
        .bind(&a.user_agent)
        .bind(&a.reason)
        .bind(a.created_at),
        AuditRecord::Chat(a) => sqlx::query(
            "INSERT INTO chat_audit_log (id, user_id, project_id, outcome, error_code, \
                 redaction_applied, redaction_kinds, duration_ms, request_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        )
        .bind(a.id.0)
        .bind(a.user_id.map(|u| u.0))
        .bind(a.project_id.map(|p| p.0))
        .bind(&a.outcome)
        .bind(&a.error_code)
        .bind(a.redaction_applied)
        .bind(sqlx::types::Json(&a.redaction_kinds))
        .bind(a.duration_ms)
        .bind(&a.request_id)
        .bind(a.created_at),
        AuditRecord::McpToolCall(a) => sqlx::query(
            "INSERT INTO mcp_tool_call_audit_log (id, task_id, project_id, job_id, user_id, \
                 tool_name, decision, status, duration_ms, error_type, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (id) DO NOTHING",
        )
        .bind(a.id.0)
        .bind(a.task_id.map(|t| t.0))
        .bind(a.project_id.map(|p| p.0))
        .bind(a.job_id.map(|j| j.0))
        .bind(a.user_id.map(|u| u.0))
        .bind(&a.tool_name)
        .bind(&a.decision)
        .bind(&a.status)
        .bind(a.duration_ms)
        .bind(&a.error_type)
        .bind(a.created_at),
    };
    q.execute(ex).await.map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl AuditStore for PgStore {
    async fn record_audit(&self, record: AuditRecord) -> Result<()> {
        insert_audit(&self.pool, &record).await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        // Newest first; records with the same time newest-inserted first.
        macro_rules! list {
            ($cols:expr, $table:literal, $row:ty) => {{
                let rows: Vec<$row> = sqlx::query_as(concat!(
                    "SELECT ",
                    $cols,
                    " FROM ",
                    $table,
                    " WHERE ($1::uuid IS NULL OR user_id = $1) \
                       AND ($2::timestamptz IS NULL OR created_at >= $2) \
                     ORDER BY created_at DESC, seq DESC LIMIT $3"
                ))
                .bind(f.user_id.map(|u| u.0))
                .bind(f.since)
                .bind(i64::from(validate::limit(f.limit)))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.into_iter().map(AuditRecord::from).collect()
            }};
        }
        Ok(match f.kind {
            AuditKind::Auth => list!(auth_audit_columns!(), "auth_audit_log", AuthAuditRow),
            AuditKind::Chat => list!(chat_audit_columns!(), "chat_audit_log", ChatAuditRow),
            AuditKind::McpToolCall => {
                list!(mcp_audit_columns!(), "mcp_tool_call_audit_log", McpAuditRow)
            }
        })
    }
}
