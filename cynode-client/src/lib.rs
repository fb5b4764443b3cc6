//! # cynode-client
//!
//! Typed HTTP clients over the wire types in [`cynode_core::proto::v1`]:
//!
//! - [`gateway`]: the user API gateway (accounts, tasks, chat, resources), the client
//!   `cynork` and the Python bindings are built on;
//! - [`node`]: the control plane as a node manager sees it (registration, configuration,
//!   capability reports), for custom workers and cloud agents;
//! - [`worker`]: a node's Worker API as the dispatcher sees it (`jobs:run`).
//!
//! Depends only on `cynode-core`, so embedding a client does not pull in the server,
//! the sandbox driver or storage drivers.

pub mod gateway;
pub mod node;
pub mod worker;
