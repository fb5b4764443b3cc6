//! The high-level driver: runs a [`JobSpec`] in a sandbox and returns a [`JobResult`].

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{DockerConfig, DriverConfig, RunAs};
use crate::env::{self, ARTIFACTS_DIR, INFERENCE_SOCKET, JOB_DIR, SOCKET_DIR, WORKSPACE_DIR};
use crate::error::{Error, Result};
use crate::image;
use crate::output::{BoundedBuffer, OutputChunk, StreamKind};
use crate::proxy::{InferenceProxy, ModelPolicy};
use crate::result::{ArtifactSet, JobResult, JobStatus, RunDiagnostics};
use crate::runtime::{
    BindMount, ContainerId, ContainerLimits, ContainerSpec, DockerRuntime, ExitStatus,
    LABEL_AGENT_COMPATIBLE, LABEL_JOB_ID, LABEL_OWNER, LABEL_ROLE, LABEL_TASK_ID, OutputStream,
    PullProgress, ROLE_SANDBOX, SandboxRuntime, Signal,
};
use crate::spec::{InputFile, JobSpec};

/// Name of the marker file in each job directory recording the owning driver.
const OWNER_MARKER: &str = ".cynode-owner";
/// How long a killed container may take to be reported as exited.
const KILL_BOUND: Duration = Duration::from_secs(30);
/// Events buffered for a follower before chunks are dropped.
const EVENT_BUFFER: usize = 256;

/// Something that happened while a job ran, for callers following it live.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobEvent {
    /// Progress of an image pull.
    Pulling(PullProgress),
    /// The container started.
    Started {
        /// Its id in the runtime.
        container_id: String,
    },
    /// A piece of output.
    Output(OutputChunk),
}

/// What [`Driver::reap_orphans`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReapReport {
    /// Containers removed.
    pub containers: usize,
    /// Job directories removed.
    pub directories: usize,
}

/// Runs jobs in sandboxes. Cheap to clone; clones share the same runtime and job table.
#[derive(Debug, Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runtime: Arc<dyn SandboxRuntime>,
    config: DriverConfig,
    /// Running jobs by job id: the container (name, then id) and the job directory.
    active: Mutex<HashMap<String, Active>>,
}

#[derive(Debug, Default, Clone)]
struct Active {
    containers: Vec<String>,
    dir: Option<PathBuf>,
}

impl Driver {
    /// Connects to a Docker-API engine (Docker or Podman) and builds a driver on it.
    pub async fn connect(docker: &DockerConfig, config: DriverConfig) -> Result<Self> {
        let runtime = DockerRuntime::connect(docker).await?;
        Self::new(Arc::new(runtime), config)
    }

