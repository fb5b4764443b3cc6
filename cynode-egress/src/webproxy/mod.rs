//! The web egress proxy (§5): an allow-list HTTP forward proxy for sandboxes.
//!
//! Sandboxes get `HTTP_PROXY`/`HTTPS_PROXY` pointing here (directly or through a
//! node-local hop). HTTPS goes through `CONNECT host:port` tunnels (the proxy never sees
//! plaintext); plain HTTP uses absolute-URI requests, forwarded in origin form with
//! hop-by-hop headers (including `Proxy-Authorization`) removed.
//!
//! Each request is attributed to a client binding — by the client's IP address, or by a
//! token sent as `Proxy-Authorization` (`Bearer <token>`, or Basic with the token as
//! password) — which says which task, job and project it acts for. The destination must
//! then pass, in order:
//! 1. a known client (unless [`ProxyConfig::require_binding`] is off);
//! 2. scheme `http` (absolute URI) or a `CONNECT` tunnel (treated as `https`);
//! 3. a DNS host name (IP literals are refused);
//! 4. an unexpired allow-list entry of the system, the client's project or its task
//!    scope, exact host before `*.` wildcard, whose ports include the port (default 443
//!    for tunnels, 80 for http);
//! 5. every resolved address public (no private, loopback, link-local, multicast or
//!    reserved address), unless [`ProxyConfig::allow_private_destinations`]; the
//!    connection goes to the checked address, so DNS cannot change under it.
//!
//! Refusals answer `403` with a body naming the blocked host and the reason. Every
//! decision produces one [`ProxyAudit`] record (for allowed traffic when the exchange
//! ends, with byte counts).
//!
//! Tasks may ask for short-lived extra hosts through [`WebProxy::grant_temporary`]
//! (refused unless enabled; exact hosts, standard ports, bounded TTL; audited).

pub mod audit;
pub mod guard;
mod server;
mod temporary;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use cynode_core::model::Timestamp;
use cynode_core::{JobId, ProjectId, TaskId};
use serde::{Deserialize, Serialize};

use audit::AuditSink;
use guard::{Resolve, SystemResolver, host_matches, normalise_host};

pub use crate::browser::Decision;
pub use temporary::{TemporaryAccessError, TemporaryAccessPolicy, TemporaryAccessRequest};

/// Whose allow-list entry it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "id", rename_all = "snake_case")]
pub enum EntryScope {
    /// Every client.
    System,
    /// Clients acting for this project.
    Project(ProjectId),
    /// Clients acting for this task.
    Task(TaskId),
}

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowEntry {
    /// Scope.
    pub scope: EntryScope,
    /// Exact host (`pypi.org`) or, discouraged, `*.example.com`.
    pub host: String,
    /// Allowed ports; empty means 443 for tunnels and 80 for plain http.
    pub ports: Vec<u16>,
    /// After this instant the entry counts as absent.
    pub expires_at: Option<Timestamp>,
    /// Who added it.
    pub created_by: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

impl AllowEntry {
    /// A system-wide entry for `host` on the default ports, without expiry.
    pub fn system(host: &str) -> Self {
        AllowEntry {
            scope: EntryScope::System,
            host: host.to_string(),
            ports: Vec::new(),
            expires_at: None,
            created_by: None,
            reason: None,
        }
    }

    /// The same entry for another scope.
    pub fn scoped(mut self, scope: EntryScope) -> Self {
        self.scope = scope;
        self
    }

    /// The same entry with explicit ports.
    pub fn on_ports(mut self, ports: &[u16]) -> Self {
        self.ports = ports.to_vec();
        self
    }

    /// The same entry expiring `ttl` from now.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.expires_at = chrono::Duration::from_std(ttl)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d));
        self
    }

    fn live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// The suggested default entries (§5): Go module proxy and checksum database, PyPI.
pub fn default_entries() -> Vec<AllowEntry> {
    [
        "proxy.golang.org",
        "sum.golang.org",
        "pypi.org",
        "files.pythonhosted.org",
    ]
    .iter()
    .map(|h| AllowEntry::system(h))
    .collect()
}

/// Who a client acts for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientBinding {
    /// Task.
    pub task_id: Option<TaskId>,
    /// Job.
    pub job_id: Option<JobId>,
    /// Project.
    pub project_id: Option<ProjectId>,
    /// Subject for the audit (e.g. `user:<uuid>`).
    pub subject: Option<String>,
}

