//! The Worker API router (`node-protocol.md` §6, §8, §9).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as AxPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use cynode_core::proto::v1::worker::{
    BuildInfo, ContainerDetail, ContainerList, ContainerRecord, JobArtifact, NodeInfo, NodeStats,
    PlatformInfo, RunDiagnostics as WireDiagnostics, RunJobRequest, RunJobResponse, RunJobStatus,
    RuntimeInfo, Truncated,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::job_inference::{JobInferenceHost, JobUpstream};
use super::problem::Problem;
use super::telemetry::{
    self, ContainerFilter, LogQuery, LogSource, Telemetry, decode_token, encode_token,
};
use crate::driver::{Canceller, Driver, JobEvent};
use crate::error::Error;
use crate::result::{JobResult, JobStatus};
use crate::runtime::{LABEL_JOB_ID, LABEL_TASK_ID};
use crate::spec::{InferenceAccess, InputFile, JobSpec, NetworkPolicy, RunnerMode};

/// Hard ceiling of a job run request body (10 MiB).
const MAX_BODY: usize = cynode_core::proto::v1::worker::MAX_RUN_REQUEST_BYTES;
/// Service name of the Worker API in the telemetry logs.
const SERVICE: &str = "worker_api";

/// Settings of the Worker API. Deserializes with defaults for missing keys.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerApiConfig {
    /// The node's slug (reported by `node:info`). Default `node-01`.
    pub node_slug: String,
    /// Build version reported by `node:info`. Default `dev`.
    pub build_version: String,
    /// Version of the container runtime reported by `node:stats` (the node manager
    /// measures it at start). Default `unknown`.
    pub runtime_version: String,
    /// State directory whose file system `node:stats` reports. Default
    /// `/var/lib/cynode/state`.
    pub state_dir: PathBuf,
    /// Largest job run request body (capped at 10 MiB; the node configuration may lower
    /// it further). Default 10 MiB.
    pub max_request_bytes: usize,
    /// Jobs run at once; more get 503 with `Retry-After`. Default 4.
    pub max_concurrency: usize,
    /// Whether jobs may use the node's inference socket (false on sandbox-only nodes or
    /// without an inference upstream in the driver config). Default true.
    pub inference_allowed: bool,
    /// `Retry-After` seconds of a 503. Default 5.
    pub retry_after_secs: u64,
}

impl Default for WorkerApiConfig {
    fn default() -> Self {
        Self {
            node_slug: "node-01".into(),
            build_version: "dev".into(),
            runtime_version: "unknown".into(),
            state_dir: PathBuf::from("/var/lib/cynode/state"),
            max_request_bytes: MAX_BODY,
            max_concurrency: 4,
            inference_allowed: true,
            retry_after_secs: 5,
        }
    }
}

/// What the drain at shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// Jobs running when the drain began.
    pub running_at_start: usize,
    /// Jobs canceled after the grace period.
    pub canceled: usize,
    /// Jobs still running when the drain gave up.
    pub left_running: usize,
}

/// Limits that arrive with the node configuration (`constraints`).
#[derive(Debug, Clone, Copy, Default)]
struct Constraints {
    max_request_bytes: Option<usize>,
    max_job_timeout_seconds: Option<u64>,
}

/// Shared state of the Worker API: the driver, the bearer token, running jobs, limits,
/// readiness and drain. Cheap to clone; the node manager keeps a clone to configure and
/// drain the API.
#[derive(Debug, Clone)]
pub struct WorkerApiState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    driver: Driver,
    config: WorkerApiConfig,
    telemetry: Arc<Telemetry>,
    /// SHA-256 of the expected bearer token; `None` until the configuration brings one.
    token: RwLock<Option<[u8; 32]>>,
    constraints: RwLock<Constraints>,
    /// Running jobs by id, with their canceller once spawned.
    jobs: Mutex<HashMap<String, Option<Canceller>>>,
    slots: Arc<Semaphore>,
    draining: AtomicBool,
    configured: AtomicBool,
    running: watch::Sender<usize>,
    /// Builds per-job inference upstreams for jobs with an inference grant.
    job_inference: OnceLock<HostSlot>,
}

struct HostSlot(Arc<dyn JobInferenceHost>);

impl std::fmt::Debug for HostSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobInferenceHost")
    }
}

