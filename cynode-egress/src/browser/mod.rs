//! The secure browser (§4): fetches a web page for an agent, with every policy check
//! done *before* a request leaves, and returns sanitized text.
//!
//! For each URL, and again for every redirect hop:
//! - scheme `http`/`https` only;
//! - domain policy ([`WebPolicy`]: deny wins, default deny, optional allowed-domains
//!   preference);
//! - no private, loopback, link-local or otherwise internal target, checked on IP
//!   literals and on every address the host resolves to (unless
//!   [`BrowserConfig::allow_private_networks`]); the HTTP client's own resolver applies
//!   the same filter at connect time, so a DNS answer that changes between check and
//!   connect (rebinding) cannot reach an internal address either;
//! - `robots.txt` for the URL's origin (cached), when `respect_robots`;
//! - on a hop: the hop limit, the cross-domain rule and the blocked-URL patterns.
//!
//! Then: a status and content-type check, a body read that stops at `max_bytes`, one
//! time cap over the whole fetch, charset decoding, and the [sanitizer](crate::sanitize).
//! Proxy environment variables are ignored and no compression is negotiated (no
//! decompression bombs). Every fetch, allowed or refused, produces one [`FetchAudit`].

mod error;
mod policy;
mod robots;
mod rules;
mod search;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use cynode_core::TaskId;
use cynode_core::model::Timestamp;
use regex::Regex;
use serde::{Deserialize, Serialize};
use url::{Host, Url};

pub use error::{BrowseError, ConfigError};
pub use policy::{Effect, WebPolicy, WebResource, WebRule};
pub use rules::{BrowserRules, FetchRules, RedirectRules};
pub use search::{SearchConfig, SearchProvider, SearchRequest, SearchResult, SearchResults};

use crate::sanitize::{ContentKind, ExtractMode, Extraction, Removed, SanitizeOptions, Sanitizer};
use crate::webproxy::audit::{AuditSink, NoAudit};
use crate::webproxy::guard::{Resolve, SystemResolver, ip_is_public, normalise_host};
use robots::Robots;

/// What to do with a body larger than `max_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Keep the first `max_bytes` and sanitize them (`metadata.body_truncated`).
    #[default]
    Truncate,
    /// Fail with `too_large`.
    Reject,
}

/// Secure browser configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrowserConfig {
    /// The §4.4 rules (fetch, redirects, extraction, sanitization).
    pub rules: BrowserRules,
    /// Allow private, loopback and link-local targets (off by default; for tests and
    /// deliberately internal deployments).
    pub allow_private_networks: bool,
    /// Accepted response media types.
    pub allowed_content_types: Vec<String>,
    /// Behaviour past `max_bytes`.
    pub oversize: Oversize,
    /// How long a fetched `robots.txt` is reused.
    pub robots_cache_seconds: u64,
    /// Connect timeout per connection attempt.
    pub connect_timeout_seconds: f64,
    /// Fetches one subject may have in flight at once (0 = unlimited).
    pub max_concurrent_per_subject: u32,
    /// `web.search`: allowlisted providers and result limits.
    pub search: SearchConfig,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            rules: BrowserRules::default(),
            allow_private_networks: false,
            allowed_content_types: vec![
                "text/html".into(),
                "application/xhtml+xml".into(),
                "text/plain".into(),
            ],
            oversize: Oversize::Truncate,
            robots_cache_seconds: 3600,
            connect_timeout_seconds: 10.0,
            max_concurrent_per_subject: 4,
            search: SearchConfig::default(),
        }
    }
}

/// One fetch request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// Absolute URL.
    pub url: String,
    /// Extraction mode (default from `mode_defaults`).
    pub mode: Option<ExtractMode>,
    /// Caller's character cap (the effective cap is the smaller of this and
    /// `max_output_chars`).
    pub max_chars: Option<usize>,
    /// Task the fetch is for (audit attribution).
    pub task_id: Option<TaskId>,
    /// Who asks (audit and per-subject limits), e.g. `user:<uuid>`.
    pub subject: Option<String>,
}

