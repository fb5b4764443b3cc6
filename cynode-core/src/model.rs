//! Domain types as stored: what the storage traits take and return.
//!
//! These are not wire types (those live with the protocol that defines them); they
//! derive serde only so embedders can persist or log them easily.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ArtifactId, AuditId, CredentialId, Error, JobId, MessageId, NodeId, PreferenceId, ProjectId,
    Result, SessionId, TaskId, ThreadId, UserId, VectorItemId,
};

/// Timestamp type used everywhere (UTC, microsecond precision once stored).
pub type Timestamp = DateTime<Utc>;

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $s:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The stored / wire spelling.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $s),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($name::$variant),)*
                    other => Err(Error::invalid(format!(
                        concat!("unknown ", stringify!($name), " '{}'"), other))),
                }
            }
        }
    };
}

// ---------------------------------------------------------------- users and sessions

/// A user account (`users`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Unique login handle; `system` is reserved.
    pub handle: String,
    /// Optional unique e-mail.
    pub email: Option<String>,
    /// Disabled users cannot log in.
    pub is_active: bool,
    /// Directory the account is synced from, if any.
    pub external_source: Option<String>,
    /// Id in that directory.
    pub external_id: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for creating a user. Creating a user also creates its default project
/// (slug `default-<user id>`) in the same transaction.
#[derive(Clone, Debug, Default)]
pub struct NewUser {
    /// Unique handle (1–64 chars of `[A-Za-z0-9._-]`); `system` is reserved.
    pub handle: String,
    /// Optional e-mail.
    pub email: Option<String>,
    /// Optional password hash to store with the user, atomically.
    pub password: Option<PasswordHash>,
}

/// A password hash and its algorithm (`password_credentials`). Hashing happens above
/// the storage layer; storage never sees a plain password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHash {
    /// Encoded hash (e.g. a PHC string for argon2id).
    pub hash: Vec<u8>,
    /// `argon2id` or `bcrypt`.
    pub alg: String,
}

/// A refresh-token session (`refresh_sessions`). The token itself is never stored,
/// only its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefreshSession {
    /// Id.
    pub id: SessionId,
    /// Owner.
    pub user_id: UserId,
    /// Hash of the refresh token: the lookup key.
    pub token_hash: Vec<u8>,
    /// Key id the token was issued under.
    pub token_kid: Option<String>,
    /// False once revoked or rotated.
    pub is_active: bool,
    /// Hard expiry.
    pub expires_at: Timestamp,
    /// Last successful use.
    pub last_used_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new refresh session.
#[derive(Clone, Debug)]
pub struct NewRefreshSession {
    /// Owner.
    pub user_id: UserId,
    /// Hash of the refresh token.
    pub token_hash: Vec<u8>,
    /// Key id.
    pub token_kid: Option<String>,
    /// Expiry.
    pub expires_at: Timestamp,
}

/// A project (`projects`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Id.
    pub id: ProjectId,
    /// Unique slug.
    pub slug: String,
    /// Title.
    pub display_name: String,
    /// Markdown description.
    pub description: Option<String>,
    /// Projects are disabled, not deleted.
    pub is_active: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new project.
#[derive(Clone, Debug, Default)]
pub struct NewProject {
    /// Unique slug.
    pub slug: String,
    /// Title.
    pub display_name: String,
    /// Markdown description.
    pub description: Option<String>,
}

// ---------------------------------------------------------------- tasks and jobs

string_enum!(
    /// Lifecycle of a task. Terminal states are never overwritten.
    TaskStatus {
        /// Created, not yet running.
        Pending = "pending",
        /// At least one job is running.
        Running = "running",
        /// Finished successfully.
        Completed = "completed",
        /// Finished with an error.
        Failed = "failed",
        /// Canceled by a user or a dependency.
        Canceled = "canceled",
        /// Replaced by another task.
        Superseded = "superseded",
    }
);

impl TaskStatus {
    /// Whether no further transition is allowed.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Canceled | Self::Superseded
        )
    }
}

