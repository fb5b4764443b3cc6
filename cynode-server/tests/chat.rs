//! The chat surface (`/v1/models`, `/v1/chat/completions`, `/v1/chat/threads…`) with a
//! mock LLM server as the upstream behind the real model router, on the memory and
//! SQLite stores (`oneshot`) and on a real socket (streaming disconnect).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use cynode_core::auth::issue_access_token;
use cynode_core::model::{AuditFilter, AuditKind, AuditRecord, ChatAudit, NewProject, NewUser};
use cynode_core::store::{MemoryStore, SqliteStore, Store};
use cynode_core::{ThreadId, UserId};
use cynode_egress::router::{Router, RouterConfig};
use cynode_server::gateway::{
    ChatConfig, ChatInference, GatewayConfig, GatewayState, ManualClock, PM_SYSTEM_PROMPT, router,
};
use cynode_testkit::{Failure, MockHandle, MockLlm};
use serde_json::{Value, json};

use common::{H, Resp};

/// A provider key the router holds; it must never show up in chat.
const PROVIDER_KEY: &str = "sk-provider-key-0123456789abcdefghij";
/// A bearer key without the `sk-` shape, configured as a literal secret.
const BEARER_KEY: &str = "mock-bearer-key-4f9a2c71";
/// A secret a user pastes into a message.
const USER_SECRET: &str = "sk-user-pasted-key-ABCDEFGHIJKLMNOP1234";

struct C {
    app: axum::Router,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    token: String,
    user: UserId,
    mock: Option<MockHandle>,
}

fn router_for(mock: &MockHandle, kind: &str, key: Option<&str>, attempt_ms: u64) -> Arc<Router> {
    let mut provider = json!({"kind": kind, "base_url": if kind == "ollama" { mock.base_url() } else { format!("{}/v1", mock.base_url()) }});
    if let Some(k) = key {
        provider["api_key"] = json!(k);
    }
    let cfg: RouterConfig = serde_json::from_value(json!({
        "local": [{"name": "node-1", "provider": provider}],
        "retry": {"backoff_initial_ms": 10, "backoff_max_ms": 20, "attempt_timeout_ms": attempt_ms,
                  "unhealthy_after_failures": 0},
    }))
    .expect("router config");
    Arc::new(Router::from_config(&cfg).expect("router"))
}

impl C {
    async fn new(store: Arc<dyn Store>, mock: Option<MockHandle>) -> C {
        Self::with(store, mock, "open_ai", ChatConfig::default()).await
    }

    async fn with(
        store: Arc<dyn Store>,
        mock: Option<MockHandle>,
        kind: &str,
        chat: ChatConfig,
    ) -> C {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let config = GatewayConfig {
            chat,
            inference_model: "qwen3.5:0.8b".into(),
            ..common::test_config()
        };
        let mut b = GatewayState::builder(store.clone(), common::test_keys())
            .config(config)
            .clock(clock.clone());
        if let Some(m) = &mock {
            let key = (kind == "open_ai").then_some(BEARER_KEY);
            b = b
                .inference(ChatInference::new(router_for(m, kind, key, 60_000)).secret(BEARER_KEY));
        }
        let app = router(b.build());
        let (user, token) = new_user(&store, "alice").await;
        C {
            app,
            store,
            clock,
            token,
            user,
            mock,
        }
    }

    fn mock(&self) -> &MockHandle {
        self.mock.as_ref().expect("mock")
    }

    async fn send(&self, req: axum::http::Request<axum::body::Body>) -> Resp {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let res = self.app.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        self.send(H::request(method, path, Some(token), body.as_ref()))
            .await
    }

    async fn chat(&self, body: Value) -> Resp {
        self.call(
            Method::POST,
            "/v1/chat/completions",
            &self.token,
            Some(body),
        )
        .await
    }

    async fn chat_raw(&self, body: &str, project: Option<&str>) -> Resp {
        let mut req = H::request(
            Method::POST,
            "/v1/chat/completions",
            Some(&self.token),
            None,
        );
        *req.body_mut() = axum::body::Body::from(body.to_string());
        if let Some(p) = project {
            req.headers_mut()
                .insert("openai-project", p.parse().expect("hv"));
        }
        self.send(req).await
    }

    async fn chat_audits(&self) -> Vec<ChatAudit> {
        let mut v: Vec<ChatAudit> = self
            .store
            .list_audit(&AuditFilter {
                kind: AuditKind::Chat,
                user_id: None,
                since: None,
                limit: 1000,
            })
            .await
            .expect("audit")
            .into_iter()
            .filter_map(|r| match r {
                AuditRecord::Chat(c) => Some(c),
                _ => None,
            })
            .collect();
        v.reverse();
        v
    }

