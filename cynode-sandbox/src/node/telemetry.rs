//! The node's telemetry record: the containers it created and log events of its own
//! services and of those containers (`node-protocol.md` §8), plus the host figures of
//! `node:info` and `node:stats`.
//!
//! The record is kept in memory and bounded (count, bytes and age), so a node that runs
//! for months holds a fixed amount of it: logs 7 days, stopped containers 30 days.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use cynode_core::proto::v1::worker::{
    ContainerRecord, CpuStats, DiskStats, LimitedBy, LogEvent, LogsResponse, LogsTruncated,
    MemoryStats,
};
use serde_json::{Map, Value};

/// Byte cap of a logs answer.
pub(crate) const LOGS_MAX_BYTES: usize = 1 << 20;
/// Most log events kept.
const MAX_LOG_EVENTS: usize = 200_000;
/// Most log bytes kept (messages and fields).
const MAX_LOG_BYTES: usize = 64 << 20;
/// Output bytes of one container recorded as log events.
const MAX_CONTAINER_LOG_BYTES: usize = 1 << 20;
/// Most containers in the inventory.
const MAX_CONTAINERS: usize = 10_000;
/// Age after which log events are dropped.
const LOG_RETENTION_DAYS: i64 = 7;
/// Age after which stopped containers are dropped.
const INVENTORY_RETENTION_DAYS: i64 = 30;

/// The node's bounded telemetry record. Shared (behind an `Arc`) by the Worker API and
/// the node manager.
#[derive(Debug)]
pub struct Telemetry {
    store: Mutex<Store>,
    boot_id: String,
    booted_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Store {
    containers: VecDeque<ContainerRecord>,
    logs: VecDeque<Stored>,
    log_bytes: usize,
    next_seq: u64,
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    size: usize,
    event: LogEvent,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// An empty record with a fresh boot id.
    pub fn new() -> Self {
        Self {
            store: Mutex::new(Store::default()),
            boot_id: uuid::Uuid::new_v4().to_string(),
            booted_at: Utc::now(),
        }
    }

    /// Id of this process's boot (logged with the start message).
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// When this record was created.
    pub fn booted_at(&self) -> DateTime<Utc> {
        self.booted_at
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a log line of one of the node's services (`node_manager`, `worker_api`).
    pub fn log_service(
        &self,
        source_name: &str,
        level: &str,
        message: impl Into<String>,
        fields: Map<String, Value>,
    ) {
        self.push(LogEvent {
            occurred_at: Utc::now(),
            source_kind: "service".into(),
            source_name: source_name.into(),
            container_id: None,
            stream: None,
            level: Some(level.into()),
            message: message.into(),
            fields,
        });
    }

    /// Records a chunk of a container's output as one event per line (bounded per
    /// container).
    pub(crate) fn container_output(
        &self,
        container_id: &str,
        name: &str,
        stream: &str,
        data: &[u8],
    ) {
        let used = {
            let s = self.lock();
            s.logs
                .iter()
                .rev()
                .take_while(|e| e.event.occurred_at > Utc::now() - ChronoDuration::days(1))
                .filter(|e| e.event.container_id.as_deref() == Some(container_id))
                .map(|e| e.size)
                .sum::<usize>()
        };
        if used >= MAX_CONTAINER_LOG_BYTES {
            return;
        }
        let text = String::from_utf8_lossy(data);
        let mut budget = MAX_CONTAINER_LOG_BYTES - used;
        for line in text.split_inclusive('\n') {
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                continue;
            }
            if line.len() > budget {
                break;
            }
            budget -= line.len();
            self.push(LogEvent {
                occurred_at: Utc::now(),
                source_kind: "container".into(),
                source_name: name.into(),
                container_id: Some(container_id.into()),
                stream: Some(stream.into()),
                level: None,
                message: line.into(),
                fields: Map::new(),
            });
        }
    }

    fn push(&self, event: LogEvent) {
        let size =
            event.message.len() + serde_json::to_string(&event.fields).map_or(0, |s| s.len()) + 128;
        let mut s = self.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.log_bytes += size;
        s.logs.push_back(Stored { seq, size, event });
        let cutoff = Utc::now() - ChronoDuration::days(LOG_RETENTION_DAYS);
        while let Some(front) = s.logs.front() {
            let old = front.event.occurred_at < cutoff;
            if !(old || s.logs.len() > MAX_LOG_EVENTS || s.log_bytes > MAX_LOG_BYTES) {
                break;
            }
            let size = front.size;
            s.logs.pop_front();
            s.log_bytes -= size;
        }
    }

    /// Records a container the node created.
    pub(crate) fn container_created(&self, record: ContainerRecord) {
        let mut s = self.lock();
        s.containers
            .retain(|c| c.container_id != record.container_id);
        s.containers.push_back(record);
        let cutoff = Utc::now() - ChronoDuration::days(INVENTORY_RETENTION_DAYS);
        s.containers
            .retain(|c| c.status == "running" || c.last_seen_at >= cutoff);
        while s.containers.len() > MAX_CONTAINERS {
            s.containers.pop_front();
        }
    }

    /// Records a container's new state.
    pub(crate) fn container_status(
        &self,
        container_id: &str,
        status: &str,
        exit_code: Option<i64>,
    ) {
        let mut s = self.lock();
        if let Some(c) = s
            .containers
            .iter_mut()
            .find(|c| c.container_id == container_id)
        {
            c.status = status.into();
            c.last_seen_at = Utc::now();
            if exit_code.is_some() {
                c.exit_code = exit_code;
            }
        }
    }

    /// One container by id (or name).
    pub(crate) fn container(&self, id: &str) -> Option<ContainerRecord> {
        self.lock()
            .containers
            .iter()
            .find(|c| c.container_id == id || c.container_name == id)
            .cloned()
    }

    /// Containers matching the filter, newest first, one page.
    pub(crate) fn containers(
        &self,
        filter: &ContainerFilter,
        limit: usize,
        offset: usize,
    ) -> (Vec<ContainerRecord>, Option<usize>) {
        let s = self.lock();
        let matching: Vec<&ContainerRecord> = s
            .containers
            .iter()
            .rev()
            .filter(|c| filter.matches(c))
            .collect();
        let page: Vec<ContainerRecord> = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|c| (*c).clone())
            .collect();
        let next = (offset + page.len() < matching.len()).then_some(offset + page.len());
        (page, next)
    }

