//! Per-job inference upstreams: a job whose run request carries an
//! [`InferenceGrant`] (the orchestrator's job-scoped token for its API egress service)
//! gets its own upstream behind its inference socket, so external models answer it
//! while the provider keys stay with the egress service and the token stays outside the
//! sandbox.
//!
//! The Worker API does not know how such an upstream is built; the node's binary hands
//! it a [`JobInferenceHost`] (the reference one,
//! `cynode_egress::job_host::EgressJobInference`, serves `cynode_egress`'s inference
//! front on a Unix socket in a private directory of the worker) with [`WorkerApiState::set_job_inference_host`]. Without a
//! host, or for a request without a grant (an older orchestrator, or no external
//! models), the job uses the node's configured upstream as before.
//!
//! [`WorkerApiState::set_job_inference_host`]: super::WorkerApiState::set_job_inference_host

use std::any::Any;
use std::fmt;

use async_trait::async_trait;
use cynode_core::proto::v1::worker::InferenceGrant;

/// A running per-job upstream: its base URL and whatever keeps it serving. Dropping it
/// stops the upstream (the guard's own `Drop` does that).
pub struct JobUpstream {
    url: String,
    _guard: Box<dyn Any + Send + Sync>,
}

impl JobUpstream {
    /// An upstream at `url` (`unix:///path/to/socket`, or plain `http://host[:port]`),
    /// served as long as `guard` lives. Serve it where only the worker can reach it (a
    /// Unix socket in a private directory), never on a port other local users can use.
    pub fn new(url: impl Into<String>, guard: impl Any + Send + Sync) -> Self {
        Self {
            url: url.into(),
            _guard: Box::new(guard),
        }
    }

    /// Base URL the job's inference socket forwards to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl fmt::Debug for JobUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobUpstream")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Starts the upstream of one job from its grant. Implementations must not log the
/// grant's token.
#[async_trait]
pub trait JobInferenceHost: Send + Sync + 'static {
    /// Starts serving the job's inference (the node's own models plus the grant's
    /// external models through the API egress service). `Err` carries a message safe
    /// to return to the orchestrator (no token).
    async fn start(
        &self,
        task_id: &str,
        job_id: &str,
        grant: &InferenceGrant,
    ) -> Result<JobUpstream, String>;
}
