//! `dev`: the one-process dev stack. The orchestrator on SQLite under the data dir,
//! one in-process worker on the local Podman socket (with the per-job inference host,
//! as `cynode-worker` has it), generated secrets (including the job-token key, so
//! job-scoped external inference works as in `serve`), a banner with the URLs and the
//! admin account, and a demo task whose result is printed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cynode_egress::job_host::EgressJobInference;
use cynode_sandbox::node::{
    NodeManager, NodeManagerConfig, ShutdownOutcome, Telemetry, WorkerApiConfig, WorkerApiState,
    capability, worker_api_router,
};
use cynode_sandbox::{
    DockerConfig, Driver, DriverConfig, ImagePolicy, InferenceConfig, PullPolicy, RunAs,
};
use serde_json::{Value, json};

use crate::app::{self, AdminPassword, DispatchOverrides, Mode, Running};
use crate::cli::{Common, DevArgs};

/// Job images of the gateway's task kinds that cannot be pulled here (no registry):
/// they run in the locally built sandbox image instead.
const ALIASED_IMAGES: [&str; 2] = ["alpine:latest", "alpine"];

/// The uid:gid sandboxes run as (the user `sandbox` of the local image).
const SANDBOX_USER: RunAs = RunAs {
    uid: 10001,
    gid: 10001,
};

/// The demo task's command.
pub const DEMO_COMMAND: &str = "echo hello from cynode";

/// Runs the dev stack until Ctrl-C / SIGTERM.
pub async fn run(common: &Common, args: &DevArgs) -> anyhow::Result<()> {
    let overrides = DispatchOverrides {
        image_aliases: ALIASED_IMAGES
            .iter()
            .map(|i| (i.to_string(), args.sandbox_image.clone()))
            .collect(),
    };
    let mut running = app::start(Mode::Dev, common, overrides).await?;
    // The dispatcher starts once the worker's API listens: jobs stored by an earlier
    // run go to the node's known address, which then answers (503 until configured,
    // which the dispatcher retries) instead of refusing the connection.
    let worker_url = match start_worker(&mut running, common, args).await {
        Ok(url) => url,
        Err(e) => {
            let _ = running.stop(None).await;
            return Err(e);
        }
    };
    if let Err(e) = running.start_dispatcher() {
        let _ = running.stop(None).await;
        return Err(e);
    }
    print_banner(&running, common, args, &worker_url);
    if !args.no_demo {
        let demo = demo_task(&running);
        tokio::select! {
            r = demo => match r {
                Ok(stdout) => println!("demo task `{DEMO_COMMAND}` completed; its output: {}", stdout.trim_end()),
                Err(e) => println!("demo task did not complete: {e:#}"),
            },
            () = running.shutdown.cancelled() => {}
        }
    }
    println!("ready; press Ctrl-C to stop");
    running.run_until_signal().await
}

/// Starts the in-process worker: the Worker API on its own listener and the node
/// manager, which registers with this process's control plane. Returns the Worker API
/// URL.
async fn start_worker(r: &mut Running, common: &Common, args: &DevArgs) -> anyhow::Result<String> {
    let state_dir = common.data_dir.join("worker");
    crate::secrets::ensure_dir(&state_dir)?;
    let docker = DockerConfig::new(&args.container_host);
    let inference = common.ollama_base_url.clone().filter(|u| !u.is_empty());
    let driver_config = DriverConfig {
        owner: format!("node-{}", args.node_slug),
        mount_root: state_dir.join("sandbox_mounts"),
        run_as: SANDBOX_USER,
        images: ImagePolicy {
            default_image: args.sandbox_image.clone(),
            pull: PullPolicy::Never,
            ..ImagePolicy::default()
        },
        inference: inference.clone().map(|upstream_url| InferenceConfig {
            upstream_url,
            ..InferenceConfig::default()
        }),
        ..DriverConfig::default()
    };
    let driver = Driver::connect(&docker, driver_config).await.with_context(|| {
        format!(
            "cannot reach the container engine at {} (scripts/up.sh starts Podman's API socket; or set CONTAINER_HOST)",
            args.container_host
        )
    })?;
    let facts = capability::runtime_facts(&docker)
        .await
        .with_context(|| format!("container engine at {}", args.container_host))?;
    let api = WorkerApiState::new(
        driver,
        WorkerApiConfig {
            node_slug: args.node_slug.clone(),
            build_version: env!("CARGO_PKG_VERSION").into(),
            runtime_version: facts.version.clone(),
            state_dir: state_dir.clone(),
            max_concurrency: args.max_concurrency.max(1),
            inference_allowed: inference.is_some(),
            ..WorkerApiConfig::default()
        },
        Arc::new(Telemetry::new()),
    );
    // Inference jobs dispatched with a grant (JOB_EXTERNAL_MODELS) get their own front:
    // the node's models plus the grant's external models through this process's API
    // egress service, on a private Unix socket under the worker's state dir.
    api.set_job_inference_host(Arc::new(EgressJobInference::new(
        inference.clone(),
        state_dir.join("job-inference"),
    )));
    let listener = app::bind("Worker API", "WORKER_LISTEN_ADDR", &args.worker_listen).await?;
    let bound = listener.local_addr()?;
    let host = if bound.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bound.ip().to_string()
    };
    let worker_url = format!("http://{host}:{}", bound.port());
    tracing::info!(addr = %bound, runtime = %facts.runtime, version = %facts.version, "in-process worker: Worker API listening");

    let mut config = NodeManagerConfig::new(
        r.control_plane_url.clone(),
        r.registration_psk.clone(),
        args.node_slug.clone(),
        worker_url.clone(),
    );
    config.docker = docker;
    config.inference_base_url = inference;
    config.state_dir = state_dir;
    config.drain_grace = std::time::Duration::from_secs(10);
    let manager = NodeManager::new(config, api.clone()).context("in-process worker")?;

    // The Worker API keeps serving while the node manager drains on shutdown; it stops
    // once the manager is done.
    let server_stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = server_stop.clone();
        tokio::spawn(
            axum::serve(listener, worker_api_router(api))
                .with_graceful_shutdown(stop.cancelled_owned())
                .into_future(),
        )
    };
    let shutdown = r.shutdown.clone();
    r.tasks.spawn(async move {
        let outcome = manager.run(shutdown.cancelled_owned()).await;
        server_stop.cancel();
        let _ = server.await;
        match outcome {
            ShutdownOutcome::Clean(report) => {
                tracing::info!(?report, "in-process worker drained");
                Ok(())
            }
            ShutdownOutcome::Unclean(report) => {
                bail!("in-process worker: jobs did not stop in time ({report:?})")
            }
            ShutdownOutcome::Failed(message) => bail!("in-process worker: {message}"),
        }
    });
    Ok(worker_url)
}