    /// Log events matching the query, oldest first, bounded by count and bytes.
    pub(crate) fn logs(&self, q: &LogQuery, limit: usize, after_seq: Option<u64>) -> LogsResponse {
        let s = self.lock();
        let mut events = Vec::new();
        let mut bytes = 0usize;
        let mut limited_by = LimitedBy::None;
        let mut next = None;
        for stored in s.logs.iter() {
            if after_seq.is_some_and(|a| stored.seq < a) || !q.matches(&stored.event) {
                continue;
            }
            if events.len() == limit {
                limited_by = LimitedBy::Count;
                next = Some(stored.seq);
                break;
            }
            let size = serde_json::to_string(&stored.event).map_or(0, |s| s.len()) + 1;
            if bytes + size > LOGS_MAX_BYTES - 4096 {
                limited_by = LimitedBy::Bytes;
                next = Some(stored.seq);
                break;
            }
            bytes += size;
            events.push(stored.event.clone());
        }
        LogsResponse {
            version: 1,
            events,
            truncated: LogsTruncated {
                limited_by,
                max_bytes: LOGS_MAX_BYTES as u64,
            },
            next_page_token: next.map(|n| encode_token("l", n as usize)),
        }
    }
}

/// Filter of the container list.
#[derive(Debug, Default)]
pub(crate) struct ContainerFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub task_id: Option<String>,
    pub job_id: Option<String>,
}

impl ContainerFilter {
    fn matches(&self, c: &ContainerRecord) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == c.kind)
            && self.status.as_ref().is_none_or(|v| *v == c.status)
            && self
                .task_id
                .as_ref()
                .is_none_or(|v| c.task_id.as_ref() == Some(v))
            && self
                .job_id
                .as_ref()
                .is_none_or(|v| c.job_id.as_ref() == Some(v))
    }
}

/// What a logs query selects.
#[derive(Debug)]
pub(crate) struct LogQuery {
    pub source: LogSource,
    pub stream: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The one source a logs query reads.
#[derive(Debug)]
pub(crate) enum LogSource {
    Service(String),
    Container(String),
}

impl LogQuery {
    fn matches(&self, e: &LogEvent) -> bool {
        let source = match &self.source {
            LogSource::Service(name) => e.source_kind == "service" && e.source_name == *name,
            LogSource::Container(id) => {
                e.source_kind == "container"
                    && (e.container_id.as_deref() == Some(id) || e.source_name == *id)
            }
        };
        source
            && self
                .stream
                .as_ref()
                .is_none_or(|s| e.stream.as_deref() == Some(s))
            && self.since.is_none_or(|t| e.occurred_at >= t)
            && self.until.is_none_or(|t| e.occurred_at < t)
    }
}

/// An opaque page token.
pub(crate) fn encode_token(kind: &str, n: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{n}"))
}

/// Reads a page token of the given kind; `None` when malformed.
pub(crate) fn decode_token(kind: &str, token: &str) -> Option<usize> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.strip_prefix(kind)?.strip_prefix(':')?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Host figures
// ---------------------------------------------------------------------------------------

/// Go's name of this OS.
pub(crate) fn go_os() -> &'static str {
    std::env::consts::OS
}

