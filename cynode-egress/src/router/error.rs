//! The one error type of the model router, its providers and the egress service's
//! operation adapters.

use std::time::Duration;

use super::routing::ReasonCode;

/// Why a model call or a routing decision failed, with what a caller can do about it.
///
/// Messages never carry provider keys, request bodies or raw HTTP-client text; upstream
/// error messages are shortened and scrubbed of the credential that was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The provider could not be reached or answered with a server error (5xx, broken
    /// connection). Retrying, here or elsewhere, may succeed.
    #[error("provider {provider} unavailable: {message}")]
    Unavailable {
        /// Provider (target) name.
        provider: String,
        /// Short description (HTTP status or connection failure).
        message: String,
        /// Underlying cause, for logs.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The call did not finish within its time budget.
    #[error("provider {provider} timed out after {after:?}")]
    Timeout {
        /// Provider (target) name.
        provider: String,
        /// The budget that ran out.
        after: Duration,
    },
    /// The provider asked us to slow down (HTTP 429).
    #[error("provider {provider} rate-limited the call")]
    RateLimited {
        /// Provider (target) name.
        provider: String,
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The provider refused the credential (HTTP 401/403). Another provider may work.
    #[error("provider {provider} refused the credential (HTTP {status})")]
    Auth {
        /// Provider (target) name.
        provider: String,
        /// HTTP status.
        status: u16,
    },
    /// The provider does not know the model (HTTP 404). Another provider may serve it.
    #[error("provider {provider} does not serve model '{model}'")]
    ModelNotFound {
        /// Provider (target) name.
        provider: String,
        /// Requested model id.
        model: String,
    },
    /// The request itself is wrong (HTTP 400/413/422, or rejected before sending);
    /// sending it elsewhere will not help.
    #[error("invalid request to {provider}: {message}")]
    InvalidRequest {
        /// Provider (target) name, or `router`.
        provider: String,
        /// What is wrong.
        message: String,
    },
    /// The provider answered something we cannot understand.
    #[error("unexpected response from {provider}: {message}")]
    Protocol {
        /// Provider (target) name.
        provider: String,
        /// What was wrong with the answer.
        message: String,
    },
    /// Policy forbids every inference path this request could use (external calls are
    /// not allowed and no local path fits).
    #[error("policy denies external inference and no local inference path fits")]
    PolicyDenied {
        /// Reason codes of the routing decision.
        reasons: Vec<ReasonCode>,
    },
    /// No local worker and no eligible external provider can take the request.
    #[error("no inference path available")]
    NoInferencePath {
        /// Reason codes of the routing decision.
        reasons: Vec<ReasonCode>,
    },
    /// Configuration is invalid (unknown provider, bad URL, bad key material).
    #[error("router configuration error: {0}")]
    Config(String),
    /// Every attempt within the retry budget failed; `last` is the final failure.
    #[error("all {attempts} attempts failed; last error: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The final failure.
        #[source]
        last: Box<RouterError>,
    },
}

impl RouterError {
    /// Whether the same request may succeed if retried later (connection failures,
    /// server errors, timeouts, rate limits). Bad requests, refused credentials, unknown
    /// models, policy and configuration errors never are.
    pub fn is_retryable(&self) -> bool {
        match self {
            RouterError::Unavailable { .. }
            | RouterError::Timeout { .. }
            | RouterError::RateLimited { .. } => true,
            RouterError::NoInferencePath { .. } => true,
            RouterError::Exhausted { last, .. } => last.is_retryable(),
            _ => false,
        }
    }

    /// Whether another provider may succeed where this one failed: true for retryable
    /// errors and for provider-specific refusals (credential, unknown model, unreadable
    /// answer); false for a bad request, policy and configuration errors.
    pub fn allows_fallback(&self) -> bool {
        match self {
            RouterError::Auth { .. }
            | RouterError::ModelNotFound { .. }
            | RouterError::Protocol { .. } => true,
            RouterError::InvalidRequest { .. }
            | RouterError::PolicyDenied { .. }
            | RouterError::Config(_) => false,
            other => other.is_retryable(),
        }
    }

    /// Short, stable machine name of the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            RouterError::Unavailable { .. } => "unavailable",
            RouterError::Timeout { .. } => "timeout",
            RouterError::RateLimited { .. } => "rate_limited",
            RouterError::Auth { .. } => "auth",
            RouterError::ModelNotFound { .. } => "model_not_found",
            RouterError::InvalidRequest { .. } => "invalid_request",
            RouterError::Protocol { .. } => "protocol",
            RouterError::PolicyDenied { .. } => "policy_denied",
            RouterError::NoInferencePath { .. } => "no_inference_path",
            RouterError::Config(_) => "config",
            RouterError::Exhausted { last, .. } => last.kind(),
        }
    }

    /// The innermost error (unwraps [`RouterError::Exhausted`]).
    pub fn root(&self) -> &RouterError {
        match self {
            RouterError::Exhausted { last, .. } => last.root(),
            other => other,
        }
    }

    pub(crate) fn invalid(provider: &str, message: impl Into<String>) -> Self {
        RouterError::InvalidRequest {
            provider: provider.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn protocol(provider: &str, message: impl Into<String>) -> Self {
        RouterError::Protocol {
            provider: provider.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_by_kind() {
        let unavailable = RouterError::Unavailable {
            provider: "p".into(),
            message: "502".into(),
            source: None,
        };
        assert!(unavailable.is_retryable());
        assert!(unavailable.allows_fallback());
        let auth = RouterError::Auth {
            provider: "p".into(),
            status: 401,
        };
        assert!(!auth.is_retryable());
        assert!(auth.allows_fallback());
        let bad = RouterError::invalid("p", "messages empty");
        assert!(!bad.is_retryable());
        assert!(!bad.allows_fallback());
        let exhausted = RouterError::Exhausted {
            attempts: 3,
            last: Box::new(unavailable),
        };
        assert!(exhausted.is_retryable());
        assert_eq!(exhausted.kind(), "unavailable");
        let exhausted = RouterError::Exhausted {
            attempts: 1,
            last: Box::new(auth),
        };
        assert!(!exhausted.is_retryable());
        assert_eq!(exhausted.root().kind(), "auth");
    }
}
