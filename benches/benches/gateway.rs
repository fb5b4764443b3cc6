//! Latency the user gateway adds to a chat completion, side by side with LiteLLM's
//! proxy, over the same mock upstream, in the same run.
//!
//! Run: `benches/gateway.sh` (or `cargo bench -p cynode-benches --bench gateway`).
//!
//! Targets, all in front of one `mock-openai.py` (instant replies):
//! - `direct`: the mock itself (the baseline that is subtracted);
//! - `cynode`: the full gateway router (`cynode_server::gateway::router`: request id,
//!   tracing span, body limit, timeout, JWT verification, thread lookup, redaction,
//!   storing both messages and the audit record in SQLite, routing through the model
//!   router) with a bearer token, model `mock`;
//!   One durable commit per completion: the user's message, the answer and the audit
//!   record are one transaction, which `synchronous = FULL` syncs to disk;
//! - `cynode-mem`: the same gateway on the in-memory store (the gateway's own work,
//!   without that commit);
//! - `cynode-pg`: the same gateway on PostgreSQL (the production store), only when
//!   `BENCH_PG_URL` names a server (an admin URL: a scratch database is created and
//!   dropped; `benches/gateway.sh` passes the test environment's PostgreSQL);
//! - `litellm`: LiteLLM's proxy (`/opt/peers/litellm-venv`, the config of
//!   `../shared/peers/litellm.sh`: no database, telemetry off, one worker).
//!
//! Two measurements, each per target:
//! 1. **Fixed rate**: one keep-alive connection, request `i` is sent at `t0 + i/RATE`
//!    (or as soon as the previous answer arrived, if that is later); latency is the
//!    round trip of each request. Default 50 requests/s, 1000 requests after 100
//!    warm-up requests. This client is part of this binary (raw HTTP/1.1 on a std
//!    `TcpStream`), the same for all three targets.
//! 2. **Sequential**: `../shared/peers/latency.py` (the peers' own client, K
//!    back-to-back requests on one connection), as `litellm.sh` and the router bench do.
//!
//! Added latency = target percentile − direct percentile of the same measurement.
//!
//! 3. **The durable floor**: the same turn (two messages and an audit record) stored
//!    with `ChatStore::append_turn` straight into a SQLite file in the same directory,
//!    N times in a row: the latency of the one commit the SQLite path cannot avoid on
//!    this disk, printed beside the gateway figures.
//!
//! Environment (all optional): `BENCH_RATE` (50), `BENCH_N` (1000), `BENCH_W` (100),
//! `BENCH_K` (2000, sequential), `BENCH_ROUNDS` (1), `BENCH_SKIP_LITELLM=1`, `BENCH_PG_URL`,
//! `CYNODE_PEERS_DIR`.
//!
//! p99 figures mean something only on a quiet machine; see the router bench for
//! running under `chrt`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cynode_benches::{Proc, ScratchDb, env_or, free_port, peers_dir, wait_http};
use cynode_core::auth::{JwtKey, JwtKeys, bootstrap_admin, issue_access_token};
use cynode_core::store::{MemoryStore, PgStore, SqliteStore, Store};
use cynode_egress::router::{Router, RouterConfig};
use cynode_server::gateway::{ChatInference, GatewayConfig, GatewayState, router};

const LITELLM_KEY: &str = "sk-bench-master";

// ---------------------------------------------------------------- fixed-rate client

/// One keep-alive HTTP/1.1 connection that posts the same chat completion.
struct Client {
    port: u16,
    request: Vec<u8>,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(port: u16, bearer: Option<&str>) -> Self {
        let body = r#"{"model":"mock","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16,"temperature":0}"#;
        let auth = bearer
            .map(|b| format!("authorization: Bearer {b}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: keep-alive\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Client {
            port,
            request,
            conn: None,
        }
    }

    /// One round trip; the status code.
    fn call(&mut self) -> std::io::Result<u16> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.conn = Some(BufReader::new(s));
        }
        let r = self.conn.as_mut().expect("connection");
        r.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut len, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => len = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v == "close",
                _ => {}
            }
        }
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .map_err(std::io::Error::other)?;
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = len {
            let mut buf = vec![0; n];
            r.read_exact(&mut buf)?;
        } else {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf)?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok(status)
    }
}

