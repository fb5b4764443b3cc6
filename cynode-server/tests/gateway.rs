//! Every gateway route and its error cases through `tower::ServiceExt::oneshot`, on the
//! in-memory store and on SQLite.

mod common;

macro_rules! on_backends {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::common::cases::$case(crate::common::memory()).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::common::cases::$case(crate::common::sqlite().await).await
                }
            )*
        }
    };
}

on_backends!(
    probes_and_fallbacks,
    request_ids,
    body_limits_and_malformed_json,
    timeouts_and_panics_become_problem_details,
    login_success_and_failures,
    login_rate_limits,
    access_token_layer,
    refresh_rotation_and_reuse,
    logout,
    users_me_and_admin_revocation,
    task_create,
    task_list_paging_and_filters,
    task_get_result_cancel_logs,
    openapi_document_covers_every_route,
);

/// Storage that has gone away: readiness says so, and requests get a 503, not a 500.
#[tokio::test]
async fn a_closed_database_is_not_ready() {
    let store = std::sync::Arc::new(
        cynode_core::store::SqliteStore::open_in_memory()
            .await
            .expect("open"),
    );
    let h = common::H::new(store.clone()).await;
    h.user("alice", "pw").await;
    let t = h.login("alice", "pw").await.access_token;
    store.close().await;
    let r = h.call(axum::http::Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status.as_u16(), 503);
    assert_eq!(r.text(), "readiness check failed (database error)");
    let r = h.get("/v1/users/me", &t).await;
    assert_eq!(r.status.as_u16(), 503, "{}", r.text());
    assert_eq!(r.json()["detail"], "Database not available");
    assert!(r.headers.contains_key("retry-after"));
}

/// CORS is off unless origins are configured; then preflights from those origins pass.
#[tokio::test]
async fn cors_only_for_configured_origins() {
    use axum::http::{Method, Request};
    let preflight = || {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/tasks")
            .header("origin", "http://app.example")
            .header("access-control-request-method", "POST")
            .body(axum::body::Body::empty())
            .expect("request")
    };
    let off = common::H::new(common::memory()).await;
    let r = off.send(preflight()).await;
    assert!(
        !r.headers.contains_key("access-control-allow-origin"),
        "{:?}",
        r.headers
    );
    let r = off.call(Method::GET, "/healthz", None, None).await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));

    let on = common::H::with_config(
        common::memory(),
        cynode_server::gateway::GatewayConfig {
            cors_allowed_origins: vec!["http://app.example".into()],
            ..common::test_config()
        },
    )
    .await;
    let r = on.send(preflight()).await;
    assert_eq!(
        r.headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://app.example")
    );
    let mut other = preflight();
    other
        .headers_mut()
        .insert("origin", "http://evil.example".parse().expect("hv"));
    let r = on.send(other).await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
}

/// `/metrics` counts requests under their route template (never the concrete id), by
/// status, with a latency histogram, and needs no token.
#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let h = common::H::new(common::memory()).await;
    h.user("alice", "pw").await;
    let t = h.login("alice", "pw").await.access_token;
    let id = uuid::Uuid::new_v4();
    for _ in 0..2 {
        let r = h.get(&format!("/v1/tasks/{id}"), &t).await;
        assert_eq!(r.status.as_u16(), 404);
    }
    let r = h
        .call(axum::http::Method::GET, "/v1/users/me", None, None)
        .await;
    assert_eq!(r.status.as_u16(), 401);
    let r = h
        .call(axum::http::Method::GET, "/metrics", None, None)
        .await;
    assert_eq!(r.status.as_u16(), 200);
    let text = r.text();
    assert!(
        text.contains(
            "cynode_http_requests_total{method=\"GET\",route=\"/v1/tasks/{id}\",status=\"404\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "cynode_http_requests_total{method=\"GET\",route=\"/v1/users/me\",status=\"401\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "cynode_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/tasks/{id}\"} 2"
        ),
        "{text}"
    );
    assert!(!text.contains(&id.to_string()), "no concrete ids in labels");
    assert!(text.contains("cynode_http_requests_in_flight "), "{text}");
}
