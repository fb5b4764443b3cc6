//! Preferences (§10.1): scoped, versioned task-execution knobs, and their effective
//! resolution for a task or project.
//!
//! Scopes and who may use them (the admin may use every scope):
//!
//! | scope | read | write |
//! |---|---|---|
//! | `system` | everyone | admin |
//! | `user` (default; `scope_id` defaults to the caller) | that user | that user |
//! | `group` | admin | admin |
//! | `project` | users with access to the project | the same |
//! | `task` | the task's creator | the same |
//!
//! Effective resolution folds system → user → project → task (later wins; groups are
//! not resolved because group membership is not modelled yet); within a scope entries
//! apply oldest `updated_at` first, then by id; an entry whose value does not match its
//! `value_type` is skipped; an explicit `null` masks lower scopes and is reported as
//! `null`.
//!
//! Every write and delete is recorded (old and new value, who, why) in the preference
//! audit log, in the same transaction as the change.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use cynode_core::model::{PreferenceEntry, Scope, json_type_name};
use cynode_core::{Error, ProjectId, TaskId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::{ApiError, ProblemDetails};
use super::http::{json, read_body};
use super::listing::{
    Page, fmt_time, is_admin, key_and_value, non_empty, parse_expected_version, require_admin,
    some_value, versioned_store_error,
};
use super::projects::accessible_project;
use super::state::GatewayState;

// ---------------------------------------------------------------- wire types

/// A stored preference.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferenceResponse {
    /// Entry id.
    pub id: String,
    /// `system`, `user`, `group`, `project` or `task`.
    pub scope_type: String,
    /// User, group, project or task id; `null` for `system`.
    pub scope_id: Option<String>,
    /// Case-sensitive key.
    pub key: String,
    /// The value (any JSON).
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

/// `GET /v1/prefs` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferenceListResponse {
    /// Entries of the scope, ordered by key.
    pub preferences: Vec<PreferenceResponse>,
    /// Cursor of the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/prefs` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferenceSetResponse {
    /// Always true.
    pub ok: bool,
    /// The entry as stored.
    pub preference: PreferenceResponse,
}

/// `DELETE /v1/prefs` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferenceDeleteResponse {
    /// Always true.
    pub deleted: bool,
}

/// Where an effective value came from.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferenceSource {
    /// Key.
    pub key: String,
    /// Scope that won.
    pub scope_type: String,
    /// Its id; `null` for `system`.
    pub scope_id: Option<String>,
    /// Version of the winning entry.
    pub version: i32,
}

/// `GET /v1/prefs/effective` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EffectivePreferencesResponse {
    /// Merged key → value.
    #[schema(value_type = Object)]
    pub effective: serde_json::Map<String, Value>,
    /// Winning scope per key, ordered by key.
    pub sources: Vec<PreferenceSource>,
    /// The key asked for with `key`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its effective value (`null` when unset); present only with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
}

/// Scope selection in queries and bodies.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct PrefsQuery {
    /// `system`, `user` (default), `group`, `project` or `task`.
    pub scope_type: Option<String>,
    /// Id of the scope; defaults to the caller for `user`; required for group, project
    /// and task.
    pub scope_id: Option<String>,
    /// Only keys starting with this (list).
    pub key_prefix: Option<String>,
    /// The key (delete).
    pub key: Option<String>,
    /// Delete only if the entry is at this version.
    #[param(value_type = Option<i32>)]
    pub expected_version: Option<String>,
    /// Page size 1..200 (default 50; list).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (list).
    pub cursor: Option<String>,
    /// Why (delete; recorded in the preference audit log).
    pub reason: Option<String>,
}