string_enum!(
    /// Lifecycle of a job.
    JobStatus {
        /// Waiting for a node.
        Queued = "queued",
        /// Dispatched and running.
        Running = "running",
        /// Finished successfully.
        Completed = "completed",
        /// Finished with an error.
        Failed = "failed",
        /// Canceled.
        Canceled = "canceled",
        /// Its holder stopped heartbeating.
        LeaseExpired = "lease_expired",
    }
);

impl JobStatus {
    /// Whether no further transition is allowed.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

/// A task (`tasks`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Id.
    pub id: TaskId,
    /// Creator (NULL once the user is deleted).
    pub created_by: Option<UserId>,
    /// Project (the creator's default when none was given).
    pub project_id: Option<ProjectId>,
    /// Human name, unique per creator.
    pub name: String,
    /// Status.
    pub status: TaskStatus,
    /// True exactly when `status` is terminal.
    pub closed: bool,
    /// The user's request text.
    pub prompt: Option<String>,
    /// Markdown description.
    pub description: Option<String>,
    /// Acceptance criteria document.
    pub acceptance_criteria: Option<Value>,
    /// Final workflow summary.
    pub summary: Option<String>,
    /// Free-form metadata (input mode, options).
    pub metadata: Option<Value>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new task. The task, its dependencies and its attachment artifacts are
/// written in one transaction: if any part fails, nothing is stored.
#[derive(Clone, Debug, Default)]
pub struct NewTask {
    /// Creator.
    pub created_by: Option<UserId>,
    /// Project.
    pub project_id: Option<ProjectId>,
    /// Unique (per creator) name; callers normalise and de-duplicate it.
    pub name: String,
    /// Request text.
    pub prompt: Option<String>,
    /// Markdown description.
    pub description: Option<String>,
    /// Acceptance criteria.
    pub acceptance_criteria: Option<Value>,
    /// Metadata.
    pub metadata: Option<Value>,
    /// Tasks that must complete first; each must exist.
    pub depends_on: Vec<TaskId>,
    /// Artifacts to record with the task (e.g. attachments).
    pub artifacts: Vec<NewArtifact>,
}

/// Filter and paging for listing tasks, newest first.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Only tasks of this creator.
    pub created_by: Option<UserId>,
    /// Only tasks of this project.
    pub project_id: Option<ProjectId>,
    /// Only tasks in one of these states (empty = any).
    pub statuses: Vec<TaskStatus>,
    /// Page size (clamped to 1..=1000; 0 means 50).
    pub limit: u32,
    /// Rows to skip.
    pub offset: u64,
}

/// A job (`jobs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Owning task.
    pub task_id: TaskId,
    /// Node it was dispatched to.
    pub node_id: Option<NodeId>,
    /// Status.
    pub status: JobStatus,
    /// Job input.
    pub payload: Value,
    /// Output / exit info.
    pub result: Option<Value>,
    /// Current lease.
    pub lease_id: Option<uuid::Uuid>,
    /// Lease expiry.
    pub lease_expires_at: Option<Timestamp>,
    /// When it started running.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal state.
    pub ended_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new job.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Id, pre-assigned when the payload embeds it.
    pub id: JobId,
    /// Owning task (must exist).
    pub task_id: TaskId,
    /// Job input.
    pub payload: Value,
}

/// A change to a job; `None` fields are left as they are.
#[derive(Clone, Debug, Default)]
pub struct JobUpdate {
    /// New status. A terminal job cannot change status (conflict).
    pub status: Option<JobStatus>,
    /// Node.
    pub node_id: Option<NodeId>,
    /// Result document.
    pub result: Option<Value>,
    /// Lease id and expiry (`Some(None)` clears them).
    pub lease: Option<Option<(uuid::Uuid, Timestamp)>>,
    /// Start time.
    pub started_at: Option<Timestamp>,
    /// End time.
    pub ended_at: Option<Timestamp>,
}

