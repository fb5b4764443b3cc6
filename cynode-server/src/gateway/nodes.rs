//! Worker nodes (§10.2): read-only views of registered nodes for every authenticated
//! user. Dispatch URLs and tokens are never shown; the admin additionally sees the full
//! newest capability report on `GET /v1/nodes/{id}`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use cynode_core::model::{CapabilitySnapshot, Node, NodeStatus};
use cynode_core::{Error, NodeId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json as j};
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::{ApiError, ProblemDetails};
use super::http::json;
use super::listing::{Page, fmt_time, is_admin};
use super::state::GatewayState;

/// A node as users see it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeResponse {
    /// Node id.
    pub node_id: String,
    /// Slug the node registered with.
    pub node_slug: String,
    /// `registered`, `active`, `inactive` or `drained`.
    pub status: String,
    /// False once drained (takes no new work).
    pub enabled: bool,
    /// Whether jobs may be dispatched to it now.
    pub dispatchable: bool,
    /// Last heartbeat or report (RFC 3339), if any.
    pub last_heartbeat: Option<String>,
    /// Configuration version last delivered.
    pub config_version: Option<String>,
    /// `applied` or `failed`, once acknowledged.
    pub config_ack_status: Option<String>,
    /// Short summary of the newest capability report (`null` before the first):
    /// `reported_at`, `platform`, `cpu_cores`, `ram_mb`, `gpu`, `sandbox`,
    /// `inference`, `models`, `labels`.
    #[schema(value_type = Option<Object>)]
    pub capability_summary: Option<Value>,
    /// Registration time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// The full newest capability report; admin only, on `GET /v1/nodes/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub capability: Option<Value>,
}

/// `GET /v1/nodes` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeListResponse {
    /// Nodes, by slug.
    pub nodes: Vec<NodeResponse>,
    /// Cursor of the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/nodes` query.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct NodesQuery {
    /// Only nodes in this status.
    pub status: Option<String>,
    /// Page size 1..200 (default 50).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The few capability fields worth a glance (node protocol §3.2); missing parts are
/// left out.
fn summarize(c: &CapabilitySnapshot) -> Value {
    let s = &c.snapshot;
    let get = |path: &[&str]| {
        let mut v = s;
        for p in path {
            v = v.get(p)?;
        }
        Some(v.clone())
    };
    let platform = match (get(&["platform", "os"]), get(&["platform", "arch"])) {
        (Some(Value::String(os)), Some(Value::String(arch))) => Some(format!("{os}/{arch}")),
        _ => None,
    };
    let vram: u64 = get(&["gpu", "devices"])
        .and_then(|d| d.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.get("vram_mb").and_then(Value::as_u64))
        .sum();
    let mut out = serde_json::Map::new();
    out.insert("reported_at".into(), j!(fmt_time(c.reported_at)));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.into(), v);
        }
    };
    put("platform", platform.map(Value::String));
    put("cpu_cores", get(&["compute", "cpu_cores"]));
    put("ram_mb", get(&["compute", "ram_mb"]));
    put(
        "gpu",
        get(&["gpu", "present"]).map(|p| j!({"present": p, "vram_mb": vram})),
    );
    put("sandbox", get(&["sandbox", "supported"]));
    put("inference", get(&["inference", "supported"]));
    put("models", get(&["inference", "available_models"]));
    put("labels", get(&["node", "labels"]));
    Value::Object(out)
}

async fn view(
    st: &GatewayState,
    node: &Node,
    with_full_report: bool,
) -> Result<NodeResponse, ApiError> {
    let caps = st
        .inner
        .store
        .latest_capabilities(node.id)
        .await
        .map_err(|e| ApiError::storage("Failed to get node capabilities", e))?;
    Ok(NodeResponse {
        node_id: node.id.to_string(),
        node_slug: node.node_slug.clone(),
        status: node.status.as_str().into(),
        enabled: node.status != NodeStatus::Drained,
        dispatchable: node.is_dispatchable(),
        last_heartbeat: node.last_seen_at.map(fmt_time),
        config_version: node.config_version.clone(),
        config_ack_status: node.config_ack_status.clone(),
        capability_summary: caps.as_ref().map(summarize),
        created_at: fmt_time(node.created_at),
        updated_at: fmt_time(node.updated_at),
        capability: caps.filter(|_| with_full_report).map(|c| c.snapshot),
    })
}

/// Registered worker nodes.
#[utoipa::path(
    get, path = "/v1/nodes", tag = "nodes",
    params(NodesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of nodes, by slug", body = NodeListResponse),
        (status = 400, description = "`Invalid limit or cursor` / `Invalid status`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_nodes(
    State(st): State<GatewayState>,
    _user: AuthUser,
    query: Result<Query<NodesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<NodeStatus>()
                .map_err(|_| ApiError::bad_request("Invalid status"))?,
        ),
    };
    let nodes: Vec<Node> = st
        .inner
        .store
        .list_nodes()
        .await
        .map_err(|e| ApiError::storage("Failed to list nodes", e))?
        .into_iter()
        .filter(|n| status.is_none_or(|s| n.status == s))
        .collect();
    let (nodes, next_cursor) = page.apply(nodes);
    let mut out = Vec::with_capacity(nodes.len());
    for n in &nodes {
        out.push(view(&st, n, false).await?);
    }
    Ok(json(
        StatusCode::OK,
        &NodeListResponse {
            nodes: out,
            next_cursor,
        },
    ))
}

/// One node, by id or slug.
#[utoipa::path(
    get, path = "/v1/nodes/{id}", tag = "nodes",
    params(("id" = String, Path, description = "Node id (UUID) or slug")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node", body = NodeResponse),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Node not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_node(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = &st.inner.store;
    let found = match id.trim().parse::<NodeId>() {
        Ok(nid) => store.get_node(nid).await,
        Err(_) => store.get_node_by_slug(id.trim()).await,
    };
    let node = match found {
        Ok(n) => n,
        Err(Error::NotFound { .. }) | Err(Error::InvalidInput(_)) => {
            return Err(ApiError::not_found("Node not found"));
        }
        Err(e) => return Err(ApiError::storage("Failed to get node", e)),
    };
    let v = view(&st, &node, is_admin(&st, &user)).await?;
    Ok(json(StatusCode::OK, &v))
}
