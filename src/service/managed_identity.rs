//! Managed-identity tokens, as Azure's IMDS and App Service endpoints issue them: which compute
//! resource is calling (by the caller's network address for IMDS, by its identity header for App
//! Service), which of its identities is meant, and a token for the requested resource, reused from
//! the cache while the cache rules allow. Every request that names a resource lands in the
//! sign-in log, success or failure.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::claims::AccessToken;
use super::discovery::DiscoveryService;
use super::faults::InjectedSignIn;
use super::mint::TokenMint;
use super::token::unique_token_id;
use crate::domain::activity::Outcome;
use crate::domain::directory::DirectoryView;
use crate::domain::fault::FaultSubjects;
use crate::domain::federated_credential::DEFAULT_AUDIENCE;
use crate::domain::ids::{ClientId, ObjectId};
use crate::domain::issued_token::TokenCacheKey;
use crate::domain::ports::{DirectorySource, SignError};
use crate::domain::rate_limit::{InFlight, LimitScope, RateLimiter};
use crate::domain::resource::{ComputeResource, ManagedIdentity, ResourceId};
use crate::domain::sign_in::{PrincipalRef, SignInEvent, SignInKind, SignInPrincipal, SignInSink, aadsts, clipped};
use crate::domain::tenant::TenantRef;
use crate::domain::token::SignedJwt;

/// IMDS identity api-versions, oldest first (what IMDS lists when a request names another).
pub const IMDS_API_VERSIONS: [&str; 12] = [
    "2018-02-01",
    "2018-04-02",
    "2018-10-01",
    "2019-02-01",
    "2019-03-11",
    "2019-04-30",
    "2019-06-01",
    "2019-06-04",
    "2019-08-01",
    "2019-08-15",
    "2019-11-01",
    "2020-06-01",
];
/// The App Service identity protocol version the SDKs speak.
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// Which identity the request asks for (at most one of these).
#[derive(Debug, Clone, Default)]
pub struct IdentitySelection {
    pub client_id: Option<String>,
    pub object_id: Option<String>,
    /// `msi_res_id` (IMDS) or `mi_res_id` (App Service).
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ImdsRequest {
    pub metadata_header: bool,
    pub forwarded: bool,
    pub api_version: Option<String>,
    pub resource: Option<String>,
    pub selection: IdentitySelection,
}

#[derive(Debug, Clone, Default)]
pub struct AppServiceRequest {
    pub identity_header: Option<String>,
    pub api_version: Option<String>,
    pub resource: Option<String>,
    pub selection: IdentitySelection,
}

#[derive(Debug)]
pub struct ManagedIdentityToken {
    pub access_token: SignedJwt,
    pub expires_in: i64,
    pub expires_on: i64,
    pub not_before: i64,
    pub resource: String,
    pub client_id: ClientId,
}

#[derive(Debug, thiserror::Error)]
pub enum MiError {
    #[error("Required metadata header not specified")]
    MissingMetadataHeader,
    #[error("Requests carrying X-Forwarded-For are refused: the identity endpoint serves only direct requests")]
    Forwarded,
    #[error("api-version was not specified in the request")]
    MissingApiVersion,
    #[error("api-version '{0}' is not supported")]
    UnsupportedApiVersion(String),
    #[error("Required audience parameter not specified")]
    MissingResource,
    #[error("Identity not found: no compute resource is bound to the caller's address {0}")]
    UnboundAddress(String),
    #[error("The X-IDENTITY-HEADER header is missing")]
    MissingIdentityHeader,
    #[error("The X-IDENTITY-HEADER header is not valid")]
    WrongIdentityHeader,
    #[error("Only one of client_id, object_id and msi_res_id may be specified")]
    AmbiguousSelection,
    #[error(
        "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"
    )]
    MultipleUserIdentities,
    #[error("Identity not found")]
    IdentityNotFound,
    #[error("The resource principal named {resource} was not found in the tenant named {tenant}.")]
    UnknownResource { resource: String, tenant: String },
    #[error("Too many requests; retry after {} seconds", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error("signing failed: {0}")]
    Signing(#[from] SignError),
}

