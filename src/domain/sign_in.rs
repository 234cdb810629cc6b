//! The sign-in log: every token request (managed identity or application), success or failure,
//! with who asked (and their name, as Entra's log keeps it), for what, from where, through which
//! compute resource or federated credential, the outcome, the error code and the latency.
//!
//! Identical requests close together in time (same principal, client, resource, caller, outcome,
//! error and cache use) are written as one entry with a `count`, as Entra aggregates
//! managed-identity sign-ins: a workload asking for the same token thousands of times a second
//! costs the log one row per write, not thousands.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use super::activity::Outcome;
use super::application::Application;
use super::ids::ObjectId;
use super::resource::ManagedIdentity;
use super::tenant::TenantId;

/// Entra's AADSTS numbers for failures that have no finer code of their own.
pub mod aadsts {
    /// `TenantThrottlingError`: too many requests.
    pub const THROTTLED: u32 = 90055;
    /// A transient error; try again.
    pub const TRANSIENT: u32 = 90033;
    /// `InvalidRequest`: the request is malformed or not valid.
    pub const INVALID_REQUEST: u32 = 9002313;
    /// `TokenIssuanceError`: an issue with the sign-in service.
    pub const SERVER_ERROR: u32 = 50000;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// Graph's `signInEventTypes` value.
    pub fn graph_event_type(self) -> &'static str {
        match self {
            Self::ManagedIdentity => "managedIdentity",
            Self::Application => "servicePrincipal",
        }
    }
}

/// A managed identity's kind (Graph's `msiType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsiType {
    SystemAssigned,
    UserAssigned,
}

impl MsiType {
    pub fn of(identity: &ManagedIdentity) -> Self {
        if identity.is_user_assigned() { Self::UserAssigned } else { Self::SystemAssigned }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SystemAssigned => "systemAssigned",
            Self::UserAssigned => "userAssigned",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::SystemAssigned, Self::UserAssigned].into_iter().find(|t| t.as_str() == raw)
    }
}

/// Who signed in, as the log names them: the principal's ids, its name when the request was made
/// (an application's display name; a managed identity's is its resource's name, as Entra names
/// its service principal) and, for a managed identity, its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SignInPrincipal {
    pub principal_id: Option<ObjectId>,
    pub client_id: Option<String>,
    pub name: String,
    pub msi_type: Option<MsiType>,
}

impl SignInPrincipal {
    pub fn application(app: &Application) -> Self {
        Self {
            principal_id: Some(app.service_principal_id),
            client_id: Some(app.app_id.to_string()),
            name: app.display_name.as_str().to_owned(),
            msi_type: None,
        }
    }

    pub fn identity(identity: &ManagedIdentity) -> Self {
        Self {
            principal_id: Some(identity.principal_id),
            client_id: Some(identity.client_id.to_string()),
            name: identity.resource_id.name().to_owned(),
            msi_type: Some(MsiType::of(identity)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub id: uuid::Uuid,
    pub time: OffsetDateTime,
    pub tenant_id: TenantId,
    pub kind: SignInKind,
    /// The principal that got (or was refused) a token, when the request named a known one; the
    /// client id as the request gave it otherwise.
    pub principal: SignInPrincipal,
    /// The compute resource whose managed-identity endpoint (IMDS, App Service) was asked.
    pub compute_resource: Option<String>,
    /// The federated identity credential that admitted the assertion.
    pub credential_id: Option<ObjectId>,
    /// The resource (audience) asked for, as the client named it.
    pub resource: String,
    pub caller_address: Option<IpAddr>,
    pub outcome: Outcome,
    /// Graph's `status.errorCode`: 0 on success, else the AADSTS number Entra would log.
    pub status_code: u32,
    /// ficus's own code, finer than the AADSTS number (`AADSTS500011`, `identity_not_found`,
    /// `throttled`, `injected`, ...); empty on success.
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
    /// Whether `other` is the same request (told apart by nothing but its time, id and latency).
    /// [`SameRequest`] hashes the same fields.
    fn same_request(&self, other: &Self) -> bool {
        // The fixed-size fields first: they tell most different requests apart without a memcmp.
        self.kind == other.kind
            && self.outcome == other.outcome
            && self.status_code == other.status_code
            && self.cached == other.cached
            && self.tenant_id == other.tenant_id
            && self.credential_id == other.credential_id
            && self.caller_address == other.caller_address
            && self.principal == other.principal
            && self.compute_resource == other.compute_resource
            && self.resource == other.resource
            && self.error_code == other.error_code
            && self.reason == other.reason
    }
}

/// Hashes what [`SignIn::same_request`] compares.
struct SameRequest<'a>(&'a SignIn);

impl Hash for SameRequest<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let e = self.0;
        (e.tenant_id, e.kind, &e.principal, &e.compute_resource, e.credential_id, &e.resource).hash(state);
        (e.caller_address, e.outcome, e.status_code, &e.error_code, &e.reason, e.cached).hash(state);
    }
}

