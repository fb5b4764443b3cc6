//! The API egress service on a real loopback socket, in policy mode (tasks,
//! credentials, access-control rules and the audit log on memory, SQLite and
//! PostgreSQL) and stub mode, against the mock LLM server.

mod common;

use common::{Backend, job_in, set_job_status};

use std::{net::SocketAddr, sync::Arc};

use chrono::Utc;
use cynode_core::{
    JobId, TaskId, UserId,
    model::{JobStatus, NewTask},
    store::{AccessAuditFilter, AccessRuleFilter, Store},
};
use cynode_egress::{
    CredentialCipher, Secret,
    api::{
        AccessAudit, Decision, Effect, EgressConfig, EgressState, JobClaims, JobTokenKey,
        NewCredential, PolicyDeps, api_call_rule, router, store_credential,
    },
    router::{
        ChatRequest, EgressProviderConfig, Message, ProviderConfig, RouteOptions, Router,
        RoutingPrefs, TargetOptions,
    },
};
use cynode_testkit::{DEFAULT_REPLY, MockHandle, MockLlm};
use serde_json::{Value, json};

const KEY: &str = "sk-live-4f9d0c2b7a1e6f3d8c5b0a9e7d6c5b4a";
const ANTHROPIC_KEY: &str = "sk-ant-api03-ZyXwVuTsRqPoNmLkJiHgFeDcBa-0123";
const SERVICE_BEARER: &str = "service-bearer-token-for-tests";

struct Env {
    url: String,
    store: Arc<dyn Store>,
    _guard: common::StoreGuard,
    tokens: JobTokenKey,
    user: UserId,
    task: TaskId,
    job: JobId,
    openai: MockHandle,
    anthropic: MockHandle,
    client: reqwest::Client,
}

