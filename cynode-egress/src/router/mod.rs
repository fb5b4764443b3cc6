//! The model router: one provider trait ([`ModelProvider`]) with Ollama,
//! OpenAI-compatible (OpenAI, vLLM, LM Studio, llama.cpp), Anthropic and API-egress
//! implementations, a closed configuration enum ([`ProviderConfig`]), and the
//! [`Router`] that picks a local or external target by the routing rules and user
//! preferences, falls back within a retry budget, and enforces timeouts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cynode_egress::router::RouterError> {
//! use cynode_egress::router::{ChatRequest, Message, RouteOptions, Router, RouterConfig};
//! let config: RouterConfig = serde_json::from_str(r#"{
//!     "local": [{"name": "node-1", "provider": {"kind": "ollama", "base_url": "http://127.0.0.1:11434"}}]
//! }"#).map_err(|e| cynode_egress::router::RouterError::Config(e.to_string()))?;
//! let router = Router::from_config(&config)?;
//! let req = ChatRequest::new("qwen3.5:0.8b", vec![Message::user("Hello")]);
//! let answer = router.chat(&req, &RouteOptions::default()).await?;
//! println!("{} (via {})", answer.value.content, answer.target);
//! # Ok(()) }
//! ```
//!
//! No reqwest type appears in this module's public API; the HTTP client is wrapped in
//! [`HttpClient`].

mod anthropic;
mod egress;
mod engine;
mod error;
mod http;
mod inference;
mod ollama;
mod openai;
mod openai_compat;
mod provider;
mod routing;
mod types;

pub use engine::{
    RetryConfig, Routed, Router, RouterBuilder, RouterConfig, TargetConfig, TargetOptions,
};
pub use error::RouterError;
pub use http::{HttpClient, HttpConfig};
pub use inference::{ExternalModels, JobFront, JobInference, inference_router, serve_inference};
pub use openai_compat::openai_compat_router;
pub use provider::{
    AnthropicConfig, EgressProviderConfig, ModelProvider, OllamaConfig, OpenAiConfig,
    ProviderConfig, ProviderKind,
};
pub use routing::{
    AgentRole, Capabilities, Location, Pricing, ReasonCode, Requirements, RouteOptions,
    RouteTarget, RoutingDecision, RoutingPrefs, TargetView, decide,
};
pub use types::{
    ChatDelta, ChatRequest, ChatResponse, ChatStream, Message, ModelInfo, Role, Usage,
};

pub(crate) use http::scrub_key_like;
pub(crate) use openai_compat::map_error;
