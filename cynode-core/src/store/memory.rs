//! The in-memory backend: the reference semantics of every storage trait, for unit
//! tests and for embedding without persistence. One mutex guards all state, so every
//! call is trivially atomic.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;

use super::{validate, *};
use crate::{ArtifactId, MessageId, PreferenceId, VectorItemId};

mod access;
#[path = "memory_resources.rs"]
mod resources;
mod workflow;

/// In-memory storage; everything is lost when it is dropped.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    access: Mutex<access::State>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<UserId, User>,
    passwords: HashMap<UserId, PasswordHash>,
    default_projects: HashMap<UserId, ProjectId>,
    projects: HashMap<ProjectId, Project>,
    sessions: HashMap<SessionId, RefreshSession>,
    tasks: HashMap<TaskId, Task>,
    deps: Vec<(TaskId, TaskId)>,
    jobs: HashMap<JobId, Job>,
    artifacts: Vec<Artifact>,
    nodes: HashMap<NodeId, Node>,
    capabilities: Vec<CapabilitySnapshot>,
    prefs: Vec<PreferenceEntry>,
    threads: HashMap<ThreadId, ChatThread>,
    messages: Vec<ChatMessage>,
    audit: Vec<AuditRecord>,
    credentials: HashMap<CredentialId, ApiCredential>,
    vectors: Vec<VectorItem>,
    leases: HashMap<TaskId, WorkflowLease>,
    checkpoints: HashMap<TaskId, WorkflowCheckpoint>,
    skills: HashMap<uuid::Uuid, Skill>,
    settings: std::collections::BTreeMap<String, SystemSetting>,
    setting_changes: Vec<SettingChange>,
    pref_changes: Vec<PreferenceChange>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave half-written state (every write
        // validates first), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Current time at the precision the SQL backends store (microseconds), so values
/// compare equal across backends.
pub(crate) fn now() -> Timestamp {
    let t = Utc::now();
    let micros = t.timestamp_micros();
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or(t)
}

impl Inner {
    fn user(&self, id: UserId) -> Result<&User> {
        self.users
            .get(&id)
            .ok_or_else(|| Error::not_found("user", id))
    }
    fn task_mut(&mut self, id: TaskId) -> Result<&mut Task> {
        self.tasks
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("task", id))
    }
    fn node_mut(&mut self, id: NodeId) -> Result<&mut Node> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("node", id))
    }
    fn insert_project(&mut self, new: NewProject) -> Result<Project> {
        validate::text("project slug", &new.slug, 255)?;
        if self.projects.values().any(|p| p.slug == new.slug) {
            return Err(Error::conflict(format!(
                "project slug '{}' already exists",
                new.slug
            )));
        }
        let t = now();
        let p = Project {
            id: ProjectId::new(),
            slug: new.slug,
            display_name: new.display_name,
            description: new.description,
            is_active: true,
            created_at: t,
            updated_at: t,
        };
        self.projects.insert(p.id, p.clone());
        Ok(p)
    }
    fn insert_user(&mut self, new: NewUser) -> Result<User> {
        if self.users.values().any(|u| u.handle == new.handle) {
            return Err(Error::conflict(format!("handle '{}' is taken", new.handle)));
        }
        if let Some(e) = &new.email
            && self.users.values().any(|u| u.email.as_ref() == Some(e))
        {
            return Err(Error::conflict(format!("e-mail '{e}' is taken")));
        }
        let t = now();
        let user = User {
            id: UserId::new(),
            handle: new.handle,
            email: new.email,
            is_active: true,
            external_source: None,
            external_id: None,
            created_at: t,
            updated_at: t,
        };
        let project = self.insert_project(NewProject {
            slug: format!("default-{}", user.id),
            display_name: "Default Project".into(),
            description: None,
        })?;
        self.default_projects.insert(user.id, project.id);
        if let Some(pw) = new.password {
            self.passwords.insert(user.id, pw);
        }
        self.users.insert(user.id, user.clone());
        Ok(user)
    }
    fn insert_session(&mut self, new: NewRefreshSession) -> Result<RefreshSession> {
        // The user is a reference of the new row: a dangling one is invalid input.
        if !self.users.contains_key(&new.user_id) {
            return Err(Error::invalid(format!(
                "user {} does not exist",
                new.user_id
            )));
        }
        let t = now();
        let s = RefreshSession {
            id: SessionId::new(),
            user_id: new.user_id,
            token_hash: new.token_hash,
            token_kid: new.token_kid,
            is_active: true,
            expires_at: new.expires_at,
            last_used_at: None,
            created_at: t,
            updated_at: t,
        };
        self.sessions.insert(s.id, s.clone());
        Ok(s)
    }
    fn upsert_artifact(&mut self, task_id: TaskId, new: NewArtifact) -> Artifact {
        let t = now();
        if let Some(a) = self
            .artifacts
            .iter_mut()
            .find(|a| a.task_id == task_id && a.path == new.path)
        {
            a.storage_ref = new.storage_ref;
            a.size_bytes = new.size_bytes;
            a.content_type = new.content_type;
            a.checksum_sha256 = new.checksum_sha256;
            a.updated_at = t;
            return a.clone();
        }
        let a = Artifact {
            id: ArtifactId::new(),
            task_id,
            path: new.path,
            storage_ref: new.storage_ref,
            size_bytes: new.size_bytes,
            content_type: new.content_type,
            checksum_sha256: new.checksum_sha256,
            created_at: t,
            updated_at: t,
        };
        self.artifacts.push(a.clone());
        a
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, new: NewUser) -> Result<User> {
        validate::handle(&new.handle)?;
        if new.handle == validate::SYSTEM_HANDLE {
            return Err(Error::invalid("the handle 'system' is reserved"));
        }
        self.lock().insert_user(new)
    }

    async fn ensure_system_user(&self) -> Result<User> {
        let mut g = self.lock();
        if let Some(u) = g
            .users
            .values()
            .find(|u| u.handle == validate::SYSTEM_HANDLE)
        {
            return Ok(u.clone());
        }
        g.insert_user(NewUser {
            handle: validate::SYSTEM_HANDLE.into(),
            ..Default::default()
        })
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        self.lock().user(id).cloned()
    }

    async fn get_user_by_handle(&self, handle: &str) -> Result<User> {
        let g = self.lock();
        g.users
            .values()
            .find(|u| u.handle == handle)
            .cloned()
            .ok_or_else(|| Error::not_found("user", handle))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let mut v: Vec<User> = self.lock().users.values().cloned().collect();
        v.sort_by(|a, b| a.handle.cmp(&b.handle));
        Ok(v)
    }

    async fn set_user_active(&self, id: UserId, active: bool) -> Result<User> {
        let mut g = self.lock();
        let u = g
            .users
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("user", id))?;
        u.is_active = active;
        u.updated_at = now();
        Ok(u.clone())
    }

    async fn set_password(&self, id: UserId, hash: PasswordHash) -> Result<()> {
        let mut g = self.lock();
        g.user(id)?;
        g.passwords.insert(id, hash);
        Ok(())
    }

    async fn get_password(&self, id: UserId) -> Result<Option<PasswordHash>> {
        let g = self.lock();
        g.user(id)?;
        Ok(g.passwords.get(&id).cloned())
    }

    async fn default_project(&self, id: UserId) -> Result<Project> {
        let g = self.lock();
        g.user(id)?;
        let pid = g
            .default_projects
            .get(&id)
            .ok_or_else(|| Error::not_found("default project of user", id))?;
        g.projects
            .get(pid)
            .cloned()
            .ok_or_else(|| Error::not_found("project", pid))
    }

    async fn create_project(&self, new: NewProject) -> Result<Project> {
        validate::text("project display name", &new.display_name, 255)?;
        self.lock().insert_project(new)
    }

    async fn get_project(&self, id: ProjectId) -> Result<Project> {
        self.lock()
            .projects
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("project", id))
    }

    async fn get_project_by_slug(&self, slug: &str) -> Result<Project> {
        let g = self.lock();
        g.projects
            .values()
            .find(|p| p.slug == slug)
            .cloned()
            .ok_or_else(|| Error::not_found("project", slug))
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let mut v: Vec<Project> = self.lock().projects.values().cloned().collect();
        v.sort_by(|a, b| a.slug.cmp(&b.slug));
        Ok(v)
    }

    async fn create_session(&self, new: NewRefreshSession) -> Result<RefreshSession> {
        self.lock().insert_session(new)
    }

    async fn find_active_session(
        &self,
        token_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<RefreshSession>> {
        let g = self.lock();
        Ok(g.sessions
            .values()
            .find(|s| s.token_hash == token_hash && s.is_active && s.expires_at > now)
            .cloned())
    }

    async fn get_session(&self, id: SessionId) -> Result<RefreshSession> {
        self.lock()
            .sessions
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("session", id))
    }

    async fn rotate_session(
        &self,
        old: SessionId,
        new: NewRefreshSession,
        at: Timestamp,
    ) -> Result<RefreshSession> {
        let mut g = self.lock();
        let s = g
            .sessions
            .get(&old)
            .ok_or_else(|| Error::not_found("session", old))?;
        if !s.is_active || s.expires_at <= at {
            return Err(Error::conflict("refresh session is no longer active"));
        }
        if s.user_id != new.user_id {
            return Err(Error::invalid(
                "a rotated session must belong to the same user",
            ));
        }
        let created = g.insert_session(new)?;
        if let Some(s) = g.sessions.get_mut(&old) {
            s.is_active = false;
            s.last_used_at = Some(at);
            s.updated_at = now();
        }
        Ok(created)
    }

    async fn revoke_session(&self, id: SessionId) -> Result<()> {
        let mut g = self.lock();
        let s = g
            .sessions
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("session", id))?;
        if s.is_active {
            s.is_active = false;
            s.updated_at = now();
        }
        Ok(())
    }

    async fn revoke_user_sessions(&self, user_id: UserId) -> Result<u64> {
        let mut g = self.lock();
        g.user(user_id)?;
        let t = now();
        let mut n = 0;
        for s in g
            .sessions
            .values_mut()
            .filter(|s| s.user_id == user_id && s.is_active)
        {
            s.is_active = false;
            s.updated_at = t;
            n += 1;
        }
        Ok(n)
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create_task(&self, new: NewTask) -> Result<Task> {
        validate::new_task(&new)?;
        let mut g = self.lock();
        if let Some(u) = new.created_by {
            if !g.users.contains_key(&u) {
                return Err(Error::invalid(format!("user {u} does not exist")));
            }
            if g.tasks
                .values()
                .any(|t| t.created_by == Some(u) && t.name == new.name)
            {
                return Err(Error::conflict(format!(
                    "a task named '{}' already exists",
                    new.name
                )));
            }
        }
        if let Some(p) = new.project_id
            && !g.projects.contains_key(&p)
        {
            return Err(Error::invalid(format!("project {p} does not exist")));
        }
        for d in &new.depends_on {
            if !g.tasks.contains_key(d) {
                return Err(Error::invalid(format!(
                    "dependency task {d} does not exist"
                )));
            }
        }
        let t = now();
        let task = Task {
            id: TaskId::new(),
            created_by: new.created_by,
            project_id: new.project_id,
            name: new.name,
            status: TaskStatus::Pending,
            closed: false,
            prompt: new.prompt,
            description: new.description,
            acceptance_criteria: new.acceptance_criteria,
            summary: None,
            metadata: new.metadata,
            created_at: t,
            updated_at: t,
        };
        g.tasks.insert(task.id, task.clone());
        for d in new.depends_on {
            if !g.deps.contains(&(task.id, d)) {
                g.deps.push((task.id, d));
            }
        }
        for a in new.artifacts {
            g.upsert_artifact(task.id, a);
        }
        Ok(task)
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        self.lock()
            .tasks
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("task", id))
    }

    async fn get_task_by_name(&self, created_by: UserId, name: &str) -> Result<Task> {
        let g = self.lock();
        g.tasks
            .values()
            .find(|t| t.created_by == Some(created_by) && t.name == name)
            .cloned()
            .ok_or_else(|| Error::not_found("task", name))
    }

    async fn list_tasks(&self, f: &TaskFilter) -> Result<(Vec<Task>, u64)> {
        let g = self.lock();
        let mut v: Vec<Task> = g
            .tasks
            .values()
            .filter(|t| f.created_by.is_none_or(|u| t.created_by == Some(u)))
            .filter(|t| f.project_id.is_none_or(|p| t.project_id == Some(p)))
            .filter(|t| f.statuses.is_empty() || f.statuses.contains(&t.status))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        let total = v.len() as u64;
        let page = v
            .into_iter()
            .skip(usize::try_from(f.offset).unwrap_or(usize::MAX))
            .take(validate::limit(f.limit) as usize)
            .collect();
        Ok((page, total))
    }

    async fn task_name_exists(&self, created_by: UserId, name: &str) -> Result<bool> {
        Ok(self
            .lock()
            .tasks
            .values()
            .any(|t| t.created_by == Some(created_by) && t.name == name))
    }

    async fn set_task_status(&self, id: TaskId, status: TaskStatus) -> Result<Task> {
        let mut g = self.lock();
        let t = g.task_mut(id)?;
        if !t.status.is_terminal() {
            t.status = status;
            t.closed = status.is_terminal();
            t.updated_at = now();
        }
        Ok(t.clone())
    }

    async fn set_task_summary(&self, id: TaskId, summary: Option<String>) -> Result<Task> {
        let mut g = self.lock();
        let t = g.task_mut(id)?;
        t.summary = summary;
        t.updated_at = now();
        Ok(t.clone())
    }

    async fn task_dependencies(&self, id: TaskId) -> Result<Vec<TaskId>> {
        let g = self.lock();
        if !g.tasks.contains_key(&id) {
            return Err(Error::not_found("task", id));
        }
        let mut v: Vec<TaskId> = g
            .deps
            .iter()
            .filter(|(t, _)| *t == id)
            .map(|(_, d)| *d)
            .collect();
        v.sort();
        Ok(v)
    }

    async fn create_job(&self, new: NewJob) -> Result<Job> {
        let mut g = self.lock();
        if !g.tasks.contains_key(&new.task_id) {
            return Err(Error::invalid(format!(
                "task {} does not exist",
                new.task_id
            )));
        }
        if g.jobs.contains_key(&new.id) {
            return Err(Error::conflict(format!("job {} already exists", new.id)));
        }
        let t = now();
        let job = Job {
            id: new.id,
            task_id: new.task_id,
            node_id: None,
            status: JobStatus::Queued,
            payload: new.payload,
            result: None,
            lease_id: None,
            lease_expires_at: None,
            started_at: None,
            ended_at: None,
            created_at: t,
            updated_at: t,
        };
        g.jobs.insert(job.id, job.clone());
        Ok(job)
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        self.lock()
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("job", id))
    }

    async fn list_jobs(&self, task_id: TaskId) -> Result<Vec<Job>> {
        let g = self.lock();
        if !g.tasks.contains_key(&task_id) {
            return Err(Error::not_found("task", task_id));
        }
        let mut v: Vec<Job> = g
            .jobs
            .values()
            .filter(|j| j.task_id == task_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    async fn update_job(&self, id: JobId, u: JobUpdate) -> Result<Job> {
        let mut g = self.lock();
        if let Some(n) = u.node_id
            && !g.nodes.contains_key(&n)
        {
            return Err(Error::invalid(format!("node {n} does not exist")));
        }
        let j = g
            .jobs
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("job", id))?;
        if let Some(s) = u.status {
            if j.status.is_terminal() && s != j.status {
                return Err(Error::conflict(format!("job {id} is already {}", j.status)));
            }
            j.status = s;
        }
        if let Some(n) = u.node_id {
            j.node_id = Some(n);
        }
        if let Some(r) = u.result {
            j.result = Some(r);
        }
        if let Some(l) = u.lease {
            j.lease_id = l.map(|(id, _)| id);
            j.lease_expires_at = l.map(|(_, at)| at);
        }
        if let Some(s) = u.started_at {
            j.started_at = Some(s);
        }
        if let Some(e) = u.ended_at {
            j.ended_at = Some(e);
        }
        j.updated_at = now();
        Ok(j.clone())
    }

    async fn put_artifact(&self, task_id: TaskId, new: NewArtifact) -> Result<Artifact> {
        validate::artifact(&new)?;
        let mut g = self.lock();
        if !g.tasks.contains_key(&task_id) {
            return Err(Error::not_found("task", task_id));
        }
        Ok(g.upsert_artifact(task_id, new))
    }

    async fn list_artifacts(&self, task_id: TaskId) -> Result<Vec<Artifact>> {
        let g = self.lock();
        if !g.tasks.contains_key(&task_id) {
            return Err(Error::not_found("task", task_id));
        }
        let mut v: Vec<Artifact> = g
            .artifacts
            .iter()
            .filter(|a| a.task_id == task_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(v)
    }
}

#[async_trait]
impl NodeStore for MemoryStore {
    async fn upsert_node(&self, slug: &str) -> Result<Node> {
        validate::text("node slug", slug, 255)?;
        let mut g = self.lock();
        if let Some(n) = g.nodes.values().find(|n| n.node_slug == slug) {
            return Ok(n.clone());
        }
        let t = now();
        let n = Node {
            id: NodeId::new(),
            node_slug: slug.to_string(),
            status: NodeStatus::Registered,
            capability_hash: None,
            config_version: None,
            worker_api_target_url: None,
            worker_api_bearer_token: None,
            config_ack_at: None,
            config_ack_status: None,
            config_ack_error: None,
            last_seen_at: None,
            last_capability_at: None,
            metadata: None,
            created_at: t,
            updated_at: t,
        };
        g.nodes.insert(n.id, n.clone());
        Ok(n)
    }

    async fn get_node(&self, id: NodeId) -> Result<Node> {
        self.lock()
            .nodes
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("node", id))
    }

    async fn get_node_by_slug(&self, slug: &str) -> Result<Node> {
        let g = self.lock();
        g.nodes
            .values()
            .find(|n| n.node_slug == slug)
            .cloned()
            .ok_or_else(|| Error::not_found("node", slug))
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        let mut v: Vec<Node> = self.lock().nodes.values().cloned().collect();
        v.sort_by(|a, b| a.node_slug.cmp(&b.node_slug));
        Ok(v)
    }

    async fn update_node(&self, id: NodeId, u: NodeUpdate) -> Result<Node> {
        let mut g = self.lock();
        let n = g.node_mut(id)?;
        if let Some(s) = u.status {
            n.status = s;
        }
        if let Some(v) = u.config_version {
            n.config_version = v;
        }
        if let Some(v) = u.worker_api_target_url {
            n.worker_api_target_url = v;
        }
        if let Some(v) = u.worker_api_bearer_token {
            n.worker_api_bearer_token = v;
        }
        if let Some((at, status, err)) = u.config_ack {
            n.config_ack_at = Some(at);
            n.config_ack_status = Some(status);
            n.config_ack_error = err;
        }
        if let Some(v) = u.last_seen_at {
            n.last_seen_at = Some(v);
        }
        if let Some(v) = u.metadata {
            n.metadata = v;
        }
        n.updated_at = now();
        Ok(n.clone())
    }

    async fn record_capabilities(
        &self,
        id: NodeId,
        snapshot: Value,
        at: Timestamp,
    ) -> Result<CapabilitySnapshot> {
        let mut g = self.lock();
        let hash = capability_hash(&snapshot);
        let n = g.node_mut(id)?;
        n.capability_hash = Some(hash);
        n.last_capability_at = Some(at);
        n.updated_at = now();
        let c = CapabilitySnapshot {
            node_id: id,
            reported_at: at,
            snapshot,
        };
        g.capabilities.push(c.clone());
        Ok(c)
    }

    async fn latest_capabilities(&self, id: NodeId) -> Result<Option<CapabilitySnapshot>> {
        let g = self.lock();
        if !g.nodes.contains_key(&id) {
            return Err(Error::not_found("node", id));
        }
        Ok(g.capabilities
            .iter()
            .filter(|c| c.node_id == id)
            .max_by_key(|c| c.reported_at)
            .cloned())
    }
}

