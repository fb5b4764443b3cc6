//! The worker node's per-job inference host (feature `job-host`): a job whose run request
//! brings the orchestrator's inference grant gets its own inference front
//! ([`JobInference::serve_loopback`]) over the node's Ollama (local models) and the API
//! egress service (the grant's external models, with the job's token, never a key). The
//! node points the job's inference socket at the front until the job ends.
//!
//! Why here: the host joins `cynode-sandbox`'s [`JobInferenceHost`] trait (the Worker
//! API asks it for a job's upstream) to this crate's inference front. `cynode-sandbox`
//! does not depend on `cynode-egress`, so the implementation lives on this side, behind
//! a feature that only the worker node (and tests that run a node) turn on; without it
//! `cynode-egress` does not depend on `cynode-sandbox`.

use async_trait::async_trait;
use cynode_core::proto::v1::worker::InferenceGrant;
use cynode_sandbox::node::{JobInferenceHost, JobUpstream};

use crate::router::JobInference;

/// Starts the per-job inference fronts of a worker node. Hand it to the Worker API with
/// `WorkerApiState::set_job_inference_host`.
#[derive(Clone, Debug, Default)]
pub struct EgressJobInference {
    ollama_url: Option<String>,
}

impl EgressJobInference {
    /// A host whose fronts serve the node's model server at `ollama_url` next to the
    /// grant's external models; `None` on a node without one (external models only).
    pub fn new(ollama_url: Option<String>) -> Self {
        Self { ollama_url }
    }
}

#[async_trait]
impl JobInferenceHost for EgressJobInference {
    async fn start(
        &self,
        _task_id: &str,
        _job_id: &str,
        grant: &InferenceGrant,
    ) -> Result<JobUpstream, String> {
        let front = JobInference::from_grant(self.ollama_url.clone(), grant)
            .serve_loopback()
            .await
            .map_err(|e| e.to_string())?;
        Ok(JobUpstream::new(front.url().to_string(), front))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use cynode_core::proto::v1::worker::ExternalModelGrant;

    fn grant(external: Vec<ExternalModelGrant>) -> InferenceGrant {
        InferenceGrant {
            token: "cnj1.job.token".into(),
            api_egress_url: "http://127.0.0.1:9".into(),
            external,
        }
    }

    #[tokio::test]
    async fn a_job_front_serves_on_loopback_until_its_upstream_is_dropped() {
        let host = EgressJobInference::new(Some("http://127.0.0.1:9".into()));
        let upstream = host
            .start(
                "t1",
                "j1",
                &grant(vec![ExternalModelGrant {
                    provider: "openai".into(),
                    models: vec!["gpt-4o-mini".into()],
                }]),
            )
            .await
            .unwrap();
        assert!(
            upstream.url().starts_with("http://127.0.0.1:"),
            "{upstream:?}"
        );
        let client = reqwest::Client::new();
        let health = format!("{}/healthz", upstream.url());
        let r = client.get(&health).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
        // The grant's external model is listed; the token is nowhere in the answer.
        let tags = client
            .get(format!("{}/v1/models", upstream.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(tags.contains("gpt-4o-mini"), "{tags}");
        assert!(!tags.contains("cnj1.job.token"), "{tags}");
        drop(upstream);
        // Dropping the upstream stops the front (its task is aborted).
        let mut stopped = false;
        for _ in 0..100 {
            if client.get(&health).send().await.is_err() {
                stopped = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            stopped,
            "the front still answers after its upstream was dropped"
        );
    }

    #[tokio::test]
    async fn a_grant_the_front_cannot_serve_is_refused_without_the_token() {
        // Two entries for one provider make two targets of one name: refused.
        let twice = |models: &str| ExternalModelGrant {
            provider: "openai".into(),
            models: vec![models.into()],
        };
        let host = EgressJobInference::default();
        let e = host
            .start("t", "j", &grant(vec![twice("a"), twice("b")]))
            .await
            .unwrap_err();
        assert!(e.contains("duplicate target name 'openai'"), "{e}");
        assert!(!e.contains("cnj1.job.token"), "{e}");
    }
}
