//! # cynode-sandbox
//!
//! Runs untrusted commands in locked-down containers: no network, all capabilities
//! dropped, no-new-privileges, read-only root with a writable tmpfs `/tmp`, a non-root
//! user, CPU/memory/pids/time/output limits, and model inference reachable only through a
//! per-job Unix socket.
//!
//! ```no_run
//! use cynode_sandbox::{Driver, DockerConfig, DriverConfig, JobSpec};
//!
//! # async fn demo() -> cynode_sandbox::Result<()> {
//! let driver = Driver::connect(
//!     &DockerConfig::new("unix:///run/podman/podman.sock"),
//!     DriverConfig { mount_root: "/tmp/cynode-jobs".into(), ..Default::default() },
//! )
//! .await?;
//! driver.reap_orphans().await?;
//! let result = driver.run(JobSpec::new("alpine:latest", ["sh", "-c", "echo hello"])).await?;
//! assert_eq!(result.stdout.text, "hello\n");
//! # Ok(()) }
//! ```
//!
//! - [`Driver`] runs a [`JobSpec`] and returns a [`JobResult`] ([`Driver::run`]), or
//!   hands back a [`JobHandle`] to follow the output live and cancel ([`Driver::spawn`]).
//!   Every container it creates is labelled (`cynodeai.role=sandbox`, `cynodeai.owner`,
//!   task and job ids) and removed on every path, including a dropped future;
//!   [`Driver::reap_orphans`] removes what a crashed process left behind.
//! - [`SandboxRuntime`] is the runtime trait; [`DockerRuntime`] implements it over the
//!   Docker Engine API, so it drives Docker and Podman alike. Other runtimes implement the
//!   same trait without touching callers.
//! - [`InferenceProxy`] is the Unix-socket proxy that lets a sandbox reach the node's
//!   Ollama API, and nothing else.
//!
//! The library reads no environment variables; configuration is [`DriverConfig`] and
//! [`DockerConfig`].

mod artifacts;
pub mod config;
mod driver;
pub mod env;
pub mod error;
mod image;
pub mod node;
mod output;
pub mod proxy;
mod result;
pub mod runtime;
mod spec;

pub use config::{
    ArtifactLimits, DockerConfig, DriverConfig, ImagePolicy, InferenceConfig, PullPolicy,
    ResourceLimits, RunAs,
};
pub use driver::{Canceller, Driver, JobEvent, JobHandle, ReapReport};
pub use error::{Error, Result};
pub use output::{CapturedOutput, OutputChunk, StreamKind};
pub use proxy::{InferenceProxy, ModelPolicy};
pub use result::{Artifact, ArtifactSet, ArtifactSkip, JobResult, JobStatus, RunDiagnostics};
pub use runtime::{DockerRuntime, SandboxRuntime};
pub use spec::{InferenceAccess, InputFile, JobSpec, NetworkPolicy, ResourceRequest, RunnerMode};
