//! OpenAI-compatible chat (§7): `POST /v1/chat/completions`, plain or streamed, with
//! server-side threads (§8.1), secret redaction (§7.5), a chat audit record per
//! completion, a completion deadline and retries through the model router.
//!
//! Inference always goes through a [`cynode_egress::router::Router`] handed to the
//! gateway as a [`ChatInference`]. Model ids:
//!
//! - `cynodeai.pm` (or an empty/absent `model`): the project manager surface. No PM
//!   agent process exists in this codebase yet, so the gateway serves it itself: the
//!   configured PM model ([`ChatConfig::pm_model`], default the gateway's
//!   `inference_model`) through the router with the project-manager routing options,
//!   behind the system prompt [`PM_SYSTEM_PROMPT`] (configurable).
//! - any other id: direct inference of that model through the router with the direct
//!   routing options (a target maps ids it does not serve to its default model).
//!
//! When the gateway has no inference configured at all, every completion answers `503`
//! `model_unavailable` with a message saying how to configure one
//! ([`MSG_NO_INFERENCE`]).
//!
//! Processing order: decode (`400` `Invalid request body`), non-empty `messages`,
//! effective model, project from `OpenAI-Project`, redaction of every message, the
//! last `user` message (`400` otherwise), the active thread, the context, routing
//! within the deadline (`504` when it passes; transient errors are retried by the
//! router's budget, then `502`), redaction of the answer, then one transaction that
//! stores the user's message, the answer and the audit record
//! ([`ChatStore::append_turn`](cynode_core::store::ChatStore::append_turn)), and only
//! then the answer. A completion that fails stores the user's message and its audit
//! record the same way, so every request's message is kept.
//!
//! Deliberate differences from the reference gateway (documented in the module docs of
//! [`crate::gateway`] too):
//! - context is the newest messages of the thread (at most
//!   [`ChatConfig::history_max_messages`], oldest first), so the newest user turn is
//!   always in it; when the request carries more than one message, the (redacted)
//!   request messages are the context instead of the thread history;
//! - other model ids are passed to the router instead of always using the configured
//!   model; the direct path sends the whole context, not just the last user message;
//! - OpenAI content-part arrays are accepted (their text parts are joined);
//! - `temperature`, `top_p`, `max_tokens`/`max_completion_tokens` and `stop` are
//!   passed on; `stream: true` streams (§7.7);
//! - an `OpenAI-Project` UUID naming no project is `400` (a non-UUID value is still
//!   ignored); failed completions are audited too (`error`, `timeout`, `canceled`);
//! - answers are redacted like requests, so a secret echoed by a model is neither
//!   stored nor returned;
//! - `GET /v1/models` also lists the models the router's targets report (listed in
//!   the background, cached for a minute);
//! - the user's message is stored with the answer, in the same transaction, instead
//!   of in its own before routing: one durable commit per completion instead of two
//!   (three with the audit record). The difference shows only while a completion is
//!   running (its user message is not listed yet) and when the process dies during
//!   one (its user message was never acknowledged and is not kept).

mod redact;
pub(crate) mod threads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cynode_core::model::{AuditRecord, ChatAudit, ChatRole};
use cynode_core::store::{ChatTurn, NewChatMessage};
use cynode_core::{AuditId, Error, ProjectId, ThreadId, UserId};
use cynode_egress::router::{
    ChatRequest, ChatStream, Message, Role, RouteOptions, Router, RouterError,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json as j};
use utoipa::ToSchema;

pub use redact::{KIND_API_KEY, REDACTED, Redactor, StreamRedactor};

use super::auth::AuthUser;
use super::error::ProblemDetails;
use super::http::{RequestId, json, read_body};
use super::openai_error::{MSG_INVALID_BODY, MSG_MESSAGES_REQUIRED, MSG_USER_REQUIRED};
use super::openai_error::{OpenAiError, OpenAiErrorBody};
use super::state::GatewayState;

/// The stable model id of the project manager surface.
pub const PM_MODEL_ID: &str = "cynodeai.pm";

/// The default system prompt of `cynodeai.pm`.
pub const PM_SYSTEM_PROMPT: &str = "You are the CyNodeAI Project Manager, the assistant of a \
local-first multi-agent orchestrator. Help the user plan and track their projects and tasks: \
answer questions directly, break work into concrete tasks when asked, and say plainly when you \
do not know something. Never reveal or ask for secrets such as API keys or passwords.";

