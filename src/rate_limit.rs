//! Token-path rate limits (governor token buckets) per application, per managed identity and per
//! source address. Each scope keeps at most `rate_limits.max_tracked_keys` buckets (moka, least
//! recently used forgotten first), so spraying millions of addresses cannot grow memory without
//! bound; a forgotten key starts again with a full bucket.
//!
//! An application may have its own limit in the registry (`Application::rate_limit`), with a burst
//! of one unit's worth (`"500/s"`: 500); its bucket is rebuilt when that limit changes.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use prometheus::{IntCounterVec, Opts, Registry};

pub use crate::domain::rate_limit::Rate;
use crate::domain::rate_limit::{LimitScope, RateLimiter};

fn quota(rate: Rate, burst: NonZeroU32) -> Option<Quota> {
    let quota = match rate {
        Rate::Off => return None,
        Rate::PerSecond(n) => Quota::per_second(n),
        Rate::PerMinute(n) => Quota::per_minute(n),
        Rate::PerHour(n) => Quota::per_hour(n),
    };
    Some(quota.allow_burst(burst))
}

/// A key's bucket, with the key's own rate it was built for (`None`: the scope's).
struct Bucket {
    own: Option<Rate>,
    limiter: DefaultDirectRateLimiter,
}

struct Scope {
    quota: Option<Quota>,
    buckets: moka::sync::Cache<String, Arc<Bucket>>,
}

pub struct TokenRateLimits {
    scopes: [Scope; 3],
    limited: IntCounterVec,
    clock: DefaultClock,
}

fn index(scope: LimitScope) -> usize {
    match scope {
        LimitScope::Application => 0,
        LimitScope::Identity => 1,
        LimitScope::Address => 2,
    }
}

impl TokenRateLimits {
    /// `limits`: (rate, burst) for applications, identities, addresses.
    pub fn new(limits: [(Rate, NonZeroU32); 3], max_keys: u64, metrics: &Registry) -> Result<Self, prometheus::Error> {
        let limited = IntCounterVec::new(
            Opts::new("ficus_rate_limited_total", "Token requests refused by a rate limit, by scope"),
            &["scope"],
        )?;
        metrics.register(Box::new(limited.clone()))?;
        let scopes = limits.map(|(rate, burst)| Scope {
            quota: quota(rate, burst),
            buckets: moka::sync::Cache::builder().max_capacity(max_keys).build(),
        });
        Ok(Self { scopes, limited, clock: DefaultClock::default() })
    }

    /// Buckets currently tracked in `scope` (after pending evictions).
    pub fn tracked(&self, scope: LimitScope) -> u64 {
        let buckets = &self.scopes[index(scope)].buckets;
        buckets.run_pending_tasks();
        buckets.entry_count()
    }
}

impl RateLimiter for TokenRateLimits {
    fn check(&self, scope: LimitScope, key: &str, own: Option<Rate>) -> Result<(), Duration> {
        let state = &self.scopes[index(scope)];
        let wanted = match own {
            Some(rate) => quota(rate, rate.unit_count()),
            None => state.quota,
        };
        let Some(wanted) = wanted else {
            return Ok(());
        };
        let build = || Arc::new(Bucket { own, limiter: DefaultDirectRateLimiter::direct(wanted) });
        let mut bucket = state.buckets.get_with_by_ref(key, build);
        if bucket.own != own {
            bucket = build();
            state.buckets.insert(key.to_owned(), Arc::clone(&bucket));
        }
        bucket.limiter.check().map_err(|not_until| {
            self.limited.with_label_values(&[scope.as_str()]).inc();
            not_until.wait_time_from(self.clock.now())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn rates_parse_with_units_or_off() {
        assert_eq!(Rate::parse("100/s").unwrap(), Rate::PerSecond(nz(100)));
        assert_eq!(Rate::parse("5/min").unwrap(), Rate::PerMinute(nz(5)));
        assert_eq!(Rate::parse("off").unwrap(), Rate::Off);
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("10/day").is_err());
    }

    #[test]
    fn a_key_past_its_burst_is_told_when_to_retry_and_others_are_not_affected() {
        let limits = [(Rate::PerHour(nz(1)), nz(2)), (Rate::Off, nz(1)), (Rate::Off, nz(1))];
        let limiter = TokenRateLimits::new(limits, 100, &Registry::new()).unwrap();
        assert!(limiter.check(LimitScope::Application, "a", None).is_ok());
        assert!(limiter.check(LimitScope::Application, "a", None).is_ok());
        let wait = limiter.check(LimitScope::Application, "a", None).unwrap_err();
        assert!(wait > Duration::from_secs(60), "{wait:?}");
        assert!(limiter.check(LimitScope::Application, "b", None).is_ok());
        assert!(limiter.check(LimitScope::Identity, "a", None).is_ok(), "an unlimited scope");
    }

    #[test]
    fn a_key_with_its_own_rate_gets_its_own_bucket_rebuilt_when_the_rate_changes() {
        let limits = [(Rate::PerHour(nz(1000)), nz(1000)), (Rate::Off, nz(1)), (Rate::Off, nz(1))];
        let limiter = TokenRateLimits::new(limits, 100, &Registry::new()).unwrap();
        let own = Some(Rate::PerHour(nz(2)));
        assert!(limiter.check(LimitScope::Application, "a", own).is_ok());
        assert!(limiter.check(LimitScope::Application, "a", own).is_ok());
        assert!(limiter.check(LimitScope::Application, "a", own).is_err(), "its own burst is one unit's worth: 2");
        assert!(limiter.check(LimitScope::Application, "b", None).is_ok(), "others keep the configured limit");
        assert!(limiter.check(LimitScope::Application, "a", None).is_ok(), "override removed: the default again");
        assert!(limiter.check(LimitScope::Application, "a", Some(Rate::Off)).is_ok(), "an override may switch it off");
    }

    #[test]
    fn spraying_many_keys_keeps_memory_bounded() {
        let limits = [(Rate::Off, nz(1)), (Rate::Off, nz(1)), (Rate::PerSecond(nz(10)), nz(10))];
        let limiter = TokenRateLimits::new(limits, 1_000, &Registry::new()).unwrap();
        for i in 0..100_000u32 {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            assert!(limiter.check(LimitScope::Address, &address, None).is_ok());
        }
        let tracked = limiter.tracked(LimitScope::Address);
        assert!(tracked <= 1_000, "{tracked} buckets tracked");
    }
}