impl MiError {
    /// The sign-in log's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingMetadataHeader => "missing_metadata_header",
            Self::Forwarded => "forwarded_request",
            Self::MissingApiVersion | Self::UnsupportedApiVersion(_) => "bad_api_version",
            Self::MissingResource => "missing_resource",
            Self::UnboundAddress(_) => "unbound_address",
            Self::MissingIdentityHeader | Self::WrongIdentityHeader => "bad_identity_header",
            Self::AmbiguousSelection => "ambiguous_identity",
            Self::MultipleUserIdentities => "multiple_user_identities",
            Self::IdentityNotFound => "identity_not_found",
            Self::UnknownResource { .. } => "AADSTS500011",
            Self::Throttled(_) => "throttled",
            Self::Signing(_) => "server_error",
        }
    }

    /// The sign-in log's AADSTS number: Entra's own where Entra answers the same failure
    /// (500011, throttling, a missing parameter), "application not found" where no identity
    /// answers, and "invalid request" for what only the endpoint itself checks.
    pub fn aadsts(&self) -> u32 {
        match self {
            Self::MissingResource => 900144,
            Self::UnboundAddress(_) | Self::IdentityNotFound => 700016,
            Self::UnknownResource { .. } => 500011,
            Self::Throttled(_) => aadsts::THROTTLED,
            Self::Signing(_) => aadsts::SERVER_ERROR,
            Self::MissingMetadataHeader
            | Self::Forwarded
            | Self::MissingApiVersion
            | Self::UnsupportedApiVersion(_)
            | Self::MissingIdentityHeader
            | Self::WrongIdentityHeader
            | Self::AmbiguousSelection
            | Self::MultipleUserIdentities => aadsts::INVALID_REQUEST,
        }
    }
}

pub struct ManagedIdentityService {
    directory: Arc<dyn DirectorySource>,
    discovery: Arc<DiscoveryService>,
    lifetime: Duration,
    mint: Arc<TokenMint>,
    sign_ins: Arc<dyn SignInSink>,
    limits: Arc<dyn RateLimiter>,
    /// The compute resource IMDS serves every caller as (`server.imds_resource`), instead of the
    /// one bound to the caller's address.
    imds_resource: Option<ResourceId>,
}

/// What one attempt produced, for the sign-in log.
struct Attempt<'a> {
    compute: Option<&'a ComputeResource>,
    identity: Option<&'a ManagedIdentity>,
    cached: bool,
}

impl ManagedIdentityService {
    pub fn new(
        directory: Arc<dyn DirectorySource>,
        discovery: Arc<DiscoveryService>,
        lifetime: Duration,
        mint: Arc<TokenMint>,
        sign_ins: Arc<dyn SignInSink>,
        limits: Arc<dyn RateLimiter>,
    ) -> Self {
        Self { directory, discovery, lifetime, mint, sign_ins, limits, imds_resource: None }
    }

    /// Serves every IMDS caller as `resource`, whatever its address (`ficus sandbox`).
    pub fn serving_imds_as(mut self, resource: Option<ResourceId>) -> Self {
        self.imds_resource = resource;
        self
    }

    /// IMDS: the caller is the compute resource bound to `caller`'s address (or the one
    /// `server.imds_resource` names).
    pub fn imds_token(&self, caller: Option<IpAddr>, request: ImdsRequest) -> Result<ManagedIdentityToken, MiError> {
        self.by_address(caller, request, true)
    }

    /// The deprecated VM extension endpoint: IMDS's rules and its way of finding the caller,
    /// without an api-version.
    pub fn vm_extension_token(
        &self,
        caller: Option<IpAddr>,
        request: ImdsRequest,
    ) -> Result<ManagedIdentityToken, MiError> {
        self.by_address(caller, request, false)
    }