/// What a completion answers when the gateway has no inference configured.
pub const MSG_NO_INFERENCE: &str = "No inference path is configured: set OLLAMA_BASE_URL to an \
Ollama-compatible endpoint (for example http://127.0.0.1:11434) or configure an external \
provider API key (for example OPENAI_API_KEY or ANTHROPIC_API_KEY), then restart the orchestrator";

/// Chat settings (part of [`GatewayConfig`](super::GatewayConfig) as `chat`). Every
/// field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Model that serves `cynodeai.pm` (default empty: the gateway's
    /// `inference_model`).
    pub pm_model: String,
    /// System prompt put before the context of `cynodeai.pm` (default
    /// [`PM_SYSTEM_PROMPT`]; empty sends none).
    pub pm_system_prompt: String,
    /// Overall deadline of one completion in milliseconds, retries included (default
    /// 200000). When it passes the answer is `504` `cynodeai_completion_timeout`. Keep
    /// it below `request_timeout_secs`.
    pub completion_deadline_ms: u64,
    /// Thread messages used as context, newest kept (default 40).
    pub history_max_messages: usize,
    /// Characters of context, the oldest messages dropped first; the newest message is
    /// always kept (default 24000).
    pub history_max_chars: usize,
    /// A scope's newest thread is reused when it changed within this many seconds
    /// (default 7200 = 2 h).
    pub active_thread_secs: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            pm_model: String::new(),
            pm_system_prompt: PM_SYSTEM_PROMPT.into(),
            completion_deadline_ms: 200_000,
            history_max_messages: 40,
            history_max_chars: 24_000,
            active_thread_secs: 7200,
        }
    }
}

/// The inference the chat surface uses: a model router and the routing options of its
/// two paths, plus literal secrets (provider keys the embedder holds) that must never
/// pass through chat in either direction.
#[derive(Clone)]
pub struct ChatInference {
    router: Arc<Router>,
    pm_route: RouteOptions,
    direct_route: RouteOptions,
    secrets: Vec<String>,
}

impl std::fmt::Debug for ChatInference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatInference")
            .field("router", &self.router)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl ChatInference {
    /// Inference through `router` with default routing options (prefer local, no
    /// external provider) on both paths.
    pub fn new(router: Arc<Router>) -> Self {
        Self {
            router,
            pm_route: RouteOptions::default(),
            direct_route: RouteOptions::default(),
            secrets: Vec::new(),
        }
    }
    /// Routing options of `cynodeai.pm` (e.g. resolved with
    /// `AgentRole::ProjectManager`).
    pub fn pm_route(mut self, opts: RouteOptions) -> Self {
        self.pm_route = opts;
        self
    }
    /// Routing options of direct inference.
    pub fn direct_route(mut self, opts: RouteOptions) -> Self {
        self.direct_route = opts;
        self
    }
    /// A literal secret (e.g. a provider key in the router's configuration) to redact
    /// wherever it shows up in chat text.
    pub fn secret(mut self, value: impl Into<String>) -> Self {
        self.secrets.push(value.into());
        self
    }
    /// The router.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }
}

/// Chat state inside the gateway state.
pub(crate) struct ChatRuntime {
    pub(crate) inference: Option<ChatInference>,
    pub(crate) redactor: Redactor,
    scope_locks: Vec<tokio::sync::Mutex<()>>,
    /// Model ids the router's targets reported, refreshed in the background.
    models: Arc<std::sync::Mutex<ModelCache>>,
}

/// How long a router model listing is used before it is refreshed.
const MODELS_TTL: Duration = Duration::from_secs(60);
/// How long one listing of the router's models may take.
const MODELS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct ModelCache {
    ids: Vec<String>,
    fetched: Option<Instant>,
    refreshing: bool,
}

impl ChatRuntime {
    pub(crate) fn new(inference: Option<ChatInference>) -> Self {
        let redactor = Redactor::new(
            inference
                .as_ref()
                .map(|i| i.secrets.clone())
                .unwrap_or_default(),
        );
        Self {
            inference: inference.filter(|i| !i.router.targets().is_empty()),
            redactor,
            scope_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            models: Arc::default(),
        }
    }

