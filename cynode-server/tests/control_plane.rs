//! Control-plane router tests: every node route and error row, the node-protocol
//! acceptance scenarios 1–8 and 21 at router level (SQLite; the scenario set also on
//! PostgreSQL via `CYNODE_TEST_PG_URL`), JWT expired/forged/user-token cases, and the
//! typed `ControlPlaneClient` against the router on a real 127.0.0.1 socket.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cynode_core::NodeId;
use cynode_core::auth::{JwtKey, JwtKeys, issue_access_token, issue_node_token};
use cynode_core::model::NodeStatus;
use cynode_core::store::{SqliteStore, Store};
use cynode_server::control_plane::{
    ControlPlaneConfig, ControlPlaneState, NOT_READY_NO_INFERENCE, NOT_READY_PMA,
    is_dispatchable_at, router,
};
use cynode_server::gateway::ManualClock;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "common/pg.rs"]
mod pg;

const PSK: &str = "test-psk-0123456789";
const SECRET: &str = "test jwt secret for the control plane";

// ------------------------------------------------------------------ harness

struct H {
    state: ControlPlaneState,
    clock: Arc<ManualClock>,
}

struct Resp {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    #[track_caller]
    fn problem(&self, status: u16, detail: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(self.content_type, "application/problem+json");
        let v = self.json();
        assert_eq!(v["status"], status);
        assert_eq!(v["detail"], detail, "{v}");
        assert!(v["type"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

fn config() -> ControlPlaneConfig {
    ControlPlaneConfig {
        registration_psk: PSK.into(),
        jwt_secret: SECRET.into(),
        public_url: "http://cp.test:12082/".into(),
        worker_api_bearer_token: Some("worker-token-1".into()),
        ..ControlPlaneConfig::default()
    }
}

impl H {
    fn new(store: Arc<dyn Store>) -> Self {
        Self::with(store, config())
    }
    fn with(store: Arc<dyn Store>, cfg: ControlPlaneConfig) -> Self {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let state = ControlPlaneState::builder(store, cfg)
            .clock(clock.clone())
            .build();
        Self { state, clock }
    }
    fn store(&self) -> &Arc<dyn Store> {
        self.state.store()
    }
    async fn send(&self, req: Request<Body>) -> Resp {
        let res = router(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Resp {
            status,
            content_type,
            body,
        }
    }
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Body>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(body) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(body),
            None => b.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }
    async fn post(&self, path: &str, token: Option<&str>, v: &Value) -> Resp {
        self.call(Method::POST, path, token, Some(Body::from(v.to_string())))
            .await
    }
    async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::GET, path, token, None).await
    }
    /// Registers `report` and returns (status, node id, jwt).
    async fn register(&self, report: &Value) -> (u16, NodeId, String) {
        let r = self
            .post(
                "/v1/nodes/register",
                None,
                &json!({"psk": PSK, "capability": report}),
            )
            .await;
        assert!(r.status.is_success(), "register: {} {}", r.status, r.text());
        let v = r.json();
        let jwt = v["auth"]["node_jwt"].as_str().expect("jwt").to_string();
        let who = cynode_core::auth::verify_node_token(self.state.keys(), &jwt, self.clock_now())
            .expect("valid token");
        (r.status.as_u16(), who.node_id, jwt)
    }
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use cynode_server::gateway::Clock;
        self.clock.now()
    }
    /// Registers, fetches the config and acks it `applied`; returns (node id, jwt, config).
    async fn onboard(&self, report: &Value) -> (NodeId, String, Value) {
        let (_, id, jwt) = self.register(report).await;
        let cfg = self.get("/v1/nodes/config", Some(&jwt)).await;
        assert_eq!(cfg.status, StatusCode::OK, "{}", cfg.text());
        let cfg = cfg.json();
        let slug = report["node"]["node_slug"].as_str().expect("slug");
        let ack = self
            .post(
                "/v1/nodes/config",
                Some(&jwt),
                &json!({"version": 1, "node_slug": slug, "config_version": cfg["config_version"],
                        "ack_at": "2026-01-01T00:00:00Z", "status": "applied"}),
            )
            .await;
        assert_eq!(ack.status, StatusCode::NO_CONTENT, "{}", ack.text());
        (id, jwt, cfg)
    }
}

fn report(slug: &str) -> Value {
    json!({
        "version": 1,
        "reported_at": "2026-01-01T00:00:00Z",
        "node": {"node_slug": slug, "name": slug, "labels": []},
        "platform": {"os": "linux", "arch": "amd64"},
        "compute": {"cpu_cores": 2, "ram_mb": 2048},
        "sandbox": {"supported": true, "features": ["netns"], "max_concurrency": 4},
        "inference": {"supported": true},
        "worker_api": {"base_url": format!("http://{slug}:12090")}
    })
}

fn with(mut v: Value, path: &[&str], x: Value) -> Value {
    let mut cur = &mut v;
    for (i, k) in path.iter().enumerate() {
        if i + 1 == path.len() {
            cur[*k] = x;
            break;
        }
        cur = &mut cur[*k];
    }
    v
}

async fn sqlite() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in_memory().await.expect("sqlite"))
}

