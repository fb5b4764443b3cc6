//! The user API gateway: accounts, authentication, tasks and the resource routes
//! (skills, preferences, settings, nodes, credentials, audit, projects), as one
//! `axum::Router`. The orchestrator calls [`ensure_default_skill`] once at start.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cynode_core::auth::{JwtKey, JwtKeys};
//! use cynode_server::gateway::{router, GatewayState};
//!
//! let store = cynode_core::store::open(&cynode_core::store::StoreConfig::Memory).await?;
//! cynode_core::auth::bootstrap_admin(store.as_ref(), "admin", "admin123").await?;
//! let keys = JwtKeys::new(JwtKey::new("k1", b"change-me".to_vec()));
//! let app = router(GatewayState::new(store, keys));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:12080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! Layers, outermost first: request id and tracing span (`X-Request-Id` kept when
//! sane, else generated; echoed on every response), panic → `500` Problem Details,
//! body-size limit (`413` Problem Details), timeout (`504` Problem Details), CORS (only
//! when origins are configured). `/v1` routes other than login and refresh sit behind
//! the access-token layer. Serve with `into_make_service_with_connect_info` so login
//! limits and audit records see client addresses.
//!
//! Deliberate differences from the reference gateway: an over-size body is `413` (not
//! `400`); the task `status` filter is applied in the query (pages are full); an
//! unknown `status` filter is `400` `Invalid status`; a `project_id` naming no project
//! is `400` `Invalid project_id`; logout ends only the caller's own session; a reused
//! refresh token revokes all of the user's sessions; login is also limited per
//! (handle, address) failures; `expires_in` is the configured access lifetime.
//!
//! The chat surface (`/v1/models`, `/v1/chat/completions`, `/v1/chat/threads…`) goes
//! through the model router given as a [`ChatInference`]; `cynodeai.pm` is served by
//! the gateway itself with the configured PM model and [`PM_SYSTEM_PROMPT`] (no PM
//! agent process exists yet). Its own deliberate differences (newest history as
//! context, request turns as context when several are sent, streaming, thread read
//! routes, answers redacted too) are listed at the top of `gateway/chat.rs`.

mod audit;
mod auth;
mod chat;
mod config;
mod creds;
mod error;
mod health;
pub(crate) mod http;
mod listing;
mod metrics;
mod models;
mod nodes;
mod openai_error;
mod prefs;
mod projects;
mod ratelimit;
mod settings;
mod skills;
mod state;
mod tasks;
mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{AuthUser, LoginRequest, RefreshRequest};
pub use chat::threads::{
    AppendMessageRequest, CreateThreadRequest, CreateThreadResponse, MessageListResponse,
    MessageResponse, ThreadListResponse, ThreadResponse,
};
pub use chat::{
    AssistantMessage, ChatChoice, ChatCompletionsRequest, ChatCompletionsResponse, ChatConfig,
    ChatInference, ChatMessageIn, MSG_NO_INFERENCE, PM_MODEL_ID, PM_SYSTEM_PROMPT, REDACTED,
    Redactor, StreamRedactor,
};
pub use config::{GatewayConfig, LoginRateLimit};
pub use cynode_core::proto::v1::gateway::TokenResponse;
pub use error::{ApiError, ProblemDetails};
pub use http::{RequestId, X_REQUEST_ID};
pub use models::{ModelList, ModelObject};
pub use openai_error::{OpenAiError, OpenAiErrorBody, OpenAiErrorDetail};
pub use state::{
    Clock, GatewayState, GatewayStateBuilder, ManualClock, QueueOnlyDispatcher, ReadinessCheck,
    SystemClock, TaskDispatcher,
};
pub use tasks::{CreateTaskRequest, TaskListResponse, TaskResponse};

pub use audit::{AuditEventResponse, AuditListResponse};
pub use creds::{CredentialListResponse, CredentialResponse};
pub use nodes::{NodeListResponse, NodeResponse};
pub use prefs::{
    EffectivePreferencesResponse, PreferenceDeleteResponse, PreferenceListResponse,
    PreferenceResponse, PreferenceSetResponse, PreferenceSource, PreferenceWriteRequest,
};
pub use projects::{ProjectListResponse, ProjectResponse, SetProjectRequest, SetProjectResponse};
pub use settings::{
    SettingDeleteResponse, SettingListResponse, SettingResponse, SettingSetResponse,
    SettingWriteRequest,
};
pub use skills::{DEFAULT_SKILL_CONTENT, SkillRequest, ensure_default_skill, scan_skill_content};