/// `sha256:<hex>` of the canonical (serde_json) text of a capability report.
pub(crate) fn capability_hash(v: &Value) -> String {
    format!("sha256:{}", sha256_hex(&v.to_string()))
}

#[async_trait]
impl PreferenceStore for MemoryStore {
    async fn get_preference(&self, scope: Scope, key: &str) -> Result<PreferenceEntry> {
        let g = self.lock();
        g.prefs
            .iter()
            .find(|p| p.scope == scope && p.key == key)
            .cloned()
            .ok_or_else(|| Error::not_found("preference", key))
    }

    async fn list_preferences(&self, scope: Scope, prefix: &str) -> Result<Vec<PreferenceEntry>> {
        let g = self.lock();
        let mut v: Vec<PreferenceEntry> = g
            .prefs
            .iter()
            .filter(|p| p.scope == scope && p.key.starts_with(prefix))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    async fn put_preference(
        &self,
        scope: Scope,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        updated_by: Option<&str>,
    ) -> Result<PreferenceEntry> {
        validate::text("preference key", key, 255)?;
        let mut g = self.lock();
        let t = now();
        match g
            .prefs
            .iter_mut()
            .find(|p| p.scope == scope && p.key == key)
        {
            Some(p) => {
                if let Some(v) = expected_version
                    && v != p.version
                {
                    return Err(Error::conflict(format!(
                        "preference '{key}' is at version {}, not {v}",
                        p.version
                    )));
                }
                p.value_type = json_type_name(&value).into();
                p.value = value;
                p.version += 1;
                p.updated_at = t;
                p.updated_by = updated_by.map(str::to_string);
                Ok(p.clone())
            }
            None => {
                if let Some(v) = expected_version
                    && v != 0
                {
                    return Err(Error::conflict(format!(
                        "preference '{key}' does not exist (expected version {v})"
                    )));
                }
                let p = PreferenceEntry {
                    id: PreferenceId::new(),
                    scope,
                    key: key.to_string(),
                    value_type: json_type_name(&value).into(),
                    value,
                    version: 1,
                    updated_at: t,
                    updated_by: updated_by.map(str::to_string),
                };
                g.prefs.push(p.clone());
                Ok(p)
            }
        }
    }

    async fn delete_preference(
        &self,
        scope: Scope,
        key: &str,
        expected_version: Option<i32>,
    ) -> Result<()> {
        let mut g = self.lock();
        let i = g
            .prefs
            .iter()
            .position(|p| p.scope == scope && p.key == key)
            .ok_or_else(|| Error::not_found("preference", key))?;
        if let Some(v) = expected_version
            && v != g.prefs[i].version
        {
            return Err(Error::conflict(format!(
                "preference '{key}' is at version {}, not {v}",
                g.prefs[i].version
            )));
        }
        g.prefs.remove(i);
        Ok(())
    }
}

#[async_trait]
impl ChatStore for MemoryStore {
    async fn create_thread(
        &self,
        user_id: UserId,
        project_id: Option<ProjectId>,
        title: Option<String>,
    ) -> Result<ChatThread> {
        let mut g = self.lock();
        g.user(user_id)
            .map_err(|_| Error::invalid(format!("user {user_id} does not exist")))?;
        if let Some(p) = project_id
            && !g.projects.contains_key(&p)
        {
            return Err(Error::invalid(format!("project {p} does not exist")));
        }
        let t = now();
        let th = ChatThread {
            id: ThreadId::new(),
            user_id,
            project_id,
            title,
            created_at: t,
            updated_at: t,
        };
        g.threads.insert(th.id, th.clone());
        Ok(th)
    }

