//! Run an untrusted command in a locked-down sandbox and print what it did.
//!
//! `DOCKER_HOST=unix:///run/podman/podman.sock cargo run -p cynode-examples --example sandbox`
//! (any Docker-API engine; `SANDBOX_IMAGE` picks the image, default `alpine:latest`).

use cynode_sandbox::{DockerConfig, Driver, DriverConfig, JobSpec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    let image = std::env::var("SANDBOX_IMAGE").unwrap_or("alpine:latest".into());
    let mount_root = std::env::temp_dir().join("cynode-example-jobs");
    let config = DriverConfig { mount_root, ..Default::default() };
    let driver = Driver::connect(&DockerConfig::new(host), config).await?;
    driver.reap_orphans().await?;

    let script = "echo uid=$(id -u); ls /sys/class/net; touch /etc/x || echo read-only root";
    let result = driver.run(JobSpec::new(image, ["sh", "-c", script])).await?;
    println!("{} (exit {})", result.status.as_str(), result.exit_code);
    print!("{}{}", result.stdout.text, result.stderr.text);
    Ok(())
}
