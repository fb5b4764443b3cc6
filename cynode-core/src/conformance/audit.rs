//! Cases for [`AuditStore`](crate::store::AuditStore): the three audit tables.

use serde_json::json;

use super::support::*;
use crate::model::*;
use crate::store::Store;
use crate::{AuditId, JobId};

fn filter(kind: AuditKind) -> AuditFilter {
    AuditFilter {
        kind,
        user_id: None,
        since: None,
        limit: 0,
    }
}

/// Records of every kind keep their id, time and every field (`None`s, empty lists)
/// and are read back from their own table only.
pub async fn audit_round_trip_all_kinds(s: &dyn Store) {
    let u = user(s, "u").await;
    let p = project(s, "p").await;
    let t = task(s, Some(u.id), "t").await;
    let job = ok(
        s.create_job(NewJob {
            id: JobId::new(),
            task_id: t.id,
            payload: json!({}),
        })
        .await,
        "create_job",
    );

    let auth_full = AuthAudit {
        id: AuditId::new(),
        event_type: "login_success".into(),
        user_id: Some(u.id),
        subject_handle: Some("u".into()),
        success: true,
        ip_address: Some("203.0.113.7".into()),
        user_agent: Some("cynork/0.1 (linux)".into()),
        reason: None,
        created_at: at("2030-01-01T10:00:00.000001Z"),
    };
    let auth_bare = AuthAudit {
        id: AuditId::new(),
        event_type: "login_failure".into(),
        user_id: None,
        subject_handle: None,
        success: false,
        ip_address: Some("2001:db8::1".into()),
        user_agent: None,
        reason: Some("bad password".into()),
        created_at: at("2030-01-01T10:00:01Z"),
    };
    let chat_full = ChatAudit {
        id: AuditId::new(),
        user_id: Some(u.id),
        project_id: Some(p.id),
        outcome: "success".into(),
        error_code: None,
        redaction_applied: true,
        redaction_kinds: vec!["api_key".into(), "bearer_token".into()],
        duration_ms: Some(1234),
        request_id: Some("req-1".into()),
        created_at: at("2030-01-01T10:00:02.5Z"),
    };
    let chat_bare = ChatAudit {
        id: AuditId::new(),
        user_id: None,
        project_id: None,
        outcome: "error".into(),
        error_code: Some("upstream_timeout".into()),
        redaction_applied: false,
        redaction_kinds: vec![],
        duration_ms: None,
        request_id: None,
        created_at: at("2030-01-01T10:00:03Z"),
    };
    let mcp_full = McpToolCallAudit {
        id: AuditId::new(),
        task_id: Some(t.id),
        project_id: Some(p.id),
        job_id: Some(job.id),
        user_id: Some(u.id),
        tool_name: "artifact.put".into(),
        decision: "allow".into(),
        status: "success".into(),
        duration_ms: Some(0),
        error_type: None,
        created_at: at("2030-01-01T10:00:04Z"),
    };
    let mcp_bare = McpToolCallAudit {
        id: AuditId::new(),
        task_id: None,
        project_id: None,
        job_id: None,
        user_id: None,
        tool_name: "web.fetch".into(),
        decision: "deny".into(),
        status: "error".into(),
        duration_ms: None,
        error_type: Some("policy_denied".into()),
        created_at: at("2030-01-01T10:00:05Z"),
    };
    let records = [
        AuditRecord::Auth(auth_full),
        AuditRecord::Auth(auth_bare),
        AuditRecord::Chat(chat_full),
        AuditRecord::Chat(chat_bare),
        AuditRecord::McpToolCall(mcp_full),
        AuditRecord::McpToolCall(mcp_bare),
    ];
    for r in &records {
        ok(
            s.record_audit(r.clone()).await,
            &format!("record_audit({:?})", r.kind()),
        );
    }
    for kind in [AuditKind::Auth, AuditKind::Chat, AuditKind::McpToolCall] {
        let mut expected: Vec<AuditRecord> = records
            .iter()
            .filter(|r| r.kind() == kind)
            .cloned()
            .collect();
        expected.reverse(); // newest first
        assert_eq!(
            ok(
                s.list_audit(&filter(kind)).await,
                &format!("list_audit({kind:?})")
            ),
            expected,
            "{kind:?} records must round-trip every field and stay in their own table"
        );
    }
}

