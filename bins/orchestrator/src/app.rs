//! Assembly: storage, migrations, bootstrap, admin, and the HTTP services, for both
//! `serve` and `dev`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use cynode_core::auth::{JwtKey, JwtKeys};
use cynode_core::store::{Store, StoreConfig};
use cynode_sched::QueueStore;
use cynode_server::bootstrap::{self, BootstrapFile, BootstrapTargets};
use cynode_server::control_plane::{
    self, ControlPlaneConfig, ControlPlaneState, ExternalInference,
};
use cynode_server::dispatch::{DispatchConfig, Dispatcher, DispatcherHandle};
use cynode_server::gateway::{
    self, GatewayConfig, GatewayState, LoginRateLimit, ReadinessCheck, TaskDispatcher,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::Common;
use crate::secrets;
use crate::settings::{Database, parse_duration, resolve_listen};

/// Which command is running: decides defaults and how strict secrets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Production.
    Serve,
    /// One-process dev stack.
    Dev,
}

/// Default listen addresses per mode.
pub fn default_listen(mode: Mode, port: u16) -> String {
    match mode {
        Mode::Serve => format!(":{port}"),
        Mode::Dev => format!("127.0.0.1:{port}"),
    }
}

/// How the admin password was obtained (for the dev banner).
#[derive(Debug)]
pub enum AdminPassword {
    /// The account already existed; its password was not touched.
    Existing {
        /// Where dev mode keeps the password it generated earlier, if that file exists.
        file: Option<std::path::PathBuf>,
    },
    /// Created now with a password from the environment.
    FromEnv,
    /// Created now with a generated password kept in this file.
    Generated(std::path::PathBuf),
}

/// The started orchestrator.
pub struct Running {
    /// Admin handle.
    pub admin_handle: String,
    /// What happened to the admin password.
    pub admin_password: AdminPassword,
    /// The admin password when this process knows it (env or generated file).
    pub admin_password_value: Option<String>,
    /// Bound gateway address.
    pub gateway_addr: SocketAddr,
    /// Bound egress address, when served.
    pub egress_addr: Option<SocketAddr>,
    /// Bound control-plane address.
    pub control_plane_addr: SocketAddr,
    /// Base URL workers reach the control plane at.
    pub control_plane_url: String,
    /// The registration key workers present.
    pub registration_psk: String,
    /// The dispatcher, when this process runs one and it has not started yet.
    pub pending_dispatcher: Option<Dispatcher>,
    /// The running dispatcher.
    pub dispatcher: Option<DispatcherHandle>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// The server tasks.
    pub tasks: JoinSet<anyhow::Result<()>>,
    /// Grace period on shutdown.
    pub grace: Duration,
}

/// Opens storage (with retries for PostgreSQL) and applies the migrations.
pub async fn open_store(db: &Database) -> anyhow::Result<Arc<dyn Store>> {
    let config = match db {
        Database::Postgres(url) => StoreConfig::Postgres {
            url: url.clone(),
            max_connections: 10,
        },
        Database::Sqlite(path) => StoreConfig::Sqlite { path: path.clone() },
    };
    let mut delay = Duration::from_millis(500);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match cynode_core::store::open(&config).await {
            Ok(s) => return Ok(s),
            Err(e)
                if e.is_retryable()
                    && matches!(db, Database::Postgres(_))
                    && tokio::time::Instant::now() + delay < deadline =>
            {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot open the database ({})", db.describe()));
            }
        }
    }
}

/// Opens the scheduler's queue on the same database as the store (its tables are
/// prefixed `sched_` and versioned separately).
pub async fn open_queue(db: &Database) -> anyhow::Result<Arc<dyn QueueStore>> {
    let queue: Arc<dyn QueueStore> = match db {
        Database::Postgres(url) => Arc::new(
            cynode_sched::PgQueue::connect(&cynode_sched::PgQueueConfig::new(url.clone()))
                .await
                .context("cannot open the job queue on PostgreSQL")?,
        ),
        Database::Sqlite(path) => Arc::new(
            cynode_sched::SqliteQueue::open_path(path)
                .await
                .with_context(|| format!("cannot open the job queue in {}", path.display()))?,
        ),
    };
    Ok(queue)
}

