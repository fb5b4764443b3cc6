//! A node's Worker API as the dispatcher sees it: `POST /v1/worker/jobs:run`
//! (node protocol §6).
//!
//! The call is synchronous: it returns when the job has finished on the node, so its
//! HTTP timeout is the job's effective timeout plus a grace period (§12.2). Dropping the
//! returned future closes the connection, which cancels the job on the node (§6.5).
//!
//! Errors say whether the job *cannot have started* (§12.2): then running it again is
//! safe ([`WorkerApiError::cannot_have_started`]). A connection lost after the request
//! was sent ([`WorkerApiError::ConnectionLost`]) means the node went away while it may
//! have been running the job; whether to run it again is the caller's decision.
//!
//! ```no_run
//! use cynode_client::worker::{WorkerApiClient, WorkerClientConfig, WorkerTarget};
//! use cynode_core::proto::v1::worker::{RunJobRequest, SandboxRequest};
//!
//! # async fn demo() -> Result<(), cynode_client::worker::WorkerApiError> {
//! let client = WorkerApiClient::new(WorkerClientConfig::default())?;
//! let node = WorkerTarget::new("http://127.0.0.1:12090", "worker-token")?;
//! let req = RunJobRequest {
//!     version: 1,
//!     task_id: "6f1c2a9e-0c57-4d43-9a52-4f1f5c1f3a10".into(),
//!     job_id: "0b7e3c5d-7a41-4bd0-8f9e-2f0c4e7d9b21".into(),
//!     sandbox: SandboxRequest {
//!         command: vec!["sh".into(), "-c".into(), "echo hello".into()],
//!         ..Default::default()
//!     },
//!     inference: None,
//! };
//! let res = client.run_job(&node, &req).await?;
//! println!("{} {}", res.status.as_str(), res.stdout);
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use cynode_core::proto::v1::worker::{JOBS_RUN_PATH, RunJobRequest, RunJobResponse};
use serde::{Deserialize, Serialize};
use url::Url;

/// Job timeout assumed when a request names none (node protocol §6.4: 3600 s).
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest job timeout a node grants (node protocol §6.4: 10800 s).
pub const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(10_800);
/// Extra time the HTTP call waits beyond the job's timeout (§12.2: 60 s), so the node
/// can stop the container and answer `timeout` itself.
pub const DEFAULT_RESPONSE_GRACE: Duration = Duration::from_secs(60);

/// Settings of a [`WorkerApiClient`]. Every field has a documented default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerClientConfig {
    /// Longest wait for a TCP connection (default 10 s). A connect failure means the
    /// job cannot have started.
    pub connect_timeout: Duration,
    /// Added to the job's effective timeout to form the HTTP timeout (default 60 s).
    pub response_grace: Duration,
    /// Job timeout used when the request names none (default 3600 s).
    pub default_job_timeout: Duration,
    /// Cap of the job timeout (default 10800 s).
    pub max_job_timeout: Duration,
    /// Largest accepted response body (default 64 MiB: two 256 KiB streams plus
    /// inline artifacts).
    pub max_response_bytes: usize,
}

impl Default for WorkerClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            response_grace: DEFAULT_RESPONSE_GRACE,
            default_job_timeout: DEFAULT_JOB_TIMEOUT,
            max_job_timeout: MAX_JOB_TIMEOUT,
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Where a job goes: a node's Worker API base URL and the bearer token it expects.
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct WorkerTarget {
    base_url: Url,
    token: String,
}

impl fmt::Debug for WorkerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerTarget")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"<redacted>")
            .finish()
    }
}

