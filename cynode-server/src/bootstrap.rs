//! The bootstrap file: an optional YAML document read once at start-up that seeds
//! system preferences, system settings, access-control rules and names the first
//! admin (contract: `egress-and-routing.md` §7.1). The database stays the source of
//! truth: everything seeded here can be edited afterwards, and a re-import never
//! overwrites an edit.
//!
//! ```
//! # async fn demo() -> cynode_core::Result<()> {
//! use cynode_server::bootstrap::{BootstrapFile, BootstrapTargets, apply};
//!
//! let file = BootstrapFile::from_yaml(
//!     "version: 1\n\
//!      preferences:\n  - {key: language.preferred, value: en, value_type: string}\n",
//! )?;
//! let store = cynode_core::store::MemoryStore::new();
//! let report = apply(&file, &BootstrapTargets::new(&store)).await?;
//! assert_eq!(report.preferences.inserted, ["language.preferred"]);
//! // Importing the same file again changes nothing.
//! let again = apply(&file, &BootstrapTargets::new(&store)).await?;
//! assert_eq!(again.preferences.unchanged, ["language.preferred"]);
//! # Ok(()) }
//! ```
//!
//! # Semantics
//! - `version` must be `1`; any other value refuses the whole file.
//! - `value_type` is one of `string`, `number`, `boolean`, `object`, `array` and must be
//!   the type of `value`; an entry that breaks this (or names a key twice, or is
//!   refused by storage as invalid) is rejected on its own and the import goes on.
//! - A missing key is inserted (version 1, `updated_by = "bootstrap"`). An existing key
//!   whose last writer was the bootstrap import is updated to the file's value; one
//!   edited since (any other writer) keeps its stored value and is reported as `kept`.
//! - An access-control rule is identified by subject, action, resource type, pattern
//!   and effect; a rule already present is left alone, a missing one is inserted.
//! - Sections whose storage the caller did not provide (see [`BootstrapTargets`]) are
//!   reported in [`BootstrapReport::not_applied`] rather than silently dropped.
//! - Secrets are never in the file: `admin_user.password_env` names the environment
//!   variable holding the admin password, which the binary reads.

use async_trait::async_trait;
use cynode_core::model::{Scope, json_type_name};
use cynode_core::store::{
    AccessControlStore, AccessRuleFilter, Effect, NewAccessRule, PreferenceStore, SettingStore,
    Store,
};
use cynode_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `updated_by` recorded on every write of the bootstrap import.
pub const BOOTSTRAP_ACTOR: &str = "bootstrap";

/// The file format version this build reads.
pub const SUPPORTED_VERSION: u32 = 1;

/// The accepted `value_type` names.
pub const VALUE_TYPES: [&str; 5] = ["string", "number", "boolean", "object", "array"];

/// The accepted access-control subject types.
pub const SUBJECT_TYPES: [&str; 6] = ["system", "user", "group", "project", "task", "agent"];

/// A parsed bootstrap file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapFile {
    /// Schema version of the file; must be [`SUPPORTED_VERSION`].
    pub version: u32,
    /// System-scope preference defaults (`preference_entries`, `scope_type = 'system'`).
    #[serde(default)]
    pub preferences: Vec<SeedEntry>,
    /// System settings (`system_settings`).
    #[serde(default)]
    pub system_settings: Vec<SeedEntry>,
    /// Access-control rules (`access_control_rules`).
    #[serde(default)]
    pub access_control_rules: Vec<RuleSeed>,
    /// Sandbox image registries and their policy defaults (kept as given).
    #[serde(default)]
    pub sandbox_image_registry: Option<Value>,
    /// The first admin account.
    #[serde(default)]
    pub admin_user: Option<AdminUserSeed>,
}

/// One preference or setting: `{key, value, value_type}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedEntry {
    /// Case-sensitive key, e.g. `language.preferred`.
    pub key: String,
    /// The value, stored as JSON.
    pub value: Value,
    /// Declared JSON type of `value` (one of [`VALUE_TYPES`]).
    pub value_type: String,
}

/// One access-control rule as written in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSeed {
    /// `system`, `user`, `group`, `project`, `task` or `agent`.
    pub subject_type: String,
    /// The subject's id; absent only for `system`.
    #[serde(default)]
    pub subject_id: Option<uuid::Uuid>,
    /// E.g. `api.call`, `web.fetch`.
    pub action: String,
    /// E.g. `api.provider_operation`, `web.domain`.
    pub resource_type: String,
    /// E.g. `openai/chat` or `*.example.com`.
    pub resource_pattern: String,
    /// `allow` or `deny`.
    pub effect: String,
    /// Higher wins among rules of the same effect (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Limits (max chars, methods, rates…).
    #[serde(default)]
    pub conditions: Option<Value>,
}

