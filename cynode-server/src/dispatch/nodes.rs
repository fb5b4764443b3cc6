//! Worker nodes as placement sees them, read from [`NodeStore`], and their tokens.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cynode_core::model::Node;
use cynode_core::store::NodeStore;
use cynode_sched::NodeInfo;
use tokio::time::Instant;

/// Where the dispatcher gets the bearer token of a node's Worker API.
///
/// The control plane stores one per node (`nodes.worker_api_bearer_token`); a deployment
/// that encrypts it at rest plugs its decryption in here.
#[async_trait]
pub trait WorkerTokens: Send + Sync {
    /// The token to present to `node`'s Worker API.
    async fn token(&self, node: &Node) -> cynode_core::Result<String>;
}

/// Uses `nodes.worker_api_bearer_token` as stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoredTokens;

#[async_trait]
impl WorkerTokens for StoredTokens {
    async fn token(&self, node: &Node) -> cynode_core::Result<String> {
        node.worker_api_bearer_token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                cynode_core::Error::invalid(format!(
                    "node {} has no Worker API token",
                    node.node_slug
                ))
            })
    }
}

/// A node and what placement knows of it.
#[derive(Clone, Debug)]
pub(crate) struct NodeEntry {
    pub(crate) info: NodeInfo,
    pub(crate) node: Node,
}

/// The node list, reused for a short time (the placement lock guards it).
#[derive(Debug, Default)]
pub(crate) struct NodeCache {
    entries: Option<(Instant, Arc<Vec<NodeEntry>>)>,
}

impl NodeCache {
    /// The nodes, from the cache while it is younger than `ttl`.
    pub(crate) async fn get(
        &mut self,
        store: &dyn NodeStore,
        ttl: Duration,
        stale_after: Option<Duration>,
    ) -> cynode_core::Result<Arc<Vec<NodeEntry>>> {
        if let Some((at, e)) = &self.entries
            && at.elapsed() < ttl
        {
            return Ok(e.clone());
        }
        let fresh = Arc::new(read_nodes(store, stale_after).await?);
        self.entries = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}

/// Every node with its newest capability report. Dispatchable = the control plane's
/// rule (active, configuration applied, Worker API URL and token known, and, when
/// `stale_after` is set, heard from within it).
async fn read_nodes(
    store: &dyn NodeStore,
    stale_after: Option<Duration>,
) -> cynode_core::Result<Vec<NodeEntry>> {
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for node in store.list_nodes().await? {
        let dispatchable = match stale_after {
            Some(max) => crate::control_plane::is_dispatchable_at(&node, now, max),
            None => node.is_dispatchable(),
        };
        let report = store
            .latest_capabilities(node.id)
            .await?
            .map(|s| s.snapshot)
            .unwrap_or(serde_json::Value::Null);
        let info = NodeInfo::from_report(node.id, &node.node_slug, dispatchable, &report);
        out.push(NodeEntry { info, node });
    }
    Ok(out)
}