    /// Builds a driver on any runtime.
    pub fn new(runtime: Arc<dyn SandboxRuntime>, config: DriverConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                runtime,
                config,
                active: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The runtime this driver uses.
    pub fn runtime(&self) -> &Arc<dyn SandboxRuntime> {
        &self.inner.runtime
    }

    /// The configuration.
    pub fn config(&self) -> &DriverConfig {
        &self.inner.config
    }

    /// Removes containers and job directories left by an earlier process with the same
    /// owner (a crashed worker). Call at start-up, and periodically if you like: jobs of
    /// this driver that are running are never touched.
    pub async fn reap_orphans(&self) -> Result<ReapReport> {
        let inner = &self.inner;
        let (tracked, tracked_dirs) = {
            let active = inner.lock_active();
            let names: Vec<String> = active.values().flat_map(|a| a.containers.clone()).collect();
            let dirs: Vec<PathBuf> = active.values().filter_map(|a| a.dir.clone()).collect();
            (names, dirs)
        };
        let mut report = ReapReport::default();
        for c in inner.runtime.list_owned(&inner.config.owner).await? {
            let ours = tracked
                .iter()
                .any(|t| *t == c.id.0 || c.names.iter().any(|n| n.trim_start_matches('/') == t));
            if ours {
                continue;
            }
            tracing::info!(container = %c.id, state = %c.state, "removing orphaned sandbox");
            inner.runtime.remove(&c.id).await?;
            report.containers += 1;
        }
        let root = inner.config.mount_root.clone();
        let owner = inner.config.owner.clone();
        report.directories =
            tokio::task::spawn_blocking(move || reap_dirs(&root, &owner, &tracked_dirs))
                .await
                .map_err(|e| Error::Internal {
                    message: "reaper task failed".into(),
                    source: Some(Box::new(e)),
                })??;
        Ok(report)
    }

    /// Runs a job to completion. Dropping the returned future cancels the job: the
    /// container and its directories are removed in the background.
    pub async fn run(&self, spec: JobSpec) -> Result<JobResult> {
        execute(self.inner.clone(), spec, None, CancellationToken::new()).await
    }

    /// Starts a job in the background and returns a handle to follow its output, cancel
    /// it, or wait for the result. Dropping the handle cancels the job. Must be called
    /// within a Tokio runtime.
    pub fn spawn(&self, spec: JobSpec) -> JobHandle {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(execute(self.inner.clone(), spec, Some(tx), cancel.clone()));
        JobHandle {
            events: rx,
            cancel,
            task: Some(task),
        }
    }
}

/// A job started with [`Driver::spawn`].
#[derive(Debug)]
pub struct JobHandle {
    events: mpsc::Receiver<JobEvent>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<JobResult>>>,
}

/// Cancels a job from anywhere (cloneable, outlives nothing).
#[derive(Debug, Clone)]
pub struct Canceller(CancellationToken);

impl Canceller {
    /// Kills the job's container now; the job ends with [`JobStatus::Cancelled`].
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

impl JobHandle {
    /// The next event, or `None` once the job has finished and every event was read.
    /// Output chunks are dropped when the follower falls more than a few hundred chunks
    /// behind (see [`OutputChunk::offset`]); the result's bounded output is complete
    /// regardless.
    pub async fn next_event(&mut self) -> Option<JobEvent> {
        self.events.recv().await
    }

    /// Kills the job's container now; the job ends with [`JobStatus::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A cancel handle that can be moved elsewhere.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Waits for the result (unread events are discarded).
    pub async fn wait(mut self) -> Result<JobResult> {
        let Some(task) = self.task.take() else {
            return Err(Error::internal("job result already taken"));
        };
        self.events.close();
        match task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Internal {
                message: "job task failed".into(),
                source: Some(Box::new(e)),
            }),
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.cancel.cancel();
        }
    }
}

impl Inner {
    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Active>> {
        // A poisoned lock only means another job panicked while holding it; the map
        // itself is still consistent (every update is a single insert/remove).
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(self: &Arc<Self>, job_id: &str) -> Result<Cleanup> {
        let mut active = self.lock_active();
        if active.contains_key(job_id) {
            return Err(Error::JobConflict(job_id.to_string()));
        }
        active.insert(job_id.to_string(), Active::default());
        Ok(Cleanup {
            inner: self.clone(),
            job_id: job_id.to_string(),
            container: None,
            dir: None,
            proxy: None,
            done: false,
        })
    }

    fn track(&self, job_id: &str, f: impl FnOnce(&mut Active)) {
        if let Some(a) = self.lock_active().get_mut(job_id) {
            f(a);
        }
    }
}

/// Owns everything a job created; removes it on [`Cleanup::finish`] or, if the job's
/// future is dropped, in a background task.
struct Cleanup {
    inner: Arc<Inner>,
    job_id: String,
    container: Option<ContainerId>,
    dir: Option<PathBuf>,
    proxy: Option<InferenceProxy>,
    done: bool,
}

impl Cleanup {
    fn set_container(&mut self, id: ContainerId) {
        self.inner
            .track(&self.job_id, |a| a.containers.push(id.0.clone()));
        self.container = Some(id);
    }

    /// Shields `dir` from the reaper before it exists (it is not ours to remove yet).
    fn shield_dir(&self, dir: &Path) {
        self.inner
            .track(&self.job_id, |a| a.dir = Some(dir.to_path_buf()));
    }

    /// The job directory now exists and is ours: remove it at the end.
    fn set_dir(&mut self, dir: PathBuf) {
        self.shield_dir(&dir);
        self.dir = Some(dir);
    }

