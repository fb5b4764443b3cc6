//! Local-versus-external routing: preferences, request options and the pure decision
//! procedure of the routing contract (settings, policy, user override, prefer-local
//! with overload detection, external fallback order with budgets, queue-or-fail).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::RouterError;

/// Which agent a request is for; selects the agent-specific routing keys. PM keys are
/// never applied to a PA request and vice versa.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentRole {
    /// `agents.project_manager.model_routing.*`.
    ProjectManager,
    /// `agents.project_analyst.model_routing.*`.
    ProjectAnalyst,
}

impl AgentRole {
    fn prefix(self) -> &'static str {
        match self {
            AgentRole::ProjectManager => "agents.project_manager.model_routing.",
            AgentRole::ProjectAnalyst => "agents.project_analyst.model_routing.",
        }
    }
}

/// Effective routing settings for one caller (typed values of the `model_routing.*`
/// keys). Defaults: prefer local, no external providers, no limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingPrefs {
    /// `model_routing.prefer_local`.
    pub prefer_local: bool,
    /// `model_routing.allowed_external_providers` (lower-case provider ids).
    pub allowed_external_providers: Vec<String>,
    /// `model_routing.fallback_provider_order`.
    pub fallback_provider_order: Vec<String>,
    /// `model_routing.overload.queue_depth_threshold`: a local target with this many
    /// queued or running requests is overloaded.
    pub queue_depth_threshold: Option<u32>,
    /// `model_routing.overload.latency_seconds_threshold`: a local target whose recent
    /// latency reaches this is overloaded.
    pub latency_seconds_threshold: Option<f64>,
    /// `model_routing.max_external_tokens`: requests estimated above this never go
    /// external.
    pub max_external_tokens: Option<u64>,
    /// `model_routing.max_external_cost_usd`: requests whose estimated cost on a
    /// provider exceeds this do not go to that provider.
    pub max_external_cost_usd: Option<f64>,
}

impl Default for RoutingPrefs {
    fn default() -> Self {
        RoutingPrefs {
            prefer_local: true,
            allowed_external_providers: Vec::new(),
            fallback_provider_order: Vec::new(),
            queue_depth_threshold: None,
            latency_seconds_threshold: None,
            max_external_tokens: None,
            max_external_cost_usd: None,
        }
    }
}

impl RoutingPrefs {
    /// Resolves the effective settings: for `prefer_local`, `allowed_external_providers`
    /// and `fallback_provider_order` the agent-specific key first (when `role` is
    /// given), then the global `model_routing.*` key, then the default; the other keys
    /// are global only. `lookup` returns the already-resolved value of a key
    /// (preference with its scope precedence, else system setting). Values of the wrong
    /// type are ignored with a warning, so a mistyped setting cannot break routing.
    pub fn resolve(role: Option<AgentRole>, lookup: impl Fn(&str) -> Option<Value>) -> Self {
        let get = |suffix: &str, agent_specific: bool| -> Option<Value> {
            if agent_specific
                && let Some(r) = role
                && let Some(v) = lookup(&format!("{}{suffix}", r.prefix()))
            {
                return Some(v);
            }
            lookup(&format!("model_routing.{suffix}"))
        };
        let warn = |key: &str| tracing::warn!(key, "ignoring routing setting of the wrong type");
        let mut p = RoutingPrefs::default();
        if let Some(v) = get("prefer_local", true) {
            match v.as_bool() {
                Some(b) => p.prefer_local = b,
                None => warn("prefer_local"),
            }
        }
        for (suffix, slot) in [
            (
                "allowed_external_providers",
                &mut p.allowed_external_providers,
            ),
            ("fallback_provider_order", &mut p.fallback_provider_order),
        ] {
            if let Some(v) = get(suffix, true) {
                match string_list(&v) {
                    Some(list) => *slot = list,
                    None => warn(suffix),
                }
            }
        }
        if let Some(v) = get("overload.queue_depth_threshold", false) {
            match v.as_u64() {
                Some(n) => p.queue_depth_threshold = Some(u32::try_from(n).unwrap_or(u32::MAX)),
                None => warn("overload.queue_depth_threshold"),
            }
        }
        if let Some(v) = get("overload.latency_seconds_threshold", false) {
            match v.as_f64() {
                Some(n) => p.latency_seconds_threshold = Some(n),
                None => warn("overload.latency_seconds_threshold"),
            }
        }
        if let Some(v) = get("max_external_tokens", false) {
            match v.as_u64() {
                Some(n) => p.max_external_tokens = Some(n),
                None => warn("max_external_tokens"),
            }
        }
        if let Some(v) = get("max_external_cost_usd", false) {
            match v.as_f64() {
                Some(n) => p.max_external_cost_usd = Some(n),
                None => warn("max_external_cost_usd"),
            }
        }
        p
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(|s| s.trim().to_ascii_lowercase()))
        .collect()
}

