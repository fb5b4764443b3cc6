//! The [`Router`]: named local and external targets, the routing decision, and
//! execution with fallbacks, a retry budget and timeouts.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde::Deserialize;

use super::{
    error::RouterError,
    http::{HttpClient, HttpConfig},
    provider::{ModelProvider, ProviderConfig},
    routing::{Capabilities, Location, Pricing, RouteOptions, RoutingDecision, TargetView, decide},
    types::{ChatRequest, ChatResponse, ChatStream, ModelInfo},
};

/// One named target in configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Unique name; for external targets this is the provider id used in routing
    /// settings (`openai`, `anthropic`, …).
    pub name: String,
    /// How to reach it.
    pub provider: ProviderConfig,
    /// Model to use when the request names none, or names one outside `models`.
    #[serde(default)]
    pub default_model: Option<String>,
    /// Models this target serves; empty = whatever the request names.
    #[serde(default)]
    pub models: Vec<String>,
    /// What it offers.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Prices, for cost budgets.
    #[serde(default)]
    pub pricing: Option<Pricing>,
}

/// Retry budget and timeouts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per request across all targets (default 3).
    pub max_attempts: u32,
    /// Time budget of one attempt, in ms (default 120000). For streams it bounds the
    /// time until the provider accepts the request.
    pub attempt_timeout_ms: u64,
    /// Time budget of the whole request including retries and backoff, in ms
    /// (default 200000).
    pub overall_timeout_ms: u64,
    /// First backoff before retrying a target already tried, in ms (default 500);
    /// doubled each time up to `backoff_max_ms` (default 1000).
    pub backoff_initial_ms: u64,
    /// Backoff cap, in ms.
    pub backoff_max_ms: u64,
    /// Longest silence allowed between two streamed deltas, in ms (default 60000).
    pub stream_idle_timeout_ms: u64,
    /// Consecutive failures after which a target is skipped for `cooldown_ms`
    /// (default 3; 0 disables).
    pub unhealthy_after_failures: u32,
    /// How long an unhealthy target is skipped, in ms (default 10000).
    pub cooldown_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            attempt_timeout_ms: 120_000,
            overall_timeout_ms: 200_000,
            backoff_initial_ms: 500,
            backoff_max_ms: 1_000,
            stream_idle_timeout_ms: 60_000,
            unhealthy_after_failures: 3,
            cooldown_ms: 10_000,
        }
    }
}

/// Router configuration: local targets (worker inference), external targets
/// (providers), retry policy and HTTP client settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Local inference endpoints.
    pub local: Vec<TargetConfig>,
    /// External providers.
    pub external: Vec<TargetConfig>,
    /// Retry budget and timeouts.
    pub retry: RetryConfig,
    /// Outbound HTTP client.
    pub http: HttpConfig,
}

#[derive(Default)]
struct Stats {
    in_flight: AtomicU32,
    reported_queue: AtomicU32,
    ewma_latency_us: AtomicU64,
    consecutive_failures: AtomicU32,
    unhealthy_until_ms: AtomicU64,
}

struct Target {
    name: String,
    location: Location,
    provider: Arc<dyn ModelProvider>,
    default_model: Option<String>,
    models: Vec<String>,
    capabilities: Capabilities,
    pricing: Option<Pricing>,
    stats: Arc<Stats>,
}

impl Target {
    fn model_for(&self, requested: &str) -> String {
        let listed = self.models.is_empty() || self.models.iter().any(|m| m == requested);
        if !requested.is_empty() && listed {
            return requested.to_string();
        }
        self.default_model
            .clone()
            .unwrap_or_else(|| requested.to_string())
    }
}

/// Whether two model names are the same model (`name` = `name:latest`).
pub(crate) fn same_model(a: &str, b: &str) -> bool {
    let norm = |m: &str| {
        if m.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            m.to_string()
        } else {
            format!("{m}:latest")
        }
    };
    a == b || norm(a) == norm(b)
}

/// The result of a routed call: the value, the decision that led to it, the target
/// that served it and how many attempts it took.
#[derive(Debug)]
pub struct Routed<T> {
    /// The answer.
    pub value: T,
    /// The routing decision.
    pub decision: RoutingDecision,
    /// Name of the target that answered.
    pub target: String,
    /// Attempts made (1 = first try succeeded).
    pub attempts: u32,
}

/// Routes chat requests to local or external targets by the routing rules, with
/// fallbacks, a retry budget and timeouts. Cheap to share behind an `Arc`.
pub struct Router {
    targets: Vec<Target>,
    retry: RetryConfig,
    epoch: Instant,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "targets",
                &self
                    .targets
                    .iter()
                    .map(|t| (&t.name, t.location))
                    .collect::<Vec<_>>(),
            )
            .field("retry", &self.retry)
            .finish()
    }
}

