//! Control plane ↔ node manager wire types (node protocol §2–§4).
//!
//! - [`RegisterRequest`] → `POST /v1/nodes/register`, answered by a
//!   [`BootstrapResponse`];
//! - [`CapabilityReport`] (`node_capability_report_v1`), sent inside the registration
//!   and to `POST /v1/nodes/capability` as the heartbeat;
//! - [`NodeConfig`] (`node_configuration_payload_v1`) from `GET /v1/nodes/config`;
//! - [`ConfigAck`] (`node_config_ack_v1`) to `POST /v1/nodes/config`.
//!
//! All bodies are `snake_case` JSON with a top-level `"version": 1`
//! ([`super::VERSION`]). Readers ignore unknown fields; optional fields that are absent
//! are not written. Secrets (the PSK, the node JWT, the Worker API bearer token, agent
//! tokens) never appear in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Timestamp;

/// Path of the registration endpoint on the control plane.
pub const REGISTER_PATH: &str = "/v1/nodes/register";
/// Path of the capability report (heartbeat) endpoint.
pub const CAPABILITY_PATH: &str = "/v1/nodes/capability";
/// Path of the node configuration endpoint (GET the payload, POST the ack).
pub const CONFIG_PATH: &str = "/v1/nodes/config";

/// Label a node reports when it must never run or use inference.
pub const LABEL_SANDBOX_ONLY: &str = "sandbox_only";
/// Label that marks the node on the orchestrator's host (PMA placement preference).
pub const LABEL_ORCHESTRATOR_HOST: &str = "orchestrator_host";

fn is_false(b: &bool) -> bool {
    !*b
}

fn redact<T>(v: &Option<T>) -> &'static str {
    if v.is_some() {
        "Some([redacted])"
    } else {
        "None"
    }
}

// ------------------------------------------------------------------ registration

/// Body of `POST /v1/nodes/register` (§2.2).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The registration pre-shared key.
    pub psk: String,
    /// The node's first capability report.
    pub capability: CapabilityReport,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("psk", &"[redacted]")
            .field("capability", &self.capability)
            .finish()
    }
}

/// Answer to a successful registration (§2.3): the node JWT and the URLs to use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BootstrapResponse {
    /// Payload version, `1`.
    pub version: u32,
    /// When the answer was issued.
    pub issued_at: Timestamp,
    /// The node's credential.
    pub auth: BootstrapAuth,
    /// Where the control plane is and which URLs the node must use.
    pub orchestrator: BootstrapOrchestrator,
}

impl BootstrapResponse {
    /// Checks what a node must check before using the answer: version 1, a node JWT,
    /// and the report and config URLs (§2.3). Returns a readable reason on failure.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != super::VERSION {
            return Err(format!(
                "unsupported bootstrap version {} (supported: {})",
                self.version,
                super::VERSION
            ));
        }
        if self.auth.node_jwt.is_empty() {
            return Err("bootstrap response has no node_jwt".into());
        }
        if self.orchestrator.endpoints.node_report_url.is_empty() {
            return Err("bootstrap response has no node_report_url".into());
        }
        if self.orchestrator.endpoints.node_config_url.is_empty() {
            return Err("bootstrap response has no node_config_url".into());
        }
        Ok(())
    }
}

/// The `auth` block of a [`BootstrapResponse`].
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BootstrapAuth {
    /// HS256 node JWT, presented as `Authorization: Bearer` on the node routes.
    #[serde(default)]
    pub node_jwt: String,
    /// When the JWT expires.
    pub expires_at: Timestamp,
}

