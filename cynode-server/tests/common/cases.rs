//! Gateway behaviour, one function per area, run against every storage backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cynode_core::auth::issue_access_token;
use cynode_core::model::{JobStatus, JobUpdate, TaskStatus};
use cynode_core::store::Store;
use cynode_core::{JobId, TaskId};
use cynode_server::gateway::{
    GatewayConfig, GatewayState, LoginRateLimit, ReadinessCheck, TaskDispatcher, TokenResponse,
    router,
};
use serde_json::{Value, json};

use super::{H, test_config};

fn ev(kind: &str, success: bool, reason: Option<&str>) -> (String, bool, Option<String>) {
    (kind.to_string(), success, reason.map(String::from))
}

// ---------------------------------------------------------------- probes and plumbing

struct NotReady;
#[async_trait]
impl ReadinessCheck for NotReady {
    async fn check(&self) -> Option<String> {
        Some("PMA not ready (no local PMA and no worker has reported PMA ready)".into())
    }
}

pub async fn probes_and_fallbacks(store: Arc<dyn Store>) {
    let h = H::new(store.clone()).await;
    let r = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    assert_eq!(r.content_type(), "text/plain; charset=utf-8");
    let r = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ready"));

    // An extra readiness check that fails gives its reason with 503.
    let state = GatewayState::builder(store.clone(), super::test_keys())
        .config(test_config())
        .readiness_check(Arc::new(NotReady))
        .build();
    let app = router(state);
    let res = tower::ServiceExt::oneshot(app, H::request(Method::GET, "/readyz", None, None))
        .await
        .expect("call");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(
        &body[..],
        b"PMA not ready (no local PMA and no worker has reported PMA ready)"
    );

    // Unknown paths and wrong methods answer like the reference router: plain text.
    let r = h.call(Method::GET, "/v1/nope", None, None).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::NOT_FOUND, "404 page not found\n")
    );
    assert_eq!(r.content_type(), "text/plain; charset=utf-8");
    let r = h.call(Method::DELETE, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.text(), "Method Not Allowed\n");
    let allow = r
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(allow.contains("GET"), "Allow header: {allow:?}");
    let r = h.call(Method::GET, "/v1/auth/login", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

pub async fn request_ids(store: Arc<dyn Store>) {
    let h = H::new(store).await;
    let r = h.call(Method::GET, "/healthz", None, None).await;
    let id = r
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("generated id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let mut req = H::request(Method::GET, "/v1/users/me", None, None);
    req.headers_mut()
        .insert("x-request-id", "client-abc.123".parse().expect("hv"));
    let r = h.send(req).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "errors carry the id too"
    );
    assert_eq!(
        r.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("client-abc.123")
    );

    let mut req = H::request(Method::GET, "/healthz", None, None);
    req.headers_mut()
        .insert("x-request-id", "bad id with spaces".parse().expect("hv"));
    let r = h.send(req).await;
    let id = r
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("replaced");
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "unsafe ids are replaced: {id}"
    );
}

pub async fn body_limits_and_malformed_json(store: Arc<dyn Store>) {
    let h = H::with_config(
        store,
        GatewayConfig {
            max_body_bytes: 64,
            ..test_config()
        },
    )
    .await;
    // Declared length over the cap.
    let big = json!({"handle": "a", "password": "x".repeat(100)});
    h.post("/v1/auth/login", None, big)
        .await
        .assert_problem(413, "Request body too large");
    // No declared length (streamed): cut off while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b' '; 40]), Ok(vec![b' '; 40])];
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/login")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .expect("req");
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            1,
        ))));
    h.send(req)
        .await
        .assert_problem(413, "Request body too large");

    // Malformed JSON, wrong types and an empty body: 400 problem details, not axum text.
    for body in [&b"{not json"[..], b"", b"[1,2]", br#"{"handle": 5}"#] {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/v1/auth/login")
            .body(Body::from(body.to_vec()))
            .expect("req");
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                1,
            ))));
        h.send(req)
            .await
            .assert_problem(400, "Invalid request body");
    }
    // The content type is not checked (clients are not required to send it).
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/login")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"handle":"","password":""}"#))
        .expect("req");
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            1,
        ))));
    h.send(req)
        .await
        .assert_problem(400, "Handle and password are required");
}

/// A dispatcher that never answers, or panics, to exercise the timeout and panic layers.
struct Stuck {
    panic: bool,
}
#[async_trait]
impl TaskDispatcher for Stuck {
    async fn task_created(
        &self,
        _t: &cynode_core::model::Task,
        _j: &cynode_core::model::Job,
    ) -> cynode_core::Result<()> {
        if self.panic {
            panic!("dispatcher exploded");
        }
        std::future::pending::<()>().await;
        Ok(())
    }
    async fn task_canceled(
        &self,
        _t: &cynode_core::model::Task,
        _j: &[JobId],
    ) -> cynode_core::Result<()> {
        Ok(())
    }
}