    /// Model ids the router's targets offer, as last listed (empty until the first
    /// listing finished). A stale or missing listing starts a refresh in the
    /// background, so `GET /v1/models` never waits for an upstream.
    pub(crate) fn router_models(&self) -> Vec<String> {
        let Some(inference) = &self.inference else {
            return Vec::new();
        };
        let mut cache = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let stale = cache.fetched.is_none_or(|t| t.elapsed() > MODELS_TTL);
        if stale
            && !cache.refreshing
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            cache.refreshing = true;
            let router = inference.router.clone();
            let slot = self.models.clone();
            rt.spawn(async move {
                let listed = tokio::time::timeout(MODELS_TIMEOUT, router.list_models()).await;
                let mut ids: Vec<String> = match listed {
                    Ok(per_target) => per_target
                        .into_iter()
                        .filter_map(|(target, r)| match r {
                            Ok(models) => Some(models),
                            Err(e) => {
                                tracing::debug!(target_name = %target, error = %e, "model listing failed");
                                None
                            }
                        })
                        .flatten()
                        .map(|m| m.id)
                        .filter(|id| !id.trim().is_empty() && id.len() <= 256)
                        .collect(),
                    Err(_) => Vec::new(),
                };
                ids.sort();
                ids.dedup();
                let mut cache = slot.lock().unwrap_or_else(|p| p.into_inner());
                cache.ids = ids;
                cache.fetched = Some(Instant::now());
                cache.refreshing = false;
            });
        }
        cache.ids.clone()
    }

    /// Serialises "find or create the active thread" per scope, so parallel requests
    /// of one scope share a thread.
    async fn lock_scope(
        &self,
        user: UserId,
        project: Option<ProjectId>,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (user, project).hash(&mut h);
        let i = (h.finish() % self.scope_locks.len() as u64) as usize;
        self.scope_locks[i].lock().await
    }
}

// ---------------------------------------------------------------- wire types

/// One message of a completion request.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatMessageIn {
    /// `system`, `developer`, `user`, `assistant` (other roles are kept in storage
    /// rules but left out of the model context).
    pub role: String,
    /// Text: a string, or an array of OpenAI content parts whose `text` parts are
    /// joined.
    #[serde(default, deserialize_with = "content_text")]
    #[schema(value_type = String)]
    pub content: String,
}

fn content_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match p.get("text").and_then(Value::as_str) {
                    Some(t) => out.push_str(t),
                    None if p.get("type").and_then(Value::as_str) == Some("text") => {
                        return Err(serde::de::Error::custom("text part without text"));
                    }
                    None => {}
                }
            }
            Ok(out)
        }
        _ => Err(serde::de::Error::custom(
            "content must be a string or an array of content parts",
        )),
    }
}

/// `POST /v1/chat/completions` body. Unknown fields are ignored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ChatCompletionsRequest {
    /// `cynodeai.pm` (default when absent or empty) or a model id.
    pub model: Option<String>,
    /// The conversation, oldest first; required, non-empty.
    #[schema(required = true, min_items = 1, value_type = Vec<ChatMessageIn>)]
    pub messages: Option<Vec<ChatMessageIn>>,
    /// Stream the answer as server-sent events.
    #[schema(value_type = Option<bool>)]
    pub stream: Option<Value>,
    /// Sampling temperature (passed on when a number).
    #[schema(value_type = Option<f64>)]
    pub temperature: Option<Value>,
    /// Nucleus sampling (passed on when a number).
    #[schema(value_type = Option<f64>)]
    pub top_p: Option<Value>,
    /// Cap on generated tokens (passed on when a positive integer).
    #[schema(value_type = Option<u32>)]
    pub max_tokens: Option<Value>,
    /// Same as `max_tokens` (newer OpenAI spelling).
    #[schema(value_type = Option<u32>)]
    pub max_completion_tokens: Option<Value>,
    /// Stop sequence(s) (passed on when strings).
    #[schema(value_type = Option<Vec<String>>)]
    pub stop: Option<Value>,
}

/// The assistant message of a completion.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The (redacted) answer.
    pub content: String,
}

/// The one choice of a completion.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: AssistantMessage,
    /// `stop`, `length`, …
    pub finish_reason: String,
}

/// `POST /v1/chat/completions` answer (non-streaming).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionsResponse {
    /// A bare UUID.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The effective model id.
    pub model: String,
    /// Exactly one choice.
    pub choices: Vec<ChatChoice>,
}

// ---------------------------------------------------------------- pipeline

