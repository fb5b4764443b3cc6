//! System settings (§10.2): deployment-level configuration values. Every
//! authenticated user may read them (they never hold secrets); only the admin writes,
//! and every write is recorded with who, when, why and the old and new values.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use cynode_core::store::SystemSetting;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::{ApiError, ProblemDetails};
use super::http::{json, read_body};
use super::listing::{
    Page, fmt_time, key_and_value, non_empty, parse_expected_version, require_admin, some_value,
    versioned_store_error,
};
use super::state::GatewayState;

/// One setting.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SettingResponse {
    /// Dotted key.
    pub key: String,
    /// Value (any JSON).
    #[schema(value_type = Object)]
    pub value: Value,
    /// JSON type of the value.
    pub value_type: String,
    /// Starts at 1, +1 per update.
    pub version: i32,
    /// RFC 3339 with microseconds.
    pub updated_at: String,
    /// Handle of the last writer.
    pub updated_by: Option<String>,
}

/// `GET /v1/settings` response (without `key`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SettingListResponse {
    /// Settings, by key.
    pub settings: Vec<SettingResponse>,
    /// Cursor of the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/settings` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SettingSetResponse {
    /// Always true.
    pub ok: bool,
    /// The setting as stored.
    pub setting: SettingResponse,
}

/// `DELETE /v1/settings` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SettingDeleteResponse {
    /// Always true.
    pub deleted: bool,
}

/// `GET` / `DELETE /v1/settings` query.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct SettingsQuery {
    /// One key: `GET` answers that setting alone; `DELETE` deletes it.
    pub key: Option<String>,
    /// Only keys starting with this (list).
    pub prefix: Option<String>,
    /// Delete only if the setting is at this version.
    #[param(value_type = Option<i32>)]
    pub expected_version: Option<String>,
    /// Why (recorded with a delete).
    pub reason: Option<String>,
    /// Page size 1..200 (default 50).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `POST /v1/settings` body.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct SettingWriteRequest {
    /// Key (required).
    pub key: Option<String>,
    /// Value: any JSON, or a string holding JSON text (decoded). Required.
    #[serde(deserialize_with = "some_value")]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// Declared type; the value must match it.
    pub value_type: Option<String>,
    /// Write only if the setting is at this version (`0` = must not exist), else `409`.
    pub expected_version: Option<i32>,
    /// Why (recorded).
    pub reason: Option<String>,
}

fn response(s: &SystemSetting) -> SettingResponse {
    SettingResponse {
        key: s.key.clone(),
        value: s.value.clone(),
        value_type: s.value_type.clone(),
        version: s.version,
        updated_at: fmt_time(s.updated_at),
        updated_by: s.updated_by.clone(),
    }
}

fn store_error(what: &'static str) -> impl FnOnce(cynode_core::Error) -> ApiError {
    versioned_store_error("Setting not found", what)
}

/// All settings (paged), or one with `key`.
#[utoipa::path(
    get, path = "/v1/settings", tag = "settings",
    params(SettingsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of settings (`SettingListResponse`), or with `key` that one setting (`SettingResponse`)", body = SettingListResponse),
        (status = 400, description = "`Invalid limit or cursor`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Setting not found` (with `key`)", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_settings(
    State(st): State<GatewayState>,
    _user: AuthUser,
    query: Result<Query<SettingsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    if let Some(key) = non_empty(q.key.as_deref()) {
        let s = st
            .inner
            .store
            .get_setting(key)
            .await
            .map_err(store_error("Failed to get setting"))?;
        return Ok(json(StatusCode::OK, &response(&s)));
    }
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let all = st
        .inner
        .store
        .list_settings(q.prefix.as_deref().unwrap_or(""))
        .await
        .map_err(|e| ApiError::storage("Failed to list settings", e))?;
    let (items, next_cursor) = page.apply(all);
    Ok(json(
        StatusCode::OK,
        &SettingListResponse {
            settings: items.iter().map(response).collect(),
            next_cursor,
        },
    ))
}

/// Create or update a setting (admin).
#[utoipa::path(
    post, path = "/v1/settings", tag = "settings",
    request_body = SettingWriteRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored", body = SettingSetResponse),
        (status = 400, description = "`Invalid request body` / `key required` / `value required` / `value does not match value_type`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Admin required`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "`version conflict`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_setting(
    State(st): State<GatewayState>,
    user: AuthUser,
    req: Request,
) -> Result<Response, ApiError> {
    require_admin(&st, &user)?;
    let bytes = read_body(req.into_body(), st.inner.config.max_body_bytes).await?;
    let body: SettingWriteRequest = super::http::decode(&bytes)?;
    let (key, value) = key_and_value(body.key.as_deref(), body.value, body.value_type.as_deref())?;
    let s = st
        .inner
        .store
        .put_setting(
            &key,
            value,
            body.expected_version,
            &user.handle,
            non_empty(body.reason.as_deref()),
        )
        .await
        .map_err(store_error("Failed to store setting"))?;
    Ok(json(
        StatusCode::OK,
        &SettingSetResponse {
            ok: true,
            setting: response(&s),
        },
    ))
}

/// Delete a setting (admin).
#[utoipa::path(
    delete, path = "/v1/settings", tag = "settings",
    params(SettingsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = SettingDeleteResponse),
        (status = 400, description = "`key required` / `invalid expected_version`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Admin required`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Setting not found`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "`version conflict`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_setting(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<SettingsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&st, &user)?;
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    let key = non_empty(q.key.as_deref()).ok_or_else(|| ApiError::bad_request("key required"))?;
    let expected = parse_expected_version(q.expected_version.as_deref())?;
    st.inner
        .store
        .delete_setting(key, expected, &user.handle, non_empty(q.reason.as_deref()))
        .await
        .map_err(store_error("Failed to delete setting"))?;
    Ok(json(
        StatusCode::OK,
        &SettingDeleteResponse { deleted: true },
    ))
}
