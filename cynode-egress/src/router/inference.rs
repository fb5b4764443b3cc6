//! The node-local inference front: the HTTP API a sandbox's inference socket reaches,
//! served by a [`Router`], so local models (the node's Ollama) and external models (the
//! API egress service, holding only a job-scoped token) answer on the same paths.
//!
//! Paths (Ollama and OpenAI dialects, as the per-job inference proxy forwards them):
//! - `POST /api/chat` (Ollama chat; NDJSON stream unless `"stream": false`),
//! - `POST /api/generate` (Ollama completion of `prompt`, optional `system`),
//! - `GET /api/tags` (models the router can serve, Ollama shape),
//! - `POST /v1/chat/completions`, `GET /v1/models` (see
//!   [`openai_compat_router`](super::openai_compat_router)),
//! - `GET /healthz` → `ok`.
//!
//! A request for a model that one target lists goes to that target first
//! ([`Router::options_for_model`]). Embeddings and model management are not served
//! (`501`, and the proxy refuses management paths before they get here). No
//! authentication: mount it where only the node's proxy can reach it (a Unix socket of
//! the worker, as [`JobInference::serve_unix`] does, or in-process behind the proxy),
//! never on a TCP port, which every local process could use.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use axum::{
    Router as AxumRouter,
    body::{Body, Bytes},
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{SecondsFormat, Utc};
use cynode_core::proto::v1::worker::InferenceGrant;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    engine::{Router, RouterConfig, TargetConfig},
    error::RouterError,
    openai_compat::{map_error, openai_compat_router},
    provider::{EgressProviderConfig, OllamaConfig, ProviderConfig},
    routing::{Capabilities, RouteOptions, RoutingPrefs},
    types::{ChatRequest, ChatResponse, Message, Role, Usage},
};
use crate::crypto::Secret;

/// External models one provider serves through the API egress service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalModels {
    /// Provider id as the egress service knows it (`openai`, `anthropic`, …).
    pub provider: String,
    /// Model ids a job may name for it.
    pub models: Vec<String>,
}

/// What one job's inference socket serves: the node's Ollama and, optionally,
/// external models through the API egress service with the job's token. Build the
/// router with [`JobInference::build`] and serve it with [`serve_inference`], or both
/// at once with [`JobInference::serve_unix`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobInference {
    /// Base URL of the node's Ollama; `None` = no local models.
    #[serde(default)]
    pub ollama_url: Option<String>,
    /// Local models (empty = whatever the request names).
    #[serde(default)]
    pub local_models: Vec<String>,
    /// Base URL of the API egress service (needed with `external`).
    #[serde(default)]
    pub api_egress_url: Option<String>,
    /// The job-scoped token the orchestrator issued for this job (never a provider
    /// key).
    #[serde(default)]
    pub token: Option<Secret>,
    /// External providers and their models.
    #[serde(default)]
    pub external: Vec<ExternalModels>,
}

impl JobInference {
    /// What a job with the orchestrator's inference `grant` is served: the node's
    /// Ollama at `ollama_url` (`None` on a node without one: external models only),
    /// any local model, and the grant's external models through its API egress service
    /// with its job token.
    pub fn from_grant(ollama_url: Option<String>, grant: &InferenceGrant) -> Self {
        Self {
            ollama_url,
            local_models: Vec::new(),
            api_egress_url: Some(grant.api_egress_url.clone()),
            token: Some(Secret::new(grant.token.clone())),
            external: grant
                .external
                .iter()
                .map(|e| ExternalModels {
                    provider: e.provider.clone(),
                    models: e.models.clone(),
                })
                .collect(),
        }
    }

