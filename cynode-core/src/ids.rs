//! Typed identifiers. Each wraps a UUID so a `TaskId` cannot be passed where a
//! `UserId` is expected; on the wire they are canonical UUID strings.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    )*};
}

id_type!(
    /// A user account.
    UserId,
    /// A refresh-token session.
    SessionId,
    /// A project (every user has a default one).
    ProjectId,
    /// A task: the unit of work a user asks for.
    TaskId,
    /// A job: one dispatchable piece of a task.
    JobId,
    /// A worker node.
    NodeId,
    /// A chat thread.
    ThreadId,
    /// A chat message.
    MessageId,
    /// A stored preference entry.
    PreferenceId,
    /// An API credential held by the egress service.
    CredentialId,
    /// A chunk in vector memory.
    VectorItemId,
    /// A task artifact.
    ArtifactId,
    /// An audit record.
    AuditId,
);
