//! The API egress service: the only component that decrypts provider credentials.
//!
//! Sandboxes and agents submit a structured request (`POST /v1/call` with `provider`,
//! `operation`, `params`, `task_id`); the service authenticates the caller, evaluates
//! policy, audits the decision, decrypts the credential, performs the operation with the
//! key injected into the outbound request, scrubs the key from the result, and returns
//! a normalized envelope. Keys never travel to the caller.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cynode_egress::api::{EgressConfig, EgressState, router};
//! let config: EgressConfig = serde_json::from_str(r#"{"allowed": ["openai"]}"#)?;
//! let app = router(EgressState::stub(&config)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:12084").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Routes
//! - `GET /healthz` → `200 ok`.
//! - `POST /v1/call` → see [`router`].
//!
//! # Modes
//! - **Stub** ([`EgressState::stub`]): allow iff the provider is in `allowed`; no
//!   database, no credentials (keyless endpoints only).
//! - **Policy** ([`EgressState::policy`]): the task's creator is the subject; rules,
//!   credential presence, audit rows; the credential is decrypted for the call.
//!
//! # Callers
//! `Authorization: Bearer <token>` where the token is either a job-scoped token
//! ([`JobTokenKey`]; the call must be for that token's task and job) or the static
//! service bearer (`API_EGRESS_BEARER_TOKEN`, for trusted orchestrator services). With
//! neither configured the service is open, as the reference is.
//!
//! In policy mode a job token is accepted only while its job runs: the service looks
//! the job up in the store it evaluates policy with, and a token whose job has ended
//! (completed, failed, canceled, or is no longer `running` for any other reason), or
//! whose job it does not know, is refused like an expired one (`401`). A token that
//! leaks from a finished job is therefore useless even before it expires. Stub mode has
//! no store, so there a job token is good until its expiry.

mod credentials;
mod policy;
mod token;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Extension, Router as AxumRouter,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use cynode_core::{
    Error as CoreError, JobId, TaskId,
    model::JobStatus,
    store::{CredentialStore, Store, TaskStore},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

pub use credentials::{NewCredential, open_credential, store_credential};
pub use policy::{
    ACTION_API_CALL, AccessAudit, AccessControlStore, AccessRule, Decision, Effect, NewAccessRule,
    RESOURCE_PROVIDER_OPERATION, api_call_rule, evaluate, pattern_matches,
};
pub use token::{JobClaims, JobTokenKey, TokenError};

use crate::{
    crypto::{CredentialCipher, Secret},
    router::{
        ChatRequest, HttpClient, HttpConfig, ModelProvider, ProviderConfig, RouterError, map_error,
    },
};

/// Service configuration (typed; the binary fills it from its environment).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Static service bearer (`API_EGRESS_BEARER_TOKEN`); `None`/empty = not accepted.
    pub bearer_token: Option<Secret>,
    /// Key that signs job tokens (standard base64, at least 32 bytes); `None` = job
    /// tokens are not accepted.
    pub job_token_key: Option<Secret>,
    /// Stub-mode provider allowlist (`API_EGRESS_ALLOWED`; default `openai`, `github`).
    /// Ignored in policy mode.
    pub allowed: Vec<String>,
    /// Endpoints of the providers the service can call, by logical provider name.
    /// A provider without an entry has no operation adapter (501 after allow).
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Time budget of one provider operation, in ms (default 120000).
    pub call_timeout_ms: u64,
    /// Largest accepted request body in bytes (default 10 MiB).
    pub max_body_bytes: usize,
    /// Outbound HTTP client.
    pub http: HttpConfig,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            bearer_token: None,
            job_token_key: None,
            allowed: vec!["openai".into(), "github".into()],
            providers: BTreeMap::new(),
            call_timeout_ms: 120_000,
            max_body_bytes: 10 * 1024 * 1024,
            http: HttpConfig::default(),
        }
    }
}

