//! Signing in to the web console: one-time links and sessions.
//!
//! Both are tokens this broker signs with its own keys, so every replica of a cluster accepts
//! them and no session table exists:
//! - a link's code (`ficus console`) lives [`LINK_LIFETIME`] and is spent by its first use (on the
//!   replica that sees it);
//! - a session (the console's cookie) lives [`SESSION_LIFETIME`] and carries its CSRF secret.
//!
//! Every request re-reads what the session may do from the directory: the principal's current
//! roles on the management API (a role removed ends the session's power at once), capped by the
//! role the link granted; and a session is refused once the principal's client secrets have been
//! reissued (their fingerprint at sign-in no longer matches).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::admin::Caller;
use super::admin::bootstrap::{ADMIN_ROLE, MANAGEMENT_API, READER_ROLE};
use super::discovery::DiscoveryService;
use crate::domain::activity::Actor;
use crate::domain::clock::Clock;
use crate::domain::ids::ClientId;
use crate::domain::keys::OwnTokenVerifier;
use crate::domain::ports::{DirectorySource, SignError, TokenSigner};
use crate::domain::tenant::TenantId;
use crate::domain::token::{Claims, SignedJwt};

/// How long a sign-in link may wait to be opened.
pub const LINK_LIFETIME: Duration = Duration::from_secs(120);
/// How long a console session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const LINK_AUDIENCE: &str = "ficus-console-link";
const SESSION_AUDIENCE: &str = "ficus-console";

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConsoleRole {
    /// Look (`Ficus.Reader`).
    Reader,
    /// Look and change (`Ficus.Admin`).
    Admin,
}

impl ConsoleRole {
    pub fn app_role(self) -> &'static str {
        match self {
            Self::Reader => READER_ROLE,
            Self::Admin => ADMIN_ROLE,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Reader, Self::Admin].into_iter().find(|r| r.app_role() == raw)
    }
}

/// A signed-in console user.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub caller: Caller,
    /// What the session may do now (the link's role, capped by the principal's current roles).
    pub role: ConsoleRole,
    /// The secret every form must carry back.
    pub csrf: String,
    pub expires_at: i64,
}

impl ConsoleSession {
    pub fn may_change(&self) -> bool {
        self.role == ConsoleRole::Admin
    }

    /// Whether `presented` is this session's CSRF secret (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        constant_time::verify_slices_are_equal(self.csrf.as_bytes(), presented.as_bytes()).is_ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error("this sign-in link is not valid: ask `ficus console` for a new one")]
    BadLink,
    #[error("this sign-in link has expired or was already used: ask `ficus console` for a new one")]
    SpentLink,
    #[error("no console session: open a sign-in link from `ficus console`")]
    NoSession,
    #[error("the console session has expired: open a new sign-in link from `ficus console`")]
    Expired,
    #[error("the console session ended: the client's secret was reissued")]
    SecretReissued,
    #[error("the console session's principal holds neither Ficus.Reader nor Ficus.Admin any more")]
    NoRole,
    #[error("a {0} link needs a token holding that role")]
    RoleNotHeld(&'static str),
    #[error("signing failed: {0}")]
    Signing(String),
}

impl From<SignError> for ConsoleError {
    fn from(e: SignError) -> Self {
        Self::Signing(e.to_string())
    }
}

pub struct ConsoleService {
    signer: Arc<dyn TokenSigner>,
    verifier: Arc<dyn OwnTokenVerifier>,
    directory: Arc<dyn DirectorySource>,
    discovery: Arc<DiscoveryService>,
    clock: Arc<dyn Clock>,
    /// Link codes already used, with their expiry (pruned as links are spent: a person opens a
    /// few a day, so the map stays tiny).
    spent: Mutex<HashMap<String, i64>>,
}

impl ConsoleService {
    pub fn new(
        signer: Arc<dyn TokenSigner>,
        verifier: Arc<dyn OwnTokenVerifier>,
        directory: Arc<dyn DirectorySource>,
        discovery: Arc<DiscoveryService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { signer, verifier, directory, discovery, clock, spent: Mutex::default() }
    }

    /// A one-time sign-in link's code for `caller` (authenticated by the admin API) with `role`,
    /// which the caller must hold now.
    pub fn link_code(&self, caller: &Caller, role: ConsoleRole) -> Result<SignedJwt, ConsoleError> {
        if self.current_role(caller.tenant, &caller.actor.id).is_none_or(|held| held < role) {
            return Err(ConsoleError::RoleNotHeld(role.app_role()));
        }
        self.sign(LINK_AUDIENCE, caller, role, LINK_LIFETIME, None)
    }

    /// Spends a link's code and opens a session: the session cookie's value.
    pub fn open_session(&self, code: &str) -> Result<SignedJwt, ConsoleError> {
        let (claims, caller, role) = self.verify(code, LINK_AUDIENCE).map_err(|_| ConsoleError::BadLink)?;
        let jti = claims.get("jti").and_then(|v| v.as_str()).ok_or(ConsoleError::BadLink)?.to_owned();
        if self.expired(&claims) {
            return Err(ConsoleError::SpentLink);
        }
        {
            let now = self.clock.now().unix_timestamp();
            let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
            spent.retain(|_, exp| *exp > now);
            let exp = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(now);
            if spent.insert(jti, exp).is_some() {
                return Err(ConsoleError::SpentLink);
            }
        }
        self.check_secret(&claims, &caller)?;
        self.sign(SESSION_AUDIENCE, &caller, role, SESSION_LIFETIME, Some(random_text()?))
    }

