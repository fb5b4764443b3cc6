//! OpenAI-compatible chat completions (OpenAI, vLLM, LM Studio, llama.cpp server).

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
        ChatDelta, ChatRequest, ChatResponse, ChatStream, Message, ModelInfo, Usage,
        normalise_finish,
    },
};
use crate::crypto::Secret;

/// Which OpenAI-compatible server this is (defaults and small dialect differences).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenAiFlavor {
    OpenAi,
    Vllm,
    LmStudio,
    LlamaCpp,
}

impl OpenAiFlavor {
    pub(crate) fn default_base_url(self) -> &'static str {
        match self {
            OpenAiFlavor::OpenAi => "https://api.openai.com/v1",
            OpenAiFlavor::Vllm => "http://127.0.0.1:8000/v1",
            OpenAiFlavor::LmStudio => "http://127.0.0.1:1234/v1",
            OpenAiFlavor::LlamaCpp => "http://127.0.0.1:8080/v1",
        }
    }

    /// Whether the server understands `stream_options.include_usage`.
    fn stream_usage(self) -> bool {
        matches!(self, OpenAiFlavor::OpenAi | OpenAiFlavor::Vllm)
    }
}

pub(crate) struct OpenAiCompatible {
    name: String,
    flavor: OpenAiFlavor,
    chat_url: String,
    models_url: String,
    key: Option<Secret>,
    organization: Option<String>,
    http: HttpClient,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

impl OpenAiCompatible {
    pub(crate) fn new(
        name: &str,
        flavor: OpenAiFlavor,
        base_url: &str,
        key: Option<Secret>,
        organization: Option<String>,
        http: HttpClient,
    ) -> Result<Self, RouterError> {
        let base = check_base_url(name, base_url)?;
        Ok(OpenAiCompatible {
            name: name.to_string(),
            flavor,
            chat_url: join(&base, "chat/completions"),
            models_url: join(&base, "models"),
            key: key.filter(|k| !k.is_empty()),
            organization,
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
            let (n, v) = secret_header("authorization", "Bearer ", k, &self.name)?;
            h.insert(n, v);
        }
        if let Some(org) = &self.organization
            && let Ok(v) = org.parse()
        {
            h.insert("openai-organization", v);
        }
        Ok(h)
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Result<Vec<u8>, RouterError> {
        let body = Body {
            model: &req.model,
            messages: &req.messages,
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_tokens,
            stop: &req.stop,
            stream,
            stream_options: (stream && self.flavor.stream_usage()).then_some(StreamOptions {
                include_usage: true,
            }),
        };
        serde_json::to_vec(&body)
            .map_err(|_| RouterError::invalid(&self.name, "request cannot be encoded"))
    }
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// Parses a non-streamed chat completion.
pub(crate) fn parse_completion(
    provider: &str,
    req_model: &str,
    v: &Value,
) -> Result<ChatResponse, RouterError> {
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| RouterError::protocol(provider, "completion without choices"))?;
    let content = match choice.pointer("/message/content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => {
            return Err(RouterError::protocol(
                provider,
                "message content is not text",
            ));
        }
    };
    Ok(ChatResponse {
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(req_model)
            .to_string(),
        content,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(normalise_finish),
        usage: usage_of(v),
        provider: provider.to_string(),
    })
}

#[async_trait]
impl ModelProvider for OpenAiCompatible {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAiCompatible
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, RouterError> {
        req.validate(&self.name)?;
        let call = self.call(&req.model);
        let resp = call
            .send(
                Method::POST,
                &self.chat_url,
                self.headers()?,
                Some(self.body(req, false)?),
            )
            .await?;
        let v = call.json(resp).await?;
        parse_completion(&self.name, &req.model, &v)
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, RouterError> {
        req.validate(&self.name)?;
        let call = self.call(&req.model);
        let resp = call
            .send(
                Method::POST,
                &self.chat_url,
                self.headers()?,
                Some(self.body(req, true)?),
            )
            .await?;
        let provider = self.name.clone();
        let events = sse_events(Lines::new(resp, &call));
        let stream = events.map(move |ev| match ev {
            Ok(ev) => parse_chunk(&provider, &ev.data),
            Err(e) => StreamItem::Failed(e),
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

/// Decodes one SSE `data:` payload of a chat completion stream.
pub(crate) fn parse_chunk(provider: &str, data: &str) -> StreamItem {
    let data = data.trim();
    if data.is_empty() {
        return StreamItem::Skip;
    }
    if data == "[DONE]" {
        return StreamItem::Done;
    }
    let v: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(_) => {
            return StreamItem::Failed(RouterError::protocol(provider, "stream chunk is not JSON"));
        }
    };
    if v.get("error").is_some() {
        return StreamItem::Failed(RouterError::Unavailable {
            provider: provider.to_string(),
            message: "provider reported an error mid-stream".into(),
            source: None,
        });
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let delta = ChatDelta {
        content: choice
            .and_then(|c| c.pointer("/delta/content"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        finish_reason: choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str)
            .map(normalise_finish),
        usage: usage_of(&v),
    };
    if delta.content.is_empty() && delta.finish_reason.is_none() && delta.usage.is_none() {
        StreamItem::Skip
    } else {
        StreamItem::Delta(delta)
    }
}