/// What policy mode needs: task lookup, credentials, access-control rules and audit
/// log, and the cipher. Usually all from one store: [`PolicyDeps::from_store`].
#[derive(Clone)]
pub struct PolicyDeps {
    /// Resolves a task's creator.
    pub tasks: Arc<dyn TaskStore>,
    /// Encrypted credentials.
    pub credentials: Arc<dyn CredentialStore>,
    /// Access-control rules (`access_control_rules`) and the audit log
    /// (`access_control_audit_log`).
    pub access: Arc<dyn AccessControlStore>,
    /// Opens credential ciphertexts.
    pub cipher: Arc<CredentialCipher>,
}

impl PolicyDeps {
    /// Everything from one store (memory, SQLite or PostgreSQL).
    pub fn from_store(store: Arc<dyn Store>, cipher: Arc<CredentialCipher>) -> Self {
        PolicyDeps {
            tasks: store.clone(),
            credentials: store.clone(),
            access: store,
            cipher,
        }
    }
}

enum Mode {
    Stub { allowed: Vec<String> },
    Policy(PolicyDeps),
}

struct Inner {
    bearer: Option<Secret>,
    job_key: Option<JobTokenKey>,
    mode: Mode,
    providers: BTreeMap<String, ProviderConfig>,
    http: HttpClient,
    call_timeout: Duration,
    max_body: usize,
}

/// Shared state of the service. Cheap to clone.
#[derive(Clone)]
pub struct EgressState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EgressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressState")
            .field("mode", &self.mode_name())
            .field(
                "providers",
                &self.inner.providers.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl EgressState {
    /// Stub mode: allowlist only, no database.
    pub fn stub(config: &EgressConfig) -> Result<Self, RouterError> {
        let allowed = config
            .allowed
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        Self::build(config, Mode::Stub { allowed })
    }

    /// Policy mode: rules, credentials and audit through `deps`.
    pub fn policy(config: &EgressConfig, deps: PolicyDeps) -> Result<Self, RouterError> {
        Self::build(config, Mode::Policy(deps))
    }

    fn build(config: &EgressConfig, mode: Mode) -> Result<Self, RouterError> {
        let job_key = match &config.job_token_key {
            Some(k) if !k.is_empty() => Some(
                JobTokenKey::from_base64(k)
                    .map_err(|e| RouterError::Config(format!("job_token_key: {e}")))?,
            ),
            _ => None,
        };
        let http = HttpClient::new(&config.http)?;
        // Validate provider endpoints now rather than on the first call.
        for (name, p) in &config.providers {
            p.build(name, &http)?;
        }
        let providers = config
            .providers
            .iter()
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.clone()))
            .collect();
        Ok(EgressState {
            inner: Arc::new(Inner {
                bearer: config.bearer_token.clone().filter(|b| !b.is_empty()),
                job_key,
                mode,
                providers,
                http,
                call_timeout: Duration::from_millis(config.call_timeout_ms),
                max_body: config.max_body_bytes,
            }),
        })
    }

    /// `stub` or `policy`.
    pub fn mode_name(&self) -> &'static str {
        match self.inner.mode {
            Mode::Stub { .. } => "stub",
            Mode::Policy(_) => "policy",
        }
    }
}

/// The egress service as an embeddable router: `GET /healthz` and `POST /v1/call`.
///
/// `POST /v1/call` answers:
/// - `400` problem details `invalid JSON` for a body that is not the request object;
/// - `401` problem details for a missing, unknown, expired or forged token, and (policy
///   mode) for a job token whose job is not running (ended, or unknown to the store);
/// - `503` problem details `failed to resolve job` when (policy mode) the store cannot
///   say whether a job token's job is running;
/// - `403` problem details with the deny reason (stub allowlist, policy steps, or a
///   job token used for another task/job: `token not valid for this task`);
/// - `501` problem details `operation not implemented` after an allow when no adapter
///   exists for the provider/operation;
/// - `200` `{"status":"success","result":{…}}` when the operation succeeded;
/// - `{"status":"error","error":{"type","message","details":{"retryable"}}}` with 400,
///   404, 429, 502 or 504 when the provider call failed.
///
/// Operations implemented for model providers: `chat` (aliases `chat.completions`,
/// `chat_completions`; `params` is an OpenAI-style chat request) and `list_models`.
pub fn router(state: EgressState) -> AxumRouter {
    AxumRouter::new()
        .route(
            "/v1/call",
            post(call).route_layer(middleware::from_fn_with_state(state.clone(), authenticate)),
        )
        .route(
            "/healthz",
            get(|| async {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "ok",
                )
            }),
        )
        .with_state(state)
}