/// Everything decided before the model is called.
struct Prepared {
    user: UserId,
    project: Option<ProjectId>,
    model_id: String,
    thread: ThreadId,
    /// The (redacted) user message, stored with the outcome.
    user_message: NewChatMessage,
    request: ChatRequest,
    pm: bool,
    stream: bool,
    redacted: bool,
    started: Instant,
    request_id: Option<String>,
}

fn number(v: &Option<Value>) -> Option<f32> {
    v.as_ref().and_then(Value::as_f64).map(|f| f as f32)
}

fn count(v: &Option<Value>) -> Option<u32> {
    v.as_ref()
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn stops(v: &Option<Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn context_role(role: &str) -> Option<Role> {
    match role.trim().to_ascii_lowercase().as_str() {
        "system" | "developer" => Some(Role::System),
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    }
}

/// The `OpenAI-Project` scope: a UUID naming an existing project, or none. A value
/// that is not a UUID is ignored.
pub(crate) async fn project_scope(
    st: &GatewayState,
    headers: &HeaderMap,
    storage_error: &'static str,
) -> Result<Option<ProjectId>, OpenAiError> {
    let Some(id) = headers
        .get("openai-project")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<ProjectId>().ok())
    else {
        return Ok(None);
    };
    match st.inner.store.get_project(id).await {
        Ok(p) => Ok(Some(p.id)),
        Err(Error::NotFound { .. }) => Err(OpenAiError::invalid_request(
            "OpenAI-Project names no project",
        )),
        Err(e) => Err(OpenAiError::internal(storage_error).with_source(e)),
    }
}

/// The scope's active thread: its newest, if that changed within the window, else a
/// new one.
async fn active_thread(
    st: &GatewayState,
    user: UserId,
    project: Option<ProjectId>,
) -> Result<ThreadId, OpenAiError> {
    const FAILED: &str = "Failed to get chat thread";
    let _scope = st.inner.chat.lock_scope(user, project).await;
    let store = &st.inner.store;
    let newest = store
        .newest_thread(user, project)
        .await
        .map_err(|e| OpenAiError::internal(FAILED).with_source(e))?;
    let window = chrono::Duration::seconds(
        i64::try_from(st.config().chat.active_thread_secs).unwrap_or(i64::MAX),
    );
    if let Some(t) = newest
        && st.now().signed_duration_since(t.updated_at) <= window
    {
        return Ok(t.id);
    }
    store
        .create_thread(user, project, None)
        .await
        .map(|t| t.id)
        .map_err(|e| OpenAiError::internal(FAILED).with_source(e))
}

/// The newest `max_messages` thread messages, oldest first, trimmed from the oldest
/// end to `max_chars` characters; the newest message is always kept.
fn trim_history(mut msgs: Vec<Message>, max_messages: usize, max_chars: usize) -> Vec<Message> {
    if msgs.len() > max_messages.max(1) {
        msgs.drain(..msgs.len() - max_messages.max(1));
    }
    let mut total: usize = msgs.iter().map(|m| m.content.chars().count()).sum();
    while msgs.len() > 1 && total > max_chars {
        total -= msgs[0].content.chars().count();
        msgs.remove(0);
    }
    msgs
}

async fn prepare(
    st: &GatewayState,
    user: &AuthUser,
    headers: &HeaderMap,
    request_id: Option<String>,
    body: Body,
) -> Result<Prepared, OpenAiError> {
    let started = Instant::now();
    let cfg = st.config();
    // 1. Decode.
    let bytes = read_body(body, cfg.max_body_bytes).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            OpenAiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "Request body too large",
            )
        } else {
            OpenAiError::invalid_request(MSG_INVALID_BODY)
        }
    })?;
    // Only a JSON object is a request (serde would also take an array for a struct).
    let body: ChatCompletionsRequest = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| OpenAiError::invalid_request(MSG_INVALID_BODY))
        .and_then(|v| {
            serde_json::from_value(v)
                .map_err(|e| OpenAiError::invalid_request(MSG_INVALID_BODY).with_source(e))
        })?;
    // 2. Messages.
    let messages = body.messages.clone().unwrap_or_default();
    if messages.is_empty() {
        return Err(OpenAiError::invalid_request(MSG_MESSAGES_REQUIRED));
    }
    // 3. Effective model.
    let model_id = body
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(PM_MODEL_ID)
        .to_string();
    let pm = model_id == PM_MODEL_ID;
    // 4. Project.
    let project = project_scope(st, headers, "Failed to get chat thread").await?;
    // 5. Redaction of every message.
    let redactor = &st.inner.chat.redactor;
    let mut redacted = false;
    let messages: Vec<(String, String)> = messages
        .into_iter()
        .map(|m| {
            let (text, hit) = redactor.redact(&m.content);
            redacted |= hit;
            (m.role, text)
        })
        .collect();
    // 6. The last user message.
    let Some(last_user) = messages
        .iter()
        .rev()
        .find(|(role, _)| role.trim().eq_ignore_ascii_case("user"))
        .map(|(_, text)| text.clone())
    else {
        return Err(OpenAiError::invalid_request(MSG_USER_REQUIRED));
    };
    // 7. The active thread; the user's message is stored with the outcome.
    let thread = active_thread(st, user.id, project).await?;
    let user_message =
        NewChatMessage::new(ChatRole::User, last_user).with_metadata(j!({"model_id": model_id}));
    // 8. Context (not needed when there is no inference to send it to): the request's
    // messages when it carries more than one, else the thread's newest messages and
    // this one.
    let chat = &cfg.chat;
    let request_context = || -> Vec<Message> {
        messages
            .iter()
            .filter_map(|(role, text)| context_role(role).map(|r| Message::new(r, text.clone())))
            .collect()
    };
    let mut context = if st.inner.chat.inference.is_none() {
        Vec::new()
    } else if messages.len() > 1 {
        request_context()
    } else {
        let limit = u32::try_from(chat.history_max_messages.saturating_sub(1)).unwrap_or(u32::MAX);
        match st.inner.store.recent_messages(thread, limit).await {
            Ok(history) => history
                .into_iter()
                .filter_map(|m| context_role(m.role.as_str()).map(|r| Message::new(r, m.content)))
                .chain(std::iter::once(Message::user(user_message.content.clone())))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "chat history could not be loaded; using the request's messages");
                request_context()
            }
        }
    };
    context = trim_history(context, chat.history_max_messages, chat.history_max_chars);
    let mut router_messages = Vec::with_capacity(context.len() + 1);
    let model = if pm {
        if !chat.pm_system_prompt.is_empty() {
            router_messages.push(Message::system(chat.pm_system_prompt.clone()));
        }
        if chat.pm_model.is_empty() {
            cfg.inference_model.clone()
        } else {
            chat.pm_model.clone()
        }
    } else {
        model_id.clone()
    };
    router_messages.extend(context);
    let mut request = ChatRequest::new(model, router_messages);
    request.temperature = number(&body.temperature);
    request.top_p = number(&body.top_p);
    request.max_tokens = count(&body.max_completion_tokens).or_else(|| count(&body.max_tokens));
    request.stop = stops(&body.stop);
    let stream = matches!(body.stream, Some(Value::Bool(true)));
    Ok(Prepared {
        user: user.id,
        project,
        model_id,
        thread,
        user_message,
        request,
        pm,
        stream,
        redacted,
        started,
        request_id,
    })
}