    /// The router and route options: local first, external providers allowed (a
    /// request naming an external model goes to its provider).
    pub fn build(&self) -> Result<(Router, RouteOptions), RouterError> {
        let mut config = RouterConfig::default();
        if let Some(url) = &self.ollama_url {
            config.local.push(TargetConfig {
                name: "node".into(),
                provider: ProviderConfig::Ollama(OllamaConfig {
                    base_url: Some(url.clone()),
                    api_key: None,
                }),
                default_model: None,
                models: self.local_models.clone(),
                capabilities: Capabilities::default(),
                pricing: None,
            });
        }
        if !self.external.is_empty() {
            let (Some(base_url), Some(token)) = (&self.api_egress_url, &self.token) else {
                return Err(RouterError::Config(
                    "external models need api_egress_url and a job token".into(),
                ));
            };
            for e in &self.external {
                config.external.push(TargetConfig {
                    name: e.provider.clone(),
                    provider: ProviderConfig::Egress(EgressProviderConfig {
                        base_url: base_url.clone(),
                        provider: e.provider.clone(),
                        token: token.clone(),
                        task_id: None,
                    }),
                    default_model: None,
                    models: e.models.clone(),
                    capabilities: Capabilities::default(),
                    pricing: None,
                });
            }
        }
        let router = Router::from_config(&config)?;
        let opts = RouteOptions {
            prefs: RoutingPrefs {
                allowed_external_providers: self
                    .external
                    .iter()
                    .map(|e| e.provider.clone())
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        };
        Ok((router, opts))
    }
}

/// One job's inference front serving on a Unix socket (see
/// [`JobInference::serve_unix`]). Dropping it stops serving and removes the socket and
/// its private directory.
#[derive(Debug)]
pub struct JobFront {
    url: String,
    socket: PathBuf,
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl JobFront {
    /// Upstream URL of the front for the job's inference proxy
    /// (`unix:///…/front.sock`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The socket's path (mode 0600, in a 0700 directory of its own).
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }
}

impl Drop for JobFront {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Name of a front's socket inside its directory.
const FRONT_SOCKET: &str = "front.sock";

impl JobInference {
    /// Builds the job's router and serves [`inference_router`] over it on a Unix
    /// socket until the returned [`JobFront`] is dropped. The socket (mode 0600) lives
    /// in a new directory of its own (mode 0700, random name) under `parent` (created,
    /// 0700, if missing), so only the worker's user can connect: the front holds the
    /// job's token, and answers anyone who reaches it. Meant for a worker node: the
    /// job's inference proxy forwards to [`JobFront::url`] (`unix://…`); nothing
    /// inside a sandbox can reach the socket, which is never mounted into one.
    pub async fn serve_unix(&self, parent: &Path) -> Result<JobFront, RouterError> {
        let (router, opts) = self.build()?;
        let err = |what: &str, e: std::io::Error| {
            RouterError::Config(format!("job inference socket: {what}: {e}"))
        };
        let dir = parent.join(&uuid::Uuid::new_v4().simple().to_string()[..16]);
        let created = {
            let (parent, dir) = (parent.to_path_buf(), dir.clone());
            tokio::task::spawn_blocking(move || private_dir(&parent, &dir))
                .await
                .map_err(|e| RouterError::Config(format!("job inference socket: {e}")))?
        };
        created.map_err(|e| err(&format!("create {}", dir.display()), e))?;
        let socket = dir.join(FRONT_SOCKET);
        let bound = tokio::net::UnixListener::bind(&socket).and_then(|l| {
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
            Ok(l)
        });
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_file(&socket);
                let _ = std::fs::remove_dir(&dir);
                return Err(err(&format!("bind {}", socket.display()), e));
            }
        };
        let task = tokio::spawn(async move {
            if let Err(e) = serve_inference(listener, Arc::new(router), opts).await {
                tracing::warn!(error = %e, "job inference front stopped");
            }
        });
        Ok(JobFront {
            url: format!("unix://{}", socket.display()),
            socket,
            dir,
            task,
        })
    }
}

/// Creates `parent` (0700 for what it creates) and then `dir`, which must not exist,
/// with mode 0700.
fn private_dir(parent: &Path, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !parent.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    // Whatever the umask left: exactly 0700.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[derive(Clone)]
struct FrontState {
    router: Arc<Router>,
    opts: Arc<RouteOptions>,
}

/// The inference front over `router` (see the module docs), routing every request
/// with `opts` (plus the model's own target, when one lists it).
pub fn inference_router(router: Arc<Router>, opts: RouteOptions) -> AxumRouter {
    let st = FrontState {
        router: router.clone(),
        opts: Arc::new(opts.clone()),
    };
    AxumRouter::new()
        .route("/api/chat", post(ollama_chat))
        .route("/api/generate", post(ollama_generate))
        .route("/api/tags", get(ollama_tags))
        .route("/api/embed", post(not_served))
        .route("/api/embeddings", post(not_served))
        .route("/v1/embeddings", post(not_served))
        .route("/v1/completions", post(not_served))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(st)
        .merge(openai_compat_router(router, opts))
}

/// Serves [`inference_router`] on `listener` (a `tokio::net::TcpListener` or
/// `UnixListener`) until the listener fails.
pub async fn serve_inference<L>(
    listener: L,
    router: Arc<Router>,
    opts: RouteOptions,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, inference_router(router, opts)).await
}

