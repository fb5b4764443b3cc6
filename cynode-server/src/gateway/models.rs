//! `GET /v1/models` (§7.2): the model ids a chat completion accepts by name.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::AuthUser;
use super::chat::PM_MODEL_ID;
use super::error::ProblemDetails;
use super::http::json;
use super::state::GatewayState;

/// One model.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelObject {
    /// Model id to pass as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Always 0.
    pub created: i64,
    /// Always `cynodeai`.
    pub owned_by: String,
}

/// `GET /v1/models` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// `cynodeai.pm` first, then the configured inference model, then the models the
    /// router's targets offer (sorted).
    pub data: Vec<ModelObject>,
}

/// List the chat model ids: `cynodeai.pm` (the project manager surface), the
/// configured inference model, then the models the inference targets offer (listed
/// in the background and cached for a minute, so the first answer may lack them).
#[utoipa::path(
    get, path = "/v1/models", tag = "chat",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The models", body = ModelList),
        (status = 401, description = "Missing or invalid access token", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_models(State(st): State<GatewayState>, _user: AuthUser) -> Response {
    let model = |id: &str| ModelObject {
        id: id.to_string(),
        object: "model".into(),
        created: 0,
        owned_by: "cynodeai".into(),
    };
    let mut data = vec![model(PM_MODEL_ID)];
    let direct = st.config().inference_model.trim();
    if !direct.is_empty() && direct != PM_MODEL_ID {
        data.push(model(direct));
    }
    for id in st.inner.chat.router_models() {
        if !data.iter().any(|m| m.id == id) {
            data.push(model(&id));
        }
    }
    json(
        StatusCode::OK,
        &ModelList {
            object: "list".into(),
            data,
        },
    )
}
