//! Command line and environment: every option has a flag and, where the contract names
//! one, the environment variable of `node-protocol.md` §1.3, `user-api.md` §12 and
//! `egress-and-routing.md` §1.8.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "CyNodeAI orchestrator: user API gateway, node control plane, \
dispatcher and API egress service in one process.";

const LONG_ABOUT: &str = "\
CyNodeAI orchestrator: user API gateway, node control plane, dispatcher and API egress
service in one process, on PostgreSQL (production) or one SQLite file (single machine).

Two ways to run it:

  cynode-orchestrator dev      one-process dev stack: SQLite under --data-dir, the
                               orchestrator and ONE in-process worker on the local Podman
                               socket; generates the admin password and signing key on
                               first run and runs a demo task. Start here.
  cynode-orchestrator serve    the production orchestrator (the default command); workers
                               run as separate `cynode-worker` processes and register
                               with the control plane.

Every flag can also be set with the environment variable shown next to it.";

const AFTER_HELP: &str = "\
Examples:
  # First run on one machine (or simply: scripts/up.sh)
  cynode-orchestrator dev

  # Production: PostgreSQL + pgvector, secrets from the environment
  export DATABASE_URL=postgres://cynode:secret@db:5432/cynodeai
  export JWT_SECRET=$(head -c 32 /dev/urandom | base64)
  export BOOTSTRAP_ADMIN_PASSWORD=...  NODE_REGISTRATION_PSK=...  API_EGRESS_BEARER_TOKEN=...
  export CYNODE_CREDENTIAL_KEY=$(head -c 32 /dev/urandom | base64)
  export ORCHESTRATOR_PUBLIC_URL=http://orchestrator.example:12082
  cynode-orchestrator serve

  # Apply the database migrations and exit (e.g. before a rolling upgrade)
  cynode-orchestrator --migrate-only

Ports: 12080 user gateway, 12082 control plane, 12084 API egress.";

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "cynode-orchestrator",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// What to run (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options shared by every command.
    #[command(flatten)]
    pub common: Common,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the orchestrator (default). Workers connect to the control plane.
    Serve,
    /// Run the one-process dev stack: orchestrator + one in-process worker on local
    /// Podman, SQLite under --data-dir, generated secrets, a demo task.
    Dev(DevArgs),
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Options shared by `serve` and `dev`.
#[derive(Debug, Args)]
pub struct Common {
    /// Apply the database migrations and exit 0.
    #[arg(long, global = true)]
    pub migrate_only: bool,

    /// Database: `postgres://user:pass@host:5432/db` for PostgreSQL (needs the
    /// pgvector extension), `sqlite:///abs/path.db` or a file path for SQLite. Unset:
    /// SQLite at <data-dir>/cynode.db.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for the SQLite database and, in dev mode, the generated secrets.
    #[arg(
        long,
        env = "CYNODE_DATA_DIR",
        default_value = "./cynode-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Bootstrap YAML imported at start-up (system preferences, settings, access
    /// rules, admin handle); see deploy/bootstrap.example.yaml.
    #[arg(long, env = "BOOTSTRAP_YAML_PATH", global = true)]
    pub bootstrap_yaml: Option<PathBuf>,

    /// Password of the `admin` account, used only when the account does not exist
    /// yet (an existing password is never changed). Required by `serve` on first start;
    /// `dev` generates one when unset.
    #[arg(
        long,
        env = "BOOTSTRAP_ADMIN_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub admin_password: Option<String>,

