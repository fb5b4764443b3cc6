//! Access control: the rules of `access_control_rules` and the decisions of
//! `access_control_audit_log`, behind one narrow trait ([`AccessControlStore`]).
//!
//! The store only keeps and selects rows; evaluating rules against a request (pattern
//! matching, deny-wins) is the job of the component that enforces them (the API egress
//! service, the secure browser, the MCP gateway).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Timestamp;
use crate::{Error, JobId, Result, TaskId};

/// Subject types a rule may name (`schema.md` §5.1).
pub const SUBJECT_TYPES: &[&str] = &["system", "user", "group", "project", "task", "agent"];

/// Effect of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Permit.
    Allow,
    /// Forbid (wins over any allow).
    Deny,
}

/// Outcome of an audited evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

macro_rules! allow_deny {
    ($t:ident, $what:literal) => {
        impl $t {
            /// `allow` or `deny`.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $t::Allow => "allow",
                    $t::Deny => "deny",
                }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    "allow" => Ok($t::Allow),
                    "deny" => Ok($t::Deny),
                    other => Err(Error::invalid(format!(
                        concat!($what, " must be 'allow' or 'deny', not '{}'"),
                        other
                    ))),
                }
            }
        }
    };
}

allow_deny!(Effect, "effect");
allow_deny!(Decision, "decision");

/// One row of `access_control_rules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessRule {
    /// Id.
    pub id: uuid::Uuid,
    /// `system`, `user`, `group`, `project`, `task` or `agent`.
    pub subject_type: String,
    /// Subject id; `None` exactly for `system`.
    pub subject_id: Option<uuid::Uuid>,
    /// Action, e.g. `api.call`, `web.fetch`.
    pub action: String,
    /// Resource type, e.g. `api.provider_operation`, `web.domain`.
    pub resource_type: String,
    /// Pattern, e.g. `openai/chat`, `openai/*`, `example.com`.
    pub resource_pattern: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Higher first (tie-breaking among rules of one effect; never lets an allow beat a
    /// deny).
    pub priority: i32,
    /// Extra limits (rate limits, sizes…), opaque to the store.
    pub conditions: Option<Value>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// Who last changed it (`bootstrap`, a user handle…).
    pub updated_by: Option<String>,
}

/// A rule to create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAccessRule {
    /// One of [`SUBJECT_TYPES`].
    pub subject_type: String,
    /// Required unless `subject_type` is `system`, where it must be `None`.
    pub subject_id: Option<uuid::Uuid>,
    /// Action.
    pub action: String,
    /// Resource type.
    pub resource_type: String,
    /// Pattern.
    pub resource_pattern: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Priority (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Conditions.
    #[serde(default)]
    pub conditions: Option<Value>,
    /// Author.
    #[serde(default)]
    pub updated_by: Option<String>,
}

/// Which rules [`AccessControlStore::list_access_rules`] returns; `None` fields do not
/// filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessRuleFilter {
    /// Subject type.
    pub subject_type: Option<String>,
    /// Subject id (only rules with exactly this id).
    pub subject_id: Option<uuid::Uuid>,
    /// Action.
    pub action: Option<String>,
    /// Resource type.
    pub resource_type: Option<String>,
}

/// One row of `access_control_audit_log`, plus the job and timing the spec adds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessAudit {
    /// Id.
    pub id: uuid::Uuid,
    /// Subject type (`user` for API egress calls).
    pub subject_type: String,
    /// The subject, or `None` when it could not be resolved.
    pub subject_id: Option<uuid::Uuid>,
    /// Action.
    pub action: String,
    /// Resource type.
    pub resource_type: String,
    /// The resolved resource (e.g. `openai/chat`), never the pattern.
    pub resource: String,
    /// Allow or deny.
    pub decision: Decision,
    /// Deny reason; `None` on allow.
    pub reason: Option<String>,
    /// Task the request named, when it was a valid task id.
    pub task_id: Option<TaskId>,
    /// Job of the caller's job-scoped token, if any.
    pub job_id: Option<JobId>,
    /// Time spent deciding, in ms.
    pub duration_ms: Option<i32>,
    /// When (kept as given, at microsecond precision).
    pub created_at: Timestamp,
}

/// Which audit rows [`AccessControlStore::list_access_audit`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessAuditFilter {
    /// Only rows of this task.
    pub task_id: Option<TaskId>,
    /// Only rows of this subject.
    pub subject_id: Option<uuid::Uuid>,
    /// Only rows of this action.
    pub action: Option<String>,
    /// Only rows at or after this time.
    pub since: Option<Timestamp>,
    /// Page size: 0 means 50, otherwise clamped to 1..=1000.
    pub limit: u32,
}

/// Access-control rules and the access-control audit log.
#[async_trait]
pub trait AccessControlStore: Send + Sync {
    /// Stores a rule. Unknown subject type, a subject id missing (or present for
    /// `system`), a blank action, resource type or pattern are invalid input.
    async fn create_access_rule(&self, new: NewAccessRule) -> Result<AccessRule>;
    /// A rule by id.
    async fn get_access_rule(&self, id: uuid::Uuid) -> Result<AccessRule>;
    /// Rules matching the filter, highest priority first, then oldest first (ties by
    /// id).
    async fn list_access_rules(&self, filter: &AccessRuleFilter) -> Result<Vec<AccessRule>>;
    /// The rules one subject holds for one action and resource type — what an
    /// evaluation loads. `subject_id` `None` selects the `system` rules. Ordered as
    /// [`AccessControlStore::list_access_rules`].
    async fn rules_for_subject(
        &self,
        subject_type: &str,
        subject_id: Option<uuid::Uuid>,
        action: &str,
        resource_type: &str,
    ) -> Result<Vec<AccessRule>>;
    /// Deletes a rule.
    async fn delete_access_rule(&self, id: uuid::Uuid) -> Result<()>;

    /// Appends one decision (its id and time are kept).
    async fn record_access(&self, record: AccessAudit) -> Result<()>;
    /// Decisions matching the filter, newest first (ties: last written first).
    async fn list_access_audit(&self, filter: &AccessAuditFilter) -> Result<Vec<AccessAudit>>;
}

/// Checks a rule before it is stored (shared by every backend).
pub(crate) fn validate_rule(r: &NewAccessRule) -> Result<()> {
    if !SUBJECT_TYPES.contains(&r.subject_type.as_str()) {
        return Err(Error::invalid(format!(
            "subject_type must be one of {}, not '{}'",
            SUBJECT_TYPES.join(", "),
            r.subject_type
        )));
    }
    match (r.subject_type.as_str(), r.subject_id) {
        ("system", Some(_)) => {
            return Err(Error::invalid("a system rule has no subject_id"));
        }
        (t, None) if t != "system" => {
            return Err(Error::invalid(format!("a {t} rule needs a subject_id")));
        }
        _ => {}
    }
    super::validate::text("action", &r.action, 128)?;
    super::validate::text("resource_type", &r.resource_type, 128)?;
    super::validate::text("resource_pattern", &r.resource_pattern, 1024)?;
    Ok(())
}

/// Checks an audit record before it is stored.
pub(crate) fn validate_audit(a: &AccessAudit) -> Result<()> {
    super::validate::text("subject_type", &a.subject_type, 64)?;
    super::validate::text("action", &a.action, 128)?;
    super::validate::text("resource_type", &a.resource_type, 128)?;
    if a.resource.is_empty() {
        return Err(Error::invalid("resource must not be empty"));
    }
    Ok(())
}
