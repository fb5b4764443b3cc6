//! `cynode-worker`: a CyNodeAI worker node. Serves the Worker API (jobs run in locked-down
//! sandboxes), registers with the orchestrator's control plane, applies the
//! configuration it is sent, reports its capabilities every minute and drains on
//! SIGTERM. Every flag also reads the environment variable named in `--help`.

mod job_inference;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use cynode_sandbox::node::{
    NodeManager, NodeManagerConfig, ShutdownOutcome, Telemetry, WorkerApiConfig, WorkerApiState,
    capability, worker_api_router,
};
use cynode_sandbox::{
    DockerConfig, Driver, DriverConfig, ImagePolicy, InferenceConfig, InferenceProxy, ModelPolicy,
    PullPolicy, RunAs,
};

/// A CyNodeAI worker node: runs jobs from the orchestrator in sandboxes.
///
/// Start it next to a container engine (Podman's Docker-API socket or Docker) and point
/// it at the orchestrator's control plane:
///
///   ORCHESTRATOR_URL=http://orchestrator:12082 NODE_REGISTRATION_PSK=... \
///   NODE_SLUG=node-01 CONTAINER_HOST=unix:///run/podman/podman.sock cynode-worker
///
/// It waits for the control plane, registers with the pre-shared key, receives its
/// configuration (including the token the orchestrator uses to call this node), serves
/// the Worker API on LISTEN_ADDR (default :12090) and sends a heartbeat every
/// CAPABILITY_REPORT_INTERVAL. On SIGTERM or SIGINT it stops taking jobs, lets running
/// ones finish for --drain-grace, cancels the rest and exits 0 (1 if a job would not
/// stop). With --standalone (or WORKER_API_BEARER_TOKEN set and no PSK) it serves the
/// Worker API alone, with that token, and registers nowhere.
#[derive(Debug, Parser)]
#[command(
    name = "cynode-worker",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Control-plane base URL.
    #[arg(
        long,
        env = "ORCHESTRATOR_URL",
        default_value = "http://localhost:12082"
    )]
    orchestrator_url: String,

    /// Registration pre-shared key (required unless --standalone).
    #[arg(long = "psk", env = "NODE_REGISTRATION_PSK", hide_env_values = true)]
    registration_psk: Option<String>,

    /// This node's slug: unique, stable, no whitespace or '/'.
    #[arg(long, env = "NODE_SLUG")]
    node_slug: Option<String>,

    /// Display name.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,

    /// Labels reported to the orchestrator, comma-separated (e.g. gpu,region_eu).
    #[arg(long, env = "NODE_LABELS", value_delimiter = ',')]
    labels: Vec<String>,

    /// Never run or use inference on this node (adds the sandbox_only label).
    #[arg(long, env = "NODE_SANDBOX_ONLY")]
    sandbox_only: bool,

    /// Address the Worker API listens on (":12090", "0.0.0.0:12090", "127.0.0.1:0").
    #[arg(long, env = "LISTEN_ADDR", default_value = ":12090")]
    listen_addr: String,

    /// URL the orchestrator uses to reach this node's Worker API
    /// [default: http://<hostname>:<port>]. NODE_ADVERTISED_WORKER_API_URL also works.
    #[arg(long, env = "WORKER_PUBLIC_URL")]
    public_url: Option<String>,

    /// Container engine socket [default: CONTAINER_HOST, then DOCKER_HOST, then
    /// unix:///run/podman/podman.sock when present, else unix:///var/run/docker.sock].
    #[arg(long, env = "CONTAINER_HOST")]
    container_host: Option<String>,

    /// Node-local Ollama-compatible service that sandboxes reach through their
    /// inference socket (OLLAMA_UPSTREAM_URL also works).
    #[arg(
        long,
        env = "OLLAMA_BASE_URL",
        default_value = "http://127.0.0.1:11434"
    )]
    ollama_base_url: String,

    /// Image used when a job names none.
    #[arg(long, env = "SANDBOX_DEFAULT_IMAGE", default_value = "alpine:latest")]
    sandbox_image: String,

    /// Whether missing images are pulled.
    #[arg(long, env = "SANDBOX_PULL_POLICY", value_enum, default_value_t = Pull::IfMissing)]
    pull_policy: Pull,

    /// Jobs run at once; more are refused with 503 and Retry-After.
    #[arg(long, env = "SANDBOX_MAX_CONCURRENCY", default_value_t = 4)]
    max_concurrency: usize,

    /// State directory: sandbox job directories and the telemetry database
    /// (telemetry/telemetry.db). Each node on a host needs its own [default:
    /// WORKER_API_STATE_DIR, then CYNODE_STATE_DIR, then /var/lib/cynode/state].
    #[arg(long)]
    state_dir: Option<PathBuf>,

    /// Host directory of the per-job sandbox directories [default: <state_dir>/sandbox_mounts].
    #[arg(long, env = "CYNODE_SANDBOX_MOUNT_ROOT")]
    mount_root: Option<PathBuf>,

    /// uid:gid sandboxes run as (never 0).
    #[arg(long, env = "SANDBOX_RUN_AS", default_value = "65532:65532")]
    run_as: String,

    /// Podman rootless: map this process's uid into sandboxes (keep-id).
    #[arg(long, env = "SANDBOX_USERNS_KEEP_ID")]
    userns_keep_id: bool,

    /// Bytes of stdout and of stderr kept per job.
    #[arg(long, env = "MAX_OUTPUT_BYTES", default_value_t = 262_144)]
    max_output_bytes: usize,

    /// Job timeout when a request sets none, in seconds.
    #[arg(long, env = "SANDBOX_DEFAULT_TIMEOUT_SECONDS", default_value_t = 3600)]
    default_timeout_secs: u64,

    /// Largest job timeout, in seconds.
    #[arg(long, env = "SANDBOX_MAX_TIMEOUT_SECONDS", default_value_t = 10800)]
    max_timeout_secs: u64,

    /// Heartbeat interval (capability report and config poll): "60s", "2m", "500ms".
    #[arg(long, env = "CAPABILITY_REPORT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    report_interval: Duration,

    /// Timeout of one call to the control plane.
    #[arg(long, env = "HTTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    http_timeout: Duration,

    /// How long to wait for the control plane at start before exiting 1 ("0" waits forever).
    #[arg(long, env = "NODE_MANAGER_READINESS_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    readiness_timeout: Duration,

    /// On shutdown, how long running jobs may finish before they are canceled.
    #[arg(long, env = "NODE_DRAIN_GRACE", default_value = "10s", value_parser = parse_duration)]
    drain_grace: Duration,

    /// Image of the start-up check that runs a no-op container [default: the sandbox
    /// default image].
    #[arg(long, env = "NODE_MANAGER_RUNTIME_CHECK_IMAGE")]
    runtime_check_image: Option<String>,

    /// Skip the start-up container check.
    #[arg(long, env = "NODE_MANAGER_SKIP_CONTAINER_CHECK")]
    skip_container_check: bool,

    /// Serve the Worker API only, with WORKER_API_BEARER_TOKEN; register nowhere
    /// (implied when WORKER_API_BEARER_TOKEN is set and NODE_REGISTRATION_PSK is not).
    #[arg(long, env = "WORKER_STANDALONE")]
    standalone: bool,

    /// Bearer token of the Worker API in --standalone mode.
    #[arg(long, env = "WORKER_API_BEARER_TOKEN", hide_env_values = true)]
    worker_api_token: Option<String>,

    /// Print, on one line, the runtime arguments of an agent (SBA runner) sandbox with
    /// inference and exit: network none, the inference socket directory mounted at
    /// /run/cynode and INFERENCE_PROXY_URL pointing at it (the proxy runs in this
    /// process, not in a sidecar).
    #[arg(long)]
    print_sba_pod_run_args: bool,

    /// Runner image of --print-sba-pod-run-args.
    #[arg(long, default_value = "cynodeai-cynode-sba:dev")]
    sba_image: String,

    /// Accepted for compatibility with --print-sba-pod-run-args callers; unused (the
    /// inference proxy is part of this process).
    #[arg(long)]
    proxy_image: Option<String>,

    /// Accepted for compatibility with --print-sba-pod-run-args callers; the upstream is
    /// OLLAMA_BASE_URL and never reaches the sandbox.
    #[arg(long)]
    upstream_url: Option<String>,

    /// Build version reported by node:info.
    #[arg(long, env = "BUILD_VERSION", default_value = "dev")]
    build_version: String,

    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run only the inference proxy: an HTTP server on a Unix socket that forwards the
    /// Ollama inference endpoints (and nothing else) to the node's model server.
    InferenceProxy(ProxyArgs),
}

