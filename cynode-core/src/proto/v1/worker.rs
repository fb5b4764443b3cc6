//! The Worker API a node serves (`/v1/worker/*`): the job run call and the telemetry
//! bodies (`node-protocol.md` §6 and §8, `sandbox.md` §1.2).
//!
//! Readers ignore unknown fields. Optional response fields that are absent stay absent
//! when re-serialised, so a body read and written again keeps its shape.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Path of the job run call.
pub const JOBS_RUN_PATH: &str = "/v1/worker/jobs:run";
/// Path of the node info telemetry call.
pub const TELEMETRY_NODE_INFO_PATH: &str = "/v1/worker/telemetry/node:info";
/// Path of the node stats telemetry call.
pub const TELEMETRY_NODE_STATS_PATH: &str = "/v1/worker/telemetry/node:stats";
/// Path of the container inventory telemetry call (`/{id}` for one container).
pub const TELEMETRY_CONTAINERS_PATH: &str = "/v1/worker/telemetry/containers";
/// Path of the log query telemetry call.
pub const TELEMETRY_LOGS_PATH: &str = "/v1/worker/telemetry/logs";

/// Default and maximum size of a job run request body (10 MiB).
pub const MAX_RUN_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// Default cap of `stdout` and `stderr` in a job result (bytes).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 262_144;

/// `POST /v1/worker/jobs:run` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunJobRequest {
    /// Payload version; must be `1`.
    pub version: u32,
    /// Task the job belongs to (non-empty; a uuid).
    #[serde(default)]
    pub task_id: String,
    /// Job id (non-empty; a uuid). At most one running job per id on a node.
    #[serde(default)]
    pub job_id: String,
    /// What to run.
    #[serde(default)]
    pub sandbox: SandboxRequest,
    /// Job-scoped inference grant (Rust extension, not in §6.2): present only for a job
    /// with `use_inference` when the orchestrator runs an API egress service. A node
    /// that does not know the field ignores it and serves the job from its own models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceGrant>,
}

/// The `inference` object of a [`RunJobRequest`] (Rust extension): what the node needs
/// to serve the job's inference socket with external models through the orchestrator's
/// API egress service. The token is a job-scoped bearer (bound to this task and job,
/// with an expiry), never a provider key; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InferenceGrant {
    /// The job-scoped token for `POST {api_egress_url}/v1/call`.
    #[serde(default)]
    pub token: String,
    /// Base URL of the API egress service, as the node reaches it.
    #[serde(default)]
    pub api_egress_url: String,
    /// External providers the job may use and their models (empty: none, the job's
    /// inference stays on the node's own models).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<ExternalModelGrant>,
}

impl std::fmt::Debug for InferenceGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceGrant")
            .field("token", &"[REDACTED]")
            .field("api_egress_url", &self.api_egress_url)
            .field("external", &self.external)
            .finish()
    }
}

/// One external provider of an [`InferenceGrant`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExternalModelGrant {
    /// Provider id as the API egress service knows it (`openai`, `anthropic`, …).
    pub provider: String,
    /// Model ids the job may name for it.
    #[serde(default)]
    pub models: Vec<String>,
}

/// The `sandbox` object of a [`RunJobRequest`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxRequest {
    /// OCI image reference; empty uses the node's default image.
    #[serde(default)]
    pub image: String,
    /// argv; required unless `job_spec_json` is set.
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment (reserved names are dropped by the node).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Requested wall-clock limit in seconds; capped by the node maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// `none` (default), `restricted` (same as `none`); anything else is refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_policy: String,
    /// Mount the node's inference socket for a plain command job.
    #[serde(default)]
    pub use_inference: bool,
    /// Runner job spec as a JSON string; non-empty switches to runner mode.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_spec_json: String,
    /// Optional resource request, capped by the node's maxima (`sandbox.md` §1.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<SandboxResources>,
}

/// Optional per-job resource request.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxResources {
    /// CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Process/thread limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

/// Final state of an attempted job (`sandbox.md` §1.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunJobStatus {
    /// The command (or runner) succeeded.
    Completed,
    /// Non-zero exit, runner failure, start failure, memory kill or cancellation.
    Failed,
    /// The job ran past its deadline and was stopped.
    Timeout,
}

impl RunJobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunJobStatus::Completed => "completed",
            RunJobStatus::Failed => "failed",
            RunJobStatus::Timeout => "timeout",
        }
    }
}

