//! Concurrency and rate limit evaluation, shared by every backend.
//!
//! A backend that claims jobs under limits (serialised so two claimers never evaluate
//! the same limit at once) loads the limit set, the running counts and the rate
//! buckets, asks [`select`] which candidates may start, and writes the buckets back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::Timestamp;
use crate::model::{Limit, LimitScope};

/// The configured limits, indexed for lookups.
#[derive(Clone, Debug, Default)]
pub(crate) struct LimitSet {
    pub(crate) queue: HashMap<String, Limit>,
    pub(crate) kind: HashMap<String, Limit>,
    pub(crate) key: HashMap<String, Limit>,
    pub(crate) each_key: Option<Limit>,
}

/// A counter or bucket identity: the scope, with `EachKey` resolved to the job's key.
pub(crate) type ScopeId = (&'static str, String);

impl LimitSet {
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (LimitScope, Limit)>) -> Self {
        let mut s = Self::default();
        for (scope, limit) in pairs {
            match scope {
                LimitScope::Queue(n) => {
                    s.queue.insert(n, limit);
                }
                LimitScope::Kind(n) => {
                    s.kind.insert(n, limit);
                }
                LimitScope::Key(n) => {
                    s.key.insert(n, limit);
                }
                LimitScope::EachKey => s.each_key = Some(limit),
            }
        }
        s
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
            && self.kind.is_empty()
            && self.key.is_empty()
            && self.each_key.is_none()
    }

    /// The limits that apply to a job, with the counter/bucket each one uses.
    pub(crate) fn applicable(
        &self,
        queue: &str,
        kind: &str,
        key: Option<&str>,
    ) -> Vec<(ScopeId, Limit)> {
        let mut out = Vec::new();
        if let Some(l) = self.queue.get(queue) {
            out.push((("queue", queue.to_string()), *l));
        }
        if let Some(l) = self.kind.get(kind) {
            out.push((("kind", kind.to_string()), *l));
        }
        if let Some(k) = key {
            if let Some(l) = self.key.get(k) {
                out.push((("key", k.to_string()), *l));
            } else if let Some(l) = self.each_key {
                out.push((("key", k.to_string()), l));
            }
        }
        out
    }

    /// Names a limited claim must look at.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn exclusions(&self) -> Exclusions {
        Exclusions {
            queues: self.queue.keys().cloned().collect(),
            kinds: self.kind.keys().cloned().collect(),
            keys: self.key.keys().cloned().collect(),
            all_keys: self.each_key.is_some(),
        }
    }
}

/// What the unlimited claim path leaves to the limited one.
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct Exclusions {
    pub(crate) queues: Vec<String>,
    pub(crate) kinds: Vec<String>,
    pub(crate) keys: Vec<String>,
    pub(crate) all_keys: bool,
}

/// Rebuilds a limit from its stored columns.
#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
pub(crate) fn limit_from_parts(
    max_running: Option<i64>,
    rate_max: Option<i64>,
    period_us: Option<i64>,
) -> crate::model::Limit {
    Limit {
        max_running: max_running.and_then(|m| u32::try_from(m).ok()),
        rate: match (rate_max, period_us) {
            (Some(m), Some(p)) => Some(crate::model::Rate {
                max: u32::try_from(m).unwrap_or(u32::MAX),
                per: Duration::from_micros(u64::try_from(p).unwrap_or(1000)),
            }),
            _ => None,
        },
    }
}

/// A token bucket's stored state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) tokens: f64,
    pub(crate) refreshed_at: Timestamp,
}

/// A queued job the limited path may start.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) queue: String,
    pub(crate) kind: String,
    pub(crate) key: Option<String>,
}

/// Running counts and buckets, updated in place by [`select`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Usage {
    pub(crate) running: HashMap<ScopeId, u64>,
    pub(crate) buckets: HashMap<ScopeId, Bucket>,
    /// Buckets changed by [`select`] (to write back).
    pub(crate) touched: HashSet<ScopeId>,
}

impl Usage {
    /// Counts one running job against every scope it belongs to.
    pub(crate) fn count_running(&mut self, queue: &str, kind: &str, key: Option<&str>) {
        *self
            .running
            .entry(("queue", queue.to_string()))
            .or_default() += 1;
        *self.running.entry(("kind", kind.to_string())).or_default() += 1;
        if let Some(k) = key {
            *self.running.entry(("key", k.to_string())).or_default() += 1;
        }
    }
}

