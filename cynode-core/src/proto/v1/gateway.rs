//! User API gateway bodies (user-api.md): what clients send to and read from the
//! gateway's `/v1` routes.
//!
//! Readers are lenient, as the contract asks of clients (§3 of cli.md): unknown fields
//! are ignored and missing fields become empty values, so a partial answer (a task
//! create answer holding only `id`, a chat answer holding only `choices`) still decodes.
//! Writers omit optional fields that are unset.
//!
//! The gateway serves some of these bodies as they are (problem details, tokens, the
//! caller's account, task results, cancel and logs answers, skills, policy
//! violations). With feature `openapi` those derive `utoipa::ToSchema`; the fields the
//! gateway always sends are marked required there, so the OpenAPI document describes
//! what the gateway writes, while the readers here stay lenient.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------------------------------------------------------------- errors

/// RFC 9457 Problem Details, the error body of every non-OpenAI route (§2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProblemDetails {
    /// Error type URI, e.g. `urn:cynodeai:error:authentication`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub kind: String,
    /// Short title, e.g. `Unauthorized`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub title: String,
    /// HTTP status.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub status: u16,
    /// Human-readable detail, e.g. `Invalid or expired token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, default = ""))]
    pub detail: Option<String>,
    /// Instance URI (never populated by the reference gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// The OpenAI-style error body of the chat surface (§2.2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenAiErrorBody {
    /// The error.
    pub error: OpenAiError,
}

/// The `error` object of an [`OpenAiErrorBody`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenAiError {
    /// E.g. `Completion failed`.
    pub message: String,
    /// Always `cynodeai_error` from this gateway.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `null` from this gateway.
    pub param: Option<Value>,
    /// E.g. `orchestrator_inference_failed`, `model_unavailable`.
    pub code: Option<String>,
}

/// A skill rejected by the content scan (§9): `400` with this body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyViolation {
    /// Always `policy violation`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub error: String,
    /// `hidden_instructions`, `instruction_override` or `secret_bypass`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub category: String,
    /// The text that triggered the rejection.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub triggering_text: String,
}

// ---------------------------------------------------------------- auth and users

/// `POST /v1/auth/login` body.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginRequest {
    /// User handle.
    pub handle: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("handle", &self.handle)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `POST /v1/auth/refresh` body.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest").finish_non_exhaustive()
    }
}

/// `POST /v1/auth/logout` body (`{}` is valid).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogoutRequest {
    /// The session to end, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutRequest").finish_non_exhaustive()
    }
}

/// Login and refresh answer (§4.3).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// Access token (bearer).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub access_token: String,
    /// Refresh token.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub refresh_token: String,
    /// Always `Bearer`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub token_type: String,
    /// Access-token lifetime in seconds.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/users/me` answer (§5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    /// User id.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub id: String,
    /// Handle.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub handle: String,
    /// E-mail, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the account is active.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub is_active: bool,
}

// ---------------------------------------------------------------- tasks

/// `POST /v1/tasks` body (§6.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateTaskRequest {
    /// Task text, script body or newline-joined commands.
    pub prompt: String,
    /// `prompt`, `script` or `commands`.
    pub input_mode: String,
    /// Suggested name (normalized and made unique by the gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    /// Project id (UUID); absent means the caller's default project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Attachment paths as typed (references, no upload).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// Give a script/commands sandbox the inference proxy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_inference: bool,
    /// Run through the sandbox agent runner.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_sba: bool,
}

/// The terminal task statuses (§6.1).
pub const TERMINAL_TASK_STATUSES: [&str; 4] = ["completed", "failed", "canceled", "superseded"];

/// Whether an API task status is terminal.
pub fn is_terminal_status(status: &str) -> bool {
    TERMINAL_TASK_STATUSES.contains(&status)
}

/// A task as the API shows it (§6.2). Decode with [`Task::normalized`] applied so
/// `id` and `task_id` are both filled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// Same as `id`.
    pub task_id: String,
    /// `queued`, `running`, `completed`, `failed`, `canceled` or `superseded`.
    pub status: String,
    /// The task's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub task_name: String,
    /// The submitted text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// Same as `task_name`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// RFC 3339.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    /// RFC 3339.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated_at: String,
    /// Attachment paths; omitted when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

impl Task {
    /// Fills `id` from `task_id` and the other way round.
    pub fn normalized(mut self) -> Self {
        if self.task_id.is_empty() {
            self.task_id = self.id.clone();
        }
        if self.id.is_empty() {
            self.id = self.task_id.clone();
        }
        self
    }

    /// Whether the status is terminal.
    pub fn is_terminal(&self) -> bool {
        is_terminal_status(&self.status)
    }
}

