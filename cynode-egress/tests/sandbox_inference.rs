//! Key-leak proof on real Podman: a sandbox job uses inference through its per-job
//! socket to reach an external-provider model. The path is sandbox → inference proxy
//! (Unix socket) → the job's inference front ([`JobInference::serve_unix`], on a
//! private Unix socket of the node) → model router → API egress
//! service (job-scoped token) → provider (the mock LLM, which demands its bearer key and
//! echoes it back). The job gets its answer, while the provider key is absent from the
//! container's environment, the job spec, the stored job payload, the answer, the job's
//! output, the database files and every captured log line; the job token stays out of
//! the sandbox too.
//!
//! Needs `CYNODE_TEST_DOCKER_HOST` and `CYNODE_TEST_IMAGE` (skipped without them unless
//! `CYNODE_REQUIRE_SERVICES=1`). One test per binary: it installs the process-wide
//! tracing subscriber.

use std::sync::Arc;

use chrono::Utc;
use cynode_core::{
    JobId,
    model::{JobStatus as StoredJobStatus, JobUpdate, NewJob, NewTask, NewUser},
    store::{AccessAuditFilter, SqliteStore, Store},
};
use cynode_egress::{
    CredentialCipher, Secret,
    api::{
        Decision, Effect, EgressConfig, EgressState, JobClaims, JobTokenKey, NewCredential,
        PolicyDeps, api_call_rule, router as egress_router, store_credential,
    },
    router::JobInference,
};
use cynode_sandbox::{
    DockerConfig, Driver, DriverConfig, ImagePolicy, InferenceAccess, InferenceConfig, InputFile,
    JobSpec, JobStatus, PullPolicy, RunAs,
};
use cynode_testkit::podman::{
    PodmanEnv, capture_traces, podman_env, section, serve, uds_http_helper,
};
use cynode_testkit::{DEFAULT_REPLY, MockLlm};
use serde_json::json;

const KEY: &str = "sk-proj-SANDBOXLEAK-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const LOCAL_REPLY: &str = "answer from the node's own model";
const SANDBOX_UID: u32 = 10001;

