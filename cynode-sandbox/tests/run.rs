//! Driver behaviour on a real engine: results, output, env, files, artifacts, live
//! events, cancellation, timeouts, cleanup on every path, reaping and image errors.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cynode_sandbox::runtime::{
    BindMount, ContainerLimits, ContainerSpec, LABEL_JOB_ID, LABEL_OWNER, LABEL_ROLE, ROLE_SANDBOX,
};
use cynode_sandbox::{
    ArtifactSkip, Error, InputFile, JobEvent, JobSpec, JobStatus, PullPolicy, RunAs, StreamKind,
};

fn sh(env: &common::TestEnv, script: &str) -> JobSpec {
    JobSpec::new(env.image.clone(), ["sh", "-c", script])
}

#[tokio::test]
async fn hello_and_exit_codes() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;

    let r = t.driver.run(sh(&env, "echo hello")).await.unwrap();
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.stdout.text, "hello\n");
    assert!(!r.stdout.truncated && !r.stderr.truncated);
    assert_eq!(r.stdout.total_bytes, 6);
    assert!(r.diagnostics.container_started);
    assert!(r.ended_at >= r.started_at);

    let r = t
        .driver
        .run(sh(&env, "echo oops >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(r.exit_code, 3);
    assert_eq!(r.stderr.text, "oops\n");
    assert_eq!(r.stdout.text, "");

    // Empty image -> the driver's default image.
    let r = t
        .driver
        .run(JobSpec::new("", ["echo", "default"]))
        .await
        .unwrap();
    assert_eq!(r.stdout.text, "default\n");
    assert_eq!(r.diagnostics.image, env.image);

    assert!(
        t.wait_until_clean().await.is_empty(),
        "containers or dirs left behind"
    );
}

#[tokio::test]
async fn context_env_cannot_be_forged_and_files_are_placed() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    let spec = sh(
        &env,
        "echo $CYNODE_TASK_ID $CYNODE_JOB_ID $CYNODE_WORKSPACE_DIR $CYNODE_ARTIFACTS_DIR; \
         echo ${OLLAMA_HOST:-none} ${INFERENCE_PROXY_URL:-none} $MY_VAR; pwd; cat input/data.txt; \
         ./run.sh; cat /job/job.json",
    )
    .with_ids("task-1", "job-ctx-1")
    .with_env("CYNODE_TASK_ID", "forged")
    .with_env("OLLAMA_HOST", "http://10.1.2.3:11434")
    .with_env("INFERENCE_PROXY_URL", "http://evil")
    .with_env("MY_VAR", "mine")
    .with_workspace_file(InputFile::new("input/data.txt", "data\n"))
    .with_workspace_file(InputFile::executable(
        "run.sh",
        "#!/bin/sh\necho script ran\n",
    ))
    .with_job_file(InputFile::new("job.json", "{\"x\":1}"));
    let r = t.driver.run(spec).await.unwrap();
    assert_eq!(r.status, JobStatus::Succeeded, "stderr: {}", r.stderr.text);
    assert_eq!(
        r.stdout.text,
        "task-1 job-ctx-1 /workspace /job/artifacts\nnone none mine\n/workspace\ndata\nscript ran\n{\"x\":1}"
    );
    let mut dropped = r.diagnostics.dropped_env.clone();
    dropped.sort();
    assert_eq!(
        dropped,
        ["CYNODE_TASK_ID", "INFERENCE_PROXY_URL", "OLLAMA_HOST"]
    );
    assert!(r.diagnostics.env_names.contains(&"MY_VAR".to_string()));
}

