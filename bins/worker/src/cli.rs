//! Command line and environment of `cynode-worker`: every flag also reads the
//! environment variable named in `--help` (`node-protocol.md` §1.3 names them), and the
//! few settings with a chain of fallbacks resolve here, so `main` only assembles.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use cynode_sandbox::node::NodeManagerConfig;
use cynode_sandbox::{DockerConfig, DriverConfig, ImagePolicy, InferenceConfig, PullPolicy, RunAs};

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
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Control-plane base URL.
    #[arg(
        long,
        env = "ORCHESTRATOR_URL",
        default_value = "http://localhost:12082"
    )]
    pub orchestrator_url: String,

    /// Registration pre-shared key (required unless --standalone).
    #[arg(long = "psk", env = "NODE_REGISTRATION_PSK", hide_env_values = true)]
    pub registration_psk: Option<String>,

    /// This node's slug: unique, stable, no whitespace or '/'.
    #[arg(long, env = "NODE_SLUG")]
    pub node_slug: Option<String>,

    /// Display name.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// Labels reported to the orchestrator, comma-separated (e.g. gpu,region_eu).
    #[arg(long, env = "NODE_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Never run or use inference on this node (adds the sandbox_only label).
    #[arg(long, env = "NODE_SANDBOX_ONLY")]
    pub sandbox_only: bool,

    /// Address the Worker API listens on (":12090", "0.0.0.0:12090", "127.0.0.1:0").
    #[arg(long, env = "LISTEN_ADDR", default_value = ":12090")]
    pub listen_addr: String,

    /// URL the orchestrator uses to reach this node's Worker API
    /// [default: http://<hostname>:<port>]. NODE_ADVERTISED_WORKER_API_URL also works.
    #[arg(long, env = "WORKER_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Container engine socket [default: CONTAINER_HOST, then DOCKER_HOST, then
    /// unix:///run/podman/podman.sock when present, else unix:///var/run/docker.sock].
    #[arg(long, env = "CONTAINER_HOST")]
    pub container_host: Option<String>,

    /// Node-local Ollama-compatible service that sandboxes reach through their
    /// inference socket (OLLAMA_UPSTREAM_URL also works).
    #[arg(
        long,
        env = "OLLAMA_BASE_URL",
        default_value = "http://127.0.0.1:11434"
    )]
    pub ollama_base_url: String,

    /// Image used when a job names none.
    #[arg(long, env = "SANDBOX_DEFAULT_IMAGE", default_value = "alpine:latest")]
    pub sandbox_image: String,

    /// Whether missing images are pulled.
    #[arg(long, env = "SANDBOX_PULL_POLICY", value_enum, default_value_t = Pull::IfMissing)]
    pub pull_policy: Pull,

    /// Jobs run at once; more are refused with 503 and Retry-After.
    #[arg(long, env = "SANDBOX_MAX_CONCURRENCY", default_value_t = 4)]
    pub max_concurrency: usize,

    /// State directory: sandbox job directories and the telemetry database
    /// (telemetry/telemetry.db). Each node on a host needs its own [default:
    /// WORKER_API_STATE_DIR, then CYNODE_STATE_DIR, then /var/lib/cynode/state].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,

    /// Host directory of the per-job sandbox directories [default: <state_dir>/sandbox_mounts].
    #[arg(long, env = "CYNODE_SANDBOX_MOUNT_ROOT")]
    pub mount_root: Option<PathBuf>,

    /// uid:gid sandboxes run as (never 0).
    #[arg(long, env = "SANDBOX_RUN_AS", default_value = "65532:65532")]
    pub run_as: String,

    /// Podman rootless: map this process's uid into sandboxes (keep-id).
    #[arg(long, env = "SANDBOX_USERNS_KEEP_ID")]
    pub userns_keep_id: bool,

    /// Bytes of stdout and of stderr kept per job.
    #[arg(long, env = "MAX_OUTPUT_BYTES", default_value_t = 262_144)]
    pub max_output_bytes: usize,

    /// Job timeout when a request sets none, in seconds.
    #[arg(long, env = "SANDBOX_DEFAULT_TIMEOUT_SECONDS", default_value_t = 3600)]
    pub default_timeout_secs: u64,

    /// Largest job timeout, in seconds.
    #[arg(long, env = "SANDBOX_MAX_TIMEOUT_SECONDS", default_value_t = 10800)]
    pub max_timeout_secs: u64,

    /// Heartbeat interval (capability report and config poll): "60s", "2m", "500ms".
    #[arg(long, env = "CAPABILITY_REPORT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub report_interval: Duration,

    /// Timeout of one call to the control plane.
    #[arg(long, env = "HTTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_timeout: Duration,

    /// How long to wait for the control plane at start before exiting 1 ("0" waits forever).
    #[arg(long, env = "NODE_MANAGER_READINESS_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub readiness_timeout: Duration,

    /// On shutdown, how long running jobs may finish before they are canceled.
    #[arg(long, env = "NODE_DRAIN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub drain_grace: Duration,

    /// Image of the start-up check that runs a no-op container [default: the sandbox
    /// default image].
    #[arg(long, env = "NODE_MANAGER_RUNTIME_CHECK_IMAGE")]
    pub runtime_check_image: Option<String>,

    /// Skip the start-up container check.
    #[arg(long, env = "NODE_MANAGER_SKIP_CONTAINER_CHECK")]
    pub skip_container_check: bool,

    /// Serve the Worker API only, with WORKER_API_BEARER_TOKEN; register nowhere
    /// (implied when WORKER_API_BEARER_TOKEN is set and NODE_REGISTRATION_PSK is not).
    #[arg(long, env = "WORKER_STANDALONE")]
    pub standalone: bool,

    /// Bearer token of the Worker API in --standalone mode.
    #[arg(long, env = "WORKER_API_BEARER_TOKEN", hide_env_values = true)]
    pub worker_api_token: Option<String>,

    /// Print, on one line, the runtime arguments of an agent (SBA runner) sandbox with
    /// inference and exit: network none, the inference socket directory mounted at
    /// /run/cynode and INFERENCE_PROXY_URL pointing at it (the proxy runs in this
    /// process, not in a sidecar).
    #[arg(long)]
    pub print_sba_pod_run_args: bool,

    /// Runner image of --print-sba-pod-run-args.
    #[arg(long, default_value = "cynodeai-cynode-sba:dev")]
    pub sba_image: String,

    /// Accepted for compatibility with --print-sba-pod-run-args callers; unused (the
    /// inference proxy is part of this process).
    #[arg(long)]
    pub proxy_image: Option<String>,

    /// Accepted for compatibility with --print-sba-pod-run-args callers; the upstream is
    /// OLLAMA_BASE_URL and never reaches the sandbox.
    #[arg(long)]
    pub upstream_url: Option<String>,

    /// Build version reported by node:info.
    #[arg(long, env = "BUILD_VERSION", default_value = "dev")]
    pub build_version: String,

    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run only the inference proxy: an HTTP server on a Unix socket that forwards the
    /// Ollama inference endpoints (and nothing else) to the node's model server.
    InferenceProxy(ProxyArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Unix socket to listen on (created with mode 0600).
    #[arg(long, env = "INFERENCE_PROXY_SOCKET")]
    pub socket: Option<PathBuf>,

    /// Ollama-compatible upstream (host.containers.internal is read as localhost).
    #[arg(
        long,
        env = "OLLAMA_UPSTREAM_URL",
        default_value = "http://127.0.0.1:11434"
    )]
    pub upstream: String,

    /// Instead of serving: GET this URL once (http:// or http+unix://<encoded socket
    /// path>/<path>) and exit 0 on 200, 1 otherwise.
    #[arg(long)]
    pub healthcheck_url: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Pull {
    IfMissing,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// "90s", "2m", "1h", "500ms" or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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

pub fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn listen_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .with_context(|| format!("LISTEN_ADDR {s:?}: expected host:port or :port"))
}

