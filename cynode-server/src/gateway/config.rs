//! Typed gateway configuration with documented defaults.

use std::time::Duration;

use cynode_core::auth::PasswordParams;
use serde::{Deserialize, Serialize};

use super::chat::ChatConfig;

/// Gateway settings. Every field has a default (shown per field), so an empty
/// configuration document is valid. Secrets (the JWT keys) are not part of it: they
/// are handed to [`GatewayState`](super::GatewayState) separately.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Access-token lifetime in seconds (default 900 = 15 min). Also reported as
    /// `expires_in`.
    pub access_token_ttl_secs: u64,
    /// Refresh-token (session) lifetime in seconds (default 604800 = 168 h).
    pub refresh_token_ttl_secs: u64,
    /// Largest accepted request body in bytes (default 10 MiB). Larger bodies are
    /// answered with `413` Problem Details.
    pub max_body_bytes: usize,
    /// Time a request may take until its response starts, in seconds (default 300, the
    /// reference's write timeout). Slower requests get `504` Problem Details.
    pub request_timeout_secs: u64,
    /// Login attempt limits.
    pub login_rate_limit: LoginRateLimit,
    /// Whether the client address for rate limits and audit is taken from
    /// `X-Forwarded-For` (first entry), then `X-Real-IP`, before the socket address
    /// (default false: only set it behind a proxy that overwrites these headers, or
    /// clients can choose their own address).
    pub trust_forwarded_headers: bool,
    /// Origins allowed by CORS (default empty: no CORS headers at all).
    pub cors_allowed_origins: Vec<String>,
    /// The model named in sandbox and SBA job specs (default `qwen3.5:0.8b`). Empty
    /// means none: SBA tasks are then refused.
    pub inference_model: String,
    /// Handle whose holder may use admin routes (default `admin`, as in the reference).
    pub admin_handle: String,
    /// Argon2id parameters for new password hashes (default: 64 MiB, t=3, p=2). Also
    /// used for the dummy hash verified when a login names an unknown user, so both
    /// answers take as long.
    pub password_params: PasswordParams,
    /// Chat completions: PM model and prompt, deadline, history, thread reuse.
    pub chat: ChatConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 168 * 3600,
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_secs: 300,
            login_rate_limit: LoginRateLimit::default(),
            trust_forwarded_headers: false,
            cors_allowed_origins: Vec::new(),
            inference_model: "qwen3.5:0.8b".into(),
            admin_handle: "admin".into(),
            password_params: PasswordParams::default(),
            chat: ChatConfig::default(),
        }
    }
}

impl GatewayConfig {
    pub(crate) fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs.max(1))
    }
    pub(crate) fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_secs.max(1))
    }
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }
}

/// Fixed-window limits on `POST /v1/auth/login`. A limit of 0 turns that check off.
///
/// Two checks run: all attempts from one client address (the reference's limit,
/// checked before the body is read), and failed attempts for one handle from one
/// address (against password guessing; a success clears that count). An attempt over
/// either limit is answered `429` `Too many login attempts` with `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginRateLimit {
    /// Window length in seconds (default 60).
    pub window_secs: u64,
    /// Attempts per address per window, successes included (default 60).
    pub per_ip: u32,
    /// Failed attempts per (handle, address) per window (default 10).
    pub failures_per_handle_ip: u32,
}

impl Default for LoginRateLimit {
    fn default() -> Self {
        Self {
            window_secs: 60,
            per_ip: 60,
            failures_per_handle_ip: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_document_gives_the_documented_defaults() {
        let c: GatewayConfig = serde_json::from_str("{}").expect("empty config");
        assert_eq!(c, GatewayConfig::default());
        assert_eq!(c.access_token_ttl_secs, 900);
        assert_eq!(c.refresh_token_ttl_secs, 604_800);
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(
            c.login_rate_limit,
            LoginRateLimit {
                window_secs: 60,
                per_ip: 60,
                failures_per_handle_ip: 10
            }
        );
        assert!(c.cors_allowed_origins.is_empty() && !c.trust_forwarded_headers);
        let partial: GatewayConfig =
            serde_json::from_str(r#"{"login_rate_limit": {"per_ip": 5}}"#).expect("partial");
        assert_eq!(partial.login_rate_limit.per_ip, 5);
        assert_eq!(partial.login_rate_limit.window_secs, 60);
        assert!(serde_json::from_str::<GatewayConfig>(r#"{"jwt_secret": "x"}"#).is_err());
    }
}
