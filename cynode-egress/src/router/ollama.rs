//! Ollama's native API (`/api/chat` with NDJSON streaming, `/api/tags`).

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::{Method, header::HeaderMap};
use serde::Serialize;
use serde_json::Value;

use super::{
    error::RouterError,
    http::{Call, HttpClient, Lines, check_base_url, join, secret_header},
    provider::{ModelProvider, ProviderKind},
    types::{
        ChatDelta, ChatRequest, ChatResponse, ChatStream, Message, ModelInfo, Usage,
        normalise_finish,
    },
};
use crate::crypto::Secret;

pub(crate) struct Ollama {
    name: String,
    chat_url: String,
    tags_url: String,
    key: Option<Secret>,
    http: HttpClient,
}

#[derive(Serialize, Default)]
struct Options<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [Message],
    stream: bool,
    options: Options<'a>,
}

impl Ollama {
    pub(crate) fn new(
        name: &str,
        base_url: &str,
        key: Option<Secret>,
        http: HttpClient,
    ) -> Result<Self, RouterError> {
        let base = check_base_url(name, base_url)?;
        Ok(Ollama {
            name: name.to_string(),
            chat_url: join(&base, "api/chat"),
            tags_url: join(&base, "api/tags"),
            key: key.filter(|k| !k.is_empty()),
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
        Ok(h)
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Result<Vec<u8>, RouterError> {
        let body = Body {
            model: &req.model,
            messages: &req.messages,
            stream,
            options: Options {
                temperature: req.temperature,
                top_p: req.top_p,
                num_predict: req.max_tokens,
                stop: &req.stop,
            },
        };
        serde_json::to_vec(&body)
            .map_err(|_| RouterError::invalid(&self.name, "request cannot be encoded"))
    }
}

fn usage_of(v: &Value) -> Option<Usage> {
    let p = v.get("prompt_eval_count").and_then(Value::as_u64);
    let c = v.get("eval_count").and_then(Value::as_u64);
    (p.is_some() || c.is_some()).then(|| Usage {
        prompt_tokens: p.unwrap_or(0),
        completion_tokens: c.unwrap_or(0),
    })
}

fn error_of(provider: &str, v: &Value) -> Option<RouterError> {
    let msg = v.get("error").and_then(Value::as_str)?;
    if msg.contains("not found") {
        return Some(RouterError::ModelNotFound {
            provider: provider.to_string(),
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    Some(RouterError::Unavailable {
        provider: provider.to_string(),
        message: "provider reported an error".into(),
        source: None,
    })
}

#[async_trait]
impl ModelProvider for Ollama {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Ollama
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
        if let Some(e) = error_of(&self.name, &v) {
            return Err(e);
        }
        let content = v
            .pointer("/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| RouterError::protocol(&self.name, "answer without message content"))?;
        Ok(ChatResponse {
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&req.model)
                .to_string(),
            content: content.to_string(),
            finish_reason: v
                .get("done_reason")
                .and_then(Value::as_str)
                .map(normalise_finish),
            usage: usage_of(&v),
            provider: self.name.clone(),
        })
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
        let lines = Lines::new(resp, &call);
        // (item, stop after this item)
        let stream = lines
            .filter_map(move |line| {
                let out = match line {
                    Err(e) => Some((Err(e), true)),
                    Ok(line) if line.trim().is_empty() => None,
                    Ok(line) => match serde_json::from_str::<Value>(&line) {
                        Err(_) => Some((
                            Err(RouterError::protocol(&provider, "stream line is not JSON")),
                            true,
                        )),
                        Ok(v) => {
                            if let Some(e) = error_of(&provider, &v) {
                                Some((Err(e), true))
                            } else {
                                let done = v.get("done").and_then(Value::as_bool).unwrap_or(false);
                                let d = ChatDelta {
                                    content: v
                                        .pointer("/message/content")
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_string(),
                                    finish_reason: if done {
                                        Some(
                                            v.get("done_reason")
                                                .and_then(Value::as_str)
                                                .map(normalise_finish)
                                                .unwrap_or_else(|| "stop".to_string()),
                                        )
                                    } else {
                                        None
                                    },
                                    usage: if done { usage_of(&v) } else { None },
                                };
                                Some((Ok(d), done))
                            }
                        }
                    },
                };
                futures::future::ready(out)
            })
            .scan(false, |stopped, (item, last)| {
                if *stopped {
                    return futures::future::ready(None);
                }
                *stopped = last;
                futures::future::ready(Some(item))
            });
        Ok(Box::pin(stream))
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, RouterError> {
        let call = self.call("");
        let resp = call
            .send(Method::GET, &self.tags_url, self.headers()?, None)
            .await?;
        let v = call.json(resp).await?;
        let models = v
            .get("models")
            .and_then(Value::as_array)
            .ok_or_else(|| RouterError::protocol(&self.name, "tag list without models"))?;
        Ok(models
            .iter()
            .filter_map(|m| {
                m.get("name")
                    .or_else(|| m.get("model"))
                    .and_then(Value::as_str)
            })
            .map(|id| ModelInfo {
                id: id.to_string(),
                provider: self.name.clone(),
            })
            .collect())
    }
}
