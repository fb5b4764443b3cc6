//! Typed configuration of the driver. Every struct deserializes with serde (missing keys
//! take the documented defaults), so a binary can fill it from YAML or environment
//! variables; the library itself reads neither.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How to reach a Docker-API compatible engine (Docker, or Podman's API service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// Engine address: `unix:///path/to.sock`, `tcp://host:port` or `http://host:port`.
    /// Default `unix:///var/run/docker.sock`.
    pub host: String,
    /// Time allowed for the engine to answer one request (response headers; streams may
    /// run longer). Default 120 s.
    pub request_timeout_secs: u64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: "unix:///var/run/docker.sock".into(),
            request_timeout_secs: 120,
        }
    }
}

impl DockerConfig {
    /// A config for the given engine address with default timeouts.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            ..Self::default()
        }
    }
}

/// The uid and gid every sandbox process runs as. Never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunAs {
    /// Numeric user id inside the container.
    pub uid: u32,
    /// Numeric group id inside the container.
    pub gid: u32,
}

impl Default for RunAs {
    /// `65532:65532`, the conventional "nonroot" id.
    fn default() -> Self {
        Self {
            uid: 65532,
            gid: 65532,
        }
    }
}

/// Resource limits applied to one sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// CPU cores (fractions allowed). Default 2.
    pub cpu_cores: f64,
    /// Memory in MiB, swap included (no extra swap). Default 2048.
    pub memory_mb: u64,
    /// Maximum number of processes/threads. Default 512.
    pub pids: i64,
    /// Maximum open files. Default 4096.
    pub nofile: u64,
    /// `RLIMIT_NPROC` set in the container. The kernel counts it per user across the
    /// whole node (every sandbox runs as the same uid), so it is a node-wide backstop;
    /// the per-job bound is `pids`. Must not exceed the engine's own hard limit.
    /// Default 8192.
    pub nproc: u64,
    /// Size of the `/tmp` tmpfs in MiB. Default 256.
    pub tmp_mb: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            cpu_cores: 2.0,
            memory_mb: 2048,
            pids: 512,
            nofile: 4096,
            nproc: 8192,
            tmp_mb: 256,
        }
    }
}

/// Whether the driver may pull an image that is not present locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Use the local copy; pull only when it is missing (default).
    #[default]
    IfMissing,
    /// Never pull: a missing image is an error at once.
    Never,
}

/// Which images jobs may use and how they are obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagePolicy {
    /// Image used when a job names none. Default `alpine:latest`.
    pub default_image: String,
    /// Allowed images: exact references (`python:3.12`) or whole repositories
    /// (`python:*`). Short Docker Hub names match their `docker.io/library/` form.
    /// Empty allows every image. The default image always passes.
    pub allowed: Vec<String>,
    /// When to pull. Default [`PullPolicy::IfMissing`].
    pub pull: PullPolicy,
    /// Time limit for one pull. Default 600 s.
    pub pull_timeout_secs: u64,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        Self {
            default_image: "alpine:latest".into(),
            allowed: Vec::new(),
            pull: PullPolicy::IfMissing,
            pull_timeout_secs: 600,
        }
    }
}

/// Caps on the files collected from `/job/artifacts` after a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtifactLimits {
    /// Largest file whose content is returned; larger ones are listed as skipped.
    /// Default 10 MiB.
    pub max_file_bytes: u64,
    /// Total content returned per job. Default 50 MiB.
    pub max_total_bytes: u64,
    /// Most files listed per job. Default 1000.
    pub max_files: usize,
}

impl Default for ArtifactLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 10 << 20,
            max_total_bytes: 50 << 20,
            max_files: 1000,
        }
    }
}

/// The upstream behind the per-job inference socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceConfig {
    /// Base URL of the node's Ollama API: plain HTTP (`http://host[:port]`) or an HTTP
    /// server on a Unix socket (`unix:///path/to/socket`). Default
    /// `http://127.0.0.1:11434`.
    pub upstream_url: String,
    /// Largest request body accepted from a sandbox. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Time allowed for the upstream to start answering. Default 120 s.
    pub request_timeout_secs: u64,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            upstream_url: "http://127.0.0.1:11434".into(),
            max_body_bytes: 10 << 20,
            request_timeout_secs: 120,
        }
    }
}

