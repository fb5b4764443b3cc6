//! The mock LLM over a raw loopback socket: dialect routing, failure injection, auth and
//! request capture.

use std::time::Duration;

use cynode_testkit::{DEFAULT_REPLY, Failure, MockLlm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn dialects_failures_auth_and_capture() {
    let (addr, mock) = MockLlm::builder().require_api_key("k-123").start().await;
    let auth = [("authorization", "Bearer k-123")];

    let (status, body) = http(addr, "GET", "/api/tags", &auth, "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"name\":\"mock\""), "{body}");

    let chat = r#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, body) = http(addr, "POST", "/v1/chat/completions", &auth, chat).await;
    assert_eq!(status, 200);
    assert!(body.contains(DEFAULT_REPLY));

    let (status, _) = http(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer nope")],
        chat,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http(
        addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", "k-123")],
        r#"{"model":"m","messages":[]}"#,
    )
    .await;
    assert_eq!(status, 400, "Anthropic requires max_tokens");

    mock.push_failure(Failure::status(429, 1).on_path("/api/"));
    assert_eq!(http(addr, "GET", "/api/version", &auth, "").await.0, 429);
    assert_eq!(http(addr, "GET", "/api/version", &auth, "").await.0, 200);

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 6);
    assert_eq!(reqs[1].path, "/v1/chat/completions");
    assert_eq!(reqs[1].header("Authorization"), Some("Bearer k-123"));
    assert_eq!(reqs[1].json().unwrap()["model"], "mock");
    mock.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped after shutdown"
    );
}