impl fmt::Debug for BootstrapAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapAuth")
            .field("node_jwt", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The `orchestrator` block of a [`BootstrapResponse`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BootstrapOrchestrator {
    /// `ORCHESTRATOR_PUBLIC_URL` without a trailing `/`.
    #[serde(default)]
    pub base_url: String,
    /// Node-facing endpoints.
    #[serde(default)]
    pub endpoints: BootstrapEndpoints,
}

/// Node-facing endpoint URLs handed out at registration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BootstrapEndpoints {
    /// `<base>/v1/nodes/register`.
    #[serde(default)]
    pub worker_registration_url: String,
    /// `<base>/v1/nodes/capability`.
    #[serde(default)]
    pub node_report_url: String,
    /// `<base>/v1/nodes/config`.
    #[serde(default)]
    pub node_config_url: String,
}

// ------------------------------------------------------------------ capability report

/// `node_capability_report_v1` (§3.2): what a node is and can do, right now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CapabilityReport {
    /// Payload version, `1`.
    pub version: u32,
    /// When the report was made.
    pub reported_at: Timestamp,
    /// Identity and labels.
    pub node: NodeIdentity,
    /// Operating system and architecture.
    pub platform: Platform,
    /// Container runtime available to the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<ContainerRuntime>,
    /// CPU, memory and disk.
    pub compute: Compute,
    /// Accelerators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    /// Sandbox support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxCapability>,
    /// Network reachability and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkCapability>,
    /// Local inference (Ollama) presence and the node's override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceCapability>,
    /// Where the orchestrator reaches this node's Worker API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_api: Option<WorkerApiEndpoint>,
    /// Whether the node can run managed services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_services: Option<ManagedServicesCapability>,
    /// Observed state of the managed services the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_services_status: Option<ManagedServicesStatus>,
    /// TLS trust material status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
}

impl CapabilityReport {
    /// Whether the node carries `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.node.labels.iter().any(|l| l == label)
    }

    /// The reported Worker API base URL, if any and non-empty.
    pub fn worker_api_base_url(&self) -> Option<&str> {
        self.worker_api
            .as_ref()
            .map(|w| w.base_url.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// `node`: identity of the reporting node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Unique slug (`NODE_SLUG`, YAML `node.id`), required and non-empty.
    #[serde(default)]
    pub node_slug: String,
    /// Display name (`NODE_NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels that drive policy (`sandbox_only`, `orchestrator_host`, `gpu`, `region_*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// `platform`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    /// Go name of the OS (`linux`).
    pub os: String,
    /// Go name of the architecture (`amd64`, `arm64`).
    pub arch: String,
    /// Distribution, e.g. `debian 12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    /// Kernel release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
}

/// `container_runtime`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRuntime {
    /// `podman` or `docker`.
    pub runtime: String,
    /// Runtime version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether rootless operation is possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootless_supported: Option<bool>,
    /// Whether the runtime runs rootless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootless_enabled: Option<bool>,
}

/// `compute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    /// Logical CPU cores.
    pub cpu_cores: u32,
    /// Total memory in MiB.
    pub ram_mb: u64,
    /// CPU model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Free disk under the node's state directory, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_free_mb: Option<u64>,
}

/// `gpu`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// Whether any accelerator is present.
    #[serde(default)]
    pub present: bool,
    /// The devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<GpuDevice>,
}

/// One accelerator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// `nvidia`, `amd`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Vendor device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Video memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_mb: Option<u64>,
    /// Driver stack features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<GpuFeatures>,
}

/// `gpu.devices[].features`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuFeatures {
    /// CUDA compute capability (NVIDIA), e.g. `8.6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_capability: Option<String>,
    /// ROCm version (AMD), e.g. `6.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocm_version: Option<String>,
}

/// `sandbox`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxCapability {
    /// Whether the node can run sandbox jobs.
    #[serde(default)]
    pub supported: bool,
    /// Isolation features (`netns`, `seccomp`, `cgroups_v2`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// How many sandbox jobs the node runs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// `network`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkCapability {
    /// Whether the node reached the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_reachable: Option<bool>,
    /// `unrestricted`, `restricted`, `allowlist` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_policy: Option<String>,
}

/// The node's inference override (`inference.mode`); absent means [`InferenceMode::Allow`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InferenceMode {
    /// The orchestrator decides.
    #[default]
    Allow,
    /// Never run or use inference on this node.
    Disabled,
    /// Inference must run here (policy cannot turn it off).
    Require,
}

