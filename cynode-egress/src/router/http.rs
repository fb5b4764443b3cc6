//! The shared HTTP client, status-to-error mapping and the line / SSE decoders the
//! providers use. Nothing here leaks reqwest types to the public API.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::error::RouterError;
use crate::crypto::Secret;

/// Settings of the outbound HTTP client.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP + TLS connect timeout in milliseconds (default 5000).
    pub connect_timeout_ms: u64,
    /// How long an idle pooled connection is kept, in seconds (default 90).
    pub pool_idle_timeout_secs: u64,
    /// Explicit outbound proxy URL. The process environment is never consulted.
    pub proxy: Option<String>,
    /// `User-Agent` sent upstream (default `cynode-egress/<version>`).
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout_ms: 5_000,
            pool_idle_timeout_secs: 90,
            proxy: None,
            user_agent: concat!("cynode-egress/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A pooled HTTP client (rustls). Cheap to clone; share one per process.
#[derive(Clone, Debug)]
pub struct HttpClient {
    pub(crate) inner: reqwest::Client,
}

impl HttpClient {
    /// Builds a client from settings.
    pub fn new(config: &HttpConfig) -> Result<Self, RouterError> {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(config.pool_idle_timeout_secs))
            .tcp_nodelay(true)
            .user_agent(config.user_agent.clone());
        if let Some(p) = &config.proxy {
            let proxy = reqwest::Proxy::all(p)
                .map_err(|_| RouterError::Config(format!("invalid proxy URL '{p}'")))?;
            b = b.proxy(proxy);
        }
        let inner = b
            .build()
            .map_err(|e| RouterError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(HttpClient { inner })
    }

    /// A client with default settings.
    pub fn with_defaults() -> Result<Self, RouterError> {
        Self::new(&HttpConfig::default())
    }
}

/// A header whose value is a secret: marked sensitive so the HTTP stack never prints it.
pub(crate) fn secret_header(
    name: &'static str,
    prefix: &str,
    secret: &Secret,
    provider: &str,
) -> Result<(HeaderName, HeaderValue), RouterError> {
    let mut text =
        zeroize::Zeroizing::new(String::with_capacity(prefix.len() + secret.expose().len()));
    text.push_str(prefix);
    text.push_str(secret.expose());
    let mut v = HeaderValue::from_str(&text).map_err(|_| {
        RouterError::Config(format!(
            "credential for {provider} is not a valid header value"
        ))
    })?;
    v.set_sensitive(true);
    Ok((HeaderName::from_static(name), v))
}

/// Joins a base URL and a path without doubling slashes.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Checks a configured base URL.
pub(crate) fn check_base_url(provider: &str, base: &str) -> Result<String, RouterError> {
    let u = reqwest::Url::parse(base).map_err(|_| {
        RouterError::Config(format!("provider {provider}: invalid base_url '{base}'"))
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(RouterError::Config(format!(
            "provider {provider}: base_url must be http(s)"
        )));
    }
    Ok(base.trim_end_matches('/').to_string())
}

/// One prepared call: where, which headers, which body.
pub(crate) struct Call<'a> {
    pub client: &'a HttpClient,
    pub provider: &'a str,
    pub secret: Option<&'a Secret>,
    pub model: &'a str,
}

impl Call<'_> {
    /// Sends a request and maps transport failures and non-2xx statuses to errors.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, RouterError> {
        let mut rb = self.client.inner.request(method, url).headers(headers);
        if let Some(body) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let resp = rb.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.unwrap_or_default();
        Err(self.status_error(status.as_u16(), &body, retry_after))
    }

    /// Reads a whole response body as JSON.
    pub(crate) async fn json(&self, resp: reqwest::Response) -> Result<Value, RouterError> {
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| RouterError::protocol(self.provider, "response body is not JSON"))
    }

    pub(crate) fn transport_error(&self, e: reqwest::Error) -> RouterError {
        let message = if e.is_timeout() {
            "request timed out"
        } else if e.is_connect() {
            "connection failed"
        } else if e.is_body() || e.is_decode() {
            "response body interrupted"
        } else {
            "request failed"
        };
        RouterError::Unavailable {
            provider: self.provider.to_string(),
            message: message.to_string(),
            source: Some(Box::new(e.without_url())),
        }
    }

    pub(crate) fn status_error(
        &self,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> RouterError {
        let provider = self.provider.to_string();
        let detail = upstream_message(body, self.secret);
        match status {
            401 | 403 => RouterError::Auth { provider, status },
            404 => RouterError::ModelNotFound {
                provider,
                model: self.model.to_string(),
            },
            408 => RouterError::Timeout {
                provider,
                after: Duration::ZERO,
            },
            429 => RouterError::RateLimited {
                provider,
                retry_after,
            },
            400 | 413 | 422 => RouterError::InvalidRequest {
                provider,
                message: format!(
                    "HTTP {status}{}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
            },
            s if s >= 500 => RouterError::Unavailable {
                provider,
                message: format!(
                    "HTTP {s}{}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
                source: None,
            },
            s => RouterError::Protocol {
                provider,
                message: format!("unexpected HTTP {s}"),
            },
        }
    }
}

/// A short, scrubbed error message from an upstream error body, if it has one.
fn upstream_message(body: &[u8], secret: Option<&Secret>) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let msg = v
        .pointer("/error/message")
        .or_else(|| v.get("error").filter(|e| e.is_string()))
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)?;
    let mut msg: String = msg.chars().take(200).collect();
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        msg = msg.replace(s.expose(), "[REDACTED]");
    }
    Some(scrub_key_like(&msg))
}

