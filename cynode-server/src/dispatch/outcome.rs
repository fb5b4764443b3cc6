//! Result documents and how an ended job reaches the core job and its task.

use cynode_core::Error;
use cynode_core::model::{Job, JobStatus, JobUpdate, TaskStatus};
use cynode_core::proto::v1::worker::{RunJobResponse, RunJobStatus};
use serde_json::{Value, json};

use super::{Dispatcher, bump};

/// How a job ended, as the core job will show it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Final {
    /// `completed`, `failed` or `canceled`.
    pub(crate) status: JobStatus,
    /// The result document (`None` for a cancel).
    pub(crate) result: Option<Value>,
}

impl Final {
    /// A job the worker ran: `completed` only when the worker says so; `failed` and
    /// `timeout` make the job `failed`, and the document keeps the worker's status.
    pub(crate) fn from_worker(res: &RunJobResponse) -> Self {
        let status = match res.status {
            RunJobStatus::Completed => JobStatus::Completed,
            RunJobStatus::Failed | RunJobStatus::Timeout => JobStatus::Failed,
        };
        let mut doc = serde_json::to_value(res).unwrap_or_else(|_| json!({}));
        // A runner's answer is its output when it printed nothing (as the reference does).
        if res.stdout.is_empty()
            && let Some(answer) = res
                .sba_result
                .as_ref()
                .and_then(|s| s.get("final_answer"))
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            && let Some(obj) = doc.as_object_mut()
        {
            obj.insert("stdout".into(), Value::String(answer.to_string()));
        }
        Self {
            status,
            result: Some(doc),
        }
    }

    /// A job that could not be run (dispatch error): `failed` with the reference's
    /// dispatch-failure document.
    pub(crate) fn dispatch_error(message: &str) -> Self {
        Self {
            status: JobStatus::Failed,
            result: Some(error_doc(message)),
        }
    }

    /// What the queue job stores on completion, so any replica can rebuild this.
    pub(crate) fn to_queue_result(&self) -> Value {
        json!({"job_status": self.status.as_str(), "result": self.result})
    }

    /// Rebuilds the outcome of an ended queue job.
    pub(crate) fn from_queue_job(qj: &cynode_sched::Job) -> Option<Self> {
        match qj.state {
            cynode_sched::JobState::Completed => {
                let r = qj.result.as_ref();
                let status = r
                    .and_then(|r| r.get("job_status"))
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<JobStatus>().ok())
                    .filter(|s| s.is_terminal())
                    .unwrap_or(JobStatus::Completed);
                let result = r
                    .and_then(|r| r.get("result"))
                    .cloned()
                    .filter(|v| !v.is_null());
                Some(Self { status, result })
            }
            cynode_sched::JobState::Failed => Some(Self::dispatch_error(
                qj.last_error
                    .as_deref()
                    .unwrap_or("the job could not be dispatched"),
            )),
            cynode_sched::JobState::Canceled => Some(Self {
                status: JobStatus::Canceled,
                result: None,
            }),
            cynode_sched::JobState::Queued | cynode_sched::JobState::Running => None,
        }
    }
}

/// `{"version":1,"status":"failed","error":…}` (user API §6.6).
pub(crate) fn error_doc(message: &str) -> Value {
    json!({"version": 1, "status": "failed", "error": message})
}

/// The document a waiting job shows: `{"version":1,"status":"queued","reason":…}`.
pub(crate) fn waiting_doc(reason: &str) -> Value {
    json!({"version": 1, "status": "queued", "reason": reason})
}

/// The waiting reason a job's result shows now, if any.
pub(crate) fn waiting_reason(job: &Job) -> Option<&str> {
    let r = job.result.as_ref()?;
    (r.get("status").and_then(Value::as_str) == Some("queued"))
        .then(|| r.get("reason").and_then(Value::as_str))
        .flatten()
}