/// A task artifact (`task_artifacts`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Id.
    pub id: ArtifactId,
    /// Owning task.
    pub task_id: TaskId,
    /// Logical path within the task, unique per task.
    pub path: String,
    /// Where the bytes are (blob key, node path, or empty for references).
    pub storage_ref: String,
    /// Size.
    pub size_bytes: Option<i64>,
    /// MIME type.
    pub content_type: Option<String>,
    /// Hex SHA-256 of the content.
    pub checksum_sha256: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for an artifact; a second put of the same path replaces the first.
#[derive(Clone, Debug, Default)]
pub struct NewArtifact {
    /// Logical path (non-blank, at most 2048 chars).
    pub path: String,
    /// Storage reference.
    pub storage_ref: String,
    /// Size.
    pub size_bytes: Option<i64>,
    /// MIME type.
    pub content_type: Option<String>,
    /// Hex SHA-256.
    pub checksum_sha256: Option<String>,
}

// ---------------------------------------------------------------- nodes

string_enum!(
    /// Registration state of a node as stored (`nodes.status`).
    NodeStatus {
        /// Registered, configuration not yet applied.
        Registered = "registered",
        /// Taking work.
        Active = "active",
        /// Not heard from.
        Inactive = "inactive",
        /// Draining or drained: takes no new work.
        Drained = "drained",
    }
);

/// A worker node (`nodes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Id.
    pub id: NodeId,
    /// Unique slug the node registers with.
    pub node_slug: String,
    /// Status.
    pub status: NodeStatus,
    /// `sha256:<hex>` of the last capability report.
    pub capability_hash: Option<String>,
    /// Version of the configuration last delivered.
    pub config_version: Option<String>,
    /// Worker API base URL used for dispatch.
    pub worker_api_target_url: Option<String>,
    /// Bearer token for the Worker API. Callers encrypt it before storing.
    pub worker_api_bearer_token: Option<String>,
    /// When the node acknowledged its configuration.
    pub config_ack_at: Option<Timestamp>,
    /// `applied` or `failed`.
    pub config_ack_status: Option<String>,
    /// Error reported with a failed acknowledgement.
    pub config_ack_error: Option<String>,
    /// Last heartbeat or report.
    pub last_seen_at: Option<Timestamp>,
    /// Last capability report.
    pub last_capability_at: Option<Timestamp>,
    /// Labels and other metadata.
    pub metadata: Option<Value>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl Node {
    /// Whether jobs may be dispatched to this node (spec: active, configuration
    /// applied, and a Worker API URL and token known).
    pub fn is_dispatchable(&self) -> bool {
        self.status == NodeStatus::Active
            && self.config_ack_status.as_deref() == Some("applied")
            && self
                .worker_api_target_url
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            && self
                .worker_api_bearer_token
                .as_deref()
                .is_some_and(|s| !s.is_empty())
    }
}

/// A change to a node; `None` fields are left as they are, `Some(None)` clears.
#[derive(Clone, Debug, Default)]
pub struct NodeUpdate {
    /// Status.
    pub status: Option<NodeStatus>,
    /// Configuration version.
    pub config_version: Option<Option<String>>,
    /// Worker API URL.
    pub worker_api_target_url: Option<Option<String>>,
    /// Worker API token.
    pub worker_api_bearer_token: Option<Option<String>>,
    /// Config acknowledgement: (time, status, error).
    pub config_ack: Option<(Timestamp, String, Option<String>)>,
    /// Last seen.
    pub last_seen_at: Option<Timestamp>,
    /// Metadata (replaces).
    pub metadata: Option<Option<Value>>,
}

/// One capability report of a node (`node_capabilities`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapabilitySnapshot {
    /// Node.
    pub node_id: NodeId,
    /// When it was reported.
    pub reported_at: Timestamp,
    /// The full report.
    pub snapshot: Value,
}

// ---------------------------------------------------------------- preferences

/// The scope a preference applies to; resolution runs task > project > user > group >
/// system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope_type", content = "scope_id", rename_all = "snake_case")]
pub enum Scope {
    /// System-wide default.
    System,
    /// A user.
    User(UserId),
    /// A group (by id).
    Group(uuid::Uuid),
    /// A project.
    Project(ProjectId),
    /// A task.
    Task(TaskId),
}

