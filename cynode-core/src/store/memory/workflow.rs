//! [`WorkflowStore`] for the in-memory backend. It keeps no project plans, so no
//! task is plan-gated here.

use async_trait::async_trait;
use serde_json::Value;

use super::MemoryStore;
use crate::model::Timestamp;
use crate::store::workflow::micros;
use crate::store::{LeaseAcquire, WorkflowCheckpoint, WorkflowLease, WorkflowStore};
use crate::{Error, Result, TaskId};

impl MemoryStore {
    fn require_task(inner: &super::Inner, task_id: TaskId) -> Result<()> {
        if inner.tasks.contains_key(&task_id) {
            Ok(())
        } else {
            Err(Error::not_found("task", task_id))
        }
    }
}

#[async_trait]
impl WorkflowStore for MemoryStore {
    async fn workflow_start_gate(
        &self,
        task_id: TaskId,
        _pma_requested: bool,
    ) -> Result<Option<String>> {
        let g = self.lock();
        Self::require_task(&g, task_id)?;
        Ok(None)
    }

    async fn acquire_workflow_lease(
        &self,
        task_id: TaskId,
        holder_id: &str,
        lease_id: uuid::Uuid,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseAcquire> {
        let mut g = self.lock();
        Self::require_task(&g, task_id)?;
        let t = micros(super::now());
        let expires_at = micros(expires_at);
        match g.leases.get_mut(&task_id) {
            None => {
                let lease = WorkflowLease {
                    task_id,
                    lease_id,
                    holder_id: Some(holder_id.to_string()),
                    expires_at: Some(expires_at),
                    created_at: t,
                    updated_at: t,
                };
                g.leases.insert(task_id, lease.clone());
                Ok(LeaseAcquire::Started(lease))
            }
            Some(l) if l.is_held(now) => {
                if l.holder_id.as_deref() == Some(holder_id) && l.lease_id == lease_id {
                    Ok(LeaseAcquire::AlreadyRunning(l.clone()))
                } else {
                    Ok(LeaseAcquire::Held(l.clone()))
                }
            }
            Some(l) => {
                l.lease_id = lease_id;
                l.holder_id = Some(holder_id.to_string());
                l.expires_at = Some(expires_at);
                l.updated_at = t;
                Ok(LeaseAcquire::Started(l.clone()))
            }
        }
    }

    async fn renew_workflow_lease(
        &self,
        task_id: TaskId,
        lease_id: uuid::Uuid,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Option<WorkflowLease>> {
        let mut g = self.lock();
        Self::require_task(&g, task_id)?;
        match g.leases.get_mut(&task_id) {
            Some(l) if l.lease_id == lease_id && l.is_held(now) => {
                l.expires_at = Some(micros(expires_at));
                l.updated_at = micros(super::now());
                Ok(Some(l.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn release_workflow_lease(&self, task_id: TaskId, lease_id: uuid::Uuid) -> Result<bool> {
        let mut g = self.lock();
        Self::require_task(&g, task_id)?;
        match g.leases.get_mut(&task_id) {
            Some(l) if l.lease_id == lease_id => {
                l.holder_id = None;
                l.expires_at = None;
                l.updated_at = micros(super::now());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get_workflow_lease(&self, task_id: TaskId) -> Result<Option<WorkflowLease>> {
        let g = self.lock();
        Self::require_task(&g, task_id)?;
        Ok(g.leases.get(&task_id).cloned())
    }

    async fn put_workflow_checkpoint(
        &self,
        task_id: TaskId,
        state: Option<Value>,
        last_node_id: Option<String>,
        now: Timestamp,
    ) -> Result<WorkflowCheckpoint> {
        let mut g = self.lock();
        Self::require_task(&g, task_id)?;
        let cp = WorkflowCheckpoint {
            task_id,
            state,
            last_node_id,
            updated_at: micros(now),
        };
        g.checkpoints.insert(task_id, cp.clone());
        Ok(cp)
    }

    async fn get_workflow_checkpoint(&self, task_id: TaskId) -> Result<Option<WorkflowCheckpoint>> {
        let g = self.lock();
        Self::require_task(&g, task_id)?;
        Ok(g.checkpoints.get(&task_id).cloned())
    }
}