impl RuleSeed {
    /// A short human-readable name of the rule, used in reports.
    pub fn label(&self) -> String {
        let subject = match &self.subject_id {
            Some(id) => format!("{}:{id}", self.subject_type),
            None => self.subject_type.clone(),
        };
        format!(
            "{} {subject} {} {}:{}",
            self.effect, self.action, self.resource_type, self.resource_pattern
        )
    }

    /// Whether `other` is the same rule (same subject, action, resource and effect).
    pub fn same_rule(&self, other: &RuleSeed) -> bool {
        self.subject_type == other.subject_type
            && self.subject_id == other.subject_id
            && self.action == other.action
            && self.resource_type == other.resource_type
            && self.resource_pattern == other.resource_pattern
            && self.effect == other.effect
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !SUBJECT_TYPES.contains(&self.subject_type.as_str()) {
            return Err(format!(
                "subject_type '{}' is not one of {}",
                self.subject_type,
                SUBJECT_TYPES.join(", ")
            ));
        }
        match (self.subject_type.as_str(), self.subject_id) {
            ("system", Some(_)) => return Err("a system rule takes no subject_id".into()),
            ("system", None) => {}
            (_, None) => {
                return Err(format!("a {} rule needs a subject_id", self.subject_type));
            }
            _ => {}
        }
        for (name, v) in [
            ("action", &self.action),
            ("resource_type", &self.resource_type),
            ("resource_pattern", &self.resource_pattern),
        ] {
            if v.trim().is_empty() {
                return Err(format!("{name} must not be empty"));
            }
        }
        if self.effect != "allow" && self.effect != "deny" {
            return Err(format!("effect '{}' is not 'allow' or 'deny'", self.effect));
        }
        if let Some(c) = &self.conditions
            && !c.is_object()
        {
            return Err("conditions must be an object".into());
        }
        Ok(())
    }
}

/// The first admin: its handle and the environment variable holding its password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUserSeed {
    /// Login handle (default account name in the reference: `admin`).
    pub handle: String,
    /// Name of the environment variable that holds the password.
    pub password_env: String,
}

impl BootstrapFile {
    /// Parses and checks a bootstrap document. Errors (invalid input) name the line
    /// and column of a syntax error, an unknown key, a missing `version` or an
    /// unsupported one, and a malformed `admin_user`.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let probe: Option<Value> = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::invalid(format!("bootstrap file: {e}")))?;
        match probe {
            None | Some(Value::Null) => {
                return Err(Error::invalid(
                    "bootstrap file is empty (it needs at least `version: 1`)",
                ));
            }
            Some(Value::Object(m)) => match m.get("version") {
                None => return Err(Error::invalid("bootstrap file: `version` is missing")),
                Some(v) if v.as_u64() != Some(u64::from(SUPPORTED_VERSION)) => {
                    return Err(Error::invalid(format!(
                        "bootstrap file: version {v} is not supported (this build reads version {SUPPORTED_VERSION})"
                    )));
                }
                Some(_) => {}
            },
            Some(_) => {
                return Err(Error::invalid(
                    "bootstrap file: the top level must be a mapping of sections",
                ));
            }
        }
        let file: BootstrapFile = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::invalid(format!("bootstrap file: {e}")))?;
        if let Some(a) = &file.admin_user {
            if a.handle.trim().is_empty() {
                return Err(Error::invalid(
                    "bootstrap file: admin_user.handle must not be empty",
                ));
            }
            let env_ok = !a.password_env.is_empty()
                && a.password_env
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !a.password_env.starts_with(|c: char| c.is_ascii_digit());
            if !env_ok {
                return Err(Error::invalid(format!(
                    "bootstrap file: admin_user.password_env '{}' is not an environment variable name",
                    a.password_env
                )));
            }
        }
        Ok(file)
    }
}

/// A stored key/value entry as the import needs to see it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntry {
    /// The stored value.
    pub value: Value,
    /// The stored version (starts at 1).
    pub version: i32,
    /// Who wrote it last.
    pub updated_by: Option<String>,
}

/// Key/value storage the import seeds (system settings; system preferences go through
/// [`PreferenceStore`] directly). Implement it over whatever holds the settings.
#[async_trait]
pub trait SeedTarget: Send + Sync {
    /// The entry stored under `key`, if any.
    async fn get_entry(&self, key: &str) -> Result<Option<StoredEntry>>;
    /// Writes `value` under `key` if the stored version is `expected_version` (0 =
    /// the key must not exist yet); otherwise [`Error::Conflict`].
    async fn put_entry(
        &self,
        key: &str,
        value: &Value,
        value_type: &str,
        expected_version: i32,
        updated_by: &str,
    ) -> Result<()>;
}

