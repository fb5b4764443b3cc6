//! Workflow runner API (agents-and-mcp §7.2–7.4): one lease per task so a single
//! runner drives its workflow, plus checkpoints to resume from.
//!
//! | route | body | answers |
//! |---|---|---|
//! | `POST /v1/workflow/start` | `{"task_id","holder_id","idempotency_key"?,"expires_in_sec"?}`; header `X-Cynode-Workflow-Requested-By: pma` marks a PMA start | `200 {"run_id","lease_id","status":"started"\|"already_running"}`; `400`; `404 task not found`; `409` gate reason or `lease held by another workflow runner` |
//! | `POST /v1/workflow/renew` | `{"task_id","lease_id","expires_in_sec"?}` | `200 {"run_id","lease_id","status":"renewed","expires_at"}`; `409 lease not held` |
//! | `POST /v1/workflow/release` | `{"task_id","lease_id"}` | `204` (also when nothing matched) |
//! | `POST /v1/workflow/checkpoint` | `{"task_id","state"?,"last_node_id"?}`, `state` = a string of JSON text | `204` |
//! | `POST /v1/workflow/resume` | `{"task_id"}` | `200 {"task_id","state","last_node_id","updated_at"}`; `404 no checkpoint for task` |
//!
//! When `workflow_runner_token` is configured every route needs
//! `Authorization: Bearer <token>` (else `401 Missing or invalid workflow runner
//! token`). The lease id of a start is the `idempotency_key` when that is a UUID,
//! else a fresh one; the run id equals the lease id; the lifetime is
//! `expires_in_sec` when positive, else 3600 s. Renewal is this implementation's
//! addition (the reference has none).

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cynode_core::store::{LeaseAcquire, WorkflowLease};
use cynode_core::{Error, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::CpError;
use super::nodes::read_json;
use super::state::{ControlPlaneState, digest};
use crate::gateway::http::json;

/// Header that marks a start requested by the project manager agent.
pub const REQUESTED_BY_HEADER: &str = "x-cynode-workflow-requested-by";
/// Default lease lifetime in seconds.
pub const DEFAULT_LEASE_SECS: i64 = 3600;

/// Answer of `start` and `renew`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// Run id (equals the lease id).
    pub run_id: String,
    /// Lease id.
    pub lease_id: String,
    /// `started`, `already_running` or `renewed`.
    pub status: String,
    /// When the lease lapses unless renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<cynode_core::model::Timestamp>,
}

/// Answer of `resume`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeResponse {
    /// The task.
    pub task_id: String,
    /// The checkpointed state as JSON text (`null` when none was stored).
    pub state: Option<String>,
    /// The last completed graph node.
    pub last_node_id: Option<String>,
    /// When the checkpoint was written.
    pub updated_at: cynode_core::model::Timestamp,
}

pub(crate) fn routes() -> Router<ControlPlaneState> {
    Router::new()
        .route("/v1/workflow/start", post(start))
        .route("/v1/workflow/renew", post(renew))
        .route("/v1/workflow/release", post(release))
        .route("/v1/workflow/checkpoint", post(checkpoint))
        .route("/v1/workflow/resume", post(resume))
}

fn check_token(st: &ControlPlaneState, headers: &HeaderMap) -> Result<(), CpError> {
    let Some(expected) = st
        .inner
        .config
        .workflow_runner_token
        .as_deref()
        .filter(|t| !t.is_empty())
    else {
        return Ok(());
    };
    let refused = || CpError::unauthorized("Missing or invalid workflow runner token");
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refused)?;
    let token = match value.trim().split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => return Err(refused()),
    };
    let (a, b) = (digest(token), digest(expected));
    if a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
    {
        Ok(())
    } else {
        Err(refused())
    }
}

/// A workflow call: the runner token checked (when one is configured), the body read
/// as a JSON object (`400 invalid JSON body` otherwise), the headers kept.
struct Call {
    headers: HeaderMap,
    body: Value,
}

impl FromRequest<ControlPlaneState> for Call {
    type Rejection = CpError;

    async fn from_request(req: Request, st: &ControlPlaneState) -> Result<Self, CpError> {
        let (parts, body) = req.into_parts();
        check_token(st, &parts.headers)?;
        let v = read_json(st, body).await.map_err(|e| match e.status() {
            StatusCode::BAD_REQUEST => CpError::bad_request("invalid JSON body"),
            _ => e,
        })?;
        if !v.is_object() {
            return Err(CpError::bad_request("invalid JSON body"));
        }
        Ok(Call {
            headers: parts.headers,
            body: v,
        })
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, CpError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(CpError::bad_request("invalid JSON body")),
    }
}

fn task_id(s: &str) -> Result<TaskId, CpError> {
    s.parse()
        .map_err(|_| CpError::bad_request("invalid task_id"))
}

fn lease_id(s: &str) -> Result<uuid::Uuid, CpError> {
    s.parse()
        .map_err(|_| CpError::bad_request("invalid lease_id"))
}

/// The body's `task_id`: `400 task_id required` / `invalid task_id`.
fn required_task(v: &Value) -> Result<TaskId, CpError> {
    task_id(str_field(v, "task_id")?.ok_or_else(|| CpError::bad_request("task_id required"))?)
}

/// The body's `lease_id`: `400 lease_id required` / `invalid lease_id`.
fn required_lease(v: &Value) -> Result<uuid::Uuid, CpError> {
    lease_id(str_field(v, "lease_id")?.ok_or_else(|| CpError::bad_request("lease_id required"))?)
}

