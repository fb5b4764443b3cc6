//! # cynode-server
//!
//! The orchestrator's HTTP services as plain `axum` routers assembled from the library
//! crates. Routers are values you can embed or test with `tower::ServiceExt::oneshot`.
//!
//! - [`control_plane`]: node registration, capability reports, node configuration,
//!   node liveness and the workflow lease API, see [`control_plane::router`].
//! - [`dispatch`]: the dispatcher taking task jobs to worker nodes (placement, the
//!   Worker API call, retries, fenced results), see [`dispatch::Dispatcher`].
//! - [`gateway`]: the user API gateway (accounts, authentication, tasks), see
//!   [`gateway::router`].
//! - [`bootstrap`]: the start-up import of the bootstrap YAML file (system
//!   preferences, settings, access-control rules, the first admin).

pub mod bootstrap;
pub mod control_plane;
pub mod dispatch;
pub mod gateway;
