//! # cynode-server
//!
//! The orchestrator's HTTP services as plain `axum` routers assembled from the library
//! crates. Routers are values you can embed or test with `tower::ServiceExt::oneshot`.
//!
//! - [`gateway`]: the user API gateway (accounts, authentication, tasks), see
//!   [`gateway::router`].

pub mod gateway;