fn print_banner(r: &Running, common: &Common, args: &DevArgs, worker_url: &str) {
    let gw = format!("http://{}", r.gateway_addr);
    println!();
    println!("CyNodeAI dev stack is up");
    println!("  user gateway    {gw}   (OpenAI-compatible: {gw}/v1, API docs: {gw}/openapi.json)");
    println!("  control plane   http://{}", r.control_plane_addr);
    if let Some(e) = r.egress_addr {
        println!("  API egress      http://{e}");
    }
    println!(
        "  worker          {worker_url}   (node `{}`, sandboxes on {})",
        args.node_slug, args.container_host
    );
    println!("  sandbox image   {}", args.sandbox_image);
    let mut models = Vec::new();
    if let Some(u) = common.ollama_base_url.as_deref().filter(|u| !u.is_empty()) {
        models.push(format!("Ollama-compatible at {u}"));
    }
    if common
        .openai_api_key
        .as_deref()
        .is_some_and(|k| !k.is_empty())
    {
        models.push("OpenAI".to_string());
    }
    if common
        .anthropic_api_key
        .as_deref()
        .is_some_and(|k| !k.is_empty())
    {
        models.push("Anthropic".to_string());
    }
    if models.is_empty() {
        println!(
            "  models          none configured: set OLLAMA_BASE_URL (or OPENAI_API_KEY / ANTHROPIC_API_KEY) for chat"
        );
    } else {
        println!("  models          {}", models.join(", "));
    }
    println!("  admin user      {}", r.admin_handle);
    match &r.admin_password {
        AdminPassword::Generated(p) => {
            println!(
                "  admin password  generated on first start, kept in {} (cat it)",
                p.display()
            );
        }
        AdminPassword::Existing { file: Some(p) } => {
            println!("  admin password  in {}", p.display());
        }
        AdminPassword::Existing { file: None } => {
            println!("  admin password  unchanged (the account existed already)");
        }
        AdminPassword::FromEnv => println!("  admin password  from BOOTSTRAP_ADMIN_PASSWORD"),
    }
    println!(
        "  log in          CYNORK_GATEWAY_URL={gw} cynork auth login -u {}",
        r.admin_handle
    );
    println!();
}

/// Logs in as the admin, submits the demo task and waits for its stdout.
async fn demo_task(r: &Running) -> anyhow::Result<String> {
    let Some(password) = r.admin_password_value.clone() else {
        bail!(
            "the admin password is not known to this process (set BOOTSTRAP_ADMIN_PASSWORD to run the demo)"
        );
    };
    let base = format!("http://{}", r.gateway_addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let login: Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"handle": r.admin_handle, "password": password}))
        .send()
        .await
        .context("login")?
        .error_for_status()
        .context("login")?
        .json()
        .await
        .context("login response")?;
    let token = login["access_token"]
        .as_str()
        .context("login response has no access_token")?
        .to_string();
    let task: Value = http
        .post(format!("{base}/v1/tasks"))
        .bearer_auth(&token)
        .json(&json!({"prompt": DEMO_COMMAND, "input_mode": "commands", "task_name": "demo"}))
        .send()
        .await
        .context("create the demo task")?
        .error_for_status()
        .context("create the demo task")?
        .json()
        .await
        .context("task response")?;
    let id = task["id"]
        .as_str()
        .context("task response has no id")?
        .to_string();
    println!(
        "demo task {} submitted: `{DEMO_COMMAND}`",
        task["task_name"].as_str().unwrap_or(&id)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let result: Value = http
            .get(format!("{base}/v1/tasks/{id}/result"))
            .bearer_auth(&token)
            .send()
            .await
            .context("read the demo task's result")?
            .error_for_status()
            .context("read the demo task's result")?
            .json()
            .await
            .context("result response")?;
        let status = result["status"].as_str().unwrap_or_default();
        if matches!(status, "completed" | "failed" | "canceled" | "superseded") {
            let job = result["jobs"]
                .as_array()
                .and_then(|j| j.last())
                .context("the demo task has no job")?;
            let doc: Value = job["result"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            if status != "completed" {
                bail!(
                    "the demo task ended {status}: {}",
                    doc.get("error")
                        .or_else(|| doc.get("stderr"))
                        .and_then(Value::as_str)
                        .unwrap_or("no details")
                );
            }
            return Ok(doc["stdout"].as_str().unwrap_or_default().to_string());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the demo task is still {status} after 180 s (see the log above)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