/// A storage error of a call on one task: `404 task not found` when the task is
/// missing, else `500` with `what`.
fn task_error(what: &'static str) -> impl Fn(Error) -> CpError + Copy {
    move |e| match e {
        Error::NotFound { .. } => CpError::not_found("task not found").with_source(e),
        e => CpError::storage(what, e),
    }
}

fn ttl(v: &Value) -> Result<chrono::Duration, CpError> {
    let secs = match v.get("expires_in_sec") {
        None | Some(Value::Null) => DEFAULT_LEASE_SECS,
        Some(x) => x
            .as_i64()
            .ok_or_else(|| CpError::bad_request("invalid JSON body"))?,
    };
    let secs = if secs > 0 {
        secs.min(366 * 24 * 3600)
    } else {
        DEFAULT_LEASE_SECS
    };
    Ok(chrono::Duration::seconds(secs))
}

/// `200` with the lease in `status`.
fn lease_answer(lease: &WorkflowLease, status: &str) -> Response {
    json(
        StatusCode::OK,
        &LeaseResponse {
            run_id: lease.lease_id.to_string(),
            lease_id: lease.lease_id.to_string(),
            status: status.into(),
            expires_at: lease.expires_at,
        },
    )
}

async fn start(
    State(st): State<ControlPlaneState>,
    Call { headers, body: v }: Call,
) -> Result<Response, CpError> {
    let (Some(task), Some(holder)) = (str_field(&v, "task_id")?, str_field(&v, "holder_id")?)
    else {
        return Err(CpError::bad_request("task_id and holder_id required"));
    };
    let task = task_id(task)?;
    let lease = str_field(&v, "idempotency_key")?
        .and_then(|k| k.parse::<uuid::Uuid>().ok())
        .unwrap_or_else(uuid::Uuid::new_v4);
    let ttl = ttl(&v)?;
    let pma = headers
        .get(REQUESTED_BY_HEADER)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.trim().eq_ignore_ascii_case("pma"));
    let store = &st.inner.store;
    let not_found = task_error("failed to start workflow");
    store.get_task(task).await.map_err(not_found)?;
    if let Some(reason) = store
        .workflow_start_gate(task, pma)
        .await
        .map_err(not_found)?
    {
        return Err(CpError::conflict(reason));
    }
    let now = st.now();
    let (lease, status) = match store
        .acquire_workflow_lease(task, holder, lease, now + ttl, now)
        .await
        .map_err(not_found)?
    {
        LeaseAcquire::Started(l) => (l, "started"),
        LeaseAcquire::AlreadyRunning(l) => (l, "already_running"),
        LeaseAcquire::Held(_) => {
            return Err(CpError::conflict("lease held by another workflow runner"));
        }
    };
    tracing::info!(task_id = %task, holder_id = holder, lease_id = %lease.lease_id, status, pma_requested = pma, "workflow start");
    Ok(lease_answer(&lease, status))
}

async fn renew(
    State(st): State<ControlPlaneState>,
    Call { body: v, .. }: Call,
) -> Result<Response, CpError> {
    let task = required_task(&v)?;
    let lease = required_lease(&v)?;
    let ttl = ttl(&v)?;
    let now = st.now();
    let renewed = st
        .inner
        .store
        .renew_workflow_lease(task, lease, now + ttl, now)
        .await
        .map_err(task_error("failed to renew workflow lease"))?
        .ok_or_else(|| CpError::conflict("lease not held"))?;
    Ok(lease_answer(&renewed, "renewed"))
}

async fn release(
    State(st): State<ControlPlaneState>,
    Call { body: v, .. }: Call,
) -> Result<Response, CpError> {
    let task = required_task(&v)?;
    let lease = required_lease(&v)?;
    match st.inner.store.release_workflow_lease(task, lease).await {
        Ok(released) => {
            tracing::info!(task_id = %task, lease_id = %lease, released, "workflow release");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        // Idempotent: releasing for a task that is gone changes nothing.
        Err(Error::NotFound { .. }) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(CpError::storage("failed to release workflow lease", e)),
    }
}

async fn checkpoint(
    State(st): State<ControlPlaneState>,
    Call { body: v, .. }: Call,
) -> Result<Response, CpError> {
    let task = required_task(&v)?;
    // `state` is a string holding JSON text; an object is refused like the reference.
    let state = match str_field(&v, "state")? {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<Value>(text)
                .map_err(|_| CpError::bad_request("state must be valid JSON text"))?,
        ),
    };
    let last = str_field(&v, "last_node_id")?.map(str::to_string);
    st.inner
        .store
        .put_workflow_checkpoint(task, state, last, st.now())
        .await
        .map_err(task_error("failed to write checkpoint"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn resume(
    State(st): State<ControlPlaneState>,
    Call { body: v, .. }: Call,
) -> Result<Response, CpError> {
    let task = required_task(&v)?;
    let none = || CpError::not_found("no checkpoint for task");
    let cp = match st.inner.store.get_workflow_checkpoint(task).await {
        Ok(Some(cp)) => cp,
        Ok(None) | Err(Error::NotFound { .. }) => return Err(none()),
        Err(e) => return Err(CpError::storage("failed to read checkpoint", e)),
    };
    Ok(json(
        StatusCode::OK,
        &ResumeResponse {
            task_id: task.to_string(),
            state: cp.state.map(|s| s.to_string()),
            last_node_id: cp.last_node_id,
            updated_at: cp.updated_at,
        },
    ))
}
