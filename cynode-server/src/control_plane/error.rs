//! Problem Details answers of the control plane (node protocol §0): the reference's
//! `type` URNs per status (`413` is a validation error here), reason phrases as
//! titles, and a `detail` that never carries a secret or a storage message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::gateway::{ApiError, ProblemDetails};

/// `type` of an unsupported payload `version` (node protocol §0).
pub const UNSUPPORTED_VERSION_TYPE: &str = "https://cynode.ai/problems/unsupported-payload-version";

type Source = Box<dyn std::error::Error + Send + Sync>;

/// An error answer of a control-plane route.
#[derive(Debug)]
pub struct CpError {
    status: StatusCode,
    detail: String,
    kind: Option<&'static str>,
    source: Option<Source>,
}

fn type_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "urn:cynodeai:error:validation",
        401 => "urn:cynodeai:error:authentication",
        403 => "urn:cynodeai:error:authorization",
        404 => "urn:cynodeai:error:not_found",
        409 => "https://cynode.ai/specs/conflict",
        503 => "urn:cynodeai:error:unavailable",
        _ => "urn:cynodeai:error:internal",
    }
}

impl CpError {
    /// An error with a status and a client-facing detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            kind: None,
            source: None,
        }
    }
    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    /// 400 for an unsupported payload version, with the spec's problem type.
    pub fn unsupported_version(detail: impl Into<String>) -> Self {
        let mut e = Self::bad_request(detail);
        e.kind = Some(UNSUPPORTED_VERSION_TYPE);
        e
    }
    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }
    /// 500 with a fixed detail; the cause goes to the log only.
    pub fn internal(detail: impl Into<String>, source: impl Into<Source>) -> Self {
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail);
        e.source = Some(source.into());
        e
    }
    /// A storage error: `503` when retryable, else `500` with `detail`.
    pub fn storage(detail: impl Into<String>, err: cynode_core::Error) -> Self {
        if err.is_retryable() {
            let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "Database not available");
            e.source = Some(err.into());
            return e;
        }
        Self::internal(detail, err)
    }
    /// Attaches a cause (logged, never sent).
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The client-facing detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<ApiError> for CpError {
    fn from(e: ApiError) -> Self {
        let detail = e.detail().to_string();
        Self::new(e.status(), detail).with_source(e.to_string())
    }
}

impl IntoResponse for CpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(src) => {
                    tracing::error!(status = self.status.as_u16(), detail = %self.detail, error = %src, "control-plane request failed")
                }
                None => {
                    tracing::error!(status = self.status.as_u16(), detail = %self.detail, "control-plane request failed")
                }
            }
        } else {
            tracing::debug!(status = self.status.as_u16(), detail = %self.detail, "control-plane request rejected");
        }
        let body = ProblemDetails {
            kind: self.kind.unwrap_or_else(|| type_for(self.status)).into(),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: (!self.detail.is_empty()).then_some(self.detail),
            instance: None,
        };
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        bytes.push(b'\n');
        let mut res = (self.status, bytes).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}
