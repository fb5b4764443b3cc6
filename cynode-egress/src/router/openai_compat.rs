//! An OpenAI-compatible HTTP front for a [`Router`]: `POST /v1/chat/completions`
//! (JSON, or SSE ending in `data: [DONE]` with `"stream": true`) and `GET /v1/models`.
//!
//! Meant for embedding (a node-local inference endpoint, a passthrough for tools that
//! speak OpenAI) and for measuring the router's added latency. It does no
//! authentication of its own; put it behind the layer that fits where it is mounted.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router as AxumRouter,
    body::{Body, Bytes},
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{
    engine::Router,
    error::RouterError,
    routing::RouteOptions,
    types::{ChatRequest, Message, Role, Usage},
};

#[derive(Clone)]
struct CompatState {
    router: Arc<Router>,
    opts: Arc<RouteOptions>,
}

/// The axum router serving the OpenAI-compatible surface over `router`, routing every
/// request with `opts`.
pub fn openai_compat_router(router: Arc<Router>, opts: RouteOptions) -> AxumRouter {
    AxumRouter::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .with_state(CompatState {
            router,
            opts: Arc::new(opts),
        })
}

#[derive(Deserialize)]
struct CompatRequest {
    #[serde(default)]
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default, deserialize_with = "super::types::stop_list")]
    stop: Vec<String>,
    #[serde(default)]
    stream: bool,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: OutMessage<'a>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl From<Usage> for OutUsage {
    fn from(u: Usage) -> Self {
        OutUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total(),
        }
    }
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutUsage>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutUsage>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// OpenAI-style error body.
pub(crate) fn error_response(status: StatusCode, message: &str, code: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": "cynodeai_error", "param": null, "code": code}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Status, message and code for a routed-call failure (chat surface vocabulary).
pub(crate) fn map_error(e: &RouterError) -> (StatusCode, &'static str, &'static str) {
    match e.root() {
        RouterError::InvalidRequest { .. } => (
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "invalid_request",
        ),
        RouterError::Timeout { .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            "Completion did not finish before the maximum wait duration",
            "cynodeai_completion_timeout",
        ),
        RouterError::NoInferencePath { .. } | RouterError::PolicyDenied { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "No inference path available",
            "model_unavailable",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "Completion failed",
            "orchestrator_inference_failed",
        ),
    }
}

fn json_response(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn chat_completions(State(st): State<CompatState>, body: Bytes) -> Response {
    let req: CompatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "Invalid request body",
                "invalid_request",
            );
        }
    };
    if req.messages.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "messages is required and must be non-empty",
            "invalid_request",
        );
    }
    let stream = req.stream;
    let chat = ChatRequest {
        model: req.model,
        messages: req.messages,
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.max_tokens.or(req.max_completion_tokens),
        stop: req.stop,
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    if stream {
        return stream_completion(st, chat, id).await;
    }
    let opts = st.router.options_for_model(&st.opts, &chat.model);
    match st.router.chat(&chat, &opts).await {
        Ok(routed) => {
            let r = routed.value;
            let out = Completion {
                id: &id,
                object: "chat.completion",
                created: now_secs(),
                model: &r.model,
                choices: [Choice {
                    index: 0,
                    message: OutMessage {
                        role: Role::Assistant.as_str(),
                        content: &r.content,
                    },
                    finish_reason: r.finish_reason.as_deref().unwrap_or("stop"),
                }],
                usage: r.usage.map(OutUsage::from),
            };
            match serde_json::to_vec(&out) {
                Ok(b) => json_response(b),
                Err(_) => error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Completion failed",
                    "internal_error",
                ),
            }
        }
        Err(e) => {
            tracing::warn!(kind = e.kind(), error = %e, "chat completion failed");
            let (status, msg, code) = map_error(&e);
            error_response(status, msg, code)
        }
    }
}

async fn stream_completion(st: CompatState, chat: ChatRequest, id: String) -> Response {
    let opts = st.router.options_for_model(&st.opts, &chat.model);
    let routed = match st.router.chat_stream(&chat, &opts).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(kind = e.kind(), error = %e, "chat stream failed to open");
            let (status, msg, code) = map_error(&e);
            return error_response(status, msg, code);
        }
    };
    let model = chat.model.clone();
    let created = now_secs();
    let encode = move |delta: Delta<'_>,
                       finish: Option<&str>,
                       usage: Option<Usage>,
                       with_choice: bool|
          -> Bytes {
        let chunk = Chunk {
            id: &id,
            object: "chat.completion.chunk",
            created,
            model: &model,
            choices: if with_choice {
                vec![ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason: finish,
                }]
            } else {
                Vec::new()
            },
            usage: usage.map(OutUsage::from),
        };
        let mut out = b"data: ".to_vec();
        out.extend(serde_json::to_vec(&chunk).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    };
    let first = encode(
        Delta {
            role: Some("assistant"),
            content: Some(""),
        },
        None,
        None,
        true,
    );
    let enc = encode.clone();
    let body = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(first) })
        .chain(routed.value.map(move |item| {
            Ok(match item {
                Ok(d) => {
                    let mut out = Vec::new();
                    if !d.content.is_empty() || d.finish_reason.is_some() {
                        let content = (!d.content.is_empty()).then_some(d.content.as_str());
                        out.extend_from_slice(&enc(Delta { role: None, content }, d.finish_reason.as_deref(), None, true));
                    }
                    if let Some(u) = d.usage {
                        out.extend_from_slice(&enc(Delta { role: None, content: None }, None, Some(u), false));
                    }
                    Bytes::from(out)
                }
                Err(e) => {
                    tracing::warn!(kind = e.kind(), error = %e, "chat stream failed");
                    let (_, msg, code) = map_error(&e);
                    let err = serde_json::json!({"error": {"message": msg, "type": "cynodeai_error", "param": null, "code": code}});
                    Bytes::from(format!("data: {err}\n\n"))
                }
            })
        }))
        .chain(futures::stream::once(async { Ok(Bytes::from_static(b"data: [DONE]\n\n")) }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Completion failed",
                "internal_error",
            )
        })
}

async fn models(State(st): State<CompatState>) -> Response {
    let data: Vec<serde_json::Value> = st
        .router
        .available_models()
        .await
        .into_iter()
        .map(|m| serde_json::json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.provider}))
        .collect();
    json_response(
        serde_json::json!({"object": "list", "data": data})
            .to_string()
            .into_bytes(),
    )
}
