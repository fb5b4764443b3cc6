//! Narrow storage capabilities, one trait each, and the backends that implement them.
//!
//! Every backend implements every trait, so one value can be shared as
//! `Arc<dyn Store>` and handed to a component as just the capability it needs
//! (`Arc<dyn TaskStore>`, ...). Behaviour is fixed by the conformance suite, which runs
//! the same cases against every backend.
//!
//! Rules all backends keep:
//! - unknown ids give [`Error::NotFound`]; unique-key clashes and forbidden state
//!   changes give [`Error::Conflict`]; malformed input and dangling references give
//!   [`Error::InvalidInput`]; a lost connection gives a retryable [`Error::Unavailable`];
//! - a call returns only after its write is durable (committed);
//! - writes of several rows that belong together are one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    CredentialId, Error, JobId, NodeId, ProjectId, Result, SessionId, TaskId, ThreadId, UserId,
    model::*,
};

mod access;
mod audit_query;
mod memory;
mod preference_audit;
mod settings;
mod skills;
pub(crate) mod validate;
mod workflow;

pub use audit_query::{AuditQuery, AuditQueryStore, record_id};
pub use preference_audit::{PreferenceAuditStore, PreferenceChange};
pub use settings::{MAX_SETTING_KEY, SettingChange, SettingStore, SystemSetting};
pub use skills::{
    DEFAULT_SKILL_NAME, MAX_SKILL_CONTENT, MAX_SKILL_NAME, NewSkill, SKILL_SCOPES, SYSTEM_SKILL_ID,
    SYSTEM_SKILL_NAME, Skill, SkillFilter, SkillStore, SkillUpdate,
};

pub use access::{
    AccessAudit, AccessAuditFilter, AccessControlStore, AccessRule, AccessRuleFilter, Decision,
    Effect, NewAccessRule, SUBJECT_TYPES,
};

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PgStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use workflow::{
    GATE_DEPENDENCIES_NOT_SATISFIED, GATE_DEPENDENCY_NOT_FOUND, GATE_PLAN_ARCHIVED,
    GATE_PLAN_NOT_ACTIVE, GATE_PLAN_NOT_FOUND, LeaseAcquire, WorkflowCheckpoint, WorkflowLease,
    WorkflowStore,
};

/// Users, their passwords, projects and refresh sessions.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user, its default project (`default-<id>`) and, when given, its
    /// password hash, atomically. Duplicate handle or e-mail is a conflict; the handle
    /// `system` is reserved (invalid input) unless created through
    /// [`UserStore::ensure_system_user`].
    async fn create_user(&self, new: NewUser) -> Result<User>;
    /// Creates the reserved `system` user if missing and returns it.
    async fn ensure_system_user(&self) -> Result<User>;
    /// A user by id.
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// A user by handle (exact match).
    async fn get_user_by_handle(&self, handle: &str) -> Result<User>;
    /// All users, ordered by handle.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Enables or disables a user.
    async fn set_user_active(&self, id: UserId, active: bool) -> Result<User>;
    /// Sets (creates or replaces) a user's password hash.
    async fn set_password(&self, id: UserId, hash: PasswordHash) -> Result<()>;
    /// The user's password hash, if one is set.
    async fn get_password(&self, id: UserId) -> Result<Option<PasswordHash>>;
    /// The user's default project.
    async fn default_project(&self, id: UserId) -> Result<Project>;

    /// Creates a project; a duplicate slug is a conflict.
    async fn create_project(&self, new: NewProject) -> Result<Project>;
    /// A project by id.
    async fn get_project(&self, id: ProjectId) -> Result<Project>;
    /// A project by slug.
    async fn get_project_by_slug(&self, slug: &str) -> Result<Project>;
    /// Active and inactive projects, ordered by slug.
    async fn list_projects(&self) -> Result<Vec<Project>>;

    /// Stores a new refresh session; the user must exist.
    async fn create_session(&self, new: NewRefreshSession) -> Result<RefreshSession>;
    /// The session whose token hash matches and which is active and unexpired at `now`.
    async fn find_active_session(
        &self,
        token_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<RefreshSession>>;
    /// A session by id, active or not.
    async fn get_session(&self, id: SessionId) -> Result<RefreshSession>;
    /// Replaces an active session by a new one atomically (refresh-token rotation).
    /// If `old` is no longer active, nothing is written and the result is a conflict:
    /// the caller treats that as token reuse.
    async fn rotate_session(
        &self,
        old: SessionId,
        new: NewRefreshSession,
        now: Timestamp,
    ) -> Result<RefreshSession>;
    /// Deactivates one session. Revoking an inactive session is not an error.
    async fn revoke_session(&self, id: SessionId) -> Result<()>;
    /// Deactivates all sessions of a user; returns how many were active.
    async fn revoke_user_sessions(&self, user_id: UserId) -> Result<u64>;
}

