//! The sandbox environment: request variables minus reserved names, then the node's keys.

use std::collections::BTreeMap;

use crate::spec::JobSpec;

/// In-container path of the workspace.
pub const WORKSPACE_DIR: &str = "/workspace";
/// In-container path of the job directory.
pub const JOB_DIR: &str = "/job";
/// In-container path of the artifacts directory.
pub const ARTIFACTS_DIR: &str = "/job/artifacts";
/// In-container directory holding the node's sockets.
pub const SOCKET_DIR: &str = "/run/cynode";
/// File name of the inference socket inside [`SOCKET_DIR`].
pub const INFERENCE_SOCKET: &str = "inference-proxy.sock";
/// `INFERENCE_PROXY_URL` value: the socket path as one percent-encoded segment.
pub const INFERENCE_PROXY_URL: &str = "http+unix://%2Frun%2Fcynode%2Finference-proxy.sock";

/// Names a request may not set: the node's own keys and anything that would point a
/// sandbox at a network service.
pub const RESERVED_ENV: &[&str] = &[
    "CYNODE_TASK_ID",
    "CYNODE_JOB_ID",
    "CYNODE_WORKSPACE_DIR",
    "CYNODE_ARTIFACTS_DIR",
    "INFERENCE_PROXY_URL",
    "SBA_EXECUTION_MODE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "MCP_GATEWAY_PROXY_URL",
    "OLLAMA_BASE_URL",
    "OLLAMA_HOST",
    "MCP_GATEWAY_URL",
    "SBA_MCP_GATEWAY_URL",
    "SBA_JOB_STATUS_URL",
    "SBA_CALLBACK_URL",
];

fn is_reserved(name: &str) -> bool {
    // Proxy variables are honoured in lower case too.
    RESERVED_ENV.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Final environment of a job (sorted by name) and the request names that were dropped.
pub(crate) fn build(spec: &JobSpec) -> (Vec<(String, String)>, Vec<String>) {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut dropped = Vec::new();
    for (k, v) in &spec.env {
        if is_reserved(k) {
            dropped.push(k.clone());
        } else {
            env.insert(k.clone(), v.clone());
        }
    }
    // The image's home may not be writable under an arbitrary uid and a read-only root.
    env.entry("HOME".into()).or_insert_with(|| "/tmp".into());
    env.insert("CYNODE_TASK_ID".into(), spec.task_id.clone());
    env.insert("CYNODE_JOB_ID".into(), spec.job_id.clone());
    env.insert("CYNODE_WORKSPACE_DIR".into(), WORKSPACE_DIR.into());
    env.insert("CYNODE_ARTIFACTS_DIR".into(), ARTIFACTS_DIR.into());
    if spec.inference.is_some() {
        env.insert("INFERENCE_PROXY_URL".into(), INFERENCE_PROXY_URL.into());
    }
    if let Some(mode) = spec.runner_mode {
        env.insert("SBA_EXECUTION_MODE".into(), mode.as_str().into());
    }
    (env.into_iter().collect(), dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InferenceAccess;

    #[test]
    fn reserved_names_are_dropped_and_node_keys_win() {
        let spec = JobSpec::new("img", ["true"])
            .with_ids("t1", "j1")
            .with_env("CYNODE_TASK_ID", "forged")
            .with_env("OLLAMA_HOST", "http://10.0.0.1:11434")
            .with_env("https_proxy", "http://evil:3128")
            .with_env("CYNODE_PROMPT", "hello")
            .with_env("A", "1")
            .with_inference(InferenceAccess::default());
        let (env, dropped) = build(&spec);
        let env: BTreeMap<_, _> = env.into_iter().collect();
        assert_eq!(env["CYNODE_TASK_ID"], "t1");
        assert_eq!(env["CYNODE_JOB_ID"], "j1");
        assert_eq!(env["CYNODE_PROMPT"], "hello");
        assert_eq!(env["A"], "1");
        assert_eq!(env["HOME"], "/tmp");
        assert_eq!(env["INFERENCE_PROXY_URL"], INFERENCE_PROXY_URL);
        assert!(!env.contains_key("OLLAMA_HOST") && !env.contains_key("https_proxy"));
        assert_eq!(dropped, ["CYNODE_TASK_ID", "OLLAMA_HOST", "https_proxy"]);
    }
}