    /// HS256 key signing user and node tokens (at least 32 bytes). Required by
    /// `serve`, which refuses the reference default; `dev` generates and keeps one.
    #[arg(long, env = "JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Access-token lifetime (Go duration: 15m, 1h30m).
    #[arg(
        long,
        env = "JWT_ACCESS_DURATION",
        default_value = "15m",
        global = true
    )]
    pub jwt_access_duration: String,

    /// Refresh-token (session) lifetime.
    #[arg(
        long,
        env = "JWT_REFRESH_DURATION",
        default_value = "168h",
        global = true
    )]
    pub jwt_refresh_duration: String,

    /// User gateway listen address (`:12080` = every interface; dev: 127.0.0.1:12080).
    #[arg(long, env = "USER_GATEWAY_LISTEN_ADDR", global = true)]
    pub gateway_listen: Option<String>,

    /// API egress service listen address (`:12084`; dev: 127.0.0.1:12084).
    #[arg(long, env = "API_EGRESS_LISTEN_ADDR", global = true)]
    pub egress_listen: Option<String>,

    /// Do not serve the API egress service.
    #[arg(long, env = "API_EGRESS_DISABLED", global = true)]
    pub egress_disabled: bool,

    /// Bearer token callers of the API egress service present; empty: unauthenticated
    /// (dev only; `serve` requires it unless the service is disabled).
    #[arg(
        long,
        env = "API_EGRESS_BEARER_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub egress_bearer_token: Option<String>,

    /// Master key for stored provider credentials (32 random bytes, base64, e.g.
    /// `head -c 32 /dev/urandom | base64`). Set, the API egress service runs in policy
    /// mode (access rules, encrypted credentials, audit); `dev` generates one.
    #[arg(
        long,
        env = "CYNODE_CREDENTIAL_KEY",
        global = true,
        hide_env_values = true
    )]
    pub credential_key: Option<String>,

    /// Signing key of job-scoped egress tokens (32+ random bytes, base64). Set (with
    /// JOB_EXTERNAL_MODELS), the dispatcher issues each inference job a token the API
    /// egress service accepts for that job only, while it runs, and nodes serve the
    /// job's external models through the egress service with it; `dev` generates one.
    #[arg(
        long,
        env = "API_EGRESS_JOB_TOKEN_KEY",
        global = true,
        hide_env_values = true
    )]
    pub egress_job_token_key: Option<String>,

    /// URL worker nodes reach the API egress service at (default: its listen address,
    /// `localhost` for an unspecified one).
    #[arg(long, env = "API_EGRESS_PUBLIC_URL", global = true)]
    pub egress_public_url: Option<String>,

    /// External models inference jobs may use through the API egress service:
    /// `provider=model|model,provider=model` (e.g. `openai=gpt-4o-mini|gpt-4o`).
    #[arg(long, env = "JOB_EXTERNAL_MODELS", default_value = "", global = true)]
    pub job_external_models: String,

    /// Providers the API egress service may call in stub mode (comma-separated).
    #[arg(
        long,
        env = "API_EGRESS_ALLOWED",
        default_value = "openai,github",
        global = true
    )]
    pub egress_allowed: String,

    /// Seconds in-flight requests get to finish on shutdown.
    #[arg(long, env = "SHUTDOWN_GRACE_SEC", default_value_t = 30, global = true)]
    pub shutdown_grace_sec: u64,

    /// Time a gateway request may take until its response starts (Go duration).
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "300s", global = true)]
    pub write_timeout: String,

    /// Largest accepted gateway request body, in MiB.
    #[arg(long, env = "MAX_REQUEST_BODY_MB", default_value_t = 10, global = true)]
    pub max_request_body_mb: usize,

    /// Login attempts per client address per minute.
    #[arg(
        long,
        env = "RATE_LIMIT_PER_MINUTE",
        default_value_t = 60,
        global = true
    )]
    pub rate_limit_per_minute: u32,

    /// Model for direct inference and sandbox jobs, listed by /v1/models (default
    /// qwen3.5:0.8b); when set, also pinned as every node's selected model.
    #[arg(long, env = "INFERENCE_MODEL", global = true)]
    pub inference_model: Option<String>,

    /// Ollama-compatible endpoint the orchestrator itself uses for chat and prompt
    /// tasks (e.g. http://127.0.0.1:11434); `dev` also gives it to its worker as the
    /// node-local inference service. Unset: chat explains how to configure one.
    #[arg(long, env = "OLLAMA_BASE_URL", global = true)]
    pub ollama_base_url: Option<String>,

    /// OpenAI API key: chat may use OpenAI when no local model can answer.
    #[arg(long, env = "OPENAI_API_KEY", global = true, hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// OpenAI-compatible base URL for that key (default https://api.openai.com/v1).
    #[arg(long, env = "OPENAI_BASE_URL", global = true)]
    pub openai_base_url: Option<String>,

    /// Model used on OpenAI when a request names one it does not serve.
    #[arg(long, env = "OPENAI_MODEL", global = true)]
    pub openai_model: Option<String>,

    /// Anthropic API key: chat may use Anthropic when no local model can answer.
    #[arg(long, env = "ANTHROPIC_API_KEY", global = true, hide_env_values = true)]
    pub anthropic_api_key: Option<String>,

    /// Model used on Anthropic when a request names one it does not serve.
    #[arg(long, env = "ANTHROPIC_MODEL", global = true)]
    pub anthropic_model: Option<String>,

    /// Control plane listen address (`:12082`; dev: 127.0.0.1:12082).
    #[arg(long, env = "CONTROL_PLANE_LISTEN_ADDR", global = true)]
    pub control_plane_listen: Option<String>,

    /// Base URL of node-facing links handed to workers (default:
    /// http://localhost:<control plane port>).
    #[arg(long, env = "ORCHESTRATOR_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Pre-shared key workers register with. Required by `serve` (the reference
    /// default is refused); `dev` generates one for its worker.
    #[arg(
        long,
        env = "NODE_REGISTRATION_PSK",
        global = true,
        hide_env_values = true
    )]
    pub node_registration_psk: Option<String>,

    /// Node token lifetime (Go duration).
    #[arg(long, env = "JWT_NODE_DURATION", default_value = "24h", global = true)]
    pub jwt_node_duration: String,

    /// Worker API bearer token given to every node; unset: each node gets its own
    /// random token.
    #[arg(
        long,
        env = "WORKER_API_BEARER_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub worker_api_bearer_token: Option<String>,

    /// Dispatch URL used for every node instead of the one it reports.
    #[arg(long, env = "WORKER_API_TARGET_URL", global = true)]
    pub worker_api_target_url: Option<String>,

    /// A node silent for this long becomes inactive and gets no jobs (Go duration).
    #[arg(long, env = "NODE_STALE_AFTER", default_value = "180s", global = true)]
    pub node_stale_after: String,

    /// Run the dispatcher (jobs to worker nodes) in this process.
    #[arg(long, env = "DISPATCHER_ENABLED", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub dispatcher_enabled: bool,

    /// Job images rewritten before dispatch, e.g. to a local mirror or a preloaded
    /// image on air-gapped nodes: comma-separated `from=to` pairs
    /// (`alpine:latest=registry.internal/alpine:3.20`).
    #[arg(
        long = "image-alias",
        env = "SANDBOX_IMAGE_ALIASES",
        value_delimiter = ',',
        global = true
    )]
    pub image_aliases: Vec<String>,

    /// How often the dispatcher looks at the queue without a wake-up (Go duration).
    #[arg(
        long,
        env = "DISPATCH_POLL_INTERVAL",
        default_value = "1s",
        global = true
    )]
    pub dispatch_poll_interval: String,

    /// Bearer token of the workflow lease routes (`/v1/workflow/*`); unset: open.
    #[arg(
        long,
        env = "WORKFLOW_RUNNER_BEARER_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub workflow_runner_token: Option<String>,

    /// Whether /readyz also waits for a project manager agent. No such agent ships in
    /// this build, so it defaults to false.
    #[arg(long, env = "READINESS_REQUIRES_PMA", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub readiness_requires_pma: bool,

    /// Log format.
    #[arg(
        long,
        env = "CYNODE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing env-filter syntax, e.g. `info,cynode_server=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log: String,
}

