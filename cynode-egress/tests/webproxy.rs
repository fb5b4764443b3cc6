//! The web egress proxy between a real HTTP client and a local upstream server, both
//! on 127.0.0.1. Host names resolve to the upstream through a static resolver.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::routing::{get, post};
use cynode_core::{JobId, ProjectId, TaskId};
use cynode_egress::webproxy::guard::StaticResolver;
use cynode_egress::webproxy::{
    AllowEntry, ClientBinding, Decision, EntryScope, ProxyAudit, ProxyConfig, WebProxy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Upstream {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let record = hits.clone();
    let app = Router::new()
        .route("/hello", get(|| async { "hello from upstream" }))
        .route(
            "/headers",
            get(|h: HeaderMap| async move {
                let mut names: Vec<String> = h.keys().map(|k| k.as_str().to_string()).collect();
                names.sort();
                names.join(",")
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let record = record.clone();
            async move {
                record
                    .lock()
                    .expect("hits lock")
                    .push(req.uri().path().to_string());
                next.run(req).await
            }
        }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream { port, hits }
}

type Audits = Arc<Mutex<Vec<ProxyAudit>>>;

struct Proxy {
    port: u16,
    handle: WebProxy,
    audits: Audits,
}

impl Proxy {
    /// Waits until `n` audit records exist (allowed exchanges are recorded when they
    /// end, which can be just after the client has read the response).
    async fn audits(&self, n: usize) -> Vec<ProxyAudit> {
        for _ in 0..500 {
            let a = self.audits.lock().expect("audit lock").clone();
            if a.len() >= n {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.audits.lock().expect("audit lock").clone()
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(format!("http://127.0.0.1:{}", self.port)).expect("proxy url"),
            )
            .build()
            .expect("client")
    }
}

fn resolver() -> Arc<StaticResolver> {
    let lo = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    Arc::new(
        StaticResolver::new()
            .with("allowed.test", &lo)
            .with("blocked.test", &lo)
            .with("mirror.allowed.test", &lo)
            .with("project.test", &lo),
    )
}

async fn start(config: ProxyConfig) -> Proxy {
    let audits: Audits = Arc::new(Mutex::new(Vec::new()));
    let sink = audits.clone();
    let handle = WebProxy::with_resolver(
        config,
        Arc::new(move |r: ProxyAudit| sink.lock().expect("audit lock").push(r)),
        resolver(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let server = handle.clone();
    tokio::spawn(async move {
        let _ = server.serve(listener).await;
    });
    Proxy {
        port,
        handle,
        audits,
    }
}

struct Ids {
    task: TaskId,
    job: JobId,
    project: ProjectId,
}

fn binding(ids: &Ids) -> ClientBinding {
    ClientBinding {
        task_id: Some(ids.task),
        job_id: Some(ids.job),
        project_id: Some(ids.project),
        subject: Some("user:test".into()),
    }
}

/// A proxy allowing `allowed.test` on the upstream's port for everyone, with loopback
/// destinations permitted (the upstream is on 127.0.0.1) and 127.0.0.1 bound to a job.
async fn standard(up: &Upstream) -> (Proxy, Ids) {
    let config = ProxyConfig {
        entries: vec![AllowEntry::system("allowed.test").on_ports(&[up.port])],
        allow_private_destinations: true,
        ..ProxyConfig::default()
    };
    let p = start(config).await;
    let ids = Ids {
        task: TaskId::new(),
        job: JobId::new(),
        project: ProjectId::new(),
    };
    p.handle
        .bind_client(IpAddr::V4(Ipv4Addr::LOCALHOST), binding(&ids));
    (p, ids)
}

/// Sends raw bytes to the proxy and returns the response head and the stream.
async fn raw(port: u16, request: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect proxy");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read head");
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), s)
}

#[tokio::test]
async fn http_to_an_allowed_host_is_forwarded_and_audited() {
    let up = upstream().await;
    let (p, ids) = standard(&up).await;
    let client = p.client();
    let r = client
        .get(format!("http://allowed.test:{}/hello", up.port))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "hello from upstream");
    let body = "x".repeat(1000);
    let r = client
        .post(format!("http://allowed.test:{}/echo", up.port))
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.text().await.expect("echo"), body);
    let a = p.audits(2).await;
    assert_eq!(a.len(), 2, "{a:?}");
    let get = a.iter().find(|r| r.bytes_sent == 0).expect("GET record");
    assert_eq!(get.decision, Decision::Allow);
    assert_eq!(get.reason_code, "allowed");
    assert_eq!(get.destination_host, "allowed.test");
    assert_eq!(get.destination_port, up.port);
    assert_eq!(get.scheme, "http");
    assert_eq!(get.task_id, Some(ids.task));
    assert_eq!(get.job_id, Some(ids.job));
    assert_eq!(get.bytes_received, "hello from upstream".len() as u64);
    let post = a.iter().find(|r| r.bytes_sent > 0).expect("POST record");
    assert_eq!((post.bytes_sent, post.bytes_received), (1000, 1000));
    assert_eq!(*up.hits.lock().expect("hits"), vec!["/hello", "/echo"]);
}

#[tokio::test]
async fn everything_else_is_refused_with_403_and_audited() {
    let up = upstream().await;
    let (p, ids) = standard(&up).await;
    let client = p.client();
    let cases = [
        (
            format!("http://blocked.test:{}/hello", up.port),
            "host_not_allowed",
            "blocked.test",
        ),
        (
            "http://allowed.test/hello".to_string(),
            "port_not_allowed",
            "allowed.test",
        ),
        (
            format!("http://127.0.0.1:{}/hello", up.port),
            "ip_literal",
            "127.0.0.1",
        ),
        (
            format!("http://evil.allowed.test.example:{}/", up.port),
            "host_not_allowed",
            "evil.allowed.test.example",
        ),
    ];
    for (url, code, host) in &cases {
        let r = client.get(url).send().await.expect("send");
        assert_eq!(r.status(), 403, "{url}");
        assert_eq!(
            r.headers()
                .get("x-cynode-egress-reason")
                .and_then(|v| v.to_str().ok()),
            Some(*code),
            "{url}"
        );
        let text = r.text().await.expect("body");
        assert!(text.contains(host), "the refusal names the host: {text}");
    }
    // https in absolute form (not a tunnel) and a request for the proxy itself.
    let (head, _) = raw(
        p.port,
        "GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("scheme_not_allowed"),
        "{head}"
    );
    let (head, _) = raw(p.port, "GET /hello HTTP/1.1\r\nHost: allowed.test\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    assert!(
        up.hits.lock().expect("hits").is_empty(),
        "nothing reached the upstream"
    );
    let a = p.audits(6).await;
    assert_eq!(a.len(), 6);
    assert!(
        a.iter()
            .all(|r| r.decision == Decision::Deny && r.task_id == Some(ids.task))
    );
    let codes: Vec<&str> = a.iter().map(|r| r.reason_code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "host_not_allowed",
            "port_not_allowed",
            "ip_literal",
            "host_not_allowed",
            "scheme_not_allowed",
            "bad_request"
        ]
    );
}

