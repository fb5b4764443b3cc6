//! Rendering a node's configuration (node protocol §4): the inference decision of
//! §4.3, the content hash, and monotonic ULID versions (§4.5).

use std::collections::BTreeMap;

use cynode_core::model::Timestamp;
use cynode_core::proto::v1::node::{
    CapabilityReport, ConfigEndpoints, ConfigOrchestrator, InferenceBackend, InferenceMode,
    LABEL_SANDBOX_ONLY, ManagedServicesConfig, ModelCache, NodeConfig, WorkerApiConfig,
};
use sha2::{Digest, Sha256};

use super::config::ControlPlaneConfig;

/// Port nodes run their inference service on.
pub const INFERENCE_PORT: u16 = 11434;

/// Sum of the reported devices' VRAM, MiB.
pub fn total_vram_mb(report: &CapabilityReport) -> u64 {
    report
        .gpu
        .as_ref()
        .map(|g| g.devices.iter().filter_map(|d| d.vram_mb).sum())
        .unwrap_or(0)
}

/// Context size for a node's VRAM (egress-and-routing §3.7): 0 → 8192, else the
/// largest power of two ≤ `vram × 0.4 / 50 × 1024`, clamped to 8192..=40960.
pub fn context_size(vram_mb: u64) -> u64 {
    if vram_mb == 0 {
        return 8192;
    }
    // vram * 0.4 / 50 * 1024 = vram * 1024 / 125, computed in integers.
    let raw = vram_mb.saturating_mul(1024) / 125;
    let pow = if raw == 0 {
        0
    } else {
        1u64 << (63 - raw.leading_zeros())
    };
    pow.clamp(8192, 40960)
}

/// First model of the VRAM tier (egress-and-routing §3.5, spec list).
pub fn tier_model(vram_mb: u64) -> &'static str {
    match vram_mb {
        v if v >= 24000 => "qwen3.5:35b",
        v if v >= 8000 => "qwen3.5:9b",
        _ => "qwen3.5:0.8b",
    }
}

/// Variant from the devices' features: `rocm` if any device has `rocm_version`, else
/// `cuda` if any has `cuda_capability`, else `cpu`.
pub fn variant(report: &CapabilityReport) -> &'static str {
    let devices = report
        .gpu
        .as_ref()
        .map(|g| g.devices.as_slice())
        .unwrap_or(&[]);
    let has = |f: fn(&cynode_core::proto::v1::node::GpuFeatures) -> bool| {
        devices.iter().any(|d| d.features.as_ref().is_some_and(f))
    };
    if has(|f| f.rocm_version.as_deref().is_some_and(|s| !s.is_empty())) {
        "rocm"
    } else if has(|f| f.cuda_capability.as_deref().is_some_and(|s| !s.is_empty())) {
        "cuda"
    } else {
        "cpu"
    }
}

/// The `inference_backend` block (§4.3, first match wins):
/// 1. an existing service → `enabled: false` (env and model kept so the node can pull
///    into it); 2. `mode: disabled`, 3. not `supported`, 4. label `sandbox_only`,
/// 5. policy off (unless `mode: require`) → absent; 6. else enabled with variant,
///    port, image, env and selected model.
pub fn inference_backend(
    cfg: &ControlPlaneConfig,
    report: &CapabilityReport,
) -> Option<InferenceBackend> {
    let inf = report.inference.as_ref()?;
    let vram = total_vram_mb(report);
    let ctx = context_size(vram).to_string();
    let env = BTreeMap::from([
        ("OLLAMA_CONTEXT_LENGTH".to_string(), ctx.clone()),
        ("OLLAMA_NUM_CTX".to_string(), ctx),
    ]);
    let model = cfg
        .inference_model
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| tier_model(vram).to_string());
    if inf.existing_service {
        return Some(InferenceBackend {
            enabled: false,
            variant: None,
            port: Some(INFERENCE_PORT),
            image: None,
            env,
            selected_model: Some(model),
        });
    }
    let mode = inf.effective_mode();
    if mode == InferenceMode::Disabled
        || !inf.supported
        || report.has_label(LABEL_SANDBOX_ONLY)
        || (!cfg.inference_allowed && mode != InferenceMode::Require)
    {
        return None;
    }
    let variant = variant(report);
    Some(InferenceBackend {
        enabled: true,
        variant: Some(variant.to_string()),
        port: Some(INFERENCE_PORT),
        image: cfg
            .inference_images
            .get(variant)
            .filter(|s| !s.is_empty())
            .cloned(),
        env,
        selected_model: Some(model),
    })
}

/// Everything of a node's configuration except `config_version` and `issued_at`.
pub(crate) fn render(
    cfg: &ControlPlaneConfig,
    slug: &str,
    report: Option<&CapabilityReport>,
    target_url: Option<String>,
    token: Option<String>,
) -> NodeConfig {
    let base = cfg.base_url().to_string();
    NodeConfig {
        version: cynode_core::proto::v1::VERSION,
        config_version: String::new(),
        issued_at: Timestamp::default(),
        node_slug: slug.to_string(),
        orchestrator: ConfigOrchestrator {
            endpoints: ConfigEndpoints {
                worker_api_target_url: target_url,
                node_report_url: format!("{base}{}", cynode_core::proto::v1::node::CAPABILITY_PATH),
                mcp_gateway_url: Some(base.clone()),
            },
            base_url: base,
        },
        model_cache: Some(ModelCache::default()),
        worker_api: token.map(|t| WorkerApiConfig {
            orchestrator_bearer_token: Some(t),
            orchestrator_bearer_token_expires_at: None,
        }),
        inference_backend: report.and_then(|r| inference_backend(cfg, r)),
        managed_services: Some(ManagedServicesConfig::default()),
        ..NodeConfig::default()
    }
}