pub fn run_as(s: &str) -> anyhow::Result<RunAs> {
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

impl Args {
    /// State directory: --state-dir, then WORKER_API_STATE_DIR, then CYNODE_STATE_DIR,
    /// then /var/lib/cynode/state.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| env_nonempty("WORKER_API_STATE_DIR").map(PathBuf::from))
            .or_else(|| env_nonempty("CYNODE_STATE_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/lib/cynode/state"))
    }

    /// Host directory of the per-job sandbox directories.
    pub fn mount_root(&self, state_dir: &Path) -> PathBuf {
        self.mount_root
            .clone()
            .unwrap_or_else(|| state_dir.join("sandbox_mounts"))
    }

    /// Container engine socket: --container-host (CONTAINER_HOST), then DOCKER_HOST, then
    /// Podman's system socket when present, else Docker's.
    pub fn docker_host(&self) -> String {
        self.container_host
            .clone()
            .or_else(|| env_nonempty("DOCKER_HOST"))
            .unwrap_or_else(|| {
                if Path::new("/run/podman/podman.sock").exists() {
                    "unix:///run/podman/podman.sock".into()
                } else {
                    "unix:///var/run/docker.sock".into()
                }
            })
    }

    /// Standalone when asked, or when only the Worker API token is given (the reference
    /// environment contract starts the Worker API alone that way).
    pub fn standalone(&self) -> bool {
        self.standalone
            || (self.registration_psk.as_deref().is_none_or(str::is_empty)
                && self
                    .worker_api_token
                    .as_deref()
                    .is_some_and(|t| !t.is_empty()))
    }

    /// The node slug; `standalone` when standalone and none is given.
    pub fn node_slug(&self, standalone: bool) -> anyhow::Result<String> {
        match (&self.node_slug, standalone) {
            (Some(s), _) if !s.is_empty() => Ok(s.clone()),
            (_, true) => Ok("standalone".into()),
            _ => bail!("NODE_SLUG (--node-slug) is required"),
        }
    }

    /// The node's model server: OLLAMA_UPSTREAM_URL, else --ollama-base-url.
    pub fn ollama_url(&self) -> String {
        env_nonempty("OLLAMA_UPSTREAM_URL").unwrap_or_else(|| self.ollama_base_url.clone())
    }

    /// The pull policy of the sandbox driver.
    pub fn pull_policy(&self) -> PullPolicy {
        match self.pull_policy {
            Pull::IfMissing => PullPolicy::IfMissing,
            Pull::Never => PullPolicy::Never,
        }
    }

    /// The URL the orchestrator reaches the Worker API at, listening on `port`:
    /// --public-url (WORKER_PUBLIC_URL), then NODE_ADVERTISED_WORKER_API_URL, then
    /// `http://<hostname>:<port>`.
    pub fn public_url(&self, port: u16) -> String {
        self.public_url
            .clone()
            .or_else(|| env_nonempty("NODE_ADVERTISED_WORKER_API_URL"))
            .unwrap_or_else(|| {
                format!(
                    "http://{}:{port}",
                    cynode_sandbox::node::capability::hostname()
                )
            })
    }

    /// The sandbox driver's settings for node `node_slug`, its job directories under
    /// `mount_root` and, unless --sandbox-only, inference from `ollama`.
    pub fn driver_config(
        &self,
        node_slug: &str,
        mount_root: PathBuf,
        ollama: &str,
    ) -> anyhow::Result<DriverConfig> {
        Ok(DriverConfig {
            owner: owner(node_slug),
            mount_root,
            run_as: run_as(&self.run_as)?,
            default_timeout_secs: self.default_timeout_secs.max(1),
            max_timeout_secs: self.max_timeout_secs.max(1),
            max_output_bytes: self.max_output_bytes.max(1),
            images: ImagePolicy {
                default_image: self.sandbox_image.clone(),
                pull: self.pull_policy(),
                ..Default::default()
            },
            inference: (!self.sandbox_only).then(|| InferenceConfig {
                upstream_url: ollama.to_string(),
                ..Default::default()
            }),
            userns_keep_id: self.userns_keep_id,
            ..Default::default()
        })
    }

    /// The node manager's settings: register with `psk` as `node_slug`, the Worker API
    /// listening on `port`, the container engine `docker`, inference from `ollama`
    /// (unless --sandbox-only), state under `state_dir`.
    pub fn node_manager_config(
        &self,
        psk: String,
        node_slug: &str,
        port: u16,
        docker: DockerConfig,
        ollama: String,
        state_dir: PathBuf,
    ) -> NodeManagerConfig {
        let mut config = NodeManagerConfig::new(
            &self.orchestrator_url,
            psk,
            node_slug,
            self.public_url(port),
        );
        config.node_name = self.node_name.clone();
        config.labels = self
            .labels
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect();
        config.sandbox_only = self.sandbox_only;
        config.docker = docker;
        config.runtime_check_image = (!self.skip_container_check).then(|| {
            self.runtime_check_image
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| self.sandbox_image.clone())
        });
        config.inference_base_url = (!self.sandbox_only).then_some(ollama);
        config.state_dir = state_dir;
        config.report_interval = self.report_interval.max(Duration::from_millis(100));
        config.http_timeout = self.http_timeout.max(Duration::from_millis(100));
        config.readiness_timeout =
            (!self.readiness_timeout.is_zero()).then_some(self.readiness_timeout);
        config.drain_grace = self.drain_grace;
        config
    }
}

