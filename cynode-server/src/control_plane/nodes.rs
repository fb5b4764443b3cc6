//! Node routes (node protocol §2–§5): registration, node JWT authentication,
//! capability reports, configuration delivery and acknowledgement, node liveness.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cynode_core::auth::{AuthenticatedNode, issue_node_token, verify_node_token};
use cynode_core::model::{Node, NodeStatus, NodeUpdate, Timestamp};
use cynode_core::proto::v1::node::{
    AckStatus, BootstrapAuth, BootstrapEndpoints, BootstrapOrchestrator, BootstrapResponse,
    CAPABILITY_PATH, CONFIG_PATH, CapabilityReport, ConfigAck, REGISTER_PATH,
};
use cynode_core::store::Store;
use cynode_core::{Error, NodeId};
use serde_json::{Map, Value};

use super::config::ControlPlaneConfig;
use super::error::CpError;
use super::render::{content_hash, next_ulid, render};
use super::state::{ControlPlaneState, digest};
use crate::gateway::http::{json, read_body};

/// Longest node slug accepted, in bytes.
pub const MAX_SLUG_BYTES: usize = 128;

/// Metadata key: hash of the last rendered configuration.
pub(crate) const META_CONFIG_HASH: &str = "config_hash";
/// Metadata key: the configuration version the node last acknowledged.
pub(crate) const META_ACKED_VERSION: &str = "config_acked_version";
/// Metadata key: managed-service status from the last acknowledgement.
pub(crate) const META_ACK_SERVICES: &str = "config_ack_managed_services_status";
/// Metadata key: the node's labels from its newest report.
pub(crate) const META_LABELS: &str = "labels";

/// Whether a slug is acceptable: 1–128 bytes, no whitespace, control characters or
/// `/`.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_SLUG_BYTES
        && !slug
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
}

/// Whether jobs may go to this node at `now`: [`Node::is_dispatchable`] (active,
/// configuration applied, target URL and worker token known) and heard from within
/// `stale_after` (node protocol §5).
pub fn is_dispatchable_at(node: &Node, now: Timestamp, stale_after: Duration) -> bool {
    let stale = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    node.is_dispatchable() && node.last_seen_at.is_some_and(|t| now - t < stale)
}

/// Moves every `active` node not heard from within `stale_after` to `inactive`
/// (node protocol §5); returns the nodes it moved. Run it every
/// [`ControlPlaneConfig::reaper_interval`].
pub async fn reap_stale_nodes(
    store: &dyn Store,
    now: Timestamp,
    stale_after: Duration,
) -> cynode_core::Result<Vec<NodeId>> {
    let stale = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    let mut moved = Vec::new();
    for node in store.list_nodes().await? {
        let seen = node.last_seen_at.unwrap_or(node.updated_at);
        if node.status != NodeStatus::Active || now - seen < stale {
            continue;
        }
        // Re-read just before writing so a report that arrived meanwhile wins.
        let fresh = store.get_node(node.id).await?;
        let seen = fresh.last_seen_at.unwrap_or(fresh.updated_at);
        if fresh.status != NodeStatus::Active || now - seen < stale {
            continue;
        }
        store
            .update_node(
                node.id,
                NodeUpdate {
                    status: Some(NodeStatus::Inactive),
                    ..NodeUpdate::default()
                },
            )
            .await?;
        tracing::info!(node_id = %node.id, node_slug = %node.node_slug, "node inactive: no report within the staleness window");
        moved.push(node.id);
    }
    Ok(moved)
}

fn psk_matches(st: &ControlPlaneState, given: &str) -> bool {
    // Compare fixed-length digests without an early exit.
    let d = digest(given);
    d.iter()
        .zip(st.inner.psk_digest.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The caller's node identity from `Authorization: Bearer <node JWT>` (§2.4).
pub(crate) fn authenticate(
    st: &ControlPlaneState,
    headers: &HeaderMap,
) -> Result<AuthenticatedNode, CpError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(CpError::unauthorized("Missing authorization header"));
    };
    let invalid = || CpError::unauthorized("Invalid or expired token");
    let value = value.to_str().map_err(|_| invalid())?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => return Err(invalid()),
    };
    verify_node_token(&st.inner.keys, token, st.now()).map_err(|e| invalid().with_source(e))
}

pub(crate) async fn read_json(st: &ControlPlaneState, body: Body) -> Result<Value, CpError> {
    let bytes = read_body(body, st.inner.config.max_body_bytes).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CpError::bad_request("Invalid request body").with_source(e))
}