/// Tasks, their dependencies, jobs and artifacts.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Creates a task with its dependencies and artifacts in one transaction. A
    /// duplicate name for the same creator is a conflict; a dependency that does not
    /// exist is invalid input; in both cases nothing is stored.
    async fn create_task(&self, new: NewTask) -> Result<Task>;
    /// A task by id.
    async fn get_task(&self, id: TaskId) -> Result<Task>;
    /// A task by its creator and name.
    async fn get_task_by_name(&self, created_by: UserId, name: &str) -> Result<Task>;
    /// Tasks matching the filter, newest first (ties by id), and the total count.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<(Vec<Task>, u64)>;
    /// Whether a task with this name exists for this creator.
    async fn task_name_exists(&self, created_by: UserId, name: &str) -> Result<bool>;
    /// Sets the status (and `closed`). A terminal status is never overwritten: the
    /// call then returns the task unchanged.
    async fn set_task_status(&self, id: TaskId, status: TaskStatus) -> Result<Task>;
    /// Sets the final summary.
    async fn set_task_summary(&self, id: TaskId, summary: Option<String>) -> Result<Task>;
    /// Ids of the tasks this task depends on.
    async fn task_dependencies(&self, id: TaskId) -> Result<Vec<TaskId>>;

    /// Creates a job for an existing task; a duplicate id is a conflict.
    async fn create_job(&self, new: NewJob) -> Result<Job>;
    /// A job by id.
    async fn get_job(&self, id: JobId) -> Result<Job>;
    /// Jobs of a task, oldest first.
    async fn list_jobs(&self, task_id: TaskId) -> Result<Vec<Job>>;
    /// Applies an update; changing the status of a terminal job is a conflict.
    async fn update_job(&self, id: JobId, update: JobUpdate) -> Result<Job>;

    /// Creates or replaces the artifact at `path` of a task.
    async fn put_artifact(&self, task_id: TaskId, new: NewArtifact) -> Result<Artifact>;
    /// Artifacts of a task, ordered by path.
    async fn list_artifacts(&self, task_id: TaskId) -> Result<Vec<Artifact>>;
}

/// Worker nodes, their configuration state and capability reports.
#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Returns the node with this slug, creating it (status `registered`) if new.
    async fn upsert_node(&self, slug: &str) -> Result<Node>;
    /// A node by id.
    async fn get_node(&self, id: NodeId) -> Result<Node>;
    /// A node by slug.
    async fn get_node_by_slug(&self, slug: &str) -> Result<Node>;
    /// All nodes, ordered by slug.
    async fn list_nodes(&self) -> Result<Vec<Node>>;
    /// Applies an update.
    async fn update_node(&self, id: NodeId, update: NodeUpdate) -> Result<Node>;
    /// Records a capability report, setting the node's hash and report time.
    async fn record_capabilities(
        &self,
        id: NodeId,
        snapshot: Value,
        at: Timestamp,
    ) -> Result<CapabilitySnapshot>;
    /// The newest capability report, if any.
    async fn latest_capabilities(&self, id: NodeId) -> Result<Option<CapabilitySnapshot>>;
}