// ---------------------------------------------------------------- responses

fn problem(status: StatusCode, title: &str, detail: Option<&str>) -> Response {
    let mut body = json!({"title": title, "status": status.as_u16()});
    if let Some(d) = detail {
        body["detail"] = json!(d);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn unauthorized() -> Response {
    problem(StatusCode::UNAUTHORIZED, "Unauthorized", None)
}

fn forbidden(reason: &str) -> Response {
    problem(StatusCode::FORBIDDEN, "Forbidden", Some(reason))
}

fn not_implemented() -> Response {
    problem(
        StatusCode::NOT_IMPLEMENTED,
        "Not Implemented",
        Some("operation not implemented"),
    )
}

fn envelope_error(status: StatusCode, kind: &str, message: &str, retryable: bool) -> Response {
    let body = json!({"status": "error", "error": {"type": kind, "message": message, "details": {"retryable": retryable}}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------- authentication

/// Who is calling.
#[derive(Clone, Copy, Debug)]
enum Caller {
    /// No authentication configured.
    Open,
    /// The static service bearer.
    Service,
    /// A job token.
    Job(JobClaims),
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authenticate(State(st): State<EgressState>, mut req: Request, next: Next) -> Response {
    let inner = &st.inner;
    if inner.bearer.is_none() && inner.job_key.is_none() {
        req.extensions_mut().insert(Caller::Open);
        return next.run(req).await;
    }
    let Some(token) = bearer(req.headers()) else {
        tracing::info!(reason = "missing bearer", "api egress caller refused");
        return unauthorized();
    };
    let caller = if let Some(key) = inner
        .job_key
        .as_ref()
        .filter(|_| JobTokenKey::looks_like_job_token(token))
    {
        match key.verify(token, Utc::now()) {
            Ok(claims) => {
                if let Err(refused) = st.job_running(&claims).await {
                    return refused;
                }
                Caller::Job(claims)
            }
            Err(e) => {
                tracing::info!(reason = %e, "api egress caller refused");
                return unauthorized();
            }
        }
    } else if inner
        .bearer
        .as_ref()
        .is_some_and(|b| ct_eq(b.expose().as_bytes(), token.as_bytes()))
    {
        Caller::Service
    } else {
        tracing::info!(reason = "unknown bearer", "api egress caller refused");
        return unauthorized();
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

impl EgressState {
    /// Revocation of job tokens (policy mode): the token's job must exist, belong to
    /// the token's task and be `running`; otherwise the caller is refused like one with
    /// an expired token. Stub mode has no store and accepts the token until it expires.
    async fn job_running(&self, claims: &JobClaims) -> Result<(), Response> {
        let Mode::Policy(deps) = &self.inner.mode else {
            return Ok(());
        };
        let (task_id, job_id) = (claims.task_id.to_string(), claims.job_id.to_string());
        match deps.tasks.get_job(claims.job_id).await {
            Ok(job) if job.task_id == claims.task_id && job.status == JobStatus::Running => Ok(()),
            Ok(job) => {
                tracing::info!(
                    reason = "job not running",
                    %task_id,
                    %job_id,
                    status = job.status.as_str(),
                    "api egress caller refused"
                );
                Err(unauthorized())
            }
            Err(CoreError::NotFound { .. }) => {
                tracing::info!(reason = "job not found", %task_id, %job_id, "api egress caller refused");
                Err(unauthorized())
            }
            Err(e) => {
                tracing::error!(error = %e, %task_id, %job_id, "job lookup failed");
                Err(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                    Some("failed to resolve job"),
                ))
            }
        }
    }
}

// ---------------------------------------------------------------- /v1/call

#[derive(Deserialize)]
struct CallRequest {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    job_id: Option<String>,
    #[serde(default)]
    credential_name: Option<String>,
}

/// The subject and audit context of one evaluation.
struct Evaluation {
    subject: Option<uuid::Uuid>,
    task_id: Option<TaskId>,
    job_id: Option<JobId>,
}

enum Op {
    Chat,
    ListModels,
}

fn operation(op: &str) -> Option<Op> {
    match op {
        "chat" | "chat.completions" | "chat_completions" | "chat.completion" => Some(Op::Chat),
        "list_models" | "models" | "models.list" => Some(Op::ListModels),
        _ => None,
    }
}

async fn call(
    State(st): State<EgressState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let Ok(bytes) = axum::body::to_bytes(body, st.inner.max_body).await else {
        return problem(StatusCode::BAD_REQUEST, "Bad Request", Some("invalid JSON"));
    };
    let Ok(req) = serde_json::from_slice::<CallRequest>(&bytes) else {
        return problem(StatusCode::BAD_REQUEST, "Bad Request", Some("invalid JSON"));
    };
    drop(bytes);
    let provider = req.provider.trim().to_ascii_lowercase();
    let op_name = req.operation.trim().to_ascii_lowercase();
    let resource = format!("{provider}/{op_name}");

    // Bind a job token to its task and job.
    let mut task_text = req.task_id.clone().unwrap_or_default().trim().to_string();
    let mut job_id = None;
    if let Caller::Job(claims) = caller {
        job_id = Some(claims.job_id);
        if task_text.is_empty() {
            task_text = claims.task_id.to_string();
        }
        let task_ok = task_text
            .parse::<TaskId>()
            .is_ok_and(|t| t == claims.task_id);
        let job_ok = req
            .job_id
            .as_deref()
            .is_none_or(|j| j.trim().parse::<JobId>().is_ok_and(|j| j == claims.job_id));
        if !task_ok || !job_ok {
            let eval = Evaluation {
                subject: None,
                task_id: task_text.parse().ok(),
                job_id,
            };
            return st
                .deny(
                    &eval,
                    &provider,
                    &op_name,
                    &resource,
                    "token not valid for this task",
                    started,
                )
                .await;
        }
    }

    // Only well-formed values reach the log (no caller-controlled text in log lines).
    let task_field = task_text
        .parse::<TaskId>()
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "invalid".into());
    let span = tracing::info_span!(
        "api_egress_call",
        provider = %log_safe(&provider),
        operation = %log_safe(&op_name),
        task_id = %task_field
    );
    async move {
        let credential = match &st.inner.mode {
            Mode::Stub { allowed } => {
                let eval = Evaluation { subject: None, task_id: task_text.parse().ok(), job_id };
                if !allowed.contains(&provider) {
                    return st.deny(&eval, &provider, &op_name, &resource, "provider not allowed", started).await;
                }
                log_decision(&eval, &provider, &op_name, Decision::Allow, None);
                None
            }
            Mode::Policy(deps) => {
                match st.evaluate_policy(deps, &task_text, job_id, &provider, &resource, req.credential_name.as_deref()).await {
                    Err((eval, reason)) => {
                        return st.deny(&eval, &provider, &op_name, &resource, reason, started).await;
                    }
                    Ok((eval, cred)) => {
                        st.audit(&eval, &resource, Decision::Allow, None, started).await;
                        log_decision(&eval, &provider, &op_name, Decision::Allow, None);
                        Some((deps.cipher.clone(), cred))
                    }
                }
            }
        };

        let (Some(endpoint), Some(op)) = (st.inner.providers.get(&provider), operation(&op_name)) else {
            return not_implemented();
        };
        // Decrypt only now, just before the outbound call.
        let key = match credential {
            None => None,
            Some((cipher, cred)) => match open_credential(&cipher, &cred) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::error!(credential_id = %cred.id, error = %e, "credential could not be decrypted");
                    return envelope_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "credential unavailable", false);
                }
            },
        };
        if key.is_some() && !endpoint.takes_api_key() {
            return not_implemented();
        }
        let built = match &key {
            Some(k) => endpoint.build_with_key(&provider, &st.inner.http, k.clone()),
            None => endpoint.build(&provider, &st.inner.http),
        };
        let adapter = match built {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "provider adapter could not be built");
                return envelope_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "provider misconfigured", false);
            }
        };
        let outcome = tokio::time::timeout(st.inner.call_timeout, perform(adapter.as_ref(), op, req.params)).await;
        let result = match outcome {
            Ok(r) => r,
            Err(_) => Err(RouterError::Timeout { provider: provider.clone(), after: st.inner.call_timeout }),
        };
        let response = match result {
            Ok(mut v) => {
                if let Some(k) = &key {
                    scrub_value(&mut v, k.expose());
                }
                let body = json!({"status": "success", "result": v});
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
            }
            Err(e) => {
                let mut message = crate::router::scrub_key_like(&e.to_string());
                if let Some(k) = &key {
                    message = message.replace(k.expose(), "[REDACTED]");
                }
                tracing::warn!(kind = e.kind(), error = %message, "provider operation failed");
                let status = match e.root() {
                    RouterError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
                    RouterError::ModelNotFound { .. } => StatusCode::NOT_FOUND,
                    RouterError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                    _ => map_error(&e).0,
                };
                let status = if status == StatusCode::SERVICE_UNAVAILABLE { StatusCode::BAD_GATEWAY } else { status };
                envelope_error(status, e.kind(), &message, e.is_retryable())
            }
        };
        tracing::info!(duration_ms = started.elapsed().as_millis() as u64, status = response.status().as_u16(), "api egress call finished");
        response
    }
    .instrument(span)
    .await
}