/// Tokens in a bucket at `now`, refilled at `max / per` and capped at `max`; a bucket
/// never seen starts full.
fn tokens_at(bucket: Option<&Bucket>, limit: &crate::model::Rate, now: Timestamp) -> f64 {
    let cap = f64::from(limit.max);
    match bucket {
        None => cap,
        Some(b) => {
            let elapsed = (now - b.refreshed_at)
                .num_microseconds()
                .unwrap_or(i64::MAX)
                .max(0);
            #[allow(clippy::cast_precision_loss)]
            let elapsed_s = elapsed as f64 / 1e6;
            let rate = cap / limit.per.as_secs_f64();
            (b.tokens + elapsed_s * rate).min(cap)
        }
    }
}

/// Picks, in order, the candidates that may start now without breaking a limit, at most
/// `max` of them, and charges them to `usage`. A candidate held back by one scope does
/// not hold back later candidates of other scopes.
pub(crate) fn select(
    limits: &LimitSet,
    candidates: &[Candidate],
    usage: &mut Usage,
    now: Timestamp,
    max: usize,
) -> Vec<usize> {
    let mut chosen = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        if chosen.len() >= max {
            break;
        }
        let applicable = limits.applicable(&c.queue, &c.kind, c.key.as_deref());
        let fits = applicable.iter().all(|(id, limit)| {
            let running_ok = limit
                .max_running
                .is_none_or(|m| usage.running.get(id).copied().unwrap_or(0) < u64::from(m));
            let rate_ok = limit
                .rate
                .as_ref()
                .is_none_or(|r| tokens_at(usage.buckets.get(id), r, now) >= 1.0);
            running_ok && rate_ok
        });
        if !fits {
            continue;
        }
        for (id, limit) in &applicable {
            if limit.max_running.is_some() {
                *usage.running.entry(id.clone()).or_default() += 1;
            }
            if let Some(r) = &limit.rate {
                let t = tokens_at(usage.buckets.get(id), r, now);
                usage.buckets.insert(
                    id.clone(),
                    Bucket {
                        tokens: t - 1.0,
                        refreshed_at: now,
                    },
                );
                usage.touched.insert(id.clone());
            }
        }
        chosen.push(i);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(queue: &str, kind: &str, key: Option<&str>) -> Candidate {
        Candidate {
            queue: queue.into(),
            kind: kind.into(),
            key: key.map(Into::into),
        }
    }

    #[test]
    fn concurrency_counts_running_and_chosen_jobs() {
        let limits = LimitSet::from_pairs([(LimitScope::Kind("k".into()), Limit::concurrency(2))]);
        let mut usage = Usage::default();
        usage.count_running("q", "k", None);
        let c = vec![
            cand("q", "k", None),
            cand("q", "k", None),
            cand("q", "other", None),
        ];
        let picked = select(&limits, &c, &mut usage, chrono::Utc::now(), 10);
        assert_eq!(picked, vec![0, 2]);
    }

    #[test]
    fn each_key_limits_keys_separately_and_a_key_override_wins() {
        let limits = LimitSet::from_pairs([
            (LimitScope::EachKey, Limit::concurrency(1)),
            (LimitScope::Key("vip".into()), Limit::concurrency(2)),
        ]);
        let mut usage = Usage::default();
        let c = vec![
            cand("q", "k", Some("a")),
            cand("q", "k", Some("a")),
            cand("q", "k", Some("b")),
            cand("q", "k", Some("vip")),
            cand("q", "k", Some("vip")),
            cand("q", "k", Some("vip")),
        ];
        let picked = select(&limits, &c, &mut usage, chrono::Utc::now(), 10);
        assert_eq!(picked, vec![0, 2, 3, 4]);
    }

    #[test]
    fn rate_bucket_refills_over_time() {
        let limits = LimitSet::from_pairs([(
            LimitScope::Queue("q".into()),
            Limit::rate(2, Duration::from_secs(10)),
        )]);
        let mut usage = Usage::default();
        let t0 = chrono::Utc::now();
        let c: Vec<_> = (0..5).map(|_| cand("q", "k", None)).collect();
        assert_eq!(select(&limits, &c, &mut usage, t0, 10).len(), 2);
        assert!(select(&limits, &c, &mut usage, t0, 10).is_empty());
        let t1 = t0 + chrono::Duration::seconds(5);
        assert_eq!(select(&limits, &c, &mut usage, t1, 10).len(), 1);
        let t2 = t1 + chrono::Duration::seconds(100);
        assert_eq!(
            select(&limits, &c, &mut usage, t2, 10).len(),
            2,
            "capped at max"
        );
    }
}
