//! One dispatch attempt: load, place, call the node, apply the outcome (fenced).

use std::time::Duration;

use cynode_client::worker::{WorkerApiError, WorkerTarget};
use cynode_core::Error;
use cynode_core::model::{Job, JobStatus, JobUpdate, TaskStatus};
use cynode_core::proto::v1::worker::RunJobRequest;
use cynode_sched::{
    Finish, FinishResult, JobContext, JobError, JobResult, JobState, Outcome, Requirements,
};
use serde_json::Value;

use super::outcome::{Final, waiting_doc, waiting_reason};
use super::{Dispatcher, bump};

/// Longest wait a node's `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What a failed call means for the job.
enum Failure {
    /// Run it again later (it cannot have started, or its node went away).
    Retry(String, Option<Duration>),
    /// Give up: the job fails with this message.
    Final(String),
}

impl Dispatcher {
    /// The queue handler: one attempt of one job.
    pub(crate) async fn attempt(&self, ctx: JobContext) -> JobResult {
        let s = &self.inner;
        let id = ctx.id();
        let job = match s.tasks.get_job(id).await {
            Ok(j) => j,
            Err(Error::NotFound { .. }) => {
                // The task was deleted: nothing to run.
                self.finish(
                    &ctx,
                    Outcome::Failed {
                        error: "the job no longer exists".into(),
                    },
                )
                .await;
                return Ok(None);
            }
            Err(e) => return Err(storage_wait(&e)),
        };
        match job.status {
            JobStatus::Canceled => {
                // Canceled in storage while the queue job was not (the cancel call was
                // lost): cancel it now; the lease then stops this attempt.
                let _ = s.queue.cancel(id).await;
                return Ok(None);
            }
            st if st.is_terminal() => {
                // Already applied (by an earlier attempt or a reconcile): done.
                self.finish(&ctx, Outcome::Completed { result: None }).await;
                return Ok(None);
            }
            _ => {}
        }

        let req = match self.run_request(&job) {
            Ok(r) => r,
            Err(msg) => {
                self.fail_final(&ctx, &job, Final::dispatch_error(&msg))
                    .await;
                return Ok(None);
            }
        };
        let needs = requirements(&req);

        // Placement, under this replica's placement lock.
        let entry = {
            let mut cache = s.placement.lock().await;
            let nodes = match cache
                .get(
                    s.nodes.as_ref(),
                    s.config.node_cache_ttl,
                    s.config.node_stale_after,
                )
                .await
            {
                Ok(n) => n,
                Err(e) => return Err(storage_wait(&e)),
            };
            let loads = match s.queue.node_loads().await {
                Ok(l) => l,
                Err(e) => return Err(storage_wait(&e)),
            };
            let infos: Vec<_> = nodes
                .iter()
                .map(|e| {
                    let mut i = e.info.clone();
                    i.in_flight = loads.get(&i.id).copied().unwrap_or(0);
                    i
                })
                .collect();
            match cynode_sched::place(&needs, &infos, None) {
                Ok(node_id) => {
                    let Some(entry) = nodes.iter().find(|e| e.info.id == node_id).cloned() else {
                        return Err(JobError::snooze(
                            s.config.placement_retry,
                            "the chosen node vanished",
                        ));
                    };
                    match s.queue.assign_node(id, ctx.lease_id(), node_id).await {
                        Ok(true) => entry,
                        // The lease is gone (canceled or expired): not ours any more.
                        Ok(false) => return Ok(None),
                        Err(e) => return Err(storage_wait(&e)),
                    }
                }
                Err(reason) => {
                    drop(cache);
                    bump(&s.counters.waited);
                    if waiting_reason(&job) != Some(reason.as_str()) {
                        let update = JobUpdate {
                            result: Some(waiting_doc(&reason)),
                            ..Default::default()
                        };
                        if let Err(e) = s.tasks.update_job(id, update).await {
                            tracing::debug!(job_id = %id, error = %e, "could not record the waiting reason");
                        }
                    }
                    tracing::debug!(job_id = %id, %reason, "no node can take the job yet");
                    return Err(JobError::snooze(s.config.placement_retry, reason));
                }
            }
        };
        let node = &entry.node;
        let slug = node.node_slug.as_str();

        let target = match s.tokens.token(node).await.and_then(|t| {
            WorkerTarget::new(node.worker_api_target_url.as_deref().unwrap_or(""), t)
                .map_err(|e| Error::invalid(e.to_string()))
        }) {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("node {slug} cannot be called: {e}");
                return self.retry_or_fail(&ctx, &job, msg, None).await;
            }
        };

