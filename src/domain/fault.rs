//! Fault rules: answers a developer asks the broker to give on purpose, so that a client's retry
//! logic meets what Azure does on a bad day (IMDS upgrading with 410, throttling with 429, 500 and
//! 503, slowness, a dropped connection). A rule names an endpoint, whom it hits (everyone in its
//! tenant, one compute resource, one managed identity or one application), what happens, and for
//! how long (the next N requests, until a time, or with a probability). Rules live in the registry,
//! so every replica of a cluster applies them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ids::{ClientId, ObjectId};
use super::sign_in::aadsts;
use super::tenant::TenantId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("endpoint '{0}' is not one of imds, appService, token, discovery, jwks")]
    UnknownEndpoint(String),
    #[error("status {status} is not injectable on {endpoint}: use one of {allowed}")]
    Status { status: u16, endpoint: &'static str, allowed: String },
    #[error("latency must be between 1 ms and 60 s")]
    Latency,
    #[error("retryAfter must be between 1 and 3600 seconds, and only with status 429 or 503")]
    RetryAfter,
    #[error("requests must be between 1 and 1000000")]
    Requests,
    #[error("probability must be above 0 and at most 1")]
    Probability,
    #[error("a rule lasts for some requests, a duration (1 s to 7 days) or with a probability: give exactly one")]
    Limit,
    #[error("a rule does one thing: a status, a latency or closing the connection")]
    Effect,
    #[error("a rule hits everyone, or one compute resource, identity or application: name at most one")]
    Target,
}

/// The endpoints faults can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultEndpoint {
    Imds,
    AppService,
    Token,
    Discovery,
    Jwks,
}

impl FaultEndpoint {
    pub const ALL: [Self; 5] = [Self::Imds, Self::AppService, Self::Token, Self::Discovery, Self::Jwks];

    pub fn parse(raw: &str) -> Result<Self, FaultError> {
        Self::ALL.into_iter().find(|e| e.as_str() == raw).ok_or_else(|| FaultError::UnknownEndpoint(truncate(raw)))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imds => "imds",
            Self::AppService => "appService",
            Self::Token => "token",
            Self::Discovery => "discovery",
            Self::Jwks => "jwks",
        }
    }

    /// The statuses a rule may inject here: those Azure answers on this endpoint.
    pub fn statuses(self) -> &'static [u16] {
        match self {
            Self::Imds | Self::AppService => &[404, 410, 429, 500, 503],
            Self::Token => &[429, 500, 503],
            Self::Discovery | Self::Jwks => &[500, 503],
        }
    }
}

/// Whom a rule hits, within its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "id")]
pub enum FaultTarget {
    Everyone,
    /// A compute resource, by its resource key (the lower-cased ARM id).
    ComputeResource(String),
    /// A managed identity, by principal id.
    Identity(ObjectId),
    /// An application, by appId.
    Application(ClientId),
}

/// What happens to a request the rule hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum FaultEffect {
    /// The endpoint's own error answer for this status (`Retry-After` with 429 and 503).
    Status { status: u16, retry_after: Option<u32> },
    /// The request is served normally, this much later.
    Latency { millis: u32 },
    /// The connection closes without a complete answer.
    CloseConnection,
}

impl FaultEffect {
    /// From what a request or a world file gives: a status (with an optional `Retry-After`), a
    /// latency, or closing the connection; exactly one.
    pub fn from_parts(
        status: Option<u16>,
        retry_after: Option<u32>,
        latency_ms: Option<u32>,
        close_connection: bool,
    ) -> Result<Self, FaultError> {
        match (status, latency_ms, close_connection) {
            (Some(status), None, false) => Ok(Self::Status { status, retry_after }),
            (None, Some(millis), false) if retry_after.is_none() => Ok(Self::Latency { millis }),
            (None, None, true) if retry_after.is_none() => Ok(Self::CloseConnection),
            _ => Err(FaultError::Effect),
        }
    }

    /// The AADSTS number the sign-in log gives an injected failure: Entra's throttling code for
    /// 429, its transient-error code for a 5xx, a 410 (IMDS updating) or a closed connection, and
    /// its invalid-request code for any other status.
    pub fn aadsts(&self) -> u32 {
        match *self {
            Self::Status { status: 429, .. } => aadsts::THROTTLED,
            Self::Status { status, .. } if status >= 500 || status == 410 => aadsts::TRANSIENT,
            Self::CloseConnection => aadsts::TRANSIENT,
            Self::Status { .. } | Self::Latency { .. } => aadsts::INVALID_REQUEST,
        }
    }
}

/// How long a rule lasts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum FaultLimit {
    /// The next N requests it hits (counted across the cluster).
    Requests { count: u32 },
    /// Every request it hits until this time.
    Until {
        #[serde(with = "time::serde::timestamp")]
        time: OffsetDateTime,
    },
    /// Each request it hits with this probability, until the rule is removed.
    Probability { p: f64 },
}

