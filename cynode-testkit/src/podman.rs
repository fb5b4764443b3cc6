//! Fixtures of the tests that run sandbox jobs on the test Podman and follow their
//! inference out through the node (`cynode-egress/tests/sandbox_inference.rs`,
//! `cynode-server/tests/dispatch_inference.rs`): the test-environment check, a capture
//! of every trace line (to prove a secret never reaches the logs), the static Unix-socket
//! HTTP client a busybox job uses to reach its inference socket, a loopback server for
//! an axum app, and the `=== name` sections a job's script prints.
//!
//! Only plain types here: this crate depends on no CyNodeAI crate, because those crates
//! have it as a dev-dependency (a dependency back would link a second copy of the crate
//! under test into its unit tests). Fixtures that build sandbox or egress values stay
//! with the tests.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// The Podman services of the test environment contract.
#[derive(Clone, Debug)]
pub struct PodmanEnv {
    /// `CYNODE_TEST_DOCKER_HOST`: the engine's Docker-API socket URL.
    pub docker_host: String,
    /// `CYNODE_TEST_IMAGE`: the busybox test image.
    pub image: String,
}

/// Reads [`PodmanEnv`]; `None` means "skip this test" (a note is printed). With
/// `CYNODE_REQUIRE_SERVICES=1` a missing variable fails the test instead (see
/// [`crate::service_var`]).
pub fn podman_env() -> Option<PodmanEnv> {
    Some(PodmanEnv {
        docker_host: crate::service_var("CYNODE_TEST_DOCKER_HOST")?,
        image: crate::service_var("CYNODE_TEST_IMAGE")?,
    })
}

/// Everything the process logs, at every level, without colours (see
/// [`capture_traces`]).
#[derive(Clone, Debug, Default)]
pub struct TraceCapture(Arc<Mutex<Vec<u8>>>);

impl TraceCapture {
    /// The log text so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for TraceCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the process-wide tracing subscriber at `TRACE` level writing into the
/// returned capture. Once per test binary: a second call panics.
pub fn capture_traces() -> TraceCapture {
    let capture = TraceCapture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    capture
}

static UDS_HTTP: OnceCell<Arc<Vec<u8>>> = OnceCell::const_new();

/// The static `uds-http` client (`cynode-sandbox/tests/helpers/uds_http.rs`: `uds-http
/// http <socket> <METHOD> <path> [body]` prints `STATUS <code>` and the body), built
/// once per test binary with the rustc that builds the tests, for a busybox job to call
/// its inference socket.
pub async fn uds_http_helper() -> Arc<Vec<u8>> {
    UDS_HTTP
        .get_or_init(|| async {
            let out_dir =
                std::env::temp_dir().join(format!("cynode-testkit-uds-{}", std::process::id()));
            std::fs::create_dir_all(&out_dir).expect("helper directory");
            let out = out_dir.join("uds-http");
            let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../cynode-sandbox/tests/helpers/uds_http.rs");
            let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
            let status = tokio::process::Command::new(rustc)
                .args([
                    "--edition",
                    "2021",
                    "-C",
                    "opt-level=1",
                    "-C",
                    "target-feature=+crt-static",
                    "-o",
                ])
                .arg(&out)
                .arg(&src)
                .status()
                .await
                .expect("run rustc for the uds-http helper");
            assert!(status.success(), "building the uds-http helper failed");
            let bytes = std::fs::read(&out).expect("read the uds-http helper");
            let _ = std::fs::remove_dir_all(&out_dir);
            Arc::new(bytes)
        })
        .await
        .clone()
}

/// Serves `app` on an ephemeral loopback port for the rest of the test; its base URL
/// (`http://127.0.0.1:<port>`).
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The part of `out` after the line `=== name` up to the next `=== ` line (a job's
/// script marks what it prints that way). Panics, showing `out`, when there is none.
pub fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let marker = format!("=== {name}\n");
    let start = out
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no section {name} in:\n{out}"));
    let rest = &out[start..];
    &rest[..rest.find("\n=== ").map_or(rest.len(), |i| i + 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_end_at_the_next_marker() {
        let out = "=== env\nA=1\nB=2\n=== external\nSTATUS 200\n{}\n=== end\n";
        assert_eq!(section(out, "env"), "A=1\nB=2\n");
        assert_eq!(section(out, "external"), "STATUS 200\n{}\n");
        assert_eq!(section(out, "end"), "");
        assert!(std::panic::catch_unwind(|| section(out, "local").len()).is_err());
    }

    #[test]
    fn a_capture_keeps_what_was_written() {
        let capture = TraceCapture::default();
        let mut w = capture.clone();
        w.write_all(b"one ").unwrap();
        w.write_all(b"two").unwrap();
        assert_eq!(capture.text(), "one two");
    }

    #[tokio::test]
    async fn serve_answers_on_loopback() {
        let url =
            serve(axum::Router::new().route("/x", axum::routing::get(|| async { "hi" }))).await;
        assert!(url.starts_with("http://127.0.0.1:"));
        let addr = url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hi"), "{answer}");
    }
}