pub async fn timeouts_and_panics_become_problem_details(store: Arc<dyn Store>) {
    let alice = store
        .create_user(cynode_core::model::NewUser {
            handle: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("user");
    let keys = super::test_keys();
    let (token, _) = issue_access_token(
        &keys,
        alice.id,
        "alice",
        chrono::Utc::now(),
        Duration::from_secs(600),
    );
    for (panic, status, detail) in [
        (false, 504, "Request timed out"),
        (true, 500, "Internal server error"),
    ] {
        let state = GatewayState::builder(store.clone(), keys.clone())
            .config(GatewayConfig {
                request_timeout_secs: 1,
                ..test_config()
            })
            .dispatcher(Arc::new(Stuck { panic }))
            .build();
        let app = router(state);
        let req = H::request(
            Method::POST,
            "/v1/tasks",
            Some(&token),
            Some(&json!({"prompt": "echo", "input_mode": "commands"})),
        );
        let res = tower::ServiceExt::oneshot(app, req).await.expect("call");
        let (parts, body) = res.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .expect("body")
            .to_bytes();
        let r = super::Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        r.assert_problem(status, detail);
        assert!(r.headers.contains_key("x-request-id"));
    }
}

// ---------------------------------------------------------------- authentication

pub async fn login_success_and_failures(store: Arc<dyn Store>) {
    let h = H::new(store.clone()).await;
    let alice = h.user("alice", "s3cret-pass").await;
    let r = h
        .post(
            "/v1/auth/login",
            None,
            json!({"handle": "alice", "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.content_type(), "application/json");
    assert!(r.body.ends_with(b"}\n"), "JSON followed by a newline");
    let v = r.json();
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 900);
    assert_ne!(v["access_token"], v["refresh_token"]);

    // Every way of failing looks the same to the client.
    let bob = h.user("bob", "bobpass").await;
    store.set_user_active(bob.id, false).await.expect("disable");
    h.user_with("carol", None, None).await;
    for (handle, pw) in [
        ("alice", "wrong"),
        ("nobody", "x"),
        ("bob", "bobpass"),
        ("carol", "x"),
    ] {
        h.post(
            "/v1/auth/login",
            None,
            json!({"handle": handle, "password": pw}),
        )
        .await
        .assert_problem(401, "Invalid credentials");
    }
    for body in [
        json!({"handle": "alice"}),
        json!({"password": "x"}),
        json!({"handle": "", "password": ""}),
        json!({}),
    ] {
        h.post("/v1/auth/login", None, body)
            .await
            .assert_problem(400, "Handle and password are required");
    }
    let events = h.auth_events().await;
    for want in [
        ev("login_success", true, None),
        ev("login_failure", false, Some("invalid password")),
        ev("login_failure", false, Some("user not found")),
        ev("login_failure", false, Some("user inactive")),
        ev("login_failure", false, Some("no password credential")),
    ] {
        assert!(events.contains(&want), "missing {want:?} in {events:?}");
    }
    // Audit rows carry the client address and user agent; never the password.
    let rows = store
        .list_audit(&cynode_core::model::AuditFilter {
            kind: cynode_core::model::AuditKind::Auth,
            user_id: Some(alice.id),
            since: None,
            limit: 10,
        })
        .await
        .expect("audit");
    assert!(rows.iter().all(|r| {
        let cynode_core::model::AuditRecord::Auth(a) = r else {
            return false;
        };
        a.ip_address.as_deref() == Some("192.0.2.10")
    }));
    assert!(!format!("{rows:?}").contains("s3cret-pass"));
}

pub async fn login_rate_limits(store: Arc<dyn Store>) {
    let cfg = GatewayConfig {
        login_rate_limit: LoginRateLimit {
            window_secs: 60,
            per_ip: 4,
            failures_per_handle_ip: 2,
        },
        ..test_config()
    };
    let h = H::with_config(store, cfg).await;
    h.user("alice", "pw-alice").await;
    h.user("bob", "pw-bob").await;

    // Two failures for alice from this address lock alice out, even with the right
    // password; bob is unaffected.
    for _ in 0..2 {
        h.post(
            "/v1/auth/login",
            None,
            json!({"handle": "alice", "password": "nope"}),
        )
        .await
        .assert_problem(401, "Invalid credentials");
    }
    let r = h
        .post(
            "/v1/auth/login",
            None,
            json!({"handle": "alice", "password": "pw-alice"}),
        )
        .await;
    r.assert_problem(429, "Too many login attempts");
    assert_eq!(
        r.headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("60")
    );
    h.login("bob", "pw-bob").await;

    // The per-address limit counts every attempt (4 so far): the 5th is refused.
    let r = h
        .post(
            "/v1/auth/login",
            None,
            json!({"handle": "bob", "password": "pw-bob"}),
        )
        .await;
    r.assert_problem(429, "Too many login attempts");
    h.clock.advance(Duration::from_secs(30));
    let r = h
        .post(
            "/v1/auth/login",
            None,
            json!({"handle": "bob", "password": "pw-bob"}),
        )
        .await;
    assert_eq!(
        r.headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("30")
    );
    // Another address is not limited.
    let mut req = H::request(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(&json!({"handle": "bob", "password": "pw-bob"})),
    );
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [198, 51, 100, 7],
            1,
        ))));
    assert_eq!(h.send(req).await.status, StatusCode::OK);

    // After the window, both limits have reopened.
    h.clock.advance(Duration::from_secs(31));
    h.login("alice", "pw-alice").await;
    assert!(
        h.auth_events()
            .await
            .contains(&ev("login_failure", false, Some("rate limited")))
    );
}

