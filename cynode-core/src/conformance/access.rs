//! Cases for [`AccessControlStore`](crate::store::AccessControlStore): access-control
//! rules and the access-control audit log.

use serde_json::json;

use super::support::*;
use crate::store::{
    AccessAudit, AccessAuditFilter, AccessRuleFilter, Decision, Effect, NewAccessRule, Store,
};
use crate::{JobId, TaskId};

fn rule(
    subject_type: &str,
    subject: Option<uuid::Uuid>,
    pattern: &str,
    effect: Effect,
) -> NewAccessRule {
    NewAccessRule {
        subject_type: subject_type.into(),
        subject_id: subject,
        action: "api.call".into(),
        resource_type: "api.provider_operation".into(),
        resource_pattern: pattern.into(),
        effect,
        priority: 0,
        conditions: None,
        updated_by: None,
    }
}

/// Rules round-trip every field; listing filters by subject, action and resource type
/// and orders by priority (highest first) then age; `rules_for_subject` returns exactly
/// one subject's rules (`None` = the `system` subject); delete removes; unknown ids are
/// `not_found`.
pub async fn access_rules_round_trip(s: &dyn Store) {
    let u = user(s, "u").await.id.as_uuid();
    let other = user(s, "other").await.id.as_uuid();
    let full = ok(
        s.create_access_rule(NewAccessRule {
            priority: 7,
            conditions: Some(json!({"max_chars": 1000, "methods": ["GET"]})),
            updated_by: Some("bootstrap".into()),
            ..rule("user", Some(u), "openai/*", Effect::Allow)
        })
        .await,
        "create_access_rule",
    );
    assert_eq!(
        (full.subject_type.as_str(), full.subject_id),
        ("user", Some(u))
    );
    assert_eq!(
        (
            full.action.as_str(),
            full.resource_type.as_str(),
            full.resource_pattern.as_str()
        ),
        ("api.call", "api.provider_operation", "openai/*")
    );
    assert_eq!((full.effect, full.priority), (Effect::Allow, 7));
    assert_eq!(
        full.conditions,
        Some(json!({"max_chars": 1000, "methods": ["GET"]}))
    );
    assert_eq!(full.updated_by.as_deref(), Some("bootstrap"));
    assert_eq!(full.created_at, full.updated_at);
    assert_eq!(
        ok(s.get_access_rule(full.id).await, "get_access_rule"),
        full
    );

    tick().await;
    let deny = ok(
        s.create_access_rule(rule("user", Some(u), "openai/chat", Effect::Deny))
            .await,
        "create_access_rule",
    );
    tick().await;
    let low = ok(
        s.create_access_rule(NewAccessRule {
            priority: -3,
            ..rule("user", Some(u), "github/*", Effect::Allow)
        })
        .await,
        "create_access_rule",
    );
    let sys = ok(
        s.create_access_rule(rule("system", None, "*/list_models", Effect::Allow))
            .await,
        "create_access_rule(system)",
    );
    let theirs = ok(
        s.create_access_rule(rule("user", Some(other), "openai/chat", Effect::Allow))
            .await,
        "create_access_rule(other user)",
    );
    let web = ok(
        s.create_access_rule(NewAccessRule {
            action: "web.fetch".into(),
            resource_type: "web.domain".into(),
            ..rule("user", Some(u), "example.com", Effect::Allow)
        })
        .await,
        "create_access_rule(web)",
    );
    let group = ok(
        s.create_access_rule(rule("group", Some(u), "openai/chat", Effect::Deny))
            .await,
        "create_access_rule(group with the user's uuid)",
    );

    let ids = |v: Vec<crate::store::AccessRule>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(ok(
            s.rules_for_subject("user", Some(u), "api.call", "api.provider_operation")
                .await,
            "rules_for_subject(user)",
        )),
        vec![full.id, deny.id, low.id],
        "priority first (higher wins), then oldest first; other subjects, subject types and actions excluded"
    );
    assert_eq!(
        ids(ok(
            s.rules_for_subject("system", None, "api.call", "api.provider_operation")
                .await,
            "rules_for_subject(system)",
        )),
        vec![sys.id]
    );
    assert_eq!(
        ids(ok(
            s.rules_for_subject("user", Some(u), "web.fetch", "web.domain")
                .await,
            "rules_for_subject(web)",
        )),
        vec![web.id]
    );
    assert!(
        ok(
            s.rules_for_subject("user", None, "api.call", "api.provider_operation")
                .await,
            "rules_for_subject(user without id)",
        )
        .is_empty()
    );

    let all = ok(
        s.list_access_rules(&AccessRuleFilter::default()).await,
        "list_access_rules(all)",
    );
    assert_eq!(all.len(), 7);
    assert_eq!(all[0].id, full.id, "highest priority first");
    assert_eq!(all[6].id, low.id, "lowest priority last");
    let of_u = ok(
        s.list_access_rules(&AccessRuleFilter {
            subject_id: Some(u),
            ..Default::default()
        })
        .await,
        "list_access_rules(subject_id)",
    );
    assert_eq!(of_u.len(), 5, "user and group rules with that uuid");
    let users_api = ok(
        s.list_access_rules(&AccessRuleFilter {
            subject_type: Some("user".into()),
            action: Some("api.call".into()),
            resource_type: Some("api.provider_operation".into()),
            subject_id: None,
        })
        .await,
        "list_access_rules(user, api.call)",
    );
    assert_eq!(ids(users_api), {
        let mut v = vec![full.id];
        // `deny` and `theirs` have priority 0: oldest first.
        v.push(deny.id);
        v.push(theirs.id);
        v.push(low.id);
        v
    });
    let _ = group;

    ok(s.delete_access_rule(deny.id).await, "delete_access_rule");
    fails(
        s.get_access_rule(deny.id).await,
        NOT_FOUND,
        "get after delete",
    );
    fails(
        s.delete_access_rule(deny.id).await,
        NOT_FOUND,
        "delete twice",
    );
    fails(
        s.get_access_rule(uuid::Uuid::new_v4()).await,
        NOT_FOUND,
        "get_access_rule(unknown)",
    );
    assert_eq!(
        ids(ok(
            s.rules_for_subject("user", Some(u), "api.call", "api.provider_operation")
                .await,
            "rules_for_subject after delete",
        )),
        vec![full.id, low.id]
    );
}

