//! The queue conformance suite: the same cases against every backend, plus helpers
//! for the test environment contract.
#![allow(dead_code, missing_docs)]

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cynode_sched::*;
use serde_json::json;

pub type Q = Arc<dyn QueueStore>;

/// Waits (polling) until `cond` holds; panics after a generous deadline so a broken
/// build fails instead of hanging. Not a timing assertion: only the outcome counts.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn claim(max: u32) -> Claim {
    Claim {
        queues: vec!["default".into()],
        kinds: vec![],
        max,
        worker_id: "test".into(),
        lease_ttl: Duration::from_secs(30),
    }
}

pub fn job(kind: &str) -> NewJob {
    NewJob::new(kind, json!({"k": kind}))
}

pub async fn complete(q: &Q, l: &Lease) -> FinishResult {
    q.finish(&[Finish {
        job_id: l.job.id,
        lease_id: l.lease_id,
        outcome: Outcome::Completed { result: None },
    }])
    .await
    .unwrap()[0]
}

// ------------------------------------------------------------------ cases

pub async fn enqueue_and_get(q: Q) {
    let e = q
        .enqueue(
            NewJob::new("send", json!({"to": "ada"}))
                .queue("mail")
                .priority(-3)
                .max_attempts(7)
                .concurrency_key("tenant-1")
                .affinity_key("task-9"),
        )
        .await
        .unwrap();
    assert!(e.created);
    let j = q.get(e.id).await.unwrap();
    assert_eq!(j.queue, "mail");
    assert_eq!(j.kind, "send");
    assert_eq!(j.payload, json!({"to": "ada"}));
    assert_eq!(j.priority, -3);
    assert_eq!(j.max_attempts, 7);
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.attempt, 0);
    assert_eq!(j.concurrency_key.as_deref(), Some("tenant-1"));
    assert_eq!(j.affinity_key.as_deref(), Some("task-9"));
    assert!(j.lease_id.is_none());
    let missing = q.get(JobId::new()).await.unwrap_err();
    assert_eq!(missing.kind(), "not_found");
}

pub async fn idempotency_key_returns_the_existing_job(q: Q) {
    let a = q.enqueue(job("x").idempotency_key("once")).await.unwrap();
    let b = q.enqueue(job("x").idempotency_key("once")).await.unwrap();
    assert!(a.created);
    assert_eq!(
        b,
        Enqueued {
            id: a.id,
            created: false
        }
    );
    let batch = q
        .enqueue_many(vec![
            job("x").idempotency_key("twice"),
            job("x").idempotency_key("twice"),
            job("x").idempotency_key("once"),
        ])
        .await
        .unwrap();
    assert!(batch[0].created);
    assert_eq!(
        batch[1],
        Enqueued {
            id: batch[0].id,
            created: false
        }
    );
    assert_eq!(
        batch[2],
        Enqueued {
            id: a.id,
            created: false
        }
    );
    assert_eq!(q.stats(None).await.unwrap().queued, 2);
}

pub async fn bad_input_and_conflicts(q: Q) {
    assert_eq!(
        q.enqueue(job("")).await.unwrap_err().kind(),
        "invalid_input"
    );
    assert_eq!(
        q.enqueue(job("x").max_attempts(0))
            .await
            .unwrap_err()
            .kind(),
        "invalid_input"
    );
    assert_eq!(
        q.enqueue(job("x").queue("a\nb")).await.unwrap_err().kind(),
        "invalid_input"
    );
    let id = JobId::new();
    q.enqueue(job("x").id(id)).await.unwrap();
    assert_eq!(
        q.enqueue(job("x").id(id)).await.unwrap_err().kind(),
        "conflict"
    );
    // A batch is all or nothing.
    let err = q
        .enqueue_many(vec![job("ok"), job("x").id(id)])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "conflict");
    assert_eq!(q.stats(None).await.unwrap().queued, 1);
    let err = q.enqueue_many(vec![job("ok"), job("")]).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    assert_eq!(q.stats(None).await.unwrap().queued, 1);
}