#[tokio::test]
async fn a_sandbox_reaches_an_external_model_through_the_socket_without_ever_seeing_the_key() {
    let Some(PodmanEnv { docker_host, image }) = podman_env() else {
        return;
    };
    let logs = capture_traces();

    // The external provider demands KEY and echoes whatever credential it receives;
    // the node's own model server needs none.
    let (_, provider) = MockLlm::builder()
        .require_api_key(KEY)
        .echo_auth(true)
        .start()
        .await;
    let (_, ollama) = MockLlm::builder().reply(LOCAL_REPLY).start().await;

    // Orchestrator side: SQLite store with the user, task, rule, sealed credential.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("orchestrator.db"))
            .await
            .unwrap(),
    );
    let user = store
        .create_user(NewUser {
            handle: "erin".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let task = store
        .create_task(NewTask {
            created_by: Some(user.id),
            name: "summarise".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .create_access_rule(api_call_rule(
            user.id.as_uuid(),
            "openai/chat",
            Effect::Allow,
        ))
        .await
        .unwrap();
    let cipher = Arc::new(CredentialCipher::single("k1", &[21u8; 32]));
    store_credential(
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
    let token_key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([33u8; 32])
    };
    let egress_config: EgressConfig = serde_json::from_value(json!({
        "job_token_key": token_key,
        "providers": {"openai": {"kind": "open_ai", "base_url": format!("{}/v1", provider.base_url())}}
    }))
    .unwrap();
    let egress_url = serve(egress_router(
        EgressState::policy(
            &egress_config,
            PolicyDeps::from_store(store.clone(), cipher),
        )
        .unwrap(),
    ))
    .await;

    // The dispatcher stores the job (its payload is what travels to the node) and
    // issues the job-scoped token the worker uses for this job's inference.
    let job_id = JobId::new();
    let payload = json!({
        "version": 1, "task_id": task.id.to_string(), "job_id": job_id.to_string(),
        "sandbox": {"image": image, "command": ["sh", "-c", "…"], "use_inference": true,
                    "network_policy": "none", "timeout_seconds": 120}
    });
    store
        .create_job(NewJob {
            id: job_id,
            task_id: task.id,
            payload,
        })
        .await
        .unwrap();
    let set_status = |status| {
        let store = store.clone();
        async move {
            store
                .update_job(
                    job_id,
                    JobUpdate {
                        status: Some(status),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
    };
    // Running, as the dispatcher marks it before the node starts it.
    set_status(StoredJobStatus::Running).await;
    let job_token = JobTokenKey::from_base64(&Secret::new(token_key))
        .unwrap()
        .issue(&JobClaims::new(
            task.id,
            job_id,
            Utc::now(),
            chrono::Duration::minutes(10),
        ));

    // Worker side: this job's router (local Ollama + external provider via egress,
    // holding only the job token) behind the inference front the sandbox proxy uses.
    let job_inference: JobInference = serde_json::from_value(json!({
        "ollama_url": ollama.base_url(),
        "local_models": ["tiny"],
        "api_egress_url": egress_url,
        "token": job_token.expose(),
        "external": [{"provider": "openai", "models": ["gpt-4o-mini"]}]
    }))
    .unwrap();
    let mounts = tempfile::Builder::new()
        .prefix("cynode-egress-sbx-")
        .tempdir()
        .unwrap();
    let front = job_inference
        .serve_unix(&mounts.path().join("fronts"))
        .await
        .unwrap();
    assert!(front.url().starts_with("unix:///"), "{}", front.url());
    let mut config = DriverConfig {
        owner: format!("t-{}", uuid::Uuid::new_v4().simple()),
        mount_root: mounts.path().join("jobs"),
        run_as: RunAs {
            uid: SANDBOX_UID,
            gid: SANDBOX_UID,
        },
        images: ImagePolicy {
            default_image: image.clone(),
            allowed: vec![],
            pull: PullPolicy::Never,
            pull_timeout_secs: 30,
        },
        inference: Some(InferenceConfig {
            upstream_url: front.url().to_string(),
            ..Default::default()
        }),
        default_timeout_secs: 120,
        stop_grace_secs: 2,
        ..Default::default()
    };
    config.default_limits.memory_mb = 256;
    config.default_limits.pids = 128;
    let driver = Driver::connect(&DockerConfig::new(&docker_host), config)
        .await
        .unwrap();

    let script = "H=/workspace/uds-http; S=/run/cynode/inference-proxy.sock; \
         echo '=== env'; env; \
         echo '=== external'; \
         $H http $S POST /v1/chat/completions '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'; \
         echo '=== local'; \
         $H http $S POST /api/chat '{\"model\":\"tiny\",\"stream\":false,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'; \
         echo '=== end'";
    let spec = JobSpec::new(image.clone(), ["sh", "-c", script])
        .with_ids(task.id.to_string(), job_id.to_string())
        .with_inference(InferenceAccess {
            allowed_models: Some(vec!["gpt-4o-mini".into(), "tiny".into()]),
            ..Default::default()
        })
        .with_workspace_file(InputFile::executable(
            "uds-http",
            uds_http_helper().await.to_vec(),
        ));
    let spec_text = format!("{spec:?}");
    let result = driver.run(spec).await.unwrap();
    let out = result.stdout.text.clone();
    assert_eq!(
        result.status,
        JobStatus::Succeeded,
        "stdout {out} stderr {}",
        result.stderr.text
    );

    // The job got both answers through the socket.
    let ext = section(&out, "external");
    assert!(ext.starts_with("STATUS 200"), "{ext}");
    let answer: serde_json::Value = serde_json::from_str(
        ext.lines()
            .nth(1)
            .unwrap_or_else(|| panic!("no body: {ext}")),
    )
    .unwrap();
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {answer}"));
    assert!(content.starts_with(DEFAULT_REPLY), "{content}");
    // The provider echoed the credential it received; the egress path redacted it.
    assert!(content.contains("[REDACTED]"), "{content}");
    let local = section(&out, "local");
    assert!(
        local.starts_with("STATUS 200") && local.contains(LOCAL_REPLY),
        "{local}"
    );
    // The provider really received the key, injected by the egress service only.
    assert_eq!(provider.request_count(), 1);
    assert_eq!(
        provider.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(ollama.request_count(), 1);
    let audit = store
        .list_access_audit(&AccessAuditFilter::default())
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].decision, audit[0].resource.as_str()),
        (Decision::Allow, "openai/chat")
    );
    assert_eq!(audit[0].job_id, Some(job_id));

    // The job is over: its token, still unexpired, no longer reaches the provider.
    set_status(StoredJobStatus::Completed).await;
    let late = reqwest::Client::new()
        .post(format!("{egress_url}/v1/call"))
        .bearer_auth(job_token.expose())
        .json(&json!({
            "provider": "openai", "operation": "chat", "task_id": task.id.to_string(),
            "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "again"}]}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 401);
    assert_eq!(
        provider.request_count(),
        1,
        "the late call reached no provider"
    );

    // The key is nowhere the job or its operators can see it.
    let env = section(&out, "env");
    assert!(env.contains("INFERENCE_PROXY_URL=http+unix://"), "{env}");
    assert!(!env.contains(KEY), "key in the container environment");
    assert!(
        !env.contains(job_token.expose()),
        "job token in the container environment"
    );
    assert!(!spec_text.contains(KEY), "key in the job spec");
    let stored_job = store.get_job(job_id).await.unwrap();
    assert!(
        !serde_json::to_string(&stored_job).unwrap().contains(KEY),
        "key in the stored job payload"
    );
    assert!(!out.contains(KEY), "key in the job's stdout");
    assert!(!result.stderr.text.contains(KEY), "key in the job's stderr");
    assert!(
        !format!("{result:?}").contains(KEY),
        "key in the job result"
    );
    drop(store);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "plaintext key in {}",
            p.display()
        );
    }
    let logs = logs.text();
    assert!(
        logs.contains("api_egress_audit") && logs.contains("sandbox_job"),
        "the capture saw the egress and sandbox logs:\n{logs}"
    );
    assert!(!logs.contains(KEY), "key in the logs");
    assert!(!logs.contains(job_token.expose()), "job token in the logs");
}
