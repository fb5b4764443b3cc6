//! In-memory skills and system settings (reference semantics).

use async_trait::async_trait;
use serde_json::Value;

use super::{MemoryStore, now};
use crate::model::json_type_name;
use crate::store::preference_audit as pa;
use crate::store::settings::{check_version, validate_write};
use crate::store::skills::{
    system_skill_read_only, validate_content, validate_name, validate_scope, validate_update,
};
use crate::store::*;
use crate::{Error, Result};

#[async_trait]
impl SkillStore for MemoryStore {
    async fn ensure_system_skill(&self, content: &str) -> Result<Skill> {
        validate_content(content)?;
        let mut g = self.lock();
        let t = now();
        let skill = match g.skills.get(&SYSTEM_SKILL_ID) {
            Some(s)
                if s.content == content
                    && s.name == SYSTEM_SKILL_NAME
                    && s.scope == "global"
                    && s.is_system
                    && s.owner_id.is_none() =>
            {
                s.clone()
            }
            existing => Skill {
                id: SYSTEM_SKILL_ID,
                name: SYSTEM_SKILL_NAME.into(),
                content: content.into(),
                scope: "global".into(),
                owner_id: None,
                is_system: true,
                created_at: existing.map_or(t, |s| s.created_at),
                updated_at: t,
            },
        };
        g.skills.insert(SYSTEM_SKILL_ID, skill.clone());
        Ok(skill)
    }

    async fn create_skill(&self, new: NewSkill) -> Result<Skill> {
        validate_name(&new.name)?;
        validate_content(&new.content)?;
        validate_scope(&new.scope)?;
        let mut g = self.lock();
        g.user(new.owner_id)?;
        let t = now();
        let skill = Skill {
            id: uuid::Uuid::new_v4(),
            name: new.name,
            content: new.content,
            scope: new.scope,
            owner_id: Some(new.owner_id),
            is_system: false,
            created_at: t,
            updated_at: t,
        };
        g.skills.insert(skill.id, skill.clone());
        Ok(skill)
    }

    async fn get_skill(&self, id: uuid::Uuid) -> Result<Skill> {
        self.lock()
            .skills
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("skill", id))
    }

    async fn list_skills(&self, filter: &SkillFilter) -> Result<Vec<Skill>> {
        let g = self.lock();
        let mut v: Vec<Skill> = g
            .skills
            .values()
            .filter(|s| s.matches(filter))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    async fn update_skill(&self, id: uuid::Uuid, update: SkillUpdate) -> Result<Skill> {
        validate_update(&update)?;
        let mut g = self.lock();
        let s = g
            .skills
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("skill", id))?;
        if s.is_system {
            return Err(system_skill_read_only());
        }
        if let Some(n) = update.name {
            s.name = n;
        }
        if let Some(c) = update.content {
            s.content = c;
        }
        if let Some(sc) = update.scope {
            s.scope = sc;
        }
        s.updated_at = now();
        Ok(s.clone())
    }

    async fn delete_skill(&self, id: uuid::Uuid) -> Result<()> {
        let mut g = self.lock();
        match g.skills.get(&id) {
            None => Err(Error::not_found("skill", id)),
            Some(s) if s.is_system => Err(system_skill_read_only()),
            Some(_) => {
                g.skills.remove(&id);
                Ok(())
            }
        }
    }
}

#[async_trait]
impl SettingStore for MemoryStore {
    async fn get_setting(&self, key: &str) -> Result<SystemSetting> {
        self.lock()
            .settings
            .get(key)
            .cloned()
            .ok_or_else(|| Error::not_found("setting", key))
    }