impl Scope {
    /// `system`, `user`, `group`, `project` or `task`.
    pub fn type_str(&self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::User(_) => "user",
            Scope::Group(_) => "group",
            Scope::Project(_) => "project",
            Scope::Task(_) => "task",
        }
    }

    /// The scope's id; `None` for system.
    pub fn id(&self) -> Option<uuid::Uuid> {
        match self {
            Scope::System => None,
            Scope::User(u) => Some(u.0),
            Scope::Group(g) => Some(*g),
            Scope::Project(p) => Some(p.0),
            Scope::Task(t) => Some(t.0),
        }
    }

    /// Rebuilds a scope from its stored parts.
    pub fn from_parts(scope_type: &str, id: Option<uuid::Uuid>) -> Result<Self> {
        match (scope_type, id) {
            ("system", None) => Ok(Scope::System),
            ("user", Some(id)) => Ok(Scope::User(id.into())),
            ("group", Some(id)) => Ok(Scope::Group(id)),
            ("project", Some(id)) => Ok(Scope::Project(id.into())),
            ("task", Some(id)) => Ok(Scope::Task(id.into())),
            (t, id) => Err(Error::invalid(format!(
                "invalid preference scope {t}/{id:?}"
            ))),
        }
    }
}

/// A stored preference (`preference_entries`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreferenceEntry {
    /// Id.
    pub id: PreferenceId,
    /// Scope.
    pub scope: Scope,
    /// Case-sensitive key.
    pub key: String,
    /// Value; JSON `null` masks lower scopes.
    pub value: Value,
    /// `string`, `number`, `boolean`, `object`, `array` (or `null`), derived from `value`.
    pub value_type: String,
    /// Starts at 1, +1 per update.
    pub version: i32,
    /// Last change.
    pub updated_at: Timestamp,
    /// Who changed it.
    pub updated_by: Option<String>,
}

/// The JSON type name stored in `value_type` for a value.
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------- chat

string_enum!(
    /// Author of a chat message.
    ChatRole {
        /// The user.
        User = "user",
        /// The model.
        Assistant = "assistant",
        /// System prompt.
        System = "system",
    }
);

/// A chat thread (`chat_threads`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatThread {
    /// Id.
    pub id: ThreadId,
    /// Owner.
    pub user_id: UserId,
    /// Project.
    pub project_id: Option<ProjectId>,
    /// Title.
    pub title: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Bumped whenever a message is appended.
    pub updated_at: Timestamp,
}

/// A chat message (`chat_messages`). Content is stored already redacted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Id.
    pub id: MessageId,
    /// Thread.
    pub thread_id: ThreadId,
    /// Author.
    pub role: ChatRole,
    /// Redacted content.
    pub content: String,
    /// Metadata (model, usage).
    pub metadata: Option<Value>,
    /// Creation time.
    pub created_at: Timestamp,
}

// ---------------------------------------------------------------- audit

/// An audit record. Each kind lands in its own table; none stores message content,
/// arguments or secrets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditRecord {
    /// `auth_audit_log`.
    Auth(AuthAudit),
    /// `chat_audit_log`.
    Chat(ChatAudit),
    /// `mcp_tool_call_audit_log`.
    McpToolCall(McpToolCallAudit),
}

/// Which audit table to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    /// Authentication events.
    Auth,
    /// Chat completions.
    Chat,
    /// MCP tool calls.
    McpToolCall,
}

/// An authentication event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuthAudit {
    /// Id.
    pub id: AuditId,
    /// `login_success`, `login_failure`, `refresh_success`, `logout`, ...
    pub event_type: String,
    /// User, when known.
    pub user_id: Option<UserId>,
    /// Handle as given (may be redacted on failure).
    pub subject_handle: Option<String>,
    /// Outcome.
    pub success: bool,
    /// Client address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Reason for failure.
    pub reason: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