    async fn threads(&self) -> Vec<ThreadId> {
        self.store
            .list_threads(self.user, 100)
            .await
            .expect("threads")
            .into_iter()
            .map(|t| t.id)
            .collect()
    }

    async fn all_stored_text(&self) -> String {
        let mut out = String::new();
        for t in self.threads().await {
            for m in self.store.list_messages(t).await.expect("messages") {
                out.push_str(&m.content);
                out.push('\n');
            }
        }
        out
    }

    /// Upstream chat requests as JSON bodies.
    fn upstream_chats(&self) -> Vec<Value> {
        self.mock()
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .filter_map(|r| r.json())
            .collect()
    }
}

async fn new_user(store: &Arc<dyn Store>, handle: &str) -> (UserId, String) {
    let u = store
        .create_user(NewUser {
            handle: handle.into(),
            email: None,
            password: None,
        })
        .await
        .expect("user");
    let (token, _) = issue_access_token(
        &common::test_keys(),
        u.id,
        handle,
        chrono::Utc::now(),
        Duration::from_secs(24 * 3600),
    );
    (u.id, token)
}

fn assert_openai_error(r: &Resp, status: u16, code: &str, message: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
    assert_eq!(r.content_type(), "application/json");
    assert_eq!(
        r.json(),
        json!({"error": {"message": message, "type": "cynodeai_error", "param": null, "code": code}})
    );
}

fn user_msg(text: &str) -> Value {
    json!({"model": "cynodeai.pm", "messages": [{"role": "user", "content": text}]})
}

macro_rules! on_stores {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(std::sync::Arc::new(super::MemoryStore::new())).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let s = super::SqliteStore::open_in_memory().await.expect("sqlite");
                    super::$case(std::sync::Arc::new(s)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::pg::on_fresh_database(super::$case).await;
                }
            )*
        }
    };
}

/// PostgreSQL 18 + pgvector (`CYNODE_TEST_PG_URL`): a fresh database per test.
use common::pg;

on_stores!(
    models_list_the_pm_and_the_inference_model,
    completion_goes_through_the_router_and_is_stored_and_audited,
    every_validation_row_answers_in_the_openai_shape,
    no_inference_configured_says_how_to_configure_it,
    keys_never_reach_storage_responses_or_the_upstream,
    upstream_500_is_retried_then_502,
    upstream_hang_is_504_at_the_deadline,
    streaming_sends_chunks_then_done_and_stores_the_answer,
    threads_are_reused_scoped_and_expire,
    context_is_the_newest_history_or_the_request_turns,
    thread_routes_are_owner_only,
    parallel_completions_all_succeed,
    ollama_upstream_works_too,
);