/// Replaces anything shaped like a provider key (`sk-…`, `sk-ant-…`) with `[REDACTED]`.
pub(crate) fn scrub_key_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sk-") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let len = tail
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*')))
            .map(|(j, _)| j)
            .unwrap_or(tail.len());
        // A sentence-ending dot is not part of the key.
        let len = tail[..len].trim_end_matches('.').len();
        if len >= 8 {
            out.push_str("[REDACTED]");
        } else {
            out.push_str(&tail[..len]);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, RouterError>> + Send>>;

/// Splits a byte stream into `\n`-terminated lines (a trailing `\r` is removed; a final
/// line without a newline is still yielded). Lines longer than 4 MiB are an error.
pub(crate) struct Lines {
    inner: ByteStream,
    buf: BytesMut,
    ready: VecDeque<String>,
    done: bool,
    provider: String,
}

const MAX_LINE: usize = 4 * 1024 * 1024;

impl Lines {
    pub(crate) fn new(resp: reqwest::Response, call: &Call<'_>) -> Self {
        let provider = call.provider.to_string();
        let p2 = provider.clone();
        let inner = resp
            .bytes_stream()
            .map(move |r| {
                r.map_err(|e| RouterError::Unavailable {
                    provider: p2.clone(),
                    message: "stream interrupted".into(),
                    source: Some(Box::new(e.without_url())),
                })
            })
            .boxed();
        Lines {
            inner,
            buf: BytesMut::new(),
            ready: VecDeque::new(),
            done: false,
            provider,
        }
    }

    fn split_ready(&mut self) {
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line = self.buf.split_to(pos + 1);
            line.truncate(pos);
            if line.last() == Some(&b'\r') {
                line.truncate(pos - 1);
            }
            self.ready
                .push_back(String::from_utf8_lossy(&line).into_owned());
        }
    }
}

