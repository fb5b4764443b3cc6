//! Domain policy for `web.fetch` (§4.2 step 3, §6.1): `access_control_rules` rows with
//! resource type `web.domain` or `web.url_pattern`, deny wins, default deny, optionally
//! narrowed by the `security.web_browse.allowed_domains` preference.

use serde::{Deserialize, Serialize};

use crate::webproxy::guard::host_matches;

/// `allow` or `deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Permit.
    Allow,
    /// Refuse (wins over any allow).
    Deny,
}

/// What a rule's pattern is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebResource {
    /// `web.domain`: the host (`example.com`, `*.example.com`, `*`).
    #[serde(rename = "web.domain")]
    Domain,
    /// `web.url_pattern`: the whole URL, with `*` matching any run of characters
    /// (`https://docs.rs/*`).
    #[serde(rename = "web.url_pattern")]
    UrlPattern,
}

/// One applicable rule (the subject selection happened when the rules were loaded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebRule {
    /// Allow or deny.
    pub effect: Effect,
    /// Resource type.
    pub resource_type: WebResource,
    /// Pattern.
    pub pattern: String,
}

/// The effective web policy for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPolicy {
    /// Rules for the subject and action (`web.fetch`).
    pub rules: Vec<WebRule>,
    /// `security.web_browse.allowed_domains`: when set, a host must also match one of
    /// these patterns.
    pub allowed_domains: Option<Vec<String>>,
}

impl WebPolicy {
    /// A policy that allows exactly these domain patterns.
    pub fn allow_domains<S: AsRef<str>>(domains: &[S]) -> Self {
        WebPolicy {
            rules: domains
                .iter()
                .map(|d| WebRule {
                    effect: Effect::Allow,
                    resource_type: WebResource::Domain,
                    pattern: d.as_ref().to_string(),
                })
                .collect(),
            allowed_domains: None,
        }
    }

    /// Adds a deny rule for a domain pattern.
    pub fn deny_domain(mut self, pattern: &str) -> Self {
        self.rules.push(WebRule {
            effect: Effect::Deny,
            resource_type: WebResource::Domain,
            pattern: pattern.to_string(),
        });
        self
    }

    /// Decides for `url` with host `host`: `Ok(())` or the deny reason.
    pub fn check(&self, url: &str, host: &str) -> Result<(), String> {
        let matches = |r: &WebRule| match r.resource_type {
            WebResource::Domain => host_matches(&r.pattern, host),
            WebResource::UrlPattern => glob(&r.pattern, url),
        };
        if let Some(r) = self
            .rules
            .iter()
            .find(|r| r.effect == Effect::Deny && matches(r))
        {
            return Err(format!("policy denies {host} (rule {:?})", r.pattern));
        }
        if !self
            .rules
            .iter()
            .any(|r| r.effect == Effect::Allow && matches(r))
        {
            return Err(format!("no policy rule allows {host}"));
        }
        if let Some(list) = &self.allowed_domains
            && !list.iter().any(|d| host_matches(d, host))
        {
            return Err(format!("{host} is not in the allowed domains preference"));
        }
        Ok(())
    }
}

/// Whole-string match with `*` as "any run of characters".
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let Some(mut tail) = s.strip_prefix(first) else {
        return false;
    };
    let last = rest[rest.len() - 1];
    for mid in &rest[..rest.len() - 1] {
        match tail.find(mid) {
            Some(i) => tail = &tail[i + mid.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_default_deny() {
        let p = WebPolicy::allow_domains(&["*.example.com", "example.com"])
            .deny_domain("bad.example.com");
        assert!(p.check("https://example.com/", "example.com").is_ok());
        assert!(p.check("https://a.example.com/", "a.example.com").is_ok());
        assert!(
            p.check("https://bad.example.com/", "bad.example.com")
                .is_err()
        );
        assert!(p.check("https://other.org/", "other.org").is_err());
        let narrowed = WebPolicy {
            allowed_domains: Some(vec!["a.example.com".into()]),
            ..p
        };
        assert!(
            narrowed
                .check("https://example.com/", "example.com")
                .is_err()
        );
        assert!(
            narrowed
                .check("https://a.example.com/", "a.example.com")
                .is_ok()
        );
    }

    #[test]
    fn url_patterns() {
        let p = WebPolicy {
            rules: vec![WebRule {
                effect: Effect::Allow,
                resource_type: WebResource::UrlPattern,
                pattern: "https://docs.rs/*".into(),
            }],
            allowed_domains: None,
        };
        assert!(p.check("https://docs.rs/regex", "docs.rs").is_ok());
        assert!(p.check("http://docs.rs/regex", "docs.rs").is_err());
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXbY"));
        assert!(glob("*", ""));
    }
}