/// Builds a [`Router`] from providers (configured or custom).
#[derive(Default)]
pub struct RouterBuilder {
    targets: Vec<Target>,
    retry: RetryConfig,
}

/// Options of one target added through [`RouterBuilder`].
#[derive(Clone, Debug, Default)]
pub struct TargetOptions {
    /// Model used when the request names none (or one outside `models`).
    pub default_model: Option<String>,
    /// Models served; empty = any.
    pub models: Vec<String>,
    /// Capabilities.
    pub capabilities: Capabilities,
    /// Prices.
    pub pricing: Option<Pricing>,
}

impl RouterBuilder {
    /// Adds a local target.
    pub fn local(mut self, provider: Arc<dyn ModelProvider>, opts: TargetOptions) -> Self {
        self.targets
            .push(new_target(provider, Location::Local, opts));
        self
    }

    /// Adds an external target; its provider name is the provider id of routing
    /// settings.
    pub fn external(mut self, provider: Arc<dyn ModelProvider>, opts: TargetOptions) -> Self {
        self.targets
            .push(new_target(provider, Location::External, opts));
        self
    }

    /// Sets the retry budget and timeouts.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Finishes; target names must be unique.
    pub fn build(self) -> Result<Router, RouterError> {
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.targets {
            if !seen.insert(t.name.clone()) {
                return Err(RouterError::Config(format!(
                    "duplicate target name '{}'",
                    t.name
                )));
            }
        }
        if self.retry.max_attempts == 0 {
            return Err(RouterError::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        Ok(Router {
            targets: self.targets,
            retry: self.retry,
            epoch: Instant::now(),
        })
    }
}

fn new_target(provider: Arc<dyn ModelProvider>, location: Location, o: TargetOptions) -> Target {
    let name = match location {
        Location::External => provider.name().trim().to_ascii_lowercase(),
        Location::Local => provider.name().to_string(),
    };
    Target {
        name,
        location,
        provider,
        default_model: o.default_model,
        models: o.models,
        capabilities: o.capabilities,
        pricing: o.pricing,
        stats: Arc::new(Stats::default()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Neutral,
}

/// Keeps a target's in-flight count raised while a stream is alive.
struct StreamGuard {
    stats: Arc<Stats>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Router {
    /// Builds a router from configuration (one shared HTTP client for all targets).
    pub fn from_config(config: &RouterConfig) -> Result<Self, RouterError> {
        let http = HttpClient::new(&config.http)?;
        let mut b = RouterBuilder {
            targets: Vec::new(),
            retry: config.retry.clone(),
        };
        for (loc, list) in [
            (Location::Local, &config.local),
            (Location::External, &config.external),
        ] {
            for t in list {
                let provider = t.provider.build(&t.name, &http)?;
                let opts = TargetOptions {
                    default_model: t.default_model.clone(),
                    models: t.models.clone(),
                    capabilities: t.capabilities.clone(),
                    pricing: t.pricing,
                };
                b.targets.push(new_target(provider, loc, opts));
            }
        }
        b.build()
    }

    /// A builder for routers over custom or pre-built providers.
    pub fn builder() -> RouterBuilder {
        RouterBuilder::default()
    }

    /// Names and locations of the targets, in configuration order.
    pub fn targets(&self) -> Vec<(String, Location)> {
        self.targets
            .iter()
            .map(|t| (t.name.clone(), t.location))
            .collect()
    }

    /// Records a queue depth reported from outside (e.g. a worker's capability report);
    /// the effective depth is the larger of this and the router's own in-flight count.
    /// Returns `false` for an unknown target.
    pub fn report_queue_depth(&self, target: &str, depth: u32) -> bool {
        match self.targets.iter().find(|t| t.name == target) {
            Some(t) => {
                t.stats.reported_queue.store(depth, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn views(&self) -> Vec<TargetView> {
        let now = self.now_ms();
        let healthy = |t: &Target| t.stats.unhealthy_until_ms.load(Ordering::Relaxed) <= now;
        // When every target is cooling down, ignore health rather than refuse everything.
        let all_down = self.targets.iter().all(|t| !healthy(t));
        self.targets
            .iter()
            .map(|t| TargetView {
                name: t.name.clone(),
                location: t.location,
                capabilities: t.capabilities.clone(),
                pricing: t.pricing,
                healthy: all_down || healthy(t),
                queue_depth: t
                    .stats
                    .in_flight
                    .load(Ordering::Relaxed)
                    .max(t.stats.reported_queue.load(Ordering::Relaxed)),
                recent_latency_s: t.stats.ewma_latency_us.load(Ordering::Relaxed) as f64 / 1e6,
            })
            .collect()
    }

    /// The routing decision for a request with these options, without calling anything.
    pub fn decide(
        &self,
        req: &ChatRequest,
        opts: &RouteOptions,
    ) -> Result<RoutingDecision, RouterError> {
        let tokens = opts
            .estimated_prompt_tokens
            .unwrap_or_else(|| req.estimated_tokens());
        decide(opts, &self.views(), tokens)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }

    fn record(&self, i: usize, started: Instant, outcome: Outcome) {
        let s = &self.targets[i].stats;
        if outcome == Outcome::Neutral {
            return;
        }
        if outcome == Outcome::Success {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let old = s.ewma_latency_us.load(Ordering::Relaxed);
            let new = if old == 0 { us } else { (old * 4 + us) / 5 };
            s.ewma_latency_us.store(new, Ordering::Relaxed);
            s.consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            let n = s.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            let limit = self.retry.unhealthy_after_failures;
            if limit > 0 && n >= limit {
                s.unhealthy_until_ms
                    .store(self.now_ms() + self.retry.cooldown_ms, Ordering::Relaxed);
                s.consecutive_failures.store(0, Ordering::Relaxed);
                tracing::warn!(target_name = %self.targets[i].name, "target marked unhealthy after repeated failures");
            }
        }
    }

    /// One complete answer, routed per `opts`, with fallbacks and retries.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        opts: &RouteOptions,
    ) -> Result<Routed<ChatResponse>, RouterError> {
        let decision = self.decide(req, opts)?;
        let (value, target, attempts) = self
            .run(&decision, |t| {
                let mut r = req.clone();
                r.model = t.model_for(&req.model);
                let p = t.provider.clone();
                async move { p.chat(&r).await }
            })
            .await?;
        Ok(Routed {
            value,
            decision,
            target,
            attempts,
        })
    }

    /// A streamed answer. Fallbacks and retries apply until a provider accepts the
    /// request; after the first byte, errors arrive in the stream. Silence longer than
    /// `stream_idle_timeout_ms` ends the stream with a timeout error.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        opts: &RouteOptions,
    ) -> Result<Routed<ChatStream>, RouterError> {
        let decision = self.decide(req, opts)?;
        let (stream, target, attempts) = self
            .run(&decision, |t| {
                let mut r = req.clone();
                r.model = t.model_for(&req.model);
                let p = t.provider.clone();
                async move { p.chat_stream(&r).await }
            })
            .await?;
        let idle = Duration::from_millis(self.retry.stream_idle_timeout_ms);
        let i = self.index_of(&target).unwrap_or(0);
        self.targets[i]
            .stats
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        let guard = StreamGuard {
            stats: self.targets[i].stats.clone(),
        };
        let provider = target.clone();
        let wrapped =
            futures::stream::unfold((stream, guard, false), move |(mut inner, guard, done)| {
                let provider = provider.clone();
                async move {
                    if done {
                        return None;
                    }
                    match tokio::time::timeout(idle, inner.next()).await {
                        Ok(Some(Ok(d))) => Some((Ok(d), (inner, guard, false))),
                        Ok(Some(Err(e))) => Some((Err(e), (inner, guard, true))),
                        Ok(None) => None,
                        Err(_) => Some((
                            Err(RouterError::Timeout {
                                provider,
                                after: idle,
                            }),
                            (inner, guard, true),
                        )),
                    }
                }
            });
        Ok(Routed {
            value: Box::pin(wrapped) as ChatStream,
            decision,
            target,
            attempts,
        })
    }

    /// The first target (in configuration order) whose `models` list names `model`;
    /// `name` and `name:latest` are the same model.
    pub fn target_for_model(&self, model: &str) -> Option<&str> {
        if model.is_empty() {
            return None;
        }
        self.targets
            .iter()
            .find(|t| t.models.iter().any(|m| same_model(m, model)))
            .map(|t| t.name.as_str())
    }

    /// `base` with a user override naming the target that lists `model` (see
    /// [`Router::target_for_model`]), unless `base` already overrides: a request for
    /// a model one target serves goes to that target first. An external target must
    /// still be allowed by the routing settings.
    pub fn options_for_model(&self, base: &RouteOptions, model: &str) -> RouteOptions {
        let mut opts = base.clone();
        if opts.user_override.is_none() {
            opts.user_override = self.target_for_model(model).map(str::to_string);
        }
        opts
    }

    /// Models to advertise: each target's configured `models`, or, for a target that
    /// lists none, what its provider reports (a provider that fails to answer
    /// contributes nothing). Tagged with the target name; no duplicates.
    pub async fn available_models(&self) -> Vec<ModelInfo> {
        let futs = self.targets.iter().map(|t| async move {
            if !t.models.is_empty() {
                return t
                    .models
                    .iter()
                    .map(|m| ModelInfo {
                        id: m.clone(),
                        provider: t.name.clone(),
                    })
                    .collect();
            }
            match t.provider.list_models().await {
                Ok(list) => list
                    .into_iter()
                    .map(|m| ModelInfo {
                        id: m.id,
                        provider: t.name.clone(),
                    })
                    .collect(),
                Err(e) => {
                    tracing::debug!(target_name = %t.name, kind = e.kind(), "listing models failed");
                    Vec::new()
                }
            }
        });
        let mut out: Vec<ModelInfo> = Vec::new();
        for list in futures::future::join_all(futs).await {
            for m in list {
                if !out.iter().any(|o| o.id == m.id) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Models of every target, tagged with the target name; a target that fails to
    /// answer contributes its error instead.
    pub async fn list_models(&self) -> Vec<(String, Result<Vec<ModelInfo>, RouterError>)> {
        let futs = self
            .targets
            .iter()
            .map(|t| async move { (t.name.clone(), t.provider.list_models().await) });
        futures::future::join_all(futs).await
    }

    /// Tries the decision's targets within the retry budget.
    async fn run<T, F, Fut>(
        &self,
        decision: &RoutingDecision,
        mut attempt: F,
    ) -> Result<(T, String, u32), RouterError>
    where
        F: FnMut(&Target) -> Fut,
        Fut: std::future::Future<Output = Result<T, RouterError>>,
    {
        let started = Instant::now();
        let overall = Duration::from_millis(self.retry.overall_timeout_ms);
        let per_attempt = Duration::from_millis(self.retry.attempt_timeout_ms);
        let order: Vec<usize> = decision
            .targets
            .iter()
            .filter_map(|t| self.index_of(&t.name))
            .collect();
        if order.is_empty() {
            return Err(RouterError::NoInferencePath {
                reasons: decision.reasons.clone(),
            });
        }
        let mut dead = vec![false; order.len()];
        let mut tried = vec![0u32; order.len()];
        let mut pos = 0usize;
        let mut attempts = 0u32;
        let mut last: Option<RouterError> = None;
        let mut backoff = Duration::from_millis(self.retry.backoff_initial_ms);
        let backoff_max = Duration::from_millis(self.retry.backoff_max_ms);

        while attempts < self.retry.max_attempts {
            // Next live target, starting at `pos`.
            let Some(slot) = (0..order.len())
                .map(|k| (pos + k) % order.len())
                .find(|&k| !dead[k])
            else {
                break;
            };
            let i = order[slot];
            let target = &self.targets[i];
            if tried[slot] > 0 {
                // Retrying a target already tried: back off first.
                let mut wait = backoff;
                if let Some(RouterError::RateLimited {
                    retry_after: Some(ra),
                    ..
                }) = &last
                {
                    wait = wait.max(*ra);
                }
                if started.elapsed() + wait >= overall {
                    break;
                }
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(backoff_max);
            }
            let remaining = overall.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            let budget = per_attempt.min(remaining);
            attempts += 1;
            tried[slot] += 1;
            target.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let res = tokio::time::timeout(budget, attempt(target)).await;
            target.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            let err = match res {
                Ok(Ok(v)) => {
                    self.record(i, t0, Outcome::Success);
                    return Ok((v, target.name.clone(), attempts));
                }
                Ok(Err(e)) => e,
                Err(_) => RouterError::Timeout {
                    provider: target.name.clone(),
                    after: budget,
                },
            };
            // Only transport-level failures count against a target's health; a refused
            // key or an unknown model says nothing about its load.
            self.record(
                i,
                t0,
                if err.is_retryable() {
                    Outcome::Failure
                } else {
                    Outcome::Neutral
                },
            );
            tracing::debug!(target_name = %target.name, kind = err.kind(), attempt = attempts, "model call failed");
            if !err.allows_fallback() {
                return Err(if attempts == 1 {
                    err
                } else {
                    RouterError::Exhausted {
                        attempts,
                        last: Box::new(err),
                    }
                });
            }
            if !err.is_retryable() {
                dead[slot] = true;
            }
            pos = slot + 1;
            last = Some(err);
        }
        let last = last.unwrap_or(RouterError::Timeout {
            provider: "router".into(),
            after: overall,
        });
        Err(RouterError::Exhausted {
            attempts,
            last: Box::new(last),
        })
    }
}