impl Dispatcher {
    /// Writes an ended job to the core job and its task. Returns `false` when the core
    /// job had already ended (for example it was canceled): nothing is changed then.
    pub(crate) async fn project_final(&self, job: &Job, f: &Final) -> cynode_core::Result<bool> {
        let s = &self.inner;
        let update = JobUpdate {
            status: Some(f.status),
            result: f.result.clone(),
            ended_at: Some(chrono::Utc::now()),
            lease: Some(None),
            ..Default::default()
        };
        let current = s.tasks.get_job(job.id).await?;
        if current.status.is_terminal() {
            return Ok(false);
        }
        match s.tasks.update_job(job.id, update).await {
            Ok(_) => {}
            Err(Error::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        let task_status = match f.status {
            JobStatus::Completed => TaskStatus::Completed,
            JobStatus::Canceled => TaskStatus::Canceled,
            _ => TaskStatus::Failed,
        };
        // The store never changes a task that already ended (e.g. canceled).
        s.tasks.set_task_status(job.task_id, task_status).await?;
        match f.status {
            JobStatus::Completed => bump(&s.counters.completed),
            JobStatus::Failed => bump(&s.counters.failed),
            _ => {}
        }
        tracing::info!(task_id = %job.task_id, job_id = %job.id, status = %f.status, "job ended");
        Ok(true)
    }

    /// Copies the outcome of an ended queue job to its open core job.
    pub(crate) async fn apply_ended_queue_job(
        &self,
        job: &Job,
        qj: &cynode_sched::Job,
    ) -> cynode_core::Result<bool> {
        match Final::from_queue_job(qj) {
            Some(f) => self.project_final(job, &f).await,
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use cynode_core::proto::v1::worker::Truncated;

    use super::*;

    fn response(status: RunJobStatus, stdout: &str, sba: Option<Value>) -> RunJobResponse {
        RunJobResponse {
            version: 1,
            task_id: "t".into(),
            job_id: "j".into(),
            status,
            exit_code: if status == RunJobStatus::Timeout {
                -1
            } else {
                0
            },
            stdout: stdout.into(),
            stderr: String::new(),
            started_at: None,
            ended_at: None,
            truncated: Truncated::default(),
            sba_result: sba,
            step_executor_result: None,
            artifacts: vec![],
            run_diagnostics: None,
        }
    }

    #[test]
    fn worker_statuses_map_to_job_statuses() {
        let f = Final::from_worker(&response(RunJobStatus::Completed, "hello\n", None));
        assert_eq!(f.status, JobStatus::Completed);
        assert_eq!(
            f.result.as_ref().and_then(|r| r["stdout"].as_str()),
            Some("hello\n")
        );
        let f = Final::from_worker(&response(RunJobStatus::Timeout, "", None));
        assert_eq!(f.status, JobStatus::Failed);
        let doc = f.result.expect("doc");
        assert_eq!(
            doc["status"], "timeout",
            "the document keeps the worker's status"
        );
        assert_eq!(doc["exit_code"], -1);
        let f = Final::from_worker(&response(RunJobStatus::Failed, "", None));
        assert_eq!(f.status, JobStatus::Failed);
    }

    #[test]
    fn an_empty_stdout_takes_the_runner_answer() {
        let sba = json!({"protocol_version": "1.0", "final_answer": "42"});
        let f = Final::from_worker(&response(RunJobStatus::Completed, "", Some(sba.clone())));
        assert_eq!(f.result.expect("doc")["stdout"], "42");
        let f = Final::from_worker(&response(RunJobStatus::Completed, "own", Some(sba)));
        assert_eq!(f.result.expect("doc")["stdout"], "own");
    }

    #[test]
    fn queue_results_round_trip() {
        let f = Final::from_worker(&response(RunJobStatus::Failed, "x", None));
        let stored = f.to_queue_result();
        let now = chrono::Utc::now();
        let qj = cynode_sched::Job {
            id: cynode_core::JobId::new(),
            queue: "dispatch".into(),
            kind: "k".into(),
            payload: json!({}),
            priority: 0,
            state: cynode_sched::JobState::Completed,
            attempt: 1,
            max_attempts: 5,
            run_at: now,
            idempotency_key: None,
            concurrency_key: None,
            lease_id: None,
            lease_expires_at: None,
            worker_id: None,
            last_error: None,
            result: Some(stored),
            reason: None,
            placement: None,
            affinity_key: None,
            node_id: None,
            created_at: now,
            started_at: None,
            ended_at: None,
            updated_at: now,
        };
        assert_eq!(Final::from_queue_job(&qj), Some(f));
        let failed = cynode_sched::Job {
            state: cynode_sched::JobState::Failed,
            last_error: Some("cannot reach the worker".into()),
            result: None,
            ..qj
        };
        let back = Final::from_queue_job(&failed).expect("final");
        assert_eq!(back.status, JobStatus::Failed);
        assert_eq!(
            back.result,
            Some(json!({"version": 1, "status": "failed", "error": "cannot reach the worker"}))
        );
    }
}