pub async fn access_token_layer(store: Arc<dyn Store>) {
    let h = H::new(store).await;
    let alice = h.user("alice", "pw").await;
    let tokens = h.login("alice", "pw").await;

    for auth in [
        None,
        Some("Basic abc"),
        Some("Bearer"),
        Some("Bearer "),
        Some("Token x"),
        Some("Bearerx"),
    ] {
        let mut req = H::request(Method::GET, "/v1/users/me", None, None);
        if let Some(a) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, a.parse().expect("hv"));
        }
        h.send(req)
            .await
            .assert_problem(401, "Missing authorization header");
    }
    for bad in ["garbage", tokens.refresh_token.as_str()] {
        h.get("/v1/users/me", bad)
            .await
            .assert_problem(401, "Invalid or expired token");
    }
    // A token signed with another key.
    let other = cynode_core::auth::JwtKeys::new(cynode_core::auth::JwtKey::new(
        "test-key",
        b"other".to_vec(),
    ));
    let (forged, _) = issue_access_token(
        &other,
        alice.id,
        "admin",
        h.clock_now(),
        Duration::from_secs(60),
    );
    h.get("/v1/users/me", &forged)
        .await
        .assert_problem(401, "Invalid or expired token");

    // Scheme is case-insensitive.
    let mut req = H::request(Method::GET, "/v1/users/me", None, None);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("bearer {}", tokens.access_token)
            .parse()
            .expect("hv"),
    );
    assert_eq!(h.send(req).await.status, StatusCode::OK);

    // Expiry follows the gateway clock.
    h.clock.advance(Duration::from_secs(899));
    assert_eq!(
        h.get("/v1/users/me", &tokens.access_token).await.status,
        StatusCode::OK
    );
    h.clock.advance(Duration::from_secs(1));
    h.get("/v1/users/me", &tokens.access_token)
        .await
        .assert_problem(401, "Invalid or expired token");

    // Every protected route is behind the layer.
    for (m, p) in [
        (Method::POST, "/v1/auth/logout"),
        (Method::GET, "/v1/users/me"),
        (
            Method::POST,
            "/v1/users/00000000-0000-0000-0000-000000000000/revoke_sessions",
        ),
        (Method::POST, "/v1/tasks"),
        (Method::GET, "/v1/tasks"),
        (Method::GET, "/v1/tasks/x"),
        (Method::GET, "/v1/tasks/x/result"),
        (Method::POST, "/v1/tasks/x/cancel"),
        (Method::GET, "/v1/tasks/x/logs"),
    ] {
        h.call(m.clone(), p, None, Some(json!({})))
            .await
            .assert_problem(401, "Missing authorization header");
    }
}

impl H {
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use cynode_server::gateway::Clock;
        self.clock.now()
    }
}

async fn refresh(h: &H, token: &str) -> super::Resp {
    h.post("/v1/auth/refresh", None, json!({"refresh_token": token}))
        .await
}

