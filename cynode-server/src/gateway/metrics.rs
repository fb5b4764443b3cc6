//! Prometheus metrics for the gateway, as one middleware layer: requests by method,
//! route template and status, a latency histogram by method and route, and the number of
//! requests in flight. Served as text at [`METRICS_PATH`].
//!
//! Labels use the route template (`/v1/tasks/{id}`), never the concrete path, so ids do
//! not multiply series and nothing a client sent ends up in a label. Latency is measured
//! to the response head; a streamed body may go on afterwards.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

/// Where the gateway serves its metrics (unauthenticated, like `/healthz`).
pub const METRICS_PATH: &str = "/metrics";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Latency {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The gateway's request metrics.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Latency>>,
    in_flight: AtomicI64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            let l = m
                .entry((method.to_string(), route.to_string()))
                .or_default();
            l.count += 1;
            l.sum += seconds;
            for (i, le) in BUCKETS.iter().enumerate() {
                if seconds <= *le {
                    l.buckets[i] += 1;
                }
            }
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP cynode_http_requests_total Requests answered by the user gateway.\n");
        out.push_str("# TYPE cynode_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "cynode_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP cynode_http_request_duration_seconds Time to the response head.\n");
        out.push_str("# TYPE cynode_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for ((method, route), l) in m.iter() {
                let labels = format!("method=\"{method}\",route=\"{route}\"");
                for (i, le) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "cynode_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                        l.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "cynode_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    l.count
                );
                let _ = writeln!(
                    out,
                    "cynode_http_request_duration_seconds_sum{{{labels}}} {}",
                    l.sum
                );
                let _ = writeln!(
                    out,
                    "cynode_http_request_duration_seconds_count{{{labels}}} {}",
                    l.count
                );
            }
        }
        out.push_str("# HELP cynode_http_requests_in_flight Requests being handled now.\n");
        out.push_str("# TYPE cynode_http_requests_in_flight gauge\n");
        let _ = writeln!(
            out,
            "cynode_http_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        out
    }
}

/// Route layer: counts the request under its route template once it is answered.
pub(crate) async fn record(
    State(metrics): State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let res = next.run(req).await;
    metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    metrics.observe(
        &method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// `GET /metrics`.
pub(crate) fn serve(metrics: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}
