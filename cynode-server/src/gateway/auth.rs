//! Authentication: the access-token layer, and login, refresh and logout (§4).
//!
//! Refresh-token rotation and reuse: every refresh deactivates the presented session
//! and opens a new one. A refresh token that carries our valid signature and has not
//! expired, but whose session is no longer active, was rotated away or revoked, so
//! someone is replaying it: all of that user's refresh sessions are revoked (the
//! rightful holder must log in again), and the event is audited as
//! `refresh_failure` (`token reuse`) plus `session_revoked`. Two clients racing to
//! refresh the same token trip the same rule. Access tokens are stateless and stay
//! valid until they expire (15 minutes by default).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cynode_core::auth::{self, TokenKind};
use cynode_core::model::{AuditRecord, AuthAudit, NewRefreshSession, PasswordHash, User};
use cynode_core::proto::v1::gateway::TokenResponse;
use cynode_core::{AuditId, Error, UserId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ProblemDetails};
use super::http::{ClientInfo, json, json_body, read_body};
use super::state::GatewayState;

/// The authenticated caller, put in the request extensions by the access-token
/// layer; handlers take it as an extractor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// User id (`user_id` claim).
    pub id: UserId,
    /// Handle (`handle` claim).
    pub handle: String,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthUser>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("Missing authorization header"))
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The access-token layer (§4.5): `401` `Missing authorization header` or
/// `401` `Invalid or expired token`, else the caller is attached as [`AuthUser`].
pub(crate) async fn require_access_token(
    State(st): State<GatewayState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ApiError::unauthorized("Missing authorization header").into_response();
    };
    let user = st
        .inner
        .keys
        .verify(token, TokenKind::Access, st.now())
        .ok()
        .and_then(|c| {
            Some(AuthUser {
                id: c.user()?,
                handle: c.handle.unwrap_or_default(),
            })
        });
    match user {
        Some(user) => {
            tracing::Span::current().record("user_id", tracing::field::display(user.id));
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        None => ApiError::unauthorized("Invalid or expired token").into_response(),
    }
}

// ---------------------------------------------------------------- wire types

/// `POST /v1/auth/login` body.
#[derive(Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct LoginRequest {
    /// User handle.
    pub handle: Option<String>,
    /// Password.
    pub password: Option<String>,
}

/// `POST /v1/auth/refresh` body (and the optional logout body).
#[derive(Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct RefreshRequest {
    /// The refresh token from login or the last refresh.
    pub refresh_token: Option<String>,
}

// ---------------------------------------------------------------- audit

pub(crate) struct AuthEvent<'a> {
    pub(crate) kind: &'static str,
    pub(crate) user_id: Option<UserId>,
    pub(crate) handle: Option<&'a str>,
    pub(crate) success: bool,
    pub(crate) reason: Option<&'a str>,
}

pub(crate) async fn audit(st: &GatewayState, client: &ClientInfo, ev: AuthEvent<'_>) {
    let record = AuditRecord::Auth(AuthAudit {
        id: AuditId::new(),
        event_type: ev.kind.into(),
        user_id: ev.user_id,
        subject_handle: ev.handle.map(|h| h.chars().take(64).collect()),
        success: ev.success,
        ip_address: Some(client.ip.clone()),
        user_agent: client.user_agent.clone(),
        reason: ev.reason.map(str::to_string),
        created_at: st.now(),
    });
    // An audit write failure must not change the answer; it is logged loudly.
    if let Err(e) = st.inner.store.record_audit(record).await {
        tracing::error!(event = ev.kind, error = %e, "could not write auth audit record");
    }
}

// ---------------------------------------------------------------- passwords

async fn verify_in_pool(
    st: &GatewayState,
    password: String,
    hash: PasswordHash,
) -> Result<bool, Error> {
    let _permit = st
        .inner
        .hash_gate
        .acquire()
        .await
        .map_err(|_| Error::internal("password hashing pool closed"))?;
    tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(|e| Error::Internal {
            message: "password check panicked".into(),
            source: Some(Box::new(e)),
        })?
}

/// Spends the time a real check would, so unknown and known handles look alike.
async fn verify_dummy(st: &GatewayState, password: String) {
    let params = st.inner.config.password_params.clone();
    let dummy = st
        .inner
        .dummy_hash
        .get_or_try_init(|| async move {
            let secret = uuid::Uuid::new_v4().to_string();
            tokio::task::spawn_blocking(move || auth::hash_password(&secret, &params))
                .await
                .map_err(|e| Error::internal(format!("dummy hash task failed: {e}")))?
        })
        .await;
    if let Ok(hash) = dummy {
        let _ = verify_in_pool(st, password, hash.clone()).await;
    }
}

// ---------------------------------------------------------------- handlers

