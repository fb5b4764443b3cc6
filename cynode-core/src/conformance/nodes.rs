//! Cases for [`NodeStore`](crate::store::NodeStore): registration, configuration state and
//! capability reports.

use serde_json::json;

use super::support::*;
use crate::NodeId;
use crate::model::*;
use crate::store::Store;

/// `upsert_node` creates a node once (status `registered`, nothing else set) and then
/// returns the same one; lookups by id and slug agree; nodes are listed by slug.
pub async fn nodes_upsert_round_trip(s: &dyn Store) {
    let n = ok(s.upsert_node("node-b").await, "upsert_node(node-b)");
    assert_eq!(n.node_slug, "node-b");
    assert_eq!(n.status, NodeStatus::Registered);
    assert_eq!(
        (
            &n.capability_hash,
            &n.config_version,
            &n.worker_api_target_url,
            &n.worker_api_bearer_token
        ),
        (&None, &None, &None, &None)
    );
    assert_eq!(
        (n.config_ack_at, &n.config_ack_status, &n.config_ack_error),
        (None, &None, &None)
    );
    assert_eq!(
        (n.last_seen_at, n.last_capability_at, &n.metadata),
        (None, None, &None)
    );
    assert!(!n.is_dispatchable());
    assert_eq!(ok(s.get_node(n.id).await, "get_node"), n);
    assert_eq!(
        ok(s.get_node_by_slug("node-b").await, "get_node_by_slug"),
        n
    );
    assert_eq!(
        ok(s.upsert_node("node-b").await, "upsert_node(node-b) again"),
        n,
        "upsert of a known slug must return it unchanged"
    );

    let a = ok(s.upsert_node("Node-A").await, "upsert_node(Node-A)");
    let c = ok(s.upsert_node("node-c").await, "upsert_node(node-c)");
    assert_eq!(
        ok(s.list_nodes().await, "list_nodes"),
        vec![a, n, c],
        "list_nodes must order by slug (byte order)"
    );

    fails(
        s.get_node(NodeId::new()).await,
        NOT_FOUND,
        "get_node(unknown)",
    );
    fails(
        s.get_node_by_slug("NODE-B").await,
        NOT_FOUND,
        "get_node_by_slug is exact",
    );
    fails(
        s.update_node(NodeId::new(), NodeUpdate::default()).await,
        NOT_FOUND,
        "update_node(unknown)",
    );
    fails(
        s.upsert_node("").await,
        INVALID,
        "upsert_node with a blank slug",
    );
    fails(
        s.upsert_node("  ").await,
        INVALID,
        "upsert_node with a blank slug",
    );
    assert_eq!(ok(s.list_nodes().await, "list_nodes").len(), 3);
}

/// Node updates set, keep and clear each field as the update says; a fully configured
/// node is dispatchable.
pub async fn nodes_update(s: &dyn Store) {
    let n = ok(s.upsert_node("gpu-1").await, "upsert_node");
    let other = ok(s.upsert_node("gpu-2").await, "upsert_node");
    let ack_at = at("2030-03-04T05:06:07.080910Z");
    let seen = at("2030-03-04T05:06:08.000001Z");
    let meta = json!({"labels": {"gpu": "a100", "zone": "eu-1"}, "slots": 4});
    let full = ok(
        s.update_node(
            n.id,
            NodeUpdate {
                status: Some(NodeStatus::Active),
                config_version: Some(Some("v7".into())),
                worker_api_target_url: Some(Some("http://10.0.0.5:8081".into())),
                worker_api_bearer_token: Some(Some("enc:AAECAw==".into())),
                config_ack: Some((ack_at, "applied".into(), Some("warning: none".into()))),
                last_seen_at: Some(seen),
                metadata: Some(Some(meta.clone())),
            },
        )
        .await,
        "update_node(all fields)",
    );
    assert_eq!(full.status, NodeStatus::Active);
    assert_eq!(full.config_version.as_deref(), Some("v7"));
    assert_eq!(
        full.worker_api_target_url.as_deref(),
        Some("http://10.0.0.5:8081")
    );
    assert_eq!(
        full.worker_api_bearer_token.as_deref(),
        Some("enc:AAECAw==")
    );
    assert_eq!(full.config_ack_at, Some(ack_at));
    assert_eq!(full.config_ack_status.as_deref(), Some("applied"));
    assert_eq!(full.config_ack_error.as_deref(), Some("warning: none"));
    assert_eq!(full.last_seen_at, Some(seen));
    assert_eq!(full.metadata.as_ref(), Some(&meta));
    assert_eq!(
        (full.node_slug.as_str(), full.created_at),
        ("gpu-1", n.created_at)
    );
    assert!(full.updated_at >= n.updated_at);
    assert!(
        full.is_dispatchable(),
        "active + applied + URL + token must be dispatchable: {full:?}"
    );
    assert_eq!(ok(s.get_node(n.id).await, "get_node"), full);

    // Only the status changes; everything else is kept.
    let drained = ok(
        s.update_node(
            n.id,
            NodeUpdate {
                status: Some(NodeStatus::Drained),
                ..Default::default()
            },
        )
        .await,
        "update_node(status)",
    );
    assert_eq!(drained.status, NodeStatus::Drained);
    assert_eq!(
        (
            &drained.config_version,
            &drained.worker_api_target_url,
            &drained.worker_api_bearer_token,
            &drained.metadata
        ),
        (
            &full.config_version,
            &full.worker_api_target_url,
            &full.worker_api_bearer_token,
            &full.metadata
        ),
        "fields not named in the update changed"
    );
    assert_eq!(
        (drained.config_ack_at, drained.last_seen_at),
        (full.config_ack_at, full.last_seen_at)
    );
    assert!(!drained.is_dispatchable());

    // Some(None) clears; a new ack without an error clears the old error.
    let ack2 = at("2030-03-05T00:00:00Z");
    let cleared = ok(
        s.update_node(
            n.id,
            NodeUpdate {
                config_version: Some(None),
                worker_api_target_url: Some(None),
                worker_api_bearer_token: Some(None),
                metadata: Some(None),
                config_ack: Some((ack2, "failed".into(), None)),
                ..Default::default()
            },
        )
        .await,
        "update_node(clear)",
    );
    assert_eq!(
        (
            &cleared.config_version,
            &cleared.worker_api_target_url,
            &cleared.worker_api_bearer_token,
            &cleared.metadata
        ),
        (&None, &None, &None, &None),
        "Some(None) must clear"
    );
    assert_eq!(
        (
            cleared.config_ack_at,
            cleared.config_ack_status.as_deref(),
            cleared.config_ack_error.as_deref()
        ),
        (Some(ack2), Some("failed"), None)
    );
    assert_eq!(
        (cleared.status, cleared.last_seen_at),
        (NodeStatus::Drained, Some(seen))
    );
    assert_eq!(ok(s.get_node(n.id).await, "get_node"), cleared);
    assert_eq!(
        ok(s.get_node(other.id).await, "get_node(other)"),
        other,
        "another node changed"
    );
    assert_eq!(
        ok(s.upsert_node("gpu-1").await, "upsert_node(known)"),
        cleared,
        "upsert must not reset a known node"
    );
}

