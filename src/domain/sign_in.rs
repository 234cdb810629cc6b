//! The sign-in log: every token request (managed identity or application), success or failure,
//! with who asked (and their name, as Entra's log keeps it), for what, from where, through which
//! compute resource or federated credential, the outcome, the error code and the latency.
//!
//! Identical requests close together in time (same principal, client, resource, caller, outcome,
//! error and cache use) are written as one entry with a `count`, as Entra aggregates
//! managed-identity sign-ins: a workload asking for the same token thousands of times a second
//! costs the log one row per write, not thousands. Request paths report a [`SignInEvent`], borrowed
//! from the directory and the request; [`Aggregation::record`] counts it in the identical entry it
//! holds without building anything, and builds a [`SignIn`] only for a new one.

use std::collections::HashMap;
use std::hash::BuildHasher;
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
    /// This entry as a request path would report it (its id, time and count aside).
    fn as_event(&self) -> SignInEvent<'_> {
        SignInEvent {
            tenant_id: self.tenant_id,
            kind: self.kind,
            principal: PrincipalRef::Logged(&self.principal),
            compute_resource: self.compute_resource.as_deref(),
            credential_id: self.credential_id,
            resource: &self.resource,
            caller_address: self.caller_address,
            outcome: self.outcome,
            status_code: self.status_code,
            error_code: &self.error_code,
            reason: &self.reason,
            latency: self.latency,
            cached: self.cached,
        }
    }
}

/// Who signed in, as a request path holds them: borrowed from the directory (or the request), so
/// that a request identical to one the log already holds builds nothing.
#[derive(Debug, Clone, Copy)]
pub enum PrincipalRef<'a> {
    Application(&'a Application),
    Identity(&'a ManagedIdentity),
    /// Already in the log's form.
    Logged(&'a SignInPrincipal),
    /// No known principal: the client id as the request gave it, if it gave one.
    Unknown(Option<&'a str>),
}

impl PrincipalRef<'_> {
    /// The principal as the log keeps it.
    pub fn to_logged(self) -> SignInPrincipal {
        match self {
            Self::Application(app) => SignInPrincipal::application(app),
            Self::Identity(identity) => SignInPrincipal::identity(identity),
            Self::Logged(principal) => principal.clone(),
            Self::Unknown(client_id) => {
                SignInPrincipal { client_id: client_id.map(|c| clip(c).to_owned()), ..SignInPrincipal::default() }
            }
        }
    }
}

/// A sign-in as a request path reports it: everything but its id, time and count, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SignInEvent<'a> {
    pub tenant_id: TenantId,
    pub kind: SignInKind,
    pub principal: PrincipalRef<'a>,
    pub compute_resource: Option<&'a str>,
    pub credential_id: Option<ObjectId>,
    /// As the client named it (the log keeps its first 256 characters).
    pub resource: &'a str,
    pub caller_address: Option<IpAddr>,
    pub outcome: Outcome,
    pub status_code: u32,
    pub error_code: &'a str,
    pub reason: &'a str,
    pub latency: Duration,
    pub cached: bool,
}

impl SignInEvent<'_> {
    /// The log's entry for this request, with its id and time.
    pub fn to_entry(&self, id: uuid::Uuid, time: OffsetDateTime) -> SignIn {
        SignIn {
            id,
            time,
            tenant_id: self.tenant_id,
            kind: self.kind,
            principal: self.principal.to_logged(),
            compute_resource: self.compute_resource.map(str::to_owned),
            credential_id: self.credential_id,
            resource: clip(self.resource).to_owned(),
            caller_address: self.caller_address,
            outcome: self.outcome,
            status_code: self.status_code,
            error_code: self.error_code.to_owned(),
            reason: self.reason.to_owned(),
            latency: self.latency,
            cached: self.cached,
            count: 1,
        }
    }

    /// What tells this request apart from others, as one run of bytes appended to `out`: two
    /// requests are the same request, merged into one entry, exactly when their bytes are equal
    /// (fixed-size fields, then each string after its length). An entry's key is kept in one
    /// allocation, so that telling a request from a held entry compares one run of memory instead
    /// of visiting each of its strings. An entry's [`SignIn::as_event`] encodes as its request did.
    fn encode_key(&self, out: &mut Vec<u8>) {
        fn guid(out: &mut Vec<u8>, id: Option<uuid::Uuid>) {
            match id {
                Some(id) => {
                    out.push(1);
                    out.extend_from_slice(id.as_bytes());
                }
                None => out.push(0),
            }
        }
        fn text(out: &mut Vec<u8>, value: Option<&str>) {
            match value {
                Some(value) => {
                    out.push(1);
                    out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
                    out.extend_from_slice(value.as_bytes());
                }
                None => out.push(0),
            }
        }
        // A client id written out without allocating, as the log keeps it.
        let mut client_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let (principal_id, msi_type, client_id, name): (_, _, Option<&str>, &str) = match self.principal {
            PrincipalRef::Application(app) => (
                Some(app.service_principal_id),
                None,
                Some(app.app_id.as_uuid().hyphenated().encode_lower(&mut client_text)),
                app.display_name.as_str(),
            ),
            PrincipalRef::Identity(identity) => (
                Some(identity.principal_id),
                Some(MsiType::of(identity)),
                Some(identity.client_id.as_uuid().hyphenated().encode_lower(&mut client_text)),
                identity.resource_id.name(),
            ),
            PrincipalRef::Logged(p) => (p.principal_id, p.msi_type, p.client_id.as_deref(), &p.name),
            PrincipalRef::Unknown(client_id) => (None, None, client_id.map(clip), ""),
        };
        out.extend_from_slice(&[
            self.kind as u8,
            self.outcome as u8,
            u8::from(self.cached),
            msi_type.map_or(0, |t| 1 + t as u8),
        ]);
        out.extend_from_slice(&self.status_code.to_le_bytes());
        guid(out, Some(self.tenant_id.as_uuid()));
        guid(out, self.credential_id.map(|id| id.as_uuid()));
        guid(out, principal_id.map(|id| id.as_uuid()));
        match self.caller_address {
            None => out.push(0),
            Some(IpAddr::V4(v4)) => {
                out.push(4);
                out.extend_from_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                out.push(6);
                out.extend_from_slice(&v6.octets());
            }
        }
        for value in [client_id, Some(name), self.compute_resource, Some(clip(self.resource))] {
            text(out, value);
        }
        for value in [self.error_code, self.reason] {
            text(out, Some(value));
        }
    }
}