/// Runs one operation through a provider adapter and normalizes the result.
async fn perform(
    adapter: &dyn ModelProvider,
    op: Op,
    params: Option<Value>,
) -> Result<Value, RouterError> {
    match op {
        Op::Chat => {
            let params = params.ok_or_else(|| RouterError::InvalidRequest {
                provider: adapter.name().to_string(),
                message: "params are required for chat".into(),
            })?;
            let req: ChatRequest =
                serde_json::from_value(params).map_err(|e| RouterError::InvalidRequest {
                    provider: adapter.name().to_string(),
                    message: format!("invalid chat params: {e}"),
                })?;
            let r = adapter.chat(&req).await?;
            Ok(json!({
                "model": r.model,
                "content": r.content,
                "message": {"role": "assistant", "content": r.content},
                "finish_reason": r.finish_reason,
                "usage": r.usage.map(|u| json!({
                    "prompt_tokens": u.prompt_tokens,
                    "completion_tokens": u.completion_tokens,
                    "total_tokens": u.total(),
                })),
            }))
        }
        Op::ListModels => {
            let models = adapter.list_models().await?;
            Ok(json!({"models": models.iter().map(|m| json!({"id": m.id})).collect::<Vec<_>>()}))
        }
    }
}

/// Replaces every occurrence of `secret` in string values (and keys) of `v`.
fn scrub_value(v: &mut Value, secret: &str) {
    if secret.is_empty() {
        return;
    }
    match v {
        Value::String(s) if s.contains(secret) => *s = s.replace(secret, "[REDACTED]"),
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_value(x, secret)),
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().filter(|k| k.contains(secret)).cloned().collect();
            for k in keys {
                if let Some(val) = o.remove(&k) {
                    o.insert(k.replace(secret, "[REDACTED]"), val);
                }
            }
            o.values_mut().for_each(|x| scrub_value(x, secret));
        }
        _ => {}
    }
}

