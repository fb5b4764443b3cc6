//! The README's run command, end to end, the way a new user runs it: `scripts/up.sh`
//! in a fresh data directory (with `--no-install --no-build`, against the binaries of
//! this build), wait for the banner, the demo task and readiness, use the stack, stop
//! it with Ctrl-C (SIGINT to the process group, as a terminal sends it), check it
//! exits cleanly, and start it again on the same data.
//!
//! The first start goes the new user's way: up.sh starts its own Podman API service
//! and builds the sandbox image. The second uses the test environment's Podman socket
//! and image (`CONTAINER_HOST`, `CYNODE_SANDBOX_IMAGE`), and a mock model endpoint.
//!
//! Needs `CYNODE_TEST_DOCKER_HOST` and `CYNODE_TEST_IMAGE` (scripts/test.sh provides
//! them): missing, the test fails under `CYNODE_REQUIRE_SERVICES=1` and is skipped
//! otherwise.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::{login, podman};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cynode-orchestrator"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

/// A running `scripts/up.sh` in its own process group.
struct Stack {
    child: tokio::process::Child,
    pgid: i32,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
}

impl Stack {
    fn start(
        data_dir: &Path,
        slug: &str,
        worker_listen: &str,
        extra_env: &[(&str, &str)],
    ) -> Stack {
        let stderr = data_dir.with_extension("stderr.log");
        let err_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .expect("stderr log");
        let mut cmd = std::process::Command::new(repo_root().join("scripts/up.sh"));
        cmd.args(["--no-install", "--no-build", "--data-dir"])
            .arg(data_dir)
            .args([
                "--",
                "--gateway-listen",
                "127.0.0.1:0",
                "--egress-listen",
                "127.0.0.1:0",
                "--control-plane-listen",
                "127.0.0.1:0",
                "--worker-listen",
                worker_listen,
                "--node-slug",
                slug,
            ])
            .env("CYNODE_BIN_DIR", bin_dir())
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .env_remove("BOOTSTRAP_ADMIN_PASSWORD")
            .env_remove("JWT_SECRET")
            .env_remove("CYNODE_DATA_DIR")
            .env_remove("OLLAMA_BASE_URL")
            .env_remove("CONTAINER_HOST")
            .env_remove("CYNODE_SANDBOX_IMAGE")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .expect("start scripts/up.sh");
        let pgid = i32::try_from(child.id().expect("pid")).expect("pid fits");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Stack {
            child,
            pgid,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn diagnostics(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(40).collect();
        format!(
            "stdout so far:\n{}\n--- stderr (last 40 lines):\n{}",
            self.seen.join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The first stdout line containing `needle` (waiting up to `secs`).
    async fn line_with(&mut self, needle: &str, secs: u64) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "up.sh closed its output before printing '{needle}'\n{}",
                    self.diagnostics()
                ),
                Err(_) => panic!(
                    "up.sh did not print '{needle}' within {secs} s\n{}",
                    self.diagnostics()
                ),
            }
        }
    }

    /// Ctrl-C, as a terminal sends it (SIGINT to the whole process group); returns
    /// the exit status.
    async fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let ok = std::process::Command::new("kill")
            .args(["-INT", "--", &format!("-{}", self.pgid)])
            .status()
            .expect("kill");
        assert!(ok.success(), "could not signal process group {}", self.pgid);
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "up.sh did not exit within 60 s of Ctrl-C\n{}",
                    self.diagnostics()
                )
            })
            .expect("wait");
        while let Ok(Some(l)) =
            tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await
        {
            self.seen.push(l);
        }
        (status, self.diagnostics())
    }
}

