//! The proxy's connection handling on hyper: `CONNECT` tunnels and absolute-URI
//! forwarding, with byte counting and one audit record per decision.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ClientBinding, Decision, ProxyAudit, Verdict, WebProxy};

type ProxyBody = BoxBody<Bytes, hyper::Error>;

pub(crate) async fn serve(
    proxy: WebProxy,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Per-connection failures and descriptor exhaustion pass; keep serving.
                    tracing::warn!(error = %e, "web egress proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let p = proxy.clone();
                async move { Ok::<_, Infallible>(p.handle(req, peer).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .preserve_header_case(true)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "web egress proxy: connection ended with an error");
            }
        });
    }
}

/// The credential in `Proxy-Authorization`: a bearer token, or the password (else the
/// user name) of Basic credentials.
fn proxy_token(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(header::PROXY_AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = v.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (user, pass) = s.split_once(':').unwrap_or((s.as_str(), ""));
        return Some(if pass.is_empty() { user } else { pass }.to_string());
    }
    None
}

fn strip_hop_headers(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        h.remove(n);
    }
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Emits the audit record when dropped (after the exchange), with the byte counts.
struct AuditGuard {
    proxy: WebProxy,
    record: Option<ProxyAudit>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.bytes_sent = self.sent.load(Ordering::Relaxed);
            r.bytes_received = self.received.load(Ordering::Relaxed);
            self.proxy.emit(r);
        }
    }
}

/// A body that counts the data bytes passing through it.
struct Counting<B> {
    inner: B,
    count: Arc<AtomicU64>,
    _guard: Option<AuditGuard>,
}

