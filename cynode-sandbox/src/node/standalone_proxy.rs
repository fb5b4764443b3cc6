//! The inference proxy as a process of its own (`cynode-worker inference-proxy`): the
//! same [`InferenceProxy`] a node puts behind every job's socket, serving one Unix
//! socket for a deployment that runs the proxy beside the sandbox (a pod sidecar) instead
//! of inside the worker, plus the small HTTP probe its container health check runs.
//!
//! The probe is hand-written on purpose: a health check must speak HTTP over a Unix
//! socket (`http+unix://`), which the HTTP clients the node already links do not, and one
//! `GET` with `Connection: close` needs nothing more than reading the status line.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Result;
use crate::{InferenceConfig, InferenceProxy, ModelPolicy};

/// Host name a container uses for its host; the standalone proxy runs on the host, where
/// that name means `localhost`.
const CONTAINER_HOST_ALIAS: &str = "host.containers.internal";

/// Largest response head [`http_get_status`] reads.
const MAX_HEAD: u64 = 4096;

/// A standalone inference proxy serving one Unix socket (mode 0600) and forwarding the
/// inference endpoints, and nothing else, to an Ollama-compatible upstream. Every model
/// the upstream has installed may be named ([`ModelPolicy::Installed`]). It logs nothing
/// itself; the process that runs it says when it listens and stops.
#[derive(Debug)]
pub struct StandaloneProxy {
    proxy: InferenceProxy,
    upstream: String,
}

impl StandaloneProxy {
    /// Binds `socket` and serves until [`StandaloneProxy::stop`] (or drop).
    /// `upstream_url` is `http://host[:port]`; `host.containers.internal` in it is read
    /// as `localhost`. A file left at `socket` makes the bind fail: clear it first with
    /// [`remove_stale_socket`] when the path is yours.
    pub async fn start(socket: &Path, upstream_url: &str) -> Result<Self> {
        let upstream = upstream_url.replace(CONTAINER_HOST_ALIAS, "localhost");
        let proxy = InferenceProxy::bind(
            socket,
            &InferenceConfig {
                upstream_url: upstream.clone(),
                ..Default::default()
            },
            ModelPolicy::Installed,
            None,
        )
        .await?;
        Ok(Self { proxy, upstream })
    }

    /// The upstream URL in use (after the host-alias rewrite).
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        self.proxy.path()
    }

    /// Stops serving and removes the socket file.
    pub fn stop(self) {
        let socket: PathBuf = self.proxy.path().to_path_buf();
        drop(self.proxy);
        let _ = std::fs::remove_file(&socket);
    }

    /// Serves until `shutdown` completes, then stops (see [`StandaloneProxy::stop`]).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.stop();
    }
}

/// Removes whatever is left at `socket` (a previous run's socket file); nothing there is
/// fine.
pub fn remove_stale_socket(socket: &Path) -> io::Result<()> {
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    Ok(())
}

/// One `GET` of `url`; the status code of the answer. `url` is `http://host:port/path`
/// or `http+unix://<socket path, '/' encoded as %2F>/path`. Errors: the URL has another
/// scheme (`InvalidInput`), the connection or exchange failed, or the answer has no
/// HTTP status line (`InvalidData`). No timeout: wrap the call in one (see
/// [`healthcheck`]).
pub async fn http_get_status(url: &str) -> io::Result<u16> {
    if let Some(rest) = url.strip_prefix("http+unix://") {
        let (sock, path) = split_path(rest);
        let sock = sock.replace("%2F", "/").replace("%2f", "/");
        let s = tokio::net::UnixStream::connect(&sock)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("connect {sock}: {e}")))?;
        exchange(s, "localhost", &path).await
    } else if let Some(rest) = url.strip_prefix("http://") {
        let (hostport, path) = split_path(rest);
        let s = tokio::net::TcpStream::connect(hostport)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("connect {hostport}: {e}")))?;
        exchange(s, hostport, &path).await
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the URL must be http:// or http+unix://",
        ))
    }
}

/// Whether a `GET` of `url` ([`http_get_status`]) answers 200 within `timeout`.
pub async fn healthcheck(url: &str, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, http_get_status(url)).await,
        Ok(Ok(200))
    )
}

