//! Typed control-plane configuration with documented defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Control-plane settings. Every field has a default (shown per field), so an empty
/// document is valid. The orchestrator binary fills it from the environment of node
/// protocol §1.3 (`NODE_REGISTRATION_PSK`, `JWT_SECRET`, `JWT_NODE_DURATION`,
/// `ORCHESTRATOR_PUBLIC_URL`, `WORKER_API_BEARER_TOKEN`, `WORKER_API_TARGET_URL`,
/// `NODE_STALE_AFTER`, `INFERENCE_MODEL`, `WORKFLOW_RUNNER_BEARER_TOKEN`).
///
/// Secrets are part of it and never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Registration pre-shared key (default `default-psk-change-me`, the reference
    /// default; set a real one outside development).
    pub registration_psk: String,
    /// HS256 secret node JWTs are signed with (default `change-me-in-production`).
    pub jwt_secret: String,
    /// Node JWT lifetime in seconds (default 86400 = 24 h, `JWT_NODE_DURATION`).
    pub node_token_ttl_secs: u64,
    /// Base of every node-facing URL (default `http://localhost:12082`); a trailing
    /// `/` is ignored.
    pub public_url: String,
    /// Worker API bearer token given to every node (`WORKER_API_BEARER_TOKEN`).
    /// Default unset: each node gets its own random token, minted once and kept in
    /// the node row.
    pub worker_api_bearer_token: Option<String>,
    /// Dispatch URL used for every node instead of the reported
    /// `worker_api.base_url` (`WORKER_API_TARGET_URL`, default unset; a same-host dev
    /// override such as `http://host.containers.internal:12090`).
    pub worker_api_target_url: Option<String>,
    /// A node not heard from for this many seconds becomes `inactive` and gets no
    /// jobs (default 180, `NODE_STALE_AFTER`).
    pub node_stale_after_secs: u64,
    /// How often the orchestrator should run the node reaper, seconds (default 30).
    pub reaper_interval_secs: u64,
    /// Largest accepted request body on node and workflow routes (default 1 MiB);
    /// larger bodies get `413`.
    pub max_body_bytes: usize,
    /// Model pinned for every node's `inference_backend.selected_model`
    /// (`INFERENCE_MODEL`, default unset: chosen from the node's VRAM tier).
    pub inference_model: Option<String>,
    /// Whether policy lets nodes run local inference at all (default true). A node
    /// reporting `inference.mode: require` gets it regardless.
    pub inference_allowed: bool,
    /// Inference image per variant (`cpu`, `cuda`, `rocm`); default empty = the
    /// node's default image.
    pub inference_images: BTreeMap<String, String>,
    /// Whether `/readyz` also requires an online project manager agent (default
    /// true, as the reference). Set false for deployments without PMA.
    pub readiness_requires_pma: bool,
    /// Bearer token for the `/v1/workflow/*` routes (`WORKFLOW_RUNNER_BEARER_TOKEN`);
    /// default unset = the routes are open.
    pub workflow_runner_token: Option<String>,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            registration_psk: "default-psk-change-me".into(),
            jwt_secret: "change-me-in-production".into(),
            node_token_ttl_secs: 24 * 3600,
            public_url: "http://localhost:12082".into(),
            worker_api_bearer_token: None,
            worker_api_target_url: None,
            node_stale_after_secs: 180,
            reaper_interval_secs: 30,
            max_body_bytes: 1024 * 1024,
            inference_model: None,
            inference_allowed: true,
            inference_images: BTreeMap::new(),
            readiness_requires_pma: true,
            workflow_runner_token: None,
        }
    }
}

impl ControlPlaneConfig {
    /// Node JWT lifetime.
    pub fn node_token_ttl(&self) -> Duration {
        Duration::from_secs(self.node_token_ttl_secs.max(1))
    }
    /// Staleness threshold.
    pub fn node_stale_after(&self) -> Duration {
        Duration::from_secs(self.node_stale_after_secs.max(1))
    }
    /// Reaper period.
    pub fn reaper_interval(&self) -> Duration {
        Duration::from_secs(self.reaper_interval_secs.max(1))
    }
    /// `public_url` without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }
}

fn redacted(v: &Option<String>) -> &'static str {
    if v.is_some() {
        "Some([redacted])"
    } else {
        "None"
    }
}

impl fmt::Debug for ControlPlaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlaneConfig")
            .field("registration_psk", &"[redacted]")
            .field("jwt_secret", &"[redacted]")
            .field("node_token_ttl_secs", &self.node_token_ttl_secs)
            .field("public_url", &self.public_url)
            .field(
                "worker_api_bearer_token",
                &redacted(&self.worker_api_bearer_token),
            )
            .field("worker_api_target_url", &self.worker_api_target_url)
            .field("node_stale_after_secs", &self.node_stale_after_secs)
            .field("reaper_interval_secs", &self.reaper_interval_secs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("inference_model", &self.inference_model)
            .field("inference_allowed", &self.inference_allowed)
            .field("inference_images", &self.inference_images)
            .field("readiness_requires_pma", &self.readiness_requires_pma)
            .field(
                "workflow_runner_token",
                &redacted(&self.workflow_runner_token),
            )
            .finish()
    }
}
