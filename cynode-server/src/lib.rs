//! # cynode-server
//!
//! The orchestrator's HTTP services as plain `axum` routers assembled from the library
//! crates. Routers are values you can embed or test with `tower::ServiceExt::oneshot`.
//!
//! - [`gateway`]: the user API gateway (accounts, authentication, tasks), see
//!   [`gateway::router`].
//! - [`bootstrap`]: the start-up import of the bootstrap YAML file (system
//!   preferences, settings, access-control rules, the first admin).

pub mod bootstrap;
pub mod gateway;
