//! Test stack for the cynork binary: a real gateway on a real loopback socket over a
//! real SQLite database file, plus a local job runner standing in for a worker.
//!
//! Tests only use [`Stack`]'s methods (start, URL, run `cynork`, move the clock), so
//! the stack can later be backed by the orchestrator and worker binaries instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cynode_core::JobId;
use cynode_core::auth::{JwtKey, JwtKeys, PasswordParams, bootstrap_admin_with, hash_password};
use cynode_core::model::{Job, JobStatus, JobUpdate, NewUser, Task, TaskStatus, Timestamp};
use cynode_core::store::{SqliteStore, Store};
use cynode_server::gateway::{
    Clock, GatewayConfig, GatewayState, GatewayStateBuilder, TaskDispatcher, router,
};
use serde_json::{Value, json};

/// The admin account every stack starts with (as the reference bootstrap does).
pub const ADMIN: (&str, &str) = ("admin", "admin123");

/// System time plus an offset that tests can move forward.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: Mutex<Duration>,
}

impl OffsetClock {
    fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let off = *self.offset.lock().unwrap_or_else(|p| p.into_inner());
        chrono::Utc::now() + chrono::Duration::from_std(off).unwrap_or_default()
    }
}

/// Runs `commands`/`script` jobs with the host's `sh -c` and stores a worker-style
/// result, like a node would; prompt-mode jobs stay queued (no model here).
struct LocalRunner {
    store: Arc<dyn Store>,
}

#[async_trait]
impl TaskDispatcher for LocalRunner {
    async fn task_created(&self, task: &Task, job: &Job) -> cynode_core::Result<()> {
        let sandbox = &job.payload["sandbox"];
        let cmd = sandbox["command"].as_array().cloned().unwrap_or_default();
        let is_shell = cmd.len() == 3 && cmd[0] == "sh" && cmd[1] == "-c";
        if !is_shell {
            return Ok(());
        }
        let script = cmd[2].as_str().unwrap_or_default().to_string();
        let store = self.store.clone();
        let (task_id, job_id) = (task.id, job.id);
        tokio::spawn(async move {
            let started = chrono::Utc::now();
            let _ = store
                .update_job(
                    job_id,
                    JobUpdate {
                        status: Some(JobStatus::Running),
                        started_at: Some(started),
                        ..Default::default()
                    },
                )
                .await;
            let _ = store.set_task_status(task_id, TaskStatus::Running).await;
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .stdin(Stdio::null())
                .output()
                .await;
            let ended = chrono::Utc::now();
            let (ok, code, stdout, stderr) = match out {
                Ok(o) => (
                    o.status.success(),
                    o.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                ),
                Err(e) => (false, -1, String::new(), e.to_string()),
            };
            // A task canceled meanwhile keeps its status (terminal states are sticky).
            if store
                .get_task(task_id)
                .await
                .is_ok_and(|t| t.status.is_terminal())
            {
                return;
            }
            let status = if ok { "completed" } else { "failed" };
            let mut result = json!({
                "version": 1, "task_id": task_id.to_string(), "job_id": job_id.to_string(),
                "status": status, "stdout": stdout, "stderr": stderr,
                "started_at": started.to_rfc3339(), "ended_at": ended.to_rfc3339(),
                "truncated": {"stdout": false, "stderr": false},
            });
            if code != 0 {
                result["exit_code"] = json!(code);
            }
            let _ = store
                .update_job(
                    job_id,
                    JobUpdate {
                        status: Some(if ok {
                            JobStatus::Completed
                        } else {
                            JobStatus::Failed
                        }),
                        result: Some(Value::String(result.to_string())),
                        ended_at: Some(ended),
                        ..Default::default()
                    },
                )
                .await;
            let _ = store
                .set_task_status(
                    task_id,
                    if ok {
                        TaskStatus::Completed
                    } else {
                        TaskStatus::Failed
                    },
                )
                .await;
        });
        Ok(())
    }

    async fn task_canceled(&self, _task: &Task, _jobs: &[JobId]) -> cynode_core::Result<()> {
        Ok(())
    }
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

/// A running gateway plus what tests need around it.
pub struct Stack {
    url: String,
    dir: tempfile::TempDir,
    clock: Arc<OffsetClock>,
    store: Arc<dyn Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stack {
    /// A stack with the default gateway configuration.
    pub fn start() -> Stack {
        Self::start_with(GatewayConfig::default(), |b| b)
    }

    /// A stack with a gateway configuration and extra state (e.g. chat inference).
    pub fn start_with(
        config: GatewayConfig,
        extra: impl FnOnce(GatewayStateBuilder) -> GatewayStateBuilder + Send + 'static,
    ) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("gateway.sqlite");
        let clock = Arc::new(OffsetClock::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Arc<dyn Store>>();
        let c = clock.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let store: Arc<dyn Store> =
                    Arc::new(SqliteStore::open(&db).await.expect("open sqlite"));
                let fast = PasswordParams::insecure_fast_for_tests();
                bootstrap_admin_with(store.as_ref(), ADMIN.0, ADMIN.1, &fast)
                    .await
                    .expect("bootstrap admin");
                let config = GatewayConfig {
                    password_params: fast,
                    ..config
                };
                let keys = JwtKeys::new(JwtKey::new("k1", b"cynork test stack secret".to_vec()));
                let builder = GatewayState::builder(store.clone(), keys)
                    .config(config)
                    .clock(c)
                    .dispatcher(Arc::new(LocalRunner {
                        store: store.clone(),
                    }));
                let app = router(extra(builder).build());
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                ready_tx.send(store).expect("ready");
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
            });
        });
        let store = ready_rx.recv().expect("gateway started");
        Stack {
            url,
            dir,
            clock,
            store,
            stop: Some(stop_tx),
            thread: Some(thread),
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

    /// Moves the gateway's clock forward (token expiry without waiting).
    pub fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Creates a user with a password.
    pub fn add_user(&self, handle: &str, password: &str) {
        let store = self.store.clone();
        let (h, p) = (handle.to_string(), password.to_string());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt")
                .block_on(async move {
                    let hash = hash_password(&p, &PasswordParams::insecure_fast_for_tests())
                        .expect("hash");
                    store
                        .create_user(NewUser {
                            handle: h,
                            email: None,
                            password: Some(hash),
                        })
                        .await
                        .expect("create user")
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

    /// Logs `config` in as the admin; returns the config path for chaining.
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
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
