//! Provider-neutral chat types: what callers give the router and what they get back.

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::error::RouterError;

/// Author of a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The human (or calling agent).
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

impl Role {
    /// Wire spelling (`system`, `user`, `assistant`, `tool`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat message. `content` is plain text; on input an OpenAI content-part array is
/// accepted and its text parts are concatenated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Text.
    #[serde(deserialize_with = "content_text")]
    pub content: String,
}

impl Message {
    /// A message with the given role and text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

fn content_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("")),
        _ => Err(serde::de::Error::custom(
            "content must be a string or an array of text parts",
        )),
    }
}

/// A chat completion request, independent of the provider that will serve it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model id. Empty means "the target's default model".
    #[serde(default)]
    pub model: String,
    /// Conversation, oldest first.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Cap on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "stop_list"
    )]
    pub stop: Vec<String>,
}

pub(crate) fn stop_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s]),
        Value::Array(a) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(serde::de::Error::custom("stop must be strings")),
            })
            .collect(),
        _ => Err(serde::de::Error::custom(
            "stop must be a string or an array of strings",
        )),
    }
}

impl ChatRequest {
    /// A request for `model` with these messages and default options.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            ..Default::default()
        }
    }

    /// Checks what every provider needs: at least one message.
    pub(crate) fn validate(&self, provider: &str) -> Result<(), RouterError> {
        if self.messages.is_empty() {
            return Err(RouterError::invalid(
                provider,
                "messages is required and must be non-empty",
            ));
        }
        Ok(())
    }

    /// A rough token estimate (characters / 4 plus `max_tokens`), for budgets.
    pub fn estimated_tokens(&self) -> u64 {
        let chars: usize = self
            .messages
            .iter()
            .map(|m| m.content.chars().count())
            .sum();
        (chars as u64).div_ceil(4) + u64::from(self.max_tokens.unwrap_or(0))
    }
}

/// Token accounting reported by a provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// A complete (non-streamed) answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Model that answered (as the provider reports it).
    pub model: String,
    /// Assistant text.
    pub content: String,
    /// Why generation stopped, normalised to OpenAI's words (`stop`, `length`,
    /// `tool_calls`, `content_filter`) where a mapping exists.
    pub finish_reason: Option<String>,
    /// Token usage, when reported.
    pub usage: Option<Usage>,
    /// Name of the provider (target) that answered.
    pub provider: String,
}

/// One increment of a streamed answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatDelta {
    /// Text to append (may be empty).
    pub content: String,
    /// Set on the last delta.
    pub finish_reason: Option<String>,
    /// Usage, usually on the last delta.
    pub usage: Option<Usage>,
}

/// A stream of answer increments. It ends after the provider's end marker; an error
/// item ends it early.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatDelta, RouterError>> + Send>>;

/// A model a provider offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model id as the provider spells it.
    pub id: String,
    /// Provider (target) name.
    pub provider: String,
}

/// Normalises provider stop reasons to OpenAI's vocabulary.
pub(crate) fn normalise_finish(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" | "stop" => "stop",
        "max_tokens" | "length" => "length",
        "tool_use" | "tool_calls" => "tool_calls",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_accepts_openai_shapes() {
        let r: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]}
            ],
            "stop": "END",
            "temperature": 0.5,
            "stream": true
        }))
        .unwrap();
        assert_eq!(r.messages[1].content, "hello");
        assert_eq!(r.stop, vec!["END"]);
        assert!(
            serde_json::from_value::<ChatRequest>(
                serde_json::json!({"messages": [{"role": "bogus", "content": "x"}]})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<ChatRequest>(
                serde_json::json!({"messages": [{"role": "user", "content": 5}]})
            )
            .is_err()
        );
    }

    #[test]
    fn finish_reasons_are_normalised() {
        assert_eq!(normalise_finish("end_turn"), "stop");
        assert_eq!(normalise_finish("max_tokens"), "length");
        assert_eq!(normalise_finish("tool_use"), "tool_calls");
        assert_eq!(normalise_finish("weird"), "weird");
    }
}