// ------------------------------------------------------------------ scenarios

/// Scenario 1: wrong PSK → 401, nothing registered.
async fn wrong_psk(store: Arc<dyn Store>) {
    let h = H::new(store);
    for body in [
        json!({"psk": "nope", "capability": report("n1")}),
        json!({"capability": report("n1")}),
        json!({"psk": 5, "capability": report("n1")}),
        json!([]),
    ] {
        let r = h.post("/v1/nodes/register", None, &body).await;
        r.problem(401, "Invalid registration PSK");
        assert!(!r.text().contains("node_jwt"));
    }
    assert!(h.store().list_nodes().await.expect("list").is_empty());
}

/// Scenario 2: register twice: 201 then 200, same id, new JWT, URLs and expiry.
async fn register_twice(store: Arc<dyn Store>) {
    let h = H::new(store);
    let r = h
        .post(
            "/v1/nodes/register",
            None,
            &json!({"psk": PSK, "capability": report("node-01")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.content_type, "application/json");
    let v = r.json();
    assert_eq!(v["version"], 1);
    let ep = &v["orchestrator"]["endpoints"];
    assert_eq!(v["orchestrator"]["base_url"], "http://cp.test:12082");
    assert_eq!(
        ep["worker_registration_url"],
        "http://cp.test:12082/v1/nodes/register"
    );
    assert_eq!(
        ep["node_report_url"],
        "http://cp.test:12082/v1/nodes/capability"
    );
    assert_eq!(
        ep["node_config_url"],
        "http://cp.test:12082/v1/nodes/config"
    );
    let exp: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(v["auth"]["expires_at"].clone()).expect("expires_at");
    let expected = h.clock_now() + chrono::Duration::hours(24);
    assert!(
        (exp - expected).num_seconds().abs() <= 1,
        "{exp} vs {expected}"
    );
    let jwt1 = v["auth"]["node_jwt"].as_str().expect("jwt").to_string();

    let node = h.store().get_node_by_slug("node-01").await.expect("row");
    assert_eq!(node.status, NodeStatus::Active);
    assert_eq!(
        node.worker_api_target_url.as_deref(),
        Some("http://node-01:12090")
    );
    assert!(
        h.store()
            .latest_capabilities(node.id)
            .await
            .expect("snap")
            .is_some()
    );

    h.clock.advance(Duration::from_secs(2));
    let (status, id2, jwt2) = h.register(&report("node-01")).await;
    assert_eq!(status, 200);
    assert_eq!(id2, node.id);
    assert_ne!(jwt1, jwt2);
    assert_eq!(h.store().list_nodes().await.expect("list").len(), 1);
}

/// Scenario 3: validation rows of §2.2, in order, and nothing written.
async fn register_validation(store: Arc<dyn Store>) {
    let h = H::new(store);
    let r = h
        .call(
            Method::POST,
            "/v1/nodes/register",
            None,
            Some(Body::from("not json")),
        )
        .await;
    r.problem(400, "Invalid request body");
    // Not JSON wins over a wrong PSK; a wrong PSK wins over a bad version.
    let r = h
        .post(
            "/v1/nodes/register",
            None,
            &json!({"psk": "x", "capability": with(report("n"), &["version"], json!(2))}),
        )
        .await;
    r.problem(401, "Invalid registration PSK");
    let r = h
        .post(
            "/v1/nodes/register",
            None,
            &json!({"psk": PSK, "capability": with(report("n"), &["version"], json!(2))}),
        )
        .await;
    r.problem(400, "Unsupported capability version");
    let r = h
        .post("/v1/nodes/register", None, &json!({"psk": PSK}))
        .await;
    r.problem(400, "Unsupported capability version");
    let r = h
        .post("/v1/nodes/register", None, &json!({"psk": PSK, "capability": with(report("n"), &["node", "node_slug"], json!(""))}))
        .await;
    r.problem(400, "Node slug is required");
    for bad in ["a b", "a/b", &"x".repeat(129)] {
        let r = h
            .post("/v1/nodes/register", None, &json!({"psk": PSK, "capability": with(report("n"), &["node", "node_slug"], json!(bad))}))
            .await;
        r.problem(400, "Invalid node slug");
    }
    // Structurally wrong report (ram_mb a string).
    let r = h
        .post("/v1/nodes/register", None, &json!({"psk": PSK, "capability": with(report("n"), &["compute", "ram_mb"], json!("lots"))}))
        .await;
    r.problem(400, "Invalid request body");
    // 2 MiB → 413.
    let big = with(report("n"), &["pad"], json!("x".repeat(2 * 1024 * 1024)));
    let r = h
        .post(
            "/v1/nodes/register",
            None,
            &json!({"psk": PSK, "capability": big}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.json()["type"], "urn:cynodeai:error:validation");
    assert!(h.store().list_nodes().await.expect("list").is_empty());
}

/// Scenario 4: config auth and content.
async fn config_auth(store: Arc<dyn Store>) {
    let h = H::new(store);
    let (_, id, jwt) = h.register(&report("node-01")).await;
    h.get("/v1/nodes/config", None)
        .await
        .problem(401, "Missing authorization header");
    // A user access token signed with the very same secret is refused.
    let user_keys = JwtKeys::new(JwtKey::new("node", SECRET.as_bytes().to_vec()));
    let (user_tok, _) = issue_access_token(
        &user_keys,
        cynode_core::UserId::new(),
        "admin",
        h.clock_now(),
        Duration::from_secs(600),
    );
    h.get("/v1/nodes/config", Some(&user_tok))
        .await
        .problem(401, "Invalid or expired token");
    h.get("/v1/nodes/config", Some("garbage"))
        .await
        .problem(401, "Invalid or expired token");
    let r = h.call(Method::GET, "/v1/nodes/config", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Basic scheme → invalid.
    let req = Request::builder()
        .uri("/v1/nodes/config")
        .header(header::AUTHORIZATION, format!("Basic {jwt}"))
        .body(Body::empty())
        .expect("req");
    h.send(req).await.problem(401, "Invalid or expired token");
    // Lower-case scheme is accepted.
    let req = Request::builder()
        .uri("/v1/nodes/config")
        .header(header::AUTHORIZATION, format!("bearer {jwt}"))
        .body(Body::empty())
        .expect("req");
    assert_eq!(h.send(req).await.status, StatusCode::OK);

    let r = h.get("/v1/nodes/config", Some(&jwt)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let text = r.text();
    let v = r.json();
    assert_eq!(v["version"], 1);
    assert_eq!(v["node_slug"], "node-01");
    assert_eq!(v["config_version"].as_str().map(str::len), Some(26));
    assert_eq!(
        v["worker_api"]["orchestrator_bearer_token"],
        "worker-token-1"
    );
    assert_eq!(
        v["orchestrator"]["endpoints"]["worker_api_target_url"],
        "http://node-01:12090"
    );
    assert_eq!(
        v["orchestrator"]["endpoints"]["node_report_url"],
        "http://cp.test:12082/v1/nodes/capability"
    );
    assert_eq!(v["model_cache"], json!({"cache_url": ""}));
    assert_eq!(v["managed_services"], json!({"services": []}));
    assert!(!text.contains(PSK), "no PSK in the config");
    assert!(!text.contains(&jwt), "no JWT in the config");
    // A valid token for a node that does not exist → 404.
    let (ghost, _) = issue_node_token(
        h.state.keys(),
        NodeId::new(),
        "ghost",
        h.clock_now(),
        Duration::from_secs(60),
    );
    h.get("/v1/nodes/config", Some(&ghost))
        .await
        .problem(404, "Node not found");
    assert!(h.store().get_node(id).await.is_ok());
}

/// Scenario 5: inference decision table.
async fn inference_decision(store: Arc<dyn Store>) {
    let h = H::new(store);
    let cases: Vec<(&str, Value, Option<bool>)> = vec![
        ("plain", report("plain"), Some(true)),
        (
            "existing",
            with(
                report("existing"),
                &["inference"],
                json!({"supported": true, "existing_service": true}),
            ),
            Some(false),
        ),
        (
            "sbonly",
            with(
                report("sbonly"),
                &["node", "labels"],
                json!(["sandbox_only"]),
            ),
            None,
        ),
        (
            "disabled",
            with(
                report("disabled"),
                &["inference"],
                json!({"supported": true, "mode": "disabled"}),
            ),
            None,
        ),
        (
            "unsupported",
            with(
                report("unsupported"),
                &["inference"],
                json!({"supported": false}),
            ),
            None,
        ),
    ];
    for (slug, rep, expect) in cases {
        let (_, _, jwt) = h.register(&rep).await;
        let v = h.get("/v1/nodes/config", Some(&jwt)).await.json();
        match expect {
            Some(enabled) => assert_eq!(v["inference_backend"]["enabled"], enabled, "{slug}: {v}"),
            None => assert!(v.get("inference_backend").is_none(), "{slug}: {v}"),
        }
    }
    let gpu = with(
        report("gpu"),
        &["gpu"],
        json!({"present": true, "devices": [{"vendor": "nvidia", "vram_mb": 4096, "features": {"cuda_capability": "8.6"}}]}),
    );
    let (_, _, jwt) = h.register(&gpu).await;
    let v = h.get("/v1/nodes/config", Some(&jwt)).await.json();
    let ib = &v["inference_backend"];
    assert_eq!(ib["enabled"], true);
    assert_eq!(ib["variant"], "cuda");
    assert_eq!(ib["port"], 11434);
    assert_eq!(ib["env"]["OLLAMA_NUM_CTX"], "32768");
    assert_eq!(ib["env"]["OLLAMA_CONTEXT_LENGTH"], "32768");
    assert_eq!(ib["selected_model"], "qwen3.5:0.8b");
}

/// Scenario 6, ack: validation, 409 for an unissued version, `applied` makes the node
/// dispatchable and moves `/readyz` past "no inference path".
async fn ack(store: Arc<dyn Store>) {
    let h = H::new(store);
    let r = h.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), NOT_READY_NO_INFERENCE);
    let (id, jwt) = {
        let (_, id, jwt) = h.register(&report("node-01")).await;
        (id, jwt)
    };
    let cfg = h.get("/v1/nodes/config", Some(&jwt)).await.json();
    let cv = cfg["config_version"].clone();
    let ackb = |slug: &str, status: &str, version: u64, cv: &Value| {
        json!({"version": version, "node_slug": slug, "config_version": cv,
               "ack_at": "2026-01-01T00:00:00Z", "status": status})
    };
    h.post(
        "/v1/nodes/config",
        None,
        &ackb("node-01", "applied", 1, &cv),
    )
    .await
    .problem(401, "Missing authorization header");
    h.post(
        "/v1/nodes/config",
        Some(&jwt),
        &ackb("other", "applied", 1, &cv),
    )
    .await
    .problem(400, "node_slug does not match authenticated node");
    h.post(
        "/v1/nodes/config",
        Some(&jwt),
        &ackb("node-01", "rolled_back", 1, &cv),
    )
    .await
    .problem(400, "status must be applied or failed");
    let r = h
        .post(
            "/v1/nodes/config",
            Some(&jwt),
            &ackb("node-01", "applied", 2, &cv),
        )
        .await;
    r.problem(400, "Unsupported config ack version");
    assert_eq!(
        r.json()["type"],
        cynode_server::control_plane::UNSUPPORTED_VERSION_TYPE
    );
    h.call(
        Method::POST,
        "/v1/nodes/config",
        Some(&jwt),
        Some(Body::from("{")),
    )
    .await
    .problem(400, "Invalid request body");
    h.post(
        "/v1/nodes/config",
        Some(&jwt),
        &ackb(
            "node-01",
            "applied",
            1,
            &json!("01ZZZZZZZZZZZZZZZZZZZZZZZZ"),
        ),
    )
    .await
    .problem(
        409,
        "config_version is not the configuration issued to this node",
    );
    let node = h.store().get_node(id).await.expect("node");
    assert!(node.config_ack_status.is_none(), "nothing stored yet");
    assert!(!node.is_dispatchable());

    // failed → stored with its message, still not dispatchable.
    let mut failed = ackb("node-01", "failed", 1, &cv);
    failed["error"] = json!({"type": "apply", "message": "ollama did not start"});
    let r = h.post("/v1/nodes/config", Some(&jwt), &failed).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let node = h.store().get_node(id).await.expect("node");
    assert_eq!(node.config_ack_status.as_deref(), Some("failed"));
    assert_eq!(
        node.config_ack_error.as_deref(),
        Some("ollama did not start")
    );
    assert!(!node.is_dispatchable());

    let r = h
        .post(
            "/v1/nodes/config",
            Some(&jwt),
            &ackb("node-01", "applied", 1, &cv),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let node = h.store().get_node(id).await.expect("node");
    assert_eq!(node.config_ack_status.as_deref(), Some("applied"));
    assert_eq!(node.config_ack_error, None);
    assert_eq!(
        node.config_ack_at.map(|t| t.to_rfc3339()),
        Some("2026-01-01T00:00:00+00:00".to_string())
    );
    assert!(is_dispatchable_at(
        &node,
        h.clock_now(),
        h.state.config().node_stale_after()
    ));
    let r = h.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), NOT_READY_PMA);

    // A PMA reported ready with an endpoint makes the control plane ready.
    let mut rep = report("node-01");
    rep["managed_services_status"] = json!({"services": [{"service_id": "pma-main",
        "service_type": "PMA", "state": "ready",
        "endpoints": ["http://node-01:12090/v1/worker/managed-services/pma-main/proxy:http"]}]});
    let r = h.post("/v1/nodes/capability", Some(&jwt), &rep).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.get("/readyz", None).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ready"));
}

/// Scenario 7, heartbeat: 204, liveness advances, new base URL adopted; slug mismatch 400;
/// silence past the staleness window → inactive (not dispatchable); a report revives.
async fn heartbeat(store: Arc<dyn Store>) {
    let h = H::with(
        store,
        ControlPlaneConfig {
            worker_api_bearer_token: None,
            ..config()
        },
    );
    let (id, jwt, cfg) = h.onboard(&report("node-01")).await;
    let token = cfg["worker_api"]["orchestrator_bearer_token"]
        .as_str()
        .expect("minted token")
        .to_string();
    assert_eq!(token.len(), 64, "per-node token minted");
    let before = h.store().get_node(id).await.expect("node");
    assert_eq!(
        before.worker_api_bearer_token.as_deref(),
        Some(token.as_str())
    );

    h.clock.advance(Duration::from_secs(30));
    let moved = with(
        report("node-01"),
        &["worker_api", "base_url"],
        json!("http://moved:12091"),
    );
    let r = h.post("/v1/nodes/capability", Some(&jwt), &moved).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let after = h.store().get_node(id).await.expect("node");
    assert!(after.last_seen_at > before.last_seen_at);
    assert_eq!(
        after.worker_api_target_url.as_deref(),
        Some("http://moved:12091")
    );
    assert_eq!(
        after.worker_api_bearer_token,
        before.worker_api_bearer_token
    );
    let snap = h
        .store()
        .latest_capabilities(id)
        .await
        .expect("snap")
        .expect("some");
    assert_eq!(
        snap.snapshot["worker_api"]["base_url"],
        "http://moved:12091"
    );

    h.post("/v1/nodes/capability", Some(&jwt), &report("someone-else"))
        .await
        .problem(400, "node_slug does not match authenticated node");
    h.post(
        "/v1/nodes/capability",
        Some(&jwt),
        &with(report("node-01"), &["version"], json!(2)),
    )
    .await
    .problem(400, "Unsupported capability version");
    h.post("/v1/nodes/capability", None, &report("node-01"))
        .await
        .problem(401, "Missing authorization header");
    let big = with(
        report("node-01"),
        &["pad"],
        json!("x".repeat(1024 * 1024 + 1)),
    );
    let r = h.post("/v1/nodes/capability", Some(&jwt), &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.content_type, "application/problem+json");
    h.post(
        "/v1/nodes/capability",
        Some(&jwt),
        &with(report("node-01"), &["platform"], json!("x")),
    )
    .await
    .problem(400, "Invalid request body");

    // Config follows the move with a new version.
    let cfg2 = h.get("/v1/nodes/config", Some(&jwt)).await.json();
    assert_eq!(
        cfg2["orchestrator"]["endpoints"]["worker_api_target_url"],
        "http://moved:12091"
    );
    assert!(cfg2["config_version"].as_str() > cfg["config_version"].as_str());

    // Silent past NODE_STALE_AFTER → inactive.
    assert!(h.state.reap_stale_nodes().await.expect("reap").is_empty());
    h.clock.advance(Duration::from_secs(181));
    let node = h.store().get_node(id).await.expect("node");
    assert!(!is_dispatchable_at(
        &node,
        h.clock_now(),
        h.state.config().node_stale_after()
    ));
    assert_eq!(h.state.reap_stale_nodes().await.expect("reap"), vec![id]);
    let node = h.store().get_node(id).await.expect("node");
    assert_eq!(node.status, NodeStatus::Inactive);
    assert!(!node.is_dispatchable());
    let r = h.get("/readyz", None).await;
    assert_eq!(r.text(), NOT_READY_NO_INFERENCE);
    // Any authenticated report revives it.
    let r = h.post("/v1/nodes/capability", Some(&jwt), &moved).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let node = h.store().get_node(id).await.expect("node");
    assert_eq!(node.status, NodeStatus::Active);
    assert!(is_dispatchable_at(
        &node,
        h.clock_now(),
        h.state.config().node_stale_after()
    ));
}

/// Scenario 8, JWT lifetime: a short-lived token expires (401), re-registering gives a working
/// one; forged tokens are refused.
async fn jwt_renewal(store: Arc<dyn Store>) {
    let h = H::with(
        store,
        ControlPlaneConfig {
            node_token_ttl_secs: 20,
            ..config()
        },
    );
    let (id, jwt, _) = h.onboard(&report("node-01")).await;
    h.clock.advance(Duration::from_secs(19));
    let r = h
        .post("/v1/nodes/capability", Some(&jwt), &report("node-01"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    h.clock.advance(Duration::from_secs(1));
    h.post("/v1/nodes/capability", Some(&jwt), &report("node-01"))
        .await
        .problem(401, "Invalid or expired token");
    h.get("/v1/nodes/config", Some(&jwt))
        .await
        .problem(401, "Invalid or expired token");
    let (status, id2, jwt2) = h.register(&report("node-01")).await;
    assert_eq!((status, id2), (200, id));
    let r = h
        .post("/v1/nodes/capability", Some(&jwt2), &report("node-01"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Re-registration kept the acknowledgement: still dispatchable.
    let node = h.store().get_node(id).await.expect("node");
    assert!(is_dispatchable_at(
        &node,
        h.clock_now(),
        h.state.config().node_stale_after()
    ));
    // Forged: right claims, wrong key.
    let forger = JwtKeys::new(JwtKey::new("node", b"not the secret".to_vec()));
    let (forged, _) = issue_node_token(
        &forger,
        id,
        "node-01",
        h.clock_now(),
        Duration::from_secs(600),
    );
    h.post("/v1/nodes/capability", Some(&forged), &report("node-01"))
        .await
        .problem(401, "Invalid or expired token");
    // Tampered payload with the original signature.
    let mut parts: Vec<String> = jwt2.split('.').map(str::to_string).collect();
    parts[1] = parts[1].chars().rev().collect();
    h.post(
        "/v1/nodes/capability",
        Some(&parts.join(".")),
        &report("node-01"),
    )
    .await
    .problem(401, "Invalid or expired token");
}

/// Config versions change only with content; the newest version is the one to ack.
async fn config_versions(store: Arc<dyn Store>) {
    let h = H::new(store);
    let (id, jwt, cfg) = h.onboard(&report("node-01")).await;
    let v1 = cfg["config_version"].as_str().expect("v").to_string();
    h.clock.advance(Duration::from_secs(5));
    let again = h.get("/v1/nodes/config", Some(&jwt)).await.json();
    assert_eq!(
        again["config_version"],
        v1.as_str(),
        "same content, same version"
    );
    assert_ne!(again["issued_at"], cfg["issued_at"]);
    // A capability change that changes the rendered content → newer version.
    let r = h
        .post(
            "/v1/nodes/capability",
            Some(&jwt),
            &with(
                report("node-01"),
                &["inference"],
                json!({"supported": false}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let newer = h.get("/v1/nodes/config", Some(&jwt)).await.json();
    let v2 = newer["config_version"].as_str().expect("v").to_string();
    assert!(v2 > v1, "{v2} > {v1}");
    assert!(newer.get("inference_backend").is_none());
    // The old version can no longer be acknowledged; the dispatchability from the
    // earlier ack is kept.
    h.post(
        "/v1/nodes/config",
        Some(&jwt),
        &json!({"version": 1, "node_slug": "node-01", "config_version": v1, "status": "applied"}),
    )
    .await
    .problem(
        409,
        "config_version is not the configuration issued to this node",
    );
    assert!(
        h.store()
            .get_node(id)
            .await
            .expect("node")
            .is_dispatchable()
    );
    let r = h
        .post(
            "/v1/nodes/config",
            Some(&jwt),
            &json!({"version": 1, "node_slug": "node-01", "config_version": v2, "status": "applied",
                    "managed_services_status": {"services": []}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let node = h.store().get_node(id).await.expect("node");
    assert_eq!(node.config_version.as_deref(), Some(v2.as_str()));
    assert_eq!(
        node.metadata
            .as_ref()
            .and_then(|m| m["config_acked_version"].as_str()),
        Some(v2.as_str())
    );
}

/// WORKER_API_TARGET_URL overrides every node's dispatch URL.
async fn target_override(store: Arc<dyn Store>) {
    let h = H::with(
        store,
        ControlPlaneConfig {
            worker_api_target_url: Some("http://host.containers.internal:12090".into()),
            ..config()
        },
    );
    let (a, jwt, cfg) = h.onboard(&report("a")).await;
    let (b, _, _) = h.onboard(&report("b")).await;
    assert_eq!(
        cfg["orchestrator"]["endpoints"]["worker_api_target_url"],
        "http://host.containers.internal:12090"
    );
    for id in [a, b] {
        let n = h.store().get_node(id).await.expect("node");
        assert_eq!(
            n.worker_api_target_url.as_deref(),
            Some("http://host.containers.internal:12090")
        );
    }
    let r = h
        .post("/v1/nodes/capability", Some(&jwt), &report("a"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let n = h.store().get_node(a).await.expect("node");
    assert_eq!(
        n.worker_api_target_url.as_deref(),
        Some("http://host.containers.internal:12090")
    );
}

/// Scenario 21 (control-plane part) and plumbing: probes, unknown routes, wrong methods.
async fn probes_and_plumbing(store: Arc<dyn Store>) {
    let h = H::with(
        store,
        ControlPlaneConfig {
            readiness_requires_pma: false,
            ..config()
        },
    );
    let r = h.get("/healthz", None).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    assert!(r.content_type.starts_with("text/plain"));
    let r = h.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), NOT_READY_NO_INFERENCE);
    // The user gateway's /readyz answers the same through the readiness hook.
    let gateway = cynode_server::gateway::router(
        cynode_server::gateway::GatewayState::builder(
            h.store().clone(),
            JwtKeys::new(JwtKey::new("g", b"gateway".to_vec())),
        )
        .readiness_check(Arc::new(h.state.clone()))
        .build(),
    );
    let gw_readyz = || async {
        let res = gateway
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/readyz")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
            .expect("infallible");
        let status = res.status();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(
        gw_readyz().await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            NOT_READY_NO_INFERENCE.to_string()
        )
    );
    // A sandbox-only node is dispatchable but no inference path.
    h.onboard(&with(
        report("sb"),
        &["node", "labels"],
        json!(["sandbox_only"]),
    ))
    .await;
    assert_eq!(h.get("/readyz", None).await.text(), NOT_READY_NO_INFERENCE);
    h.onboard(&report("inf")).await;
    let r = h.get("/readyz", None).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ready"));
    assert_eq!(gw_readyz().await, (StatusCode::OK, "ready".to_string()));
    assert_eq!(h.get("/v1/nope", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.get("/v1/nodes/register", None).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        h.call(Method::DELETE, "/v1/nodes/config", None, None)
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

/// PMA desired state goes only into the chosen host's configuration, once that host
/// is dispatchable; a sandbox-only node never hosts it; the label wins over slug
/// order; the agent token is stable and distinct from the Worker API token.
async fn pma_placement(store: Arc<dyn Store>) {
    let h = H::with(
        store,
        ControlPlaneConfig {
            pma: Some(cynode_server::control_plane::PmaConfig {
                image: "localhost/pma:test".into(),
                ..Default::default()
            }),
            ..config()
        },
    );
    let services = |v: &Value| {
        v["managed_services"]["services"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // A sandbox-only node, even with the preferred label, is never the host.
    let (_, sb_jwt, sb_cfg) = h
        .onboard(&with(
            report("a-sandbox"),
            &["node", "labels"],
            json!(["sandbox_only", "orchestrator_host"]),
        ))
        .await;
    assert!(services(&sb_cfg).is_empty());
    // The first fetch happens before the ack: not dispatchable yet, no PMA.
    let (_, b_jwt, b_cfg) = h.onboard(&report("b-node")).await;
    assert!(services(&b_cfg).is_empty());
    let b_cfg2 = h.get("/v1/nodes/config", Some(&b_jwt)).await.json();
    let svcs = services(&b_cfg2);
    assert_eq!(svcs.len(), 1, "{b_cfg2}");
    let pma = &svcs[0];
    assert_eq!(pma["service_id"], "pma-main");
    assert_eq!(pma["service_type"], "pma");
    assert_eq!(pma["image"], "localhost/pma:test");
    assert_eq!(
        pma["healthcheck"],
        json!({"path": "/healthz", "expected_status": 200})
    );
    assert_eq!(pma["inference"]["mode"], "node_local");
    assert_eq!(
        pma["inference"]["default_model"],
        b_cfg2["inference_backend"]["selected_model"]
    );
    let token = pma["orchestrator"]["agent_token"]
        .as_str()
        .expect("agent token")
        .to_string();
    assert_ne!(token, "worker-token-1");
    assert!(b_cfg2["config_version"].as_str() > b_cfg["config_version"].as_str());
    let again = h.get("/v1/nodes/config", Some(&b_jwt)).await.json();
    assert_eq!(again["config_version"], b_cfg2["config_version"], "stable");
    assert_eq!(
        services(&again)[0]["orchestrator"]["agent_token"],
        token.as_str()
    );
    assert!(services(&h.get("/v1/nodes/config", Some(&sb_jwt)).await.json()).is_empty());
    // A dispatchable node with the preferred label takes over.
    let (_, z_jwt, _) = h
        .onboard(&with(
            report("z-host"),
            &["node", "labels"],
            json!(["orchestrator_host"]),
        ))
        .await;
    let z = h.get("/v1/nodes/config", Some(&z_jwt)).await.json();
    assert_eq!(services(&z).len(), 1);
    assert!(services(&h.get("/v1/nodes/config", Some(&b_jwt)).await.json()).is_empty());
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite_cases {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::sqlite().await).await
                }
            )*
        }
        mod memory_cases {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(Arc::new(cynode_core::store::MemoryStore::new())).await
                }
            )*
            use std::sync::Arc;
        }
        mod postgres_cases {
            $(
                #[tokio::test]
                async fn $case() {
                    super::pg::on_fresh_database(super::$case).await
                }
            )*
        }
    };
}

cases!(
    wrong_psk,
    register_twice,
    register_validation,
    config_auth,
    inference_decision,
    ack,
    heartbeat,
    jwt_renewal,
    config_versions,
    target_override,
    probes_and_plumbing,
    pma_placement,
);

// ------------------------------------------------------------------ real socket

#[tokio::test]
async fn client_against_real_socket() {
    use cynode_client::node::{ControlPlaneClient, NodeClientError};
    use cynode_core::proto::v1::node::{AckStatus, CapabilityReport, ConfigAck, RegisterRequest};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let store = sqlite().await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let state = ControlPlaneState::builder(
        store.clone(),
        ControlPlaneConfig {
            public_url: format!("http://{addr}"),
            node_token_ttl_secs: 60,
            readiness_requires_pma: false,
            ..config()
        },
    )
    .clock(clock.clone())
    .build();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state)).await.expect("serve");
    });

    let mut cp = ControlPlaneClient::new(&format!("http://{addr}")).expect("client");
    assert!(!cp.readyz().await.expect("readyz answers 503"));
    let rep: CapabilityReport = serde_json::from_value(report("sock-01")).expect("report");
    let err = cp
        .register(&RegisterRequest {
            psk: "wrong".into(),
            capability: rep.clone(),
        })
        .await
        .expect_err("wrong psk");
    assert!(err.is_unauthorized(), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(err.detail(), Some("Invalid registration PSK"));

    let boot = cp
        .register(&RegisterRequest {
            psk: PSK.into(),
            capability: rep.clone(),
        })
        .await
        .expect("register");
    cp.use_bootstrap(&boot).expect("usable bootstrap");
    let jwt = boot.auth.node_jwt.clone();
    let cfg = cp.get_config(&jwt).await.expect("config");
    assert_eq!(cfg.node_slug, "sock-01");
    cp.ack_config(
        &jwt,
        &ConfigAck {
            version: 1,
            node_slug: "sock-01".into(),
            config_version: cfg.config_version.clone(),
            ack_at: Some(chrono::Utc::now().to_rfc3339()),
            status: AckStatus::Applied,
            ..ConfigAck::default()
        },
    )
    .await
    .expect("ack");
    cp.report_capability(&jwt, &rep).await.expect("report");
    assert!(
        cp.readyz().await.expect("readyz"),
        "ready with an inference node"
    );
    let bad = cp
        .ack_config(
            &jwt,
            &ConfigAck {
                version: 1,
                node_slug: "sock-01".into(),
                config_version: "nope".into(),
                ..ConfigAck::default()
            },
        )
        .await
        .expect_err("409");
    assert_eq!(bad.status(), Some(409));
    assert!(!bad.is_retryable());

    // The token expires; the node sees a 401 and re-registers.
    clock.advance(Duration::from_secs(61));
    let err = cp.report_capability(&jwt, &rep).await.expect_err("expired");
    assert!(err.is_unauthorized(), "{err}");
    let boot2 = cp
        .register(&RegisterRequest {
            psk: PSK.into(),
            capability: rep.clone(),
        })
        .await
        .expect("re-register");
    cp.report_capability(&boot2.auth.node_jwt, &rep)
        .await
        .expect("report with the new token");
    server.abort();

    // Nothing listening → transport error, retryable.
    let err = cp.report_capability(&jwt, &rep).await.expect_err("down");
    assert!(matches!(err, NodeClientError::Transport(_)), "{err}");
    assert!(err.is_retryable());
}
