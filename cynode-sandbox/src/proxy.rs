//! The inference proxy: an HTTP server on a Unix socket that forwards only the Ollama
//! (and OpenAI-compatible) inference endpoints to the node's model server.
//!
//! A sandbox has no network; this socket, mounted into its container, is the one way it
//! can reach a model. Rules:
//! - `GET /healthz` answers `ok`;
//! - forwarded: `POST /api/chat|generate|embed|embeddings`,
//!   `POST /v1/chat/completions|completions|embeddings`, `GET /api/tags`, `GET /v1/models`;
//!   anything else (`/api/pull`, `/api/delete`, `/api/create`, ...) → 403;
//! - a request body over the limit (default 10 MiB) → 413;
//! - a POST whose JSON `model` is not allowed → 403 (no `model` → 400);
//! - the upstream must start answering within the timeout (default 120 s) → else 504;
//!   an unreachable upstream → 502. No credentials are added; only `Content-Type` and
//!   `Accept` are forwarded.
//!
//! The upstream is either `http://host[:port]` (the node's Ollama) or
//! `unix:///path/to/socket`: an HTTP server on a Unix socket, such as a job's own
//! inference front, which the worker keeps in a private directory so that no other
//! local user can reach it (a loopback TCP port would be open to every process on the
//! host).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::config::{InferenceConfig, RunAs};
use crate::error::{Error, Result};

/// Which models a sandbox may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPolicy {
    /// Any model the upstream already has (per its `GET /api/tags`); nothing can make it
    /// pull a new one.
    Installed,
    /// Only these models (`name` and `name:latest` are the same model).
    Only(Vec<String>),
}

/// Paths forwarded to the upstream.
const FORWARDED: &[(Method, &str)] = &[
    (Method::POST, "/api/chat"),
    (Method::POST, "/api/generate"),
    (Method::POST, "/api/embed"),
    (Method::POST, "/api/embeddings"),
    (Method::POST, "/v1/chat/completions"),
    (Method::POST, "/v1/completions"),
    (Method::POST, "/v1/embeddings"),
    (Method::GET, "/api/tags"),
    (Method::GET, "/v1/models"),
];

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Where requests go.
enum Upstream {
    /// `http://host[:port]`, through a pooled client.
    Http { base: Uri, client: Box<HttpClient> },
    /// `unix:///path`: one HTTP/1.1 connection per request to the socket.
    Unix { path: PathBuf },
}

/// Why an upstream request was not answered.
enum SendError {
    /// The path does not make a valid request URI.
    BadRequest,
    /// Connecting or the exchange failed.
    Failed(String),
}

impl Upstream {
    /// Parses `http://host[:port]` or `unix:///absolute/path`.
    fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') || path.contains('\0') || path.ends_with('/') {
                return Err(Error::invalid(
                    "inference.upstream_url: must be unix:///absolute/path/to/socket",
                ));
            }
            return Ok(Upstream::Unix {
                path: PathBuf::from(path),
            });
        }
        let base: Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|_| Error::invalid("inference.upstream_url: not a valid URL"))?;
        if base.scheme_str() != Some("http") || base.host().is_none() {
            return Err(Error::invalid(
                "inference.upstream_url: must be http://host[:port] or unix:///path",
            ));
        }
        Ok(Upstream::Http {
            base,
            client: Box::new(Client::builder(TokioExecutor::new()).build_http()),
        })
    }

    /// Sends `method path_and_query` with `headers` and `body`.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(header::HeaderName, HeaderValue)],
        body: Bytes,
    ) -> std::result::Result<hyper::Response<hyper::body::Incoming>, SendError> {
        let uri = match self {
            Upstream::Http { base, .. } => upstream_uri(base, path_and_query),
            Upstream::Unix { .. } => path_and_query.parse().map_err(|_| ()),
        }
        .map_err(|()| SendError::BadRequest)?;
        let mut builder = hyper::Request::builder().method(method).uri(uri);
        if let Upstream::Unix { .. } = self {
            builder = builder.header(header::HOST, "localhost");
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|_| SendError::BadRequest)?;
        match self {
            Upstream::Http { client, .. } => client
                .request(req)
                .await
                .map_err(|e| SendError::Failed(e.to_string())),
            Upstream::Unix { path } => {
                let stream = UnixStream::connect(path)
                    .await
                    .map_err(|e| SendError::Failed(e.to_string()))?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| SendError::Failed(e.to_string()))?;
                // Drives the connection until the response body is read.
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "inference upstream connection ended");
                    }
                });
                sender
                    .send_request(req)
                    .await
                    .map_err(|e| SendError::Failed(e.to_string()))
            }
        }
    }
}

