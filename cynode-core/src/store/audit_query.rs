//! Keyset-paged reads of the audit tables, for browsing them page by page.

use async_trait::async_trait;

use crate::model::{AuditKind, AuditRecord, Timestamp};
use crate::{AuditId, Result, UserId};

/// Which records of one audit table to read, newest first: ordered by `created_at`
/// descending, then id descending (a total order, the same on every backend).
#[derive(Clone, Debug)]
pub struct AuditQuery {
    /// Table.
    pub kind: AuditKind,
    /// Only records about this user.
    pub user_id: Option<UserId>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Only records at or before this time.
    pub until: Option<Timestamp>,
    /// Only records strictly after this position in the order (that is, older, or as
    /// old with a smaller id): the last record of the previous page.
    pub after: Option<(Timestamp, AuditId)>,
    /// Page size (clamped to 1..=1000; 0 means 50).
    pub limit: u32,
}

impl AuditQuery {
    /// Whether a record passes the query's filters (not the limit).
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let t = r.created_at();
        r.kind() == self.kind
            && self.user_id.is_none_or(|u| r.user_id() == Some(u))
            && self.since.is_none_or(|s| t >= s)
            && self.until.is_none_or(|u| t <= u)
            && self
                .after
                .is_none_or(|(at, id)| (t, record_id(r)) < (at, id))
    }
}

/// The id of a record.
pub fn record_id(r: &AuditRecord) -> AuditId {
    match r {
        AuditRecord::Auth(a) => a.id,
        AuditRecord::Chat(c) => c.id,
        AuditRecord::McpToolCall(m) => m.id,
    }
}

/// Keyset-paged audit reads.
#[async_trait]
pub trait AuditQueryStore: Send + Sync {
    /// One page of one table, newest first (see [`AuditQuery`]).
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
}