/// Access-control rule storage the import seeds.
#[async_trait]
pub trait RuleTarget: Send + Sync {
    /// Every stored rule.
    async fn list_rules(&self) -> Result<Vec<RuleSeed>>;
    /// Stores a new rule.
    async fn insert_rule(&self, rule: &RuleSeed, updated_by: &str) -> Result<()>;
}

/// Where the import writes. Preferences always go to the [`PreferenceStore`]; the
/// other sections only when their target is given.
pub struct BootstrapTargets<'a> {
    /// System preferences.
    pub preferences: &'a dyn PreferenceStore,
    /// System settings, when this deployment has storage for them.
    pub settings: Option<&'a dyn SeedTarget>,
    /// Access-control rules, when this deployment has storage for them.
    pub rules: Option<&'a dyn RuleTarget>,
}

impl<'a> BootstrapTargets<'a> {
    /// Every section into one store: system preferences, system settings
    /// ([`SettingStore`], changes audited in `system_settings_audit_log`) and
    /// access-control rules ([`AccessControlStore`]).
    pub fn for_store(store: &'a dyn Store) -> BootstrapTargetsOwned<'a> {
        BootstrapTargetsOwned {
            preferences: store,
            settings: SystemSettings(store),
            rules: AccessRules(store),
        }
    }

    /// Preferences only.
    pub fn new(preferences: &'a dyn PreferenceStore) -> Self {
        Self {
            preferences,
            settings: None,
            rules: None,
        }
    }
    /// Adds the system-settings target.
    pub fn with_settings(mut self, settings: &'a dyn SeedTarget) -> Self {
        self.settings = Some(settings);
        self
    }
    /// Adds the access-control rule target.
    pub fn with_rules(mut self, rules: &'a dyn RuleTarget) -> Self {
        self.rules = Some(rules);
        self
    }
}

/// Targets over one [`Store`], built by [`BootstrapTargets::for_store`]; borrow it with
/// [`BootstrapTargetsOwned::targets`].
pub struct BootstrapTargetsOwned<'a> {
    preferences: &'a dyn Store,
    settings: SystemSettings<'a>,
    rules: AccessRules<'a>,
}

impl std::fmt::Debug for BootstrapTargetsOwned<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTargetsOwned")
            .finish_non_exhaustive()
    }
}

impl BootstrapTargetsOwned<'_> {
    /// The targets to pass to [`apply`].
    pub fn targets(&self) -> BootstrapTargets<'_> {
        BootstrapTargets {
            preferences: self.preferences,
            settings: Some(&self.settings),
            rules: Some(&self.rules),
        }
    }
}

/// [`SeedTarget`] over a [`SettingStore`].
struct SystemSettings<'a>(&'a dyn SettingStore);

#[async_trait]
impl SeedTarget for SystemSettings<'_> {
    async fn get_entry(&self, key: &str) -> Result<Option<StoredEntry>> {
        match self.0.get_setting(key).await {
            Ok(s) => Ok(Some(StoredEntry {
                value: s.value,
                version: s.version,
                updated_by: s.updated_by,
            })),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn put_entry(
        &self,
        key: &str,
        value: &Value,
        _value_type: &str,
        expected_version: i32,
        updated_by: &str,
    ) -> Result<()> {
        self.0
            .put_setting(
                key,
                value.clone(),
                Some(expected_version),
                updated_by,
                Some("bootstrap file"),
            )
            .await
            .map(|_| ())
    }
}

/// [`RuleTarget`] over an [`AccessControlStore`].
struct AccessRules<'a>(&'a dyn AccessControlStore);

fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

#[async_trait]
impl RuleTarget for AccessRules<'_> {
    async fn list_rules(&self) -> Result<Vec<RuleSeed>> {
        Ok(self
            .0
            .list_access_rules(&AccessRuleFilter::default())
            .await?
            .into_iter()
            .map(|r| RuleSeed {
                subject_type: r.subject_type,
                subject_id: r.subject_id,
                action: r.action,
                resource_type: r.resource_type,
                resource_pattern: r.resource_pattern,
                effect: effect_name(r.effect).into(),
                priority: r.priority,
                conditions: r.conditions,
            })
            .collect())
    }
    async fn insert_rule(&self, rule: &RuleSeed, updated_by: &str) -> Result<()> {
        let effect = match rule.effect.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => {
                return Err(Error::invalid(format!(
                    "effect '{other}' is not 'allow' or 'deny'"
                )));
            }
        };
        self.0
            .create_access_rule(NewAccessRule {
                subject_type: rule.subject_type.clone(),
                subject_id: rule.subject_id,
                action: rule.action.clone(),
                resource_type: rule.resource_type.clone(),
                resource_pattern: rule.resource_pattern.clone(),
                effect,
                priority: rule.priority,
                conditions: rule.conditions.clone(),
                updated_by: Some(updated_by.into()),
            })
            .await
            .map(|_| ())
    }
}

