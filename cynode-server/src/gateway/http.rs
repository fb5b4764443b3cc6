//! Request plumbing shared by the handlers: request ids and spans, body limits,
//! timeouts, panics, JSON bodies in and out, client address, and the plain-text
//! fallbacks for unknown routes.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::error::{ApiError, problem};
use super::state::GatewayState;

/// Request and response header carrying the request id.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request (from `X-Request-Id`, or generated), available to
/// handlers as a request extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// An incoming id is kept when it is 1–128 characters of `[A-Za-z0-9._:-]`; anything
/// else is replaced, so ids are safe to log.
fn acceptable_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Outermost layer: settles the request id, opens the request span, logs the
/// outcome, and echoes the id on the response.
pub(crate) async fn observe(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut()
        .insert(X_REQUEST_ID.clone(), value.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    // Only the path is recorded: query strings and headers may carry secrets.
    let span = tracing::info_span!(
        "http_request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut res = next.run(req).instrument(span.clone()).await;
    span.record("status", res.status().as_u16());
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request finished"
        )
    });
    res.headers_mut().insert(X_REQUEST_ID.clone(), value);
    res
}

/// Rejects a body whose declared length is over the cap before anything reads it.
/// (Bodies without a length are cut off at the cap when read; see [`read_body`].)
pub(crate) async fn limit_body(
    State(st): State<GatewayState>,
    req: Request,
    next: Next,
) -> Response {
    let max = st.inner.config.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    next.run(req).await
}

fn too_large() -> Response {
    problem(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
}

/// Answers `504` when the inner service has not produced a response in time.
pub(crate) async fn timeout(State(st): State<GatewayState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(st.inner.config.request_timeout(), next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!("request timed out");
            problem(StatusCode::GATEWAY_TIMEOUT, "Request timed out")
        }
    }
}

/// Turns a handler panic into the contract's `500` `Internal server error`.
pub(crate) fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into());
    tracing::error!(panic = %what, "handler panicked");
    problem(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// Reads a whole body up to the cap: `413` beyond it, `400` `Invalid request body` if
/// it cannot be read.
pub(crate) async fn read_body(body: Body, max: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt as _;
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
        )),
        Err(e) => Err(ApiError::bad_request("Invalid request body").with_source(e)),
    }
}

/// Decodes a JSON body (the content type is not checked; unknown fields are ignored).
/// Any decode failure is `400` `Invalid request body`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("Invalid request body").with_source(e))
}

/// Reads and decodes a JSON request body.
pub(crate) async fn json_body<T: DeserializeOwned>(
    st: &GatewayState,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(body, st.inner.config.max_body_bytes).await?;
    decode(&bytes)
}

/// A JSON response (`application/json`, value followed by a newline, as the reference
/// writes it).
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut res = (status, bytes).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => ApiError::internal("Internal server error")
            .with_source(e)
            .into_response(),
    }
}

/// Who is calling: address (per the forwarded-header setting) and user agent.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientInfo {
    pub(crate) ip: String,
    pub(crate) user_agent: Option<String>,
}

impl ClientInfo {
    pub(crate) fn from_request(req: &Request, trust_forwarded: bool) -> Self {
        let headers = req.headers();
        let forwarded = trust_forwarded.then(|| forwarded_ip(headers)).flatten();
        let ip = forwarded
            .or_else(|| {
                req.extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect());
        Self { ip, user_agent }
    }
}

fn forwarded_ip(headers: &HeaderMap) -> Option<String> {
    let pick = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 64)
            .map(str::to_string)
    };
    pick("x-forwarded-for").or_else(|| pick("x-real-ip"))
}

/// Unknown paths: the reference router's plain-text 404.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

/// Known path, wrong method: the reference router's plain-text 405.
pub(crate) async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Method Not Allowed\n",
    )
        .into_response()
}
