//! Errors with the contract's exit codes (cli.md §4).

use cynode_client::gateway::GatewayError;

/// Exit codes of cli.md §4.
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// Unclassified error.
    pub const GENERAL: i32 = 1;
    /// Usage error.
    pub const USAGE: i32 = 2;
    /// Missing token, 401, 403.
    pub const AUTH: i32 = 3;
    /// 404.
    pub const NOT_FOUND: i32 = 4;
    /// 409.
    pub const CONFLICT: i32 = 5;
    /// 400, 422.
    pub const VALIDATION: i32 = 6;
    /// Other HTTP errors, network failures, undecodable answers.
    pub const GATEWAY: i32 = 7;
    /// Internal CLI error.
    pub const INTERNAL: i32 = 8;
}

/// A failed command: the one-line message for stderr and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: i32,
    /// Message (printed as `Error: <message>`).
    pub message: String,
}

impl CliError {
    /// An error with an explicit code.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// Exit 1.
    pub fn general(message: impl Into<String>) -> Self {
        Self::new(code::GENERAL, message)
    }
    /// Exit 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(code::USAGE, message)
    }
    /// Exit 3.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(code::AUTH, message)
    }
    /// Exit 7.
    pub fn gateway(message: impl Into<String>) -> Self {
        Self::new(code::GATEWAY, message)
    }
    /// The missing-token error (§2.5).
    pub fn not_logged_in() -> Self {
        Self::auth("not logged in: run 'cynork auth login'")
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Exit code of an HTTP status (§4).
pub fn code_for_status(status: u16) -> i32 {
    match status {
        401 | 403 => code::AUTH,
        404 => code::NOT_FOUND,
        409 => code::CONFLICT,
        400 | 422 => code::VALIDATION,
        _ => code::GATEWAY,
    }
}

impl From<GatewayError> for CliError {
    fn from(e: GatewayError) -> Self {
        let code = match &e {
            GatewayError::Http { status, .. } => code_for_status(*status),
            GatewayError::InvalidInput(_) => code::USAGE,
            _ => code::GATEWAY,
        };
        Self::new(code, e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::general(e.to_string())
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_contract_codes() {
        for (s, c) in [
            (401, 3),
            (403, 3),
            (404, 4),
            (409, 5),
            (400, 6),
            (422, 6),
            (429, 7),
            (500, 7),
            (502, 7),
        ] {
            assert_eq!(code_for_status(s), c, "status {s}");
        }
    }
}
