//! In-memory caches on the token path, with their counters in `/metrics`.
//!
//! `IssuedTokens` (moka): capacity from `cache.issued_tokens_capacity`, entries expire with the
//! token they hold; staleness: none, because an entry is reused only while the directory is at
//! the generation it was derived from (any registry change makes every entry a miss) and more
//! than `cache.token_reuse_min_remaining` of its lifetime remains.
//!
//! `VerifiedAssertions` (moka): capacity from `cache.verified_assertions_capacity`, entries live at
//! most `federation.max_assertion_lifetime`; staleness: none, because the assertion's own `exp` is
//! checked on every hit and matching against federated credentials always reads the current
//! directory. A hit skips only the signature check of an identical assertion already verified.

use std::time::Duration;

use moka::sync::Cache;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::domain::assertion::{VerifiedAssertion, VerifiedAssertionCache};
use crate::domain::issued_token::{CachedToken, IssuedTokenCache, TokenCacheKey};

pub struct IssuedTokens {
    cache: Cache<TokenCacheKey, CachedToken>,
    lookups: IntCounterVec,
}

/// The counters every cache reports into, registered once.
#[derive(Clone)]
pub struct CacheMetrics {
    lookups: IntCounterVec,
    evictions: IntCounterVec,
}

impl CacheMetrics {
    pub fn new(metrics: &Registry) -> Result<Self, prometheus::Error> {
        let lookups = IntCounterVec::new(
            Opts::new("ficus_cache_lookups_total", "Cache lookups by cache and result (hit, miss)"),
            &["cache", "result"],
        )?;
        let evictions = IntCounterVec::new(
            Opts::new("ficus_cache_evictions_total", "Entries evicted for capacity, by cache"),
            &["cache"],
        )?;
        metrics.register(Box::new(lookups.clone()))?;
        metrics.register(Box::new(evictions.clone()))?;
        Ok(Self { lookups, evictions })
    }

    fn eviction_counter(&self, cache: &'static str) -> IntCounter {
        self.evictions.with_label_values(&[cache])
    }
}

pub struct VerifiedAssertions {
    cache: Cache<[u8; 32], VerifiedAssertion>,
    lookups: IntCounterVec,
}

impl VerifiedAssertions {
    pub fn new(capacity: u64, max_lifetime: Duration, metrics: &CacheMetrics) -> Self {
        let evictions = metrics.eviction_counter("verified_assertions");
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(max_lifetime)
            .eviction_listener(move |_key, _value, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        Self { cache, lookups: metrics.lookups.clone() }
    }
}

impl VerifiedAssertionCache for VerifiedAssertions {
    fn get(&self, digest: &[u8; 32]) -> Option<VerifiedAssertion> {
        self.cache.get(digest)
    }

    fn insert(&self, digest: [u8; 32], assertion: VerifiedAssertion) {
        self.cache.insert(digest, assertion);
    }

    fn record(&self, hit: bool) {
        self.lookups.with_label_values(&["verified_assertions", if hit { "hit" } else { "miss" }]).inc();
    }
}

impl IssuedTokens {
    pub fn new(capacity: u64, max_lifetime: Duration, metrics: &CacheMetrics) -> Self {
        let evictions = metrics.eviction_counter("issued_tokens");
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(max_lifetime)
            .eviction_listener(move |_key, _value, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        Self { cache, lookups: metrics.lookups.clone() }
    }
}

impl IssuedTokenCache for IssuedTokens {
    fn get(&self, key: &TokenCacheKey) -> Option<CachedToken> {
        self.cache.get(key)
    }

    fn insert(&self, key: TokenCacheKey, token: CachedToken) {
        self.cache.insert(key, token);
    }

    fn record(&self, hit: bool) {
        self.lookups.with_label_values(&["issued_tokens", if hit { "hit" } else { "miss" }]).inc();
    }
}
