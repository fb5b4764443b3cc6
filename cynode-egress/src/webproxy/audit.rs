//! Where audit records go. Storage-agnostic: the server wires a sink that writes rows;
//! tests collect into a vector; a channel sender works too.

/// Receives audit records. Must not block for long: it is called on the request path.
pub trait AuditSink<R>: Send + Sync {
    /// Takes one record.
    fn record(&self, record: R);
}

impl<R, F> AuditSink<R> for F
where
    F: Fn(R) + Send + Sync,
{
    fn record(&self, record: R) {
        self(record)
    }
}

/// Drops every record (for embedders that audit elsewhere).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAudit;

impl<R> AuditSink<R> for NoAudit {
    fn record(&self, _record: R) {}
}

/// Sends each record into an unbounded channel (the receiver persists them).
#[derive(Clone, Debug)]
pub struct ChannelAudit<R>(pub tokio::sync::mpsc::UnboundedSender<R>);

impl<R: Send> AuditSink<R> for ChannelAudit<R> {
    fn record(&self, record: R) {
        // A closed receiver means nobody persists audits any more; dropping is all
        // that is left to do.
        let _ = self.0.send(record);
    }
}
