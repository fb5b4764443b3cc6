//! The node's capability report (`node-protocol.md` §3), built from measured values:
//! CPU, memory and disk from the host, the container runtime from its API, inference
//! from a probe of the node-local Ollama-compatible service.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use cynode_core::proto::v1::node::{
    CapabilityReport, Compute, ContainerRuntime, Gpu, InferenceCapability, InferenceMode,
    LABEL_SANDBOX_ONLY, ManagedServicesCapability, NetworkCapability, NodeIdentity, Platform,
    SandboxCapability, WorkerApiEndpoint,
};

use super::telemetry;
use crate::config::DockerConfig;
use crate::error::{Error, Result};

/// The container runtime as its API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFacts {
    /// `podman` or `docker`.
    pub runtime: String,
    /// Engine version (`4.3.1`).
    pub version: String,
}

/// Asks the engine at `docker` for its name and version.
pub async fn runtime_facts(docker: &DockerConfig) -> Result<RuntimeFacts> {
    let timeout = docker.request_timeout_secs.max(1);
    let host = docker.host.as_str();
    let unavailable = |e: bollard::errors::Error| Error::Unavailable {
        message: format!("query engine version at {host}"),
        source: Some(Box::new(e)),
    };
    let client = if let Some(path) = host.strip_prefix("unix://") {
        bollard::Docker::connect_with_unix(path, timeout, bollard::API_DEFAULT_VERSION)
    } else {
        bollard::Docker::connect_with_http(host, timeout, bollard::API_DEFAULT_VERSION)
    }
    .map_err(unavailable)?;
    let v = client.version().await.map_err(unavailable)?;
    let components = v.components.unwrap_or_default();
    let podman = components
        .iter()
        .find(|c| c.name.to_ascii_lowercase().contains("podman"));
    let (runtime, version) = match podman {
        Some(c) => ("podman", c.version.clone()),
        None => ("docker", v.version.unwrap_or_default()),
    };
    Ok(RuntimeFacts {
        runtime: runtime.into(),
        version: if version.is_empty() {
            "unknown".into()
        } else {
            version
        },
    })
}

/// This host's name (the default host of the Worker API's dispatch URL).
pub fn hostname() -> String {
    telemetry::hostname()
}

/// What a probe of the node-local inference service found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InferenceProbe {
    /// The service answered `GET /api/tags`.
    pub running: bool,
    /// Models it has.
    pub models: Vec<String>,
}

/// Probes an Ollama-compatible service (`GET <base>/api/tags`). Never fails: an
/// unreachable service is `running: false`.
pub async fn probe_inference(base_url: &str, timeout: Duration) -> InferenceProbe {
    let url = format!("{}/api/tags", base_url.trim_end_matches('/'));
    let Ok(client) = reqwest::Client::builder().timeout(timeout).build() else {
        return InferenceProbe::default();
    };
    let Ok(resp) = client.get(&url).send().await else {
        return InferenceProbe::default();
    };
    if !resp.status().is_success() {
        return InferenceProbe::default();
    }
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let models = body
        .get("models")
        .and_then(|m| m.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("name").or_else(|| m.get("model")))
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    InferenceProbe {
        running: true,
        models,
    }
}

/// Inputs of a report that are configuration rather than measurement.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// The node's slug.
    pub node_slug: &'a str,
    /// Display name.
    pub node_name: Option<&'a str>,
    /// Labels (`sandbox_only` is added when `sandbox_only` is set).
    pub labels: &'a [String],
    /// Never run or use inference.
    pub sandbox_only: bool,
    /// Full dispatch URL of the Worker API.
    pub worker_api_base_url: &'a str,
    /// Jobs run at once.
    pub max_concurrency: u32,
    /// The runtime.
    pub runtime: &'a RuntimeFacts,
    /// The inference probe (ignored on sandbox-only nodes).
    pub inference: &'a InferenceProbe,
    /// State directory (its file system's free space is reported).
    pub state_dir: &'a Path,
    /// Whether the control plane answered the last call.
    pub orchestrator_reachable: bool,
}