impl WorkerApiState {
    /// State over a driver. The `/v1/worker/*` routes answer 503 until
    /// [`WorkerApiState::set_bearer_token`] is called, and `/readyz` stays 503 until
    /// [`WorkerApiState::mark_configured`].
    pub fn new(driver: Driver, config: WorkerApiConfig, telemetry: Arc<Telemetry>) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        Self {
            inner: Arc::new(Inner {
                driver,
                config,
                telemetry,
                token: RwLock::new(None),
                constraints: RwLock::new(Constraints::default()),
                jobs: Mutex::new(HashMap::new()),
                slots,
                draining: AtomicBool::new(false),
                configured: AtomicBool::new(false),
                running: watch::channel(0).0,
                job_inference: OnceLock::new(),
            }),
        }
    }

    /// Serves jobs that bring an inference grant (`RunJobRequest.inference`) from a
    /// per-job upstream started by `host` (see [`JobInferenceHost`]). Set once; a
    /// second call returns `false` and changes nothing. Without a host, every job uses
    /// the driver's inference upstream.
    pub fn set_job_inference_host(&self, host: Arc<dyn JobInferenceHost>) -> bool {
        self.inner.job_inference.set(HostSlot(host)).is_ok()
    }

    /// The driver jobs run on.
    pub fn driver(&self) -> &Driver {
        &self.inner.driver
    }

    /// The settings.
    pub fn config(&self) -> &WorkerApiConfig {
        &self.inner.config
    }

    /// The telemetry record.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    /// Sets (or clears) the token the orchestrator must present. Only a digest is kept.
    pub fn set_bearer_token(&self, token: Option<&str>) {
        let digest = token.filter(|t| !t.is_empty()).map(digest);
        *self.inner.token.write().unwrap_or_else(|p| p.into_inner()) = digest;
    }

    /// Whether a bearer token is configured.
    pub fn has_bearer_token(&self) -> bool {
        self.token().is_some()
    }

    /// Applies the node configuration's `constraints` (`None` keeps the node's own limit).
    pub fn set_constraints(
        &self,
        max_request_bytes: Option<usize>,
        max_job_timeout_seconds: Option<u64>,
    ) {
        *self
            .inner
            .constraints
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Constraints {
            max_request_bytes: max_request_bytes.filter(|n| *n > 0),
            max_job_timeout_seconds: max_job_timeout_seconds.filter(|n| *n > 0),
        };
    }

    /// Marks registration and the first configuration as done (a `/readyz` condition).
    pub fn mark_configured(&self) {
        self.inner.configured.store(true, Ordering::SeqCst);
    }

    /// Stops accepting jobs: `jobs:run` answers 503 from now on.
    pub fn begin_drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the API is draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Jobs running now.
    pub fn running_jobs(&self) -> usize {
        *self.inner.running.borrow()
    }

    /// Waits until no job runs, at most `limit`; true when idle.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let mut rx = self.inner.running.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Cancels every running job (their requests end with `failed`); returns how many.
    pub fn cancel_all(&self) -> usize {
        let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for c in jobs.values().flatten() {
            c.cancel();
            n += 1;
        }
        n
    }

    /// Drains: stops intake (503), waits up to `grace` for running jobs, cancels the
    /// rest and waits up to `kill_grace` for them to stop.
    pub async fn drain(&self, grace: Duration, kill_grace: Duration) -> DrainReport {
        self.begin_drain();
        let mut report = DrainReport {
            running_at_start: self.running_jobs(),
            ..Default::default()
        };
        if self.wait_idle(grace).await {
            return report;
        }
        report.canceled = self.cancel_all();
        if !self.wait_idle(kill_grace).await {
            report.left_running = self.running_jobs();
        }
        report
    }

    fn token(&self) -> Option<[u8; 32]> {
        *self.inner.token.read().unwrap_or_else(|p| p.into_inner())
    }

    fn constraints(&self) -> Constraints {
        *self
            .inner
            .constraints
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn max_request_bytes(&self) -> usize {
        let own = self.inner.config.max_request_bytes.clamp(1, MAX_BODY);
        match self.constraints().max_request_bytes {
            Some(c) => own.min(c),
            None => own,
        }
    }

    fn log(&self, level: &str, message: &str, fields: Map<String, Value>) {
        self.inner
            .telemetry
            .log_service(SERVICE, level, message, fields);
    }

    /// Why the node cannot take jobs now, or `None` when it can.
    async fn not_ready_reason(&self) -> Option<String> {
        if self.is_draining() {
            return Some("node is draining".into());
        }
        let driver = &self.inner.driver;
        let runtime = driver.runtime();
        match tokio::time::timeout(Duration::from_secs(5), runtime.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(format!("{} not available: {e}", runtime.name())),
            Err(_) => {
                return Some(format!(
                    "{} not available: no answer within 5s",
                    runtime.name()
                ));
            }
        }
        let root = driver.config().mount_root.clone();
        let probe = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&root)?;
            let f = root.join(format!(".ready-{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&f, b"")?;
            std::fs::remove_file(&f)
        })
        .await;
        match probe {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Some(format!(
                    "sandbox mount root {} not writable: {e}",
                    driver.config().mount_root.display()
                ));
            }
            Err(_) => return Some("sandbox mount root check failed".into()),
        }
        if !self.inner.configured.load(Ordering::SeqCst) || !self.has_bearer_token() {
            return Some("node not registered with the control plane yet".into());
        }
        None
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares digests in constant time.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Worker API: `POST /v1/worker/jobs:run`, the telemetry routes (bearer auth) and
/// the open `/healthz`, `/readyz`.
pub fn worker_api_router(state: WorkerApiState) -> Router {
    let protected = Router::new()
        .route("/v1/worker/jobs:run", post(run_job))
        .route("/v1/worker/telemetry/node:info", get(node_info))
        .route("/v1/worker/telemetry/node:stats", get(node_stats))
        .route("/v1/worker/telemetry/containers", get(containers))
        .route("/v1/worker/telemetry/containers/{id}", get(container))
        .route("/v1/worker/telemetry/logs", get(logs))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .fallback(|| async { Problem::not_found("Not found") })
        .with_state(state)
}