fn field_after(line: &str, label: &str) -> String {
    line.split_once(label)
        .map(|(_, rest)| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// The `cynork` binary of this build, when it was built (the workspace build builds
/// it; `cargo test -p cynode-orchestrator` alone may not).
fn cynork() -> Option<PathBuf> {
    let p = bin_dir().join("cynork");
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("CYNODE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!(
            "{} is missing: build the workspace (cargo build) before this test",
            p.display()
        );
    }
    eprintln!("skipped the cynork steps: {} not built", p.display());
    None
}

/// Runs cynork against `gw` with its own config file; returns (exit code, stdout, stderr).
fn run_cynork(
    bin: &Path,
    config: &Path,
    gw: &str,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("CYNORK_GATEWAY_URL", gw)
        .env_remove("CYNORK_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cynork");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("cynork output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exact `/readyz` body while no inference path exists (user-api §3).
const NO_INFERENCE: &str = "no inference path available (no dispatchable nodes; register and configure a worker node or configure external provider keys)";

/// Polls `/readyz` until it answers `want` (status and body), for up to 60 s.
async fn wait_readyz(http: &reqwest::Client, gw: &str, want: (u16, &str)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .get(format!("{gw}/readyz"))
            .send()
            .await
            .expect("readyz");
        let got = (r.status().as_u16(), r.text().await.expect("body"));
        if (got.0, got.1.as_str()) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still answers {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_command_starts_serves_stops_and_restarts_on_its_data() {
    let Some(env) = podman() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("cynode-data");
    // A slug of its own: the worker reaps orphaned sandboxes of its slug at start.
    let slug = format!("e2e-{}", std::process::id());
    // The worker keeps its address across restarts, as with the default port.
    let worker_listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        format!("127.0.0.1:{}", l.local_addr().expect("addr").port())
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // ---- first start: fresh data directory, no inference configured
    let mut stack = Stack::start(&data, &slug, &worker_listen, &[]);
    let gw_line = stack.line_with("user gateway", 120).await;
    let gw = field_after(&gw_line, "user gateway");
    assert!(gw.starts_with("http://127.0.0.1:"), "{gw_line}");
    let pw_line = stack.line_with("admin password", 5).await;
    let pw_file = data.join("admin-password");
    assert!(
        pw_line.contains("generated on first start")
            && pw_line.contains(&pw_file.display().to_string()),
        "the banner names the generated password's file: {pw_line}"
    );
    // The demo task went through gateway, queue, dispatcher, worker and a sandbox.
    stack.line_with("its output: hello from cynode", 180).await;
    stack.line_with("ready; press Ctrl-C to stop", 10).await;

    let health = http
        .get(format!("{gw}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok");
    // Everything runs, but without a model there is no inference path: /readyz says so.
    wait_readyz(&http, &gw, (503, NO_INFERENCE)).await;

    // The generated password: 0600, and it logs in.
    let meta = std::fs::metadata(&pw_file).expect("password file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let password = std::fs::read_to_string(&pw_file)
        .expect("read")
        .trim()
        .to_string();
    assert!(password.len() >= 16, "a generated password is long");
    let token = login(&http, &gw, "admin", &password).await;
    let me: Value = http
        .get(format!("{gw}/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me body");
    assert_eq!(me["handle"], "admin");
    let created: Value = http
        .post(format!("{gw}/v1/tasks"))
        .bearer_auth(&token)
        .json(&json!({"prompt": "echo kept", "input_mode": "commands", "task_name": "kept"}))
        .send()
        .await
        .expect("create task")
        .json()
        .await
        .expect("task body");
    let task_id = created["id"].as_str().expect("task id").to_string();

    // Chat without a model: a clear answer saying how to configure one.
    let chat = http
        .post(format!("{gw}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "cynodeai.pm", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    assert_eq!(chat.status(), 503);
    let body: Value = chat.json().await.expect("chat error body");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("OLLAMA_BASE_URL"), "{body}");

    let (status, log) = stack.interrupt().await;
    assert!(
        status.success(),
        "Ctrl-C stops it with status 0, got {status:?}\n{log}"
    );
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        log.contains("starting the Podman API service"),
        "the first start ran its own Podman service: {log}"
    );
    let podman_pid = std::fs::read_to_string(data.join("run/podman.pid")).expect("podman.pid");
    assert!(
        !Path::new(&format!("/proc/{}", podman_pid.trim())).exists(),
        "up.sh stopped the Podman service it started"
    );

    // ---- second start: same data, nothing regenerated; now with a model endpoint
    // (a mock speaking the Ollama API), which the worker reports as its inference.
    let (mock_addr, _mock) = cynode_testkit::MockLlm::start().await;
    let mock_url = format!("http://{mock_addr}");
    let mut stack = Stack::start(
        &data,
        &slug,
        &worker_listen,
        &[
            ("OLLAMA_BASE_URL", &mock_url),
            ("CONTAINER_HOST", &env.docker_host),
            ("CYNODE_SANDBOX_IMAGE", &env.image),
        ],
    );
    let gw_line = stack.line_with("user gateway", 120).await;
    let gw = field_after(&gw_line, "user gateway");
    let pw_line = stack.line_with("admin password", 5).await;
    assert!(
        !pw_line.contains("generated on first start"),
        "the second start does not generate a new password: {pw_line}"
    );
    stack.line_with("its output: hello from cynode", 180).await;
    assert_eq!(
        std::fs::read_to_string(&pw_file).expect("read").trim(),
        password,
        "the password file is unchanged"
    );
    wait_readyz(&http, &gw, (200, "ready")).await;
    let token = login(&http, &gw, "admin", &password).await;
    // The task queued just before the restart runs after it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let result = loop {
        let result: Value = http
            .get(format!("{gw}/v1/tasks/{task_id}/result"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get result")
            .json()
            .await
            .expect("result body");
        if result["status"] != "queued" && result["status"] != "running" {
            break result;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task queued before the restart did not finish: {result}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(result["status"], "completed", "{result}");
    let doc: Value = serde_json::from_str(result["jobs"][0]["result"].as_str().expect("result"))
        .expect("result document");
    assert_eq!(doc["stdout"], "kept\n");

    // Chat through the configured endpoint.
    let chat: Value = http
        .post(format!("{gw}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "cynodeai.pm", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat")
        .json()
        .await
        .expect("chat body");
    let answer = chat["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!answer.is_empty(), "a completion: {chat}");

    // The CLI, as the README shows it.
    if let Some(bin) = cynork() {
        let cfg = tmp.path().join("cynork.yaml");
        let (code, _, err) = run_cynork(
            &bin,
            &cfg,
            &gw,
            &["auth", "login", "-u", "admin", "--password-stdin"],
            &format!("{password}\n"),
        );
        assert_eq!(code, 0, "cynork auth login: {err}");
        let (code, out, err) = run_cynork(&bin, &cfg, &gw, &["status"], "");
        assert_eq!(code, 0, "cynork status: {out}{err}");
        let (code, out, err) = run_cynork(
            &bin,
            &cfg,
            &gw,
            &[
                "task",
                "create",
                "--command",
                "echo from cynork",
                "--name",
                "via-cynork",
                "--result",
                "-o",
                "json",
            ],
            "",
        );
        assert_eq!(code, 0, "cynork task create --result: {out}{err}");
        assert!(
            out.contains("from cynork"),
            "the task's output is printed: {out}"
        );
        let (code, out, err) = run_cynork(&bin, &cfg, &gw, &["chat", "-m", "hello", "--plain"], "");
        assert_eq!(code, 0, "cynork chat: {out}{err}");
        assert!(!out.trim().is_empty(), "cynork chat prints the answer");
    }

    let (status, log) = stack.interrupt().await;
    assert!(status.success(), "second stop: {status:?}\n{log}");
}
