//! Chat threads (§8.2, §8.3): create, list, get, and the messages of a thread. A
//! user only ever sees their own threads; another user's thread is `404`.
//!
//! `POST /v1/chat/threads` answers errors in the OpenAI shape (§2.2); the read routes
//! and the message append use Problem Details like the rest of the API.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cynode_core::model::{ChatMessage, ChatRole, ChatThread};
use cynode_core::{Error, ProjectId, ThreadId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::super::auth::AuthUser;
use super::super::error::{ApiError, ProblemDetails};
use super::super::http::{json, json_body, read_body};
use super::super::openai_error::{MSG_INVALID_BODY, OpenAiError, OpenAiErrorBody};
use super::super::state::GatewayState;
use super::project_scope;

/// Threads scanned per listing (the store's largest page).
const SCAN: u32 = 1000;

fn ts(t: cynode_core::model::Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `POST /v1/chat/threads` body (optional; an empty body is fine).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateThreadRequest {
    /// Project id (UUID); the `OpenAI-Project` header wins when both are given.
    pub project_id: Option<String>,
    /// Title.
    pub title: Option<String>,
}

/// `POST /v1/chat/threads` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateThreadResponse {
    /// The new thread's id.
    pub thread_id: String,
}

/// A chat thread.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ThreadResponse {
    /// Thread id.
    pub id: String,
    /// Same as `id`.
    pub thread_id: String,
    /// Project scope, or null.
    pub project_id: Option<String>,
    /// Title, or null.
    pub title: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; bumped by every new message.
    pub updated_at: String,
}

/// `GET /v1/chat/threads` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ThreadListResponse {
    /// The page, most recently updated first.
    pub threads: Vec<ThreadResponse>,
    /// Offset of the next page; present only when more threads exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

/// A stored chat message (content already redacted).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageResponse {
    /// Message id.
    pub id: String,
    /// Thread id.
    pub thread_id: String,
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// Redacted text.
    pub content: String,
    /// Metadata (e.g. `model_id`), or null.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// RFC 3339.
    pub created_at: String,
}

/// `GET /v1/chat/threads/{thread_id}/messages` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageListResponse {
    /// The page, oldest first.
    pub messages: Vec<MessageResponse>,
    /// Offset of the next page; present only when more messages exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

/// `POST /v1/chat/threads/{thread_id}/messages` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AppendMessageRequest {
    /// Only `user` (the default) may be appended by clients.
    pub role: Option<String>,
    /// Text (required, non-empty); redacted before it is stored.
    #[schema(required = true, min_length = 1, value_type = String)]
    pub content: Option<String>,
}

/// Paging query.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1..200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Rows to skip (default 0).
    #[param(value_type = Option<u64>, minimum = 0)]
    pub offset: Option<String>,
}

/// Thread listing query.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThreadListQuery {
    /// Only threads of this project (UUID).
    pub project_id: Option<String>,
    /// Page size, 1..200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Rows to skip (default 0).
    #[param(value_type = Option<u64>, minimum = 0)]
    pub offset: Option<String>,
}

fn thread_response(t: &ChatThread) -> ThreadResponse {
    ThreadResponse {
        id: t.id.to_string(),
        thread_id: t.id.to_string(),
        project_id: t.project_id.map(|p| p.to_string()),
        title: t.title.clone(),
        created_at: ts(t.created_at),
        updated_at: ts(t.updated_at),
    }
}

fn message_response(m: &ChatMessage) -> MessageResponse {
    MessageResponse {
        id: m.id.to_string(),
        thread_id: m.thread_id.to_string(),
        role: m.role.as_str().to_string(),
        content: m.content.clone(),
        metadata: m.metadata.clone(),
        created_at: ts(m.created_at),
    }
}

fn bad_paging() -> ApiError {
    ApiError::bad_request("Invalid limit or offset")
}

fn paging(limit: Option<&str>, offset: Option<&str>) -> Result<(usize, usize), ApiError> {
    let limit = match limit.map(str::trim).filter(|s| !s.is_empty()) {
        None => 50,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(bad_paging)?,
    };
    let offset = match offset.map(str::trim).filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| bad_paging())?,
    };
    Ok((limit, offset))
}

/// The caller's thread, or `404` (also for another user's thread).
async fn owned_thread(
    st: &GatewayState,
    user: &AuthUser,
    id: &str,
) -> Result<ChatThread, ApiError> {
    let not_found = || ApiError::not_found("Thread not found");
    let id: ThreadId = id.trim().parse().map_err(|_| not_found())?;
    match st.inner.store.get_thread(id).await {
        Ok(t) if t.user_id == user.id => Ok(t),
        Ok(_) | Err(Error::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(ApiError::storage("Failed to get chat thread", e)),
    }
}

/// Create a chat thread; it becomes the active thread of its scope.
#[utoipa::path(
    post, path = "/v1/chat/threads", tag = "chat",
    request_body(content = Option<CreateThreadRequest>, description = "Optional; an empty body is accepted"),
    params(("OpenAI-Project" = Option<String>, Header, description = "Project id (UUID) of the thread scope; a non-UUID value is ignored")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CreateThreadResponse),
        (status = 400, description = "`invalid_request`: `Invalid request body` / `OpenAI-Project names no project`", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Request body too large (Problem Details when the declared length is over the cap, else the OpenAI shape)",
            content((ProblemDetails = "application/problem+json"), (OpenAiErrorBody = "application/json"))),
        (status = 500, description = "`internal_error`: `Failed to create thread`", body = OpenAiErrorBody),
    )
)]
pub(crate) async fn create_thread(
    State(st): State<GatewayState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OpenAiError> {
    let bytes = read_body(body, st.config().max_body_bytes)
        .await
        .map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                OpenAiError::new(e.status(), "invalid_request", "Request body too large")
            } else {
                OpenAiError::invalid_request(MSG_INVALID_BODY)
            }
        })?;
    let req: CreateThreadRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CreateThreadRequest::default()
    } else {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .filter(serde_json::Value::is_object)
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| OpenAiError::invalid_request(MSG_INVALID_BODY))?
    };
    let mut project = project_scope(&st, &headers, "Failed to create thread").await?;
    if project.is_none()
        && let Some(p) = req
            .project_id
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
    {
        let id: ProjectId = p
            .parse()
            .map_err(|_| OpenAiError::invalid_request("Invalid project_id"))?;
        match st.inner.store.get_project(id).await {
            Ok(p) => project = Some(p.id),
            Err(Error::NotFound { .. }) => {
                return Err(OpenAiError::invalid_request("Invalid project_id"));
            }
            Err(e) => return Err(OpenAiError::internal("Failed to create thread").with_source(e)),
        }
    }
    let title = req
        .title
        .map(|t| t.trim().chars().take(200).collect::<String>())
        .filter(|t| !t.is_empty())
        .map(|t| st.inner.chat.redactor.redact(&t).0);
    let t = st
        .inner
        .store
        .create_thread(user.id, project, title)
        .await
        .map_err(|e| OpenAiError::internal("Failed to create thread").with_source(e))?;
    Ok(json(
        StatusCode::CREATED,
        &CreateThreadResponse {
            thread_id: t.id.to_string(),
        },
    ))
}

