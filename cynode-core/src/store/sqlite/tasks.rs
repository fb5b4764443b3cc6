//! Tasks, dependencies, jobs and artifacts.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, SqliteConnection};

use super::{
    RowExt, SqliteStore, db, exists, is_fk_violation, is_unique_violation, opt_json_text, stored,
    ts,
};
use crate::model::*;
use crate::store::memory::now;
use crate::store::{TaskStore, validate};
use crate::{ArtifactId, Error, JobId, Result, TaskId, UserId};

fn task_row(r: &SqliteRow) -> Result<Task> {
    Ok(Task {
        id: r.id("id")?,
        created_by: r.opt_id("created_by")?,
        project_id: r.opt_id("project_id")?,
        name: r.text("name")?,
        status: r.parsed("status")?,
        closed: r.flag("closed")?,
        prompt: r.opt_text("prompt")?,
        description: r.opt_text("description")?,
        acceptance_criteria: r.opt_json("acceptance_criteria")?,
        summary: r.opt_text("summary")?,
        metadata: r.opt_json("metadata")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn job_row(r: &SqliteRow) -> Result<Job> {
    Ok(Job {
        id: r.id("id")?,
        task_id: r.id("task_id")?,
        node_id: r.opt_id("node_id")?,
        status: r.parsed("status")?,
        payload: r.json("payload")?,
        result: r.opt_json("result")?,
        lease_id: r.opt_id("lease_id")?,
        lease_expires_at: r.opt_time("lease_expires_at")?,
        started_at: r.opt_time("started_at")?,
        ended_at: r.opt_time("ended_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn artifact_row(r: &SqliteRow) -> Result<Artifact> {
    Ok(Artifact {
        id: r.id("id")?,
        task_id: r.id("task_id")?,
        path: r.text("path")?,
        storage_ref: r.text("storage_ref")?,
        size_bytes: r.opt_int("size_bytes")?,
        content_type: r.opt_text("content_type")?,
        checksum_sha256: r.opt_text("checksum_sha256")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

async fn task_exists(conn: &mut SqliteConnection, id: TaskId, action: &str) -> Result<bool> {
    exists(
        conn,
        "SELECT 1 FROM tasks WHERE id = ?1",
        id.to_string(),
        action,
    )
    .await
}

async fn fetch_task(conn: &mut SqliteConnection, id: TaskId, action: &str) -> Result<Task> {
    let row = sqlx::query(
        "SELECT id, created_by, project_id, name, status, closed, prompt, description,
                acceptance_criteria, summary, metadata, created_at, updated_at
         FROM tasks WHERE id = ?1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await
    .map_err(db(action))?;
    row.as_ref()
        .map(task_row)
        .transpose()?
        .ok_or_else(|| Error::not_found("task", id))
}

async fn fetch_job(conn: &mut SqliteConnection, id: JobId, action: &str) -> Result<Option<Job>> {
    let row = sqlx::query(
        "SELECT id, task_id, node_id, status, payload, result, lease_id, lease_expires_at,
                started_at, ended_at, created_at, updated_at
         FROM jobs WHERE id = ?1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await
    .map_err(db(action))?;
    row.as_ref().map(job_row).transpose()
}

/// Creates or replaces the artifact at `new.path`, keeping the id and creation time of
/// a replaced one.
async fn upsert_artifact(
    conn: &mut SqliteConnection,
    task_id: TaskId,
    new: NewArtifact,
) -> Result<Artifact> {
    const ACTION: &str = "store the artifact";
    let row = sqlx::query(
        "INSERT INTO task_artifacts
             (id, task_id, path, storage_ref, size_bytes, content_type, checksum_sha256, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (task_id, path) DO UPDATE
             SET storage_ref = excluded.storage_ref,
                 size_bytes = excluded.size_bytes,
                 content_type = excluded.content_type,
                 checksum_sha256 = excluded.checksum_sha256,
                 updated_at = excluded.updated_at
         RETURNING id, task_id, path, storage_ref, size_bytes, content_type, checksum_sha256,
                   created_at, updated_at",
    )
    .bind(ArtifactId::new().to_string())
    .bind(task_id.to_string())
    .bind(new.path)
    .bind(new.storage_ref)
    .bind(new.size_bytes)
    .bind(new.content_type)
    .bind(new.checksum_sha256)
    .bind(ts(now()))
    .fetch_one(conn)
    .await
    .map_err(db(ACTION))?;
    artifact_row(&row)
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn create_task(&self, new: NewTask) -> Result<Task> {
        const ACTION: &str = "create the task";
        validate::new_task(&new)?;
        let mut tx = self.write(ACTION).await?;
        // The checks come in the same order as in every backend, so the same bad input
        // gives the same error everywhere. The constraints stay as the backstop.
        if let Some(u) = new.created_by {
            if !exists(
                &mut tx,
                "SELECT 1 FROM users WHERE id = ?1",
                u.to_string(),
                ACTION,
            )
            .await?
            {
                return Err(Error::invalid(format!("user {u} does not exist")));
            }
            let dup = sqlx::query("SELECT 1 FROM tasks WHERE created_by = ?1 AND name = ?2")
                .bind(u.to_string())
                .bind(&new.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(ACTION))?;
            if dup.is_some() {
                return Err(Error::conflict(format!(
                    "a task named '{}' already exists",
                    new.name
                )));
            }
        }
        if let Some(p) = new.project_id
            && !exists(
                &mut tx,
                "SELECT 1 FROM projects WHERE id = ?1",
                p.to_string(),
                ACTION,
            )
            .await?
        {
            return Err(Error::invalid(format!("project {p} does not exist")));
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
        sqlx::query(
            "INSERT INTO tasks (id, created_by, project_id, name, status, closed, prompt, description,
                                acceptance_criteria, summary, metadata, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?7, NULL, ?8, ?9, ?9)",
        )
        .bind(task.id.to_string())
        .bind(task.created_by.map(|u| u.to_string()))
        .bind(task.project_id.map(|p| p.to_string()))
        .bind(&task.name)
        .bind(&task.prompt)
        .bind(&task.description)
        .bind(opt_json_text(&task.acceptance_criteria))
        .bind(opt_json_text(&task.metadata))
        .bind(ts(t))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("a task named '{}' already exists", task.name))
            } else {
                db(ACTION)(e)
            }
        })?;

        // Dependencies go in after the task row: a missing one fails on its foreign key
        // and the whole transaction (task row included) is rolled back.
        let mut seen = Vec::with_capacity(new.depends_on.len());
        for d in new.depends_on {
            if seen.contains(&d) {
                continue;
            }
            seen.push(d);
            sqlx::query("INSERT INTO task_dependencies (id, task_id, depends_on_task_id) VALUES (?1, ?2, ?3)")
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(task.id.to_string())
                .bind(d.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_fk_violation(&e) {
                        Error::invalid(format!("dependency task {d} does not exist"))
                    } else {
                        db(ACTION)(e)
                    }
                })?;
        }
        for a in new.artifacts {
            upsert_artifact(&mut tx, task.id, a).await?;
        }
        tx.commit().await.map_err(db(ACTION))?;
        Ok(task)
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        let mut conn = self.reader.acquire().await.map_err(db("read the task"))?;
        fetch_task(&mut conn, id, "read the task").await
    }

    async fn get_task_by_name(&self, created_by: UserId, name: &str) -> Result<Task> {
        let row = sqlx::query(
            "SELECT id, created_by, project_id, name, status, closed, prompt, description,
                    acceptance_criteria, summary, metadata, created_at, updated_at
             FROM tasks WHERE created_by = ?1 AND name = ?2",
        )
        .bind(created_by.to_string())
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(db("read the task"))?;
        row.as_ref()
            .map(task_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("task", name))
    }

    async fn list_tasks(&self, f: &TaskFilter) -> Result<(Vec<Task>, u64)> {
        const ACTION: &str = "list tasks";
        // The WHERE clause is assembled from fixed fragments (values are always bound),
        // so each filter combination gets a plan that uses its index.
        let mut cond = String::from("1 = 1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(u) = f.created_by {
            binds.push(u.to_string());
            cond.push_str(&format!(" AND created_by = ?{}", binds.len()));
        }
        if let Some(p) = f.project_id {
            binds.push(p.to_string());
            cond.push_str(&format!(" AND project_id = ?{}", binds.len()));
        }
        if !f.statuses.is_empty() {
            let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
            binds.push(serde_json::Value::from(statuses).to_string());
            cond.push_str(&format!(
                " AND status IN (SELECT value FROM json_each(?{}))",
                binds.len()
            ));
        }
        let page_sql = format!(
            "SELECT id, created_by, project_id, name, status, closed, prompt, description,
                    acceptance_criteria, summary, metadata, created_at, updated_at
             FROM tasks WHERE {cond}
             ORDER BY created_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
            binds.len() + 1,
            binds.len() + 2
        );
        let count_sql = format!("SELECT count(*) FROM tasks WHERE {cond}");
        let limit = i64::from(validate::limit(f.limit));
        let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);

        // One snapshot for the page and the count, so they agree.
        let mut tx = self.read(ACTION).await?;
        let mut page = sqlx::query(AssertSqlSafe(page_sql));
        for b in &binds {
            page = page.bind(b.clone());
        }
        let rows = page
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let mut count = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql));
        for b in binds {
            count = count.bind(b);
        }
        let total = count.fetch_one(&mut *tx).await.map_err(db(ACTION))?;
        let tasks = rows.iter().map(task_row).collect::<Result<Vec<_>>>()?;
        Ok((tasks, u64::try_from(total).unwrap_or(0)))
    }

    async fn task_name_exists(&self, created_by: UserId, name: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM tasks WHERE created_by = ?1 AND name = ?2")
            .bind(created_by.to_string())
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db("look up the task name"))?;
        Ok(row.is_some())
    }

    async fn set_task_status(&self, id: TaskId, status: TaskStatus) -> Result<Task> {
        const ACTION: &str = "update the task status";
        let mut tx = self.write(ACTION).await?;
        // A terminal status is never overwritten (closed = 1 exactly when terminal).
        sqlx::query("UPDATE tasks SET status = ?2, closed = ?3, updated_at = ?4 WHERE id = ?1 AND closed = 0")
            .bind(id.to_string())
            .bind(status.as_str())
            .bind(status.is_terminal())
            .bind(ts(now()))
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let task = fetch_task(&mut tx, id, ACTION).await?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(task)
    }

    async fn set_task_summary(&self, id: TaskId, summary: Option<String>) -> Result<Task> {
        const ACTION: &str = "update the task summary";
        let mut tx = self.write(ACTION).await?;
        sqlx::query("UPDATE tasks SET summary = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(id.to_string())
            .bind(summary)
            .bind(ts(now()))
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let task = fetch_task(&mut tx, id, ACTION).await?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(task)
    }

    async fn task_dependencies(&self, id: TaskId) -> Result<Vec<TaskId>> {
        const ACTION: &str = "read the task dependencies";
        let mut tx = self.read(ACTION).await?;
        if !task_exists(&mut tx, id, ACTION).await? {
            return Err(Error::not_found("task", id));
        }
        // Canonical UUID text sorts like the UUIDs themselves.
        let rows = sqlx::query(
            "SELECT depends_on_task_id FROM task_dependencies WHERE task_id = ?1 ORDER BY depends_on_task_id",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        rows.iter().map(|r| r.id("depends_on_task_id")).collect()
    }

    async fn create_job(&self, new: NewJob) -> Result<Job> {
        const ACTION: &str = "create the job";
        let mut tx = self.write(ACTION).await?;
        if !task_exists(&mut tx, new.task_id, ACTION).await? {
            return Err(Error::invalid(format!(
                "task {} does not exist",
                new.task_id
            )));
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
        sqlx::query(
            "INSERT INTO jobs (id, task_id, status, payload, created_at, updated_at)
             VALUES (?1, ?2, 'queued', ?3, ?4, ?4)",
        )
        .bind(job.id.to_string())
        .bind(job.task_id.to_string())
        .bind(job.payload.to_string())
        .bind(ts(t))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("job {} already exists", job.id))
            } else {
                db(ACTION)(e)
            }
        })?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(job)
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        let mut conn = self.reader.acquire().await.map_err(db("read the job"))?;
        fetch_job(&mut conn, id, "read the job")
            .await?
            .ok_or_else(|| Error::not_found("job", id))
    }

    async fn list_jobs(&self, task_id: TaskId) -> Result<Vec<Job>> {
        const ACTION: &str = "list jobs";
        let mut tx = self.read(ACTION).await?;
        if !task_exists(&mut tx, task_id, ACTION).await? {
            return Err(Error::not_found("task", task_id));
        }
        let rows = sqlx::query(
            "SELECT id, task_id, node_id, status, payload, result, lease_id, lease_expires_at,
                    started_at, ended_at, created_at, updated_at
             FROM jobs WHERE task_id = ?1 ORDER BY created_at, id",
        )
        .bind(task_id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        rows.iter().map(job_row).collect()
    }

    async fn update_job(&self, id: JobId, u: JobUpdate) -> Result<Job> {
        const ACTION: &str = "update the job";
        let mut tx = self.write(ACTION).await?;
        if let Some(n) = u.node_id
            && !exists(
                &mut tx,
                "SELECT 1 FROM nodes WHERE id = ?1",
                n.to_string(),
                ACTION,
            )
            .await?
        {
            return Err(Error::invalid(format!("node {n} does not exist")));
        }
        let mut j = fetch_job(&mut tx, id, ACTION)
            .await?
            .ok_or_else(|| Error::not_found("job", id))?;
        // Same read-modify-write as the reference backend, under the write lock.
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
            j.lease_expires_at = l.map(|(_, at)| stored(at));
        }
        if let Some(s) = u.started_at {
            j.started_at = Some(stored(s));
        }
        if let Some(e) = u.ended_at {
            j.ended_at = Some(stored(e));
        }
        j.updated_at = now();
        sqlx::query(
            "UPDATE jobs SET status = ?2, node_id = ?3, result = ?4, lease_id = ?5, lease_expires_at = ?6,
                             started_at = ?7, ended_at = ?8, updated_at = ?9
             WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(j.status.as_str())
        .bind(j.node_id.map(|n| n.to_string()))
        .bind(opt_json_text(&j.result))
        .bind(j.lease_id.map(|l| l.to_string()))
        .bind(j.lease_expires_at.map(ts))
        .bind(j.started_at.map(ts))
        .bind(j.ended_at.map(ts))
        .bind(ts(j.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(j)
    }

    async fn put_artifact(&self, task_id: TaskId, new: NewArtifact) -> Result<Artifact> {
        const ACTION: &str = "store the artifact";
        validate::artifact(&new)?;
        let mut tx = self.write(ACTION).await?;
        if !task_exists(&mut tx, task_id, ACTION).await? {
            return Err(Error::not_found("task", task_id));
        }
        let a = upsert_artifact(&mut tx, task_id, new).await?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(a)
    }

    async fn list_artifacts(&self, task_id: TaskId) -> Result<Vec<Artifact>> {
        const ACTION: &str = "list artifacts";
        let mut tx = self.read(ACTION).await?;
        if !task_exists(&mut tx, task_id, ACTION).await? {
            return Err(Error::not_found("task", task_id));
        }
        let rows = sqlx::query(
            "SELECT id, task_id, path, storage_ref, size_bytes, content_type, checksum_sha256,
                    created_at, updated_at
             FROM task_artifacts WHERE task_id = ?1 ORDER BY path",
        )
        .bind(task_id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        rows.iter().map(artifact_row).collect()
    }
}