impl Prepared {
    fn route<'a>(&self, inference: &'a ChatInference) -> &'a RouteOptions {
        if self.pm {
            &inference.pm_route
        } else {
            &inference.direct_route
        }
    }

    fn audit(&self, outcome: &str, error_code: Option<&str>, answer_redacted: bool) -> ChatAudit {
        let redacted = self.redacted || answer_redacted;
        ChatAudit {
            id: AuditId::new(),
            user_id: Some(self.user),
            project_id: self.project,
            outcome: outcome.into(),
            error_code: error_code.map(str::to_string),
            redaction_applied: redacted,
            redaction_kinds: if redacted {
                vec![KIND_API_KEY.into()]
            } else {
                Vec::new()
            },
            duration_ms: Some(
                i32::try_from(self.started.elapsed().as_millis()).unwrap_or(i32::MAX),
            ),
            request_id: self.request_id.clone(),
            created_at: chrono::Utc::now(),
        }
    }

    /// What this completion stores: the user's message, the answer if there is one,
    /// and the audit record.
    fn turn(&self, answer: Option<NewChatMessage>, audit: ChatAudit) -> ChatTurn {
        let mut messages = vec![self.user_message.clone()];
        messages.extend(answer);
        ChatTurn {
            thread_id: self.thread,
            messages,
            audit: Some(audit),
        }
    }

    /// The answer message as stored.
    fn answer(&self, content: String, provider: &str) -> NewChatMessage {
        NewChatMessage::new(ChatRole::Assistant, content)
            .with_metadata(j!({"model_id": self.model_id, "provider": provider}))
    }

    /// Stores a failed completion (the user's message and its audit record); the
    /// caller answers `e`.
    async fn store_failure(&self, st: &GatewayState, e: &OpenAiError, answer_redacted: bool) {
        let audit = self.audit(outcome_of(e), Some(e.code()), answer_redacted);
        if let Err(err) = st.inner.store.append_turn(self.turn(None, audit)).await {
            tracing::error!(error = %err, "could not store the failed chat turn");
        }
    }

    /// Stores a successful completion; on failure answers `500` `Failed to persist
    /// message` (and audits that, if the audit table can still be written).
    async fn store_success(
        &self,
        st: &GatewayState,
        answer: NewChatMessage,
        answer_redacted: bool,
    ) -> Result<(), OpenAiError> {
        let turn = self.turn(Some(answer), self.audit("success", None, answer_redacted));
        if let Err(e) = st.inner.store.append_turn(turn).await {
            let e = OpenAiError::internal("Failed to persist message").with_source(e);
            let audit = self.audit("error", Some(e.code()), answer_redacted);
            record(st, AuditRecord::Chat(audit)).await;
            return Err(e);
        }
        Ok(())
    }
}

