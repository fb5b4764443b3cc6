//! Worker nodes and their capability reports.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::{RowExt, SqliteStore, db, exists, json_text, opt_json_text, stored, ts};
use crate::model::*;
use crate::store::memory::{capability_hash, now};
use crate::store::{NodeStore, validate};
use crate::{Error, NodeId, Result};

fn node_row(r: &SqliteRow) -> Result<Node> {
    Ok(Node {
        id: r.id("id")?,
        node_slug: r.text("node_slug")?,
        status: r.parsed("status")?,
        capability_hash: r.opt_text("capability_hash")?,
        config_version: r.opt_text("config_version")?,
        worker_api_target_url: r.opt_text("worker_api_target_url")?,
        worker_api_bearer_token: r.opt_text("worker_api_bearer_token")?,
        config_ack_at: r.opt_time("config_ack_at")?,
        config_ack_status: r.opt_text("config_ack_status")?,
        config_ack_error: r.opt_text("config_ack_error")?,
        last_seen_at: r.opt_time("last_seen_at")?,
        last_capability_at: r.opt_time("last_capability_at")?,
        metadata: r.opt_json("metadata")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

async fn fetch_node(conn: &mut SqliteConnection, id: NodeId, action: &str) -> Result<Node> {
    let row = sqlx::query(
        "SELECT id, node_slug, status, capability_hash, config_version, worker_api_target_url,
                worker_api_bearer_token, config_ack_at, config_ack_status, config_ack_error,
                last_seen_at, last_capability_at, metadata, created_at, updated_at
         FROM nodes WHERE id = ?1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await
    .map_err(db(action))?;
    row.as_ref()
        .map(node_row)
        .transpose()?
        .ok_or_else(|| Error::not_found("node", id))
}

#[async_trait]
impl NodeStore for SqliteStore {
    async fn upsert_node(&self, slug: &str) -> Result<Node> {
        const ACTION: &str = "register the node";
        validate::text("node slug", slug, 255)?;
        let mut tx = self.write(ACTION).await?;
        let t = ts(now());
        sqlx::query(
            "INSERT INTO nodes (id, node_slug, status, created_at, updated_at)
             VALUES (?1, ?2, 'registered', ?3, ?3)
             ON CONFLICT (node_slug) DO NOTHING",
        )
        .bind(NodeId::new().to_string())
        .bind(slug)
        .bind(t)
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        let row = sqlx::query(
            "SELECT id, node_slug, status, capability_hash, config_version, worker_api_target_url,
                    worker_api_bearer_token, config_ack_at, config_ack_status, config_ack_error,
                    last_seen_at, last_capability_at, metadata, created_at, updated_at
             FROM nodes WHERE node_slug = ?1",
        )
        .bind(slug)
        .fetch_one(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        let node = node_row(&row)?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(node)
    }

    async fn get_node(&self, id: NodeId) -> Result<Node> {
        let mut conn = self.reader.acquire().await.map_err(db("read the node"))?;
        fetch_node(&mut conn, id, "read the node").await
    }

    async fn get_node_by_slug(&self, slug: &str) -> Result<Node> {
        let row = sqlx::query(
            "SELECT id, node_slug, status, capability_hash, config_version, worker_api_target_url,
                    worker_api_bearer_token, config_ack_at, config_ack_status, config_ack_error,
                    last_seen_at, last_capability_at, metadata, created_at, updated_at
             FROM nodes WHERE node_slug = ?1",
        )
        .bind(slug)
        .fetch_optional(&self.reader)
        .await
        .map_err(db("read the node"))?;
        row.as_ref()
            .map(node_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("node", slug))
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        let rows = sqlx::query(
            "SELECT id, node_slug, status, capability_hash, config_version, worker_api_target_url,
                    worker_api_bearer_token, config_ack_at, config_ack_status, config_ack_error,
                    last_seen_at, last_capability_at, metadata, created_at, updated_at
             FROM nodes ORDER BY node_slug",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db("list nodes"))?;
        rows.iter().map(node_row).collect()
    }

    async fn update_node(&self, id: NodeId, u: NodeUpdate) -> Result<Node> {
        const ACTION: &str = "update the node";
        let mut tx = self.write(ACTION).await?;
        let mut n = fetch_node(&mut tx, id, ACTION).await?;
        // Same read-modify-write as the reference backend, under the write lock.
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
            n.config_ack_at = Some(stored(at));
            n.config_ack_status = Some(status);
            n.config_ack_error = err;
        }
        if let Some(v) = u.last_seen_at {
            n.last_seen_at = Some(stored(v));
        }
        if let Some(v) = u.metadata {
            n.metadata = v;
        }
        n.updated_at = now();
        sqlx::query(
            "UPDATE nodes SET status = ?2, config_version = ?3, worker_api_target_url = ?4,
                              worker_api_bearer_token = ?5, config_ack_at = ?6, config_ack_status = ?7,
                              config_ack_error = ?8, last_seen_at = ?9, metadata = ?10, updated_at = ?11
             WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(n.status.as_str())
        .bind(&n.config_version)
        .bind(&n.worker_api_target_url)
        .bind(&n.worker_api_bearer_token)
        .bind(n.config_ack_at.map(ts))
        .bind(&n.config_ack_status)
        .bind(&n.config_ack_error)
        .bind(n.last_seen_at.map(ts))
        .bind(opt_json_text(&n.metadata))
        .bind(ts(n.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(n)
    }

    async fn record_capabilities(
        &self,
        id: NodeId,
        snapshot: Value,
        at: Timestamp,
    ) -> Result<CapabilitySnapshot> {
        const ACTION: &str = "record the capability report";
        let at = stored(at);
        let mut tx = self.write(ACTION).await?;
        let updated = sqlx::query(
            "UPDATE nodes SET capability_hash = ?2, last_capability_at = ?3, updated_at = ?4 WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(capability_hash(&snapshot))
        .bind(ts(at))
        .bind(ts(now()))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        if updated.rows_affected() == 0 {
            return Err(Error::not_found("node", id));
        }
        sqlx::query(
            "INSERT INTO node_capabilities (id, node_id, reported_at, capability_snapshot)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(id.to_string())
        .bind(ts(at))
        .bind(json_text(&snapshot))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(CapabilitySnapshot {
            node_id: id,
            reported_at: at,
            snapshot,
        })
    }

    async fn latest_capabilities(&self, id: NodeId) -> Result<Option<CapabilitySnapshot>> {
        const ACTION: &str = "read the capability report";
        let mut tx = self.read(ACTION).await?;
        if !exists(
            &mut tx,
            "SELECT 1 FROM nodes WHERE id = ?1",
            id.to_string(),
            ACTION,
        )
        .await?
        {
            return Err(Error::not_found("node", id));
        }
        // Among reports with the same time, the one recorded last wins.
        let row = sqlx::query(
            "SELECT reported_at, capability_snapshot FROM node_capabilities
             WHERE node_id = ?1 ORDER BY reported_at DESC, rowid DESC LIMIT 1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        row.map(|r| {
            Ok(CapabilitySnapshot {
                node_id: id,
                reported_at: r.time("reported_at")?,
                snapshot: r.json("capability_snapshot")?,
            })
        })
        .transpose()
    }
}
