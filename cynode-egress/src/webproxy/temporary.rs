//! Dynamic temporary allow-list entries (§5): a task asks for named hosts for a short
//! time; the request is refused unless approval is enabled for it, and is bounded
//! (exact hosts only, standard ports, TTL cap). Every grant or refusal is audited.

use std::time::Duration;

use chrono::Utc;
use cynode_core::TaskId;
use serde::{Deserialize, Serialize};

use super::{AllowEntry, Decision, EntryScope, ProxyAudit, WebProxy, guard::normalise_host};

/// A request for temporary access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemporaryAccessRequest {
    /// The task the entries are for.
    pub task_id: TaskId,
    /// Exact host names.
    pub requested_hosts: Vec<String>,
    /// Ports; empty means 80 and 443.
    #[serde(default)]
    pub requested_ports: Vec<u16>,
    /// Lifetime of the entries.
    pub ttl_seconds: u64,
    /// Why (shown in the audit record).
    pub reason: String,
    /// Who asks (e.g. the project manager agent).
    pub requested_by: String,
}

/// What the effective preferences/policy allow for temporary access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemporaryAccessPolicy {
    /// Approval is enabled for this task or project (default: off, so refused).
    pub enabled: bool,
    /// Longest TTL granted.
    pub max_ttl_seconds: u64,
    /// Ports other than 80 and 443 may be requested.
    pub allow_nonstandard_ports: bool,
}

impl Default for TemporaryAccessPolicy {
    fn default() -> Self {
        TemporaryAccessPolicy {
            enabled: false,
            max_ttl_seconds: 900,
            allow_nonstandard_ports: false,
        }
    }
}

/// Why a temporary-access request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemporaryAccessError {
    /// Approval is not enabled for this task.
    #[error("temporary web access is not enabled for this task")]
    NotEnabled,
    /// A host is not an exact DNS name (wildcard, IP literal, empty, scheme or path).
    #[error("not an exact host name: {0:?}")]
    InvalidHost(String),
    /// A port other than 80/443 without permission.
    #[error("port {0} is not allowed")]
    PortNotAllowed(u16),
    /// The TTL exceeds the cap (or is zero).
    #[error("ttl {requested} s is outside 1..={max} s")]
    BadTtl {
        /// Requested.
        requested: u64,
        /// Cap.
        max: u64,
    },
    /// Nothing was requested.
    #[error("no hosts requested")]
    Empty,
}

fn exact_host(h: &str) -> Option<String> {
    let n = normalise_host(h);
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.parse::<std::net::IpAddr>().is_err()
        && n.contains('.')
        && n.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(n)
}

impl WebProxy {
    /// Validates a request against `policy` and, if acceptable, adds task-scoped
    /// entries that expire after the TTL. All-or-nothing: one bad host refuses the
    /// whole request. Audited either way (one record per host and port).
    pub fn grant_temporary(
        &self,
        req: &TemporaryAccessRequest,
        policy: &TemporaryAccessPolicy,
    ) -> Result<Vec<AllowEntry>, TemporaryAccessError> {
        let result = self.check_temporary(req, policy);
        let ports = if req.requested_ports.is_empty() {
            vec![80, 443]
        } else {
            req.requested_ports.clone()
        };
        for host in &req.requested_hosts {
            for port in &ports {
                let (decision, code) = match &result {
                    Ok(_) => (Decision::Allow, "temporary_entry_granted"),
                    Err(_) => (Decision::Deny, "temporary_entry_refused"),
                };
                self.emit(ProxyAudit {
                    task_id: Some(req.task_id),
                    job_id: None,
                    subject: Some(req.requested_by.clone()),
                    destination_host: host.clone(),
                    destination_port: *port,
                    scheme: "any".into(),
                    decision,
                    reason_code: code.into(),
                    bytes_sent: 0,
                    bytes_received: 0,
                    created_at: Utc::now(),
                });
            }
        }
        let hosts = result?;
        let entries: Vec<AllowEntry> = hosts
            .into_iter()
            .map(|h| {
                AllowEntry {
                    scope: EntryScope::Task(req.task_id),
                    host: h,
                    ports: ports.clone(),
                    expires_at: None,
                    created_by: Some(req.requested_by.clone()),
                    reason: Some(req.reason.clone()),
                }
                .with_ttl(Duration::from_secs(req.ttl_seconds))
            })
            .collect();
        for e in &entries {
            self.allow(e.clone());
        }
        Ok(entries)
    }

