//! The sign-in log: every token request (managed identity or application), success or failure,
//! with who asked, for what, from where, the outcome, the error code and the latency.

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