pub async fn priority_run_at_and_kinds_order_claims(q: Q) {
    let later = q.now().await.unwrap() + chrono::Duration::hours(1);
    let low = q.enqueue(job("a").priority(5)).await.unwrap().id;
    let high = q.enqueue(job("a").priority(-1)).await.unwrap().id;
    let mid1 = q.enqueue(job("a")).await.unwrap().id;
    let mid2 = q.enqueue(job("b")).await.unwrap().id;
    let delayed = q
        .enqueue(job("a").priority(-9).run_at(later))
        .await
        .unwrap()
        .id;
    let other_queue = q.enqueue(job("a").queue("elsewhere")).await.unwrap().id;

    let mut only_b = claim(10);
    only_b.kinds = vec!["b".into()];
    let got: Vec<JobId> = q
        .claim(&only_b)
        .await
        .unwrap()
        .iter()
        .map(|l| l.job.id)
        .collect();
    assert_eq!(got, vec![mid2]);

    let got: Vec<JobId> = q
        .claim(&claim(10))
        .await
        .unwrap()
        .iter()
        .map(|l| l.job.id)
        .collect();
    assert_eq!(got, vec![high, mid1, low]);
    assert!(
        q.claim(&claim(10)).await.unwrap().is_empty(),
        "delayed job must wait"
    );
    assert_eq!(q.get(delayed).await.unwrap().state, JobState::Queued);
    assert_eq!(q.get(other_queue).await.unwrap().state, JobState::Queued);
    // Several queues at once: merged in claim order.
    let also = q
        .enqueue(job("a").queue("third").priority(-5))
        .await
        .unwrap()
        .id;
    let mut both = claim(10);
    both.queues = vec!["default".into(), "elsewhere".into(), "third".into()];
    let got: Vec<JobId> = q
        .claim(&both)
        .await
        .unwrap()
        .iter()
        .map(|l| l.job.id)
        .collect();
    assert_eq!(got, vec![also, other_queue]);
}

pub async fn claim_starts_a_lease_and_counts_the_attempt(q: Q) {
    let id = q.enqueue(job("a")).await.unwrap().id;
    let l = q.claim(&claim(5)).await.unwrap();
    assert_eq!(l.len(), 1);
    let j = q.get(id).await.unwrap();
    assert_eq!(j.state, JobState::Running);
    assert_eq!(j.attempt, 1);
    assert_eq!(j.lease_id, Some(l[0].lease_id));
    assert_eq!(j.worker_id.as_deref(), Some("test"));
    assert!(
        j.lease_expires_at
            .is_some_and(|t| t > j.started_at.unwrap())
    );
    assert!(q.claim(&claim(5)).await.unwrap().is_empty());
}

pub async fn finish_is_fenced_by_the_lease(q: Q) {
    let id = q.enqueue(job("a")).await.unwrap().id;
    let l = q.claim(&claim(1)).await.unwrap().remove(0);
    let wrong = q
        .finish(&[Finish {
            job_id: id,
            lease_id: uuid::Uuid::new_v4(),
            outcome: Outcome::Completed { result: None },
        }])
        .await
        .unwrap();
    assert_eq!(wrong, vec![FinishResult::Stale]);
    let ok = q
        .finish(&[Finish {
            job_id: id,
            lease_id: l.lease_id,
            outcome: Outcome::Completed {
                result: Some(json!({"answer": 42})),
            },
        }])
        .await
        .unwrap();
    assert_eq!(ok, vec![FinishResult::Applied(JobState::Completed)]);
    let j = q.get(id).await.unwrap();
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.result, Some(json!({"answer": 42})));
    assert!(j.ended_at.is_some());
    assert!(j.lease_id.is_none());
    // A second finish with the old lease changes nothing.
    assert_eq!(complete(&q, &l).await, FinishResult::Stale);
}

