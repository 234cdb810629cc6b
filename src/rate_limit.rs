//! Token-path rate limits (governor token buckets) per application, per managed identity, per
//! compute resource and per source address, and a limit on a compute resource's requests in
//! flight (`rate_limits.profile = "azure"`: Azure's 20 requests per second and 5 concurrent
//! requests per VM). Each scope keeps at most `rate_limits.max_tracked_keys` buckets (moka, least
//! recently used forgotten first), so spraying millions of addresses cannot grow memory without
//! bound; a forgotten key starts again with a full bucket.
//!
//! An application may have its own limit in the registry (`Application::rate_limit`), with a burst
//! of one unit's worth (`"500/s"`: 500); its bucket is rebuilt when that limit changes.
//!
//! Limits are the cluster's: with N live replicas (`cluster::LiveReplicas`, from the heartbeat)
//! each replica's bucket refills at 1/N of the rate with 1/N of the burst (rounded up), so a
//! balancer spreading the load sees the configured limit in total. Buckets are rebuilt when N
//! changes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::cluster::LiveReplicas;
pub use crate::domain::rate_limit::Rate;
use crate::domain::rate_limit::{InFlight, LimitScope, RateLimiter};

/// What is limited: (rate, burst) per scope, in `LimitScope` order (applications, identities,
/// compute resources, addresses), and how many requests a compute resource may have in flight.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub rates: [(Rate, NonZeroU32); 4],
    pub compute_in_flight: Option<NonZeroU32>,
}

/// How long a request refused for too many in flight is told to wait.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// This replica's share of `rate` with `burst` when `replicas` share it; `None` when off.
fn quota(rate: Rate, burst: NonZeroU32, replicas: NonZeroU32) -> Option<Quota> {
    let (count, unit) = match rate {
        Rate::Off => return None,
        Rate::PerSecond(n) => (n, Duration::from_secs(1)),
        Rate::PerMinute(n) => (n, Duration::from_secs(60)),
        Rate::PerHour(n) => (n, Duration::from_secs(3600)),
    };
    let period = unit * replicas.get() / count.get();
    let burst = NonZeroU32::new(burst.get().div_ceil(replicas.get())).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|quota| quota.allow_burst(burst))
}

/// A key's bucket, with what it was built for: the key's own rate (`None`: the scope's) and the
/// number of replicas sharing the limit.
struct Bucket {
    own: Option<Rate>,
    replicas: NonZeroU32,
    limiter: Option<DefaultDirectRateLimiter>,
}

struct Scope {
    rate: Rate,
    burst: NonZeroU32,
    buckets: moka::sync::Cache<String, Arc<Bucket>>,
}

pub struct TokenRateLimits {
    scopes: [Scope; 4],
    /// Requests in flight per compute resource, and the cluster-wide limit on them.
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
    max_in_flight: Option<NonZeroU32>,
    replicas: Arc<LiveReplicas>,
    limited: IntCounterVec,
    clock: DefaultClock,
}

