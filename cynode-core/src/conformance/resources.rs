//! Cases for [`SkillStore`](crate::store::SkillStore) and
//! [`SettingStore`](crate::store::SettingStore).

use serde_json::json;

use super::support::*;
use crate::UserId;
use crate::store::*;

fn new_skill(owner: UserId, name: &str, scope: &str) -> NewSkill {
    NewSkill {
        name: name.into(),
        content: format!("# {name}\n\nDo the thing."),
        scope: scope.into(),
        owner_id: owner,
    }
}

fn ids(v: &[Skill]) -> Vec<uuid::Uuid> {
    v.iter().map(|s| s.id).collect()
}

/// Create, get, update and delete round-trip; updates bump `updated_at` and keep what
/// they do not name; listing is newest-updated first and filters by visibility (own,
/// system, global), scope and owner.
pub async fn skills_round_trip_and_listing(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let bob = user(s, "bob").await;
    let a1 = ok(
        s.create_skill(new_skill(alice.id, "a1", "user")).await,
        "create_skill(a1)",
    );
    assert_eq!(
        (
            a1.name.as_str(),
            a1.scope.as_str(),
            a1.owner_id,
            a1.is_system
        ),
        ("a1", "user", Some(alice.id), false)
    );
    assert_eq!(a1.created_at, a1.updated_at);
    assert_eq!(ok(s.get_skill(a1.id).await, "get_skill(a1)"), a1);
    tick().await;
    let b1 = ok(
        s.create_skill(new_skill(bob.id, "b1", "user")).await,
        "create_skill(b1)",
    );
    tick().await;
    let g = ok(
        s.create_skill(new_skill(bob.id, "shared", "global")).await,
        "create_skill(global)",
    );
    tick().await;
    let sys = ok(
        s.ensure_system_skill("# CyNodeAI\n\nHow to use the system.")
            .await,
        "ensure_system_skill",
    );

    let all = ok(
        s.list_skills(&SkillFilter::default()).await,
        "list_skills(all)",
    );
    assert_eq!(
        ids(&all),
        vec![sys.id, g.id, b1.id, a1.id],
        "newest updated first"
    );
    let for_alice = ok(
        s.list_skills(&SkillFilter {
            visible_to: Some(alice.id),
            ..Default::default()
        })
        .await,
        "list_skills(visible to alice)",
    );
    assert_eq!(
        ids(&for_alice),
        vec![sys.id, g.id, a1.id],
        "own, system and global skills are visible; other users' are not"
    );
    let globals = ok(
        s.list_skills(&SkillFilter {
            scope: Some("global".into()),
            ..Default::default()
        })
        .await,
        "list_skills(scope global)",
    );
    assert_eq!(ids(&globals), vec![sys.id, g.id]);
    let bobs = ok(
        s.list_skills(&SkillFilter {
            visible_to: Some(alice.id),
            owner_id: Some(bob.id),
            ..Default::default()
        })
        .await,
        "list_skills(owner bob, visible to alice)",
    );
    assert_eq!(ids(&bobs), vec![g.id]);

    tick().await;
    let up = ok(
        s.update_skill(
            a1.id,
            SkillUpdate {
                content: Some("new content".into()),
                ..Default::default()
            },
        )
        .await,
        "update_skill(a1 content)",
    );
    assert_eq!(
        (up.name.as_str(), up.content.as_str(), up.scope.as_str()),
        ("a1", "new content", "user"),
        "an update keeps what it does not name"
    );
    assert!(up.updated_at > a1.updated_at, "update bumps updated_at");
    assert_eq!(up.created_at, a1.created_at);
    let up2 = ok(
        s.update_skill(
            a1.id,
            SkillUpdate {
                name: Some("renamed".into()),
                scope: Some("project".into()),
                content: None,
            },
        )
        .await,
        "update_skill(a1 name, scope)",
    );
    assert_eq!(
        (up2.name.as_str(), up2.content.as_str(), up2.scope.as_str()),
        ("renamed", "new content", "project")
    );
    assert_eq!(ok(s.get_skill(a1.id).await, "get_skill after update"), up2);
    let all = ok(s.list_skills(&SkillFilter::default()).await, "list_skills");
    assert_eq!(
        all.first().map(|x| x.id),
        Some(a1.id),
        "updated moves first"
    );

    ok(s.delete_skill(a1.id).await, "delete_skill(a1)");
    fails(s.get_skill(a1.id).await, NOT_FOUND, "get_skill(deleted)");
    fails(
        s.delete_skill(a1.id).await,
        NOT_FOUND,
        "delete_skill(again)",
    );
    fails(
        s.update_skill(a1.id, SkillUpdate::default()).await,
        NOT_FOUND,
        "update_skill(deleted)",
    );
}