    async fn list_settings(&self, prefix: &str) -> Result<Vec<SystemSetting>> {
        // BTreeMap<String, _> orders by bytes, which for UTF-8 is code-point order.
        Ok(self
            .lock()
            .settings
            .values()
            .filter(|s| s.key.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn put_setting(
        &self,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<SystemSetting> {
        validate_write(key, changed_by)?;
        let mut g = self.lock();
        let old = g.settings.get(key).cloned();
        check_version(key, old.as_ref().map(|s| s.version), expected_version)?;
        let t = now();
        let setting = SystemSetting {
            key: key.into(),
            value_type: json_type_name(&value).into(),
            value: value.clone(),
            version: old.as_ref().map_or(1, |s| s.version + 1),
            updated_at: t,
            updated_by: Some(changed_by.into()),
        };
        g.settings.insert(key.into(), setting.clone());
        g.setting_changes.push(SettingChange {
            id: uuid::Uuid::new_v4(),
            key: key.into(),
            old_value: old.map(|s| s.value),
            new_value: Some(value),
            changed_at: t,
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        });
        Ok(setting)
    }

    async fn delete_setting(
        &self,
        key: &str,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        validate_write(key, changed_by)?;
        let mut g = self.lock();
        let Some(old) = g.settings.get(key).cloned() else {
            return Err(Error::not_found("setting", key));
        };
        check_version(key, Some(old.version), expected_version)?;
        g.settings.remove(key);
        g.setting_changes.push(SettingChange {
            id: uuid::Uuid::new_v4(),
            key: key.into(),
            old_value: Some(old.value),
            new_value: None,
            changed_at: now(),
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        });
        Ok(())
    }

    async fn setting_history(&self, key: &str) -> Result<Vec<SettingChange>> {
        let g = self.lock();
        // The vector is in write order.
        Ok(g.setting_changes
            .iter()
            .filter(|c| c.key == key)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl PreferenceAuditStore for MemoryStore {
    async fn put_preference_audited(
        &self,
        scope: crate::model::Scope,
        key: &str,
        value: Value,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<crate::model::PreferenceEntry> {
        pa::validate_write(key, changed_by)?;
        let mut g = self.lock();
        let t = now();
        let i = g
            .prefs
            .iter()
            .position(|p| p.scope == scope && p.key == key);
        pa::check_version(key, i.map(|i| g.prefs[i].version), expected_version)?;
        let (entry, old) = match i {
            Some(i) => {
                let p = &mut g.prefs[i];
                let old = std::mem::replace(&mut p.value, value.clone());
                p.value_type = json_type_name(&value).into();
                p.version += 1;
                p.updated_at = t;
                p.updated_by = Some(changed_by.into());
                (p.clone(), Some(old))
            }
            None => {
                let p = crate::model::PreferenceEntry {
                    id: crate::PreferenceId::new(),
                    scope,
                    key: key.into(),
                    value_type: json_type_name(&value).into(),
                    value: value.clone(),
                    version: 1,
                    updated_at: t,
                    updated_by: Some(changed_by.into()),
                };
                g.prefs.push(p.clone());
                (p, None)
            }
        };
        g.pref_changes.push(PreferenceChange {
            id: uuid::Uuid::new_v4(),
            entry_id: entry.id,
            scope,
            key: key.into(),
            old_value: old,
            new_value: Some(value),
            changed_at: t,
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        });
        Ok(entry)
    }

    async fn delete_preference_audited(
        &self,
        scope: crate::model::Scope,
        key: &str,
        expected_version: Option<i32>,
        changed_by: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        pa::validate_write(key, changed_by)?;
        let mut g = self.lock();
        let i = g
            .prefs
            .iter()
            .position(|p| p.scope == scope && p.key == key)
            .ok_or_else(|| Error::not_found("preference", key))?;
        pa::check_version(key, Some(g.prefs[i].version), expected_version)?;
        let old = g.prefs.remove(i);
        g.pref_changes.push(PreferenceChange {
            id: uuid::Uuid::new_v4(),
            entry_id: old.id,
            scope,
            key: key.into(),
            old_value: Some(old.value),
            new_value: None,
            changed_at: now(),
            changed_by: changed_by.into(),
            reason: reason.map(str::to_string),
        });
        Ok(())
    }

    async fn preference_history(
        &self,
        scope: crate::model::Scope,
        key: &str,
    ) -> Result<Vec<PreferenceChange>> {
        Ok(self
            .lock()
            .pref_changes
            .iter()
            .filter(|c| c.scope == scope && c.key == key)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl AuditQueryStore for MemoryStore {
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<crate::model::AuditRecord>> {
        let g = self.lock();
        let mut v: Vec<crate::model::AuditRecord> =
            g.audit.iter().filter(|r| q.matches(r)).cloned().collect();
        v.sort_by_key(|r| std::cmp::Reverse((r.created_at(), record_id(r))));
        v.truncate(crate::store::validate::limit(q.limit) as usize);
        Ok(v)
    }
}