    async fn finish(mut self) {
        self.done = true;
        drop(self.proxy.take());
        let container = self.container.take();
        let dir = self.dir.take();
        // In its own task, so that a caller dropping the job during cleanup does not
        // abandon it half-way.
        let task = tokio::spawn(cleanup(
            self.inner.clone(),
            self.job_id.clone(),
            container,
            dir,
            false,
        ));
        if let Err(e) = task.await {
            tracing::warn!(job_id = %self.job_id, error = %e, "cleanup task failed");
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        drop(self.proxy.take());
        let container = self.container.take();
        let dir = self.dir.take();
        let inner = self.inner.clone();
        let job_id = std::mem::take(&mut self.job_id);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(cleanup(inner, job_id, container, dir, true));
            }
            Err(_) => {
                // No runtime to clean up on: forget the job; the reaper removes leftovers.
                inner.lock_active().remove(&job_id);
            }
        }
    }
}

async fn cleanup(
    inner: Arc<Inner>,
    job_id: String,
    container: Option<ContainerId>,
    dir: Option<PathBuf>,
    abandoned: bool,
) {
    if let Some(id) = &container {
        if let Err(e) = inner.runtime.remove(id).await {
            tracing::warn!(job_id, container = %id, error = %e, "sandbox container not removed; the reaper will retry");
        }
        if abandoned {
            // The job was dropped, perhaps while a create request was in flight: the
            // engine may still finish creating it after the removal above.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = inner.runtime.remove(id).await;
        }
    }
    if let Some(dir) = dir
        && !inner.config.keep_job_dirs
    {
        let d = dir.clone();
        let res = tokio::task::spawn_blocking(move || remove_job_dir(&d)).await;
        if !matches!(res, Ok(Ok(()))) {
            tracing::warn!(job_id, dir = %dir.display(), "job directory not removed; the reaper will retry");
        }
    }
    inner.lock_active().remove(&job_id);
}

