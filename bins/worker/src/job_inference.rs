//! The node's [`JobInferenceHost`]: a job that brings an inference grant gets its own
//! inference front (`cynode_egress`) on a loopback port, over the node's Ollama (local
//! models) and the API egress service (the grant's external models, with the job's
//! token). The front stops when the job ends.

use async_trait::async_trait;
use cynode_core::proto::v1::worker::InferenceGrant;
use cynode_egress::Secret;
use cynode_egress::router::{ExternalModels, JobInference};
use cynode_sandbox::node::{JobInferenceHost, JobUpstream};

/// Starts per-job fronts; `ollama_url` is the node's model server (`None` on a node
/// without one: external models only).
pub struct EgressJobInference {
    pub ollama_url: Option<String>,
}

#[async_trait]
impl JobInferenceHost for EgressJobInference {
    async fn start(
        &self,
        _task_id: &str,
        _job_id: &str,
        grant: &InferenceGrant,
    ) -> Result<JobUpstream, String> {
        let job = JobInference {
            ollama_url: self.ollama_url.clone(),
            local_models: Vec::new(),
            api_egress_url: Some(grant.api_egress_url.clone()),
            token: Some(Secret::new(grant.token.clone())),
            external: grant
                .external
                .iter()
                .map(|e| ExternalModels {
                    provider: e.provider.clone(),
                    models: e.models.clone(),
                })
                .collect(),
        };
        let front = job.serve_loopback().await.map_err(|e| e.to_string())?;
        Ok(JobUpstream::new(front.url().to_string(), front))
    }
}
