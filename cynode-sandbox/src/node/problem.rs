//! RFC 9457 problem responses of the Worker API (`node-protocol.md` §0).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Problem type of 400 and 413.
pub(crate) const TYPE_VALIDATION: &str = "urn:cynodeai:error:validation";
/// Problem type of 401.
pub(crate) const TYPE_AUTHENTICATION: &str = "urn:cynodeai:error:authentication";
/// Problem type of 404.
pub(crate) const TYPE_NOT_FOUND: &str = "urn:cynodeai:error:not_found";
/// Problem type of 409.
pub(crate) const TYPE_CONFLICT: &str = "https://cynode.ai/specs/conflict";
/// Problem type of 500.
pub(crate) const TYPE_INTERNAL: &str = "urn:cynodeai:error:internal";
/// Problem type of 503.
pub(crate) const TYPE_UNAVAILABLE: &str = "urn:cynodeai:error:unavailable";

/// A problem response under construction.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, TYPE_VALIDATION, detail)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            TYPE_AUTHENTICATION,
            "Invalid or missing bearer token",
        )
    }

    pub(crate) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            TYPE_VALIDATION,
            "Request body exceeds maximum size",
        )
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, TYPE_NOT_FOUND, detail)
    }

    pub(crate) fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, TYPE_CONFLICT, detail)
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, TYPE_INTERNAL, detail)
    }

    pub(crate) fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut p = Self::new(StatusCode::SERVICE_UNAVAILABLE, TYPE_UNAVAILABLE, detail);
        p.retry_after = Some(retry_after_secs.max(1));
        p
    }

    /// Adds an extension member.
    pub(crate) fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": self.kind,
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(obj) = body.as_object_mut() {
            obj.extend(self.extra);
        }
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