/// Reads are newest first (by the record's own time, not insertion order) and filter
/// by user, by `since` (inclusive) and by limit (0 means 50).
pub async fn audit_filters_and_order(s: &dyn Store) {
    let u = user(s, "u").await;
    let v = user(s, "v").await;
    let times = [
        "2030-05-01T00:00:03Z",
        "2030-05-01T00:00:01Z",
        "2030-05-01T00:00:05Z",
        "2030-05-01T00:00:02Z",
        "2030-05-01T00:00:04Z",
    ];
    let mut recorded = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let who = if i % 2 == 0 { Some(u.id) } else { Some(v.id) };
        let r = AuditRecord::Auth(AuthAudit {
            id: AuditId::new(),
            event_type: "refresh_success".into(),
            user_id: who,
            subject_handle: None,
            success: true,
            ip_address: None,
            user_agent: None,
            reason: None,
            created_at: at(t),
        });
        ok(s.record_audit(r.clone()).await, "record_audit");
        recorded.push(r);
    }
    // Records of another kind for the same user never appear in the auth table.
    ok(
        s.record_audit(AuditRecord::Chat(ChatAudit {
            id: AuditId::new(),
            user_id: Some(u.id),
            project_id: None,
            outcome: "canceled".into(),
            error_code: None,
            redaction_applied: false,
            redaction_kinds: vec![],
            duration_ms: None,
            request_id: None,
            created_at: at("2030-05-01T00:00:06Z"),
        }))
        .await,
        "record_audit(chat)",
    );
    let mut newest_first = recorded.clone();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.created_at()));

    let all = ok(
        s.list_audit(&filter(AuditKind::Auth)).await,
        "list_audit(auth)",
    );
    assert_eq!(all, newest_first, "newest first by created_at");
    let only_u = ok(
        s.list_audit(&AuditFilter {
            user_id: Some(u.id),
            ..filter(AuditKind::Auth)
        })
        .await,
        "list_audit(user u)",
    );
    let expected_u: Vec<_> = newest_first
        .iter()
        .filter(|r| r.user_id() == Some(u.id))
        .cloned()
        .collect();
    assert_eq!(only_u, expected_u, "user filter");
    let since = at("2030-05-01T00:00:03Z");
    let recent = ok(
        s.list_audit(&AuditFilter {
            since: Some(since),
            ..filter(AuditKind::Auth)
        })
        .await,
        "list_audit(since)",
    );
    let expected_recent: Vec<_> = newest_first
        .iter()
        .filter(|r| r.created_at() >= since)
        .cloned()
        .collect();
    assert_eq!(recent.len(), 3, "since is inclusive");
    assert_eq!(recent, expected_recent);
    let both = ok(
        s.list_audit(&AuditFilter {
            user_id: Some(v.id),
            since: Some(since),
            ..filter(AuditKind::Auth)
        })
        .await,
        "list_audit(user v, since)",
    );
    let expected_both: Vec<_> = newest_first
        .iter()
        .filter(|r| r.user_id() == Some(v.id) && r.created_at() >= since)
        .cloned()
        .collect();
    assert_eq!(both, expected_both);
    let two = ok(
        s.list_audit(&AuditFilter {
            limit: 2,
            ..filter(AuditKind::Auth)
        })
        .await,
        "list_audit(limit 2)",
    );
    assert_eq!(two, newest_first[..2].to_vec(), "limit keeps the newest");
    let future = ok(
        s.list_audit(&AuditFilter {
            since: Some(at("2031-01-01T00:00:00Z")),
            ..filter(AuditKind::Auth)
        })
        .await,
        "list_audit(since future)",
    );
    assert!(future.is_empty());
    assert!(
        ok(
            s.list_audit(&filter(AuditKind::McpToolCall)).await,
            "list_audit(mcp)"
        )
        .is_empty()
    );
}