impl<B> Body for Counting<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &p
            && let Some(d) = frame.data_ref()
        {
            self.count.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Option<TcpStream> {
    for a in addrs {
        if let Ok(Ok(s)) = tokio::time::timeout(timeout, TcpStream::connect(a)).await {
            let _ = s.set_nodelay(true);
            return Some(s);
        }
    }
    None
}

/// Copies one direction until EOF, an error, or `idle` without data; then half-closes.
async fn one_way<R, W>(mut r: R, mut w: W, idle: Duration, count: &AtomicU64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(idle, r.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = w.shutdown().await;
}

impl WebProxy {
    pub(crate) fn emit(&self, r: ProxyAudit) {
        tracing::info!(
            target: "web_egress_audit",
            task_id = ?r.task_id,
            job_id = ?r.job_id,
            host = %r.destination_host,
            port = r.destination_port,
            scheme = %r.scheme,
            decision = ?r.decision,
            reason_code = %r.reason_code,
            bytes_sent = r.bytes_sent,
            bytes_received = r.bytes_received,
            "web egress decision"
        );
        self.inner.audit.record(r);
    }

    fn record(
        &self,
        b: Option<&ClientBinding>,
        host: &str,
        port: u16,
        scheme: &str,
        decision: Decision,
        code: &str,
    ) -> ProxyAudit {
        ProxyAudit {
            task_id: b.and_then(|b| b.task_id),
            job_id: b.and_then(|b| b.job_id),
            subject: b.and_then(|b| b.subject.clone()),
            destination_host: host.to_string(),
            destination_port: port,
            scheme: scheme.to_string(),
            decision,
            reason_code: code.to_string(),
            bytes_sent: 0,
            bytes_received: 0,
            created_at: Utc::now(),
        }
    }

    fn refuse(
        &self,
        b: Option<&ClientBinding>,
        host: &str,
        port: u16,
        scheme: &str,
        code: &str,
    ) -> Response<ProxyBody> {
        self.emit(self.record(b, host, port, scheme, Decision::Deny, code));
        let (status, what) = match code {
            "bad_request" => (StatusCode::BAD_REQUEST, "bad proxy request"),
            "connect_failed" => (StatusCode::BAD_GATEWAY, "could not reach"),
            _ => (StatusCode::FORBIDDEN, "blocked by the web egress proxy"),
        };
        let mut r = text(status, format!("{what}: {host}:{port} ({code})\n"));
        if let Ok(v) = HeaderValue::from_str(code) {
            r.headers_mut()
                .insert(HeaderName::from_static("x-cynode-egress-reason"), v);
        }
        r
    }

    async fn handle(self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let token = proxy_token(req.headers());
        let binding = self.binding_for(peer.ip(), token.as_deref());
        if req.method() == Method::CONNECT {
            self.tunnel(req, binding).await
        } else {
            self.forward(req, binding).await
        }
    }

    async fn tunnel(
        self,
        req: Request<Incoming>,
        binding: Option<ClientBinding>,
    ) -> Response<ProxyBody> {
        let b = binding.as_ref();
        let Some(auth) = req.uri().authority().cloned() else {
            return self.refuse(b, "", 0, "https", "bad_request");
        };
        let host = auth.host().to_string();
        let port = auth.port_u16().unwrap_or(443);
        let addrs = match self.decide(b, &host, port, true).await {
            Verdict::Deny(code) => return self.refuse(b, &host, port, "https", code),
            Verdict::Allow(a) => a,
        };
        let cfg = &self.inner.config;
        let Some(upstream) =
            connect_any(&addrs, Duration::from_millis(cfg.connect_timeout_ms)).await
        else {
            return self.refuse(b, &host, port, "https", "connect_failed");
        };
        let idle = Duration::from_millis(cfg.idle_timeout_ms.max(1));
        let record = self.record(b, &host, port, "https", Decision::Allow, "allowed");
        let proxy = self.clone();
        tokio::spawn(async move {
            let sent = Arc::new(AtomicU64::new(0));
            let received = Arc::new(AtomicU64::new(0));
            let guard = AuditGuard {
                proxy,
                record: Some(record),
                sent: sent.clone(),
                received: received.clone(),
            };
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                let client = TokioIo::new(upgraded);
                let (cr, cw) = tokio::io::split(client);
                let (ur, uw) = upstream.into_split();
                tokio::join!(
                    one_way(cr, uw, idle, &sent),
                    one_way(ur, cw, idle, &received)
                );
            }
            drop(guard);
        });
        Response::new(Empty::new().map_err(|never| match never {}).boxed())
    }

    async fn forward(
        self,
        req: Request<Incoming>,
        binding: Option<ClientBinding>,
    ) -> Response<ProxyBody> {
        let b = binding.as_ref();
        let uri = req.uri().clone();
        let host = uri.host().unwrap_or("").to_string();
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                let port = uri.port_u16().unwrap_or(0);
                let scheme = other.to_ascii_lowercase();
                return self.refuse(b, &host, port, &scheme, "scheme_not_allowed");
            }
            None => return self.refuse(b, &host, 0, "http", "bad_request"),
        }
        let port = uri.port_u16().unwrap_or(80);
        let addrs = match self.decide(b, &host, port, false).await {
            Verdict::Deny(code) => return self.refuse(b, &host, port, "http", code),
            Verdict::Allow(a) => a,
        };
        let cfg = &self.inner.config;
        let Some(stream) = connect_any(&addrs, Duration::from_millis(cfg.connect_timeout_ms)).await
        else {
            return self.refuse(b, &host, port, "http", "connect_failed");
        };
        let Ok((mut sender, conn)) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .title_case_headers(true)
            .handshake(TokioIo::new(stream))
            .await
        else {
            return self.refuse(b, &host, port, "http", "connect_failed");
        };
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "web egress proxy: upstream connection error");
            }
        });

        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let (mut parts, body) = req.into_parts();
        let origin_form = uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = match origin_form.parse::<Uri>() {
            Ok(u) => u,
            Err(_) => return self.refuse(b, &host, port, "http", "bad_request"),
        };
        strip_hop_headers(&mut parts.headers);
        if !parts.headers.contains_key(header::HOST)
            && let Some(a) = uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, a);
        }
        let upstream_req = Request::from_parts(
            parts,
            Counting {
                inner: body,
                count: sent.clone(),
                _guard: None,
            },
        );
        let record = self.record(b, &host, port, "http", Decision::Allow, "allowed");
        let guard = AuditGuard {
            proxy: self.clone(),
            record: Some(record),
            sent,
            received: received.clone(),
        };
        let idle = Duration::from_millis(cfg.idle_timeout_ms.max(1));
        let resp = match tokio::time::timeout(idle, sender.send_request(upstream_req)).await {
            Ok(Ok(r)) => r,
            _ => {
                let mut g = guard;
                if let Some(r) = g.record.as_mut() {
                    r.decision = Decision::Deny;
                    r.reason_code = "connect_failed".into();
                }
                drop(g);
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream error: {host}:{port}\n"),
                );
            }
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_headers(&mut parts.headers);
        let body = Counting {
            inner: body,
            count: received,
            _guard: Some(guard),
        };
        Response::from_parts(parts, body.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_proxy_authorization() {
        let mut h = HeaderMap::new();
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(proxy_token(&h).as_deref(), Some("abc"));
        // "job:s3cret" and "s3cret" (user only)
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic am9iOnMzY3JldA=="),
        );
        assert_eq!(proxy_token(&h).as_deref(), Some("s3cret"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("basic czNjcmV0"),
        );
        assert_eq!(proxy_token(&h).as_deref(), Some("s3cret"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Digest x"),
        );
        assert_eq!(proxy_token(&h), None);
    }

    #[test]
    fn hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }
}
