//! [`AccessControlStore`] in memory.

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{MemoryStore, now};
use crate::store::access::{validate_audit, validate_rule};
use crate::store::{
    AccessAudit, AccessAuditFilter, AccessControlStore, AccessRule, AccessRuleFilter,
    NewAccessRule, validate,
};
use crate::{Error, Result};

/// Rules and the audit log (audit rows in insertion order).
#[derive(Default)]
pub(super) struct State {
    rules: Vec<AccessRule>,
    audit: Vec<AccessAudit>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sort_rules(v: &mut [AccessRule]) {
    v.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.created_at.cmp(&b.created_at))
            .then(a.id.cmp(&b.id))
    });
}

#[async_trait]
impl AccessControlStore for MemoryStore {
    async fn create_access_rule(&self, new: NewAccessRule) -> Result<AccessRule> {
        validate_rule(&new)?;
        let t = now();
        let rule = AccessRule {
            id: uuid::Uuid::new_v4(),
            subject_type: new.subject_type,
            subject_id: new.subject_id,
            action: new.action,
            resource_type: new.resource_type,
            resource_pattern: new.resource_pattern,
            effect: new.effect,
            priority: new.priority,
            conditions: new.conditions,
            created_at: t,
            updated_at: t,
            updated_by: new.updated_by,
        };
        lock(&self.access).rules.push(rule.clone());
        Ok(rule)
    }

    async fn get_access_rule(&self, id: uuid::Uuid) -> Result<AccessRule> {
        lock(&self.access)
            .rules
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| Error::not_found("access rule", id))
    }

    async fn list_access_rules(&self, f: &AccessRuleFilter) -> Result<Vec<AccessRule>> {
        let mut v: Vec<AccessRule> = lock(&self.access)
            .rules
            .iter()
            .filter(|r| {
                f.subject_type.as_ref().is_none_or(|t| &r.subject_type == t)
                    && f.subject_id.is_none_or(|id| r.subject_id == Some(id))
                    && f.action.as_ref().is_none_or(|a| &r.action == a)
                    && f.resource_type
                        .as_ref()
                        .is_none_or(|t| &r.resource_type == t)
            })
            .cloned()
            .collect();
        sort_rules(&mut v);
        Ok(v)
    }

    async fn rules_for_subject(
        &self,
        subject_type: &str,
        subject_id: Option<uuid::Uuid>,
        action: &str,
        resource_type: &str,
    ) -> Result<Vec<AccessRule>> {
        let mut v: Vec<AccessRule> = lock(&self.access)
            .rules
            .iter()
            .filter(|r| {
                r.subject_type == subject_type
                    && r.subject_id == subject_id
                    && r.action == action
                    && r.resource_type == resource_type
            })
            .cloned()
            .collect();
        sort_rules(&mut v);
        Ok(v)
    }

    async fn delete_access_rule(&self, id: uuid::Uuid) -> Result<()> {
        let mut g = lock(&self.access);
        let before = g.rules.len();
        g.rules.retain(|r| r.id != id);
        if g.rules.len() == before {
            return Err(Error::not_found("access rule", id));
        }
        Ok(())
    }

    async fn record_access(&self, mut record: AccessAudit) -> Result<()> {
        validate_audit(&record)?;
        // Microsecond precision, as the SQL backends store it.
        let t = record.created_at;
        record.created_at =
            chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t);
        let mut g = lock(&self.access);
        if g.audit.iter().any(|a| a.id == record.id) {
            return Err(Error::conflict(format!(
                "audit record {} already exists",
                record.id
            )));
        }
        g.audit.push(record);
        Ok(())
    }

    async fn list_access_audit(&self, f: &AccessAuditFilter) -> Result<Vec<AccessAudit>> {
        let g = lock(&self.access);
        let mut v: Vec<(usize, AccessAudit)> = g
            .audit
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                f.task_id.is_none_or(|t| a.task_id == Some(t))
                    && f.subject_id.is_none_or(|s| a.subject_id == Some(s))
                    && f.action.as_ref().is_none_or(|x| &a.action == x)
                    && f.since.is_none_or(|s| a.created_at >= s)
            })
            .map(|(i, a)| (i, a.clone()))
            .collect();
        v.sort_by(|(i, a), (j, b)| b.created_at.cmp(&a.created_at).then(j.cmp(i)));
        Ok(v.into_iter()
            .take(validate::limit(f.limit) as usize)
            .map(|(_, a)| a)
            .collect())
    }
}
