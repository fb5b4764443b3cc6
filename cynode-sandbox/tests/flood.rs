//! A 1 GiB output flood is truncated to the cap while the worker's memory stays flat.
//! In its own test binary so that no other test shares the process whose memory is
//! measured.

mod common;

use cynode_sandbox::{JobEvent, JobSpec, JobStatus};

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    common::status_field(&status, field)
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

const GIB: u64 = 1 << 30;
/// Resource bound (not a timing threshold): the worker may grow by at most this much
/// while 1 GiB passes through it.
const MAX_GROWTH_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_flood_is_truncated_with_flat_memory() {
    let env = require_env!();
    let t = common::driver(&env, |c| c.max_output_bytes = 262_144).await;
    let rss_before = status_kib("VmRSS");

    // Followed live by a caller that reads a few events and then stops reading: the event
    // buffer must not grow either.
    let spec = JobSpec::new(
        env.image.clone(),
        [
            "sh",
            "-c",
            "dd if=/dev/zero bs=1M count=1024 2>/dev/null; echo tail >&2",
        ],
    );
    let mut job = t.driver.spawn(spec);
    let mut seen = 0;
    while let Some(ev) = job.next_event().await {
        if matches!(ev, JobEvent::Output(_)) {
            seen += 1;
            if seen == 3 {
                break;
            }
        }
    }
    let r = job.wait().await.unwrap();
    let hwm_after = status_kib("VmHWM");

    assert_eq!(r.status, JobStatus::Succeeded, "stderr: {}", r.stderr.text);
    assert_eq!(r.stdout.total_bytes, GIB, "the true byte count is kept");
    assert!(r.stdout.truncated);
    assert_eq!(r.stdout.text.len(), 262_144);
    assert!(r.stdout.text.bytes().all(|b| b == 0));
    assert_eq!(r.stderr.text, "tail\n");
    assert!(!r.stderr.truncated);
    let growth = hwm_after.saturating_sub(rss_before);
    eprintln!(
        "RSS before {rss_before} KiB, peak after {hwm_after} KiB, growth {growth} KiB; container ran {} ms",
        (r.ended_at - r.started_at).num_milliseconds()
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "worker memory grew by {growth} KiB while streaming 1 GiB (bound {MAX_GROWTH_KIB} KiB)"
    );
    assert!(t.wait_until_clean().await.is_empty());
}
