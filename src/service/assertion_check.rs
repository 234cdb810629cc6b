//! Checking an assertion: parse without trust, refuse what is never acceptable (size, `none`,
//! HMAC, `crit`), find the issuer (this broker's own, verified from the key ring in memory, or an
//! external issuer some federated credential names, verified with its published keys), verify the
//! signature, then the times. An issuer nobody trusts is never contacted. An assertion already
//! verified (same bytes) is answered from the verified-assertion cache until it expires.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::discovery::DiscoveryService;

use crate::domain::assertion::{
    AssertionError, ExternalVerifier, UnverifiedAssertion, VerifiedAssertion, VerifiedAssertionCache, audiences,
    check_times,
};
use crate::domain::clock::Clock;
use crate::domain::keys::{OwnTokenVerifier, VerifyError};
use crate::domain::ports::DirectorySource;

/// Limits on assertions.
#[derive(Debug, Clone)]
pub struct AssertionPolicy {
    pub max_bytes: usize,
    pub leeway: Duration,
    pub max_lifetime: Duration,
    /// Issuers trusted by configuration besides those named in federated credentials.
    pub trusted_issuers: HashSet<String>,
}

pub struct AssertionChecker {
    own: Arc<dyn OwnTokenVerifier>,
    external: Arc<dyn ExternalVerifier>,
    discovery: Arc<DiscoveryService>,
    directory: Arc<dyn DirectorySource>,
    clock: Arc<dyn Clock>,
    verified: Arc<dyn VerifiedAssertionCache>,
    policy: AssertionPolicy,
}

impl AssertionChecker {
    pub fn new(
        own: Arc<dyn OwnTokenVerifier>,
        external: Arc<dyn ExternalVerifier>,
        discovery: Arc<DiscoveryService>,
        directory: Arc<dyn DirectorySource>,
        clock: Arc<dyn Clock>,
        verified: Arc<dyn VerifiedAssertionCache>,
        policy: AssertionPolicy,
    ) -> Self {
        Self { own, external, discovery, directory, clock, verified, policy }
    }

    pub async fn check(&self, raw: &str) -> Result<Arc<VerifiedAssertion>, AssertionError> {
        if raw.len() > self.policy.max_bytes {
            return Err(AssertionError::TooLarge(self.policy.max_bytes));
        }
        let now = self.clock.now().unix_timestamp();
        let leeway = i64::try_from(self.policy.leeway.as_secs()).unwrap_or(300);
        let cached = self.verified.get(raw);
        self.verified.record(cached.is_some());
        if let Some(verified) = cached {
            // The signature was checked before; the time may have run out since, and the issuer
            // may no longer be trusted by any credential.
            if !self.is_own(&verified.issuer) && !self.is_trusted_external(&verified.issuer) {
                return Err(AssertionError::UntrustedIssuer {
                    issuer: verified.issuer.clone(),
                    subject: verified.subject.clone(),
                    audiences: verified.audiences.clone(),
                });
            }
            if verified.expires_at + leeway <= now {
                return Err(AssertionError::TimeRange { now, nbf: None, exp: Some(verified.expires_at) });
            }
            return Ok(verified);
        }
        let verified = Arc::new(self.verify(raw, now, leeway).await?);
        self.verified.insert(raw, verified.clone());
        Ok(verified)
    }

    fn is_own(&self, issuer: &str) -> bool {
        self.discovery.own_issuer_tenant(issuer).is_some()
    }

    fn is_trusted_external(&self, issuer: &str) -> bool {
        self.directory.view().is_trusted_issuer(issuer) || self.policy.trusted_issuers.contains(issuer)
    }

    async fn verify(&self, raw: &str, now: i64, leeway: i64) -> Result<VerifiedAssertion, AssertionError> {
        let unverified = UnverifiedAssertion::parse(raw, self.policy.max_bytes)?;
        let issuer = unverified.text("iss").ok_or(AssertionError::MissingClaim("iss"))?.to_owned();
        let claims = if self.is_own(&issuer) {
            self.own.verify(raw).map_err(|e| match e {
                VerifyError::Malformed => AssertionError::Malformed("not verifiable"),
                VerifyError::Algorithm => AssertionError::Algorithm(unverified.header.alg.clone()),
                VerifyError::UnknownKey => {
                    AssertionError::UnknownKey(unverified.header.kid.clone().unwrap_or_default())
                }
                VerifyError::BadSignature => AssertionError::BadSignature,
            })?
        } else if self.is_trusted_external(&issuer) {
            self.external.verify(&issuer, raw, &unverified.header).await?
        } else {
            return Err(AssertionError::UntrustedIssuer {
                subject: unverified.text("sub").unwrap_or_default().to_owned(),
                audiences: unverified.audiences(),
                issuer,
            });
        };
        let max_lifetime = i64::try_from(self.policy.max_lifetime.as_secs()).unwrap_or(90_000);
        let expires_at = check_times(&claims, now, leeway, max_lifetime)?;
        // The verified claims, not the unverified copy, decide from here on.
        let text = |name| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(VerifiedAssertion {
            issuer: text("iss").ok_or(AssertionError::MissingClaim("iss"))?,
            subject: text("sub").ok_or(AssertionError::MissingClaim("sub"))?,
            audiences: audiences(&claims),
            expires_at,
            claims: std::sync::Arc::new(claims),
            issued: Default::default(),
        })
    }
}
