//! The API egress service as a model provider: callers that must not hold provider keys
//! (sandboxes, agents, a standalone PMA) chat through `POST /v1/call` with a job-scoped
//! token, and the egress service injects the key.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use super::{
    error::RouterError,
    http::{Call, HttpClient, check_base_url, join, secret_header},
    provider::{EgressProviderConfig, ModelProvider, ProviderKind},
    types::{ChatDelta, ChatRequest, ChatResponse, ChatStream, ModelInfo, Usage},
};
use crate::crypto::Secret;

pub(crate) struct EgressProvider {
    name: String,
    call_url: String,
    provider: String,
    token: Secret,
    task_id: Option<String>,
    http: HttpClient,
}

#[derive(Serialize)]
struct CallBody<'a, P: Serialize> {
    provider: &'a str,
    operation: &'a str,
    params: P,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<&'a str>,
}

impl EgressProvider {
    pub(crate) fn new(
        name: &str,
        c: &EgressProviderConfig,
        http: HttpClient,
    ) -> Result<Self, RouterError> {
        let base = check_base_url(name, &c.base_url)?;
        if c.provider.trim().is_empty() {
            return Err(RouterError::Config(format!(
                "provider {name}: egress provider name is empty"
            )));
        }
        Ok(EgressProvider {
            name: name.to_string(),
            call_url: join(&base, "v1/call"),
            provider: c.provider.trim().to_ascii_lowercase(),
            token: c.token.clone(),
            task_id: c.task_id.clone(),
            http,
        })
    }

    async fn call<P: Serialize>(
        &self,
        operation: &str,
        params: P,
        model: &str,
    ) -> Result<Value, RouterError> {
        let body = serde_json::to_vec(&CallBody {
            provider: &self.provider,
            operation,
            params,
            task_id: self.task_id.as_deref(),
        })
        .map_err(|_| RouterError::invalid(&self.name, "request cannot be encoded"))?;
        let mut headers = HeaderMap::new();
        let (n, v) = secret_header("authorization", "Bearer ", &self.token, &self.name)?;
        headers.insert(n, v);
        let call = Call {
            client: &self.http,
            provider: &self.name,
            secret: Some(&self.token),
            model,
        };
        let resp = self
            .http
            .inner
            .post(&self.call_url)
            .headers(headers)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| call.transport_error(e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| call.transport_error(e))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status)
            && v.get("status").and_then(Value::as_str) == Some("success")
        {
            return v
                .get("result")
                .cloned()
                .ok_or_else(|| RouterError::protocol(&self.name, "success without result"));
        }
        Err(self.envelope_error(status, &v, model))
    }

    /// Maps an egress error envelope (or problem details) to a router error.
    fn envelope_error(&self, status: u16, v: &Value, model: &str) -> RouterError {
        let provider = self.name.clone();
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("egress call failed")
                .to_string();
            return match err.get("type").and_then(Value::as_str).unwrap_or_default() {
                "timeout" => RouterError::Timeout {
                    provider,
                    after: Duration::ZERO,
                },
                "rate_limited" => RouterError::RateLimited {
                    provider,
                    retry_after: None,
                },
                "unavailable" | "no_inference_path" => RouterError::Unavailable {
                    provider,
                    message,
                    source: None,
                },
                "auth" => RouterError::Auth { provider, status },
                "model_not_found" => RouterError::ModelNotFound {
                    provider,
                    model: model.to_string(),
                },
                "invalid_request" => RouterError::InvalidRequest { provider, message },
                _ => RouterError::Protocol { provider, message },
            };
        }
        let detail = v
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match status {
            401 | 403 => RouterError::Auth { provider, status },
            400 => RouterError::InvalidRequest {
                provider,
                message: detail,
            },
            501 => RouterError::Config(format!(
                "provider {provider}: egress does not implement this operation"
            )),
            s if s >= 500 => RouterError::Unavailable {
                provider,
                message: format!("HTTP {s}"),
                source: None,
            },
            s => RouterError::Protocol {
                provider,
                message: format!("unexpected HTTP {s}"),
            },
        }
    }
}

/// Reads a chat result as the egress service returns it.
fn parse_chat_result(
    provider: &str,
    req_model: &str,
    v: &Value,
) -> Result<ChatResponse, RouterError> {
    let content = v
        .get("content")
        .or_else(|| v.pointer("/message/content"))
        .and_then(Value::as_str)
        .ok_or_else(|| RouterError::protocol(provider, "chat result without content"))?;
    let usage = v.get("usage").filter(|u| u.is_object()).map(|u| Usage {
        prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    });
    Ok(ChatResponse {
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(req_model)
            .to_string(),
        content: content.to_string(),
        finish_reason: v
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage,
        provider: provider.to_string(),
    })
}

#[async_trait]
impl ModelProvider for EgressProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Egress
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, RouterError> {
        req.validate(&self.name)?;
        let v = self.call("chat", req, &req.model).await?;
        parse_chat_result(&self.name, &req.model, &v)
    }

    /// The egress contract has no streaming operation: the answer arrives as one delta.
    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, RouterError> {
        let r = self.chat(req).await?;
        let delta = ChatDelta {
            content: r.content,
            finish_reason: r.finish_reason.or(Some("stop".into())),
            usage: r.usage,
        };
        Ok(Box::pin(futures::stream::once(async move { Ok(delta) })))
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, RouterError> {
        let v = self.call("list_models", serde_json::json!({}), "").await?;
        let data = v
            .get("models")
            .and_then(Value::as_array)
            .ok_or_else(|| RouterError::protocol(&self.name, "model list without models"))?;
        Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .map(|id| ModelInfo {
                id: id.to_string(),
                provider: self.name.clone(),
            })
            .collect())
    }
}