/// List the caller's threads, most recently updated first.
#[utoipa::path(
    get, path = "/v1/chat/threads", tag = "chat",
    params(ThreadListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of threads", body = ThreadListResponse),
        (status = 400, description = "`Invalid limit or offset` / `Invalid project_id`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "`Failed to list chat threads`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_threads(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<ThreadListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| bad_paging())?;
    let (limit, offset) = paging(q.limit.as_deref(), q.offset.as_deref())?;
    let project = match q
        .project_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(p) => Some(
            p.parse::<ProjectId>()
                .map_err(|_| ApiError::bad_request("Invalid project_id"))?,
        ),
    };
    let rows = st
        .inner
        .store
        .list_threads(user.id, SCAN)
        .await
        .map_err(|e| ApiError::storage("Failed to list chat threads", e))?;
    let matching: Vec<&ChatThread> = rows
        .iter()
        .filter(|t| project.is_none() || t.project_id == project)
        .collect();
    let threads: Vec<ThreadResponse> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|t| thread_response(t))
        .collect();
    let next_offset =
        (matching.len() > offset.saturating_add(limit)).then(|| (offset + limit) as u64);
    Ok(json(
        StatusCode::OK,
        &ThreadListResponse {
            threads,
            next_offset,
        },
    ))
}

/// One of the caller's threads.
#[utoipa::path(
    get, path = "/v1/chat/threads/{thread_id}", tag = "chat",
    params(("thread_id" = String, Path, description = "Thread id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The thread", body = ThreadResponse),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Thread not found` (also another user's thread)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "`Failed to get chat thread`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_thread(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(thread_id): Path<String>,
) -> Result<Response, ApiError> {
    let t = owned_thread(&st, &user, &thread_id).await?;
    Ok(json(StatusCode::OK, &thread_response(&t)))
}

/// Messages of one of the caller's threads, oldest first.
#[utoipa::path(
    get, path = "/v1/chat/threads/{thread_id}/messages", tag = "chat",
    params(("thread_id" = String, Path, description = "Thread id (UUID)"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of messages", body = MessageListResponse),
        (status = 400, description = "`Invalid limit or offset`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Thread not found` (also another user's thread)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "`Failed to list chat messages`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_messages(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(thread_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let t = owned_thread(&st, &user, &thread_id).await?;
    let Query(q) = query.map_err(|_| bad_paging())?;
    let (limit, offset) = paging(q.limit.as_deref(), q.offset.as_deref())?;
    let rows = st
        .inner
        .store
        .list_messages(t.id)
        .await
        .map_err(|e| ApiError::storage("Failed to list chat messages", e))?;
    let messages = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(message_response)
        .collect();
    let next_offset = (rows.len() > offset.saturating_add(limit)).then(|| (offset + limit) as u64);
    Ok(json(
        StatusCode::OK,
        &MessageListResponse {
            messages,
            next_offset,
        },
    ))
}

/// Append a user message to one of the caller's threads (redacted before storage;
/// no completion is run).
#[utoipa::path(
    post, path = "/v1/chat/threads/{thread_id}/messages", tag = "chat",
    params(("thread_id" = String, Path, description = "Thread id (UUID)")),
    request_body = AppendMessageRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The stored message", body = MessageResponse),
        (status = 400, description = "`Invalid request body` / `content is required` / `Only user messages may be appended`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Thread not found` (also another user's thread)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Request body too large", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "`Failed to persist message`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn append_message(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(thread_id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let t = owned_thread(&st, &user, &thread_id).await?;
    let req: AppendMessageRequest = json_body(&st, body).await?;
    if !req
        .role
        .as_deref()
        .map(str::trim)
        .is_none_or(|r| r.is_empty() || r.eq_ignore_ascii_case("user"))
    {
        return Err(ApiError::bad_request("Only user messages may be appended"));
    }
    let content = req.content.unwrap_or_default();
    if content.trim().is_empty() {
        return Err(ApiError::bad_request("content is required"));
    }
    let (content, _) = st.inner.chat.redactor.redact(&content);
    let m = st
        .inner
        .store
        .append_message(t.id, ChatRole::User, content, None)
        .await
        .map_err(|e| ApiError::storage("Failed to persist message", e))?;
    Ok(json(StatusCode::CREATED, &message_response(&m)).into_response())
}
