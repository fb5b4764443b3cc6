//! Model router against the mock LLM server on real loopback sockets: every provider
//! dialect (chat, stream, list), routing with fallbacks, the retry budget, timeouts,
//! and the OpenAI-compatible front.

use std::{sync::Arc, time::Duration};

use cynode_egress::{
    Secret,
    router::{
        AnthropicConfig, Capabilities, ChatRequest, ChatStream, HttpClient, Location, Message,
        ModelProvider, OllamaConfig, OpenAiConfig, ProviderConfig, ReasonCode, RetryConfig,
        RouteOptions, Router, RouterConfig, RouterError, RoutingPrefs, TargetOptions,
        openai_compat_router,
    },
};
use cynode_testkit::{DEFAULT_REPLY, Failure, MockLlm};
use futures::StreamExt;

fn http() -> HttpClient {
    HttpClient::with_defaults().expect("http client")
}

fn ollama(name: &str, base: &str) -> Arc<dyn ModelProvider> {
    ProviderConfig::Ollama(OllamaConfig {
        base_url: Some(base.into()),
        api_key: None,
    })
    .build(name, &http())
    .unwrap()
}

fn openai(name: &str, base: &str, key: Option<&str>) -> Arc<dyn ModelProvider> {
    ProviderConfig::OpenAi(OpenAiConfig {
        base_url: Some(format!("{base}/v1")),
        api_key: key.map(Secret::new),
        organization: None,
    })
    .build(name, &http())
    .unwrap()
}

fn anthropic(name: &str, base: &str, key: &str) -> Arc<dyn ModelProvider> {
    ProviderConfig::Anthropic(AnthropicConfig {
        base_url: Some(base.into()),
        api_key: Some(Secret::new(key)),
        version: None,
        default_max_tokens: None,
    })
    .build(name, &http())
    .unwrap()
}

fn req(model: &str) -> ChatRequest {
    ChatRequest::new(
        model,
        vec![Message::system("Be brief."), Message::user("Say hello")],
    )
}