/// Path the OpenAPI document is served at.
pub const OPENAPI_PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "CyNodeAI user API", description = "User API gateway: probes, authentication, users, tasks, OpenAI-compatible chat, skills, preferences, settings, nodes, credentials, audit and projects."),
    modifiers(&BearerAuth),
    components(schemas(ProblemDetails, OpenAiErrorBody)),
    tags(
        (name = "probes", description = "Health and readiness"),
        (name = "auth", description = "Login, refresh, logout"),
        (name = "users", description = "Accounts"),
        (name = "tasks", description = "Tasks"),
        (name = "skills", description = "Skills"),
        (name = "preferences", description = "Preferences"),
        (name = "settings", description = "System settings"),
        (name = "nodes", description = "Worker nodes"),
        (name = "credentials", description = "API credentials (metadata only)"),
        (name = "audit", description = "Audit events"),
        (name = "projects", description = "Projects"),
        (name = "chat", description = "OpenAI-compatible chat, threads and messages"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn routes(state: &GatewayState) -> OpenApiRouter<GatewayState> {
    let public = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh));
    let protected = OpenApiRouter::new()
        .routes(routes!(auth::logout))
        .routes(routes!(users::me))
        .routes(routes!(users::revoke_sessions))
        .routes(routes!(tasks::create_task, tasks::list_tasks))
        .routes(routes!(tasks::get_task))
        .routes(routes!(tasks::task_result))
        .routes(routes!(tasks::cancel_task))
        .routes(routes!(tasks::task_logs))
        .routes(routes!(skills::list_skills))
        .routes(routes!(skills::load_skill))
        .routes(routes!(
            skills::get_skill,
            skills::update_skill,
            skills::delete_skill
        ))
        .routes(routes!(
            prefs::list_prefs,
            prefs::set_pref,
            prefs::delete_pref
        ))
        .routes(routes!(prefs::effective_prefs))
        .routes(routes!(
            settings::get_settings,
            settings::set_setting,
            settings::delete_setting
        ))
        .routes(routes!(nodes::list_nodes))
        .routes(routes!(nodes::get_node))
        .routes(routes!(creds::list_creds))
        .routes(routes!(creds::get_cred))
        .routes(routes!(audit::list_audit))
        .routes(routes!(projects::list_projects))
        .routes(routes!(projects::set_project))
        .routes(routes!(projects::get_project))
        .routes(routes!(models::list_models))
        .routes(routes!(chat::chat_completions))
        .routes(routes!(
            chat::threads::create_thread,
            chat::threads::list_threads
        ))
        .routes(routes!(chat::threads::get_thread))
        .routes(routes!(
            chat::threads::list_messages,
            chat::threads::append_message
        ))
        .route_layer(from_fn_with_state(
            state.clone(),
            auth::require_access_token,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(public)
        .merge(protected)
}

/// The OpenAPI document of every gateway route (also served at [`OPENAPI_PATH`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let keys =
        cynode_core::auth::JwtKeys::new(cynode_core::auth::JwtKey::new("openapi", Vec::new()));
    let state = GatewayState::new(
        std::sync::Arc::new(cynode_core::store::MemoryStore::new()),
        keys,
    );
    routes(&state).split_for_parts().1
}

/// The gateway router with all its layers, ready to serve or to test with
/// `tower::ServiceExt::oneshot`.
pub fn router(state: GatewayState) -> Router {
    let (api, doc) = routes(&state).split_for_parts();
    let doc_json = doc.to_json().unwrap_or_else(|_| "{}".into());
    let cors = &state.inner.config.cors_allowed_origins;
    let cors = (!cors.is_empty()).then(|| {
        let origins = cors
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect::<Vec<_>>();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods(tower_http::cors::Any)
            .allow_headers(tower_http::cors::Any)
    });
    let max_body = state.inner.config.max_body_bytes;
    let metrics = std::sync::Arc::new(metrics::Metrics::default());
    api.route_layer(from_fn_with_state(metrics.clone(), metrics::record))
        .route(
            metrics::METRICS_PATH,
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move { metrics::serve(&metrics) }
            }),
        )
        .route(
            OPENAPI_PATH,
            axum::routing::get(move || {
                let body = doc_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(from_fn(http::observe))
                .layer(CatchPanicLayer::custom(http::panic_response))
                .layer(from_fn_with_state(state.clone(), http::limit_body))
                .layer(DefaultBodyLimit::max(max_body))
                .layer(from_fn_with_state(state.clone(), http::timeout))
                .option_layer(cors),
        )
        .with_state(state)
}
