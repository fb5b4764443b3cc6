//! Cases for [`ChatStore`](crate::store::ChatStore): threads and messages.

use serde_json::json;

use super::support::*;
use crate::model::*;
use crate::store::{ChatTurn, NewChatMessage, Store};
use crate::{AuditId, ProjectId, ThreadId, UserId};

/// Threads round-trip every field; a thread needs an existing user and project
/// (`invalid_input` otherwise); unknown threads are `not_found`; a user's threads are
/// listed most recently updated first, up to the limit, and never another user's.
pub async fn chat_threads_round_trip(s: &dyn Store) {
    let u = user(s, "u").await;
    let other = user(s, "other").await;
    let p = project(s, "p").await;
    let a = ok(
        s.create_thread(u.id, Some(p.id), Some("Plan the “launch”".into()))
            .await,
        "create_thread",
    );
    assert_eq!(
        (a.user_id, a.project_id, a.title.as_deref()),
        (u.id, Some(p.id), Some("Plan the “launch”"))
    );
    assert!(a.updated_at >= a.created_at);
    assert_eq!(ok(s.get_thread(a.id).await, "get_thread"), a);
    let b = ok(
        s.create_thread(u.id, None, None).await,
        "create_thread(no project, no title)",
    );
    assert_eq!((b.project_id, &b.title), (None, &None));
    assert_eq!(ok(s.get_thread(b.id).await, "get_thread"), b);
    let o = ok(
        s.create_thread(other.id, None, None).await,
        "create_thread(other user)",
    );

    fails(
        s.create_thread(UserId::new(), None, None).await,
        INVALID,
        "create_thread for a user that does not exist",
    );
    fails(
        s.create_thread(u.id, Some(ProjectId::new()), None).await,
        INVALID,
        "create_thread in a project that does not exist",
    );
    fails(
        s.get_thread(ThreadId::new()).await,
        NOT_FOUND,
        "get_thread(unknown)",
    );
    fails(
        s.list_messages(ThreadId::new()).await,
        NOT_FOUND,
        "list_messages(unknown thread)",
    );
    fails(
        s.append_message(ThreadId::new(), ChatRole::User, "hi".into(), None)
            .await,
        NOT_FOUND,
        "append_message(unknown thread)",
    );

    let mut mine = vec![a.clone(), b.clone()];
    mine.sort_by(|x, y| y.updated_at.cmp(&x.updated_at).then(y.id.cmp(&x.id)));
    assert_eq!(
        ok(s.list_threads(u.id, 0).await, "list_threads"),
        mine,
        "most recently updated first, ties by id descending"
    );
    assert_eq!(
        ok(s.list_threads(u.id, 1).await, "list_threads(limit 1)"),
        mine[..1].to_vec()
    );
    assert_eq!(
        ok(s.list_threads(other.id, 10).await, "list_threads(other)"),
        vec![o]
    );
    assert!(
        ok(
            s.list_threads(UserId::new(), 10).await,
            "list_threads(unknown user)"
        )
        .is_empty()
    );
    assert!(ok(s.list_messages(a.id).await, "list_messages(empty)").is_empty());
}