    fn by_address(
        &self,
        caller: Option<IpAddr>,
        request: ImdsRequest,
        versioned: bool,
    ) -> Result<ManagedIdentityToken, MiError> {
        let started = Instant::now();
        let view = self.directory.view();
        let compute = self.imds_compute(&view, caller);
        let mut attempt = Attempt { compute, identity: None, cached: false };
        let result = (|| {
            self.limit_address(caller)?;
            if request.forwarded {
                return Err(MiError::Forwarded);
            }
            if !request.metadata_header {
                return Err(MiError::MissingMetadataHeader);
            }
            match request.api_version.as_deref() {
                _ if !versioned => {}
                None => return Err(MiError::MissingApiVersion),
                Some(v) if !IMDS_API_VERSIONS.contains(&v) => return Err(MiError::UnsupportedApiVersion(clipped(v))),
                Some(_) => {}
            }
            let resource = request.resource.as_deref().filter(|r| !r.is_empty()).ok_or(MiError::MissingResource)?;
            let compute = attempt.compute.ok_or_else(|| match &self.imds_resource {
                Some(_) => MiError::IdentityNotFound,
                None => MiError::UnboundAddress(caller.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())),
            })?;
            self.issue(&view, compute, &request.selection, resource, &mut attempt)
        })();
        self.log(&attempt, caller, request.resource.as_deref(), &result, started);
        result
    }

    /// App Service: the caller is the compute resource whose identity header it presents.
    pub fn app_service_token(
        &self,
        caller: Option<IpAddr>,
        request: AppServiceRequest,
    ) -> Result<ManagedIdentityToken, MiError> {
        let started = Instant::now();
        let view = self.directory.view();
        let compute = request.identity_header.as_deref().and_then(|h| view.resource_by_identity_header(h));
        let mut attempt = Attempt { compute, identity: None, cached: false };
        let result = (|| {
            self.limit_address(caller)?;
            let header = request.identity_header.as_deref().ok_or(MiError::MissingIdentityHeader)?;
            let compute = view.resource_by_identity_header(header).ok_or(MiError::WrongIdentityHeader)?;
            match request.api_version.as_deref() {
                None => return Err(MiError::MissingApiVersion),
                Some(APP_SERVICE_API_VERSION) => {}
                Some(v) => return Err(MiError::UnsupportedApiVersion(clipped(v))),
            }
            let resource = request.resource.as_deref().filter(|r| !r.is_empty()).ok_or(MiError::MissingResource)?;
            self.issue(&view, compute, &request.selection, resource, &mut attempt)
        })();
        self.log(&attempt, caller, request.resource.as_deref(), &result, started);
        result
    }

    /// Admits an IMDS (or VM extension) request against its compute resource's limit on requests
    /// in flight (`rate_limits.profile = "azure"`: 5 per VM). The guard is held for the whole
    /// request, injected latency included, as a slow IMDS holds Azure's. A refusal is logged.
    pub fn admit_by_address(&self, caller: Option<IpAddr>, resource: Option<&str>) -> Result<InFlight, MiError> {
        if !self.limits.counts_in_flight(LimitScope::ComputeResource) {
            return Ok(InFlight::uncounted());
        }
        let view = self.directory.view();
        let compute = self.imds_compute(&view, caller);
        self.admit(compute, caller, resource)
    }

    /// As [`Self::admit_by_address`], for an App Service request (by its identity header).
    pub fn admit_by_header(
        &self,
        caller: Option<IpAddr>,
        header: Option<&str>,
        resource: Option<&str>,
    ) -> Result<InFlight, MiError> {
        if !self.limits.counts_in_flight(LimitScope::ComputeResource) {
            return Ok(InFlight::uncounted());
        }
        let view = self.directory.view();
        self.admit(header.and_then(|h| view.resource_by_identity_header(h)), caller, resource)
    }

    fn admit(
        &self,
        compute: Option<&ComputeResource>,
        caller: Option<IpAddr>,
        resource: Option<&str>,
    ) -> Result<InFlight, MiError> {
        let Some(compute) = compute else {
            return Ok(InFlight::uncounted());
        };
        let started = Instant::now();
        self.limits.enter(LimitScope::ComputeResource, compute.id.key()).map_err(|wait| {
            let attempt = Attempt { compute: Some(compute), identity: None, cached: false };
            self.log(&attempt, caller, resource, &Err(MiError::Throttled(wait)), started);
            MiError::Throttled(wait)
        })
    }

    /// Who an IMDS (or VM extension) request comes from, as far as it can be told without
    /// refusing anything: for fault rules, before the request is served.
    pub fn imds_caller(&self, caller: Option<IpAddr>, selection: &IdentitySelection) -> FaultSubjects {
        let view = self.directory.view();
        let compute = self.imds_compute(&view, caller);
        subjects(&view, compute, selection)
    }

    /// The sign-in log's view of a managed-identity request a fault rule answered (`None`: the
    /// caller is no compute resource of any tenant).
    pub fn injected_sign_in(
        &self,
        subjects: &FaultSubjects,
        resource: Option<&str>,
        caller: IpAddr,
    ) -> Option<InjectedSignIn> {
        subjects.tenant?;
        let view = self.directory.view();
        Some(InjectedSignIn {
            kind: SignInKind::ManagedIdentity,
            principal: subjects
                .identity
                .and_then(|p| view.identity(p))
                .map(SignInPrincipal::identity)
                .unwrap_or_default(),
            compute_resource: subjects
                .compute
                .as_deref()
                .and_then(|key| view.resource_by_key(key))
                .map(|r| r.id.to_string()),
            resource: resource.map(clipped).unwrap_or_default(),
            caller: Some(caller),
        })
    }

    /// Who an App Service request comes from (by its identity header), for fault rules.
    pub fn app_service_caller(&self, header: Option<&str>, selection: &IdentitySelection) -> FaultSubjects {
        let view = self.directory.view();
        subjects(&view, header.and_then(|h| view.resource_by_identity_header(h)), selection)
    }

    /// The compute resource an IMDS request comes from: the one `server.imds_resource` names, else
    /// the one bound to the caller's address.
    fn imds_compute<'v>(&self, view: &'v DirectoryView, caller: Option<IpAddr>) -> Option<&'v ComputeResource> {
        match &self.imds_resource {
            Some(id) => view.resource(id),
            None => caller.and_then(|ip| view.resource_for_address(ip)),
        }
    }

    /// The resource `server.imds_resource` resolved to at start-up, if set.
    pub fn imds_resource(&self) -> Option<&ResourceId> {
        self.imds_resource.as_ref()
    }

    fn limit_address(&self, caller: Option<IpAddr>) -> Result<(), MiError> {
        match caller {
            Some(ip) => self.limits.check(LimitScope::Address, &ip, None).map_err(MiError::Throttled),
            None => Ok(()),
        }
    }

    fn issue<'v>(
        &self,
        view: &'v DirectoryView,
        compute: &'v ComputeResource,
        selection: &IdentitySelection,
        resource: &str,
        attempt: &mut Attempt<'v>,
    ) -> Result<ManagedIdentityToken, MiError> {
        // Per compute resource: off unless `rate_limits.profile = "azure"` (Azure's per-VM limits).
        self.limits.check(LimitScope::ComputeResource, &compute.id.key(), None).map_err(MiError::Throttled)?;
        let identity = select_identity(view, compute, selection)?;
        attempt.identity = Some(identity);
        self.limits.check(LimitScope::Identity, &identity.principal_id, None).map_err(MiError::Throttled)?;
        let tenant = view.tenant(&TenantRef::Id(identity.tenant_id)).ok_or(MiError::IdentityNotFound)?;
        // `api://AzureADTokenExchange` needs no application: it is the audience of tokens meant to
        // be exchanged through a federated credential (flow 2), as in Entra.
        let app = view.resource_application(tenant.id, resource);
        if app.is_none() && resource != DEFAULT_AUDIENCE {
            return Err(MiError::UnknownResource { resource: clipped(resource), tenant: tenant.id.to_string() });
        }
        let roles = app.map(|app| view.role_values(identity.principal_id, app)).unwrap_or_default();
        let key = TokenCacheKey {
            tenant: tenant.id,
            client: identity.client_id,
            principal: identity.principal_id,
            credential: identity.principal_id,
            resource: resource.to_owned(),
            roles,
        };
        let lifetime_secs = i64::try_from(self.lifetime.as_secs()).unwrap_or(86_400);
        let minted = self.mint.mint(key, None, |now, roles| AccessToken {
            issuer: self.discovery.issuer_for(tenant),
            tenant: tenant.id,
            audience: resource,
            client_id: identity.client_id.to_string(),
            principal_id: identity.principal_id,
            roles: roles.to_vec(),
            acr: "2",
            mirid: Some(identity.resource_id.mirid()),
            issued_at: now,
            lifetime_secs,
            unique_id: unique_token_id(),
        })?;
        attempt.cached = minted.from_cache;
        let (token, now) = (minted.token, minted.now);
        Ok(ManagedIdentityToken {
            access_token: token.token,
            expires_in: token.expires_at - now,
            expires_on: token.expires_at,
            not_before: token.issued_at,
            resource: resource.to_owned(),
            client_id: identity.client_id,
        })
    }

    fn log(
        &self,
        attempt: &Attempt<'_>,
        caller: Option<IpAddr>,
        resource: Option<&str>,
        result: &Result<ManagedIdentityToken, MiError>,
        started: Instant,
    ) {
        let Some(compute) = attempt.compute else {
            if let Err(e) = result {
                tracing::info!(caller = ?caller, error = e.code(), "managed-identity request from an unbound caller");
            }
            return;
        };
        // A failure's reason is formatted here and lent to the log, which copies it only into a
        // new entry.
        let described;
        let (outcome, status_code, error_code, reason) = match result {
            Ok(_) => (Outcome::Success, 0, "", ""),
            Err(e) => {
                described = e.to_string();
                (Outcome::Failure, e.aadsts(), e.code(), described.as_str())
            }
        };
        self.sign_ins.record(SignInEvent {
            tenant_id: compute.tenant_id,
            kind: SignInKind::ManagedIdentity,
            principal: attempt.identity.map_or(PrincipalRef::Unknown(None), PrincipalRef::Identity),
            compute_resource: Some(compute.id.as_str()),
            credential_id: None,
            resource: resource.unwrap_or_default(),
            caller_address: caller,
            outcome,
            status_code,
            error_code,
            reason,
            latency: started.elapsed(),
            cached: attempt.cached,
        });
    }
}

