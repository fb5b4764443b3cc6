//! Users (§5): the caller's account and admin session revocation.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cynode_core::proto::v1::gateway::UserInfo;
use cynode_core::{Error, UserId};

use super::auth::{AuthEvent, AuthUser, audit};
use super::error::{ApiError, ProblemDetails};
use super::http::{ClientInfo, json};
use super::state::GatewayState;

/// The caller's account.
#[utoipa::path(
    get, path = "/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserInfo),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "`Failed to get user`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn me(
    State(st): State<GatewayState>,
    user: AuthUser,
) -> Result<Response, ApiError> {
    let u = st
        .inner
        .store
        .get_user(user.id)
        .await
        .map_err(|e| ApiError::storage("Failed to get user", e))?;
    Ok(json(
        StatusCode::OK,
        &UserInfo {
            id: u.id.to_string(),
            handle: u.handle,
            email: u.email,
            is_active: u.is_active,
        },
    ))
}

/// Ends every refresh session of a user (admin only). Access tokens already issued
/// stay valid until they expire.
#[utoipa::path(
    post, path = "/v1/users/{id}/revoke_sessions", tag = "users",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "All sessions revoked"),
        (status = 400, description = "`invalid user id`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Admin required`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`User not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_sessions(
    State(st): State<GatewayState>,
    caller: AuthUser,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    if caller.handle != st.inner.config.admin_handle {
        return Err(ApiError::forbidden("Admin required"));
    }
    let id: UserId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid user id"))?;
    let store = &st.inner.store;
    let target = match store.get_user(id).await {
        Ok(u) => u,
        Err(Error::NotFound { .. }) => return Err(ApiError::not_found("User not found")),
        Err(e) => return Err(ApiError::storage("Failed to revoke sessions", e)),
    };
    store
        .revoke_user_sessions(target.id)
        .await
        .map_err(|e| ApiError::storage("Failed to revoke sessions", e))?;
    let client = ClientInfo::from_request(&req, st.inner.config.trust_forwarded_headers);
    let reason = format!("revoked by {}", caller.handle);
    audit(
        &st,
        &client,
        AuthEvent {
            kind: "session_revoked",
            user_id: Some(target.id),
            handle: Some(&target.handle),
            success: true,
            reason: Some(&reason),
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
