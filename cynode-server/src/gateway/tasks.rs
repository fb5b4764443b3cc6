//! Tasks (§6): create, list, get, result, cancel and logs, always scoped to the caller.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use cynode_core::model::{
    Job, JobStatus, JobUpdate, NewArtifact, NewJob, NewTask, Task, TaskFilter, TaskStatus,
    Timestamp,
};
use cynode_core::proto::v1::gateway::{CancelTaskResponse, JobResult, TaskLogs, TaskResult};
use cynode_core::{Error, JobId, ProjectId, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json as j};
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::{ApiError, ProblemDetails};
use super::http::{json, json_body};
use super::state::GatewayState;

/// Longest attachment path kept; longer entries are skipped (§6.3).
const MAX_ATTACHMENT_LEN: usize = 2048;
/// Longest normalized task name before a uniqueness suffix.
const MAX_NAME_LEN: usize = 200;
/// Candidate names tried before giving up (`name`, `name-2`, ...).
const MAX_NAME_ATTEMPTS: u32 = 1000;
/// Timeout written into sandbox job specs, seconds.
const JOB_TIMEOUT_SECS: u64 = 300;

/// Sandbox script for prompt-mode tasks: sends `CYNODE_PROMPT` to the node's
/// inference proxy (Ollama `/api/generate`) and prints the answer.
const PROMPT_SCRIPT: &str = r#"import http.client, json, os, socket, sys, urllib.parse
class C(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path_ = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)
url = os.environ.get("INFERENCE_PROXY_URL", "")
if not url.startswith("http+unix://"):
    sys.exit("no inference proxy available")
conn = C(urllib.parse.unquote(url[len("http+unix://"):].split("/", 1)[0]))
body = json.dumps({"model": os.environ.get("INFERENCE_MODEL", ""), "prompt": os.environ.get("CYNODE_PROMPT", ""), "stream": False})
conn.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
resp = conn.getresponse()
data = resp.read()
if resp.status != 200:
    sys.exit("inference failed: HTTP %d" % resp.status)
print(json.loads(data).get("response", ""))
"#;

// ---------------------------------------------------------------- wire types

/// `POST /v1/tasks` body.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateTaskRequest {
    /// Task text, script body, or newline-joined commands (required, non-empty).
    pub prompt: Option<String>,
    /// `prompt` (default), `script` or `commands`; anything but `prompt` runs as shell.
    pub input_mode: Option<String>,
    /// Suggested name; normalized and made unique per user.
    pub task_name: Option<String>,
    /// Project id (UUID); blank means the caller's default project.
    pub project_id: Option<String>,
    /// Attachment paths (references only, no upload).
    pub attachments: Option<Vec<String>>,
    /// Give a script/commands sandbox the inference proxy.
    pub use_inference: Option<bool>,
    /// Run through the sandbox agent runner.
    pub use_sba: Option<bool>,
}

/// A task as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskResponse {
    /// Task id.
    pub id: String,
    /// Same as `id`.
    pub task_id: String,
    /// `queued`, `running`, `completed`, `failed`, `canceled` or `superseded`.
    pub status: String,
    /// The task's name.
    pub task_name: String,
    /// The submitted text.
    pub prompt: String,
    /// Same as `task_name`.
    pub summary: String,
    /// RFC 3339, seconds, UTC.
    pub created_at: String,
    /// RFC 3339, seconds, UTC.
    pub updated_at: String,
    /// Attachment paths as submitted; omitted when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// `GET /v1/tasks` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskListResponse {
    /// The page, newest first.
    pub tasks: Vec<TaskResponse>,
    /// Offset of the next page; present only when more tasks exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    /// `next_offset` as a string; present only when more tasks exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/tasks` query.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTasksQuery {
    /// Page size, 1..200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Rows to skip (default 0).
    #[param(value_type = Option<u64>, minimum = 0)]
    pub offset: Option<String>,
    /// Decimal offset from `next_cursor`; replaces `offset`.
    pub cursor: Option<String>,
    /// Only tasks in this status: `queued`, `running`, `completed`, `failed`,
    /// `canceled` or `superseded`.
    pub status: Option<String>,
}

