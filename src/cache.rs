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
//! attacker cannot fill one with colliding keys, and a lookup costs a fraction of SipHash's. The
//! verified assertions' hasher reads only a long key's length and last [`TAIL`] bytes
//! ([`TailHash`]): the end of a JWS is its signature, as good as random, and an entry is still
//! found by comparing the whole text, so two assertions with one tail share a bucket, never an
//! entry. A lookup then hashes 64 bytes instead of a kilobyte or two.

use std::hash::{BuildHasher, Hash, Hasher};
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

/// How many bytes at the end of a key [`TailHash`] reads.
pub const TAIL: usize = 64;

/// Builds hashers that read a key's length and at most its last [`TAIL`] bytes, with foldhash
/// seeded at random per process.
#[derive(Clone, Default)]
pub struct TailHash(foldhash::quality::RandomState);

impl BuildHasher for TailHash {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

pub struct TailHasher(foldhash::quality::FoldHasher<'static>);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0.write(&bytes[bytes.len().saturating_sub(TAIL)..]);
    }

    fn write_u8(&mut self, byte: u8) {
        self.0.write_u8(byte);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// A bounded moka cache that counts its lookups and capacity evictions under `name`.
pub struct CountedCache<K, V, S = foldhash::quality::RandomState> {
    cache: Cache<K, V, S>,
    /// This cache's hit and miss counters, resolved once.
    hits: IntCounter,
    misses: IntCounter,
}

impl<K, V, S> CountedCache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Default + Send + Sync + 'static,
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
            .build_with_hasher(S::default());
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

/// Verified assertions, by their text (hashed by its tail, compared whole).
pub type VerifiedAssertions = CountedCache<Arc<str>, Arc<VerifiedAssertion>, TailHash>;

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

    fn keeps_tokens(&self) -> bool {
        self.cache.policy().max_capacity() != Some(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(build: &TailHash, text: &str) -> u64 {
        build.hash_one(text)
    }

    #[test]
    fn keys_that_differ_only_before_their_tail_share_a_hash_but_not_an_entry() {
        let build = TailHash::default();
        let tail = "s".repeat(TAIL);
        let (one, other) = (format!("header.payload-one.{tail}"), format!("header.payload-two.{tail}"));
        assert_eq!(hash_of(&build, &one), hash_of(&build, &other), "only the tail is read");
        assert_ne!(hash_of(&build, &one), hash_of(&build, &format!("{one}x")), "the length and tail are");
        assert_ne!(hash_of(&build, "a.b.c"), hash_of(&build, "a.b.d"), "a short key is read whole");

        let metrics = CacheMetrics::new(&Registry::new()).unwrap();
        let cache: VerifiedAssertions = CountedCache::new("test", 10, Duration::from_secs(60), &metrics);
        let verified = |subject: &str| {
            Arc::new(VerifiedAssertion {
                issuer: "https://issuer".into(),
                subject: subject.into(),
                audiences: vec![],
                expires_at: 0,
                claims: Arc::default(),
                issued: Default::default(),
            })
        };
        cache.insert(&one, verified("one"));
        cache.insert(&other, verified("two"));
        assert_eq!(VerifiedAssertionCache::get(&cache, &one).unwrap().subject, "one");
        assert_eq!(VerifiedAssertionCache::get(&cache, &other).unwrap().subject, "two");
        assert!(VerifiedAssertionCache::get(&cache, &format!("header.payload-three.{tail}")).is_none());
    }

    #[test]
    fn an_issued_token_cache_of_capacity_zero_says_it_keeps_no_tokens() {
        let metrics = CacheMetrics::new(&Registry::new()).unwrap();
        let none: IssuedTokens = CountedCache::new("none", 0, Duration::from_secs(60), &metrics);
        let some: IssuedTokens = CountedCache::new("some", 10, Duration::from_secs(60), &metrics);
        assert!(!none.keeps_tokens());
        assert!(some.keeps_tokens());
    }
}
