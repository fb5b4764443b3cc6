//! Job-scoped inference grants: for a job with `use_inference` (or an inference runner
//! spec), the dispatcher issues a token bound to the job's task and job
//! ([`JobTokenKey::issue`], the key the orchestrator's API egress service verifies with)
//! and sends it in `RunJobRequest.inference`, with the egress URL and the external
//! models the job may use. The worker serves the job's inference socket with a router
//! that holds only this token; provider keys never leave the egress service.
//!
//! The grant is added when the request is built for a call, never stored: the job's
//! payload row stays free of it. The token is never logged (`Debug` of the request
//! redacts it).

use std::time::Duration;

use chrono::Utc;
use cynode_core::model::Job;
use cynode_core::proto::v1::worker::{ExternalModelGrant, InferenceGrant, RunJobRequest};
use cynode_egress::Secret;
use cynode_egress::api::{JobClaims, JobTokenKey};
use serde::{Deserialize, Serialize};

/// Job-scoped inference settings of the dispatcher ([`super::DispatchConfig::job_inference`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobInferenceConfig {
    /// Standard base64 of the job-token signing key (at least 32 bytes); the same key
    /// the API egress service is configured with (`job_token_key`). Never serialized.
    #[serde(skip_serializing)]
    pub token_key: Secret,
    /// Base URL of the API egress service as worker nodes reach it (e.g.
    /// `http://orchestrator:12084`).
    pub api_egress_url: String,
    /// External providers and models jobs may use. Empty: no grant is sent (jobs use
    /// their node's own models).
    pub external: Vec<ExternalModelGrant>,
    /// Validity of a token beyond the job's timeout (default 300 s).
    pub token_grace: Duration,
}

impl Default for JobInferenceConfig {
    fn default() -> Self {
        Self {
            token_key: Secret::default(),
            api_egress_url: String::new(),
            external: Vec::new(),
            token_grace: Duration::from_secs(300),
        }
    }
}

impl JobInferenceConfig {
    /// Checks the key and URL.
    pub(crate) fn validate(&self) -> Result<(), String> {
        JobTokenKey::from_base64(&self.token_key)
            .map_err(|e| format!("job_inference.token_key: {e}"))?;
        if !(self.api_egress_url.starts_with("http://")
            || self.api_egress_url.starts_with("https://"))
        {
            return Err("job_inference.api_egress_url: must be an http(s) URL".into());
        }
        Ok(())
    }
}

/// The grant for `req` (built for `job`), or `None` when the job uses no inference or
/// nothing external is configured.
pub(crate) fn grant(
    config: Option<&JobInferenceConfig>,
    job: &Job,
    req: &RunJobRequest,
    default_timeout: Duration,
) -> Result<Option<InferenceGrant>, String> {
    let Some(c) = config.filter(|c| !c.external.is_empty()) else {
        return Ok(None);
    };
    let sb = &req.sandbox;
    let runner_inference = !sb.job_spec_json.trim().is_empty()
        && serde_json::from_str::<serde_json::Value>(&sb.job_spec_json)
            .ok()
            .and_then(|v| v.get("execution_mode").cloned())
            .is_some_and(|m| m == "agent_inference");
    if !sb.use_inference && !runner_inference {
        return Ok(None);
    }
    let key = JobTokenKey::from_base64(&c.token_key)
        .map_err(|e| format!("job inference token key: {e}"))?;
    let timeout = sb
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(default_timeout);
    let ttl = chrono::Duration::from_std(timeout + c.token_grace)
        .unwrap_or_else(|_| chrono::Duration::hours(4));
    let token = key.issue(&JobClaims::new(job.task_id, job.id, Utc::now(), ttl));
    Ok(Some(InferenceGrant {
        token: token.expose().to_string(),
        api_egress_url: c.api_egress_url.trim_end_matches('/').to_string(),
        external: c.external.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cynode_core::model::JobStatus;
    use cynode_core::{JobId, TaskId};
    use serde_json::json;

    fn job() -> Job {
        Job {
            id: JobId::new(),
            task_id: TaskId::new(),
            node_id: None,
            status: JobStatus::Queued,
            payload: json!({}),
            result: None,
            lease_id: None,
            lease_expires_at: None,
            started_at: None,
            ended_at: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn grant_only_for_inference_jobs_and_the_token_verifies() {
        // Standard base64 of 32 bytes of 0x07.
        let key_b64 = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_string();
        let config = JobInferenceConfig {
            token_key: Secret::new(key_b64.clone()),
            api_egress_url: "http://egress:12084/".into(),
            external: vec![ExternalModelGrant {
                provider: "openai".into(),
                models: vec!["gpt-4o-mini".into()],
            }],
            token_grace: Duration::from_secs(60),
        };
        config.validate().unwrap();
        let j = job();
        let mut req: RunJobRequest = serde_json::from_value(json!({
            "version": 1, "sandbox": {"command": ["true"], "timeout_seconds": 30}
        }))
        .unwrap();
        let none = grant(Some(&config), &j, &req, Duration::from_secs(3600)).unwrap();
        assert!(none.is_none());
        req.sandbox.use_inference = true;
        assert!(
            grant(None, &j, &req, Duration::from_secs(1))
                .unwrap()
                .is_none()
        );
        let g = grant(Some(&config), &j, &req, Duration::from_secs(3600))
            .unwrap()
            .unwrap();
        assert_eq!(g.api_egress_url, "http://egress:12084");
        let claims = JobTokenKey::from_base64(&Secret::new(key_b64))
            .unwrap()
            .verify(&g.token, Utc::now())
            .unwrap();
        assert_eq!((claims.task_id, claims.job_id), (j.task_id, j.id));
        assert!(claims.expires_at <= Utc::now() + chrono::Duration::seconds(91));
        assert!(!format!("{g:?} {config:?}").contains(&g.token));
        let bad = JobInferenceConfig {
            token_key: Secret::new("c2hvcnQ="),
            ..config
        };
        assert!(bad.validate().is_err());
    }
}