fn token_key() -> Secret {
    use base64::Engine;
    Secret::new(base64::engine::general_purpose::STANDARD.encode([42u8; 32]))
}

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Policy mode: user alice owns a task; two mocks demand the real keys (OpenAI
/// dialect: `KEY`, Anthropic: `ANTHROPIC_KEY`) and echo the credential they received
/// into the reply, like a provider that leaks it.
async fn policy_env(backend: Backend, rules: &[&str], with_credentials: bool) -> Option<Env> {
    let (store, guard) = common::open_store(backend).await?;
    let (_, openai) = MockLlm::builder()
        .require_api_key(KEY)
        .echo_auth(true)
        .start()
        .await;
    let (_, anthropic) = MockLlm::builder()
        .require_api_key(ANTHROPIC_KEY)
        .echo_auth(true)
        .start()
        .await;
    let (user, task) = common::user_with_task(store.as_ref(), "alice", "t1").await;
    for rule in rules {
        let (effect, pattern) = rule.split_once(' ').unwrap();
        let effect = if effect == "allow" {
            Effect::Allow
        } else {
            Effect::Deny
        };
        store
            .create_access_rule(api_call_rule(user.id.as_uuid(), pattern, effect))
            .await
            .unwrap();
    }
    let cipher = Arc::new(CredentialCipher::single("k1", &[9u8; 32]));
    if with_credentials {
        for (provider, key) in [("OpenAI", KEY), ("anthropic", ANTHROPIC_KEY)] {
            store_credential(
                store.as_ref(),
                &cipher,
                NewCredential {
                    owner_type: "user".into(),
                    owner_id: user.id.as_uuid(),
                    provider: provider.into(),
                    credential_type: "api_key".into(),
                    credential_name: "default".into(),
                    secret: Secret::new(key),
                    expires_at: None,
                },
            )
            .await
            .unwrap();
        }
    }
    let config: EgressConfig = serde_json::from_value(json!({
        "job_token_key": token_key().expose(),
        "bearer_token": SERVICE_BEARER,
        "providers": {
            "openai": {"kind": "open_ai", "base_url": format!("{}/v1", openai.base_url())},
            "anthropic": {"kind": "anthropic", "base_url": anthropic.base_url()},
        }
    }))
    .unwrap();
    let deps = PolicyDeps::from_store(store.clone(), cipher);
    let state = EgressState::policy(&config, deps).unwrap();
    assert_eq!(state.mode_name(), "policy");
    let addr = serve(router(state)).await;
    // The job holding the tokens runs (the dispatcher marks it before the node starts).
    let job = job_in(store.as_ref(), task.id, JobStatus::Running).await;
    Some(Env {
        url: format!("http://{addr}"),
        store,
        _guard: guard,
        tokens: JobTokenKey::from_base64(&token_key()).unwrap(),
        user: user.id,
        task: task.id,
        job,
        openai,
        anthropic,
        client: reqwest::Client::new(),
    })
}

impl Env {
    fn token(&self) -> String {
        self.token_for(self.task, self.job, chrono::Duration::minutes(10))
    }

    fn token_for(&self, task: TaskId, job: JobId, ttl: chrono::Duration) -> String {
        self.tokens
            .issue(&JobClaims::new(task, job, Utc::now(), ttl))
            .expose()
            .to_string()
    }

    async fn call(&self, token: Option<&str>, body: Value) -> (u16, String) {
        let mut rb = self
            .client
            .post(format!("{}/v1/call", self.url))
            .json(&body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    fn chat_body(&self, provider: &str) -> Value {
        json!({
            "provider": provider,
            "operation": "chat",
            "task_id": self.task.to_string(),
            "params": {"model": "mock", "messages": [{"role": "user", "content": "hello"}]}
        })
    }

    /// The access-control audit log as stored, oldest first.
    async fn audit_records(&self) -> Vec<AccessAudit> {
        let mut v = self
            .store
            .list_access_audit(&AccessAuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        v.reverse();
        v
    }

    /// Deletes every access-control rule.
    async fn clear_rules(&self) {
        for r in self
            .store
            .list_access_rules(&AccessRuleFilter::default())
            .await
            .unwrap()
        {
            self.store.delete_access_rule(r.id).await.unwrap();
        }
    }

    fn upstream_requests(&self) -> usize {
        self.openai.request_count() + self.anthropic.request_count()
    }
}

fn detail(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn chat_reaches_the_provider_with_the_injected_key_and_the_key_never_comes_back(
    backend: Backend,
) {
    let Some(env) = policy_env(backend, &["allow openai/chat", "allow anthropic/*"], true).await
    else {
        return;
    };

    // The caller holds only a job token, never a provider key.
    let token = env.token();
    assert!(!token.contains(KEY));
    let (status, body) = env.call(Some(&token), env.chat_body(" OpenAI ")).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    let content = v["result"]["content"].as_str().unwrap();
    assert!(content.starts_with(DEFAULT_REPLY), "{content}");
    // The mock echoed the key it received; the service scrubbed it.
    assert!(content.ends_with("auth=[REDACTED]"), "{content}");
    assert!(!body.contains(KEY), "key leaked in the response: {body}");

    // The provider saw exactly the right Authorization header.
    let sent = env.openai.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/chat/completions");
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(
        !sent[0].body_text().contains(&token),
        "the job token is not forwarded upstream"
    );

    // Anthropic gets its own key as x-api-key.
    let (status, body) = env.call(Some(&token), env.chat_body("anthropic")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(ANTHROPIC_KEY));
    assert_eq!(
        env.anthropic.requests()[0].header("x-api-key"),
        Some(ANTHROPIC_KEY)
    );

    // Stored rows hold only ciphertext.
    for cred in env
        .store
        .list_credentials("user", env.user.as_uuid())
        .await
        .unwrap()
    {
        for key in [KEY, ANTHROPIC_KEY] {
            assert!(
                !cred
                    .ciphertext
                    .windows(key.len())
                    .any(|w| w == key.as_bytes()),
                "plaintext in ciphertext"
            );
            assert_ne!(cred.ciphertext, key.as_bytes());
        }
        assert_eq!(cred.kid.as_deref(), Some("k1"));
        assert!(!serde_json::to_string(&cred).unwrap().contains("ciphertext"));
    }

    // Allow decisions are audited with subject, resource and task.
    let audit = env.audit_records().await;
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].decision, Decision::Allow);
    assert_eq!(audit[0].resource, "openai/chat");
    assert_eq!(audit[0].subject_id, Some(env.user.as_uuid()));
    assert_eq!(audit[0].task_id, Some(env.task));
    assert_eq!(audit[0].job_id, Some(env.job));
    assert_eq!(audit[0].reason, None);
    assert_eq!(audit[1].resource, "anthropic/chat");
}

async fn callers_without_a_valid_job_token_are_refused(backend: Backend) {
    let Some(env) = policy_env(backend, &["allow openai/*"], true).await else {
        return;
    };
    let body = env.chat_body("openai");

    // No token.
    let (status, text) = env.call(None, body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"title": "Unauthorized", "status": 401})
    );
    // Expired token.
    let expired = env.token_for(env.task, env.job, chrono::Duration::seconds(-1));
    assert_eq!(env.call(Some(&expired), body.clone()).await.0, 401);
    // Token signed with another key.
    let other = JobTokenKey::new(&[7u8; 32]).unwrap();
    let forged = other.issue(&JobClaims::new(
        env.task,
        env.job,
        Utc::now(),
        chrono::Duration::minutes(5),
    ));
    assert_eq!(env.call(Some(forged.expose()), body.clone()).await.0, 401);
    // Garbage and near-misses.
    assert_eq!(
        env.call(Some("cnj1.garbage.token"), body.clone()).await.0,
        401
    );
    assert_eq!(
        env.call(Some("service-bearer-token-for-test"), body.clone())
            .await
            .0,
        401
    );

    // A valid token of another task (wrong job) cannot be used for this task.
    let other_task = env
        .store
        .create_task(NewTask {
            created_by: Some(env.user),
            name: "t2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let other_job = job_in(env.store.as_ref(), other_task.id, JobStatus::Running).await;
    let wrong = env.token_for(other_task.id, other_job, chrono::Duration::minutes(5));
    let (status, text) = env.call(Some(&wrong), body.clone()).await;
    assert_eq!(status, 403);
    assert_eq!(detail(&text), "token not valid for this task");
    // Nor for another job of the same task.
    let mut with_job = body.clone();
    with_job["job_id"] = json!(JobId::new().to_string());
    let (status, text) = env.call(Some(&env.token()), with_job).await;
    assert_eq!(status, 403);
    assert_eq!(detail(&text), "token not valid for this task");

    assert_eq!(
        env.upstream_requests(),
        0,
        "no refused call reached a provider"
    );
    let audit = env.audit_records().await;
    assert_eq!(audit.len(), 2, "the two token-binding refusals are audited");
    assert!(audit.iter().all(|a| a.decision == Decision::Deny));

    // The job token alone names the task: task_id may be omitted.
    let mut no_task = body.clone();
    no_task.as_object_mut().unwrap().remove("task_id");
    let (status, text) = env.call(Some(&env.token()), no_task).await;
    assert_eq!(status, 200, "{text}");
    // The static service bearer works too (trusted orchestrator services).
    assert_eq!(env.call(Some(SERVICE_BEARER), body).await.0, 200);
}

async fn policy_steps_deny_with_the_contract_reasons_and_audit(backend: Backend) {
    let Some(env) = policy_env(
        backend,
        &["allow openai/*", "deny openai/list_models"],
        true,
    )
    .await
    else {
        return;
    };
    let bearer = Some(SERVICE_BEARER);
    let base = env.chat_body("openai");
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = base.clone();
                b.as_object_mut().unwrap().remove("task_id");
                b
            },
            "task_id required",
        ),
        (
            {
                let mut b = base.clone();
                b["task_id"] = json!("not-a-uuid");
                b
            },
            "invalid task_id",
        ),
        (
            {
                let mut b = base.clone();
                b["task_id"] = json!(TaskId::new().to_string());
                b
            },
            "task not found",
        ),
        (
            {
                let mut b = base.clone();
                b["operation"] = json!("list_models");
                b
            },
            "policy denies provider/operation",
        ),
        (
            {
                let mut b = base.clone();
                b["provider"] = json!("github");
                b
            },
            "provider/operation not allowed by policy",
        ),
    ];
    for (body, reason) in &cases {
        let (status, text) = env.call(bearer, body.clone()).await;
        assert_eq!(status, 403, "{reason}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"title": "Forbidden", "status": 403, "detail": reason})
        );
    }
    assert_eq!(env.upstream_requests(), 0);
    let audit = env.audit_records().await;
    assert_eq!(audit.len(), cases.len());
    for (a, (_, reason)) in audit.iter().zip(&cases) {
        assert_eq!(a.decision, Decision::Deny);
        assert_eq!(a.reason.as_deref(), Some(*reason));
        assert_eq!(a.action, "api.call");
        assert_eq!(a.resource_type, "api.provider_operation");
    }
    assert_eq!(audit[0].task_id, None);
    assert_eq!(audit[0].subject_id, None);
    assert_eq!(audit[3].resource, "openai/list_models");
    assert_eq!(audit[3].subject_id, Some(env.user.as_uuid()));

    // A task without a creator has no user context.
    let orphan = env
        .store
        .create_task(NewTask {
            name: "orphan".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut b = base.clone();
    b["task_id"] = json!(orphan.id.to_string());
    assert_eq!(
        detail(&env.call(bearer, b).await.1),
        "task has no user context"
    );
}

async fn credentials_must_exist_and_be_active(backend: Backend) {
    let Some(env) = policy_env(backend, &["allow openai/chat"], false).await else {
        return;
    };
    let (status, text) = env.call(Some(&env.token()), env.chat_body("openai")).await;
    assert_eq!(status, 403);
    assert_eq!(detail(&text), "no active credential for provider");

    // Store one, disable it: still refused. Re-enable: allowed.
    let cipher = CredentialCipher::single("k1", &[9u8; 32]);
    let cred = store_credential(
        env.store.as_ref(),
        &cipher,
        NewCredential {
            owner_type: "user".into(),
            owner_id: env.user.as_uuid(),
            provider: "openai".into(),
            credential_type: "api_key".into(),
            credential_name: "work".into(),
            secret: Secret::new(KEY),
            expires_at: None,
        },
    )
    .await
    .unwrap();
    env.store
        .set_credential_active(cred.id, false)
        .await
        .unwrap();
    assert_eq!(
        detail(
            &env.call(Some(&env.token()), env.chat_body("openai"))
                .await
                .1
        ),
        "no active credential for provider"
    );
    env.store
        .set_credential_active(cred.id, true)
        .await
        .unwrap();
    assert_eq!(
        env.call(Some(&env.token()), env.chat_body("openai"))
            .await
            .0,
        200
    );

    // Choosing a credential by name that does not exist is refused.
    let mut b = env.chat_body("openai");
    b["credential_name"] = json!("personal");
    assert_eq!(
        detail(&env.call(Some(&env.token()), b).await.1),
        "no active credential for provider"
    );
}

async fn bad_bodies_unimplemented_operations_and_upstream_failures(backend: Backend) {
    let Some(env) = policy_env(backend, &["allow openai/*", "allow github/*"], true).await else {
        return;
    };
    let url = format!("{}/v1/call", env.url);
    let resp = env
        .client
        .post(&url)
        .bearer_auth(env.token())
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"title": "Bad Request", "status": 400, "detail": "invalid JSON"})
    );
    let resp = env
        .client
        .get(&url)
        .bearer_auth(env.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let health = env
        .client
        .get(format!("{}/healthz", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    // Allowed, credential present, but no adapter for the operation: 501.
    let mut b = env.chat_body("openai");
    b["operation"] = json!("create_issue");
    let (status, text) = env.call(Some(&env.token()), b).await;
    assert_eq!(status, 501);
    assert_eq!(detail(&text), "operation not implemented");

    // Bad params: an error envelope, not retryable, nothing sent upstream.
    let mut b = env.chat_body("openai");
    b["params"] = json!({"messages": "hello"});
    let (status, text) = env.call(Some(&env.token()), b).await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["error"]["type"], "invalid_request");
    assert_eq!(v["error"]["details"]["retryable"], false);
    assert_eq!(env.openai.request_count(), 0);

    // Upstream outage: a retryable error envelope.
    env.openai.fail_next(503, 1);
    let (status, text) = env.call(Some(&env.token()), env.chat_body("openai")).await;
    assert_eq!(status, 502, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "unavailable");
    assert_eq!(v["error"]["details"]["retryable"], true);
    assert!(!text.contains(KEY));

    // Upstream refuses the key and echoes it in its error: scrubbed.
    env.openai
        .push_failure(cynode_testkit::Failure::status(401, 1).with_body(format!(
            r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#
        )));
    let (status, text) = env.call(Some(&env.token()), env.chat_body("openai")).await;
    assert_eq!(status, 502, "{text}");
    assert!(!text.contains(KEY), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["type"],
        "auth"
    );

    // list_models works through the same path.
    let mut b = env.chat_body("openai");
    b["operation"] = json!("list_models");
    let (status, text) = env.call(Some(&env.token()), b).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["result"]["models"][0]["id"],
        "mock"
    );
}