/// Metadata of a fetched page (the `metadata` object of the response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMetadata {
    /// URL after redirects.
    pub final_url: String,
    /// When the body was received.
    pub fetched_at: Timestamp,
    /// Media type of the response (without parameters).
    pub content_type: String,
    /// Sanitized title.
    pub title: Option<String>,
    /// Redirect hops followed.
    pub redirect_count: u32,
    /// Whether robots.txt was consulted.
    pub robots_applied: bool,
    /// Whether the text was cut at the character cap.
    pub truncated: bool,
    /// Whether the body was cut at `max_bytes`.
    pub body_truncated: bool,
    /// Body bytes read.
    pub bytes: u64,
    /// Where the text came from.
    pub extraction: Extraction,
    /// What the sanitizer removed.
    pub removed: Removed,
}

/// A fetched, sanitized page (the `success` payload of `web.fetch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedPage {
    /// Sanitized text (untrusted reference data, never instructions).
    pub content_text: String,
    /// Metadata.
    pub metadata: PageMetadata,
}

/// Outcome of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Refused.
    Deny,
}

/// Audit record of one fetch (one row per fetch; §4.2 step 6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FetchAudit {
    /// Task.
    pub task_id: Option<TaskId>,
    /// Subject.
    pub subject: Option<String>,
    /// Action: `web.fetch`.
    pub action: String,
    /// URL requested.
    pub url: String,
    /// URL reached (after redirects), if any request was made.
    pub final_url: Option<String>,
    /// `allow` when a page was returned, else `deny`.
    pub decision: Decision,
    /// Error type on failure.
    pub error_type: Option<String>,
    /// Error message on failure.
    pub reason: Option<String>,
    /// Whether robots.txt was consulted.
    pub robots_applied: bool,
    /// Redirect hops followed.
    pub redirect_count: u32,
    /// Wall time of the whole fetch.
    pub duration_ms: u64,
    /// Body bytes read.
    pub bytes: u64,
    /// When.
    pub created_at: Timestamp,
}

#[derive(Default)]
struct Trace {
    final_url: Option<String>,
    robots_applied: bool,
    redirects: u32,
    bytes: u64,
}

struct Inner {
    config: BrowserConfig,
    client: reqwest::Client,
    sanitizer: Sanitizer,
    blocked: Vec<Regex>,
    resolver: Arc<dyn Resolve>,
    robots: Mutex<HashMap<String, (Instant, Robots)>>,
    in_flight: Mutex<HashMap<String, u32>>,
    audit: Arc<dyn AuditSink<FetchAudit>>,
    product: String,
    timeout: Duration,
}

/// The secure browser. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct SecureBrowser {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SecureBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureBrowser")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SecureBrowser`].
pub struct BrowserBuilder {
    config: BrowserConfig,
    resolver: Arc<dyn Resolve>,
    audit: Arc<dyn AuditSink<FetchAudit>>,
}

impl std::fmt::Debug for BrowserBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BrowserBuilder {
    /// Uses another resolver (default: the system resolver).
    pub fn resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Sends audit records to `sink` (default: dropped).
    pub fn audit(mut self, sink: Arc<dyn AuditSink<FetchAudit>>) -> Self {
        self.audit = sink;
        self
    }

