//! The provider trait and the closed configuration enum that builds its implementations.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    anthropic::Anthropic,
    egress::EgressProvider,
    error::RouterError,
    http::HttpClient,
    ollama::Ollama,
    openai::{OpenAiCompatible, OpenAiFlavor},
    types::{ChatRequest, ChatResponse, ChatStream, ModelInfo},
};
use crate::crypto::Secret;

/// A model backend: one endpoint that can chat, stream and list its models.
///
/// Implementations exist for Ollama, OpenAI-compatible servers (OpenAI, vLLM, LM Studio,
/// llama.cpp server), Anthropic, and the API egress service itself (for callers that
/// must not hold provider keys). Embedders may add their own.
#[async_trait]
pub trait ModelProvider: Send + Sync {
    /// The name this provider is known by (target name, used in errors and decisions).
    fn name(&self) -> &str;
    /// Which wire dialect it speaks.
    fn kind(&self) -> ProviderKind;
    /// One complete answer.
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, RouterError>;
    /// A stream of answer increments. The call returns once the provider accepted the
    /// request (response headers received); errors after that arrive in the stream.
    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, RouterError>;
    /// Models the provider offers.
    async fn list_models(&self) -> Result<Vec<ModelInfo>, RouterError>;
}

/// Wire dialect of a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// Ollama's `/api/*`.
    Ollama,
    /// OpenAI's `/v1/chat/completions` (OpenAI, vLLM, LM Studio, llama.cpp).
    OpenAiCompatible,
    /// Anthropic's `/v1/messages`.
    Anthropic,
    /// The API egress service's `/v1/call`.
    Egress,
    /// An embedder's own implementation.
    Custom,
}

/// An Ollama endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaConfig {
    /// Base URL (default `http://127.0.0.1:11434`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Bearer token, for an Ollama behind an authenticating proxy.
    #[serde(default)]
    pub api_key: Option<Secret>,
}

/// An OpenAI-compatible endpoint.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URL including `/v1` (defaults: OpenAI `https://api.openai.com/v1`, vLLM
    /// `http://127.0.0.1:8000/v1`, LM Studio `http://127.0.0.1:1234/v1`, llama.cpp
    /// `http://127.0.0.1:8080/v1`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// API key sent as `Authorization: Bearer`. In the egress service the key comes
    /// from the credential store instead.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// `OpenAI-Organization` header.
    #[serde(default)]
    pub organization: Option<String>,
}

/// An Anthropic endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicConfig {
    /// Base URL (default `https://api.anthropic.com`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// API key sent as `x-api-key`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// `anthropic-version` header (default `2023-06-01`).
    #[serde(default)]
    pub version: Option<String>,
    /// `max_tokens` when the request sets none (Anthropic requires it; default 1024).
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
}

/// The API egress service as a provider: chat goes to `POST /v1/call` with a
/// job-scoped token, so the caller never holds the provider key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressProviderConfig {
    /// Egress service base URL, e.g. `http://127.0.0.1:12084`.
    pub base_url: String,
    /// Logical provider name the egress service should call (`openai`, …).
    pub provider: String,
    /// Bearer token for the egress service (a job-scoped token).
    pub token: Secret,
    /// Task the calls are attributed to (optional with a job-scoped token, which
    /// already names its task).
    #[serde(default)]
    pub task_id: Option<String>,
}

/// Every provider this crate can build, as it appears in configuration
/// (`{"kind": "open_ai", "base_url": "…"}`). Closed on purpose: a new provider is a new
/// variant, so configuration errors are found at load time.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderConfig {
    /// Ollama.
    Ollama(OllamaConfig),
    /// OpenAI.
    OpenAi(OpenAiConfig),
    /// vLLM's OpenAI-compatible server.
    Vllm(OpenAiConfig),
    /// LM Studio's OpenAI-compatible server.
    LmStudio(OpenAiConfig),
    /// llama.cpp's `llama-server`.
    LlamaCpp(OpenAiConfig),
    /// Anthropic.
    Anthropic(AnthropicConfig),
    /// The API egress service.
    Egress(EgressProviderConfig),
}

