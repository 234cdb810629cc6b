//! In-memory caches on the token path, with their counters in `/metrics`
//! (`ficus_cache_lookups_total{cache,result}`, `ficus_cache_evictions_total{cache}`).
//!
//! `IssuedTokens` (moka): capacity from `cache.issued_tokens_capacity`, entries expire with the
//! token they hold; staleness: none, because the key is rebuilt from the current directory on
//! every request (roles included, so a changed role is a different key; a deleted credential or
//! identity fails before the cache is asked), and an entry is reused only while more than
//! `cache.token_reuse_min_remaining` of its lifetime remains. A registry change invalidates only
//! the tokens it affects.
//!
//! `VerifiedAssertions` (moka): capacity from `cache.verified_assertions_capacity`, entries live at
//! most `federation.max_assertion_lifetime`; staleness: none, because the assertion's own `exp` is
//! checked on every hit and matching against federated credentials always reads the current
//! directory. A hit skips only the signature check of an identical assertion already verified:
//! the key is the assertion's whole text, compared byte for byte on a hit, so no two assertions
//! can share an entry (a digest as the key would cost a SHA-256 of a kilobyte or two per request).
//!
//! Both hash their keys with foldhash, seeded at random per process, rather than SipHash: keys
//! enter a cache only after a request succeeded (a verified signature, an issued token), so an
//! attacker cannot fill one with colliding keys, and a lookup costs a fraction of SipHash's.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::domain::assertion::{VerifiedAssertion, VerifiedAssertionCache};
use crate::domain::issued_token::{CachedToken, IssuedTokenCache, TokenCacheKey};

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
}

/// A bounded moka cache that counts its lookups and capacity evictions under `name`.
pub struct CountedCache<K, V> {
    cache: Cache<K, V, foldhash::quality::RandomState>,
    /// This cache's hit and miss counters, resolved once.
    hits: IntCounter,
    misses: IntCounter,
}

impl<K, V> CountedCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(name: &'static str, capacity: u64, ttl: Duration, metrics: &CacheMetrics) -> Self {
        let evictions = metrics.evictions.with_label_values(&[name]);
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .eviction_listener(move |_key, _value, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build_with_hasher(foldhash::quality::RandomState::default());
        let hits = metrics.lookups.with_label_values(&[name, "hit"]);
        let misses = metrics.lookups.with_label_values(&[name, "miss"]);
        Self { cache, hits, misses }
    }

    fn count(&self, hit: bool) {
        if hit { &self.hits } else { &self.misses }.inc();
    }
}

/// Issued tokens, by (tenant, client, credential or identity, resource).
pub type IssuedTokens = CountedCache<TokenCacheKey, CachedToken>;

/// Verified assertions, by their text.
pub type VerifiedAssertions = CountedCache<Arc<str>, Arc<VerifiedAssertion>>;

impl IssuedTokenCache for IssuedTokens {
    fn get(&self, key: &TokenCacheKey) -> Option<CachedToken> {
        self.cache.get(key)
    }

    fn insert(&self, key: TokenCacheKey, token: CachedToken) {
        self.cache.insert(key, token);
    }

    fn record(&self, hit: bool) {
        self.count(hit);
    }
}

impl VerifiedAssertionCache for VerifiedAssertions {
    fn get(&self, raw: &str) -> Option<Arc<VerifiedAssertion>> {
        self.cache.get(raw)
    }

    fn insert(&self, raw: &str, assertion: Arc<VerifiedAssertion>) {
        self.cache.insert(Arc::from(raw), assertion);
    }

    fn record(&self, hit: bool) {
        self.count(hit);
    }
}