    /// Validates the configuration and builds the browser.
    pub fn build(self) -> Result<SecureBrowser, ConfigError> {
        let c = self.config;
        let f = &c.rules.fetch;
        let timeout = Duration::try_from_secs_f64(f.timeout_seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ConfigError::Invalid("fetch.timeout_seconds must be a positive number".into())
            })?;
        let connect = Duration::try_from_secs_f64(c.connect_timeout_seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ConfigError::Invalid("connect_timeout_seconds must be a positive number".into())
            })?;
        if f.max_bytes == 0 {
            return Err(ConfigError::Invalid(
                "fetch.max_bytes must be positive".into(),
            ));
        }
        let sanitizer = Sanitizer::new(c.rules.sanitize_rules())?;
        let blocked = c
            .rules
            .redirects
            .blocked_redirect_url_patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|source| ConfigError::Pattern {
                    pattern: p.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dns = GuardedDns {
            inner: self.resolver.clone(),
            allow_private: c.allow_private_networks,
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(dns))
            .user_agent(f.user_agent.clone())
            .connect_timeout(connect)
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        let product = f
            .user_agent
            .split('/')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        Ok(SecureBrowser {
            inner: Arc::new(Inner {
                config: c,
                client,
                sanitizer,
                blocked,
                resolver: self.resolver,
                robots: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashMap::new()),
                audit: self.audit,
                product,
                timeout,
            }),
        })
    }
}

/// Connect-time address filter: the HTTP client resolves through this, so only
/// public addresses (unless configured) are ever connected to.
struct GuardedDns {
    inner: Arc<dyn Resolve>,
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = self.inner.clone();
        let allow = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = inner.resolve(&host, 0).await?;
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow || ip_is_public(a.ip()))
                .collect();
            if ok.is_empty() {
                let e = std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{host} has no permitted address"),
                );
                return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Releases a per-subject slot when dropped.
struct Slot<'a> {
    map: &'a Mutex<HashMap<String, u32>>,
    key: Option<String>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(k) = &self.key {
            let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(k);
                }
            }
        }
    }
}