/// Go's name of this architecture.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        other => other,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Kernel release (`uname -r`).
pub(crate) fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}

/// The host name.
pub(crate) fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into())
}

/// `PRETTY_NAME` (else `ID`) of `/etc/os-release`.
pub(crate) fn distro() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_string())
        })
    };
    field("PRETTY_NAME").or_else(|| field("ID"))
}

/// The first `model name` of `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// Logical cores available to this process.
pub(crate) fn cpu_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// CPU cores and load averages.
pub(crate) fn cpu_stats() -> CpuStats {
    let load: Vec<f64> = read_trimmed("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    CpuStats {
        cores: cpu_cores(),
        load1: load.first().copied().unwrap_or(0.0),
        load5: load.get(1).copied().unwrap_or(0.0),
        load15: load.get(2).copied().unwrap_or(0.0),
    }
}

/// Memory figures from `/proc/meminfo` (MiB).
pub(crate) fn memory_stats() -> MemoryStats {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0)
    };
    let total = kb("MemTotal") / 1024;
    let available = kb("MemAvailable") / 1024;
    MemoryStats {
        total_mb: total,
        used_mb: total.saturating_sub(available),
        free_mb: available,
    }
}

/// Free and total MiB of the file system holding `path` (its nearest existing ancestor).
pub(crate) fn disk_stats(path: &Path) -> DiskStats {
    let mut p = path;
    loop {
        if p.exists() {
            break;
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    match rustix::fs::statvfs(p) {
        Ok(s) => {
            let unit = s.f_frsize.max(1);
            DiskStats {
                state_dir_free_mb: s.f_bavail.saturating_mul(unit) >> 20,
                state_dir_total_mb: s.f_blocks.saturating_mul(unit) >> 20,
            }
        }
        Err(_) => DiskStats {
            state_dir_free_mb: 0,
            state_dir_total_mb: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = encode_token("l", 42);
        assert_eq!(decode_token("l", &t), Some(42));
        assert_eq!(decode_token("c", &t), None);
        assert_eq!(decode_token("l", "!!"), None);
    }

    #[test]
    fn logs_filter_page_and_count_limit() {
        let t = Telemetry::new();
        for i in 0..5 {
            t.log_service("node_manager", "info", format!("m{i}"), Map::new());
        }
        t.log_service("worker_api", "info", "other", Map::new());
        let q = LogQuery {
            source: LogSource::Service("node_manager".into()),
            stream: None,
            since: None,
            until: None,
        };
        let first = t.logs(&q, 3, None);
        assert_eq!(first.events.len(), 3);
        assert_eq!(first.truncated.limited_by, LimitedBy::Count);
        let after = decode_token("l", first.next_page_token.as_deref().unwrap()).unwrap();
        let second = t.logs(&q, 3, Some(after as u64));
        let msgs: Vec<_> = second.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["m3", "m4"]);
        assert_eq!(second.truncated.limited_by, LimitedBy::None);
        assert!(second.next_page_token.is_none());
    }

    #[test]
    fn container_output_is_split_into_lines() {
        let t = Telemetry::new();
        t.container_output("c1", "box", "stdout", b"a\nb\n\nc");
        let q = LogQuery {
            source: LogSource::Container("c1".into()),
            stream: Some("stdout".into()),
            since: None,
            until: None,
        };
        let r = t.logs(&q, 100, None);
        let msgs: Vec<_> = r.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["a", "b", "c"]);
    }

    #[test]
    fn host_figures_are_filled() {
        assert!(!kernel_version().is_empty());
        assert!(cpu_stats().cores >= 1);
        assert!(memory_stats().total_mb > 0);
        assert!(disk_stats(Path::new("/nonexistent/dir")).state_dir_total_mb > 0);
        assert_eq!(go_os(), "linux");
    }
}