async fn record(st: &GatewayState, rec: AuditRecord) {
    if let Err(e) = st.inner.store.record_audit(rec).await {
        tracing::error!(error = %e, "could not write chat audit record");
    }
}

/// Maps a router failure to the contract's answer.
fn router_failure(pm: bool, err: RouterError) -> OpenAiError {
    match err.root() {
        RouterError::NoInferencePath { .. }
        | RouterError::PolicyDenied { .. }
        | RouterError::Config(_) => OpenAiError::model_unavailable(if pm {
            "PM agent is not available"
        } else {
            "No inference path is available for this model"
        })
        .with_source(err),
        _ => OpenAiError::inference_failed().with_source(err),
    }
}

fn outcome_of(e: &OpenAiError) -> &'static str {
    if e.status() == StatusCode::GATEWAY_TIMEOUT {
        "timeout"
    } else {
        "error"
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Create a chat completion.
///
/// OpenAI-compatible. `model` `cynodeai.pm` (the default) is the project manager
/// surface; any other id is direct inference. The conversation is stored server-side
/// in the caller's active thread for the `OpenAI-Project` scope. With `"stream": true`
/// the answer is `text/event-stream` chunks ending with `data: [DONE]`.
#[utoipa::path(
    post, path = "/v1/chat/completions", tag = "chat",
    request_body = ChatCompletionsRequest,
    params(("OpenAI-Project" = Option<String>, Header, description = "Project id (UUID) of the thread scope; a non-UUID value is ignored")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The completion (JSON), or with `stream: true` server-sent `chat.completion.chunk` events ending with `data: [DONE]`",
            content((ChatCompletionsResponse = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "`invalid_request`: `Invalid request body` / `messages is required and must be non-empty` / `At least one user message is required` / `OpenAI-Project names no project`", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Request body too large (Problem Details when the declared length is over the cap, else the OpenAI shape)",
            content((ProblemDetails = "application/problem+json"), (OpenAiErrorBody = "application/json"))),
        (status = 500, description = "`internal_error`: `Failed to get chat thread` / `Failed to persist message`", body = OpenAiErrorBody),
        (status = 502, description = "`orchestrator_inference_failed`: `Completion failed`", body = OpenAiErrorBody),
        (status = 503, description = "`model_unavailable`: no inference path (the message says how to configure one)", body = OpenAiErrorBody),
        (status = 504, description = "`cynodeai_completion_timeout`", body = OpenAiErrorBody),
    )
)]
pub(crate) async fn chat_completions(
    State(st): State<GatewayState>,
    user: AuthUser,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rid = request_id.map(|Extension(RequestId(id))| id);
    let p = match prepare(&st, &user, &headers, rid.clone(), body).await {
        Ok(p) => p,
        Err(e) => {
            if e.status().is_server_error() {
                let rec = AuditRecord::Chat(ChatAudit {
                    id: AuditId::new(),
                    user_id: Some(user.id),
                    project_id: None,
                    outcome: "error".into(),
                    error_code: Some(e.code().into()),
                    redaction_applied: false,
                    redaction_kinds: Vec::new(),
                    duration_ms: None,
                    request_id: rid,
                    created_at: chrono::Utc::now(),
                });
                record(&st, rec).await;
            }
            return e.into_response();
        }
    };
    let Some(inference) = st.inner.chat.inference.clone() else {
        let e = OpenAiError::model_unavailable(if p.pm {
            format!("PM agent is not available. {MSG_NO_INFERENCE}")
        } else {
            MSG_NO_INFERENCE.to_string()
        });
        p.store_failure(&st, &e, false).await;
        return e.into_response();
    };
    if p.stream {
        stream_completion(st, p, inference).await
    } else {
        complete(st, p, inference).await
    }
}