pub async fn retries_then_fails_permanently_keeping_the_last_error(q: Q) {
    let id = q.enqueue(job("a").max_attempts(2)).await.unwrap().id;
    let l = q.claim(&claim(1)).await.unwrap().remove(0);
    let r = q
        .finish(&[Finish {
            job_id: id,
            lease_id: l.lease_id,
            outcome: Outcome::Retry {
                error: "boom 1".into(),
                delay: Duration::from_millis(50),
            },
        }])
        .await
        .unwrap();
    assert_eq!(r, vec![FinishResult::Applied(JobState::Queued)]);
    let j = q.get(id).await.unwrap();
    assert_eq!(j.last_error.as_deref(), Some("boom 1"));
    assert!(j.run_at > j.started_at.unwrap(), "back-off moves run_at");
    let second = Arc::new(std::sync::Mutex::new(None));
    let (q2, s2) = (q.clone(), second.clone());
    eventually("the retry becomes runnable", || {
        let (q2, s2) = (q2.clone(), s2.clone());
        async move {
            match q2.claim(&claim(1)).await.unwrap().pop() {
                Some(l) => {
                    *s2.lock().unwrap() = Some(l);
                    true
                }
                None => false,
            }
        }
    })
    .await;
    let l2 = second.lock().unwrap().clone().unwrap();
    assert_eq!((l2.job.id, l2.job.attempt), (id, 2));
    let r = q
        .finish(&[Finish {
            job_id: id,
            lease_id: l2.lease_id,
            outcome: Outcome::Retry {
                error: "boom 2".into(),
                delay: Duration::ZERO,
            },
        }])
        .await
        .unwrap();
    assert_eq!(r, vec![FinishResult::Applied(JobState::Failed)]);
    let j = q.get(id).await.unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.last_error.as_deref(), Some("boom 2"));
    assert!(j.ended_at.is_some());
}

pub async fn fatal_failure_and_snooze(q: Q) {
    let a = q.enqueue(job("a").max_attempts(9)).await.unwrap().id;
    let b = q.enqueue(job("b")).await.unwrap().id;
    let ls = q.claim(&claim(2)).await.unwrap();
    let la = ls.iter().find(|l| l.job.id == a).unwrap();
    let lb = ls.iter().find(|l| l.job.id == b).unwrap();
    let r = q
        .finish(&[
            Finish {
                job_id: a,
                lease_id: la.lease_id,
                outcome: Outcome::Failed {
                    error: "bad input".into(),
                },
            },
            Finish {
                job_id: b,
                lease_id: lb.lease_id,
                outcome: Outcome::Snooze {
                    delay: Duration::ZERO,
                    reason: Some("no node".into()),
                },
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![
            FinishResult::Applied(JobState::Failed),
            FinishResult::Applied(JobState::Queued)
        ]
    );
    let jb = q.get(b).await.unwrap();
    assert_eq!(jb.attempt, 0, "a snooze does not count the attempt");
    assert_eq!(jb.reason.as_deref(), Some("no node"));
    assert_eq!(
        q.get(a).await.unwrap().last_error.as_deref(),
        Some("bad input")
    );
}

pub async fn heartbeat_renews_and_reports_cancel_and_loss(q: Q) {
    let a = q.enqueue(job("a")).await.unwrap().id;
    let b = q.enqueue(job("b")).await.unwrap().id;
    let ls = q.claim(&claim(2)).await.unwrap();
    let lease = ls[0].lease_id;
    let before = q.get(a).await.unwrap().lease_expires_at.unwrap();
    let st = q
        .heartbeat(
            &[(a, lease), (b, lease), (a, uuid::Uuid::new_v4())],
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(
        st,
        vec![
            HeartbeatStatus::Renewed,
            HeartbeatStatus::Renewed,
            HeartbeatStatus::Lost
        ]
    );
    assert!(q.get(a).await.unwrap().lease_expires_at.unwrap() > before);
    let mut events = q.events();
    assert_eq!(
        q.cancel(b).await.unwrap(),
        CancelResult::Canceled { was_running: true }
    );
    let st = q
        .heartbeat(&[(a, lease), (b, lease)], Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        st,
        vec![HeartbeatStatus::Renewed, HeartbeatStatus::Canceled]
    );
    // The cancel is announced to the holder.
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(QueueEvent::Canceled(id)) = events.recv().await {
                return id;
            }
        }
    })
    .await
    .expect("a cancel event");
    assert_eq!(got, b);
    // Its finish is discarded; canceled never flips back.
    let lb = ls.iter().find(|l| l.job.id == b).unwrap();
    assert_eq!(complete(&q, lb).await, FinishResult::Stale);
    assert_eq!(q.get(b).await.unwrap().state, JobState::Canceled);
}