/// What the log keeps of a value the client gave (a resource, a client id): its first 256
/// characters.
pub fn clipped(value: &str) -> String {
    clip(value).to_owned()
}

/// `value`'s first 256 characters, borrowed.
pub fn clip(value: &str) -> &str {
    // Whole when short enough (a char takes at least one byte), else cut after the 256th character.
    let end =
        if value.len() <= 256 { value.len() } else { value.char_indices().nth(256).map_or(value.len(), |(i, _)| i) };
    &value[..end]
}

/// What [`Aggregation::record`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted in the identical entry already held.
    Merged,
    /// Held as a new entry.
    Added,
    /// Not held (the log holds as many distinct entries as it may).
    Refused,
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
    /// Each merged entry's key, encoded ([`SignInEvent::encode_key`]).
    keys: Vec<Box<[u8]>>,
    /// The key being looked for, encoded (kept to reuse its memory).
    scratch: Vec<u8>,
    /// Requests merged so far (the sum of the entries' counts).
    requests: u64,
}

impl Aggregation {
    /// The entry identical to `event` already held, if any, and the hash of `event`'s key, which
    /// is left encoded in `scratch`.
    fn find(&mut self, event: &SignInEvent<'_>) -> (Option<usize>, u64) {
        self.scratch.clear();
        event.encode_key(&mut self.scratch);
        let wanted = self.scratch.as_slice();
        let hash = self.hasher.hash_one(wanted);
        let same = match self.first.get(&hash) {
            Some(&i) if *self.keys[i] == *wanted => Some(i),
            // Two different requests with one hash: the later is not indexed, so look at all.
            Some(_) => self.keys.iter().position(|k| **k == *wanted),
            None => None,
        };
        (same, hash)
    }

    fn merge(&mut self, i: usize, count: u32, latency: Duration) {
        let existing = &mut self.merged[i];
        existing.count = existing.count.saturating_add(count);
        existing.latency = existing.latency.max(latency);
        self.requests += u64::from(count);
    }

    /// Holds `entry`, whose key [`Self::find`] left in `scratch`.
    fn push(&mut self, hash: u64, entry: SignIn) {
        self.first.entry(hash).or_insert(self.merged.len());
        self.requests += u64::from(entry.count);
        self.merged.push(entry);
        self.keys.push(self.scratch.as_slice().into());
    }

    /// Adds one entry: merged into the identical one already held, or kept as a new one.
    pub fn add(&mut self, entry: SignIn) {
        let (same, hash) = self.find(&entry.as_event());
        match same {
            Some(i) => self.merge(i, entry.count, entry.latency),
            None => self.push(hash, entry),
        }
    }