/// Which output streams were cut at the node's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Truncated {
    /// `stdout` was cut.
    #[serde(default)]
    pub stdout: bool,
    /// `stderr` was cut.
    #[serde(default)]
    pub stderr: bool,
}

/// `POST /v1/worker/jobs:run` 200 body: the outcome of an attempted job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunJobResponse {
    /// Payload version (`1`).
    pub version: u32,
    /// Task id from the request.
    pub task_id: String,
    /// Job id from the request.
    pub job_id: String,
    /// How the job ended.
    pub status: RunJobStatus,
    /// Process exit code; -1 for a timeout or a job that never started. Always present
    /// when written by this crate; a missing one reads as 0 (the Go worker omits 0).
    #[serde(default)]
    pub exit_code: i64,
    /// Standard output, at most the node cap, cut on a character boundary.
    #[serde(default)]
    pub stdout: String,
    /// Standard error, same rules.
    #[serde(default)]
    pub stderr: String,
    /// When the container started (or the attempt was given up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the container stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Truncation flags.
    #[serde(default)]
    pub truncated: Truncated,
    /// The runner's `/job/result.json` (runner mode), as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sba_result: Option<serde_json::Value>,
    /// Reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_executor_result: Option<serde_json::Value>,
    /// Files collected from `/job/artifacts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<JobArtifact>,
    /// Facts about the run (no env values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_diagnostics: Option<RunDiagnostics>,
}

/// One file found under `/job/artifacts` (`sandbox.md` §1.12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobArtifact {
    /// Path relative to `/job`, e.g. `artifacts/report.txt`.
    pub path: String,
    /// File size in bytes.
    #[serde(default)]
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the content; absent when skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Content type guess.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    /// Standard base64 of the content; absent when skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
    /// Why the content was not returned (`too_large`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// `run_diagnostics` of a [`RunJobResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunDiagnostics {
    /// Runtime name (`podman`, `docker`).
    #[serde(default)]
    pub runtime: String,
    /// The equivalent runtime command line, with environment names only (never values).
    #[serde(default)]
    pub runtime_argv: Vec<String>,
    /// Host directory of the job.
    #[serde(default)]
    pub job_dir: String,
    /// Host directory mounted at `/workspace`.
    #[serde(default)]
    pub workspace_dir: String,
    /// Image reference used.
    #[serde(default)]
    pub image: String,
    /// Whether the container was started.
    #[serde(default)]
    pub container_started: bool,
    /// Whether the memory limit killed the job.
    #[serde(default)]
    pub oom_killed: bool,
}

// ---------------------------------------------------------------------------------------
// Telemetry (§8)
// ---------------------------------------------------------------------------------------

/// `GET /v1/worker/telemetry/node:info` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Payload version (`1`).
    pub version: u32,
    /// The node's slug.
    pub node_slug: String,
    /// Build facts.
    pub build: BuildInfo,
    /// Platform facts.
    pub platform: PlatformInfo,
}

/// `build` of [`NodeInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// `BUILD_VERSION`, else `dev`.
    pub build_version: String,
}

/// `platform` of [`NodeInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformInfo {
    /// Go name of the OS (`linux`).
    pub os: String,
    /// Go name of the architecture (`amd64`, `arm64`).
    pub arch: String,
    /// Kernel release.
    pub kernel_version: String,
}

/// `GET /v1/worker/telemetry/node:stats` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Payload version (`1`).
    pub version: u32,
    /// When the figures were taken.
    pub captured_at: DateTime<Utc>,
    /// CPU figures.
    pub cpu: CpuStats,
    /// Memory figures.
    pub memory: MemoryStats,
    /// Disk figures.
    pub disk: DiskStats,
    /// The container runtime.
    pub container_runtime: RuntimeInfo,
}

/// `cpu` of [`NodeStats`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Logical cores.
    pub cores: u32,
    /// 1-minute load average.
    pub load1: f64,
    /// 5-minute load average.
    pub load5: f64,
    /// 15-minute load average.
    pub load15: f64,
}

/// `memory` of [`NodeStats`] (MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Total memory.
    pub total_mb: u64,
    /// Used memory (total minus available).
    pub used_mb: u64,
    /// Available memory.
    pub free_mb: u64,
}

/// `disk` of [`NodeStats`] (MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStats {
    /// Free space on the state directory's file system.
    pub state_dir_free_mb: u64,
    /// Size of the state directory's file system.
    pub state_dir_total_mb: u64,
}

