//! The node manager: registration, configuration, heartbeats, token renewal and drain
//! (`node-protocol.md` §2, §4, §10).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use cynode_client::node::{ControlPlaneClient, NodeClientError};
use cynode_core::proto::v1::node::{
    AckError, AckStatus, CapabilityReport, ConfigAck, ManagedServiceStatus, ManagedServicesStatus,
    NodeConfig, RegisterRequest, ServiceState,
};
use serde_json::{Map, Value, json};

use super::api::{DrainReport, WorkerApiState};
use super::capability::{self, InferenceProbe, ReportInput, RuntimeFacts};
use crate::config::DockerConfig;
use crate::error::{Error, Result};

/// Service name of the node manager in the telemetry logs.
const SERVICE: &str = "node_manager";

/// Settings of the [`NodeManager`].
#[derive(Clone)]
pub struct NodeManagerConfig {
    /// Control-plane base URL (`ORCHESTRATOR_URL`, e.g. `http://localhost:12082`).
    pub orchestrator_url: String,
    /// Registration pre-shared key (never logged).
    pub registration_psk: String,
    /// The node's slug (`NODE_SLUG`).
    pub node_slug: String,
    /// Display name (`NODE_NAME`).
    pub node_name: Option<String>,
    /// Labels reported with the capability.
    pub labels: Vec<String>,
    /// Never run or use inference (label `sandbox_only`).
    pub sandbox_only: bool,
    /// The Worker API's dispatch URL reported as `worker_api.base_url`.
    pub worker_api_base_url: String,
    /// Container engine (for the runtime facts of the report).
    pub docker: DockerConfig,
    /// Base URL of the node-local Ollama-compatible service to probe; `None` probes
    /// nothing.
    pub inference_base_url: Option<String>,
    /// State directory (disk figures).
    pub state_dir: PathBuf,
    /// Heartbeat (capability report and config poll) interval. Default 60 s.
    pub report_interval: Duration,
    /// Per-request timeout towards the control plane. Default 10 s.
    pub http_timeout: Duration,
    /// How long to wait for the control plane's `/readyz` at start; `None` waits
    /// forever. Default 90 s.
    pub readiness_timeout: Option<Duration>,
    /// First retry delay after a failed call. Default 1 s.
    pub backoff_initial: Duration,
    /// Longest retry delay. Default 60 s.
    pub backoff_max: Duration,
    /// On shutdown, how long running jobs may take before they are canceled. Default
    /// 10 s.
    pub drain_grace: Duration,
    /// After canceling, how long jobs get to stop before the drain gives up. Default
    /// 30 s.
    pub kill_grace: Duration,
}

impl fmt::Debug for NodeManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeManagerConfig")
            .field("orchestrator_url", &self.orchestrator_url)
            .field("registration_psk", &"[redacted]")
            .field("node_slug", &self.node_slug)
            .field("labels", &self.labels)
            .field("sandbox_only", &self.sandbox_only)
            .field("worker_api_base_url", &self.worker_api_base_url)
            .field("report_interval", &self.report_interval)
            .finish_non_exhaustive()
    }
}

impl NodeManagerConfig {
    /// A configuration with the documented defaults.
    pub fn new(
        orchestrator_url: impl Into<String>,
        registration_psk: impl Into<String>,
        node_slug: impl Into<String>,
        worker_api_base_url: impl Into<String>,
    ) -> Self {
        Self {
            orchestrator_url: orchestrator_url.into(),
            registration_psk: registration_psk.into(),
            node_slug: node_slug.into(),
            node_name: None,
            labels: Vec::new(),
            sandbox_only: false,
            worker_api_base_url: worker_api_base_url.into(),
            docker: DockerConfig::default(),
            inference_base_url: None,
            state_dir: PathBuf::from("/var/lib/cynode/state"),
            report_interval: Duration::from_secs(60),
            http_timeout: Duration::from_secs(10),
            readiness_timeout: Some(Duration::from_secs(90)),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            drain_grace: Duration::from_secs(10),
            kill_grace: Duration::from_secs(30),
        }
    }
}

/// How [`NodeManager::run`] ended.
#[derive(Debug)]
pub enum ShutdownOutcome {
    /// Shutdown was requested and every job stopped: exit 0.
    Clean(DrainReport),
    /// Shutdown was requested but jobs did not stop in time: exit non-zero.
    Unclean(DrainReport),
    /// A fatal start-up error (control plane never ready, PSK refused, no runtime).
    Failed(String),
}

/// A node JWT and when to renew it.
struct Session {
    jwt: String,
    renew_at: tokio::time::Instant,
}

/// Keeps the node registered and configured; see the [module docs](super).
pub struct NodeManager {
    config: NodeManagerConfig,
    api: WorkerApiState,
    client: ControlPlaneClient,
    runtime: Option<RuntimeFacts>,
    applied_version: Option<String>,
    reachable: bool,
}