#[derive(Clone, Copy, Debug)]
struct Lat {
    p50: f64,
    p99: f64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[k]
}

/// `n` requests at `rate` per second after `w` warm-up requests.
fn fixed_rate(port: u16, bearer: Option<&str>, rate: u64, n: u64, w: u64, label: &str) -> Lat {
    let mut c = Client::new(port, bearer);
    for _ in 0..w {
        let s = c
            .call()
            .unwrap_or_else(|e| panic!("{label}: warm-up failed: {e}"));
        assert_eq!(s, 200, "{label}: warm-up answered {s}");
    }
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut lat = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    let mut late = 0u64;
    for i in 0..n {
        let due = t0 + interval * u32::try_from(i).unwrap_or(u32::MAX);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if i > 0 {
            late += 1;
        }
        let start = Instant::now();
        let s = c
            .call()
            .unwrap_or_else(|e| panic!("{label}: request failed: {e}"));
        assert_eq!(s, 200, "{label}: answered {s}");
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let l = Lat {
        p50: pct(&lat, 50.0),
        p99: pct(&lat, 99.0),
    };
    eprintln!(
        "[gateway bench] fixed rate {rate}/s {label:<10} n={n} p50={:.3} p99={:.3} max={:.3} ms (late sends: {late})",
        l.p50,
        l.p99,
        lat.last().copied().unwrap_or(f64::NAN)
    );
    l
}

/// `latency.py` (sequential, one keep-alive connection).
fn sequential(
    python: &str,
    peers: &Path,
    port: u16,
    key: Option<&str>,
    k: u64,
    w: u64,
    label: &str,
) -> Lat {
    let mut cmd = Command::new(python);
    cmd.arg(peers.join("latency.py"))
        .arg(format!("http://127.0.0.1:{port}"))
        .args([
            "--model",
            "mock",
            "-n",
            &k.to_string(),
            "-w",
            &w.to_string(),
        ])
        .args(["--label", label, "--json"]);
    if let Some(key) = key {
        cmd.args(["--key", key]);
    }
    let out = cmd
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
    let l = Lat {
        p50: v["p50_ms"].as_f64().unwrap_or(f64::NAN),
        p99: v["p99_ms"].as_f64().unwrap_or(f64::NAN),
    };
    eprintln!(
        "[gateway bench] sequential {label:<10} n={k} p50={:.3} p99={:.3} ms",
        l.p50, l.p99
    );
    l
}

// ---------------------------------------------------------------- peers

fn start_litellm(peers: &Path, mock_port: u16, dir: &Path) -> Option<(Proc, u16, String)> {
    let venv = Path::new("/opt/peers/litellm-venv");
    if !venv.join("bin/litellm").is_file() {
        eprintln!("[gateway bench] installing LiteLLM through litellm.sh (first run only)");
        let _ = Command::new("bash")
            .arg(peers.join("litellm.sh"))
            .args(["-n", "10", "-w", "1"])
            .args([
                "-m",
                &free_port().to_string(),
                "-l",
                &free_port().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
    }
    if !venv.join("bin/litellm").is_file() {
        return None;
    }
    let version = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // The configuration of ../shared/peers/litellm.sh.
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: mock\n    litellm_params:\n      model: openai/mock\n      api_base: http://127.0.0.1:{mock_port}/v1\n      api_key: sk-mock-upstream\nlitellm_settings:\n  telemetry: false\n  drop_params: true\n  set_verbose: false\n  request_timeout: 30\ngeneral_settings:\n  disable_spend_logs: true\n"
        ),
    )
    .ok()?;
    let port = free_port();
    let log = std::fs::File::create(dir.join("litellm.log")).ok()?;
    let child = Command::new(venv.join("bin/litellm"))
        .arg("--config")
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--num_workers", "1", "--telemetry", "False"])
        .env("LITELLM_MASTER_KEY", LITELLM_KEY)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .env("LITELLM_LOG", "ERROR")
        .env("DISABLE_ADMIN_UI", "True")
        .env("NO_DOCS", "True")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("DATABASE_URL")
        .stdout(log.try_clone().ok()?)
        .stderr(log)
        .spawn()
        .ok()?;
    let proc = Proc(child);
    if !wait_http(port, "/health/liveliness", Duration::from_secs(120)) {
        eprintln!(
            "[gateway bench] LiteLLM did not come up; see {}",
            dir.join("litellm.log").display()
        );
        return None;
    }
    Some((proc, port, version))
}

/// The store behind a gateway under test.
enum Backing {
    Sqlite(PathBuf),
    Postgres(String),
    Memory,
}

/// Serves the gateway on a free port from a thread of its own; returns the port and an
/// access token.
fn start_gateway(mock_port: u16, backing: Backing) -> (u16, String) {
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let store: Arc<dyn Store> = match backing {
                Backing::Sqlite(db) => Arc::new(SqliteStore::open(&db).await.expect("sqlite")),
                Backing::Postgres(url) => {
                    Arc::new(PgStore::connect(&url, 8).await.expect("postgres"))
                }
                Backing::Memory => Arc::new(MemoryStore::new()),
            };
            let admin = bootstrap_admin(store.as_ref(), "admin", "admin123")
                .await
                .expect("bootstrap");
            let keys = JwtKeys::new(JwtKey::new("bench", b"bench secret for the gateway".to_vec()));
            let (token, _) = issue_access_token(
                &keys,
                admin.id,
                "admin",
                chrono::Utc::now(),
                Duration::from_secs(24 * 3600),
            );
            let config: RouterConfig = serde_json::from_value(serde_json::json!({
                "local": [{"name": "mock", "provider": {"kind": "vllm", "base_url": format!("http://127.0.0.1:{mock_port}/v1")}}]
            }))
            .expect("router config");
            let router_ = Arc::new(Router::from_config(&config).expect("router"));
            let state = GatewayState::builder(store, keys)
                .config(GatewayConfig {
                    inference_model: "mock".into(),
                    ..Default::default()
                })
                .inference(ChatInference::new(router_))
                .build();
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind gateway");
            let _ = tx.send(token);
            axum::serve(
                listener,
                router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .expect("serve");
        })
    });
    let token = rx.recv().expect("gateway start");
    (port, token)
}