#[tokio::test]
async fn artifacts_and_result_file_are_collected_within_caps() {
    let env = require_env!();
    let t = common::driver(&env, |c| {
        c.artifacts.max_file_bytes = 1000;
        c.artifacts.max_files = 3;
    })
    .await;
    let r = t
        .driver
        .run(sh(
            &env,
            "echo report > /job/artifacts/r.txt; mkdir /job/artifacts/sub; \
             head -c 5000 /dev/zero > /job/artifacts/sub/big.bin; \
             ln -s /etc/passwd /job/artifacts/link; \
             echo '{\"status\":\"success\"}' > /job/result.json",
        ))
        .await
        .unwrap();
    assert_eq!(r.status, JobStatus::Succeeded, "stderr: {}", r.stderr.text);
    let files = &r.artifacts.files;
    assert_eq!(files.len(), 2, "symlink must not be collected: {files:?}");
    assert_eq!(files[0].path, "artifacts/r.txt");
    assert_eq!(files[0].size_bytes, 7);
    assert_eq!(files[0].content.as_deref(), Some(&b"report\n"[..]));
    assert_eq!(
        files[0].sha256.as_deref(),
        Some("331d26d6d8f862e46ba900811be8a7a1e4dbaa229b14c99becfd5e5151490d95")
    );
    assert_eq!(files[1].path, "artifacts/sub/big.bin");
    assert_eq!(files[1].size_bytes, 5000);
    assert_eq!(files[1].skipped, Some(ArtifactSkip::TooLarge));
    assert_eq!(
        r.result_file.as_deref(),
        Some(&b"{\"status\":\"success\"}\n"[..])
    );

    // Over the count cap the list is a prefix and flagged.
    let r = t
        .driver
        .run(sh(
            &env,
            "for i in 1 2 3 4 5; do echo $i > /job/artifacts/f$i; done",
        ))
        .await
        .unwrap();
    assert_eq!(r.artifacts.files.len(), 3);
    assert!(r.artifacts.truncated);
}

#[tokio::test]
async fn output_is_bounded_with_true_counts_and_valid_utf8() {
    let env = require_env!();
    let t = common::driver(&env, |c| c.max_output_bytes = 262_144).await;
    let r = t
        .driver
        .run(sh(&env, "yes aaaaaaa | head -c 1048576; echo small >&2"))
        .await
        .unwrap();
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(r.stdout.text.len(), 262_144);
    assert!(r.stdout.truncated);
    assert_eq!(r.stdout.total_bytes, 1_048_576);
    assert!(!r.stderr.truncated);
    assert_eq!(r.stderr.text, "small\n");

    // A cap that falls inside a multi-byte character: "é\n" is 3 bytes.
    let t = common::driver(&env, |c| c.max_output_bytes = 4).await;
    let r = t.driver.run(sh(&env, "yes é | head -n 10")).await.unwrap();
    assert_eq!(r.stdout.text, "é\n");
    assert!(r.stdout.truncated);
    assert_eq!(r.stdout.total_bytes, 30);
}

#[tokio::test]
async fn live_events_arrive_in_order_before_the_result() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    let mut job = t.driver.spawn(sh(&env, "echo one; echo err >&2; echo two"));
    let mut started = false;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut next_offset = 0u64;
    while let Some(ev) = job.next_event().await {
        match ev {
            JobEvent::Started { container_id } => {
                assert!(!container_id.is_empty());
                started = true;
            }
            JobEvent::Output(chunk) => {
                assert!(started, "output before the Started event");
                match chunk.stream {
                    StreamKind::Stdout => {
                        assert_eq!(chunk.offset, next_offset, "no gap in a slow stream");
                        next_offset += chunk.data.len() as u64;
                        stdout.extend_from_slice(&chunk.data);
                    }
                    StreamKind::Stderr => stderr.extend_from_slice(&chunk.data),
                }
            }
            _ => {}
        }
    }
    assert_eq!(String::from_utf8(stdout).unwrap(), "one\ntwo\n");
    assert_eq!(String::from_utf8(stderr).unwrap(), "err\n");
    let r = job.wait().await.unwrap();
    assert_eq!(r.stdout.text, "one\ntwo\n");
}

#[tokio::test]
async fn deadline_stops_the_job_and_removes_the_container() {
    let env = require_env!();
    let t = common::driver(&env, |c| c.stop_grace_secs = 1).await;
    let spec = sh(&env, "echo before; sleep 600").with_timeout(Duration::from_secs(2));
    let job_id = spec.job_id.clone();
    let r = t.driver.run(spec).await.unwrap();
    assert_eq!(r.status, JobStatus::TimedOut);
    assert_eq!(r.exit_code, -1);
    assert_eq!(
        r.stdout.text, "before\n",
        "output up to the deadline is kept"
    );
    let left = t.leftovers().await;
    assert!(
        !left
            .iter()
            .any(|c| c.labels.get(LABEL_JOB_ID) == Some(&job_id)),
        "timed-out container still exists"
    );
    assert!(t.leftover_dirs().is_empty());
}