/// `container_runtime` of [`NodeStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// `podman` or `docker`.
    pub runtime: String,
    /// Runtime version.
    pub version: String,
}

/// `GET /v1/worker/telemetry/containers` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerList {
    /// Payload version (`1`).
    pub version: u32,
    /// The page of containers, newest first.
    pub containers: Vec<ContainerRecord>,
    /// Opaque token of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `GET /v1/worker/telemetry/containers/{id}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerDetail {
    /// Payload version (`1`).
    pub version: u32,
    /// The container.
    pub container: ContainerRecord,
}

/// One container the node created (inventory row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Runtime id.
    pub container_id: String,
    /// Runtime name.
    pub container_name: String,
    /// `sandbox` or `managed`.
    pub kind: String,
    /// `podman` or `docker`.
    pub runtime: String,
    /// Image reference.
    pub image_ref: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last state change seen.
    pub last_seen_at: DateTime<Utc>,
    /// `created`, `running`, `exited`, `removed`.
    pub status: String,
    /// Exit code once exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Task id label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Job id label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `GET /v1/worker/telemetry/logs` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsResponse {
    /// Payload version (`1`).
    pub version: u32,
    /// Events, oldest first.
    pub events: Vec<LogEvent>,
    /// Whether and why the list was cut.
    pub truncated: LogsTruncated,
    /// Opaque token of the next page; absent when nothing more matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One log event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// `service` or `container`.
    pub source_kind: String,
    /// `node_manager`, `worker_api`, or the container name.
    pub source_name: String,
    /// Container id (container events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// `stdout` or `stderr` (container events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// `info`, `warn`, `error`… (service events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The message.
    pub message: String,
    /// Structured fields.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Why a log answer was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitedBy {
    /// Not cut.
    None,
    /// Cut at the event count limit.
    Count,
    /// Cut at the byte cap.
    Bytes,
}

