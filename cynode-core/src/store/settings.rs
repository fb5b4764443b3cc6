//! System settings: operator-level configuration values (`system_settings`), versioned,
//! with every write recorded in `system_settings_audit_log` in the same transaction.
//!
//! Settings are not preferences: preferences are task-execution knobs resolved per
//! task; settings configure the deployment (model selection, caches, tool switches).
//! Never store secrets here.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Timestamp;
use crate::{Error, Result};

/// Longest setting key, in characters.
pub const MAX_SETTING_KEY: usize = 255;

/// One setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemSetting {
    /// Case-sensitive dotted key, e.g. `agents.project_manager.model.selection.mode`.
    pub key: String,
    /// Value (any JSON, `null` included).
    pub value: Value,
    /// JSON type of `value`: `string`, `number`, `boolean`, `object`, `array`, `null`.
    pub value_type: String,
    /// Starts at 1, +1 per update.
    pub version: i32,
    /// Last change.
    pub updated_at: Timestamp,
    /// Who changed it last.
    pub updated_by: Option<String>,
}

/// One recorded change of a setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingChange {
    /// Id of the audit row.
    pub id: uuid::Uuid,
    /// Setting key.
    pub key: String,
    /// Value before; `None` when the setting was created.
    pub old_value: Option<Value>,
    /// Value after; `None` when the setting was deleted.
    pub new_value: Option<Value>,
    /// When.
    pub changed_at: Timestamp,
    /// Who.
    pub changed_by: String,
    /// Why, when given.
    pub reason: Option<String>,
}

/// Versioned system settings with an audit trail.
#[async_trait]
pub trait SettingStore: Send + Sync {
    /// One setting.
    async fn get_setting(&self, key: &str) -> Result<SystemSetting>;
    /// Settings whose key starts with `prefix`, ordered by key (code-point order).
    async fn list_settings(&self, prefix: &str) -> Result<Vec<SystemSetting>>;
    /// Creates or updates a setting and records the change, atomically. With
    /// `expected_version` the write happens only if the stored version matches (`Some(0)`
    /// = must not exist yet), else conflict. A blank or over-long key or a blank
    /// `changed_by` is invalid input.
    async fn put_setting(
        &self,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<SystemSetting>;
    /// Deletes a setting and records the change, atomically, with the same version check.
    /// An unknown key is not found.
    async fn delete_setting(
        &self,
        key: &str,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<()>;
    /// Recorded changes of a key, in the order they were written.
    async fn setting_history(&self, key: &str) -> Result<Vec<SettingChange>>;
}

/// Checks a key and an actor.
pub(crate) fn validate_write(key: &str, changed_by: &str) -> Result<()> {
    super::validate::text("setting key", key, MAX_SETTING_KEY)?;
    super::validate::text("changed_by", changed_by, 255)
}

/// The conflict for a version mismatch.
pub(crate) fn version_conflict(key: &str, stored: Option<i32>, expected: i32) -> Error {
    match stored {
        Some(v) => Error::conflict(format!("setting '{key}' is at version {v}, not {expected}")),
        None => Error::conflict(format!(
            "setting '{key}' does not exist (expected version {expected})"
        )),
    }
}

/// Checks `expected` against the stored version (`None` = no row).
pub(crate) fn check_version(key: &str, stored: Option<i32>, expected: Option<i32>) -> Result<()> {
    match expected {
        None => Ok(()),
        Some(e) if stored.unwrap_or(0) == e => Ok(()),
        Some(e) => Err(version_conflict(key, stored, e)),
    }
}
