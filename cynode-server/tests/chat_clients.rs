//! Real clients against the gateway on a real socket: the official `openai` Python
//! package (models, completion, streaming, errors, threads) and schemathesis over the
//! served OpenAPI document. Both run with `$CYNODE_TEST_PYTHON` (the test venv holds
//! pytest, openai and schemathesis); the upstream is the mock LLM behind the real model
//! router.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cynode_core::auth::{PasswordParams, bootstrap_admin_with, issue_access_token};
use cynode_core::store::{SqliteStore, Store};
use cynode_egress::router::{Router, RouterConfig};
use cynode_server::gateway::{ChatInference, GatewayConfig, GatewayState, LoginRateLimit, router};
use cynode_testkit::{MockHandle, MockLlm};
use serde_json::json;

const REPLY: &str = "Hello from the mock upstream, in several words.";

fn python() -> Option<String> {
    cynode_testkit::service_var("CYNODE_TEST_PYTHON")
}

struct Served {
    url: String,
    token: String,
    _dir: tempfile::TempDir,
    _mock: MockHandle,
    server: tokio::task::JoinHandle<()>,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("gw.db"))
            .await
            .expect("sqlite"),
    );
    let admin = bootstrap_admin_with(
        store.as_ref(),
        "admin",
        "admin123",
        &PasswordParams::insecure_fast_for_tests(),
    )
    .await
    .expect("bootstrap");
    let (_, mock) = MockLlm::builder().reply(REPLY).start().await;
    let cfg: RouterConfig = serde_json::from_value(json!({
        "local": [{"name": "node-1", "provider": {"kind": "open_ai", "base_url": format!("{}/v1", mock.base_url())}}],
        "retry": {"backoff_initial_ms": 10, "backoff_max_ms": 20},
    }))
    .expect("router config");
    let inference = ChatInference::new(Arc::new(Router::from_config(&cfg).expect("router")));
    let config = GatewayConfig {
        // Generated requests hammer login; keep the limiter out of their way.
        login_rate_limit: LoginRateLimit {
            per_ip: 0,
            failures_per_handle_ip: 0,
            ..Default::default()
        },
        ..common::test_config()
    };
    let state = GatewayState::builder(store.clone(), common::test_keys())
        .config(config)
        .inference(inference)
        .build();
    let (token, _) = issue_access_token(
        &common::test_keys(),
        admin.id,
        "admin",
        chrono::Utc::now(),
        Duration::from_secs(3600),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Served {
        url: format!("http://{addr}"),
        token,
        _dir: dir,
        _mock: mock,
        server,
    }
}

async fn pytest(py: &str, file: &str, s: &Served) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let out = tokio::process::Command::new(py)
        .args(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", file])
        .current_dir(&dir)
        .env("CYNODE_GATEWAY_URL", &s.url)
        .env("CYNODE_GATEWAY_TOKEN", &s.token)
        .env("CYNODE_MOCK_REPLY", REPLY)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run pytest");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "pytest {file} failed:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_lists_completes_and_streams() {
    let Some(py) = python() else { return };
    let s = serve().await;
    pytest(&py, "test_openai_client.py", &s).await;
    s.server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_schema_violation() {
    let Some(py) = python() else { return };
    let s = serve().await;
    pytest(&py, "test_schemathesis.py", &s).await;
    s.server.abort();
}