#[tokio::test]
async fn deadline_escalates_to_sigkill_when_sigterm_is_ignored() {
    let env = require_env!();
    let t = common::driver(&env, |c| c.stop_grace_secs = 1).await;
    let spec = sh(
        &env,
        "trap '' TERM; echo ready; while true; do sleep 1; done",
    )
    .with_timeout(Duration::from_secs(2));
    let r = t.driver.run(spec).await.unwrap();
    assert_eq!(r.status, JobStatus::TimedOut);
    assert!(t.wait_until_clean().await.is_empty());
}

#[tokio::test]
async fn deadline_applies_after_the_job_closes_its_output() {
    let env = require_env!();
    let t = common::driver(&env, |c| c.stop_grace_secs = 1).await;
    let spec =
        sh(&env, "echo bye; exec >/dev/null 2>&1; sleep 600").with_timeout(Duration::from_secs(2));
    let r = t.driver.run(spec).await.unwrap();
    assert_eq!(r.status, JobStatus::TimedOut);
    assert_eq!(r.stdout.text, "bye\n");
    assert!(t.wait_until_clean().await.is_empty());
}

#[tokio::test]
async fn cancel_kills_promptly_and_cleans_up() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    let mut job = t.driver.spawn(sh(&env, "echo started; sleep 600"));
    // Wait until the command has produced output, then cancel.
    loop {
        match job.next_event().await {
            Some(JobEvent::Output(c)) if c.data.as_ref() == b"started\n" => break,
            Some(_) => continue,
            None => panic!("job ended before producing output"),
        }
    }
    job.cancel();
    let r = job.wait().await.unwrap();
    assert_eq!(r.status, JobStatus::Cancelled);
    assert_eq!(r.exit_code, -1);
    assert!(t.wait_until_clean().await.is_empty());
}

#[tokio::test]
async fn dropping_the_future_or_the_handle_removes_the_container() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;

    // 1. The `run` future is dropped while the job runs.
    let mut fut = Box::pin(t.driver.run(sh(&env, "sleep 600")));
    // Drive it until the container exists.
    let mut seen = false;
    for _ in 0..300 {
        tokio::select! {
            r = &mut fut => panic!("job finished unexpectedly: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if t.leftovers().await.iter().any(|c| c.state == "running") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the container never started");
    drop(fut);
    assert!(
        t.wait_until_clean().await.is_empty(),
        "dropped future left its container"
    );

    // 2. The spawned job's handle is dropped.
    let mut job = t.driver.spawn(sh(&env, "echo up; sleep 600"));
    while let Some(ev) = job.next_event().await {
        if matches!(ev, JobEvent::Output(_)) {
            break;
        }
    }
    drop(job);
    assert!(
        t.wait_until_clean().await.is_empty(),
        "dropped handle left its container"
    );
}

#[tokio::test]
async fn reap_removes_only_this_owners_orphans() {
    let env = require_env!();
    let crashed = common::driver(&env, |_| {}).await;
    let other = common::driver(&env, |_| {}).await;
    // A container left by a "crashed" process: created through the runtime with the
    // owner label, running, and tracked by no driver.
    let make = |owner: &str, job: &str| {
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_ROLE.to_string(), ROLE_SANDBOX.to_string());
        labels.insert(LABEL_OWNER.to_string(), owner.to_string());
        labels.insert(LABEL_JOB_ID.to_string(), job.to_string());
        ContainerSpec {
            name: format!("cynodeai-sbx-orphan-{}", uuid::Uuid::new_v4().simple()),
            image: env.image.clone(),
            command: vec!["sleep".into(), "600".into()],
            env: vec![],
            working_dir: "/".into(),
            user: RunAs {
                uid: common::SANDBOX_UID,
                gid: common::SANDBOX_UID,
            },
            labels,
            mounts: Vec::<BindMount>::new(),
            tmpfs: vec![],
            limits: ContainerLimits {
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
                pids: 16,
                nofile: 256,
                nproc: 1024,
            },
            read_only_rootfs: true,
            selinux_relabel: false,
            userns_keep_id: false,
        }
    };
    let rt = crashed.driver.runtime();
    let orphan = rt.create(&make(&crashed.owner, "orphan")).await.unwrap();
    rt.start(&orphan).await.unwrap();
    let foreign = rt.create(&make(&other.owner, "foreign")).await.unwrap();
    // A job directory left behind too.
    let stale = crashed.mount_root.join("stale-job");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join(".cynode-owner"), &crashed.owner).unwrap();

    // The restarted process: same owner, fresh driver.
    let restarted = cynode_sandbox::Driver::new(
        crashed.driver.runtime().clone(),
        crashed.driver.config().clone(),
    )
    .unwrap();
    // A job of the restarted driver that is running during the sweep must survive it.
    let mut live = restarted.spawn(sh(&env, "echo live; sleep 3; echo done"));
    while let Some(ev) = live.next_event().await {
        if matches!(ev, JobEvent::Started { .. }) {
            break;
        }
    }
    let report = restarted.reap_orphans().await.unwrap();
    assert_eq!(report.containers, 1);
    assert_eq!(report.directories, 1);
    assert!(!stale.exists());
    let live = live.wait().await.unwrap();
    assert_eq!(
        live.status,
        JobStatus::Succeeded,
        "the sweep touched a live job"
    );
    assert_eq!(live.stdout.text, "live\ndone\n");

    assert!(crashed.leftovers().await.is_empty());
    let foreign_left = other.leftovers().await;
    assert_eq!(foreign_left.len(), 1, "another owner's container must stay");
    rt.remove(&foreign).await.unwrap();
    assert!(other.leftovers().await.is_empty());
}