/// What a request needs from a target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Requirements {
    /// Minimum context window in tokens.
    pub min_context_length: Option<u32>,
    /// Needs tool calling.
    pub tool_use: bool,
    /// Needs image input.
    pub vision: bool,
    /// Needs a GPU.
    pub gpu: bool,
}

/// What a target offers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// Context window in tokens (unknown = assumed sufficient).
    pub context_length: Option<u32>,
    /// Supports tool calling.
    pub tool_use: bool,
    /// Supports image input.
    pub vision: bool,
    /// Runs on a GPU.
    pub gpu: bool,
}

impl Capabilities {
    /// Whether these capabilities satisfy `req`.
    pub fn satisfies(&self, req: &Requirements) -> bool {
        let ctx_ok = match (req.min_context_length, self.context_length) {
            (Some(need), Some(have)) => have >= need,
            _ => true,
        };
        ctx_ok
            && (!req.tool_use || self.tool_use)
            && (!req.vision || self.vision)
            && (!req.gpu || self.gpu)
    }
}

/// Prices used for `max_external_cost_usd`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// USD per 1000 prompt tokens.
    pub usd_per_1k_input: f64,
    /// USD per 1000 generated tokens.
    pub usd_per_1k_output: f64,
}

/// Per-request routing input besides the preferences.
#[derive(Clone, Debug, Default)]
pub struct RouteOptions {
    /// Effective routing settings.
    pub prefs: RoutingPrefs,
    /// `true` when policy forbids external inference for this user/project/task.
    pub external_forbidden: bool,
    /// "Use provider X": a target name the user asked for.
    pub user_override: Option<String>,
    /// What the request needs.
    pub requirements: Requirements,
    /// External providers for which the subject holds an active credential; `None`
    /// skips the check (e.g. the provider itself holds the key).
    pub credentialed_providers: Option<Vec<String>>,
    /// Estimated prompt tokens (for budgets); `None` = use the request's estimate.
    pub estimated_prompt_tokens: Option<u64>,
    /// Expected completion tokens (for cost estimates).
    pub expected_completion_tokens: Option<u64>,
}

/// Where a target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// A worker node's local inference.
    Local,
    /// An external provider.
    External,
}

/// Why the router chose what it chose, in order. Stable snake_case names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReasonCode {
    /// A user override named the chosen target.
    UserOverride,
    /// The override named a provider that policy or settings do not allow.
    OverrideNotAllowed,
    /// The override named an unknown, incapable or uncredentialed target.
    OverrideUnavailable,
    /// A capable local target was free and local is preferred.
    LocalPreferred,
    /// Settings do not prefer local.
    PreferExternal,
    /// No local target exists.
    NoLocalInference,
    /// Local targets exist but none satisfies the requirements (or all are unhealthy).
    NoCapableWorker,
    /// Every capable local target is overloaded.
    Overloaded,
    /// An eligible external provider was chosen.
    ExternalAllowed,
    /// Policy forbids external inference.
    PolicyDenied,
    /// External providers are allowed but none is eligible (not configured, not
    /// allowed, or without a credential).
    NoExternalProvider,
    /// The request exceeds `max_external_tokens` or `max_external_cost_usd`.
    ExternalBudgetExceeded,
    /// An overloaded local target was chosen (the request queues).
    LocalQueued,
}

