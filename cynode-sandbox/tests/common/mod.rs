//! Shared helpers of the sandbox integration tests (real Podman/Docker through its API).
//!
//! Test environment contract: `CYNODE_TEST_DOCKER_HOST` (engine socket URL) and
//! `CYNODE_TEST_IMAGE` (busybox image with /bin/sh and the usual applets). When they are
//! missing a test prints "skipped" and returns, unless `CYNODE_REQUIRE_SERVICES=1`, in
//! which case it fails.

#![allow(dead_code)]

use std::path::PathBuf;

use cynode_sandbox::runtime::ContainerSummary;
use cynode_sandbox::{DockerConfig, Driver, DriverConfig, ImagePolicy, PullPolicy, RunAs};

/// Services the tests use.
pub type TestEnv = cynode_testkit::podman::PodmanEnv;

/// Reads the test environment; `None` means "skip this test".
pub fn test_env() -> Option<TestEnv> {
    cynode_testkit::podman::podman_env()
}

/// `let env = require_env!();` — returns from the test when services are absent.
#[macro_export]
macro_rules! require_env {
    () => {
        match common::test_env() {
            Some(e) => e,
            None => return,
        }
    };
}

/// A driver with its own owner id and mount root, so tests run in parallel safely.
pub struct TestDriver {
    pub driver: Driver,
    pub owner: String,
    pub mount_root: PathBuf,
    _dir: tempfile::TempDir,
}

/// The uid the test image knows as `sandbox`.
pub const SANDBOX_UID: u32 = 10001;

pub async fn driver(env: &TestEnv, tweak: impl FnOnce(&mut DriverConfig)) -> TestDriver {
    let dir = tempfile::Builder::new()
        .prefix("cynode-sbx-test-")
        .tempdir()
        .expect("tempdir");
    let owner = format!("t-{}", uuid::Uuid::new_v4().simple());
    let mut config = DriverConfig {
        owner: owner.clone(),
        mount_root: dir.path().join("jobs"),
        run_as: RunAs {
            uid: SANDBOX_UID,
            gid: SANDBOX_UID,
        },
        images: ImagePolicy {
            default_image: env.image.clone(),
            allowed: vec![],
            pull: PullPolicy::Never,
            pull_timeout_secs: 30,
        },
        default_timeout_secs: 120,
        stop_grace_secs: 2,
        ..Default::default()
    };
    config.default_limits.memory_mb = 256;
    config.default_limits.pids = 128;
    config.default_limits.cpu_cores = 1.0;
    tweak(&mut config);
    let mount_root = config.mount_root.clone();
    let driver = Driver::connect(&DockerConfig::new(&env.docker_host), config)
        .await
        .expect("connect to the test container engine");
    TestDriver {
        driver,
        owner,
        mount_root,
        _dir: dir,
    }
}

impl TestDriver {
    /// Containers of this driver's owner still known to the engine.
    pub async fn leftovers(&self) -> Vec<ContainerSummary> {
        self.driver
            .runtime()
            .list_owned(&self.owner)
            .await
            .expect("list containers")
    }

    /// Job directories still on disk.
    pub fn leftover_dirs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(&self.mount_root) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(_) => vec![],
        }
    }

    /// Polls until no container of this owner is left (bounded; returns what is left).
    pub async fn wait_until_clean(&self) -> Vec<ContainerSummary> {
        for _ in 0..300 {
            let left = self.leftovers().await;
            if left.is_empty() && self.leftover_dirs().is_empty() {
                return left;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.leftovers().await
    }
}

/// Parses `/proc/self/status`-style text into a field's value.
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}