async fn collect(mut s: ChatStream) -> (String, Option<String>, Vec<RouterError>) {
    let mut text = String::new();
    let mut finish = None;
    let mut errors = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(d) => {
                text.push_str(&d.content);
                if d.finish_reason.is_some() {
                    finish = d.finish_reason;
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (text, finish, errors)
}

fn fast_retry() -> RetryConfig {
    RetryConfig {
        backoff_initial_ms: 10,
        backoff_max_ms: 20,
        ..RetryConfig::default()
    }
}

#[tokio::test]
async fn ollama_chat_stream_and_tags() {
    let (_, mock) = MockLlm::start().await;
    let p = ollama("node-1", &mock.base_url());
    let r = p.chat(&req("mock")).await.unwrap();
    assert_eq!(r.content, DEFAULT_REPLY);
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    assert!(r.usage.unwrap().completion_tokens > 0);
    let (text, finish, errors) = collect(p.chat_stream(&req("mock")).await.unwrap()).await;
    assert_eq!(text, DEFAULT_REPLY);
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(errors.is_empty());
    let models = p.list_models().await.unwrap();
    assert_eq!(
        models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["mock", "mock-large"]
    );

    let reqs = mock.requests();
    let chat = reqs.iter().find(|r| r.path == "/api/chat").unwrap();
    let body = chat.json().unwrap();
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(chat.header("authorization").is_none());
}

#[tokio::test]
async fn openai_chat_stream_models_and_key_header() {
    let (_, mock) = MockLlm::builder()
        .require_api_key("sk-config-key-123456")
        .echo(true)
        .start()
        .await;
    let p = openai("openai", &mock.base_url(), Some("sk-config-key-123456"));
    let r = p.chat(&req("mock")).await.unwrap();
    assert_eq!(r.content, "echo: Say hello");
    assert_eq!(r.usage.unwrap().prompt_tokens, 4);
    let (text, finish, errors) = collect(p.chat_stream(&req("mock")).await.unwrap()).await;
    assert_eq!(text, "echo: Say hello");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(p.list_models().await.unwrap().len(), 2);
    for r in mock.requests() {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer sk-config-key-123456"),
            "{}",
            r.path
        );
    }
    let stream_req = mock
        .requests()
        .into_iter()
        .find(|r| r.json().is_some_and(|j| j["stream"] == true))
        .unwrap();
    assert_eq!(
        stream_req.json().unwrap()["stream_options"]["include_usage"],
        true
    );

    // Wrong key: an auth error, not retryable, but another provider could be tried.
    let bad = openai("openai", &mock.base_url(), Some("sk-wrong-key-000000"));
    let e = bad.chat(&req("mock")).await.unwrap_err();
    assert!(matches!(e, RouterError::Auth { status: 401, .. }), "{e:?}");
    assert!(!e.is_retryable() && e.allows_fallback());
}

#[tokio::test]
async fn anthropic_chat_stream_and_headers() {
    let (_, mock) = MockLlm::builder()
        .require_api_key("sk-ant-test-key-0001")
        .start()
        .await;
    let p = anthropic("anthropic", &mock.base_url(), "sk-ant-test-key-0001");
    let mut r2 = req("mock");
    r2.messages.push(Message::user("and again"));
    let r = p.chat(&r2).await.unwrap();
    assert_eq!(r.content, DEFAULT_REPLY);
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    let (text, finish, errors) = collect(p.chat_stream(&req("mock")).await.unwrap()).await;
    assert_eq!(text, DEFAULT_REPLY);
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(errors.is_empty(), "{errors:?}");
    let first = &mock.requests()[0];
    assert_eq!(first.path, "/v1/messages");
    assert_eq!(first.header("x-api-key"), Some("sk-ant-test-key-0001"));
    assert_eq!(first.header("anthropic-version"), Some("2023-06-01"));
    assert!(first.header("authorization").is_none());
    let body = first.json().unwrap();
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["max_tokens"], 1024);
    // Consecutive user turns are merged so roles alternate.
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(body["messages"][0]["content"], "Say hello\n\nand again");
    assert_eq!(p.list_models().await.unwrap()[0].id, "mock");
}