#[derive(Debug, clap::Args)]
struct ProxyArgs {
    /// Unix socket to listen on (created with mode 0600).
    #[arg(long, env = "INFERENCE_PROXY_SOCKET")]
    socket: Option<PathBuf>,

    /// Ollama-compatible upstream (host.containers.internal is read as localhost).
    #[arg(
        long,
        env = "OLLAMA_UPSTREAM_URL",
        default_value = "http://127.0.0.1:11434"
    )]
    upstream: String,

    /// Instead of serving: GET this URL once (http:// or http+unix://<encoded socket
    /// path>/<path>) and exit 0 on 200, 1 otherwise.
    #[arg(long)]
    healthcheck_url: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Pull {
    IfMissing,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// "90s", "2m", "1h", "500ms" or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?}: not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn listen_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .with_context(|| format!("LISTEN_ADDR {s:?}: expected host:port or :port"))
}

fn run_as(s: &str) -> anyhow::Result<RunAs> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    let r = RunAs {
        uid: u.parse().context("SANDBOX_RUN_AS: uid")?,
        gid: g.parse().context("SANDBOX_RUN_AS: gid")?,
    };
    if r.uid == 0 || r.gid == 0 {
        bail!("SANDBOX_RUN_AS: sandboxes never run as uid or gid 0");
    }
    Ok(r)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cynode-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One GET; the status code.
