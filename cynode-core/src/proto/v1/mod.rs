//! Version 1 of the wire contracts (`"version": 1` in node-protocol bodies).
//!
//! - [`node`]: orchestrator control plane ↔ node manager (registration, capability
//!   report, node configuration and its acknowledgement).
//! - [`worker`]: the Worker API a node serves (`/v1/worker/*`: job run, telemetry).
//! - [`gateway`]: the user API gateway's request and response bodies, shared by the
//!   server and the typed client.

pub mod gateway;
pub mod node;
pub mod worker;

/// The only payload version these types speak.
pub const VERSION: u32 = 1;
