//! # cynode-egress
//!
//! Everything that crosses the boundary to the outside world on a job's behalf: the
//! model router (Ollama, OpenAI-compatible and Anthropic providers behind one trait),
//! the API egress service that holds provider keys so they never enter a sandbox, and
//! the deterministic sanitizer that cleans fetched web content before agents see it.
//!
//! - [`router`]: providers, routing (local vs external), fallbacks, timeouts.
//! - [`api`]: the API egress service (`POST /v1/call`) as an embeddable axum router.
//! - [`crypto`]: [`Secret`] and the credential cipher (keys encrypted at rest).
//! - [`sanitize`]: the pure, deterministic HTML/text sanitizer.
//! - [`browser`]: the secure browser: policy checks before fetching, then the sanitizer.
//! - [`webproxy`]: the allow-list forward proxy for sandboxes allowed named domains.
//! - `job_host` (feature `job-host`): the worker node's per-job inference host, which
//!   serves a job's inference front for the node's sandbox driver.

pub mod api;
pub mod browser;
pub mod crypto;
#[cfg(feature = "job-host")]
pub mod job_host;
pub mod router;
pub mod sanitize;
pub mod webproxy;

pub use browser::{
    BrowseError, BrowserConfig, FetchRequest, FetchedPage, SecureBrowser, WebPolicy,
};
pub use crypto::{CredentialCipher, Secret};
pub use router::{ModelProvider, ProviderConfig, Router, RouterError};
pub use sanitize::{ContentKind, ExtractMode, SanitizeRules, Sanitized, Sanitizer};
pub use webproxy::{AllowEntry, ClientBinding, ProxyAudit, ProxyConfig, WebProxy};