/// `POST /v1/prefs` body.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct PreferenceWriteRequest {
    /// Scope type (default `user`).
    pub scope_type: Option<String>,
    /// Scope id (default: the caller for `user`).
    pub scope_id: Option<String>,
    /// Key (required).
    pub key: Option<String>,
    /// Value: any JSON, or a string holding JSON text (decoded). Required; `null` is a
    /// value (it masks lower scopes).
    #[serde(deserialize_with = "some_value")]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// Declared type; the value must match it.
    pub value_type: Option<String>,
    /// Write only if the entry is at this version (`0` = must not exist yet), else `409`.
    pub expected_version: Option<i32>,
    /// Why (recorded in the preference audit log).
    pub reason: Option<String>,
}

/// `DELETE /v1/prefs` body (optional; query parameters work too).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct PreferenceDeleteRequest {
    /// Scope type (default `user`).
    pub scope_type: Option<String>,
    /// Scope id.
    pub scope_id: Option<String>,
    /// Key (required).
    pub key: Option<String>,
    /// Delete only if the entry is at this version, else `409`.
    pub expected_version: Option<i32>,
    /// Why (recorded in the preference audit log).
    pub reason: Option<String>,
}

/// `GET /v1/prefs/effective` query.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct EffectiveQuery {
    /// Resolve for this task (its creator, project and the task scope).
    pub task_id: Option<String>,
    /// Resolve for this project (and the caller).
    pub project_id: Option<String>,
    /// Also report this key's value as `key`/`value`.
    pub key: Option<String>,
}

// ---------------------------------------------------------------- helpers

pub(crate) fn entry_response(e: &PreferenceEntry) -> PreferenceResponse {
    PreferenceResponse {
        id: e.id.to_string(),
        scope_type: e.scope.type_str().into(),
        scope_id: e.scope.id().map(|u| u.to_string()),
        key: e.key.clone(),
        value: e.value.clone(),
        value_type: e.value_type.clone(),
        version: e.version,
        updated_at: fmt_time(e.updated_at),
        updated_by: e.updated_by.clone(),
    }
}

/// Parses a scope from its type and id, defaulting to the caller's user scope.
fn parse_scope(
    user: &AuthUser,
    scope_type: Option<&str>,
    scope_id: Option<&str>,
) -> Result<Scope, ApiError> {
    let id = match non_empty(scope_id) {
        None => None,
        Some(s) => {
            Some(uuid::Uuid::parse_str(s).map_err(|_| ApiError::bad_request("invalid scope_id"))?)
        }
    };
    match non_empty(scope_type).unwrap_or("user") {
        "system" => Ok(Scope::System),
        "user" => Ok(Scope::User(id.map(UserId::from).unwrap_or(user.id))),
        t @ ("group" | "project" | "task") => {
            let id = id.ok_or_else(|| {
                ApiError::bad_request("scope_id required when scope_type is not system")
            })?;
            Ok(match t {
                "group" => Scope::Group(id),
                "project" => Scope::Project(id.into()),
                _ => Scope::Task(id.into()),
            })
        }
        _ => Err(ApiError::bad_request(
            "invalid scope_type: use system, user, group, project or task",
        )),
    }
}

/// Checks the caller may read (`write = false`) or write the scope.
async fn authorize(
    st: &GatewayState,
    user: &AuthUser,
    scope: Scope,
    write: bool,
) -> Result<(), ApiError> {
    if is_admin(st, user) {
        return Ok(());
    }
    let denied = || ApiError::forbidden("Not allowed for this scope");
    match scope {
        Scope::System if write => require_admin(st, user),
        Scope::System => Ok(()),
        Scope::User(u) if u == user.id => Ok(()),
        Scope::User(_) | Scope::Group(_) => Err(denied()),
        Scope::Project(p) => accessible_project(st, user, &p.to_string())
            .await
            .map(|_| ()),
        Scope::Task(t) => {
            task_of(st, user, t).await?;
            Ok(())
        }
    }
}