/// Builds `node_capability_report_v1` from measured values.
pub fn build_report(input: &ReportInput<'_>) -> CapabilityReport {
    let mut labels = input.labels.to_vec();
    if input.sandbox_only && !labels.iter().any(|l| l == LABEL_SANDBOX_ONLY) {
        labels.push(LABEL_SANDBOX_ONLY.into());
    }
    let sandbox_only = labels.iter().any(|l| l == LABEL_SANDBOX_ONLY);
    let mut features = vec!["netns".to_string(), "seccomp".to_string()];
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        features.push("cgroups_v2".into());
    }
    let inference = if sandbox_only {
        InferenceCapability {
            supported: false,
            mode: Some(InferenceMode::Disabled),
            existing_service: false,
            running: false,
            available_models: Vec::new(),
        }
    } else {
        InferenceCapability {
            supported: input.inference.running,
            mode: None,
            existing_service: input.inference.running,
            running: input.inference.running,
            available_models: input.inference.models.clone(),
        }
    };
    let mem = telemetry::memory_stats();
    let disk = telemetry::disk_stats(input.state_dir);
    CapabilityReport {
        version: 1,
        reported_at: Utc::now(),
        node: NodeIdentity {
            node_slug: input.node_slug.to_string(),
            name: input.node_name.map(str::to_string),
            labels,
        },
        platform: Platform {
            os: telemetry::go_os().into(),
            arch: telemetry::go_arch().into(),
            distro: telemetry::distro(),
            kernel_version: Some(telemetry::kernel_version()),
        },
        container_runtime: Some(ContainerRuntime {
            runtime: input.runtime.runtime.clone(),
            version: Some(input.runtime.version.clone()),
            rootless_supported: None,
            rootless_enabled: None,
        }),
        compute: Compute {
            cpu_cores: telemetry::cpu_cores(),
            ram_mb: mem.total_mb,
            cpu_model: telemetry::cpu_model(),
            storage_free_mb: Some(disk.state_dir_free_mb),
        },
        gpu: Some(Gpu {
            present: false,
            devices: Vec::new(),
        }),
        sandbox: Some(SandboxCapability {
            supported: true,
            features,
            max_concurrency: Some(input.max_concurrency.max(1)),
        }),
        network: Some(NetworkCapability {
            orchestrator_reachable: Some(input.orchestrator_reachable),
            outbound_policy: Some("none".into()),
        }),
        inference: Some(inference),
        worker_api: Some(WorkerApiEndpoint {
            base_url: input.worker_api_base_url.to_string(),
        }),
        managed_services: Some(ManagedServicesCapability {
            supported: false,
            features: Vec::new(),
        }),
        managed_services_status: None,
        tls: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        labels: &'a [String],
        sandbox_only: bool,
        runtime: &'a RuntimeFacts,
        probe: &'a InferenceProbe,
    ) -> ReportInput<'a> {
        ReportInput {
            node_slug: "node-01",
            node_name: None,
            labels,
            sandbox_only,
            worker_api_base_url: "http://w:12090",
            max_concurrency: 3,
            runtime,
            inference: probe,
            state_dir: Path::new("/tmp"),
            orchestrator_reachable: true,
        }
    }

    #[test]
    fn reports_measured_values_and_inference_presence() {
        let rt = RuntimeFacts {
            runtime: "podman".into(),
            version: "4.3.1".into(),
        };
        let probe = InferenceProbe {
            running: true,
            models: vec!["tiny:latest".into()],
        };
        let r = build_report(&input(&[], false, &rt, &probe));
        assert_eq!(r.version, 1);
        assert!(r.compute.ram_mb > 0 && r.compute.cpu_cores >= 1);
        assert_eq!(r.platform.arch, telemetry::go_arch());
        let inf = r.inference.unwrap();
        assert!(inf.supported && inf.existing_service && inf.running);
        assert_eq!(inf.available_models, ["tiny:latest"]);
        assert_eq!(r.sandbox.unwrap().max_concurrency, Some(3));
        assert_eq!(r.worker_api.unwrap().base_url, "http://w:12090");
    }

    #[test]
    fn sandbox_only_nodes_disable_inference_and_carry_the_label() {
        let rt = RuntimeFacts {
            runtime: "docker".into(),
            version: "27".into(),
        };
        let probe = InferenceProbe {
            running: true,
            models: vec![],
        };
        let r = build_report(&input(&["gpu".into()], true, &rt, &probe));
        assert_eq!(r.node.labels, ["gpu", "sandbox_only"]);
        let inf = r.inference.unwrap();
        assert!(!inf.supported && !inf.running);
        assert_eq!(inf.mode, Some(InferenceMode::Disabled));
        assert!(!r.gpu.unwrap().present);
    }
}