/// How long a new rule lasts, as given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultDuration {
    /// The next N requests it hits.
    Requests(u32),
    /// Every request it hits for this many seconds from now.
    Seconds(u32),
    /// Each request it hits with this probability, until removed.
    Probability(f64),
}

impl FaultDuration {
    /// From what a request or a world file gives: requests, seconds or a probability; exactly one.
    pub fn from_parts(
        requests: Option<u32>,
        seconds: Option<u32>,
        probability: Option<f64>,
    ) -> Result<Self, FaultError> {
        match (requests, seconds, probability) {
            (Some(count), None, None) => Ok(Self::Requests(count)),
            (None, Some(seconds), None) => Ok(Self::Seconds(seconds)),
            (None, None, Some(p)) => Ok(Self::Probability(p)),
            _ => Err(FaultError::Limit),
        }
    }
}

/// The request a rule is evaluated against: which endpoint, in which tenant, and who is asking as
/// far as the endpoint knows.
#[derive(Debug, Clone, Default)]
pub struct FaultSubjects {
    pub tenant: Option<TenantId>,
    pub compute: Option<String>,
    pub identity: Option<ObjectId>,
    pub application: Option<ClientId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub id: ObjectId,
    pub tenant: TenantId,
    pub endpoint: FaultEndpoint,
    pub target: FaultTarget,
    pub effect: FaultEffect,
    pub limit: FaultLimit,
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
}

impl FaultRule {
    /// A validated rule: the status is one the endpoint answers, `Retry-After` only where Azure
    /// sends it, and bounded latency, counts, probabilities and durations.
    pub fn new(
        tenant: TenantId,
        endpoint: FaultEndpoint,
        target: FaultTarget,
        effect: FaultEffect,
        duration: FaultDuration,
        now: OffsetDateTime,
    ) -> Result<Self, FaultError> {
        match effect {
            FaultEffect::Status { status, retry_after } => {
                if !endpoint.statuses().contains(&status) {
                    let allowed = endpoint.statuses().iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
                    return Err(FaultError::Status { status, endpoint: endpoint.as_str(), allowed });
                }
                if retry_after.is_some_and(|s| !(1..=3600).contains(&s) || !matches!(status, 429 | 503)) {
                    return Err(FaultError::RetryAfter);
                }
            }
            FaultEffect::Latency { millis } if !(1..=60_000).contains(&millis) => return Err(FaultError::Latency),
            FaultEffect::Latency { .. } | FaultEffect::CloseConnection => {}
        }
        let limit = match duration {
            FaultDuration::Requests(count) if (1..=1_000_000).contains(&count) => FaultLimit::Requests { count },
            FaultDuration::Requests(_) => return Err(FaultError::Requests),
            FaultDuration::Probability(p) if p > 0.0 && p <= 1.0 => FaultLimit::Probability { p },
            FaultDuration::Probability(_) => return Err(FaultError::Probability),
            FaultDuration::Seconds(s) if (1..=7 * 86_400).contains(&s) => {
                FaultLimit::Until { time: now + time::Duration::seconds(i64::from(s)) }
            }
            FaultDuration::Seconds(_) => return Err(FaultError::Limit),
        };
        Ok(Self { id: ObjectId::random(), tenant, endpoint, target, effect, limit, created_at: now })
    }

    /// The same rule under a chosen id (a world file's rules have ids derived from their names).
    pub fn with_id(self, id: ObjectId) -> Self {
        Self { id, ..self }
    }

    /// Whether the rule hits this request at `now` (a counted rule must still have requests left,
    /// and a probability is drawn by the caller). A request whose tenant is not known (an unknown
    /// tenant, an IMDS caller bound to no resource) is no tenant's: no rule hits it.
    pub fn hits(&self, endpoint: FaultEndpoint, subjects: &FaultSubjects, now: OffsetDateTime) -> bool {
        if self.endpoint != endpoint || subjects.tenant != Some(self.tenant) {
            return false;
        }
        if let FaultLimit::Until { time } = self.limit
            && now >= time
        {
            return false;
        }
        match &self.target {
            FaultTarget::Everyone => true,
            FaultTarget::ComputeResource(key) => subjects.compute.as_deref() == Some(key.as_str()),
            FaultTarget::Identity(id) => subjects.identity == Some(*id),
            FaultTarget::Application(id) => subjects.application == Some(*id),
        }
    }