/// `truncated` of a [`LogsResponse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsTruncated {
    /// Why the list was cut.
    pub limited_by: LimitedBy,
    /// Byte cap of the answer (1048576).
    pub max_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn run_request_reads_the_spec_example() {
        let body = json!({"version": 1, "task_id": "6f1c", "job_id": "0b7e",
            "sandbox": {"image": "alpine:latest", "command": ["sh", "-c", "echo hello"],
                "env": {"K": "V"}, "timeout_seconds": 300, "network_policy": "none",
                "use_inference": false, "job_spec_json": ""}, "unknown": 1});
        let r: RunJobRequest = serde_json::from_value(body).unwrap();
        assert_eq!(r.version, 1);
        assert_eq!(r.task_id, "6f1c");
        assert_eq!(r.sandbox.command, ["sh", "-c", "echo hello"]);
        assert_eq!(r.sandbox.env["K"], "V");
        assert_eq!(r.sandbox.timeout_seconds, Some(300));
        assert_eq!(r.sandbox.network_policy, "none");
        assert!(!r.sandbox.use_inference);
        let back: RunJobRequest =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn inference_grant_round_trips_and_debug_redacts_the_token() {
        let token = "cnj1.AAAAsecret-job-token.BBBB";
        let body = json!({"version": 1, "task_id": "t", "job_id": "j",
            "sandbox": {"command": ["true"], "use_inference": true},
            "inference": {"token": token, "api_egress_url": "http://egress:12084",
                "external": [{"provider": "openai", "models": ["gpt-4o-mini"]}]}});
        let r: RunJobRequest = serde_json::from_value(body.clone()).unwrap();
        let grant = r.inference.as_ref().unwrap();
        assert_eq!(grant.token, token);
        assert_eq!(grant.external[0].models, ["gpt-4o-mini"]);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["inference"],
            body["inference"]
        );
        let debug = format!("{r:?} {grant:?} {r:#?}");
        assert!(!debug.contains("secret-job-token"), "{debug}");
        assert!(debug.contains("[REDACTED]") && debug.contains("http://egress:12084"));
        // Absent grant: the field is not written (old readers see the §6.2 shape).
        let plain: RunJobRequest =
            serde_json::from_value(json!({"version": 1, "sandbox": {"command": ["true"]}}))
                .unwrap();
        assert!(plain.inference.is_none());
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("inference")
                .is_none()
        );
    }

    #[test]
    fn run_request_missing_fields_default_for_validation() {
        let r: RunJobRequest = serde_json::from_value(json!({"version": 1})).unwrap();
        assert!(r.task_id.is_empty() && r.job_id.is_empty());
        assert!(r.sandbox.command.is_empty());
        assert!(serde_json::from_value::<RunJobRequest>(json!({"task_id": "x"})).is_err());
    }

    #[test]
    fn run_response_round_trips_with_every_field() {
        let body = json!({"version": 1, "task_id": "t", "job_id": "j", "status": "timeout",
            "exit_code": -1, "stdout": "", "stderr": "x", "started_at": "2026-01-02T03:04:05Z",
            "ended_at": "2026-01-02T03:04:07Z", "truncated": {"stdout": false, "stderr": true},
            "sba_result": {"status": "timeout"},
            "artifacts": [{"path": "artifacts/a.txt", "size_bytes": 2, "sha256": "ab",
                "content_type": "text/plain", "content_base64": "aGk="},
                {"path": "artifacts/big", "size_bytes": 99999999, "skipped": "too_large"}],
            "run_diagnostics": {"runtime": "podman", "runtime_argv": ["podman", "run"],
                "job_dir": "/d", "workspace_dir": "/d/workspace", "image": "alpine:latest",
                "container_started": true, "oom_killed": false}});
        let r: RunJobResponse = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(r.status, RunJobStatus::Timeout);
        assert_eq!(r.exit_code, -1);
        assert!(r.truncated.stderr && !r.truncated.stdout);
        assert_eq!(r.artifacts[1].skipped.as_deref(), Some("too_large"));
        assert_eq!(serde_json::to_value(&r).unwrap(), body);
    }

    #[test]
    fn go_style_response_without_exit_code_reads_as_zero() {
        let r: RunJobResponse = serde_json::from_value(json!({"version": 1, "task_id": "t",
            "job_id": "j", "status": "completed", "stdout": "hello\n", "stderr": ""}))
        .unwrap();
        assert_eq!(r.exit_code, 0);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["truncated"], json!({"stdout": false, "stderr": false}));
        assert!(v.get("artifacts").is_none());
        assert!(
            serde_json::from_value::<RunJobResponse>(json!({"version": 1, "task_id": "t",
            "job_id": "j", "status": "done"}))
            .is_err()
        );
    }

    #[test]
    fn telemetry_bodies_round_trip() {
        let info = json!({"version": 1, "node_slug": "node-01",
            "build": {"build_version": "dev"},
            "platform": {"os": "linux", "arch": "amd64", "kernel_version": "6.1.0"}});
        let i: NodeInfo = serde_json::from_value(info.clone()).unwrap();
        assert_eq!(serde_json::to_value(&i).unwrap(), info);

        let stats = json!({"version": 1, "captured_at": "2026-01-02T03:04:05Z",
            "cpu": {"cores": 2, "load1": 0.5, "load5": 0.25, "load15": 0.125},
            "memory": {"total_mb": 24000, "used_mb": 4000, "free_mb": 20000},
            "disk": {"state_dir_free_mb": 100, "state_dir_total_mb": 200},
            "container_runtime": {"runtime": "podman", "version": "4.3.1"}});
        let s: NodeStats = serde_json::from_value(stats.clone()).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), stats);

        let list = json!({"version": 1, "containers": [{"container_id": "abc",
            "container_name": "cynodeai-sbx-j", "kind": "sandbox", "runtime": "podman",
            "image_ref": "alpine:latest", "created_at": "2026-01-02T03:04:05Z",
            "last_seen_at": "2026-01-02T03:04:06Z", "status": "removed", "exit_code": 0,
            "task_id": "t", "job_id": "j", "labels": {"cynodeai.role": "sandbox"}}],
            "next_page_token": "Mg"});
        let l: ContainerList = serde_json::from_value(list.clone()).unwrap();
        assert_eq!(serde_json::to_value(&l).unwrap(), list);

        let logs = json!({"version": 1, "events": [{"occurred_at": "2026-01-02T03:04:05Z",
            "source_kind": "service", "source_name": "node_manager", "level": "info",
            "message": "node manager start", "fields": {"boot_id": "b"}}],
            "truncated": {"limited_by": "none", "max_bytes": 1048576}});
        let g: LogsResponse = serde_json::from_value(logs.clone()).unwrap();
        assert_eq!(g.truncated.limited_by, LimitedBy::None);
        assert_eq!(serde_json::to_value(&g).unwrap(), logs);
    }
}