/// The sandbox driver's owner label of node `slug`: `node-<slug>` with every character
/// outside `[A-Za-z0-9-_.]` replaced by `_`.
pub fn owner(slug: &str) -> String {
    format!("node-{slug}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
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

    #[test]
    fn flags_become_the_driver_and_node_manager_settings() {
        let a = Args::try_parse_from([
            "cynode-worker",
            "--sandbox-only",
            "--report-interval",
            "1ms",
            "--readiness-timeout",
            "0",
            "--labels",
            "gpu,,eu",
            "--run-as",
            "1000:1001",
        ])
        .unwrap();
        let d = a
            .driver_config("n 1", PathBuf::from("/m"), "http://o:1")
            .unwrap();
        assert_eq!((d.owner.as_str(), d.run_as.gid), ("node-n_1", 1001));
        assert!(d.inference.is_none(), "--sandbox-only: no inference socket");
        let m = a.node_manager_config(
            "psk".into(),
            "n1",
            12090,
            DockerConfig::new("unix:///x.sock"),
            "http://o:1".into(),
            PathBuf::from("/s"),
        );
        assert_eq!(m.labels, ["gpu", "eu"]);
        assert_eq!(m.report_interval, Duration::from_millis(100));
        assert!(m.readiness_timeout.is_none() && m.inference_base_url.is_none());
        assert!(m.sandbox_only);

        let a = Args::try_parse_from(["cynode-worker", "--run-as", "0:1"]).unwrap();
        assert!(a.driver_config("n", PathBuf::from("/m"), "x").is_err());
    }

    #[test]
    fn owner_labels_keep_only_safe_characters() {
        assert_eq!(owner("node-01"), "node-node-01");
        assert_eq!(owner("a b/c:d"), "node-a_b_c_d");
    }

    #[test]
    fn standalone_follows_the_token_when_no_psk_is_given() {
        let parse = |argv: &[&str]| Args::try_parse_from(argv).unwrap();
        let a = parse(&["cynode-worker", "--worker-api-token", "t"]);
        assert!(a.standalone() && a.node_slug(true).unwrap() == "standalone");
        let a = parse(&["cynode-worker", "--worker-api-token", "t", "--psk", "p"]);
        assert!(!a.standalone());
        let a = parse(&["cynode-worker", "--standalone", "--node-slug", "n1"]);
        assert!(a.standalone() && a.node_slug(true).unwrap() == "n1");
        assert!(parse(&["cynode-worker"]).node_slug(false).is_err());
    }
}