/// Provider and operation names as logged: at most 64 characters of `[a-z0-9._-]`,
/// anything else replaced by `?`, so a caller cannot forge log lines.
fn log_safe(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn log_decision(
    eval: &Evaluation,
    provider: &str,
    operation: &str,
    decision: Decision,
    reason: Option<&str>,
) {
    tracing::info!(
        event = "api_egress_audit",
        task_id = eval.task_id.map(|t| t.to_string()).unwrap_or_default(),
        job_id = eval.job_id.map(|t| t.to_string()).unwrap_or_default(),
        provider = %log_safe(provider),
        operation = %log_safe(operation),
        decision = decision.as_str(),
        reason = reason.unwrap_or(""),
        "api egress decision"
    );
}

impl EgressState {
    async fn deny(
        &self,
        eval: &Evaluation,
        provider: &str,
        operation: &str,
        resource: &str,
        reason: &str,
        started: std::time::Instant,
    ) -> Response {
        log_decision(eval, provider, operation, Decision::Deny, Some(reason));
        self.audit(eval, resource, Decision::Deny, Some(reason), started)
            .await;
        forbidden(reason)
    }

    /// Writes an audit row in policy mode; a failure is logged and does not change the
    /// answer.
    async fn audit(
        &self,
        eval: &Evaluation,
        resource: &str,
        decision: Decision,
        reason: Option<&str>,
        started: std::time::Instant,
    ) {
        let Mode::Policy(deps) = &self.inner.mode else {
            return;
        };
        let record = AccessAudit {
            id: uuid::Uuid::new_v4(),
            subject_type: "user".into(),
            subject_id: eval.subject,
            action: ACTION_API_CALL.into(),
            resource_type: RESOURCE_PROVIDER_OPERATION.into(),
            resource: resource.to_string(),
            decision,
            reason: reason.map(str::to_string),
            task_id: eval.task_id,
            job_id: eval.job_id,
            duration_ms: Some(i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)),
            created_at: Utc::now(),
        };
        if let Err(e) = deps.access.record_access(record).await {
            tracing::error!(error = %e, "api egress audit write failed");
        }
    }

    /// The policy-mode evaluation, in the contract's order; the first failing step
    /// returns its deny reason.
    async fn evaluate_policy(
        &self,
        deps: &PolicyDeps,
        task_text: &str,
        job_id: Option<JobId>,
        provider: &str,
        resource: &str,
        credential_name: Option<&str>,
    ) -> Result<(Evaluation, cynode_core::model::ApiCredential), (Evaluation, &'static str)> {
        let mut eval = Evaluation {
            subject: None,
            task_id: None,
            job_id,
        };
        if task_text.is_empty() {
            return Err((eval, "task_id required"));
        }
        let Ok(task_id) = task_text.parse::<TaskId>() else {
            return Err((eval, "invalid task_id"));
        };
        eval.task_id = Some(task_id);
        let task = match deps.tasks.get_task(task_id).await {
            Ok(t) => t,
            Err(CoreError::NotFound { .. }) => return Err((eval, "task not found")),
            Err(e) => {
                tracing::error!(error = %e, "task lookup failed");
                return Err((eval, "failed to resolve task"));
            }
        };
        let Some(creator) = task.created_by else {
            return Err((eval, "task has no user context"));
        };
        let subject = creator.as_uuid();
        eval.subject = Some(subject);
        let rules = async {
            let mut r = deps
                .access
                .rules_for_subject(
                    "user",
                    Some(subject),
                    ACTION_API_CALL,
                    RESOURCE_PROVIDER_OPERATION,
                )
                .await?;
            r.extend(
                deps.access
                    .rules_for_subject("system", None, ACTION_API_CALL, RESOURCE_PROVIDER_OPERATION)
                    .await?,
            );
            Ok::<_, CoreError>(r)
        };
        let rules = match rules.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "policy load failed");
                return Err((eval, "failed to load policy"));
            }
        };
        if let Err(reason) = evaluate(&rules, resource) {
            return Err((eval, reason));
        }
        let usable = match deps
            .credentials
            .usable_credentials("user", subject, provider, Utc::now())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "credential lookup failed");
                return Err((eval, "failed to check credential"));
            }
        };
        match credentials::choose(usable, credential_name) {
            Some(c) => Ok((eval, c)),
            None => Err((eval, "no active credential for provider")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_secret_everywhere() {
        let mut v = json!({"a": "x sk-SECRET y", "b": ["sk-SECRET"], "sk-SECRET": 1, "n": 5});
        scrub_value(&mut v, "sk-SECRET");
        let s = v.to_string();
        assert!(!s.contains("sk-SECRET"), "{s}");
        assert_eq!(v["a"], "x [REDACTED] y");
        assert_eq!(v["[REDACTED]"], 1);
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