async fn auth(State(st): State<WorkerApiState>, req: Request, next: Next) -> Response {
    let Some(expected) = st.token() else {
        return Problem::unavailable(
            "Worker API not configured yet: no bearer token",
            st.inner.config.retry_after_secs,
        )
        .into_response();
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty());
    match presented {
        Some(t) if ct_eq(&digest(t), &expected) => next.run(req).await,
        _ => Problem::unauthorized().into_response(),
    }
}

async fn readyz(State(st): State<WorkerApiState>) -> Response {
    match st.not_ready_reason().await {
        None => (StatusCode::OK, "ready").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// jobs:run
// ---------------------------------------------------------------------------------------

/// Removes a job from the running set when its request ends, however it ends.
struct JobGuard {
    st: WorkerApiState,
    job_id: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let left = {
            let mut jobs = self.st.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.remove(&self.job_id);
            jobs.len()
        };
        self.st.inner.running.send_replace(left);
    }
}

async fn run_job(State(st): State<WorkerApiState>, req: Request) -> Response {
    match run_job_inner(st, req).await {
        Ok(r) => (StatusCode::OK, axum::Json(r)).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn read_body(req: Request, cap: usize) -> Result<bytes::Bytes, Problem> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(Problem::too_large());
    }
    axum::body::to_bytes(req.into_body(), cap)
        .await
        .map_err(|_| Problem::too_large())
}

/// What the request asks for, validated.
struct Plan {
    spec: JobSpec,
    runner: bool,
}

async fn run_job_inner(st: WorkerApiState, req: Request) -> Result<RunJobResponse, Problem> {
    let retry = st.inner.config.retry_after_secs;
    if st.is_draining() {
        return Err(Problem::unavailable("node is draining", retry));
    }
    let body = read_body(req, st.max_request_bytes()).await?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| Problem::bad_request("Invalid request body"))?;
    if !value.is_object() {
        return Err(Problem::bad_request("Invalid request body"));
    }
    if value.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(Problem::bad_request("unsupported version")
            .with(
                "received_version",
                value.get("version").cloned().unwrap_or(Value::Null),
            )
            .with("supported_versions", json!([1])));
    }
    let request: RunJobRequest =
        serde_json::from_value(value).map_err(|_| Problem::bad_request("Invalid request body"))?;
    if request.task_id.trim().is_empty() || request.job_id.trim().is_empty() {
        return Err(Problem::bad_request("task_id and job_id are required"));
    }
    let mut plan = match plan_job(&st, &request)? {
        Ok(plan) => plan,
        Err(refusal) => return Ok(refusal),
    };

    // One running job per id, then a free slot.
    let guard = admit(&st, &request.job_id)?;
    // The job's own upstream, alive until the job ends (or the call is dropped).
    let _upstream = job_upstream(&st, &request, &mut plan).await?;
    execute(&st, &request, plan, guard).await
}