async fn models_list_the_pm_and_the_inference_model(store: Arc<dyn Store>) {
    let c = C::new(store, None).await;
    let r = c.call(Method::GET, "/v1/models", &c.token, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/json");
    assert_eq!(
        r.json(),
        json!({"object": "list", "data": [
            {"id": "cynodeai.pm", "object": "model", "created": 0, "owned_by": "cynodeai"},
            {"id": "qwen3.5:0.8b", "object": "model", "created": 0, "owned_by": "cynodeai"},
        ]})
    );
    // With inference configured, the router's models join the list once listed.
    let (_, mock) = MockLlm::builder()
        .models(["mock-a", "qwen3.5:0.8b"])
        .start()
        .await;
    let withmock = C::new(Arc::new(MemoryStore::new()), Some(mock)).await;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let r = withmock
            .call(Method::GET, "/v1/models", &withmock.token, None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        ids = r.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|m| m["id"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>();
        if ids.len() > 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ids, vec!["cynodeai.pm", "qwen3.5:0.8b", "mock-a"]);
    let r = c
        .send(H::request(Method::GET, "/v1/models", None, None))
        .await;
    r.assert_problem(401, "Missing authorization header");
    let r = c
        .send(H::request(
            Method::POST,
            "/v1/chat/completions",
            Some("garbage"),
            Some(&user_msg("x")),
        ))
        .await;
    r.assert_problem(401, "Invalid or expired token");
}

async fn completion_goes_through_the_router_and_is_stored_and_audited(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::builder()
        .reply("Hello from the mock")
        .start()
        .await;
    let c = C::new(store, Some(mock)).await;
    let r = c.chat(user_msg("Reply with exactly: OK")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.content_type(), "application/json");
    let v = r.json();
    assert!(uuid::Uuid::parse_str(v["id"].as_str().expect("id")).is_ok());
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "cynodeai.pm");
    assert!(v["created"].as_i64().expect("created") > 1_700_000_000);
    assert_eq!(
        v["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock"}, "finish_reason": "stop"}])
    );
    // The PM path: configured model, system prompt first, then the thread.
    let up = c.upstream_chats();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0]["model"], "qwen3.5:0.8b");
    assert_eq!(
        up[0]["messages"][0],
        json!({"role": "system", "content": PM_SYSTEM_PROMPT})
    );
    assert_eq!(
        up[0]["messages"][1],
        json!({"role": "user", "content": "Reply with exactly: OK"})
    );
    // Stored: user then assistant in one thread.
    let threads = c.threads().await;
    assert_eq!(threads.len(), 1);
    let msgs = c.store.list_messages(threads[0]).await.expect("messages");
    let got: Vec<(&str, &str)> = msgs
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("user", "Reply with exactly: OK"),
            ("assistant", "Hello from the mock")
        ]
    );
    let audits = c.chat_audits().await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].outcome, "success");
    assert_eq!(audits[0].user_id, Some(c.user));
    assert!(!audits[0].redaction_applied && audits[0].redaction_kinds.is_empty());
    assert!(audits[0].request_id.is_some());

    // Direct inference: the id goes to the router as the model, no system prompt.
    let r = c
        .chat(json!({"model": "mock-large", "temperature": 0.2, "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["model"], "mock-large");
    let up = c.upstream_chats();
    let last = up.last().expect("request");
    assert_eq!(last["model"], "mock-large");
    assert_eq!(last["max_tokens"], 7);
    assert!(
        last["messages"]
            .as_array()
            .expect("msgs")
            .iter()
            .all(|m| m["role"] != "system")
    );
    // Absent model means cynodeai.pm.
    let r = c
        .chat(json!({"messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.json()["model"], "cynodeai.pm");
}

async fn every_validation_row_answers_in_the_openai_shape(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::start().await;
    let c = C::new(store.clone(), Some(mock)).await;
    for body in [
        "not json",
        "[]",
        r#"{"messages": [{"role": "user", "content": 5}]}"#,
        r#"{"messages": "x"}"#,
    ] {
        let r = c.chat_raw(body, None).await;
        assert_openai_error(&r, 400, "invalid_request", "Invalid request body");
    }
    for body in [
        "{}",
        r#"{"messages": []}"#,
        r#"{"messages": null, "model": "x"}"#,
    ] {
        let r = c.chat_raw(body, None).await;
        assert_openai_error(
            &r,
            400,
            "invalid_request",
            "messages is required and must be non-empty",
        );
    }
    let r = c
        .chat(json!({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}))
        .await;
    assert_openai_error(
        &r,
        400,
        "invalid_request",
        "At least one user message is required",
    );
    // A project UUID that names nothing is refused; a non-UUID is ignored.
    let r = c
        .chat_raw(
            &user_msg("x").to_string(),
            Some("7d2c0000-0000-4000-8000-000000000000"),
        )
        .await;
    assert_openai_error(
        &r,
        400,
        "invalid_request",
        "OpenAI-Project names no project",
    );
    let r = c
        .chat_raw(&user_msg("x").to_string(), Some("proj_abc"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        c.mock().request_count(),
        1,
        "rejected requests never reach the model"
    );
    // An over-size body.
    let big = format!(
        r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let r = c.chat_raw(&big, None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Content-part arrays are accepted.
    let r = c
        .chat(
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

async fn no_inference_configured_says_how_to_configure_it(store: Arc<dyn Store>) {
    let c = C::new(store, None).await;
    let r = c.chat(user_msg("hello")).await;
    let msg = format!(
        "PM agent is not available. {}",
        cynode_server::gateway::MSG_NO_INFERENCE
    );
    assert_openai_error(&r, 503, "model_unavailable", &msg);
    assert!(msg.contains("OLLAMA_BASE_URL") && msg.contains("API key"));
    let r = c
        .chat(json!({"model": "qwen3.5:0.8b", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_openai_error(
        &r,
        503,
        "model_unavailable",
        cynode_server::gateway::MSG_NO_INFERENCE,
    );
    // A router with no target at all counts as "nothing configured".
    let empty = Arc::new(Router::from_config(&RouterConfig::default()).expect("router"));
    let state = GatewayState::builder(c.store.clone(), common::test_keys())
        .config(common::test_config())
        .inference(ChatInference::new(empty))
        .build();
    let app = router(state);
    let res = tower::ServiceExt::oneshot(
        app,
        H::request(
            Method::POST,
            "/v1/chat/completions",
            Some(&c.token),
            Some(&user_msg("x")),
        ),
    )
    .await
    .expect("call");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A router whose only target is an external provider that routing does not allow:
    // no inference path for this request.
    let (_, mock) = MockLlm::start().await;
    let cfg: RouterConfig = serde_json::from_value(json!({
        "external": [{"name": "openai", "provider": {"kind": "open_ai", "base_url": format!("{}/v1", mock.base_url())}}],
    }))
    .expect("router config");
    let state = GatewayState::builder(c.store.clone(), common::test_keys())
        .config(common::test_config())
        .inference(ChatInference::new(Arc::new(
            Router::from_config(&cfg).expect("router"),
        )))
        .build();
    let res = tower::ServiceExt::oneshot(
        router(state),
        H::request(
            Method::POST,
            "/v1/chat/completions",
            Some(&c.token),
            Some(&user_msg("x")),
        ),
    )
    .await
    .expect("call");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["error"]["code"], "model_unavailable");
    assert_eq!(v["error"]["message"], "PM agent is not available");
    assert_eq!(mock.request_count(), 0);
    let audits = c.chat_audits().await;
    assert_eq!(audits.len(), 4);
    assert!(
        audits
            .iter()
            .all(|a| a.outcome == "error" && a.error_code.as_deref() == Some("model_unavailable"))
    );
}

async fn keys_never_reach_storage_responses_or_the_upstream(store: Arc<dyn Store>) {
    // The mock echoes the user's message and the credential it was sent.
    let (_, mock) = MockLlm::builder().echo(true).echo_auth(true).start().await;
    let c = C::new(store, Some(mock)).await;
    let text = format!("my key is {USER_SECRET} and password: hunter2 ok");
    let r = c.chat(user_msg(&text)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.text();
    for secret in [USER_SECRET, BEARER_KEY, "hunter2"] {
        assert!(!body.contains(secret), "{secret} in response {body}");
    }
    assert!(body.contains("SECRET_REDACTED"), "{body}");
    // The upstream saw the redacted message (the key only in its auth header).
    let req = c
        .mock()
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("upstream call");
    let up = req.body_text();
    assert!(!up.contains(USER_SECRET) && !up.contains("hunter2"), "{up}");
    assert!(up.contains("SECRET_REDACTED"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {BEARER_KEY}").as_str())
    );
    // Streaming answer: redacted too.
    let mut s = user_msg(&text);
    s["stream"] = json!(true);
    let r = c.chat(s).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.text();
    for secret in [USER_SECRET, BEARER_KEY, "hunter2"] {
        assert!(!body.contains(secret), "{secret} in stream {body}");
    }
    // Storage.
    let stored = c.all_stored_text().await;
    for secret in [USER_SECRET, BEARER_KEY, "hunter2"] {
        assert!(!stored.contains(secret), "{secret} stored: {stored}");
    }
    assert!(stored.contains("SECRET_REDACTED"));
    // Thread listings.
    let t = c.threads().await[0];
    let r = c
        .call(
            Method::GET,
            &format!("/v1/chat/threads/{t}/messages"),
            &c.token,
            None,
        )
        .await;
    assert!(!r.text().contains(USER_SECRET) && !r.text().contains(BEARER_KEY));
    // Audit: redaction recorded with its kind.
    let audits = c.chat_audits().await;
    assert_eq!(audits.len(), 2);
    for a in audits {
        assert_eq!(a.outcome, "success");
        assert!(a.redaction_applied);
        assert_eq!(a.redaction_kinds, vec!["api_key".to_string()]);
    }
    // The provider key configured as sk-… is covered by the pattern rule as well.
    let (_, mock2) = MockLlm::builder().echo_auth(true).start().await;
    let router2 = router_for(&mock2, "open_ai", Some(PROVIDER_KEY), 60_000);
    let state = GatewayState::builder(c.store.clone(), common::test_keys())
        .config(common::test_config())
        .inference(ChatInference::new(router2))
        .build();
    let res = tower::ServiceExt::oneshot(
        router(state),
        H::request(
            Method::POST,
            "/v1/chat/completions",
            Some(&c.token),
            Some(&user_msg("x")),
        ),
    )
    .await
    .expect("call");
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains(PROVIDER_KEY) && text.contains("SECRET_REDACTED"),
        "{text}"
    );
    assert!(!c.all_stored_text().await.contains(PROVIDER_KEY));
}

async fn upstream_500_is_retried_then_502(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::builder()
        .fail(Failure::status(500, 0).forever())
        .start()
        .await;
    let c = C::new(store, Some(mock)).await;
    let r = c.chat(user_msg("hello")).await;
    assert_openai_error(
        &r,
        502,
        "orchestrator_inference_failed",
        "Completion failed",
    );
    assert_eq!(c.upstream_chats().len(), 3, "three attempts");
    // Two failures then success: retried within the budget.
    c.mock().clear_failures();
    c.mock().clear_requests();
    c.mock().fail_next(503, 2);
    let r = c.chat(user_msg("again")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(c.upstream_chats().len(), 3);
    // A non-transient failure (400 from upstream) is not retried.
    c.mock().clear_requests();
    c.mock().fail_next(400, 1);
    let r = c.chat(user_msg("bad")).await;
    assert_openai_error(
        &r,
        502,
        "orchestrator_inference_failed",
        "Completion failed",
    );
    assert_eq!(c.upstream_chats().len(), 1);
    let outcomes: Vec<(String, Option<String>)> = c
        .chat_audits()
        .await
        .into_iter()
        .map(|a| (a.outcome, a.error_code))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("error".into(), Some("orchestrator_inference_failed".into())),
            ("success".into(), None),
            ("error".into(), Some("orchestrator_inference_failed".into())),
        ]
    );
    // Every request's user message is kept; no assistant message for the failures.
    let threads = c.threads().await;
    let msgs = c.store.list_messages(threads[0]).await.expect("messages");
    let kept: Vec<(&str, &str)> = msgs
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("user", "hello"),
            ("user", "again"),
            ("assistant", cynode_testkit::DEFAULT_REPLY),
            ("user", "bad"),
        ]
    );
}

async fn upstream_hang_is_504_at_the_deadline(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::builder()
        .delay(Duration::from_secs(30))
        .start()
        .await;
    let chat = ChatConfig {
        completion_deadline_ms: 300,
        ..Default::default()
    };
    let c = C::with(store, Some(mock), "open_ai", chat).await;
    let r = c.chat(user_msg("hello")).await;
    assert_openai_error(
        &r,
        504,
        "cynodeai_completion_timeout",
        "Completion did not finish before the maximum wait duration",
    );
    let mut s = user_msg("hello");
    s["stream"] = json!(true);
    let r = c.chat(s).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    let audits = c.chat_audits().await;
    assert_eq!(audits.len(), 2);
    assert!(audits.iter().all(|a| a.outcome == "timeout"
        && a.error_code.as_deref() == Some("cynodeai_completion_timeout")));
}

fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"))
                .to_string()
        })
        .collect()
}

async fn streaming_sends_chunks_then_done_and_stores_the_answer(store: Arc<dyn Store>) {
    let reply = "one two three four five six";
    let (_, mock) = MockLlm::builder().reply(reply).start().await;
    let c = C::new(store, Some(mock)).await;
    let r = c
        .chat(json!({"model": "cynodeai.pm", "stream": true, "messages": [{"role": "user", "content": "count"}]}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "text/event-stream");
    let events = sse_events(&r.text());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk json"))
        .collect();
    assert!(chunks.len() >= 3, "{chunks:?}");
    let id = chunks[0]["id"].clone();
    let mut text = String::new();
    for ch in &chunks {
        assert_eq!(ch["object"], "chat.completion.chunk");
        assert_eq!(ch["model"], "cynodeai.pm");
        assert_eq!(ch["id"], id);
        assert_eq!(ch["choices"][0]["index"], 0);
        if let Some(t) = ch["choices"][0]["delta"]["content"].as_str() {
            assert_eq!(ch["choices"][0]["delta"]["role"], "assistant");
            text.push_str(t);
        }
    }
    let last = chunks.last().expect("final chunk");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert_eq!(text, reply);
    let up = c.upstream_chats();
    assert_eq!(up[0]["stream"], true, "the upstream call streams too");
    let t = c.threads().await[0];
    let msgs = c.store.list_messages(t).await.expect("messages");
    assert_eq!(msgs.last().map(|m| m.content.as_str()), Some(reply));
    assert_eq!(c.chat_audits().await[0].outcome, "success");
    // A failing upstream before the first byte: a JSON error, not a stream.
    c.mock().fail_next(500, 3);
    let r = c
        .chat(json!({"stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_openai_error(
        &r,
        502,
        "orchestrator_inference_failed",
        "Completion failed",
    );
}

async fn threads_are_reused_scoped_and_expire(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::start().await;
    let c = C::new(store.clone(), Some(mock)).await;
    c.chat(user_msg("a")).await;
    c.chat(user_msg("b")).await;
    assert_eq!(c.threads().await.len(), 1, "the active thread is reused");
    // Another project scope gets its own thread.
    let p = store
        .create_project(NewProject {
            slug: "chat-proj".into(),
            display_name: "Chat".into(),
            ..Default::default()
        })
        .await
        .expect("project");
    let r = c
        .chat_raw(&user_msg("c").to_string(), Some(&p.id.to_string()))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let threads = store.list_threads(c.user, 100).await.expect("threads");
    assert_eq!(threads.len(), 2);
    assert_eq!(threads[0].project_id, Some(p.id));
    // POST /v1/chat/threads makes a new active thread for its scope.
    let r = c
        .call(Method::POST, "/v1/chat/threads", &c.token, None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.content_type(), "application/json");
    let new_id: ThreadId = r.json()["thread_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    c.chat(user_msg("d")).await;
    let msgs = store.list_messages(new_id).await.expect("messages");
    assert_eq!(msgs.len(), 2, "the new thread took the next completion");
    // After two idle hours a new thread starts.
    c.clock.advance(Duration::from_secs(2 * 3600 + 60));
    let r = c.chat(user_msg("e")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        store
            .list_threads(c.user, 100)
            .await
            .expect("threads")
            .len(),
        4
    );
    // Thread creation errors: bad body, unknown project.
    let r = c
        .send({
            let mut req = H::request(Method::POST, "/v1/chat/threads", Some(&c.token), None);
            *req.body_mut() = axum::body::Body::from("{nope");
            req
        })
        .await;
    assert_openai_error(&r, 400, "invalid_request", "Invalid request body");
    let r = c
        .call(
            Method::POST,
            "/v1/chat/threads",
            &c.token,
            Some(json!({"project_id": uuid::Uuid::new_v4().to_string()})),
        )
        .await;
    assert_openai_error(&r, 400, "invalid_request", "Invalid project_id");
    let r = c
        .call(
            Method::POST,
            "/v1/chat/threads",
            &c.token,
            Some(json!({"project_id": p.id.to_string(), "title": "Plans"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json()["thread_id"].as_str().expect("id").to_string();
    let r = c
        .call(
            Method::GET,
            &format!("/v1/chat/threads/{id}"),
            &c.token,
            None,
        )
        .await;
    assert_eq!(r.json()["title"], "Plans");
    assert_eq!(r.json()["project_id"], json!(p.id.to_string()));
}

async fn context_is_the_newest_history_or_the_request_turns(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::builder().reply("ack").start().await;
    let chat = ChatConfig {
        history_max_messages: 5,
        ..Default::default()
    };
    let c = C::with(store, Some(mock), "open_ai", chat).await;
    for i in 0..4 {
        c.chat(user_msg(&format!("turn {i}"))).await;
    }
    let up = c.upstream_chats();
    let last = &up.last().expect("call")["messages"];
    let texts: Vec<&str> = last
        .as_array()
        .expect("arr")
        .iter()
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect();
    // System prompt, then the newest five stored messages, newest user turn last.
    assert_eq!(texts.len(), 6);
    assert_eq!(texts[0], PM_SYSTEM_PROMPT);
    assert_eq!(texts.last(), Some(&"turn 3"));
    assert_eq!(texts[1..], ["turn 1", "ack", "turn 2", "ack", "turn 3"]);
    // A message appended outside completions (another route, or another gateway
    // process) is in the next context too.
    let t = c.threads().await[0];
    let r = c
        .call(
            Method::POST,
            &format!("/v1/chat/threads/{t}/messages"),
            &c.token,
            Some(json!({"content": "side note"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    c.chat(user_msg("turn 4")).await;
    let up = c.upstream_chats();
    let texts: Vec<String> = up.last().expect("call")["messages"]
        .as_array()
        .expect("arr")
        .iter()
        .skip(1)
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(texts, ["ack", "turn 3", "ack", "side note", "turn 4"]);
    // Several messages in the request: they are the context.
    c.chat(json!({"messages": [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "hello Ada"},
        {"role": "user", "content": "what is my name?"}
    ]}))
    .await;
    let up = c.upstream_chats();
    let msgs = up.last().expect("call")["messages"].clone();
    assert_eq!(
        msgs,
        json!([
            {"role": "system", "content": PM_SYSTEM_PROMPT},
            {"role": "user", "content": "my name is Ada"},
            {"role": "assistant", "content": "hello Ada"},
            {"role": "user", "content": "what is my name?"}
        ])
    );
}

async fn thread_routes_are_owner_only(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::builder().reply("fine").start().await;
    let c = C::new(store.clone(), Some(mock)).await;
    c.chat(user_msg("first")).await;
    let t = c.threads().await[0];
    let r = c
        .call(Method::GET, "/v1/chat/threads", &c.token, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["threads"].as_array().expect("arr").len(), 1);
    assert_eq!(v["threads"][0]["id"], json!(t.to_string()));
    assert!(v.get("next_offset").is_none());
    let r = c
        .call(
            Method::GET,
            &format!("/v1/chat/threads/{t}"),
            &c.token,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["thread_id"], json!(t.to_string()));
    assert_eq!(r.json()["project_id"], Value::Null);
    let r = c
        .call(
            Method::GET,
            &format!("/v1/chat/threads/{t}/messages"),
            &c.token,
            None,
        )
        .await;
    let roles: Vec<(String, String)> = r.json()["messages"]
        .as_array()
        .expect("arr")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("").into(),
                m["content"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            ("user".into(), "first".into()),
            ("assistant".into(), "fine".into())
        ]
    );
    // Append a user message (redacted); assistant messages are refused.
    let r = c
        .call(
            Method::POST,
            &format!("/v1/chat/threads/{t}/messages"),
            &c.token,
            Some(json!({"content": format!("note {USER_SECRET}")})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["content"], "note SECRET_REDACTED");
    assert_eq!(r.json()["role"], "user");
    let r = c
        .call(
            Method::POST,
            &format!("/v1/chat/threads/{t}/messages"),
            &c.token,
            Some(json!({"role": "assistant", "content": "x"})),
        )
        .await;
    r.assert_problem(400, "Only user messages may be appended");
    let r = c
        .call(
            Method::POST,
            &format!("/v1/chat/threads/{t}/messages"),
            &c.token,
            Some(json!({"content": " "})),
        )
        .await;
    r.assert_problem(400, "content is required");
    // Paging.
    let r = c
        .call(
            Method::GET,
            &format!("/v1/chat/threads/{t}/messages?limit=2"),
            &c.token,
            None,
        )
        .await;
    assert_eq!(r.json()["messages"].as_array().expect("arr").len(), 2);
    assert_eq!(r.json()["next_offset"], 2);
    let r = c
        .call(
            Method::GET,
            &format!("/v1/chat/threads/{t}/messages?limit=2&offset=2"),
            &c.token,
            None,
        )
        .await;
    assert_eq!(r.json()["messages"][0]["content"], "note SECRET_REDACTED");
    assert!(r.json().get("next_offset").is_none());
    for q in ["limit=0", "limit=201", "limit=x", "offset=-1"] {
        let r = c
            .call(
                Method::GET,
                &format!("/v1/chat/threads/{t}/messages?{q}"),
                &c.token,
                None,
            )
            .await;
        r.assert_problem(400, "Invalid limit or offset");
    }
    let r = c
        .call(
            Method::GET,
            "/v1/chat/threads?project_id=nope",
            &c.token,
            None,
        )
        .await;
    r.assert_problem(400, "Invalid project_id");
    let r = c
        .call(
            Method::GET,
            &format!("/v1/chat/threads?project_id={}", uuid::Uuid::new_v4()),
            &c.token,
            None,
        )
        .await;
    assert_eq!(r.json()["threads"], json!([]));
    // Another user sees none of it.
    let (_, bob) = new_user(&store, "bob").await;
    let r = c.call(Method::GET, "/v1/chat/threads", &bob, None).await;
    assert_eq!(r.json()["threads"], json!([]));
    for path in [
        format!("/v1/chat/threads/{t}"),
        format!("/v1/chat/threads/{t}/messages"),
    ] {
        let r = c.call(Method::GET, &path, &bob, None).await;
        r.assert_problem(404, "Thread not found");
    }
    let r = c
        .call(
            Method::POST,
            &format!("/v1/chat/threads/{t}/messages"),
            &bob,
            Some(json!({"content": "intrude"})),
        )
        .await;
    r.assert_problem(404, "Thread not found");
    for path in [
        "/v1/chat/threads/not-a-uuid".to_string(),
        format!("/v1/chat/threads/{}", uuid::Uuid::new_v4()),
    ] {
        let r = c.call(Method::GET, &path, &c.token, None).await;
        r.assert_problem(404, "Thread not found");
    }
    // Unauthenticated.
    let r = c
        .send(H::request(Method::GET, "/v1/chat/threads", None, None))
        .await;
    r.assert_problem(401, "Missing authorization header");
}

async fn parallel_completions_all_succeed(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::builder()
        .delay(Duration::from_millis(50))
        .start()
        .await;
    let c = Arc::new(C::new(store, Some(mock)).await);
    let futs = (0..3).map(|i| {
        let c = c.clone();
        async move { c.chat(user_msg(&format!("parallel {i}"))).await.status }
    });
    let statuses = futures::future::join_all(futs).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let threads = c.threads().await;
    assert_eq!(
        threads.len(),
        1,
        "parallel requests of one scope share the active thread"
    );
    assert_eq!(c.store.list_messages(threads[0]).await.expect("m").len(), 6);
}

async fn ollama_upstream_works_too(store: Arc<dyn Store>) {
    let (_, mock) = MockLlm::builder().reply("from ollama").start().await;
    let c = C::with(store, Some(mock), "ollama", ChatConfig::default()).await;
    let r = c.chat(user_msg("hi")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "from ollama");
    let mut s = user_msg("hi");
    s["stream"] = json!(true);
    let r = c.chat(s).await;
    let events = sse_events(&r.text());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(c.mock().requests().iter().any(|r| r.path == "/api/chat"));
}

/// A client that goes away mid-stream stops the upstream call, and the completion is
/// audited as `canceled` with no assistant message stored.
#[tokio::test]
async fn a_client_disconnect_mid_stream_cancels_the_upstream() {
    let (_, mock) = MockLlm::builder()
        .reply("a b c d e f g h i j k l m n o p q r s t")
        .chunk_delay(Duration::from_millis(200))
        .start()
        .await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let state = GatewayState::builder(store.clone(), common::test_keys())
        .config(common::test_config())
        .inference(ChatInference::new(router_for(
            &mock, "open_ai", None, 60_000,
        )))
        .build();
    let (user, token) = new_user(&store, "carol").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    let client = reqwest::Client::new();
    let mut res = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"stream": true, "messages": [{"role": "user", "content": "long"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 200);
    let first = res.chunk().await.expect("chunk").expect("some bytes");
    assert!(first.starts_with(b"data: "));
    drop(res);
    drop(client);
    // The canceled record arrives once the server notices the closed connection.
    let mut audits = Vec::new();
    for _ in 0..100 {
        audits = store
            .list_audit(&AuditFilter {
                kind: AuditKind::Chat,
                user_id: Some(user),
                since: None,
                limit: 10,
            })
            .await
            .expect("audit");
        if !audits.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match audits.first() {
        Some(AuditRecord::Chat(a)) => assert_eq!(a.outcome, "canceled"),
        other => panic!("no canceled audit record: {other:?}"),
    }
    let threads = store.list_threads(user, 10).await.expect("threads");
    let msgs = store.list_messages(threads[0].id).await.expect("messages");
    assert_eq!(msgs.len(), 1, "only the user message is stored");
    server.abort();
}

/// The user's message, the answer and the audit record are one transaction: when its
/// commit fails (a fault planted in the real SQLite file: the audit insert aborts,
/// after both messages went in) the answer is `500` `Failed to persist message` and
/// neither message is kept, for a plain and a streamed completion.
#[tokio::test]
async fn a_failed_commit_keeps_nothing_of_the_turn() {
    use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
    let (_, mock) = MockLlm::builder().start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cynode.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let c = C::new(store, Some(mock)).await;
    let r = c.chat(user_msg("first")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let mut raw = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .expect("raw connection");
    sqlx::raw_sql(
        "CREATE TRIGGER fail_audit BEFORE INSERT ON chat_audit_log
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .execute(&mut raw)
    .await
    .expect("plant the fault");
    raw.close().await.ok();

    let r = c.chat(user_msg("second")).await;
    assert_openai_error(&r, 500, "internal_error", "Failed to persist message");
    let mut body = user_msg("third");
    body["stream"] = json!(true);
    let r = c.chat(body).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a stream has started before the commit"
    );
    let events = sse_events(&r.text());
    assert!(
        events
            .iter()
            .any(|e| e.contains("Failed to persist message")),
        "the stream ends with the error: {events:?}"
    );
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    assert_eq!(
        c.upstream_chats().len(),
        3,
        "every completion reached the model"
    );

    let threads = c.threads().await;
    let msgs = c.store.list_messages(threads[0]).await.expect("messages");
    assert_eq!(
        msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        vec!["first", cynode_testkit::DEFAULT_REPLY],
        "nothing of the failed turns is kept"
    );
}