/// A target as the decision procedure sees it at one instant.
#[derive(Clone, Debug)]
pub struct TargetView {
    /// Target name.
    pub name: String,
    /// Local or external.
    pub location: Location,
    /// What it offers.
    pub capabilities: Capabilities,
    /// Prices (external targets).
    pub pricing: Option<Pricing>,
    /// Not in a failure cool-down.
    pub healthy: bool,
    /// Requests queued or running.
    pub queue_depth: u32,
    /// Recent latency in seconds (0 when unknown).
    pub recent_latency_s: f64,
}

/// One target of a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTarget {
    /// Target name.
    pub name: String,
    /// Local or external.
    pub location: Location,
}

/// The outcome of routing: targets in the order they will be tried (the first is the
/// choice, the rest are fallbacks) and the reasons, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingDecision {
    /// Primary target first, then fallbacks.
    pub targets: Vec<RouteTarget>,
    /// Reason codes, in the order they arose.
    pub reasons: Vec<ReasonCode>,
}

impl RoutingDecision {
    /// The chosen target.
    pub fn primary(&self) -> Option<&RouteTarget> {
        self.targets.first()
    }
}

fn push_unique(targets: &mut Vec<RouteTarget>, t: &TargetView) {
    if !targets.iter().any(|x| x.name == t.name) {
        targets.push(RouteTarget {
            name: t.name.clone(),
            location: t.location,
        });
    }
}

fn push_reason(reasons: &mut Vec<ReasonCode>, r: ReasonCode) {
    if !reasons.contains(&r) {
        reasons.push(r);
    }
}

