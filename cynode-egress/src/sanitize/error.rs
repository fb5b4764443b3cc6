//! Errors of the sanitizer (only rule compilation can fail; sanitizing cannot).

/// A rule set that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SanitizeError {
    /// A denylist pattern is not a valid regular expression.
    #[error("invalid denylist line pattern {pattern:?}")]
    InvalidPattern {
        /// The pattern as configured.
        pattern: String,
        /// The regex compiler's complaint, for logs.
        #[source]
        source: regex::Error,
    },
    /// A rule value is out of range or inconsistent.
    #[error("invalid sanitizer rule: {0}")]
    InvalidRule(String),
}

impl SanitizeError {
    /// Never retryable: the same rules fail the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl From<SanitizeError> for cynode_core::Error {
    fn from(e: SanitizeError) -> Self {
        cynode_core::Error::invalid(e.to_string())
    }
}
