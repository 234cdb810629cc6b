//! In-memory caches on the token path, with their counters in `/metrics`.
//!
//! `IssuedTokens` (moka): capacity from `cache.issued_tokens_capacity`, entries expire with the
//! token they hold; staleness: none, because an entry is reused only while the directory is at
//! the generation it was derived from (any registry change makes every entry a miss) and more
//! than `cache.token_reuse_min_remaining` of its lifetime remains.

use std::time::Duration;

use moka::sync::Cache;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::domain::issued_token::{CachedToken, IssuedTokenCache, TokenCacheKey};

pub struct IssuedTokens {
    cache: Cache<TokenCacheKey, CachedToken>,
    lookups: IntCounterVec,
}

impl IssuedTokens {
    pub fn new(capacity: u64, max_lifetime: Duration, metrics: &Registry) -> Result<Self, prometheus::Error> {
        let lookups = IntCounterVec::new(
            Opts::new("ficus_cache_lookups_total", "Cache lookups by cache and result (hit, miss)"),
            &["cache", "result"],
        )?;
        let evictions = IntCounter::new("ficus_cache_evictions_total", "Issued tokens evicted for capacity")?;
        metrics.register(Box::new(lookups.clone()))?;
        metrics.register(Box::new(evictions.clone()))?;
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(max_lifetime)
            .eviction_listener(move |_key, _value, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        Ok(Self { cache, lookups })
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
