//! Fetch and redirect rules (§4.4 groups `fetch` and `redirects`) and the complete
//! rules document with all four groups, as the rules YAML lays them out.

use serde::{Deserialize, Serialize};

use crate::sanitize::{ExtractionRules, SanitizationRules, SanitizeRules};

/// The `fetch` group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchRules {
    /// Honour `robots.txt`.
    pub respect_robots: bool,
    /// `User-Agent` sent; its product token (before `/`) selects the robots group.
    pub user_agent: String,
    /// Time cap for the whole fetch: every redirect hop, robots look-ups and the body.
    pub timeout_seconds: f64,
    /// Byte cap of the response body.
    pub max_bytes: u64,
}

impl Default for FetchRules {
    fn default() -> Self {
        FetchRules {
            respect_robots: true,
            user_agent: "CyNodeAI-SecureBrowser/0.1".to_string(),
            timeout_seconds: 20.0,
            max_bytes: 4_000_000,
        }
    }
}

/// The `redirects` group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectRules {
    /// Most redirects followed.
    pub max_redirect_hops: u32,
    /// Allow a hop to another site (hosts differing other than by a leading `www.`).
    pub allow_cross_domain_redirects: bool,
    /// A hop whose URL matches any of these regexes is refused (bot challenges,
    /// consent walls).
    pub blocked_redirect_url_patterns: Vec<String>,
}

impl Default for RedirectRules {
    fn default() -> Self {
        RedirectRules {
            max_redirect_hops: 5,
            allow_cross_domain_redirects: false,
            blocked_redirect_url_patterns: [
                "(?i)/cdn-cgi/",
                "(?i)captcha",
                "(?i)bot[-_]?check",
                "(?i)consent",
                "(?i)cookie",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

/// All secure-browser rules (the four groups of §4.4).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrowserRules {
    /// Fetch limits.
    pub fetch: FetchRules,
    /// Redirect handling.
    pub redirects: RedirectRules,
    /// Extraction (passed to the sanitizer).
    pub extraction: ExtractionRules,
    /// Text rules (passed to the sanitizer).
    pub sanitization: SanitizationRules,
}

impl BrowserRules {
    /// The sanitizer's part of the rules.
    pub fn sanitize_rules(&self) -> SanitizeRules {
        SanitizeRules {
            extraction: self.extraction.clone(),
            sanitization: self.sanitization.clone(),
        }
    }
}
