//! The gateway client's error type.

use cynode_core::proto::v1::gateway::{OpenAiErrorBody, PolicyViolation, ProblemDetails};

/// What went wrong talking to the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The gateway answered with an error status. `Display` gives
    /// `<status> <reason>[: <detail>]`, e.g. `401 Unauthorized: Invalid or expired token`
    /// or `502 Bad Gateway: Completion failed (orchestrator_inference_failed)`.
    #[error("{}", http_message(*status, detail.as_deref(), code.as_deref()))]
    Http {
        /// HTTP status code.
        status: u16,
        /// Problem Details `detail`, OpenAI `error.message`, or a policy-violation text.
        detail: Option<String>,
        /// OpenAI `error.code` (chat surface) or policy-violation category.
        code: Option<String>,
        /// The raw body (at most 64 KiB).
        body: String,
    },
    /// The gateway could not be reached, or the connection broke.
    #[error("{message}")]
    Network {
        /// What failed.
        message: String,
        /// The transport error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A success answer whose body is not what the route returns.
    #[error("decode response: {0}")]
    Decode(String),
    /// The client was given something unusable (e.g. a malformed gateway URL).
    #[error("{0}")]
    InvalidInput(String),
}

impl GatewayError {
    /// The HTTP status, for [`GatewayError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed (network failures, 429,
    /// 502/503/504).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network { .. } => true,
            Self::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Builds the error for a non-success answer from its status and body.
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        let (detail, code) = parse_error_body(body);
        let mut text = String::from_utf8_lossy(body).into_owned();
        if text.len() > 64 * 1024 {
            let mut cut = 64 * 1024;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Self::Http {
            status,
            detail,
            code,
            body: text,
        }
    }

    pub(crate) fn network(message: impl Into<String>, source: reqwest::Error) -> Self {
        Self::Network {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Detail and code from a Problem Details, OpenAI error or policy-violation body.
fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    if v.get("error").is_some_and(|e| e.is_object())
        && let Ok(e) = serde_json::from_value::<OpenAiErrorBody>(v.clone())
    {
        let message = Some(e.error.message).filter(|m| !m.is_empty());
        let code = e.error.code.filter(|c| !c.is_empty());
        return (message, code);
    }
    if v.get("category").is_some()
        && v.get("error").is_some_and(|e| e.is_string())
        && let Ok(p) = serde_json::from_value::<PolicyViolation>(v.clone())
    {
        let detail = if p.triggering_text.is_empty() {
            p.error
        } else {
            format!("{}: {:?}", p.error, p.triggering_text)
        };
        return (Some(detail), Some(p.category).filter(|c| !c.is_empty()));
    }
    if let Ok(p) = serde_json::from_value::<ProblemDetails>(v.clone())
        && let Some(d) = p.detail.filter(|d| !d.is_empty())
    {
        return (Some(d), None);
    }
    // Other JSON errors: {"error": "text"} or {"message": "text"}.
    let text = v
        .get("error")
        .and_then(|e| e.as_str())
        .or_else(|| v.get("message").and_then(|m| m.as_str()))
        .map(str::to_string);
    (text, None)
}

fn http_message(status: u16, detail: Option<&str>, code: Option<&str>) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown Status");
    let mut s = format!("{status} {reason}");
    match (detail, code) {
        (Some(d), Some(c)) => s.push_str(&format!(": {d} ({c})")),
        (Some(d), None) => s.push_str(&format!(": {d}")),
        (None, Some(c)) => s.push_str(&format!(": ({c})")),
        (None, None) => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_details_give_status_reason_and_detail() {
        let e = GatewayError::from_response(
            401,
            br#"{"type":"urn:cynodeai:error:authentication","title":"Unauthorized","status":401,"detail":"Invalid or expired token"}"#,
        );
        assert_eq!(e.to_string(), "401 Unauthorized: Invalid or expired token");
        assert_eq!(e.status(), Some(401));
    }

    #[test]
    fn openai_errors_keep_message_and_code() {
        let e = GatewayError::from_response(
            502,
            br#"{"error":{"message":"Completion failed","type":"cynodeai_error","param":null,"code":"orchestrator_inference_failed"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "502 Bad Gateway: Completion failed (orchestrator_inference_failed)"
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn plain_bodies_give_the_status_line_only() {
        let e = GatewayError::from_response(404, b"404 page not found");
        assert_eq!(e.to_string(), "404 Not Found");
        let e = GatewayError::from_response(
            400,
            br#"{"error":"policy violation","category":"secret_bypass","triggering_text":"ignore"}"#,
        );
        assert_eq!(
            e.to_string(),
            "400 Bad Request: policy violation: \"ignore\" (secret_bypass)"
        );
    }
}