/// `inference`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceCapability {
    /// Factual: a usable runtime or an existing service, and not sandbox-only.
    #[serde(default)]
    pub supported: bool,
    /// The node's override; absent = `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<InferenceMode>,
    /// An inference service the node did not start is present.
    #[serde(default, skip_serializing_if = "is_false")]
    pub existing_service: bool,
    /// An inference service is answering.
    #[serde(default, skip_serializing_if = "is_false")]
    pub running: bool,
    /// Models the running service has (Ollama `/api/tags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub available_models: Vec<String>,
}

impl InferenceCapability {
    /// The effective mode (absent = `allow`).
    pub fn effective_mode(&self) -> InferenceMode {
        self.mode.unwrap_or_default()
    }
}

/// `worker_api`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerApiEndpoint {
    /// Full dispatch URL (scheme, host, port), e.g. `http://worker-01:12090`.
    #[serde(default)]
    pub base_url: String,
}

/// `managed_services`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedServicesCapability {
    /// Whether the node can run managed services.
    #[serde(default)]
    pub supported: bool,
    /// `service_containers`, `agent_orchestrator_proxy_bidirectional`,
    /// `agent_orchestrator_proxy_identity_bound`, `agent_proxy_urls_auto`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// `managed_services_status` (in reports and config acks).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedServicesStatus {
    /// One entry per managed service.
    #[serde(default)]
    pub services: Vec<ManagedServiceStatus>,
}

/// Observed state of a managed service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not running.
    #[default]
    Stopped,
    /// Started, health probe not yet passed.
    Starting,
    /// Health probe passed; `endpoints` are usable.
    Ready,
    /// Three probes failed in a row.
    Unhealthy,
    /// Could not be started; see `last_error`.
    Error,
}

/// One managed service as the node sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedServiceStatus {
    /// Reconciliation key.
    pub service_id: String,
    /// `pma`, …
    pub service_type: String,
    /// Observed state.
    pub state: ServiceState,
    /// Proxy endpoints the orchestrator uses to reach the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// The agent → orchestrator proxy bound to this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_to_orchestrator_proxy: Option<AgentProxyStatus>,
    /// When it became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
    /// Image running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Restarts so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<u32>,
    /// The desired-state generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Last error, for `error`/`unhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `agent_to_orchestrator_proxy` of a managed service status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentProxyStatus {
    /// URL the agent uses for MCP calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_gateway_proxy_url: Option<String>,
    /// URL the agent uses to signal readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_callback_proxy_url: Option<String>,
    /// `per_service_uds`, `per_service_loopback_listener` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
}

/// `tls`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsStatus {
    /// `ok`, `missing` or `invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_material_status: Option<String>,
}

// ------------------------------------------------------------------ configuration

/// `node_configuration_payload_v1` (§4.2), rendered for one node per GET.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Payload version, `1`.
    pub version: u32,
    /// ULID, lexicographically monotonic; changes only when the content changes.
    pub config_version: String,
    /// When this copy was rendered.
    pub issued_at: Timestamp,
    /// The node it is for.
    pub node_slug: String,
    /// Control-plane URLs.
    pub orchestrator: ConfigOrchestrator,
    /// Model cache **[later]**; the orchestrator sends `{"cache_url": ""}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cache: Option<ModelCache>,
    /// Worker API credentials; `/v1/worker/*` is enabled only once present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_api: Option<WorkerApiConfig>,
    /// Whether and how to run local inference (§4.3). Absent = do not run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_backend: Option<InferenceBackend>,
    /// Desired managed services (§4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_services: Option<ManagedServicesConfig>,
    /// Sandbox image registries **[later]**; empty = `docker.io`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandbox_registries: Vec<SandboxRegistry>,
    /// Require images pinned by digest **[later]**.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_digest_pinning: Option<bool>,
    /// Limits the node enforces on Worker API requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
    /// Free-form operator notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// `orchestrator` of a [`NodeConfig`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigOrchestrator {
    /// Control-plane base URL.
    pub base_url: String,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: ConfigEndpoints,
}

