//! The control plane's shared state and the hooks the orchestrator plugs in.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use cynode_core::auth::{JwtKey, JwtKeys};
use cynode_core::model::Timestamp;
use cynode_core::store::Store;
use sha2::{Digest, Sha256};

use super::config::ControlPlaneConfig;
use crate::gateway::{Clock, ReadinessCheck, SystemClock};

/// Whether an inference path other than a node exists (node protocol §9: "any active
/// unexpired API credential"). The orchestrator plugs in its API Egress view here.
#[async_trait]
pub trait ExternalInference: Send + Sync {
    /// `true` when an external provider can serve inference now.
    async fn available(&self) -> bool;
}

/// Everything the control plane's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlaneState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: ControlPlaneConfig,
    pub(crate) keys: JwtKeys,
    pub(crate) psk_digest: [u8; 32],
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) external_inference: Option<Arc<dyn ExternalInference>>,
    pub(crate) local_pma: Option<Arc<dyn ReadinessCheck>>,
    /// Serializes config rendering per process so two concurrent GETs of one node
    /// do not mint two versions for the same content.
    pub(crate) render_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for ControlPlaneState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlaneState")
            .field("backend", &self.inner.store.backend())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl ControlPlaneState {
    /// State with the system clock, node JWTs signed with `config.jwt_secret`, and no
    /// external inference or local PMA.
    pub fn new(store: Arc<dyn Store>, config: ControlPlaneConfig) -> Self {
        Self::builder(store, config).build()
    }

    /// A builder to set the clock, JWT keys and readiness hooks.
    pub fn builder(store: Arc<dyn Store>, config: ControlPlaneConfig) -> ControlPlaneStateBuilder {
        ControlPlaneStateBuilder {
            keys: None,
            store,
            config,
            clock: Arc::new(SystemClock),
            external_inference: None,
            local_pma: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ControlPlaneConfig {
        &self.inner.config
    }

    /// The storage.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The keys node JWTs are signed and verified with.
    pub fn keys(&self) -> &JwtKeys {
        &self.inner.keys
    }

    /// Now, per the state's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }
}

/// Builds a [`ControlPlaneState`].
pub struct ControlPlaneStateBuilder {
    store: Arc<dyn Store>,
    config: ControlPlaneConfig,
    keys: Option<JwtKeys>,
    clock: Arc<dyn Clock>,
    external_inference: Option<Arc<dyn ExternalInference>>,
    local_pma: Option<Arc<dyn ReadinessCheck>>,
}

impl fmt::Debug for ControlPlaneStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlaneStateBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ControlPlaneStateBuilder {
    /// Sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Uses these keys for node JWTs instead of one built from `config.jwt_secret`
    /// (key id `node`).
    pub fn keys(mut self, keys: JwtKeys) -> Self {
        self.keys = Some(keys);
        self
    }
    /// Sets the external inference hook used by `/readyz`.
    pub fn external_inference(mut self, hook: Arc<dyn ExternalInference>) -> Self {
        self.external_inference = Some(hook);
        self
    }
    /// Sets the local PMA health check used by `/readyz` (`None` = healthy).
    pub fn local_pma(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.local_pma = Some(check);
        self
    }
    /// Builds the state.
    pub fn build(self) -> ControlPlaneState {
        let keys = self.keys.unwrap_or_else(|| {
            JwtKeys::new(JwtKey::new(
                "node",
                self.config.jwt_secret.as_bytes().to_vec(),
            ))
        });
        ControlPlaneState {
            inner: Arc::new(Inner {
                psk_digest: digest(&self.config.registration_psk),
                store: self.store,
                config: self.config,
                keys,
                clock: self.clock,
                external_inference: self.external_inference,
                local_pma: self.local_pma,
                render_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }
}