        // Running: core job and task.
        let now = chrono::Utc::now();
        let lease_until =
            now + chrono::Duration::from_std(s.config.lease_ttl).unwrap_or(chrono::Duration::MAX);
        let update = JobUpdate {
            status: Some(JobStatus::Running),
            node_id: Some(node.id),
            lease: Some(Some((ctx.lease_id(), lease_until))),
            started_at: Some(now),
            result: job
                .result
                .as_ref()
                .map(|_| serde_json::json!({"version": 1, "status": "running", "node_slug": slug})),
            ..Default::default()
        };
        match s.tasks.update_job(id, update).await {
            Ok(_) => {}
            // Ended meanwhile (canceled): leave it.
            Err(Error::Conflict(_)) => return Ok(None),
            Err(e) => return Err(storage_wait(&e)),
        }
        if let Err(e) = s
            .tasks
            .set_task_status(job.task_id, TaskStatus::Running)
            .await
        {
            tracing::warn!(task_id = %job.task_id, error = %e, "could not mark the task running");
        }

        bump(&s.counters.calls);
        tracing::info!(task_id = %job.task_id, job_id = %id, node = slug, attempt = ctx.attempt(), "dispatching job");
        // A cancel or a lost lease drops this future, which closes the connection; the
        // node then stops the job.
        let res = s.client.run_job(&target, &req).await;
        match res {
            Ok(r) => {
                self.fail_or_complete(&ctx, &job, Final::from_worker(&r))
                    .await;
                Ok(None)
            }
            Err(e) => match classify(&e, slug) {
                Failure::Retry(msg, after) => self.retry_or_fail(&ctx, &job, msg, after).await,
                Failure::Final(msg) => {
                    self.fail_final(&ctx, &job, Final::dispatch_error(&msg))
                        .await;
                    Ok(None)
                }
            },
        }
    }

    /// The §6.2 request from the stored payload, with ids, image and runner defaults.
    fn run_request(&self, job: &Job) -> Result<RunJobRequest, String> {
        let payload = match &job.payload {
            Value::String(s) => serde_json::from_str(s).map_err(|e| e.to_string()),
            v => Ok(v.clone()),
        }
        .map_err(|e| format!("invalid job payload: {e}"))?;
        let mut req: RunJobRequest =
            serde_json::from_value(payload).map_err(|e| format!("invalid job payload: {e}"))?;
        if req.version != cynode_core::proto::v1::VERSION {
            return Err(format!(
                "invalid job payload: version {} is not supported",
                req.version
            ));
        }
        req.task_id = job.task_id.to_string();
        req.job_id = job.id.to_string();
        let sb = &mut req.sandbox;
        if sb.image.trim().is_empty() && !sb.job_spec_json.trim().is_empty() {
            sb.image = self.inner.config.runner_image.clone();
        }
        if let Some(alias) = self.inner.config.image_aliases.get(sb.image.trim()) {
            sb.image = alias.clone();
        }
        req.inference = super::inference::grant(
            self.inner.config.job_inference.as_ref(),
            job,
            &req,
            self.inner.config.client.default_job_timeout,
        )?;
        Ok(req)
    }

    /// A result to apply: fenced on the queue job first, then copied to the core job.
    async fn fail_or_complete(&self, ctx: &JobContext, job: &Job, f: Final) {
        let applied = self
            .finish(
                ctx,
                Outcome::Completed {
                    result: Some(f.to_queue_result()),
                },
            )
            .await;
        if applied {
            self.project_detached(job, f).await;
        }
    }

    /// A dispatch error that ends the job.
    async fn fail_final(&self, ctx: &JobContext, job: &Job, f: Final) {
        let error = f
            .result
            .as_ref()
            .and_then(|r| r.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("dispatch failed")
            .to_string();
        if self.finish(ctx, Outcome::Failed { error }).await {
            self.project_detached(job, f).await;
        }
    }

    /// A failure worth another attempt, when attempts are left; else the end.
    async fn retry_or_fail(
        &self,
        ctx: &JobContext,
        job: &Job,
        msg: String,
        after: Option<Duration>,
    ) -> JobResult {
        let s = &self.inner;
        let attempt = ctx.attempt();
        let max = ctx.job().max_attempts;
        if attempt >= max {
            let msg = format!("{msg} (gave up after {attempt} attempts)");
            tracing::warn!(job_id = %job.id, error = %msg, "job failed");
            self.fail_final(ctx, job, Final::dispatch_error(&msg)).await;
            return Ok(None);
        }
        let delay = after
            .map(|d| d.min(MAX_RETRY_AFTER))
            .unwrap_or_else(|| s.config.retry.delay(attempt));
        bump(&s.counters.retried);
        tracing::info!(job_id = %job.id, attempt, error = %msg, retry_in_ms = delay.as_millis() as u64, "job will be retried");
        // Show the retry while it waits, unless another holder took the job meanwhile.
        if let Ok(cur) = s.tasks.get_job(job.id).await
            && cur.lease_id == Some(ctx.lease_id())
        {
            let reason = format!("retrying (attempt {} of {max} next): {msg}", attempt + 1);
            let update = JobUpdate {
                status: Some(JobStatus::Queued),
                result: Some(waiting_doc(&reason)),
                lease: Some(None),
                ..Default::default()
            };
            if let Err(e) = s.tasks.update_job(job.id, update).await {
                tracing::debug!(job_id = %job.id, error = %e, "could not record the retry");
            }
        }
        Err(JobError::retry_after(msg, delay))
    }

    /// Applies an outcome to the queue job, fenced by this attempt's lease. `true` when
    /// it was applied; `false` when the job was canceled or the lease lost meanwhile (the
    /// outcome is then discarded).
    async fn finish(&self, ctx: &JobContext, outcome: Outcome) -> bool {
        let s = &self.inner;
        let f = Finish {
            job_id: ctx.id(),
            lease_id: ctx.lease_id(),
            outcome,
        };
        let mut delay = Duration::from_millis(50);
        loop {
            match s.queue.finish(std::slice::from_ref(&f)).await {
                Ok(r) => {
                    return match r.first() {
                        Some(FinishResult::Applied(JobState::Completed | JobState::Failed)) => true,
                        Some(other) => {
                            bump(&s.counters.discarded);
                            tracing::info!(job_id = %ctx.id(), result = ?other, "outcome discarded: the job was canceled or taken over");
                            false
                        }
                        None => false,
                    };
                }
                Err(e) if e.is_retryable() && !ctx.is_cancelled() => {
                    tracing::warn!(job_id = %ctx.id(), error = %e, "recording the outcome failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    // The lease runs out and the job runs again; nothing was applied.
                    tracing::error!(job_id = %ctx.id(), error = %e, "recording the outcome failed");
                    return false;
                }
            }
        }
    }

    /// Copies an applied outcome to the core job on its own task, so a cancel of this
    /// attempt cannot cut the copy short (a failed copy is repaired by `reconcile`).
    async fn project_detached(&self, job: &Job, f: Final) {
        let me = self.clone();
        let job = job.clone();
        let h = tokio::spawn(async move {
            if let Err(e) = me.project_final(&job, &f).await {
                tracing::warn!(job_id = %job.id, error = %e, "could not store the job's outcome yet; reconcile will");
            }
        });
        let _ = h.await;
    }
}

/// What a job needs from a node: inference for `use_inference` and for runner jobs in
/// `agent_inference` mode (explicit, or implied by a spec without steps).
pub(crate) fn requirements(req: &RunJobRequest) -> Requirements {
    let sb = &req.sandbox;
    let runner_inference = !sb.job_spec_json.trim().is_empty()
        && serde_json::from_str::<Value>(&sb.job_spec_json)
            .ok()
            .is_some_and(
                |spec| match spec.get("execution_mode").and_then(Value::as_str) {
                    Some(mode) => mode == "agent_inference",
                    None => spec
                        .get("steps")
                        .and_then(Value::as_array)
                        .is_none_or(|s| s.is_empty()),
                },
            );
    Requirements {
        inference: sb.use_inference || runner_inference,
        ..Default::default()
    }
}

/// §12.2: retry only what cannot have started, or what a vanished node took with it.
fn classify(e: &WorkerApiError, slug: &str) -> Failure {
    match e {
        WorkerApiError::Unreachable { .. } | WorkerApiError::Busy { .. } => {
            Failure::Retry(format!("node {slug}: {e}"), e.retry_after())
        }
        WorkerApiError::ConnectionLost { .. } => Failure::Retry(
            format!("node {slug} went away while running the job: {e}"),
            None,
        ),
        _ => Failure::Final(format!("node {slug}: {e}")),
    }
}

/// Storage trouble before anything was sent: wait without counting the attempt.
fn storage_wait(e: &Error) -> JobError {
    tracing::warn!(error = %e, "dispatch attempt could not read or write storage");
    JobError::snooze(Duration::from_secs(2), format!("waiting for storage: {e}"))
}

#[cfg(test)]
mod tests {
    use cynode_core::proto::v1::worker::SandboxRequest;

    use super::*;

    fn req(use_inference: bool, spec: &str) -> RunJobRequest {
        RunJobRequest {
            version: 1,
            task_id: "t".into(),
            job_id: "j".into(),
            sandbox: SandboxRequest {
                use_inference,
                job_spec_json: spec.into(),
                ..Default::default()
            },
            inference: None,
        }
    }

    #[test]
    fn inference_is_needed_for_use_inference_and_agent_runners() {
        assert!(!requirements(&req(false, "")).inference);
        assert!(requirements(&req(true, "")).inference);
        assert!(requirements(&req(false, r#"{"execution_mode":"agent_inference"}"#)).inference);
        assert!(
            !requirements(&req(
                false,
                r#"{"execution_mode":"direct_steps","steps":[{}]}"#
            ))
            .inference
        );
        assert!(requirements(&req(false, r#"{"steps":[]}"#)).inference);
        assert!(!requirements(&req(false, r#"{"steps":[{"type":"run_command"}]}"#)).inference);
    }

    #[test]
    fn only_jobs_that_cannot_have_started_or_lost_their_node_are_retried() {
        let busy = WorkerApiError::Busy {
            status: 503,
            detail: "at capacity".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(
            matches!(classify(&busy, "n"), Failure::Retry(_, Some(d)) if d == Duration::from_secs(3))
        );
        let lost = WorkerApiError::ConnectionLost {
            message: "reset".into(),
            source: "reset".into(),
        };
        assert!(matches!(classify(&lost, "n"), Failure::Retry(m, None) if m.contains("went away")));
        for e in [
            WorkerApiError::Rejected {
                status: 401,
                detail: "Invalid or missing bearer token".into(),
            },
            WorkerApiError::Rejected {
                status: 500,
                detail: "Job execution failed".into(),
            },
            WorkerApiError::Timeout {
                after: Duration::from_secs(62),
            },
            WorkerApiError::InvalidResponse("garbage".into()),
        ] {
            assert!(matches!(classify(&e, "n"), Failure::Final(_)), "{e}");
        }
    }
}
