//! Access-control rules and the access-control audit log, as the egress service needs
//! them: two narrow traits ([`PolicyStore`], [`AccessAuditStore`]), an in-memory
//! implementation, and rule matching.
//!
//! Rule semantics (`access_control_rules`): a rule matches when its `resource_pattern`
//! equals the resource (`provider/operation`, lower-case), or is `*`, or ends in `/*`
//! and the resource starts with the part before it (`openai/*`), or starts with `*/`
//! and the resource ends with the part after it (`*/chat`). Any matching `deny` denies;
//! otherwise any matching `allow` allows; otherwise the call is denied. `priority` does
//! not let an allow outrank a deny. `conditions` are stored but not evaluated here.

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cynode_core::{JobId, Result, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Effect of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Permit.
    Allow,
    /// Forbid (wins over any allow).
    Deny,
}

/// One row of `access_control_rules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessRule {
    /// Id.
    pub id: uuid::Uuid,
    /// `system`, `user`, `group`, `project`, `task` or `agent`.
    pub subject_type: String,
    /// Subject id; `None` only for `system`.
    pub subject_id: Option<uuid::Uuid>,
    /// Action, e.g. `api.call`.
    pub action: String,
    /// Resource type, e.g. `api.provider_operation`.
    pub resource_type: String,
    /// Pattern, e.g. `openai/chat` or `openai/*`.
    pub resource_pattern: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Higher first (tie-breaking only).
    pub priority: i32,
    /// Extra limits (stored, not evaluated by the egress service).
    pub conditions: Option<Value>,
}

impl AccessRule {
    /// A `user` rule for `api.call` on `api.provider_operation`.
    pub fn api_call_for_user(user: uuid::Uuid, pattern: impl Into<String>, effect: Effect) -> Self {
        AccessRule {
            id: uuid::Uuid::new_v4(),
            subject_type: "user".into(),
            subject_id: Some(user),
            action: ACTION_API_CALL.into(),
            resource_type: RESOURCE_PROVIDER_OPERATION.into(),
            resource_pattern: pattern.into(),
            effect,
            priority: 0,
            conditions: None,
        }
    }

    /// Whether the pattern matches `resource`.
    pub fn matches(&self, resource: &str) -> bool {
        pattern_matches(&self.resource_pattern, resource)
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
    let matching = rules.iter().filter(|r| r.matches(resource));
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

/// Decision of an audited evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

impl Decision {
    /// `allow` or `deny`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// One row of `access_control_audit_log` (plus the job id and timing the spec adds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessAudit {
    /// Id.
    pub id: uuid::Uuid,
    /// `user`.
    pub subject_type: String,
    /// The subject (task creator), or `None` when resolution failed.
    pub subject_id: Option<uuid::Uuid>,
    /// `api.call`.
    pub action: String,
    /// `api.provider_operation`.
    pub resource_type: String,
    /// Resolved resource (`provider/operation`), never the pattern.
    pub resource: String,
    /// Allow or deny.
    pub decision: Decision,
    /// Deny reason; `None` on allow.
    pub reason: Option<String>,
    /// Task, when the request named a valid one.
    pub task_id: Option<TaskId>,
    /// Job, when the caller held a job token.
    pub job_id: Option<JobId>,
    /// Time spent evaluating, in ms.
    pub duration_ms: Option<u32>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Reads access-control rules.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Rules for one subject (`subject_id` `None` = the `system` subject), action and
    /// resource type, highest priority first.
    async fn rules_for(
        &self,
        subject_type: &str,
        subject_id: Option<uuid::Uuid>,
        action: &str,
        resource_type: &str,
    ) -> Result<Vec<AccessRule>>;
}

/// Appends to the access-control audit log.
#[async_trait]
pub trait AccessAuditStore: Send + Sync {
    /// Appends one record.
    async fn record_access(&self, record: AccessAudit) -> Result<()>;
}

/// In-memory rules and audit log (for tests and embedding without a database).
#[derive(Debug, Default)]
pub struct MemoryPolicyStore {
    rules: Mutex<Vec<AccessRule>>,
    audit: Mutex<Vec<AccessAudit>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryPolicyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule.
    pub fn add_rule(&self, rule: AccessRule) {
        lock(&self.rules).push(rule);
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        lock(&self.rules).clear();
    }

    /// The audit log, oldest first.
    pub fn audit_records(&self) -> Vec<AccessAudit> {
        lock(&self.audit).clone()
    }
}

#[async_trait]
impl PolicyStore for MemoryPolicyStore {
    async fn rules_for(
        &self,
        subject_type: &str,
        subject_id: Option<uuid::Uuid>,
        action: &str,
        resource_type: &str,
    ) -> Result<Vec<AccessRule>> {
        let mut v: Vec<AccessRule> = lock(&self.rules)
            .iter()
            .filter(|r| {
                r.subject_type == subject_type
                    && r.subject_id == subject_id
                    && r.action == action
                    && r.resource_type == resource_type
            })
            .cloned()
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.priority));
        Ok(v)
    }
}

#[async_trait]
impl AccessAuditStore for MemoryPolicyStore {
    async fn record_access(&self, record: AccessAudit) -> Result<()> {
        lock(&self.audit).push(record);
        Ok(())
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
        let allow = AccessRule::api_call_for_user(u, "openai/*", Effect::Allow);
        let deny = AccessRule::api_call_for_user(u, "openai/chat", Effect::Deny);
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