    async fn get_thread(&self, id: ThreadId) -> Result<ChatThread> {
        self.lock()
            .threads
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("thread", id))
    }

    async fn list_threads(&self, user_id: UserId, limit: u32) -> Result<Vec<ChatThread>> {
        let g = self.lock();
        let mut v: Vec<ChatThread> = g
            .threads
            .values()
            .filter(|t| t.user_id == user_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        v.truncate(validate::limit(limit) as usize);
        Ok(v)
    }

    async fn append_message(
        &self,
        thread_id: ThreadId,
        role: ChatRole,
        content: String,
        metadata: Option<Value>,
    ) -> Result<ChatMessage> {
        let turn = ChatTurn {
            thread_id,
            messages: vec![NewChatMessage {
                role,
                content,
                metadata,
            }],
            audit: None,
        };
        self.append_turn(turn)
            .await?
            .pop()
            .ok_or_else(|| Error::internal("no message was stored"))
    }

    async fn list_messages(&self, thread_id: ThreadId) -> Result<Vec<ChatMessage>> {
        let g = self.lock();
        if !g.threads.contains_key(&thread_id) {
            return Err(Error::not_found("thread", thread_id));
        }
        // Insertion order is creation order; keep it stable for equal timestamps.
        Ok(g.messages
            .iter()
            .filter(|m| m.thread_id == thread_id)
            .cloned()
            .collect())
    }

    async fn newest_thread(
        &self,
        user_id: UserId,
        project_id: Option<ProjectId>,
    ) -> Result<Option<ChatThread>> {
        let g = self.lock();
        Ok(g.threads
            .values()
            .filter(|t| t.user_id == user_id && t.project_id == project_id)
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.id.cmp(&b.id)))
            .cloned())
    }

    async fn recent_messages(&self, thread_id: ThreadId, limit: u32) -> Result<Vec<ChatMessage>> {
        let g = self.lock();
        if !g.threads.contains_key(&thread_id) {
            return Err(Error::not_found("thread", thread_id));
        }
        let mut v: Vec<ChatMessage> = g
            .messages
            .iter()
            .rev()
            .filter(|m| m.thread_id == thread_id)
            .take(limit as usize)
            .cloned()
            .collect();
        v.reverse();
        Ok(v)
    }

    async fn append_turn(&self, turn: ChatTurn) -> Result<Vec<ChatMessage>> {
        let mut g = self.lock();
        let t = now();
        let th = g
            .threads
            .get_mut(&turn.thread_id)
            .ok_or_else(|| Error::not_found("thread", turn.thread_id))?;
        if !turn.messages.is_empty() {
            th.updated_at = t;
        }
        let stored: Vec<ChatMessage> = turn
            .messages
            .into_iter()
            .map(|m| ChatMessage {
                id: MessageId::new(),
                thread_id: turn.thread_id,
                role: m.role,
                content: m.content,
                metadata: m.metadata,
                created_at: t,
            })
            .collect();
        g.messages.extend(stored.iter().cloned());
        if let Some(a) = turn.audit {
            g.audit.push(AuditRecord::Chat(a));
        }
        Ok(stored)
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn record_audit(&self, record: AuditRecord) -> Result<()> {
        self.lock().audit.push(record);
        Ok(())
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let g = self.lock();
        let mut v: Vec<AuditRecord> = g
            .audit
            .iter()
            .filter(|r| r.kind() == f.kind)
            .filter(|r| f.user_id.is_none_or(|u| r.user_id() == Some(u)))
            .filter(|r| f.since.is_none_or(|s| r.created_at() >= s))
            .cloned()
            .collect();
        v.reverse(); // newest first, stable for equal times
        v.sort_by_key(|r| std::cmp::Reverse(r.created_at()));
        v.truncate(validate::limit(f.limit) as usize);
        Ok(v)
    }
}