fn deadline(st: &GatewayState) -> Duration {
    Duration::from_millis(st.config().chat.completion_deadline_ms.max(1))
}

async fn complete(st: GatewayState, p: Prepared, inference: ChatInference) -> Response {
    // If the client goes away, this future is dropped (and with it the model call);
    // the guard then stores the turn as `canceled`.
    let mut cancel = CancelGuard {
        st: st.clone(),
        turn: Some(p.turn(None, p.audit("canceled", None, false))),
    };
    let res = complete_inner(&st, &p, &inference).await;
    cancel.turn = None;
    res
}

async fn complete_inner(st: &GatewayState, p: &Prepared, inference: &ChatInference) -> Response {
    let call = inference.router.chat(&p.request, p.route(inference));
    let routed = match tokio::time::timeout(deadline(st), call).await {
        Err(_) => Err(OpenAiError::timeout()),
        Ok(Err(e)) => Err(router_failure(p.pm, e)),
        Ok(Ok(r)) => Ok(r),
    };
    let routed = match routed {
        Ok(r) => r,
        Err(e) => {
            p.store_failure(st, &e, false).await;
            return e.into_response();
        }
    };
    let (answer, hit) = st.inner.chat.redactor.redact(&routed.value.content);
    if let Err(e) = p
        .store_success(st, p.answer(answer.clone(), &routed.target), hit)
        .await
    {
        return e.into_response();
    }
    json(
        StatusCode::OK,
        &ChatCompletionsResponse {
            id: uuid::Uuid::new_v4().to_string(),
            object: "chat.completion".into(),
            created: unix_now(),
            model: p.model_id.clone(),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: answer,
                },
                finish_reason: routed
                    .value
                    .finish_reason
                    .clone()
                    .unwrap_or_else(|| "stop".into()),
            }],
        },
    )
}

// ---------------------------------------------------------------- streaming

fn chunk(
    id: &str,
    created: i64,
    model: &str,
    content: Option<&str>,
    finish: Option<&str>,
) -> Bytes {
    let delta = match content {
        Some(c) => j!({"role": "assistant", "content": c}),
        None => j!({}),
    };
    let v = j!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {v}\n\n"))
}

/// Stores the turn as `canceled` (the user's message and the audit record) if the
/// completion is dropped before it finished: the client went away, and dropping the
/// upstream call stopped the model.
struct CancelGuard {
    st: GatewayState,
    turn: Option<ChatTurn>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(turn) = self.turn.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let st = self.st.clone();
            tracing::info!("chat completion ended by the client before it finished");
            rt.spawn(async move {
                if let Err(e) = st.inner.store.append_turn(turn).await {
                    tracing::error!(error = %e, "could not store the canceled chat turn");
                }
            });
        }
    }
}

struct StreamState {
    st: GatewayState,
    p: Prepared,
    upstream: ChatStream,
    target: String,
    redactor: StreamRedactor,
    id: String,
    created: i64,
    until: tokio::time::Instant,
    finish: Option<String>,
    done: bool,
    cancel: CancelGuard,
}

impl StreamState {
    async fn fail(&mut self, e: OpenAiError) -> Bytes {
        e.log();
        self.done = true;
        self.cancel.turn = None;
        self.p
            .store_failure(&self.st, &e, self.redactor.redacted_any())
            .await;
        Bytes::from(format!("data: {}\n\n", e.body_json()))
    }