    fn check_temporary(
        &self,
        req: &TemporaryAccessRequest,
        policy: &TemporaryAccessPolicy,
    ) -> Result<Vec<String>, TemporaryAccessError> {
        if !policy.enabled {
            return Err(TemporaryAccessError::NotEnabled);
        }
        if req.requested_hosts.is_empty() {
            return Err(TemporaryAccessError::Empty);
        }
        if req.ttl_seconds == 0 || req.ttl_seconds > policy.max_ttl_seconds {
            return Err(TemporaryAccessError::BadTtl {
                requested: req.ttl_seconds,
                max: policy.max_ttl_seconds,
            });
        }
        if !policy.allow_nonstandard_ports
            && let Some(p) = req.requested_ports.iter().find(|p| **p != 80 && **p != 443)
        {
            return Err(TemporaryAccessError::PortNotAllowed(*p));
        }
        req.requested_hosts
            .iter()
            .map(|h| exact_host(h).ok_or_else(|| TemporaryAccessError::InvalidHost(h.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::webproxy::ProxyConfig;

    fn proxy() -> (WebProxy, Arc<Mutex<Vec<ProxyAudit>>>) {
        let audits = Arc::new(Mutex::new(Vec::new()));
        let sink = audits.clone();
        let p = WebProxy::new(
            ProxyConfig {
                entries: vec![],
                ..ProxyConfig::default()
            },
            Arc::new(move |r: ProxyAudit| sink.lock().expect("lock").push(r)),
        );
        (p, audits)
    }

    fn request(hosts: &[&str]) -> TemporaryAccessRequest {
        TemporaryAccessRequest {
            task_id: TaskId::new(),
            requested_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            requested_ports: vec![],
            ttl_seconds: 600,
            reason: "fetch a build dependency".into(),
            requested_by: "agent:pma".into(),
        }
    }

    #[test]
    fn refused_unless_enabled_and_bounded() {
        let (p, audits) = proxy();
        let on = TemporaryAccessPolicy {
            enabled: true,
            ..Default::default()
        };
        assert_eq!(
            p.grant_temporary(&request(&["crates.io"]), &TemporaryAccessPolicy::default()),
            Err(TemporaryAccessError::NotEnabled)
        );
        for bad in [
            "*.crates.io",
            "10.0.0.1",
            "https://crates.io",
            "crates.io/x",
            "localhost",
            "",
        ] {
            assert!(
                matches!(
                    p.grant_temporary(&request(&[bad]), &on),
                    Err(TemporaryAccessError::InvalidHost(_))
                ),
                "{bad}"
            );
        }
        let mut r = request(&["crates.io"]);
        r.ttl_seconds = 3600;
        assert!(matches!(
            p.grant_temporary(&r, &on),
            Err(TemporaryAccessError::BadTtl { .. })
        ));
        r.ttl_seconds = 60;
        r.requested_ports = vec![8080];
        assert_eq!(
            p.grant_temporary(&r, &on),
            Err(TemporaryAccessError::PortNotAllowed(8080))
        );
        assert!(p.entries().is_empty());
        assert!(
            audits
                .lock()
                .expect("lock")
                .iter()
                .all(|a| a.decision == Decision::Deny)
        );
    }

    #[test]
    fn granted_entries_are_task_scoped_and_expire() {
        let (p, audits) = proxy();
        let on = TemporaryAccessPolicy {
            enabled: true,
            ..Default::default()
        };
        let r = request(&["static.crates.io", "Index.Crates.io."]);
        let granted = p.grant_temporary(&r, &on).expect("granted");
        assert_eq!(granted.len(), 2);
        assert_eq!(granted[1].host, "index.crates.io");
        assert!(
            granted
                .iter()
                .all(|e| e.scope == EntryScope::Task(r.task_id) && e.ports == vec![80, 443])
        );
        assert!(
            granted
                .iter()
                .all(|e| e.expires_at.is_some_and(|t| t > Utc::now()))
        );
        assert_eq!(p.entries().len(), 2);
        let a = audits.lock().expect("lock");
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|x| x.reason_code == "temporary_entry_granted" && x.task_id == Some(r.task_id)));
    }
}
