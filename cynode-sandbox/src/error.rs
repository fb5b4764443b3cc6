//! The one error type of the sandbox driver.
//!
//! Messages are written for the people operating a node: they name the image, job or
//! operation involved. Text coming from the container runtime (its HTTP error bodies) is
//! kept as the `source` for logs, except for image pulls, where the runtime's reason is
//! the useful part of the message and is included, shortened.

use std::fmt;

/// Result alias used across `cynode-sandbox`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed cause kept for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong while preparing, running or cleaning up a sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job spec or the driver configuration is malformed; nothing was started.
    #[error("invalid sandbox job: {0}")]
    InvalidSpec(String),
    /// The image does not pass the configured allowlist; nothing was pulled.
    #[error("image {image} is not allowed by the sandbox image policy")]
    ImageNotAllowed {
        /// The image reference as requested.
        image: String,
    },
    /// The image is neither present locally nor could be pulled.
    #[error("image {image} is not available: {reason}")]
    ImageUnavailable {
        /// The image reference as requested.
        image: String,
        /// Why (pulling disabled, pull failed: ..., pull timed out).
        reason: String,
        /// The underlying cause, for logs.
        #[source]
        source: Option<BoxError>,
    },
    /// The image exists but may not be used for this kind of job (e.g. a runner job on
    /// an image without the agent-compatible label).
    #[error("image {image} is not agent-compatible")]
    ImageNotAgentCompatible {
        /// The image reference as requested.
        image: String,
    },
    /// A job with the same id is already running on this driver.
    #[error("sandbox job {0} is already running")]
    JobConflict(String),
    /// A container (or other runtime object) does not exist.
    #[error("{what} not found: {id}")]
    NotFound {
        /// Kind of object, e.g. `container`.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// The container runtime cannot be reached or timed out; retrying later may work.
    #[error("container runtime unavailable: {message}")]
    Unavailable {
        /// What was being attempted.
        message: String,
        /// The underlying cause, for logs.
        #[source]
        source: Option<BoxError>,
    },
    /// The container runtime refused a request (bad configuration, unsupported option).
    #[error("container runtime error: {message}")]
    Runtime {
        /// What was being attempted, with the runtime's status code when known.
        message: String,
        /// The underlying cause, for logs.
        #[source]
        source: Option<BoxError>,
    },
    /// Preparing or reading the per-job directories on the host failed.
    #[error("sandbox filesystem error: {message}")]
    Io {
        /// What was being attempted, with the path.
        message: String,
        /// The underlying cause.
        #[source]
        source: std::io::Error,
    },
    /// An unexpected internal failure (a bug).
    #[error("internal sandbox error: {message}")]
    Internal {
        /// Short description.
        message: String,
        /// The underlying cause, for logs.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// Builds [`Error::InvalidSpec`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidSpec(msg.into())
    }

    /// Builds [`Error::Io`] with a description of the operation and path.
    pub fn io(message: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            message: message.to_string(),
            source,
        }
    }

    /// Builds [`Error::Internal`] without a cause.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// Whether retrying the same call later may succeed (the runtime was unreachable or
    /// overloaded). Policy refusals, bad specs and missing images never are.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// Short, stable machine name of the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::ImageNotAllowed { .. } => "image_not_allowed",
            Error::ImageUnavailable { .. } => "image_unavailable",
            Error::ImageNotAgentCompatible { .. } => "image_not_agent_compatible",
            Error::JobConflict(_) => "job_conflict",
            Error::NotFound { .. } => "not_found",
            Error::Unavailable { .. } => "unavailable",
            Error::Runtime { .. } => "runtime",
            Error::Io { .. } => "io",
            Error::Internal { .. } => "internal",
        }
    }
}

impl From<Error> for cynode_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidSpec(_)
            | Error::ImageNotAllowed { .. }
            | Error::ImageNotAgentCompatible { .. } => cynode_core::Error::invalid(e.to_string()),
            Error::JobConflict(_) => cynode_core::Error::conflict(e.to_string()),
            Error::NotFound { what, id } => cynode_core::Error::not_found(what, id),
            Error::Unavailable { .. } => {
                let message = e.to_string();
                cynode_core::Error::Unavailable {
                    message,
                    source: Some(Box::new(e)),
                }
            }
            Error::ImageUnavailable { .. }
            | Error::Runtime { .. }
            | Error::Io { .. }
            | Error::Internal { .. } => {
                let message = e.to_string();
                cynode_core::Error::Internal {
                    message,
                    source: Some(Box::new(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        let e = Error::Unavailable {
            message: "ping".into(),
            source: None,
        };
        assert!(e.is_retryable());
        assert!(!Error::invalid("x").is_retryable());
        assert!(!Error::ImageNotAllowed { image: "a".into() }.is_retryable());
    }

    #[test]
    fn maps_to_core_kinds() {
        let core: cynode_core::Error = Error::JobConflict("j".into()).into();
        assert_eq!(core.kind(), "conflict");
        let core: cynode_core::Error = Error::ImageNotAllowed {
            image: "busybox".into(),
        }
        .into();
        assert_eq!(core.kind(), "invalid_input");
        assert!(core.to_string().contains("busybox"));
        let core: cynode_core::Error = Error::Unavailable {
            message: "connect".into(),
            source: None,
        }
        .into();
        assert!(core.is_retryable());
    }
}
