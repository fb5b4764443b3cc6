//! # cynode-core
//!
//! The vocabulary every other CyNodeAI crate speaks: typed ids, domain types (users,
//! projects, tasks, jobs, nodes, preferences, chat, audit, credentials, vector memory),
//! the error type with its retryability, and the narrow storage traits with their
//! backends:
//!
//! - [`store::MemoryStore`], always available, for unit tests and embedding;
//! - `SqliteStore` (feature `sqlite`, on by default), one file and zero setup;
//! - `PgStore` (feature `postgres`), PostgreSQL with pgvector, for production.
//!
//! Open any of them from a [`store::StoreConfig`] with [`store::open`]. Backend authors
//! can run the same conformance suite this crate runs (feature `conformance`).
//! Feature `openapi` derives `utoipa::ToSchema` on the `proto::v1::gateway` bodies the
//! user API gateway serves as they are, so its OpenAPI document describes the very
//! types clients decode.
//!
//! This crate knows nothing of the scheduler, sandbox, egress or server crates; they
//! depend on it, never the other way round.

pub mod auth;
pub mod error;
pub mod ids;
pub mod model;
pub mod proto;
pub mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::{Error, Result};
pub use ids::*;