/// Reads and applies the bootstrap file; returns the admin handle and password it
/// names (the password read from the variable named by `password_env`).
pub async fn apply_bootstrap(
    common: &Common,
    store: &Arc<dyn Store>,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let Some(path) = &common.bootstrap_yaml else {
        return Ok((None, None));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the bootstrap file {}", path.display()))?;
    let file = BootstrapFile::from_yaml(&text).with_context(|| format!("in {}", path.display()))?;
    let targets = BootstrapTargets::for_store(store.as_ref());
    let report = bootstrap::apply(&file, &targets.targets())
        .await
        .context("bootstrap import failed")?;
    for (section, r) in [
        ("preferences", &report.preferences),
        ("system_settings", &report.system_settings),
        ("access_control_rules", &report.access_control_rules),
    ] {
        if r.written() + r.unchanged.len() + r.kept.len() + r.rejected.len() == 0 {
            continue;
        }
        tracing::info!(
            section,
            inserted = r.inserted.len(),
            updated = r.updated.len(),
            unchanged = r.unchanged.len(),
            kept_edited = r.kept.len(),
            rejected = r.rejected.len(),
            "bootstrap file applied"
        );
    }
    for n in &report.not_applied {
        tracing::warn!(section = n.section, entries = n.entries, reason = %n.reason, "bootstrap section not applied");
    }
    let (handle, password) = match &file.admin_user {
        Some(a) => (
            Some(a.handle.clone()),
            std::env::var(&a.password_env)
                .ok()
                .filter(|p| !p.is_empty()),
        ),
        None => (None, None),
    };
    Ok((handle, password))
}

/// Makes sure the admin account exists; in dev mode generates its password on first
/// start and keeps it in `<data-dir>/admin-password` (0600).
pub async fn ensure_admin(
    mode: Mode,
    common: &Common,
    store: &Arc<dyn Store>,
    handle: &str,
    yaml_password: Option<String>,
) -> anyhow::Result<(AdminPassword, Option<String>)> {
    let password_file = common.data_dir.join("admin-password");
    match store.get_user_by_handle(handle).await {
        Ok(_) => {
            let known = match mode {
                Mode::Dev => secrets::read_secret(&password_file).ok().flatten(),
                Mode::Serve => None,
            };
            let file = known.as_ref().map(|_| password_file.clone());
            return Ok((
                AdminPassword::Existing { file },
                known.or(yaml_password).or(common.admin_password.clone()),
            ));
        }
        Err(cynode_core::Error::NotFound { .. }) => {}
        Err(e) => return Err(e).context("cannot look up the admin account"),
    }
    let from_env = yaml_password
        .or(common.admin_password.clone())
        .filter(|p| !p.is_empty());
    let (password, how) = match (from_env, mode) {
        (Some(p), _) => (p, AdminPassword::FromEnv),
        (None, Mode::Dev) => {
            let s = secrets::load_or_create(&password_file, || secrets::random_token(20))?;
            (s.value, AdminPassword::Generated(s.path))
        }
        (None, Mode::Serve) => bail!(
            "the admin account '{handle}' does not exist yet: set BOOTSTRAP_ADMIN_PASSWORD \
             (or admin_user.password_env in the bootstrap file) for the first start"
        ),
    };
    cynode_core::auth::bootstrap_admin(store.as_ref(), handle, &password)
        .await
        .context("cannot create the admin account")?;
    tracing::info!(handle, "admin account created");
    Ok((how, Some(password)))
}

/// The JWT signing secret: from the environment (checked), or in dev mode generated
/// once and kept in `<data-dir>/secrets/jwt-secret`.
pub fn jwt_secret(mode: Mode, common: &Common) -> anyhow::Result<String> {
    match (&common.jwt_secret, mode) {
        (Some(s), Mode::Serve) => {
            secrets::check_jwt_secret(s)?;
            Ok(s.clone())
        }
        (Some(s), Mode::Dev) if !s.is_empty() => Ok(s.clone()),
        (None, Mode::Serve) => bail!(
            "JWT_SECRET is not set: give the orchestrator a random signing key, e.g. \
             JWT_SECRET=$(head -c 32 /dev/urandom | base64) (dev mode generates one)"
        ),
        _ => {
            let path = common.data_dir.join("secrets").join("jwt-secret");
            Ok(secrets::load_or_create(&path, || secrets::random_token(48))?.value)
        }
    }
}

/// The gateway configuration from the command line.
pub fn gateway_config(common: &Common, admin_handle: &str) -> anyhow::Result<GatewayConfig> {
    let access = parse_duration(&common.jwt_access_duration).context("JWT_ACCESS_DURATION")?;
    let refresh = parse_duration(&common.jwt_refresh_duration).context("JWT_REFRESH_DURATION")?;
    let write = parse_duration(&common.write_timeout).context("WRITE_TIMEOUT")?;
    if common.max_request_body_mb == 0 {
        bail!("MAX_REQUEST_BODY_MB must be at least 1");
    }
    Ok(GatewayConfig {
        access_token_ttl_secs: access.as_secs().max(1),
        refresh_token_ttl_secs: refresh.as_secs().max(1),
        max_body_bytes: common.max_request_body_mb.saturating_mul(1024 * 1024),
        request_timeout_secs: write.as_secs().max(1),
        login_rate_limit: LoginRateLimit {
            per_ip: common.rate_limit_per_minute,
            ..LoginRateLimit::default()
        },
        inference_model: common
            .inference_model
            .clone()
            .unwrap_or_else(|| GatewayConfig::default().inference_model),
        admin_handle: admin_handle.to_string(),
        ..GatewayConfig::default()
    })
}

/// The reference's default registration key; refused outside dev mode.
pub const REFERENCE_DEFAULT_PSK: &str = "default-psk-change-me";

/// The node registration key: from the environment (checked), or in dev mode
/// generated once and kept in `<data-dir>/secrets/node-psk`.
pub fn registration_psk(mode: Mode, common: &Common) -> anyhow::Result<String> {
    match (
        common
            .node_registration_psk
            .as_deref()
            .filter(|p| !p.is_empty()),
        mode,
    ) {
        (Some(p), Mode::Serve) if p == REFERENCE_DEFAULT_PSK => bail!(
            "NODE_REGISTRATION_PSK is the well-known default '{REFERENCE_DEFAULT_PSK}': anyone could register a node. Set a random one"
        ),
        (Some(p), _) => Ok(p.to_string()),
        (None, Mode::Serve) => bail!(
            "NODE_REGISTRATION_PSK is not set: workers register with this pre-shared key; set a random one (dev mode generates one)"
        ),
        (None, Mode::Dev) => {
            let path = common.data_dir.join("secrets").join("node-psk");
            Ok(secrets::load_or_create(&path, || secrets::random_token(32))?.value)
        }
    }
}

/// The control-plane configuration from the command line.
pub fn control_plane_config(
    common: &Common,
    psk: String,
    jwt: &str,
    public_url: String,
) -> anyhow::Result<ControlPlaneConfig> {
    let node_ttl = parse_duration(&common.jwt_node_duration).context("JWT_NODE_DURATION")?;
    let stale = parse_duration(&common.node_stale_after).context("NODE_STALE_AFTER")?;
    Ok(ControlPlaneConfig {
        registration_psk: psk,
        jwt_secret: jwt.to_string(),
        node_token_ttl_secs: node_ttl.as_secs().max(1),
        public_url,
        worker_api_bearer_token: common
            .worker_api_bearer_token
            .clone()
            .filter(|t| !t.is_empty()),
        worker_api_target_url: common
            .worker_api_target_url
            .clone()
            .filter(|t| !t.is_empty()),
        node_stale_after_secs: stale.as_secs().max(1),
        inference_model: common.inference_model.clone().filter(|m| !m.is_empty()),
        readiness_requires_pma: common.readiness_requires_pma,
        workflow_runner_token: common
            .workflow_runner_token
            .clone()
            .filter(|t| !t.is_empty()),
        ..ControlPlaneConfig::default()
    })
}

/// The chat surface's model router from `OLLAMA_BASE_URL` (local) and the provider
/// keys `OPENAI_API_KEY` / `ANTHROPIC_API_KEY` (external, allowed as fallbacks in that
/// order); `None` when none is configured (chat then says how to configure one).
pub fn chat_inference(
    common: &Common,
    model: &str,
) -> anyhow::Result<Option<gateway::ChatInference>> {
    use cynode_egress::crypto::Secret;
    use cynode_egress::router::{
        AnthropicConfig, OllamaConfig, OpenAiConfig, ProviderConfig, RouteOptions, Router,
        RouterConfig, RoutingPrefs, TargetConfig,
    };
    let target = |name: &str, provider, default_model: Option<String>| TargetConfig {
        name: name.into(),
        provider,
        default_model,
        models: Vec::new(),
        capabilities: Default::default(),
        pricing: None,
    };
    let mut config = RouterConfig::default();
    let mut secrets = Vec::new();
    if let Some(url) = common.ollama_base_url.as_deref().filter(|u| !u.is_empty()) {
        config.local.push(target(
            "ollama",
            ProviderConfig::Ollama(OllamaConfig {
                base_url: Some(url.to_string()),
                api_key: None,
            }),
            Some(model.to_string()),
        ));
    }
    if let Some(key) = common.openai_api_key.as_deref().filter(|k| !k.is_empty()) {
        secrets.push(key.to_string());
        config.external.push(target(
            "openai",
            ProviderConfig::OpenAi(OpenAiConfig {
                base_url: common.openai_base_url.clone().filter(|u| !u.is_empty()),
                api_key: Some(Secret::new(key)),
                organization: None,
            }),
            common.openai_model.clone().filter(|m| !m.is_empty()),
        ));
    }
    if let Some(key) = common
        .anthropic_api_key
        .as_deref()
        .filter(|k| !k.is_empty())
    {
        secrets.push(key.to_string());
        config.external.push(target(
            "anthropic",
            ProviderConfig::Anthropic(AnthropicConfig {
                base_url: None,
                api_key: Some(Secret::new(key)),
                version: None,
                default_max_tokens: None,
            }),
            common.anthropic_model.clone().filter(|m| !m.is_empty()),
        ));
    }
    if config.local.is_empty() && config.external.is_empty() {
        return Ok(None);
    }
    let external: Vec<String> = config.external.iter().map(|t| t.name.clone()).collect();
    let router = Router::from_config(&config).context("model endpoint configuration")?;
    let route = RouteOptions {
        prefs: RoutingPrefs {
            prefer_local: true,
            allowed_external_providers: external.clone(),
            fallback_provider_order: external,
            ..RoutingPrefs::default()
        },
        ..RouteOptions::default()
    };
    let mut inference = gateway::ChatInference::new(Arc::new(router))
        .pm_route(route.clone())
        .direct_route(route);
    for s in secrets {
        inference = inference.secret(s);
    }
    Ok(Some(inference))
}

/// The gateway's `/readyz` asks the control plane, so both probes always agree.
struct ControlPlaneReadiness(ControlPlaneState);

#[async_trait]
impl ReadinessCheck for ControlPlaneReadiness {
    async fn check(&self) -> Option<String> {
        self.0.readiness().await.err().map(str::to_string)
    }
}

/// An inference path that is not a node: a model endpoint or provider key configured
/// on the orchestrator itself, which chat uses.
struct ConfiguredEndpoint;

#[async_trait]
impl ExternalInference for ConfiguredEndpoint {
    async fn available(&self) -> bool {
        true
    }
}

/// The credential master key: from `CYNODE_CREDENTIAL_KEY`, or in dev mode generated
/// once and kept in `<data-dir>/secrets/credential-key`; `None` in `serve` without it.
pub fn credential_key(mode: Mode, common: &Common) -> anyhow::Result<Option<String>> {
    match (
        common.credential_key.clone().filter(|k| !k.is_empty()),
        mode,
    ) {
        (Some(k), _) => Ok(Some(k)),
        (None, Mode::Serve) => Ok(None),
        (None, Mode::Dev) => {
            let path = common.data_dir.join("secrets").join("credential-key");
            let key = secrets::load_or_create(&path, || {
                cynode_egress::crypto::CredentialCipher::generate_key()
                    .expose()
                    .to_string()
            })?;
            Ok(Some(key.value))
        }
    }
}

/// The signing key of job-scoped egress tokens: from `API_EGRESS_JOB_TOKEN_KEY`, or in
/// dev mode generated once (32 random bytes, base64) and kept in
/// `<data-dir>/secrets/job-token-key` (0600); `None` in `serve` without it.
pub fn job_token_key(mode: Mode, common: &Common) -> anyhow::Result<Option<String>> {
    match (
        common
            .egress_job_token_key
            .clone()
            .filter(|k| !k.is_empty()),
        mode,
    ) {
        (Some(k), _) => Ok(Some(k)),
        (None, Mode::Serve) => Ok(None),
        (None, Mode::Dev) => {
            let path = common.data_dir.join("secrets").join("job-token-key");
            let key = secrets::load_or_create(&path, || {
                cynode_egress::api::JobTokenKey::generate_base64()
                    .expose()
                    .to_string()
            })?;
            Ok(Some(key.value))
        }
    }
}

/// The API egress service: policy mode on the store (access-control rules, encrypted
/// credentials, audit rows) when a credential key is configured; otherwise stub mode
/// (the `API_EGRESS_ALLOWED` allow-list, no credentials).
fn egress_state(
    mode: Mode,
    common: &Common,
    store: &Arc<dyn Store>,
    job_token_key: Option<&str>,
) -> anyhow::Result<cynode_egress::api::EgressState> {
    use cynode_egress::api::{EgressConfig, EgressState, PolicyDeps};
    use cynode_egress::crypto::{CredentialCipher, CryptoConfig, KeyConfig, Secret};
    use cynode_egress::router::{AnthropicConfig, OpenAiConfig, ProviderConfig};
    let bearer = common.egress_bearer_token.clone().filter(|t| !t.is_empty());
    if bearer.is_none() && mode == Mode::Serve {
        bail!(
            "API_EGRESS_BEARER_TOKEN is not set: the API egress service would accept anyone. \
             Set a random token (or API_EGRESS_DISABLED=true)"
        );
    }
    let mut config = EgressConfig {
        bearer_token: bearer.map(Secret::new),
        job_token_key: job_token_key.map(Secret::new),
        allowed: common
            .egress_allowed
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        ..EgressConfig::default()
    };
    // Endpoints of the providers it can call; keys come from the credential store.
    config.providers.insert(
        "openai".into(),
        ProviderConfig::OpenAi(OpenAiConfig {
            base_url: common.openai_base_url.clone().filter(|u| !u.is_empty()),
            ..OpenAiConfig::default()
        }),
    );
    config.providers.insert(
        "anthropic".into(),
        ProviderConfig::Anthropic(AnthropicConfig {
            base_url: None,
            api_key: None,
            version: None,
            default_max_tokens: None,
        }),
    );
    match credential_key(mode, common)? {
        Some(key) => {
            let cipher = CredentialCipher::from_config(&CryptoConfig {
                active_kid: "k1".into(),
                keys: vec![KeyConfig {
                    kid: "k1".into(),
                    key: Secret::new(key),
                }],
            })
            .map_err(|e| {
                anyhow::anyhow!("CYNODE_CREDENTIAL_KEY: {e} (expected 32 random bytes, base64)")
            })?;
            let deps = PolicyDeps::from_store(store.clone(), Arc::new(cipher));
            EgressState::policy(&config, deps).context("API egress configuration")
        }
        None => {
            tracing::warn!(
                "CYNODE_CREDENTIAL_KEY is not set: the API egress service runs in stub mode \
                 (API_EGRESS_ALLOWED allow-list, no stored credentials)"
            );
            EgressState::stub(&config).context("API egress configuration")
        }
    }
}

/// Job-scoped inference grants for the dispatcher: the egress job-token key (see
/// [`job_token_key`]), the URL nodes reach the egress service at, and the external
/// models jobs may use. `None` unless the key and models are set and the egress
/// service runs here.
fn job_inference(
    common: &Common,
    job_token_key: Option<&str>,
    egress: Option<&TcpListener>,
) -> anyhow::Result<Option<cynode_server::dispatch::JobInferenceConfig>> {
    use cynode_core::proto::v1::worker::ExternalModelGrant;
    let Some(key) = job_token_key.map(str::to_string) else {
        return Ok(None);
    };
    let mut external = Vec::new();
    for part in common.job_external_models.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let Some((provider, models)) = part.split_once('=') else {
            bail!("JOB_EXTERNAL_MODELS: expected provider=model|model, got {part:?}");
        };
        external.push(ExternalModelGrant {
            provider: provider.trim().to_string(),
            models: models
                .split('|')
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect(),
        });
    }
    if external.is_empty() {
        return Ok(None);
    }
    let url = match (&common.egress_public_url, egress) {
        (Some(u), _) if !u.is_empty() => u.clone(),
        (_, Some(l)) => {
            let a = l.local_addr()?;
            let host = if a.ip().is_unspecified() {
                "localhost".to_string()
            } else {
                a.ip().to_string()
            };
            format!("http://{host}:{}", a.port())
        }
        _ => bail!(
            "JOB_EXTERNAL_MODELS is set but the API egress service is disabled here: \
             set API_EGRESS_PUBLIC_URL to the egress service nodes should use"
        ),
    };
    Ok(Some(cynode_server::dispatch::JobInferenceConfig {
        token_key: cynode_egress::crypto::Secret::new(key),
        api_egress_url: url,
        external,
        ..Default::default()
    }))
}