impl std::fmt::Debug for BootstrapTargets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTargets")
            .field("settings", &self.settings.is_some())
            .field("rules", &self.rules.is_some())
            .finish_non_exhaustive()
    }
}

/// An entry the import refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// The key (or rule label).
    pub item: String,
    /// Why it was refused.
    pub reason: String,
}

/// What happened to one section's entries (keys or rule labels, in file order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SectionReport {
    /// Written for the first time.
    pub inserted: Vec<String>,
    /// Overwritten: the stored value came from an earlier import and the file changed.
    pub updated: Vec<String>,
    /// Already stored with this value.
    pub unchanged: Vec<String>,
    /// Edited since an import (or written by someone else): the stored value was kept.
    pub kept: Vec<String>,
    /// Refused (wrong type, duplicate, invalid).
    pub rejected: Vec<Rejected>,
}

impl SectionReport {
    /// Number of entries that were written.
    pub fn written(&self) -> usize {
        self.inserted.len() + self.updated.len()
    }
}

/// A section of the file this deployment did not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotApplied {
    /// Section name as in the file.
    pub section: &'static str,
    /// How many entries it had.
    pub entries: usize,
    /// Why it was not applied.
    pub reason: String,
}

/// The outcome of [`apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BootstrapReport {
    /// System preferences.
    pub preferences: SectionReport,
    /// System settings.
    pub system_settings: SectionReport,
    /// Access-control rules.
    pub access_control_rules: SectionReport,
    /// Sections not applied.
    pub not_applied: Vec<NotApplied>,
}

/// [`SeedTarget`] over the system scope of a [`PreferenceStore`].
struct SystemPreferences<'a>(&'a dyn PreferenceStore);