#[tokio::test]
async fn falls_back_from_a_failing_local_to_an_external_provider() {
    let (_, local) = MockLlm::builder()
        .fail(Failure::status(503, 0).forever())
        .start()
        .await;
    let (_, external) = MockLlm::builder().reply("from external").start().await;
    let router = Router::builder()
        .local(
            ollama("node-1", &local.base_url()),
            TargetOptions::default(),
        )
        .external(
            openai("openai", &external.base_url(), None),
            TargetOptions::default(),
        )
        .retry(fast_retry())
        .build()
        .unwrap();
    let opts = RouteOptions {
        prefs: RoutingPrefs {
            allowed_external_providers: vec!["openai".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let r = router.chat(&req("mock"), &opts).await.unwrap();
    assert_eq!(r.value.content, "from external");
    assert_eq!(r.target, "openai");
    assert_eq!(r.attempts, 2);
    assert_eq!(
        r.decision
            .targets
            .iter()
            .map(|t| t.location)
            .collect::<Vec<_>>(),
        [Location::Local, Location::External]
    );
    assert_eq!(r.decision.reasons, [ReasonCode::LocalPreferred]);
    assert_eq!(local.request_count(), 1);

    // Without external permission the local failure is final and says it is retryable.
    let e = router
        .chat(&req("mock"), &RouteOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, RouterError::Exhausted { attempts: 3, .. }),
        "{e:?}"
    );
    assert!(e.is_retryable());
    assert_eq!(e.kind(), "unavailable");
}

#[tokio::test]
async fn retries_a_single_target_within_the_budget() {
    let (_, mock) = MockLlm::start().await;
    mock.fail_next(502, 2);
    let router = Router::builder()
        .local(
            openai("vllm-1", &mock.base_url(), None),
            TargetOptions::default(),
        )
        .retry(fast_retry())
        .build()
        .unwrap();
    let r = router
        .chat(&req("mock"), &RouteOptions::default())
        .await
        .unwrap();
    assert_eq!(r.attempts, 3);
    assert_eq!(mock.request_count(), 3);

    // Budget of 3: three failures exhaust it.
    mock.fail_next(500, 3);
    let e = router
        .chat(&req("mock"), &RouteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, RouterError::Exhausted { attempts: 3, .. }));
}

#[tokio::test]
async fn bad_requests_stop_at_once_and_auth_errors_fall_back() {
    let (_, a) = MockLlm::start().await;
    let (_, b) = MockLlm::start().await;
    a.push_failure(Failure::status(400, 1).with_body(r#"{"error":{"message":"bad temperature"}}"#));
    let router = Router::builder()
        .local(openai("a", &a.base_url(), None), TargetOptions::default())
        .local(openai("b", &b.base_url(), None), TargetOptions::default())
        .retry(fast_retry())
        .build()
        .unwrap();
    let e = router
        .chat(&req("mock"), &RouteOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, RouterError::InvalidRequest { ref message, .. } if message.contains("bad temperature")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert_eq!(b.request_count(), 0, "a bad request is not sent elsewhere");

    a.push_failure(Failure::status(401, 1));
    let r = router
        .chat(&req("mock"), &RouteOptions::default())
        .await
        .unwrap();
    assert_eq!(r.target, "b");
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn unknown_models_fall_back_to_a_target_that_serves_them() {
    let (_, a) = MockLlm::builder()
        .models(["other"])
        .strict_models(true)
        .start()
        .await;
    let (_, b) = MockLlm::builder()
        .models(["mock"])
        .strict_models(true)
        .start()
        .await;
    let router = Router::builder()
        .local(ollama("a", &a.base_url()), TargetOptions::default())
        .local(ollama("b", &b.base_url()), TargetOptions::default())
        .build()
        .unwrap();
    let r = router
        .chat(&req("mock"), &RouteOptions::default())
        .await
        .unwrap();
    assert_eq!(r.target, "b");
    // Both lack the model: not retryable.
    let e = router
        .chat(&req("nope"), &RouteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "model_not_found");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn attempt_timeouts_are_retryable_errors() {
    let (_, slow) = MockLlm::builder()
        .delay(Duration::from_secs(5))
        .start()
        .await;
    let router = Router::builder()
        .local(
            openai("slow", &slow.base_url(), None),
            TargetOptions::default(),
        )
        .retry(RetryConfig {
            max_attempts: 1,
            attempt_timeout_ms: 100,
            ..fast_retry()
        })
        .build()
        .unwrap();
    let e = router
        .chat(&req("mock"), &RouteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "timeout");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn stream_idle_timeout_ends_the_stream_with_an_error() {
    let (_, mock) = MockLlm::builder()
        .chunk_delay(Duration::from_secs(5))
        .start()
        .await;
    let router = Router::builder()
        .local(ollama("node", &mock.base_url()), TargetOptions::default())
        .retry(RetryConfig {
            stream_idle_timeout_ms: 100,
            ..fast_retry()
        })
        .build()
        .unwrap();
    let routed = router
        .chat_stream(&req("mock"), &RouteOptions::default())
        .await
        .unwrap();
    let (_, finish, errors) = collect(routed.value).await;
    assert!(finish.is_none());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind(), "timeout");
}

#[tokio::test]
async fn overload_and_capabilities_steer_to_external() {
    let (_, local) = MockLlm::builder().reply("local").start().await;
    let (_, ext) = MockLlm::builder().reply("external").start().await;
    let router = Router::builder()
        .local(
            ollama("node-1", &local.base_url()),
            TargetOptions {
                capabilities: Capabilities {
                    context_length: Some(8192),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .external(
            anthropic("anthropic", &ext.base_url(), "k"),
            TargetOptions {
                default_model: Some("mock".into()),
                models: vec!["mock".into()],
                ..Default::default()
            },
        )
        .build()
        .unwrap();
    let mut opts = RouteOptions {
        prefs: RoutingPrefs {
            allowed_external_providers: vec!["anthropic".into()],
            queue_depth_threshold: Some(2),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        router
            .chat(&req("qwen3.5:0.8b"), &opts)
            .await
            .unwrap()
            .value
            .content,
        "local"
    );
    assert!(router.report_queue_depth("node-1", 5));
    let r = router.chat(&req("qwen3.5:0.8b"), &opts).await.unwrap();
    assert_eq!(r.value.content, "external");
    assert_eq!(
        r.decision.reasons,
        [ReasonCode::Overloaded, ReasonCode::ExternalAllowed]
    );
    // The external target maps the local model id to its default model.
    let sent = ext.requests().last().unwrap().json().unwrap();
    assert_eq!(sent["model"], "mock");

    router.report_queue_depth("node-1", 0);
    opts.requirements.min_context_length = Some(100_000);
    let r = router.chat(&req("mock"), &opts).await.unwrap();
    assert_eq!(r.target, "anthropic");
    assert_eq!(r.decision.reasons[0], ReasonCode::NoCapableWorker);

    opts.external_forbidden = true;
    let e = router.chat(&req("mock"), &opts).await.unwrap_err();
    assert!(matches!(e, RouterError::PolicyDenied { .. }), "{e:?}");
}

#[tokio::test]
async fn router_from_config_and_openai_compatible_front() {
    let (_, mock) = MockLlm::builder().echo(true).start().await;
    let config: RouterConfig = serde_json::from_value(serde_json::json!({
        "local": [{"name": "node-1", "provider": {"kind": "llama_cpp", "base_url": format!("{}/v1", mock.base_url())}}],
        "retry": {"max_attempts": 2}
    }))
    .unwrap();
    let router = Arc::new(Router::from_config(&config).unwrap());
    let app = openai_compat_router(router, RouteOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/chat/completions");

    let v: serde_json::Value = client
        .post(&url)
        .json(&serde_json::json!({"model": "mock", "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: ping");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let text = client
        .post(&url)
        .json(&serde_json::json!({"model": "mock", "stream": true, "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "echo: ping");

    let resp = client.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");

    mock.fail_next(503, 2);
    let resp = client
        .post(&url)
        .json(&serde_json::json!({"messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "orchestrator_inference_failed");

    let models: serde_json::Value = client
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "mock");
    assert_eq!(models["data"][0]["owned_by"], "node-1");
}

#[tokio::test]
async fn repeatedly_failing_targets_cool_down_and_are_skipped() {
    let (_, a) = MockLlm::builder()
        .fail(Failure::status(503, 0).forever())
        .start()
        .await;
    let (_, b) = MockLlm::builder().reply("b").start().await;
    let router = Router::builder()
        .local(openai("a", &a.base_url(), None), TargetOptions::default())
        .local(openai("b", &b.base_url(), None), TargetOptions::default())
        .retry(RetryConfig {
            unhealthy_after_failures: 2,
            cooldown_ms: 600_000,
            ..fast_retry()
        })
        .build()
        .unwrap();
    // Each call tries `a` first (sorted by name), fails, and falls back to `b`.
    for _ in 0..2 {
        assert_eq!(
            router
                .chat(&req("mock"), &RouteOptions::default())
                .await
                .unwrap()
                .target,
            "b"
        );
    }
    assert_eq!(a.request_count(), 2);
    // `a` is now cooling down: the decision skips it.
    let r = router
        .chat(&req("mock"), &RouteOptions::default())
        .await
        .unwrap();
    assert_eq!((r.target.as_str(), r.attempts), ("b", 1));
    assert_eq!(a.request_count(), 2);
    assert_eq!(
        router
            .decide(&req("mock"), &RouteOptions::default())
            .unwrap()
            .targets
            .len(),
        1
    );
}