async fn the_router_reaches_external_providers_through_egress_without_a_key(backend: Backend) {
    let Some(env) = policy_env(backend, &["allow openai/chat"], true).await else {
        return;
    };
    // A router whose external "openai" target is the egress service, holding only a
    // job token.
    let egress = ProviderConfig::Egress(EgressProviderConfig {
        base_url: env.url.clone(),
        provider: "openai".into(),
        token: Secret::new(env.token()),
        task_id: None,
    });
    let provider = egress
        .build(
            "openai",
            &cynode_egress::router::HttpClient::with_defaults().unwrap(),
        )
        .unwrap();
    let router = Router::builder()
        .external(provider, TargetOptions::default())
        .build()
        .unwrap();
    let opts = RouteOptions {
        prefs: RoutingPrefs {
            allowed_external_providers: vec!["openai".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let r = router
        .chat(&ChatRequest::new("mock", vec![Message::user("hi")]), &opts)
        .await
        .unwrap();
    assert!(r.value.content.starts_with(DEFAULT_REPLY));
    assert!(!r.value.content.contains(KEY));
    assert_eq!(
        env.openai.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // A policy denial surfaces as a non-retryable refusal.
    env.clear_rules().await;
    let e = router
        .chat(&ChatRequest::new("mock", vec![Message::user("hi")]), &opts)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "auth");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn stub_mode_allowlist_and_keyless_endpoints() {
    let (_, mock) = MockLlm::start().await;
    let config: EgressConfig = serde_json::from_value(json!({
        "allowed": ["openai", "github", "ollama"],
        "providers": {"ollama": {"kind": "ollama", "base_url": mock.base_url()}}
    }))
    .unwrap();
    let state = EgressState::stub(&config).unwrap();
    assert_eq!(state.mode_name(), "stub");
    let addr = serve(router(state)).await;
    let client = reqwest::Client::new();
    let call = |body: Value| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("http://{addr}/v1/call"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, text) = call(json!({"provider": "Slack", "operation": "post_message"})).await;
    assert_eq!(status, 403);
    assert_eq!(detail(&text), "provider not allowed");
    let (status, text) = call(json!({"provider": "github", "operation": "create_issue"})).await;
    assert_eq!(status, 501);
    assert_eq!(detail(&text), "operation not implemented");
    let (status, text) = call(json!({
        "provider": "ollama", "operation": "chat",
        "params": {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
    }))
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["result"]["content"],
        DEFAULT_REPLY
    );
    assert!(mock.requests()[0].header("authorization").is_none());
}

/// A job token is revoked when its job ends: the same token that worked while the job
/// ran is refused like an expired one once the job is completed, failed or canceled
/// (and for a job that is not running or that the store does not know), while the
/// service bearer still acts for the task.
async fn a_job_token_is_refused_once_its_job_is_no_longer_running(backend: Backend) {
    let Some(env) = policy_env(backend, &["allow openai/chat"], true).await else {
        return;
    };
    let unauthorized = json!({"title": "Unauthorized", "status": 401});
    let body = env.chat_body("openai");

    for end in [JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled] {
        let job = job_in(env.store.as_ref(), env.task, JobStatus::Running).await;
        let token = env.token_for(env.task, job, chrono::Duration::minutes(10));
        let (status, text) = env.call(Some(&token), body.clone()).await;
        assert_eq!(status, 200, "while the job runs: {text}");
        let served = env.upstream_requests();

        set_job_status(env.store.as_ref(), job, end).await;
        let (status, text) = env.call(Some(&token), body.clone()).await;
        assert_eq!(status, 401, "after the job ended {end:?}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), unauthorized);
        assert_eq!(
            env.upstream_requests(),
            served,
            "a refused call reaches no provider"
        );
    }

    // Not running for other reasons: still queued (dispatched again after a retry),
    // lease expired, unknown to the store, or a job of another task.
    let queued = job_in(env.store.as_ref(), env.task, JobStatus::Queued).await;
    let lost = job_in(env.store.as_ref(), env.task, JobStatus::LeaseExpired).await;
    let other_task = env
        .store
        .create_task(NewTask {
            created_by: Some(env.user),
            name: "other".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let foreign = job_in(env.store.as_ref(), other_task.id, JobStatus::Running).await;
    for (what, job) in [
        ("queued", queued),
        ("lease expired", lost),
        ("unknown", JobId::new()),
        ("of another task", foreign),
    ] {
        let token = env.token_for(env.task, job, chrono::Duration::minutes(10));
        let (status, text) = env.call(Some(&token), body.clone()).await;
        assert_eq!(status, 401, "a job {what}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), unauthorized);
    }
    // The task itself is fine: the job's token is what was revoked.
    let (status, text) = env.call(Some(SERVICE_BEARER), body.clone()).await;
    assert_eq!(status, 200, "{text}");
    // Refusals of the caller come before policy evaluation: only the allowed calls
    // (three jobs while running, the service call) are audited.
    let audit = env.audit_records().await;
    assert_eq!(audit.len(), 4);
    assert!(audit.iter().all(|a| a.decision == Decision::Allow));
}

on_every_backend!(
    a_job_token_is_refused_once_its_job_is_no_longer_running,
    chat_reaches_the_provider_with_the_injected_key_and_the_key_never_comes_back,
    callers_without_a_valid_job_token_are_refused,
    policy_steps_deny_with_the_contract_reasons_and_audit,
    credentials_must_exist_and_be_active,
    bad_bodies_unimplemented_operations_and_upstream_failures,
    the_router_reaches_external_providers_through_egress_without_a_key,
);

/// §1.4/§1.5 when the database fails: the SQLite store is closed under the running
/// service, so the task lookup fails (`failed to resolve task`) and so does the audit
/// write, which is logged and does not change the answer.
#[tokio::test]
async fn a_failing_database_denies_with_the_contract_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(
        cynode_core::store::SqliteStore::open(&dir.path().join("egress.db"))
            .await
            .unwrap(),
    );
    let store: Arc<dyn Store> = sqlite.clone();
    let (user, task) = common::user_with_task(store.as_ref(), "frank", "t").await;
    store
        .create_access_rule(api_call_rule(
            user.id.as_uuid(),
            "openai/chat",
            Effect::Allow,
        ))
        .await
        .unwrap();
    let config: EgressConfig =
        serde_json::from_value(json!({"bearer_token": SERVICE_BEARER})).unwrap();
    let cipher = Arc::new(CredentialCipher::single("k1", &[9u8; 32]));
    let state = EgressState::policy(&config, PolicyDeps::from_store(store, cipher)).unwrap();
    let addr = serve(router(state)).await;
    let body = json!({"provider": "openai", "operation": "chat", "task_id": task.id.to_string()});
    let post = || {
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/call"))
            .bearer_auth(SERVICE_BEARER)
            .json(&body)
            .send()
    };
    // With the database up, the next step is the credential check.
    let r = post().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        detail(&r.text().await.unwrap()),
        "no active credential for provider"
    );

    sqlite.close().await;
    let r = post().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap(),
        json!({"title": "Forbidden", "status": 403, "detail": "failed to resolve task"})
    );
}