    /// The session a cookie holds, as it stands now.
    pub fn session(&self, cookie: Option<&str>) -> Result<ConsoleSession, ConsoleError> {
        let token = cookie.filter(|c| !c.is_empty()).ok_or(ConsoleError::NoSession)?;
        let (claims, caller, granted) = self.verify(token, SESSION_AUDIENCE).map_err(|_| ConsoleError::NoSession)?;
        if self.expired(&claims) {
            return Err(ConsoleError::Expired);
        }
        self.check_secret(&claims, &caller)?;
        let held = self.current_role(caller.tenant, &caller.actor.id).ok_or(ConsoleError::NoRole)?;
        let csrf = claims.get("csrf").and_then(|v| v.as_str()).ok_or(ConsoleError::NoSession)?.to_owned();
        let expires_at = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or_default();
        Ok(ConsoleSession { caller, role: held.min(granted), csrf, expires_at })
    }

    fn sign(
        &self,
        audience: &str,
        caller: &Caller,
        role: ConsoleRole,
        lifetime: Duration,
        csrf: Option<String>,
    ) -> Result<SignedJwt, ConsoleError> {
        let tenant = self.discovery.tenant(&caller.tenant.to_string()).map_err(|_| ConsoleError::BadLink)?;
        let now = self.clock.now().unix_timestamp();
        let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        let mut claims = Claims::new();
        claims.insert("iss".into(), json!(self.discovery.issuer_for(&tenant)));
        claims.insert("aud".into(), json!(audience));
        claims.insert("tid".into(), json!(caller.tenant.to_string()));
        claims.insert("appid".into(), json!(caller.actor.id));
        claims.insert("name".into(), json!(caller.actor.display_name));
        claims.insert("role".into(), json!(role.app_role()));
        claims.insert("sfp".into(), json!(self.secret_fingerprint(caller)));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now.saturating_add(lifetime)));
        claims.insert("jti".into(), json!(random_text()?));
        if let Some(csrf) = csrf {
            claims.insert("csrf".into(), json!(csrf));
        }
        Ok(self.signer.sign(&claims)?)
    }

    /// Checks a console token's signature, issuer and audience; its claims, caller and role.
    fn verify(&self, token: &str, audience: &str) -> Result<(Claims, Caller, ConsoleRole), ()> {
        let claims = self.verifier.verify(token).map_err(|_| ())?;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
        if text("aud") != Some(audience) {
            return Err(());
        }
        let tenant = text("tid").and_then(|t| self.discovery.tenant(t).ok()).ok_or(())?;
        if text("iss") != Some(self.discovery.issuer_for(&tenant).as_str()) {
            return Err(());
        }
        let role = text("role").and_then(ConsoleRole::parse).ok_or(())?;
        let actor = Actor {
            id: text("appid").ok_or(())?.to_owned(),
            display_name: text("name").unwrap_or_default().to_owned(),
        };
        Ok((claims, Caller { tenant: tenant.id, actor }, role))
    }

    fn expired(&self, claims: &Claims) -> bool {
        let exp = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or_default();
        exp <= self.clock.now().unix_timestamp()
    }

    fn check_secret(&self, claims: &Claims, caller: &Caller) -> Result<(), ConsoleError> {
        let signed = claims.get("sfp").and_then(|v| v.as_str()).unwrap_or_default();
        if signed == self.secret_fingerprint(caller) { Ok(()) } else { Err(ConsoleError::SecretReissued) }
    }

    /// SHA-256 over the principal's current client-secret hashes (empty for one without secrets):
    /// reissuing a secret changes it.
    fn secret_fingerprint(&self, caller: &Caller) -> String {
        let view = self.directory.view();
        let app = ClientId::parse(&caller.actor.id).ok().and_then(|id| view.application_by_client(caller.tenant, id));
        let Some(app) = app else { return String::new() };
        let mut context = digest::Context::new(&digest::SHA256);
        for hash in view.secret_hashes(app.object_id) {
            context.update(hash.as_bytes());
            context.update(b"\n");
        }
        URL_SAFE_NO_PAD.encode(context.finish())
    }

    /// The highest console role the principal with client id `app_id` holds now on the tenant's
    /// management API.
    fn current_role(&self, tenant: TenantId, app_id: &str) -> Option<ConsoleRole> {
        let view = self.directory.view();
        let principal = view.principal_of_client(tenant, ClientId::parse(app_id).ok()?)?;
        let api = view.resource_application(tenant, MANAGEMENT_API)?;
        view.role_assignments_of(principal)
            .filter(|a| a.resource_id == api.service_principal_id)
            .filter_map(|a| api.app_roles.iter().find(|r| r.id == a.app_role_id))
            .filter_map(|r| ConsoleRole::parse(r.value.as_str()))
            .max()
    }
}

/// 16 random bytes, base64url; a failed random source refuses the sign-in (these values guard
/// sessions).
fn random_text() -> Result<String, ConsoleError> {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes).map_err(|_| ConsoleError::Signing("no randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
