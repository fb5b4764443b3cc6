//! Helpers shared by the orchestrator's binary tests: the binary with a clean
//! environment, free ports, and a fresh PostgreSQL database per test from
//! `CYNODE_TEST_PG_URL`.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::Path;
use std::process::{Command, Output, Stdio};

use cynode_testkit::env::{TestDatabase, with_database};
use cynode_testkit::podman::{PodmanEnv, podman_env};

/// The orchestrator binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cynode-orchestrator");
/// A JWT signing key long enough for `serve`.
pub const JWT: &str = "a-test-signing-key-of-at-least-32-bytes!";

/// The orchestrator with a clean environment: only what a case sets.
pub fn orchestrator(data_dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CYNODE_DATA_DIR", data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run cynode-orchestrator")
}

/// The captured stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `CYNODE_TEST_PG_URL`, or `None` (skip) when unset and services are not required.
pub fn pg_url() -> Option<String> {
    cynode_testkit::service_var("CYNODE_TEST_PG_URL")
}

/// A fresh database on the test server: `(url, name)`; dropped by [`drop_db`].
pub async fn create_db(admin_url: &str) -> (String, String) {
    let db = TestDatabase::create_on(admin_url).await;
    (db.url, db.name)
}

/// Drops a database made by [`create_db`] (best effort).
pub async fn drop_db(admin_url: &str, name: &str) {
    let db = TestDatabase {
        admin_url: admin_url.to_string(),
        name: name.to_string(),
        url: with_database(admin_url, name),
    };
    let _ = db.drop_db().await;
}

/// The container engine and image of the test environment.
pub type Podman = PodmanEnv;

/// `CYNODE_TEST_DOCKER_HOST` and `CYNODE_TEST_IMAGE`, or `None` (skip) when unset and
/// services are not required.
pub fn podman() -> Option<Podman> {
    podman_env()
}

/// Logs in on the gateway at `gw`; the access token.
pub async fn login(http: &reqwest::Client, gw: &str, handle: &str, password: &str) -> String {
    let r = http
        .post(format!("{gw}/v1/auth/login"))
        .json(&serde_json::json!({"handle": handle, "password": password}))
        .send()
        .await
        .expect("login request");
    assert_eq!(r.status(), 200, "login as {handle}");
    let body: serde_json::Value = r.json().await.expect("login body");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}
