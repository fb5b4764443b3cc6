//! Placement of jobs on worker nodes: a pure function over node descriptions.
//!
//! A node is eligible for a job when it is dispatchable, can run sandboxes, has a free
//! slot (`in_flight < max_concurrency`) and has what the job requires: inference (only
//! on a node that is not sandbox-only and whose inference is usable), a GPU, a container
//! runtime, labels. Among eligible nodes the preferred one (co-location with an earlier
//! job of the same affinity key) wins; otherwise the least loaded, then the slug. When
//! no node is eligible the answer is a reason a user can read, which the scheduler
//! stores on the waiting job.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::NodeId;

/// What a job needs from a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Requirements {
    /// Needs inference on the node (e.g. `use_inference` or an `agent_inference` runner).
    pub inference: bool,
    /// Needs a GPU.
    pub gpu: bool,
    /// Needs this container runtime (`podman`, `docker`).
    pub runtime: Option<String>,
    /// Needs every one of these labels.
    pub labels: Vec<String>,
    /// Prefer the node an earlier job with the same affinity key was placed on.
    pub colocate: bool,
}

/// A node as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Id.
    pub id: NodeId,
    /// Slug (tie-breaker and name in reasons).
    pub slug: String,
    /// Active, configuration applied, reachable (see the node protocol).
    pub dispatchable: bool,
    /// Labels (`sandbox_only`, `gpu`, `orchestrator_host`, ...).
    pub labels: Vec<String>,
    /// Can run sandbox containers.
    pub sandbox_supported: bool,
    /// Jobs it runs at once.
    pub max_concurrency: u32,
    /// Jobs running on it now.
    pub in_flight: u32,
    /// Inference is usable (running or enabled, and the node is not sandbox-only).
    pub inference: bool,
    /// Has a GPU.
    pub gpu: bool,
    /// Container runtime.
    pub runtime: Option<String>,
}

/// Default `sandbox.max_concurrency` when a report does not give one.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 4;

impl NodeInfo {
    /// Reads a node capability report (`node_capability_report_v1`): labels, sandbox
    /// support and concurrency, inference, GPU and runtime. Missing fields take the
    /// conservative value (no sandbox, no inference, no GPU). `in_flight` starts at 0.
    pub fn from_report(
        id: NodeId,
        slug: impl Into<String>,
        dispatchable: bool,
        report: &Value,
    ) -> Self {
        let labels: Vec<String> = report
            .pointer("/node/labels")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let flag = |p: &str| report.pointer(p).and_then(Value::as_bool).unwrap_or(false);
        let sandbox_only = labels.iter().any(|l| l == "sandbox_only");
        let mode = report
            .pointer("/inference/mode")
            .and_then(Value::as_str)
            .unwrap_or("allow");
        let inference = !sandbox_only
            && mode != "disabled"
            && (flag("/inference/supported")
                || flag("/inference/running")
                || flag("/inference/existing_service"));
        let max_concurrency = report
            .pointer("/sandbox/max_concurrency")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_CONCURRENCY);
        let gpu = flag("/gpu/present")
            || report
                .pointer("/gpu/devices")
                .and_then(Value::as_array)
                .is_some_and(|d| !d.is_empty());
        Self {
            id,
            slug: slug.into(),
            dispatchable,
            labels,
            sandbox_supported: flag("/sandbox/supported"),
            max_concurrency,
            in_flight: 0,
            inference,
            gpu,
            runtime: report
                .pointer("/container_runtime/runtime")
                .and_then(Value::as_str)
                .map(String::from),
        }
    }

    /// Carries the `sandbox_only` label.
    pub fn is_sandbox_only(&self) -> bool {
        self.labels.iter().any(|l| l == "sandbox_only")
    }

    /// Why this node cannot take a job with `req`, or `None` when it can.
    pub fn refusal(&self, req: &Requirements) -> Option<String> {
        let mut why = Vec::new();
        if !self.dispatchable {
            why.push("not dispatchable".to_string());
        }
        if !self.sandbox_supported {
            why.push("cannot run sandboxes".to_string());
        }
        if self.in_flight >= self.max_concurrency {
            why.push(format!(
                "busy ({}/{} jobs)",
                self.in_flight, self.max_concurrency
            ));
        }
        if req.inference && !self.inference {
            why.push(if self.is_sandbox_only() {
                "sandbox-only (no inference)".to_string()
            } else {
                "no inference available".to_string()
            });
        }
        if req.gpu && !self.gpu {
            why.push("no GPU".to_string());
        }
        if let Some(rt) = &req.runtime
            && self.runtime.as_deref() != Some(rt.as_str())
        {
            why.push(format!(
                "runtime is {}, not {rt}",
                self.runtime.as_deref().unwrap_or("unknown")
            ));
        }
        let missing: Vec<&str> = req
            .labels
            .iter()
            .filter(|l| !self.labels.contains(l))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            why.push(format!("missing label {}", missing.join(", ")));
        }
        if why.is_empty() {
            None
        } else {
            Some(why.join(", "))
        }
    }
}

/// Chooses a node for a job, or says in plain words why none can take it.
///
/// `preferred` (co-location) wins when it is eligible; otherwise the eligible node with
/// the fewest jobs in flight, then the smallest slug.
pub fn place(
    req: &Requirements,
    nodes: &[NodeInfo],
    preferred: Option<NodeId>,
) -> Result<NodeId, String> {
    let eligible = || nodes.iter().filter(|n| n.refusal(req).is_none());
    if let Some(p) = preferred
        && eligible().any(|n| n.id == p)
    {
        return Ok(p);
    }
    if let Some(best) =
        eligible().min_by(|a, b| (a.in_flight, &a.slug, a.id).cmp(&(b.in_flight, &b.slug, b.id)))
    {
        return Ok(best.id);
    }
    Err(unplaceable_reason(req, nodes))
}