fn subjects(view: &DirectoryView, compute: Option<&ComputeResource>, selection: &IdentitySelection) -> FaultSubjects {
    let Some(compute) = compute else {
        return FaultSubjects::default();
    };
    let identity = select_identity(view, compute, selection).ok();
    FaultSubjects {
        tenant: Some(compute.tenant_id),
        compute: Some(compute.id.key().to_owned()),
        identity: identity.map(|i| i.principal_id),
        application: None,
    }
}

/// The identity a request means: the one it names (by client id, object id or resource id) among
/// the resource's identities, else the system-assigned one, else the only user-assigned one.
fn select_identity<'v>(
    view: &'v DirectoryView,
    compute: &'v ComputeResource,
    selection: &IdentitySelection,
) -> Result<&'v ManagedIdentity, MiError> {
    let given =
        [&selection.client_id, &selection.object_id, &selection.resource_id].iter().filter(|s| s.is_some()).count();
    if given > 1 {
        return Err(MiError::AmbiguousSelection);
    }
    let users = || compute.user_identities.iter().filter_map(|id| view.identity_by_resource(id));
    let mut all = compute.system_identity.iter().chain(users());
    let found = if let Some(raw) = &selection.client_id {
        let id = ClientId::parse(raw).map_err(|_| MiError::IdentityNotFound)?;
        all.find(|i| i.client_id == id)
    } else if let Some(raw) = &selection.object_id {
        let id = ObjectId::parse(raw).map_err(|_| MiError::IdentityNotFound)?;
        all.find(|i| i.principal_id == id)
    } else if let Some(raw) = &selection.resource_id {
        let id = ResourceId::parse(raw).map_err(|_| MiError::IdentityNotFound)?;
        all.find(|i| i.resource_id == id)
    } else {
        let mut users = users();
        match (&compute.system_identity, users.next(), users.next()) {
            (Some(system), _, _) => Some(system),
            (None, only, None) => only,
            (None, _, Some(_)) => return Err(MiError::MultipleUserIdentities),
        }
    };
    found.ok_or(MiError::IdentityNotFound)
}