/// A chat completion outcome (never its content).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatAudit {
    /// Id.
    pub id: AuditId,
    /// User.
    pub user_id: Option<UserId>,
    /// Project.
    pub project_id: Option<ProjectId>,
    /// `success`, `error`, `canceled`, `timeout`.
    pub outcome: String,
    /// Error code on failure.
    pub error_code: Option<String>,
    /// Whether secrets were redacted.
    pub redaction_applied: bool,
    /// Kinds redacted, e.g. `["api_key"]`.
    pub redaction_kinds: Vec<String>,
    /// Duration.
    pub duration_ms: Option<i32>,
    /// Request id.
    pub request_id: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

/// An MCP tool invocation (never its arguments or result).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McpToolCallAudit {
    /// Id.
    pub id: AuditId,
    /// Task.
    pub task_id: Option<TaskId>,
    /// Project.
    pub project_id: Option<ProjectId>,
    /// Job.
    pub job_id: Option<JobId>,
    /// User.
    pub user_id: Option<UserId>,
    /// Tool name.
    pub tool_name: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// `success` or `error`.
    pub status: String,
    /// Duration.
    pub duration_ms: Option<i32>,
    /// Error type on failure.
    pub error_type: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

impl AuditRecord {
    /// The table this record belongs to.
    pub fn kind(&self) -> AuditKind {
        match self {
            AuditRecord::Auth(_) => AuditKind::Auth,
            AuditRecord::Chat(_) => AuditKind::Chat,
            AuditRecord::McpToolCall(_) => AuditKind::McpToolCall,
        }
    }

    /// When it happened.
    pub fn created_at(&self) -> Timestamp {
        match self {
            AuditRecord::Auth(a) => a.created_at,
            AuditRecord::Chat(a) => a.created_at,
            AuditRecord::McpToolCall(a) => a.created_at,
        }
    }

    /// The user it concerns, if any.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            AuditRecord::Auth(a) => a.user_id,
            AuditRecord::Chat(a) => a.user_id,
            AuditRecord::McpToolCall(a) => a.user_id,
        }
    }
}

/// Filter for reading an audit table, newest first.
#[derive(Clone, Debug)]
pub struct AuditFilter {
    /// Table.
    pub kind: AuditKind,
    /// Only records about this user.
    pub user_id: Option<UserId>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Page size (clamped to 1..=1000; 0 means 50).
    pub limit: u32,
}

// ---------------------------------------------------------------- credentials

/// An API credential held for the egress service (`api_credentials`). Storage sees
/// only ciphertext; encryption and decryption happen in the egress path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiCredential {
    /// Id.
    pub id: CredentialId,
    /// `user` or `group`.
    pub owner_type: String,
    /// Owner id.
    pub owner_id: uuid::Uuid,
    /// Lower-case provider id (`openai`, `anthropic`, ...).
    pub provider: String,
    /// `api_key`, `oauth_token`, `bearer_token`.
    pub credential_type: String,
    /// Label, unique per owner and provider.
    pub credential_name: String,
    /// Envelope-encrypted secret. Never returned by APIs.
    #[serde(skip_serializing)]
    pub ciphertext: Vec<u8>,
    /// Key id of the key-encryption key.
    pub kid: Option<String>,
    /// Disabled credentials are not used.
    pub is_active: bool,
    /// `None` = never expires.
    pub expires_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl ApiCredential {
    /// Active = enabled and not expired at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.is_active && self.expires_at.is_none_or(|e| e > now)
    }
}