/// The reason text for a job no node can take.
fn unplaceable_reason(req: &Requirements, nodes: &[NodeInfo]) -> String {
    let mut needs = Vec::new();
    if req.inference {
        needs.push("inference".to_string());
    }
    if req.gpu {
        needs.push("a GPU".to_string());
    }
    if let Some(rt) = &req.runtime {
        needs.push(format!("runtime {rt}"));
    }
    if !req.labels.is_empty() {
        needs.push(format!("labels {}", req.labels.join(", ")));
    }
    let needs = if needs.is_empty() {
        String::new()
    } else {
        format!(" (needs {})", needs.join("; "))
    };
    if nodes.is_empty() {
        return format!("waiting for a worker node{needs}: no node is registered");
    }
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.slug.cmp(&b.slug));
    const SHOWN: usize = 8;
    let mut s = format!("waiting for a worker node{needs}: ");
    for (i, n) in sorted.iter().take(SHOWN).enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        let _ = write!(s, "{}: {}", n.slug, n.refusal(req).unwrap_or_default());
    }
    if sorted.len() > SHOWN {
        let _ = write!(s, "; and {} more", sorted.len() - SHOWN);
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(slug: &str, in_flight: u32) -> NodeInfo {
        NodeInfo {
            id: NodeId::new(),
            slug: slug.into(),
            dispatchable: true,
            labels: vec![],
            sandbox_supported: true,
            max_concurrency: 4,
            in_flight,
            inference: true,
            gpu: false,
            runtime: Some("podman".into()),
        }
    }

    #[test]
    fn least_loaded_then_slug() {
        let nodes = vec![node("b", 1), node("a", 1), node("c", 0)];
        assert_eq!(
            place(&Requirements::default(), &nodes, None),
            Ok(nodes[2].id)
        );
        let nodes = vec![node("b", 1), node("a", 1)];
        assert_eq!(
            place(&Requirements::default(), &nodes, None),
            Ok(nodes[1].id)
        );
    }

    #[test]
    fn colocation_wins_when_eligible_only() {
        let mut nodes = vec![node("a", 0), node("b", 3)];
        let req = Requirements {
            colocate: true,
            ..Default::default()
        };
        assert_eq!(place(&req, &nodes, Some(nodes[1].id)), Ok(nodes[1].id));
        nodes[1].in_flight = 4;
        assert_eq!(place(&req, &nodes, Some(nodes[1].id)), Ok(nodes[0].id));
    }

    #[test]
    fn inference_jobs_skip_sandbox_only_nodes_and_say_why() {
        let mut so = node("edge", 0);
        so.labels = vec!["sandbox_only".into()];
        so.inference = false;
        let mut full = node("gpu-1", 4);
        full.gpu = true;
        let req = Requirements {
            inference: true,
            ..Default::default()
        };
        let reason = place(&req, &[so.clone(), full.clone()], None).unwrap_err();
        assert_eq!(
            reason,
            "waiting for a worker node (needs inference): edge: sandbox-only (no inference); gpu-1: busy (4/4 jobs)"
        );
        // A sandbox-only node still takes jobs that need no inference.
        assert_eq!(
            place(&Requirements::default(), &[so.clone()], None),
            Ok(so.id)
        );
        assert_eq!(
            place(&req, &[], None).unwrap_err(),
            "waiting for a worker node (needs inference): no node is registered"
        );
    }

    #[test]
    fn gpu_runtime_and_labels_filter() {
        let mut a = node("a", 0);
        a.labels = vec!["region_eu".into()];
        let mut b = node("b", 2);
        b.gpu = true;
        b.labels = vec!["region_eu".into()];
        b.runtime = Some("docker".into());
        let req = Requirements {
            gpu: true,
            labels: vec!["region_eu".into()],
            ..Default::default()
        };
        assert_eq!(place(&req, &[a.clone(), b.clone()], None), Ok(b.id));
        let req = Requirements {
            gpu: true,
            runtime: Some("podman".into()),
            ..Default::default()
        };
        let why = place(&req, &[a, b], None).unwrap_err();
        assert!(why.contains("a: no GPU"), "{why}");
        assert!(why.contains("b: runtime is docker, not podman"), "{why}");
    }

    #[test]
    fn reads_a_capability_report() {
        let report = json!({
            "version": 1,
            "node": {"node_slug": "n1", "labels": ["gpu", "region_eu"]},
            "container_runtime": {"runtime": "podman"},
            "gpu": {"present": true, "devices": [{"vendor": "nvidia"}]},
            "sandbox": {"supported": true, "max_concurrency": 8},
            "inference": {"supported": true, "mode": "allow"}
        });
        let n = NodeInfo::from_report(NodeId::new(), "n1", true, &report);
        assert!(n.inference && n.gpu && n.sandbox_supported);
        assert_eq!(n.max_concurrency, 8);
        assert_eq!(n.runtime.as_deref(), Some("podman"));
        let so = json!({"node": {"labels": ["sandbox_only"]}, "inference": {"supported": true},
                        "sandbox": {"supported": true}});
        let n = NodeInfo::from_report(NodeId::new(), "n2", true, &so);
        assert!(!n.inference);
        assert_eq!(n.max_concurrency, DEFAULT_MAX_CONCURRENCY);
        let disabled = json!({"inference": {"supported": true, "mode": "disabled"}});
        assert!(!NodeInfo::from_report(NodeId::new(), "n3", true, &disabled).inference);
    }
}