/// What the log keeps of a value the client gave (a resource, a client id): its first 256
/// characters.
pub fn clipped(value: &str) -> String {
    // Copied in one piece when short enough (a char takes at least one byte), else cut after the
    // 256th character.
    let end =
        if value.len() <= 256 { value.len() } else { value.char_indices().nth(256).map_or(value.len(), |(i, _)| i) };
    value[..end].to_owned()
}

/// Merges identical requests into one entry each (the first's id and time, the counts summed,
/// the slowest latency), in order of first appearance, as they arrive. It may hold hundreds of
/// distinct requests (CI jobs, one subject each): they are found by hash, not by scanning.
#[derive(Debug, Default)]
pub struct Aggregation {
    hasher: foldhash::fast::RandomState,
    /// The first merged entry with each hash.
    first: HashMap<u64, usize, foldhash::fast::RandomState>,
    merged: Vec<SignIn>,
    /// Requests merged so far (the sum of the entries' counts).
    requests: u64,
}

impl Aggregation {
    /// Adds one entry: merged into the identical one already held, or kept as a new one.
    pub fn add(&mut self, entry: SignIn) {
        self.requests += u64::from(entry.count);
        let hash = self.hasher.hash_one(SameRequest(&entry));
        let same = match self.first.get(&hash) {
            Some(&i) if self.merged[i].same_request(&entry) => Some(i),
            // Two different requests with one hash: the later is not indexed, so look at all.
            Some(_) => self.merged.iter().position(|m| m.same_request(&entry)),
            None => {
                self.first.insert(hash, self.merged.len());
                None
            }
        };
        match same {
            Some(i) => {
                let existing = &mut self.merged[i];
                existing.count = existing.count.saturating_add(entry.count);
                existing.latency = existing.latency.max(entry.latency);
            }
            None => self.merged.push(entry),
        }
    }

    /// Distinct entries held (the rows a write takes).
    pub fn len(&self) -> usize {
        self.merged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.merged.is_empty()
    }

    /// Requests added since the last [`Self::take`].
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The merged entries, in order of first appearance; the aggregation starts again empty.
    pub fn take(&mut self) -> Vec<SignIn> {
        self.first.clear();
        self.requests = 0;
        std::mem::take(&mut self.merged)
    }
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

    /// `entries` added one by one to a new aggregation, as the writer adds them.
    fn aggregate(entries: Vec<SignIn>) -> Vec<SignIn> {
        let mut aggregation = Aggregation::default();
        entries.into_iter().for_each(|entry| aggregation.add(entry));
        aggregation.take()
    }

    fn entry(principal: u8, cached: bool, latency_ms: u64) -> SignIn {
        SignIn {
            id: uuid::Uuid::new_v4(),
            time: OffsetDateTime::UNIX_EPOCH,
            tenant_id: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
            kind: SignInKind::ManagedIdentity,
            principal: SignInPrincipal {
                principal_id: Some(
                    ObjectId::parse(&format!("00000000-0000-4000-8000-0000000000{principal:02}")).unwrap(),
                ),
                ..SignInPrincipal::default()
            },
            compute_resource: None,
            credential_id: None,
            resource: "api://vault".into(),
            caller_address: None,
            outcome: Outcome::Success,
            status_code: 0,
            error_code: String::new(),
            reason: String::new(),
            latency: Duration::from_millis(latency_ms),
            cached,
            count: 1,
        }
    }

    #[test]
    fn clipped_values_keep_their_first_256_characters() {
        assert_eq!(clipped("api://vault"), "api://vault");
        assert_eq!(clipped(&"a".repeat(300)), "a".repeat(256));
        let wide = "é".repeat(200);
        assert_eq!(clipped(&wide), wide, "200 characters in 400 bytes are kept whole");
        assert_eq!(clipped(&"é".repeat(300)).chars().count(), 256);
    }

    #[test]
    fn identical_requests_merge_however_many_distinct_ones_come_between_them() {
        // 200 principals (CI jobs, one subject each), each asking twice, round robin.
        let entries: Vec<SignIn> = (0..2).flat_map(|_| (0..200u16).map(wide_entry)).collect();
        let merged = aggregate(entries);
        assert_eq!(merged.len(), 200);
        assert!(merged.iter().all(|e| e.count == 2), "every request merged with its twin");
        assert_eq!(merged[7].principal, wide_entry(7).principal, "in order of first appearance");
    }

    fn wide_entry(principal: u16) -> SignIn {
        SignIn {
            principal: SignInPrincipal {
                principal_id: Some(
                    ObjectId::parse(&format!("00000000-0000-4000-8000-00000000{principal:04}")).unwrap(),
                ),
                ..SignInPrincipal::default()
            },
            ..entry(0, false, 1)
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