fn remove_job_dir(dir: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn reap_dirs(root: &Path, owner: &str, tracked: &[PathBuf]) -> Result<usize> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format_args!("list {}", root.display()), e)),
    };
    let mut removed = 0;
    for entry in rd.flatten() {
        let path = entry.path();
        if tracked.contains(&path) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let marker = fs::read_to_string(path.join(OWNER_MARKER)).unwrap_or_default();
        if marker.trim() == owner && remove_job_dir(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A job id turned into a directory/container-name component.
fn path_safe(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "job".into() } else { s }
}

/// Stops pumping the prelude when the job is cancelled.
enum Prelude<T> {
    Ready(T),
    Cancelled,
}

struct Plan {
    image: String,
    timeout: Duration,
    limits: ContainerLimits,
    tmp_bytes: u64,
    env: Vec<(String, String)>,
    dropped_env: Vec<String>,
}

fn plan(config: &DriverConfig, spec: &JobSpec) -> Result<Plan> {
    spec.validate()?;
    let image = if spec.image.is_empty() {
        config.images.default_image.clone()
    } else {
        spec.image.clone()
    };
    if !image::is_plausible(&image) {
        return Err(Error::invalid(format!(
            "image: {image:?} is not a valid reference"
        )));
    }
    if !image::is_allowed(&image, &config.images.allowed, &config.images.default_image) {
        return Err(Error::ImageNotAllowed { image });
    }
    if spec
        .inference
        .as_ref()
        .is_some_and(|i| i.upstream_url.is_none())
        && config.inference.is_none()
    {
        return Err(Error::invalid(
            "inference: this node has no inference upstream configured",
        ));
    }
    let default_timeout = Duration::from_secs(config.default_timeout_secs);
    let max_timeout = Duration::from_secs(config.max_timeout_secs);
    let timeout = spec.timeout.unwrap_or(default_timeout).min(max_timeout);

    let (d, m) = (&config.default_limits, &config.max_limits);
    let r = &spec.resources;
    let cpu = r.cpu_cores.unwrap_or(d.cpu_cores).min(m.cpu_cores);
    let memory_mb = r.memory_mb.unwrap_or(d.memory_mb).min(m.memory_mb);
    let pids = r.pids.unwrap_or(d.pids).min(m.pids);
    let limits = ContainerLimits {
        nano_cpus: (cpu * 1e9).round() as i64,
        memory_bytes: i64::try_from(memory_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX),
        pids,
        nofile: i64::try_from(d.nofile.min(m.nofile)).unwrap_or(i64::MAX),
        nproc: i64::try_from(d.nproc.min(m.nproc)).unwrap_or(i64::MAX),
    };
    let tmp_bytes = d.tmp_mb.min(m.tmp_mb).saturating_mul(1 << 20);
    let (env, dropped_env) = env::build(spec);
    Ok(Plan {
        image,
        timeout,
        limits,
        tmp_bytes,
        env,
        dropped_env,
    })
}

async fn execute(
    inner: Arc<Inner>,
    spec: JobSpec,
    events: Option<mpsc::Sender<JobEvent>>,
    cancel: CancellationToken,
) -> Result<JobResult> {
    let plan = plan(&inner.config, &spec)?;
    if !plan.dropped_env.is_empty() {
        tracing::info!(job_id = %spec.job_id, dropped = ?plan.dropped_env, "reserved environment names dropped from the request");
    }
    let mut cleanup = inner.register(&spec.job_id)?;
    let span = tracing::info_span!("sandbox_job", task_id = %spec.task_id, job_id = %spec.job_id);
    let outcome = run_job(&inner, &spec, &plan, &mut cleanup, events.as_ref(), &cancel)
        .instrument(span)
        .await;
    cleanup.finish().await;
    outcome
}

/// Everything between registration and cleanup.
async fn run_job(
    inner: &Arc<Inner>,
    spec: &JobSpec,
    plan: &Plan,
    cleanup: &mut Cleanup,
    events: Option<&mpsc::Sender<JobEvent>>,
    cancel: &CancellationToken,
) -> Result<JobResult> {
    let config = &inner.config;
    let runtime = &inner.runtime;
    let mut diag = RunDiagnostics {
        runtime: runtime.name().to_string(),
        image: plan.image.clone(),
        env_names: plan.env.iter().map(|(k, _)| k.clone()).collect(),
        dropped_env: plan.dropped_env.clone(),
        ..Default::default()
    };
    let attempt_at = Utc::now();

    let prelude = async {
        ensure_image(inner, spec, &plan.image, events).await?;
        let dirs = prepare_dirs(inner, spec, cleanup).await?;
        diag.job_dir = dirs.root.display().to_string();
        diag.workspace_dir = dirs.workspace.display().to_string();
        if let Some(access) = &spec.inference {
            // The job's own upstream, with the node's limits; else the node's upstream.
            let mut inf = config.inference.clone().unwrap_or_default();
            if let Some(url) = &access.upstream_url {
                inf.upstream_url = url.clone();
            }
            let policy = match &access.allowed_models {
                Some(list) => ModelPolicy::Only(list.clone()),
                None => ModelPolicy::Installed,
            };
            let sock = dirs.run.join(INFERENCE_SOCKET);
            let proxy = InferenceProxy::bind(&sock, &inf, policy, Some(config.run_as)).await?;
            cleanup.proxy = Some(proxy);
            let run = dirs.run.clone();
            let run_as = config.run_as;
            blocking(move || give_to_sandbox(&run, run_as, 0o700)).await?;
        }
        let cspec = container_spec(config, spec, plan, &dirs);
        // Track the name before asking the engine, so that a dropped future still
        // removes a container whose creation was in flight.
        cleanup.set_container(ContainerId(cspec.name.clone()));
        let id = runtime.create(&cspec).await?;
        cleanup.set_container(id.clone());
        diag.container_id = id.0.clone();
        let output = runtime.logs(&id).await?;
        runtime.start(&id).await?;
        Ok::<_, Error>((id, output))
    };
    let prelude = tokio::select! {
        r = prelude => Prelude::Ready(r?),
        _ = cancel.cancelled() => Prelude::Cancelled,
    };
    let (id, output) = match prelude {
        Prelude::Ready(v) => v,
        Prelude::Cancelled => {
            let now = Utc::now();
            return Ok(JobResult {
                task_id: spec.task_id.clone(),
                job_id: spec.job_id.clone(),
                status: JobStatus::Cancelled,
                exit_code: -1,
                started_at: attempt_at,
                ended_at: now,
                stdout: Default::default(),
                stderr: Default::default(),
                artifacts: ArtifactSet::default(),
                result_file: None,
                diagnostics: diag,
            });
        }
    };
    diag.container_started = true;
    let started_at = Utc::now();
    if let Some(tx) = events {
        let _ = tx.try_send(JobEvent::Started {
            container_id: id.0.clone(),
        });
    }
    tracing::debug!(container = %id, "sandbox started");

    let sup = supervise(inner, &id, output, plan.timeout, events, cancel).await?;
    let ended_at = Utc::now();
    diag.raw_exit_code = sup.exit.map(|e| e.code);
    let reported_oom = sup.exit.is_some_and(|e| e.oom_killed);
    // SIGKILL the driver did not send: the memory limit (see RunDiagnostics::oom_inferred).
    let inferred_oom =
        sup.reason.is_none() && !reported_oom && sup.exit.is_some_and(|e| e.code == 137);
    diag.oom_killed = reported_oom || inferred_oom;
    diag.oom_inferred = inferred_oom;
    let (status, exit_code) = match (sup.reason, sup.exit) {
        (Some(StopReason::TimedOut), _) => (JobStatus::TimedOut, -1),
        (Some(StopReason::Cancelled), _) => (JobStatus::Cancelled, -1),
        (None, Some(e)) if diag.oom_killed => (JobStatus::MemoryKilled, e.code),
        (None, Some(e)) if e.code == 0 => (JobStatus::Succeeded, 0),
        (None, Some(e)) => (JobStatus::Failed, e.code),
        (None, None) => (JobStatus::Failed, -1),
    };

    let (artifacts, result_file) = if status == JobStatus::Cancelled {
        (ArtifactSet::default(), None)
    } else {
        let artifacts = runtime
            .collect_artifacts(&id, ARTIFACTS_DIR, &config.artifacts)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "artifacts not collected");
                ArtifactSet::default()
            });
        let result_file = runtime
            .read_file(
                &id,
                &format!("{JOB_DIR}/result.json"),
                config.max_result_file_bytes,
            )
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "result.json not read");
                None
            });
        (artifacts, result_file)
    };

    Ok(JobResult {
        task_id: spec.task_id.clone(),
        job_id: spec.job_id.clone(),
        status,
        exit_code,
        started_at,
        ended_at,
        stdout: sup.stdout,
        stderr: sup.stderr,
        artifacts,
        result_file,
        diagnostics: diag,
    })
}