fn map_send_error(e: reqwest::Error) -> BrowseError {
    use std::error::Error as _;
    // A refusal by the connect-time address filter surfaces as a connect error whose
    // cause chain holds our PermissionDenied.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return BrowseError::denied(io.to_string());
        }
        cause = c.source();
    }
    let message = if e.is_connect() {
        "could not connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "error reading the response"
    } else {
        "request failed"
    };
    BrowseError::failed(message, true, Some(Box::new(e)))
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a body with the charset from the header or a `<meta>` in the first KiB.
fn decode_body(body: &[u8], content_type: &str) -> String {
    let param = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    let label = param.or_else(|| {
        let head = &body[..body.len().min(1024)];
        let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
        let at = memchr::memmem::find(&lower, b"charset=")?;
        let rest = &head[at + 8..];
        let rest = rest
            .strip_prefix(b"\"")
            .or_else(|| rest.strip_prefix(b"'"))
            .unwrap_or(rest);
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
            .unwrap_or(rest.len());
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    });
    match label.and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes())) {
        Some(enc) if enc != encoding_rs::UTF_8 => enc.decode(body).0.into_owned(),
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

fn same_site(a: &str, b: &str) -> bool {
    let strip = |h: &str| h.strip_prefix("www.").unwrap_or(h).to_string();
    strip(a) == strip(b)
}

impl SecureBrowser {
    /// A builder with the system resolver and no audit sink.
    pub fn builder(config: BrowserConfig) -> BrowserBuilder {
        BrowserBuilder {
            config,
            resolver: Arc::new(SystemResolver),
            audit: Arc::new(NoAudit),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &BrowserConfig {
        &self.inner.config
    }

    /// Fetches `req.url` under `policy` and returns the sanitized page.
    pub async fn fetch(
        &self,
        req: &FetchRequest,
        policy: &WebPolicy,
    ) -> Result<FetchedPage, BrowseError> {
        let started = Instant::now();
        let mut trace = Trace::default();
        let result = match self.acquire(req) {
            Err(e) => Err(e),
            Ok(_slot) => match tokio::time::timeout(
                self.inner.timeout,
                self.fetch_inner(req, policy, &mut trace),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(BrowseError::Timeout {
                    seconds: self.inner.timeout.as_secs_f64(),
                }),
            },
        };
        let (decision, error_type, reason) = match &result {
            Ok(_) => (Decision::Allow, None, None),
            Err(e) => (
                Decision::Deny,
                Some(e.error_type().to_string()),
                Some(e.to_string()),
            ),
        };
        let record = FetchAudit {
            task_id: req.task_id,
            subject: req.subject.clone(),
            action: "web.fetch".into(),
            url: req.url.clone(),
            final_url: trace.final_url,
            decision,
            error_type,
            reason,
            robots_applied: trace.robots_applied,
            redirect_count: trace.redirects,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes: trace.bytes,
            created_at: Utc::now(),
        };
        tracing::info!(
            target: "secure_browser_audit",
            task_id = ?record.task_id,
            url = %record.url,
            decision = ?record.decision,
            error_type = record.error_type.as_deref().unwrap_or(""),
            redirects = record.redirect_count,
            robots_applied = record.robots_applied,
            duration_ms = record.duration_ms,
            "web.fetch"
        );
        self.inner.audit.record(record);
        result
    }

    fn acquire(&self, req: &FetchRequest) -> Result<Slot<'_>, BrowseError> {
        let max = self.inner.config.max_concurrent_per_subject;
        let map = &self.inner.in_flight;
        let key = match (&req.subject, max) {
            (Some(s), m) if m > 0 => s.clone(),
            _ => return Ok(Slot { map, key: None }),
        };
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.clone()).or_insert(0);
        if *n >= max {
            return Err(BrowseError::RateLimited { subject: key });
        }
        *n += 1;
        Ok(Slot {
            map,
            key: Some(key),
        })
    }

    async fn fetch_inner(
        &self,
        req: &FetchRequest,
        policy: &WebPolicy,
        trace: &mut Trace,
    ) -> Result<FetchedPage, BrowseError> {
        let c = &self.inner.config;
        let mut url = Url::parse(&req.url)
            .map_err(|e| BrowseError::InvalidUrl(format!("{}: {e}", req.url)))?;
        let origin_host = url
            .host_str()
            .map(normalise_host)
            .ok_or_else(|| BrowseError::InvalidUrl(format!("{}: no host", req.url)))?;
        loop {
            let hop = trace.redirects > 0;
            if let Err(e) = self.check_target(&url, policy, hop, &origin_host).await {
                return Err(match (hop, e) {
                    (true, BrowseError::PolicyDenied { reason }) => BrowseError::redirect(reason),
                    (_, e) => e,
                });
            }
            if c.rules.fetch.respect_robots {
                trace.robots_applied = true;
                if !self.robots_allow(&url).await {
                    return Err(BrowseError::RobotsDisallowed {
                        url: url.to_string(),
                    });
                }
            }
            trace.final_url = Some(url.to_string());
            let resp = self
                .inner
                .client
                .get(url.clone())
                .header(
                    reqwest::header::ACCEPT,
                    "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1",
                )
                .send()
                .await
                .map_err(map_send_error)?;
            let status = resp.status();
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        BrowseError::failed(
                            format!("HTTP {status} without a Location"),
                            false,
                            None,
                        )
                    })?;
                let next = url
                    .join(location)
                    .map_err(|_| BrowseError::redirect(format!("invalid Location {location:?}")))?;
                let max = c.rules.redirects.max_redirect_hops;
                if trace.redirects >= max {
                    return Err(BrowseError::redirect(format!("more than {max} redirects")));
                }
                trace.redirects += 1;
                url = next;
                continue;
            }
            if !status.is_success() {
                let retryable = status.is_server_error() || status.as_u16() == 429;
                return Err(BrowseError::failed(
                    format!("HTTP {status}"),
                    retryable,
                    None,
                ));
            }
            return self.read_page(req, url, resp, trace).await;
        }
    }

    /// Scheme, blocked patterns and cross-domain (hops only), domain policy, addresses.
    async fn check_target(
        &self,
        url: &Url,
        policy: &WebPolicy,
        hop: bool,
        origin_host: &str,
    ) -> Result<(), BrowseError> {
        let c = &self.inner.config;
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(BrowseError::denied(format!(
                "scheme {scheme:?} is not allowed"
            )));
        }
        let host = url
            .host_str()
            .map(normalise_host)
            .ok_or_else(|| BrowseError::InvalidUrl(format!("{url}: no host")))?;
        if hop {
            if let Some(p) = self.inner.blocked.iter().find(|p| p.is_match(url.as_str())) {
                return Err(BrowseError::redirect(format!(
                    "{url} matches blocked pattern {:?}",
                    p.as_str()
                )));
            }
            if !c.rules.redirects.allow_cross_domain_redirects && !same_site(&host, origin_host) {
                return Err(BrowseError::redirect(format!(
                    "cross-domain redirect from {origin_host} to {host}"
                )));
            }
        }
        policy
            .check(url.as_str(), &host)
            .map_err(BrowseError::denied)?;
        if c.allow_private_networks {
            return Ok(());
        }
        match url.host() {
            Some(Host::Ipv4(ip)) => {
                if !ip_is_public(ip.into()) {
                    return Err(BrowseError::denied(format!(
                        "{host} is an internal address"
                    )));
                }
            }
            Some(Host::Ipv6(ip)) => {
                if !ip_is_public(ip.into()) {
                    return Err(BrowseError::denied(format!(
                        "{host} is an internal address"
                    )));
                }
            }
            Some(Host::Domain(d)) => {
                let port = url.port_or_known_default().unwrap_or(80);
                let addrs = self.inner.resolver.resolve(d, port).await.map_err(|e| {
                    BrowseError::failed(format!("cannot resolve {host}"), true, Some(Box::new(e)))
                })?;
                if addrs.is_empty() {
                    return Err(BrowseError::failed(
                        format!("{host} has no address"),
                        true,
                        None,
                    ));
                }
                if let Some(bad) = addrs.iter().find(|a| !ip_is_public(a.ip())) {
                    return Err(BrowseError::denied(format!(
                        "{host} resolves to internal address {}",
                        bad.ip()
                    )));
                }
            }
            None => return Err(BrowseError::InvalidUrl(format!("{url}: no host"))),
        }
        Ok(())
    }

    /// Whether robots.txt of the URL's origin allows it (fetched once per origin and
    /// cached; unreachable or 5xx means disallow, 4xx means allow, per RFC 9309).
    async fn robots_allow(&self, url: &Url) -> bool {
        let origin = url.origin().ascii_serialization();
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let ttl = Duration::from_secs(self.inner.config.robots_cache_seconds);
        {
            let cache = self.inner.robots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, r)) = cache.get(&origin)
                && at.elapsed() < ttl
            {
                return r.allows(&path);
            }
        }
        let robots = self.fetch_robots(url).await;
        let allowed = robots.allows(&path);
        let mut cache = self.inner.robots.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(origin, (Instant::now(), robots));
        allowed
    }

    async fn fetch_robots(&self, url: &Url) -> Robots {
        let Ok(mut target) = url.join("/robots.txt") else {
            return Robots::disallow_all();
        };
        for _ in 0..=5 {
            if !matches!(target.scheme(), "http" | "https") {
                return Robots::disallow_all();
            }
            if !self.inner.config.allow_private_networks {
                let literal_internal = match target.host() {
                    Some(Host::Ipv4(ip)) => !ip_is_public(ip.into()),
                    Some(Host::Ipv6(ip)) => !ip_is_public(ip.into()),
                    _ => false,
                };
                if literal_internal {
                    return Robots::disallow_all();
                }
            }
            let Ok(resp) = self.inner.client.get(target.clone()).send().await else {
                return Robots::disallow_all();
            };
            let status = resp.status();
            if status.is_redirection() {
                match resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| target.join(l).ok())
                {
                    Some(next) => {
                        target = next;
                        continue;
                    }
                    None => return Robots::allow_all(),
                }
            }
            if status.is_client_error() {
                return Robots::allow_all();
            }
            if !status.is_success() {
                return Robots::disallow_all();
            }
            let mut body = Vec::new();
            let mut resp = resp;
            const CAP: usize = 512 * 1024;
            while let Ok(Some(chunk)) = resp.chunk().await {
                body.extend_from_slice(&chunk[..chunk.len().min(CAP - body.len())]);
                if body.len() >= CAP {
                    break;
                }
            }
            return Robots::parse(&String::from_utf8_lossy(&body), &self.inner.product);
        }
        Robots::disallow_all()
    }

    async fn read_page(
        &self,
        req: &FetchRequest,
        url: Url,
        mut resp: reqwest::Response,
        trace: &mut Trace,
    ) -> Result<FetchedPage, BrowseError> {
        let c = &self.inner.config;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let media = media_type(&content_type);
        let kind = ContentKind::from_content_type(&media)
            .filter(|_| {
                c.allowed_content_types
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&media))
            })
            .ok_or_else(|| BrowseError::UnsupportedContentType {
                content_type: content_type.clone(),
            })?;
        let limit = c.rules.fetch.max_bytes;
        if c.oversize == Oversize::Reject && resp.content_length().is_some_and(|l| l > limit) {
            return Err(BrowseError::TooLarge { limit });
        }
        let cap = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut body: Vec<u8> = Vec::with_capacity(
            cap.min(
                resp.content_length()
                    .map_or(64 * 1024, |l| usize::try_from(l).unwrap_or(cap)),
            )
            .min(cap),
        );
        let mut cut = false;
        while let Some(chunk) = resp.chunk().await.map_err(map_send_error)? {
            let room = cap - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                cut = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        drop(resp);
        trace.bytes = body.len() as u64;
        if cut && c.oversize == Oversize::Reject {
            return Err(BrowseError::TooLarge { limit });
        }
        let text = decode_body(&body, &content_type);
        drop(body);
        let host = url.host_str().map(normalise_host);
        let opts = SanitizeOptions {
            mode: req.mode,
            max_chars: req.max_chars,
            host: host.as_deref(),
        };
        let s = self.inner.sanitizer.sanitize_with(&text, kind, &opts);
        Ok(FetchedPage {
            content_text: s.text,
            metadata: PageMetadata {
                final_url: url.to_string(),
                fetched_at: Utc::now(),
                content_type: media,
                title: s.title,
                redirect_count: trace.redirects,
                robots_applied: trace.robots_applied,
                truncated: s.truncated,
                body_truncated: cut,
                bytes: trace.bytes,
                extraction: s.extraction,
                removed: s.removed,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_decoding() {
        assert_eq!(
            decode_body(b"caf\xe9", "text/html; charset=ISO-8859-1"),
            "café"
        );
        assert_eq!(
            decode_body(b"<meta charset=\"windows-1252\">\x93q\x94", "text/html"),
            "<meta charset=\"windows-1252\">“q”"
        );
        assert_eq!(decode_body("café".as_bytes(), "text/html"), "café");
        assert_eq!(decode_body(b"bad \xff", "text/plain"), "bad \u{FFFD}");
    }

    #[test]
    fn site_comparison() {
        assert!(same_site("www.example.com", "example.com"));
        assert!(!same_site("evil.com", "example.com"));
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut c = BrowserConfig::default();
        c.rules.fetch.timeout_seconds = -1.0;
        assert!(matches!(
            SecureBrowser::builder(c).build(),
            Err(ConfigError::Invalid(_))
        ));
        let mut c = BrowserConfig::default();
        c.rules
            .redirects
            .blocked_redirect_url_patterns
            .push("(".into());
        assert!(matches!(
            SecureBrowser::builder(c).build(),
            Err(ConfigError::Pattern { .. })
        ));
    }
}
