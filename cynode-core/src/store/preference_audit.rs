//! Preference writes with their audit trail (`preference_audit_log`): the entry and the
//! record of the change are written in one transaction.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Scope, Timestamp};
use crate::{PreferenceId, Result};

/// One recorded change of a preference entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreferenceChange {
    /// Id of the audit row.
    pub id: uuid::Uuid,
    /// The entry changed (it may since have been deleted).
    pub entry_id: PreferenceId,
    /// Its scope.
    pub scope: Scope,
    /// Its key.
    pub key: String,
    /// Value before; `None` when the entry was created.
    pub old_value: Option<Value>,
    /// Value after; `None` when the entry was deleted.
    pub new_value: Option<Value>,
    /// When.
    pub changed_at: Timestamp,
    /// Who.
    pub changed_by: String,
    /// Why, when given.
    pub reason: Option<String>,
}

/// Audited preference writes. Same rules as
/// [`PreferenceStore::put_preference`](super::PreferenceStore::put_preference) and
/// [`PreferenceStore::delete_preference`](super::PreferenceStore::delete_preference)
/// (versions, conflicts, not-found), plus one history row per successful write, in the
/// same transaction. A blank `changed_by` is invalid input.
#[async_trait]
pub trait PreferenceAuditStore: Send + Sync {
    /// Creates or updates an entry (its `updated_by` becomes `changed_by`) and records
    /// the change.
    async fn put_preference_audited(
        &self,
        scope: Scope,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<crate::model::PreferenceEntry>;
    /// Deletes an entry and records the change.
    async fn delete_preference_audited(
        &self,
        scope: Scope,
        key: &str,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<()>;
    /// Recorded changes of a scope's key, in the order they were written (entries
    /// deleted and created again included).
    async fn preference_history(&self, scope: Scope, key: &str) -> Result<Vec<PreferenceChange>>;
}

/// Checks the actor and key of an audited write.
pub(crate) fn validate_write(key: &str, changed_by: &str) -> Result<()> {
    super::validate::text("preference key", key, 255)?;
    super::validate::text("changed_by", changed_by, 255)
}

/// Checks `expected` against the stored version (`None` = no entry).
pub(crate) fn check_version(key: &str, stored: Option<i32>, expected: Option<i32>) -> Result<()> {
    match (expected, stored) {
        (None, _) => Ok(()),
        (Some(e), s) if s.unwrap_or(0) == e => Ok(()),
        (Some(e), Some(v)) => Err(crate::Error::conflict(format!(
            "preference '{key}' is at version {v}, not {e}"
        ))),
        (Some(e), None) => Err(crate::Error::conflict(format!(
            "preference '{key}' does not exist (expected version {e})"
        ))),
    }
}
