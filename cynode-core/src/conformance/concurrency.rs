//! Cases for behaviour under concurrent calls: unique keys, upserts and
//! compare-and-set writes must hold when several calls race (as they do behind a
//! server), with the losers getting `conflict` and never a half-applied write.

use serde_json::json;

use super::support::*;
use crate::model::*;
use crate::store::Store;
use crate::{Error, JobId, Result};

/// Splits racing results into successes and conflicts; any other error fails the case.
#[track_caller]
fn tally<T: std::fmt::Debug>(what: &str, results: Vec<Result<T>>) -> (Vec<T>, usize) {
    let mut oks = Vec::new();
    let mut conflicts = 0;
    for r in results {
        match r {
            Ok(v) => oks.push(v),
            Err(Error::Conflict(_)) => conflicts += 1,
            Err(e) => panic!(
                "{what}: a racing call failed with a {} error instead of conflict: {e}",
                e.kind()
            ),
        }
    }
    (oks, conflicts)
}

/// Racing creates of the same handle, slug and credential: exactly one wins, the rest
/// are conflicts; racing upserts of one node slug and racing `ensure_system_user`
/// all return the same row.
pub async fn concurrent_unique_keys_and_upserts(s: &dyn Store) {
    let new_user = || {
        s.create_user(NewUser {
            handle: "race".into(),
            ..Default::default()
        })
    };
    let (a, b, c, d, e) = tokio::join!(new_user(), new_user(), new_user(), new_user(), new_user());
    let (won, lost) = tally("create_user race", vec![a, b, c, d, e]);
    assert_eq!(
        (won.len(), lost),
        (1, 4),
        "exactly one of five racing create_user calls must win"
    );
    assert_eq!(ok(s.list_users().await, "list_users").len(), 1);
    assert_eq!(
        ok(s.list_projects().await, "list_projects").len(),
        1,
        "losers left default projects behind"
    );

    let new_project = || {
        s.create_project(NewProject {
            slug: "race".into(),
            display_name: "Race".into(),
            description: None,
        })
    };
    let (a, b, c, d) = tokio::join!(new_project(), new_project(), new_project(), new_project());
    let (won, lost) = tally("create_project race", vec![a, b, c, d]);
    assert_eq!(
        (won.len(), lost),
        (1, 3),
        "exactly one of four racing create_project calls must win"
    );

    let owner = uuid::Uuid::new_v4();
    let new_cred = || {
        s.create_credential(NewApiCredential {
            owner_type: "user".into(),
            owner_id: owner,
            provider: "openai".into(),
            credential_type: "api_key".into(),
            credential_name: "race".into(),
            ciphertext: vec![9],
            kid: None,
            expires_at: None,
        })
    };
    let (a, b, c) = tokio::join!(new_cred(), new_cred(), new_cred());
    let (won, lost) = tally("create_credential race", vec![a, b, c]);
    assert_eq!(
        (won.len(), lost),
        (1, 2),
        "exactly one of three racing create_credential calls must win"
    );

    let (a, b, c, d) = tokio::join!(
        s.upsert_node("n"),
        s.upsert_node("n"),
        s.upsert_node("n"),
        s.upsert_node("n")
    );
    let nodes: Vec<Node> = [a, b, c, d]
        .into_iter()
        .map(|r| ok(r, "upsert_node race"))
        .collect();
    assert!(
        nodes.iter().all(|n| n.id == nodes[0].id),
        "racing upserts of one slug returned different nodes"
    );
    assert_eq!(ok(s.list_nodes().await, "list_nodes").len(), 1);

    let (a, b, c) = tokio::join!(
        s.ensure_system_user(),
        s.ensure_system_user(),
        s.ensure_system_user()
    );
    let sys: Vec<User> = [a, b, c]
        .into_iter()
        .map(|r| ok(r, "ensure_system_user race"))
        .collect();
    assert!(
        sys.iter().all(|u| u.id == sys[0].id),
        "racing ensure_system_user calls created several users"
    );
    assert_eq!(ok(s.list_users().await, "list_users").len(), 2);
}

