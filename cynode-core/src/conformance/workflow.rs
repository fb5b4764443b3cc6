//! Cases for [`WorkflowStore`](crate::store::WorkflowStore): lease acquire, take-over,
//! renewal and release; checkpoints; the start gate of a task without a plan.

use serde_json::json;

use super::support::*;
use crate::TaskId;
use crate::model::*;
use crate::store::{LeaseAcquire, Store};

async fn task(s: &dyn Store, name: &str) -> Task {
    ok(
        s.create_task(NewTask {
            name: name.into(),
            ..Default::default()
        })
        .await,
        "create_task",
    )
}

/// Acquire creates the row; the same holder and lease id is `AlreadyRunning`; another
/// holder, or the same holder under another lease id, is `Held`; renew extends only
/// a held lease under its id; release with the wrong id changes nothing, with the
/// right one clears holder and expiry and keeps the row; a released or expired lease
/// is taken over.
pub async fn workflow_leases(s: &dyn Store) {
    let t = task(s, "wf-lease").await;
    let now = at("2030-01-01T00:00:00Z");
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert_eq!(ok(s.get_workflow_lease(t.id).await, "get(none)"), None);
    let started = match ok(
        s.acquire_workflow_lease(t.id, "runner-1", a, plus_us(now, 3_600_000_000), now)
            .await,
        "acquire",
    ) {
        LeaseAcquire::Started(l) => l,
        other => panic!("expected Started, got {other:?}"),
    };
    assert_eq!(started.task_id, t.id);
    assert_eq!(started.lease_id, a);
    assert_eq!(started.holder_id.as_deref(), Some("runner-1"));
    assert_eq!(started.expires_at, Some(plus_us(now, 3_600_000_000)));
    assert!(started.is_held(now));
    assert_eq!(
        ok(s.get_workflow_lease(t.id).await, "get").as_ref(),
        Some(&started)
    );
    let later = plus_us(now, 1_000_000);
    match ok(
        s.acquire_workflow_lease(t.id, "runner-1", a, plus_us(later, 10), later)
            .await,
        "acquire(same)",
    ) {
        LeaseAcquire::AlreadyRunning(l) => assert_eq!(l, started, "unchanged"),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    for (holder, id) in [("runner-2", b), ("runner-1", b), ("runner-2", a)] {
        match ok(
            s.acquire_workflow_lease(t.id, holder, id, plus_us(later, 10), later)
                .await,
            "acquire(other)",
        ) {
            LeaseAcquire::Held(l) => assert_eq!(l.lease_id, a),
            other => panic!("{holder}/{id}: expected Held, got {other:?}"),
        }
    }
    // Renew.
    let ext = plus_us(now, 7_200_000_000);
    let renewed =
        ok(s.renew_workflow_lease(t.id, a, ext, later).await, "renew").expect("held lease renews");
    assert_eq!(renewed.expires_at, Some(ext));
    assert_eq!(
        ok(
            s.renew_workflow_lease(t.id, b, ext, later).await,
            "renew(wrong id)"
        ),
        None
    );
    // Release.
    assert!(!ok(
        s.release_workflow_lease(t.id, b).await,
        "release(wrong id)"
    ));
    assert!(ok(s.get_workflow_lease(t.id).await, "get").is_some_and(|l| l.is_held(later)));
    assert!(ok(s.release_workflow_lease(t.id, a).await, "release"));
    let released = ok(s.get_workflow_lease(t.id).await, "get").expect("row kept");
    assert_eq!((released.holder_id, released.expires_at), (None, None));
    assert_eq!(released.lease_id, a);
    assert!(ok(
        s.release_workflow_lease(t.id, a).await,
        "release again (idempotent)"
    ));
    assert_eq!(
        ok(
            s.renew_workflow_lease(t.id, a, ext, later).await,
            "renew(released)"
        ),
        None
    );
    // Take over a released lease.
    match ok(
        s.acquire_workflow_lease(t.id, "runner-2", b, plus_us(later, 5_000_000), later)
            .await,
        "acquire(released)",
    ) {
        LeaseAcquire::Started(l) => {
            assert_eq!((l.lease_id, l.holder_id.as_deref()), (b, Some("runner-2")))
        }
        other => panic!("expected Started, got {other:?}"),
    }
    // Expired at `now` → taken over (expiry exactly now counts as expired).
    let expiry = plus_us(later, 5_000_000);
    assert_eq!(
        ok(
            s.renew_workflow_lease(t.id, b, ext, expiry).await,
            "renew(expired)"
        ),
        None
    );
    match ok(
        s.acquire_workflow_lease(t.id, "runner-3", a, plus_us(expiry, 10), expiry)
            .await,
        "acquire(expired)",
    ) {
        LeaseAcquire::Started(l) => assert_eq!(l.holder_id.as_deref(), Some("runner-3")),
        other => panic!("expected Started, got {other:?}"),
    }
    // Unknown task.
    let ghost = TaskId::new();
    fails(
        s.acquire_workflow_lease(ghost, "r", a, ext, now).await,
        NOT_FOUND,
        "acquire(unknown task)",
    );
    fails(
        s.release_workflow_lease(ghost, a).await,
        NOT_FOUND,
        "release(unknown)",
    );
    fails(
        s.renew_workflow_lease(ghost, a, ext, now).await,
        NOT_FOUND,
        "renew(unknown)",
    );
    fails(s.get_workflow_lease(ghost).await, NOT_FOUND, "get(unknown)");
}

/// Checkpoints: one per task, replaced on every put, JSON kept as is.
pub async fn workflow_checkpoints(s: &dyn Store) {
    let t = task(s, "wf-checkpoint").await;
    let other = task(s, "wf-checkpoint-2").await;
    assert_eq!(ok(s.get_workflow_checkpoint(t.id).await, "get(none)"), None);
    let state = json!({"task_id": t.id.to_string(), "plan": {"steps": [1, 2]}, "current_step_index": 0,
                       "text": "quotes \" and unicode é"});
    let when = at("2030-01-01T00:00:00.123456Z");
    let cp = ok(
        s.put_workflow_checkpoint(t.id, Some(state.clone()), Some("plan_steps".into()), when)
            .await,
        "put",
    );
    assert_eq!(
        ok(s.get_workflow_checkpoint(t.id).await, "get").as_ref(),
        Some(&cp)
    );
    assert_eq!(cp.state.as_ref(), Some(&state));
    assert_eq!(cp.updated_at, when);
    let when2 = plus_us(when, 1);
    ok(
        s.put_workflow_checkpoint(t.id, None, Some("dispatch_step".into()), when2)
            .await,
        "put(replace)",
    );
    let got = ok(s.get_workflow_checkpoint(t.id).await, "get").expect("some");
    assert_eq!(
        (got.state, got.last_node_id.as_deref(), got.updated_at),
        (None, Some("dispatch_step"), when2)
    );
    assert_eq!(
        ok(s.get_workflow_checkpoint(other.id).await, "get(other)"),
        None
    );
    fails(
        s.put_workflow_checkpoint(TaskId::new(), None, None, when)
            .await,
        NOT_FOUND,
        "put(unknown task)",
    );
    fails(
        s.get_workflow_checkpoint(TaskId::new()).await,
        NOT_FOUND,
        "get(unknown task)",
    );
}

/// A task without a plan is never gated, dependencies or not; an unknown task is
/// not found.
pub async fn workflow_gate_without_plan(s: &dyn Store) {
    let dep = task(s, "wf-dep").await;
    let t = ok(
        s.create_task(NewTask {
            name: "wf-gated".into(),
            depends_on: vec![dep.id],
            ..Default::default()
        })
        .await,
        "create_task(with dependency)",
    );
    assert_eq!(ok(s.workflow_start_gate(t.id, false).await, "gate"), None);
    assert_eq!(
        ok(s.workflow_start_gate(t.id, true).await, "gate(pma)"),
        None
    );
    fails(
        s.workflow_start_gate(TaskId::new(), false).await,
        NOT_FOUND,
        "gate(unknown task)",
    );
}
