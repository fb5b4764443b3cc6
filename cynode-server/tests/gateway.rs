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
