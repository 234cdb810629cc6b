//! The token endpoint's use cases: `client_credentials` with a client secret or a client
//! assertion (matched against the client's federated identity credentials), and RFC 8693
//! token exchange. The client is an application, or a user-assigned managed identity presenting
//! an assertion that one of its own federated credentials accepts (Entra's workload identity
//! flow, as AKS uses it): that gets a managed-identity token (`xms_mirid`, the identity's ids). Reads only the in-memory directory and caches; signs with the key ring; every
//! request that names a known client lands in the sign-in log.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::assertion_check::AssertionChecker;
use super::claims::AccessToken;
use super::discovery::{DiscoveryError, DiscoveryService};
use super::faults::InjectedSignIn;
use super::mint::TokenMint;
use crate::domain::activity::Outcome;
use crate::domain::application::Application;
use crate::domain::assertion::{AssertionError, VerifiedAssertion};
use crate::domain::directory::DirectoryView;
use crate::domain::fault::FaultSubjects;
use crate::domain::federated_credential::{Check, CredentialOwner, Diagnosis, FederatedCredential, Mismatch};
use crate::domain::ids::{ClientId, ObjectId};
use crate::domain::issued_token::TokenCacheKey;
use crate::domain::ports::{DirectorySource, SignError};
use crate::domain::rate_limit::{LimitScope, RateLimiter};
use crate::domain::resource::ManagedIdentity;
use crate::domain::sign_in::{PrincipalRef, SignInEvent, SignInKind, SignInPrincipal, SignInSink, aadsts, clipped};
use crate::domain::tenant::{Tenant, TenantId};
use crate::domain::token::{Claims, SignedJwt};

pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const SUBJECT_TOKEN_TYPES: [&str; 3] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:access_token",
];

/// What a client sent, after the HTTP layer has merged form fields and Basic credentials. Values
/// borrow from the request body where it holds them as they are (an assertion is not copied).
#[derive(Debug, Clone, Default)]
pub struct TokenRequest<'a> {
    pub grant_type: Option<Cow<'a, str>>,
    pub client_id: Option<Cow<'a, str>>,
    pub client_secret: Option<Secret<Cow<'a, str>>>,
    pub scope: Option<Cow<'a, str>>,
    pub client_assertion_type: Option<Cow<'a, str>>,
    pub client_assertion: Option<Secret<Cow<'a, str>>>,
    pub subject_token: Option<Secret<Cow<'a, str>>>,
    pub subject_token_type: Option<Cow<'a, str>>,
    pub resource: Option<Cow<'a, str>>,
    pub audience: Option<Cow<'a, str>>,
    pub caller: Option<IpAddr>,
}