async fn issue_pair(
    st: &GatewayState,
    user: &User,
) -> Result<(TokenResponse, NewRefreshSession), ApiError> {
    let now = st.now();
    let cfg = &st.inner.config;
    let (access, _) =
        auth::issue_access_token(&st.inner.keys, user.id, &user.handle, now, cfg.access_ttl());
    let refresh = auth::issue_refresh_token(&st.inner.keys, user.id, now, cfg.refresh_ttl());
    let session = NewRefreshSession {
        user_id: user.id,
        token_hash: refresh.hash.clone(),
        token_kid: Some(refresh.kid.clone()),
        expires_at: refresh.expires_at,
    };
    let pair = TokenResponse {
        access_token: access,
        refresh_token: refresh.token,
        token_type: "Bearer".into(),
        expires_in: cfg.access_ttl().as_secs(),
    };
    Ok((pair, session))
}

/// Log in with handle and password.
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens", body = TokenResponse),
        (status = 400, description = "`Invalid request body` / `Handle and password are required`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "`Invalid credentials`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over the size cap", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "`Too many login attempts` (see `Retry-After`)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "Server failure", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn login(
    State(st): State<GatewayState>,
    req: Request,
) -> Result<Response, ApiError> {
    let client = ClientInfo::from_request(&req, st.inner.config.trust_forwarded_headers);
    let fail = |reason: &'static str| AuthEvent {
        kind: "login_failure",
        user_id: None,
        handle: None,
        success: false,
        reason: Some(reason),
    };
    // The per-address limit is checked before the body is read.
    if let Err(retry) = st.inner.limiter.hit_ip(&client.ip, st.now()) {
        audit(&st, &client, fail("rate limited")).await;
        return Err(ApiError::too_many_requests(
            "Too many login attempts",
            retry,
        ));
    }
    let body: LoginRequest = json_body(&st, req.into_body()).await?;
    let handle = body.handle.unwrap_or_default();
    let password = body.password.unwrap_or_default();
    if handle.is_empty() || password.is_empty() {
        return Err(ApiError::bad_request("Handle and password are required"));
    }
    if let Err(retry) = st
        .inner
        .limiter
        .check_failures(&handle, &client.ip, st.now())
    {
        audit(
            &st,
            &client,
            AuthEvent {
                handle: Some(&handle),
                ..fail("rate limited")
            },
        )
        .await;
        return Err(ApiError::too_many_requests(
            "Too many login attempts",
            retry,
        ));
    }

    let store = &st.inner.store;
    let user = match store.get_user_by_handle(&handle).await {
        Ok(u) => Some(u),
        Err(Error::NotFound { .. }) | Err(Error::InvalidInput(_)) => None,
        Err(e) => return Err(ApiError::storage("Failed to authenticate", e)),
    };
    let checked: Result<User, (Option<UserId>, &'static str)> = match user {
        None => {
            verify_dummy(&st, password).await;
            Err((None, "user not found"))
        }
        Some(u) if !u.is_active => {
            verify_dummy(&st, password).await;
            Err((Some(u.id), "user inactive"))
        }
        Some(u) => match store.get_password(u.id).await {
            Err(e) => return Err(ApiError::storage("Failed to authenticate", e)),
            Ok(None) => {
                verify_dummy(&st, password).await;
                Err((Some(u.id), "no password credential"))
            }
            Ok(Some(hash)) => match verify_in_pool(&st, password, hash).await {
                Ok(true) => Ok(u),
                Ok(false) => Err((Some(u.id), "invalid password")),
                Err(e) => return Err(ApiError::internal("Failed to authenticate").with_source(e)),
            },
        },
    };
    let user = match checked {
        Ok(u) => u,
        Err((user_id, reason)) => {
            st.inner
                .limiter
                .record_failure(&handle, &client.ip, st.now());
            audit(
                &st,
                &client,
                AuthEvent {
                    user_id,
                    handle: Some(&handle),
                    ..fail(reason)
                },
            )
            .await;
            return Err(ApiError::unauthorized("Invalid credentials"));
        }
    };
    let (pair, session) = issue_pair(&st, &user).await?;
    store
        .create_session(session)
        .await
        .map_err(|e| ApiError::storage("Failed to create session", e))?;
    st.inner.limiter.clear_failures(&handle, &client.ip);
    audit(
        &st,
        &client,
        AuthEvent {
            kind: "login_success",
            user_id: Some(user.id),
            handle: Some(&user.handle),
            success: true,
            reason: None,
        },
    )
    .await;
    Ok(json(StatusCode::OK, &pair))
}

