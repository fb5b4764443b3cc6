//! Router added latency, side by side with LiteLLM's proxy, over the same mock upstream.
//!
//! Run: `cargo bench -p cynode-benches --bench router`
//!
//! 1. Runs `../shared/peers/litellm.sh` (LiteLLM proxy in front of `mock-openai.py`; it
//!    prints LiteLLM's added p50/p99).
//! 2. Starts `mock-openai.py` on a free port and, in this process, the router's
//!    OpenAI-compatible front (`openai_compat_router`) with one target pointing at the
//!    mock; then runs the same `latency.py` client (K sequential chat completions on one
//!    keep-alive connection after W warm-up requests) straight to the mock and through
//!    the front, and subtracts. Repeated for R rounds; the median round is reported.
//! 3. Prints both side by side and the ratio. Goal: p99 added < 1 ms.
//!
//! p99 figures are only meaningful on a quiet machine: with background load (e.g. other
//! builds on 2 cores) scheduler delays of 5–10 ms swamp both the direct and the
//! proxied runs. On a busy machine run the built binary (as root) under a real-time
//! policy so every measured process (clients, mocks, LiteLLM, the router) is isolated
//! alike: `chrt -f 10 target/release/deps/router-<hash>`.
//!
//! Environment (all optional): `BENCH_K` (2000), `BENCH_W` (200), `BENCH_ROUNDS` (3),
//! `BENCH_SKIP_LITELLM=1`, `BENCH_RUNTIME` (`multi` (default) or `current`: the tokio
//! runtime flavour of the router front), `CYNODE_PEERS_DIR` (default: the first `shared/peers` found
//! above the workspace root).

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use cynode_benches::{Proc, env_or, free_port, peers_dir, wait_http};

use cynode_egress::router::{RouteOptions, Router, RouterConfig, openai_compat_router};

#[derive(Clone, Copy, Debug)]
struct Lat {
    p50: f64,
    p99: f64,
}

fn latency(python: &str, peers: &Path, url: &str, k: u32, w: u32, label: &str) -> Lat {
    let out = Command::new(python)
        .arg(peers.join("latency.py"))
        .args([
            url,
            "--model",
            "mock",
            "-n",
            &k.to_string(),
            "-w",
            &w.to_string(),
            "--label",
            label,
            "--json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run latency.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|_| panic!("latency.py output: {stdout}"));
    assert_eq!(
        v["errors"], 0,
        "{label}: latency.py reported errors: {line}"
    );
    Lat {
        p50: v["p50_ms"].as_f64().unwrap_or(f64::NAN),
        p99: v["p99_ms"].as_f64().unwrap_or(f64::NAN),
    }
}

fn litellm(peers: &Path, k: u32, w: u32) -> Option<(f64, f64, String)> {
    let out = Command::new("bash")
        .arg(peers.join("litellm.sh"))
        .args([
            "-n",
            &k.to_string(),
            "-w",
            &w.to_string(),
            "-m",
            &free_port().to_string(),
            "-l",
            &free_port().to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("litellm:"))?
        .to_string();
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))?
            .parse()
            .ok()
    };
    Some((field("added_p50_ms")?, field("added_p99_ms")?, line.clone()))
}

/// The 1-minute load average, to judge how quiet the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let k = env_or("BENCH_K", 2000);
    let w = env_or("BENCH_W", 200);
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let peers = peers_dir();
    eprintln!("[router bench] peers: {}", peers.display());
    let load_before = loadavg();

    // 1. LiteLLM (also installs the venv whose python we reuse below).
    let lite = if std::env::var("BENCH_SKIP_LITELLM").is_ok_and(|v| v == "1") {
        None
    } else {
        eprintln!("[router bench] running litellm.sh (K={k}, W={w})");
        let r = litellm(&peers, k, w);
        if r.is_none() {
            eprintln!("[router bench] litellm.sh did not produce a summary line");
        }
        r
    };
    let venv_python = "/opt/peers/litellm-venv/bin/python";
    let python = if Path::new(venv_python).is_file() {
        venv_python
    } else {
        "python3"
    };

    // 2. Mock upstream and our front.
    let mock_port = free_port();
    let _mock = Proc(
        Command::new(python)
            .arg(peers.join("mock-openai.py"))
            .arg(mock_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mock-openai.py"),
    );
    assert!(
        wait_http(mock_port, "/health", Duration::from_secs(20)),
        "mock-openai.py did not start"
    );

    let config: RouterConfig = serde_json::from_value(serde_json::json!({
        "local": [{"name": "mock", "provider": {"kind": "vllm", "base_url": format!("http://127.0.0.1:{mock_port}/v1")}}]
    }))
    .expect("router config");
    let front_port = free_port();
    let runtime = std::env::var("BENCH_RUNTIME").unwrap_or_else(|_| "multi".into());
    let rt = match runtime.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .expect("tokio runtime");
    eprintln!("[router bench] router front on a {runtime}-thread tokio runtime");
    std::thread::spawn(move || {
        rt.block_on(async move {
            let router = Arc::new(Router::from_config(&config).expect("router"));
            let app = openai_compat_router(router, RouteOptions::default());
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", front_port))
                .await
                .expect("bind front");
            axum::serve(listener, app).await.expect("serve");
        })
    });
    assert!(
        wait_http(front_port, "/v1/models", Duration::from_secs(20)),
        "router front did not start"
    );

    let direct_url = format!("http://127.0.0.1:{mock_port}");
    let front_url = format!("http://127.0.0.1:{front_port}");
    let (mut a50, mut a99) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let d = latency(python, &peers, &direct_url, k, w, "direct");
        let f = latency(python, &peers, &front_url, k, w, "cynode-router");
        eprintln!(
            "[router bench] round {r}: direct p50={:.3} p99={:.3} | via router p50={:.3} p99={:.3} | added p50={:.3} p99={:.3}",
            d.p50,
            d.p99,
            f.p50,
            f.p99,
            f.p50 - d.p50,
            f.p99 - d.p99
        );
        a50.push(f.p50 - d.p50);
        a99.push(f.p99 - d.p99);
    }
    let ours = (median(a50), median(a99));

    // 3. Side by side.
    println!();
    println!(
        "machine load average (1 min): {load_before} at start, {} at end",
        loadavg()
    );
    println!(
        "router added latency over mock-openai.py ({k} sequential chat completions on one keep-alive connection, {w} warm-up)"
    );
    println!(
        "{:<28} {:>16} {:>16}",
        "", "p50 added (ms)", "p99 added (ms)"
    );
    println!(
        "{:<28} {:>16.3} {:>16.3}",
        format!("cynode router (median of {rounds})"),
        ours.0,
        ours.1
    );
    match &lite {
        Some((l50, l99, line)) => {
            println!("{:<28} {:>16.3} {:>16.3}", "litellm proxy", l50, l99);
            let ratio = |l: f64, o: f64| {
                if o > 0.0 {
                    format!("{:.0}x", l / o)
                } else {
                    "n/a".into()
                }
            };
            println!(
                "{:<28} {:>16} {:>16}",
                "ratio litellm / cynode",
                ratio(*l50, ours.0),
                ratio(*l99, ours.1)
            );
            println!("{line}");
        }
        None => println!(
            "{:<28} {:>16} {:>16}",
            "litellm proxy", "not run", "not run"
        ),
    }
    println!(
        "cynode-router: added_p50_ms={:.3} added_p99_ms={:.3} goal_p99_lt_1ms={}",
        ours.0,
        ours.1,
        if ours.1 < 1.0 { "met" } else { "missed" }
    );
}
