//! Job-scoped external inference end to end on real Podman and real sockets: a task with
//! `use_inference` goes dispatcher → Worker API (`jobs:run` with the job's inference
//! grant) → sandbox → inference socket → the job's own inference front (holding only
//! the job token) → API egress service (policy mode: rule, sealed credential, audit) →
//! the provider (the mock LLM, which demands its bearer key). The answer arrives; the
//! provider key appears in none of: the container environment, the RunJobRequest JSON,
//! the stored task and job rows, the gateway's API responses, the captured logs.
//!
//! Needs `CYNODE_TEST_DOCKER_HOST` and `CYNODE_TEST_IMAGE` (skipped without them unless
//! `CYNODE_REQUIRE_SERVICES=1`). One test per binary: it installs the tracing subscriber.

mod dispatch_support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cynode_core::proto::v1::worker::ExternalModelGrant;
use cynode_core::proto::v1::worker::InferenceGrant;
use cynode_egress::api::{
    Effect, EgressConfig, EgressState, NewCredential, PolicyDeps, api_call_rule,
    router as egress_router, store_credential,
};
use cynode_egress::job_host::EgressJobInference;
use cynode_egress::{CredentialCipher, Secret};
use cynode_sandbox::node::{
    JobInferenceHost, JobUpstream, Telemetry, WorkerApiConfig, WorkerApiState, worker_api_router,
};
use cynode_sandbox::{
    DockerConfig, Driver, DriverConfig, ImagePolicy, InferenceConfig, PullPolicy, RunAs,
};
use cynode_server::dispatch::{Dispatcher, JobInferenceConfig};
use cynode_server::gateway::TaskDispatcher;
use cynode_testkit::podman::{
    PodmanEnv, capture_traces, podman_env, section, serve, uds_http_helper,
};
use cynode_testkit::{DEFAULT_REPLY, MockLlm};
use dispatch_support::*;
use serde_json::{Value, json};

const KEY: &str = "sk-proj-DISPATCHLEAK-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const WORKER_TOKEN: &str = "inference-worker-token-77";
/// Standard base64 of 32 bytes of 0x2a.
const TOKEN_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// The worker node's shipped host (`cynode_egress::job_host`, what `cynode-worker`
/// wires in), recording the grant tokens it is handed.
struct RecordingHost {
    host: EgressJobInference,
    grants: Mutex<Vec<String>>,
}

#[async_trait]
impl JobInferenceHost for RecordingHost {
    async fn start(
        &self,
        task_id: &str,
        job_id: &str,
        grant: &InferenceGrant,
    ) -> Result<JobUpstream, String> {
        self.grants.lock().unwrap().push(grant.token.clone());
        self.host.start(task_id, job_id, grant).await
    }
}