/// Calls `f` with `key` written out: on the stack when it fits (addresses, ids), so a limited
/// request allocates no key; on the heap otherwise (a long resource id).
fn with_text<R>(key: &dyn std::fmt::Display, f: impl FnOnce(&str) -> R) -> R {
    use std::fmt::Write as _;
    struct Stack {
        bytes: [u8; 64],
        len: usize,
    }
    impl std::fmt::Write for Stack {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            let end = self.len + text.len();
            self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(text.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut stack = Stack { bytes: [0; 64], len: 0 };
    match write!(stack, "{key}").ok().and_then(|()| std::str::from_utf8(&stack.bytes[..stack.len]).ok()) {
        Some(text) => f(text),
        None => f(&key.to_string()),
    }
}

fn index(scope: LimitScope) -> usize {
    match scope {
        LimitScope::Application => 0,
        LimitScope::Identity => 1,
        LimitScope::ComputeResource => 2,
        LimitScope::Address => 3,
    }
}

impl TokenRateLimits {
    /// `limits`: the whole cluster's; `replicas`: how many replicas share them.
    pub fn new(
        limits: Limits,
        max_keys: u64,
        replicas: Arc<LiveReplicas>,
        metrics: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let limited = IntCounterVec::new(
            Opts::new("ficus_rate_limited_total", "Token requests refused by a rate limit, by scope"),
            &["scope"],
        )?;
        metrics.register(Box::new(limited.clone()))?;
        let scopes = limits.rates.map(|(rate, burst)| Scope {
            rate,
            burst,
            buckets: moka::sync::Cache::builder().max_capacity(max_keys).build(),
        });
        Ok(Self {
            scopes,
            in_flight: Arc::default(),
            max_in_flight: limits.compute_in_flight,
            replicas,
            limited,
            clock: DefaultClock::default(),
        })
    }

    /// Buckets currently tracked in `scope` (after pending evictions).
    pub fn tracked(&self, scope: LimitScope) -> u64 {
        let buckets = &self.scopes[index(scope)].buckets;
        buckets.run_pending_tasks();
        buckets.entry_count()
    }
}

impl RateLimiter for TokenRateLimits {
    fn check(&self, scope: LimitScope, key: &dyn std::fmt::Display, own: Option<Rate>) -> Result<(), Duration> {
        let state = &self.scopes[index(scope)];
        let (rate, burst) = match own {
            Some(rate) => (rate, rate.unit_count()),
            None => (state.rate, state.burst),
        };
        if rate == Rate::Off {
            return Ok(());
        }
        let replicas = NonZeroU32::new(self.replicas.get()).unwrap_or(NonZeroU32::MIN);
        let build = || {
            let limiter = quota(rate, burst, replicas).map(DefaultDirectRateLimiter::direct);
            Arc::new(Bucket { own, replicas, limiter })
        };
        let bucket = with_text(key, |key| {
            let bucket = state.buckets.get_with_by_ref(key, build);
            if bucket.own == own && bucket.replicas == replicas {
                return bucket;
            }
            let bucket = build();
            state.buckets.insert(key.to_owned(), Arc::clone(&bucket));
            bucket
        });
        let Some(limiter) = &bucket.limiter else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            self.limited.with_label_values(&[scope.as_str()]).inc();
            not_until.wait_time_from(self.clock.now())
        })
    }

    fn counts_in_flight(&self, scope: LimitScope) -> bool {
        scope == LimitScope::ComputeResource && self.max_in_flight.is_some()
    }

    fn enter(&self, scope: LimitScope, key: &str) -> Result<InFlight, Duration> {
        let (LimitScope::ComputeResource, Some(max)) = (scope, self.max_in_flight) else {
            return Ok(InFlight::uncounted());
        };
        // This replica's share, as for rates (never below one).
        let share = max.get().div_ceil(self.replicas.get().max(1));
        let mut counts = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.to_owned()).or_insert(0);
        if *count >= share {
            drop(counts);
            self.limited.with_label_values(&["compute_resource_in_flight"]).inc();
            return Err(IN_FLIGHT_RETRY);
        }
        *count += 1;
        Ok(InFlight::counted(Leaves { counts: Arc::clone(&self.in_flight), key: key.to_owned() }))
    }
}

/// Ends a request's count in flight when dropped; a key with none in flight is forgotten, so the
/// map holds only what is in flight.
struct Leaves {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    key: String,
}

impl Drop for Leaves {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    /// Applications, identities and addresses as given; compute resources unlimited.
    fn rates([application, identity, address]: [(Rate, NonZeroU32); 3]) -> Limits {
        Limits { rates: [application, identity, (Rate::Off, nz(1)), address], compute_in_flight: None }
    }