struct ProxyState {
    upstream: Upstream,
    models: ModelPolicy,
    max_body: usize,
    timeout: Duration,
}

/// A running proxy bound to a Unix socket. Dropping it stops serving (the socket file is
/// left for the owner of its directory to remove).
#[derive(Debug)]
pub struct InferenceProxy {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl InferenceProxy {
    /// Binds `socket_path` (mode 0600; owned by `owner` when given and permitted) and
    /// serves until dropped.
    pub async fn bind(
        socket_path: &Path,
        config: &InferenceConfig,
        models: ModelPolicy,
        owner: Option<RunAs>,
    ) -> Result<Self> {
        let upstream = Upstream::parse(&config.upstream_url)?;
        let listener = UnixListener::bind(socket_path)
            .map_err(|e| Error::io(format_args!("bind {}", socket_path.display()), e))?;
        restrict_socket(socket_path, owner)?;
        let state = Arc::new(ProxyState {
            upstream,
            models,
            max_body: config.max_body_bytes,
            timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
        });
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .fallback(forward)
            .with_state(state);
        let path = socket_path.to_path_buf();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "inference proxy stopped");
            }
        });
        Ok(Self { path, task })
    }

    /// The socket's host path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InferenceProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn restrict_socket(path: &Path, owner: Option<RunAs>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format_args!("chmod {}", path.display()), e))?;
    if let Some(o) = owner {
        match std::os::unix::fs::chown(path, Some(o.uid), Some(o.gid)) {
            Ok(()) => {}
            // Without the right to chown (rootless), the socket stays ours; with a
            // keep-id user namespace that is the sandbox's uid as well.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::debug!(path = %path.display(), "socket not chowned: not permitted");
            }
            Err(e) => return Err(Error::io(format_args!("chown {}", path.display()), e)),
        }
    }
    Ok(())
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn same_model(a: &str, b: &str) -> bool {
    let norm = |m: &str| {
        if m.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            m.to_string()
        } else {
            format!("{m}:latest")
        }
    };
    norm(a) == norm(b)
}