/// Racing compare-and-set writes: one rotation of a refresh session wins (the others
/// are token reuse: conflict, nothing stored); one preference write per expected
/// version wins; one of several different terminal job statuses wins.
pub async fn concurrent_compare_and_set(s: &dyn Store) {
    let u = user(s, "u").await;
    let old = ok(
        s.create_session(NewRefreshSession {
            user_id: u.id,
            token_hash: b"old".to_vec(),
            token_kid: None,
            expires_at: at("2100-01-01T00:00:00Z"),
        })
        .await,
        "create_session",
    );
    let t = at("2050-01-01T00:00:00Z");
    let rotate = |hash: &'static [u8]| {
        s.rotate_session(
            old.id,
            NewRefreshSession {
                user_id: u.id,
                token_hash: hash.to_vec(),
                token_kid: None,
                expires_at: at("2100-01-01T00:00:00Z"),
            },
            t,
        )
    };
    let (a, b, c, d) = tokio::join!(rotate(b"n1"), rotate(b"n2"), rotate(b"n3"), rotate(b"n4"));
    let (won, lost) = tally("rotate_session race", vec![a, b, c, d]);
    assert_eq!(
        (won.len(), lost),
        (1, 3),
        "exactly one of four racing rotations of one session must win"
    );
    let mut active = 0;
    for h in [&b"n1"[..], b"n2", b"n3", b"n4"] {
        if let Some(found) = ok(s.find_active_session(h, t).await, "find_active_session") {
            assert_eq!(found.id, won[0].id);
            active += 1;
        }
    }
    assert_eq!(active, 1, "losing rotations stored sessions");
    assert_eq!(
        ok(s.revoke_user_sessions(u.id).await, "revoke_user_sessions"),
        1
    );

    let scope = Scope::User(u.id);
    let put = |v: i32| s.put_preference(scope, "race", json!(v), Some(0), None);
    let (a, b, c) = tokio::join!(put(1), put(2), put(3));
    let (won, lost) = tally("put_preference(Some(0)) race", vec![a, b, c]);
    assert_eq!(
        (won.len(), lost),
        (1, 2),
        "exactly one racing create with Some(0) must win"
    );
    let put = |v: i32| s.put_preference(scope, "race", json!(v), Some(1), None);
    let (a, b, c, d) = tokio::join!(put(10), put(20), put(30), put(40));
    let (won, lost) = tally("put_preference(Some(1)) race", vec![a, b, c, d]);
    assert_eq!(
        (won.len(), lost),
        (1, 3),
        "exactly one racing update with the same expected version must win"
    );
    let stored = ok(s.get_preference(scope, "race").await, "get_preference");
    assert_eq!(
        (stored.version, &stored.value),
        (2, &won[0].value),
        "the stored entry is the winner's"
    );

    let task = task(s, Some(u.id), "t").await;
    let job = ok(
        s.create_job(NewJob {
            id: JobId::new(),
            task_id: task.id,
            payload: json!({}),
        })
        .await,
        "create_job",
    );
    ok(
        s.update_job(
            job.id,
            JobUpdate {
                status: Some(JobStatus::Running),
                ..Default::default()
            },
        )
        .await,
        "update_job(running)",
    );
    let finish = |st: JobStatus| {
        s.update_job(
            job.id,
            JobUpdate {
                status: Some(st),
                result: Some(json!({"by": st.as_str()})),
                ..Default::default()
            },
        )
    };
    let (a, b, c) = tokio::join!(
        finish(JobStatus::Completed),
        finish(JobStatus::Failed),
        finish(JobStatus::Canceled)
    );
    let (won, lost) = tally("update_job terminal race", vec![a, b, c]);
    assert_eq!(
        (won.len(), lost),
        (1, 2),
        "exactly one of three different terminal statuses must win"
    );
    let stored = ok(s.get_job(job.id).await, "get_job");
    assert_eq!(stored.status, won[0].status);
    assert_eq!(
        stored.result,
        Some(json!({"by": won[0].status.as_str()})),
        "a losing update wrote its result"
    );
}