/// Malformed rules are refused as invalid input and nothing is stored: unknown subject
/// type, a `system` rule with a subject id, another rule without one, blank action,
/// resource type or pattern.
pub async fn access_rules_invalid(s: &dyn Store) {
    let u = uuid::Uuid::new_v4();
    let bad = [
        (
            "unknown subject type",
            rule("robot", Some(u), "a/b", Effect::Allow),
        ),
        (
            "system with an id",
            rule("system", Some(u), "a/b", Effect::Allow),
        ),
        (
            "user without an id",
            rule("user", None, "a/b", Effect::Allow),
        ),
        (
            "blank action",
            NewAccessRule {
                action: " ".into(),
                ..rule("user", Some(u), "a/b", Effect::Allow)
            },
        ),
        (
            "blank resource type",
            NewAccessRule {
                resource_type: String::new(),
                ..rule("user", Some(u), "a/b", Effect::Allow)
            },
        ),
        ("blank pattern", rule("user", Some(u), "", Effect::Deny)),
    ];
    for (what, r) in bad {
        fails(s.create_access_rule(r).await, INVALID, what);
    }
    assert!(
        ok(
            s.list_access_rules(&AccessRuleFilter::default()).await,
            "list_access_rules"
        )
        .is_empty(),
        "a refused rule must not be stored"
    );
}

/// Audit rows keep their id, time and every field (and `None`s); they are listed
/// newest first (same time: last written first) and filtered by task, subject, action
/// and time, with a page limit; a duplicate id is a conflict, a blank resource invalid.
pub async fn access_audit_round_trip_and_filters(s: &dyn Store) {
    let u = user(s, "u").await.id.as_uuid();
    let task = TaskId::new();
    let job = JobId::new();
    let full = AccessAudit {
        id: uuid::Uuid::new_v4(),
        subject_type: "user".into(),
        subject_id: Some(u),
        action: "api.call".into(),
        resource_type: "api.provider_operation".into(),
        resource: "openai/chat".into(),
        decision: Decision::Allow,
        reason: None,
        task_id: Some(task),
        job_id: Some(job),
        duration_ms: Some(12),
        created_at: at("2030-05-01T10:00:00.000001Z"),
    };
    let bare = AccessAudit {
        id: uuid::Uuid::new_v4(),
        subject_type: "user".into(),
        subject_id: None,
        action: "api.call".into(),
        resource_type: "api.provider_operation".into(),
        resource: "github/create_issue".into(),
        decision: Decision::Deny,
        reason: Some("invalid task_id".into()),
        task_id: None,
        job_id: None,
        duration_ms: None,
        created_at: at("2030-05-01T10:00:01Z"),
    };
    let same_time = AccessAudit {
        id: uuid::Uuid::new_v4(),
        action: "web.fetch".into(),
        resource_type: "web.domain".into(),
        resource: "example.com".into(),
        ..bare.clone()
    };
    let web_later = AccessAudit {
        id: uuid::Uuid::new_v4(),
        created_at: at("2030-05-01T10:00:02Z"),
        subject_id: Some(u),
        task_id: Some(task),
        ..same_time.clone()
    };
    for r in [&full, &bare, &same_time, &web_later] {
        ok(s.record_access(r.clone()).await, "record_access");
    }
    let all = ok(
        s.list_access_audit(&AccessAuditFilter::default()).await,
        "list_access_audit",
    );
    assert_eq!(
        all,
        vec![
            web_later.clone(),
            same_time.clone(),
            bare.clone(),
            full.clone()
        ],
        "newest first; equal times: last written first; every field round-trips"
    );
    let by_task = ok(
        s.list_access_audit(&AccessAuditFilter {
            task_id: Some(task),
            ..Default::default()
        })
        .await,
        "list_access_audit(task)",
    );
    assert_eq!(by_task, vec![web_later.clone(), full.clone()]);
    let by_subject_action = ok(
        s.list_access_audit(&AccessAuditFilter {
            subject_id: Some(u),
            action: Some("api.call".into()),
            ..Default::default()
        })
        .await,
        "list_access_audit(subject, action)",
    );
    assert_eq!(by_subject_action, vec![full.clone()]);
    let since = ok(
        s.list_access_audit(&AccessAuditFilter {
            since: Some(at("2030-05-01T10:00:01Z")),
            limit: 2,
            ..Default::default()
        })
        .await,
        "list_access_audit(since, limit)",
    );
    assert_eq!(since, vec![web_later, same_time]);

    fails(
        s.record_access(full.clone()).await,
        CONFLICT,
        "record_access(duplicate id)",
    );
    fails(
        s.record_access(AccessAudit {
            id: uuid::Uuid::new_v4(),
            resource: String::new(),
            ..full
        })
        .await,
        INVALID,
        "record_access(empty resource)",
    );
}
