//! What the driver hands back after a job.

use chrono::{DateTime, Utc};

use crate::output::CapturedOutput;

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// The command exited with code 0.
    Succeeded,
    /// The command exited with a non-zero code.
    Failed,
    /// The job ran past its deadline and was stopped.
    TimedOut,
    /// The caller cancelled the job (or dropped it).
    Cancelled,
    /// The kernel killed the job for exceeding its memory limit.
    MemoryKilled,
}

impl JobStatus {
    /// Stable lower-case name (`succeeded`, `failed`, `timed_out`, `cancelled`,
    /// `memory_killed`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::TimedOut => "timed_out",
            JobStatus::Cancelled => "cancelled",
            JobStatus::MemoryKilled => "memory_killed",
        }
    }

    /// The Worker API's status (`completed`, `failed`, `timeout`); a memory kill and a
    /// cancellation are `failed` there.
    pub fn protocol_status(self) -> &'static str {
        match self {
            JobStatus::Succeeded => "completed",
            JobStatus::TimedOut => "timeout",
            JobStatus::Failed | JobStatus::Cancelled | JobStatus::MemoryKilled => "failed",
        }
    }
}

/// Why an artifact's content was not returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArtifactSkip {
    /// The file exceeds the per-file cap, or would exceed the per-job total.
    TooLarge,
}

impl ArtifactSkip {
    /// Protocol name (`too_large`).
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactSkip::TooLarge => "too_large",
        }
    }
}

/// One file found under `/job/artifacts` after the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path relative to `/job`, e.g. `artifacts/report.txt`.
    pub path: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the content; `None` when skipped.
    pub sha256: Option<String>,
    /// A guess from the extension and content (`text/plain; charset=utf-8`, ...).
    pub content_type: String,
    /// The content; `None` when skipped.
    pub content: Option<Vec<u8>>,
    /// Why the content was not returned.
    pub skipped: Option<ArtifactSkip>,
}

/// Artifacts of a job, bounded in count and size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArtifactSet {
    /// The files, in path order.
    pub files: Vec<Artifact>,
    /// True when more files existed than the count cap allows (or the tree was too big
    /// to walk); the list is a prefix.
    pub truncated: bool,
}

/// Facts about the run, for logs and the Worker API's `run_diagnostics` (no env values).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunDiagnostics {
    /// Runtime name (`podman`, `docker`, ...).
    pub runtime: String,
    /// Image reference used.
    pub image: String,
    /// Container id (or name) in the runtime.
    pub container_id: String,
    /// Whether the container was started.
    pub container_started: bool,
    /// Host directory of the job (removed after the job unless configured otherwise).
    pub job_dir: String,
    /// Host directory mounted at `/workspace`.
    pub workspace_dir: String,
    /// Names of the variables set in the container (values are never recorded).
    pub env_names: Vec<String>,
    /// Names of request variables dropped because they are reserved.
    pub dropped_env: Vec<String>,
    /// Whether the memory limit killed the job.
    pub oom_killed: bool,
    /// True when `oom_killed` was inferred rather than reported by the engine: the job
    /// died of SIGKILL (exit 137) that the driver did not send. Some engines (Podman on
    /// cgroup v1 hosts) never report OOM kills; in a sandbox without capabilities the
    /// kernel's OOM killer is then the only other source of such a kill besides the job
    /// killing itself.
    pub oom_inferred: bool,
    /// Exit code the container really reported (`None` when it never started).
    pub raw_exit_code: Option<i64>,
}

/// The outcome of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// Task id of the job.
    pub task_id: String,
    /// Job id.
    pub job_id: String,
    /// How it ended.
    pub status: JobStatus,
    /// Exit code per the Worker API: the process's code, or -1 for a timeout, a
    /// cancellation or a job that never started.
    pub exit_code: i64,
    /// When the container started (or when the attempt was given up).
    pub started_at: DateTime<Utc>,
    /// When the container stopped.
    pub ended_at: DateTime<Utc>,
    /// Standard output, bounded.
    pub stdout: CapturedOutput,
    /// Standard error, bounded.
    pub stderr: CapturedOutput,
    /// Files collected from `/job/artifacts`.
    pub artifacts: ArtifactSet,
    /// Content of `/job/result.json` when the job wrote one (runner mode), bounded.
    pub result_file: Option<Vec<u8>>,
    /// Diagnostics.
    pub diagnostics: RunDiagnostics,
}

impl JobResult {
    /// Whether the job succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == JobStatus::Succeeded
    }
}