#[async_trait]
impl CredentialStore for MemoryStore {
    async fn create_credential(&self, new: NewApiCredential) -> Result<ApiCredential> {
        let provider = validate::provider(&new.provider)?;
        validate::text("credential name", &new.credential_name, 255)?;
        if new.ciphertext.is_empty() {
            return Err(Error::invalid("credential ciphertext must not be empty"));
        }
        let mut g = self.lock();
        if g.credentials.values().any(|c| {
            c.owner_type == new.owner_type
                && c.owner_id == new.owner_id
                && c.provider == provider
                && c.credential_name == new.credential_name
        }) {
            return Err(Error::conflict(format!(
                "a credential named '{}' for {provider} already exists",
                new.credential_name
            )));
        }
        let t = now();
        let c = ApiCredential {
            id: CredentialId::new(),
            owner_type: new.owner_type,
            owner_id: new.owner_id,
            provider,
            credential_type: new.credential_type,
            credential_name: new.credential_name,
            ciphertext: new.ciphertext,
            kid: new.kid,
            is_active: true,
            expires_at: new.expires_at,
            created_at: t,
            updated_at: t,
        };
        g.credentials.insert(c.id, c.clone());
        Ok(c)
    }

    async fn get_credential(&self, id: CredentialId) -> Result<ApiCredential> {
        self.lock()
            .credentials
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("credential", id))
    }

    async fn list_credentials(
        &self,
        owner_type: &str,
        owner_id: uuid::Uuid,
    ) -> Result<Vec<ApiCredential>> {
        let g = self.lock();
        let mut v: Vec<ApiCredential> = g
            .credentials
            .values()
            .filter(|c| c.owner_type == owner_type && c.owner_id == owner_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.provider
                .cmp(&b.provider)
                .then(a.credential_name.cmp(&b.credential_name))
        });
        Ok(v)
    }

    async fn usable_credentials(
        &self,
        owner_type: &str,
        owner_id: uuid::Uuid,
        provider: &str,
        at: Timestamp,
    ) -> Result<Vec<ApiCredential>> {
        let provider = provider.to_ascii_lowercase();
        let g = self.lock();
        let mut v: Vec<ApiCredential> = g
            .credentials
            .values()
            .filter(|c| {
                c.owner_type == owner_type && c.owner_id == owner_id && c.provider == provider
            })
            .filter(|c| c.is_usable(at))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    async fn set_credential_active(&self, id: CredentialId, active: bool) -> Result<ApiCredential> {
        let mut g = self.lock();
        let c = g
            .credentials
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("credential", id))?;
        c.is_active = active;
        c.updated_at = now();
        Ok(c.clone())
    }

    async fn delete_credential(&self, id: CredentialId) -> Result<()> {
        self.lock()
            .credentials
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| Error::not_found("credential", id))
    }
}