/// A secret-bearing string whose `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T = String>(pub T);

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: SignedJwt,
    pub expires_in: u64,
    /// RFC 8693 answers name the type of what they issued.
    pub issued_token_type: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Tenant(#[from] DiscoveryError),
    #[error("the request body must contain the parameter '{0}'")]
    MissingParameter(&'static str),
    #[error("the parameter '{0}' is given more than once")]
    RepeatedParameter(&'static str),
    #[error("unsupported grant type '{0}'")]
    UnsupportedGrantType(String),
    #[error("application '{client_id}' was not found in tenant '{tenant}'")]
    UnknownClient { client_id: String, tenant: String },
    #[error("invalid client secret for application '{client_id}'")]
    InvalidSecret { client_id: String },
    #[error("neither client_secret nor client_assertion was given")]
    NoCredential,
    #[error("client_assertion_type must be {JWT_BEARER}")]
    AssertionType,
    #[error("subject_token_type '{0}' is not supported")]
    SubjectTokenType(String),
    #[error("invalid scope '{0}'")]
    InvalidScope(String),
    #[error("resource '{resource}' not found in tenant '{tenant}'")]
    UnknownResource { resource: String, tenant: String },
    #[error("{error}")]
    Assertion { error: AssertionError, exchange: bool },
    #[error("application '{client_id}' has no federated identity credentials")]
    NoFederatedCredentials { client_id: String, exchange: bool },
    #[error("no federated identity credential matches{}", .diagnosis.as_ref().map(|d| format!("; {d}")).unwrap_or_default())]
    NoMatch {
        issuer: String,
        subject: String,
        audiences: Vec<String>,
        mismatch: Mismatch,
        /// The nearest credential and what differs (always logged).
        diagnosis: Option<String>,
        /// Whether the response may carry the diagnosis.
        disclose: bool,
        exchange: bool,
    },
    #[error("too many requests; retry after {} seconds", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error("signing failed: {0}")]
    Signing(#[from] SignError),
}

impl TokenError {
    /// Entra's AADSTS code for this failure (throttling and signing failures get Entra's
    /// `TenantThrottlingError` and `TokenIssuanceError`).
    pub fn aadsts(&self) -> u32 {
        match self {
            Self::Tenant(_) => 90002,
            Self::MissingParameter(_) => 900144,
            Self::RepeatedParameter(_) => 9002313,
            Self::UnsupportedGrantType(_) => 70003,
            Self::UnknownClient { .. } => 700016,
            Self::InvalidSecret { .. } => 7000215,
            Self::NoCredential => 7000218,
            Self::AssertionType | Self::SubjectTokenType(_) => 50027,
            Self::InvalidScope(_) => 1002012,
            Self::UnknownResource { .. } => 500011,
            Self::Assertion { error, .. } => match error {
                AssertionError::TooLarge(_) | AssertionError::Malformed(_) | AssertionError::MissingClaim(_) => 50027,
                AssertionError::Algorithm(_) | AssertionError::UnknownKey(_) | AssertionError::BadSignature => 700027,
                AssertionError::UntrustedIssuer { .. } => Mismatch::Issuer.aadsts(),
                AssertionError::IssuerUnavailable(_) => 50166,
                AssertionError::TimeRange { .. } | AssertionError::TooLong => 700024,
            },
            Self::NoFederatedCredentials { .. } => 70025,
            Self::NoMatch { mismatch, .. } => mismatch.aadsts(),
            Self::Throttled(_) => aadsts::THROTTLED,
            Self::Signing(_) => aadsts::SERVER_ERROR,
        }
    }
}

pub struct TokenService {
    directory: Arc<dyn DirectorySource>,
    discovery: Arc<DiscoveryService>,
    assertions: Arc<AssertionChecker>,
    lifetime: Duration,
    mint: Arc<TokenMint>,
    sign_ins: Arc<dyn SignInSink>,
    limits: Arc<dyn RateLimiter>,
    /// Whether a failed match's diagnosis goes into the error response (it always goes into the
    /// sign-in log).
    disclose_mismatches: bool,
}

/// What the token endpoint would do with an assertion (the dry run).
pub struct Explanation {
    /// The verified assertion, or why verification refused it.
    pub assertion: Result<VerifiedAssertion, AssertionError>,
    /// Every credential of the application with each of its checks.
    pub credentials: Vec<(FederatedCredential, Vec<Check>)>,
    /// The credential the token endpoint would use.
    pub matched: Option<String>,
    /// The error the token endpoint would answer, if any.
    pub error: Option<TokenError>,
    /// The roles the token would carry for the resource asked about, or why there is none.
    pub roles: Option<Result<Vec<String>, TokenError>>,
}

/// Who asks for a token.
#[derive(Clone)]
enum Client {
    Application(Arc<Application>),
    /// A user-assigned managed identity, which proves itself only through its federated
    /// credentials.
    Identity(ManagedIdentity),
}

impl Client {
    fn client_id(&self) -> ClientId {
        match self {
            Self::Application(app) => app.app_id,
            Self::Identity(identity) => identity.client_id,
        }
    }

    /// The principal its tokens name (`oid`, `sub`) and role assignments are made to.
    fn principal(&self) -> ObjectId {
        match self {
            Self::Application(app) => app.service_principal_id,
            Self::Identity(identity) => identity.principal_id,
        }
    }

    fn owner(&self) -> CredentialOwner {
        match self {
            Self::Application(app) => CredentialOwner::Application(app.object_id),
            Self::Identity(identity) => CredentialOwner::Identity(identity.principal_id),
        }
    }
}

/// The client and how it proved itself.
struct Authenticated {
    client: Client,
    /// The matched federated credential, or the service principal for a secret.
    credential: ObjectId,
    acr: &'static str,
    /// The assertion it presented, verified (none for a secret).
    assertion: Option<Arc<VerifiedAssertion>>,
}

/// What a request got as far as, for the sign-in log.
#[derive(Default)]
struct Attempt<'r> {
    client: Option<Client>,
    /// The federated credential that admitted the client's assertion.
    credential: Option<ObjectId>,
    /// The resource asked for, as the request names it.
    resource: &'r str,
    cached: bool,
}

impl TokenService {
    #[allow(clippy::too_many_arguments)] // the composition root wires each port once
    pub fn new(
        directory: Arc<dyn DirectorySource>,
        discovery: Arc<DiscoveryService>,
        assertions: Arc<AssertionChecker>,
        lifetime: Duration,
        mint: Arc<TokenMint>,
        sign_ins: Arc<dyn SignInSink>,
        limits: Arc<dyn RateLimiter>,
    ) -> Self {
        Self { directory, discovery, assertions, lifetime, mint, sign_ins, limits, disclose_mismatches: false }
    }

    /// Who a token request comes from, as far as it can be told without refusing anything: for
    /// fault rules, before the request is served. An application is named by its appId; a
    /// user-assigned identity signing in with its own credential by its principal id too.
    pub fn caller(&self, tenant_segment: &str, client_id: Option<&str>) -> FaultSubjects {
        let Ok(tenant) = self.discovery.tenant(tenant_segment) else {
            return FaultSubjects::default();
        };
        let client = client_id.and_then(|raw| ClientId::parse(raw).ok());
        let identity = client.and_then(|id| self.directory.view().identity_by_client(id).map(|i| i.principal_id));
        FaultSubjects { tenant: Some(tenant.id), compute: None, identity, application: client }
    }

    /// The sign-in log's view of a token request a fault rule answered (`None`: no tenant).
    pub fn injected_sign_in(&self, subjects: &FaultSubjects, request: &TokenRequest<'_>) -> Option<InjectedSignIn> {
        let tenant = subjects.tenant?;
        let view = self.directory.view();
        let identity = subjects.identity.and_then(|p| view.identity(p));
        let application = subjects.application.and_then(|c| view.application_by_client(tenant, c));
        let (kind, principal) = match (identity, application) {
            (Some(identity), _) => (SignInKind::ManagedIdentity, SignInPrincipal::identity(identity)),
            (None, Some(app)) => (SignInKind::Application, SignInPrincipal::application(app)),
            (None, None) => (
                SignInKind::Application,
                SignInPrincipal { client_id: request.client_id.as_deref().map(clipped), ..SignInPrincipal::default() },
            ),
        };
        Some(InjectedSignIn {
            kind,
            principal,
            compute_resource: None,
            resource: request.scope.as_deref().or(request.resource.as_deref()).map(clipped).unwrap_or_default(),
            caller: request.caller,
        })
    }

    /// Puts the diagnosis of a failed credential match into the error response too
    /// (`federation.explain_mismatches = "response"`).
    pub fn disclosing_mismatches(mut self, disclose: bool) -> Self {
        self.disclose_mismatches = disclose;
        self
    }

    /// Issues an application token for `request` in the tenant named by `tenant_segment`.
    pub async fn issue(&self, tenant_segment: &str, request: TokenRequest<'_>) -> Result<IssuedToken, TokenError> {
        let started = Instant::now();
        let tenant = self.discovery.tenant(tenant_segment)?;
        let mut attempt = Attempt::default();
        let result = self.issue_in(&tenant, &request, &mut attempt).await;
        self.log(&tenant, &request, &attempt, &result, started);
        result
    }

    async fn issue_in<'r>(
        &self,
        tenant: &Tenant,
        request: &'r TokenRequest<'_>,
        attempt: &mut Attempt<'r>,
    ) -> Result<IssuedToken, TokenError> {
        if let Some(ip) = request.caller {
            self.limits.check(LimitScope::Address, &ip, None).map_err(TokenError::Throttled)?;
        }
        let grant = request.grant_type.as_deref().ok_or(TokenError::MissingParameter("grant_type"))?;
        let exchange = match grant {
            CLIENT_CREDENTIALS => false,
            TOKEN_EXCHANGE => true,
            other => return Err(TokenError::UnsupportedGrantType(clipped(other))),
        };
        // One snapshot of the directory for the whole request.
        let view = self.directory.view();
        let client = self.client(&view, tenant, request)?;
        attempt.client = Some(client.clone());
        let limited = match &client {
            Client::Application(app) => self.limits.check(LimitScope::Application, &app.app_id, app.rate_limit),
            Client::Identity(identity) => self.limits.check(LimitScope::Identity, &identity.principal_id, None),
        };
        limited.map_err(TokenError::Throttled)?;
        let resource_name = if exchange { exchange_resource(request)? } else { client_credentials_resource(request)? };
        attempt.resource = resource_name;
        let authenticated = if exchange {
            let token = request.subject_token.as_ref().ok_or(TokenError::MissingParameter("subject_token"))?;
            let kind =
                request.subject_token_type.as_deref().ok_or(TokenError::MissingParameter("subject_token_type"))?;
            if !SUBJECT_TOKEN_TYPES.contains(&kind) {
                return Err(TokenError::SubjectTokenType(clipped(kind)));
            }
            self.federated(&view, client, &token.0, true, attempt).await?
        } else {
            match (&request.client_secret, &request.client_assertion) {
                (Some(secret), _) => {
                    // A managed identity has no secrets: none matches.
                    if !secret_matches(view.secret_hashes(client.owner().id()), &secret.0) {
                        return Err(TokenError::InvalidSecret { client_id: client.client_id().to_string() });
                    }
                    Authenticated { credential: client.principal(), client, acr: "1", assertion: None }
                }
                (None, Some(assertion)) => {
                    if request.client_assertion_type.as_deref() != Some(JWT_BEARER) {
                        return Err(TokenError::AssertionType);
                    }
                    self.federated(&view, client, &assertion.0, false, attempt).await?
                }
                (None, None) => return Err(TokenError::NoCredential),
            }
        };
        let mut issued = self.sign_for(&view, tenant, &authenticated, resource_name, attempt)?;
        if exchange {
            issued.issued_token_type = Some(ACCESS_TOKEN_TYPE);
        }
        Ok(issued)
    }

    /// The application, else the user-assigned identity, of the tenant with the request's client id.
    fn client(&self, view: &DirectoryView, tenant: &Tenant, request: &TokenRequest<'_>) -> Result<Client, TokenError> {
        let raw = request.client_id.as_deref().ok_or(TokenError::MissingParameter("client_id"))?;
        ClientId::parse(raw)
            .ok()
            .and_then(|id| match view.application_by_client(tenant.id, id) {
                Some(app) => Some(Client::Application(app.clone())),
                None => view
                    .identity_by_client(id)
                    .filter(|identity| identity.is_user_assigned() && identity.tenant_id == tenant.id)
                    .map(|identity| Client::Identity(identity.clone())),
            })
            .ok_or_else(|| TokenError::UnknownClient { client_id: clipped(raw), tenant: tenant.id.to_string() })
    }

    /// Verifies the assertion and finds the application's credential that it matches.
    async fn federated(
        &self,
        view: &DirectoryView,
        client: Client,
        raw: &str,
        exchange: bool,
        attempt: &mut Attempt<'_>,
    ) -> Result<Authenticated, TokenError> {
        let credentials = view.credentials(client.owner());
        let no_match = |issuer: String, subject: String, audiences: Vec<String>, claims: &Claims| {
            self.no_match(credentials, (issuer, subject, audiences), claims, exchange)
        };
        let assertion = match self.assertions.check(raw).await {
            Ok(assertion) => assertion,
            // Nothing was verified: the diagnosis compares only what the assertion claims to be
            // (with no credential at all, the mismatch is the issuer and there is no diagnosis).
            Err(AssertionError::UntrustedIssuer { issuer, subject, audiences }) => {
                return Err(no_match(issuer, subject, audiences, &Claims::new()));
            }
            Err(error) => return Err(TokenError::Assertion { error, exchange }),
        };
        if credentials.is_empty() {
            return Err(TokenError::NoFederatedCredentials { client_id: client.client_id().to_string(), exchange });
        }
        let audiences: Vec<&str> = assertion.audiences.iter().map(String::as_str).collect();
        let matched = credentials
            .iter()
            .find(|c| c.matches(&assertion.issuer, &assertion.subject, &assertion.claims, &audiences));
        let Some(credential) = matched else {
            return Err(no_match(
                assertion.issuer.clone(),
                assertion.subject.clone(),
                assertion.audiences.clone(),
                &assertion.claims,
            ));
        };
        attempt.credential = Some(credential.id);
        Ok(Authenticated { credential: credential.id, client, acr: "2", assertion: Some(assertion) })
    }

    /// Why `credentials` refused what an assertion presents: Entra's finer code and the diagnosis.
    fn no_match(
        &self,
        credentials: &[FederatedCredential],
        (issuer, subject, audiences): (String, String, Vec<String>),
        claims: &Claims,
        exchange: bool,
    ) -> TokenError {
        let presented: Vec<&str> = audiences.iter().map(String::as_str).collect();
        let mismatch = Mismatch::of(credentials, &issuer, &subject, &presented);
        let diagnosis = Diagnosis::nearest(credentials, &issuer, &subject, claims, &presented).map(|d| d.to_string());
        TokenError::NoMatch {
            issuer,
            subject,
            audiences,
            mismatch,
            diagnosis,
            disclose: self.disclose_mismatches,
            exchange,
        }
    }

    /// The dry run: what the token endpoint would do with `raw` as `client`'s assertion, without
    /// issuing anything, logging a sign-in or counting against a rate limit. The assertion is
    /// verified exactly as for a token (signature, issuer trust, times); every credential of the
    /// application is then compared field by field or clause by clause.
    pub async fn explain(
        &self,
        tenant: TenantId,
        client: &Application,
        raw: &str,
        resource: Option<&str>,
    ) -> Explanation {
        let view = self.directory.view();
        let credentials = view.credentials(CredentialOwner::Application(client.object_id));
        let (assertion, claims, presented) = match self.assertions.check(raw).await {
            Ok(assertion) => {
                let presented = (assertion.issuer.clone(), assertion.subject.clone(), assertion.audiences.clone());
                (Ok(VerifiedAssertion::clone(&assertion)), assertion.claims.clone(), Some(presented))
            }
            Err(error) => {
                // Not verified because no credential trusts the issuer: what it claims can still
                // be compared. Anything else failed verification and is compared with nothing.
                let presented = match &error {
                    AssertionError::UntrustedIssuer { issuer, subject, audiences } => {
                        Some((issuer.clone(), subject.clone(), audiences.clone()))
                    }
                    _ => None,
                };
                (Err(error), Arc::default(), presented)
            }
        };
        let Some((issuer, subject, audiences)) = presented else {
            let error = assertion.as_ref().err().cloned().map(|error| TokenError::Assertion { error, exchange: false });
            return Explanation { assertion, credentials: Vec::new(), matched: None, error, roles: None };
        };
        let presented_audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
        let verdicts: Vec<(FederatedCredential, Vec<Check>)> = credentials
            .iter()
            .map(|c| (c.clone(), c.checks(&issuer, &subject, &claims, &presented_audiences)))
            .collect();
        let matched = assertion
            .as_ref()
            .ok()
            .and_then(|_| verdicts.iter().find(|(_, checks)| checks.iter().all(|check| check.holds)))
            .map(|(c, _)| c.name.as_str().to_owned());
        let error = match (&matched, credentials.is_empty()) {
            (Some(_), _) => None,
            (None, true) if assertion.is_ok() => {
                Some(TokenError::NoFederatedCredentials { client_id: client.app_id.to_string(), exchange: false })
            }
            (None, _) => Some(self.no_match(credentials, (issuer, subject, audiences), &claims, false)),
        };
        let roles = match (&matched, resource) {
            (Some(_), Some(name)) => Some(match view.resource_application(tenant, name) {
                Some(app) => Ok(view.role_values(client.service_principal_id, app)),
                None => Err(TokenError::UnknownResource { resource: name.to_owned(), tenant: tenant.to_string() }),
            }),
            _ => None,
        };
        Explanation { assertion, credentials: verdicts, matched, error, roles }
    }

    fn sign_for(
        &self,
        view: &DirectoryView,
        tenant: &Tenant,
        who: &Authenticated,
        resource_name: &str,
        attempt: &mut Attempt<'_>,
    ) -> Result<IssuedToken, TokenError> {
        let resource = view.resource_application(tenant.id, resource_name).cloned().ok_or_else(|| {
            TokenError::UnknownResource { resource: clipped(resource_name), tenant: tenant.id.to_string() }
        })?;
        let principal = who.client.principal();
        let roles = view.role_values(principal, &resource);
        let client_id = who.client.client_id();
        let key = TokenCacheKey {
            tenant: tenant.id,
            client: client_id,
            principal,
            credential: who.credential,
            resource: resource_name.to_owned(),
            roles,
        };
        let lifetime_secs = i64::try_from(self.lifetime.as_secs()).unwrap_or(3600);
        let memo = who.assertion.as_deref().map(|assertion| &assertion.issued);
        let minted = self.mint.mint(key, memo, |now, roles| AccessToken {
            issuer: self.discovery.issuer_for(tenant),
            tenant: tenant.id,
            audience: resource_name,
            client_id: client_id.to_string(),
            principal_id: principal,
            roles: roles.to_vec(),
            acr: who.acr,
            mirid: match &who.client {
                Client::Application(_) => None,
                Client::Identity(identity) => Some(identity.resource_id.mirid()),
            },
            issued_at: now,
            lifetime_secs,
            unique_id: unique_token_id(),
        })?;
        attempt.cached = minted.from_cache;
        let (token, now) = (minted.token, minted.now);
        let expires_in = u64::try_from(token.expires_at - now).unwrap_or(0);
        Ok(IssuedToken { access_token: token.token, expires_in, issued_token_type: None })
    }

    fn log(
        &self,
        tenant: &Tenant,
        request: &TokenRequest<'_>,
        attempt: &Attempt<'_>,
        result: &Result<IssuedToken, TokenError>,
        started: Instant,
    ) {
        let failure;
        let (outcome, status_code, error_code, reason) = match result {
            Ok(_) => (Outcome::Success, 0, "", ""),
            Err(TokenError::Throttled(_)) => (Outcome::Failure, aadsts::THROTTLED, "throttled", "rate limited"),
            Err(e) => {
                failure = (format!("AADSTS{}", e.aadsts()), e.to_string());
                (Outcome::Failure, e.aadsts(), failure.0.as_str(), failure.1.as_str())
            }
        };
        let resource = if attempt.resource.is_empty() {
            request.scope.as_deref().or(request.resource.as_deref()).unwrap_or_default()
        } else {
            attempt.resource
        };
        self.sign_ins.record(SignInEvent {
            tenant_id: tenant.id,
            kind: match attempt.client {
                Some(Client::Identity(_)) => SignInKind::ManagedIdentity,
                _ => SignInKind::Application,
            },
            principal: match &attempt.client {
                Some(Client::Application(app)) => PrincipalRef::Application(app),
                Some(Client::Identity(identity)) => PrincipalRef::Identity(identity),
                None => PrincipalRef::Unknown(request.client_id.as_deref()),
            },
            compute_resource: None,
            credential_id: attempt.credential,
            resource,
            caller_address: request.caller,
            outcome,
            status_code,
            error_code,
            reason,
            latency: started.elapsed(),
            cached: attempt.cached,
        });
    }
}

/// Client credentials name their resource as `<resource>/.default`.
fn client_credentials_resource<'r>(request: &'r TokenRequest<'_>) -> Result<&'r str, TokenError> {
    let scope = request.scope.as_deref().ok_or(TokenError::MissingParameter("scope"))?;
    scope
        .strip_suffix("/.default")
        .filter(|r| !r.is_empty() && !r.contains(char::is_whitespace))
        .ok_or_else(|| TokenError::InvalidScope(clipped(scope)))
}

/// RFC 8693 names its target with `scope` (`/.default` optional), `resource` or `audience`.
fn exchange_resource<'r>(request: &'r TokenRequest<'_>) -> Result<&'r str, TokenError> {
    if let Some(scope) = request.scope.as_deref() {
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        if resource.is_empty() || resource.contains(char::is_whitespace) {
            return Err(TokenError::InvalidScope(clipped(scope)));
        }
        return Ok(resource);
    }
    request.resource.as_deref().or(request.audience.as_deref()).ok_or(TokenError::MissingParameter("scope"))
}

/// SHA-256 (hex) of a client secret: what the registry stores. Secrets are 256-bit random values,
/// so a fast hash is enough (no dictionary to guess from); the comparison is constant-time.
pub fn hash_secret(secret: &str) -> String {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `secret` is one of the secrets whose hashes are `hashes` (constant-time comparison).
pub fn secret_matches(hashes: &[String], secret: &str) -> bool {
    let presented = hash_secret(secret);
    hashes.iter().any(|h| constant_time::verify_slices_are_equal(h.as_bytes(), presented.as_bytes()).is_ok())
}

/// A new client secret: 32 random bytes, base64url (43 characters).
pub fn new_secret() -> Option<String> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh `uti`: 16 random bytes, base64url.
pub fn unique_token_id() -> String {
    let mut bytes = [0u8; 16];
    // A failed fill leaves zeros; `uti` is informational, never a security decision.
    let _ = rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_their_own_hash() {
        let secret = new_secret().unwrap();
        assert_eq!(secret.len(), 43);
        let hashes = vec![hash_secret("other"), hash_secret(&secret)];
        assert!(secret_matches(&hashes, &secret));
        assert!(!secret_matches(&hashes, "guess"));
        assert!(!secret_matches(&[], &secret));
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret("hunter2".to_owned())), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Secret(Cow::Borrowed("hunter2"))), "Secret(<redacted>)");
    }

    #[test]
    fn exchange_targets_come_from_scope_resource_or_audience() {
        fn with<'a>(scope: Option<&'a str>, resource: Option<&'a str>) -> TokenRequest<'a> {
            TokenRequest {
                scope: scope.map(Cow::Borrowed),
                resource: resource.map(Cow::Borrowed),
                ..TokenRequest::default()
            }
        }
        assert_eq!(exchange_resource(&with(Some("api://vault/.default"), None)).unwrap(), "api://vault");
        assert_eq!(exchange_resource(&with(Some("api://vault"), None)).unwrap(), "api://vault");
        assert_eq!(exchange_resource(&with(None, Some("api://vault"))).unwrap(), "api://vault");
        assert!(exchange_resource(&with(None, None)).is_err());
    }
}
