//! The gateway served on a real loopback socket, driven by a real HTTP client.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use cynode_core::auth::{PasswordParams, bootstrap_admin_with};
use cynode_core::model::{AuditFilter, AuditKind, AuditRecord};
use cynode_core::store::{SqliteStore, Store};
use cynode_server::gateway::{GatewayState, router};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn problem(res: reqwest::Response, status: u16, detail: &str) {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let v: Value = res.json().await.expect("problem json");
    assert_eq!(v["status"], status);
    assert_eq!(v["detail"], detail);
}

#[tokio::test]
async fn login_me_refresh_reuse_and_logout_over_a_real_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("gw.db"))
            .await
            .expect("sqlite"),
    );
    bootstrap_admin_with(
        store.as_ref(),
        "admin",
        "admin123",
        &PasswordParams::insecure_fast_for_tests(),
    )
    .await
    .expect("bootstrap");
    let state = GatewayState::builder(store.clone(), common::test_keys())
        .config(common::test_config())
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .await
    });
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    // Probes.
    let res = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.text().await.expect("text"), "ok");

    // Login.
    let res = http
        .post(format!("{base}/v1/auth/login"))
        .header("x-request-id", "e2e-login-1")
        .json(&json!({"handle": "admin", "password": "admin123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("e2e-login-1")
    );
    let first: Value = res.json().await.expect("tokens");
    let access = first["access_token"].as_str().expect("access");
    let refresh1 = first["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();

    // Me.
    let me: Value = http
        .get(format!("{base}/v1/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me json");
    assert_eq!(me["handle"], "admin");
    assert_eq!(me["is_active"], true);

    // Refresh rotates: a new pair, usable at once.
    let res = http
        .post(format!("{base}/v1/auth/refresh"))
        .json(&json!({"refresh_token": refresh1}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(res.status(), StatusCode::OK);
    let second: Value = res.json().await.expect("tokens");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    let res = http
        .get(format!("{base}/v1/users/me"))
        .bearer_auth(second["access_token"].as_str().expect("access"))
        .send()
        .await
        .expect("me 2");
    assert_eq!(res.status(), StatusCode::OK);

    // Reuse of the spent token is refused and ends the rotated session too.
    let res = http
        .post(format!("{base}/v1/auth/refresh"))
        .json(&json!({"refresh_token": refresh1}))
        .send()
        .await
        .expect("reuse");
    problem(res, 401, "Invalid refresh token").await;
    let res = http
        .post(format!("{base}/v1/auth/refresh"))
        .json(&json!({"refresh_token": second["refresh_token"]}))
        .send()
        .await
        .expect("after reuse");
    problem(res, 401, "Invalid refresh token").await;

    // Log in again and log out: the session's refresh token is dead afterwards.
    let third: Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"handle": "admin", "password": "admin123"}))
        .send()
        .await
        .expect("login 2")
        .json()
        .await
        .expect("tokens");
    let res = http
        .post(format!("{base}/v1/auth/logout"))
        .bearer_auth(third["access_token"].as_str().expect("access"))
        .json(&json!({"refresh_token": third["refresh_token"]}))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = http
        .post(format!("{base}/v1/auth/refresh"))
        .json(&json!({"refresh_token": third["refresh_token"]}))
        .send()
        .await
        .expect("refresh after logout");
    problem(res, 401, "Invalid refresh token").await;

    // Without a token.
    let res = http
        .get(format!("{base}/v1/users/me"))
        .send()
        .await
        .expect("no token");
    problem(res, 401, "Missing authorization header").await;

    // The audit trail saw the loopback client.
    let rows = store
        .list_audit(&AuditFilter {
            kind: AuditKind::Auth,
            user_id: None,
            since: None,
            limit: 100,
        })
        .await
        .expect("audit");
    let kinds: Vec<String> = rows
        .iter()
        .map(|r| match r {
            AuditRecord::Auth(a) if a.event_type == "user_created" => a.event_type.clone(),
            AuditRecord::Auth(a) => {
                assert_eq!(a.ip_address.as_deref(), Some("127.0.0.1"), "{a:?}");
                a.event_type.clone()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    for k in [
        "login_success",
        "refresh_success",
        "refresh_failure",
        "session_revoked",
        "logout",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }

    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}