fn ollama_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

fn routed_error(e: &RouterError) -> Response {
    tracing::warn!(kind = e.kind(), error = %e, "inference request failed");
    let (status, message, _) = map_error(e);
    ollama_error(status, message)
}

async fn not_served() -> Response {
    ollama_error(
        StatusCode::NOT_IMPLEMENTED,
        "this inference endpoint is not served on this node",
    )
}

/// Ollama's `options` (the ones that map onto the provider-neutral request).
#[derive(Deserialize, Default)]
struct OllamaOptions {
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    num_predict: Option<i64>,
    #[serde(default, deserialize_with = "super::types::stop_list")]
    stop: Vec<String>,
}

#[derive(Deserialize)]
struct OllamaChat {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<OllamaOptions>,
}

#[derive(Deserialize)]
struct OllamaGenerate {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<OllamaOptions>,
}

fn chat_request(model: String, messages: Vec<Message>, o: Option<OllamaOptions>) -> ChatRequest {
    let o = o.unwrap_or_default();
    ChatRequest {
        model,
        messages,
        temperature: o.temperature,
        top_p: o.top_p,
        // Ollama: -1 = unlimited, -2 = fill the context.
        max_tokens: o
            .num_predict
            .filter(|n| *n > 0)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        stop: o.stop,
    }
}