/// `GET /v1/tasks/{id}/logs` query.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// `stdout`, `stderr` or `all` (default).
    pub stream: Option<String>,
}

// ---------------------------------------------------------------- helpers

fn fmt_time(t: Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Storage status to API status (`pending` is shown as `queued`).
fn api_status(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Pending => "queued",
        other => other.as_str(),
    }
}

fn parse_api_status(s: &str) -> Option<TaskStatus> {
    match s {
        "queued" => Some(TaskStatus::Pending),
        "running" => Some(TaskStatus::Running),
        "completed" => Some(TaskStatus::Completed),
        "failed" => Some(TaskStatus::Failed),
        "canceled" => Some(TaskStatus::Canceled),
        "superseded" => Some(TaskStatus::Superseded),
        _ => None,
    }
}

fn attachments_of(task: &Task) -> Vec<String> {
    task.metadata
        .as_ref()
        .and_then(|m| m.get("attachments"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn task_response(task: &Task) -> TaskResponse {
    TaskResponse {
        id: task.id.to_string(),
        task_id: task.id.to_string(),
        status: api_status(task.status).into(),
        task_name: task.name.clone(),
        prompt: task.prompt.clone().unwrap_or_default(),
        summary: task.name.clone(),
        created_at: fmt_time(task.created_at),
        updated_at: fmt_time(task.updated_at),
        attachments: attachments_of(task),
    }
}

/// §6.4 normalization: lower-case, runs outside `[a-z0-9]` become `-`, no leading,
/// trailing or doubled `-`. `"My Task!"` → `my-task`.
pub(crate) fn normalize_task_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.trim().to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut name = out.trim_matches('-').to_string();
    if name.len() > MAX_NAME_LEN {
        name.truncate(MAX_NAME_LEN);
        name = name.trim_end_matches('-').to_string();
    }
    name
}

/// Resolves `{id}`: a UUID is looked up by id (another user's task is `403`
/// `Not task owner`, as the contract fixes); anything else is a name among the
/// caller's own tasks.
async fn resolve_task(st: &GatewayState, user: &AuthUser, key: &str) -> Result<Task, ApiError> {
    let store = &st.inner.store;
    let found = match key.parse::<TaskId>() {
        Ok(id) => store.get_task(id).await,
        Err(_) => store.get_task_by_name(user.id, key).await,
    };
    let task = match found {
        Ok(t) => t,
        Err(Error::NotFound { .. }) | Err(Error::InvalidInput(_)) => {
            return Err(ApiError::not_found("Task not found"));
        }
        Err(e) => return Err(ApiError::storage("Failed to get task", e)),
    };
    if task.created_by != Some(user.id) {
        return Err(ApiError::forbidden("Not task owner"));
    }
    Ok(task)
}

/// The job's result document as a JSON value (stored as an object, or as JSON text
/// inside a string the way the reference stores it).
fn result_value(job: &Job) -> Option<Value> {
    match job.result.as_ref()? {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

fn result_text(job: &Job) -> Option<String> {
    match job.result.as_ref()? {
        Value::String(s) => Some(s.clone()),
        other => serde_json::to_string(other).ok(),
    }
}

// ---------------------------------------------------------------- handlers

/// Create a task.
#[utoipa::path(
    post, path = "/v1/tasks", tag = "tasks",
    request_body = CreateTaskRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created (status `queued`)", body = TaskResponse),
        (status = 400, description = "`Invalid request body` / `Prompt is required` / `Invalid project_id`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over the size cap", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "`Failed to create task` / `Failed to create task job`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_task(
    State(st): State<GatewayState>,
    user: AuthUser,
    req: Request,
) -> Result<Response, ApiError> {
    let body: CreateTaskRequest = json_body(&st, req.into_body()).await?;
    let prompt = body.prompt.unwrap_or_default();
    if prompt.trim().is_empty() {
        return Err(ApiError::bad_request("Prompt is required"));
    }
    let store = &st.inner.store;
    let mode = match body.input_mode.as_deref().map(str::trim) {
        None | Some("") => "prompt".to_string(),
        Some(m) => m.to_string(),
    };
    let use_sba = body.use_sba.unwrap_or(false);
    let model = st.inner.config.inference_model.clone();
    if use_sba && model.is_empty() {
        return Err(ApiError::bad_request(
            "SBA inference readiness failed: no allowed model configured",
        ));
    }

    // Project: a given id must be a UUID of an existing project; else the default.
    let project_id = match body
        .project_id
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(p) => {
            let id: ProjectId = p
                .parse()
                .map_err(|_| ApiError::bad_request("Invalid project_id"))?;
            match store.get_project(id).await {
                Ok(p) => p.id,
                Err(Error::NotFound { .. }) => {
                    return Err(ApiError::bad_request("Invalid project_id"));
                }
                Err(e) => return Err(ApiError::storage("Failed to create task", e)),
            }
        }
        None => {
            store
                .default_project(user.id)
                .await
                .map_err(|e| ApiError::storage("Failed to create task", e))?
                .id
        }
    };

    // Attachments: trimmed, blank and over-long ones skipped, first occurrence kept.
    let mut attachments: Vec<String> = Vec::new();
    for a in body.attachments.unwrap_or_default() {
        let a = a.trim();
        if a.is_empty()
            || a.chars().count() > MAX_ATTACHMENT_LEN
            || attachments.iter().any(|x| x == a)
        {
            continue;
        }
        attachments.push(a.to_string());
    }

    let use_inference = body.use_inference.unwrap_or(false);
    let metadata = j!({
        "input_mode": mode,
        "use_inference": use_inference,
        "use_sba": use_sba,
        "attachments": attachments,
    });

    // Name: normalized, or task_name_NNN; then the first free of name, name-2, ...
    let base = match body
        .task_name
        .as_deref()
        .map(normalize_task_name)
        .filter(|n| !n.is_empty())
    {
        Some(n) => n,
        None => {
            let (_, count) = store
                .list_tasks(&TaskFilter {
                    created_by: Some(user.id),
                    limit: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| ApiError::storage("Failed to create task", e))?;
            format!("task_name_{:03}", count + 1)
        }
    };
    let mut task = None;
    for n in 1..=MAX_NAME_ATTEMPTS {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let taken = store
            .task_name_exists(user.id, &name)
            .await
            .map_err(|e| ApiError::storage("Failed to create task", e))?;
        if taken {
            continue;
        }
        let new = NewTask {
            created_by: Some(user.id),
            project_id: Some(project_id),
            name,
            prompt: Some(prompt.clone()),
            metadata: Some(metadata.clone()),
            artifacts: attachments
                .iter()
                .map(|p| NewArtifact {
                    path: p.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        match store.create_task(new).await {
            Ok(t) => {
                task = Some(t);
                break;
            }
            // Taken by a concurrent request a moment ago: try the next candidate.
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(ApiError::storage("Failed to create task", e)),
        }
    }
    let Some(task) = task else {
        return Err(ApiError::internal("Failed to create task"));
    };

    let job_id = JobId::new();
    let payload = job_payload(
        &task,
        job_id,
        &mode,
        &prompt,
        use_inference,
        use_sba,
        &model,
    );
    let job = match store
        .create_job(NewJob {
            id: job_id,
            task_id: task.id,
            payload,
        })
        .await
    {
        Ok(job) => job,
        Err(e) => {
            if let Err(e2) = store.set_task_status(task.id, TaskStatus::Failed).await {
                tracing::error!(task_id = %task.id, error = %e2, "could not fail a task without a job");
            }
            let what = if use_sba {
                "Failed to create SBA job"
            } else {
                "Failed to create task job"
            };
            return Err(ApiError::storage(what, e));
        }
    };
    if let Err(e) = st.inner.dispatcher.task_created(&task, &job).await {
        tracing::warn!(task_id = %task.id, job_id = %job.id, error = %e, "dispatcher refused the new task; its job stays queued");
    }
    tracing::info!(task_id = %task.id, job_id = %job.id, mode = %mode, "task created");
    Ok(json(StatusCode::CREATED, &task_response(&task)))
}

/// The worker run request (node protocol §6.2) stored as the job payload.
fn job_payload(
    task: &Task,
    job_id: JobId,
    mode: &str,
    prompt: &str,
    use_inference: bool,
    use_sba: bool,
    model: &str,
) -> Value {
    let sandbox = if use_sba {
        let spec = j!({
            "protocol_version": "1.0",
            "job_id": job_id.to_string(),
            "task_id": task.id.to_string(),
            "execution_mode": "agent_inference",
            "constraints": {"max_runtime_seconds": 300, "max_output_bytes": 1024, "ext_net_allowed": false},
            "inference": {"allowed_models": [model]},
            "context": {"task_context": prompt},
        });
        j!({
            "image": "",
            "command": [],
            "env": {},
            "timeout_seconds": JOB_TIMEOUT_SECS,
            "network_policy": "none",
            "use_inference": true,
            "job_spec_json": spec.to_string(),
        })
    } else if mode == "prompt" {
        j!({
            "image": "python:alpine",
            "command": ["python3", "-c", PROMPT_SCRIPT],
            "env": {"CYNODE_PROMPT": prompt, "INFERENCE_MODEL": model},
            "timeout_seconds": JOB_TIMEOUT_SECS,
            "network_policy": "none",
            "use_inference": true,
            "job_spec_json": "",
        })
    } else {
        j!({
            "image": "alpine:latest",
            "command": ["sh", "-c", prompt],
            "env": {},
            "timeout_seconds": JOB_TIMEOUT_SECS,
            "network_policy": "none",
            "use_inference": use_inference,
            "job_spec_json": "",
        })
    };
    j!({"version": 1, "task_id": task.id.to_string(), "job_id": job_id.to_string(), "sandbox": sandbox})
}

fn bad_paging() -> ApiError {
    ApiError::bad_request("Invalid limit, offset, or cursor")
}

/// List the caller's tasks, newest first.
#[utoipa::path(
    get, path = "/v1/tasks", tag = "tasks",
    params(ListTasksQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of tasks", body = TaskListResponse),
        (status = 400, description = "`Invalid limit, offset, or cursor` / `Invalid status`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_tasks(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<ListTasksQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| bad_paging())?;
    let limit = match q.limit.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => 50,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(bad_paging)?,
    };
    let parse_offset = |s: &str| s.trim().parse::<u64>().map_err(|_| bad_paging());
    let offset = match (
        q.cursor.as_deref().filter(|s| !s.is_empty()),
        q.offset.as_deref().filter(|s| !s.is_empty()),
    ) {
        (Some(c), _) => parse_offset(c)?,
        (None, Some(o)) => parse_offset(o)?,
        (None, None) => 0,
    };
    let statuses = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Vec::new(),
        Some(s) => {
            vec![parse_api_status(s).ok_or_else(|| ApiError::bad_request("Invalid status"))?]
        }
    };
    let (rows, _) = st
        .inner
        .store
        .list_tasks(&TaskFilter {
            created_by: Some(user.id),
            statuses,
            limit: limit + 1,
            offset,
            ..Default::default()
        })
        .await
        .map_err(|e| ApiError::storage("Failed to list tasks", e))?;
    let more = rows.len() > limit as usize;
    let tasks: Vec<TaskResponse> = rows
        .iter()
        .take(limit as usize)
        .map(task_response)
        .collect();
    let next = more.then(|| offset + u64::from(limit));
    Ok(json(
        StatusCode::OK,
        &TaskListResponse {
            tasks,
            next_offset: next,
            next_cursor: next.map(|n| n.to_string()),
        },
    ))
}

/// One task, by id or by name.
#[utoipa::path(
    get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID) or the caller's task name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The task", body = TaskResponse),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Not task owner`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Task not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_task(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = resolve_task(&st, &user, &id).await?;
    Ok(json(StatusCode::OK, &task_response(&task)))
}

/// A task's jobs and their results.
#[utoipa::path(
    get, path = "/v1/tasks/{id}/result", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID) or the caller's task name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Status and jobs", body = TaskResult),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Not task owner`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Task not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn task_result(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = resolve_task(&st, &user, &id).await?;
    let jobs = st
        .inner
        .store
        .list_jobs(task.id)
        .await
        .map_err(|e| ApiError::storage("Failed to get task result", e))?;
    let jobs = jobs
        .iter()
        .map(|job| JobResult {
            id: job.id.to_string(),
            status: job.status.as_str().into(),
            result: result_text(job),
            started_at: job.started_at.map(fmt_time),
            ended_at: job.ended_at.map(fmt_time),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &TaskResult {
            task_id: task.id.to_string(),
            status: api_status(task.status).into(),
            jobs,
        },
    ))
}

/// Cancel a task and its open jobs (a finished task keeps its status).
#[utoipa::path(
    post, path = "/v1/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID) or the caller's task name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Canceled", body = CancelTaskResponse),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Not task owner`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Task not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel_task(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = resolve_task(&st, &user, &id).await?;
    let store = &st.inner.store;
    let fail = |e| ApiError::storage("Failed to cancel task", e);
    let task = store
        .set_task_status(task.id, TaskStatus::Canceled)
        .await
        .map_err(fail)?;
    let now = st.now();
    let mut canceled = Vec::new();
    for job in store.list_jobs(task.id).await.map_err(fail)? {
        if job.status.is_terminal() {
            continue;
        }
        let update = JobUpdate {
            status: Some(JobStatus::Canceled),
            ended_at: Some(now),
            lease: Some(None),
            ..Default::default()
        };
        match store.update_job(job.id, update).await {
            Ok(_) => canceled.push(job.id),
            // It reached a terminal state in the meantime: leave it.
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    if task.status == TaskStatus::Canceled
        && let Err(e) = st.inner.dispatcher.task_canceled(&task, &canceled).await
    {
        tracing::warn!(task_id = %task.id, error = %e, "dispatcher could not stop a canceled task's jobs");
    }
    Ok(json(
        StatusCode::OK,
        &CancelTaskResponse {
            task_id: task.id.to_string(),
            canceled: true,
        },
    ))
}

/// Standard output and error of a task's jobs, as stored.
#[utoipa::path(
    get, path = "/v1/tasks/{id}/logs", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID) or the caller's task name"), LogsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Logs", body = TaskLogs),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Not task owner`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Task not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn task_logs(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let stream = query
        .ok()
        .and_then(|Query(q)| q.stream)
        .unwrap_or_else(|| "all".into());
    let task = resolve_task(&st, &user, &id).await?;
    let jobs = st
        .inner
        .store
        .list_jobs(task.id)
        .await
        .map_err(|e| ApiError::storage("Failed to get task logs", e))?;
    let (want_out, want_err) = match stream.as_str() {
        "all" | "" => (true, true),
        "stdout" => (true, false),
        "stderr" => (false, true),
        _ => (false, false),
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for job in &jobs {
        let Some(v) = result_value(job) else { continue };
        if want_out && let Some(s) = v.get("stdout").and_then(Value::as_str) {
            stdout.push_str(s);
        }
        if want_err && let Some(s) = v.get("stderr").and_then(Value::as_str) {
            stderr.push_str(s);
        }
    }
    Ok(json(
        StatusCode::OK,
        &TaskLogs {
            task_id: task.id.to_string(),
            stdout,
            stderr,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_as_the_contract_says() {
        for (raw, want) in [
            ("My Task!", "my-task"),
            ("  e2e-task-name  ", "e2e-task-name"),
            ("a__b--c", "a-b-c"),
            ("--x--", "x"),
            ("Ünïcode Näme", "n-code-n-me"),
            ("!!!", ""),
            ("", ""),
            ("ABC123", "abc123"),
        ] {
            assert_eq!(normalize_task_name(raw), want, "{raw:?}");
        }
        let long = normalize_task_name(&"ab-".repeat(200));
        assert!(long.len() <= MAX_NAME_LEN && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn statuses_map_between_api_and_storage() {
        assert_eq!(api_status(TaskStatus::Pending), "queued");
        for s in TaskStatus::ALL {
            assert_eq!(parse_api_status(api_status(*s)), Some(*s));
        }
        assert_eq!(parse_api_status("pending"), None);
    }
}