/// `authority/rest` → (`authority`, `/rest`); no path → `/`.
fn split_path(rest: &str) -> (&str, String) {
    rest.split_once('/')
        .map_or((rest, "/".to_string()), |(a, b)| (a, format!("/{b}")))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    path: &str,
) -> io::Result<u16> {
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    s.take(MAX_HEAD).read_to_end(&mut head).await?;
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::net::{TcpListener, UnixListener};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    /// Reads one request head from `conn`, answers `reply` and gives the head.
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut conn: S, reply: &str) -> String {
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn.write_all(reply.as_bytes()).await;
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Serves `reply` on every connection of a Unix listener; the request heads.
    fn serve_unix(listener: UnixListener, reply: &'static str) -> UnboundedReceiver<String> {
        let (tx, rx) = unbounded_channel();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = tx.send(answer(conn, reply).await);
            }
        });
        rx
    }

    /// Serves `reply` on every connection of a TCP listener; the request heads.
    fn serve_tcp(listener: TcpListener, reply: &'static str) -> UnboundedReceiver<String> {
        let (tx, rx) = unbounded_channel();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = tx.send(answer(conn, reply).await);
            }
        });
        rx
    }

    #[tokio::test]
    async fn probes_a_unix_socket_server_and_reads_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("probe.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let mut requests = serve_unix(listener, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let encoded = sock.display().to_string().replace('/', "%2F");
        let url = format!("http+unix://{encoded}/healthz");
        assert_eq!(http_get_status(&url).await.unwrap(), 200);
        let request = requests.recv().await.unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\nHost: localhost\r\n"),
            "{request}"
        );
        assert!(healthcheck(&url, Duration::from_secs(10)).await);
        assert!(requests.recv().await.unwrap().starts_with("GET /healthz "));
        // Lower-case escapes and no path: `GET /`.
        let lower = format!(
            "http+unix://{}",
            sock.display().to_string().replace('/', "%2f")
        );
        assert_eq!(http_get_status(&lower).await.unwrap(), 200);
        let request = requests.recv().await.unwrap();
        assert!(request.starts_with("GET / HTTP/1.1\r\n"), "{request}");
    }

    #[tokio::test]
    async fn a_non_200_answer_fails_the_healthcheck() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut requests = serve_tcp(listener, "HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let url = format!("http://{addr}/readyz");
        assert_eq!(http_get_status(&url).await.unwrap(), 503);
        let request = requests.recv().await.unwrap();
        assert!(
            request.starts_with(&format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\n")),
            "{request}"
        );
        assert!(!healthcheck(&url, Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn bad_urls_dead_sockets_and_non_http_answers_are_errors() {
        let e = http_get_status("https://example.invalid/")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock").display().to_string();
        let e = http_get_status(&format!("http+unix://{}/", missing.replace('/', "%2F")))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&missing), "{e}");
        assert!(
            !healthcheck(
                &format!("http+unix://{}/", missing.replace('/', "%2F")),
                Duration::from_secs(10)
            )
            .await
        );

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _requests = serve_tcp(listener, "");
        let e = http_get_status(&format!("http://{addr}/"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn the_standalone_proxy_serves_its_socket_and_removes_it_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("inference-proxy.sock");
        std::fs::write(&sock, b"stale").unwrap();
        assert!(
            StandaloneProxy::start(&sock, "http://127.0.0.1:9")
                .await
                .is_err()
        );
        remove_stale_socket(&sock).unwrap();
        remove_stale_socket(&sock).unwrap();
        let proxy = StandaloneProxy::start(&sock, "http://host.containers.internal:9")
            .await
            .unwrap();
        assert_eq!(proxy.upstream(), "http://localhost:9");
        assert_eq!(proxy.socket(), sock.as_path());
        let url = format!(
            "http+unix://{}/healthz",
            sock.display().to_string().replace('/', "%2F")
        );
        assert!(healthcheck(&url, Duration::from_secs(10)).await);
        proxy.run_until(async {}).await;
        assert!(!sock.exists());
        assert!(!healthcheck(&url, Duration::from_secs(10)).await);
    }
}
