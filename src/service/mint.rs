//! Minting access tokens, shared by every grant: a token already signed for the same cache key
//! (built by the caller from the current directory, roles included) is handed out again while
//! enough of its lifetime remains; otherwise the claims are built, signed and cached.

use std::sync::Arc;

use super::claims::AccessToken;
use crate::domain::clock::Clock;
use crate::domain::issued_token::{CachedToken, IssuedTokenCache, TokenCacheKey};
use crate::domain::ports::{SignError, TokenSigner};

pub struct TokenMint {
    signer: Arc<dyn TokenSigner>,
    clock: Arc<dyn Clock>,
    cache: Arc<dyn IssuedTokenCache>,
    reuse_share: f64,
}

/// A token to hand out, and whether it came from the cache.
#[derive(Debug)]
pub struct Minted {
    pub token: CachedToken,
    pub from_cache: bool,
    /// The instant (Unix seconds) the request was served at.
    pub now: i64,
}

impl TokenMint {
    pub fn new(
        signer: Arc<dyn TokenSigner>,
        clock: Arc<dyn Clock>,
        cache: Arc<dyn IssuedTokenCache>,
        reuse_share: f64,
    ) -> Self {
        Self { signer, clock, cache, reuse_share }
    }

    /// The cached token for `key` if it may be reused, else `claims(now, roles)` signed and cached
    /// (`roles` are the key's: the caller builds them once, and copies them only to sign).
    pub fn mint<'a>(
        &self,
        key: TokenCacheKey,
        claims: impl FnOnce(i64, &[String]) -> AccessToken<'a>,
    ) -> Result<Minted, SignError> {
        let now = self.clock.now().unix_timestamp();
        let cached = self.cache.get(&key).filter(|t| t.is_reusable(now, self.reuse_share));
        self.cache.record(cached.is_some());
        if let Some(token) = cached {
            return Ok(Minted { token, from_cache: true, now });
        }
        let claims = claims(now, &key.roles);
        let token =
            CachedToken { token: self.signer.sign(&claims.claims())?, issued_at: now, expires_at: claims.expires_at() };
        self.cache.insert(key, token.clone());
        Ok(Minted { token, from_cache: false, now })
    }
}