/// Messages round-trip every field and come back in the order they were appended,
/// even when appended faster than the clock ticks; appending bumps the thread's
/// `updated_at`, which moves it to the front of the user's list.
pub async fn chat_messages_order_and_bump(s: &dyn Store) {
    let u = user(s, "u").await;
    let older = ok(
        s.create_thread(u.id, None, Some("older".into())).await,
        "create_thread(older)",
    );
    tick().await;
    let newer = ok(
        s.create_thread(u.id, None, Some("newer".into())).await,
        "create_thread(newer)",
    );
    let ids = |v: Vec<ChatThread>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(ok(s.list_threads(u.id, 10).await, "list_threads")),
        vec![newer.id, older.id]
    );

    tick().await;
    let meta =
        json!({"model": "llama3.2", "usage": {"prompt_tokens": 12, "completion_tokens": 34}});
    let first = ok(
        s.append_message(older.id, ChatRole::System, "You are helpful.".into(), None)
            .await,
        "append_message(system)",
    );
    assert_eq!(
        (
            first.thread_id,
            first.role,
            first.content.as_str(),
            &first.metadata
        ),
        (older.id, ChatRole::System, "You are helpful.", &None)
    );
    let bumped = ok(s.get_thread(older.id).await, "get_thread after append");
    assert!(
        bumped.updated_at > older.updated_at && bumped.updated_at >= first.created_at,
        "append_message must bump the thread's updated_at: before {}, after {}, message at {}",
        older.updated_at,
        bumped.updated_at,
        first.created_at
    );
    assert_eq!(
        (bumped.created_at, &bumped.title),
        (older.created_at, &older.title),
        "only updated_at changes"
    );
    assert_eq!(
        ids(ok(s.list_threads(u.id, 10).await, "list_threads")),
        vec![older.id, newer.id],
        "the thread with the newest message must come first"
    );

    let mut sent = vec![first];
    let roles = [ChatRole::User, ChatRole::Assistant];
    for i in 0..20 {
        let content = format!("message {i}: \"quoted\" \n ünïcode 🚀");
        let metadata = if i % 3 == 0 { Some(meta.clone()) } else { None };
        sent.push(ok(
            s.append_message(older.id, roles[i % 2], content, metadata)
                .await,
            &format!("append_message({i})"),
        ));
    }
    let other = ok(
        s.append_message(newer.id, ChatRole::User, "elsewhere".into(), None)
            .await,
        "append_message(newer)",
    );
    let listed = ok(s.list_messages(older.id).await, "list_messages");
    assert_eq!(
        listed.iter().map(|m| m.id).collect::<Vec<_>>(),
        sent.iter().map(|m| m.id).collect::<Vec<_>>(),
        "messages must come back in append order (oldest first), also within one clock tick"
    );
    assert_eq!(listed, sent, "messages must round-trip every field");
    assert_eq!(
        ok(s.list_messages(newer.id).await, "list_messages(newer)"),
        vec![other]
    );
    let last = sent.last().map(|m| m.created_at);
    let thread = ok(s.get_thread(older.id).await, "get_thread");
    assert!(
        Some(thread.updated_at) >= last,
        "updated_at must be at least the newest message's time"
    );
}

/// `newest_thread` is the scope's most recently updated thread (a project, or no
/// project), never another user's or another scope's, and `None` for an empty scope;
/// `recent_messages` gives the newest `limit` messages oldest first.
pub async fn chat_newest_thread_and_recent_messages(s: &dyn Store) {
    let u = user(s, "u").await;
    let other = user(s, "other").await;
    let p = project(s, "p").await;
    let newest = |user: UserId, project: Option<ProjectId>| async move {
        ok(s.newest_thread(user, project).await, "newest_thread").map(|t| t.id)
    };
    assert_eq!(newest(u.id, None).await, None, "no thread yet");
    let a = ok(s.create_thread(u.id, None, None).await, "create_thread(a)");
    tick().await;
    let b = ok(s.create_thread(u.id, None, None).await, "create_thread(b)");
    tick().await;
    let in_p = ok(
        s.create_thread(u.id, Some(p.id), None).await,
        "create_thread(in p)",
    );
    tick().await;
    ok(
        s.create_thread(other.id, None, None).await,
        "create_thread(other)",
    );
    assert_eq!(newest(u.id, None).await, Some(b.id));
    assert_eq!(newest(u.id, Some(p.id)).await, Some(in_p.id));
    assert_eq!(newest(u.id, Some(ProjectId::new())).await, None);
    tick().await;
    ok(
        s.append_message(a.id, ChatRole::User, "back to a".into(), None)
            .await,
        "append_message(a)",
    );
    assert_eq!(
        newest(u.id, None).await,
        Some(a.id),
        "a message makes its thread the newest"
    );
    assert_eq!(
        newest(u.id, Some(p.id)).await,
        Some(in_p.id),
        "other scopes are unaffected"
    );

    fails(
        s.recent_messages(ThreadId::new(), 5).await,
        NOT_FOUND,
        "recent_messages(unknown thread)",
    );
    assert!(ok(s.recent_messages(b.id, 5).await, "recent_messages(empty)").is_empty());
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(ok(
            s.append_message(b.id, ChatRole::User, format!("m{i}"), None)
                .await,
            "append_message(b)",
        ));
    }
    let texts = |v: Vec<ChatMessage>| v.into_iter().map(|m| m.content).collect::<Vec<_>>();
    assert_eq!(
        texts(ok(s.recent_messages(b.id, 3).await, "recent_messages(3)")),
        ["m3", "m4", "m5"],
        "the newest three, oldest first, also within one clock tick"
    );
    assert_eq!(
        ok(s.recent_messages(b.id, 100).await, "recent_messages(100)"),
        sent
    );
    assert!(ok(s.recent_messages(b.id, 0).await, "recent_messages(0)").is_empty());
}