/// Proxy configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Initial allow-list (more can be added at run time through [`WebProxy::allow`]).
    pub entries: Vec<AllowEntry>,
    /// Refuse clients with no binding (default). When off, unbound clients get the
    /// system-scope entries only.
    pub require_binding: bool,
    /// Allow destinations that resolve to private or loopback addresses (off by
    /// default; tests and deliberately internal mirrors).
    pub allow_private_destinations: bool,
    /// Upstream connect timeout in milliseconds.
    pub connect_timeout_ms: u64,
    /// A tunnel or exchange with no traffic for this long is closed (milliseconds).
    pub idle_timeout_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            entries: default_entries(),
            require_binding: true,
            allow_private_destinations: false,
            connect_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
        }
    }
}

/// Audit record of one proxy decision (suggested columns of schema §16.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyAudit {
    /// Task.
    pub task_id: Option<TaskId>,
    /// Job.
    pub job_id: Option<JobId>,
    /// Subject.
    pub subject: Option<String>,
    /// Destination host as requested.
    pub destination_host: String,
    /// Destination port.
    pub destination_port: u16,
    /// `http` or `https` (a tunnel).
    pub scheme: String,
    /// Allow or deny.
    pub decision: Decision,
    /// `allowed`, `unknown_client`, `scheme_not_allowed`, `ip_literal`,
    /// `host_not_allowed`, `port_not_allowed`, `private_address`, `dns_failure`,
    /// `connect_failed`, `bad_request`.
    pub reason_code: String,
    /// Bytes from client to destination.
    pub bytes_sent: u64,
    /// Bytes from destination to client.
    pub bytes_received: u64,
    /// When the decision was made.
    pub created_at: Timestamp,
}

struct State {
    entries: Vec<AllowEntry>,
    by_ip: HashMap<IpAddr, ClientBinding>,
    by_token: HashMap<String, ClientBinding>,
}

pub(crate) struct Inner {
    pub(crate) config: ProxyConfig,
    state: RwLock<State>,
    pub(crate) resolver: Arc<dyn Resolve>,
    pub(crate) audit: Arc<dyn AuditSink<ProxyAudit>>,
}

/// The web egress proxy. Clone it to keep a handle for run-time changes while
/// [`WebProxy::serve`] runs.
#[derive(Clone)]
pub struct WebProxy {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for WebProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebProxy")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The outcome of checking a destination.
pub(crate) enum Verdict {
    Allow(Vec<std::net::SocketAddr>),
    Deny(&'static str),
}

impl WebProxy {
    /// A proxy with the system resolver.
    pub fn new(config: ProxyConfig, audit: Arc<dyn AuditSink<ProxyAudit>>) -> Self {
        Self::with_resolver(config, audit, Arc::new(SystemResolver))
    }