/// Scoped preferences with optimistic concurrency.
#[async_trait]
pub trait PreferenceStore: Send + Sync {
    /// One entry.
    async fn get_preference(&self, scope: Scope, key: &str) -> Result<PreferenceEntry>;
    /// Entries of a scope whose key starts with `prefix`, ordered by key.
    async fn list_preferences(&self, scope: Scope, prefix: &str) -> Result<Vec<PreferenceEntry>>;
    /// Creates or updates an entry. With `expected_version`, the write happens only if
    /// the stored version matches (for a create, `Some(0)`), else conflict.
    async fn put_preference(
        &self,
        scope: Scope,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        updated_by: Option<&str>,
    ) -> Result<PreferenceEntry>;
    /// Deletes an entry, with the same version check.
    async fn delete_preference(
        &self,
        scope: Scope,
        key: &str,
        expected_version: Option<i32>,
    ) -> Result<()>;
}

/// Chat threads and messages.
#[async_trait]
pub trait ChatStore: Send + Sync {
    /// Creates a thread for an existing user.
    async fn create_thread(
        &self,
        user_id: UserId,
        project_id: Option<ProjectId>,
        title: Option<String>,
    ) -> Result<ChatThread>;
    /// A thread by id.
    async fn get_thread(&self, id: ThreadId) -> Result<ChatThread>;
    /// A user's threads, most recently updated first.
    async fn list_threads(&self, user_id: UserId, limit: u32) -> Result<Vec<ChatThread>>;
    /// Appends a message and bumps the thread's `updated_at`, atomically.
    async fn append_message(
        &self,
        thread_id: ThreadId,
        role: ChatRole,
        content: String,
        metadata: Option<Value>,
    ) -> Result<ChatMessage>;
    /// Messages of a thread, oldest first.
    async fn list_messages(&self, thread_id: ThreadId) -> Result<Vec<ChatMessage>>;
    /// The user's most recently updated thread in a project scope (`None`: the threads
    /// with no project), or `None` when the scope has no thread. What a chat client
    /// continues by default, read with one indexed lookup however many threads exist.
    async fn newest_thread(
        &self,
        user_id: UserId,
        project_id: Option<ProjectId>,
    ) -> Result<Option<ChatThread>>;
    /// The newest `limit` messages of a thread, oldest first (the context of the next
    /// completion, without reading a long thread whole); `limit` 0 gives none.
    async fn recent_messages(&self, thread_id: ThreadId, limit: u32) -> Result<Vec<ChatMessage>>;
    /// Stores one chat turn in one transaction: its messages in order (the thread's
    /// `updated_at` bumped once) and, when given, its chat audit record. All of it is
    /// durable when this returns, or none of it is written; an unknown thread is
    /// `not_found`. One commit instead of one per row is what keeps a durable chat
    /// completion fast.
    async fn append_turn(&self, turn: ChatTurn) -> Result<Vec<ChatMessage>>;
}

/// A message to store with [`ChatStore::append_turn`]; the store assigns id and time.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChatMessage {
    /// Author.
    pub role: ChatRole,
    /// Content, already redacted.
    pub content: String,
    /// Metadata (model, provider).
    pub metadata: Option<Value>,
}

impl NewChatMessage {
    /// A message with no metadata.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            metadata: None,
        }
    }

    /// The same message with metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// What one chat completion stores (see [`ChatStore::append_turn`]): typically the
/// user's message and the answer, or only the user's message when the completion
/// failed, and the completion's audit record.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatTurn {
    /// The thread the messages go to.
    pub thread_id: ThreadId,
    /// Messages, in the order they are appended (may be empty).
    pub messages: Vec<NewChatMessage>,
    /// The turn's audit record, written in the same transaction.
    pub audit: Option<ChatAudit>,
}

/// Append-only audit tables.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends one record (the id and time inside it are kept).
    async fn record_audit(&self, record: AuditRecord) -> Result<()>;
    /// Records of one table, newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
}