/// Exchange a refresh token for a new token pair (rotation).
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the presented refresh token is spent", body = TokenResponse),
        (status = 400, description = "`Invalid request body` / `Refresh token is required`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "`Invalid refresh token` / `User not found` / `Account is disabled`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over the size cap", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "Server failure", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn refresh(
    State(st): State<GatewayState>,
    req: Request,
) -> Result<Response, ApiError> {
    let client = ClientInfo::from_request(&req, st.inner.config.trust_forwarded_headers);
    let body: RefreshRequest = json_body(&st, req.into_body()).await?;
    let token = body.refresh_token.unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::bad_request("Refresh token is required"));
    }
    let fail = |user_id: Option<UserId>, reason: &'static str| AuthEvent {
        kind: "refresh_failure",
        user_id,
        handle: None,
        success: false,
        reason: Some(reason),
    };
    let now = st.now();
    let user_id = match st
        .inner
        .keys
        .verify(&token, TokenKind::Refresh, now)
        .ok()
        .and_then(|c| c.user())
    {
        Some(u) => u,
        None => {
            audit(&st, &client, fail(None, "invalid token")).await;
            return Err(ApiError::unauthorized("Invalid refresh token"));
        }
    };
    let store = &st.inner.store;
    let hash = auth::hash_refresh_token(&token);
    let session = store
        .find_active_session(&hash, now)
        .await
        .map_err(|e| ApiError::storage("Failed to refresh token", e))?;
    let Some(session) = session.filter(|s| s.user_id == user_id) else {
        revoke_on_reuse(&st, &client, user_id).await?;
        return Err(ApiError::unauthorized("Invalid refresh token"));
    };
    let user = match store.get_user(user_id).await {
        Ok(u) if u.is_active => u,
        other => {
            // The presented session is spent whatever the user check says.
            store
                .revoke_session(session.id)
                .await
                .map_err(|e| ApiError::storage("Failed to refresh token", e))?;
            return match other {
                Ok(_) => {
                    audit(&st, &client, fail(Some(user_id), "user inactive")).await;
                    Err(ApiError::unauthorized("Account is disabled"))
                }
                Err(Error::NotFound { .. }) => {
                    audit(&st, &client, fail(Some(user_id), "user not found")).await;
                    Err(ApiError::unauthorized("User not found"))
                }
                Err(e) => Err(ApiError::storage("Failed to refresh token", e)),
            };
        }
    };
    let (pair, new_session) = issue_pair(&st, &user).await?;
    match store.rotate_session(session.id, new_session, now).await {
        Ok(_) => {}
        Err(Error::Conflict(_)) => {
            // Another request spent this token a moment ago: the same token twice.
            revoke_on_reuse(&st, &client, user_id).await?;
            return Err(ApiError::unauthorized("Invalid refresh token"));
        }
        Err(e) => return Err(ApiError::storage("Failed to create session", e)),
    }
    audit(
        &st,
        &client,
        AuthEvent {
            kind: "refresh_success",
            user_id: Some(user.id),
            handle: Some(&user.handle),
            success: true,
            reason: None,
        },
    )
    .await;
    Ok(json(StatusCode::OK, &pair))
}

/// A validly signed, unexpired refresh token without an active session: revoke every
/// session of its user (see the module documentation).
async fn revoke_on_reuse(
    st: &GatewayState,
    client: &ClientInfo,
    user_id: UserId,
) -> Result<(), ApiError> {
    let revoked = match st.inner.store.revoke_user_sessions(user_id).await {
        Ok(n) => n,
        Err(Error::NotFound { .. }) => 0,
        Err(e) => return Err(ApiError::storage("Failed to refresh token", e)),
    };
    tracing::warn!(%user_id, revoked, "refresh token reuse: all sessions of the user revoked");
    audit(
        st,
        client,
        AuthEvent {
            kind: "refresh_failure",
            user_id: Some(user_id),
            handle: None,
            success: false,
            reason: Some("token reuse"),
        },
    )
    .await;
    audit(
        st,
        client,
        AuthEvent {
            kind: "session_revoked",
            user_id: Some(user_id),
            handle: None,
            success: true,
            reason: Some("refresh token reuse"),
        },
    )
    .await;
    Ok(())
}

/// Log out: ends the session of the given refresh token, if it is the caller's.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, description = "`Invalid request body` (send `{}` when there is no refresh token)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body over the size cap", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn logout(
    State(st): State<GatewayState>,
    user: AuthUser,
    req: Request,
) -> Result<Response, ApiError> {
    let client = ClientInfo::from_request(&req, st.inner.config.trust_forwarded_headers);
    let bytes = read_body(req.into_body(), st.inner.config.max_body_bytes).await?;
    let body: RefreshRequest = super::http::decode(&bytes)?;
    if let Some(token) = body.refresh_token.filter(|t| !t.is_empty()) {
        let hash = auth::hash_refresh_token(&token);
        let store = &st.inner.store;
        match store.find_active_session(&hash, st.now()).await {
            // Only the caller's own session is ended.
            Ok(Some(s)) if s.user_id == user.id => store
                .revoke_session(s.id)
                .await
                .map_err(|e| ApiError::storage("Failed to log out", e))?,
            Ok(_) => {}
            Err(e) => return Err(ApiError::storage("Failed to log out", e)),
        }
    }
    audit(
        &st,
        &client,
        AuthEvent {
            kind: "logout",
            user_id: Some(user.id),
            handle: Some(&user.handle),
            success: true,
            reason: None,
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
