//! `cynode-orchestrator dev` and job-scoped egress tokens: the first start generates the
//! job-token key (`<data-dir>/secrets/job-token-key`, 0600) and wires it into its API
//! egress service, a second start on the same data reuses it. Shown from outside, as
//! the dispatcher's tokens are used: while a job of the dev stack runs, a token signed
//! with the key in that file is accepted by the stack's egress service (the call gets
//! as far as policy, which has no rule for it: 403), a token signed with another key is
//! not (401); once the job has ended, its token is refused (401).
//!
//! Needs `CYNODE_TEST_DOCKER_HOST` and `CYNODE_TEST_IMAGE` (the dev stack's in-process
//! worker runs the job on Podman): missing, the test fails under
//! `CYNODE_REQUIRE_SERVICES=1` and is skipped otherwise.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use cynode_core::{JobId, TaskId};
use cynode_egress::Secret;
use cynode_egress::api::{JobClaims, JobTokenKey};
use serde_json::{Value, json};
use support::{free_port, login, orchestrator, podman};
use tokio::io::{AsyncBufReadExt, BufReader};

const PASSWORD: &str = "dev-job-token-admin-password";

/// A running `cynode-orchestrator dev`.
struct Dev {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
}

impl Dev {
    fn start(data: &Path, env: &support::Podman, slug: &str, worker_port: u16) -> Dev {
        let stderr = data.with_extension("stderr.log");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .expect("stderr log");
        let mut cmd = orchestrator(data);
        cmd.args([
            "dev",
            "--no-demo",
            "--gateway-listen",
            "127.0.0.1:0",
            "--control-plane-listen",
            "127.0.0.1:0",
            "--egress-listen",
            "127.0.0.1:0",
            "--node-slug",
            slug,
        ])
        .arg("--worker-listen")
        .arg(format!("127.0.0.1:{worker_port}"))
        .env("CONTAINER_HOST", &env.docker_host)
        .env("CYNODE_SANDBOX_IMAGE", &env.image)
        .env("BOOTSTRAP_ADMIN_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(err);
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .expect("start cynode-orchestrator dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Dev {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn diagnostics(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(40).collect();
        format!(
            "stdout:\n{}\n--- stderr (last 40 lines):\n{}",
            self.seen.join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The URL printed after `label` in the banner (waits for the stack to be ready).
    async fn url(&mut self, label: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !self.seen.iter().any(|l| l.contains("ready; press Ctrl-C")) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => panic!("dev exited before it was ready\n{}", self.diagnostics()),
                Err(_) => panic!("dev was not ready within 120 s\n{}", self.diagnostics()),
            }
        }
        let line = self
            .seen
            .iter()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no '{label}' in the banner\n{}", self.diagnostics()));
        line.split_once(label)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .expect("a URL after the label")
            .to_string()
    }

    /// SIGINT, as Ctrl-C sends it; the process must exit cleanly.
    async fn stop(mut self) {
        let pid = self.child.id().expect("pid");
        let ok = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("dev did not stop\n{}", self.diagnostics()))
            .expect("wait");
        assert!(status.success(), "{status:?}\n{}", self.diagnostics());
    }
}

fn key_file(data: &Path) -> PathBuf {
    data.join("secrets").join("job-token-key")
}

/// Runs a job on the stack that waits for the test, and checks what the stack's egress
/// service makes of job tokens signed with `key` (and with another key) while the job
/// runs and after it ended.
async fn job_tokens_follow_the_job(data: &Path, gw: &str, egress: &str, key: &JobTokenKey) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let token = login(&http, gw, "admin", PASSWORD).await;
    let name = format!("wait-{}", uuid::Uuid::new_v4().simple());
    let task: Value = http
        .post(format!("{gw}/v1/tasks"))
        .bearer_auth(&token)
        .json(&json!({
            "prompt": "while [ ! -e /workspace/go ]; do sleep 0.2; done; echo released",
            "input_mode": "commands",
            "task_name": name,
        }))
        .send()
        .await
        .expect("create task")
        .json()
        .await
        .expect("task body");
    let task_id: TaskId = task["id"].as_str().expect("task id").parse().expect("uuid");
    let job = |status: &'static str| {
        let http = http.clone();
        let token = token.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let r: Value = http
                    .get(format!("{gw}/v1/tasks/{task_id}/result"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("result")
                    .json()
                    .await
                    .expect("result body");
                if let Some(j) = r["jobs"].as_array().and_then(|j| j.first())
                    && j["status"] == status
                {
                    return j["id"]
                        .as_str()
                        .expect("job id")
                        .parse::<JobId>()
                        .expect("uuid");
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the job is not {status}: {r}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let job_id = job("running").await;

    let claims = JobClaims::new(task_id, job_id, Utc::now(), chrono::Duration::minutes(30));
    let call = |bearer: Secret| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{egress}/v1/call"))
                .bearer_auth(bearer.expose())
                .json(&json!({
                    "provider": "openai", "operation": "chat", "task_id": task_id.to_string(),
                    "params": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                }))
                .send()
                .await
                .expect("egress call");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("problem body"))
        }
    };
    // Accepted while the job runs: the call reaches policy evaluation.
    let (status, body) = call(key.issue(&claims)).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (403, Some("provider/operation not allowed by policy")),
        "{body}"
    );
    let other = JobTokenKey::new(&[5u8; 32]).expect("key");
    assert_eq!(call(other.issue(&claims)).await.0, 401);

    // Let the job finish; its token is refused from then on. (The node may still be
    // preparing the job's directories: running is recorded before the node is called.)
    let ws = data
        .join("worker/sandbox_mounts")
        .join(job_id.to_string())
        .join("workspace");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !ws.is_dir() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            ws.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(ws.join("go"), b"").expect("release the job");
    job("completed").await;
    let (status, body) = call(key.issue(&claims)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body, json!({"title": "Unauthorized", "status": 401}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_generates_the_job_token_key_once_and_its_egress_honours_it() {
    let Some(env) = podman() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let slug = format!("jt-{}", std::process::id());
    let worker_port = free_port();

    let mut dev = Dev::start(&data, &env, &slug, worker_port);
    let gw = dev.url("user gateway").await;
    let egress = dev.url("API egress").await;
    let path = key_file(&data);
    let meta = std::fs::metadata(&path).expect("dev wrote the job-token key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let first = std::fs::read_to_string(&path)
        .expect("read")
        .trim()
        .to_string();
    let key = JobTokenKey::from_base64(&Secret::new(first.clone()))
        .expect("the key file holds a usable key (32+ bytes, base64)");
    job_tokens_follow_the_job(&data, &gw, &egress, &key).await;
    dev.stop().await;

    // Second start on the same data: the same key, and the egress service uses it.
    let mut dev = Dev::start(&data, &env, &slug, worker_port);
    let gw = dev.url("user gateway").await;
    let egress = dev.url("API egress").await;
    let second = std::fs::read_to_string(&path)
        .expect("read")
        .trim()
        .to_string();
    assert_eq!(second, first, "a second start reuses the key");
    job_tokens_follow_the_job(&data, &gw, &egress, &key).await;
    dev.stop().await;
}
