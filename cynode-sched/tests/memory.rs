//! The conformance suite and worker tests on the in-memory backend.

mod common;
mod worker_cases;

use std::sync::Arc;

use common::Q;
use cynode_sched::MemoryQueue;

async fn make() -> Option<(Q, std::future::Ready<()>)> {
    Some((Arc::new(MemoryQueue::new()) as Q, std::future::ready(())))
}

conformance_suite!(make());
worker_suite!(make());