/// Input for a new credential.
#[derive(Clone, Debug)]
pub struct NewApiCredential {
    /// `user` or `group`.
    pub owner_type: String,
    /// Owner id.
    pub owner_id: uuid::Uuid,
    /// Provider id; stored lower-case.
    pub provider: String,
    /// Credential type.
    pub credential_type: String,
    /// Label.
    pub credential_name: String,
    /// Ciphertext.
    pub ciphertext: Vec<u8>,
    /// Key id.
    pub kid: Option<String>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

// ---------------------------------------------------------------- vector memory

string_enum!(
    /// Ordered sensitivity of a stored chunk.
    Sensitivity {
        /// Anyone in the project.
        Public = "public",
        /// Internal.
        Internal = "internal",
        /// Confidential.
        Confidential = "confidential",
        /// Restricted.
        Restricted = "restricted",
    }
);

impl Sensitivity {
    /// Ordinal used for `<=` comparisons (public = 0).
    pub fn rank(&self) -> i16 {
        *self as i16
    }
}

/// A chunk of text with its embedding (`vector_items`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorItem {
    /// Id.
    pub id: VectorItemId,
    /// Project (RBAC boundary).
    pub project_id: ProjectId,
    /// Task that produced it.
    pub task_id: Option<TaskId>,
    /// Namespace (`docs`, `skills`, `project_memory`, `code_index`).
    pub namespace: String,
    /// Sensitivity; `None` = unrestricted within the project.
    pub sensitivity: Option<Sensitivity>,
    /// `task_artifact`, `run_log`, `connector_doc`, `web_page`, `note`.
    pub source_type: String,
    /// Artifact path, URL, connector id.
    pub source_ref: Option<String>,
    /// Position of the chunk within its source.
    pub chunk_index: i32,
    /// Sanitized text.
    pub content_text: String,
    /// Hex SHA-256 of `content_text`.
    pub content_sha256: String,
    /// Model that produced the embedding.
    pub embedding_model: String,
    /// The embedding; its length is the dimension.
    pub embedding: Vec<f32>,
    /// Metadata.
    pub metadata: Option<Value>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// Input for a chunk; the id, hash and time are filled in by the store.
#[derive(Clone, Debug, Default)]
pub struct NewVectorItem {
    /// Project (must exist).
    pub project_id: ProjectId,
    /// Task.
    pub task_id: Option<TaskId>,
    /// Namespace.
    pub namespace: String,
    /// Sensitivity.
    pub sensitivity: Option<Sensitivity>,
    /// Source type.
    pub source_type: String,
    /// Source reference.
    pub source_ref: Option<String>,
    /// Chunk index.
    pub chunk_index: i32,
    /// Text.
    pub content_text: String,
    /// Embedding model.
    pub embedding_model: String,
    /// Embedding: 1..=2000 finite values, not all zero.
    pub embedding: Vec<f32>,
    /// Metadata.
    pub metadata: Option<Value>,
}

/// A filtered nearest-neighbour query. There is no unfiltered search: the caller must
/// name the projects and namespaces it is authorized for.
#[derive(Clone, Debug)]
pub struct VectorQuery {
    /// Projects the caller may read (non-empty).
    pub project_ids: Vec<ProjectId>,
    /// Namespaces the caller may read (non-empty).
    pub namespaces: Vec<String>,
    /// Highest sensitivity the caller may read; chunks with no sensitivity always match.
    pub max_sensitivity: Sensitivity,
    /// Only chunks embedded with this model (and so of the same dimension).
    pub embedding_model: String,
    /// Query embedding.
    pub embedding: Vec<f32>,
    /// How many hits (1..=1000).
    pub k: u32,
}

/// One search hit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorHit {
    /// The chunk.
    pub item: VectorItem,
    /// Cosine distance (0 = same direction, 2 = opposite).
    pub distance: f32,
}

/// Validates an embedding: 1..=2000 finite values with a non-zero norm.
pub fn validate_embedding(e: &[f32]) -> Result<()> {
    if e.is_empty() || e.len() > 2000 {
        return Err(Error::invalid(format!(
            "embedding dimension {} is outside 1..=2000",
            e.len()
        )));
    }
    if e.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid("embedding contains a non-finite value"));
    }
    if e.iter().all(|x| *x == 0.0) {
        return Err(Error::invalid("embedding has zero norm"));
    }
    Ok(())
}

/// Cosine distance between two vectors of equal length (1 - cosine similarity).
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let denom = (na.sqrt() * nb.sqrt()).max(f32::MIN_POSITIVE);
    1.0 - dot / denom
}

/// Hex SHA-256 of a string.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a user handle: 1–64 chars of `[A-Za-z0-9._-]`.
pub fn validate_handle(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "handle '{h}' must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )))
    }
}
