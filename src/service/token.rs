//! The token endpoint's use cases: today `client_credentials` with a client secret (the admin
//! application uses it); client assertions and RFC 8693 exchange join with the federation issue.
//! Reads only the in-memory directory; signs with the key ring.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::claims::AccessToken;
use super::discovery::{DiscoveryError, DiscoveryService};
use crate::domain::clock::Clock;
use crate::domain::ids::ClientId;
use crate::domain::ports::{DirectorySource, SignError, TokenSigner};
use crate::domain::token::SignedJwt;

/// What a client sent, after the HTTP layer has merged form fields and Basic credentials.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub scope: Option<String>,
    pub client_assertion: Option<Secret>,
}

/// A secret-bearing string whose `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: SignedJwt,
    pub expires_in: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Tenant(#[from] DiscoveryError),
    #[error("the request body must contain the parameter '{0}'")]
    MissingParameter(&'static str),
    #[error("unsupported grant type '{0}'")]
    UnsupportedGrantType(String),
    #[error("application '{client_id}' was not found in tenant '{tenant}'")]
    UnknownClient { client_id: String, tenant: String },
    #[error("invalid client secret for application '{client_id}'")]
    InvalidSecret { client_id: String },
    #[error("neither client_secret nor client_assertion was given")]
    NoCredential,
    #[error("invalid scope '{0}'")]
    InvalidScope(String),
    #[error("resource '{resource}' not found in tenant '{tenant}'")]
    UnknownResource { resource: String, tenant: String },
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    #[error("signing failed: {0}")]
    Signing(#[from] SignError),
}

pub const CLIENT_CREDENTIALS: &str = "client_credentials";

pub struct TokenService {
    directory: Arc<dyn DirectorySource>,
    signer: Arc<dyn TokenSigner>,
    discovery: Arc<DiscoveryService>,
    clock: Arc<dyn Clock>,
    lifetime: Duration,
}

impl TokenService {
    pub fn new(
        directory: Arc<dyn DirectorySource>,
        signer: Arc<dyn TokenSigner>,
        discovery: Arc<DiscoveryService>,
        clock: Arc<dyn Clock>,
        lifetime: Duration,
    ) -> Self {
        Self { directory, signer, discovery, clock, lifetime }
    }

    /// Issues an application token for `request` in the tenant named by `tenant_segment`.
    pub fn issue(&self, tenant_segment: &str, request: TokenRequest) -> Result<IssuedToken, TokenError> {
        let tenant = self.discovery.tenant(tenant_segment)?;
        let grant = request.grant_type.as_deref().ok_or(TokenError::MissingParameter("grant_type"))?;
        if grant != CLIENT_CREDENTIALS {
            return Err(TokenError::UnsupportedGrantType(grant.chars().take(100).collect()));
        }
        let raw_client = request.client_id.as_deref().ok_or(TokenError::MissingParameter("client_id"))?;
        let view = self.directory.view();
        let client = ClientId::parse(raw_client)
            .ok()
            .and_then(|id| view.application_by_client(tenant.id, id))
            .ok_or_else(|| TokenError::UnknownClient {
                client_id: truncate(raw_client),
                tenant: tenant_segment.into(),
            })?
            .clone();
        match (&request.client_secret, &request.client_assertion) {
            (Some(secret), _) => {
                if !secret_matches(view.secret_hashes(client.object_id), &secret.0) {
                    return Err(TokenError::InvalidSecret { client_id: client.app_id.to_string() });
                }
            }
            (None, Some(_)) => return Err(TokenError::NotImplemented("Client assertions (federated credentials)")),
            (None, None) => return Err(TokenError::NoCredential),
        }
        let scope = request.scope.as_deref().ok_or(TokenError::MissingParameter("scope"))?;
        let resource_name = scope
            .strip_suffix("/.default")
            .filter(|r| !r.is_empty() && !r.contains(char::is_whitespace))
            .ok_or_else(|| TokenError::InvalidScope(truncate(scope)))?;
        let resource = view.resource_application(tenant.id, resource_name).cloned().ok_or_else(|| {
            TokenError::UnknownResource { resource: truncate(resource_name), tenant: tenant_segment.into() }
        })?;
        let token = AccessToken {
            issuer: self.discovery.issuer_for(&tenant),
            tenant: tenant.id,
            audience: resource_name,
            client_id: client.app_id.to_string(),
            principal_id: client.service_principal_id,
            roles: view.role_values(client.service_principal_id, &resource),
            acr: "1",
            mirid: None,
            issued_at: self.clock.now().unix_timestamp(),
            lifetime_secs: i64::try_from(self.lifetime.as_secs()).unwrap_or(3600),
            unique_id: unique_token_id(),
        };
        Ok(IssuedToken { access_token: self.signer.sign(&token.claims())?, expires_in: self.lifetime.as_secs() })
    }
}

/// SHA-256 (hex) of a client secret: what the registry stores. Secrets are 256-bit random values,
/// so a fast hash is enough (no dictionary to guess from); the comparison is constant-time.
pub fn hash_secret(secret: &str) -> String {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn secret_matches(hashes: &[String], secret: &str) -> bool {
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

fn truncate(value: &str) -> String {
    value.chars().take(256).collect()
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
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(<redacted>)");
    }
}