pub async fn cancel_queued_and_finished_jobs(q: Q) {
    let a = q.enqueue(job("a")).await.unwrap().id;
    assert_eq!(
        q.cancel(a).await.unwrap(),
        CancelResult::Canceled { was_running: false }
    );
    assert!(q.claim(&claim(5)).await.unwrap().is_empty());
    assert_eq!(
        q.cancel(a).await.unwrap(),
        CancelResult::AlreadyFinished(JobState::Canceled)
    );
    let b = q.enqueue(job("b")).await.unwrap().id;
    let l = q.claim(&claim(1)).await.unwrap().remove(0);
    complete(&q, &l).await;
    assert_eq!(
        q.cancel(b).await.unwrap(),
        CancelResult::AlreadyFinished(JobState::Completed)
    );
    assert_eq!(
        q.cancel(JobId::new()).await.unwrap_err().kind(),
        "not_found"
    );
}

pub async fn expired_leases_are_requeued_with_the_attempt_counted(q: Q) {
    let a = q.enqueue(job("a").max_attempts(3)).await.unwrap().id;
    let b = q.enqueue(job("b").max_attempts(1)).await.unwrap().id;
    let mut c = claim(2);
    c.lease_ttl = Duration::from_millis(100);
    let first = q.claim(&c).await.unwrap();
    assert_eq!(first.len(), 2);
    let q2 = q.clone();
    eventually("the reaper moves both jobs", || {
        let q2 = q2.clone();
        async move {
            q2.reap_expired().await.unwrap();
            q2.stats(None).await.unwrap().running == 0
        }
    })
    .await;
    let ja = q.get(a).await.unwrap();
    assert_eq!(ja.state, JobState::Queued);
    assert_eq!(ja.attempt, 1);
    assert!(ja.last_error.unwrap().contains("lease expired"));
    let jb = q.get(b).await.unwrap();
    assert_eq!(jb.state, JobState::Failed, "no attempts left");
    // The old holder cannot finish any more; the next claim counts attempt 2.
    let old = first.iter().find(|l| l.job.id == a).unwrap();
    assert_eq!(complete(&q, old).await, FinishResult::Stale);
    let again = q.claim(&claim(1)).await.unwrap().remove(0);
    assert_eq!((again.job.id, again.job.attempt), (a, 2));
    assert_eq!(
        complete(&q, &again).await,
        FinishResult::Applied(JobState::Completed)
    );
}

