//! What a caller asks the driver to run.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};

/// Network access of a sandbox. Every policy available today means "no route out":
/// only the loopback interface exists inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NetworkPolicy {
    /// No network (default).
    #[default]
    None,
    /// Same as [`NetworkPolicy::None`] for now (kept for protocol compatibility).
    Restricted,
}

impl NetworkPolicy {
    /// Parses the protocol value (`none`, `restricted`); anything else is an error.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "none" => Ok(Self::None),
            "restricted" => Ok(Self::Restricted),
            other => Err(Error::invalid(format!(
                "network_policy: unsupported value {other:?}"
            ))),
        }
    }
}

/// Resources a job asks for; unset fields take the driver defaults, and every value is
/// capped by the driver maxima.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceRequest {
    /// CPU cores.
    pub cpu_cores: Option<f64>,
    /// Memory in MiB.
    pub memory_mb: Option<u64>,
    /// Process/thread limit.
    pub pids: Option<i64>,
}

/// Access to model inference through the per-job Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InferenceAccess {
    /// Models the job may name. `None`: any model already installed on the upstream.
    pub allowed_models: Option<Vec<String>>,
    /// This job's own inference upstream (plain `http://host[:port]`, or
    /// `unix:///path/to/socket`), e.g. a per-job router holding the job's token for
    /// external models, served on a socket only the worker can reach. `None`: the
    /// node's upstream
    /// ([`crate::InferenceConfig::upstream_url`]). The socket's limits (body size,
    /// timeout) stay the node's either way.
    pub upstream_url: Option<String>,
}

/// Runner mode of agent-compatible images (`cynode-sba`): the image must carry the
/// `io.cynodeai.sandbox.agent-compatible=true` label and the mode is passed in
/// `SBA_EXECUTION_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerMode {
    /// The runner talks to a model (needs inference).
    AgentInference,
    /// The runner executes a fixed list of steps.
    DirectSteps,
}

impl RunnerMode {
    /// The value of `SBA_EXECUTION_MODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerMode::AgentInference => "agent_inference",
            RunnerMode::DirectSteps => "direct_steps",
        }
    }
}

/// A file placed in `/workspace` or `/job` before the container starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Path relative to the directory; no `..` or absolute paths.
    pub path: String,
    /// File content.
    pub content: Vec<u8>,
    /// Make the file executable (mode 0755 instead of 0644).
    pub executable: bool,
}

impl InputFile {
    /// A regular (non-executable) file.
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            content: content.into(),
            executable: false,
        }
    }

    /// An executable file.
    pub fn executable(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            content: content.into(),
            executable: true,
        }
    }
}

/// One job: what to run, with which limits. Build with [`JobSpec::new`] and the
/// `with_*` methods.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Task the job belongs to (label `cynodeai.task_id`, env `CYNODE_TASK_ID`).
    pub task_id: String,
    /// Job id, unique among running jobs of a driver (label and env `CYNODE_JOB_ID`).
    pub job_id: String,
    /// OCI image reference; empty uses the driver's default image.
    pub image: String,
    /// argv; empty runs the image's default command.
    pub command: Vec<String>,
    /// Extra environment. Reserved names (`CYNODE_*` context keys, proxy and inference
    /// URLs) are dropped and reported in the diagnostics.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container. Default `/workspace`.
    pub working_dir: Option<String>,
    /// Wall-clock limit; default and maximum come from the driver config.
    pub timeout: Option<Duration>,
    /// Resource request.
    pub resources: ResourceRequest,
    /// Network policy.
    pub network: NetworkPolicy,
    /// Inference through the per-job socket; `None` creates no socket.
    pub inference: Option<InferenceAccess>,
    /// Runner mode (agent-compatible images only).
    pub runner_mode: Option<RunnerMode>,
    /// Files written to `/workspace` before start.
    pub workspace_files: Vec<InputFile>,
    /// Files written to `/job` before start (e.g. `job.json`).
    pub job_files: Vec<InputFile>,
}