/// `orchestrator.endpoints` of a [`NodeConfig`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigEndpoints {
    /// The URL the orchestrator dispatches jobs to (§2.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_api_target_url: Option<String>,
    /// Where to send capability reports.
    #[serde(default)]
    pub node_report_url: String,
    /// Upstream of the worker's internal MCP proxy (§7.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_gateway_url: Option<String>,
}

/// `model_cache` **[later]**.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCache {
    /// Cache URL; empty = none.
    #[serde(default)]
    pub cache_url: String,
    /// Pull token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_token: Option<String>,
    /// Pull token expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_token_expires_at: Option<Timestamp>,
}

impl fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelCache")
            .field("cache_url", &self.cache_url)
            .field("pull_token", &redact(&self.pull_token))
            .field("pull_token_expires_at", &self.pull_token_expires_at)
            .finish()
    }
}

/// `worker_api` of a [`NodeConfig`].
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerApiConfig {
    /// Bearer token the orchestrator presents on `/v1/worker/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_bearer_token: Option<String>,
    /// Its expiry **[later]**.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_bearer_token_expires_at: Option<Timestamp>,
}

impl fmt::Debug for WorkerApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerApiConfig")
            .field(
                "orchestrator_bearer_token",
                &redact(&self.orchestrator_bearer_token),
            )
            .field(
                "orchestrator_bearer_token_expires_at",
                &self.orchestrator_bearer_token_expires_at,
            )
            .finish()
    }
}

/// `inference_backend` (§4.3). A missing `enabled` reads as `false`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceBackend {
    /// Start (or keep) the node's inference service. Always written.
    #[serde(default)]
    pub enabled: bool,
    /// `cpu`, `cuda` or `rocm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Port the service listens on (11434).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Image; empty/absent = the node's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Environment of the service (`OLLAMA_NUM_CTX`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Model the node pulls in the background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_model: Option<String>,
}

/// `managed_services` of a [`NodeConfig`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedServicesConfig {
    /// Desired services; the node converges on exactly this set.
    #[serde(default)]
    pub services: Vec<ManagedService>,
}

/// Desired state of one managed service (§4.4).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedService {
    /// Reconciliation key; path-safe (no `/`, `\`, `..`).
    pub service_id: String,
    /// `pma` (`paa`, `model_cache`, `tooling_proxy` later).
    pub service_type: String,
    /// Container image.
    pub image: String,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Health probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `always`, `on-failure`, `no`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// Network settings **[later]**, shape undefined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Value>,
    /// Resource limits **[later]**, shape undefined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// `project_manager` / `project_analyst`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// How the service reaches a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<ManagedServiceInference>,
    /// How the service reaches the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<ManagedServiceOrchestrator>,
}

impl ManagedService {
    /// Whether `service_id` is non-empty and path-safe (no `/`, `\`, `..`).
    pub fn has_safe_id(&self) -> bool {
        let id = &self.service_id;
        !id.is_empty() && !id.contains('/') && !id.contains('\\') && !id.contains("..")
    }
}

/// `healthcheck` of a managed service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// HTTP path probed over the service socket.
    pub path: String,
    /// Status that means healthy.
    pub expected_status: u16,
}

/// `inference` of a managed service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedServiceInference {
    /// `node_local`, `external` or `remote_node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Base URL (unused for node-local: the worker's socket is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// API Egress base URL (`external`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_egress_base_url: Option<String>,
    /// Provider id (`external`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Whether the model must be warmed before `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_required: Option<bool>,
    /// Extra environment for the backend.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backend_env: BTreeMap<String, String>,
}

/// `orchestrator` of a managed service.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedServiceOrchestrator {
    /// `auto`, `http+unix://…` or `http://127.0.0.1:<port>/…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_gateway_proxy_url: Option<String>,
    /// Same forms as `mcp_gateway_proxy_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_callback_proxy_url: Option<String>,
    /// Token the worker adds to the agent's calls; goes to the secure store only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<String>,
    /// Its expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token_expires_at: Option<Timestamp>,
    /// Where to fetch the token instead **[later]**.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token_ref: Option<AgentTokenRef>,
}