async fn ensure_image(
    inner: &Inner,
    spec: &JobSpec,
    image: &str,
    events: Option<&mpsc::Sender<JobEvent>>,
) -> Result<()> {
    let runtime = &inner.runtime;
    let policy = &inner.config.images;
    let info = match runtime.image(image).await? {
        Some(info) => info,
        None => {
            if policy.pull == crate::config::PullPolicy::Never {
                return Err(Error::ImageUnavailable {
                    image: image.to_string(),
                    reason: "not present locally and pulling is disabled".into(),
                    source: None,
                });
            }
            let tx = events.cloned();
            let progress = move |p: PullProgress| {
                tracing::debug!(status = %p.status, layer = ?p.layer, "pull");
                if let Some(tx) = &tx {
                    let _ = tx.try_send(JobEvent::Pulling(p));
                }
            };
            let limit = Duration::from_secs(policy.pull_timeout_secs.max(1));
            match tokio::time::timeout(limit, runtime.pull(image, &progress)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::ImageUnavailable {
                        image: image.to_string(),
                        reason: format!("image pull failed: timed out after {}s", limit.as_secs()),
                        source: None,
                    });
                }
            }
            runtime
                .image(image)
                .await?
                .ok_or_else(|| Error::ImageUnavailable {
                    image: image.to_string(),
                    reason: "image pull failed: image not present after the pull".into(),
                    source: None,
                })?
        }
    };
    if spec.runner_mode.is_some()
        && info.labels.get(LABEL_AGENT_COMPATIBLE).map(String::as_str) != Some("true")
    {
        return Err(Error::ImageNotAgentCompatible {
            image: image.to_string(),
        });
    }
    Ok(())
}

struct JobDirs {
    root: PathBuf,
    workspace: PathBuf,
    job: PathBuf,
    run: PathBuf,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal {
            message: "filesystem task failed".into(),
            source: Some(Box::new(e)),
        })?
}