#[async_trait]
impl SeedTarget for SystemPreferences<'_> {
    async fn get_entry(&self, key: &str) -> Result<Option<StoredEntry>> {
        match self.0.get_preference(Scope::System, key).await {
            Ok(p) => Ok(Some(StoredEntry {
                value: p.value,
                version: p.version,
                updated_by: p.updated_by,
            })),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn put_entry(
        &self,
        key: &str,
        value: &Value,
        _value_type: &str,
        expected_version: i32,
        updated_by: &str,
    ) -> Result<()> {
        self.0
            .put_preference(
                Scope::System,
                key,
                value.clone(),
                Some(expected_version),
                Some(updated_by),
            )
            .await
            .map(|_| ())
    }
}

/// Imports `file` into `targets` (see the module docs for the rules). Entry-level
/// problems are reported, not returned; an error means storage failed (e.g. the
/// database is unreachable) and the import stopped there; re-running it is safe.
pub async fn apply(
    file: &BootstrapFile,
    targets: &BootstrapTargets<'_>,
) -> Result<BootstrapReport> {
    let mut report = BootstrapReport {
        preferences: seed_entries(&SystemPreferences(targets.preferences), &file.preferences)
            .await?,
        ..BootstrapReport::default()
    };
    match targets.settings {
        Some(t) => report.system_settings = seed_entries(t, &file.system_settings).await?,
        None if !file.system_settings.is_empty() => report.not_applied.push(NotApplied {
            section: "system_settings",
            entries: file.system_settings.len(),
            reason: "this deployment has no storage for system settings".into(),
        }),
        None => {}
    }
    match targets.rules {
        Some(t) => report.access_control_rules = seed_rules(t, &file.access_control_rules).await?,
        None if !file.access_control_rules.is_empty() => report.not_applied.push(NotApplied {
            section: "access_control_rules",
            entries: file.access_control_rules.len(),
            reason: "this deployment has no storage for access-control rules".into(),
        }),
        None => {}
    }
    if let Some(reg) = &file.sandbox_image_registry {
        let entries = match reg {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 1,
        };
        report.not_applied.push(NotApplied {
            section: "sandbox_image_registry",
            entries,
            reason: "registry settings are not stored by this build; workers use locally available images".into(),
        });
    }
    Ok(report)
}

fn check_entry(e: &SeedEntry) -> std::result::Result<(), String> {
    if e.key.trim().is_empty() {
        return Err("the key is empty".into());
    }
    if !VALUE_TYPES.contains(&e.value_type.as_str()) {
        return Err(format!(
            "value_type '{}' is not one of {}",
            e.value_type,
            VALUE_TYPES.join(", ")
        ));
    }
    let actual = json_type_name(&e.value);
    if actual != e.value_type {
        return Err(format!(
            "value_type is '{}' but the value is {}",
            e.value_type,
            if actual == "null" {
                "null".to_string()
            } else {
                format!("a {actual}")
            }
        ));
    }
    Ok(())
}

async fn seed_entries(target: &dyn SeedTarget, entries: &[SeedEntry]) -> Result<SectionReport> {
    let mut r = SectionReport::default();
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        if let Err(reason) = check_entry(e) {
            tracing::warn!(key = %e.key, %reason, "bootstrap: entry rejected");
            r.rejected.push(Rejected {
                item: e.key.clone(),
                reason,
            });
            continue;
        }
        if !seen.insert(e.key.as_str()) {
            let reason = "the key appears more than once in the file; the first one counts";
            tracing::warn!(key = %e.key, reason, "bootstrap: entry rejected");
            r.rejected.push(Rejected {
                item: e.key.clone(),
                reason: reason.into(),
            });
            continue;
        }
        // Two attempts: a concurrent writer (another replica importing the same file)
        // makes the first one conflict; the second sees its result.
        let mut outcome = None;
        for _ in 0..2 {
            let stored = target.get_entry(&e.key).await?;
            let (expected, kind) = match &stored {
                None => (0, Outcome::Inserted),
                Some(s) if s.value == e.value => {
                    outcome = Some(Outcome::Unchanged);
                    break;
                }
                Some(s) if s.updated_by.as_deref() == Some(BOOTSTRAP_ACTOR) => {
                    (s.version, Outcome::Updated)
                }
                Some(_) => {
                    outcome = Some(Outcome::Kept);
                    break;
                }
            };
            match target
                .put_entry(&e.key, &e.value, &e.value_type, expected, BOOTSTRAP_ACTOR)
                .await
            {
                Ok(()) => {
                    outcome = Some(kind);
                    break;
                }
                Err(Error::Conflict(_)) => continue,
                Err(Error::InvalidInput(msg)) => {
                    outcome = Some(Outcome::Rejected(msg));
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        let key = e.key.clone();
        match outcome.unwrap_or(Outcome::Kept) {
            Outcome::Inserted => r.inserted.push(key),
            Outcome::Updated => r.updated.push(key),
            Outcome::Unchanged => r.unchanged.push(key),
            Outcome::Kept => r.kept.push(key),
            Outcome::Rejected(reason) => {
                tracing::warn!(key = %key, %reason, "bootstrap: entry refused by storage");
                r.rejected.push(Rejected { item: key, reason });
            }
        }
    }
    Ok(r)
}

enum Outcome {
    Inserted,
    Updated,
    Unchanged,
    Kept,
    Rejected(String),
}

async fn seed_rules(target: &dyn RuleTarget, rules: &[RuleSeed]) -> Result<SectionReport> {
    let mut r = SectionReport::default();
    let mut stored = target.list_rules().await?;
    for rule in rules {
        let label = rule.label();
        if let Err(reason) = rule.validate() {
            tracing::warn!(rule = %label, %reason, "bootstrap: rule rejected");
            r.rejected.push(Rejected {
                item: label,
                reason,
            });
            continue;
        }
        match stored.iter().find(|s| s.same_rule(rule)) {
            Some(s) if s == rule => r.unchanged.push(label),
            Some(_) => r.kept.push(label),
            None => match target.insert_rule(rule, BOOTSTRAP_ACTOR).await {
                Ok(()) => {
                    stored.push(rule.clone());
                    r.inserted.push(label);
                }
                Err(Error::InvalidInput(reason)) => {
                    tracing::warn!(rule = %label, %reason, "bootstrap: rule refused by storage");
                    r.rejected.push(Rejected {
                        item: label,
                        reason,
                    });
                }
                Err(e) => return Err(e),
            },
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cynode_core::store::MemoryStore;
    use serde_json::json;
    use std::sync::Mutex;

    /// Settings and rules kept in memory, as a deployment's storage would.
    #[derive(Default)]
    struct MemTargets {
        settings: Mutex<Vec<(String, StoredEntry)>>,
        rules: Mutex<Vec<RuleSeed>>,
    }

    #[async_trait]
    impl SeedTarget for MemTargets {
        async fn get_entry(&self, key: &str) -> Result<Option<StoredEntry>> {
            let g = self.settings.lock().expect("lock");
            Ok(g.iter().find(|(k, _)| k == key).map(|(_, e)| e.clone()))
        }
        async fn put_entry(
            &self,
            key: &str,
            value: &Value,
            _value_type: &str,
            expected_version: i32,
            updated_by: &str,
        ) -> Result<()> {
            let mut g = self.settings.lock().expect("lock");
            match g.iter_mut().find(|(k, _)| k == key) {
                Some((_, e)) if e.version == expected_version => {
                    e.value = value.clone();
                    e.version += 1;
                    e.updated_by = Some(updated_by.into());
                    Ok(())
                }
                None if expected_version == 0 => {
                    g.push((
                        key.into(),
                        StoredEntry {
                            value: value.clone(),
                            version: 1,
                            updated_by: Some(updated_by.into()),
                        },
                    ));
                    Ok(())
                }
                _ => Err(Error::conflict("version mismatch")),
            }
        }
    }

    #[async_trait]
    impl RuleTarget for MemTargets {
        async fn list_rules(&self) -> Result<Vec<RuleSeed>> {
            Ok(self.rules.lock().expect("lock").clone())
        }
        async fn insert_rule(&self, rule: &RuleSeed, _by: &str) -> Result<()> {
            self.rules.lock().expect("lock").push(rule.clone());
            Ok(())
        }
    }

    const EXAMPLE: &str = r#"
version: 1
preferences:
  - key: output.summary_style
    value: concise
    value_type: string
  - key: standards.markdown.line_length
    value: 100
    value_type: number
  - key: code.language.disallowed
    value: ["php", "perl"]
    value_type: array
system_settings:
  - key: agents.project_manager.model.selection.prefer_orchestrator_host
    value: true
    value_type: boolean
  - key: models.cache.max_bytes
    value: 107374182400
    value_type: number
access_control_rules:
  - subject_type: system
    action: api.call
    resource_type: api.provider_operation
    resource_pattern: openai/*
    effect: allow
    priority: 10
admin_user:
  handle: root-admin
  password_env: CYNODE_ADMIN_PASSWORD
"#;

    #[test]
    fn parses_the_documented_sections() {
        let f = BootstrapFile::from_yaml(EXAMPLE).expect("parse");
        assert_eq!(f.version, 1);
        assert_eq!(f.preferences.len(), 3);
        assert_eq!(f.preferences[2].value, json!(["php", "perl"]));
        assert_eq!(f.system_settings[1].value, json!(107_374_182_400_u64));
        assert_eq!(f.access_control_rules[0].priority, 10);
        assert_eq!(
            f.admin_user,
            Some(AdminUserSeed {
                handle: "root-admin".into(),
                password_env: "CYNODE_ADMIN_PASSWORD".into()
            })
        );
    }

    #[test]
    fn refuses_bad_files_with_a_reason() {
        let err = |t: &str| BootstrapFile::from_yaml(t).expect_err(t).to_string();
        assert!(err("").contains("empty"));
        assert!(err("# only a comment\n").contains("empty"));
        assert!(err("preferences: []\n").contains("`version` is missing"));
        assert!(err("version: 2\n").contains("version 2 is not supported"));
        assert!(err("- 1\n- 2\n").contains("mapping"));
        let unknown = err("version: 1\nprefrences: []\n");
        assert!(unknown.contains("prefrences"), "{unknown}");
        let syntax = err("version: 1\npreferences: [\n");
        assert!(syntax.contains("line"), "{syntax}");
        assert!(
            err("version: 1\nadmin_user: {handle: a, password_env: 'has space'}\n")
                .contains("not an environment variable name")
        );
        assert!(err("version: 1\nadmin_user: {handle: ' ', password_env: X}\n").contains("handle"));
    }

    #[tokio::test]
    async fn seeds_preferences_once_and_keeps_edits() {
        let store = MemoryStore::new();
        let f = BootstrapFile::from_yaml(EXAMPLE).expect("parse");
        let r = apply(&f, &BootstrapTargets::new(&store))
            .await
            .expect("apply");
        assert_eq!(
            r.preferences.inserted,
            [
                "output.summary_style",
                "standards.markdown.line_length",
                "code.language.disallowed"
            ]
        );
        let p = store
            .get_preference(Scope::System, "standards.markdown.line_length")
            .await
            .expect("stored");
        assert_eq!(
            (p.value, p.version, p.updated_by.as_deref()),
            (json!(100), 1, Some(BOOTSTRAP_ACTOR))
        );
        // Settings and rules have no target here: reported, not dropped.
        let sections: Vec<_> = r
            .not_applied
            .iter()
            .map(|n| (n.section, n.entries))
            .collect();
        assert_eq!(
            sections,
            [("system_settings", 2), ("access_control_rules", 1)]
        );

        // Same file again: nothing changes.
        let again = apply(&f, &BootstrapTargets::new(&store))
            .await
            .expect("apply");
        assert_eq!(again.preferences.unchanged.len(), 3);
        assert_eq!(again.preferences.written(), 0);

        // An admin edits one value; the file changes two values.
        store
            .put_preference(
                Scope::System,
                "output.summary_style",
                json!("detailed"),
                Some(1),
                Some("admin"),
            )
            .await
            .expect("edit");
        let changed = EXAMPLE
            .replace("value: concise", "value: terse")
            .replace("value: 100", "value: 120");
        let f2 = BootstrapFile::from_yaml(&changed).expect("parse");
        let r2 = apply(&f2, &BootstrapTargets::new(&store))
            .await
            .expect("apply");
        assert_eq!(r2.preferences.kept, ["output.summary_style"]);
        assert_eq!(r2.preferences.updated, ["standards.markdown.line_length"]);
        let edited = store
            .get_preference(Scope::System, "output.summary_style")
            .await
            .expect("stored");
        assert_eq!(edited.value, json!("detailed"));
        let updated = store
            .get_preference(Scope::System, "standards.markdown.line_length")
            .await
            .expect("stored");
        assert_eq!((updated.value, updated.version), (json!(120), 2));
    }

    #[tokio::test]
    async fn a_bad_entry_is_rejected_alone() {
        let store = MemoryStore::new();
        let f = BootstrapFile::from_yaml(
            r#"
version: 1
preferences:
  - {key: a.number, value: "100", value_type: number}
  - {key: a.kind, value: 1, value_type: integer}
  - {key: a.null, value: null, value_type: string}
  - {key: "", value: x, value_type: string}
  - {key: good.one, value: {nested: true}, value_type: object}
  - {key: good.one, value: {nested: false}, value_type: object}
  - {key: good.two, value: false, value_type: boolean}
"#,
        )
        .expect("parse");
        let r = apply(&f, &BootstrapTargets::new(&store))
            .await
            .expect("apply");
        assert_eq!(r.preferences.inserted, ["good.one", "good.two"]);
        let reasons: Vec<_> = r
            .preferences
            .rejected
            .iter()
            .map(|x| (x.item.as_str(), x.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "a.number",
                    "value_type is 'number' but the value is a string"
                ),
                (
                    "a.kind",
                    "value_type 'integer' is not one of string, number, boolean, object, array"
                ),
                ("a.null", "value_type is 'string' but the value is null"),
                ("", "the key is empty"),
                (
                    "good.one",
                    "the key appears more than once in the file; the first one counts"
                ),
            ]
        );
        let one = store
            .get_preference(Scope::System, "good.one")
            .await
            .expect("stored");
        assert_eq!(one.value, json!({"nested": true}));
        assert!(matches!(
            store.get_preference(Scope::System, "a.number").await,
            Err(Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn seeds_settings_and_rules_when_targets_exist() {
        let store = MemoryStore::new();
        let mem = MemTargets::default();
        let f = BootstrapFile::from_yaml(EXAMPLE).expect("parse");
        let targets = BootstrapTargets::new(&store)
            .with_settings(&mem)
            .with_rules(&mem);
        let r = apply(&f, &targets).await.expect("apply");
        assert!(r.not_applied.is_empty());
        assert_eq!(r.system_settings.inserted.len(), 2);
        assert_eq!(
            r.access_control_rules.inserted,
            ["allow system api.call api.provider_operation:openai/*"]
        );
        let again = apply(&f, &targets).await.expect("apply");
        assert_eq!(again.system_settings.unchanged.len(), 2);
        assert_eq!(again.access_control_rules.unchanged.len(), 1);
        assert_eq!(mem.rules.lock().expect("lock").len(), 1);

        // A rule whose priority an admin changed is kept; an invalid rule is rejected.
        mem.rules.lock().expect("lock")[0].priority = 50;
        let mut f2 = f.clone();
        f2.access_control_rules.push(RuleSeed {
            subject_type: "user".into(),
            subject_id: None,
            action: "web.fetch".into(),
            resource_type: "web.domain".into(),
            resource_pattern: "example.com".into(),
            effect: "allow".into(),
            priority: 0,
            conditions: None,
        });
        f2.access_control_rules.push(RuleSeed {
            subject_type: "system".into(),
            subject_id: None,
            action: "web.fetch".into(),
            resource_type: "web.domain".into(),
            resource_pattern: "example.com".into(),
            effect: "maybe".into(),
            priority: 0,
            conditions: None,
        });
        let r2 = apply(&f2, &targets).await.expect("apply");
        assert_eq!(r2.access_control_rules.kept.len(), 1);
        let reasons: Vec<_> = r2
            .access_control_rules
            .rejected
            .iter()
            .map(|x| x.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            [
                "a user rule needs a subject_id",
                "effect 'maybe' is not 'allow' or 'deny'"
            ]
        );
        assert_eq!(mem.rules.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn a_setting_written_by_someone_else_is_kept() {
        let store = MemoryStore::new();
        let mem = MemTargets::default();
        mem.put_entry("models.cache.max_bytes", &json!(1), "number", 0, "admin")
            .await
            .expect("seed");
        let f = BootstrapFile::from_yaml(EXAMPLE).expect("parse");
        let r = apply(&f, &BootstrapTargets::new(&store).with_settings(&mem))
            .await
            .expect("apply");
        assert_eq!(r.system_settings.kept, ["models.cache.max_bytes"]);
        let got = mem
            .get_entry("models.cache.max_bytes")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(got.value, json!(1));
    }

    /// Every section into a real store (memory and SQLite): settings with their audit
    /// trail, rules in the access-control table, nothing reported as not applied.
    #[tokio::test]
    async fn for_store_seeds_every_section_into_memory_and_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = cynode_core::store::SqliteStore::open(&dir.path().join("b.db"))
            .await
            .expect("sqlite");
        let stores: Vec<Box<dyn Store>> = vec![Box::new(MemoryStore::new()), Box::new(sqlite)];
        let f = BootstrapFile::from_yaml(EXAMPLE).expect("parse");
        for store in &stores {
            let owned = BootstrapTargets::for_store(store.as_ref());
            let r = apply(&f, &owned.targets()).await.expect("apply");
            assert!(r.not_applied.is_empty(), "{:?}", r.not_applied);
            assert_eq!(r.preferences.inserted.len(), 3);
            assert_eq!(r.system_settings.inserted.len(), 2);
            assert_eq!(r.access_control_rules.inserted.len(), 1);
            let s = store
                .get_setting("models.cache.max_bytes")
                .await
                .expect("setting");
            assert_eq!(
                (s.value, s.updated_by.as_deref()),
                (json!(107_374_182_400_u64), Some(BOOTSTRAP_ACTOR))
            );
            let history = store
                .setting_history("models.cache.max_bytes")
                .await
                .expect("history");
            assert_eq!(history.len(), 1);
            assert_eq!(history[0].changed_by, BOOTSTRAP_ACTOR);
            let rules = store
                .list_access_rules(&AccessRuleFilter::default())
                .await
                .expect("rules");
            assert_eq!(rules.len(), 1);
            assert_eq!((rules[0].effect, rules[0].priority), (Effect::Allow, 10));

            // Again: nothing written; an admin's edit of a setting survives a changed file.
            let again = apply(&f, &owned.targets()).await.expect("apply");
            assert_eq!(
                again.system_settings.unchanged.len() + again.access_control_rules.unchanged.len(),
                3
            );
            store
                .put_setting("models.cache.max_bytes", json!(5), Some(1), "admin", None)
                .await
                .expect("edit");
            let changed =
                BootstrapFile::from_yaml(&EXAMPLE.replace("107374182400", "1")).expect("parse");
            let r3 = apply(&changed, &owned.targets()).await.expect("apply");
            assert_eq!(r3.system_settings.kept, ["models.cache.max_bytes"]);
            assert_eq!(
                store
                    .get_setting("models.cache.max_bytes")
                    .await
                    .expect("get")
                    .value,
                json!(5)
            );
            assert_eq!(
                store
                    .list_access_rules(&AccessRuleFilter::default())
                    .await
                    .expect("rules")
                    .len(),
                1
            );
        }
    }

    #[tokio::test]
    async fn sandbox_registry_is_reported_not_dropped() {
        let f = BootstrapFile::from_yaml(
            "version: 1\nsandbox_image_registry:\n  registries: [{name: docker.io, rank: 1}]\n",
        )
        .expect("parse");
        let store = MemoryStore::new();
        let r = apply(&f, &BootstrapTargets::new(&store))
            .await
            .expect("apply");
        assert_eq!(r.not_applied[0].section, "sandbox_image_registry");
        assert_eq!(r.not_applied[0].entries, 1);
    }
}
