//! The container-runtime arguments of an agent (SBA runner) sandbox with inference, for
//! tools that start the runner themselves (`cynode-worker --print-sba-pod-run-args`).
//!
//! They restate what the [`Driver`](crate::Driver) applies to every job (no network, all
//! capabilities dropped, no-new-privileges, read-only root, `--init`, a non-root user,
//! the role and job labels, the job's workspace and job directories) plus the inference
//! socket directory at [`SOCKET_DIR`] with [`INFERENCE_PROXY_URL`] pointing at the socket:
//! the proxy is served by the node process, not by a sidecar container, so no upstream
//! address enters the sandbox.

use std::path::Path;

use crate::RunAs;
use crate::env::{ARTIFACTS_DIR, INFERENCE_PROXY_URL, JOB_DIR, SOCKET_DIR, WORKSPACE_DIR};
use crate::runtime::{LABEL_JOB_ID, LABEL_ROLE, ROLE_SANDBOX};
use crate::spec::RunnerMode;

/// The arguments after the runtime's name (`podman`/`docker`), starting with `run` and
/// ending with `image`, for job `job_id` whose directories live under
/// `mount_root/<job_id>/{workspace,job,run}`. `userns_keep_id` adds Podman's
/// `--userns=keep-id`. Each element is one argument; none contains a space unless a path
/// or the image does.
pub fn sba_run_args(
    mount_root: &Path,
    job_id: &str,
    run_as: RunAs,
    userns_keep_id: bool,
    image: &str,
) -> Vec<String> {
    let dir = mount_root.join(job_id);
    let mut argv: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--network=none".into(),
        "--cap-drop=ALL".into(),
        "--security-opt=no-new-privileges".into(),
        "--read-only".into(),
        "--init".into(),
        format!("--user={}:{}", run_as.uid, run_as.gid),
        format!("--workdir={WORKSPACE_DIR}"),
        format!("--label={LABEL_ROLE}={ROLE_SANDBOX}"),
        format!("--label={LABEL_JOB_ID}={job_id}"),
        format!(
            "--volume={}:{WORKSPACE_DIR}:Z",
            dir.join("workspace").display()
        ),
        format!("--volume={}:{JOB_DIR}:Z", dir.join("job").display()),
        format!("--volume={}:{SOCKET_DIR}:Z", dir.join("run").display()),
        format!("--env=INFERENCE_PROXY_URL={INFERENCE_PROXY_URL}"),
        format!(
            "--env=SBA_EXECUTION_MODE={}",
            RunnerMode::AgentInference.as_str()
        ),
        format!("--env=CYNODE_WORKSPACE_DIR={WORKSPACE_DIR}"),
        format!("--env=CYNODE_ARTIFACTS_DIR={ARTIFACTS_DIR}"),
    ];
    if userns_keep_id {
        argv.push("--userns=keep-id".into());
    }
    argv.push(image.to_string());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_has_no_network_and_reaches_inference_through_its_socket_only() {
        let run_as = RunAs {
            uid: 65532,
            gid: 65532,
        };
        let line = sba_run_args(
            Path::new("/var/lib/cynode/state/sandbox_mounts"),
            "<job_id>",
            run_as,
            false,
            "cynodeai-cynode-sba:dev",
        )
        .join(" ");
        // The exact line `--print-sba-pod-run-args` has always printed.
        assert_eq!(
            line,
            "run --rm --network=none --cap-drop=ALL --security-opt=no-new-privileges \
             --read-only --init --user=65532:65532 --workdir=/workspace \
             --label=cynodeai.role=sandbox --label=cynodeai.job_id=<job_id> \
             --volume=/var/lib/cynode/state/sandbox_mounts/<job_id>/workspace:/workspace:Z \
             --volume=/var/lib/cynode/state/sandbox_mounts/<job_id>/job:/job:Z \
             --volume=/var/lib/cynode/state/sandbox_mounts/<job_id>/run:/run/cynode:Z \
             --env=INFERENCE_PROXY_URL=http+unix://%2Frun%2Fcynode%2Finference-proxy.sock \
             --env=SBA_EXECUTION_MODE=agent_inference --env=CYNODE_WORKSPACE_DIR=/workspace \
             --env=CYNODE_ARTIFACTS_DIR=/job/artifacts cynodeai-cynode-sba:dev"
        );
        let keep_id = sba_run_args(Path::new("/m"), "j1", run_as, true, "img:1");
        assert_eq!(
            &keep_id[keep_id.len() - 2..],
            ["--userns=keep-id".to_string(), "img:1".to_string()]
        );
        assert!(keep_id.contains(&"--volume=/m/j1/run:/run/cynode:Z".to_string()));
    }
}
