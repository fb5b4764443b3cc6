//! Server-sent events for streamed chat completions (user-api §7.7).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cynode_core::proto::v1::gateway::{ChatCompletion, ChatCompletionChunk, OpenAiErrorBody};
use futures::Stream;

use super::GatewayError;

/// One item of a [`ChatStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatEvent {
    /// Text to append to the reply (never empty).
    Delta(String),
    /// The reply is complete (`finish_reason`, or `[DONE]`); carries the reason.
    Done(Option<String>),
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

enum Source {
    /// An event stream still being read.
    Events {
        bytes: ByteStream,
        buf: Vec<u8>,
    },
    /// A whole (non-streamed) completion, delivered as one delta then done.
    Whole(Option<ChatCompletion>),
    Finished,
}

/// The reply to a streamed chat completion, as a `Stream` of [`ChatEvent`]s ending
/// with [`ChatEvent::Done`]. When the gateway answers with a plain JSON completion
/// instead of an event stream, the stream yields its whole text as one delta.
pub struct ChatStream {
    source: Source,
    pending: std::collections::VecDeque<Result<ChatEvent, GatewayError>>,
    done: bool,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    pub(crate) fn events(bytes: ByteStream) -> Self {
        Self {
            source: Source::Events {
                bytes,
                buf: Vec::new(),
            },
            pending: Default::default(),
            done: false,
        }
    }

    pub(crate) fn whole(c: ChatCompletion) -> Self {
        Self {
            source: Source::Whole(Some(c)),
            pending: Default::default(),
            done: false,
        }
    }

    /// Handles one complete event's data; returns false when the stream ended.
    fn on_data(&mut self, data: &str) {
        let data = data.trim();
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            self.pending.push_back(Ok(ChatEvent::Done(None)));
            self.done = true;
            return;
        }
        let value: serde_json::Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                self.pending
                    .push_back(Err(GatewayError::Decode(format!("chat stream event: {e}"))));
                self.done = true;
                return;
            }
        };
        if value.get("error").is_some_and(|e| e.is_object()) {
            let body = serde_json::from_value::<OpenAiErrorBody>(value).unwrap_or_default();
            let status = match body.error.code.as_deref() {
                Some("model_unavailable") => 503,
                Some("cynodeai_completion_timeout") => 504,
                _ => 502,
            };
            let text = serde_json::to_vec(&body).unwrap_or_default();
            self.pending
                .push_back(Err(GatewayError::from_response(status, &text)));
            self.done = true;
            return;
        }
        match serde_json::from_value::<ChatCompletionChunk>(value) {
            Ok(chunk) => {
                let text = chunk.delta_text();
                if !text.is_empty() {
                    self.pending
                        .push_back(Ok(ChatEvent::Delta(text.to_string())));
                }
                if let Some(reason) = chunk.choices.first().and_then(|c| c.finish_reason.clone()) {
                    // Keep reading until [DONE], but report completion now.
                    self.pending.push_back(Ok(ChatEvent::Done(Some(reason))));
                    self.done = true;
                }
            }
            Err(e) => {
                self.pending
                    .push_back(Err(GatewayError::Decode(format!("chat stream chunk: {e}"))));
                self.done = true;
            }
        }
    }

    /// Splits complete events out of `buf` (events end with a blank line).
    fn drain_events(&mut self, buf: &mut Vec<u8>, at_end: bool) {
        loop {
            let end = find_event_end(buf);
            let (event, consumed) = match end {
                Some((e, c)) => (buf[..e].to_vec(), c),
                None if at_end && !buf.is_empty() => (std::mem::take(buf), 0),
                None => return,
            };
            if consumed > 0 {
                buf.drain(..consumed);
            }
            let text = String::from_utf8_lossy(&event);
            let mut data = String::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                }
            }
            if !self.done {
                self.on_data(&data);
            }
            if consumed == 0 {
                return;
            }
        }
    }
}

/// End of the first event in `buf`: (event length, bytes to consume).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

impl Stream for ChatStream {
    type Item = Result<ChatEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.pending.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                this.source = Source::Finished;
                return Poll::Ready(None);
            }
            match &mut this.source {
                Source::Finished => return Poll::Ready(None),
                Source::Whole(c) => {
                    if let Some(c) = c.take() {
                        let text = c.content().to_string();
                        if !text.is_empty() {
                            this.pending.push_back(Ok(ChatEvent::Delta(text)));
                        }
                        let reason = c.choices.first().and_then(|c| c.finish_reason.clone());
                        this.pending.push_back(Ok(ChatEvent::Done(reason)));
                    }
                    this.done = true;
                }
                Source::Events { bytes, buf } => match bytes.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(b))) => {
                        let mut local = std::mem::take(buf);
                        local.extend_from_slice(&b);
                        this.drain_events(&mut local, false);
                        if let Source::Events { buf, .. } = &mut this.source {
                            *buf = local;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.pending
                            .push_back(Err(GatewayError::network("chat stream interrupted", e)));
                        this.done = true;
                    }
                    Poll::Ready(None) => {
                        let mut local = std::mem::take(buf);
                        this.drain_events(&mut local, true);
                        if !this.done {
                            // The connection closed without [DONE] or a finish reason.
                            this.pending.push_back(Err(GatewayError::Network {
                                message: "chat stream ended before the reply was complete".into(),
                                source: None,
                            }));
                            this.done = true;
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn from_chunks(chunks: &[&'static str]) -> ChatStream {
        let items: Vec<Result<Bytes, reqwest::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        ChatStream::events(Box::pin(futures::stream::iter(items)))
    }

    async fn collect(s: ChatStream) -> Vec<Result<ChatEvent, String>> {
        s.map(|r| r.map_err(|e| e.to_string())).collect().await
    }

    #[tokio::test]
    async fn deltas_split_across_reads_are_reassembled() {
        let s = from_chunks(&[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n",
            "\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        ]);
        assert_eq!(
            collect(s).await,
            vec![
                Ok(ChatEvent::Delta("Hel".into())),
                Ok(ChatEvent::Delta("lo".into())),
                Ok(ChatEvent::Done(Some("stop".into()))),
            ]
        );
    }

    #[tokio::test]
    async fn an_error_event_becomes_an_http_error() {
        let s = from_chunks(&[
            "data: {\"error\":{\"message\":\"Completion failed\",\"type\":\"cynodeai_error\",\"param\":null,\"code\":\"orchestrator_inference_failed\"}}\r\n\r\n",
        ]);
        assert_eq!(
            collect(s).await,
            vec![Err(
                "502 Bad Gateway: Completion failed (orchestrator_inference_failed)".into()
            )]
        );
    }

    #[tokio::test]
    async fn a_cut_stream_is_an_error() {
        let s = from_chunks(&["data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"]);
        let got = collect(s).await;
        assert_eq!(got[0], Ok(ChatEvent::Delta("x".into())));
        assert!(
            got[1]
                .as_ref()
                .is_err_and(|e| e.contains("before the reply"))
        );
    }

    #[tokio::test]
    async fn a_whole_completion_is_one_delta() {
        let c: ChatCompletion = serde_json::from_str(
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"OK"},"finish_reason":"stop"}]}"#,
        )
        .expect("completion");
        assert_eq!(
            collect(ChatStream::whole(c)).await,
            vec![
                Ok(ChatEvent::Delta("OK".into())),
                Ok(ChatEvent::Done(Some("stop".into())))
            ]
        );
    }
}
