//! The sign-in log: every token request (managed identity or application), success or failure,
//! with who asked, for what, from where, the outcome, the error code and the latency.
//!
//! Identical requests close together in time (same principal, client, resource, caller, outcome,
//! error and cache use) are written as one entry with a `count`, as Entra aggregates
//! managed-identity sign-ins: a workload asking for the same token thousands of times a second
//! costs the log one row per write, not thousands.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use super::activity::Outcome;
use super::ids::ObjectId;
use super::tenant::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInKind {
    ManagedIdentity,
    Application,
}

impl SignInKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ManagedIdentity => "managedIdentity",
            Self::Application => "application",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "managedIdentity" => Some(Self::ManagedIdentity),
            "application" => Some(Self::Application),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub id: uuid::Uuid,
    pub time: OffsetDateTime,
    pub tenant_id: TenantId,
    pub kind: SignInKind,
    /// The principal that got (or was refused) a token, when the request named a known one.
    pub principal_id: Option<ObjectId>,
    pub client_id: Option<String>,
    /// The resource (audience) asked for, as the client named it.
    pub resource: String,
    pub caller_address: Option<IpAddr>,
    pub outcome: Outcome,
    /// `AADSTS500011`, `identity_not_found`, ...; empty on success.
    pub error_code: String,
    pub reason: String,
    pub latency: Duration,
    /// Served from the issued-token cache.
    pub cached: bool,
    /// How many identical requests this entry stands for, from `time` on (1 for one request).
    /// `latency` is then the slowest of them.
    pub count: u32,
}

impl SignIn {
    fn same_request(&self, other: &Self) -> bool {
        self.tenant_id == other.tenant_id
            && self.kind == other.kind
            && self.principal_id == other.principal_id
            && self.client_id == other.client_id
            && self.resource == other.resource
            && self.caller_address == other.caller_address
            && self.outcome == other.outcome
            && self.error_code == other.error_code
            && self.reason == other.reason
            && self.cached == other.cached
    }
}

/// Merges identical requests into one entry each (the first's id and time, the counts summed,
/// the slowest latency), in order of first appearance.
pub fn aggregate(entries: Vec<SignIn>) -> Vec<SignIn> {
    let mut merged: Vec<SignIn> = Vec::new();
    'next: for entry in entries {
        // Batches hold few distinct requests: a short scan beats hashing every field.
        for existing in merged.iter_mut().rev().take(64) {
            if existing.same_request(&entry) {
                existing.count = existing.count.saturating_add(entry.count);
                existing.latency = existing.latency.max(entry.latency);
                continue 'next;
            }
        }
        merged.push(entry);
    }
    merged
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInQuery {
    pub tenant_id: TenantId,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub principal_id: Option<ObjectId>,
    pub outcome: Option<Outcome>,
    pub limit: usize,
    pub after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInPage {
    pub entries: Vec<SignIn>,
    pub next: Option<i64>,
}

/// Where request paths hand sign-ins. Never blocks: an implementation that cannot keep up drops
/// entries (and counts them) rather than slow a token request down.
pub trait SignInSink: Send + Sync {
    fn record(&self, entry: SignIn);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(principal: u8, cached: bool, latency_ms: u64) -> SignIn {
        SignIn {
            id: uuid::Uuid::new_v4(),
            time: OffsetDateTime::UNIX_EPOCH,
            tenant_id: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
            kind: SignInKind::ManagedIdentity,
            principal_id: Some(ObjectId::parse(&format!("00000000-0000-4000-8000-0000000000{principal:02}")).unwrap()),
            client_id: None,
            resource: "api://vault".into(),
            caller_address: None,
            outcome: Outcome::Success,
            error_code: String::new(),
            reason: String::new(),
            latency: Duration::from_millis(latency_ms),
            cached,
            count: 1,
        }
    }

    #[test]
    fn identical_requests_merge_into_one_entry_with_their_count_and_slowest_latency() {
        let first = entry(1, true, 2);
        let merged =
            aggregate(vec![first.clone(), entry(2, true, 1), entry(1, true, 9), entry(1, false, 1), entry(1, true, 3)]);
        assert_eq!(merged.len(), 3, "principal 1 cached, principal 2, principal 1 uncached");
        assert_eq!((merged[0].id, merged[0].count, merged[0].latency), (first.id, 3, Duration::from_millis(9)));
        assert_eq!((merged[1].count, merged[2].count), (1, 1));
        assert!(!merged[2].cached);
    }
}
