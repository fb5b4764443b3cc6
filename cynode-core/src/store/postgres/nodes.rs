//! [`NodeStore`]: worker nodes and their capability reports.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::error::db_err;
use super::rows::*;
use crate::model::*;
use crate::store::memory::{capability_hash, now};
use crate::store::{NodeStore, validate};
use crate::{Error, NodeId, Result};

impl PgStore {
    async fn find_node_by_slug(&self, slug: &str) -> Result<Option<Node>> {
        let row: Option<NodeRow> = sqlx::query_as(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes WHERE node_slug = $1"
        ))
        .bind(slug)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Node::try_from).transpose()
    }
}

#[async_trait]
impl NodeStore for PgStore {
    async fn upsert_node(&self, slug: &str) -> Result<Node> {
        validate::text("node slug", slug, 255)?;
        let t = now();
        let inserted: Option<NodeRow> = sqlx::query_as(concat!(
            "INSERT INTO nodes (id, node_slug, status, created_at, updated_at) \
             VALUES ($1, $2, 'registered', $3, $3) \
             ON CONFLICT (node_slug) DO NOTHING RETURNING ",
            node_columns!()
        ))
        .bind(Uuid::new_v4())
        .bind(slug)
        .bind(t)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match inserted {
            Some(row) => row.try_into(),
            // Already registered (possibly a moment ago by a concurrent call, which has
            // committed by the time ON CONFLICT gave way).
            None => self
                .find_node_by_slug(slug)
                .await?
                .ok_or_else(|| Error::not_found("node", slug)),
        }
    }

    async fn get_node(&self, id: NodeId) -> Result<Node> {
        let row: Option<NodeRow> = sqlx::query_as(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Node::try_from)
            .transpose()?
            .ok_or_else(|| Error::not_found("node", id))
    }

    async fn get_node_by_slug(&self, slug: &str) -> Result<Node> {
        self.find_node_by_slug(slug)
            .await?
            .ok_or_else(|| Error::not_found("node", slug))
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        let rows: Vec<NodeRow> = sqlx::query_as(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes ORDER BY node_slug"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(Node::try_from).collect()
    }

    async fn update_node(&self, id: NodeId, u: NodeUpdate) -> Result<Node> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let row: Option<NodeRow> = sqlx::query_as(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes WHERE id = $1 FOR UPDATE"
        ))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut n: Node = row
            .map(Node::try_from)
            .transpose()?
            .ok_or_else(|| Error::not_found("node", id))?;
        if let Some(s) = u.status {
            n.status = s;
        }
        if let Some(v) = u.config_version {
            n.config_version = v;
        }
        if let Some(v) = u.worker_api_target_url {
            n.worker_api_target_url = v;
        }
        if let Some(v) = u.worker_api_bearer_token {
            n.worker_api_bearer_token = v;
        }
        if let Some((at, status, err)) = u.config_ack {
            n.config_ack_at = Some(at);
            n.config_ack_status = Some(status);
            n.config_ack_error = err;
        }
        if let Some(v) = u.last_seen_at {
            n.last_seen_at = Some(v);
        }
        if let Some(v) = u.metadata {
            n.metadata = v;
        }
        let row: NodeRow = sqlx::query_as(concat!(
            "UPDATE nodes SET status = $2, config_version = $3, worker_api_target_url = $4, \
             worker_api_bearer_token = $5, config_ack_at = $6, config_ack_status = $7, \
             config_ack_error = $8, last_seen_at = $9, metadata = $10, updated_at = $11 \
             WHERE id = $1 RETURNING ",
            node_columns!()
        ))
        .bind(id.0)
        .bind(n.status.as_str())
        .bind(&n.config_version)
        .bind(&n.worker_api_target_url)
        .bind(&n.worker_api_bearer_token)
        .bind(n.config_ack_at)
        .bind(&n.config_ack_status)
        .bind(&n.config_ack_error)
        .bind(n.last_seen_at)
        .bind(&n.metadata)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.try_into()
    }

    async fn record_capabilities(
        &self,
        id: NodeId,
        snapshot: Value,
        at: Timestamp,
    ) -> Result<CapabilitySnapshot> {
        let hash = capability_hash(&snapshot);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let found: Option<Uuid> = sqlx::query_scalar(
            "UPDATE nodes SET capability_hash = $2, last_capability_at = $3, updated_at = $4 \
             WHERE id = $1 RETURNING id",
        )
        .bind(id.0)
        .bind(&hash)
        .bind(at)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if found.is_none() {
            return Err(Error::not_found("node", id));
        }
        let reported_at: Timestamp = sqlx::query_scalar(
            "INSERT INTO node_capabilities (id, node_id, reported_at, capability_snapshot) \
             VALUES ($1, $2, $3, $4) RETURNING reported_at",
        )
        .bind(Uuid::new_v4())
        .bind(id.0)
        .bind(at)
        .bind(&snapshot)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(CapabilitySnapshot {
            node_id: id,
            reported_at,
            snapshot,
        })
    }

    async fn latest_capabilities(&self, id: NodeId) -> Result<Option<CapabilitySnapshot>> {
        let row: Option<(Option<Timestamp>, Option<Value>)> = sqlx::query_as(
            "SELECT c.reported_at, c.capability_snapshot FROM nodes n \
             LEFT JOIN LATERAL (SELECT reported_at, capability_snapshot FROM node_capabilities \
                                WHERE node_id = n.id ORDER BY reported_at DESC, seq DESC LIMIT 1) c \
                    ON true \
             WHERE n.id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            None => Err(Error::not_found("node", id)),
            Some((Some(reported_at), Some(snapshot))) => Ok(Some(CapabilitySnapshot {
                node_id: id,
                reported_at,
                snapshot,
            })),
            Some(_) => Ok(None),
        }
    }
}
