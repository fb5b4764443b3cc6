//! The worker node: the Worker API router a node serves to the orchestrator and the
//! node manager that registers the node with the control plane and keeps it there
//! (`node-protocol.md` §2, §4, §6, §8–10).
//!
//! - [`worker_api_router`] builds the `axum::Router` of the Worker API over a
//!   [`WorkerApiState`]: bearer-authenticated `POST /v1/worker/jobs:run` (jobs run
//!   through the sandbox [`crate::Driver`]), the telemetry routes, and open `/healthz`
//!   and `/readyz`.
//! - [`NodeManager`] waits for the control plane, registers with the pre-shared key and a
//!   measured [`capability`] report, fetches and applies the node configuration (Worker
//!   API token, limits), acknowledges it, sends heartbeats, re-registers when its token
//!   is refused or about to expire, and drains on shutdown.
//! - [`Telemetry`] is the node's bounded record of containers and log events served by
//!   the telemetry routes.
//! - [`JobInferenceHost`] starts a per-job inference upstream for a job that brings the
//!   orchestrator's job-scoped inference grant (external models through API egress).
//! - [`StandaloneProxy`] runs the inference proxy as a process of its own, and
//!   [`http_get_status`] / [`healthcheck`] are the HTTP probe (also over a Unix socket)
//!   its container health check uses.
//! - [`sba_run_args`] gives the container-runtime arguments of an agent runner sandbox
//!   with inference, for tools that start the runner themselves.

mod api;
pub mod capability;
mod job_inference;
mod manager;
mod persist;
mod problem;
mod sba;
mod standalone_proxy;
mod telemetry;

pub use api::{DrainReport, WorkerApiConfig, WorkerApiState, worker_api_router};
pub use job_inference::{JobInferenceHost, JobUpstream};
pub use manager::{NodeManager, NodeManagerConfig, ShutdownOutcome};
pub use sba::sba_run_args;
pub use standalone_proxy::{StandaloneProxy, healthcheck, http_get_status, remove_stale_socket};
pub use telemetry::Telemetry;
