//! [`WorkflowStore`] on PostgreSQL: acquire/take-over is one conditional upsert, so
//! two runners racing for a task cannot both win.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::PgStore;
use super::error::db_err;
use crate::model::Timestamp;
use crate::store::memory::now;
use crate::store::workflow::*;
use crate::{Error, Result, TaskId};

const RETURNING: &str = "task_id, lease_id, holder_id, expires_at, created_at, updated_at";

fn lease_row(r: &PgRow) -> Result<WorkflowLease> {
    Ok(WorkflowLease {
        task_id: TaskId::from(r.try_get::<Uuid, _>("task_id").map_err(db_err)?),
        lease_id: r.try_get("lease_id").map_err(db_err)?,
        holder_id: r.try_get("holder_id").map_err(db_err)?,
        expires_at: r.try_get("expires_at").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        updated_at: r.try_get("updated_at").map_err(db_err)?,
    })
}

impl PgStore {
    async fn require_task(&self, task_id: TaskId) -> Result<()> {
        let found = sqlx::query("SELECT 1 FROM tasks WHERE id = $1")
            .bind(task_id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::not_found("task", task_id)),
        }
    }

    async fn lease_of(&self, task_id: TaskId) -> Result<Option<WorkflowLease>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RETURNING} FROM task_workflow_leases WHERE task_id = $1"
        )))
        .bind(task_id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(lease_row).transpose()
    }
}

#[async_trait]
impl WorkflowStore for PgStore {
    async fn workflow_start_gate(
        &self,
        task_id: TaskId,
        pma_requested: bool,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT t.plan_id, p.id AS found, p.state, p.archived
             FROM tasks t LEFT JOIN project_plans p ON p.id = t.plan_id WHERE t.id = $1",
        )
        .bind(task_id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("task", task_id))?;
        let plan: Option<Uuid> = row.try_get("plan_id").map_err(db_err)?;
        if plan.is_none() {
            return Ok(None);
        }
        let found: Option<Uuid> = row.try_get("found").map_err(db_err)?;
        if found.is_none() {
            return Ok(Some(GATE_PLAN_NOT_FOUND.into()));
        }
        let archived: Option<bool> = row.try_get("archived").map_err(db_err)?;
        if archived.unwrap_or(false) {
            return Ok(Some(GATE_PLAN_ARCHIVED.into()));
        }
        let state: Option<String> = row.try_get("state").map_err(db_err)?;
        if !pma_requested && state.as_deref() != Some("active") {
            return Ok(Some(GATE_PLAN_NOT_ACTIVE.into()));
        }
        let deps = sqlx::query(
            "SELECT t.status FROM task_dependencies d
             LEFT JOIN tasks t ON t.id = d.depends_on_task_id
             WHERE d.task_id = $1 ORDER BY d.depends_on_task_id",
        )
        .bind(task_id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        for d in &deps {
            let status: Option<String> = d.try_get("status").map_err(db_err)?;
            match status.as_deref() {
                None => return Ok(Some(GATE_DEPENDENCY_NOT_FOUND.into())),
                Some("completed") => {}
                Some(_) => return Ok(Some(GATE_DEPENDENCIES_NOT_SATISFIED.into())),
            }
        }
        Ok(None)
    }

    async fn acquire_workflow_lease(
        &self,
        task_id: TaskId,
        holder_id: &str,
        lease_id: Uuid,
        expires_at: Timestamp,
        now_at: Timestamp,
    ) -> Result<LeaseAcquire> {
        self.require_task(task_id).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO task_workflow_leases
               (id, task_id, lease_id, holder_id, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (task_id) DO UPDATE SET lease_id = EXCLUDED.lease_id,
                 holder_id = EXCLUDED.holder_id, expires_at = EXCLUDED.expires_at,
                 updated_at = EXCLUDED.updated_at
             WHERE task_workflow_leases.holder_id IS NULL
                OR task_workflow_leases.expires_at IS NULL
                OR task_workflow_leases.expires_at <= $7
             RETURNING {RETURNING}"
        )))
        .bind(Uuid::new_v4())
        .bind(task_id.0)
        .bind(lease_id)
        .bind(holder_id)
        .bind(micros(expires_at))
        .bind(now())
        .bind(now_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        if let Some(r) = row {
            return Ok(LeaseAcquire::Started(lease_row(&r)?));
        }
        let l = self
            .lease_of(task_id)
            .await?
            .ok_or_else(|| Error::internal("lease row missing after a refused take-over"))?;
        if l.is_held(now_at) && l.holder_id.as_deref() == Some(holder_id) && l.lease_id == lease_id
        {
            Ok(LeaseAcquire::AlreadyRunning(l))
        } else {
            Ok(LeaseAcquire::Held(l))
        }
    }

    async fn renew_workflow_lease(
        &self,
        task_id: TaskId,
        lease_id: Uuid,
        expires_at: Timestamp,
        now_at: Timestamp,
    ) -> Result<Option<WorkflowLease>> {
        self.require_task(task_id).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE task_workflow_leases SET expires_at = $3, updated_at = $4
             WHERE task_id = $1 AND lease_id = $2 AND holder_id IS NOT NULL
               AND expires_at IS NOT NULL AND expires_at > $5
             RETURNING {RETURNING}"
        )))
        .bind(task_id.0)
        .bind(lease_id)
        .bind(micros(expires_at))
        .bind(now())
        .bind(now_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(lease_row).transpose()
    }

    async fn release_workflow_lease(&self, task_id: TaskId, lease_id: Uuid) -> Result<bool> {
        self.require_task(task_id).await?;
        let n = sqlx::query(
            "UPDATE task_workflow_leases SET holder_id = NULL, expires_at = NULL, updated_at = $3
             WHERE task_id = $1 AND lease_id = $2",
        )
        .bind(task_id.0)
        .bind(lease_id)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn get_workflow_lease(&self, task_id: TaskId) -> Result<Option<WorkflowLease>> {
        self.require_task(task_id).await?;
        self.lease_of(task_id).await
    }

    async fn put_workflow_checkpoint(
        &self,
        task_id: TaskId,
        state: Option<Value>,
        last_node_id: Option<String>,
        now_at: Timestamp,
    ) -> Result<WorkflowCheckpoint> {
        self.require_task(task_id).await?;
        sqlx::query(
            "INSERT INTO workflow_checkpoints (id, task_id, state, last_node_id, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (task_id) DO UPDATE SET state = EXCLUDED.state,
                 last_node_id = EXCLUDED.last_node_id, updated_at = EXCLUDED.updated_at",
        )
        .bind(Uuid::new_v4())
        .bind(task_id.0)
        .bind(state.as_ref().map(sqlx::types::Json))
        .bind(last_node_id.as_deref())
        .bind(micros(now_at))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(WorkflowCheckpoint {
            task_id,
            state,
            last_node_id,
            updated_at: micros(now_at),
        })
    }

    async fn get_workflow_checkpoint(&self, task_id: TaskId) -> Result<Option<WorkflowCheckpoint>> {
        self.require_task(task_id).await?;
        let row = sqlx::query(
            "SELECT state, last_node_id, updated_at FROM workflow_checkpoints WHERE task_id = $1",
        )
        .bind(task_id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| {
            let state: Option<sqlx::types::Json<Value>> = r.try_get("state").map_err(db_err)?;
            Ok(WorkflowCheckpoint {
                task_id,
                state: state.map(|j| j.0),
                last_node_id: r.try_get("last_node_id").map_err(db_err)?,
                updated_at: r.try_get("updated_at").map_err(db_err)?,
            })
        })
        .transpose()
    }
}