/// Starts the per-job inference upstream when the job uses inference, brings a grant
/// with external models, and the node has a [`JobInferenceHost`]; points the job's
/// socket at it.
async fn job_upstream(
    st: &WorkerApiState,
    request: &RunJobRequest,
    plan: &mut Plan,
) -> Result<Option<JobUpstream>, Problem> {
    let (Some(access), Some(grant), Some(host)) = (
        plan.spec.inference.as_mut(),
        request.inference.as_ref(),
        st.inner.job_inference.get(),
    ) else {
        return Ok(None);
    };
    if grant.external.is_empty() || grant.token.is_empty() {
        return Ok(None);
    }
    let upstream = host
        .0
        .start(&request.task_id, &request.job_id, grant)
        .await
        .map_err(|e| {
            st.log(
                "error",
                "job inference upstream failed to start",
                job_fields(request, &e),
            );
            Problem::internal(format!("job inference could not be started: {e}"))
        })?;
    access.upstream_url = Some(upstream.url().to_string());
    Ok(Some(upstream))
}

fn job_fields(request: &RunJobRequest, error: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("task_id".into(), Value::String(request.task_id.clone()));
    m.insert("job_id".into(), Value::String(request.job_id.clone()));
    m.insert("error".into(), Value::String(error.to_string()));
    m
}

/// Reserves the job id and a concurrency slot.
fn admit(st: &WorkerApiState, job_id: &str) -> Result<JobGuard, Problem> {
    let mut jobs = st.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
    if jobs.contains_key(job_id) {
        return Err(Problem::conflict(format!(
            "job {job_id} is already running on this node"
        )));
    }
    let Ok(permit) = st.inner.slots.clone().try_acquire_owned() else {
        return Err(Problem::unavailable(
            format!(
                "node at maximum concurrency ({} jobs)",
                st.inner.config.max_concurrency.max(1)
            ),
            st.inner.config.retry_after_secs,
        ));
    };
    jobs.insert(job_id.to_string(), None);
    st.inner.running.send_replace(jobs.len());
    Ok(JobGuard {
        st: st.clone(),
        job_id: job_id.to_string(),
        _permit: permit,
    })
}

/// Validates the sandbox object. `Err` is a 4xx; `Ok(Err(_))` a job refused before
/// anything was created (200 `failed`, runner-spec validation).
#[allow(clippy::result_large_err)]
fn plan_job(
    st: &WorkerApiState,
    request: &RunJobRequest,
) -> Result<Result<Plan, RunJobResponse>, Problem> {
    let sb = &request.sandbox;
    let runner = !sb.job_spec_json.trim().is_empty();
    if !runner && sb.command.is_empty() {
        return Err(Problem::bad_request(
            "sandbox.command is required when job_spec_json is not set",
        ));
    }
    let network = match sb.network_policy.as_str() {
        "allowlist" => {
            return Err(Problem::bad_request(
                "sandbox.network_policy allowlist is not supported on this node",
            ));
        }
        other => NetworkPolicy::parse(other).map_err(|_| {
            Problem::bad_request("sandbox.network_policy must be none or restricted")
        })?,
    };
    // A node without an upstream of its own can still serve a job whose grant brings
    // external models (through its job inference host).
    let granted = st.inner.job_inference.get().is_some()
        && request
            .inference
            .as_ref()
            .is_some_and(|g| !g.external.is_empty() && !g.token.is_empty());
    let inference_ok = st.inner.config.inference_allowed
        && (st.inner.driver.config().inference.is_some() || granted);
    let mut spec = JobSpec::new(sb.image.clone(), sb.command.clone())
        .with_ids(request.task_id.clone(), request.job_id.clone());
    spec.env = sb.env.clone();
    spec.network = network;
    if let Some(r) = sb.resources {
        spec.resources.cpu_cores = r.cpu_cores;
        spec.resources.memory_mb = r.memory_mb;
        spec.resources.pids = r.pids;
    }
    let mut requested = sb.timeout_seconds.filter(|t| *t > 0);
    let mut access = sb.use_inference.then(InferenceAccess::default);

    if runner {
        let parsed = match parse_runner_spec(&sb.job_spec_json) {
            Ok(p) => p,
            Err(message) => return Ok(Err(schema_failure(request, &message))),
        };
        spec.runner_mode = Some(parsed.mode);
        if parsed.mode == RunnerMode::AgentInference {
            access = Some(InferenceAccess {
                allowed_models: Some(parsed.allowed_models),
                ..Default::default()
            });
        }
        if requested.is_none() {
            requested = parsed.max_runtime_seconds.map(|s| s.saturating_add(30));
        }
        spec.job_files
            .push(InputFile::new("job.json", sb.job_spec_json.as_bytes()));
    }
    if access.is_some() && !inference_ok {
        return Err(Problem::bad_request(
            "sandbox.use_inference: this node offers no inference",
        ));
    }
    spec.inference = access;

    // Effective timeout: min(requested or node default, node max, config constraint).
    let dc = st.inner.driver.config();
    let mut timeout = requested
        .unwrap_or(dc.default_timeout_secs)
        .min(dc.max_timeout_secs);
    if let Some(c) = st.constraints().max_job_timeout_seconds {
        timeout = timeout.min(c);
    }
    spec.timeout = Some(Duration::from_secs(timeout.max(1)));
    Ok(Ok(Plan { spec, runner }))
}