impl fmt::Debug for ManagedServiceOrchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedServiceOrchestrator")
            .field("mcp_gateway_proxy_url", &self.mcp_gateway_proxy_url)
            .field("ready_callback_proxy_url", &self.ready_callback_proxy_url)
            .field("agent_token", &redact(&self.agent_token))
            .field("agent_token_expires_at", &self.agent_token_expires_at)
            .field("agent_token_ref", &self.agent_token_ref)
            .finish()
    }
}

/// `agent_token_ref` **[later]**.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentTokenRef {
    /// Kind of reference.
    pub kind: String,
    /// URL to POST to.
    pub url: String,
}

/// One sandbox image registry **[later]**.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxRegistry {
    /// Registry URL.
    pub registry_url: String,
    /// Pull token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_token: Option<String>,
    /// Pull token expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_token_expires_at: Option<Timestamp>,
}

impl fmt::Debug for SandboxRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxRegistry")
            .field("registry_url", &self.registry_url)
            .field("pull_token", &redact(&self.pull_token))
            .field("pull_token_expires_at", &self.pull_token_expires_at)
            .finish()
    }
}

/// `constraints` of a [`NodeConfig`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Largest Worker API request body the node accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    /// Cap on a job's effective timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_job_timeout_seconds: Option<u64>,
}

// ------------------------------------------------------------------ acknowledgement

/// Outcome a node reports for a configuration version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Applied; the node is dispatchable once this is stored.
    #[default]
    Applied,
    /// Could not be applied; `error` says why.
    Failed,
    /// Applied, failed and rolled back **[later]**; the control plane refuses it now.
    RolledBack,
}

impl AckStatus {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }
}

/// `node_config_ack_v1` (§4.5), body of `POST /v1/nodes/config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigAck {
    /// Payload version, `1`.
    pub version: u32,
    /// Must equal the authenticated node's slug.
    pub node_slug: String,
    /// The version being acknowledged.
    pub config_version: String,
    /// When it was applied (RFC 3339; the server uses it if it parses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_at: Option<String>,
    /// `applied` or `failed`.
    pub status: AckStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AckError>,
    /// Hash of what the node actually runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_config_hash: Option<String>,
    /// Managed-service state right after applying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_services_status: Option<ManagedServicesStatus>,
}

