//! Minting access tokens, shared by every grant: a token already signed for the same cache key
//! (built by the caller from the current directory, roles included) is handed out again while
//! enough of its lifetime remains; otherwise the claims are built, signed and cached.

use std::sync::Arc;

use super::claims::AccessToken;
use crate::domain::clock::Clock;
use crate::domain::issued_token::{CachedToken, IssuedMemo, IssuedTokenCache, TokenCacheKey};
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
    /// (`roles` are the key's: the caller builds them once, and copies them only to sign). A
    /// `memo` (an exchange's verified assertion's) is asked first and told the token handed out.
    pub fn mint<'a>(
        &self,
        key: TokenCacheKey,
        memo: Option<&IssuedMemo>,
        claims: impl FnOnce(i64, &[String]) -> AccessToken<'a>,
    ) -> Result<Minted, SignError> {
        let now = self.clock.now().unix_timestamp();
        let memo = memo.filter(|_| self.cache.keeps_tokens());
        if let Some(token) = memo.and_then(|m| m.get(&key)).filter(|t| t.is_reusable(now, self.reuse_share)) {
            self.cache.record(true);
            return Ok(Minted { token, from_cache: true, now });
        }
        let cached = self.cache.get(&key).filter(|t| t.is_reusable(now, self.reuse_share));
        self.cache.record(cached.is_some());
        if let Some(token) = cached {
            memo.inspect(|m| m.keep(&key, &token));
            return Ok(Minted { token, from_cache: true, now });
        }
        let claims = claims(now, &key.roles);
        let token =
            CachedToken { token: self.signer.sign(&claims.claims())?, issued_at: now, expires_at: claims.expires_at() };
        memo.inspect(|m| m.keep(&key, &token));
        self.cache.insert(key, token.clone());
        Ok(Minted { token, from_cache: false, now })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use time::OffsetDateTime;

    use super::*;
    use crate::domain::clock::ManualClock;
    use crate::domain::ids::{ClientId, ObjectId};
    use crate::domain::tenant::TenantId;
    use crate::domain::token::{Claims, SignedJwt};

    /// Signs `t1`, `t2`, ... in turn.
    #[derive(Default)]
    struct Numbered(AtomicUsize);

    impl TokenSigner for Numbered {
        fn sign(&self, _: &Claims) -> Result<SignedJwt, SignError> {
            Ok(SignedJwt::new(format!("t{}", self.0.fetch_add(1, Ordering::Relaxed) + 1)))
        }
    }

    /// A cache that counts its lookups; with `keeps` false it keeps nothing.
    struct Counted {
        keeps: bool,
        tokens: Mutex<HashMap<TokenCacheKey, CachedToken>>,
        lookups: AtomicUsize,
    }

    impl IssuedTokenCache for Counted {
        fn get(&self, key: &TokenCacheKey) -> Option<CachedToken> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            self.tokens.lock().unwrap().get(key).cloned()
        }

        fn insert(&self, key: TokenCacheKey, token: CachedToken) {
            if self.keeps {
                self.tokens.lock().unwrap().insert(key, token);
            }
        }

        fn record(&self, _: bool) {}

        fn keeps_tokens(&self) -> bool {
            self.keeps
        }
    }

    fn mint(keeps: bool) -> (TokenMint, Arc<Counted>, Arc<ManualClock>) {
        let cache = Arc::new(Counted { keeps, tokens: Mutex::default(), lookups: AtomicUsize::new(0) });
        let clock = Arc::new(ManualClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()));
        (TokenMint::new(Arc::new(Numbered::default()), clock.clone(), cache.clone(), 0.5), cache, clock)
    }

    fn key(resource: &str) -> TokenCacheKey {
        let id = ObjectId::parse("00000000-0000-4000-8000-000000000001").unwrap();
        TokenCacheKey {
            tenant: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
            client: ClientId::parse("00000000-0000-4000-8000-000000000002").unwrap(),
            principal: id,
            credential: id,
            resource: resource.into(),
            roles: vec![],
        }
    }

    /// Mints for `key` with `memo`: the token's text and whether it was reused.
    fn minted(mint: &TokenMint, key: TokenCacheKey, memo: &IssuedMemo) -> (String, bool) {
        let minted = mint
            .mint(key, Some(memo), |now, _| AccessToken {
                issuer: "https://ficus/t/v2.0".into(),
                tenant: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
                audience: "api://vault",
                client_id: String::new(),
                principal_id: ObjectId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
                roles: vec![],
                acr: "2",
                mirid: None,
                issued_at: now,
                lifetime_secs: 3600,
                unique_id: String::new(),
            })
            .unwrap();
        (minted.token.token.expose().to_owned(), minted.from_cache)
    }

    #[test]
    fn a_repeated_exchange_is_answered_from_its_assertions_memo_without_a_cache_lookup() {
        let (mint, cache, _) = mint(true);
        let memo = IssuedMemo::default();
        assert_eq!(minted(&mint, key("api://vault"), &memo), ("t1".into(), false));
        assert_eq!(minted(&mint, key("api://vault"), &memo), ("t1".into(), true));
        assert_eq!(minted(&mint, key("api://vault"), &memo), ("t1".into(), true));
        assert_eq!(cache.lookups.load(Ordering::Relaxed), 1, "only the first exchange asked the cache");
    }

    #[test]
    fn a_memo_serves_only_its_own_key_and_only_while_the_token_may_be_reused() {
        let (mint, _, clock) = mint(true);
        let memo = IssuedMemo::default();
        assert_eq!(minted(&mint, key("api://vault"), &memo).0, "t1");
        assert_eq!(minted(&mint, key("api://other"), &memo), ("t2".into(), false), "another resource");
        assert_eq!(minted(&mint, key("api://other"), &memo), ("t2".into(), true));
        clock.advance(std::time::Duration::from_secs(31 * 60));
        assert_eq!(minted(&mint, key("api://other"), &memo), ("t3".into(), false), "past half its life");
    }

    #[test]
    fn with_the_cache_keeping_no_tokens_the_memo_keeps_none_either() {
        let (mint, _, _) = mint(false);
        let memo = IssuedMemo::default();
        assert_eq!(minted(&mint, key("api://vault"), &memo), ("t1".into(), false));
        assert_eq!(minted(&mint, key("api://vault"), &memo), ("t2".into(), false), "signed afresh");
    }
}