#[async_trait]
impl VectorStore for MemoryStore {
    async fn insert_vectors(&self, items: Vec<NewVectorItem>) -> Result<Vec<VectorItem>> {
        for i in &items {
            validate::vector_item(i)?;
        }
        let mut g = self.lock();
        for i in &items {
            if !g.projects.contains_key(&i.project_id) {
                return Err(Error::invalid(format!(
                    "project {} does not exist",
                    i.project_id
                )));
            }
            if let Some(t) = i.task_id
                && !g.tasks.contains_key(&t)
            {
                return Err(Error::invalid(format!("task {t} does not exist")));
            }
        }
        let t = now();
        let out: Vec<VectorItem> = items
            .into_iter()
            .map(|i| VectorItem {
                id: VectorItemId::new(),
                project_id: i.project_id,
                task_id: i.task_id,
                namespace: i.namespace,
                sensitivity: i.sensitivity,
                source_type: i.source_type,
                source_ref: i.source_ref,
                chunk_index: i.chunk_index,
                content_sha256: sha256_hex(&i.content_text),
                content_text: i.content_text,
                embedding_model: i.embedding_model,
                embedding: i.embedding,
                metadata: i.metadata,
                created_at: t,
            })
            .collect();
        g.vectors.extend(out.iter().cloned());
        Ok(out)
    }