/// Encrypted API credentials for the egress service.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Stores a credential; the same owner, provider and name twice is a conflict.
    async fn create_credential(&self, new: NewApiCredential) -> Result<ApiCredential>;
    /// A credential by id.
    async fn get_credential(&self, id: CredentialId) -> Result<ApiCredential>;
    /// An owner's credentials, ordered by provider then name.
    async fn list_credentials(
        &self,
        owner_type: &str,
        owner_id: uuid::Uuid,
    ) -> Result<Vec<ApiCredential>>;
    /// Usable (active, unexpired at `now`) credentials for a provider, newest first.
    async fn usable_credentials(
        &self,
        owner_type: &str,
        owner_id: uuid::Uuid,
        provider: &str,
        now: Timestamp,
    ) -> Result<Vec<ApiCredential>>;
    /// Enables or disables a credential.
    async fn set_credential_active(&self, id: CredentialId, active: bool) -> Result<ApiCredential>;
    /// Deletes a credential.
    async fn delete_credential(&self, id: CredentialId) -> Result<()>;
}

/// Vector memory: chunks with embeddings and filtered nearest-neighbour search.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Inserts chunks in one transaction; any invalid chunk rejects the whole batch.
    async fn insert_vectors(&self, items: Vec<NewVectorItem>) -> Result<Vec<VectorItem>>;
    /// The `k` nearest chunks by cosine distance among those the query's filters allow,
    /// nearest first.
    async fn search_vectors(&self, query: &VectorQuery) -> Result<Vec<VectorHit>>;
    /// Deletes the chunks of one source in a project; returns how many.
    async fn delete_vectors_by_source(
        &self,
        project_id: ProjectId,
        source_ref: &str,
    ) -> Result<u64>;
}

/// Backend-level operations.
#[async_trait]
pub trait StoreAdmin: Send + Sync {
    /// Short backend name: `memory`, `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Checks the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;
}

/// Every capability in one object: what a backend implements.
pub trait Store:
    UserStore
    + TaskStore
    + NodeStore
    + PreferenceStore
    + ChatStore
    + AuditStore
    + CredentialStore
    + VectorStore
    + SkillStore
    + SettingStore
    + PreferenceAuditStore
    + AuditQueryStore
    + AccessControlStore
    + StoreAdmin
    + WorkflowStore
    + 'static
{
}

impl<T> Store for T where
    T: UserStore
        + TaskStore
        + NodeStore
        + PreferenceStore
        + ChatStore
        + AuditStore
        + CredentialStore
        + VectorStore
        + SkillStore
        + SettingStore
        + PreferenceAuditStore
        + AuditQueryStore
        + AccessControlStore
        + StoreAdmin
        + WorkflowStore
        + 'static
{
}

/// Which backend to open, as it appears in configuration files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// In-process memory; lost on exit.
    Memory,
    /// One SQLite file, created if missing.
    Sqlite {
        /// Path of the database file.
        path: std::path::PathBuf,
    },
    /// PostgreSQL with the `vector` extension available.
    Postgres {
        /// Connection URL (`postgres://user@host:port/db`).
        url: String,
        /// Pool size (default 10).
        #[serde(default = "default_max_connections")]
        max_connections: u32,
    },
}

fn default_max_connections() -> u32 {
    10
}

/// Opens the configured backend, applying migrations first. Fails with
/// [`Error::SchemaTooNew`] when the database was migrated by a newer build.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>> {
    match config {
        StoreConfig::Memory => Ok(Arc::new(MemoryStore::new())),
        #[cfg(feature = "sqlite")]
        StoreConfig::Sqlite { path } => Ok(Arc::new(SqliteStore::open(path).await?)),
        #[cfg(feature = "postgres")]
        StoreConfig::Postgres {
            url,
            max_connections,
        } => Ok(Arc::new(PgStore::connect(url, *max_connections).await?)),
        #[allow(unreachable_patterns)]
        other => Err(Error::invalid(format!(
            "storage backend {other:?} is not compiled into this build (enable its cargo feature)"
        ))),
    }
}