impl WorkerTarget {
    /// A target from a base URL (`http://host:12090`, with or without a trailing `/`
    /// or a path prefix) and a bearer token.
    ///
    /// Errors: [`WorkerApiError::InvalidTarget`] for a URL that is not `http`/`https`
    /// or an empty token.
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Self, WorkerApiError> {
        let mut url = Url::parse(base_url.trim()).map_err(|e| {
            WorkerApiError::InvalidTarget(format!("worker URL {base_url:?} is not a URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(WorkerApiError::InvalidTarget(format!(
                "worker URL {base_url:?} must be http:// or https:// with a host"
            )));
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        url.set_query(None);
        url.set_fragment(None);
        let token = token.into();
        if token.trim().is_empty() {
            return Err(WorkerApiError::InvalidTarget(
                "the worker API bearer token is empty".into(),
            ));
        }
        Ok(Self {
            base_url: url,
            token,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        self.base_url.as_str()
    }

    fn endpoint(&self, path: &str) -> Result<Url, WorkerApiError> {
        self.base_url
            .join(path.trim_start_matches('/'))
            .map_err(|e| WorkerApiError::InvalidTarget(format!("cannot build the job URL: {e}")))
    }
}

/// Why a Worker API call did not produce a job result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerApiError {
    /// The target or request cannot be used (bad URL, empty token, unencodable body).
    /// Nothing was sent.
    #[error("invalid worker target: {0}")]
    InvalidTarget(String),
    /// No connection could be made (refused, DNS, connect timeout). The job cannot
    /// have started.
    #[error("cannot reach the worker: {message}")]
    Unreachable {
        /// What failed.
        message: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The node did not take the job: `503` (at capacity, not ready, draining) or `409`
    /// (the same job id is already running there). The job was not started by this call.
    #[error("the worker did not take the job (HTTP {status}): {detail}")]
    Busy {
        /// HTTP status.
        status: u16,
        /// The problem `detail` (or the body's first line).
        detail: String,
        /// The node's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The node refused the request (`400`, `401`, `413`, `500`, or another status).
    /// Final: the same request would be refused again.
    #[error("the worker refused the job (HTTP {status}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The problem `detail` (or the body's first line).
        detail: String,
    },
    /// No answer within the job's timeout plus the grace period. The job may have run.
    #[error("no answer from the worker within {}s", after.as_secs())]
    Timeout {
        /// The HTTP timeout that ran out.
        after: Duration,
    },
    /// The connection broke after the request was sent and before an answer arrived:
    /// the node went away (crash, restart, network loss) while the job may have been
    /// running. A living node never drops a job call without answering.
    #[error("the connection to the worker was lost before it answered: {message}")]
    ConnectionLost {
        /// What failed.
        message: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A `200` whose body is not a job result for this job.
    #[error("the worker's answer is not a valid job result: {0}")]
    InvalidResponse(String),
}

impl WorkerApiError {
    /// Whether the job cannot have started on the node, so running it again is safe
    /// (§12.2: connect and DNS errors, `503`, `409`).
    pub fn cannot_have_started(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Busy { .. })
    }

    /// Whether a later attempt may succeed without risking a second execution; the
    /// same as [`WorkerApiError::cannot_have_started`].
    pub fn is_retryable(&self) -> bool {
        self.cannot_have_started()
    }

    /// The HTTP status the node answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Busy { status, .. } | Self::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The node's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A Worker API client. Cheap to clone; share one per process (it pools connections).
#[derive(Clone, Debug)]
pub struct WorkerApiClient {
    http: reqwest::Client,
    config: WorkerClientConfig,
}

impl WorkerApiClient {
    /// A client with `config`.
    ///
    /// Errors: [`WorkerApiError::InvalidTarget`] if the HTTP stack cannot be set up.
    pub fn new(config: WorkerClientConfig) -> Result<Self, WorkerApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            // A bearer token must never follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cynode-dispatcher/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WorkerApiError::InvalidTarget(format!("HTTP client setup: {e}")))?;
        Ok(Self { http, config })
    }

    /// The configuration in force.
    pub fn config(&self) -> &WorkerClientConfig {
        &self.config
    }

    /// The job's effective timeout as this client counts it: the requested
    /// `timeout_seconds` (or the default), at most the maximum. The node may grant less.
    pub fn job_timeout(&self, req: &RunJobRequest) -> Duration {
        let asked = match req.sandbox.timeout_seconds {
            Some(s) if s > 0 => Duration::from_secs(s),
            _ => self.config.default_job_timeout,
        };
        asked.min(self.config.max_job_timeout)
    }

    /// The HTTP timeout of a `jobs:run` call: the job timeout plus the grace period.
    pub fn call_timeout(&self, req: &RunJobRequest) -> Duration {
        self.job_timeout(req)
            .saturating_add(self.config.response_grace)
    }

    /// Runs a job on the node and waits for its result. A `200` is a result whatever
    /// the job's own status (`completed`, `failed`, `timeout`); every other outcome is
    /// an error classified for retry (see [`WorkerApiError`]).
    ///
    /// Dropping the future closes the connection, which makes the node cancel the job.
    pub async fn run_job(
        &self,
        target: &WorkerTarget,
        req: &RunJobRequest,
    ) -> Result<RunJobResponse, WorkerApiError> {
        let url = target.endpoint(JOBS_RUN_PATH)?;
        let body = serde_json::to_vec(req)
            .map_err(|e| WorkerApiError::InvalidTarget(format!("cannot encode the job: {e}")))?;
        let timeout = self.call_timeout(req);
        let sent = self
            .http
            .post(url)
            .bearer_auth(&target.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Err(transport_error(e, timeout)),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = read_capped(resp, self.config.max_response_bytes, timeout).await?;
        match status {
            200 => {
                let res: RunJobResponse = serde_json::from_slice(&bytes)
                    .map_err(|e| WorkerApiError::InvalidResponse(e.to_string()))?;
                if res.job_id != req.job_id {
                    return Err(WorkerApiError::InvalidResponse(format!(
                        "the answer is for job {:?}, not {:?}",
                        res.job_id, req.job_id
                    )));
                }
                Ok(res)
            }
            409 | 503 => Err(WorkerApiError::Busy {
                status,
                detail: problem_detail(&bytes),
                retry_after,
            }),
            _ => Err(WorkerApiError::Rejected {
                status,
                detail: problem_detail(&bytes),
            }),
        }
    }
}

/// Reads a response body up to `max` bytes.
async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, WorkerApiError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > max {
                    return Err(WorkerApiError::InvalidResponse(format!(
                        "the answer is larger than {max} bytes"
                    )));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(transport_error(e, timeout)),
        }
    }
}

/// Classifies a transport error: connect failures cannot have started the job; a
/// timeout is final; anything else broke an established exchange.
fn transport_error(e: reqwest::Error, timeout: Duration) -> WorkerApiError {
    if e.is_connect() {
        return WorkerApiError::Unreachable {
            message: chain(&e),
            source: Box::new(e),
        };
    }
    if e.is_timeout() {
        return WorkerApiError::Timeout { after: timeout };
    }
    if e.is_builder() {
        return WorkerApiError::InvalidTarget(chain(&e));
    }
    WorkerApiError::ConnectionLost {
        message: chain(&e),
        source: Box::new(e),
    }
}

/// The innermost cause of an error, which names what actually happened ("Connection
/// refused (os error 111)", "connection closed before message completed"); reqwest's own
/// text only says that sending failed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        text = c.to_string();
        cur = c.source();
    }
    text
}

