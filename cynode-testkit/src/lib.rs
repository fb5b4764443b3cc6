//! # cynode-testkit
//!
//! Test fixtures shared by the CyNodeAI crates. Dev-only: nothing here ships in a
//! release binary.
//!
//! [`MockLlm`] is a deterministic mock LLM server on a real loopback socket. It speaks
//! three wire dialects at once:
//!
//! - **Ollama**: `GET /api/version`, `GET /api/tags`, `POST /api/chat`,
//!   `POST /api/generate` (NDJSON streaming by default, one object with
//!   `"stream": false`), `POST /api/embed`;
//! - **OpenAI**: `GET /v1/models`, `POST /v1/chat/completions` (JSON, or SSE ending in
//!   `data: [DONE]` with `"stream": true`), `POST /v1/embeddings`;
//! - **Anthropic**: `POST /v1/messages` (JSON, or the SSE event sequence with
//!   `"stream": true`); `GET /v1/models` answers in Anthropic's shape when the request
//!   carries an `anthropic-version` header.
//!
//! Replies are deterministic (a fixed text, or an echo of the last user message), every
//! request is captured (method, path, headers, body) so a test can assert which headers
//! and keys arrived, and failures (status codes, delays) can be injected.
//!
//! [`env`] holds the test environment contract: [`service_var`], and with feature `pg`
//! [`env::TestDatabase`], a fresh PostgreSQL database per test.
//!
//! ```no_run
//! # async fn demo() {
//! let (addr, mock) = cynode_testkit::MockLlm::start().await;
//! // ... point a client at http://{addr} ...
//! assert!(mock.requests().is_empty());
//! # let _ = addr;
//! # }
//! ```
//!
//! [`podman`] holds the fixtures of the tests that run sandbox jobs with inference on the
//! test Podman (environment check, trace capture, the `uds-http` job helper).

pub mod podman;

pub mod env;

pub use env::{service_var, with_database};

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The reply the mock gives unless configured otherwise.
pub const DEFAULT_REPLY: &str = "This is a deterministic reply from the mock server.";
/// Fixed `created` timestamp (unix seconds) used in every OpenAI-shaped reply.
pub const CREATED: i64 = 1_700_000_000;
/// Fixed timestamp used in Ollama-shaped replies.
pub const OLLAMA_TS: &str = "2024-01-01T00:00:00Z";
/// Length of the deterministic embedding vectors.
pub const EMBEDDING_DIM: usize = 8;

/// Entry point: start a mock with defaults ([`MockLlm::start`]) or configure one first
/// ([`MockLlm::builder`]).
#[derive(Debug)]
pub struct MockLlm;

impl MockLlm {
    /// Starts a mock with the default configuration on `127.0.0.1:0` and returns its
    /// address and the handle that controls it (dropping the handle stops the server).
    pub async fn start() -> (SocketAddr, MockHandle) {
        Self::builder().start().await
    }

    /// A builder to configure the mock before starting it.
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }
}

/// An injected failure: requests whose path starts with `path_prefix` (any path when
/// `None`) get `status` and `body` instead of a normal answer, `times` times (forever when
/// `None`).
#[derive(Clone, Debug)]
pub struct Failure {
    /// Only paths starting with this prefix fail; `None` matches every path.
    pub path_prefix: Option<String>,
    /// HTTP status to answer with.
    pub status: u16,
    /// How many requests fail; `None` = every matching request.
    pub times: Option<u32>,
    /// Body to send (JSON `{"error":{...}}` when `None`).
    pub body: Option<String>,
    /// Extra delay before this failure is answered.
    pub delay: Option<Duration>,
}

impl Failure {
    /// `times` failures with `status` on every path.
    pub fn status(status: u16, times: u32) -> Self {
        Failure {
            path_prefix: None,
            status,
            times: Some(times),
            body: None,
            delay: None,
        }
    }

