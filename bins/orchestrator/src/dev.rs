//! `dev`: the one-process dev stack. The orchestrator on SQLite under the data dir,
//! one in-process worker on the local Podman socket, generated secrets, a banner with
//! the URLs and the admin account, and a demo task whose result is printed.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::app::{self, AdminPassword, Mode, Running};
use crate::cli::{Common, DevArgs};

/// The demo task's command.
pub const DEMO_COMMAND: &str = "echo hello from cynode";

/// Runs the dev stack until Ctrl-C / SIGTERM.
pub async fn run(common: &Common, args: &DevArgs) -> anyhow::Result<()> {
    let running = app::start(Mode::Dev, common).await?;
    print_banner(&running, args);
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

fn print_banner(r: &Running, args: &DevArgs) {
    let gw = format!("http://{}", r.gateway_addr);
    println!();
    println!("CyNodeAI dev stack is up");
    println!("  user gateway    {gw}   (OpenAI-compatible: {gw}/v1, API docs: {gw}/openapi.json)");
    if let Some(e) = r.egress_addr {
        println!("  API egress      http://{e}");
    }
    println!("  sandbox image   {}", args.sandbox_image);
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