    async fn finish(&mut self) -> Bytes {
        self.done = true;
        self.cancel.turn = None;
        let tail = self.redactor.finish();
        let answer = self
            .p
            .answer(self.redactor.released().to_string(), &self.target);
        let stored = self
            .p
            .store_success(&self.st, answer, self.redactor.redacted_any())
            .await;
        let mut out = Vec::new();
        if !tail.is_empty() {
            out.extend_from_slice(&chunk(
                &self.id,
                self.created,
                &self.p.model_id,
                Some(&tail),
                None,
            ));
        }
        if let Err(e) = stored {
            e.log();
            out.extend_from_slice(format!("data: {}\n\n", e.body_json()).as_bytes());
            return Bytes::from(out);
        }
        let finish = self.finish.clone().unwrap_or_else(|| "stop".into());
        out.extend_from_slice(&chunk(
            &self.id,
            self.created,
            &self.p.model_id,
            None,
            Some(&finish),
        ));
        out.extend_from_slice(b"data: [DONE]\n\n");
        Bytes::from(out)
    }

    /// The next bytes to send, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            match tokio::time::timeout_at(self.until, self.upstream.next()).await {
                Err(_) => return Some(self.fail(OpenAiError::timeout()).await),
                Ok(Some(Err(e))) => return Some(self.fail(router_failure(self.p.pm, e)).await),
                Ok(None) => return Some(self.finish().await),
                Ok(Some(Ok(delta))) => {
                    if let Some(f) = delta.finish_reason {
                        self.finish = Some(f);
                    }
                    let out = self.redactor.push(&delta.content);
                    if !out.is_empty() {
                        return Some(chunk(
                            &self.id,
                            self.created,
                            &self.p.model_id,
                            Some(&out),
                            None,
                        ));
                    }
                }
            }
        }
    }
}

async fn stream_completion(st: GatewayState, p: Prepared, inference: ChatInference) -> Response {
    let until = tokio::time::Instant::now() + deadline(&st);
    let call = inference
        .router
        .chat_stream(&p.request, p.route(&inference));
    let res = tokio::time::timeout_at(until, call).await;
    let routed = match res {
        Err(_) => Err(OpenAiError::timeout()),
        Ok(Err(e)) => Err(router_failure(p.pm, e)),
        Ok(Ok(r)) => Ok(r),
    };
    let routed = match routed {
        Ok(r) => r,
        Err(e) => {
            p.store_failure(&st, &e, false).await;
            return e.into_response();
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    let created = unix_now();
    let first = chunk(&id, created, &p.model_id, Some(""), None);
    let cancel = CancelGuard {
        st: st.clone(),
        turn: Some(p.turn(None, p.audit("canceled", None, false))),
    };
    let state = StreamState {
        redactor: StreamRedactor::new(st.inner.chat.redactor.clone()),
        st,
        p,
        upstream: routed.value,
        target: routed.target,
        id,
        created,
        until,
        finish: None,
        done: false,
        cancel,
    };
    let rest = futures::stream::unfold(state, |mut s| async move {
        let b = s.next().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(b), s))
    });
    let body = futures::stream::once(async move { Ok(first) }).chain(rest);
    let mut res = Body::from_stream(body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_newest_messages() {
        let msgs: Vec<Message> = (0..50).map(|i| Message::user(format!("m{i}"))).collect();
        let kept = trim_history(msgs, 40, 24_000);
        assert_eq!(kept.len(), 40);
        assert_eq!(kept[0].content, "m10");
        assert_eq!(kept[39].content, "m49");
        let msgs = vec![Message::user("a".repeat(30)), Message::user("b".repeat(30))];
        let kept = trim_history(msgs, 40, 40);
        assert_eq!(kept.len(), 1);
        assert!(kept[0].content.starts_with('b'));
        let kept = trim_history(vec![Message::user("c".repeat(100))], 40, 10);
        assert_eq!(kept.len(), 1, "the newest message is always kept");
    }

    #[test]
    fn content_parts_are_joined_and_other_types_refused() {
        let m: ChatMessageIn = serde_json::from_value(j!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "b"}]})).expect("parts");
        assert_eq!(m.content, "ab");
        assert!(
            serde_json::from_value::<ChatMessageIn>(j!({"role": "user", "content": 5})).is_err()
        );
        assert!(serde_json::from_value::<ChatMessageIn>(j!({"content": "x"})).is_err());
    }
}
