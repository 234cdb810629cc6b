//! The rate-limit port: token requests are counted per application, per managed identity and per
//! source address; past a limit the caller is told how long to wait.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Application,
    Identity,
    Address,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Identity => "identity",
            Self::Address => "address",
        }
    }
}

pub trait RateLimiter: Send + Sync {
    /// `Err(wait)` when `key` is over its limit in `scope`.
    fn check(&self, scope: LimitScope, key: &str) -> Result<(), Duration>;
}
