//! Skills: Markdown instruction documents offered to inference, owned by users, plus
//! one built-in system skill (`skills` table).
//!
//! Storage enforces the structural rules (valid scope, existing owner, the system skill
//! is read-only); who may see or change which skill is decided above it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
use crate::{Error, Result, UserId};

/// Fixed id of the built-in system skill.
pub const SYSTEM_SKILL_ID: uuid::Uuid =
    uuid::Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);
/// Name of the built-in system skill.
pub const SYSTEM_SKILL_NAME: &str = "CyNodeAI interaction";
/// Name given to a skill created without one.
pub const DEFAULT_SKILL_NAME: &str = "Untitled skill";
/// The scopes a skill may have.
pub const SKILL_SCOPES: &[&str] = &["user", "group", "project", "global"];
/// Longest skill name, in characters.
pub const MAX_SKILL_NAME: usize = 255;
/// Largest skill content, in bytes.
pub const MAX_SKILL_CONTENT: usize = 1024 * 1024;

/// A stored skill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    /// Stable id.
    pub id: uuid::Uuid,
    /// Display name.
    pub name: String,
    /// Markdown content, as submitted (after scanning).
    pub content: String,
    /// `user`, `group`, `project` or `global`.
    pub scope: String,
    /// Owner; `None` only for the system skill.
    pub owner_id: Option<UserId>,
    /// The built-in skill: never updated or deleted through the store's user calls.
    pub is_system: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new user skill.
#[derive(Clone, Debug)]
pub struct NewSkill {
    /// Name (1–255 characters, not blank).
    pub name: String,
    /// Markdown content (non-empty, at most [`MAX_SKILL_CONTENT`] bytes).
    pub content: String,
    /// One of [`SKILL_SCOPES`].
    pub scope: String,
    /// Owner (must exist).
    pub owner_id: UserId,
}

/// A partial update; `None` fields are kept.
#[derive(Clone, Debug, Default)]
pub struct SkillUpdate {
    /// New name.
    pub name: Option<String>,
    /// New content.
    pub content: Option<String>,
    /// New scope.
    pub scope: Option<String>,
}

/// Which skills to list. Every set field must match.
#[derive(Clone, Debug, Default)]
pub struct SkillFilter {
    /// Only skills this user may see: owned by them, the system skill, or `global`.
    pub visible_to: Option<UserId>,
    /// Exact scope.
    pub scope: Option<String>,
    /// Exact owner.
    pub owner_id: Option<UserId>,
}

impl Skill {
    /// Whether `user` may see this skill: the owner, the system skill, or `global` scope.
    pub fn visible_to(&self, user: UserId) -> bool {
        self.is_system || self.owner_id == Some(user) || self.scope == "global"
    }

    /// Whether the filter selects this skill.
    pub fn matches(&self, f: &SkillFilter) -> bool {
        f.visible_to.is_none_or(|u| self.visible_to(u))
            && f.scope.as_deref().is_none_or(|s| self.scope == s)
            && f.owner_id.is_none_or(|o| self.owner_id == Some(o))
    }
}

/// Skills with a fixed system skill.
#[async_trait]
pub trait SkillStore: Send + Sync {
    /// Creates or refreshes the system skill ([`SYSTEM_SKILL_ID`], name
    /// [`SYSTEM_SKILL_NAME`], scope `global`, no owner) with `content`. Its
    /// `updated_at` moves only when something changed.
    async fn ensure_system_skill(&self, content: &str) -> Result<Skill>;
    /// Creates a user skill. A bad name, content or scope is invalid input; an unknown
    /// owner is not found.
    async fn create_skill(&self, new: NewSkill) -> Result<Skill>;
    /// A skill by id.
    async fn get_skill(&self, id: uuid::Uuid) -> Result<Skill>;
    /// Skills matching the filter, most recently updated first (ties by id).
    async fn list_skills(&self, filter: &SkillFilter) -> Result<Vec<Skill>>;
    /// Applies an update (bumping `updated_at`). The system skill is a conflict.
    async fn update_skill(&self, id: uuid::Uuid, update: SkillUpdate) -> Result<Skill>;
    /// Deletes a skill. The system skill is a conflict.
    async fn delete_skill(&self, id: uuid::Uuid) -> Result<()>;
}

/// Checks a skill name.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    super::validate::text("skill name", name, MAX_SKILL_NAME)
}

/// Checks skill content.
pub(crate) fn validate_content(content: &str) -> Result<()> {
    if content.trim().is_empty() {
        return Err(Error::invalid("skill content must not be blank"));
    }
    if content.len() > MAX_SKILL_CONTENT {
        return Err(Error::invalid(format!(
            "skill content is larger than {MAX_SKILL_CONTENT} bytes"
        )));
    }
    Ok(())
}

/// Checks a skill scope.
pub(crate) fn validate_scope(scope: &str) -> Result<()> {
    if SKILL_SCOPES.contains(&scope) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "skill scope must be one of user, group, project, global (got '{scope}')"
        )))
    }
}

/// Checks an update.
pub(crate) fn validate_update(u: &SkillUpdate) -> Result<()> {
    if let Some(n) = &u.name {
        validate_name(n)?;
    }
    if let Some(c) = &u.content {
        validate_content(c)?;
    }
    if let Some(s) = &u.scope {
        validate_scope(s)?;
    }
    Ok(())
}

/// The conflict returned for changes to the system skill.
pub(crate) fn system_skill_read_only() -> Error {
    Error::conflict("the system skill is read-only")
}