/// Options of `dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Do not run the demo task after start-up.
    #[arg(long, env = "CYNODE_DEV_NO_DEMO")]
    pub no_demo: bool,

    /// Container API socket of the in-process worker (Podman's Docker-compatible API).
    #[arg(
        long,
        env = "CONTAINER_HOST",
        default_value = "unix:///run/podman/podman.sock"
    )]
    pub container_host: String,

    /// Image the in-process worker runs sandboxes in (built locally by scripts/up.sh).
    #[arg(
        long,
        env = "CYNODE_SANDBOX_IMAGE",
        default_value = "localhost/cynode-sandbox:latest"
    )]
    pub sandbox_image: String,

    /// Worker API listen address of the in-process worker.
    #[arg(long, env = "WORKER_LISTEN_ADDR", default_value = "127.0.0.1:12090")]
    pub worker_listen: String,

    /// Slug the in-process worker registers with.
    #[arg(long, env = "NODE_SLUG", default_value = "local")]
    pub node_slug: String,

    /// Jobs the in-process worker runs at once.
    #[arg(long, env = "SANDBOX_MAX_CONCURRENCY", default_value_t = 4)]
    pub max_concurrency: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every variable deploy/compose.yaml sets for the orchestrator is one it reads.
    #[test]
    fn the_compose_file_sets_only_known_variables() {
        let compose: serde_json::Value =
            serde_yaml_ng::from_str(include_str!("../../../deploy/compose.yaml"))
                .expect("deploy/compose.yaml parses");
        let cmd = Cli::command();
        let mut known: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        for sub in cmd.get_subcommands() {
            known.extend(
                sub.get_arguments()
                    .filter_map(|a| a.get_env())
                    .map(|e| e.to_string_lossy().into_owned()),
            );
        }
        let env = compose["services"]["orchestrator"]["environment"]
            .as_object()
            .expect("orchestrator environment");
        assert!(env.len() > 5);
        for key in env.keys() {
            assert!(
                known.contains(key),
                "compose sets {key}, which the orchestrator does not read"
            );
        }
    }

    /// The sample bootstrap file parses and imports without a rejected entry.
    #[tokio::test]
    async fn the_sample_bootstrap_file_imports_cleanly() {
        use cynode_server::bootstrap::{BootstrapFile, BootstrapTargets, apply};
        let file = BootstrapFile::from_yaml(include_str!("../../../deploy/bootstrap.example.yaml"))
            .expect("deploy/bootstrap.example.yaml parses");
        let store = cynode_core::store::MemoryStore::new();
        let report = apply(&file, &BootstrapTargets::new(&store))
            .await
            .expect("apply");
        assert_eq!(report.preferences.inserted.len(), file.preferences.len());
        assert!(report.preferences.rejected.is_empty());
        let admin = file.admin_user.expect("admin_user");
        assert_eq!(admin.password_env, "BOOTSTRAP_ADMIN_PASSWORD");
    }
}
