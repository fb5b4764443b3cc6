//! # cynode-egress
//!
//! Everything that crosses the boundary to the outside world on a job's behalf: the
//! model router (Ollama, OpenAI-compatible and Anthropic providers behind one trait),
//! the API egress service that holds provider keys so they never enter a sandbox, and
//! the deterministic sanitizer that cleans fetched web content before agents see it.
//!
//! Work in progress.

pub mod browser;
pub mod sanitize;
pub mod webproxy;

pub use browser::{
    BrowseError, BrowserConfig, FetchRequest, FetchedPage, SecureBrowser, WebPolicy,
};
pub use sanitize::{ContentKind, ExtractMode, SanitizeRules, Sanitized, Sanitizer};
pub use webproxy::{AllowEntry, ClientBinding, ProxyAudit, ProxyConfig, WebProxy};