impl fmt::Debug for NodeManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeManager")
            .field("config", &self.config)
            .field("applied_version", &self.applied_version)
            .finish_non_exhaustive()
    }
}

/// Why the steady-state loop ended.
enum Interrupt {
    /// The token was refused or is about to expire: register again.
    Reregister,
}

impl NodeManager {
    /// A manager that configures `api` (token, limits, readiness) as the control plane
    /// directs.
    pub fn new(config: NodeManagerConfig, api: WorkerApiState) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .build()
            .map_err(|e| Error::Internal {
                message: "build the HTTP client".into(),
                source: Some(Box::new(e)),
            })?;
        let client = ControlPlaneClient::with_http(&config.orchestrator_url, http)
            .map_err(|e| Error::invalid(format!("orchestrator_url: {e}")))?;
        if config.node_slug.is_empty() {
            return Err(Error::invalid("node_slug: required"));
        }
        if config.registration_psk.is_empty() {
            return Err(Error::invalid("registration_psk: required"));
        }
        Ok(Self {
            config,
            api,
            client,
            runtime: None,
            applied_version: None,
            reachable: false,
        })
    }

    /// The version of the configuration applied last.
    pub fn applied_version(&self) -> Option<&str> {
        self.applied_version.as_deref()
    }

    fn log(&self, level: &str, message: &str, fields: Map<String, Value>) {
        match level {
            "error" => tracing::error!(fields = %json!(fields), "{message}"),
            "warn" => tracing::warn!(fields = %json!(fields), "{message}"),
            _ => tracing::info!(fields = %json!(fields), "{message}"),
        }
        self.api
            .telemetry()
            .log_service(SERVICE, level, message, fields);
    }

    /// Runs until `shutdown` resolves (then drains) or a fatal start-up error.
    ///
    /// Start: reap orphaned sandboxes, wait for the control plane, register, fetch and
    /// apply the configuration, acknowledge it. Then: a heartbeat every
    /// `report_interval` (with a config poll), re-registration on a 401 or near token
    /// expiry, retries with back-off while the control plane is away (never giving up
    /// once registered). On shutdown: stop taking jobs, let running ones finish within
    /// `drain_grace`, cancel the rest.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> ShutdownOutcome {
        let telemetry = self.api.telemetry().clone();
        let mut f = Map::new();
        f.insert("boot_id".into(), json!(telemetry.boot_id()));
        f.insert("node_slug".into(), json!(self.config.node_slug));
        self.log("info", "node manager start (boot)", f);
        tokio::pin!(shutdown);
        let outcome = tokio::select! {
            r = self.main() => Some(r),
            _ = &mut shutdown => None,
        };
        if let Some(Err(message)) = outcome {
            self.log(
                "error",
                "node manager failed",
                obj(json!({"error": message})),
            );
            self.api.begin_drain();
            return ShutdownOutcome::Failed(message);
        }
        let report = self.drain().await;
        let clean = report.left_running == 0;
        self.log(
            if clean { "info" } else { "error" },
            "node manager shutdown",
            obj(json!({"running_at_start": report.running_at_start,
                "canceled": report.canceled, "left_running": report.left_running})),
        );
        if clean {
            ShutdownOutcome::Clean(report)
        } else {
            ShutdownOutcome::Unclean(report)
        }
    }

    /// Stops intake, waits `drain_grace`, cancels what is left, waits `kill_grace`.
    pub async fn drain(&self) -> DrainReport {
        self.log(
            "info",
            "node manager draining",
            obj(json!({"running_jobs": self.api.running_jobs()})),
        );
        self.api
            .drain(self.config.drain_grace, self.config.kill_grace)
            .await
    }

    /// Never returns `Ok`; `Err` is a fatal start-up error.
    async fn main(&mut self) -> std::result::Result<(), String> {
        match self.api.driver().reap_orphans().await {
            Ok(r) => self.log(
                "info",
                "orphaned sandboxes reaped",
                obj(json!({"containers": r.containers, "directories": r.directories})),
            ),
            Err(e) => self.log(
                "warn",
                "orphan reaping failed",
                obj(json!({"error": e.to_string()})),
            ),
        }
        self.wait_for_control_plane().await?;
        let mut first = true;
        loop {
            let session = match self.register(first).await {
                Ok(s) => s,
                Err(e) => return Err(e),
            };
            first = false;
            match self.steady(session).await {
                Interrupt::Reregister => continue,
            }
        }
    }

    async fn wait_for_control_plane(&mut self) -> std::result::Result<(), String> {
        let start = tokio::time::Instant::now();
        let mut logged = false;
        loop {
            match self.client.readyz().await {
                Ok(ready) => {
                    self.reachable = true;
                    self.log(
                        "info",
                        "control plane reachable",
                        obj(json!({"ready": ready})),
                    );
                    return Ok(());
                }
                Err(e) => {
                    if !logged {
                        self.log(
                            "info",
                            "waiting for the control plane",
                            obj(json!({"url": self.config.orchestrator_url, "error": e.to_string()})),
                        );
                        logged = true;
                    }
                }
            }
            if let Some(limit) = self.config.readiness_timeout
                && start.elapsed() >= limit
            {
                return Err(format!(
                    "control plane at {} not reachable within {}s",
                    self.config.orchestrator_url,
                    limit.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn runtime_facts(&mut self) -> RuntimeFacts {
        if let Some(r) = &self.runtime {
            return r.clone();
        }
        match capability::runtime_facts(&self.config.docker).await {
            Ok(r) => {
                self.runtime = Some(r.clone());
                r
            }
            Err(e) => {
                self.log(
                    "warn",
                    "container runtime version unknown",
                    obj(json!({"error": e.to_string()})),
                );
                RuntimeFacts {
                    runtime: self.api.driver().runtime().name().to_string(),
                    version: "unknown".into(),
                }
            }
        }
    }

    async fn report(&mut self) -> CapabilityReport {
        let runtime = self.runtime_facts().await;
        let probe = match (&self.config.inference_base_url, self.config.sandbox_only) {
            (Some(url), false) => capability::probe_inference(url, Duration::from_secs(3)).await,
            _ => InferenceProbe::default(),
        };
        let c = &self.config;
        capability::build_report(&ReportInput {
            node_slug: &c.node_slug,
            node_name: c.node_name.as_deref(),
            labels: &c.labels,
            sandbox_only: c.sandbox_only,
            worker_api_base_url: &c.worker_api_base_url,
            max_concurrency: u32::try_from(self.api.config().max_concurrency).unwrap_or(u32::MAX),
            runtime: &runtime,
            inference: &probe,
            state_dir: &c.state_dir,
            orchestrator_reachable: self.reachable,
        })
    }

    fn backoff(&self, current: Duration) -> Duration {
        (current * 2).min(self.config.backoff_max)
    }

    /// Registers, fetches and applies the configuration, acknowledges it. Retries with
    /// back-off on network errors and 5xx; a refused PSK or request at the very first
    /// registration is fatal, later it is retried like any other failure.
    async fn register(&mut self, first: bool) -> std::result::Result<Session, String> {
        let mut delay = self.config.backoff_initial;
        loop {
            let attempt = self.register_once().await;
            match attempt {
                Ok(session) => return Ok(session),
                Err(e) => {
                    let fatal = first && matches!(e.status(), Some(400 | 401));
                    self.log(
                        if fatal { "error" } else { "warn" },
                        "registration failed",
                        obj(json!({"error": e.to_string(), "retry_in_ms": delay.as_millis() as u64})),
                    );
                    if fatal {
                        return Err(format!("registration refused: {e}"));
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = self.backoff(delay);
        }
    }

    async fn register_once(&mut self) -> std::result::Result<Session, NodeClientError> {
        let report = self.report().await;
        let request = RegisterRequest {
            psk: self.config.registration_psk.clone(),
            capability: report.clone(),
        };
        let boot = match self.client.register(&request).await {
            Ok(b) => {
                self.reachable = true;
                b
            }
            Err(e) => {
                self.reachable = e.status().is_some();
                return Err(e);
            }
        };
        self.client.use_bootstrap(&boot)?;
        let received = tokio::time::Instant::now();
        let lifetime = (boot.auth.expires_at - boot.issued_at)
            .to_std()
            .unwrap_or(Duration::from_secs(60));
        // Renew with 10 % of the lifetime left (at least a second before expiry).
        let renew_in = lifetime
            .saturating_sub(lifetime / 10)
            .min(lifetime.saturating_sub(Duration::from_secs(1)));
        let session = Session {
            jwt: boot.auth.node_jwt.clone(),
            renew_at: received + renew_in,
        };
        self.log(
            "info",
            "registered with the control plane",
            obj(json!({"expires_at": boot.auth.expires_at.to_rfc3339(),
                "renew_in_s": renew_in.as_secs()})),
        );
        let config = self.client.get_config(&session.jwt).await?;
        self.apply_and_ack(&session, config, true).await?;
        if let Err(e) = self.client.report_capability(&session.jwt, &report).await {
            self.log(
                "warn",
                "capability report failed",
                obj(json!({"error": e.to_string()})),
            );
        }
        Ok(session)
    }

    /// Applies a configuration newer than the applied one and acknowledges it.
    async fn apply_and_ack(
        &mut self,
        session: &Session,
        config: NodeConfig,
        force: bool,
    ) -> std::result::Result<(), NodeClientError> {
        if let Some(applied) = &self.applied_version
            && !force
            && config.config_version.as_str() <= applied.as_str()
        {
            return Ok(());
        }
        if config.node_slug != self.config.node_slug && !config.node_slug.is_empty() {
            let message = format!(
                "configuration is for node {:?}, not {:?}",
                config.node_slug, self.config.node_slug
            );
            self.log(
                "error",
                "configuration refused",
                obj(json!({"error": message})),
            );
            let ack = ConfigAck {
                version: 1,
                node_slug: self.config.node_slug.clone(),
                config_version: config.config_version.clone(),
                ack_at: Some(Utc::now().to_rfc3339()),
                status: AckStatus::Failed,
                error: Some(AckError {
                    kind: Some("node_slug_mismatch".into()),
                    message,
                    details: None,
                }),
                effective_config_hash: None,
                managed_services_status: None,
            };
            return self.client.ack_config(&session.jwt, &ack).await;
        }
        // Worker API token and limits.
        let token = config
            .worker_api
            .as_ref()
            .and_then(|w| w.orchestrator_bearer_token.as_deref());
        self.api.set_bearer_token(token);
        let constraints = config.constraints.clone().unwrap_or_default();
        self.api.set_constraints(
            constraints
                .max_request_bytes
                .and_then(|n| usize::try_from(n).ok()),
            constraints.max_job_timeout_seconds,
        );
        if let Some(ib) = &config.inference_backend
            && ib.enabled
        {
            self.log(
                "warn",
                "the configuration asks this node to start an inference service; this worker does not start one (run an Ollama-compatible service and set OLLAMA_BASE_URL)",
                Map::new(),
            );
        }
        // Managed services are not run by this worker: say so in the ack.
        let services: Vec<ManagedServiceStatus> = config
            .managed_services
            .as_ref()
            .map(|m| {
                m.services
                    .iter()
                    .map(|s| ManagedServiceStatus {
                        service_id: s.service_id.clone(),
                        service_type: s.service_type.clone(),
                        state: ServiceState::Error,
                        endpoints: Vec::new(),
                        agent_to_orchestrator_proxy: None,
                        ready_at: None,
                        image: Some(s.image.clone()),
                        container_id: None,
                        restart_count: None,
                        observed_generation: None,
                        last_error: Some(
                            "managed services are not supported by this worker".into(),
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.api.mark_configured();
        let ack = ConfigAck {
            version: 1,
            node_slug: self.config.node_slug.clone(),
            config_version: config.config_version.clone(),
            ack_at: Some(Utc::now().to_rfc3339()),
            status: AckStatus::Applied,
            error: None,
            effective_config_hash: None,
            managed_services_status: (!services.is_empty())
                .then_some(ManagedServicesStatus { services }),
        };
        self.client.ack_config(&session.jwt, &ack).await?;
        self.applied_version = Some(config.config_version.clone());
        self.log(
            "info",
            "configuration applied",
            obj(json!({"config_version": config.config_version,
                "worker_api_enabled": token.is_some()})),
        );
        Ok(())
    }

    /// Heartbeats and config polls until the token must be renewed or is refused.
    async fn steady(&mut self, session: Session) -> Interrupt {
        let mut delay = self.config.backoff_initial;
        let mut next = tokio::time::Instant::now() + self.config.report_interval;
        loop {
            let wake = next.min(session.renew_at);
            tokio::time::sleep_until(wake).await;
            if tokio::time::Instant::now() >= session.renew_at {
                self.log(
                    "info",
                    "node token near expiry; registering again",
                    Map::new(),
                );
                return Interrupt::Reregister;
            }
            match self.tick(&session).await {
                Ok(()) => {
                    if !self.reachable {
                        self.log("info", "control plane reachable again", Map::new());
                    }
                    self.reachable = true;
                    delay = self.config.backoff_initial;
                    next = tokio::time::Instant::now() + self.config.report_interval;
                }
                Err(e) if e.is_unauthorized() || e.status() == Some(404) => {
                    self.log(
                        "warn",
                        "node token refused; registering again",
                        obj(json!({"error": e.to_string()})),
                    );
                    return Interrupt::Reregister;
                }
                Err(e) => {
                    if self.reachable {
                        self.log(
                            "warn",
                            "control plane call failed; retrying",
                            obj(json!({"error": e.to_string()})),
                        );
                    }
                    self.reachable = false;
                    next = tokio::time::Instant::now() + delay;
                    delay = self.backoff(delay);
                }
            }
        }
    }

    /// One heartbeat: capability report, then a config poll.
    async fn tick(&mut self, session: &Session) -> std::result::Result<(), NodeClientError> {
        let report = self.report().await;
        self.client.report_capability(&session.jwt, &report).await?;
        let config = self.client.get_config(&session.jwt).await?;
        self.apply_and_ack(session, config, false).await
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
