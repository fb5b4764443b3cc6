//! The one error type of the storage layer and domain, with a kind a caller can act on.

use std::fmt;

/// Result alias used across `cynode-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller (and, later, an HTTP layer) can map to an answer.
///
/// Messages never carry raw SQL or driver text meant for end users; the `source`
/// (when present) keeps the underlying error for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The entity does not exist (or is not visible to the caller).
    #[error("{entity} not found: {id}")]
    NotFound {
        /// Kind of entity, e.g. `task`.
        entity: &'static str,
        /// The id or name that was looked up.
        id: String,
    },
    /// The write conflicts with existing state: a duplicate unique key, a stale version,
    /// or a state transition that is not allowed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input is malformed or violates a rule (bad reference, out-of-range value).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The backend is unreachable or overloaded; the same call may succeed later.
    #[error("storage unavailable: {message}")]
    Unavailable {
        /// What was being attempted.
        message: String,
        /// The underlying cause, for logs.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The stored schema is newer than this code understands; refuse to run.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); upgrade CyNodeAI"
    )]
    SchemaTooNew {
        /// Highest migration version recorded in the database.
        found: i64,
        /// Highest migration version this build ships.
        supported: i64,
    },
    /// An unexpected internal failure (a bug, or corrupted data).
    #[error("internal error: {message}")]
    Internal {
        /// Short description.
        message: String,
        /// The underlying cause, for logs.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// Builds [`Error::NotFound`].
    pub fn not_found(entity: &'static str, id: impl fmt::Display) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// Builds [`Error::Conflict`].
    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    /// Builds [`Error::InvalidInput`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// Builds [`Error::Unavailable`] from a cause.
    pub fn unavailable(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Builds [`Error::Internal`] without a cause.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// Whether retrying the same call later may succeed (connection loss, overload,
    /// serialization failure). Not found, conflicts and bad input never are.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// Short, stable machine name of the error kind (`not_found`, `conflict`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::InvalidInput(_) => "invalid_input",
            Error::Unavailable { .. } => "unavailable",
            Error::SchemaTooNew { .. } => "schema_too_new",
            Error::Internal { .. } => "internal",
        }
    }
}