/// `append_turn` stores its messages after the thread's earlier ones, in order, bumps
/// the thread once and writes the audit record with them; for an unknown thread it
/// writes nothing at all, not even the audit record; a turn with only an audit record
/// leaves the thread as it was.
pub async fn chat_turns_are_atomic(s: &dyn Store) {
    let u = user(s, "u").await;
    let p = project(s, "p").await;
    let th = ok(
        s.create_thread(u.id, Some(p.id), None).await,
        "create_thread",
    );
    let first = ok(
        s.append_message(th.id, ChatRole::User, "earlier".into(), None)
            .await,
        "append_message",
    );
    let audit = |outcome: &str, at_: &str| ChatAudit {
        id: AuditId::new(),
        user_id: Some(u.id),
        project_id: Some(p.id),
        outcome: outcome.into(),
        error_code: None,
        redaction_applied: true,
        redaction_kinds: vec!["api_key".into()],
        duration_ms: Some(7),
        request_id: Some(format!("req-{outcome}")),
        created_at: at(at_),
    };
    let chat_audit = || async move {
        ok(
            s.list_audit(&AuditFilter {
                kind: AuditKind::Chat,
                user_id: Some(u.id),
                since: None,
                limit: 0,
            })
            .await,
            "list_audit(chat)",
        )
    };

    let lost = audit("lost", "2030-01-01T10:00:00Z");
    fails(
        s.append_turn(ChatTurn {
            thread_id: ThreadId::new(),
            messages: vec![NewChatMessage::new(ChatRole::User, "nowhere")],
            audit: Some(lost),
        })
        .await,
        NOT_FOUND,
        "append_turn(unknown thread)",
    );
    assert!(
        chat_audit().await.is_empty(),
        "a turn for an unknown thread must not write its audit record"
    );

    tick().await;
    let done = audit("success", "2030-01-01T10:00:01Z");
    let meta = json!({"model_id": "m", "provider": "mock"});
    let stored = ok(
        s.append_turn(ChatTurn {
            thread_id: th.id,
            messages: vec![
                NewChatMessage::new(ChatRole::User, "question 🚀"),
                NewChatMessage::new(ChatRole::Assistant, "answer").with_metadata(meta.clone()),
            ],
            audit: Some(done.clone()),
        })
        .await,
        "append_turn",
    );
    assert_eq!(
        stored
            .iter()
            .map(|m| (m.thread_id, m.role, m.content.as_str(), m.metadata.clone()))
            .collect::<Vec<_>>(),
        vec![
            (th.id, ChatRole::User, "question 🚀", None),
            (th.id, ChatRole::Assistant, "answer", Some(meta)),
        ]
    );
    let mut all = vec![first];
    all.extend(stored.iter().cloned());
    assert_eq!(
        ok(s.list_messages(th.id).await, "list_messages"),
        all,
        "the turn's messages come after the earlier ones, as returned"
    );
    let bumped = ok(s.get_thread(th.id).await, "get_thread");
    assert!(
        bumped.updated_at > th.updated_at && bumped.updated_at >= stored[1].created_at,
        "the turn bumps the thread's updated_at"
    );
    assert_eq!(chat_audit().await, vec![AuditRecord::Chat(done.clone())]);

    let failed = audit("error", "2030-01-01T10:00:02Z");
    assert!(
        ok(
            s.append_turn(ChatTurn {
                thread_id: th.id,
                messages: Vec::new(),
                audit: Some(failed.clone()),
            })
            .await,
            "append_turn(audit only)",
        )
        .is_empty()
    );
    assert_eq!(
        ok(s.get_thread(th.id).await, "get_thread").updated_at,
        bumped.updated_at,
        "a turn without messages leaves the thread as it was"
    );
    assert_eq!(
        chat_audit().await,
        vec![AuditRecord::Chat(failed), AuditRecord::Chat(done)]
    );
}
