//! A provider key never appears in log output: every tracing event (and every `log`
//! record of the HTTP stack) at TRACE level is captured into a buffer while keys flow
//! through the egress path (stored, decrypted, injected, echoed back by the provider,
//! echoed in a provider error) and through a router configured with a key; then the
//! buffer is searched for the key.
//!
//! One test per binary: it installs the process-wide subscriber.

mod common;

use std::sync::Arc;

use chrono::Utc;
use cynode_core::store::{MemoryStore, Store};
use cynode_egress::{
    CredentialCipher, Secret,
    api::{
        Effect, EgressConfig, EgressState, JobClaims, JobTokenKey, NewCredential, PolicyDeps,
        api_call_rule, router, store_credential,
    },
    router::{ChatRequest, Message, ProviderConfig, RouteOptions, Router, RouterConfig},
};
use cynode_testkit::{Failure, MockLlm};
use futures::StreamExt;
use serde_json::json;

const KEY: &str = "sk-proj-LEAKCHECK0123456789abcdefghijklmnop";
const ROUTER_KEY: &str = "sk-router-LEAKCHECK-9876543210zyxwvut";

#[tokio::test]
async fn keys_never_reach_log_output() {
    let logs = cynode_testkit::podman::capture_traces();

    // --- egress path in policy mode
    let (_, mock) = MockLlm::builder()
        .require_api_key(KEY)
        .echo_auth(true)
        .start()
        .await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (user, task) = common::user_with_task(store.as_ref(), "bob", "t").await;
    store
        .create_access_rule(api_call_rule(user.id.as_uuid(), "openai/*", Effect::Allow))
        .await
        .unwrap();
    let cipher = Arc::new(CredentialCipher::single("k1", &[5u8; 32]));
    let cred = store_credential(
        store.as_ref(),
        &cipher,
        NewCredential {
            owner_type: "user".into(),
            owner_id: user.id.as_uuid(),
            provider: "openai".into(),
            credential_type: "api_key".into(),
            credential_name: "default".into(),
            secret: Secret::new(KEY),
            expires_at: None,
        },
    )
    .await
    .unwrap();
    tracing::info!(credential = ?cred, "stored credential");

    let key_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([1u8; 32])
    };
    let config: EgressConfig = serde_json::from_value(json!({
        "job_token_key": key_b64,
        "providers": {"openai": {"kind": "open_ai", "base_url": format!("{}/v1", mock.base_url()), "api_key": "sk-never-used-config-key"}}
    }))
    .unwrap();
    tracing::debug!(config = ?config, "egress config");
    let deps = PolicyDeps::from_store(store.clone(), cipher);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(EgressState::policy(&config, deps).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    // The token's job runs (the egress service accepts job tokens only then).
    let job = common::job_in(
        store.as_ref(),
        task.id,
        cynode_core::model::JobStatus::Running,
    )
    .await;
    let token = JobTokenKey::from_base64(&Secret::new(key_b64))
        .unwrap()
        .issue(&JobClaims::new(
            task.id,
            job,
            Utc::now(),
            chrono::Duration::minutes(5),
        ));

    let client = reqwest::Client::new();
    let body = json!({
        "provider": "openai", "operation": "chat", "task_id": task.id.to_string(),
        "params": {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
    });
    let call = |body: serde_json::Value| {
        let client = client.clone();
        let token = token.expose().to_string();
        async move {
            let r = client
                .post(format!("http://{addr}/v1/call"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, text) = call(body.clone()).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(KEY));
    // The provider rejects and echoes the key in its error body.
    mock.push_failure(Failure::status(401, 1).with_body(format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#
    )));
    let (status, text) = call(body.clone()).await;
    assert_eq!(status, 502);
    assert!(!text.contains(KEY));
    // A server error mid-way, then a retry by the caller.
    mock.fail_next(500, 1);
    assert_eq!(call(body.clone()).await.0, 502);
    assert_eq!(call(body).await.0, 200);
    assert_eq!(
        mock.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // --- router configured with a key (non-egress path), chat and stream
    let (_, mock2) = MockLlm::builder().require_api_key(ROUTER_KEY).start().await;
    let rc: RouterConfig = serde_json::from_value(json!({
        "local": [{"name": "vllm", "provider": {"kind": "vllm", "base_url": format!("{}/v1", mock2.base_url()), "api_key": ROUTER_KEY}}],
        "retry": {"max_attempts": 2, "backoff_initial_ms": 1, "backoff_max_ms": 1}
    }))
    .unwrap();
    tracing::debug!(config = ?rc, "router config");
    let router = Router::from_config(&rc).unwrap();
    let req = ChatRequest::new("mock", vec![Message::user("hello")]);
    router.chat(&req, &RouteOptions::default()).await.unwrap();
    let mut s = router
        .chat_stream(&req, &RouteOptions::default())
        .await
        .unwrap()
        .value;
    while s.next().await.is_some() {}
    mock2.fail_next(503, 2);
    let e = router
        .chat(&req, &RouteOptions::default())
        .await
        .unwrap_err();
    tracing::error!(error = %e, debug = ?e, "router failure");
    let p: ProviderConfig =
        serde_json::from_value(json!({"kind": "anthropic", "api_key": ROUTER_KEY})).unwrap();
    tracing::warn!(provider = ?p, "provider config");

    let out = logs.text();
    // The capture really saw the traffic…
    assert!(
        out.contains("api_egress_audit"),
        "capture is not working:\n{out}"
    );
    assert!(out.contains("api egress call finished"));
    assert!(out.contains("provider operation failed"));
    assert!(out.contains("router failure"));
    // …and no key, anywhere.
    for k in [KEY, ROUTER_KEY, "sk-never-used-config-key"] {
        assert!(!out.contains(k), "key {k} found in log output");
    }
    // Nor the job token.
    assert!(
        !out.contains(token.expose()),
        "job token found in log output"
    );
}