/// Capability reports round-trip; the newest report (by report time) wins; the node
/// records the report's `sha256:` hash and time.
pub async fn nodes_capabilities(s: &dyn Store) {
    let n = ok(s.upsert_node("cap").await, "upsert_node");
    let other = ok(s.upsert_node("cap-other").await, "upsert_node");
    assert_eq!(
        ok(s.latest_capabilities(n.id).await, "latest_capabilities"),
        None
    );
    fails(
        s.latest_capabilities(NodeId::new()).await,
        NOT_FOUND,
        "latest_capabilities(unknown)",
    );
    fails(
        s.record_capabilities(NodeId::new(), json!({}), at("2030-01-01T00:00:00Z"))
            .await,
        NOT_FOUND,
        "record_capabilities(unknown)",
    );

    let t1 = at("2030-01-01T00:00:00.000001Z");
    let t2 = at("2030-01-01T00:00:01.5Z");
    let snap1 = json!({"cpu": {"cores": 8}, "gpus": [], "mem_mb": 32768, "runtimes": ["podman"]});
    let snap2 = json!({"cpu": {"cores": 16}, "gpus": [{"model": "A100", "mem_mb": 81920}], "mem_mb": 65536});
    let c1 = ok(
        s.record_capabilities(n.id, snap1.clone(), t1).await,
        "record_capabilities(1)",
    );
    assert_eq!(
        c1,
        CapabilitySnapshot {
            node_id: n.id,
            reported_at: t1,
            snapshot: snap1.clone()
        }
    );
    let node = ok(s.get_node(n.id).await, "get_node");
    let hash1 = format!("sha256:{}", sha256_hex(&snap1.to_string()));
    assert_eq!(
        node.capability_hash.as_deref(),
        Some(hash1.as_str()),
        "capability_hash of report 1"
    );
    assert_eq!(node.last_capability_at, Some(t1));
    assert_eq!(
        ok(s.latest_capabilities(n.id).await, "latest_capabilities"),
        Some(c1)
    );

    let c2 = ok(
        s.record_capabilities(n.id, snap2.clone(), t2).await,
        "record_capabilities(2)",
    );
    let node = ok(s.get_node(n.id).await, "get_node");
    let hash2 = format!("sha256:{}", sha256_hex(&snap2.to_string()));
    assert_ne!(hash1, hash2);
    assert_eq!(
        node.capability_hash.as_deref(),
        Some(hash2.as_str()),
        "capability_hash of report 2"
    );
    assert_eq!(node.last_capability_at, Some(t2));
    assert_eq!(
        ok(s.latest_capabilities(n.id).await, "latest_capabilities"),
        Some(c2.clone())
    );

    // A late report with an older time does not displace the newest one.
    let old = at("2029-12-31T23:59:59Z");
    ok(
        s.record_capabilities(n.id, json!({"stale": true}), old)
            .await,
        "record_capabilities(old)",
    );
    assert_eq!(
        ok(s.latest_capabilities(n.id).await, "latest_capabilities"),
        Some(c2),
        "newest by reported_at must win"
    );

    assert_eq!(
        ok(
            s.latest_capabilities(other.id).await,
            "latest_capabilities(other)"
        ),
        None,
        "reports leaked to another node"
    );
    assert_eq!(ok(s.get_node(other.id).await, "get_node(other)"), other);
}
