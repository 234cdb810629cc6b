//! Issued tokens and the port of their cache: a token already signed for the same (tenant,
//! client, credential or identity, resource) is handed out again while enough of its lifetime
//! remains and the directory it was derived from has not changed.

use super::ids::ObjectId;
use super::tenant::TenantId;
use super::token::SignedJwt;

/// What makes two token requests interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenCacheKey {
    pub tenant: TenantId,
    /// The client (application appId or managed identity client id).
    pub client: String,
    /// The matched credential or the managed identity's principal id.
    pub credential: ObjectId,
    /// The resource (audience) exactly as requested.
    pub resource: String,
}

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: SignedJwt,
    pub issued_at: i64,
    pub expires_at: i64,
    /// The directory generation the token's claims (roles...) were read from.
    pub generation: u64,
}

impl CachedToken {
    /// Reusable at `now` when the directory is still at `generation` and more than `min_share`
    /// of the token's lifetime remains.
    pub fn is_reusable(&self, now: i64, generation: u64, min_share: f64) -> bool {
        let lifetime = (self.expires_at - self.issued_at) as f64;
        let remaining = (self.expires_at - now) as f64;
        self.generation == generation && remaining > lifetime * min_share
    }
}

/// The issued-token cache. Implementations bound their memory and count hits and misses.
pub trait IssuedTokenCache: Send + Sync {
    fn get(&self, key: &TokenCacheKey) -> Option<CachedToken>;
    fn insert(&self, key: TokenCacheKey, token: CachedToken);
    /// Records whether a lookup was answered from the cache (for metrics).
    fn record(&self, hit: bool);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_reused_while_enough_lifetime_remains_and_the_directory_is_unchanged() {
        let token = CachedToken { token: SignedJwt::new("t".into()), issued_at: 0, expires_at: 100, generation: 3 };
        assert!(token.is_reusable(40, 3, 0.5));
        assert!(!token.is_reusable(50, 3, 0.5), "half its life left: not more than the share");
        assert!(!token.is_reusable(10, 4, 0.5), "the directory changed since");
    }
}
