//! The one place where errors become HTTP answers: Problem Details bodies
//! (`application/problem+json`) with the fixed `type`/`title` per status of the API
//! contract, and the mapping of storage errors to statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use cynode_core::proto::v1::gateway::ProblemDetails;

/// The fixed `type` and `title` of a status.
pub(crate) fn type_and_title(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("urn:cynodeai:error:validation", "Bad Request"),
        401 => ("urn:cynodeai:error:authentication", "Unauthorized"),
        403 => ("urn:cynodeai:error:authorization", "Forbidden"),
        404 => ("urn:cynodeai:error:not_found", "Not Found"),
        409 => ("https://cynode.ai/specs/conflict", "Conflict"),
        413 => ("urn:cynodeai:error:payload_too_large", "Payload Too Large"),
        429 => ("urn:cynodeai:error:rate_limit", "Too Many Requests"),
        503 => ("urn:cynodeai:error:unavailable", "Service Unavailable"),
        504 => ("urn:cynodeai:error:timeout", "Gateway Timeout"),
        _ => ("urn:cynodeai:error:internal", "Internal Server Error"),
    }
}

/// Builds a Problem Details response.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    let (kind, title) = type_and_title(status);
    let body = ProblemDetails {
        kind: kind.into(),
        title: title.into(),
        status: status.as_u16(),
        detail: (!detail.is_empty()).then(|| detail.into()),
        instance: None,
    };
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    let mut res = (status, bytes).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

type Source = Box<dyn std::error::Error + Send + Sync>;

/// An error a handler or middleware answers with. The `detail` is what the client
/// sees; the `source` (a storage error, say) goes to the log only.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    retry_after: Option<u64>,
    source: Option<Source>,
}

impl ApiError {
    /// An error with a status and a client-facing detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
            source: None,
        }
    }
    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    /// 429 with a `Retry-After` in seconds.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, detail);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }
    /// 500 with a detail naming the step that failed (never the cause).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
    /// A storage error reported under a handler-specific 500 detail, except that a
    /// retryable (unavailable) storage error becomes a 503 with `Retry-After`.
    pub fn storage(detail: impl Into<String>, err: cynode_core::Error) -> Self {
        if err.is_retryable() {
            let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "Database not available");
            e.retry_after = Some(1);
            return e.with_source(err);
        }
        Self::internal(detail).with_source(err)
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
    /// The client-facing detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

/// The generic mapping of storage errors, for call sites with no better wording.
impl From<cynode_core::Error> for ApiError {
    fn from(err: cynode_core::Error) -> Self {
        use cynode_core::Error as E;
        match &err {
            E::NotFound { entity, .. } => {
                let mut word = entity.to_string();
                if let Some(first) = word.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                ApiError::not_found(format!("{word} not found")).with_source(err)
            }
            E::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "Conflict").with_source(err),
            E::InvalidInput(msg) => ApiError::bad_request(msg.clone()).with_source(err),
            _ => ApiError::storage("Internal server error", err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(src) => {
                    tracing::error!(status = self.status.as_u16(), detail = %self.detail, error = %src, error_debug = ?src, "request failed")
                }
                None => {
                    tracing::error!(status = self.status.as_u16(), detail = %self.detail, "request failed")
                }
            }
        } else {
            tracing::debug!(status = self.status.as_u16(), detail = %self.detail, "request rejected");
        }
        let mut res = problem(self.status, &self.detail);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_statuses_without_leaking_text() {
        let cases: Vec<(cynode_core::Error, u16, &str)> = vec![
            (
                cynode_core::Error::not_found("task", "x"),
                404,
                "Task not found",
            ),
            (
                cynode_core::Error::conflict("dup key in tasks_pkey"),
                409,
                "Conflict",
            ),
            (cynode_core::Error::invalid("bad"), 400, "bad"),
            (
                cynode_core::Error::unavailable("pool", std::io::Error::other("SELECT secret")),
                503,
                "Database not available",
            ),
            (
                cynode_core::Error::internal("SELECT 1 failed"),
                500,
                "Internal server error",
            ),
        ];
        for (err, status, detail) in cases {
            let e = ApiError::from(err);
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.detail(), detail);
        }
    }

    #[test]
    fn every_contract_status_has_its_fixed_type_and_title() {
        for (s, t, title) in [
            (400, "urn:cynodeai:error:validation", "Bad Request"),
            (401, "urn:cynodeai:error:authentication", "Unauthorized"),
            (403, "urn:cynodeai:error:authorization", "Forbidden"),
            (404, "urn:cynodeai:error:not_found", "Not Found"),
            (409, "https://cynode.ai/specs/conflict", "Conflict"),
            (429, "urn:cynodeai:error:rate_limit", "Too Many Requests"),
            (500, "urn:cynodeai:error:internal", "Internal Server Error"),
        ] {
            let st = StatusCode::from_u16(s).expect("status");
            assert_eq!(type_and_title(st), (t, title));
        }
    }
}