impl JobSpec {
    /// A job running `command` in `image`, with fresh task and job ids.
    pub fn new<I, S>(image: impl Into<String>, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            task_id: uuid::Uuid::new_v4().to_string(),
            job_id: uuid::Uuid::new_v4().to_string(),
            image: image.into(),
            command: command.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            working_dir: None,
            timeout: None,
            resources: ResourceRequest::default(),
            network: NetworkPolicy::None,
            inference: None,
            runner_mode: None,
            workspace_files: Vec::new(),
            job_files: Vec::new(),
        }
    }

    /// Sets the task and job ids.
    pub fn with_ids(mut self, task_id: impl Into<String>, job_id: impl Into<String>) -> Self {
        self.task_id = task_id.into();
        self.job_id = job_id.into();
        self
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the wall-clock limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the memory limit in MiB.
    pub fn with_memory_mb(mut self, mb: u64) -> Self {
        self.resources.memory_mb = Some(mb);
        self
    }

    /// Sets the process limit.
    pub fn with_pids(mut self, pids: i64) -> Self {
        self.resources.pids = Some(pids);
        self
    }

    /// Sets the CPU limit in cores.
    pub fn with_cpus(mut self, cores: f64) -> Self {
        self.resources.cpu_cores = Some(cores);
        self
    }

    /// Enables the inference socket.
    pub fn with_inference(mut self, access: InferenceAccess) -> Self {
        self.inference = Some(access);
        self
    }

    /// Adds a file to `/workspace`.
    pub fn with_workspace_file(mut self, file: InputFile) -> Self {
        self.workspace_files.push(file);
        self
    }

    /// Adds a file to `/job`.
    pub fn with_job_file(mut self, file: InputFile) -> Self {
        self.job_files.push(file);
        self
    }

    /// Checks everything that can be checked without the runtime.
    pub(crate) fn validate(&self) -> Result<()> {
        for (name, id) in [("task_id", &self.task_id), ("job_id", &self.job_id)] {
            if id.is_empty() {
                return Err(Error::invalid(format!("{name}: required")));
            }
            if id.len() > 128 || id.chars().any(char::is_control) {
                return Err(Error::invalid(format!(
                    "{name}: at most 128 printable characters"
                )));
            }
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid("command: arguments may not contain NUL"));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(Error::invalid(format!("env: invalid variable {k:?}")));
            }
        }
        if let Some(dir) = &self.working_dir
            && (!dir.starts_with('/') || dir.contains('\0'))
        {
            return Err(Error::invalid("working_dir: must be an absolute path"));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("timeout: must be positive"));
        }
        let r = &self.resources;
        if r.cpu_cores.is_some_and(|c| !(c > 0.0 && c.is_finite()))
            || r.memory_mb == Some(0)
            || r.pids.is_some_and(|p| p <= 0)
        {
            return Err(Error::invalid("resources: every limit must be positive"));
        }
        if let Some(inf) = &self.inference
            && inf.allowed_models.as_ref().is_some_and(|m| m.is_empty())
        {
            return Err(Error::invalid(
                "inference.allowed_models: must not be empty when set",
            ));
        }
        if let Some(url) = self
            .inference
            .as_ref()
            .and_then(|i| i.upstream_url.as_ref())
            && !crate::config::supported_upstream(url)
        {
            return Err(Error::invalid(
                "inference.upstream_url: only http:// and unix:// upstreams are supported",
            ));
        }
        for f in self.workspace_files.iter().chain(&self.job_files) {
            check_relative_path(&f.path)?;
        }
        Ok(())
    }
}

/// A relative path made only of normal components.
pub(crate) fn check_relative_path(path: &str) -> Result<()> {
    let p = std::path::Path::new(path);
    let ok = !path.is_empty()
        && !path.contains('\0')
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "input file path {path:?} must be relative without '..'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_catches_bad_fields() {
        let ok = JobSpec::new("img", ["echo", "hi"]);
        ok.validate().unwrap();
        assert!(ok.clone().with_ids("", "j").validate().is_err());
        assert!(ok.clone().with_env("A=B", "x").validate().is_err());
        assert!(ok.clone().with_timeout(Duration::ZERO).validate().is_err());
        assert!(ok.clone().with_memory_mb(0).validate().is_err());
        assert!(ok.clone().with_cpus(f64::NAN).validate().is_err());
        assert!(
            ok.clone()
                .with_workspace_file(InputFile::new("../x", "a"))
                .validate()
                .is_err()
        );
        assert!(
            ok.clone()
                .with_job_file(InputFile::new("/etc/x", "a"))
                .validate()
                .is_err()
        );
        ok.clone()
            .with_job_file(InputFile::new("a/b.json", "{}"))
            .validate()
            .unwrap();
    }

    #[test]
    fn network_policy_rejects_unknown_values() {
        assert_eq!(NetworkPolicy::parse("none").unwrap(), NetworkPolicy::None);
        assert_eq!(
            NetworkPolicy::parse("restricted").unwrap(),
            NetworkPolicy::Restricted
        );
        assert!(NetworkPolicy::parse("open").is_err());
    }
}