/// The `detail` of a problem+json body, or its first line, at most 500 characters.
fn problem_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Problem {
        #[serde(default)]
        detail: Option<String>,
        #[serde(default)]
        title: Option<String>,
    }
    let text = match serde_json::from_slice::<Problem>(body) {
        Ok(p) => p.detail.or(p.title).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(body)
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
    };
    let text = text.trim();
    if text.is_empty() {
        return "no detail given".into();
    }
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use cynode_core::proto::v1::worker::SandboxRequest;

    use super::*;

    fn req(timeout: Option<u64>) -> RunJobRequest {
        RunJobRequest {
            version: 1,
            task_id: "t".into(),
            job_id: "j".into(),
            sandbox: SandboxRequest {
                timeout_seconds: timeout,
                ..Default::default()
            },
            inference: None,
        }
    }

    #[test]
    fn call_timeout_is_the_job_timeout_plus_grace_capped() {
        let c = WorkerApiClient::new(WorkerClientConfig::default()).expect("client");
        assert_eq!(c.call_timeout(&req(Some(2))), Duration::from_secs(62));
        assert_eq!(c.call_timeout(&req(None)), Duration::from_secs(3660));
        assert_eq!(c.call_timeout(&req(Some(0))), Duration::from_secs(3660));
        assert_eq!(
            c.call_timeout(&req(Some(99_999))),
            Duration::from_secs(10_860)
        );
    }

    #[test]
    fn targets_are_checked_and_join_paths_under_a_prefix() {
        let t = WorkerTarget::new("http://w1:12090", "tok").expect("target");
        assert_eq!(
            t.endpoint(JOBS_RUN_PATH).expect("url").as_str(),
            "http://w1:12090/v1/worker/jobs:run"
        );
        let t = WorkerTarget::new("https://gw.example/node-7/", "tok").expect("target");
        assert_eq!(
            t.endpoint(JOBS_RUN_PATH).expect("url").as_str(),
            "https://gw.example/node-7/v1/worker/jobs:run"
        );
        assert!(format!("{t:?}").contains("<redacted>") && !format!("{t:?}").contains("tok\""));
        for bad in ["", "w1:12090", "ftp://w1", "unix:///x.sock"] {
            assert!(
                matches!(
                    WorkerTarget::new(bad, "tok"),
                    Err(WorkerApiError::InvalidTarget(_))
                ),
                "{bad:?}"
            );
        }
        assert!(WorkerTarget::new("http://w1", "  ").is_err());
    }

    #[test]
    fn classification_follows_the_dispatcher_contract() {
        let busy = WorkerApiError::Busy {
            status: 503,
            detail: "at capacity".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(busy.cannot_have_started() && busy.is_retryable());
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(2)));
        let rej = WorkerApiError::Rejected {
            status: 401,
            detail: "Invalid or missing bearer token".into(),
        };
        assert!(!rej.is_retryable());
        assert_eq!(rej.status(), Some(401));
        let to = WorkerApiError::Timeout {
            after: Duration::from_secs(62),
        };
        assert!(!to.is_retryable());
        assert_eq!(to.to_string(), "no answer from the worker within 62s");
    }

    #[test]
    fn the_innermost_cause_is_reported() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "error sending request",
            Some(Box::new(E(
                "client error (Connect)",
                Some(Box::new(E("Connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(chain(&e), "Connection refused (os error 111)");
        assert_eq!(chain(&E("alone", None)), "alone");
    }

    #[test]
    fn problem_details_are_read() {
        assert_eq!(
            problem_detail(br#"{"type":"x","title":"Unauthorized","status":401,"detail":"Invalid or missing bearer token"}"#),
            "Invalid or missing bearer token"
        );
        assert_eq!(problem_detail(b"plain text\nmore"), "plain text");
        assert_eq!(problem_detail(b""), "no detail given");
    }
}