    /// Restricts the failure to paths starting with `prefix`.
    pub fn on_path(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Makes the failure permanent.
    pub fn forever(mut self) -> Self {
        self.times = None;
        self
    }

    /// Sets the body sent with the failure.
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Delays the failing answer.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct CapturedRequest {
    /// HTTP method.
    pub method: String,
    /// Path (without the query).
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl CapturedRequest {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone, Debug)]
struct Config {
    reply: String,
    echo: bool,
    echo_auth: bool,
    models: Vec<String>,
    strict_models: bool,
    api_key: Option<String>,
    delay: Duration,
    chunk_delay: Duration,
    failures: Vec<Failure>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reply: DEFAULT_REPLY.to_string(),
            echo: false,
            echo_auth: false,
            models: vec!["mock".to_string(), "mock-large".to_string()],
            strict_models: false,
            api_key: None,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            failures: Vec::new(),
        }
    }
}

/// Configures a [`MockLlm`] before it starts.
#[derive(Debug, Default)]
pub struct MockBuilder {
    config: Config,
}

impl MockBuilder {
    /// The fixed reply text (default [`DEFAULT_REPLY`]).
    pub fn reply(mut self, text: impl Into<String>) -> Self {
        self.config.reply = text.into();
        self
    }

    /// Reply `echo: <last user message>` instead of the fixed text.
    pub fn echo(mut self, on: bool) -> Self {
        self.config.echo = on;
        self
    }

    /// Append the credential the request carried (`Authorization` or `x-api-key`) to the
    /// reply: simulates a provider that echoes a secret, for leak-filter tests.
    pub fn echo_auth(mut self, on: bool) -> Self {
        self.config.echo_auth = on;
        self
    }

    /// Model ids listed by `/api/tags` and `/v1/models` (default `mock`, `mock-large`).
    pub fn models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Answer 404 for models that are not listed (default: any model is accepted).
    pub fn strict_models(mut self, on: bool) -> Self {
        self.config.strict_models = on;
        self
    }

    /// Require this key: `Authorization: Bearer KEY` (OpenAI, Ollama) or `x-api-key: KEY`
    /// (Anthropic); anything else gets the provider's 401.
    pub fn require_api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(key.into());
        self
    }

    /// Delay before every answer.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.config.delay = delay;
        self
    }

    /// Delay between streamed chunks.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.config.chunk_delay = delay;
        self
    }

    /// Adds an injected failure (checked in insertion order).
    pub fn fail(mut self, failure: Failure) -> Self {
        self.config.failures.push(failure);
        self
    }

    /// Binds `127.0.0.1:0` and serves until the handle is dropped.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub async fn start(self) -> (SocketAddr, MockHandle) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock LLM: cannot bind a loopback port");
        let addr = listener.local_addr().expect("mock LLM: no local address");
        let shared = Arc::new(Shared {
            config: Mutex::new(self.config),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        (
            addr,
            MockHandle {
                addr,
                shared,
                shutdown: Some(tx),
                task: Some(task),
            },
        )
    }
}

#[derive(Debug)]
struct Shared {
    config: Mutex<Config>,
    requests: Mutex<Vec<CapturedRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Controls a running mock; dropping it stops the server.
#[derive(Debug)]
pub struct MockHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<CapturedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Forgets the captured requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Adds an injected failure at run time.
    pub fn push_failure(&self, failure: Failure) {
        lock(&self.shared.config).failures.push(failure);
    }

    /// The next `times` requests (any path) fail with `status`.
    pub fn fail_next(&self, status: u16, times: u32) {
        self.push_failure(Failure::status(status, times));
    }

    /// Removes all injected failures.
    pub fn clear_failures(&self) {
        lock(&self.shared.config).failures.clear();
    }