impl ProviderConfig {
    /// The wire dialect.
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Ollama(_) => ProviderKind::Ollama,
            ProviderConfig::OpenAi(_)
            | ProviderConfig::Vllm(_)
            | ProviderConfig::LmStudio(_)
            | ProviderConfig::LlamaCpp(_) => ProviderKind::OpenAiCompatible,
            ProviderConfig::Anthropic(_) => ProviderKind::Anthropic,
            ProviderConfig::Egress(_) => ProviderKind::Egress,
        }
    }

    /// Whether this provider authenticates with an API key the egress service should
    /// inject (everything except the egress provider itself).
    pub fn takes_api_key(&self) -> bool {
        !matches!(self, ProviderConfig::Egress(_))
    }

    /// Builds the provider named `name` with the configured key.
    pub fn build(
        &self,
        name: &str,
        http: &HttpClient,
    ) -> Result<Arc<dyn ModelProvider>, RouterError> {
        self.build_inner(name, http, None)
    }

    /// Builds the provider with `api_key` instead of any configured key (the egress path
    /// injects a decrypted credential this way).
    pub fn build_with_key(
        &self,
        name: &str,
        http: &HttpClient,
        api_key: Secret,
    ) -> Result<Arc<dyn ModelProvider>, RouterError> {
        self.build_inner(name, http, Some(api_key))
    }

    fn build_inner(
        &self,
        name: &str,
        http: &HttpClient,
        key: Option<Secret>,
    ) -> Result<Arc<dyn ModelProvider>, RouterError> {
        let openai = |c: &OpenAiConfig,
                      flavor: OpenAiFlavor|
         -> Result<Arc<dyn ModelProvider>, RouterError> {
            Ok(Arc::new(OpenAiCompatible::new(
                name,
                flavor,
                c.base_url.as_deref().unwrap_or(flavor.default_base_url()),
                key.clone().or_else(|| c.api_key.clone()),
                c.organization.clone(),
                http.clone(),
            )?))
        };
        match self {
            ProviderConfig::Ollama(c) => Ok(Arc::new(Ollama::new(
                name,
                c.base_url.as_deref().unwrap_or("http://127.0.0.1:11434"),
                key.or_else(|| c.api_key.clone()),
                http.clone(),
            )?)),
            ProviderConfig::OpenAi(c) => openai(c, OpenAiFlavor::OpenAi),
            ProviderConfig::Vllm(c) => openai(c, OpenAiFlavor::Vllm),
            ProviderConfig::LmStudio(c) => openai(c, OpenAiFlavor::LmStudio),
            ProviderConfig::LlamaCpp(c) => openai(c, OpenAiFlavor::LlamaCpp),
            ProviderConfig::Anthropic(c) => Ok(Arc::new(Anthropic::new(
                name,
                c.base_url.as_deref().unwrap_or("https://api.anthropic.com"),
                key.or_else(|| c.api_key.clone()),
                c.version
                    .clone()
                    .unwrap_or_else(|| "2023-06-01".to_string()),
                c.default_max_tokens.unwrap_or(1024),
                http.clone(),
            )?)),
            ProviderConfig::Egress(c) => {
                if key.is_some() {
                    return Err(RouterError::Config(format!(
                        "provider {name}: the egress provider does not take an API key"
                    )));
                }
                Ok(Arc::new(EgressProvider::new(name, c, http.clone())?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_enum_parses_and_rejects_unknown() {
        let c: ProviderConfig =
            serde_json::from_str(r#"{"kind":"vllm","base_url":"http://h:8000/v1"}"#).unwrap();
        assert_eq!(c.kind(), ProviderKind::OpenAiCompatible);
        let c: ProviderConfig =
            serde_json::from_str(r#"{"kind":"anthropic","api_key":"k"}"#).unwrap();
        assert_eq!(c.kind(), ProviderKind::Anthropic);
        assert!(serde_json::from_str::<ProviderConfig>(r#"{"kind":"mystery"}"#).is_err());
        assert!(serde_json::from_str::<ProviderConfig>(r#"{"kind":"ollama","bogus":1}"#).is_err());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("\"k\""), "keys never show in Debug: {dbg}");
    }

    #[test]
    fn bad_base_urls_are_config_errors() {
        let http = HttpClient::with_defaults().unwrap();
        let c = ProviderConfig::Ollama(OllamaConfig {
            base_url: Some("ftp://x".into()),
            api_key: None,
        });
        assert!(matches!(c.build("o", &http), Err(RouterError::Config(_))));
        let c = ProviderConfig::OpenAi(OpenAiConfig {
            base_url: Some("not a url".into()),
            ..Default::default()
        });
        assert!(matches!(c.build("o", &http), Err(RouterError::Config(_))));
    }
}
