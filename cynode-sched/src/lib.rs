//! # cynode-sched
//!
//! The orchestrator's scheduler as an embeddable library: a durable job queue over the
//! `cynode-core` storage traits, with leases and heartbeats, retries with backoff,
//! priorities, delayed start, concurrency and rate limits, cron schedules, and
//! placement of jobs on worker nodes by capability and load.
//!
//! Work in progress: the queue is being built; this crate currently only fixes its
//! place in the dependency graph.
