//! # cynode-sandbox
//!
//! Runs untrusted commands in locked-down containers: no network, all capabilities
//! dropped, read-only root, non-root user, CPU/memory/pids/time/output limits, and
//! model inference reachable only through a per-job Unix socket. The runtime is a
//! trait; the reference implementation drives Podman or Docker through the Docker API.
//!
//! Work in progress: the driver is being built.
