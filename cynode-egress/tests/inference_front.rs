//! The inference front a sandbox's socket reaches: Ollama and OpenAI paths served by
//! the model router, a model listed by one target routed to it, and the front on a
//! real Unix socket.

use std::sync::Arc;

use axum::{body::Body, http::Request};
use cynode_egress::router::{
    HttpClient, ProviderConfig, RouteOptions, Router, RoutingPrefs, TargetOptions,
    inference_router, serve_inference,
};
use cynode_testkit::{MockHandle, MockLlm};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const LOCAL: &str = "reply of the local model";
const EXTERNAL: &str = "reply of the external provider";

struct Front {
    app: axum::Router,
    local: MockHandle,
    external: MockHandle,
}

async fn front() -> Front {
    let (_, local) = MockLlm::builder()
        .reply(LOCAL)
        .models(["tiny:latest"])
        .start()
        .await;
    let (_, external) = MockLlm::builder()
        .reply(EXTERNAL)
        .require_api_key("sk-test")
        .start()
        .await;
    let http = HttpClient::with_defaults().unwrap();
    let l: ProviderConfig =
        serde_json::from_value(json!({"kind": "ollama", "base_url": local.base_url()})).unwrap();
    let e: ProviderConfig = serde_json::from_value(json!({
        "kind": "open_ai", "base_url": format!("{}/v1", external.base_url()), "api_key": "sk-test"
    }))
    .unwrap();
    let router = Router::builder()
        .local(l.build("node", &http).unwrap(), TargetOptions::default())
        .external(
            e.build("openai", &http).unwrap(),
            TargetOptions {
                models: vec!["gpt-x".into()],
                ..Default::default()
            },
        )
        .build()
        .unwrap();
    let opts = RouteOptions {
        prefs: RoutingPrefs {
            allowed_external_providers: vec!["openai".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    Front {
        app: inference_router(Arc::new(router), opts),
        local,
        external,
    }
}

async fn call(app: &axum::Router, method: &str, path: &str, body: Value) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn chat(model: &str, stream: Option<bool>) -> Value {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    if let Some(s) = stream {
        v["stream"] = json!(s);
    }
    v
}

#[tokio::test]
async fn ollama_chat_routes_by_model_and_streams_ndjson() {
    let f = front().await;
    // Local by preference.
    let (s, b) = call(&f.app, "POST", "/api/chat", chat("tiny", Some(false))).await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["message"]["role"], "assistant");
    assert!(v["message"]["content"].as_str().unwrap().starts_with(LOCAL));
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    // A model only the external target lists goes there.
    let (s, b) = call(&f.app, "POST", "/api/chat", chat("gpt-x", Some(false))).await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(
        v["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with(EXTERNAL),
        "{v}"
    );
    assert_eq!(
        (f.local.request_count(), f.external.request_count()),
        (1, 1)
    );

    // Ollama streams by default: one JSON object per line, the last one `done`.
    let (s, b) = call(&f.app, "POST", "/api/chat", chat("tiny", None)).await;
    assert_eq!(s, 200, "{b}");
    let lines: Vec<Value> = b
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{b}");
    let (last, rest) = lines.split_last().unwrap();
    assert_eq!(last["done"], true);
    assert!(rest.iter().all(|l| l["done"] == false));
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap_or(""))
        .collect();
    assert!(text.starts_with(LOCAL), "{text}");
}

#[tokio::test]
async fn generate_tags_openai_and_refusals() {
    let f = front().await;
    let (s, b) = call(
        &f.app,
        "POST",
        "/api/generate",
        json!({"model": "tiny", "system": "be brief", "prompt": "hi", "stream": false}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(v["response"].as_str().unwrap().starts_with(LOCAL), "{v}");
    let sent = &f.local.requests()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "hi");

    let (s, b) = call(&f.app, "GET", "/api/tags", Value::Null).await;
    assert_eq!(s, 200);
    let names: Vec<String> = serde_json::from_str::<Value>(&b).unwrap()["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"tiny:latest".to_string()) && names.contains(&"gpt-x".to_string()),
        "{names:?}"
    );

    let (s, b) = call(&f.app, "POST", "/v1/chat/completions", chat("gpt-x", None)).await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with(EXTERNAL)
    );
    let (s, b) = call(&f.app, "GET", "/v1/models", Value::Null).await;
    assert_eq!(s, 200);
    assert!(b.contains("gpt-x"), "{b}");

    let (s, _) = call(&f.app, "POST", "/api/embed", json!({"model": "tiny"})).await;
    assert_eq!(s, 501);
    let (s, b) = call(&f.app, "POST", "/api/chat", json!({"model": "tiny"})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("messages"), "{b}");
    let (s, _) = call(&f.app, "POST", "/api/chat", json!("not an object")).await;
    assert_eq!(s, 400);
    let chats = |m: &MockHandle| {
        m.requests()
            .iter()
            .filter(|r| r.path.contains("chat"))
            .count()
    };
    assert_eq!(
        (chats(&f.local), chats(&f.external)),
        (1, 1),
        "refused requests never reach a provider"
    );
}

#[tokio::test]
async fn served_on_a_unix_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = front().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inference.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let http = HttpClient::with_defaults().unwrap();
    let l: ProviderConfig =
        serde_json::from_value(json!({"kind": "ollama", "base_url": f.local.base_url()})).unwrap();
    let router = Router::builder()
        .local(l.build("node", &http).unwrap(), TargetOptions::default())
        .build()
        .unwrap();
    tokio::spawn(serve_inference(
        listener,
        Arc::new(router),
        RouteOptions::default(),
    ));
    let body = chat("tiny", Some(false)).to_string();
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(
        format!(
            "POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(LOCAL), "{resp}");
}
