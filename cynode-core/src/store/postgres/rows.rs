//! Row shapes as selected from PostgreSQL, and their conversion to domain types.
//!
//! Each `*_columns!()` macro expands to the select list (a string literal) matching one
//! row struct, so every query that returns an entity selects the same columns and the
//! SQL stays a `&'static str` built with `concat!`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::model::*;
use crate::{Error, Result};

/// A stored value that does not parse back (e.g. an unknown status) means the data was
/// written by something else: an internal error, not the caller's fault.
fn corrupt<T: std::str::FromStr<Err = Error>>(what: &str, s: &str) -> Result<T> {
    s.parse().map_err(|_| {
        Error::internal(format!(
            "stored {what} '{s}' is not understood by this build"
        ))
    })
}

macro_rules! user_columns {
    () => {
        "id, handle, email, is_active, external_source, external_id, created_at, updated_at"
    };
}
pub(crate) use user_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    handle: String,
    email: Option<String>,
    is_active: bool,
    external_source: Option<String>,
    external_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id.into(),
            handle: r.handle,
            email: r.email,
            is_active: r.is_active,
            external_source: r.external_source,
            external_id: r.external_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

macro_rules! project_columns {
    () => {
        "id, slug, display_name, description, is_active, created_at, updated_at"
    };
}
pub(crate) use project_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct ProjectRow {
    id: Uuid,
    slug: String,
    display_name: String,
    description: Option<String>,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Self {
        Project {
            id: r.id.into(),
            slug: r.slug,
            display_name: r.display_name,
            description: r.description,
            is_active: r.is_active,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

macro_rules! session_columns {
    () => {
        "id, user_id, refresh_token_hash, refresh_token_kid, \
     is_active, expires_at, last_used_at, created_at, updated_at"
    };
}
pub(crate) use session_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    refresh_token_hash: Vec<u8>,
    refresh_token_kid: Option<String>,
    is_active: bool,
    expires_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SessionRow> for RefreshSession {
    fn from(r: SessionRow) -> Self {
        RefreshSession {
            id: r.id.into(),
            user_id: r.user_id.into(),
            token_hash: r.refresh_token_hash,
            token_kid: r.refresh_token_kid,
            is_active: r.is_active,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

macro_rules! task_columns {
    () => {
        "id, created_by, project_id, name, status, closed, prompt, \
     description, acceptance_criteria, summary, metadata, created_at, updated_at"
    };
}
pub(crate) use task_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    id: Uuid,
    created_by: Option<Uuid>,
    project_id: Option<Uuid>,
    name: String,
    status: String,
    closed: bool,
    prompt: Option<String>,
    description: Option<String>,
    acceptance_criteria: Option<Value>,
    summary: Option<String>,
    metadata: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TaskRow> for Task {
    type Error = Error;
    fn try_from(r: TaskRow) -> Result<Self> {
        Ok(Task {
            id: r.id.into(),
            created_by: r.created_by.map(Into::into),
            project_id: r.project_id.map(Into::into),
            name: r.name,
            status: corrupt("task status", &r.status)?,
            closed: r.closed,
            prompt: r.prompt,
            description: r.description,
            acceptance_criteria: r.acceptance_criteria,
            summary: r.summary,
            metadata: r.metadata,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

macro_rules! job_columns {
    () => {
        "id, task_id, node_id, status, payload, result, lease_id, \
     lease_expires_at, started_at, ended_at, created_at, updated_at"
    };
}
pub(crate) use job_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: Uuid,
    task_id: Uuid,
    node_id: Option<Uuid>,
    status: String,
    payload: Option<Value>,
    result: Option<Value>,
    lease_id: Option<Uuid>,
    lease_expires_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<JobRow> for Job {
    type Error = Error;
    fn try_from(r: JobRow) -> Result<Self> {
        Ok(Job {
            id: r.id.into(),
            task_id: r.task_id.into(),
            node_id: r.node_id.map(Into::into),
            status: corrupt("job status", &r.status)?,
            payload: r.payload.unwrap_or(Value::Null),
            result: r.result,
            lease_id: r.lease_id,
            lease_expires_at: r.lease_expires_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

macro_rules! artifact_columns {
    () => {
        "id, task_id, path, storage_ref, size_bytes, \
     content_type, checksum_sha256, created_at, updated_at"
    };
}
pub(crate) use artifact_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct ArtifactRow {
    id: Uuid,
    task_id: Uuid,
    path: String,
    storage_ref: String,
    size_bytes: Option<i64>,
    content_type: Option<String>,
    checksum_sha256: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ArtifactRow> for Artifact {
    fn from(r: ArtifactRow) -> Self {
        Artifact {
            id: r.id.into(),
            task_id: r.task_id.into(),
            path: r.path,
            storage_ref: r.storage_ref,
            size_bytes: r.size_bytes,
            content_type: r.content_type,
            checksum_sha256: r.checksum_sha256,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

macro_rules! node_columns {
    () => {
        "id, node_slug, status, capability_hash, config_version, \
     worker_api_target_url, worker_api_bearer_token, config_ack_at, config_ack_status, \
     config_ack_error, last_seen_at, last_capability_at, metadata, created_at, updated_at"
    };
}
pub(crate) use node_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct NodeRow {
    id: Uuid,
    node_slug: String,
    status: String,
    capability_hash: Option<String>,
    config_version: Option<String>,
    worker_api_target_url: Option<String>,
    worker_api_bearer_token: Option<String>,
    config_ack_at: Option<DateTime<Utc>>,
    config_ack_status: Option<String>,
    config_ack_error: Option<String>,
    last_seen_at: Option<DateTime<Utc>>,
    last_capability_at: Option<DateTime<Utc>>,
    metadata: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<NodeRow> for Node {
    type Error = Error;
    fn try_from(r: NodeRow) -> Result<Self> {
        Ok(Node {
            id: r.id.into(),
            node_slug: r.node_slug,
            status: corrupt("node status", &r.status)?,
            capability_hash: r.capability_hash,
            config_version: r.config_version,
            worker_api_target_url: r.worker_api_target_url,
            worker_api_bearer_token: r.worker_api_bearer_token,
            config_ack_at: r.config_ack_at,
            config_ack_status: r.config_ack_status,
            config_ack_error: r.config_ack_error,
            last_seen_at: r.last_seen_at,
            last_capability_at: r.last_capability_at,
            metadata: r.metadata,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

macro_rules! preference_columns {
    () => {
        "id, scope_type, scope_id, key, value, value_type, version, updated_at, updated_by"
    };
}
pub(crate) use preference_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct PreferenceRow {
    id: Uuid,
    scope_type: String,
    scope_id: Option<Uuid>,
    key: String,
    value: Option<Value>,
    value_type: String,
    version: i32,
    updated_at: DateTime<Utc>,
    updated_by: Option<String>,
}

impl TryFrom<PreferenceRow> for PreferenceEntry {
    type Error = Error;
    fn try_from(r: PreferenceRow) -> Result<Self> {
        let scope = Scope::from_parts(&r.scope_type, r.scope_id)
            .map_err(|_| Error::internal("a stored preference has an invalid scope"))?;
        Ok(PreferenceEntry {
            id: r.id.into(),
            scope,
            key: r.key,
            value: r.value.unwrap_or(Value::Null),
            value_type: r.value_type,
            version: r.version,
            updated_at: r.updated_at,
            updated_by: r.updated_by,
        })
    }
}

macro_rules! thread_columns {
    () => {
        "id, user_id, project_id, title, created_at, updated_at"
    };
}
pub(crate) use thread_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct ThreadRow {
    id: Uuid,
    user_id: Uuid,
    project_id: Option<Uuid>,
    title: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ThreadRow> for ChatThread {
    fn from(r: ThreadRow) -> Self {
        ChatThread {
            id: r.id.into(),
            user_id: r.user_id.into(),
            project_id: r.project_id.map(Into::into),
            title: r.title,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

macro_rules! message_columns {
    () => {
        "id, thread_id, role, content, metadata, created_at"
    };
}
pub(crate) use message_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: Uuid,
    thread_id: Uuid,
    role: String,
    content: String,
    metadata: Option<Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<MessageRow> for ChatMessage {
    type Error = Error;
    fn try_from(r: MessageRow) -> Result<Self> {
        Ok(ChatMessage {
            id: r.id.into(),
            thread_id: r.thread_id.into(),
            role: corrupt("chat role", &r.role)?,
            content: r.content,
            metadata: r.metadata,
            created_at: r.created_at,
        })
    }
}

macro_rules! auth_audit_columns {
    () => {
        "id, event_type, user_id, subject_handle, success, ip_address, user_agent, reason, created_at"
    };
}
pub(crate) use auth_audit_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct AuthAuditRow {
    id: Uuid,
    event_type: String,
    user_id: Option<Uuid>,
    subject_handle: Option<String>,
    success: bool,
    ip_address: Option<String>,
    user_agent: Option<String>,
    reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<AuthAuditRow> for AuditRecord {
    fn from(r: AuthAuditRow) -> Self {
        AuditRecord::Auth(AuthAudit {
            id: r.id.into(),
            event_type: r.event_type,
            user_id: r.user_id.map(Into::into),
            subject_handle: r.subject_handle,
            success: r.success,
            ip_address: r.ip_address,
            user_agent: r.user_agent,
            reason: r.reason,
            created_at: r.created_at,
        })
    }
}

macro_rules! chat_audit_columns {
    () => {
        "id, user_id, project_id, outcome, error_code, \
     redaction_applied, redaction_kinds, duration_ms, request_id, created_at"
    };
}
pub(crate) use chat_audit_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct ChatAuditRow {
    id: Uuid,
    user_id: Option<Uuid>,
    project_id: Option<Uuid>,
    outcome: String,
    error_code: Option<String>,
    redaction_applied: bool,
    redaction_kinds: Option<sqlx::types::Json<Vec<String>>>,
    duration_ms: Option<i32>,
    request_id: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<ChatAuditRow> for AuditRecord {
    fn from(r: ChatAuditRow) -> Self {
        AuditRecord::Chat(ChatAudit {
            id: r.id.into(),
            user_id: r.user_id.map(Into::into),
            project_id: r.project_id.map(Into::into),
            outcome: r.outcome,
            error_code: r.error_code,
            redaction_applied: r.redaction_applied,
            redaction_kinds: r.redaction_kinds.map(|j| j.0).unwrap_or_default(),
            duration_ms: r.duration_ms,
            request_id: r.request_id,
            created_at: r.created_at,
        })
    }
}

macro_rules! mcp_audit_columns {
    () => {
        "id, task_id, project_id, job_id, user_id, tool_name, \
     decision, status, duration_ms, error_type, created_at"
    };
}
pub(crate) use mcp_audit_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct McpAuditRow {
    id: Uuid,
    task_id: Option<Uuid>,
    project_id: Option<Uuid>,
    job_id: Option<Uuid>,
    user_id: Option<Uuid>,
    tool_name: String,
    decision: String,
    status: String,
    duration_ms: Option<i32>,
    error_type: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<McpAuditRow> for AuditRecord {
    fn from(r: McpAuditRow) -> Self {
        AuditRecord::McpToolCall(McpToolCallAudit {
            id: r.id.into(),
            task_id: r.task_id.map(Into::into),
            project_id: r.project_id.map(Into::into),
            job_id: r.job_id.map(Into::into),
            user_id: r.user_id.map(Into::into),
            tool_name: r.tool_name,
            decision: r.decision,
            status: r.status,
            duration_ms: r.duration_ms,
            error_type: r.error_type,
            created_at: r.created_at,
        })
    }
}

macro_rules! credential_columns {
    () => {
        "id, owner_type, owner_id, provider, credential_type, \
     credential_name, credential_ciphertext, credential_kid, is_active, expires_at, created_at, \
     updated_at"
    };
}
pub(crate) use credential_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct CredentialRow {
    id: Uuid,
    owner_type: String,
    owner_id: Uuid,
    provider: String,
    credential_type: String,
    credential_name: String,
    credential_ciphertext: Vec<u8>,
    credential_kid: Option<String>,
    is_active: bool,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<CredentialRow> for ApiCredential {
    fn from(r: CredentialRow) -> Self {
        ApiCredential {
            id: r.id.into(),
            owner_type: r.owner_type,
            owner_id: r.owner_id,
            provider: r.provider,
            credential_type: r.credential_type,
            credential_name: r.credential_name,
            ciphertext: r.credential_ciphertext,
            kid: r.credential_kid,
            is_active: r.is_active,
            expires_at: r.expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

macro_rules! vector_columns {
    () => {
        "id, project_id, task_id, namespace, sensitivity_level, \
     source_type, source_ref, chunk_index, content_text, content_sha256, embedding_model, \
     embedding, metadata, created_at"
    };
}
pub(crate) use vector_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct VectorRow {
    id: Uuid,
    project_id: Uuid,
    task_id: Option<Uuid>,
    namespace: String,
    sensitivity_level: Option<String>,
    source_type: String,
    source_ref: Option<String>,
    chunk_index: i32,
    content_text: String,
    content_sha256: String,
    embedding_model: String,
    embedding: pgvector::Vector,
    metadata: Option<Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<VectorRow> for VectorItem {
    type Error = Error;
    fn try_from(r: VectorRow) -> Result<Self> {
        Ok(VectorItem {
            id: r.id.into(),
            project_id: r.project_id.into(),
            task_id: r.task_id.map(Into::into),
            namespace: r.namespace,
            sensitivity: r
                .sensitivity_level
                .as_deref()
                .map(|s| corrupt("sensitivity", s))
                .transpose()?,
            source_type: r.source_type,
            source_ref: r.source_ref,
            chunk_index: r.chunk_index,
            content_text: r.content_text,
            content_sha256: r.content_sha256,
            embedding_model: r.embedding_model,
            embedding: r.embedding.to_vec(),
            metadata: r.metadata,
            created_at: r.created_at,
        })
    }
}

/// A search hit: the chunk's columns plus its distance.
#[derive(sqlx::FromRow)]
pub(crate) struct HitRow {
    #[sqlx(flatten)]
    item: VectorRow,
    distance: f32,
}

impl TryFrom<HitRow> for VectorHit {
    type Error = Error;
    fn try_from(r: HitRow) -> Result<Self> {
        Ok(VectorHit {
            item: r.item.try_into()?,
            distance: r.distance,
        })
    }
}