/// `GET /v1/tasks` query (§6.5). Unset fields are not sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskListQuery {
    /// Page size, 1..200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Rows to skip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `next_cursor` of the previous page (replaces `offset`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Only tasks in this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `GET /v1/tasks` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskList {
    /// The page, newest first.
    pub tasks: Vec<Task>,
    /// Offset of the next page, when more exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    /// Cursor of the next page, when more exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One job of a [`TaskResult`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobResult {
    /// Job id.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub id: String,
    /// Job status.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub status: String,
    /// The worker's result document as JSON text, once there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Start time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// End time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl JobResult {
    /// The result document decoded, when it is JSON.
    pub fn result_json(&self) -> Option<Value> {
        self.result
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

/// `GET /v1/tasks/{id}/result` answer (§6.6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskResult {
    /// Task id.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub task_id: String,
    /// Task status.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub status: String,
    /// Jobs, oldest first.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub jobs: Vec<JobResult>,
}

impl TaskResult {
    /// Whether the status is terminal.
    pub fn is_terminal(&self) -> bool {
        is_terminal_status(&self.status)
    }
}

/// `POST /v1/tasks/{id}/cancel` answer (§6.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelTaskResponse {
    /// Task id.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub task_id: String,
    /// Always true from the reference gateway.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub canceled: bool,
}

/// `GET /v1/tasks/{id}/logs` answer (§6.8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskLogs {
    /// Task id.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub task_id: String,
    /// Standard output of all jobs.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stdout: String,
    /// Standard error of all jobs.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stderr: String,
}

// ---------------------------------------------------------------- models and chat

/// `GET /v1/models` answer (§7.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

/// One entry of a [`ModelList`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    /// Model id, e.g. `cynodeai.pm`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// Owner, when the gateway reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
}

/// One chat message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatMessage {
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// Plain text.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// `POST /v1/chat/completions` body (§7.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatCompletionRequest {
    /// Model id; absent means `cynodeai.pm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation (the gateway keeps context per thread, so usually one message).
    pub messages: Vec<ChatMessage>,
    /// Ask for a `text/event-stream` answer of [`ChatCompletionChunk`]s (§7.7).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// `POST /v1/chat/completions` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatCompletion {
    /// Completion id.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// Effective model id.
    pub model: String,
    /// Exactly one choice from this gateway.
    pub choices: Vec<ChatChoice>,
}

impl ChatCompletion {
    /// `choices[0].message.content`, or empty.
    pub fn content(&self) -> &str {
        self.choices
            .first()
            .map(|c| c.message.content.as_str())
            .unwrap_or("")
    }
}

/// One choice of a [`ChatCompletion`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatChoice {
    /// Index (0).
    pub index: u32,
    /// The reply.
    pub message: ChatMessage,
    /// `stop` when complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

/// One streamed event of a chat completion (`data: <chunk>` in the event stream).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatCompletionChunk {
    /// Completion id (the same in every chunk).
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// Effective model id.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChunkChoice>,
}

impl ChatCompletionChunk {
    /// The text this chunk adds (empty when none).
    pub fn delta_text(&self) -> &str {
        self.choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
            .unwrap_or("")
    }
}

/// One choice of a [`ChatCompletionChunk`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChunkChoice {
    /// Index (0).
    pub index: u32,
    /// The increment.
    pub delta: ChatDelta,
    /// `stop` on the last chunk, else absent/null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

/// The increment of a [`ChunkChoice`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatDelta {
    /// `assistant` on the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text to append.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `POST /v1/chat/threads` answer (§8.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadCreated {
    /// The new thread's id.
    pub thread_id: String,
}

// ---------------------------------------------------------------- skills

/// Skill metadata (§9): what list, load and update return.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkillMeta {
    /// Skill id.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub id: String,
    /// Name.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub name: String,
    /// `user`, `group`, `project` or `global`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub scope: String,
    /// RFC 3339 with fractional seconds.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub updated_at: String,
    /// Owner; absent for system skills.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
}

/// `GET /v1/skills/{id}` answer: metadata plus the Markdown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Skill {
    /// Metadata.
    #[serde(flatten)]
    pub meta: SkillMeta,
    /// The skill's Markdown.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub content: String,
}

/// `GET /v1/skills` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkillList {
    /// Newest first.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub skills: Vec<SkillMeta>,
}

/// `GET /v1/skills` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SkillListQuery {
    /// Only this scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Only this owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `POST /v1/skills/load` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadSkillRequest {
    /// The Markdown (required).
    pub content: String,
    /// Name (gateway default `Untitled skill`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scope (gateway default `user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `PUT /v1/skills/{id}` body: only the fields given change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateSkillRequest {
    /// New Markdown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// New name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

