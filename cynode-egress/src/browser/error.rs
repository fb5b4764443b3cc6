//! Errors of the secure browser, one per outcome type of the `web.fetch` contract.

use std::error::Error as StdError;

/// Why a fetch did not produce a page. [`BrowseError::error_type`] gives the wire name
/// (`policy_denied`, `robots_disallowed`, `redirect_blocked`, `fetch_failed`,
/// `too_large`, `timeout`, `invalid_url`, `unsupported_content_type`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowseError {
    /// The URL cannot be parsed or has no host.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The request itself is malformed (e.g. an empty search query).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Scheme, domain policy or private-network check refused the target (before any
    /// request was sent to it).
    #[error("policy denied: {reason}")]
    PolicyDenied {
        /// Human-readable reason naming the host.
        reason: String,
    },
    /// `robots.txt` disallows the path for this user agent.
    #[error("robots.txt disallows {url}")]
    RobotsDisallowed {
        /// The disallowed URL.
        url: String,
    },
    /// A redirect was refused (too many hops, cross-domain, blocked pattern, or a hop
    /// that failed the policy checks).
    #[error("redirect blocked: {reason}")]
    RedirectBlocked {
        /// Why.
        reason: String,
    },
    /// The body exceeds `max_bytes` and the browser is configured to refuse it.
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The configured cap.
        limit: u64,
    },
    /// The whole fetch (redirects and body included) took longer than the time cap.
    #[error("fetch timed out after {seconds} s")]
    Timeout {
        /// The configured cap.
        seconds: f64,
    },
    /// The response is not a content type the sanitizer handles.
    #[error("unsupported content type {content_type:?}")]
    UnsupportedContentType {
        /// The `Content-Type` received (empty when absent).
        content_type: String,
    },
    /// The subject already has the maximum number of fetches in flight.
    #[error("too many concurrent fetches for {subject}")]
    RateLimited {
        /// Who is limited.
        subject: String,
    },
    /// The server could not be reached or answered with an error status.
    #[error("fetch failed: {message}")]
    FetchFailed {
        /// What happened, without transport internals.
        message: String,
        /// Whether the same fetch may succeed later (network errors, 5xx, 429).
        retryable: bool,
        /// The underlying cause, for logs.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
}

impl BrowseError {
    /// The stable error type name used on the wire (`rate_limited` is an addition to
    /// the reference list).
    pub fn error_type(&self) -> &'static str {
        match self {
            BrowseError::InvalidUrl(_) => "invalid_url",
            BrowseError::InvalidRequest(_) => "invalid_request",
            BrowseError::PolicyDenied { .. } => "policy_denied",
            BrowseError::RobotsDisallowed { .. } => "robots_disallowed",
            BrowseError::RedirectBlocked { .. } => "redirect_blocked",
            BrowseError::TooLarge { .. } => "too_large",
            BrowseError::Timeout { .. } => "timeout",
            BrowseError::UnsupportedContentType { .. } => "unsupported_content_type",
            BrowseError::RateLimited { .. } => "rate_limited",
            BrowseError::FetchFailed { .. } => "fetch_failed",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            BrowseError::Timeout { .. } | BrowseError::RateLimited { .. } => true,
            BrowseError::FetchFailed { retryable, .. } => *retryable,
            _ => false,
        }
    }

    pub(crate) fn denied(reason: impl Into<String>) -> Self {
        BrowseError::PolicyDenied {
            reason: reason.into(),
        }
    }

    pub(crate) fn redirect(reason: impl Into<String>) -> Self {
        BrowseError::RedirectBlocked {
            reason: reason.into(),
        }
    }

    pub(crate) fn failed(
        message: impl Into<String>,
        retryable: bool,
        source: Option<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        BrowseError::FetchFailed {
            message: message.into(),
            retryable,
            source,
        }
    }
}

impl From<BrowseError> for cynode_core::Error {
    fn from(e: BrowseError) -> Self {
        if e.is_retryable() {
            let message = e.to_string();
            cynode_core::Error::unavailable(message, e)
        } else {
            cynode_core::Error::invalid(e.to_string())
        }
    }
}

/// A browser configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sanitizer rules do not compile.
    #[error(transparent)]
    Sanitizer(#[from] crate::sanitize::SanitizeError),
    /// A blocked-redirect pattern is not a valid regex.
    #[error("invalid blocked_redirect_url_patterns entry {pattern:?}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// The regex compiler's complaint.
        #[source]
        source: regex::Error,
    },
    /// A value is out of range.
    #[error("invalid browser setting: {0}")]
    Invalid(String),
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("http client: {0}")]
    Client(String),
}

impl From<ConfigError> for cynode_core::Error {
    fn from(e: ConfigError) -> Self {
        cynode_core::Error::invalid(e.to_string())
    }
}