/// The system skill has its fixed id, name and scope, no owner; refreshing it with the
/// same content changes nothing, with new content updates it in place; it can be
/// neither updated nor deleted through the user calls.
pub async fn skills_system_skill(s: &dyn Store) {
    let v1 = ok(
        s.ensure_system_skill("v1 content").await,
        "ensure_system_skill",
    );
    assert_eq!(
        (
            v1.id,
            v1.name.as_str(),
            v1.scope.as_str(),
            v1.owner_id,
            v1.is_system
        ),
        (SYSTEM_SKILL_ID, SYSTEM_SKILL_NAME, "global", None, true)
    );
    tick().await;
    let same = ok(
        s.ensure_system_skill("v1 content").await,
        "ensure_system_skill(same)",
    );
    assert_eq!(same, v1, "the same content changes nothing");
    let v2 = ok(
        s.ensure_system_skill("v2 content").await,
        "ensure_system_skill(new)",
    );
    assert_eq!(v2.content, "v2 content");
    assert_eq!(v2.created_at, v1.created_at);
    assert!(v2.updated_at > v1.updated_at);
    fails(
        s.update_skill(
            SYSTEM_SKILL_ID,
            SkillUpdate {
                name: Some("mine".into()),
                ..Default::default()
            },
        )
        .await,
        CONFLICT,
        "update_skill(system)",
    );
    fails(
        s.delete_skill(SYSTEM_SKILL_ID).await,
        CONFLICT,
        "delete_skill(system)",
    );
    assert_eq!(
        ok(s.get_skill(SYSTEM_SKILL_ID).await, "get_skill(system)"),
        v2
    );
    let all = ok(s.list_skills(&SkillFilter::default()).await, "list_skills");
    assert_eq!(all.len(), 1, "one system skill however often it is ensured");
}

/// Bad names, contents and scopes are invalid input and store nothing; an unknown
/// owner is not found.
pub async fn skills_invalid_input(s: &dyn Store) {
    let u = user(s, "u").await;
    for (what, new) in [
        (
            "blank name",
            NewSkill {
                name: "  ".into(),
                ..new_skill(u.id, "x", "user")
            },
        ),
        (
            "long name",
            NewSkill {
                name: "n".repeat(MAX_SKILL_NAME + 1),
                ..new_skill(u.id, "x", "user")
            },
        ),
        (
            "blank content",
            NewSkill {
                content: " \n".into(),
                ..new_skill(u.id, "x", "user")
            },
        ),
        (
            "huge content",
            NewSkill {
                content: "c".repeat(MAX_SKILL_CONTENT + 1),
                ..new_skill(u.id, "x", "user")
            },
        ),
        ("bad scope", new_skill(u.id, "x", "team")),
    ] {
        fails(
            s.create_skill(new).await,
            INVALID,
            &format!("create_skill({what})"),
        );
    }
    fails(
        s.create_skill(new_skill(UserId::new(), "x", "user")).await,
        NOT_FOUND,
        "create_skill(unknown owner)",
    );
    assert!(
        ok(s.list_skills(&SkillFilter::default()).await, "list_skills").is_empty(),
        "refused creates stored something"
    );
    let k = ok(
        s.create_skill(new_skill(u.id, "k", "user")).await,
        "create_skill",
    );
    fails(
        s.update_skill(
            k.id,
            SkillUpdate {
                scope: Some("everyone".into()),
                ..Default::default()
            },
        )
        .await,
        INVALID,
        "update_skill(bad scope)",
    );
    fails(
        s.update_skill(
            k.id,
            SkillUpdate {
                content: Some(String::new()),
                ..Default::default()
            },
        )
        .await,
        INVALID,
        "update_skill(empty content)",
    );
    assert_eq!(
        ok(s.get_skill(k.id).await, "get_skill"),
        k,
        "refused updates changed it"
    );
    fails(
        s.ensure_system_skill("").await,
        INVALID,
        "ensure_system_skill(empty)",
    );
}

