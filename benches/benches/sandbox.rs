//! Per-job overhead of the sandbox driver against a raw `podman run --rm` of the same
//! image and command, side by side and interleaved in one run.
//!
//! `CYNODE_TEST_DOCKER_HOST=unix:///tmp/cynode-podman.sock CYNODE_TEST_IMAGE=localhost/cynode-test:latest \
//!  cargo bench -p cynode-benches --bench sandbox`
//!
//! The raw baseline is the engine's own CLI (`CYNODE_BENCH_RAW_CLI`, default `podman`;
//! it must reach the same engine, e.g. with the same `CONTAINERS_CONF`), run twice: plain
//! (`--rm --network none`) and with the driver's hardening flags, mounts and limits, so the
//! ratio separates the cost of the driver from the cost of the hardening itself.
//! `CYNODE_BENCH_ITERS` (default 20) jobs of each kind after 3 warm-up rounds.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cynode_sandbox::{DockerConfig, Driver, DriverConfig, JobSpec, JobStatus, RunAs};

const UID: u32 = 10001;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        let idx = ((s.len() as f64 - 1.0) * p).round() as usize;
        s[idx]
    }
    fn mean(&self) -> Duration {
        self.samples.iter().sum::<Duration>() / self.samples.len() as u32
    }
    fn line(&self, name: &str) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{name:<34} p50 {:7.1} ms   p90 {:7.1} ms   mean {:7.1} ms   min {:7.1} ms",
            ms(self.pct(0.5)),
            ms(self.pct(0.9)),
            ms(self.mean()),
            ms(self.pct(0.0))
        )
    }
}

fn raw_run(cli: &str, args: &[String]) -> Duration {
    let t = Instant::now();
    let out = Command::new(cli)
        .args(args)
        .output()
        .expect("run the engine CLI");
    let d = t.elapsed();
    assert!(
        out.status.success() && out.stdout == b"hi\n",
        "raw run failed: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn hardened_args(image: &str, dir: &Path) -> Vec<String> {
    let ws = dir.join("ws");
    let job = dir.join("job");
    for d in [&ws, &job] {
        std::fs::create_dir_all(d).expect("bench dirs");
    }
    [
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "10001:10001",
        "--read-only",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--init",
        "--ipc",
        "private",
        "--pids-limit",
        "512",
        "--memory",
        "2g",
        "--memory-swap",
        "2g",
        "--cpus",
        "2",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=8192:8192",
        "--tmpfs",
        "/tmp:rw,nosuid,nodev,size=256m",
        "--log-driver",
        "none",
        "-w",
        "/workspace",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-v".into(),
        format!("{}:/workspace:rw", ws.display()),
        "-v".into(),
        format!("{}:/job:rw", job.display()),
        image.to_string(),
        "echo".into(),
        "hi".into(),
    ])
    .collect()
}

#[tokio::main]
async fn main() {
    let (Ok(host), Ok(image)) = (
        std::env::var("CYNODE_TEST_DOCKER_HOST"),
        std::env::var("CYNODE_TEST_IMAGE"),
    ) else {
        println!("skipped: CYNODE_TEST_DOCKER_HOST / CYNODE_TEST_IMAGE not set");
        return;
    };
    let cli = std::env::var("CYNODE_BENCH_RAW_CLI").unwrap_or_else(|_| "podman".into());
    let iters = env_usize("CYNODE_BENCH_ITERS", 20).max(1);
    let tmp = std::env::temp_dir().join(format!("cynode-bench-sandbox-{}", std::process::id()));
    let config = DriverConfig {
        owner: format!("bench-{}", std::process::id()),
        mount_root: tmp.join("jobs"),
        run_as: RunAs { uid: UID, gid: UID },
        ..Default::default()
    };
    let driver = Driver::connect(&DockerConfig::new(&host), config)
        .await
        .expect("connect");
    let plain: Vec<String> = ["run", "--rm", "--network", "none", &image, "echo", "hi"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let hardened = hardened_args(&image, &tmp.join("raw"));

    let run_driver = || {
        let driver = driver.clone();
        let image = image.clone();
        async move {
            let t = Instant::now();
            let r = driver
                .run(JobSpec::new(image, ["echo", "hi"]))
                .await
                .expect("driver job");
            let d = t.elapsed();
            assert_eq!(
                (r.status, r.stdout.text.as_str()),
                (JobStatus::Succeeded, "hi\n")
            );
            d
        }
    };

    for _ in 0..3 {
        run_driver().await;
        raw_run(&cli, &plain);
        raw_run(&cli, &hardened);
    }
    let (mut d, mut p, mut h) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..iters {
        d.push(run_driver().await);
        p.push(raw_run(&cli, &plain));
        h.push(raw_run(&cli, &hardened));
    }
    let (d, p, h) = (
        Stats { samples: d },
        Stats { samples: p },
        Stats { samples: h },
    );
    println!("sandbox: cold container per job, `echo hi`, {iters} runs each, interleaved");
    println!("{}", d.line("driver (Driver::run)"));
    println!(
        "{}",
        p.line(&format!("raw `{cli} run --rm --network none`"))
    );
    println!("{}", h.line(&format!("raw `{cli} run` + same hardening")));
    let ratio = |a: &Stats, b: &Stats| a.pct(0.5).as_secs_f64() / b.pct(0.5).as_secs_f64();
    println!(
        "ratio driver/raw (p50): {:.2}x vs plain, {:.2}x vs hardened (goal <= 1.10x)",
        ratio(&d, &p),
        ratio(&d, &h)
    );
    println!("warm pool: not implemented (every job is a cold container)");
    let _ = std::fs::remove_dir_all(&tmp);
}
