//! Issued tokens and the port of their cache: a token already signed for the same (tenant,
//! client, principal, credential or identity, resource, roles) is handed out again while enough of
//! its lifetime remains.
//!
//! The key holds everything the claims are made of that the directory can change, the roles
//! included, and callers build it from the current directory on every request: a changed role
//! makes a different key, and a deleted credential or identity never reaches the cache. So a
//! change invalidates exactly the tokens it affects, and nothing else.

use super::ids::{ClientId, ObjectId};
use super::tenant::TenantId;
use super::token::SignedJwt;

/// What makes two token requests interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenCacheKey {
    pub tenant: TenantId,
    /// The client (application appId or managed identity client id).
    pub client: ClientId,
    /// The client's service principal or the managed identity's principal (`oid`).
    pub principal: ObjectId,
    /// The matched credential or the managed identity's principal id.
    pub credential: ObjectId,
    /// The resource (audience) exactly as requested.
    pub resource: String,
    /// The `roles` claim, as the current directory gives it.
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: SignedJwt,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl CachedToken {
    /// Reusable at `now` while more than `min_share` of the token's lifetime remains.
    pub fn is_reusable(&self, now: i64, min_share: f64) -> bool {
        let lifetime = (self.expires_at - self.issued_at) as f64;
        let remaining = (self.expires_at - now) as f64;
        remaining > lifetime * min_share
    }
}

/// The token last issued for one verified assertion, with its key: an exchange repeating the
/// assertion (a workload reusing its token) finds its token here, without the issued-token
/// cache's lookup, when the key it builds from the current directory is the same. It is held by
/// the verified assertion, so it lives as long as that stays cached; the token text is shared
/// with the cache, not copied. Not part of the assertion's value: a copy starts empty, and two
/// memos compare equal.
#[derive(Default)]
pub struct IssuedMemo(std::sync::Mutex<Option<(TokenCacheKey, CachedToken)>>);

impl IssuedMemo {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<(TokenCacheKey, CachedToken)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token kept for exactly `key`, if any.
    pub fn get(&self, key: &TokenCacheKey) -> Option<CachedToken> {
        self.held().as_ref().filter(|(held, _)| held == key).map(|(_, token)| token.clone())
    }

    pub fn keep(&self, key: &TokenCacheKey, token: &CachedToken) {
        let mut held = self.held();
        if !held.as_ref().is_some_and(|(k, t)| k == key && t.token == token.token) {
            *held = Some((key.clone(), token.clone()));
        }
    }
}

impl std::fmt::Debug for IssuedMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedMemo")
    }
}

impl Clone for IssuedMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for IssuedMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for IssuedMemo {}

/// The issued-token cache. Implementations bound their memory and count hits and misses.
pub trait IssuedTokenCache: Send + Sync {
    fn get(&self, key: &TokenCacheKey) -> Option<CachedToken>;
    fn insert(&self, key: TokenCacheKey, token: CachedToken);
    /// Records whether a lookup was answered from the cache (for metrics).
    fn record(&self, hit: bool);
    /// Whether tokens are kept at all (a capacity of 0 signs every token afresh, and so do the
    /// memos).
    fn keeps_tokens(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_reused_while_more_than_the_share_of_its_lifetime_remains() {
        let token = CachedToken { token: SignedJwt::new("t".into()), issued_at: 0, expires_at: 100 };
        assert!(token.is_reusable(40, 0.5));
        assert!(!token.is_reusable(50, 0.5), "half its life left: not more than the share");
        assert!(!token.is_reusable(100, 0.0), "expired");
    }
}