/// `n` chat turns (user message, answer, audit record) committed one after another
/// into a fresh SQLite file in `dir`, after `w` warm-up commits.
fn durable_commit(dir: &Path, n: u64, w: u64) -> Lat {
    use cynode_core::model::{ChatAudit, ChatRole};
    use cynode_core::store::{ChatStore, ChatTurn, NewChatMessage};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let store = SqliteStore::open(&dir.join("commit-floor.db"))
            .await
            .expect("sqlite");
        let admin = bootstrap_admin(&store, "admin", "admin123")
            .await
            .expect("bootstrap");
        let thread = store
            .create_thread(admin.id, None, None)
            .await
            .expect("thread");
        let mut lat = Vec::with_capacity(n as usize);
        for i in 0..n + w {
            let turn = ChatTurn {
                thread_id: thread.id,
                messages: vec![
                    NewChatMessage::new(ChatRole::User, "Say hello in one short sentence."),
                    NewChatMessage::new(ChatRole::Assistant, "Hello! How can I help you today?"),
                ],
                audit: Some(ChatAudit {
                    id: cynode_core::AuditId::new(),
                    user_id: Some(admin.id),
                    project_id: None,
                    outcome: "success".into(),
                    error_code: None,
                    redaction_applied: false,
                    redaction_kinds: Vec::new(),
                    duration_ms: Some(1),
                    request_id: None,
                    created_at: chrono::Utc::now(),
                }),
            };
            let start = Instant::now();
            store.append_turn(turn).await.expect("append_turn");
            if i >= w {
                lat.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        store.close().await;
        lat.sort_by(|a, b| a.total_cmp(b));
        let l = Lat {
            p50: pct(&lat, 50.0),
            p99: pct(&lat, 99.0),
        };
        eprintln!(
            "[gateway bench] durable commit (SQLite append_turn) n={n} p50={:.3} p99={:.3} ms",
            l.p50, l.p99
        );
        l
    })
}

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
    let rate = env_or("BENCH_RATE", 50);
    let n = env_or("BENCH_N", 1000);
    let w = env_or("BENCH_W", 100);
    let k = env_or("BENCH_K", 2000);
    let rounds = env_or("BENCH_ROUNDS", 1).max(1);
    let peers = peers_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let load_before = loadavg();
    let venv_python = "/opt/peers/litellm-venv/bin/python";
    let python = if Path::new(venv_python).is_file() {
        venv_python
    } else {
        "python3"
    };

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
    let (gw_port, token) = start_gateway(mock_port, Backing::Sqlite(dir.path().join("gateway.db")));
    assert!(
        wait_http(gw_port, "/healthz", Duration::from_secs(20)),
        "gateway did not start"
    );
    let (mem_port, mem_token) = start_gateway(mock_port, Backing::Memory);
    assert!(
        wait_http(mem_port, "/healthz", Duration::from_secs(20)),
        "gateway did not start"
    );
    // PostgreSQL (the production store) when a server is given: a scratch database.
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let scratch = std::env::var("BENCH_PG_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map(|u| {
            setup
                .block_on(ScratchDb::create(&u, "cynode_gw_bench"))
                .unwrap_or_else(|e| panic!("BENCH_PG_URL: cannot create a database: {e}"))
        });
    let pg = scratch.as_ref().map(|db| {
        let (p, t) = start_gateway(mock_port, Backing::Postgres(db.url.clone()));
        assert!(
            wait_http(p, "/healthz", Duration::from_secs(20)),
            "gateway did not start"
        );
        (p, t)
    });
    let lite = if std::env::var("BENCH_SKIP_LITELLM").is_ok_and(|v| v == "1") {
        None
    } else {
        start_litellm(&peers, mock_port, dir.path())
    };

    // (label, port, bearer)
    let mut targets: Vec<(&str, u16, Option<&str>)> = vec![
        ("direct", mock_port, None),
        ("cynode", gw_port, Some(token.as_str())),
        ("cynode-mem", mem_port, Some(mem_token.as_str())),
    ];
    if let Some((p, t)) = &pg {
        targets.push(("cynode-pg", *p, Some(t.as_str())));
    }
    if let Some((_, p, _)) = &lite {
        targets.push(("litellm", *p, Some(LITELLM_KEY)));
    }
    let mut rate_added: Vec<Vec<(f64, f64)>> = vec![Vec::new(); targets.len()];
    let mut seq_added: Vec<Vec<(f64, f64)>> = vec![Vec::new(); targets.len()];
    for r in 1..=rounds {
        eprintln!("[gateway bench] round {r}/{rounds}");
        let base = fixed_rate(mock_port, None, rate, n, w, "direct");
        for (i, (label, port, key)) in targets.iter().enumerate().skip(1) {
            let l = fixed_rate(*port, *key, rate, n, w, label);
            rate_added[i].push((l.p50 - base.p50, l.p99 - base.p99));
        }
        let base = sequential(python, &peers, mock_port, None, k, w, "direct");
        for (i, (label, port, key)) in targets.iter().enumerate().skip(1) {
            let l = sequential(python, &peers, *port, *key, k, w, label);
            seq_added[i].push((l.p50 - base.p50, l.p99 - base.p99));
        }
    }
    let floor = durable_commit(dir.path(), n, w);
    let med = |v: &[(f64, f64)]| {
        (
            median(v.iter().map(|x| x.0).collect()),
            median(v.iter().map(|x| x.1).collect()),
        )
    };

    println!();
    println!(
        "machine load average (1 min): {load_before} at start, {} at end",
        loadavg()
    );
    println!(
        "latency added to a chat completion over mock-openai.py (median of {rounds} round(s); added = target - direct)"
    );
    println!(
        "{:<34} {:>14} {:>14} {:>14} {:>14}",
        "", "rate p50 (ms)", "rate p99 (ms)", "seq p50 (ms)", "seq p99 (ms)"
    );
    let mut ours = (f64::NAN, f64::NAN);
    let mut mem = (f64::NAN, f64::NAN);
    let mut pg_p99 = None;
    let mut theirs = None;
    for (i, (label, _, _)) in targets.iter().enumerate().skip(1) {
        let (r50, r99) = med(&rate_added[i]);
        let (s50, s99) = med(&seq_added[i]);
        let name = match *label {
            "cynode" => "cynode gateway (SQLite, full path)".to_string(),
            "cynode-mem" => "cynode gateway (memory store)".to_string(),
            "cynode-pg" => "cynode gateway (PostgreSQL)".to_string(),
            _ => format!(
                "litellm proxy {}",
                lite.as_ref().map(|l| l.2.as_str()).unwrap_or("")
            ),
        };
        println!("{name:<34} {r50:>14.3} {r99:>14.3} {s50:>14.3} {s99:>14.3}");
        if *label == "cynode" {
            ours = (r99, s99);
        } else if *label == "cynode-mem" {
            mem = (r99, s99);
        } else if *label == "cynode-pg" {
            pg_p99 = Some((r99, s99));
        } else if *label == "litellm" {
            theirs = Some((r99, s99));
        }
    }
    println!(
        "{:<34} {:>14} {:>14.3} {:>14} {:>14}",
        "one durable SQLite commit (floor)",
        format!("{:.3}", floor.p50),
        floor.p99,
        "",
        ""
    );
    if let Some((l_rate, l_seq)) = theirs {
        let ratio = |l: f64, o: f64| {
            if o > 0.0 {
                format!("{:.0}x", l / o)
            } else {
                "n/a".into()
            }
        };
        println!(
            "{:<34} {:>14} {:>14} {:>14} {:>14}",
            "ratio litellm / cynode SQLite p99",
            "",
            ratio(l_rate, ours.0),
            "",
            ratio(l_seq, ours.1)
        );
        println!(
            "{:<34} {:>14} {:>14} {:>14} {:>14}",
            "ratio litellm / cynode memory p99",
            "",
            ratio(l_rate, mem.0),
            "",
            ratio(l_seq, mem.1)
        );
    } else {
        println!("litellm proxy: not run");
    }
    println!(
        "cynode-gateway: rate={rate}/s n={n} added_p99_ms={:.3} seq_added_p99_ms={:.3} memory_added_p99_ms={:.3} memory_seq_added_p99_ms={:.3} commit_p99_ms={:.3} goal_p99_lt_1ms={}",
        ours.0,
        ours.1,
        mem.0,
        mem.1,
        floor.p99,
        if ours.0 < 1.0 { "met" } else { "missed" }
    );
    if let Some((r99, s99)) = pg_p99 {
        println!(
            "cynode-gateway-pg: rate={rate}/s added_p99_ms={r99:.3} seq_added_p99_ms={s99:.3}"
        );
    }
    if let Some(db) = scratch {
        setup.block_on(db.drop_now());
    }
}