    #[test]
    fn a_compute_resource_may_have_only_so_many_requests_in_flight_and_each_that_ends_frees_a_place() {
        let limits = Limits { compute_in_flight: Some(nz(5)), ..rates([(Rate::Off, nz(1)); 3]) };
        let replicas = Arc::new(LiveReplicas::alone());
        let limiter = TokenRateLimits::new(limits, 100, replicas.clone(), &Registry::new()).unwrap();
        let held: Vec<InFlight> = (0..5).map(|_| limiter.enter(LimitScope::ComputeResource, "vm").unwrap()).collect();
        assert!(held.iter().all(InFlight::is_counted));
        assert_eq!(limiter.enter(LimitScope::ComputeResource, "vm").err(), Some(IN_FLIGHT_RETRY), "the sixth waits");
        assert!(limiter.enter(LimitScope::ComputeResource, "other-vm").is_ok(), "per resource");
        assert!(!limiter.enter(LimitScope::Identity, "vm").unwrap().is_counted(), "other scopes are not counted");
        drop(held);
        assert!(limiter.in_flight.lock().unwrap().is_empty(), "nothing in flight is remembered");
        replicas.set(2);
        let share: Vec<_> = (0..4).map(|_| limiter.enter(LimitScope::ComputeResource, "vm")).collect();
        let admitted: Vec<bool> = share.iter().map(Result::is_ok).collect();
        assert_eq!(admitted, [true, true, true, false], "two replicas: 3 each (5 / 2, rounded up)");
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
    fn keys_are_written_out_whole_short_or_long() {
        let address: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(with_text(&address, str::to_owned), "2001:db8::1");
        let long = "/subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/virtualMachines/a-long-name";
        assert!(long.len() > 64);
        assert_eq!(with_text(&long, str::to_owned), long);
    }

    #[test]
    fn a_key_past_its_burst_is_told_when_to_retry_and_others_are_not_affected() {
        let limits = rates([(Rate::PerHour(nz(1)), nz(2)), (Rate::Off, nz(1)), (Rate::Off, nz(1))]);
        let limiter = TokenRateLimits::new(limits, 100, Arc::new(LiveReplicas::alone()), &Registry::new()).unwrap();
        assert!(limiter.check(LimitScope::Application, &"a", None).is_ok());
        assert!(limiter.check(LimitScope::Application, &"a", None).is_ok());
        let wait = limiter.check(LimitScope::Application, &"a", None).unwrap_err();
        assert!(wait > Duration::from_secs(60), "{wait:?}");
        assert!(limiter.check(LimitScope::Application, &"b", None).is_ok());
        assert!(limiter.check(LimitScope::Identity, &"a", None).is_ok(), "an unlimited scope");
    }

    #[test]
    fn a_key_with_its_own_rate_gets_its_own_bucket_rebuilt_when_the_rate_changes() {
        let limits = rates([(Rate::PerHour(nz(1000)), nz(1000)), (Rate::Off, nz(1)), (Rate::Off, nz(1))]);
        let limiter = TokenRateLimits::new(limits, 100, Arc::new(LiveReplicas::alone()), &Registry::new()).unwrap();
        let own = Some(Rate::PerHour(nz(2)));
        assert!(limiter.check(LimitScope::Application, &"a", own).is_ok());
        assert!(limiter.check(LimitScope::Application, &"a", own).is_ok());
        assert!(limiter.check(LimitScope::Application, &"a", own).is_err(), "its own burst is one unit's worth: 2");
        assert!(limiter.check(LimitScope::Application, &"b", None).is_ok(), "others keep the configured limit");
        assert!(limiter.check(LimitScope::Application, &"a", None).is_ok(), "override removed: the default again");
        assert!(limiter.check(LimitScope::Application, &"a", Some(Rate::Off)).is_ok(), "an override may switch it off");
    }

    #[test]
    fn each_of_n_replicas_refills_at_one_nth_of_the_rate_with_one_nth_of_the_burst() {
        let share = quota(Rate::PerSecond(nz(300)), nz(400), nz(3)).unwrap();
        assert_eq!(share.replenish_interval(), Duration::from_millis(10), "100/s each");
        assert_eq!(share.burst_size(), nz(134), "400 / 3, rounded up");
        let alone = quota(Rate::PerMinute(nz(6)), nz(1), nz(1)).unwrap();
        assert_eq!(alone.replenish_interval(), Duration::from_secs(10));
        assert_eq!(quota(Rate::PerSecond(nz(2)), nz(1), nz(5)).unwrap().burst_size(), nz(1), "never below one");
    }

    #[test]
    fn a_cluster_wide_limit_is_divided_between_the_live_replicas_and_rebuilt_when_their_number_changes() {
        let limits = rates([(Rate::PerHour(nz(6)), nz(6)), (Rate::Off, nz(1)), (Rate::Off, nz(1))]);
        let replicas = Arc::new(LiveReplicas::alone());
        replicas.set(3);
        let limiter = TokenRateLimits::new(limits, 100, replicas.clone(), &Registry::new()).unwrap();
        let accepted = |n| (0..n).filter(|_| limiter.check(LimitScope::Application, &"a", None).is_ok()).count();
        assert_eq!(accepted(10), 2, "a third of the burst of 6 while three replicas are alive");
        replicas.set(1);
        assert_eq!(accepted(10), 6, "alone again: the whole burst");
    }

    #[test]
    fn spraying_many_keys_keeps_memory_bounded() {
        let limits = rates([(Rate::Off, nz(1)), (Rate::Off, nz(1)), (Rate::PerSecond(nz(10)), nz(10))]);
        let limiter = TokenRateLimits::new(limits, 1_000, Arc::new(LiveReplicas::alone()), &Registry::new()).unwrap();
        for i in 0..100_000u32 {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            assert!(limiter.check(LimitScope::Address, &address, None).is_ok());
        }
        let tracked = limiter.tracked(LimitScope::Address);
        assert!(tracked <= 1_000, "{tracked} buckets tracked");
    }
}