    /// Adds one request as a request path reports it: merged into the identical entry already
    /// held (nothing is built), else kept as a new entry with the id and time `admit` gives, or
    /// refused when it gives none.
    pub fn record(
        &mut self,
        event: &SignInEvent<'_>,
        admit: impl FnOnce() -> Option<(uuid::Uuid, OffsetDateTime)>,
    ) -> Recorded {
        let (same, hash) = self.find(event);
        if let Some(i) = same {
            self.merge(i, 1, event.latency);
            return Recorded::Merged;
        }
        match admit() {
            Some((id, time)) => {
                self.push(hash, event.to_entry(id, time));
                Recorded::Added
            }
            None => Recorded::Refused,
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
        self.keys.clear();
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
/// entries (and counts them) rather than slow a token request down. It gives each new entry its id
/// and time; a request identical to one it still holds is counted in that entry.
pub trait SignInSink: Send + Sync {
    fn record(&self, event: SignInEvent<'_>);
}

/// A successful, cached application sign-in for `resource`, for tests.
#[cfg(test)]
pub(crate) fn sample_event<'a>(principal: PrincipalRef<'a>, resource: &'a str) -> SignInEvent<'a> {
    SignInEvent {
        tenant_id: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
        kind: SignInKind::Application,
        principal,
        compute_resource: None,
        credential_id: None,
        resource,
        caller_address: None,
        outcome: Outcome::Success,
        status_code: 0,
        error_code: "",
        reason: "",
        latency: Duration::from_millis(1),
        cached: true,
    }
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

    fn event(principal: PrincipalRef<'_>) -> SignInEvent<'_> {
        sample_event(principal, "api://vault")
    }

    /// Records `event` into `aggregation` with a fresh id, never refusing.
    fn record(aggregation: &mut Aggregation, event: &SignInEvent<'_>) -> Recorded {
        aggregation.record(event, || Some((uuid::Uuid::new_v4(), OffsetDateTime::UNIX_EPOCH)))
    }

    #[test]
    fn a_request_identical_to_a_held_entry_is_counted_in_it_whichever_way_its_principal_is_given() {
        use crate::domain::application::DisplayName;
        use crate::domain::ids::ClientId;
        use crate::domain::resource::ResourceId;
        let app = Application {
            object_id: ObjectId::random(),
            app_id: ClientId::random(),
            service_principal_id: ObjectId::random(),
            tenant_id: event(PrincipalRef::Unknown(None)).tenant_id,
            display_name: DisplayName::parse("stock-tracker").unwrap(),
            identifier_uris: vec![],
            app_roles: vec![],
            rate_limit: None,
        };
        let identity = ManagedIdentity {
            principal_id: ObjectId::random(),
            client_id: ClientId::random(),
            tenant_id: app.tenant_id,
            resource_id: ResourceId::parse(
                "/subscriptions/0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uami",
            )
            .unwrap(),
        };
        let logged = SignInPrincipal::application(&app);
        let long_client_id = "c".repeat(300);
        let principals = [
            PrincipalRef::Application(&app),
            PrincipalRef::Identity(&identity),
            PrincipalRef::Logged(&logged),
            PrincipalRef::Unknown(Some(&long_client_id)),
            PrincipalRef::Unknown(None),
        ];
        let mut aggregation = Aggregation::default();
        let first: Vec<Recorded> = principals.iter().map(|&p| record(&mut aggregation, &event(p))).collect();
        // An application given as itself or in the log's form is one principal.
        use Recorded::{Added, Merged};
        assert_eq!(first, [Added, Added, Merged, Added, Added]);
        for principal in principals {
            assert_eq!(record(&mut aggregation, &event(principal)), Merged, "{principal:?}");
        }
        assert_eq!(aggregation.len(), 4);
        let entries = aggregation.take();
        assert_eq!(entries.iter().map(|e| e.count).collect::<Vec<_>>(), [4, 2, 2, 2]);
        assert_eq!(entries[0].principal, logged);
        assert_eq!(entries[1].principal, SignInPrincipal::identity(&identity));
        assert_eq!(entries[2].principal.client_id.as_deref().map(str::len), Some(256), "clipped");
    }

    #[test]
    fn a_new_request_is_held_only_when_admitted_and_an_identical_one_merges_regardless() {
        let mut aggregation = Aggregation::default();
        let (first, second) = (event(PrincipalRef::Unknown(Some("a"))), event(PrincipalRef::Unknown(Some("b"))));
        assert_eq!(record(&mut aggregation, &first), Recorded::Added);
        assert_eq!(aggregation.record(&second, || None), Recorded::Refused);
        let slow = SignInEvent { latency: Duration::from_millis(40), ..first };
        assert_eq!(aggregation.record(&slow, || panic!("an identical request builds nothing")), Recorded::Merged);
        let entries = aggregation.take();
        assert_eq!((entries.len(), entries[0].count, entries[0].latency), (1, 2, Duration::from_millis(40)));
        assert_eq!(aggregation.requests(), 0, "taken");
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
