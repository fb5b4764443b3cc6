//! Wire types: the JSON bodies exchanged over HTTP, separate from the domain types in
//! [`crate::model`] so a wire contract can change version without touching storage.
//!
//! Each contract version is its own module; readers ignore unknown fields unless a
//! contract says otherwise.

pub mod v1;
