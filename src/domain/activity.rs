//! The activity log: every create, update and delete of the registry, failed ones included: who,
//! what, on which target, when, with what result.

use time::OffsetDateTime;

use super::tenant::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            _ => None,
        }
    }
}

/// Who made a change: the caller's client id and display name, or the system (world file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub display_name: String,
}

impl Actor {
    pub fn system() -> Self {
        Self { id: "ficus".into(), display_name: "ficus (world file)".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEntry {
    pub id: uuid::Uuid,
    pub time: OffsetDateTime,
    pub tenant_id: TenantId,
    pub actor: Actor,
    /// `Add application`, `Delete federated identity credential`, ...
    pub operation: String,
    /// `Application`, `FederatedIdentityCredential`, `ManagedIdentity`, `ComputeResource`, `RoleAssignment`.
    pub target_type: &'static str,
    /// The target's id (object id or resource id) or, when it was never created, its name.
    pub target: String,
    pub outcome: Outcome,
    /// Why it failed (the error message the caller saw); empty on success.
    pub reason: String,
}

/// What to read from the log: a tenant's entries, newest first, optionally filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuery {
    pub tenant_id: TenantId,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub target: Option<String>,
    pub limit: usize,
    /// Continue after this entry (paging cursor: the last entry's sequence number).
    pub after: Option<i64>,
}

/// A page of entries and the cursor for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityPage {
    pub entries: Vec<ActivityEntry>,
    pub next: Option<i64>,
}