    async fn search_vectors(&self, q: &VectorQuery) -> Result<Vec<VectorHit>> {
        validate::vector_query(q)?;
        let g = self.lock();
        let mut hits: Vec<VectorHit> = g
            .vectors
            .iter()
            .filter(|v| q.project_ids.contains(&v.project_id))
            .filter(|v| q.namespaces.contains(&v.namespace))
            .filter(|v| {
                v.sensitivity
                    .is_none_or(|s| s.rank() <= q.max_sensitivity.rank())
            })
            .filter(|v| {
                v.embedding_model == q.embedding_model && v.embedding.len() == q.embedding.len()
            })
            .map(|v| VectorHit {
                distance: cosine_distance(&v.embedding, &q.embedding),
                item: v.clone(),
            })
            .collect();
        hits.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.item.id.cmp(&b.item.id))
        });
        hits.truncate(q.k as usize);
        Ok(hits)
    }

    async fn delete_vectors_by_source(
        &self,
        project_id: ProjectId,
        source_ref: &str,
    ) -> Result<u64> {
        let mut g = self.lock();
        let before = g.vectors.len();
        g.vectors.retain(|v| {
            !(v.project_id == project_id && v.source_ref.as_deref() == Some(source_ref))
        });
        Ok((before - g.vectors.len()) as u64)
    }
}

#[async_trait]
impl StoreAdmin for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
