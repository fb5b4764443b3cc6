//! Workflow lease API (agents-and-mcp §7.2–7.4).

use axum::Router;

use super::state::ControlPlaneState;

pub(crate) fn routes() -> Router<ControlPlaneState> {
    Router::new()
}