/// The routing decision for one request (pure; no I/O).
///
/// 1. External is ineligible when policy forbids it or no provider is allowed.
/// 2. A user override naming a capable local target, or an eligible external
///    provider, wins.
/// 3. With `prefer_local`, the least-loaded capable, healthy, not-overloaded local
///    target wins.
/// 4. Otherwise the first eligible external provider in `fallback_provider_order`
///    (then the rest of `allowed_external_providers`), skipping providers not
///    configured, not allowed, without a credential, or over the token/cost budget.
/// 5. Otherwise a free local target (when local was not preferred), then an overloaded
///    one (the request queues); else the request fails with a policy error (when only
///    an external path could have served it) or "no inference path".
///
/// Targets after the first are fallbacks, in the same order of preference.
pub fn decide(
    opts: &RouteOptions,
    targets: &[TargetView],
    estimated_prompt_tokens: u64,
) -> Result<RoutingDecision, RouterError> {
    let prefs = &opts.prefs;
    let mut reasons = Vec::new();
    let allowed: Vec<String> = prefs
        .allowed_external_providers
        .iter()
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();

    // Local candidates.
    let locals: Vec<&TargetView> = targets
        .iter()
        .filter(|t| t.location == Location::Local)
        .collect();
    let mut capable: Vec<&TargetView> = locals
        .iter()
        .copied()
        .filter(|t| t.healthy && t.capabilities.satisfies(&opts.requirements))
        .collect();
    capable.sort_by(|a, b| {
        a.queue_depth
            .cmp(&b.queue_depth)
            .then_with(|| a.name.cmp(&b.name))
    });
    let overloaded = |t: &TargetView| {
        prefs
            .queue_depth_threshold
            .is_some_and(|q| t.queue_depth >= q)
            || prefs
                .latency_seconds_threshold
                .is_some_and(|l| t.recent_latency_s >= l)
    };
    let (free_locals, busy_locals): (Vec<&TargetView>, Vec<&TargetView>) =
        capable.iter().copied().partition(|t| !overloaded(t));

    // External candidates.
    let external_forbidden = opts.external_forbidden;
    let completion = opts.expected_completion_tokens.unwrap_or(0);
    let mut budget_hit = false;
    let mut eligible = |t: &TargetView| -> bool {
        if t.location != Location::External
            || !t.healthy
            || !t.capabilities.satisfies(&opts.requirements)
        {
            return false;
        }
        if !allowed.contains(&t.name) {
            return false;
        }
        if let Some(creds) = &opts.credentialed_providers
            && !creds.iter().any(|c| c.eq_ignore_ascii_case(&t.name))
        {
            return false;
        }
        if prefs
            .max_external_tokens
            .is_some_and(|max| estimated_prompt_tokens + completion > max)
        {
            budget_hit = true;
            return false;
        }
        if let (Some(max), Some(p)) = (prefs.max_external_cost_usd, t.pricing) {
            let cost = estimated_prompt_tokens as f64 / 1000.0 * p.usd_per_1k_input
                + completion as f64 / 1000.0 * p.usd_per_1k_output;
            if cost > max {
                budget_hit = true;
                return false;
            }
        }
        true
    };
    let mut externals: Vec<&TargetView> = Vec::new();
    if !external_forbidden {
        let order = prefs
            .fallback_provider_order
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .chain(allowed.iter().cloned());
        for name in order {
            if externals.iter().any(|t| t.name == name) {
                continue;
            }
            if let Some(t) = targets
                .iter()
                .find(|t| t.location == Location::External && t.name == name)
                && eligible(t)
            {
                externals.push(t);
            }
        }
    }

    let mut chosen: Vec<RouteTarget> = Vec::new();

    // User override.
    if let Some(o) = opts
        .user_override
        .as_deref()
        .map(|o| o.trim().to_ascii_lowercase())
    {
        if let Some(t) = capable.iter().find(|t| t.name.eq_ignore_ascii_case(&o)) {
            push_unique(&mut chosen, t);
            push_reason(&mut reasons, ReasonCode::UserOverride);
        } else if let Some(t) = externals.iter().find(|t| t.name == o) {
            push_unique(&mut chosen, t);
            push_reason(&mut reasons, ReasonCode::UserOverride);
        } else if targets
            .iter()
            .any(|t| t.location == Location::External && t.name == o)
            && (external_forbidden || !allowed.contains(&o))
        {
            push_reason(&mut reasons, ReasonCode::OverrideNotAllowed);
        } else {
            push_reason(&mut reasons, ReasonCode::OverrideUnavailable);
        }
    }

    if locals.is_empty() {
        push_reason(&mut reasons, ReasonCode::NoLocalInference);
    } else if capable.is_empty() {
        push_reason(&mut reasons, ReasonCode::NoCapableWorker);
    } else if free_locals.is_empty() {
        push_reason(&mut reasons, ReasonCode::Overloaded);
    }
    if external_forbidden {
        push_reason(&mut reasons, ReasonCode::PolicyDenied);
    } else if externals.is_empty() && !allowed.is_empty() {
        push_reason(&mut reasons, ReasonCode::NoExternalProvider);
    }
    if budget_hit {
        push_reason(&mut reasons, ReasonCode::ExternalBudgetExceeded);
    }

    let overridden = !chosen.is_empty();
    if prefs.prefer_local {
        if !free_locals.is_empty() && !overridden {
            push_reason(&mut reasons, ReasonCode::LocalPreferred);
        }
        free_locals.iter().for_each(|t| push_unique(&mut chosen, t));
        if !externals.is_empty() && chosen.is_empty() {
            push_reason(&mut reasons, ReasonCode::ExternalAllowed);
        }
        externals.iter().for_each(|t| push_unique(&mut chosen, t));
    } else {
        push_reason(&mut reasons, ReasonCode::PreferExternal);
        if !externals.is_empty() && !overridden {
            push_reason(&mut reasons, ReasonCode::ExternalAllowed);
        }
        externals.iter().for_each(|t| push_unique(&mut chosen, t));
        free_locals.iter().for_each(|t| push_unique(&mut chosen, t));
    }
    if chosen.is_empty() && !busy_locals.is_empty() {
        push_reason(&mut reasons, ReasonCode::LocalQueued);
    }
    busy_locals.iter().for_each(|t| push_unique(&mut chosen, t));

    if chosen.is_empty() {
        let external_could_serve = targets.iter().any(|t| t.location == Location::External);
        return Err(if external_forbidden && external_could_serve {
            RouterError::PolicyDenied { reasons }
        } else {
            RouterError::NoInferencePath { reasons }
        });
    }
    Ok(RoutingDecision {
        targets: chosen,
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn local(name: &str, queue: u32) -> TargetView {
        TargetView {
            name: name.into(),
            location: Location::Local,
            capabilities: Capabilities {
                context_length: Some(8192),
                ..Default::default()
            },
            pricing: None,
            healthy: true,
            queue_depth: queue,
            recent_latency_s: 0.0,
        }
    }

    fn external(name: &str) -> TargetView {
        TargetView {
            name: name.into(),
            location: Location::External,
            capabilities: Capabilities {
                context_length: Some(128_000),
                tool_use: true,
                ..Default::default()
            },
            pricing: Some(Pricing {
                usd_per_1k_input: 0.01,
                usd_per_1k_output: 0.03,
            }),
            healthy: true,
            queue_depth: 0,
            recent_latency_s: 0.0,
        }
    }

    fn names(d: &RoutingDecision) -> Vec<&str> {
        d.targets.iter().map(|t| t.name.as_str()).collect()
    }

    fn opts(allowed: &[&str], order: &[&str]) -> RouteOptions {
        RouteOptions {
            prefs: RoutingPrefs {
                allowed_external_providers: allowed.iter().map(|s| s.to_string()).collect(),
                fallback_provider_order: order.iter().map(|s| s.to_string()).collect(),
                queue_depth_threshold: Some(4),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_local_only() {
        let d = decide(
            &RouteOptions::default(),
            &[local("w1", 0), external("openai")],
            10,
        )
        .unwrap();
        assert_eq!(names(&d), ["w1"]);
        assert_eq!(d.reasons, [ReasonCode::LocalPreferred]);
        let e = decide(&RouteOptions::default(), &[external("openai")], 10).unwrap_err();
        assert!(
            matches!(e, RouterError::NoInferencePath { ref reasons } if reasons == &[ReasonCode::NoLocalInference])
        );
    }

    #[test]
    fn prefer_local_picks_least_loaded_then_falls_back_external() {
        let o = opts(&["openai", "anthropic"], &["anthropic", "openai"]);
        let d = decide(
            &o,
            &[
                local("w2", 1),
                local("w1", 2),
                external("openai"),
                external("anthropic"),
            ],
            10,
        )
        .unwrap();
        assert_eq!(names(&d), ["w2", "w1", "anthropic", "openai"]);
        assert_eq!(d.reasons, [ReasonCode::LocalPreferred]);
    }

    #[test]
    fn overloaded_locals_go_external_then_queue() {
        let o = opts(&["openai"], &["openai"]);
        let d = decide(&o, &[local("w1", 4), external("openai")], 10).unwrap();
        assert_eq!(names(&d), ["openai", "w1"]);
        assert_eq!(
            d.reasons,
            [ReasonCode::Overloaded, ReasonCode::ExternalAllowed]
        );
        // Latency threshold also counts as overload.
        let mut o2 = opts(&["openai"], &[]);
        o2.prefs.latency_seconds_threshold = Some(2.0);
        let mut slow = local("w1", 0);
        slow.recent_latency_s = 3.0;
        let d = decide(&o2, &[slow.clone(), external("openai")], 10).unwrap();
        assert_eq!(names(&d), ["openai", "w1"]);
        // No external eligible: queue on the overloaded local.
        let d = decide(&opts(&[], &[]), &[local("w1", 9)], 10).unwrap();
        assert_eq!(names(&d), ["w1"]);
        assert_eq!(d.reasons, [ReasonCode::Overloaded, ReasonCode::LocalQueued]);
    }

    #[test]
    fn policy_denial_and_override() {
        let mut o = opts(&["openai"], &["openai"]);
        o.external_forbidden = true;
        let e = decide(&o, &[external("openai")], 10).unwrap_err();
        assert!(matches!(e, RouterError::PolicyDenied { .. }));
        // Override of a forbidden provider is ignored; local is used.
        o.user_override = Some("OpenAI".into());
        let d = decide(&o, &[local("w1", 0), external("openai")], 10).unwrap();
        assert_eq!(names(&d), ["w1"]);
        assert_eq!(d.reasons[0], ReasonCode::OverrideNotAllowed);
        // Allowed override wins over prefer_local.
        let mut o = opts(&["openai"], &[]);
        o.user_override = Some("openai".into());
        let d = decide(&o, &[local("w1", 0), external("openai")], 10).unwrap();
        assert_eq!(names(&d), ["openai", "w1"]);
        assert_eq!(d.reasons, [ReasonCode::UserOverride]);
    }

    #[test]
    fn credentials_capabilities_and_budgets_filter_externals() {
        let mut o = opts(&["openai", "anthropic"], &["openai", "anthropic"]);
        o.prefs.prefer_local = false;
        o.credentialed_providers = Some(vec!["anthropic".into()]);
        let d = decide(
            &o,
            &[local("w1", 0), external("openai"), external("anthropic")],
            10,
        )
        .unwrap();
        assert_eq!(names(&d), ["anthropic", "w1"]);
        assert_eq!(
            d.reasons,
            [ReasonCode::PreferExternal, ReasonCode::ExternalAllowed]
        );

        o.credentialed_providers = None;
        o.prefs.max_external_tokens = Some(100);
        let d = decide(&o, &[local("w1", 0), external("openai")], 500).unwrap();
        assert_eq!(names(&d), ["w1"]);
        assert!(d.reasons.contains(&ReasonCode::ExternalBudgetExceeded));

        o.prefs.max_external_tokens = None;
        o.prefs.max_external_cost_usd = Some(0.001);
        let d = decide(&o, &[external("openai")], 1000);
        assert!(
            matches!(d, Err(RouterError::NoInferencePath { ref reasons }) if reasons.contains(&ReasonCode::ExternalBudgetExceeded))
        );

        // Requirements: tool use only external offers.
        let mut o = opts(&["openai"], &[]);
        o.requirements.tool_use = true;
        let d = decide(&o, &[local("w1", 0), external("openai")], 10).unwrap();
        assert_eq!(names(&d), ["openai"]);
        assert_eq!(
            d.reasons,
            [ReasonCode::NoCapableWorker, ReasonCode::ExternalAllowed]
        );
    }

    #[test]
    fn prefs_resolve_agent_keys_first() {
        let settings = json!({
            "model_routing.prefer_local": true,
            "model_routing.allowed_external_providers": ["openai"],
            "agents.project_manager.model_routing.prefer_local": false,
            "agents.project_manager.model_routing.fallback_provider_order": ["Anthropic", "openai"],
            "model_routing.overload.queue_depth_threshold": 3,
            "model_routing.max_external_tokens": "lots",
        });
        let lookup = |k: &str| settings.get(k).cloned();
        let pm = RoutingPrefs::resolve(Some(AgentRole::ProjectManager), lookup);
        assert!(!pm.prefer_local);
        assert_eq!(pm.fallback_provider_order, ["anthropic", "openai"]);
        assert_eq!(pm.allowed_external_providers, ["openai"]);
        assert_eq!(pm.queue_depth_threshold, Some(3));
        assert_eq!(pm.max_external_tokens, None, "mistyped value ignored");
        let pa = RoutingPrefs::resolve(Some(AgentRole::ProjectAnalyst), lookup);
        assert!(pa.prefer_local, "PM keys never apply to PA");
        assert!(pa.fallback_provider_order.is_empty());
    }
}
