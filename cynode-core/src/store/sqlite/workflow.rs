//! [`WorkflowStore`] on SQLite: every lease change runs in one write transaction
//! (`BEGIN IMMEDIATE`), so acquire/take-over is atomic.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::{RowExt, SqliteStore, db, exists, opt_json_text, ts};
use crate::model::Timestamp;
use crate::store::memory::now;
use crate::store::workflow::*;
use crate::{Error, Result, TaskId};

const LEASE_COLUMNS: &str = "task_id, lease_id, holder_id, expires_at, created_at, updated_at";

fn lease_row(r: &SqliteRow) -> Result<WorkflowLease> {
    Ok(WorkflowLease {
        task_id: r.id("task_id")?,
        lease_id: r.id::<uuid::Uuid>("lease_id")?,
        holder_id: r.opt_text("holder_id")?,
        expires_at: r.opt_time("expires_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

async fn require_task(conn: &mut SqliteConnection, task_id: TaskId, action: &str) -> Result<()> {
    if exists(
        conn,
        "SELECT 1 FROM tasks WHERE id = ?1",
        task_id.to_string(),
        action,
    )
    .await?
    {
        Ok(())
    } else {
        Err(Error::not_found("task", task_id))
    }
}

async fn fetch_lease(
    conn: &mut SqliteConnection,
    task_id: TaskId,
    action: &str,
) -> Result<Option<WorkflowLease>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {LEASE_COLUMNS} FROM task_workflow_leases WHERE task_id = ?1"
    )))
    .bind(task_id.to_string())
    .fetch_optional(conn)
    .await
    .map_err(db(action))?;
    row.as_ref().map(lease_row).transpose()
}

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn workflow_start_gate(
        &self,
        task_id: TaskId,
        pma_requested: bool,
    ) -> Result<Option<String>> {
        const ACTION: &str = "check the workflow start gate";
        let mut tx = self.read(ACTION).await?;
        let row = sqlx::query(
            "SELECT t.plan_id AS plan_id, p.id AS found, p.state AS state, p.archived AS archived
             FROM tasks t LEFT JOIN project_plans p ON p.id = t.plan_id WHERE t.id = ?1",
        )
        .bind(task_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?
        .ok_or_else(|| Error::not_found("task", task_id))?;
        if row.opt_text("plan_id")?.is_none() {
            return Ok(None);
        }
        if row.opt_text("found")?.is_none() {
            return Ok(Some(GATE_PLAN_NOT_FOUND.into()));
        }
        if row.opt_int("archived")?.unwrap_or(0) != 0 {
            return Ok(Some(GATE_PLAN_ARCHIVED.into()));
        }
        if !pma_requested && row.opt_text("state")?.as_deref() != Some("active") {
            return Ok(Some(GATE_PLAN_NOT_ACTIVE.into()));
        }
        let deps = sqlx::query(
            "SELECT d.depends_on_task_id AS dep, t.status AS status
             FROM task_dependencies d LEFT JOIN tasks t ON t.id = d.depends_on_task_id
             WHERE d.task_id = ?1 ORDER BY d.depends_on_task_id",
        )
        .bind(task_id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        for d in &deps {
            match d.opt_text("status")? {
                None => return Ok(Some(GATE_DEPENDENCY_NOT_FOUND.into())),
                Some(s) if s != "completed" => {
                    return Ok(Some(GATE_DEPENDENCIES_NOT_SATISFIED.into()));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    async fn acquire_workflow_lease(
        &self,
        task_id: TaskId,
        holder_id: &str,
        lease_id: uuid::Uuid,
        expires_at: Timestamp,
        now_at: Timestamp,
    ) -> Result<LeaseAcquire> {
        const ACTION: &str = "acquire the workflow lease";
        let mut tx = self.write(ACTION).await?;
        require_task(&mut tx, task_id, ACTION).await?;
        let t = ts(now());
        let outcome = match fetch_lease(&mut tx, task_id, ACTION).await? {
            Some(l) if l.is_held(now_at) => {
                if l.holder_id.as_deref() == Some(holder_id) && l.lease_id == lease_id {
                    LeaseAcquire::AlreadyRunning(l)
                } else {
                    LeaseAcquire::Held(l)
                }
            }
            existing => {
                if existing.is_some() {
                    sqlx::query(
                        "UPDATE task_workflow_leases
                         SET lease_id = ?2, holder_id = ?3, expires_at = ?4, updated_at = ?5
                         WHERE task_id = ?1",
                    )
                    .bind(task_id.to_string())
                    .bind(lease_id.to_string())
                    .bind(holder_id)
                    .bind(ts(expires_at))
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(ACTION))?;
                } else {
                    sqlx::query(
                        "INSERT INTO task_workflow_leases
                           (id, task_id, lease_id, holder_id, expires_at, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    )
                    .bind(uuid::Uuid::new_v4().to_string())
                    .bind(task_id.to_string())
                    .bind(lease_id.to_string())
                    .bind(holder_id)
                    .bind(ts(expires_at))
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(ACTION))?;
                }
                let l = fetch_lease(&mut tx, task_id, ACTION)
                    .await?
                    .ok_or_else(|| Error::internal("lease row vanished inside its transaction"))?;
                LeaseAcquire::Started(l)
            }
        };
        tx.commit().await.map_err(db(ACTION))?;
        Ok(outcome)
    }

    async fn renew_workflow_lease(
        &self,
        task_id: TaskId,
        lease_id: uuid::Uuid,
        expires_at: Timestamp,
        now_at: Timestamp,
    ) -> Result<Option<WorkflowLease>> {
        const ACTION: &str = "renew the workflow lease";
        let mut tx = self.write(ACTION).await?;
        require_task(&mut tx, task_id, ACTION).await?;
        let done = sqlx::query(
            "UPDATE task_workflow_leases SET expires_at = ?3, updated_at = ?4
             WHERE task_id = ?1 AND lease_id = ?2 AND holder_id IS NOT NULL
               AND expires_at IS NOT NULL AND expires_at > ?5",
        )
        .bind(task_id.to_string())
        .bind(lease_id.to_string())
        .bind(ts(expires_at))
        .bind(ts(now()))
        .bind(ts(now_at))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?
        .rows_affected();
        let lease = if done == 1 {
            fetch_lease(&mut tx, task_id, ACTION).await?
        } else {
            None
        };
        tx.commit().await.map_err(db(ACTION))?;
        Ok(lease)
    }

    async fn release_workflow_lease(&self, task_id: TaskId, lease_id: uuid::Uuid) -> Result<bool> {
        const ACTION: &str = "release the workflow lease";
        let mut tx = self.write(ACTION).await?;
        require_task(&mut tx, task_id, ACTION).await?;
        let n = sqlx::query(
            "UPDATE task_workflow_leases SET holder_id = NULL, expires_at = NULL, updated_at = ?3
             WHERE task_id = ?1 AND lease_id = ?2",
        )
        .bind(task_id.to_string())
        .bind(lease_id.to_string())
        .bind(ts(now()))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?
        .rows_affected();
        tx.commit().await.map_err(db(ACTION))?;
        Ok(n == 1)
    }

    async fn get_workflow_lease(&self, task_id: TaskId) -> Result<Option<WorkflowLease>> {
        const ACTION: &str = "read the workflow lease";
        let mut tx = self.read(ACTION).await?;
        require_task(&mut tx, task_id, ACTION).await?;
        fetch_lease(&mut tx, task_id, ACTION).await
    }

    async fn put_workflow_checkpoint(
        &self,
        task_id: TaskId,
        state: Option<Value>,
        last_node_id: Option<String>,
        now_at: Timestamp,
    ) -> Result<WorkflowCheckpoint> {
        const ACTION: &str = "write the workflow checkpoint";
        let mut tx = self.write(ACTION).await?;
        require_task(&mut tx, task_id, ACTION).await?;
        sqlx::query(
            "INSERT INTO workflow_checkpoints (id, task_id, state, last_node_id, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (task_id) DO UPDATE SET state = excluded.state,
                 last_node_id = excluded.last_node_id, updated_at = excluded.updated_at",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(task_id.to_string())
        .bind(opt_json_text(&state))
        .bind(last_node_id.as_deref())
        .bind(ts(now_at))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(WorkflowCheckpoint {
            task_id,
            state,
            last_node_id,
            updated_at: micros(now_at),
        })
    }

    async fn get_workflow_checkpoint(&self, task_id: TaskId) -> Result<Option<WorkflowCheckpoint>> {
        const ACTION: &str = "read the workflow checkpoint";
        let mut tx = self.read(ACTION).await?;
        require_task(&mut tx, task_id, ACTION).await?;
        let row = sqlx::query(
            "SELECT state, last_node_id, updated_at FROM workflow_checkpoints WHERE task_id = ?1",
        )
        .bind(task_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        row.map(|r| {
            Ok(WorkflowCheckpoint {
                task_id,
                state: r.opt_json("state")?,
                last_node_id: r.opt_text("last_node_id")?,
                updated_at: r.time("updated_at")?,
            })
        })
        .transpose()
    }
}