async fn prepare_dirs(inner: &Inner, spec: &JobSpec, cleanup: &mut Cleanup) -> Result<JobDirs> {
    let config = &inner.config;
    let root = config.mount_root.join(path_safe(&spec.job_id));
    let dirs = JobDirs {
        workspace: root.join("workspace"),
        job: root.join("job"),
        run: root.join("run"),
        root: root.clone(),
    };
    let mount_root = config.mount_root.clone();
    let owner = config.owner.clone();
    let run_as = config.run_as;
    let with_run = spec.inference.is_some();
    let workspace_files = spec.workspace_files.clone();
    let job_files = spec.job_files.clone();
    let (ws, job, run) = (dirs.workspace.clone(), dirs.job.clone(), dirs.run.clone());
    // Claim the directory first so that a failure below still removes it; a concurrent
    // reap must not take it for a leftover in between.
    cleanup.shield_dir(&root);
    let r = root.clone();
    let o = owner.clone();
    blocking(move || claim_job_dir(&mount_root, &r, &o)).await?;
    cleanup.set_dir(root.clone());
    blocking(move || {
        for d in [&ws, &job] {
            make_dir(d)?;
        }
        make_dir(&job.join("artifacts"))?;
        if with_run {
            make_dir(&run)?;
        }
        for f in &workspace_files {
            write_input(&ws, f, run_as)?;
        }
        for f in &job_files {
            write_input(&job, f, run_as)?;
        }
        for d in [&ws, &job, &job.join("artifacts")] {
            give_to_sandbox(d, run_as, 0o700)?;
        }
        Ok(())
    })
    .await?;
    Ok(dirs)
}

/// Creates `<mount_root>/<job>` with the owner marker. An existing directory of the same
/// owner is a leftover (this job id is registered, so nothing else uses it) and is
/// replaced; one of another owner is a conflict.
fn claim_job_dir(mount_root: &Path, root: &Path, owner: &str) -> Result<()> {
    if !mount_root.exists() {
        fs::create_dir_all(mount_root)
            .map_err(|e| Error::io(format_args!("create {}", mount_root.display()), e))?;
        let _ = fs::set_permissions(mount_root, fs::Permissions::from_mode(0o711));
    }
    match fs::create_dir(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let marker = fs::read_to_string(root.join(OWNER_MARKER)).unwrap_or_default();
            if marker.trim() != owner {
                return Err(Error::JobConflict(format!(
                    "{} (directory in use by another driver)",
                    root.display()
                )));
            }
            remove_job_dir(root)
                .map_err(|e| Error::io(format_args!("remove stale {}", root.display()), e))?;
            fs::create_dir(root)
                .map_err(|e| Error::io(format_args!("create {}", root.display()), e))?;
        }
        Err(e) => return Err(Error::io(format_args!("create {}", root.display()), e)),
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o711))
        .map_err(|e| Error::io(format_args!("chmod {}", root.display()), e))?;
    fs::write(root.join(OWNER_MARKER), owner)
        .map_err(|e| Error::io(format_args!("write owner marker in {}", root.display()), e))?;
    Ok(())
}

fn make_dir(d: &Path) -> Result<()> {
    fs::create_dir(d).map_err(|e| Error::io(format_args!("create {}", d.display()), e))
}

/// Hands a path to the sandbox user. Where the process may not chown (rootless without
/// keep-id), directories are opened to everyone instead, inside a job root only the
/// worker can list.
fn give_to_sandbox(path: &Path, run_as: RunAs, mode: u32) -> Result<()> {
    match std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format_args!("chmod {}", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let open = if path.is_dir() { 0o777 } else { mode | 0o666 };
            fs::set_permissions(path, fs::Permissions::from_mode(open))
                .map_err(|e| Error::io(format_args!("chmod {}", path.display()), e))
        }
        Err(e) => Err(Error::io(format_args!("chown {}", path.display()), e)),
    }
}

fn write_input(base: &Path, file: &InputFile, run_as: RunAs) -> Result<()> {
    crate::spec::check_relative_path(&file.path)?;
    let target = base.join(&file.path);
    // Create missing parents one by one so each is handed to the sandbox user.
    let mut dir = base.to_path_buf();
    if let Some(parent) = Path::new(&file.path).parent() {
        for comp in parent.components() {
            dir.push(comp);
            if !dir.exists() {
                make_dir(&dir)?;
                give_to_sandbox(&dir, run_as, 0o755)?;
            }
        }
    }
    fs::write(&target, &file.content)
        .map_err(|e| Error::io(format_args!("write {}", target.display()), e))?;
    give_to_sandbox(&target, run_as, if file.executable { 0o755 } else { 0o644 })
}

