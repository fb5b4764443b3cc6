//! Python bindings for CyNodeAI: the private `cynode._native` module behind the typed
//! `cynode` package. This crate is an adapter only; all behaviour lives in the Rust
//! library crates.

use pyo3::prelude::*;

/// The version of the CyNodeAI build these bindings come from.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Checks a user handle against the same rule the storage layer applies; raises
/// `ValueError` with the storage layer's message when it is invalid.
#[pyfunction]
fn validate_handle(handle: &str) -> PyResult<()> {
    cynode_core::model::validate_handle(handle)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(validate_handle, m)?)?;
    Ok(())
}
