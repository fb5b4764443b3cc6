//! The container runtime abstraction.
//!
//! [`SandboxRuntime`] is the narrow set of operations the driver needs. The reference
//! implementation is [`DockerRuntime`], which speaks the Docker Engine API and so drives
//! Docker and Podman alike; another backend (Kubernetes Jobs, Firecracker, a cloud agent)
//! implements the same trait and the driver and its callers stay unchanged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::config::{ArtifactLimits, RunAs};
use crate::error::Result;
use crate::output::StreamKind;
use crate::result::ArtifactSet;

mod attach;
mod docker;

pub use docker::DockerRuntime;

/// Label every sandbox container carries: `cynodeai.role=sandbox`.
pub const LABEL_ROLE: &str = "cynodeai.role";
/// Value of [`LABEL_ROLE`] for sandboxes.
pub const ROLE_SANDBOX: &str = "sandbox";
/// Label naming the driver instance that created the container.
pub const LABEL_OWNER: &str = "cynodeai.owner";
/// Label with the task id.
pub const LABEL_TASK_ID: &str = "cynodeai.task_id";
/// Label with the job id.
pub const LABEL_JOB_ID: &str = "cynodeai.job_id";
/// Image label marking images allowed for agent workloads.
pub const LABEL_AGENT_COMPATIBLE: &str = "io.cynodeai.sandbox.agent-compatible";

/// A container's id (or name) in its runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(pub String);

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host directory mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute host path.
    pub host_path: PathBuf,
    /// Absolute path inside the container.
    pub container_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// Resource limits in runtime units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLimits {
    /// CPU quota in billionths of a core.
    pub nano_cpus: i64,
    /// Memory (and memory+swap) in bytes.
    pub memory_bytes: i64,
    /// Process/thread limit.
    pub pids: i64,
    /// Open-file limit.
    pub nofile: i64,
    /// `RLIMIT_NPROC` (per user, node-wide; see [`crate::ResourceLimits::nproc`]).
    pub nproc: i64,
}

/// Everything needed to create one sandbox container.
///
/// Some hardening is not a field because no caller may turn it off: an implementation
/// must always give the container no network route out (loopback only), drop every
/// capability, set no-new-privileges, never run it privileged, publish no ports, attach no
/// TTY and no stdin, and keep the runtime's default seccomp/AppArmor/SELinux profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Container name (unique in the runtime).
    pub name: String,
    /// Image reference (already present; see [`SandboxRuntime::image`]).
    pub image: String,
    /// argv; empty runs the image's default command.
    pub command: Vec<String>,
    /// Environment, added to the image's own.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: String,
    /// User and group.
    pub user: RunAs,
    /// Labels (role, owner, task, job).
    pub labels: BTreeMap<String, String>,
    /// Host directories to mount.
    pub mounts: Vec<BindMount>,
    /// Writable tmpfs mounts: container path and size in bytes (`nosuid,nodev`).
    pub tmpfs: Vec<(String, u64)>,
    /// Resource limits.
    pub limits: ContainerLimits,
    /// Read-only root filesystem.
    pub read_only_rootfs: bool,
    /// Relabel bind mounts privately for SELinux.
    pub selinux_relabel: bool,
    /// Podman rootless `keep-id` user namespace.
    pub userns_keep_id: bool,
}

/// How a container exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code (128 + signal for a killed process).
    pub code: i64,
    /// Whether the kernel's OOM killer ended it (memory limit).
    pub oom_killed: bool,
}

/// A signal to deliver to a container's main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: ask to stop.
    Terminate,
    /// SIGKILL: stop now.
    Kill,
}

/// A container found by [`SandboxRuntime::list_owned`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    /// Container id.
    pub id: ContainerId,
    /// Container names.
    pub names: Vec<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Runtime state (`running`, `exited`, `created`, ...).
    pub state: String,
}

/// What the runtime knows about a local image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    /// Image id.
    pub id: String,
    /// Image config labels.
    pub labels: BTreeMap<String, String>,
}

/// One progress report of an image pull.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullProgress {
    /// Status text, e.g. `Downloading`.
    pub status: String,
    /// Layer id when the report is about one layer.
    pub layer: Option<String>,
    /// Bytes done.
    pub current: Option<u64>,
    /// Bytes expected.
    pub total: Option<u64>,
}

/// Output of a container as a stream of `(stream, bytes)` pieces; it ends when the
/// container's output closes (normally when it exits).
pub type OutputStream = Pin<Box<dyn Stream<Item = Result<(StreamKind, Bytes)>> + Send>>;

/// Callback receiving pull progress.
pub type ProgressFn<'a> = &'a (dyn Fn(PullProgress) + Send + Sync);

/// The operations the driver needs from a container runtime.
///
/// Implementations must be cheap to share (`Arc<dyn SandboxRuntime>`) and safe to call
/// concurrently. Removing or signalling a container that no longer exists is not an
/// error.
#[async_trait]
pub trait SandboxRuntime: Send + Sync + std::fmt::Debug {
    /// Short name of the runtime (`podman`, `docker`, ...).
    fn name(&self) -> &str;

    /// Checks that the runtime answers.
    async fn ping(&self) -> Result<()>;

    /// Looks up a local image; `Ok(None)` when it is not present.
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>>;

    /// Pulls an image, reporting progress. Fails with
    /// [`crate::Error::ImageUnavailable`] naming the image when the pull fails.
    async fn pull(&self, reference: &str, progress: ProgressFn<'_>) -> Result<()>;

    /// Creates (but does not start) a container.
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId>;

    /// Opens the container's output. Call between [`create`](Self::create) and
    /// [`start`](Self::start) so that nothing is missed; the stream ends when the
    /// container's output closes.
    async fn logs(&self, id: &ContainerId) -> Result<OutputStream>;

    /// Starts a created container.
    async fn start(&self, id: &ContainerId) -> Result<()>;

    /// Waits until the container has exited.
    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus>;

    /// Delivers a signal to the container's main process (the cancel primitive).
    async fn signal(&self, id: &ContainerId, signal: Signal) -> Result<()>;

    /// Collects the regular files under `container_dir` (no symlinks followed), bounded
    /// by `limits`. Call after the container has exited.
    async fn collect_artifacts(
        &self,
        id: &ContainerId,
        container_dir: &str,
        limits: &ArtifactLimits,
    ) -> Result<ArtifactSet>;

    /// Reads one regular file of the (exited) container, at most `max_bytes`;
    /// `Ok(None)` when it does not exist. Longer files are an error.
    async fn read_file(
        &self,
        id: &ContainerId,
        container_path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>>;

    /// Removes the container, killing it first if it runs.
    async fn remove(&self, id: &ContainerId) -> Result<()>;

    /// Lists the sandbox containers (any state) labelled with this owner.
    async fn list_owned(&self, owner: &str) -> Result<Vec<ContainerSummary>>;
}