pub async fn concurrent_claimers_never_share_a_job(q: Q) {
    let jobs: Vec<NewJob> = (0..300).map(|i| NewJob::new("n", json!(i))).collect();
    q.enqueue_many(jobs).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut c = claim(7);
                c.worker_id = format!("w{w}");
                let got = q.claim(&c).await.unwrap();
                if got.is_empty() {
                    break;
                }
                for l in got {
                    complete(&q, &l).await;
                    mine.push(l.job.id);
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<JobId> = all.iter().copied().collect();
    assert_eq!(all.len(), 300);
    assert_eq!(unique.len(), 300);
    assert_eq!(q.stats(None).await.unwrap().completed, 300);
}

pub async fn concurrency_limits_per_kind_queue_and_key(q: Q) {
    q.set_limit(&LimitScope::Kind("render".into()), &Limit::concurrency(2))
        .await
        .unwrap();
    q.set_limit(&LimitScope::EachKey, &Limit::concurrency(1))
        .await
        .unwrap();
    for _ in 0..5 {
        q.enqueue(job("render")).await.unwrap();
    }
    for t in ["t1", "t1", "t2"] {
        q.enqueue(job("mail").concurrency_key(t)).await.unwrap();
    }
    q.enqueue(job("free")).await.unwrap();
    let got = q.claim(&claim(100)).await.unwrap();
    let count = |k: &str| got.iter().filter(|l| l.job.kind == k).count();
    assert_eq!(count("render"), 2);
    assert_eq!(count("mail"), 2, "one per key");
    assert_eq!(count("free"), 1);
    assert!(
        q.claim(&claim(100)).await.unwrap().is_empty(),
        "limits hold across claims"
    );
    // Finishing one render frees one slot.
    let r = got.iter().find(|l| l.job.kind == "render").unwrap();
    complete(&q, r).await;
    let more = q.claim(&claim(100)).await.unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].job.kind, "render");
    // A queue limit.
    q.set_limit(&LimitScope::Queue("bulk".into()), &Limit::concurrency(1))
        .await
        .unwrap();
    q.enqueue(job("x").queue("bulk")).await.unwrap();
    q.enqueue(job("x").queue("bulk")).await.unwrap();
    let mut cb = claim(10);
    cb.queues = vec!["bulk".into()];
    assert_eq!(q.claim(&cb).await.unwrap().len(), 1);
    assert!(q.claim(&cb).await.unwrap().is_empty());
    // Removing a limit lifts it.
    assert!(
        q.remove_limit(&LimitScope::Queue("bulk".into()))
            .await
            .unwrap()
    );
    assert_eq!(q.claim(&cb).await.unwrap().len(), 1);
    let limits = q.limits().await.unwrap();
    assert_eq!(limits.len(), 2);
    assert_eq!(
        q.set_limit(&LimitScope::Kind("k".into()), &Limit::default())
            .await
            .unwrap_err()
            .kind(),
        "invalid_input"
    );
}

pub async fn rate_limits_starts(q: Q) {
    q.set_limit(
        &LimitScope::Queue("default".into()),
        &Limit::rate(3, Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    for _ in 0..6 {
        q.enqueue(job("a")).await.unwrap();
    }
    let got = q.claim(&claim(10)).await.unwrap();
    assert_eq!(got.len(), 3);
    for l in &got {
        complete(&q, l).await;
    }
    assert!(
        q.claim(&claim(10)).await.unwrap().is_empty(),
        "rate used up"
    );
}

pub async fn cron_fires_once_per_tick_across_replicas(q: Q) {
    let entry = q
        .put_cron(&CronJob {
            name: "tick".into(),
            schedule: "* * * * * *".into(),
            time_zone: None,
            job: NewJob::new("cron-job", json!({})),
            enabled: true,
        })
        .await
        .unwrap();
    assert!(entry.next_run_at > q.now().await.unwrap() - chrono::Duration::seconds(1));
    // Eight "replicas" fire concurrently until three ticks have fired.
    let fired = Arc::new(AtomicUsize::new(0));
    let q2 = q.clone();
    let f2 = fired.clone();
    eventually("three ticks fire", || {
        let q2 = q2.clone();
        let f2 = f2.clone();
        async move {
            let mut hs = Vec::new();
            for _ in 0..8 {
                let q3 = q2.clone();
                hs.push(tokio::spawn(async move {
                    q3.fire_due_cron().await.unwrap().len()
                }));
            }
            for h in hs {
                f2.fetch_add(h.await.unwrap(), Ordering::SeqCst);
            }
            f2.load(Ordering::SeqCst) >= 3
        }
    })
    .await;
    let s = q.stats(None).await.unwrap();
    assert_eq!(
        s.queued as usize,
        fired.load(Ordering::SeqCst),
        "one job per reported fire"
    );
    let jobs = q.claim(&claim(100)).await.unwrap();
    let keys: HashSet<String> = jobs
        .iter()
        .filter_map(|l| l.job.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), jobs.len(), "each tick enqueued once");
    let list = q.list_cron().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].last_fired_at.is_some());
    // Disabled entries do not fire; bad expressions are refused.
    let mut off = list[0].cron.clone();
    off.enabled = false;
    q.put_cron(&off).await.unwrap();
    let mut bad = off.clone();
    bad.schedule = "every tuesday".into();
    assert_eq!(q.put_cron(&bad).await.unwrap_err().kind(), "invalid_input");
    assert!(q.remove_cron("tick").await.unwrap());
    assert!(!q.remove_cron("tick").await.unwrap());
}