pub async fn refresh_rotation_and_reuse(store: Arc<dyn Store>) {
    let h = H::new(store.clone()).await;
    let alice = h.user("alice", "pw").await;
    let first = h.login("alice", "pw").await;
    let laptop = h.login("alice", "pw").await; // a second, independent session

    let r = refresh(&h, &first.refresh_token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let second: TokenResponse = serde_json::from_slice(&r.body).expect("tokens");
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(
        h.get("/v1/users/me", &second.access_token).await.status,
        StatusCode::OK
    );

    // The spent token is refused, and its reuse ends every session of the user.
    refresh(&h, &first.refresh_token)
        .await
        .assert_problem(401, "Invalid refresh token");
    refresh(&h, &second.refresh_token)
        .await
        .assert_problem(401, "Invalid refresh token");
    refresh(&h, &laptop.refresh_token)
        .await
        .assert_problem(401, "Invalid refresh token");
    let events = h.auth_events().await;
    for want in [
        ev("refresh_success", true, None),
        ev("refresh_failure", false, Some("token reuse")),
        ev("session_revoked", true, Some("refresh token reuse")),
    ] {
        assert!(events.contains(&want), "missing {want:?} in {events:?}");
    }
    // Logging in again works.
    let again = h.login("alice", "pw").await;
    assert_eq!(
        refresh(&h, &again.refresh_token).await.status,
        StatusCode::OK
    );

    // Errors.
    h.post("/v1/auth/refresh", None, json!({}))
        .await
        .assert_problem(400, "Refresh token is required");
    h.post("/v1/auth/refresh", None, json!({"refresh_token": ""}))
        .await
        .assert_problem(400, "Refresh token is required");
    refresh(&h, "garbage")
        .await
        .assert_problem(401, "Invalid refresh token");
    refresh(&h, &again.access_token)
        .await
        .assert_problem(401, "Invalid refresh token");
    assert!(
        h.auth_events()
            .await
            .contains(&ev("refresh_failure", false, Some("invalid token")))
    );

    // A disabled account cannot refresh, and the presented session is spent.
    let t = h.login("alice", "pw").await;
    store
        .set_user_active(alice.id, false)
        .await
        .expect("disable");
    refresh(&h, &t.refresh_token)
        .await
        .assert_problem(401, "Account is disabled");
    store.set_user_active(alice.id, true).await.expect("enable");
    refresh(&h, &t.refresh_token)
        .await
        .assert_problem(401, "Invalid refresh token");

    // Refresh tokens expire (168 h by default).
    let t = h.login("alice", "pw").await;
    h.clock.advance(Duration::from_secs(168 * 3600));
    refresh(&h, &t.refresh_token)
        .await
        .assert_problem(401, "Invalid refresh token");
}

pub async fn logout(store: Arc<dyn Store>) {
    let h = H::new(store).await;
    h.user("alice", "pw").await;
    h.user("bob", "pw").await;
    let a = h.login("alice", "pw").await;
    let b = h.login("bob", "pw").await;

    h.call(Method::POST, "/v1/auth/logout", Some(&a.access_token), None)
        .await
        .assert_problem(400, "Invalid request body");
    let r = h
        .post("/v1/auth/logout", Some(&a.access_token), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    // Alice cannot end Bob's session with his token.
    let r = h
        .post(
            "/v1/auth/logout",
            Some(&a.access_token),
            json!({"refresh_token": b.refresh_token}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(refresh(&h, &b.refresh_token).await.status, StatusCode::OK);
    // Her own session ends.
    let r = h
        .post(
            "/v1/auth/logout",
            Some(&a.access_token),
            json!({"refresh_token": a.refresh_token}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    refresh(&h, &a.refresh_token)
        .await
        .assert_problem(401, "Invalid refresh token");
    assert!(h.auth_events().await.contains(&ev("logout", true, None)));
}

// ---------------------------------------------------------------- users

pub async fn users_me_and_admin_revocation(store: Arc<dyn Store>) {
    let h = H::new(store.clone()).await;
    cynode_core::auth::bootstrap_admin_with(
        store.as_ref(),
        "admin",
        "admin123",
        &cynode_core::auth::PasswordParams::insecure_fast_for_tests(),
    )
    .await
    .expect("bootstrap");
    let alice = h
        .user_with("alice", Some("pw"), Some("alice@example.com"))
        .await;
    let bob = h.user("bob", "pw").await;
    let admin = h.login("admin", "admin123").await;
    let a = h.login("alice", "pw").await;
    let b = h.login("bob", "pw").await;

    let r = h.get("/v1/users/me", &a.access_token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"id": alice.id.to_string(), "handle": "alice", "email": "alice@example.com", "is_active": true})
    );
    let r = h.get("/v1/users/me", &b.access_token).await;
    assert_eq!(
        r.json(),
        json!({"id": bob.id.to_string(), "handle": "bob", "is_active": true})
    );

    let path = format!("/v1/users/{}/revoke_sessions", bob.id);
    h.call(Method::POST, &path, Some(&a.access_token), None)
        .await
        .assert_problem(403, "Admin required");
    h.call(
        Method::POST,
        "/v1/users/not-a-uuid/revoke_sessions",
        Some(&admin.access_token),
        None,
    )
    .await
    .assert_problem(400, "invalid user id");
    h.call(
        Method::POST,
        &format!("/v1/users/{}/revoke_sessions", TaskId::new()),
        Some(&admin.access_token),
        None,
    )
    .await
    .assert_problem(404, "User not found");
    let r = h
        .call(Method::POST, &path, Some(&admin.access_token), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    refresh(&h, &b.refresh_token)
        .await
        .assert_problem(401, "Invalid refresh token");
    assert_eq!(
        refresh(&h, &a.refresh_token).await.status,
        StatusCode::OK,
        "others keep theirs"
    );
    assert!(
        h.auth_events()
            .await
            .contains(&ev("session_revoked", true, Some("revoked by admin")))
    );
}

// ---------------------------------------------------------------- tasks

async fn create(h: &H, token: &str, body: Value) -> Value {
    let r = h.post("/v1/tasks", Some(token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

pub async fn task_create(store: Arc<dyn Store>) {
    let h = H::new(store.clone()).await;
    let alice = h.user("alice", "pw").await;
    let t = h.login("alice", "pw").await.access_token;

    let long = "x".repeat(2049);
    let v = create(
        &h,
        &t,
        json!({"prompt": "echo hello", "input_mode": "commands", "task_name": "My Task!",
               "attachments": ["tmp/doc1.txt", "  ", " tmp/doc2.txt ", "tmp/doc1.txt", long]}),
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["task_id"], v["id"]);
    assert_eq!(v["status"], "queued");
    assert_eq!(v["task_name"], "my-task");
    assert_eq!(v["summary"], "my-task");
    assert_eq!(v["prompt"], "echo hello");
    assert_eq!(v["attachments"], json!(["tmp/doc1.txt", "tmp/doc2.txt"]));
    let created = v["created_at"].as_str().expect("created_at");
    assert!(
        chrono::NaiveDateTime::parse_from_str(created, "%Y-%m-%dT%H:%M:%SZ").is_ok(),
        "{created}"
    );
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "attachments",
            "created_at",
            "id",
            "prompt",
            "status",
            "summary",
            "task_id",
            "task_name",
            "updated_at"
        ]
    );

    // Stored: the task in the default project, the attachments as artifacts, one queued
    // job whose payload is the worker run request; the dispatcher was told.
    let task = store
        .get_task(id.parse().expect("uuid"))
        .await
        .expect("task");
    assert_eq!(
        task.project_id,
        Some(store.default_project(alice.id).await.expect("p").id)
    );
    let artifacts = store.list_artifacts(task.id).await.expect("artifacts");
    let paths: Vec<&str> = artifacts.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["tmp/doc1.txt", "tmp/doc2.txt"]);
    let jobs = store.list_jobs(task.id).await.expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Queued);
    assert_eq!(jobs[0].payload["version"], 1);
    assert_eq!(jobs[0].payload["job_id"], jobs[0].id.to_string());
    assert_eq!(
        jobs[0].payload["sandbox"]["command"],
        json!(["sh", "-c", "echo hello"])
    );
    assert_eq!(jobs[0].payload["sandbox"]["image"], "alpine:latest");
    assert_eq!(
        h.dispatcher.events(),
        [format!("created {} {}", task.id, jobs[0].id)]
    );

    // Names are made unique per user; no name gives task_name_NNN.
    assert_eq!(
        create(&h, &t, json!({"prompt": "p", "task_name": "my task"})).await["task_name"],
        "my-task-2"
    );
    assert_eq!(
        create(&h, &t, json!({"prompt": "p", "task_name": "MY-TASK"})).await["task_name"],
        "my-task-3"
    );
    let v = create(&h, &t, json!({"prompt": "p", "task_name": "!!!"})).await;
    assert_eq!(v["task_name"], "task_name_004");
    assert!(v.get("attachments").is_none(), "omitted when none");
    // Another user's names do not clash.
    h.user("bob", "pw").await;
    let tb = h.login("bob", "pw").await.access_token;
    assert_eq!(
        create(&h, &tb, json!({"prompt": "p", "task_name": "My Task"})).await["task_name"],
        "my-task"
    );
    assert_eq!(
        create(&h, &tb, json!({"prompt": "p"})).await["task_name"],
        "task_name_002"
    );

    // Modes: prompt runs the model through the inference proxy; SBA gets a job spec.
    create(&h, &t, json!({"prompt": "Say hi"})).await;
    create(&h, &t, json!({"prompt": "do it", "use_sba": true})).await;
    let payloads = h.dispatcher.payloads.lock().expect("lock").clone();
    let prompt_job = &payloads[payloads.len() - 2]["sandbox"];
    assert_eq!(prompt_job["image"], "python:alpine");
    assert_eq!(prompt_job["env"]["CYNODE_PROMPT"], "Say hi");
    assert_eq!(prompt_job["use_inference"], true);
    let spec: Value = serde_json::from_str(
        payloads[payloads.len() - 1]["sandbox"]["job_spec_json"]
            .as_str()
            .expect("spec"),
    )
    .expect("spec json");
    assert_eq!(spec["inference"]["allowed_models"], json!(["qwen3.5:0.8b"]));
    assert_eq!(spec["context"]["task_context"], "do it");

    // Projects.
    let p = store
        .create_project(cynode_core::model::NewProject {
            slug: "p1".into(),
            display_name: "P1".into(),
            description: None,
        })
        .await
        .expect("project");
    let v = create(
        &h,
        &t,
        json!({"prompt": "p", "project_id": p.id.to_string()}),
    )
    .await;
    let task = store
        .get_task(v["id"].as_str().expect("id").parse().expect("uuid"))
        .await
        .expect("task");
    assert_eq!(task.project_id, Some(p.id));
    create(&h, &t, json!({"prompt": "p", "project_id": "  "})).await;

    // Errors.
    for body in [
        json!({}),
        json!({"prompt": ""}),
        json!({"prompt": "   "}),
        json!({"prompt": null}),
    ] {
        h.post("/v1/tasks", Some(&t), body)
            .await
            .assert_problem(400, "Prompt is required");
    }
    h.post("/v1/tasks", Some(&t), json!({"prompt": 5}))
        .await
        .assert_problem(400, "Invalid request body");
    h.post(
        "/v1/tasks",
        Some(&t),
        json!({"prompt": "p", "project_id": "nope"}),
    )
    .await
    .assert_problem(400, "Invalid project_id");
    h.post(
        "/v1/tasks",
        Some(&t),
        json!({"prompt": "p", "project_id": TaskId::new().to_string()}),
    )
    .await
    .assert_problem(400, "Invalid project_id");
    let h2 = H::with_config(
        store.clone(),
        GatewayConfig {
            inference_model: String::new(),
            ..test_config()
        },
    )
    .await;
    h2.post(
        "/v1/tasks",
        Some(&t),
        json!({"prompt": "p", "use_sba": true}),
    )
    .await
    .assert_problem(
        400,
        "SBA inference readiness failed: no allowed model configured",
    );
}

pub async fn task_list_paging_and_filters(store: Arc<dyn Store>) {
    let h = H::new(store.clone()).await;
    h.user("alice", "pw").await;
    h.user("bob", "pw").await;
    let t = h.login("alice", "pw").await.access_token;
    let tb = h.login("bob", "pw").await.access_token;
    let mut names = Vec::new();
    for i in 0..5 {
        names.push(
            create(&h, &t, json!({"prompt": "p", "task_name": format!("t{i}")})).await["task_name"]
                .clone(),
        );
    }
    create(&h, &tb, json!({"prompt": "bob's"})).await;
    names.reverse(); // newest first

    let r = h.get("/v1/tasks", &t).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let got: Vec<Value> = v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_name"].clone())
        .collect();
    assert_eq!(got, names, "only the caller's, newest first");
    assert!(v.get("next_cursor").is_none() && v.get("next_offset").is_none());

    let v = h.get("/v1/tasks?limit=2", &t).await.json();
    assert_eq!(v["tasks"].as_array().expect("tasks").len(), 2);
    assert_eq!(
        (v["next_offset"].clone(), v["next_cursor"].clone()),
        (json!(2), json!("2"))
    );
    let v = h
        .get("/v1/tasks?limit=2&cursor=2&offset=0", &t)
        .await
        .json();
    assert_eq!(v["tasks"][0]["task_name"], names[2]);
    assert_eq!(v["next_cursor"], "4");
    let v = h.get("/v1/tasks?limit=2&offset=4", &t).await.json();
    assert_eq!(v["tasks"].as_array().expect("tasks").len(), 1);
    assert!(v.get("next_cursor").is_none());
    let v = h.get("/v1/tasks?offset=10", &t).await.json();
    assert_eq!(v, json!({"tasks": []}));

    // Status filter (API spelling), applied in the query.
    let first: TaskId = v_id(&h.get("/v1/tasks?limit=1", &t).await.json()["tasks"][0]);
    store
        .set_task_status(first, TaskStatus::Running)
        .await
        .expect("status");
    let v = h.get("/v1/tasks?status=running", &t).await.json();
    assert_eq!(v["tasks"].as_array().expect("tasks").len(), 1);
    assert_eq!(v["tasks"][0]["status"], "running");
    let v = h.get("/v1/tasks?status=queued&limit=2", &t).await.json();
    assert_eq!(v["tasks"].as_array().expect("tasks").len(), 2);
    assert_eq!(v["next_cursor"], "2");

    for q in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "offset=-1",
        "offset=x",
        "cursor=abc",
        "limit=1.5",
    ] {
        h.get(&format!("/v1/tasks?{q}"), &t)
            .await
            .assert_problem(400, "Invalid limit, offset, or cursor");
    }
    h.get("/v1/tasks?status=pending", &t)
        .await
        .assert_problem(400, "Invalid status");
    assert_eq!(
        h.get("/v1/tasks?limit=200", &t).await.status,
        StatusCode::OK
    );
}

fn v_id(v: &Value) -> TaskId {
    v["id"].as_str().expect("id").parse().expect("uuid")
}

pub async fn task_get_result_cancel_logs(store: Arc<dyn Store>) {
    let h = H::new(store.clone()).await;
    h.user("alice", "pw").await;
    h.user("bob", "pw").await;
    let t = h.login("alice", "pw").await.access_token;
    let tb = h.login("bob", "pw").await.access_token;
    let v = create(
        &h,
        &t,
        json!({"prompt": "echo hi", "input_mode": "commands", "task_name": "Hello World"}),
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    let task_id: TaskId = id.parse().expect("uuid");

    // By id and by exact name; other users and unknown keys.
    assert_eq!(h.get(&format!("/v1/tasks/{id}"), &t).await.json(), v);
    assert_eq!(h.get("/v1/tasks/hello-world", &t).await.json(), v);
    h.get("/v1/tasks/Hello%20World", &t)
        .await
        .assert_problem(404, "Task not found");
    h.get(&format!("/v1/tasks/{}", TaskId::new()), &t)
        .await
        .assert_problem(404, "Task not found");
    for path in [
        format!("/v1/tasks/{id}"),
        format!("/v1/tasks/{id}/result"),
        format!("/v1/tasks/{id}/logs"),
    ] {
        h.get(&path, &tb)
            .await
            .assert_problem(403, "Not task owner");
    }
    h.call(
        Method::POST,
        &format!("/v1/tasks/{id}/cancel"),
        Some(&tb),
        None,
    )
    .await
    .assert_problem(403, "Not task owner");
    for path in [
        "/v1/tasks/hello-world",
        "/v1/tasks/hello-world/result",
        "/v1/tasks/hello-world/logs",
    ] {
        h.get(path, &tb).await.assert_problem(404, "Task not found");
    }

    // Result before any job ran: one queued job, no result or times.
    let r = h.get(&format!("/v1/tasks/{id}/result"), &t).await.json();
    let jobs = store.list_jobs(task_id).await.expect("jobs");
    assert_eq!(
        r,
        json!({"task_id": id, "status": "queued", "jobs": [{"id": jobs[0].id.to_string(), "status": "queued"}]})
    );
    assert_eq!(
        h.get(&format!("/v1/tasks/{id}/logs"), &t).await.json(),
        json!({"task_id": id, "stdout": "", "stderr": ""})
    );

    // A finished job (result stored as JSON text, as the reference does) and a second
    // job with an object result.
    let started = chrono::DateTime::parse_from_rfc3339("2026-03-12T10:04:06.123Z")
        .expect("t")
        .to_utc();
    let ended = chrono::DateTime::parse_from_rfc3339("2026-03-12T10:04:07Z")
        .expect("t")
        .to_utc();
    let result_text =
        json!({"version": 1, "status": "completed", "stdout": "hello\n", "stderr": "warn\n"})
            .to_string();
    store
        .update_job(
            jobs[0].id,
            JobUpdate {
                status: Some(JobStatus::Completed),
                result: Some(Value::String(result_text.clone())),
                started_at: Some(started),
                ended_at: Some(ended),
                ..Default::default()
            },
        )
        .await
        .expect("finish job");
    let second = store
        .create_job(cynode_core::model::NewJob {
            id: JobId::new(),
            task_id,
            payload: json!({}),
        })
        .await
        .expect("job 2");
    store
        .update_job(
            second.id,
            JobUpdate {
                result: Some(json!({"stdout": "more", "stderr": ""})),
                ..Default::default()
            },
        )
        .await
        .expect("result 2");
    let r = h.get(&format!("/v1/tasks/{id}/result"), &t).await.json();
    assert_eq!(r["jobs"][0]["result"], result_text);
    assert_eq!(r["jobs"][0]["started_at"], "2026-03-12T10:04:06Z");
    assert_eq!(r["jobs"][0]["ended_at"], "2026-03-12T10:04:07Z");
    assert_eq!(r["jobs"][1]["id"], second.id.to_string());
    let inner: Value =
        serde_json::from_str(r["jobs"][1]["result"].as_str().expect("text")).expect("json");
    assert_eq!(inner["stdout"], "more");
    assert_eq!(
        h.get(&format!("/v1/tasks/{id}/logs"), &t).await.json(),
        json!({"task_id": id, "stdout": "hello\nmore", "stderr": "warn\n"})
    );
    assert_eq!(
        h.get("/v1/tasks/hello-world/logs?stream=stdout", &t)
            .await
            .json()["stderr"],
        ""
    );
    assert_eq!(
        h.get("/v1/tasks/hello-world/logs?stream=stderr", &t)
            .await
            .json()["stdout"],
        ""
    );
    assert_eq!(
        h.get(&format!("/v1/tasks/{id}/logs?stream=bogus"), &t)
            .await
            .json(),
        json!({"task_id": id, "stdout": "", "stderr": ""})
    );

    // Cancel: the task and its open job are canceled, the finished job is kept, and
    // the dispatcher hears of it.
    let r = h
        .call(Method::POST, "/v1/tasks/hello-world/cancel", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"task_id": id, "canceled": true}));
    let jobs = store.list_jobs(task_id).await.expect("jobs");
    assert_eq!(jobs[0].status, JobStatus::Completed);
    assert_eq!(jobs[1].status, JobStatus::Canceled);
    assert_eq!(
        h.get(&format!("/v1/tasks/{id}"), &t).await.json()["status"],
        "canceled"
    );
    assert!(h.dispatcher.events().contains(&format!("canceled {id} 1")));

    // Canceling a finished task answers the same and changes nothing.
    let done = v_id(&create(&h, &t, json!({"prompt": "x", "input_mode": "script"})).await);
    store
        .set_task_status(done, TaskStatus::Completed)
        .await
        .expect("complete");
    let r = h
        .call(
            Method::POST,
            &format!("/v1/tasks/{done}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"task_id": done.to_string(), "canceled": true})
    );
    assert_eq!(
        store.get_task(done).await.expect("task").status,
        TaskStatus::Completed
    );
    h.call(
        Method::POST,
        "/v1/tasks/no-such-task/cancel",
        Some(&t),
        None,
    )
    .await
    .assert_problem(404, "Task not found");
}

// ---------------------------------------------------------------- OpenAPI

pub async fn openapi_document_covers_every_route(store: Arc<dyn Store>) {
    let h = H::new(store).await;
    let r = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/json");
    let doc = r.json();
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let mut got: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                got.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    got.sort();
    let mut want = vec![
        "GET /healthz",
        "GET /readyz",
        "POST /v1/auth/login",
        "POST /v1/auth/refresh",
        "POST /v1/auth/logout",
        "GET /v1/users/me",
        "POST /v1/users/{id}/revoke_sessions",
        "POST /v1/tasks",
        "GET /v1/tasks",
        "GET /v1/tasks/{id}",
        "GET /v1/tasks/{id}/result",
        "POST /v1/tasks/{id}/cancel",
        "GET /v1/tasks/{id}/logs",
        "GET /v1/skills",
        "POST /v1/skills/load",
        "GET /v1/skills/{id}",
        "PUT /v1/skills/{id}",
        "DELETE /v1/skills/{id}",
        "GET /v1/prefs",
        "POST /v1/prefs",
        "DELETE /v1/prefs",
        "GET /v1/prefs/effective",
        "GET /v1/settings",
        "POST /v1/settings",
        "DELETE /v1/settings",
        "GET /v1/nodes",
        "GET /v1/nodes/{id}",
        "GET /v1/creds",
        "GET /v1/creds/{id}",
        "GET /v1/audit",
        "GET /v1/projects",
        "GET /v1/projects/{id}",
        "POST /v1/projects/set",
        "GET /v1/models",
        "POST /v1/chat/completions",
        "POST /v1/chat/threads",
        "GET /v1/chat/threads",
        "GET /v1/chat/threads/{thread_id}",
        "GET /v1/chat/threads/{thread_id}/messages",
        "POST /v1/chat/threads/{thread_id}/messages",
    ];
    want.sort();
    assert_eq!(got, want);
    // Every documented route answers (not the 404 fallback), and protected ones say so.
    for route in &want {
        let (m, p) = route.split_once(' ').expect("route");
        let p = p.replace("{id}", "x");
        let r = h
            .call(m.parse().expect("method"), &p, None, Some(json!({})))
            .await;
        assert_ne!(r.status, StatusCode::NOT_FOUND, "{route}");
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{route}");
    }
    assert_eq!(
        doc["paths"]["/v1/users/me"]["get"]["security"],
        json!([{"bearer": []}])
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(
        doc,
        serde_json::to_value(cynode_server::gateway::openapi()).expect("doc")
    );
}