/// Binds `addr`, naming the service and the variable to change in the error.
pub async fn bind(what: &str, var: &str, addr: &str) -> anyhow::Result<TcpListener> {
    let sa = resolve_listen(addr)
        .await
        .with_context(|| var.to_string())?;
    TcpListener::bind(sa).await.with_context(|| {
        format!("cannot listen on {sa} for the {what} (is another process using it? change {var})")
    })
}

/// Serves `app` on `listener` until `token` is cancelled.
fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    what: &'static str,
    listener: TcpListener,
    app: axum::Router,
    token: CancellationToken,
) {
    tasks.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(token.cancelled_owned())
        .await
        .context(what)
    });
}

/// Dev-mode adjustments of the dispatcher: job images that cannot be pulled here run
/// in the locally built sandbox image.
#[derive(Clone, Debug, Default)]
pub struct DispatchOverrides {
    /// Image references rewritten before dispatch.
    pub image_aliases: std::collections::BTreeMap<String, String>,
}

/// Starts everything `serve` runs except the dispatcher's job loop: returns once every
/// listener is bound; [`Running::start_dispatcher`] starts taking jobs to nodes.
pub async fn start(
    mode: Mode,
    common: &Common,
    overrides: DispatchOverrides,
) -> anyhow::Result<Running> {
    secrets::ensure_dir(&common.data_dir)?;
    let db = Database::from_url(common.database_url.as_deref(), &common.data_dir)?;
    tracing::info!(database = %db.describe(), "opening storage");
    let store = open_store(&db).await?;
    let queue = open_queue(&db).await?;

    let jwt = jwt_secret(mode, common)?;
    let psk = registration_psk(mode, common)?;
    let job_key = job_token_key(mode, common)?;
    let (yaml_handle, yaml_password) = apply_bootstrap(common, &store).await?;
    let admin_handle = yaml_handle.unwrap_or_else(|| "admin".to_string());
    let (admin_password, admin_password_value) =
        ensure_admin(mode, common, &store, &admin_handle, yaml_password).await?;
    let gw_config = gateway_config(common, &admin_handle)?;
    gateway::ensure_default_skill(store.as_ref())
        .await
        .context("cannot store the default system skill")?;
    let chat = chat_inference(common, &gw_config.inference_model)?;

    // Bind every listener first: a port in use fails the start before anything runs.
    let gw_listener = bind(
        "user gateway",
        "USER_GATEWAY_LISTEN_ADDR",
        &common
            .gateway_listen
            .clone()
            .unwrap_or_else(|| default_listen(mode, 12080)),
    )
    .await?;
    let cp_listener = bind(
        "control plane",
        "CONTROL_PLANE_LISTEN_ADDR",
        &common
            .control_plane_listen
            .clone()
            .unwrap_or_else(|| default_listen(mode, 12082)),
    )
    .await?;
    let egress_listener = if common.egress_disabled {
        None
    } else {
        Some(
            bind(
                "API egress service",
                "API_EGRESS_LISTEN_ADDR",
                &common
                    .egress_listen
                    .clone()
                    .unwrap_or_else(|| default_listen(mode, 12084)),
            )
            .await?,
        )
    };
    let gateway_addr = gw_listener.local_addr()?;
    let control_plane_addr = cp_listener.local_addr()?;
    let public_url = common
        .public_url
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let host = if control_plane_addr.ip().is_unspecified() {
                "localhost".to_string()
            } else {
                control_plane_addr.ip().to_string()
            };
            format!("http://{host}:{}", control_plane_addr.port())
        });
    if mode == Mode::Serve && common.public_url.is_none() {
        tracing::warn!(
            url = %public_url,
            "ORCHESTRATOR_PUBLIC_URL is not set: workers on other machines need it to reach the control plane"
        );
    }

    let mut cp_builder = ControlPlaneState::builder(
        store.clone(),
        control_plane_config(common, psk.clone(), &jwt, public_url.clone())?,
    );
    if common
        .ollama_base_url
        .as_deref()
        .is_some_and(|u| !u.is_empty())
    {
        cp_builder = cp_builder.external_inference(Arc::new(ConfiguredEndpoint));
    }
    let cp_state = cp_builder.build();

    let dispatcher = if common.dispatcher_enabled {
        let poll =
            parse_duration(&common.dispatch_poll_interval).context("DISPATCH_POLL_INTERVAL")?;
        let stale = parse_duration(&common.node_stale_after).context("NODE_STALE_AFTER")?;
        let mut image_aliases = overrides.image_aliases;
        for pair in common.image_aliases.iter().filter(|p| !p.trim().is_empty()) {
            let Some((from, to)) = pair
                .split_once('=')
                .map(|(f, t)| (f.trim(), t.trim()))
                .filter(|(f, t)| !f.is_empty() && !t.is_empty())
            else {
                anyhow::bail!("SANDBOX_IMAGE_ALIASES: {pair:?} is not `from=to`");
            };
            image_aliases.insert(from.to_string(), to.to_string());
        }
        let config = DispatchConfig {
            poll_interval: poll.max(Duration::from_millis(10)),
            node_stale_after: Some(stale),
            image_aliases,
            shutdown_grace: Duration::from_secs(common.shutdown_grace_sec),
            job_inference: job_inference(common, job_key.as_deref(), egress_listener.as_ref())?,
            ..DispatchConfig::default()
        };
        let d = Dispatcher::new(store.clone(), queue.clone(), config)
            .context("dispatcher configuration")?;
        Some(d)
    } else {
        tracing::info!("DISPATCHER_ENABLED=false: jobs wait for a dispatcher in another replica");
        None
    };
    let task_dispatcher: Arc<dyn TaskDispatcher> = match &dispatcher {
        Some(d) => Arc::new(d.clone()),
        // Enqueue-only: another replica runs the jobs.
        None => Arc::new(
            Dispatcher::new(store.clone(), queue.clone(), DispatchConfig::default())
                .context("dispatcher configuration")?,
        ),
    };

    let keys = JwtKeys::new(JwtKey::new("k1", jwt.into_bytes()));
    let mut gw_builder = GatewayState::builder(store.clone(), keys)
        .config(gw_config)
        .dispatcher(task_dispatcher)
        .readiness_check(Arc::new(ControlPlaneReadiness(cp_state.clone())));
    if let Some(c) = chat {
        gw_builder = gw_builder.inference(c);
    }
    let gw_state = gw_builder.build();

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    serve(
        &mut tasks,
        "user gateway",
        gw_listener,
        gateway::router(gw_state),
        shutdown.clone(),
    );
    tracing::info!(addr = %gateway_addr, "user gateway listening");
    serve(
        &mut tasks,
        "control plane",
        cp_listener,
        control_plane::router(cp_state.clone()),
        shutdown.clone(),
    );
    tracing::info!(addr = %control_plane_addr, public_url = %public_url, "control plane listening");
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            cp_state.run_reaper(token.cancelled_owned()).await;
            Ok(())
        });
    }
    let egress_addr = match egress_listener {
        Some(listener) => {
            let bound = listener.local_addr()?;
            let state = egress_state(mode, common, &store, job_key.as_deref())?;
            tracing::info!(mode = state.mode_name(), "API egress service mode");
            let app = cynode_egress::api::router(state);
            serve(
                &mut tasks,
                "API egress service",
                listener,
                app,
                shutdown.clone(),
            );
            tracing::info!(addr = %bound, "API egress service listening");
            Some(bound)
        }
        None => None,
    };

    Ok(Running {
        admin_handle,
        admin_password,
        admin_password_value,
        gateway_addr,
        egress_addr,
        control_plane_addr,
        control_plane_url: public_url,
        registration_psk: psk,
        pending_dispatcher: dispatcher,
        dispatcher: None,
        shutdown,
        tasks,
        grace: Duration::from_secs(common.shutdown_grace_sec),
    })
}