fn target_url(cfg: &ControlPlaneConfig, report: Option<&CapabilityReport>) -> Option<String> {
    cfg.worker_api_target_url
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| report.and_then(|r| r.worker_api_base_url().map(str::to_string)))
}

fn mint_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The Worker API token for a node: the configured shared one, else the node's own
/// (minted once).
fn worker_token(cfg: &ControlPlaneConfig, node: &Node) -> String {
    cfg.worker_api_bearer_token
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            node.worker_api_bearer_token
                .clone()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(mint_token)
}

fn meta(node: &Node) -> Map<String, Value> {
    node.metadata
        .as_ref()
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn meta_str<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.as_ref()?.get(key)?.as_str()
}

/// The update every authenticated report (and registration) makes: liveness,
/// dispatch URL, worker token, labels, and `inactive`/`registered` → `active`.
fn report_update(
    cfg: &ControlPlaneConfig,
    node: &Node,
    report: &CapabilityReport,
    now: Timestamp,
) -> NodeUpdate {
    let status = match node.status {
        NodeStatus::Drained => None,
        NodeStatus::Active => None,
        NodeStatus::Registered | NodeStatus::Inactive => Some(NodeStatus::Active),
    };
    let token = worker_token(cfg, node);
    let mut m = meta(node);
    m.insert(META_LABELS.into(), Value::from(report.node.labels.clone()));
    let metadata = Value::Object(m);
    NodeUpdate {
        status,
        worker_api_target_url: target_url(cfg, Some(report))
            .filter(|u| node.worker_api_target_url.as_deref() != Some(u))
            .map(Some),
        worker_api_bearer_token: (node.worker_api_bearer_token.as_deref() != Some(&token))
            .then_some(Some(token)),
        last_seen_at: Some(now),
        metadata: (node.metadata.as_ref() != Some(&metadata)).then_some(Some(metadata)),
        ..NodeUpdate::default()
    }
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /v1/nodes/register` (§2.2).
pub(crate) async fn register(State(st): State<ControlPlaneState>, body: Body) -> Response {
    match register_inner(&st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn register_inner(st: &ControlPlaneState, body: Body) -> Result<Response, CpError> {
    let cfg = &st.inner.config;
    let v = read_json(st, body).await?;
    let psk = v.get("psk").and_then(Value::as_str).unwrap_or("");
    if !psk_matches(st, psk) {
        tracing::warn!("node registration refused: wrong PSK");
        return Err(CpError::unauthorized("Invalid registration PSK"));
    }
    let cap = v.get("capability").cloned().unwrap_or(Value::Null);
    if cap.get("version").and_then(Value::as_u64)
        != Some(u64::from(cynode_core::proto::v1::VERSION))
    {
        return Err(CpError::unsupported_version(
            "Unsupported capability version",
        ));
    }
    let slug = cap
        .pointer("/node/node_slug")
        .and_then(Value::as_str)
        .unwrap_or("");
    if slug.is_empty() {
        return Err(CpError::bad_request("Node slug is required"));
    }
    if !valid_slug(slug) {
        return Err(CpError::bad_request("Invalid node slug"));
    }
    let report: CapabilityReport = serde_json::from_value(cap.clone())
        .map_err(|e| CpError::bad_request("Invalid request body").with_source(e))?;

    let fail = |e: Error| CpError::storage("Failed to register node", e);
    let store = &st.inner.store;
    let now = st.now();
    let existing = match store.get_node_by_slug(slug).await {
        Ok(n) => Some(n),
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(fail(e)),
    };
    let created = existing.is_none();
    let node = match existing {
        Some(n) => n,
        None => store.upsert_node(slug).await.map_err(fail)?,
    };
    let mut update = report_update(cfg, &node, &report, now);
    if node.status != NodeStatus::Drained {
        update.status = Some(NodeStatus::Active);
    }
    let node = store.update_node(node.id, update).await.map_err(fail)?;
    store
        .record_capabilities(node.id, cap, now)
        .await
        .map_err(fail)?;
    if created
        && let Some(url) = cfg
            .worker_api_target_url
            .as_deref()
            .filter(|s| !s.is_empty())
    {
        let sharing = store
            .list_nodes()
            .await
            .map(|ns| {
                ns.iter()
                    .filter(|n| n.worker_api_target_url.as_deref() == Some(url))
                    .count()
            })
            .unwrap_or(0);
        if sharing > 1 {
            tracing::warn!(
                nodes = sharing,
                "WORKER_API_TARGET_URL override is used by several nodes; they all get the same dispatch URL"
            );
        }
    }
    let (jwt, expires_at) = issue_node_token(
        &st.inner.keys,
        node.id,
        &node.node_slug,
        now,
        cfg.node_token_ttl(),
    );
    tracing::info!(node_id = %node.id, node_slug = %node.node_slug, created, "node registered");
    let base = cfg.base_url().to_string();
    let resp = BootstrapResponse {
        version: cynode_core::proto::v1::VERSION,
        issued_at: now,
        auth: BootstrapAuth {
            node_jwt: jwt,
            expires_at,
        },
        orchestrator: BootstrapOrchestrator {
            endpoints: BootstrapEndpoints {
                worker_registration_url: format!("{base}{REGISTER_PATH}"),
                node_report_url: format!("{base}{CAPABILITY_PATH}"),
                node_config_url: format!("{base}{CONFIG_PATH}"),
            },
            base_url: base,
        },
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &resp))
}

fn node_lookup_error(e: Error, detail: &str) -> CpError {
    match e {
        Error::NotFound { .. } => CpError::not_found("Node not found").with_source(e),
        e => CpError::storage(detail, e),
    }
}

/// `POST /v1/nodes/capability` (§3.1): the heartbeat.
pub(crate) async fn capability(
    State(st): State<ControlPlaneState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match capability_inner(&st, &headers, body).await {
        Ok(()) => no_content(),
        Err(e) => e.into_response(),
    }
}

async fn capability_inner(
    st: &ControlPlaneState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), CpError> {
    let who = authenticate(st, headers)?;
    let v = read_json(st, body).await?;
    if v.get("version").and_then(Value::as_u64) != Some(u64::from(cynode_core::proto::v1::VERSION))
    {
        return Err(CpError::unsupported_version(
            "Unsupported capability version",
        ));
    }
    if v.pointer("/node/node_slug").and_then(Value::as_str) != Some(who.node_slug.as_str()) {
        return Err(CpError::bad_request(
            "node_slug does not match authenticated node",
        ));
    }
    let report: CapabilityReport = serde_json::from_value(v.clone())
        .map_err(|e| CpError::bad_request("Invalid request body").with_source(e))?;
    const FAIL: &str = "Failed to record capability report";
    let store = &st.inner.store;
    let node = store
        .get_node(who.node_id)
        .await
        .map_err(|e| node_lookup_error(e, FAIL))?;
    let now = st.now();
    let update = report_update(&st.inner.config, &node, &report, now);
    if update.status.is_some() {
        tracing::info!(node_id = %node.id, node_slug = %node.node_slug, from = %node.status, "node active again");
    }
    store
        .update_node(node.id, update)
        .await
        .map_err(|e| CpError::storage(FAIL, e))?;
    store
        .record_capabilities(node.id, v, now)
        .await
        .map_err(|e| CpError::storage(FAIL, e))?;
    Ok(())
}

/// `GET /v1/nodes/config` (§4.1): the node's configuration, rendered now; the
/// version changes only when the content does.
pub(crate) async fn get_config(
    State(st): State<ControlPlaneState>,
    headers: HeaderMap,
) -> Response {
    match get_config_inner(&st, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn get_config_inner(
    st: &ControlPlaneState,
    headers: &HeaderMap,
) -> Result<Response, CpError> {
    let who = authenticate(st, headers)?;
    const FAIL: &str = "Failed to load node configuration";
    let cfg = &st.inner.config;
    let store = &st.inner.store;
    let _guard = st.inner.render_lock.lock().await;
    let node = store
        .get_node(who.node_id)
        .await
        .map_err(|e| node_lookup_error(e, FAIL))?;
    let report = store
        .latest_capabilities(node.id)
        .await
        .map_err(|e| CpError::storage(FAIL, e))?
        .and_then(|s| serde_json::from_value::<CapabilityReport>(s.snapshot).ok());
    let target = target_url(cfg, report.as_ref()).or_else(|| node.worker_api_target_url.clone());
    let token = worker_token(cfg, &node);
    let mut payload = render(
        cfg,
        &node.node_slug,
        report.as_ref(),
        target.clone(),
        Some(token.clone()),
    );
    let value = serde_json::to_value(&payload).map_err(|e| CpError::internal(FAIL, e))?;
    let hash = content_hash(&value);
    let now = st.now();
    let unchanged = meta_str(&node, META_CONFIG_HASH) == Some(hash.as_str())
        && node
            .config_version
            .as_deref()
            .is_some_and(|v| !v.is_empty());
    let version = if unchanged {
        node.config_version.clone().unwrap_or_default()
    } else {
        next_ulid(node.config_version.as_deref(), now)
    };
    let mut m = meta(&node);
    m.insert(META_CONFIG_HASH.into(), Value::from(hash));
    let metadata = Value::Object(m);
    let update = NodeUpdate {
        config_version: (!unchanged).then(|| Some(version.clone())),
        worker_api_target_url: target
            .filter(|u| node.worker_api_target_url.as_deref() != Some(u))
            .map(Some),
        worker_api_bearer_token: (node.worker_api_bearer_token.as_deref() != Some(&token))
            .then_some(Some(token)),
        metadata: (node.metadata.as_ref() != Some(&metadata)).then_some(Some(metadata)),
        ..NodeUpdate::default()
    };
    if update.config_version.is_some()
        || update.worker_api_target_url.is_some()
        || update.worker_api_bearer_token.is_some()
        || update.metadata.is_some()
    {
        store
            .update_node(node.id, update)
            .await
            .map_err(|e| CpError::storage(FAIL, e))?;
    }
    if !unchanged {
        tracing::info!(node_id = %node.id, node_slug = %node.node_slug, config_version = %version, "new node configuration version");
    }
    payload.config_version = version;
    payload.issued_at = now;
    Ok(json(StatusCode::OK, &payload))
}

/// `POST /v1/nodes/config` (§4.5): the node's acknowledgement.
pub(crate) async fn ack_config(
    State(st): State<ControlPlaneState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match ack_inner(&st, &headers, body).await {
        Ok(()) => no_content(),
        Err(e) => e.into_response(),
    }
}

async fn ack_inner(st: &ControlPlaneState, headers: &HeaderMap, body: Body) -> Result<(), CpError> {
    let who = authenticate(st, headers)?;
    let v = read_json(st, body).await?;
    if v.get("version").and_then(Value::as_u64) != Some(u64::from(cynode_core::proto::v1::VERSION))
    {
        return Err(CpError::unsupported_version(
            "Unsupported config ack version",
        ));
    }
    if v.get("node_slug").and_then(Value::as_str) != Some(who.node_slug.as_str()) {
        return Err(CpError::bad_request(
            "node_slug does not match authenticated node",
        ));
    }
    if !matches!(
        v.get("status").and_then(Value::as_str),
        Some("applied" | "failed")
    ) {
        return Err(CpError::bad_request("status must be applied or failed"));
    }
    let ack: ConfigAck = serde_json::from_value(v)
        .map_err(|e| CpError::bad_request("Invalid request body").with_source(e))?;
    const FAIL: &str = "Failed to record config acknowledgement";
    let store = &st.inner.store;
    let node = store
        .get_node(who.node_id)
        .await
        .map_err(|e| node_lookup_error(e, FAIL))?;
    if node.config_version.as_deref() != Some(ack.config_version.as_str()) {
        return Err(CpError::conflict(
            "config_version is not the configuration issued to this node",
        ));
    }
    let now = st.now();
    let at = ack
        .ack_at
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(now);
    let error = match ack.status {
        AckStatus::Failed => Some(
            ack.error
                .as_ref()
                .map(|e| e.message.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "configuration not applied".into()),
        ),
        _ => None,
    };
    let mut m = meta(&node);
    m.insert(
        META_ACKED_VERSION.into(),
        Value::from(ack.config_version.clone()),
    );
    if let Some(s) = &ack.managed_services_status {
        m.insert(
            META_ACK_SERVICES.into(),
            serde_json::to_value(s).unwrap_or(Value::Null),
        );
    }
    store
        .update_node(
            node.id,
            NodeUpdate {
                config_ack: Some((at, ack.status.as_str().to_string(), error)),
                last_seen_at: Some(now),
                metadata: Some(Some(Value::Object(m))),
                ..NodeUpdate::default()
            },
        )
        .await
        .map_err(|e| CpError::storage(FAIL, e))?;
    tracing::info!(node_id = %node.id, node_slug = %node.node_slug, config_version = %ack.config_version, status = ack.status.as_str(), "node configuration acknowledged");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(valid_slug("node-01"));
        assert!(valid_slug(&"a".repeat(128)));
        assert!(!valid_slug(&"a".repeat(129)));
        for bad in ["", "a b", "a/b", "a\tb", "a\u{7}"] {
            assert!(!valid_slug(bad), "{bad:?}");
        }
    }
}