async fn installed_models(state: &ProxyState) -> Result<Vec<String>, Response> {
    let sent = state
        .upstream
        .send(Method::GET, "/api/tags", &[], Bytes::new());
    let resp = tokio::time::timeout(state.timeout, sent)
        .await
        .map_err(|_| problem(StatusCode::GATEWAY_TIMEOUT, "upstream timed out"))?
        .map_err(|e| match e {
            SendError::BadRequest => problem(StatusCode::BAD_GATEWAY, "bad upstream URL"),
            SendError::Failed(_) => problem(StatusCode::BAD_GATEWAY, "upstream unreachable"),
        })?;
    let body = axum::body::to_bytes(Body::new(resp.into_body()), 16 << 20)
        .await
        .map_err(|_| problem(StatusCode::BAD_GATEWAY, "upstream model list unreadable"))?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| problem(StatusCode::BAD_GATEWAY, "upstream model list is not JSON"))?;
    Ok(v.get("models")
        .and_then(|m| m.as_array())
        .map(|arr| {
            arr.iter()
                .flat_map(|m| ["name", "model"].map(|k| m.get(k).and_then(|s| s.as_str())))
                .flatten()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

fn upstream_uri(base: &Uri, path_and_query: &str) -> Result<Uri, ()> {
    let base = base.to_string();
    format!("{}{}", base.trim_end_matches('/'), path_and_query)
        .parse()
        .map_err(|_| ())
}

async fn forward(State(state): State<Arc<ProxyState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if !FORWARDED.iter().any(|(m, p)| *m == method && *p == path) {
        return problem(
            StatusCode::FORBIDDEN,
            format!("{method} {path} is not allowed"),
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_string());
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let accept = req.headers().get(header::ACCEPT).cloned();
    let body = match axum::body::to_bytes(req.into_body(), state.max_body).await {
        Ok(b) => b,
        Err(_) => return problem(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };

    if method == Method::POST {
        let model = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string));
        let Some(model) = model else {
            return problem(
                StatusCode::BAD_REQUEST,
                "a JSON body with a \"model\" is required",
            );
        };
        let allowed = match &state.models {
            ModelPolicy::Only(list) => list.iter().any(|m| same_model(m, &model)),
            ModelPolicy::Installed => match installed_models(&state).await {
                Ok(list) => list.iter().any(|m| same_model(m, &model)),
                Err(resp) => return resp,
            },
        };
        if !allowed {
            return problem(
                StatusCode::FORBIDDEN,
                format!("model {model:?} is not allowed"),
            );
        }
    }

    let headers: Vec<_> = [
        (header::CONTENT_TYPE, content_type),
        (header::ACCEPT, accept),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
    .collect();
    let sent = state.upstream.send(
        method,
        path_and_query.as_deref().unwrap_or(&path),
        &headers,
        body,
    );
    let resp = match tokio::time::timeout(state.timeout, sent).await {
        Err(_) => return problem(StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
        Ok(Err(SendError::BadRequest)) => {
            return problem(StatusCode::BAD_REQUEST, "bad request path");
        }
        Ok(Err(SendError::Failed(e))) => {
            tracing::debug!(error = %e, "inference upstream request failed");
            return problem(StatusCode::BAD_GATEWAY, "upstream unreachable");
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
    let mut out = Response::new(Body::new(resp.into_body()));
    *out.status_mut() = status;
    if let Some(ct) = ct {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    } else {
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn mock_upstream(hits: Arc<AtomicUsize>) -> String {
        let app = mock_app(hits);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn mock_app(hits: Arc<AtomicUsize>) -> Router {
        let h1 = hits.clone();
        let h2 = hits.clone();
        Router::new()
            .route(
                "/api/chat",
                post(move |body: Bytes| {
                    let h = h1.clone();
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        axum::Json(serde_json::json!({"model": v["model"], "message": {"role": "assistant", "content": "pong"}, "done": true}))
                    }
                }),
            )
            .route(
                "/api/tags",
                get(|| async { axum::Json(serde_json::json!({"models": [{"name": "tiny:latest", "model": "tiny:latest"}]})) }),
            )
            .route(
                "/api/pull",
                post(move || {
                    let h = h2.clone();
                    async move {
                        h.fetch_add(1000, Ordering::SeqCst);
                        "pulled"
                    }
                }),
            )
    }

    async fn call(sock: &Path, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        let stream = tokio::net::UnixStream::connect(sock).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "sandbox")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn forwards_only_allowed_paths_and_models() {
        let hits = Arc::new(AtomicUsize::new(0));
        let upstream = mock_upstream(hits.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("p.sock");
        let cfg = InferenceConfig {
            upstream_url: upstream,
            max_body_bytes: 1024,
            ..Default::default()
        };
        let _proxy =
            InferenceProxy::bind(&sock, &cfg, ModelPolicy::Only(vec!["tiny".into()]), None)
                .await
                .unwrap();

        let (s, b) = call(&sock, "GET", "/healthz", vec![]).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "ok"));
        let (s, b) = call(
            &sock,
            "POST",
            "/api/chat",
            br#"{"model":"tiny:latest"}"#.to_vec(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert!(b.contains("pong"));
        let (s, _) = call(&sock, "POST", "/api/chat", br#"{"model":"other"}"#.to_vec()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call(&sock, "POST", "/api/pull", br#"{"model":"tiny"}"#.to_vec()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call(&sock, "POST", "/api/chat", b"not json".to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let mut big = br#"{"model":"tiny","x":""#.to_vec();
        big.extend(std::iter::repeat_n(b'a', 2000));
        big.extend(br#""}"#);
        let (s, _) = call(&sock, "POST", "/api/chat", big).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "only the one allowed chat reached upstream"
        );
    }

    #[tokio::test]
    async fn installed_policy_checks_the_upstream_list() {
        let hits = Arc::new(AtomicUsize::new(0));
        let upstream = mock_upstream(hits.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("p.sock");
        let cfg = InferenceConfig {
            upstream_url: upstream,
            ..Default::default()
        };
        let _proxy = InferenceProxy::bind(&sock, &cfg, ModelPolicy::Installed, None)
            .await
            .unwrap();
        let (s, _) = call(&sock, "POST", "/api/chat", br#"{"model":"tiny"}"#.to_vec()).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = call(
            &sock,
            "POST",
            "/api/chat",
            br#"{"model":"huge:70b"}"#.to_vec(),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn forwards_to_an_upstream_on_a_unix_socket() {
        let hits = Arc::new(AtomicUsize::new(0));
        let dir = tempfile::tempdir().unwrap();
        let upstream_sock = dir.path().join("front.sock");
        let l = UnixListener::bind(&upstream_sock).unwrap();
        let app = mock_app(hits.clone());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let sock = dir.path().join("p.sock");
        let cfg = InferenceConfig {
            upstream_url: format!("unix://{}", upstream_sock.display()),
            ..Default::default()
        };
        let _proxy = InferenceProxy::bind(&sock, &cfg, ModelPolicy::Installed, None)
            .await
            .unwrap();
        // The model list comes from the socket upstream, and so does the answer.
        let (s, b) = call(&sock, "POST", "/api/chat", br#"{"model":"tiny"}"#.to_vec()).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert!(b.contains("pong"), "{b}");
        let (s, b) = call(&sock, "GET", "/api/tags", vec![]).await;
        assert_eq!(s, StatusCode::OK);
        assert!(b.contains("tiny:latest"), "{b}");
        let (s, _) = call(&sock, "POST", "/api/chat", br#"{"model":"big"}"#.to_vec()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call(&sock, "POST", "/api/pull", br#"{"model":"tiny"}"#.to_vec()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        // A socket nobody serves: 502.
        let gone = dir.path().join("gone.sock");
        let cfg = InferenceConfig {
            upstream_url: format!("unix://{}", dir.path().join("missing.sock").display()),
            ..Default::default()
        };
        let _p = InferenceProxy::bind(&gone, &cfg, ModelPolicy::Only(vec!["m".into()]), None)
            .await
            .unwrap();
        let (s, _) = call(&gone, "POST", "/api/chat", br#"{"model":"m"}"#.to_vec()).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);

        // Only absolute socket paths.
        for bad in ["unix://relative.sock", "unix://", "unix:///dir/"] {
            let cfg = InferenceConfig {
                upstream_url: bad.into(),
                ..Default::default()
            };
            let e = InferenceProxy::bind(
                &dir.path().join("x.sock"),
                &cfg,
                ModelPolicy::Installed,
                None,
            )
            .await
            .unwrap_err();
            assert!(
                e.to_string().contains("unix:///absolute/path"),
                "{bad}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn unreachable_upstream_is_502() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("p.sock");
        let cfg = InferenceConfig {
            upstream_url: format!("http://{addr}"),
            ..Default::default()
        };
        let _proxy = InferenceProxy::bind(&sock, &cfg, ModelPolicy::Only(vec!["m".into()]), None)
            .await
            .unwrap();
        let (s, _) = call(&sock, "POST", "/api/chat", br#"{"model":"m"}"#.to_vec()).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
    }
}
