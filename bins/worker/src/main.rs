//! `cynode-worker`: a CyNodeAI worker node. Serves the Worker API (jobs run in locked-down
//! sandboxes), registers with the orchestrator's control plane, applies the
//! configuration it is sent, reports its capabilities every minute and drains on
//! SIGTERM. Every flag also reads the environment variable named in `--help`.
//!
//! This file only assembles: the command line is [`cli`], the node is
//! `cynode_sandbox::node` (Worker API, node manager, standalone inference proxy, the
//! agent runner's arguments) and the per-job inference host is
//! `cynode_egress::job_host`.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use cynode_egress::job_host::EgressJobInference;
use cynode_sandbox::node::{
    NodeManager, ShutdownOutcome, StandaloneProxy, Telemetry, WorkerApiConfig, WorkerApiState,
    capability, healthcheck, remove_stale_socket, sba_run_args, worker_api_router,
};
use cynode_sandbox::{DockerConfig, Driver};

use crate::cli::{Args, Command, LogFormat, ProxyArgs};

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

/// `cynode-worker inference-proxy`: serve the proxy on its socket until a signal, or
/// (`--healthcheck-url`) probe one URL: exit 0 on 200 within 10 s, 1 otherwise.
async fn inference_proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.healthcheck_url {
        return Ok(if healthcheck(url, Duration::from_secs(10)).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let Some(socket) = args.socket else {
        bail!(
            "INFERENCE_PROXY_SOCKET (--socket) is required: the proxy listens only on a Unix socket"
        );
    };
    remove_stale_socket(&socket).with_context(|| format!("remove stale {}", socket.display()))?;
    let proxy = StandaloneProxy::start(&socket, &args.upstream)
        .await
        .context("start the inference proxy")?;
    tracing::info!(socket = %socket.display(), upstream = %proxy.upstream(), "inference proxy listening");
    proxy.run_until(shutdown_signal()).await;
    tracing::info!("inference proxy stopped");
    Ok(ExitCode::SUCCESS)
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Command::InferenceProxy(p)) = args.command {
        return inference_proxy(p).await;
    }
    let state_dir = args.state_dir();
    let mount_root = args.mount_root(&state_dir);
    if args.print_sba_pod_run_args {
        let r = cli::run_as(&args.run_as)?;
        let argv = sba_run_args(
            &mount_root,
            "<job_id>",
            r,
            args.userns_keep_id,
            &args.sba_image,
        );
        println!("{}", argv.join(" "));
        return Ok(ExitCode::SUCCESS);
    }
    let docker_host = args.docker_host();
    let standalone = args.standalone();
    let node_slug = args.node_slug(standalone)?;
    let addr = cli::listen_addr(&args.listen_addr)?;
    let ollama = args.ollama_url();
    let docker = DockerConfig::new(&docker_host);

    let driver_config = args.driver_config(&node_slug, mount_root, &ollama)?;
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
    // models through the orchestrator's API egress service, with the job's token), on
    // a Unix socket in a private directory under the state dir.
    if !args.sandbox_only {
        api.set_job_inference_host(Arc::new(EgressJobInference::new(
            Some(ollama.clone()),
            state_dir.join("job-inference"),
        )));
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
        let config =
            args.node_manager_config(psk, &node_slug, local.port(), docker, ollama, state_dir);
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
