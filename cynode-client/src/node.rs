//! The control plane as a node manager sees it (node protocol §2–§4): registration,
//! configuration fetch and acknowledgement, capability reports (the heartbeat).
//!
//! ```no_run
//! # async fn run(report: cynode_core::proto::v1::node::CapabilityReport) -> Result<(), cynode_client::node::NodeClientError> {
//! use cynode_client::node::ControlPlaneClient;
//! use cynode_core::proto::v1::node::RegisterRequest;
//!
//! let mut cp = ControlPlaneClient::new("http://localhost:12082")?;
//! let boot = cp
//!     .register(&RegisterRequest { psk: "dev-node-psk-secret".into(), capability: report.clone() })
//!     .await?;
//! cp.use_bootstrap(&boot)?; // from now on, the URLs the control plane handed out
//! let jwt = boot.auth.node_jwt;
//! let config = cp.get_config(&jwt).await?;
//! # let _ = config;
//! match cp.report_capability(&jwt, &report).await {
//!     Err(e) if e.is_unauthorized() => { /* re-register (§2.4) */ }
//!     other => other?,
//! }
//! # Ok(()) }
//! ```
//!
//! Every failure is a [`NodeClientError`] that says whether retrying can help
//! ([`NodeClientError::is_retryable`]) and carries the HTTP status when there was one;
//! a `401` is singled out ([`NodeClientError::is_unauthorized`]) because the node
//! answers it by registering again.

use std::time::Duration;

use cynode_core::proto::v1::node::{
    BootstrapResponse, CAPABILITY_PATH, CONFIG_PATH, CapabilityReport, ConfigAck, NodeConfig,
    REGISTER_PATH, RegisterRequest,
};
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

/// Default per-request timeout (`HTTP_TIMEOUT`, node protocol §10.6).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An RFC 9457 Problem Details body as the control plane sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// Error type URI.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Reason phrase.
    #[serde(default)]
    pub title: String,
    /// HTTP status.
    #[serde(default)]
    pub status: u16,
    /// What went wrong.
    #[serde(default)]
    pub detail: String,
}

/// What can go wrong talking to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    /// The control plane answered with a non-success status.
    #[error("control plane answered {status}: {}", problem.as_ref().map(|p| p.detail.as_str()).unwrap_or(""))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The Problem Details body, when it was one.
        problem: Option<Problem>,
    },
    /// The request did not get an answer (connection refused, reset, DNS, timeout).
    #[error("control plane unreachable: {0}")]
    Transport(#[source] reqwest::Error),
    /// The answer was not the body the protocol defines (or failed its checks, e.g. a
    /// bootstrap response without a node JWT).
    #[error("unexpected answer from the control plane: {0}")]
    Protocol(String),
    /// A URL given to the client (or handed out by the control plane) is unusable.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
}

impl NodeClientError {
    /// The HTTP status, when the control plane answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// `401`: the node JWT is missing, expired or forged, or (on registration) the PSK
    /// is wrong. A node holding a JWT registers again (§2.4).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// Whether the same request may succeed later: transport failures, `408`, `429`
    /// and `5xx`. `400`, `401`, `404`, `409`, `413` and protocol errors are final for
    /// the same request.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::Protocol(_) | Self::InvalidUrl(_) => false,
        }
    }

    /// The Problem Details `detail`, when there was one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Status {
                problem: Some(p), ..
            } => Some(&p.detail),
            _ => None,
        }
    }
}

/// Typed client for the control plane's node routes.
#[derive(Clone, Debug)]
pub struct ControlPlaneClient {
    http: reqwest::Client,
    base_url: Url,
    register_url: Url,
    report_url: Url,
    config_url: Url,
}

fn join(base: &Url, path: &str) -> Result<Url, NodeClientError> {
    let mut s = base.as_str().trim_end_matches('/').to_string();
    s.push_str(path);
    Url::parse(&s).map_err(|e| NodeClientError::InvalidUrl(format!("{s}: {e}")))
}

fn parse_url(s: &str) -> Result<Url, NodeClientError> {
    let u = Url::parse(s).map_err(|e| NodeClientError::InvalidUrl(format!("{s}: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(NodeClientError::InvalidUrl(format!(
            "{s}: scheme must be http or https"
        )));
    }
    Ok(u)
}

