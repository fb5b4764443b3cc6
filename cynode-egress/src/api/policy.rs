//! Access-control rule evaluation for the egress service. Rules and audit rows live in
//! the core store ([`AccessControlStore`]: `access_control_rules` and
//! `access_control_audit_log` on memory, SQLite or PostgreSQL); this module matches
//! them against a request.
//!
//! Rule semantics: a rule matches when its `resource_pattern` equals the resource
//! (`provider/operation`, lower-case), or is `*`, or ends in `/*` and the resource
//! starts with the part before it (`openai/*`), or starts with `*/` and the resource
//! ends with the part after it (`*/chat`). Any matching `deny` denies; otherwise any
//! matching `allow` allows; otherwise the call is denied. `priority` does not let an
//! allow outrank a deny. `conditions` are stored but not evaluated here.

pub use cynode_core::store::{
    AccessAudit, AccessControlStore, AccessRule, Decision, Effect, NewAccessRule,
};

/// A `user` rule for `api.call` on `api.provider_operation`, ready to store with
/// [`AccessControlStore::create_access_rule`].
pub fn api_call_rule(
    user: uuid::Uuid,
    pattern: impl Into<String>,
    effect: Effect,
) -> NewAccessRule {
    NewAccessRule {
        subject_type: "user".into(),
        subject_id: Some(user),
        action: ACTION_API_CALL.into(),
        resource_type: RESOURCE_PROVIDER_OPERATION.into(),
        resource_pattern: pattern.into(),
        effect,
        priority: 0,
        conditions: None,
        updated_by: None,
    }
}

/// The action name of an API egress call.
pub const ACTION_API_CALL: &str = "api.call";
/// The resource type of an API egress call.
pub const RESOURCE_PROVIDER_OPERATION: &str = "api.provider_operation";

/// Pattern matching of `resource_pattern` (see the module docs).
pub fn pattern_matches(pattern: &str, resource: &str) -> bool {
    let p = pattern.trim().to_ascii_lowercase();
    let r = resource.to_ascii_lowercase();
    if p == "*" || p == r {
        return true;
    }
    if let Some(prefix) = p.strip_suffix("/*") {
        return r
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'));
    }
    if let Some(suffix) = p.strip_prefix("*/") {
        return r.rsplit_once('/').is_some_and(|(_, op)| op == suffix);
    }
    false
}

/// Evaluates rules for `resource`: `Err(detail)` with the contract's deny strings.
pub fn evaluate(rules: &[AccessRule], resource: &str) -> std::result::Result<(), &'static str> {
    let matching = rules
        .iter()
        .filter(|r| pattern_matches(&r.resource_pattern, resource));
    let mut allowed = false;
    for r in matching {
        match r.effect {
            Effect::Deny => return Err("policy denies provider/operation"),
            Effect::Allow => allowed = true,
        }
    }
    if allowed {
        Ok(())
    } else {
        Err("provider/operation not allowed by policy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("openai/chat", "openai/chat"));
        assert!(pattern_matches("OpenAI/Chat", "openai/chat"));
        assert!(pattern_matches("openai/*", "openai/chat"));
        assert!(!pattern_matches("openai/*", "openaix/chat"));
        assert!(pattern_matches("*/chat", "anthropic/chat"));
        assert!(!pattern_matches("*/chat", "anthropic/chatter"));
        assert!(pattern_matches("*", "x/y"));
        assert!(!pattern_matches("openai/chat", "openai/list_models"));
    }

    #[test]
    fn deny_wins_and_default_deny() {
        let u = uuid::Uuid::new_v4();
        let rule = |pattern: &str, effect| {
            let n = api_call_rule(u, pattern, effect);
            AccessRule {
                id: uuid::Uuid::new_v4(),
                subject_type: n.subject_type,
                subject_id: n.subject_id,
                action: n.action,
                resource_type: n.resource_type,
                resource_pattern: n.resource_pattern,
                effect: n.effect,
                priority: n.priority,
                conditions: None,
                created_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
                updated_by: None,
            }
        };
        let allow = rule("openai/*", Effect::Allow);
        let deny = rule("openai/chat", Effect::Deny);
        assert_eq!(
            evaluate(std::slice::from_ref(&allow), "openai/chat"),
            Ok(())
        );
        assert_eq!(
            evaluate(&[allow.clone(), deny], "openai/chat"),
            Err("policy denies provider/operation")
        );
        assert_eq!(
            evaluate(&[allow], "github/create_issue"),
            Err("provider/operation not allowed by policy")
        );
        assert_eq!(
            evaluate(&[], "openai/chat"),
            Err("provider/operation not allowed by policy")
        );
    }
}
