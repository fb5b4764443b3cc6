//! Test stack for the cynork binary: the real `cynode-orchestrator dev` process (user
//! gateway, control plane, dispatcher and ONE in-process worker running jobs in real
//! sandboxes on the test Podman socket, SQLite in a temporary data directory), on free
//! loopback ports, optionally with a mock model endpoint as `OLLAMA_BASE_URL`.
//!
//! Needs `CYNODE_TEST_DOCKER_HOST` and `CYNODE_TEST_IMAGE` (scripts/test.sh provides
//! them): missing, [`Stack::start`] returns `None` and the test is skipped, or fails
//! under `CYNODE_REQUIRE_SERVICES=1`.
//!
//! The orchestrator binary is not a dependency of this package: the tests take it from
//! this build's target directory, where a workspace build (`cargo nextest run
//! --workspace`, `scripts/test.sh`) puts it, and build it with `cargo build -p
//! cynode-orchestrator` only when it is missing (after `cargo test -p cynork` alone, run
//! that build yourself if the orchestrator changed).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use cynode_core::auth::{
    JwtKey, JwtKeys, PasswordParams, TokenKind, hash_password, issue_access_token,
};
use cynode_core::model::NewUser;
use cynode_core::store::{SqliteStore, UserStore};
use cynode_testkit::podman::{PodmanEnv, podman_env};
use serde_json::Value;

/// The admin account every stack starts with (`BOOTSTRAP_ADMIN_PASSWORD`).
pub const ADMIN: (&str, &str) = ("admin", "admin123");

/// The token signing key the stack's orchestrator runs with (`JWT_SECRET`), so tests
/// can mint tokens the gateway accepts or rejects for the right reason.
const JWT_SECRET: &str = "cynork e2e stack signing key, 32+ bytes long";

fn test_env() -> Option<PodmanEnv> {
    podman_env()
}

/// The orchestrator binary of this build's target directory, built (once per test
/// process) with the cargo that builds this test.
fn orchestrator_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cynork = Path::new(env!("CARGO_BIN_EXE_cynork"));
        let profile_dir = cynork.parent().expect("profile directory");
        let target_dir = profile_dir.parent().expect("target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile name");
        let profile = if profile == "debug" { "dev" } else { profile };
        let bin = profile_dir.join("cynode-orchestrator");
        if bin.is_file() {
            // A per-package build unifies features differently from the workspace build
            // and would recompile for minutes; the workspace build already made it.
            return bin;
        }
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "cynode-orchestrator",
                "--bin",
                "cynode-orchestrator",
                "--profile",
                profile,
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .expect("run cargo build -p cynode-orchestrator");
        assert!(
            out.status.success(),
            "cargo build -p cynode-orchestrator failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// The output of one `cynork` run.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }
    /// Asserts an exit code and that stderr contains `text`.
    #[track_caller]
    pub fn fails(self, code: i32, text: &str) -> Self {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }
    /// stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:#?}"))
    }
}

/// A running `cynode-orchestrator dev` plus what tests need around it.
pub struct Stack {
    url: String,
    dir: tempfile::TempDir,
    child: Child,
    stderr_log: PathBuf,
}

impl Stack {
    /// A stack without a model endpoint (chat answers that none is configured).
    /// `None` when the test environment lacks the container services (skipped).
    pub fn start() -> Option<Stack> {
        Self::start_with(None)
    }

