//! OpenAI-style error bodies of the chat surface (§2.2):
//! `{"error":{"message":"…","type":"cynodeai_error","param":null,"code":"…"}}`, always
//! `application/json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The `error` member of an OpenAI-style error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// What went wrong, in words clients print.
    pub message: String,
    /// Always `cynodeai_error`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Always `null`.
    #[schema(value_type = Option<String>)]
    pub param: Option<String>,
    /// Machine-readable code: `invalid_request`, `authentication_required`,
    /// `internal_error`, `orchestrator_inference_failed`, `model_unavailable`,
    /// `cynodeai_completion_timeout`.
    pub code: String,
}

/// An OpenAI-style error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiErrorBody {
    /// The error.
    pub error: OpenAiErrorDetail,
}

type Source = Box<dyn std::error::Error + Send + Sync>;

/// An error of the chat surface. The message is what the client sees; the source goes
/// to the log only.
#[derive(Debug)]
pub struct OpenAiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    source: Option<Source>,
}

/// `400` `Invalid request body`.
pub(crate) const MSG_INVALID_BODY: &str = "Invalid request body";
/// `400` when `messages` is missing or empty.
pub(crate) const MSG_MESSAGES_REQUIRED: &str = "messages is required and must be non-empty";
/// `400` when no message has role `user`.
pub(crate) const MSG_USER_REQUIRED: &str = "At least one user message is required";
/// `502` for any backend failure.
pub(crate) const MSG_COMPLETION_FAILED: &str = "Completion failed";
/// `504` when the completion deadline passed.
pub(crate) const MSG_TIMEOUT: &str = "Completion did not finish before the maximum wait duration";

impl OpenAiError {
    /// An error with a status, a code and a client-facing message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            source: None,
        }
    }
    /// `400` `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    /// `500` `internal_error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }
    /// `502` `orchestrator_inference_failed` `Completion failed`.
    pub fn inference_failed() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "orchestrator_inference_failed",
            MSG_COMPLETION_FAILED,
        )
    }
    /// `503` `model_unavailable`.
    pub fn model_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            message,
        )
    }
    /// `504` `cynodeai_completion_timeout`.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "cynodeai_completion_timeout",
            MSG_TIMEOUT,
        )
    }
    /// Attaches the underlying cause (logged, never sent).
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The `code`.
    pub fn code(&self) -> &'static str {
        self.code
    }
    /// The client-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The body as sent.
    pub fn body(&self) -> OpenAiErrorBody {
        OpenAiErrorBody {
            error: OpenAiErrorDetail {
                message: self.message.clone(),
                type_: "cynodeai_error".into(),
                param: None,
                code: self.code.into(),
            },
        }
    }
    /// The body as JSON text (no trailing newline), for SSE error events.
    pub(crate) fn body_json(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_default()
    }
    pub(crate) fn log(&self) {
        if self.status.is_server_error() {
            match &self.source {
                Some(src) => {
                    tracing::error!(status = self.status.as_u16(), code = self.code, error = %src, "chat request failed")
                }
                None => tracing::error!(
                    status = self.status.as_u16(),
                    code = self.code,
                    "chat request failed"
                ),
            }
        } else {
            tracing::debug!(status = self.status.as_u16(), code = self.code, message = %self.message, "chat request rejected");
        }
    }
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.log();
        let mut bytes = serde_json::to_vec(&self.body()).unwrap_or_default();
        bytes.push(b'\n');
        let mut res = (self.status, bytes).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_contract_shape() {
        let v = serde_json::to_value(OpenAiError::inference_failed().body()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"Completion failed","type":"cynodeai_error","param":null,"code":"orchestrator_inference_failed"}})
        );
    }
}