async fn http_get_status(url: &str) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut s: S,
        host: &str,
        path: &str,
    ) -> anyhow::Result<u16> {
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut head = Vec::new();
        s.take(4096).read_to_end(&mut head).await?;
        let text = String::from_utf8_lossy(&head);
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no HTTP status line")?;
        Ok(code)
    }
    if let Some(rest) = url.strip_prefix("http+unix://") {
        let (sock, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_string()), |(a, b)| (a, format!("/{b}")));
        let sock = sock.replace("%2F", "/").replace("%2f", "/");
        let s = tokio::net::UnixStream::connect(&sock)
            .await
            .with_context(|| format!("connect {sock}"))?;
        exchange(s, "localhost", &path).await
    } else if let Some(rest) = url.strip_prefix("http://") {
        let (hostport, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_string()), |(a, b)| (a, format!("/{b}")));
        let s = tokio::net::TcpStream::connect(hostport)
            .await
            .with_context(|| format!("connect {hostport}"))?;
        exchange(s, hostport, &path).await
    } else {
        bail!("--healthcheck-url must be http:// or http+unix://")
    }
}

async fn inference_proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.healthcheck_url {
        let ok = tokio::time::timeout(Duration::from_secs(10), http_get_status(url))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 10s"))
            .and_then(|r| r)
            .map(|code| code == 200);
        return Ok(match ok {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) | Err(_) => ExitCode::FAILURE,
        });
    }
    let Some(socket) = args.socket else {
        bail!(
            "INFERENCE_PROXY_SOCKET (--socket) is required: the proxy listens only on a Unix socket"
        );
    };
    let upstream = args
        .upstream
        .replace("host.containers.internal", "localhost");
    if socket.exists() {
        std::fs::remove_file(&socket)
            .with_context(|| format!("remove stale {}", socket.display()))?;
    }
    let proxy = InferenceProxy::bind(
        &socket,
        &InferenceConfig {
            upstream_url: upstream.clone(),
            ..Default::default()
        },
        ModelPolicy::Installed,
        None,
    )
    .await
    .context("start the inference proxy")?;
    tracing::info!(socket = %socket.display(), upstream = %upstream, "inference proxy listening");
    shutdown_signal().await;
    drop(proxy);
    let _ = std::fs::remove_file(&socket);
    tracing::info!("inference proxy stopped");
    Ok(ExitCode::SUCCESS)
}