/// Configuration of a [`crate::Driver`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriverConfig {
    /// Identity of this driver instance, written into the `cynodeai.owner` label of every
    /// container it creates; [`crate::Driver::reap_orphans`] removes containers with the
    /// same owner that this process does not track. Use a stable id per node. Default
    /// `cynode-sandbox`.
    pub owner: String,
    /// Host directory holding the per-job directories `<job_id>/{workspace,job,run}`.
    /// Default `/var/lib/cynode/state/sandbox_mounts`.
    pub mount_root: PathBuf,
    /// User the sandbox runs as. Default `65532:65532`.
    pub run_as: RunAs,
    /// Limits applied when a job asks for none.
    pub default_limits: ResourceLimits,
    /// Upper bounds for what a job may ask for.
    pub max_limits: ResourceLimits,
    /// Wall-clock limit when a job sets none. Default 3600 s.
    pub default_timeout_secs: u64,
    /// Largest wall-clock limit a job may have. Default 10800 s.
    pub max_timeout_secs: u64,
    /// Time between SIGTERM and SIGKILL when a job runs past its deadline. Default 5 s.
    pub stop_grace_secs: u64,
    /// Bytes of stdout and of stderr kept per job (the rest is counted and dropped).
    /// Default 262144.
    pub max_output_bytes: usize,
    /// Largest `/job/result.json` read back. Default 10 MiB.
    pub max_result_file_bytes: u64,
    /// Artifact caps.
    pub artifacts: ArtifactLimits,
    /// Image allowlist and pulling.
    pub images: ImagePolicy,
    /// Inference upstream; `None` refuses jobs that ask for inference.
    pub inference: Option<InferenceConfig>,
    /// Read-only root filesystem. Default true.
    pub read_only_rootfs: bool,
    /// Relabel bind mounts privately for SELinux (`:Z`). Default true; ignored by
    /// engines on hosts without SELinux.
    pub selinux_relabel: bool,
    /// Podman rootless: map the worker's uid into the container (`keep-id`). Default false.
    pub userns_keep_id: bool,
    /// Keep the per-job directories after the job (for debugging). Default false.
    pub keep_job_dirs: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        let max_limits = ResourceLimits {
            cpu_cores: 64.0,
            memory_mb: 1 << 20,
            pids: 1 << 16,
            nofile: 1 << 20,
            nproc: 1 << 22,
            tmp_mb: 1 << 16,
        };
        Self {
            owner: "cynode-sandbox".into(),
            mount_root: PathBuf::from("/var/lib/cynode/state/sandbox_mounts"),
            run_as: RunAs::default(),
            default_limits: ResourceLimits::default(),
            max_limits,
            default_timeout_secs: 3600,
            max_timeout_secs: 10800,
            stop_grace_secs: 5,
            max_output_bytes: 262_144,
            max_result_file_bytes: 10 << 20,
            artifacts: ArtifactLimits::default(),
            images: ImagePolicy::default(),
            inference: None,
            read_only_rootfs: true,
            selinux_relabel: true,
            userns_keep_id: false,
            keep_job_dirs: false,
        }
    }
}

impl DriverConfig {
    /// Checks the values a driver cannot work with (root user, empty owner, zero limits).
    pub fn validate(&self) -> Result<()> {
        if self.run_as.uid == 0 || self.run_as.gid == 0 {
            return Err(Error::invalid(
                "run_as: sandboxes never run as uid or gid 0",
            ));
        }
        if self.owner.is_empty()
            || !self
                .owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(Error::invalid("owner: must be non-empty [A-Za-z0-9_.-]"));
        }
        if !self.mount_root.is_absolute() {
            return Err(Error::invalid("mount_root: must be an absolute path"));
        }
        for (name, l) in [
            ("default_limits", &self.default_limits),
            ("max_limits", &self.max_limits),
        ] {
            if !(l.cpu_cores > 0.0 && l.cpu_cores.is_finite())
                || l.memory_mb == 0
                || l.pids <= 0
                || l.nofile == 0
                || l.nproc == 0
                || l.tmp_mb == 0
            {
                return Err(Error::invalid(format!(
                    "{name}: every limit must be positive"
                )));
            }
        }
        if self.default_timeout_secs == 0 || self.max_timeout_secs == 0 {
            return Err(Error::invalid("timeouts must be positive"));
        }
        if self.max_output_bytes == 0 {
            return Err(Error::invalid("max_output_bytes must be positive"));
        }
        if let Some(inf) = &self.inference
            && !supported_upstream(&inf.upstream_url)
        {
            return Err(Error::invalid(
                "inference.upstream_url: only http:// and unix:// upstreams are supported",
            ));
        }
        Ok(())
    }

    pub(crate) fn stop_grace(&self) -> Duration {
        Duration::from_secs(self.stop_grace_secs)
    }
}

/// Whether the inference proxy can forward to `url` (`http://…` or `unix://…`).
pub(crate) fn supported_upstream(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("unix://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_deserialize_from_partial_input() {
        DriverConfig::default().validate().unwrap();
        let c: DriverConfig =
            serde_json::from_str(r#"{"owner":"node-1","run_as":{"uid":1000,"gid":1000}}"#).unwrap();
        assert_eq!(c.owner, "node-1");
        assert_eq!(c.max_output_bytes, 262_144);
        assert_eq!(c.images.default_image, "alpine:latest");
        c.validate().unwrap();
    }

    #[test]
    fn root_and_bad_owner_are_refused() {
        let c = DriverConfig {
            run_as: RunAs { uid: 0, gid: 1 },
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = DriverConfig {
            owner: "a b".into(),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = DriverConfig {
            inference: Some(InferenceConfig {
                upstream_url: "https://x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
