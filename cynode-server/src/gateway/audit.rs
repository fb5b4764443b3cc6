//! Audit events (§10.2): the authentication, chat and MCP tool-call audit tables as one
//! newest-first event list, for the admin.
//!
//! Order: `ts` descending, then `event_id` descending. Pages are keyset-paged: the
//! cursor names the last event of the previous page, so records written while a client
//! pages through never shift or repeat what it sees.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use cynode_core::model::{AuditKind, AuditRecord, Timestamp};
use cynode_core::store::{AuditQuery as StoreQuery, record_id};
use cynode_core::{AuditId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json as j};
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::{ApiError, ProblemDetails};
use super::http::json;
use super::listing::{Page, fmt_time, non_empty, parse_time, require_admin};
use super::state::GatewayState;

fn cursor_of(r: &AuditRecord) -> String {
    format!("{}_{}", r.created_at().timestamp_micros(), record_id(r))
}

fn parse_cursor(s: &str) -> Result<(Timestamp, AuditId), ApiError> {
    let bad = || ApiError::bad_request("Invalid limit or cursor");
    let (micros, id) = s.trim().split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let t = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id: AuditId = id.parse().map_err(|_| bad())?;
    Ok((t, id))
}

/// One audit event.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventResponse {
    /// Record id.
    pub event_id: String,
    /// When (RFC 3339).
    pub ts: String,
    /// The user concerned, if known.
    pub actor_id: Option<String>,
    /// Auth event type (`login_success`, …), `chat.completion`, or the MCP tool name.
    pub action: String,
    /// `auth`, `chat` or `mcp_tool_call` (the table).
    pub resource_type: String,
    /// The project (chat) or task (tool call) concerned, if any.
    pub resource_id: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The table's other columns (never message content, arguments or secrets).
    #[schema(value_type = Object)]
    pub details: Value,
}

/// `GET /v1/audit` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditListResponse {
    /// Events, newest first.
    pub events: Vec<AuditEventResponse>,
    /// Cursor of the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/audit` query.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct AuditQuery {
    /// `auth`, `chat` or `mcp_tool_call`; default all three.
    pub resource_type: Option<String>,
    /// Only events about this user.
    pub actor_id: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only events at or before this time (RFC 3339).
    pub until: Option<String>,
    /// Page size 1..200 (default 50).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (opaque).
    pub cursor: Option<String>,
}

fn event(r: &AuditRecord) -> Option<AuditEventResponse> {
    Some(match r {
        AuditRecord::Auth(a) => AuditEventResponse {
            event_id: a.id.to_string(),
            ts: fmt_time(a.created_at),
            actor_id: a.user_id.map(|u| u.to_string()),
            action: a.event_type.clone(),
            resource_type: "auth".into(),
            resource_id: a.user_id.map(|u| u.to_string()),
            decision: if a.success { "allow" } else { "deny" }.into(),
            details: j!({
                "success": a.success,
                "subject_handle": a.subject_handle,
                "ip_address": a.ip_address,
                "user_agent": a.user_agent,
                "reason": a.reason,
            }),
        },
        AuditRecord::Chat(c) => AuditEventResponse {
            event_id: c.id.to_string(),
            ts: fmt_time(c.created_at),
            actor_id: c.user_id.map(|u| u.to_string()),
            action: "chat.completion".into(),
            resource_type: "chat".into(),
            resource_id: c.project_id.map(|p| p.to_string()),
            decision: "allow".into(),
            details: j!({
                "outcome": c.outcome,
                "error_code": c.error_code,
                "redaction_applied": c.redaction_applied,
                "redaction_kinds": c.redaction_kinds,
                "duration_ms": c.duration_ms,
                "request_id": c.request_id,
            }),
        },
        AuditRecord::McpToolCall(m) => AuditEventResponse {
            event_id: m.id.to_string(),
            ts: fmt_time(m.created_at),
            actor_id: m.user_id.map(|u| u.to_string()),
            action: m.tool_name.clone(),
            resource_type: "mcp_tool_call".into(),
            resource_id: m.task_id.map(|t| t.to_string()),
            decision: m.decision.clone(),
            details: j!({
                "status": m.status,
                "error_type": m.error_type,
                "duration_ms": m.duration_ms,
                "job_id": m.job_id.map(|x| x.to_string()),
                "project_id": m.project_id.map(|x| x.to_string()),
            }),
        },
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// Audit events, newest first (admin).
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = AuditListResponse),
        (status = 400, description = "`Invalid limit or cursor` / `invalid resource_type` / `invalid actor_id` / `Invalid since: …` / `Invalid until: …`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Admin required`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_audit(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&st, &user)?;
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    let limit = Page::parse(q.limit.as_deref(), None)?.limit;
    let after = non_empty(q.cursor.as_deref())
        .map(parse_cursor)
        .transpose()?;
    let kinds: Vec<AuditKind> = match non_empty(q.resource_type.as_deref()) {
        None | Some("all") => vec![AuditKind::Auth, AuditKind::Chat, AuditKind::McpToolCall],
        Some("auth") => vec![AuditKind::Auth],
        Some("chat") => vec![AuditKind::Chat],
        Some("mcp_tool_call") | Some("mcp") => vec![AuditKind::McpToolCall],
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid resource_type: use auth, chat or mcp_tool_call",
            ));
        }
    };
    let actor = match non_empty(q.actor_id.as_deref()) {
        None => None,
        Some(a) => Some(
            a.parse::<UserId>()
                .map_err(|_| ApiError::bad_request("invalid actor_id"))?,
        ),
    };
    let since = non_empty(q.since.as_deref())
        .map(|s| parse_time("since", s))
        .transpose()?;
    let until = non_empty(q.until.as_deref())
        .map(|s| parse_time("until", s))
        .transpose()?;
    let fetch = u32::try_from(limit + 1).unwrap_or(u32::MAX);
    let mut records = Vec::new();
    for kind in kinds {
        let rows = st
            .inner
            .store
            .query_audit(&StoreQuery {
                kind,
                user_id: actor,
                since,
                until,
                after,
                limit: fetch,
            })
            .await
            .map_err(|e| ApiError::storage("Failed to list audit events", e))?;
        records.extend(rows);
    }
    // Each table's page is the newest `limit + 1` after the cursor, so their union
    // holds the newest `limit + 1` overall.
    records.sort_by_key(|r| std::cmp::Reverse((r.created_at(), record_id(r))));
    let more = records.len() > limit;
    records.truncate(limit);
    let next_cursor = if more {
        records.last().map(cursor_of)
    } else {
        None
    };
    Ok(json(
        StatusCode::OK,
        &AuditListResponse {
            events: records.iter().filter_map(event).collect(),
            next_cursor,
        },
    ))
}