    /// Sets the delay before every answer.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared.config).delay = delay;
    }

    /// Sets the fixed reply text.
    pub fn set_reply(&self, text: impl Into<String>) {
        lock(&self.shared.config).reply = text.into();
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------- request handling

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Ollama,
    OpenAi,
    Anthropic,
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let captured = CapturedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let path = captured.path.clone();
    lock(&shared.requests).push(captured);

    // Take one matching failure (decrementing its budget) and a config snapshot.
    let (config, failure) = {
        let mut cfg = lock(&shared.config);
        let mut hit = None;
        for f in cfg.failures.iter_mut() {
            let matches = f.path_prefix.as_deref().is_none_or(|p| path.starts_with(p));
            let left = f.times.is_none_or(|t| t > 0);
            if matches && left {
                if let Some(t) = f.times.as_mut() {
                    *t -= 1;
                }
                hit = Some(f.clone());
                break;
            }
        }
        (cfg.clone(), hit)
    };

    if !config.delay.is_zero() {
        tokio::time::sleep(config.delay).await;
    }
    if let Some(f) = failure {
        if let Some(d) = f.delay {
            tokio::time::sleep(d).await;
        }
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = f.body.unwrap_or_else(|| {
            json!({"error": {"message": "mock failure", "type": "server_error", "code": f.status}})
                .to_string()
        });
        return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }

    let dialect = if path.starts_with("/api/") {
        Dialect::Ollama
    } else if path == "/v1/messages" || parts.headers.contains_key("anthropic-version") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };

    let presented = presented_key(&parts.headers, dialect);
    if let Some(expected) = &config.api_key
        && presented.as_deref() != Some(expected.as_str())
    {
        return unauthorized(dialect);
    }

    let ctx = Ctx {
        config: &config,
        presented: presented.as_deref(),
    };
    match (&parts.method, path.as_str()) {
        (&Method::GET, "/") => (StatusCode::OK, "Ollama is running").into_response(),
        (&Method::GET, "/health") => (StatusCode::OK, "ok").into_response(),
        (&Method::GET, "/api/version") => json_ok(json!({"version": "0.6.0-mock"})),
        (&Method::GET, "/api/tags") => ollama_tags(&config),
        (&Method::POST, "/api/chat") => with_json(&body, dialect, |b| ollama_chat(&ctx, b, true)),
        (&Method::POST, "/api/generate") => {
            with_json(&body, dialect, |b| ollama_chat(&ctx, b, false))
        }
        (&Method::POST, "/api/embed") => with_json(&body, dialect, ollama_embed),
        (&Method::GET, "/v1/models") if dialect == Dialect::Anthropic => anthropic_models(&config),
        (&Method::GET, "/v1/models") => openai_models(&config),
        (&Method::POST, "/v1/chat/completions") => {
            with_json(&body, dialect, |b| openai_chat(&ctx, b))
        }
        (&Method::POST, "/v1/embeddings") => with_json(&body, dialect, openai_embeddings),
        (&Method::POST, "/v1/messages") => {
            with_json(&body, dialect, |b| anthropic_messages(&ctx, b))
        }
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

struct Ctx<'a> {
    config: &'a Config,
    presented: Option<&'a str>,
}

impl Ctx<'_> {
    /// The deterministic reply text for a request whose last user message is `last_user`.
    fn reply_for(&self, last_user: &str) -> String {
        let mut text = if self.config.echo {
            format!("echo: {last_user}")
        } else {
            self.config.reply.clone()
        };
        if self.config.echo_auth {
            text.push_str(" auth=");
            text.push_str(self.presented.unwrap_or(""));
        }
        text
    }

    fn model_missing(&self, model: &str) -> bool {
        self.config.strict_models && !self.config.models.iter().any(|m| m == model)
    }
}

fn presented_key(headers: &HeaderMap, dialect: Dialect) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
    let x_api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match dialect {
        Dialect::Anthropic => x_api_key.or(bearer),
        _ => bearer.or(x_api_key),
    }
}