#[tokio::test]
async fn image_errors_name_the_image_and_do_not_hang() {
    let env = require_env!();
    // Disallowed: refused before anything is pulled or created.
    let t = common::driver(&env, |c| c.images.allowed = vec!["python:3.12".into()]).await;
    let err = t
        .driver
        .run(JobSpec::new("docker.io/library/busybox:latest", ["true"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageNotAllowed { .. }), "{err:?}");
    assert!(err.to_string().contains("docker.io/library/busybox:latest"));
    assert!(!err.is_retryable());

    // Missing with pulling disabled.
    let t = common::driver(&env, |_| {}).await;
    let err = t
        .driver
        .run(JobSpec::new("localhost/does-not-exist:nope", ["true"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageUnavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("localhost/does-not-exist:nope"));

    // Missing with pulling enabled: there is no registry, so the pull fails (quickly,
    // bounded by the pull timeout) and the error names the image.
    let t = common::driver(&env, |c| {
        c.images.pull = PullPolicy::IfMissing;
        c.images.pull_timeout_secs = 60;
    })
    .await;
    let err = t
        .driver
        .run(JobSpec::new("localhost:1/does-not-exist:nope", ["true"]))
        .await
        .unwrap_err();
    match &err {
        Error::ImageUnavailable { image, reason, .. } => {
            assert_eq!(image, "localhost:1/does-not-exist:nope");
            assert!(reason.starts_with("image pull failed"), "{reason}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(t.wait_until_clean().await.is_empty());
}

#[tokio::test]
async fn duplicate_running_job_id_is_a_conflict() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    let spec = sh(&env, "sleep 600").with_ids("task", "same-job");
    let mut first = t.driver.spawn(spec.clone());
    while let Some(ev) = first.next_event().await {
        if matches!(ev, JobEvent::Started { .. }) {
            break;
        }
    }
    let err = t.driver.run(spec).await.unwrap_err();
    assert!(matches!(err, Error::JobConflict(_)), "{err:?}");
    first.cancel();
    assert_eq!(first.wait().await.unwrap().status, JobStatus::Cancelled);
}

#[tokio::test]
async fn runner_mode_requires_an_agent_compatible_image() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    let mut spec = sh(&env, "true");
    spec.runner_mode = Some(cynode_sandbox::RunnerMode::DirectSteps);
    let err = t.driver.run(spec).await.unwrap_err();
    assert!(
        matches!(err, Error::ImageNotAgentCompatible { .. }),
        "{err:?}"
    );
    assert!(t.wait_until_clean().await.is_empty());
}
