//! Probes (node protocol §9, user-api §3): unauthenticated, plain text.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cynode_core::model::Node;
use cynode_core::proto::v1::node::{InferenceMode, LABEL_SANDBOX_ONLY};
use serde_json::Value;

use super::nodes::is_dispatchable_at;
use super::state::ControlPlaneState;

/// `/readyz` body when storage fails.
pub const NOT_READY_DATABASE: &str = "readiness check failed (database error)";
/// `/readyz` body when no inference path exists.
pub const NOT_READY_NO_INFERENCE: &str = "no inference path available (no dispatchable nodes; register and configure a worker node or configure external provider keys)";
/// `/readyz` body when the project manager agent is not online.
pub const NOT_READY_PMA: &str = "PMA not ready (no local PMA and no worker has reported PMA ready)";

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Liveness: always `200` `ok`.
pub(crate) async fn healthz() -> Response {
    text(StatusCode::OK, "ok")
}

/// Readiness: `200` `ready`, else `503` with the first failing reason's exact body.
pub(crate) async fn readyz(State(st): State<ControlPlaneState>) -> Response {
    match readiness(&st).await {
        Ok(()) => text(StatusCode::OK, "ready"),
        Err(body) => text(StatusCode::SERVICE_UNAVAILABLE, body),
    }
}

fn inference_capable(snapshot: &Value) -> bool {
    let sandbox_only = snapshot
        .pointer("/node/labels")
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(LABEL_SANDBOX_ONLY)));
    let disabled = snapshot
        .pointer("/inference/mode")
        .and_then(|m| serde_json::from_value::<InferenceMode>(m.clone()).ok())
        == Some(InferenceMode::Disabled);
    let supported = snapshot
        .pointer("/inference/supported")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    supported && !disabled && !sandbox_only
}

fn pma_ready(snapshot: &Value) -> bool {
    snapshot
        .pointer("/managed_services_status/services")
        .and_then(Value::as_array)
        .is_some_and(|services| {
            services.iter().any(|s| {
                s.get("service_type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("pma"))
                    && s.get("state").and_then(Value::as_str) == Some("ready")
                    && s.get("endpoints")
                        .and_then(Value::as_array)
                        .is_some_and(|e| !e.is_empty())
            })
        })
}

/// `Ok` when ready; otherwise the exact `/readyz` body.
pub(crate) async fn readiness(st: &ControlPlaneState) -> Result<(), &'static str> {
    let store = &st.inner.store;
    let db = |e: cynode_core::Error| {
        tracing::warn!(error = %e, "readiness: storage check failed");
        NOT_READY_DATABASE
    };
    store.ping().await.map_err(db)?;
    let now = st.now();
    let stale = st.inner.config.node_stale_after();
    let nodes: Vec<Node> = store
        .list_nodes()
        .await
        .map_err(db)?
        .into_iter()
        .filter(|n| is_dispatchable_at(n, now, stale))
        .collect();
    let mut snapshots = Vec::with_capacity(nodes.len());
    for n in &nodes {
        if let Some(s) = store.latest_capabilities(n.id).await.map_err(db)? {
            snapshots.push(s.snapshot);
        }
    }
    let node_path = snapshots.iter().any(inference_capable);
    let external = match &st.inner.external_inference {
        Some(h) if !node_path => h.available().await,
        _ => false,
    };
    if !node_path && !external {
        return Err(NOT_READY_NO_INFERENCE);
    }
    if st.inner.config.readiness_requires_pma {
        let local = match &st.inner.local_pma {
            Some(c) => c.check().await.is_none(),
            None => false,
        };
        if !local && !snapshots.iter().any(pma_ready) {
            return Err(NOT_READY_PMA);
        }
    }
    Ok(())
}