/// Versions start at 1 and grow per write; `Some(0)` creates only; stale versions are
/// conflicts that change nothing and record nothing; every write and delete is in the
/// history with old and new values, who and why; deleting keeps the history.
pub async fn settings_versions_and_history(s: &dyn Store) {
    let key = "agents.project_manager.model.selection.mode";
    fails(s.get_setting(key).await, NOT_FOUND, "get_setting(missing)");
    fails(
        s.put_setting(key, json!("auto"), Some(2), "admin", None)
            .await,
        CONFLICT,
        "put_setting(missing, expected 2)",
    );
    let v1 = ok(
        s.put_setting(key, json!("auto"), Some(0), "admin", Some("initial"))
            .await,
        "put_setting(create)",
    );
    assert_eq!(
        (
            v1.key.as_str(),
            &v1.value,
            v1.value_type.as_str(),
            v1.version
        ),
        (key, &json!("auto"), "string", 1)
    );
    assert_eq!(v1.updated_by.as_deref(), Some("admin"));
    assert_eq!(ok(s.get_setting(key).await, "get_setting"), v1);
    fails(
        s.put_setting(key, json!("x"), Some(0), "admin", None).await,
        CONFLICT,
        "put_setting(create when present)",
    );
    let v2 = ok(
        s.put_setting(key, json!({"a": [1, 2]}), Some(1), "ops", None)
            .await,
        "put_setting(update v1)",
    );
    assert_eq!((v2.version, v2.value_type.as_str()), (2, "object"));
    let v3 = ok(
        s.put_setting(key, json!(null), None, "ops", Some("clear"))
            .await,
        "put_setting(unconditional null)",
    );
    assert_eq!(
        (v3.version, &v3.value, v3.value_type.as_str()),
        (3, &json!(null), "null")
    );
    fails(
        s.delete_setting(key, Some(2), "ops", None).await,
        CONFLICT,
        "delete_setting(stale)",
    );
    assert_eq!(ok(s.get_setting(key).await, "get_setting"), v3);
    ok(
        s.delete_setting(key, Some(3), "root", Some("gone")).await,
        "delete_setting",
    );
    fails(s.get_setting(key).await, NOT_FOUND, "get_setting(deleted)");
    fails(
        s.delete_setting(key, None, "root", None).await,
        NOT_FOUND,
        "delete_setting(again)",
    );

    let h = ok(s.setting_history(key).await, "setting_history");
    let summary: Vec<_> = h
        .iter()
        .map(|c| {
            (
                c.old_value.clone(),
                c.new_value.clone(),
                c.changed_by.as_str(),
                c.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (None, Some(json!("auto")), "admin", Some("initial")),
            (Some(json!("auto")), Some(json!({"a": [1, 2]})), "ops", None),
            (
                Some(json!({"a": [1, 2]})),
                Some(json!(null)),
                "ops",
                Some("clear")
            ),
            (Some(json!(null)), None, "root", Some("gone")),
        ],
        "one history row per successful write, in order"
    );
    assert!(h.iter().all(|c| c.key == key));
    assert!(ok(s.setting_history("other").await, "history(other)").is_empty());

    fails(
        s.put_setting(" ", json!(1), None, "admin", None).await,
        INVALID,
        "put_setting(blank key)",
    );
    fails(
        s.put_setting(
            &"k".repeat(MAX_SETTING_KEY + 1),
            json!(1),
            None,
            "admin",
            None,
        )
        .await,
        INVALID,
        "put_setting(long key)",
    );
    fails(
        s.put_setting("k", json!(1), None, "", None).await,
        INVALID,
        "put_setting(no actor)",
    );
}

/// Listing is by key prefix in code-point order.
pub async fn settings_listing(s: &dyn Store) {
    for k in [
        "models.cache.max_bytes",
        "agents.b",
        "agents.a",
        "agents.Z",
        "mcp.tools.disabled",
    ] {
        ok(
            s.put_setting(k, json!(k), None, "admin", None).await,
            "put_setting",
        );
    }
    let keys = |v: Vec<SystemSetting>| v.into_iter().map(|x| x.key).collect::<Vec<_>>();
    assert_eq!(
        keys(ok(
            s.list_settings("agents.").await,
            "list_settings(agents.)"
        )),
        vec!["agents.Z", "agents.a", "agents.b"]
    );
    assert_eq!(
        keys(ok(s.list_settings("").await, "list_settings()")),
        vec![
            "agents.Z",
            "agents.a",
            "agents.b",
            "mcp.tools.disabled",
            "models.cache.max_bytes"
        ]
    );
    assert!(ok(s.list_settings("zzz").await, "list_settings(zzz)").is_empty());
    // Prefix matching is literal: `%` and `_` are not wildcards.
    ok(
        s.put_setting("a%b", json!(1), None, "admin", None).await,
        "put_setting(a%b)",
    );
    ok(
        s.put_setting("axb", json!(1), None, "admin", None).await,
        "put_setting(axb)",
    );
    assert_eq!(
        keys(ok(s.list_settings("a%").await, "list_settings(a%)")),
        vec!["a%b"]
    );
}

/// Audited preference writes keep the version rules of the plain ones, and every
/// successful create, update and delete adds one history row (old and new value, who,
/// why) in the same transaction; refused writes add none; the history of a key
/// survives deleting its entry; scopes do not mix.
pub async fn preferences_audited_writes(s: &dyn Store) {
    use crate::model::Scope;
    let u = user(s, "u").await;
    let scope = Scope::User(u.id);
    let key = "output.summary_style";
    fails(
        s.put_preference_audited(scope, key, json!("x"), Some(2), "u", None)
            .await,
        CONFLICT,
        "put_preference_audited(missing, expected 2)",
    );
    let v1 = ok(
        s.put_preference_audited(scope, key, json!("concise"), Some(0), "u", Some("start"))
            .await,
        "put_preference_audited(create)",
    );
    assert_eq!((v1.version, v1.updated_by.as_deref()), (1, Some("u")));
    assert_eq!(ok(s.get_preference(scope, key).await, "get_preference"), v1);
    fails(
        s.put_preference_audited(scope, key, json!("y"), Some(0), "u", None)
            .await,
        CONFLICT,
        "put_preference_audited(create when present)",
    );
    let v2 = ok(
        s.put_preference_audited(scope, key, json!(["a"]), None, "admin", None)
            .await,
        "put_preference_audited(update)",
    );
    assert_eq!(
        (v2.id, v2.version, v2.value_type.as_str()),
        (v1.id, 2, "array")
    );
    fails(
        s.delete_preference_audited(scope, key, Some(1), "u", None)
            .await,
        CONFLICT,
        "delete_preference_audited(stale)",
    );
    ok(
        s.delete_preference_audited(scope, key, Some(2), "u", Some("done"))
            .await,
        "delete_preference_audited",
    );
    fails(
        s.get_preference(scope, key).await,
        NOT_FOUND,
        "get after delete",
    );
    fails(
        s.delete_preference_audited(scope, key, None, "u", None)
            .await,
        NOT_FOUND,
        "delete_preference_audited(missing)",
    );
    let v3 = ok(
        s.put_preference_audited(scope, key, json!(null), None, "u", None)
            .await,
        "put_preference_audited(recreate with null)",
    );
    assert_eq!(v3.version, 1);
    ok(
        s.put_preference_audited(Scope::System, key, json!("long"), None, "admin", None)
            .await,
        "put_preference_audited(system)",
    );

    let h = ok(s.preference_history(scope, key).await, "preference_history");
    let summary: Vec<_> = h
        .iter()
        .map(|c| {
            (
                c.old_value.clone(),
                c.new_value.clone(),
                c.changed_by.as_str(),
                c.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (None, Some(json!("concise")), "u", Some("start")),
            (Some(json!("concise")), Some(json!(["a"])), "admin", None),
            (Some(json!(["a"])), None, "u", Some("done")),
            (None, Some(json!(null)), "u", None),
        ]
    );
    assert_eq!(
        h.iter().map(|c| c.entry_id).collect::<Vec<_>>(),
        vec![v1.id, v1.id, v1.id, v3.id]
    );
    assert!(h.iter().all(|c| c.scope == scope && c.key == key));
    let sys = ok(
        s.preference_history(Scope::System, key).await,
        "history(system)",
    );
    assert_eq!(sys.len(), 1);
    assert_eq!(sys[0].scope, Scope::System);
    fails(
        s.put_preference_audited(scope, "k", json!(1), None, " ", None)
            .await,
        INVALID,
        "put_preference_audited(no actor)",
    );
    fails(
        s.put_preference_audited(scope, "", json!(1), None, "u", None)
            .await,
        INVALID,
        "put_preference_audited(blank key)",
    );
}

/// Keyset pages of an audit table: newest first, ties by id descending, pages that
/// join up exactly (no record twice, none skipped, also among equal times), and the
/// user, since and until filters; other tables are not mixed in.
pub async fn audit_query_keyset_paging(s: &dyn Store) {
    use crate::AuditId;
    use crate::model::*;
    let alice = UserId::new();
    let bob = UserId::new();
    let times = [
        "2026-02-01T00:00:00Z",
        "2026-02-01T00:00:01Z",
        "2026-02-01T00:00:01Z",
        "2026-02-01T00:00:01Z",
        "2026-02-01T00:00:02Z",
        "2026-02-01T00:00:03Z",
    ];
    let mut expected = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let user = if i % 2 == 0 { alice } else { bob };
        let r = AuditRecord::Auth(AuthAudit {
            id: AuditId::new(),
            event_type: format!("e{i}"),
            user_id: Some(user),
            subject_handle: None,
            success: true,
            ip_address: None,
            user_agent: None,
            reason: None,
            created_at: at(t),
        });
        ok(s.record_audit(r.clone()).await, "record_audit");
        expected.push(r);
    }
    ok(
        s.record_audit(AuditRecord::Chat(ChatAudit {
            id: AuditId::new(),
            user_id: Some(alice),
            project_id: None,
            outcome: "success".into(),
            error_code: None,
            redaction_applied: false,
            redaction_kinds: vec![],
            duration_ms: None,
            request_id: None,
            created_at: at("2026-02-01T00:00:05Z"),
        }))
        .await,
        "record_audit(chat)",
    );
    expected.sort_by_key(|r| std::cmp::Reverse((r.created_at(), record_id(r))));
    let base = AuditQuery {
        kind: AuditKind::Auth,
        user_id: None,
        since: None,
        until: None,
        after: None,
        limit: 2,
    };
    let mut got = Vec::new();
    let mut q = base.clone();
    for _ in 0..10 {
        let page = ok(s.query_audit(&q).await, "query_audit(page)");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        q.after = Some((last.created_at(), record_id(last)));
        got.extend(page);
    }
    assert_eq!(
        got, expected,
        "pages join up in (created_at, id) descending order"
    );

    let only_alice = ok(
        s.query_audit(&AuditQuery {
            user_id: Some(alice),
            limit: 100,
            ..base.clone()
        })
        .await,
        "query_audit(alice)",
    );
    assert_eq!(only_alice.len(), 3);
    assert!(only_alice.iter().all(|r| r.user_id() == Some(alice)));
    let window = ok(
        s.query_audit(&AuditQuery {
            since: Some(at("2026-02-01T00:00:01Z")),
            until: Some(at("2026-02-01T00:00:02Z")),
            limit: 100,
            ..base.clone()
        })
        .await,
        "query_audit(window)",
    );
    assert_eq!(window, expected[1..5].to_vec());
    let chat = ok(
        s.query_audit(&AuditQuery {
            kind: AuditKind::Chat,
            limit: 100,
            ..base
        })
        .await,
        "query_audit(chat)",
    );
    assert_eq!(chat.len(), 1);
}