/// The runtime arguments of an agent sandbox with inference for job `job_id`.
fn sba_run_args(args: &Args, mount_root: &std::path::Path, job_id: &str) -> anyhow::Result<String> {
    let r = run_as(&args.run_as)?;
    let run_dir = mount_root.join(job_id).join("run");
    let mut argv: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--network=none".into(),
        "--cap-drop=ALL".into(),
        "--security-opt=no-new-privileges".into(),
        "--read-only".into(),
        "--init".into(),
        format!("--user={}:{}", r.uid, r.gid),
        "--workdir=/workspace".into(),
        "--label=cynodeai.role=sandbox".into(),
        format!("--label=cynodeai.job_id={job_id}"),
        format!(
            "--volume={}:/workspace:Z",
            mount_root.join(job_id).join("workspace").display()
        ),
        format!(
            "--volume={}:/job:Z",
            mount_root.join(job_id).join("job").display()
        ),
        format!("--volume={}:/run/cynode:Z", run_dir.display()),
        "--env=INFERENCE_PROXY_URL=http+unix://%2Frun%2Fcynode%2Finference-proxy.sock".into(),
        "--env=SBA_EXECUTION_MODE=agent_inference".into(),
        "--env=CYNODE_WORKSPACE_DIR=/workspace".into(),
        "--env=CYNODE_ARTIFACTS_DIR=/job/artifacts".into(),
    ];
    if args.userns_keep_id {
        argv.push("--userns=keep-id".into());
    }
    argv.push(args.sba_image.clone());
    Ok(argv.join(" "))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Command::InferenceProxy(p)) = args.command {
        return inference_proxy(p).await;
    }
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| env_nonempty("WORKER_API_STATE_DIR").map(PathBuf::from))
        .or_else(|| env_nonempty("CYNODE_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/cynode/state"));
    let mount_root = args
        .mount_root
        .clone()
        .unwrap_or_else(|| state_dir.join("sandbox_mounts"));
    if args.print_sba_pod_run_args {
        println!("{}", sba_run_args(&args, &mount_root, "<job_id>")?);
        return Ok(ExitCode::SUCCESS);
    }
    let docker_host = args
        .container_host
        .clone()
        .or_else(|| env_nonempty("DOCKER_HOST"))
        .unwrap_or_else(|| {
            if std::path::Path::new("/run/podman/podman.sock").exists() {
                "unix:///run/podman/podman.sock".into()
            } else {
                "unix:///var/run/docker.sock".into()
            }
        });
    // Standalone when asked, or when only the Worker API token is given (the reference
    // environment contract starts the Worker API alone that way).
    let standalone = args.standalone
        || (args.registration_psk.as_deref().is_none_or(str::is_empty)
            && args
                .worker_api_token
                .as_deref()
                .is_some_and(|t| !t.is_empty()));
    let node_slug = match (&args.node_slug, standalone) {
        (Some(s), _) if !s.is_empty() => s.clone(),
        (_, true) => "standalone".into(),
        _ => bail!("NODE_SLUG (--node-slug) is required"),
    };
    let addr = listen_addr(&args.listen_addr)?;
    let ollama =
        env_nonempty("OLLAMA_UPSTREAM_URL").unwrap_or_else(|| args.ollama_base_url.clone());
    let docker = DockerConfig::new(&docker_host);
    let owner: String = format!("node-{node_slug}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();

    let driver_config = DriverConfig {
        owner,
        mount_root,
        run_as: run_as(&args.run_as)?,
        default_timeout_secs: args.default_timeout_secs.max(1),
        max_timeout_secs: args.max_timeout_secs.max(1),
        max_output_bytes: args.max_output_bytes.max(1),
        images: ImagePolicy {
            default_image: args.sandbox_image.clone(),
            pull: match args.pull_policy {
                Pull::IfMissing => PullPolicy::IfMissing,
                Pull::Never => PullPolicy::Never,
            },
            ..Default::default()
        },
        inference: (!args.sandbox_only).then(|| InferenceConfig {
            upstream_url: ollama.clone(),
            ..Default::default()
        }),
        userns_keep_id: args.userns_keep_id,
        ..Default::default()
    };
    let driver = Driver::connect(&docker, driver_config)
        .await
        .with_context(|| format!("container engine at {docker_host}"))?;
    let facts = capability::runtime_facts(&docker)
        .await
        .with_context(|| format!("container engine at {docker_host}"))?;
    let telemetry_db = state_dir.join("telemetry").join("telemetry.db");
    let telemetry = Arc::new(
        Telemetry::open(&telemetry_db, &node_slug, &args.build_version)
            .await
            .with_context(|| format!("telemetry database {}", telemetry_db.display()))?,
    );
    let api = WorkerApiState::new(
        driver,
        WorkerApiConfig {
            node_slug: node_slug.clone(),
            build_version: args.build_version.clone(),
            runtime_version: facts.version.clone(),
            state_dir: state_dir.clone(),
            max_concurrency: args.max_concurrency.max(1),
            inference_allowed: !args.sandbox_only,
            ..Default::default()
        },
        telemetry,
    );

    // Jobs whose run request carries an inference grant get their own front (external
    // models through the orchestrator's API egress service, with the job's token).
    if !args.sandbox_only {
        api.set_job_inference_host(Arc::new(job_inference::EgressJobInference {
            ollama_url: Some(ollama.clone()),
        }));
    }

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, runtime = %facts.runtime, version = %facts.version, "Worker API listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, worker_api_router(api.clone()))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .into_future(),
    );

    let code = if standalone {
        let Some(token) = args.worker_api_token.as_deref().filter(|t| !t.is_empty()) else {
            bail!("--standalone needs WORKER_API_BEARER_TOKEN");
        };
        api.set_bearer_token(Some(token));
        api.mark_configured();
        if let Err(e) = api.driver().reap_orphans().await {
            tracing::warn!(error = %e, "orphan reaping failed");
        }
        shutdown_signal().await;
        let report = api.drain(args.drain_grace, Duration::from_secs(30)).await;
        tracing::info!(?report, "node manager shutdown");
        if report.left_running == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    } else {
        let Some(psk) = args.registration_psk.clone().filter(|p| !p.is_empty()) else {
            bail!("NODE_REGISTRATION_PSK (--psk) is required");
        };
        let public_url = args
            .public_url
            .clone()
            .or_else(|| env_nonempty("NODE_ADVERTISED_WORKER_API_URL"))
            .unwrap_or_else(|| format!("http://{}:{}", capability::hostname(), local.port()));
        let mut config =
            NodeManagerConfig::new(&args.orchestrator_url, psk, &node_slug, public_url);
        config.node_name = args.node_name.clone();
        config.labels = args
            .labels
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect();
        config.sandbox_only = args.sandbox_only;
        config.docker = docker;
        config.runtime_check_image = (!args.skip_container_check).then(|| {
            args.runtime_check_image
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| args.sandbox_image.clone())
        });
        config.inference_base_url = (!args.sandbox_only).then_some(ollama);
        config.state_dir = state_dir;
        config.report_interval = args.report_interval.max(Duration::from_millis(100));
        config.http_timeout = args.http_timeout.max(Duration::from_millis(100));
        config.readiness_timeout =
            (!args.readiness_timeout.is_zero()).then_some(args.readiness_timeout);
        config.drain_grace = args.drain_grace;
        let manager = NodeManager::new(config, api.clone())?;
        match manager.run(shutdown_signal()).await {
            ShutdownOutcome::Clean(report) => {
                tracing::info!(?report, "drained");
                ExitCode::SUCCESS
            }
            ShutdownOutcome::Unclean(report) => {
                tracing::error!(?report, "jobs did not stop in time");
                ExitCode::FAILURE
            }
            ShutdownOutcome::Failed(message) => {
                eprintln!("cynode-worker: {message}");
                ExitCode::FAILURE
            }
        }
    };
    let _ = stop_tx.send(());
    api.telemetry().flush().await;
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "Worker API server error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "Worker API server task failed"),
        Err(_) => tracing::warn!("Worker API connections still open after 10s; exiting"),
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_addresses_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("x").is_err() && parse_duration("5d").is_err());
        assert_eq!(listen_addr(":12090").unwrap().port(), 12090);
        assert!(listen_addr("nope").is_err());
        assert!(run_as("0:0").is_err());
        assert_eq!(run_as("1000:1001").unwrap().gid, 1001);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