    /// A stack whose orchestrator and worker use `ollama_base_url` for inference.
    pub fn start_with(ollama_base_url: Option<&str>) -> Option<Stack> {
        let env = test_env()?;
        let bin = orchestrator_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let stderr_log = dir.path().join("orchestrator.stderr.log");
        let err_file = std::fs::File::create(&stderr_log).expect("stderr log");
        // A slug of its own: the worker reaps orphaned sandboxes of its slug at start.
        let slug = format!(
            "cynork-e2e-{}",
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..12)
                .unwrap_or("x")
        );
        let mut cmd = Command::new(bin);
        cmd.args(["dev", "--no-demo"])
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--gateway-listen",
                "127.0.0.1:0",
                "--egress-listen",
                "127.0.0.1:0",
                "--control-plane-listen",
                "127.0.0.1:0",
                "--worker-listen",
                "127.0.0.1:0",
                "--node-slug",
                &slug,
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("CONTAINER_HOST", &env.docker_host)
            .env("CYNODE_SANDBOX_IMAGE", &env.image)
            .env("BOOTSTRAP_ADMIN_PASSWORD", ADMIN.1)
            .env("JWT_SECRET", JWT_SECRET)
            .env("DISPATCH_POLL_INTERVAL", "200ms")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file);
        if let Some(u) = ollama_base_url {
            cmd.env("OLLAMA_BASE_URL", u);
        }
        let mut child = cmd.spawn().expect("start cynode-orchestrator dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the orchestrator never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut stack = Stack {
            url: String::new(),
            dir,
            child,
            stderr_log,
        };
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, rest)) = line.split_once("user gateway") {
                        stack.url = rest.split_whitespace().next().unwrap_or_default().into();
                    }
                    let ready = line.contains("ready; press Ctrl-C to stop");
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                Err(_) => panic!(
                    "the orchestrator did not become ready:\nstdout:\n{}\n{}",
                    seen.join("\n"),
                    stack.diagnostics()
                ),
            }
        }
        assert!(
            stack.url.starts_with("http://127.0.0.1:"),
            "no gateway URL in the banner:\n{}",
            seen.join("\n")
        );
        stack.wait_for_node();
        Some(stack)
    }

    /// The last lines of the orchestrator's log.
    pub fn diagnostics(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(60).collect();
        format!(
            "--- orchestrator log (last 60 lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// Waits until the in-process worker has registered and been configured, so jobs
    /// get dispatched (the control plane lists it as a node).
    fn wait_for_node(&self) {
        let cfg = self.config("stack-probe");
        self.login_admin(&cfg);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.cynork(&cfg, &["nodes", "list", "-o", "json"], None);
            let dispatchable = r.code == 0
                && serde_json::from_str::<Value>(&r.stdout).is_ok_and(|j| {
                    j["nodes"]
                        .as_array()
                        .is_some_and(|n| n.iter().any(|n| n["dispatchable"] == true))
                });
            if dispatchable {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the in-process worker did not become active: {r:#?}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The gateway's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A scratch directory that lives as long as the stack.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh config path (file not created).
    pub fn config(&self, name: &str) -> PathBuf {
        self.dir.path().join("cfg").join(name).join("config.yaml")
    }

    /// Replaces the access token stored in `config` with one for the same user, signed
    /// with the stack's real key, that expired an hour ago (the refresh token stays).
    pub fn expire_token(&self, config: &Path) {
        let keys = JwtKeys::new(JwtKey::new("k1", JWT_SECRET.as_bytes().to_vec()));
        let token = config_value(config, "token").expect("a logged-in config");
        let claims = keys
            .verify(&token, TokenKind::Access, chrono::Utc::now())
            .expect("the stored token is a valid access token of this stack");
        let user = claims.user().expect("user id claim");
        let (expired, _) = issue_access_token(
            &keys,
            user,
            claims.handle.as_deref().unwrap_or_default(),
            chrono::Utc::now() - chrono::Duration::hours(2),
            Duration::from_secs(3600),
        );
        let text = std::fs::read_to_string(config).expect("read config");
        let replaced = text.replacen(&token, &expired, 1);
        assert_ne!(text, replaced, "token not found in the config file");
        std::fs::write(config, replaced).expect("write config");
    }

    /// Creates a user with a password. The gateway has no route creating accounts, so
    /// this writes it into the orchestrator's SQLite database (WAL: safe while it runs).
    pub fn add_user(&self, handle: &str, password: &str) {
        let db = self.dir.path().join("data").join("cynode.db");
        let (h, p) = (handle.to_string(), password.to_string());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt")
                .block_on(async move {
                    let store = SqliteStore::open(&db)
                        .await
                        .expect("open the stack's SQLite");
                    let hash = hash_password(&p, &PasswordParams::insecure_fast_for_tests())
                        .expect("hash");
                    store
                        .create_user(NewUser {
                            handle: h,
                            email: None,
                            password: Some(hash),
                        })
                        .await
                        .expect("create user");
                })
        })
        .join()
        .expect("add user");
    }

    /// A `cynork` command pointed at this gateway, with a clean environment.
    pub fn command(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cynork"));
        c.arg("--config").arg(config).args(args);
        c.env_remove("CYNORK_TOKEN")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("NO_COLOR")
            .env("HOME", self.dir.path())
            .env("CYNORK_GATEWAY_URL", &self.url);
        c
    }

    /// Runs `cynork --config <config> <args>` with `stdin` (empty when `None`).
    pub fn cynork(&self, config: &Path, args: &[&str], stdin: Option<&str>) -> Run {
        run(self.command(config, args), stdin)
    }

    /// Logs `config` in as the admin.
    pub fn login_admin(&self, config: &Path) {
        self.cynork(
            config,
            &["auth", "login", "-u", ADMIN.0, "--password-stdin"],
            Some(&format!("{}\n", ADMIN.1)),
        )
        .ok();
    }
}

impl Drop for Stack {
    /// SIGTERM (the orchestrator drains its worker and stops its sandboxes), then
    /// SIGKILL if it has not exited after 30 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a prepared command, feeding `stdin`.
pub fn run(mut c: Command, stdin: Option<&str>) -> Run {
    use std::io::Write;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn cynork");
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait cynork");
    let _ = writer.join();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Reads a config file's `key:` line the way scripts do (optional quotes stripped).
pub fn config_value(config: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(config).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}