impl ControlPlaneClient {
    /// A client for the control plane at `base_url` (e.g. `http://localhost:12082`)
    /// with the [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str) -> Result<Self, NodeClientError> {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .build()
            .map_err(NodeClientError::Transport)?;
        Self::with_http(base_url, http)
    }

    /// A client using a caller-built `reqwest::Client` (timeouts, TLS roots).
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Result<Self, NodeClientError> {
        let base = parse_url(base_url)?;
        Ok(Self {
            register_url: join(&base, REGISTER_PATH)?,
            report_url: join(&base, CAPABILITY_PATH)?,
            config_url: join(&base, CONFIG_PATH)?,
            base_url: base,
            http,
        })
    }

    /// Adopts the URLs of a bootstrap response (nodes use these, not fixed paths).
    /// Fails if the response is not one a node may use (§2.3).
    pub fn use_bootstrap(&mut self, boot: &BootstrapResponse) -> Result<(), NodeClientError> {
        boot.validate().map_err(NodeClientError::Protocol)?;
        let ep = &boot.orchestrator.endpoints;
        self.report_url = parse_url(&ep.node_report_url)?;
        self.config_url = parse_url(&ep.node_config_url)?;
        if !ep.worker_registration_url.is_empty() {
            self.register_url = parse_url(&ep.worker_registration_url)?;
        }
        Ok(())
    }

    /// The control plane's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// `GET /readyz`: `Ok(true)` on `200`, `Ok(false)` on `503` (up, not ready — a
    /// node may register then), any other status or no answer is an error.
    pub async fn readyz(&self) -> Result<bool, NodeClientError> {
        let url = join(&self.base_url, "/readyz")?;
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(NodeClientError::Transport)?;
        match res.status() {
            StatusCode::OK => Ok(true),
            StatusCode::SERVICE_UNAVAILABLE => Ok(false),
            s => Err(NodeClientError::Status {
                status: s.as_u16(),
                problem: None,
            }),
        }
    }

    /// `POST /v1/nodes/register`: exchanges the PSK and a capability report for a node
    /// JWT and the node-facing URLs. The answer is validated (§2.3).
    pub async fn register(
        &self,
        req: &RegisterRequest,
    ) -> Result<BootstrapResponse, NodeClientError> {
        let res = self
            .http
            .post(self.register_url.clone())
            .json(req)
            .send()
            .await
            .map_err(NodeClientError::Transport)?;
        let boot: BootstrapResponse = decode(res).await?;
        boot.validate().map_err(NodeClientError::Protocol)?;
        Ok(boot)
    }

    /// `GET <node_config_url>`: the node's configuration.
    pub async fn get_config(&self, node_jwt: &str) -> Result<NodeConfig, NodeClientError> {
        let res = self
            .http
            .get(self.config_url.clone())
            .bearer_auth(node_jwt)
            .send()
            .await
            .map_err(NodeClientError::Transport)?;
        let cfg: NodeConfig = decode(res).await?;
        if cfg.version != cynode_core::proto::v1::VERSION {
            return Err(NodeClientError::Protocol(format!(
                "unsupported config version {}",
                cfg.version
            )));
        }
        Ok(cfg)
    }

    /// `POST <node_config_url>`: acknowledges a configuration version (`204`).
    pub async fn ack_config(&self, node_jwt: &str, ack: &ConfigAck) -> Result<(), NodeClientError> {
        let res = self
            .http
            .post(self.config_url.clone())
            .bearer_auth(node_jwt)
            .json(ack)
            .send()
            .await
            .map_err(NodeClientError::Transport)?;
        expect_success(res).await
    }

    /// `POST <node_report_url>`: a capability report, which is also the heartbeat
    /// (`204`).
    pub async fn report_capability(
        &self,
        node_jwt: &str,
        report: &CapabilityReport,
    ) -> Result<(), NodeClientError> {
        let res = self
            .http
            .post(self.report_url.clone())
            .bearer_auth(node_jwt)
            .json(report)
            .send()
            .await
            .map_err(NodeClientError::Transport)?;
        expect_success(res).await
    }
}

async fn failure(res: reqwest::Response) -> NodeClientError {
    let status = res.status().as_u16();
    let problem = match res.bytes().await {
        Ok(b) => serde_json::from_slice::<Problem>(&b).ok(),
        Err(_) => None,
    };
    NodeClientError::Status { status, problem }
}

async fn expect_success(res: reqwest::Response) -> Result<(), NodeClientError> {
    if res.status().is_success() {
        Ok(())
    } else {
        Err(failure(res).await)
    }
}

async fn decode<T: DeserializeOwned>(res: reqwest::Response) -> Result<T, NodeClientError> {
    if !res.status().is_success() {
        return Err(failure(res).await);
    }
    let bytes = res.bytes().await.map_err(NodeClientError::Transport)?;
    serde_json::from_slice(&bytes).map_err(|e| NodeClientError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_joined_without_double_slashes() {
        let c = ControlPlaneClient::new("http://cp:12082/").expect("client");
        assert_eq!(c.register_url.as_str(), "http://cp:12082/v1/nodes/register");
        assert_eq!(c.report_url.as_str(), "http://cp:12082/v1/nodes/capability");
        assert_eq!(c.config_url.as_str(), "http://cp:12082/v1/nodes/config");
        assert!(matches!(
            ControlPlaneClient::new("ftp://x"),
            Err(NodeClientError::InvalidUrl(_))
        ));
    }

    #[test]
    fn retry_classification() {
        let st = |s| NodeClientError::Status {
            status: s,
            problem: None,
        };
        assert!(st(401).is_unauthorized());
        assert!(!st(401).is_retryable());
        assert!(!st(400).is_retryable());
        assert!(st(503).is_retryable());
        assert!(st(500).is_retryable());
        assert!(st(429).is_retryable());
        assert!(!NodeClientError::Protocol("x".into()).is_retryable());
    }

    #[test]
    fn bootstrap_without_jwt_is_refused() {
        let mut c = ControlPlaneClient::new("http://cp:12082").expect("client");
        let boot = BootstrapResponse {
            version: 1,
            ..Default::default()
        };
        assert!(matches!(
            c.use_bootstrap(&boot),
            Err(NodeClientError::Protocol(_))
        ));
    }
}
