//! Projects (§10.2, agents-and-mcp §9.1): the projects a caller may use.
//!
//! Accessible projects: the admin sees every project; any other user sees their
//! default project. (Role bindings that grant further projects are not modelled yet;
//! when they are, [`accessible_project`] and the list filter are the two places to
//! extend.) A project the caller may not use answers `404` `Project not found`, so its
//! existence is not revealed.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use cynode_core::Error;
use cynode_core::model::Project;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::error::{ApiError, ProblemDetails};
use super::http::{json, read_body};
use super::listing::{Page, fmt_time, is_admin};
use super::state::GatewayState;

/// A project.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectResponse {
    /// Project id.
    pub id: String,
    /// Same as `id`.
    pub project_id: String,
    /// Unique slug.
    pub slug: String,
    /// Title.
    pub display_name: String,
    /// Markdown description.
    pub description: Option<String>,
    /// Disabled projects take no new work.
    pub is_active: bool,
    /// Whether this is the caller's default project.
    pub is_default: bool,
    /// RFC 3339 with microseconds.
    pub created_at: String,
    /// RFC 3339 with microseconds.
    pub updated_at: String,
}

/// `GET /v1/projects` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectListResponse {
    /// Accessible projects, by slug.
    pub projects: Vec<ProjectResponse>,
    /// Cursor of the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/projects` query.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ProjectsQuery {
    /// Only active projects (`true`/`false`, default false).
    #[param(value_type = Option<bool>)]
    pub active_only: Option<String>,
    /// Page size 1..200 (default 50).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `POST /v1/projects/set` body.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct SetProjectRequest {
    /// Project id or slug to make active; absent, `null`, `""` or `none` clears it.
    /// (`id` and `project` are accepted as aliases.)
    #[schema(value_type = Option<String>)]
    pub project_id: Option<Value>,
    /// Alias of `project_id`.
    #[schema(value_type = Option<String>)]
    pub id: Option<Value>,
    /// Alias of `project_id`.
    #[schema(value_type = Option<String>)]
    pub project: Option<Value>,
}

/// `POST /v1/projects/set` response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SetProjectResponse {
    /// The resolved project id, or `null` when cleared.
    pub active_project: Option<String>,
    /// The project, when one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectResponse>,
}

fn default_slug(user: &AuthUser) -> String {
    format!("default-{}", user.id)
}

fn may_use(st: &GatewayState, user: &AuthUser, p: &Project) -> bool {
    is_admin(st, user) || p.slug == default_slug(user)
}

pub(crate) fn project_response(user: &AuthUser, p: &Project) -> ProjectResponse {
    ProjectResponse {
        id: p.id.to_string(),
        project_id: p.id.to_string(),
        slug: p.slug.clone(),
        display_name: p.display_name.clone(),
        description: p.description.clone(),
        is_active: p.is_active,
        is_default: p.slug == default_slug(user),
        created_at: fmt_time(p.created_at),
        updated_at: fmt_time(p.updated_at),
    }
}

/// A project the caller may use, by id or slug; `404` `Project not found` otherwise.
pub(crate) async fn accessible_project(
    st: &GatewayState,
    user: &AuthUser,
    key: &str,
) -> Result<Project, ApiError> {
    let key = key.trim();
    let store = &st.inner.store;
    let found = match key.parse::<cynode_core::ProjectId>() {
        Ok(id) => store.get_project(id).await,
        Err(_) => store.get_project_by_slug(key).await,
    };
    match found {
        Ok(p) if may_use(st, user, &p) => Ok(p),
        Ok(_) | Err(Error::NotFound { .. }) | Err(Error::InvalidInput(_)) => {
            Err(ApiError::not_found("Project not found"))
        }
        Err(e) => Err(ApiError::storage("Failed to get project", e)),
    }
}

/// Projects the caller may use.
#[utoipa::path(
    get, path = "/v1/projects", tag = "projects",
    params(ProjectsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of projects, by slug", body = ProjectListResponse),
        (status = 400, description = "`Invalid limit or cursor` / `Invalid active_only`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_projects(
    State(st): State<GatewayState>,
    user: AuthUser,
    query: Result<Query<ProjectsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::bad_request("Invalid query"))?;
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let active_only = match q.active_only.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(ApiError::bad_request("Invalid active_only")),
    };
    let projects = if is_admin(&st, &user) {
        st.inner
            .store
            .list_projects()
            .await
            .map_err(|e| ApiError::storage("Failed to list projects", e))?
    } else {
        vec![
            st.inner
                .store
                .default_project(user.id)
                .await
                .map_err(|e| ApiError::storage("Failed to list projects", e))?,
        ]
    };
    let projects: Vec<Project> = projects
        .into_iter()
        .filter(|p| !active_only || p.is_active)
        .collect();
    let (projects, next_cursor) = page.apply(projects);
    Ok(json(
        StatusCode::OK,
        &ProjectListResponse {
            projects: projects
                .iter()
                .map(|p| project_response(&user, p))
                .collect(),
            next_cursor,
        },
    ))
}

/// One project, by id or slug.
#[utoipa::path(
    get, path = "/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "Project id (UUID) or slug")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The project", body = ProjectResponse),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Project not found` (also for projects the caller may not use)", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_project(
    State(st): State<GatewayState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let p = accessible_project(&st, &user, &id).await?;
    Ok(json(StatusCode::OK, &project_response(&user, &p)))
}

/// Resolves the project a client wants to make active (the client keeps it, e.g. as the
/// default `--project-id`); nothing is stored on the server.
#[utoipa::path(
    post, path = "/v1/projects/set", tag = "projects",
    request_body = SetProjectRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The resolved active project (or `null` when cleared)", body = SetProjectResponse),
        (status = 400, description = "`Invalid request body`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`Project not found`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_project(
    State(st): State<GatewayState>,
    user: AuthUser,
    req: Request,
) -> Result<Response, ApiError> {
    let bytes = read_body(req.into_body(), st.inner.config.max_body_bytes).await?;
    let body: SetProjectRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        SetProjectRequest::default()
    } else {
        super::http::decode(&bytes)?
    };
    let wanted = match body.project_id.or(body.id).or(body.project) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let s = s.trim().to_string();
            (!s.is_empty() && !s.eq_ignore_ascii_case("none")).then_some(s)
        }
        Some(_) => return Err(ApiError::bad_request("Invalid request body")),
    };
    let Some(wanted) = wanted else {
        return Ok(json(
            StatusCode::OK,
            &SetProjectResponse {
                active_project: None,
                project: None,
            },
        ));
    };
    let p = accessible_project(&st, &user, &wanted).await?;
    Ok(json(
        StatusCode::OK,
        &SetProjectResponse {
            active_project: Some(p.id.to_string()),
            project: Some(project_response(&user, &p)),
        },
    ))
}