fn container_spec(
    config: &DriverConfig,
    spec: &JobSpec,
    plan: &Plan,
    dirs: &JobDirs,
) -> ContainerSpec {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let name = format!("cynodeai-sbx-{}-{suffix}", path_safe(&spec.job_id));
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(LABEL_ROLE.to_string(), ROLE_SANDBOX.to_string());
    labels.insert(LABEL_OWNER.to_string(), config.owner.clone());
    labels.insert(LABEL_TASK_ID.to_string(), spec.task_id.clone());
    labels.insert(LABEL_JOB_ID.to_string(), spec.job_id.clone());
    let mut mounts = vec![
        BindMount {
            host_path: dirs.workspace.clone(),
            container_path: WORKSPACE_DIR.into(),
            read_only: false,
        },
        BindMount {
            host_path: dirs.job.clone(),
            container_path: JOB_DIR.into(),
            read_only: false,
        },
    ];
    if spec.inference.is_some() {
        mounts.push(BindMount {
            host_path: dirs.run.clone(),
            container_path: SOCKET_DIR.into(),
            read_only: false,
        });
    }
    ContainerSpec {
        name,
        image: plan.image.clone(),
        command: spec.command.clone(),
        env: plan.env.clone(),
        working_dir: spec
            .working_dir
            .clone()
            .unwrap_or_else(|| WORKSPACE_DIR.into()),
        user: config.run_as,
        labels,
        mounts,
        tmpfs: vec![("/tmp".into(), plan.tmp_bytes)],
        limits: plan.limits,
        read_only_rootfs: config.read_only_rootfs,
        selinux_relabel: config.selinux_relabel,
        userns_keep_id: config.userns_keep_id,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    TimedOut,
    Cancelled,
}

struct Supervised {
    exit: Option<ExitStatus>,
    reason: Option<StopReason>,
    stdout: crate::output::CapturedOutput,
    stderr: crate::output::CapturedOutput,
}

/// Pumps output into the bounded buffers (and to the follower) until it ends, then waits
/// for the container's exit, enforcing the deadline (SIGTERM, grace, SIGKILL) and cancellation
/// (SIGKILL).
async fn supervise(
    inner: &Inner,
    id: &ContainerId,
    output: OutputStream,
    timeout: Duration,
    events: Option<&mpsc::Sender<JobEvent>>,
    cancel: &CancellationToken,
) -> Result<Supervised> {
    let runtime = &inner.runtime;
    let cap = inner.config.max_output_bytes;
    let mut out = BoundedBuffer::new(cap);
    let mut err = BoundedBuffer::new(cap);
    let mut output = Some(output);
    let mut exit: Option<ExitStatus> = None;
    let mut reason: Option<StopReason> = None;
    let now = Instant::now();
    let deadline = now + timeout;
    let never = now + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut kill_at: Option<Instant> = None;
    let mut give_up_at: Option<Instant> = None;
    // The exit is awaited only once the output has ended (the container exits, or closed
    // its streams): an engine-side wait running next to a busy attach slows the stream
    // down badly on Podman, and the output's end is the exit in the normal case anyway.
    let mut wait: Option<futures::future::BoxFuture<'_, Result<ExitStatus>>> = None;

    while exit.is_none() || output.is_some() {
        if output.is_none() && exit.is_none() && wait.is_none() {
            wait = Some(runtime.wait(id));
        }
        tokio::select! {
            biased;
            item = next_chunk(&mut output), if output.is_some() => match item {
                Some(Ok((kind, data))) => {
                    let buf = match kind { StreamKind::Stdout => &mut out, StreamKind::Stderr => &mut err };
                    let offset = buf.total();
                    buf.push(&data);
                    if let Some(tx) = events {
                        let _ = tx.try_send(JobEvent::Output(OutputChunk { stream: kind, offset, data }));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "output stream broke; waiting for exit");
                    output = None;
                }
                None => output = None,
            },
            r = async { match wait.as_mut() { Some(w) => w.await, None => std::future::pending().await } },
                if wait.is_some() && exit.is_none() => {
                exit = Some(r?);
                wait = None;
            }
            _ = cancel.cancelled(), if reason.is_none() && exit.is_none() => {
                reason = Some(StopReason::Cancelled);
                send_signal(runtime.as_ref(), id, Signal::Kill).await;
                kill_at = None;
                give_up_at = Some(Instant::now() + KILL_BOUND);
            }
            _ = tokio::time::sleep_until(deadline), if reason.is_none() && exit.is_none() => {
                tracing::info!(container = %id, "deadline reached; stopping");
                reason = Some(StopReason::TimedOut);
                send_signal(runtime.as_ref(), id, Signal::Terminate).await;
                kill_at = Some(Instant::now() + inner.config.stop_grace());
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or(never)), if kill_at.is_some() && exit.is_none() => {
                send_signal(runtime.as_ref(), id, Signal::Kill).await;
                kill_at = None;
                give_up_at = Some(Instant::now() + KILL_BOUND);
            }
            _ = tokio::time::sleep_until(give_up_at.unwrap_or(never)), if give_up_at.is_some() => {
                tracing::warn!(container = %id, exited = exit.is_some(), "giving up waiting for the container's output to end");
                break;
            }
        }
    }
    Ok(Supervised {
        exit,
        reason,
        stdout: out.finish(),
        stderr: err.finish(),
    })
}

async fn next_chunk(
    output: &mut Option<OutputStream>,
) -> Option<Result<(StreamKind, bytes::Bytes)>> {
    match output {
        Some(s) => s.next().await,
        None => None,
    }
}

async fn send_signal(runtime: &dyn SandboxRuntime, id: &ContainerId, signal: Signal) {
    if let Err(e) = runtime.signal(id, signal).await {
        tracing::warn!(container = %id, ?signal, error = %e, "signal not delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_safe_ids() {
        assert_eq!(path_safe("0b7e-11"), "0b7e-11");
        assert_eq!(path_safe("../x y"), "___x_y");
        assert_eq!(path_safe(""), "job");
        assert_eq!(path_safe(&"a".repeat(100)).len(), 64);
    }

    #[test]
    fn plan_applies_policy_defaults_and_caps() {
        let mut config = DriverConfig::default();
        config.images.allowed = vec!["python:3.12".into()];
        config.max_limits.memory_mb = 512;
        config.max_timeout_secs = 60;
        let spec = JobSpec::new("busybox", ["true"]);
        assert!(
            matches!(plan(&config, &spec), Err(Error::ImageNotAllowed { image }) if image == "busybox")
        );
        let spec = JobSpec::new("python:3.12", ["true"])
            .with_memory_mb(4096)
            .with_timeout(Duration::from_secs(600));
        let p = plan(&config, &spec).unwrap();
        assert_eq!(p.limits.memory_bytes, 512 << 20);
        assert_eq!(p.timeout, Duration::from_secs(60));
        assert_eq!(p.limits.nano_cpus, 2_000_000_000);
        let spec = JobSpec::new("", ["true"]);
        assert_eq!(plan(&config, &spec).unwrap().image, "alpine:latest");
        let spec = JobSpec::new("python:3.12", ["true"])
            .with_inference(crate::spec::InferenceAccess::default());
        assert!(matches!(plan(&config, &spec), Err(Error::InvalidSpec(_))));
    }

    #[test]
    fn reap_dirs_only_touches_own_untracked_dirs() {
        let root = tempfile::tempdir().unwrap();
        let mk = |name: &str, owner: Option<&str>| {
            let d = root.path().join(name);
            fs::create_dir(&d).unwrap();
            if let Some(o) = owner {
                fs::write(d.join(OWNER_MARKER), o).unwrap();
            }
            d
        };
        mk("a", Some("me"));
        let tracked = mk("b", Some("me"));
        mk("c", Some("other"));
        mk("d", None);
        assert_eq!(reap_dirs(root.path(), "me", &[tracked]).unwrap(), 1);
        assert!(!root.path().join("a").exists());
        for keep in ["b", "c", "d"] {
            assert!(root.path().join(keep).exists());
        }
    }
}
