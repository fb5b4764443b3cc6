//! Workflow runner leases and checkpoints (agents-and-mcp §7.2–7.4; schema
//! `task_workflow_leases`, `workflow_checkpoints`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Timestamp;
use crate::{Result, TaskId};

/// Gate reason: the task's plan row is missing.
pub const GATE_PLAN_NOT_FOUND: &str = "plan not found";
/// Gate reason: the task's plan is archived.
pub const GATE_PLAN_ARCHIVED: &str = "plan is archived";
/// Gate reason: the task's plan is not `active` (and the start is not PMA-requested).
pub const GATE_PLAN_NOT_ACTIVE: &str = "plan not active";
/// Gate reason: a dependency row names a task that does not exist.
pub const GATE_DEPENDENCY_NOT_FOUND: &str = "dependency task not found";
/// Gate reason: a dependency has not completed.
pub const GATE_DEPENDENCIES_NOT_SATISFIED: &str = "dependencies not satisfied";

/// The one lease row of a task. Held when `holder_id` is set and `expires_at` is
/// after now; released rows keep their `lease_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowLease {
    /// The task.
    pub task_id: TaskId,
    /// The lease (also the run id).
    pub lease_id: uuid::Uuid,
    /// Who holds it; `None` = released.
    pub holder_id: Option<String>,
    /// When it lapses; `None` = released.
    pub expires_at: Option<Timestamp>,
    /// Row creation.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl WorkflowLease {
    /// Whether the lease is held at `now`.
    pub fn is_held(&self, now: Timestamp) -> bool {
        self.holder_id.is_some() && self.expires_at.is_some_and(|e| e > now)
    }
}

/// Outcome of [`WorkflowStore::acquire_workflow_lease`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAcquire {
    /// The caller now holds the lease (new row, or a released/expired one taken over).
    Started(WorkflowLease),
    /// The same holder already holds the same unexpired lease; nothing changed.
    AlreadyRunning(WorkflowLease),
    /// Held and unexpired by another holder, or by the same holder under another
    /// lease id; nothing changed.
    Held(WorkflowLease),
}

/// The one checkpoint of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowCheckpoint {
    /// The task.
    pub task_id: TaskId,
    /// The workflow state (JSON).
    pub state: Option<Value>,
    /// The last completed graph node.
    pub last_node_id: Option<String>,
    /// Last write.
    pub updated_at: Timestamp,
}

/// Workflow leases, checkpoints and the start gate.
///
/// Every method naming a task that does not exist returns
/// [`Error::NotFound`](crate::Error::NotFound) with entity `task`.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// The start gate (agents-and-mcp §7.4): `None` = allow, else the refusal reason
    /// (one of the `GATE_*` constants). Only tasks with a plan are gated; a
    /// PMA-requested start skips only the plan-state check.
    async fn workflow_start_gate(
        &self,
        task_id: TaskId,
        pma_requested: bool,
    ) -> Result<Option<String>>;

    /// Takes the task's lease for `holder_id` under `lease_id` until `expires_at`,
    /// atomically (§7.3): no row → create; released or expired at `now` → take over;
    /// same holder and lease id, unexpired → [`LeaseAcquire::AlreadyRunning`]; else
    /// [`LeaseAcquire::Held`].
    async fn acquire_workflow_lease(
        &self,
        task_id: TaskId,
        holder_id: &str,
        lease_id: uuid::Uuid,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseAcquire>;

    /// Extends a lease that is held (at `now`) under `lease_id` to `expires_at`.
    /// `None` when it is not held under that id (released, expired or taken over).
    async fn renew_workflow_lease(
        &self,
        task_id: TaskId,
        lease_id: uuid::Uuid,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Option<WorkflowLease>>;

    /// Releases the lease if its id is `lease_id` (row kept, holder and expiry
    /// cleared). Returns whether a row matched; a mismatch changes nothing.
    async fn release_workflow_lease(&self, task_id: TaskId, lease_id: uuid::Uuid) -> Result<bool>;

    /// The task's lease row, if any.
    async fn get_workflow_lease(&self, task_id: TaskId) -> Result<Option<WorkflowLease>>;

    /// Creates or replaces the task's checkpoint.
    async fn put_workflow_checkpoint(
        &self,
        task_id: TaskId,
        state: Option<Value>,
        last_node_id: Option<String>,
        now: Timestamp,
    ) -> Result<WorkflowCheckpoint>;

    /// The task's checkpoint, if any.
    async fn get_workflow_checkpoint(&self, task_id: TaskId) -> Result<Option<WorkflowCheckpoint>>;
}

/// A timestamp cut to the microsecond, as every backend stores it.
pub(crate) fn micros(t: Timestamp) -> Timestamp {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}