    /// A proxy with another resolver.
    pub fn with_resolver(
        config: ProxyConfig,
        audit: Arc<dyn AuditSink<ProxyAudit>>,
        resolver: Arc<dyn Resolve>,
    ) -> Self {
        let state = State {
            entries: config.entries.clone(),
            by_ip: HashMap::new(),
            by_token: HashMap::new(),
        };
        WebProxy {
            inner: Arc::new(Inner {
                config,
                state: RwLock::new(state),
                resolver,
                audit,
            }),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Attributes traffic from `ip` (a sandbox's address) to `binding`.
    pub fn bind_client(&self, ip: IpAddr, binding: ClientBinding) {
        self.write().by_ip.insert(ip, binding);
    }

    /// Removes an address binding.
    pub fn unbind_client(&self, ip: IpAddr) {
        self.write().by_ip.remove(&ip);
    }

    /// Attributes traffic carrying `token` in `Proxy-Authorization` to `binding`.
    pub fn bind_token(&self, token: &str, binding: ClientBinding) {
        self.write().by_token.insert(token.to_string(), binding);
    }

    /// Removes a token binding.
    pub fn unbind_token(&self, token: &str) {
        self.write().by_token.remove(token);
    }

    /// Adds an allow-list entry (dropping expired ones on the way).
    pub fn allow(&self, entry: AllowEntry) {
        let now = Utc::now();
        let mut s = self.write();
        s.entries.retain(|e| e.live(now));
        s.entries.push(entry);
    }

    /// Removes every entry for `host` in `scope`.
    pub fn revoke(&self, scope: EntryScope, host: &str) {
        let host = normalise_host(host);
        self.write()
            .entries
            .retain(|e| !(e.scope == scope && normalise_host(&e.host) == host));
    }

    /// The live entries.
    pub fn entries(&self) -> Vec<AllowEntry> {
        let now = Utc::now();
        self.read()
            .entries
            .iter()
            .filter(|e| e.live(now))
            .cloned()
            .collect()
    }

    /// The binding for a client, by token first, then by address.
    pub(crate) fn binding_for(&self, ip: IpAddr, token: Option<&str>) -> Option<ClientBinding> {
        let s = self.read();
        token
            .and_then(|t| s.by_token.get(t).cloned())
            .or_else(|| s.by_ip.get(&ip).cloned())
    }

    /// The allow-list decision for host and port, without DNS.
    pub(crate) fn listed(
        &self,
        binding: Option<&ClientBinding>,
        host: &str,
        port: u16,
        tunnel: bool,
    ) -> Result<(), &'static str> {
        let now = Utc::now();
        let s = self.read();
        let applies = |e: &&AllowEntry| {
            e.live(now)
                && match e.scope {
                    EntryScope::System => true,
                    EntryScope::Project(p) => binding.and_then(|b| b.project_id) == Some(p),
                    EntryScope::Task(t) => binding.and_then(|b| b.task_id) == Some(t),
                }
        };
        let host = normalise_host(host);
        let exact: Vec<&AllowEntry> = s
            .entries
            .iter()
            .filter(applies)
            .filter(|e| normalise_host(&e.host) == host)
            .collect();
        let candidates = if exact.is_empty() {
            s.entries
                .iter()
                .filter(applies)
                .filter(|e| e.host.starts_with("*.") && host_matches(&e.host, &host))
                .collect()
        } else {
            exact
        };
        if candidates.is_empty() {
            return Err("host_not_allowed");
        }
        let default_port = if tunnel { 443 } else { 80 };
        if candidates.iter().any(|e| {
            if e.ports.is_empty() {
                port == default_port
            } else {
                e.ports.contains(&port)
            }
        }) {
            Ok(())
        } else {
            Err("port_not_allowed")
        }
    }

    /// Full destination check: binding, literal, allow-list, DNS.
    pub(crate) async fn decide(
        &self,
        binding: Option<&ClientBinding>,
        host: &str,
        port: u16,
        tunnel: bool,
    ) -> Verdict {
        if binding.is_none() && self.inner.config.require_binding {
            return Verdict::Deny("unknown_client");
        }
        let bare = normalise_host(host);
        if bare.is_empty() {
            return Verdict::Deny("bad_request");
        }
        if bare.parse::<IpAddr>().is_ok() {
            return Verdict::Deny("ip_literal");
        }
        if let Err(code) = self.listed(binding, &bare, port, tunnel) {
            return Verdict::Deny(code);
        }
        let addrs = match self.inner.resolver.resolve(&bare, port).await {
            Ok(a) if !a.is_empty() => a,
            _ => return Verdict::Deny("dns_failure"),
        };
        if !self.inner.config.allow_private_destinations
            && addrs.iter().any(|a| !guard::ip_is_public(a.ip()))
        {
            return Verdict::Deny("private_address");
        }
        Verdict::Allow(addrs)
    }

    /// Serves clients accepted on `listener` until the process ends.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves until `shutdown` completes; connections in progress are left to finish.
    pub async fn serve_with_shutdown(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        server::serve(self, listener, shutdown).await
    }
}