#[tokio::test]
async fn connect_tunnels_are_allowed_only_to_listed_destinations() {
    let up = upstream().await;
    let (p, _) = standard(&up).await;
    let port = up.port;
    let (head, mut s) = raw(
        p.port,
        &format!("CONNECT allowed.test:{port} HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Speak HTTP through the tunnel (TLS would be the same bytes to the proxy).
    let request =
        format!("GET /hello HTTP/1.1\r\nHost: allowed.test:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .expect("write through tunnel");
    let mut response = String::new();
    s.read_to_string(&mut response)
        .await
        .expect("read through tunnel");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello from upstream"), "{response}");
    drop(s);

    for (target, code) in [
        ("blocked.test:443".to_string(), "host_not_allowed"),
        ("allowed.test:22".to_string(), "port_not_allowed"),
        (format!("127.0.0.1:{port}"), "ip_literal"),
        ("[::1]:443".to_string(), "ip_literal"),
    ] {
        let (head, _) = raw(
            p.port,
            &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
        assert!(head.to_ascii_lowercase().contains(code), "{target}: {head}");
    }
    let a = p.audits(5).await;
    let tunnel = a
        .iter()
        .find(|r| r.decision == Decision::Allow)
        .expect("allowed tunnel record");
    assert_eq!(tunnel.scheme, "https");
    assert_eq!(tunnel.bytes_sent, request.len() as u64);
    assert_eq!(tunnel.bytes_received, response.len() as u64);
    assert_eq!(a.iter().filter(|r| r.decision == Decision::Deny).count(), 4);
    assert_eq!(*up.hits.lock().expect("hits"), vec!["/hello"]);
}

#[tokio::test]
async fn private_destinations_are_refused_by_default() {
    let up = upstream().await;
    let config = ProxyConfig {
        entries: vec![AllowEntry::system("allowed.test").on_ports(&[up.port])],
        ..ProxyConfig::default()
    };
    let p = start(config).await;
    p.handle
        .bind_client(IpAddr::V4(Ipv4Addr::LOCALHOST), ClientBinding::default());
    let r = p
        .client()
        .get(format!("http://allowed.test:{}/hello", up.port))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()
            .get("x-cynode-egress-reason")
            .and_then(|v| v.to_str().ok()),
        Some("private_address")
    );
    assert!(up.hits.lock().expect("hits").is_empty());
}

#[tokio::test]
async fn clients_are_identified_by_address_or_proxy_token() {
    let up = upstream().await;
    let config = ProxyConfig {
        entries: vec![AllowEntry::system("allowed.test").on_ports(&[up.port])],
        allow_private_destinations: true,
        ..ProxyConfig::default()
    };
    let p = start(config).await;
    let url = format!("http://allowed.test:{}/headers", up.port);
    // No binding at all: refused.
    let r = p.client().get(&url).send().await.expect("send");
    assert_eq!(
        r.headers()
            .get("x-cynode-egress-reason")
            .and_then(|v| v.to_str().ok()),
        Some("unknown_client")
    );
    // A token binding, sent as Basic credentials in the proxy URL.
    let ids = Ids {
        task: TaskId::new(),
        job: JobId::new(),
        project: ProjectId::new(),
    };
    p.handle.bind_token("job-token-123", binding(&ids));
    let client = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(format!("http://127.0.0.1:{}", p.port))
                .expect("proxy url")
                .basic_auth("job", "job-token-123"),
        )
        .build()
        .expect("client");
    let r = client.get(&url).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let names = r.text().await.expect("body");
    assert!(
        !names.contains("proxy-authorization"),
        "credential leaked upstream: {names}"
    );
    assert!(names.contains("host"), "{names}");
    let a = p.audits(2).await;
    assert_eq!(a[1].task_id, Some(ids.task));
    // A wrong token is an unknown client.
    let client = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(format!("http://127.0.0.1:{}", p.port))
                .expect("proxy url")
                .basic_auth("job", "nope"),
        )
        .build()
        .expect("client");
    let r = client.get(&url).send().await.expect("send");
    assert_eq!(r.status(), 403);
    // Unbound clients may be given the system list instead.
    let open = start(ProxyConfig {
        entries: vec![AllowEntry::system("allowed.test").on_ports(&[up.port])],
        allow_private_destinations: true,
        require_binding: false,
        ..ProxyConfig::default()
    })
    .await;
    let r = open.client().get(&url).send().await.expect("send");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn scoped_expiring_and_wildcard_entries() {
    let up = upstream().await;
    let config = ProxyConfig {
        entries: vec![],
        allow_private_destinations: true,
        ..ProxyConfig::default()
    };
    let p = start(config).await;
    let ids = Ids {
        task: TaskId::new(),
        job: JobId::new(),
        project: ProjectId::new(),
    };
    p.handle
        .bind_client(IpAddr::V4(Ipv4Addr::LOCALHOST), binding(&ids));
    let port = up.port;
    let status = |host: &'static str| {
        let client = p.client();
        async move {
            let r = client
                .get(format!("http://{host}:{port}/hello"))
                .send()
                .await
                .expect("send");
            r.status().as_u16()
        }
    };
    // Another task's entry does not apply; this task's and this project's do.
    p.handle.allow(
        AllowEntry::system("allowed.test")
            .scoped(EntryScope::Task(TaskId::new()))
            .on_ports(&[port]),
    );
    assert_eq!(status("allowed.test").await, 403);
    p.handle.allow(
        AllowEntry::system("allowed.test")
            .scoped(EntryScope::Task(ids.task))
            .on_ports(&[port]),
    );
    assert_eq!(status("allowed.test").await, 200);
    p.handle.allow(
        AllowEntry::system("project.test")
            .scoped(EntryScope::Project(ids.project))
            .on_ports(&[port]),
    );
    assert_eq!(status("project.test").await, 200);
    // Revoked and expired entries count as absent.
    p.handle.revoke(EntryScope::Task(ids.task), "allowed.test");
    assert_eq!(status("allowed.test").await, 403);
    let mut expired = AllowEntry::system("allowed.test").on_ports(&[port]);
    expired.expires_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    p.handle.allow(expired);
    assert_eq!(status("allowed.test").await, 403);
    p.handle.allow(
        AllowEntry::system("allowed.test")
            .on_ports(&[port])
            .with_ttl(Duration::from_secs(900)),
    );
    assert_eq!(status("allowed.test").await, 200);
    // A wildcard entry covers subdomains only.
    p.handle
        .allow(AllowEntry::system("*.allowed.test").on_ports(&[port]));
    assert_eq!(status("mirror.allowed.test").await, 200);
    assert!(
        p.handle
            .entries()
            .iter()
            .all(|e| e.expires_at.is_none_or(|t| t > chrono::Utc::now()))
    );
}
