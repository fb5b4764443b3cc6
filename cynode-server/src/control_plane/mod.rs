//! The control plane (node protocol §2–§5, §9; workflow API of agents-and-mcp §7.2–7.4)
//! as one `axum::Router`, served on port 12082 by the orchestrator.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use cynode_server::control_plane::{router, ControlPlaneConfig, ControlPlaneState};
//!
//! let store = cynode_core::store::open(&cynode_core::store::StoreConfig::Memory).await?;
//! let config = ControlPlaneConfig {
//!     registration_psk: "a real secret".into(),
//!     jwt_secret: "another real secret".into(),
//!     ..ControlPlaneConfig::default()
//! };
//! let state = ControlPlaneState::new(store, config);
//! tokio::spawn(state.clone().run_reaper(std::future::pending()));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:12082").await?;
//! axum::serve(listener, router(state)).await?;
//! # Ok(()) }
//! ```
//!
//! Routes:
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /healthz` | — | `200 ok` |
//! | `GET /readyz` | — | `200 ready`, or `503` with the exact reason bodies of §9 |
//! | `POST /v1/nodes/register` | PSK in body | `201` new / `200` known node, bootstrap body |
//! | `POST /v1/nodes/capability` | node JWT | `204`; the heartbeat |
//! | `GET /v1/nodes/config` | node JWT | `200` configuration payload |
//! | `POST /v1/nodes/config` | node JWT | `204`; configuration acknowledgement |
//! | `POST /v1/workflow/{start,renew,release,checkpoint,resume}` | runner token if set | see [`workflow`] |
//!
//! Errors are `application/problem+json` with the reference's `type` URNs. Node
//! states (§5): registration makes a node `active`; [`reap_stale_nodes`] (run by
//! [`ControlPlaneState::run_reaper`]) makes a node that has not reported within
//! `node_stale_after_secs` `inactive`; any authenticated report makes it `active`
//! again; `drained` is set by an administrator and kept. A node is dispatchable per
//! [`is_dispatchable_at`].
//!
//! Deliberate choices where the reference is silent or differs: the PSK is compared
//! in constant time; bodies over 1 MiB get `413`; slugs are 1–128 bytes without
//! whitespace, control characters or `/`; a capability report whose `version` or
//! slug does not match is `400`; `config_version` is a ULID minted only when the
//! rendered content changes; acknowledging a version that is not the node's current
//! one is `409`; a per-node random Worker API token is minted when no shared one is
//! configured (kept in the node row; not encrypted at rest).

mod config;
mod error;
mod health;
mod nodes;
pub mod render;
mod state;
pub mod workflow;

use axum::Router;
use axum::middleware::from_fn;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

pub use config::ControlPlaneConfig;
pub use error::{CpError, UNSUPPORTED_VERSION_TYPE};
pub use health::{NOT_READY_DATABASE, NOT_READY_NO_INFERENCE, NOT_READY_PMA};
pub use nodes::{MAX_SLUG_BYTES, is_dispatchable_at, reap_stale_nodes, valid_slug};
pub use state::{ControlPlaneState, ControlPlaneStateBuilder, ExternalInference};

use crate::gateway::http;

impl ControlPlaneState {
    /// Runs [`reap_stale_nodes`] once with this state's clock and configuration.
    pub async fn reap_stale_nodes(&self) -> cynode_core::Result<Vec<cynode_core::NodeId>> {
        reap_stale_nodes(
            self.inner.store.as_ref(),
            self.now(),
            self.inner.config.node_stale_after(),
        )
        .await
    }

    /// Runs the node reaper every `reaper_interval_secs` until `shutdown` completes.
    /// Storage errors are logged and retried on the next tick.
    pub async fn run_reaper(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.inner.config.reaper_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.reap_stale_nodes().await {
                        tracing::warn!(error = %e, "node reaper failed; retrying next tick");
                    }
                }
            }
        }
    }

    /// Whether `/readyz` would answer `200`; otherwise its exact `503` body.
    pub async fn readiness(&self) -> Result<(), &'static str> {
        health::readiness(self).await
    }
}

/// The control-plane router with its layers (request id and span, panic → `500`).
/// Serve it as is; no connect info is needed.
pub fn router(state: ControlPlaneState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            cynode_core::proto::v1::node::REGISTER_PATH,
            post(nodes::register),
        )
        .route(
            cynode_core::proto::v1::node::CAPABILITY_PATH,
            post(nodes::capability),
        )
        .route(
            cynode_core::proto::v1::node::CONFIG_PATH,
            get(nodes::get_config).post(nodes::ack_config),
        )
        .merge(workflow::routes())
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(from_fn(http::observe))
                .layer(CatchPanicLayer::custom(http::panic_response)),
        )
        .with_state(state)
}
