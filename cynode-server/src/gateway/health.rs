//! Probes (§3): unauthenticated, plain text.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::state::GatewayState;

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Liveness: always `200` `ok`.
#[utoipa::path(
    get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain"))
)]
pub(crate) async fn healthz() -> Response {
    text(StatusCode::OK, "ok".into())
}

/// Readiness: `200` `ready` when storage answers and every configured readiness check
/// passes; else `503` with the first failing reason.
#[utoipa::path(
    get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready; the body says why", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn readyz(State(st): State<GatewayState>) -> Response {
    if let Err(e) = st.inner.store.ping().await {
        tracing::warn!(error = %e, "readiness: storage check failed");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "readiness check failed (database error)".into(),
        );
    }
    for check in &st.inner.readiness {
        if let Some(reason) = check.check().await {
            return text(StatusCode::SERVICE_UNAVAILABLE, reason);
        }
    }
    text(StatusCode::OK, "ready".into())
}