/// Resolves when SIGINT (Ctrl-C) or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

impl Running {
    /// Starts the dispatcher's job loop (a no-op when it runs elsewhere or already).
    pub fn start_dispatcher(&mut self) -> anyhow::Result<()> {
        if let Some(d) = self.pending_dispatcher.take() {
            self.dispatcher = Some(d.spawn().context("cannot start the dispatcher")?);
        }
        Ok(())
    }

    /// Waits for a shutdown signal (or a server failing), then stops every service
    /// within the grace period. Errors when a service failed or did not stop in time.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        let mut failure = None;
        tokio::select! {
            () = shutdown_signal() => {}
            Some(done) = self.tasks.join_next() => {
                failure = Some(match done {
                    Ok(Ok(())) => anyhow::anyhow!("a service stopped unexpectedly"),
                    Ok(Err(e)) => e,
                    Err(e) => anyhow::Error::new(e).context("a service panicked"),
                });
            }
        }
        self.stop(failure).await
    }

    /// Stops every service; `failure` is the reason if it was not a signal.
    pub async fn stop(mut self, failure: Option<anyhow::Error>) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(d) = self.dispatcher.take() {
            let stats = d.shutdown().await;
            tracing::info!(?stats, "dispatcher stopped");
        }
        let grace = self.grace;
        let drained = tokio::time::timeout(grace, async {
            let mut errors = Vec::new();
            while let Some(done) = self.tasks.join_next().await {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(e) => errors.push(anyhow::Error::new(e)),
                }
            }
            errors
        })
        .await;
        let errors = match drained {
            Ok(errors) => errors,
            Err(_) => {
                self.tasks.abort_all();
                bail!(
                    "services did not stop within {} s; aborted them",
                    grace.as_secs()
                );
            }
        };
        if let Some(f) = failure {
            return Err(f);
        }
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        tracing::info!("stopped cleanly");
        Ok(())
    }
}