/// A task the caller may use: `404` `Task not found`, `403` `Not task owner`.
async fn task_of(
    st: &GatewayState,
    user: &AuthUser,
    id: TaskId,
) -> Result<cynode_core::model::Task, ApiError> {
    let task = match st.inner.store.get_task(id).await {
        Ok(t) => t,
        Err(Error::NotFound { .. }) => return Err(ApiError::not_found("Task not found")),
        Err(e) => return Err(ApiError::storage("Failed to get task", e)),
    };
    if task.created_by != Some(user.id) && !is_admin(st, user) {
        return Err(ApiError::forbidden("Not task owner"));
    }
    Ok(task)
}

fn store_error(what: &'static str) -> impl FnOnce(Error) -> ApiError {
    versioned_store_error("Preference not found", what)
}

// ---------------------------------------------------------------- handlers

/// Entries of one scope.
#[utoipa::path(
    get, path = "/v1/prefs", tag = "preferences",
    params(PrefsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of entries, by key", body = PreferenceListResponse),
        (status = 400, description = "`invalid scope_type: …` / `invalid scope_id` / `scope_id required when scope_type is not system` / `Invalid limit or cursor`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Not allowed for this scope` / `Not task owner`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Project not found` / `Task not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_prefs(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<PrefsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    let scope = parse_scope(&user, q.scope_type.as_deref(), q.scope_id.as_deref())?;
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    authorize(&st, &user, scope, false).await?;
    let entries = st
        .inner
        .store
        .list_preferences(scope, q.key_prefix.as_deref().unwrap_or(""))
        .await
        .map_err(|e| ApiError::storage("Failed to list preferences", e))?;
    let (entries, next_cursor) = page.apply(entries);
    Ok(json(
        StatusCode::OK,
        &PreferenceListResponse {
            preferences: entries.iter().map(entry_response).collect(),
            next_cursor,
        },
    ))
}

/// Create or update one entry.
#[utoipa::path(
    post, path = "/v1/prefs", tag = "preferences",
    request_body = PreferenceWriteRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored", body = PreferenceSetResponse),
        (status = 400, description = "`Invalid request body` / `key required` / `value required` / `value does not match value_type` / scope errors", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Admin required` (system scope) / `Not allowed for this scope` / `Not task owner`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Project not found` / `Task not found`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "`version conflict`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_pref(
    State(st): State<GatewayState>,
    user: AuthUser,
    req: Request,
) -> Result<Response, ApiError> {
    let bytes = read_body(req.into_body(), st.inner.config.max_body_bytes).await?;
    let body: PreferenceWriteRequest = super::http::decode(&bytes)?;
    let scope = parse_scope(&user, body.scope_type.as_deref(), body.scope_id.as_deref())?;
    let (key, value) = key_and_value(body.key.as_deref(), body.value, body.value_type.as_deref())?;
    authorize(&st, &user, scope, true).await?;
    let entry = st
        .inner
        .store
        .put_preference_audited(
            scope,
            &key,
            value,
            body.expected_version,
            &user.handle,
            non_empty(body.reason.as_deref()),
        )
        .await
        .map_err(store_error("Failed to store preference"))?;
    Ok(json(
        StatusCode::OK,
        &PreferenceSetResponse {
            ok: true,
            preference: entry_response(&entry),
        },
    ))
}

/// Delete one entry (lower scopes apply again).
#[utoipa::path(
    delete, path = "/v1/prefs", tag = "preferences",
    params(PrefsQuery),
    request_body(content = PreferenceDeleteRequest, description = "Optional; overrides the query parameters"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = PreferenceDeleteResponse),
        (status = 400, description = "`Invalid request body` / `key required` / `invalid expected_version` / scope errors", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Admin required` / `Not allowed for this scope` / `Not task owner`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Preference not found` / `Project not found` / `Task not found`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "`version conflict`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_pref(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<PrefsQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    let bytes = read_body(req.into_body(), st.inner.config.max_body_bytes).await?;
    let body: PreferenceDeleteRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        PreferenceDeleteRequest::default()
    } else {
        super::http::decode(&bytes)?
    };
    let scope_type = body.scope_type.or(q.scope_type);
    let scope_id = body.scope_id.or(q.scope_id);
    let scope = parse_scope(&user, scope_type.as_deref(), scope_id.as_deref())?;
    let key = non_empty(body.key.as_deref().or(q.key.as_deref()))
        .ok_or_else(|| ApiError::bad_request("key required"))?
        .to_string();
    let expected = match body.expected_version {
        Some(v) => Some(v),
        None => parse_expected_version(q.expected_version.as_deref())?,
    };
    authorize(&st, &user, scope, true).await?;
    st.inner
        .store
        .delete_preference_audited(
            scope,
            &key,
            expected,
            &user.handle,
            non_empty(body.reason.as_deref().or(q.reason.as_deref())),
        )
        .await
        .map_err(store_error("Failed to delete preference"))?;
    Ok(json(
        StatusCode::OK,
        &PreferenceDeleteResponse { deleted: true },
    ))
}

