//! [`TaskStore`]: tasks, dependencies, jobs and artifacts.

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::error::{db_err, missing_parent};
use super::rows::*;
use super::{PgStore, to_i64};
use crate::model::*;
use crate::store::memory::now;
use crate::store::{TaskStore, validate};
use crate::{Error, JobId, Result, TaskId, UserId};

/// Inserts or replaces artifacts of one task (paths must be distinct within `items`).
async fn upsert_artifacts(
    conn: &mut PgConnection,
    task_id: TaskId,
    items: &[NewArtifact],
) -> Result<Vec<Artifact>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let t = now();
    let ids: Vec<Uuid> = items.iter().map(|_| Uuid::new_v4()).collect();
    let paths: Vec<&str> = items.iter().map(|a| a.path.as_str()).collect();
    let refs: Vec<&str> = items.iter().map(|a| a.storage_ref.as_str()).collect();
    let sizes: Vec<Option<i64>> = items.iter().map(|a| a.size_bytes).collect();
    let types: Vec<Option<&str>> = items.iter().map(|a| a.content_type.as_deref()).collect();
    let sums: Vec<Option<&str>> = items.iter().map(|a| a.checksum_sha256.as_deref()).collect();
    let rows: Vec<ArtifactRow> = sqlx::query_as(concat!(
        "INSERT INTO task_artifacts (id, task_id, path, storage_ref, size_bytes, content_type, \
         checksum_sha256, created_at, updated_at) \
         SELECT i.id, $1, i.path, i.storage_ref, i.size_bytes, i.content_type, i.checksum, $8, $8 \
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[]) \
              AS i(id, path, storage_ref, size_bytes, content_type, checksum) \
         ON CONFLICT (task_id, path) DO UPDATE SET storage_ref = EXCLUDED.storage_ref, \
             size_bytes = EXCLUDED.size_bytes, content_type = EXCLUDED.content_type, \
             checksum_sha256 = EXCLUDED.checksum_sha256, updated_at = EXCLUDED.updated_at \
         RETURNING ",
        artifact_columns!()
    ))
    .bind(task_id.0)
    .bind(&ids)
    .bind(&paths)
    .bind(&refs)
    .bind(&sizes)
    .bind(&types)
    .bind(&sums)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| missing_parent(e, "task_artifacts_task_fkey", "task", task_id))?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Inserts the task row itself.
async fn insert_task_row(conn: &mut PgConnection, id: TaskId, new: &NewTask) -> Result<TaskRow> {
    sqlx::query_as(concat!(
        "INSERT INTO tasks (id, created_by, project_id, name, status, closed, prompt, \
         description, acceptance_criteria, metadata, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', false, $5, $6, $7, $8, $9, $9) RETURNING ",
        task_columns!()
    ))
    .bind(id.0)
    .bind(new.created_by.map(|u| u.0))
    .bind(new.project_id.map(|p| p.0))
    .bind(&new.name)
    .bind(&new.prompt)
    .bind(&new.description)
    .bind(&new.acceptance_criteria)
    .bind(&new.metadata)
    .bind(now())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)
}

/// Keeps the last artifact given for each path (a later put of a path replaces an
/// earlier one), in first-seen order.
fn dedup_artifacts(items: Vec<NewArtifact>) -> Vec<NewArtifact> {
    let mut out: Vec<NewArtifact> = Vec::with_capacity(items.len());
    for a in items {
        match out.iter_mut().find(|o| o.path == a.path) {
            Some(o) => *o = a,
            None => out.push(a),
        }
    }
    out
}

impl PgStore {
    async fn fetch_task(&self, id: TaskId) -> Result<Option<Task>> {
        let row: Option<TaskRow> = sqlx::query_as(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Task::try_from).transpose()
    }

    async fn task_exists(&self, id: TaskId) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)")
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }
}

#[async_trait]
impl TaskStore for PgStore {
    async fn create_task(&self, new: NewTask) -> Result<Task> {
        validate::new_task(&new)?;
        let id = TaskId::new();
        if new.depends_on.is_empty() && new.artifacts.is_empty() {
            // A single statement is a transaction of its own.
            let mut conn = self.pool.acquire().await.map_err(db_err)?;
            return insert_task_row(&mut conn, id, &new).await?.try_into();
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let row = insert_task_row(&mut tx, id, &new).await?;
        if !new.depends_on.is_empty() {
            let deps: Vec<Uuid> = new.depends_on.iter().map(|d| d.0).collect();
            let dep_ids: Vec<Uuid> = deps.iter().map(|_| Uuid::new_v4()).collect();
            sqlx::query(
                "INSERT INTO task_dependencies (id, task_id, depends_on_task_id) \
                 SELECT d.id, $1, d.dep FROM unnest($2::uuid[], $3::uuid[]) AS d(id, dep) \
                 ON CONFLICT (task_id, depends_on_task_id) DO NOTHING",
            )
            .bind(id.0)
            .bind(&dep_ids)
            .bind(&deps)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        upsert_artifacts(&mut tx, id, &dedup_artifacts(new.artifacts)).await?;
        tx.commit().await.map_err(db_err)?;
        row.try_into()
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        self.fetch_task(id)
            .await?
            .ok_or_else(|| Error::not_found("task", id))
    }

    async fn get_task_by_name(&self, created_by: UserId, name: &str) -> Result<Task> {
        let row: Option<TaskRow> = sqlx::query_as(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE created_by = $1 AND name = $2"
        ))
        .bind(created_by.0)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Task::try_from)
            .transpose()?
            .ok_or_else(|| Error::not_found("task", name))
    }