fn unauthorized(dialect: Dialect) -> Response {
    let body = match dialect {
        Dialect::Anthropic => {
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        }
        Dialect::Ollama => json!({"error": "unauthorized"}),
        Dialect::OpenAi => {
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
        }
    };
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

fn bad_request(dialect: Dialect, msg: &str) -> Response {
    let body = match dialect {
        Dialect::Anthropic => {
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": msg}})
        }
        Dialect::Ollama => json!({"error": msg}),
        Dialect::OpenAi => {
            json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": null}})
        }
    };
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn model_not_found(dialect: Dialect, model: &str) -> Response {
    let body = match dialect {
        Dialect::Anthropic => {
            json!({"type": "error", "error": {"type": "not_found_error", "message": format!("model: {model}")}})
        }
        Dialect::Ollama => json!({"error": format!("model '{model}' not found")}),
        Dialect::OpenAi => {
            json!({"error": {"message": format!("The model `{model}` does not exist"), "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
        }
    };
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn with_json(body: &Bytes, dialect: Dialect, f: impl FnOnce(&Value) -> Response) -> Response {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => f(&v),
        _ => bad_request(dialect, "invalid JSON body"),
    }
}

fn json_ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

/// Whitespace-separated words of every string in `content`/`text`/`prompt` fields:
/// a cheap, deterministic "token" count.
fn count_tokens(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(a) => a.iter().map(count_tokens).sum(),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "content" | "text" | "prompt" | "messages" | "system"
                )
            })
            .map(|(_, v)| count_tokens(v))
            .sum(),
        _ => 0,
    }
}

/// Text of a message `content` that is either a string or an array of text parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn last_user(body: &Value) -> String {
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        msgs.iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
            .unwrap_or_default()
    } else {
        body.get("prompt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// Deterministic embedding: the first [`EMBEDDING_DIM`] bytes of SHA-256(text), scaled
/// to [-1, 1).
pub fn embedding(text: &str) -> Vec<f64> {
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .take(EMBEDDING_DIM)
        .map(|b| (f64::from(*b) - 128.0) / 128.0)
        .collect()
}

fn inputs(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

fn words(reply: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, w) in reply.split(' ').enumerate() {
        out.push(if i == 0 {
            w.to_string()
        } else {
            format!(" {w}")
        });
    }
    out
}

fn request_id(prefix: &str, body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// A streaming response from pre-rendered chunks, paced by `chunk_delay`.
fn stream_response(content_type: &'static str, chunks: Vec<String>, delay: Duration) -> Response {
    let stream = futures::stream::iter(chunks).then(move |c| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(c))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

// ---------------------------------------------------------------- Ollama

fn ollama_tags(config: &Config) -> Response {
    let models: Vec<Value> = config
        .models
        .iter()
        .map(|m| {
            let digest: String = Sha256::digest(m.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            json!({"name": m, "model": m, "modified_at": OLLAMA_TS, "size": 1_000_000,
                   "digest": digest,
                   "details": {"format": "gguf", "family": "mock", "parameter_size": "1B",
                               "quantization_level": "Q4_0"}})
        })
        .collect();
    json_ok(json!({"models": models}))
}

fn ollama_chat(ctx: &Ctx<'_>, body: &Value, chat: bool) -> Response {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    if ctx.model_missing(&model) {
        return model_not_found(Dialect::Ollama, &model);
    }
    let reply = ctx.reply_for(&last_user(body));
    let prompt_tokens = count_tokens(body);
    let eval = reply.split_whitespace().count() as u64;
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(true);
    let done = |content: &str, is_final: bool| -> Value {
        let mut v = json!({"model": model, "created_at": OLLAMA_TS, "done": is_final});
        if chat {
            v["message"] = json!({"role": "assistant", "content": content});
        } else {
            v["response"] = json!(content);
        }
        if is_final {
            v["done_reason"] = json!("stop");
            v["total_duration"] = json!(1_000_000);
            v["load_duration"] = json!(1000);
            v["prompt_eval_count"] = json!(prompt_tokens);
            v["prompt_eval_duration"] = json!(1000);
            v["eval_count"] = json!(eval);
            v["eval_duration"] = json!(1000);
        }
        v
    };
    if !stream {
        return json_ok(done(&reply, true));
    }
    let mut chunks: Vec<String> = words(&reply)
        .iter()
        .map(|w| format!("{}\n", done(w, false)))
        .collect();
    chunks.push(format!("{}\n", done("", true)));
    stream_response("application/x-ndjson", chunks, ctx.config.chunk_delay)
}

fn ollama_embed(body: &Value) -> Response {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("mock");
    let embeddings: Vec<Vec<f64>> = inputs(body.get("input"))
        .iter()
        .map(|t| embedding(t))
        .collect();
    json_ok(
        json!({"model": model, "embeddings": embeddings, "total_duration": 1000,
                   "load_duration": 10, "prompt_eval_count": count_tokens(body.get("input").unwrap_or(&Value::Null))}),
    )
}

// ---------------------------------------------------------------- OpenAI

fn openai_models(config: &Config) -> Response {
    let data: Vec<Value> = config
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": CREATED, "owned_by": "mock"}))
        .collect();
    json_ok(json!({"object": "list", "data": data}))
}

fn openai_chat(ctx: &Ctx<'_>, body: &Value) -> Response {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    if ctx.model_missing(&model) {
        return model_not_found(Dialect::OpenAi, &model);
    }
    if !body.get("messages").is_some_and(Value::is_array) {
        return bad_request(Dialect::OpenAi, "messages is required");
    }
    let reply = ctx.reply_for(&last_user(body));
    let ptok = count_tokens(body.get("messages").unwrap_or(&Value::Null));
    let ctok = reply.split_whitespace().count() as u64;
    let usage =
        json!({"prompt_tokens": ptok, "completion_tokens": ctok, "total_tokens": ptok + ctok});
    let id = request_id("chatcmpl-mock-", body);
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return json_ok(json!({
            "id": id, "object": "chat.completion", "created": CREATED, "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        }));
    }
    let chunk = |delta: Value, finish: Value| -> String {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                       "system_fingerprint": "fp_mock",
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    chunks.extend(
        words(&reply)
            .iter()
            .map(|w| chunk(json!({"content": w}), Value::Null)),
    );
    chunks.push(chunk(json!({}), json!("stop")));
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if include_usage {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                       "choices": [], "usage": usage});
        chunks.push(format!("data: {c}\n\n"));
    }
    chunks.push("data: [DONE]\n\n".to_string());
    stream_response("text/event-stream", chunks, ctx.config.chunk_delay)
}

fn openai_embeddings(body: &Value) -> Response {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("mock");
    let input = inputs(body.get("input"));
    let data: Vec<Value> = input
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedding(t)}))
        .collect();
    let tokens: u64 = input
        .iter()
        .map(|t| t.split_whitespace().count() as u64)
        .sum();
    json_ok(json!({"object": "list", "data": data, "model": model,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
}

// ---------------------------------------------------------------- Anthropic

fn anthropic_models(config: &Config) -> Response {
    let data: Vec<Value> = config
        .models
        .iter()
        .map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": OLLAMA_TS}))
        .collect();
    json_ok(json!({"data": data, "has_more": false,
                   "first_id": config.models.first(), "last_id": config.models.last()}))
}

fn anthropic_messages(ctx: &Ctx<'_>, body: &Value) -> Response {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    if ctx.model_missing(&model) {
        return model_not_found(Dialect::Anthropic, &model);
    }
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return bad_request(Dialect::Anthropic, "max_tokens: Field required");
    }
    if !body.get("messages").is_some_and(Value::is_array) {
        return bad_request(Dialect::Anthropic, "messages: Field required");
    }
    let reply = ctx.reply_for(&last_user(body));
    let input_tokens = count_tokens(body);
    let output_tokens = reply.split_whitespace().count() as u64;
    let id = request_id("msg_mock_", body);
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return json_ok(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }));
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut chunks = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    chunks.extend(words(&reply).iter().map(|w| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": w}}),
        )
    }));
    chunks.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    chunks.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}}),
    ));
    chunks.push(event("message_stop", json!({"type": "message_stop"})));
    stream_response("text/event-stream", chunks, ctx.config.chunk_delay)
}