/// `sha256:<hex>` of a JSON value's canonical text (object keys sorted).
pub fn content_hash(v: &serde_json::Value) -> String {
    // serde_json's map is ordered (BTreeMap) unless `preserve_order` is on; sort
    // explicitly anyway so the hash never depends on that feature.
    fn canon(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    canon(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canon(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canon(v, &mut s);
    let d = Sha256::digest(s.as_bytes());
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for b in d {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn encode_ulid(n: u128) -> String {
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        *slot = CROCKFORD[((n >> shift) & 31) as usize];
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_ulid(s: &str) -> Option<u128> {
    if s.len() != 26 {
        return None;
    }
    let mut n: u128 = 0;
    for c in s.bytes() {
        let d = CROCKFORD
            .iter()
            .position(|&x| x == c.to_ascii_uppercase())?;
        n = n.checked_mul(32)?.checked_add(d as u128)?;
    }
    Some(n)
}

/// A new ULID for `now` that sorts after `prev` (if `prev` is a ULID): when the
/// clock has not moved past it, `prev + 1`.
pub fn next_ulid(prev: Option<&str>, now: Timestamp) -> String {
    let ms = u128::try_from(now.timestamp_millis().max(0)).unwrap_or(0) & ((1u128 << 48) - 1);
    let rand = u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes()) & ((1u128 << 80) - 1);
    let fresh = (ms << 80) | rand;
    match prev.and_then(decode_ulid) {
        Some(p) if fresh <= p => encode_ulid(p.saturating_add(1)),
        _ => encode_ulid(fresh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(v: serde_json::Value) -> CapabilityReport {
        let mut base = json!({"version": 1, "reported_at": "2026-01-01T00:00:00Z",
            "node": {"node_slug": "n"}, "platform": {"os": "linux", "arch": "amd64"},
            "compute": {"cpu_cores": 2, "ram_mb": 2048}});
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            for (k, x) in o {
                b.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(base).expect("report")
    }

    #[test]
    fn context_sizes() {
        assert_eq!(context_size(0), 8192);
        assert_eq!(context_size(4096), 32768);
        assert_eq!(context_size(1000), 8192);
        assert_eq!(context_size(8000), 40960);
        assert_eq!(context_size(2048), 16384);
    }

    #[test]
    fn decision_table() {
        let cfg = ControlPlaneConfig::default();
        let on = inference_backend(&cfg, &report(json!({"inference": {"supported": true}})))
            .expect("present");
        assert!(on.enabled);
        assert_eq!(on.variant.as_deref(), Some("cpu"));
        assert_eq!(on.selected_model.as_deref(), Some("qwen3.5:0.8b"));
        let existing = inference_backend(
            &cfg,
            &report(json!({"inference": {"supported": true, "existing_service": true, "mode": "disabled"}})),
        )
        .expect("present");
        assert!(!existing.enabled);
        for r in [
            json!({"inference": {"supported": true, "mode": "disabled"}}),
            json!({"inference": {"supported": false}}),
            json!({}),
            json!({"inference": {"supported": true}, "node": {"node_slug": "n", "labels": ["sandbox_only"]}}),
        ] {
            assert!(inference_backend(&cfg, &report(r.clone())).is_none(), "{r}");
        }
        let off = ControlPlaneConfig {
            inference_allowed: false,
            ..ControlPlaneConfig::default()
        };
        assert!(
            inference_backend(&off, &report(json!({"inference": {"supported": true}}))).is_none()
        );
        assert!(
            inference_backend(
                &off,
                &report(json!({"inference": {"supported": true, "mode": "require"}}))
            )
            .is_some()
        );
        let gpu = inference_backend(
            &cfg,
            &report(
                json!({"inference": {"supported": true}, "gpu": {"present": true, "devices": [
                {"vram_mb": 2048}, {"vram_mb": 2048, "features": {"cuda_capability": "8.6"}}]}}),
            ),
        )
        .expect("present");
        assert_eq!(gpu.variant.as_deref(), Some("cuda"));
        assert_eq!(
            gpu.env.get("OLLAMA_NUM_CTX").map(String::as_str),
            Some("32768")
        );
        let rocm = report(
            json!({"gpu": {"devices": [{"features": {"cuda_capability": "8"}},
            {"features": {"rocm_version": "6.1"}}]}}),
        );
        assert_eq!(variant(&rocm), "rocm");
    }

    #[test]
    fn ulids_are_monotonic_and_well_formed() {
        let now = chrono::Utc::now();
        let a = next_ulid(None, now);
        assert_eq!(a.len(), 26);
        let b = next_ulid(Some(&a), now);
        assert!(b > a, "{b} > {a}");
        let c = next_ulid(Some(&b), now - chrono::Duration::seconds(10));
        assert!(c > b);
        let d = next_ulid(Some(&c), now + chrono::Duration::seconds(1));
        assert!(d > c);
        assert_eq!(decode_ulid(&d).map(encode_ulid), Some(d));
    }

    #[test]
    fn hash_ignores_key_order() {
        let a = content_hash(&json!({"a": 1, "b": [1, {"y": 2, "x": 1}]}));
        let b = content_hash(&json!({"b": [1, {"x": 1, "y": 2}], "a": 1}));
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:"));
        assert_ne!(a, content_hash(&json!({"a": 2})));
    }
}