impl Stream for Lines {
    type Item = Result<String, RouterError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(line)));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Poll::Ready(None);
                }
                let rest = self.buf.split();
                return Poll::Ready(Some(Ok(String::from_utf8_lossy(rest.chunk()).into_owned())));
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.done = true,
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    self.buf.clear();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    self.buf.extend_from_slice(&chunk);
                    self.split_ready();
                    if self.ready.is_empty() && self.buf.len() > MAX_LINE {
                        self.done = true;
                        self.buf.clear();
                        let p = self.provider.clone();
                        return Poll::Ready(Some(Err(RouterError::protocol(
                            &p,
                            "stream line too long",
                        ))));
                    }
                }
            }
        }
    }
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Groups lines into server-sent events (dispatched on a blank line or at the end).
pub(crate) fn sse_events(lines: Lines) -> impl Stream<Item = Result<SseEvent, RouterError>> + Send {
    futures::stream::unfold((lines, false), |(mut lines, finished)| async move {
        if finished {
            return None;
        }
        let mut ev = SseEvent::default();
        let mut has_data = false;
        loop {
            match lines.next().await {
                None => {
                    return if has_data || ev.event.is_some() {
                        Some((Ok(ev), (lines, true)))
                    } else {
                        None
                    };
                }
                Some(Err(e)) => return Some((Err(e), (lines, true))),
                Some(Ok(line)) => {
                    if line.is_empty() {
                        if has_data || ev.event.is_some() {
                            return Some((Ok(ev), (lines, false)));
                        }
                        continue;
                    }
                    if line.starts_with(':') {
                        continue;
                    }
                    let (field, value) = match line.split_once(':') {
                        Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                        None => (line.as_str(), ""),
                    };
                    match field {
                        "event" => ev.event = Some(value.to_string()),
                        "data" => {
                            if has_data {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(value);
                            has_data = true;
                        }
                        _ => {}
                    }
                }
            }
        }
    })
}

/// One decoded element of a provider's streaming response.
pub(crate) enum StreamItem {
    /// A piece of the answer.
    Delta(super::types::ChatDelta),
    /// Nothing to emit (keep-alive, metadata).
    Skip,
    /// The provider said the stream is over.
    Done,
    /// Decoding or transport failed; the stream ends after this.
    Failed(RouterError),
}

/// Turns decoded stream elements into the public [`super::types::ChatStream`]: deltas and
/// errors pass through, skips are dropped, and the stream ends at `Done`.
pub(crate) fn into_chat_stream(
    items: impl Stream<Item = StreamItem> + Send + 'static,
) -> super::types::ChatStream {
    Box::pin(
        items
            .take_while(|i| futures::future::ready(!matches!(i, StreamItem::Done)))
            .filter_map(|i| {
                futures::future::ready(match i {
                    StreamItem::Delta(d) => Some(Ok(d)),
                    StreamItem::Failed(e) => Some(Err(e)),
                    StreamItem::Skip | StreamItem::Done => None,
                })
            }),
    )
}

/// Reads an OpenAI-style model list (`{"data": [{"id": …}, …]}`), which Anthropic's
/// `/v1/models` shares.
pub(crate) fn model_ids(
    provider: &str,
    v: &Value,
) -> Result<Vec<super::types::ModelInfo>, RouterError> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| RouterError::protocol(provider, "model list without data"))?;
    Ok(data
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .map(|id| super::types::ModelInfo {
            id: id.to_string(),
            provider: provider.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_like_strings_are_scrubbed() {
        assert_eq!(
            scrub_key_like("Incorrect API key provided: sk-abc123456789. See docs"),
            "Incorrect API key provided: [REDACTED]. See docs"
        );
        assert_eq!(scrub_key_like("ask-me sk-1"), "ask-me sk-1");
        assert_eq!(scrub_key_like("no keys here"), "no keys here");
    }

    #[test]
    fn upstream_messages_are_short_and_scrubbed() {
        let secret = Secret::new("plainsecretvalue");
        let body = br#"{"error":{"message":"bad key plainsecretvalue given"}}"#;
        assert_eq!(
            upstream_message(body, Some(&secret)).unwrap(),
            "bad key [REDACTED] given"
        );
        assert_eq!(
            upstream_message(br#"{"error":"oops"}"#, None).unwrap(),
            "oops"
        );
        assert!(upstream_message(b"<html>", None).is_none());
    }
}