// ---------------------------------------------------------------- preferences, settings

/// Addresses preference entries (query of `GET /v1/prefs`, `GET /v1/prefs/effective`,
/// `DELETE /v1/prefs`). Unset fields are not sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrefQuery {
    /// `system`, `user`, `group`, `project` or `task`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_type: Option<String>,
    /// Scope id (absent for `system`; the caller for `user` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    /// One key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Effective preferences for this task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Effective preferences for this project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Next-page cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `POST /v1/prefs` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetPrefRequest {
    /// Scope type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_type: Option<String>,
    /// Scope id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    /// Key, e.g. `output.summary_style`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Why (audited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Optimistic concurrency: the version being replaced (mismatch → 409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
}

/// One preference entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrefEntry {
    /// Key.
    pub key: String,
    /// Value.
    pub value: Value,
    /// Scope type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_type: Option<String>,
    /// Scope id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    /// `string`, `number`, `boolean`, `object` or `array`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// Version (1, +1 per update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Last change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Who changed it last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// `GET /v1/prefs` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrefList {
    /// Entries.
    pub preferences: Vec<PrefEntry>,
    /// Next page, when more exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/prefs/effective` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EffectivePrefs {
    /// Merged key → value.
    pub effective: BTreeMap<String, Value>,
    /// Where each key came from.
    pub sources: Vec<PrefSource>,
}

/// One entry of [`EffectivePrefs::sources`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrefSource {
    /// Key.
    pub key: String,
    /// Scope the value came from.
    pub scope_type: String,
    /// Its id (absent for `system`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
}

/// `POST /v1/settings` body (system settings, admin only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetSettingRequest {
    /// Key, e.g. `agents.pm.model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Why (audited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Common list paging for the resource routes (`limit` 1..200, opaque `cursor`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PageQuery {
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_partial_task_decodes_and_normalizes_both_ids() {
        let t: Task = serde_json::from_value(json!({"id": "a", "extra": 1})).expect("task");
        let t = t.normalized();
        assert_eq!((t.id.as_str(), t.task_id.as_str()), ("a", "a"));
        let t: Task = serde_json::from_value(json!({"task_id": "b"})).expect("task");
        assert_eq!(t.normalized().id, "b");
        // Empty optional fields are not written back.
        let t = Task {
            id: "x".into(),
            task_id: "x".into(),
            status: "queued".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&t).expect("json"),
            json!({"id": "x", "task_id": "x", "status": "queued"})
        );
    }

    #[test]
    fn create_task_omits_unset_flags() {
        let r = CreateTaskRequest {
            prompt: "hello".into(),
            input_mode: "prompt".into(),
            task_name: Some("demo".into()),
            attachments: vec!["tmp/a.txt".into()],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&r).expect("json"),
            json!({"prompt":"hello","input_mode":"prompt","task_name":"demo","attachments":["tmp/a.txt"]})
        );
    }

    #[test]
    fn chat_bodies_match_the_contract() {
        let r = ChatCompletionRequest {
            messages: vec![ChatMessage::user("hi")],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&r).expect("json"),
            json!({"messages":[{"role":"user","content":"hi"}]})
        );
        let c: ChatCompletion = serde_json::from_value(
            json!({"choices":[{"index":0,"message":{"role":"assistant","content":"OK"}}]}),
        )
        .expect("completion");
        assert_eq!(c.content(), "OK");
        let chunk: ChatCompletionChunk = serde_json::from_value(json!({
            "id":"1","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"content":"O"},"finish_reason":null}]
        }))
        .expect("chunk");
        assert_eq!(chunk.delta_text(), "O");
        let e: OpenAiErrorBody = serde_json::from_value(json!({"error":{"message":"Completion failed","type":"cynodeai_error","param":null,"code":"orchestrator_inference_failed"}})).expect("error");
        assert_eq!(
            e.error.code.as_deref(),
            Some("orchestrator_inference_failed")
        );
    }

    #[test]
    fn skills_flatten_metadata_and_content() {
        let s: Skill = serde_json::from_value(
            json!({"id":"1","name":"n","scope":"user","updated_at":"t","content":"# x"}),
        )
        .expect("skill");
        assert_eq!((s.meta.id.as_str(), s.content.as_str()), ("1", "# x"));
        assert!(s.meta.owner_id.is_none());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let r = LoginRequest {
            handle: "admin".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{r:?}").contains("hunter2"));
        let t = TokenResponse {
            access_token: "aaa.bbb.ccc".into(),
            ..Default::default()
        };
        assert!(!format!("{t:?}").contains("aaa.bbb"));
    }
}