/// The merged preferences that apply to a task, a project, or the caller.
#[utoipa::path(
    get, path = "/v1/prefs/effective", tag = "preferences",
    params(EffectiveQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Merged values and where each came from", body = EffectivePreferencesResponse),
        (status = 400, description = "`invalid task_id` / `invalid project_id` / `give task_id or project_id, not both`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "`Not task owner`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Task not found` / `Project not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn effective_prefs(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<EffectiveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    let mut scopes = vec![Scope::System];
    match (
        non_empty(q.task_id.as_deref()),
        non_empty(q.project_id.as_deref()),
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give task_id or project_id, not both",
            ));
        }
        (Some(t), None) => {
            let id: TaskId = t
                .parse()
                .map_err(|_| ApiError::bad_request("invalid task_id"))?;
            let task = task_of(&st, &user, id).await?;
            if let Some(u) = task.created_by {
                scopes.push(Scope::User(u));
            }
            if let Some(p) = task.project_id {
                scopes.push(Scope::Project(p));
            }
            scopes.push(Scope::Task(task.id));
        }
        (None, Some(p)) => {
            let id: ProjectId = p
                .parse()
                .map_err(|_| ApiError::bad_request("invalid project_id"))?;
            let project = accessible_project(&st, &user, &id.to_string()).await?;
            scopes.push(Scope::User(user.id));
            scopes.push(Scope::Project(project.id));
        }
        (None, None) => scopes.push(Scope::User(user.id)),
    }
    let mut folded: BTreeMap<String, (Value, PreferenceSource)> = BTreeMap::new();
    for scope in scopes {
        let mut entries = st
            .inner
            .store
            .list_preferences(scope, "")
            .await
            .map_err(|e| ApiError::storage("Failed to resolve preferences", e))?;
        entries.sort_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.id.cmp(&b.id)));
        for e in entries {
            if json_type_name(&e.value) != e.value_type {
                tracing::warn!(key = %e.key, scope_type = scope.type_str(), "skipping a preference whose value does not match its value_type");
                continue;
            }
            let source = PreferenceSource {
                key: e.key.clone(),
                scope_type: scope.type_str().into(),
                scope_id: scope.id().map(|u| u.to_string()),
                version: e.version,
            };
            folded.insert(e.key, (e.value, source));
        }
    }
    let key = non_empty(q.key.as_deref()).map(str::to_string);
    let value = key
        .as_ref()
        .map(|k| folded.get(k).map_or(Value::Null, |(v, _)| v.clone()));
    let mut effective = serde_json::Map::new();
    let mut sources = Vec::with_capacity(folded.len());
    for (k, (v, s)) in folded {
        effective.insert(k, v);
        sources.push(s);
    }
    Ok(json(
        StatusCode::OK,
        &EffectivePreferencesResponse {
            effective,
            sources,
            key,
            value,
        },
    ))
}