/// `error` of a [`ConfigAck`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AckError {
    /// Machine-readable kind.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Human-readable message (stored as `config_ack_error`).
    #[serde(default)]
    pub message: String,
    /// Extra detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip<T>(v: Value) -> T
    where
        T: serde::de::DeserializeOwned + Serialize + PartialEq + fmt::Debug,
    {
        let typed: T = serde_json::from_value(v.clone()).expect("decodes");
        let back = serde_json::to_value(&typed).expect("encodes");
        assert_eq!(back, v, "re-encoding changes nothing");
        let again: T = serde_json::from_value(back).expect("decodes again");
        assert_eq!(again, typed);
        typed
    }

    fn full_report() -> Value {
        json!({
            "version": 1,
            "reported_at": "2026-01-02T03:04:05Z",
            "node": {"node_slug": "node-01", "name": "Node One", "labels": ["gpu", "region_eu"]},
            "platform": {"os": "linux", "arch": "amd64", "distro": "debian 12", "kernel_version": "6.1.0"},
            "container_runtime": {"runtime": "podman", "version": "4.3.1",
                                  "rootless_supported": true, "rootless_enabled": false},
            "compute": {"cpu_cores": 8, "ram_mb": 32768, "cpu_model": "EPYC", "storage_free_mb": 100000},
            "gpu": {"present": true, "devices": [{"vendor": "nvidia", "model": "RTX 4090",
                     "device_id": "0", "vram_mb": 24564, "features": {"cuda_capability": "8.9"}}]},
            "sandbox": {"supported": true, "features": ["netns", "seccomp", "cgroups_v2"], "max_concurrency": 4},
            "network": {"orchestrator_reachable": true, "outbound_policy": "restricted"},
            "inference": {"supported": true, "mode": "allow", "existing_service": true, "running": true,
                          "available_models": ["qwen3:8b"]},
            "worker_api": {"base_url": "http://worker-01:12090"},
            "managed_services": {"supported": true, "features": ["service_containers", "agent_proxy_urls_auto"]},
            "managed_services_status": {"services": [{
                "service_id": "pma-main", "service_type": "pma", "state": "ready",
                "endpoints": ["http://worker-01:12090/v1/worker/managed-services/pma-main/proxy:http"],
                "agent_to_orchestrator_proxy": {"mcp_gateway_proxy_url": "http+unix://x",
                    "ready_callback_proxy_url": "http+unix://y", "binding": "per_service_uds"},
                "ready_at": "2026-01-02T03:04:00Z", "image": "pma:1", "container_id": "abc",
                "restart_count": 2, "observed_generation": 7, "last_error": "none"}]},
            "tls": {"trust_material_status": "ok"}
        })
    }

    #[test]
    fn capability_report_roundtrips_every_field() {
        let r: CapabilityReport = roundtrip(full_report());
        assert_eq!(r.node.node_slug, "node-01");
        assert!(r.has_label("gpu"));
        assert_eq!(r.worker_api_base_url(), Some("http://worker-01:12090"));
        let inf = r.inference.expect("inference");
        assert_eq!(inf.effective_mode(), InferenceMode::Allow);
        assert_eq!(
            r.managed_services_status.expect("status").services[0].state,
            ServiceState::Ready
        );
    }

    #[test]
    fn minimal_report_and_unknown_fields() {
        let v = json!({
            "version": 1, "reported_at": "2026-01-02T03:04:05Z",
            "node": {"node_slug": "n"}, "platform": {"os": "linux", "arch": "arm64"},
            "compute": {"cpu_cores": 2, "ram_mb": 1024}
        });
        let r: CapabilityReport = roundtrip(v.clone());
        assert!(r.inference.is_none());
        let mut extra = v;
        extra["future_field"] = json!({"x": 1});
        extra["node"]["future"] = json!(true);
        let r2: CapabilityReport = serde_json::from_value(extra).expect("unknown fields ignored");
        assert_eq!(r2, r);
    }

    #[test]
    fn register_request_hides_psk() {
        let req: RegisterRequest =
            serde_json::from_value(json!({"psk": "s3cret", "capability": full_report()}))
                .expect("decodes");
        assert_eq!(req.psk, "s3cret");
        assert!(!format!("{req:?}").contains("s3cret"));
    }

    #[test]
    fn bootstrap_spec_example() {
        let b = "http://localhost:12082";
        let v = json!({"version": 1, "issued_at": "2026-01-02T03:04:05Z",
            "auth": {"node_jwt": "eyJ.a.b", "expires_at": "2026-01-03T03:04:05Z"},
            "orchestrator": {"base_url": b, "endpoints": {
                "worker_registration_url": format!("{b}/v1/nodes/register"),
                "node_report_url": format!("{b}/v1/nodes/capability"),
                "node_config_url": format!("{b}/v1/nodes/config")}}});
        let r: BootstrapResponse = roundtrip(v);
        r.validate().expect("valid");
        assert!(!format!("{r:?}").contains("eyJ.a.b"));
        let mut bad = r.clone();
        bad.version = 2;
        assert!(bad.validate().is_err());
        let mut bad = r.clone();
        bad.auth.node_jwt.clear();
        assert!(bad.validate().unwrap_err().contains("node_jwt"));
        let missing: BootstrapResponse = serde_json::from_value(json!({"version": 1,
            "issued_at": "2026-01-02T03:04:05Z",
            "auth": {"node_jwt": "x", "expires_at": "2026-01-03T03:04:05Z"},
            "orchestrator": {"base_url": b, "endpoints": {}}}))
        .expect("decodes");
        assert!(missing.validate().unwrap_err().contains("node_report_url"));
    }

    #[test]
    fn config_spec_example() {
        let v = json!({"version": 1, "config_version": "01J2Z8ABCDEFGHJKMNPQRSTVWX",
            "issued_at": "2026-01-02T03:04:05Z", "node_slug": "node-01",
            "orchestrator": {"base_url": "http://localhost:12082", "endpoints": {
                "worker_api_target_url": "http://worker-01:12090",
                "node_report_url": "http://localhost:12082/v1/nodes/capability"}},
            "model_cache": {"cache_url": ""}, "worker_api": {"orchestrator_bearer_token": "tok-123"},
            "inference_backend": {"enabled": true, "variant": "cuda", "port": 11434,
                "env": {"OLLAMA_CONTEXT_LENGTH": "40960", "OLLAMA_NUM_CTX": "40960"},
                "selected_model": "qwen3.5:35b"},
            "managed_services": {"services": []}});
        let c: NodeConfig = roundtrip(v);
        assert_eq!(
            c.worker_api
                .as_ref()
                .and_then(|w| w.orchestrator_bearer_token.as_deref()),
            Some("tok-123")
        );
        assert!(!format!("{c:?}").contains("tok-123"));
        assert_eq!(c.inference_backend.as_ref().map(|i| i.enabled), Some(true));
    }

    #[test]
    fn config_with_managed_service_and_constraints() {
        let v = json!({"version": 1, "config_version": "01J", "issued_at": "2026-01-02T03:04:05Z",
            "node_slug": "n", "orchestrator": {"base_url": "http://cp", "endpoints": {
                "node_report_url": "http://cp/v1/nodes/capability", "mcp_gateway_url": "http://cp"}},
            "inference_backend": {"enabled": false},
            "managed_services": {"services": [{"service_id": "pma-main", "service_type": "pma",
                "image": "pma:latest", "args": ["--role=project_manager"], "env": {"A": "1"},
                "healthcheck": {"path": "/healthz", "expected_status": 200}, "restart_policy": "always",
                "role": "project_manager",
                "inference": {"mode": "node_local", "default_model": "qwen3:8b",
                              "warmup_required": false, "backend_env": {"OLLAMA_NUM_CTX": "32768"}},
                "orchestrator": {"mcp_gateway_proxy_url": "auto", "ready_callback_proxy_url": "auto",
                                 "agent_token": "agent-secret"}}]},
            "constraints": {"max_request_bytes": 10485760, "max_job_timeout_seconds": 10800}});
        let c: NodeConfig = roundtrip(v);
        let svc = &c.managed_services.as_ref().expect("services").services[0];
        assert!(svc.has_safe_id());
        assert!(!format!("{c:?}").contains("agent-secret"));
        // A missing `enabled` reads as false.
        let ib: InferenceBackend = serde_json::from_value(json!({"variant": "cpu"})).expect("ok");
        assert!(!ib.enabled);
        let bad = ManagedService {
            service_id: "../x".into(),
            ..ManagedService::default()
        };
        assert!(!bad.has_safe_id());
    }

    #[test]
    fn ack_roundtrip() {
        let ok: ConfigAck = roundtrip(json!({"version": 1, "node_slug": "node-01",
            "config_version": "01J", "ack_at": "2026-01-02T03:04:05Z", "status": "applied"}));
        assert_eq!(ok.status, AckStatus::Applied);
        let failed: ConfigAck = roundtrip(json!({"version": 1, "node_slug": "node-01",
            "config_version": "01J", "ack_at": "2026-01-02T03:04:05Z", "status": "failed",
            "error": {"type": "apply", "message": "ollama did not start", "details": {"code": 3}},
            "effective_config_hash": "sha256:ab",
            "managed_services_status": {"services": [{"service_id": "pma-main",
                "service_type": "pma", "state": "error", "last_error": "boom"}]}}));
        assert_eq!(failed.status.as_str(), "failed");
        assert_eq!(
            failed.error.map(|e| e.message),
            Some("ollama did not start".into())
        );
        let rb: ConfigAck = serde_json::from_value(json!({"version": 1, "node_slug": "n",
            "config_version": "1", "status": "rolled_back"}))
        .expect("decodes");
        assert_eq!(rb.status, AckStatus::RolledBack);
    }
}
