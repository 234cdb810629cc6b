//! The rate-limit port: token requests are counted per application, per managed identity, per
//! compute resource (the VM calling IMDS) and per source address; past a limit the caller is told
//! how long to wait. Requests in flight may be limited too (Azure's concurrent requests per VM).

use std::num::NonZeroU32;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Application,
    Identity,
    /// The compute resource calling a managed-identity endpoint (Azure's per-VM limits).
    ComputeResource,
    Address,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Identity => "identity",
            Self::ComputeResource => "compute_resource",
            Self::Address => "address",
        }
    }
}

pub trait RateLimiter: Send + Sync {
    /// `Err(wait)` when `key` is over its limit in `scope`: the scope's configured limit, or
    /// `own` when the key has its own (an application's override in the registry). The key is
    /// written out only where the scope has a limit.
    fn check(&self, scope: LimitScope, key: &dyn std::fmt::Display, own: Option<Rate>) -> Result<(), Duration>;

    /// Counts a request of `key` in flight in `scope` until the returned guard drops. `Err(wait)`
    /// when the scope's limit on requests in flight is reached.
    fn enter(&self, scope: LimitScope, key: &str) -> Result<InFlight, Duration>;

    /// Whether `scope` limits requests in flight at all (else `enter` counts nothing, and callers
    /// need not work out the key).
    fn counts_in_flight(&self, scope: LimitScope) -> bool;
}

/// A request counted in flight; dropping it ends the count.
pub struct InFlight(Option<Box<dyn Send + Sync>>);

impl InFlight {
    /// Counted by `guard`, whose drop ends the count.
    pub fn counted(guard: impl Send + Sync + 'static) -> Self {
        Self(Some(Box::new(guard)))
    }

    /// Not counted: the scope has no limit on requests in flight.
    pub fn uncounted() -> Self {
        Self(None)
    }

    pub fn is_counted(&self) -> bool {
        self.0.is_some()
    }
}

/// A rate as configured: `"100/s"`, `"30/min"`, `"500/h"`, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Off,
    PerSecond(NonZeroU32),
    PerMinute(NonZeroU32),
    PerHour(NonZeroU32),
}

impl Rate {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim() == "off" {
            return Ok(Self::Off);
        }
        let (count, unit) = raw.trim().split_once('/').ok_or("use N/s, N/min, N/h or off")?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| format!("'{count}' is not a positive number"))?;
        match unit.trim() {
            "s" => Ok(Self::PerSecond(count)),
            "min" => Ok(Self::PerMinute(count)),
            "h" => Ok(Self::PerHour(count)),
            other => Err(format!("unknown unit '{other}': use s, min or h")),
        }
    }

    /// The number of requests per unit (the burst an application's own limit allows); 1 for off.
    pub fn unit_count(self) -> NonZeroU32 {
        match self {
            Self::Off => NonZeroU32::MIN,
            Self::PerSecond(n) | Self::PerMinute(n) | Self::PerHour(n) => n,
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::PerSecond(n) => write!(f, "{n}/s"),
            Self::PerMinute(n) => write!(f, "{n}/min"),
            Self::PerHour(n) => write!(f, "{n}/h"),
        }
    }
}