struct RunnerSpec {
    mode: RunnerMode,
    allowed_models: Vec<String>,
    max_runtime_seconds: Option<u64>,
}

/// The checks the node needs before it hands a runner spec to the runner (which
/// validates the whole schema itself).
fn parse_runner_spec(text: &str) -> Result<RunnerSpec, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("job_spec_json: not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "job_spec_json: must be a JSON object".to_string())?;
    let has_steps = obj
        .get("steps")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let mode = match obj.get("execution_mode") {
        None | Some(Value::Null) => {
            if has_steps {
                RunnerMode::DirectSteps
            } else {
                RunnerMode::AgentInference
            }
        }
        Some(Value::String(s)) if s == "agent_inference" => RunnerMode::AgentInference,
        Some(Value::String(s)) if s == "direct_steps" => RunnerMode::DirectSteps,
        Some(_) => return Err("execution_mode: must be agent_inference or direct_steps".into()),
    };
    let allowed_models: Vec<String> = obj
        .get("inference")
        .and_then(|i| i.get("allowed_models"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if mode == RunnerMode::AgentInference && allowed_models.is_empty() {
        return Err("inference.allowed_models: required for agent_inference".into());
    }
    let max_runtime_seconds = obj
        .get("constraints")
        .and_then(|c| c.get("max_runtime_seconds"))
        .and_then(Value::as_u64);
    Ok(RunnerSpec {
        mode,
        allowed_models,
        max_runtime_seconds,
    })
}

fn schema_failure(request: &RunJobRequest, message: &str) -> RunJobResponse {
    let now = Utc::now();
    RunJobResponse {
        version: 1,
        task_id: request.task_id.clone(),
        job_id: request.job_id.clone(),
        status: RunJobStatus::Failed,
        exit_code: -1,
        stdout: String::new(),
        stderr: format!("invalid runner job spec: {message}"),
        started_at: Some(now),
        ended_at: Some(now),
        truncated: Truncated::default(),
        sba_result: Some(json!({
            "protocol_version": "1.0", "job_id": request.job_id, "status": "failure",
            "steps": [], "artifacts": [], "failure_code": "schema_validation",
            "failure_message": message,
        })),
        step_executor_result: None,
        artifacts: Vec::new(),
        run_diagnostics: None,
    }
}

async fn execute(
    st: &WorkerApiState,
    request: &RunJobRequest,
    plan: Plan,
    guard: JobGuard,
) -> Result<RunJobResponse, Problem> {
    let driver = &st.inner.driver;
    let telemetry = &st.inner.telemetry;
    let image = if plan.spec.image.is_empty() {
        driver.config().images.default_image.clone()
    } else {
        plan.spec.image.clone()
    };
    let started = std::time::Instant::now();
    let mut handle = driver.spawn(plan.spec.clone());
    {
        let mut jobs = st.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = jobs.get_mut(&request.job_id) {
            *slot = Some(handle.canceller());
        }
    }
    // A request dropped here (client gone) drops `handle`, which cancels the job; the
    // driver removes the container and the job directory.
    let mut container: Option<(String, String)> = None;
    while let Some(event) = handle.next_event().await {
        match event {
            JobEvent::Started { container_id } => {
                let name = container_name(driver, &container_id).await;
                let now = Utc::now();
                let mut labels = BTreeMap::new();
                labels.insert("cynodeai.role".to_string(), "sandbox".to_string());
                labels.insert(LABEL_TASK_ID.to_string(), request.task_id.clone());
                labels.insert(LABEL_JOB_ID.to_string(), request.job_id.clone());
                telemetry.container_created(ContainerRecord {
                    container_id: container_id.clone(),
                    container_name: name.clone(),
                    kind: "sandbox".into(),
                    runtime: driver.runtime().name().to_string(),
                    image_ref: image.clone(),
                    created_at: now,
                    last_seen_at: now,
                    status: "running".into(),
                    exit_code: None,
                    task_id: Some(request.task_id.clone()),
                    job_id: Some(request.job_id.clone()),
                    labels,
                });
                container = Some((container_id, name));
            }
            JobEvent::Output(chunk) => {
                if let Some((id, name)) = &container {
                    telemetry.container_output(
                        id,
                        name,
                        match chunk.stream {
                            crate::output::StreamKind::Stdout => "stdout",
                            crate::output::StreamKind::Stderr => "stderr",
                        },
                        &chunk.data,
                    );
                }
            }
            _ => {}
        }
    }
    let outcome = handle.wait().await;
    drop(guard);
    let mut fields = Map::new();
    fields.insert("task_id".into(), json!(request.task_id));
    fields.insert("job_id".into(), json!(request.job_id));
    fields.insert(
        "duration_ms".into(),
        json!(started.elapsed().as_millis() as u64),
    );
    match outcome {
        Ok(result) => {
            if let Some((id, _)) = &container {
                telemetry.container_status(id, "removed", result.diagnostics.raw_exit_code);
            }
            let response = to_response(st, request, result, plan.runner);
            fields.insert("status".into(), json!(response.status.as_str()));
            fields.insert("exit_code".into(), json!(response.exit_code));
            tracing::info!(task_id = %request.task_id, job_id = %request.job_id,
                status = response.status.as_str(), exit_code = response.exit_code, "job finished");
            st.log("info", "job finished", fields);
            Ok(response)
        }
        Err(e) => {
            fields.insert("error".into(), json!(e.to_string()));
            tracing::warn!(task_id = %request.task_id, job_id = %request.job_id, error = %e, "job not run");
            st.log("warn", "job not run", fields);
            error_response(st, request, &image, e)
        }
    }
}

async fn container_name(driver: &Driver, id: &str) -> String {
    let owner = &driver.config().owner;
    match driver.runtime().list_owned(owner).await {
        Ok(list) => list
            .into_iter()
            .find(|c| c.id.0 == id || c.id.0.starts_with(id) || id.starts_with(&c.id.0))
            .and_then(|c| c.names.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.to_string()),
        Err(_) => id.to_string(),
    }
}

/// A driver error: 400/409/500/503, or a 200 `failed` for failures of the attempt
/// itself (image missing or refused, the engine refusing the container).
fn error_response(
    st: &WorkerApiState,
    request: &RunJobRequest,
    image: &str,
    e: Error,
) -> Result<RunJobResponse, Problem> {
    match e {
        Error::InvalidSpec(m) => Err(Problem::bad_request(m)),
        Error::JobConflict(_) => Err(Problem::conflict(format!(
            "job {} is already running on this node",
            request.job_id
        ))),
        Error::Unavailable { .. } => Err(Problem::unavailable(
            format!("container runtime unavailable: {e}"),
            st.inner.config.retry_after_secs,
        )),
        Error::Io { .. } => Err(Problem::internal("Workspace creation failed")),
        Error::Internal { .. } | Error::NotFound { .. } => {
            Err(Problem::internal("Job execution failed"))
        }
        other => {
            let now = Utc::now();
            let driver = &st.inner.driver;
            Ok(RunJobResponse {
                version: 1,
                task_id: request.task_id.clone(),
                job_id: request.job_id.clone(),
                status: RunJobStatus::Failed,
                exit_code: -1,
                stdout: String::new(),
                stderr: other.to_string(),
                started_at: Some(now),
                ended_at: Some(now),
                truncated: Truncated::default(),
                sba_result: None,
                step_executor_result: None,
                artifacts: Vec::new(),
                run_diagnostics: Some(WireDiagnostics {
                    runtime: driver.runtime().name().to_string(),
                    runtime_argv: Vec::new(),
                    job_dir: String::new(),
                    workspace_dir: String::new(),
                    image: image.to_string(),
                    container_started: false,
                    oom_killed: false,
                }),
            })
        }
    }
}

/// The runtime command line equivalent to what the driver asked of the engine, with
/// environment names only.
fn runtime_argv(st: &WorkerApiState, result: &JobResult) -> Vec<String> {
    let c = st.inner.driver.config();
    let d = &result.diagnostics;
    let mut argv: Vec<String> = vec![
        d.runtime.clone(),
        "run".into(),
        "--rm".into(),
        "--network=none".into(),
        "--cap-drop=ALL".into(),
        "--security-opt=no-new-privileges".into(),
        "--init".into(),
        format!("--user={}:{}", c.run_as.uid, c.run_as.gid),
    ];
    if c.read_only_rootfs {
        argv.push("--read-only".into());
    }
    if c.userns_keep_id {
        argv.push("--userns=keep-id".into());
    }
    argv.push("--workdir=/workspace".into());
    for name in &d.env_names {
        argv.push("-e".into());
        argv.push(name.clone());
    }
    argv.push(d.image.clone());
    argv
}

fn to_response(
    st: &WorkerApiState,
    request: &RunJobRequest,
    result: JobResult,
    runner: bool,
) -> RunJobResponse {
    let argv = {
        let mut a = runtime_argv(st, &result);
        a.extend(request.sandbox.command.iter().cloned());
        a
    };
    let mut status = match result.status.protocol_status() {
        "completed" => RunJobStatus::Completed,
        "timeout" => RunJobStatus::Timeout,
        _ => RunJobStatus::Failed,
    };
    let mut exit_code = result.exit_code;
    let mut stderr = result.stderr.text.clone();
    let sba_result = result
        .result_file
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .filter(Value::is_object);
    if runner && matches!(result.status, JobStatus::Succeeded | JobStatus::Failed) {
        match sba_result
            .as_ref()
            .and_then(|v| v.get("status"))
            .and_then(Value::as_str)
        {
            Some("success") => {
                status = RunJobStatus::Completed;
                exit_code = 0;
            }
            Some("failure") => {
                status = RunJobStatus::Failed;
                if exit_code == 0 {
                    exit_code = 1;
                }
            }
            Some("timeout") => status = RunJobStatus::Timeout,
            _ => {
                status = RunJobStatus::Failed;
                let note = if result.result_file.is_some() {
                    "runner result /job/result.json is not a valid result"
                } else {
                    "runner wrote no /job/result.json"
                };
                if !stderr.is_empty() && !stderr.ends_with('\n') {
                    stderr.push('\n');
                }
                stderr.push_str(note);
            }
        }
    }
    if result.status == JobStatus::Cancelled && stderr.is_empty() {
        stderr = "job canceled".into();
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let artifacts = result
        .artifacts
        .files
        .iter()
        .map(|a| JobArtifact {
            path: a.path.clone(),
            size_bytes: a.size_bytes,
            sha256: a.sha256.clone(),
            content_type: a.content_type.clone(),
            content_base64: a.content.as_ref().map(|c| b64.encode(c)),
            skipped: a.skipped.map(|s| s.as_str().to_string()),
        })
        .collect();
    let d = &result.diagnostics;
    RunJobResponse {
        version: 1,
        task_id: result.task_id.clone(),
        job_id: result.job_id.clone(),
        status,
        exit_code,
        stdout: result.stdout.text.clone(),
        stderr,
        started_at: Some(result.started_at),
        ended_at: Some(result.ended_at),
        truncated: Truncated {
            stdout: result.stdout.truncated,
            stderr: result.stderr.truncated,
        },
        sba_result: if runner { sba_result } else { None },
        step_executor_result: None,
        artifacts,
        run_diagnostics: Some(WireDiagnostics {
            runtime: d.runtime.clone(),
            runtime_argv: argv,
            job_dir: d.job_dir.clone(),
            workspace_dir: d.workspace_dir.clone(),
            image: d.image.clone(),
            container_started: d.container_started,
            oom_killed: d.oom_killed,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Telemetry
// ---------------------------------------------------------------------------------------

async fn node_info(State(st): State<WorkerApiState>) -> Response {
    let c = &st.inner.config;
    axum::Json(NodeInfo {
        version: 1,
        node_slug: c.node_slug.clone(),
        build: BuildInfo {
            build_version: if c.build_version.is_empty() {
                "dev".into()
            } else {
                c.build_version.clone()
            },
        },
        platform: PlatformInfo {
            os: telemetry::go_os().into(),
            arch: telemetry::go_arch().into(),
            kernel_version: telemetry::kernel_version(),
        },
    })
    .into_response()
}

async fn node_stats(State(st): State<WorkerApiState>) -> Response {
    let c = &st.inner.config;
    let state_dir = c.state_dir.clone();
    let disk = tokio::task::spawn_blocking(move || telemetry::disk_stats(&state_dir))
        .await
        .unwrap_or(cynode_core::proto::v1::worker::DiskStats {
            state_dir_free_mb: 0,
            state_dir_total_mb: 0,
        });
    axum::Json(NodeStats {
        version: 1,
        captured_at: Utc::now(),
        cpu: telemetry::cpu_stats(),
        memory: telemetry::memory_stats(),
        disk,
        container_runtime: RuntimeInfo {
            runtime: st.inner.driver.runtime().name().to_string(),
            version: c.runtime_version.clone(),
        },
    })
    .into_response()
}

fn parse_limit(q: &HashMap<String, String>, default: usize, max: usize) -> usize {
    q.get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .map_or(default, |n| n.min(max))
}

fn nonempty(q: &HashMap<String, String>, key: &str) -> Option<String> {
    q.get(key).filter(|v| !v.is_empty()).cloned()
}

async fn containers(
    State(st): State<WorkerApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = parse_limit(&q, 100, 1000);
    let offset = match nonempty(&q, "page_token") {
        None => 0,
        Some(t) => match decode_token("c", &t) {
            Some(n) => n,
            None => return Problem::bad_request("invalid page_token").into_response(),
        },
    };
    let filter = ContainerFilter {
        kind: nonempty(&q, "kind"),
        status: nonempty(&q, "status"),
        task_id: nonempty(&q, "task_id"),
        job_id: nonempty(&q, "job_id"),
    };
    let (page, next) = st.inner.telemetry.containers(&filter, limit, offset);
    axum::Json(ContainerList {
        version: 1,
        containers: page,
        next_page_token: next.map(|n| encode_token("c", n)),
    })
    .into_response()
}

async fn container(State(st): State<WorkerApiState>, AxPath(id): AxPath<String>) -> Response {
    match st.inner.telemetry.container(&id) {
        Some(c) => axum::Json(ContainerDetail {
            version: 1,
            container: c,
        })
        .into_response(),
        None => Problem::not_found("Unknown container").into_response(),
    }
}

fn parse_time(q: &HashMap<String, String>, key: &str) -> Result<Option<DateTime<Utc>>, Problem> {
    match nonempty(q, key) {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(&v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| Problem::bad_request(format!("{key}: not an RFC 3339 time"))),
    }
}

async fn logs(
    State(st): State<WorkerApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let source = match (
        q.get("source_kind").map(String::as_str),
        nonempty(&q, "source_name"),
        nonempty(&q, "container_id"),
    ) {
        (Some("service"), Some(name), _) if name == "node_manager" || name == "worker_api" => {
            LogSource::Service(name)
        }
        (Some("container"), _, Some(id)) => LogSource::Container(id),
        _ => {
            return Problem::bad_request(
                "source_kind=service with source_name (node_manager or worker_api), or source_kind=container with container_id, is required",
            )
            .into_response();
        }
    };
    let (since, until) = match (parse_time(&q, "since"), parse_time(&q, "until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(p), _) | (_, Err(p)) => return p.into_response(),
    };
    let after = match nonempty(&q, "page_token") {
        None => None,
        Some(t) => match decode_token("l", &t) {
            Some(n) => Some(n as u64),
            None => return Problem::bad_request("invalid page_token").into_response(),
        },
    };
    let query = LogQuery {
        source,
        stream: nonempty(&q, "stream"),
        since,
        until,
    };
    let limit = parse_limit(&q, 1000, 5000);
    let body = st.inner.telemetry.logs(&query, limit, after);
    let text = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(text))
        .unwrap_or_else(|_| Problem::internal("response failed").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare_matches_equality() {
        assert!(ct_eq(&digest("a"), &digest("a")));
        assert!(!ct_eq(&digest("a"), &digest("b")));
    }

    #[test]
    fn runner_spec_modes_and_models() {
        let p = parse_runner_spec(r#"{"steps":[{"type":"run_command"}]}"#).unwrap();
        assert_eq!(p.mode, RunnerMode::DirectSteps);
        let e = parse_runner_spec(r#"{"execution_mode":"agent_inference"}"#)
            .err()
            .unwrap();
        assert!(e.contains("allowed_models"), "{e}");
        let p = parse_runner_spec(
            r#"{"inference":{"allowed_models":["m"]},"constraints":{"max_runtime_seconds":5}}"#,
        )
        .unwrap();
        assert_eq!(p.mode, RunnerMode::AgentInference);
        assert_eq!(p.allowed_models, ["m"]);
        assert_eq!(p.max_runtime_seconds, Some(5));
        assert!(parse_runner_spec("[1]").is_err());
        assert!(parse_runner_spec("{").is_err());
        assert!(parse_runner_spec(r#"{"execution_mode":"x","steps":[1]}"#).is_err());
    }
}