pub async fn placement_bookkeeping(q: Q) {
    let n1 = NodeId::new();
    let a = q.enqueue(job("a").affinity_key("task-1")).await.unwrap().id;
    let b = q.enqueue(job("a").affinity_key("task-1")).await.unwrap().id;
    let ls = q.claim(&claim(2)).await.unwrap();
    let la = ls.iter().find(|l| l.job.id == a).unwrap();
    assert!(q.assign_node(a, la.lease_id, n1).await.unwrap());
    assert!(
        !q.assign_node(b, uuid::Uuid::new_v4(), n1).await.unwrap(),
        "fenced"
    );
    assert_eq!(q.node_loads().await.unwrap().get(&n1), Some(&1));
    assert_eq!(q.affinity_node("task-1").await.unwrap(), Some(n1));
    assert_eq!(q.affinity_node("task-2").await.unwrap(), None);
    complete(&q, la).await;
    assert!(!q.node_loads().await.unwrap().contains_key(&n1));
    assert_eq!(q.get(a).await.unwrap().node_id, Some(n1));
}

pub async fn stats_and_prune(q: Q) {
    q.enqueue(job("a").idempotency_key("k1")).await.unwrap();
    q.enqueue(job("a").queue("other")).await.unwrap();
    let l = q.claim(&claim(1)).await.unwrap().remove(0);
    complete(&q, &l).await;
    assert_eq!(
        q.stats(Some("default")).await.unwrap(),
        QueueStats {
            completed: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        q.stats(None).await.unwrap(),
        QueueStats {
            completed: 1,
            queued: 1,
            ..Default::default()
        }
    );
    let future = q.now().await.unwrap() + chrono::Duration::seconds(5);
    assert_eq!(q.prune(future).await.unwrap(), 1);
    assert_eq!(q.get(l.job.id).await.unwrap_err().kind(), "not_found");
    // The idempotency key is free again.
    assert!(
        q.enqueue(job("a").idempotency_key("k1"))
            .await
            .unwrap()
            .created
    );
}

pub async fn enqueue_wakes_listeners(q: Q) {
    let mut events = q.events();
    // The PostgreSQL listener connects in the background: keep enqueuing until one
    // wake-up for the queue arrives.
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            q.enqueue(job("a").queue("wake")).await.unwrap();
            let deadline = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    e = events.recv() => if let Ok(QueueEvent::JobsAvailable(Some(q))) = e
                        && q == "wake"
                    {
                        return;
                    },
                    _ = &mut deadline => break,
                }
            }
        }
    })
    .await;
    assert!(got.is_ok(), "no wake-up event for an enqueue");
}

/// Defines one `#[tokio::test]` per case. `$make` is an async expression giving
/// `Option<(Q, impl Future<Output = ()>)>`: the store and its clean-up, or `None` to skip.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            enqueue_and_get, idempotency_key_returns_the_existing_job, bad_input_and_conflicts,
            priority_run_at_and_kinds_order_claims, claim_starts_a_lease_and_counts_the_attempt,
            finish_is_fenced_by_the_lease, retries_then_fails_permanently_keeping_the_last_error,
            fatal_failure_and_snooze, heartbeat_renews_and_reports_cancel_and_loss,
            cancel_queued_and_finished_jobs, expired_leases_are_requeued_with_the_attempt_counted,
            concurrent_claimers_never_share_a_job, concurrency_limits_per_kind_queue_and_key,
            rate_limits_starts, cron_fires_once_per_tick_across_replicas, placement_bookkeeping,
            stats_and_prune, enqueue_wakes_listeners);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some((q, cleanup)) = $make.await {
                    common::$case(q).await;
                    cleanup.await;
                }
            }
        )*
    };
}
