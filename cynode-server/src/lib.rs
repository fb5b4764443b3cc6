//! # cynode-server
//!
//! The orchestrator's HTTP services as plain `axum` routers assembled from the library
//! crates: the user API gateway (with the OpenAI-compatible chat API), the node control
//! plane and the MCP gateway. Routers are values you can embed or test with
//! `tower::ServiceExt::oneshot`.
//!
//! Work in progress.
