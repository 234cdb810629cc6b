//! Who may call the admin API: bearer tokens this broker issued, for the management API
//! (`api://ficus-management`, or Graph's or ARM's resource URI, which name it), in time, carrying `Ficus.Admin` (any call) or `Ficus.Reader`
//! (reads). The token's `tid` picks the tenant the caller administers.

use std::sync::Arc;
use std::time::Duration;

use super::admin::Caller;
use super::admin::bootstrap::{ADMIN_ROLE, MANAGEMENT_API, READER_ROLE};
use super::discovery::DiscoveryService;
use crate::domain::activity::Actor;
use crate::domain::application::is_microsoft_admin_resource;
use crate::domain::clock::Clock;
use crate::domain::ids::ClientId;
use crate::domain::keys::OwnTokenVerifier;
use crate::domain::ports::DirectorySource;
use crate::domain::token::Claims;

/// What the call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Access token is empty: send 'Authorization: Bearer <token>' (get one with `ficus admin token`).")]
    Missing,
    #[error("Access token validation failure: {0}.")]
    Invalid(&'static str),
    #[error("Insufficient privileges to complete the operation: the token needs the {0} app role.")]
    Forbidden(&'static str),
}

pub struct AdminAuthenticator {
    verifier: Arc<dyn OwnTokenVerifier>,
    directory: Arc<dyn DirectorySource>,
    discovery: Arc<DiscoveryService>,
    clock: Arc<dyn Clock>,
    skew: Duration,
}

impl AdminAuthenticator {
    pub fn new(
        verifier: Arc<dyn OwnTokenVerifier>,
        directory: Arc<dyn DirectorySource>,
        discovery: Arc<DiscoveryService>,
        clock: Arc<dyn Clock>,
        skew: Duration,
    ) -> Self {
        Self { verifier, directory, discovery, clock, skew }
    }

    /// Checks `bearer` (the token after `Bearer `) for `access`.
    pub fn authenticate(&self, bearer: Option<&str>, access: Access) -> Result<Caller, AuthError> {
        let token = bearer.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let claims =
            self.verifier.verify(token).map_err(|_| AuthError::Invalid("invalid signature or unknown signing key"))?;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
        let tenant =
            text("tid").and_then(|tid| self.discovery.tenant(tid).ok()).ok_or(AuthError::Invalid("unknown tenant"))?;
        if text("iss") != Some(self.discovery.issuer_for(&tenant).as_str()) {
            return Err(AuthError::Invalid("invalid issuer"));
        }
        let audience = text("aud").unwrap_or_default();
        if audience != MANAGEMENT_API && !is_microsoft_admin_resource(audience) {
            return Err(AuthError::Invalid("invalid audience"));
        }
        self.check_time(&claims)?;
        let roles: Vec<&str> = claims
            .get("roles")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let allowed = match access {
            Access::Write => roles.contains(&ADMIN_ROLE),
            Access::Read => roles.contains(&ADMIN_ROLE) || roles.contains(&READER_ROLE),
        };
        if !allowed {
            return Err(AuthError::Forbidden(if access == Access::Write { ADMIN_ROLE } else { READER_ROLE }));
        }
        let app_id = text("appid").unwrap_or_default().to_owned();
        let display_name = ClientId::parse(&app_id)
            .ok()
            .and_then(|id| {
                self.directory.view().application_by_client(tenant.id, id).map(|a| a.display_name.as_str().to_owned())
            })
            .unwrap_or_else(|| app_id.clone());
        Ok(Caller { tenant: tenant.id, actor: Actor { id: app_id, display_name } })
    }

    fn check_time(&self, claims: &Claims) -> Result<(), AuthError> {
        let now = self.clock.now().unix_timestamp();
        let skew = i64::try_from(self.skew.as_secs()).unwrap_or(300);
        let number = |name: &str| claims.get(name).and_then(|v| v.as_i64());
        let exp = number("exp").ok_or(AuthError::Invalid("no expiry"))?;
        if exp + skew <= now {
            return Err(AuthError::Invalid("the token has expired"));
        }
        if number("nbf").is_some_and(|nbf| nbf - skew > now) {
            return Err(AuthError::Invalid("the token is not yet valid"));
        }
        Ok(())
    }
}