#[tokio::test]
async fn an_inference_task_reaches_an_external_model_with_a_job_token_and_the_key_stays_out() {
    let Some(PodmanEnv { docker_host, image }) = podman_env() else {
        return;
    };
    let logs = capture_traces();

    let (_, provider) = MockLlm::builder()
        .require_api_key(KEY)
        .echo_auth(true)
        .start()
        .await;
    let (_, ollama) = MockLlm::builder().reply("local answer").start().await;

    // Orchestrator: store, user, rule, sealed credential, API egress in policy mode.
    let env = sqlite_env().await;
    let store = env.store.clone();
    let cipher = Arc::new(CredentialCipher::single("k1", &[21u8; 32]));
    let egress_config: EgressConfig = serde_json::from_value(json!({
        "job_token_key": TOKEN_KEY,
        "providers": {"openai": {"kind": "open_ai", "base_url": format!("{}/v1", provider.base_url())}}
    }))
    .unwrap();
    let egress_url = serve(egress_router(
        EgressState::policy(
            &egress_config,
            PolicyDeps::from_store(store.clone(), cipher.clone()),
        )
        .unwrap(),
    ))
    .await;

    // Worker node: real driver on Podman, its Ollama as the node upstream, and the
    // per-job inference host.
    let dir = tempfile::Builder::new()
        .prefix("cynode-dispinf-")
        .tempdir()
        .unwrap();
    let mount_root = dir.path().join("jobs");
    let mut dc = DriverConfig {
        owner: format!("t-{}", uuid::Uuid::new_v4().simple()),
        mount_root: mount_root.clone(),
        run_as: RunAs {
            uid: 10001,
            gid: 10001,
        },
        images: ImagePolicy {
            default_image: image.clone(),
            allowed: vec![],
            pull: PullPolicy::Never,
            pull_timeout_secs: 30,
        },
        inference: Some(InferenceConfig {
            upstream_url: ollama.base_url().to_string(),
            ..Default::default()
        }),
        default_timeout_secs: 120,
        stop_grace_secs: 2,
        ..Default::default()
    };
    dc.default_limits.memory_mb = 256;
    dc.default_limits.pids = 128;
    let driver = Driver::connect(&DockerConfig::new(&docker_host), dc)
        .await
        .unwrap();
    let state = WorkerApiState::new(
        driver,
        WorkerApiConfig {
            node_slug: "inf-1".into(),
            state_dir: dir.path().to_path_buf(),
            ..Default::default()
        },
        Arc::new(Telemetry::new()),
    );
    state.set_bearer_token(Some(WORKER_TOKEN));
    state.mark_configured();
    let host = Arc::new(RecordingHost {
        host: EgressJobInference::new(
            Some(ollama.base_url().to_string()),
            dir.path().join("job-inference"),
        ),
        grants: Mutex::new(Vec::new()),
    });
    assert!(state.set_job_inference_host(host.clone()));
    // Everything the node receives on jobs:run, as sent.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    let app = worker_api_router(state.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let seen = seen2.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap();
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&bytes).into_owned());
                next.run(axum::extract::Request::from_parts(parts, bytes.into()))
                    .await
            }
        },
    ));
    let node_url = serve(app).await;
    add_node(
        &store,
        "inf-1",
        &node_url,
        WORKER_TOKEN,
        caps("inf-1", &[], true, 2),
    )
    .await;

    let mut config = fast_config();
    config.job_inference = Some(JobInferenceConfig {
        token_key: Secret::new(TOKEN_KEY),
        api_egress_url: egress_url.clone(),
        external: vec![ExternalModelGrant {
            provider: "openai".into(),
            models: vec!["gpt-4o-mini".into()],
        }],
        ..Default::default()
    });
    let d = Dispatcher::new(store.clone(), env.queue.clone(), config).unwrap();
    let h = d.spawn().unwrap();
    let gw = Gateway::start(&store, Arc::new(d.clone())).await;
    // The gateway's logged-in user owns the task, so its API answers show the task.
    let owner = store.get_user_by_handle("admin").await.unwrap();
    store
        .create_access_rule(api_call_rule(
            owner.id.as_uuid(),
            "openai/chat",
            Effect::Allow,
        ))
        .await
        .unwrap();
    store_credential(
        store.as_ref(),
        &cipher,
        NewCredential {
            owner_type: "user".into(),
            owner_id: owner.id.as_uuid(),
            provider: "openai".into(),
            credential_type: "api_key".into(),
            credential_name: "default".into(),
            secret: Secret::new(KEY),
            expires_at: None,
        },
    )
    .await
    .unwrap();

    // The job waits for its helper (written into its workspace by the test, as an
    // operator would ship a tool), then asks the external model through its socket.
    let script = "H=/workspace/uds-http; S=/run/cynode/inference-proxy.sock; \
         while [ ! -x $H ]; do sleep 0.1; done; \
         echo '=== env'; env; \
         echo '=== external'; \
         $H http $S POST /v1/chat/completions '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'; \
         echo '=== local'; \
         $H http $S POST /api/chat '{\"model\":\"mock\",\"stream\":false,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'; \
         echo '=== end'";
    let mut sandbox = shell_inference(script);
    sandbox["image"] = json!(image);
    let (task, job) = task(&store, &owner, sandbox).await;
    d.task_created(&task, &job).await.unwrap();
    let helper = uds_http_helper().await;
    let ws = mount_root.join(job.id.to_string()).join("workspace");
    eventually("the job's workspace", || async {
        ws.is_dir().then_some(())
    })
    .await;
    let tmp = ws.join(".uds-http.tmp");
    std::fs::write(&tmp, helper.as_slice()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::rename(&tmp, ws.join("uds-http")).unwrap();

    let ended = wait_ended(&store, job.id).await;
    let doc = result_of(&ended);
    assert_eq!(doc["status"], "completed", "{doc}");
    let out = doc["stdout"].as_str().unwrap().to_string();
    let ext = section(&out, "external");
    assert!(ext.starts_with("STATUS 200"), "{ext}");
    let answer: Value = serde_json::from_str(ext.lines().nth(1).unwrap()).unwrap();
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with(DEFAULT_REPLY), "{content}");
    assert!(content.contains("[REDACTED]"), "{content}");
    // The node's own models still answer through the job's front.
    assert!(section(&out, "local").contains("local answer"), "{out}");
    assert!(ollama.request_count() >= 1);
    assert_eq!(provider.request_count(), 1);
    assert_eq!(
        provider.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // The node received a grant with a job token (not the key) for this job.
    let grants = host.grants.lock().unwrap().clone();
    assert_eq!(grants.len(), 1);
    let token = grants[0].clone();
    assert!(token.starts_with("cnj1."));
    // The job's front (a private Unix socket) is gone with the job.
    let fronts = dir.path().join("job-inference");
    assert_eq!(
        std::fs::read_dir(&fronts).unwrap().count(),
        0,
        "a front left behind"
    );
    // The job ended, so its token no longer opens the egress service, though it has
    // not expired: a leaked token of a finished job is useless.
    let late = reqwest::Client::new()
        .post(format!("{egress_url}/v1/call"))
        .bearer_auth(&token)
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
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let req: Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(req["inference"]["token"], token.as_str());
    assert!(!sent[0].contains(KEY), "key in the RunJobRequest");

    // Nowhere else: container env, stored rows, API responses, logs.
    let env_out = section(&out, "env");
    assert!(
        env_out.contains("INFERENCE_PROXY_URL=http+unix://"),
        "{env_out}"
    );
    assert!(
        !env_out.contains(KEY) && !env_out.contains(&token),
        "{env_out}"
    );
    let stored_job = serde_json::to_string(&store.get_job(job.id).await.unwrap()).unwrap();
    let stored_task = serde_json::to_string(&store.get_task(task.id).await.unwrap()).unwrap();
    for (what, text) in [("job row", &stored_job), ("task row", &stored_task)] {
        assert!(!text.contains(KEY), "key in the {what}");
        assert!(!text.contains(&token), "job token in the {what}");
    }
    // The owner's view through the API: the task, its result and logs.
    for path in [
        "/v1/tasks".to_string(),
        format!("/v1/tasks/{}", task.id),
        format!("/v1/tasks/{}/result", task.id),
        format!("/v1/tasks/{}/logs", task.id),
    ] {
        let (status, v) = gw.get(&path).await;
        assert_eq!(status, 200, "{path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains(KEY) && !text.contains(&token),
            "{path}: {text}"
        );
    }
    h.shutdown().await;
    let logs = logs.text();
    assert!(
        logs.contains("api_egress_audit"),
        "the capture saw the egress logs"
    );
    assert!(!logs.contains(KEY), "key in the logs");
    assert!(!logs.contains(&token), "job token in the logs");
}
