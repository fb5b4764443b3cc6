//! API credentials (§10.2): metadata only. No route ever returns a secret or its
//! ciphertext; the response type has no field that could hold one.
//!
//! A user sees the credentials they own (`owner_type` `user`); the admin may name any
//! owner, including groups.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use cynode_core::model::ApiCredential;
use cynode_core::{CredentialId, Error};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::{ApiError, ProblemDetails};
use super::http::json;
use super::listing::{Page, fmt_time, is_admin, non_empty};
use super::state::GatewayState;

/// A credential's metadata.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CredentialResponse {
    /// Credential id.
    pub credential_id: String,
    /// Lower-case provider id.
    pub provider: String,
    /// Label.
    pub name: String,
    /// `api_key`, `oauth_token` or `bearer_token`.
    pub credential_type: String,
    /// `user` or `group`.
    pub owner_type: String,
    /// Owner id.
    pub owner_id: String,
    /// Enabled and not expired.
    pub active: bool,
    /// Enabled flag as stored.
    pub enabled: bool,
    /// Expiry (RFC 3339); `null` = never.
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `GET /v1/creds` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CredentialListResponse {
    /// Credentials, by provider then name.
    pub credentials: Vec<CredentialResponse>,
    /// Cursor of the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/creds` query.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct CredsQuery {
    /// Only this provider.
    pub provider: Option<String>,
    /// `user` (default) or `group` (admin).
    pub owner_type: Option<String>,
    /// Owner id (default: the caller; another owner needs the admin).
    pub owner_id: Option<String>,
    /// `true`: only usable ones; `false`: only disabled or expired ones.
    #[param(value_type = Option<bool>)]
    pub active: Option<String>,
    /// Page size 1..200 (default 50).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn response(c: &ApiCredential, now: cynode_core::model::Timestamp) -> CredentialResponse {
    CredentialResponse {
        credential_id: c.id.to_string(),
        provider: c.provider.clone(),
        name: c.credential_name.clone(),
        credential_type: c.credential_type.clone(),
        owner_type: c.owner_type.clone(),
        owner_id: c.owner_id.to_string(),
        active: c.is_usable(now),
        enabled: c.is_active,
        expires_at: c.expires_at.map(fmt_time),
        created_at: fmt_time(c.created_at),
        updated_at: fmt_time(c.updated_at),
    }
}

/// Credentials of one owner (metadata only).
#[utoipa::path(
    get, path = "/v1/creds", tag = "credentials",
    params(CredsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of credentials", body = CredentialListResponse),
        (status = 400, description = "`Invalid limit or cursor` / `invalid owner_type` / `invalid owner_id` / `Invalid active`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Admin required` (another owner)", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_creds(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<CredsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let owner_type = match non_empty(q.owner_type.as_deref()).unwrap_or("user") {
        t @ ("user" | "group") => t,
        _ => return Err(ApiError::bad_request("invalid owner_type")),
    };
    let owner_id = match non_empty(q.owner_id.as_deref()) {
        None if owner_type == "user" => user.id.0,
        None => return Err(ApiError::bad_request("invalid owner_id")),
        Some(s) => {
            uuid::Uuid::parse_str(s).map_err(|_| ApiError::bad_request("invalid owner_id"))?
        }
    };
    if (owner_type != "user" || owner_id != user.id.0) && !is_admin(&st, &user) {
        return Err(ApiError::forbidden("Admin required"));
    }
    let active = match non_empty(q.active.as_deref()) {
        None => None,
        Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        Some(_) => return Err(ApiError::bad_request("Invalid active")),
    };
    let provider = non_empty(q.provider.as_deref()).map(str::to_ascii_lowercase);
    let now = st.now();
    let creds: Vec<ApiCredential> = st
        .inner
        .store
        .list_credentials(owner_type, owner_id)
        .await
        .map_err(|e| ApiError::storage("Failed to list credentials", e))?
        .into_iter()
        .filter(|c| provider.as_deref().is_none_or(|p| c.provider == p))
        .filter(|c| active.is_none_or(|a| c.is_usable(now) == a))
        .collect();
    let (creds, next_cursor) = page.apply(creds);
    Ok(json(
        StatusCode::OK,
        &CredentialListResponse {
            credentials: creds.iter().map(|c| response(c, now)).collect(),
            next_cursor,
        },
    ))
}

/// One credential's metadata (owner or admin).
#[utoipa::path(
    get, path = "/v1/creds/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The credential (metadata only)", body = CredentialResponse),
        (status = 400, description = "`invalid credential id`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Credential not found` (also for other owners' credentials)", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_cred(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: CredentialId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("invalid credential id"))?;
    let c = match st.inner.store.get_credential(id).await {
        Ok(c) => c,
        Err(Error::NotFound { .. }) => return Err(ApiError::not_found("Credential not found")),
        Err(e) => return Err(ApiError::storage("Failed to get credential", e)),
    };
    let own = c.owner_type == "user" && c.owner_id == user.id.0;
    if !own && !is_admin(&st, &user) {
        return Err(ApiError::not_found("Credential not found"));
    }
    Ok(json(StatusCode::OK, &response(&c, st.now())))
}