    async fn list_tasks(&self, f: &TaskFilter) -> Result<(Vec<Task>, u64)> {
        const FILTER: &str = "($1::uuid IS NULL OR created_by = $1) \
             AND ($2::uuid IS NULL OR project_id = $2) \
             AND (cardinality($3::text[]) = 0 OR status = ANY($3))";
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let created_by = f.created_by.map(|u| u.0);
        let project = f.project_id.map(|p| p.0);
        // One snapshot for the page and the total.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(db_err)?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM tasks WHERE {FILTER}"
        )))
        .bind(created_by)
        .bind(project)
        .bind(&statuses)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM tasks WHERE {FILTER} ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5",
            task_columns!()
        )))
        .bind(created_by)
        .bind(project)
        .bind(&statuses)
        .bind(i64::from(validate::limit(f.limit)))
        .bind(to_i64(f.offset))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let tasks = rows
            .into_iter()
            .map(Task::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok((tasks, u64::try_from(total).unwrap_or(0)))
    }

    async fn task_name_exists(&self, created_by: UserId, name: &str) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE created_by = $1 AND name = $2)",
        )
        .bind(created_by.0)
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn set_task_status(&self, id: TaskId, status: TaskStatus) -> Result<Task> {
        // The row lock makes a concurrent transition re-check `NOT closed`, so a terminal
        // status is never overwritten.
        let updated: Option<TaskRow> = sqlx::query_as(concat!(
            "UPDATE tasks SET status = $2, closed = $3, updated_at = $4 \
             WHERE id = $1 AND NOT closed RETURNING ",
            task_columns!()
        ))
        .bind(id.0)
        .bind(status.as_str())
        .bind(status.is_terminal())
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match updated {
            Some(row) => row.try_into(),
            None => self.get_task(id).await,
        }
    }

    async fn set_task_summary(&self, id: TaskId, summary: Option<String>) -> Result<Task> {
        let row: Option<TaskRow> = sqlx::query_as(concat!(
            "UPDATE tasks SET summary = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            task_columns!()
        ))
        .bind(id.0)
        .bind(summary)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Task::try_from)
            .transpose()?
            .ok_or_else(|| Error::not_found("task", id))
    }

    async fn task_dependencies(&self, id: TaskId) -> Result<Vec<TaskId>> {
        let rows: Vec<(Option<Uuid>,)> = sqlx::query_as(
            "SELECT d.depends_on_task_id FROM tasks t \
             LEFT JOIN task_dependencies d ON d.task_id = t.id \
             WHERE t.id = $1 ORDER BY d.depends_on_task_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        if rows.is_empty() {
            return Err(Error::not_found("task", id));
        }
        Ok(rows
            .into_iter()
            .filter_map(|(d,)| d.map(TaskId::from))
            .collect())
    }

    async fn create_job(&self, new: NewJob) -> Result<Job> {
        let t = now();
        let row: JobRow = sqlx::query_as(concat!(
            "INSERT INTO jobs (id, task_id, status, payload, created_at, updated_at) \
             VALUES ($1, $2, 'queued', $3, $4, $4) RETURNING ",
            job_columns!()
        ))
        .bind(new.id.0)
        .bind(new.task_id.0)
        .bind(&new.payload)
        .bind(t)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        row.try_into()
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        let row: Option<JobRow> = sqlx::query_as(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Job::try_from)
            .transpose()?
            .ok_or_else(|| Error::not_found("job", id))
    }

    async fn list_jobs(&self, task_id: TaskId) -> Result<Vec<Job>> {
        if !self.task_exists(task_id).await? {
            return Err(Error::not_found("task", task_id));
        }
        let rows: Vec<JobRow> = sqlx::query_as(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE task_id = $1 ORDER BY created_at, id"
        ))
        .bind(task_id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(Job::try_from).collect()
    }

    async fn update_job(&self, id: JobId, u: JobUpdate) -> Result<Job> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if let Some(n) = u.node_id {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM nodes WHERE id = $1)")
                    .bind(n.0)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if !exists {
                return Err(Error::invalid(format!("node {n} does not exist")));
            }
        }
        let row: Option<JobRow> = sqlx::query_as(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1 FOR UPDATE"
        ))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut j: Job = row
            .map(Job::try_from)
            .transpose()?
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
        let row: JobRow = sqlx::query_as(concat!(
            "UPDATE jobs SET status = $2, node_id = $3, result = $4, lease_id = $5, \
             lease_expires_at = $6, started_at = $7, ended_at = $8, updated_at = $9 \
             WHERE id = $1 RETURNING ",
            job_columns!()
        ))
        .bind(id.0)
        .bind(j.status.as_str())
        .bind(j.node_id.map(|n| n.0))
        .bind(&j.result)
        .bind(j.lease_id)
        .bind(j.lease_expires_at)
        .bind(j.started_at)
        .bind(j.ended_at)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.try_into()
    }

    async fn put_artifact(&self, task_id: TaskId, new: NewArtifact) -> Result<Artifact> {
        validate::artifact(&new)?;
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        upsert_artifacts(&mut conn, task_id, std::slice::from_ref(&new))
            .await?
            .pop()
            .ok_or_else(|| Error::internal("storing the artifact returned no row"))
    }

    async fn list_artifacts(&self, task_id: TaskId) -> Result<Vec<Artifact>> {
        if !self.task_exists(task_id).await? {
            return Err(Error::not_found("task", task_id));
        }
        let rows: Vec<ArtifactRow> = sqlx::query_as(concat!(
            "SELECT ",
            artifact_columns!(),
            " FROM task_artifacts WHERE task_id = $1 ORDER BY path"
        ))
        .bind(task_id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