    /// Whether the rule can never hit again (its time is over).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        matches!(self.limit, FaultLimit::Until { time } if now >= time)
    }

    /// The latency to add, for a latency rule.
    pub fn latency(&self) -> Option<Duration> {
        match self.effect {
            FaultEffect::Latency { millis } => Some(Duration::from_millis(u64::from(millis))),
            _ => None,
        }
    }

    /// How the sign-in log and the admin API say what it does.
    pub fn describe(&self) -> String {
        let effect = match self.effect {
            FaultEffect::Status { status, retry_after: Some(s) } => format!("{status} (Retry-After: {s})"),
            FaultEffect::Status { status, retry_after: None } => status.to_string(),
            FaultEffect::Latency { millis } => format!("{millis} ms latency"),
            FaultEffect::CloseConnection => "closed connection".to_owned(),
        };
        format!("injected by fault rule {}: {} on {}", self.id, effect, self.endpoint.as_str())
    }
}

fn truncate(raw: &str) -> String {
    raw.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

    fn tenant() -> TenantId {
        TenantId::new(uuid::Uuid::from_u128(7))
    }

    fn rule(endpoint: FaultEndpoint, target: FaultTarget, effect: FaultEffect, limit: FaultDuration) -> FaultRule {
        FaultRule::new(tenant(), endpoint, target, effect, limit, NOW).unwrap()
    }

    const ONCE: FaultDuration = FaultDuration::Requests(1);

    #[test]
    fn a_rule_injects_only_statuses_its_endpoint_answers_and_retry_after_only_with_429_or_503() {
        let status = |status, retry_after| FaultEffect::Status { status, retry_after };
        let make = |endpoint, effect| FaultRule::new(tenant(), endpoint, FaultTarget::Everyone, effect, ONCE, NOW);
        assert!(make(FaultEndpoint::Imds, status(410, None)).is_ok());
        let refused = make(FaultEndpoint::Token, status(410, None)).unwrap_err();
        assert_eq!(refused.to_string(), "status 410 is not injectable on token: use one of 429, 500, 503");
        assert!(make(FaultEndpoint::Token, status(429, Some(1))).is_ok());
        assert_eq!(make(FaultEndpoint::Imds, status(500, Some(1))), Err(FaultError::RetryAfter));
        assert_eq!(make(FaultEndpoint::Jwks, FaultEffect::Latency { millis: 0 }), Err(FaultError::Latency));
    }

    #[test]
    fn limits_are_bounded() {
        let make = |limit| {
            FaultRule::new(
                tenant(),
                FaultEndpoint::Imds,
                FaultTarget::Everyone,
                FaultEffect::CloseConnection,
                limit,
                NOW,
            )
        };
        assert_eq!(make(FaultDuration::Requests(0)), Err(FaultError::Requests));
        assert_eq!(make(FaultDuration::Probability(0.0)), Err(FaultError::Probability));
        assert_eq!(make(FaultDuration::Probability(f64::NAN)), Err(FaultError::Probability));
        assert_eq!(make(FaultDuration::Seconds(0)), Err(FaultError::Limit));
        let thirty = make(FaultDuration::Seconds(30)).unwrap();
        assert_eq!(thirty.limit, FaultLimit::Until { time: NOW + time::Duration::seconds(30) });
    }

    #[test]
    fn a_rule_hits_its_endpoint_and_target_in_its_tenant_until_its_time_is_over() {
        let vm = FaultTarget::ComputeResource("/subscriptions/s/resourcegroups/rg/x/vm".to_owned());
        let until = FaultDuration::Seconds(30);
        let r = rule(FaultEndpoint::Imds, vm, FaultEffect::Status { status: 404, retry_after: None }, until);
        let caller = FaultSubjects {
            tenant: Some(tenant()),
            compute: Some("/subscriptions/s/resourcegroups/rg/x/vm".to_owned()),
            ..FaultSubjects::default()
        };
        assert!(r.hits(FaultEndpoint::Imds, &caller, NOW));
        assert!(!r.hits(FaultEndpoint::AppService, &caller, NOW), "another endpoint");
        let other_vm = FaultSubjects { compute: Some("other".to_owned()), ..caller.clone() };
        assert!(!r.hits(FaultEndpoint::Imds, &other_vm, NOW), "another resource");
        let other_tenant = FaultSubjects { tenant: Some(TenantId::new(uuid::Uuid::from_u128(8))), ..caller.clone() };
        assert!(!r.hits(FaultEndpoint::Imds, &other_tenant, NOW), "another tenant");
        assert!(!r.hits(FaultEndpoint::Imds, &caller, NOW + time::Duration::seconds(30)), "over");
        assert!(r.is_expired(NOW + time::Duration::seconds(30)));
        let everyone = rule(FaultEndpoint::Jwks, FaultTarget::Everyone, FaultEffect::CloseConnection, ONCE);
        let anyone = FaultSubjects { tenant: Some(tenant()), ..FaultSubjects::default() };
        assert!(everyone.hits(FaultEndpoint::Jwks, &anyone, NOW));
        assert!(!everyone.hits(FaultEndpoint::Jwks, &FaultSubjects::default(), NOW), "no tenant: no one's rule");
    }
}