/// Which field carries the text: `message` (`/api/chat`) or `response`
/// (`/api/generate`).
#[derive(Clone, Copy)]
enum Dialect {
    Chat,
    Generate,
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn object(dialect: Dialect, model: &str, text: &str, done: bool) -> Value {
    let mut v = json!({"model": model, "created_at": now_rfc3339(), "done": done});
    match dialect {
        Dialect::Chat => v["message"] = json!({"role": Role::Assistant.as_str(), "content": text}),
        Dialect::Generate => v["response"] = json!(text),
    }
    v
}

fn finish(v: &mut Value, reason: Option<&str>, usage: Option<Usage>, started: Instant) {
    v["done_reason"] = json!(reason.unwrap_or("stop"));
    v["total_duration"] = json!(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    if let Some(u) = usage {
        v["prompt_eval_count"] = json!(u.prompt_tokens);
        v["eval_count"] = json!(u.completion_tokens);
    }
}

fn complete(dialect: Dialect, r: &ChatResponse, started: Instant) -> Response {
    let mut v = object(dialect, &r.model, &r.content, true);
    finish(&mut v, r.finish_reason.as_deref(), r.usage, started);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn answer(st: FrontState, req: ChatRequest, stream: bool, dialect: Dialect) -> Response {
    if req.messages.is_empty() {
        return ollama_error(
            StatusCode::BAD_REQUEST,
            "messages is required and must be non-empty",
        );
    }
    let started = Instant::now();
    let opts = st.router.options_for_model(&st.opts, &req.model);
    if !stream {
        return match st.router.chat(&req, &opts).await {
            Ok(r) => complete(dialect, &r.value, started),
            Err(e) => routed_error(&e),
        };
    }
    let routed = match st.router.chat_stream(&req, &opts).await {
        Ok(r) => r,
        Err(e) => return routed_error(&e),
    };
    let model = req.model.clone();
    let lines = routed.value.map(move |item| {
        let line = match item {
            Ok(d) if d.finish_reason.is_some() => {
                let mut v = object(dialect, &model, &d.content, true);
                finish(&mut v, d.finish_reason.as_deref(), d.usage, started);
                v
            }
            Ok(d) => object(dialect, &model, &d.content, false),
            Err(e) => {
                tracing::warn!(kind = e.kind(), error = %e, "inference stream failed");
                json!({"error": map_error(&e).1})
            }
        };
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        Ok::<Bytes, std::io::Error>(Bytes::from(bytes))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| ollama_error(StatusCode::INTERNAL_SERVER_ERROR, "stream failed"))
}

async fn ollama_chat(State(st): State<FrontState>, body: Bytes) -> Response {
    let Ok(r) = serde_json::from_slice::<OllamaChat>(&body) else {
        return ollama_error(StatusCode::BAD_REQUEST, "invalid request body");
    };
    let stream = r.stream.unwrap_or(true);
    answer(
        st,
        chat_request(r.model, r.messages, r.options),
        stream,
        Dialect::Chat,
    )
    .await
}

async fn ollama_generate(State(st): State<FrontState>, body: Bytes) -> Response {
    let Ok(r) = serde_json::from_slice::<OllamaGenerate>(&body) else {
        return ollama_error(StatusCode::BAD_REQUEST, "invalid request body");
    };
    let mut messages = Vec::new();
    if let Some(s) = r.system.filter(|s| !s.is_empty()) {
        messages.push(Message::system(s));
    }
    if !r.prompt.is_empty() {
        messages.push(Message::user(r.prompt));
    }
    let stream = r.stream.unwrap_or(true);
    answer(
        st,
        chat_request(r.model, messages, r.options),
        stream,
        Dialect::Generate,
    )
    .await
}

async fn ollama_tags(State(st): State<FrontState>) -> Response {
    let models: Vec<Value> = st
        .router
        .available_models()
        .await
        .into_iter()
        .map(|m| json!({"name": m.id, "model": m.id, "details": {"family": m.provider}}))
        .collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "models": models }).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_inference_builds_local_and_external_targets() {
        let j: JobInference = serde_json::from_value(json!({
            "ollama_url": "http://127.0.0.1:11434",
            "api_egress_url": "http://127.0.0.1:12084",
            "token": "cnj1.x.y",
            "external": [{"provider": "openai", "models": ["gpt-4o-mini"]}]
        }))
        .unwrap();
        let (router, opts) = j.build().unwrap();
        assert_eq!(router.targets().len(), 2);
        assert_eq!(router.target_for_model("gpt-4o-mini"), Some("openai"));
        assert_eq!(opts.prefs.allowed_external_providers, vec!["openai"]);
        assert!(format!("{j:?}").contains("REDACTED") || !format!("{j:?}").contains("cnj1.x.y"));

        let no_token = JobInference {
            token: None,
            ..j.clone()
        };
        assert!(matches!(no_token.build(), Err(RouterError::Config(_))));
        let local_only = JobInference {
            external: vec![],
            token: None,
            api_egress_url: None,
            ..j
        };
        let (router, opts) = local_only.build().unwrap();
        assert_eq!(router.targets().len(), 1);
        assert!(opts.prefs.allowed_external_providers.is_empty());
    }

    #[test]
    fn a_grant_becomes_the_node_model_plus_its_external_models_with_the_job_token() {
        use cynode_core::proto::v1::worker::ExternalModelGrant;
        let grant = InferenceGrant {
            token: "cnj1.a.b".into(),
            api_egress_url: "http://egress:12084".into(),
            external: vec![ExternalModelGrant {
                provider: "anthropic".into(),
                models: vec!["claude-x".into()],
            }],
        };
        let j = JobInference::from_grant(Some("http://127.0.0.1:11434".into()), &grant);
        assert_eq!(j.ollama_url.as_deref(), Some("http://127.0.0.1:11434"));
        assert!(j.local_models.is_empty());
        assert_eq!(j.api_egress_url.as_deref(), Some("http://egress:12084"));
        assert_eq!(j.token.as_ref().map(Secret::expose), Some("cnj1.a.b"));
        let (router, opts) = j.build().unwrap();
        assert_eq!(router.targets().len(), 2);
        assert_eq!(router.target_for_model("claude-x"), Some("anthropic"));
        assert_eq!(opts.prefs.allowed_external_providers, vec!["anthropic"]);

        let external_only = JobInference::from_grant(None, &grant);
        assert_eq!(external_only.build().unwrap().0.targets().len(), 1);
    }
}
