//! Anthropic's Messages API (`/v1/messages`, SSE streaming, `/v1/models`).

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::{Method, header::HeaderMap};
use serde::Serialize;
use serde_json::Value;

use super::{
    error::RouterError,
    http::{
        Call, HttpClient, Lines, StreamItem, check_base_url, into_chat_stream, join, model_ids,
        secret_header, sse_events,
    },
    provider::{ModelProvider, ProviderKind},
    types::{
        ChatDelta, ChatRequest, ChatResponse, ChatStream, ModelInfo, Role, Usage, normalise_finish,
    },
};
use crate::crypto::Secret;

pub(crate) struct Anthropic {
    name: String,
    messages_url: String,
    models_url: String,
    key: Option<Secret>,
    version: String,
    default_max_tokens: u32,
    http: HttpClient,
}

#[derive(Serialize)]
struct Msg {
    role: &'static str,
    content: String,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<Msg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    stream: bool,
}

impl Anthropic {
    pub(crate) fn new(
        name: &str,
        base_url: &str,
        key: Option<Secret>,
        version: String,
        default_max_tokens: u32,
        http: HttpClient,
    ) -> Result<Self, RouterError> {
        let base = check_base_url(name, base_url)?;
        Ok(Anthropic {
            name: name.to_string(),
            messages_url: join(&base, "v1/messages"),
            models_url: join(&base, "v1/models"),
            key: key.filter(|k| !k.is_empty()),
            version,
            default_max_tokens,
            http,
        })
    }

    fn call<'a>(&'a self, model: &'a str) -> Call<'a> {
        Call {
            client: &self.http,
            provider: &self.name,
            secret: self.key.as_ref(),
            model,
        }
    }

    fn headers(&self) -> Result<HeaderMap, RouterError> {
        let mut h = HeaderMap::new();
        if let Some(k) = &self.key {
            let (n, v) = secret_header("x-api-key", "", k, &self.name)?;
            h.insert(n, v);
        }
        if let Ok(v) = self.version.parse() {
            h.insert("anthropic-version", v);
        }
        Ok(h)
    }

    /// System messages become the top-level `system`; consecutive messages of the same
    /// role are merged (the API wants user/assistant turns to alternate); tool results
    /// are sent as user turns.
    fn body(&self, req: &ChatRequest, stream: bool) -> Result<Vec<u8>, RouterError> {
        let mut system: Vec<&str> = Vec::new();
        let mut messages: Vec<Msg> = Vec::new();
        for m in &req.messages {
            let role = match m.role {
                Role::System => {
                    system.push(&m.content);
                    continue;
                }
                Role::Assistant => "assistant",
                Role::User | Role::Tool => "user",
            };
            match messages.last_mut() {
                Some(last) if last.role == role => {
                    last.content.push_str("\n\n");
                    last.content.push_str(&m.content);
                }
                _ => messages.push(Msg {
                    role,
                    content: m.content.clone(),
                }),
            }
        }
        if messages.is_empty() {
            return Err(RouterError::invalid(
                &self.name,
                "at least one user or assistant message is required",
            ));
        }
        let body = Body {
            model: &req.model,
            max_tokens: req.max_tokens.unwrap_or(self.default_max_tokens),
            messages,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            temperature: req.temperature,
            top_p: req.top_p,
            stop_sequences: &req.stop,
            stream,
        };
        serde_json::to_vec(&body)
            .map_err(|_| RouterError::invalid(&self.name, "request cannot be encoded"))
    }
}

fn parse_event(provider: &str, input_tokens: &mut u64, data: &str) -> StreamItem {
    let v: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(_) if data.trim().is_empty() => return StreamItem::Skip,
        Err(_) => {
            return StreamItem::Failed(RouterError::protocol(provider, "stream event is not JSON"));
        }
    };
    match v.get("type").and_then(Value::as_str).unwrap_or_default() {
        "message_start" => {
            *input_tokens = v
                .pointer("/message/usage/input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            StreamItem::Skip
        }
        "content_block_delta" => match v.pointer("/delta/text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => StreamItem::Delta(ChatDelta {
                content: t.to_string(),
                ..Default::default()
            }),
            _ => StreamItem::Skip,
        },
        "message_delta" => StreamItem::Delta(ChatDelta {
            content: String::new(),
            finish_reason: v
                .pointer("/delta/stop_reason")
                .and_then(Value::as_str)
                .map(normalise_finish),
            usage: Some(Usage {
                prompt_tokens: *input_tokens,
                completion_tokens: v
                    .pointer("/usage/output_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            }),
        }),
        "message_stop" => StreamItem::Done,
        "error" => {
            let kind = v
                .pointer("/error/type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            StreamItem::Failed(if kind == "overloaded_error" || kind == "api_error" {
                RouterError::Unavailable {
                    provider: provider.to_string(),
                    message: format!("provider reported {kind} mid-stream"),
                    source: None,
                }
            } else {
                RouterError::protocol(provider, format!("provider reported {kind} mid-stream"))
            })
        }
        _ => StreamItem::Skip,
    }
}

#[async_trait]
impl ModelProvider for Anthropic {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, RouterError> {
        req.validate(&self.name)?;
        let call = self.call(&req.model);
        let resp = call
            .send(
                Method::POST,
                &self.messages_url,
                self.headers()?,
                Some(self.body(req, false)?),
            )
            .await?;
        let v = call.json(resp).await?;
        let blocks = v
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| RouterError::protocol(&self.name, "message without content"))?;
        let content: String = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        let usage = v.get("usage").map(|u| Usage {
            prompt_tokens: u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0),
            completion_tokens: u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0),
        });
        Ok(ChatResponse {
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&req.model)
                .to_string(),
            content,
            finish_reason: v
                .get("stop_reason")
                .and_then(Value::as_str)
                .map(normalise_finish),
            usage,
            provider: self.name.clone(),
        })
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, RouterError> {
        req.validate(&self.name)?;
        let call = self.call(&req.model);
        let resp = call
            .send(
                Method::POST,
                &self.messages_url,
                self.headers()?,
                Some(self.body(req, true)?),
            )
            .await?;
        let provider = self.name.clone();
        let stream = sse_events(Lines::new(resp, &call)).scan(0u64, move |input_tokens, ev| {
            let out = match ev {
                Ok(ev) => parse_event(&provider, input_tokens, &ev.data),
                Err(e) => StreamItem::Failed(e),
            };
            futures::future::ready(Some(out))
        });
        Ok(into_chat_stream(stream))
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, RouterError> {
        let call = self.call("");
        let resp = call
            .send(Method::GET, &self.models_url, self.headers()?, None)
            .await?;
        model_ids(&self.name, &call.json(resp).await?)
    }
}
