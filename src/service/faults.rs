//! Evaluating fault rules on a request: the rules of every tenant, held in memory and reloaded from
//! the registry after each change here and every `storage.refresh_interval` (so rules written by
//! another replica or process arrive within it). A request with no rule at all costs one read of
//! an empty list. A counted rule's requests are taken from the registry, so "the next 2 requests"
//! means 2 across a cluster. Injected answers are written to the sign-in log as such.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::domain::activity::Outcome;
use crate::domain::clock::Clock;
use crate::domain::fault::{FaultEndpoint, FaultLimit, FaultRule, FaultSubjects};
use crate::domain::ports::{Registry, StoreError};
use crate::domain::sign_in::{PrincipalRef, SignInEvent, SignInKind, SignInPrincipal, SignInSink};

pub struct FaultService {
    registry: Arc<dyn Registry>,
    rules: RwLock<Arc<Vec<FaultRule>>>,
    clock: Arc<dyn Clock>,
    sign_ins: Arc<dyn SignInSink>,
    random: SystemRandom,
}

/// Who an injected answer was for, as the sign-in log records it.
pub struct InjectedSignIn {
    pub kind: SignInKind,
    pub principal: SignInPrincipal,
    pub compute_resource: Option<String>,
    pub resource: String,
    pub caller: Option<IpAddr>,
}

impl FaultService {
    pub fn new(registry: Arc<dyn Registry>, clock: Arc<dyn Clock>, sign_ins: Arc<dyn SignInSink>) -> Self {
        Self { registry, rules: RwLock::default(), clock, sign_ins, random: SystemRandom::new() }
    }

    /// Reloads the rules from the registry.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut rules = self.registry.list_faults().await?;
        rules.retain(|rule| !rule.is_expired(now));
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
        Ok(())
    }

    /// Reloads every `interval`, for as long as the broker runs.
    pub async fn follow(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            // Said once when reloading starts failing (a database outage), and once when it recovers.
            match self.refresh().await {
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "could not reload the fault rules; keeping the ones loaded");
                    failing = true;
                }
                Ok(()) if failing => {
                    tracing::info!("fault rules reloaded again");
                    failing = false;
                }
                _ => {}
            }
        }
    }

    /// Whether no rule is in force anywhere: then no request needs looking at.
    pub fn is_idle(&self) -> bool {
        self.rules.read().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// The rules in force, every tenant's.
    pub fn rules(&self) -> Arc<Vec<FaultRule>> {
        self.rules.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The first rule that fires on this request, its request taken when it is counted: `None`
    /// when none does (the request is served normally).
    pub async fn fire(&self, endpoint: FaultEndpoint, subjects: &FaultSubjects) -> Option<FaultRule> {
        let rules = self.rules();
        if rules.is_empty() {
            return None;
        }
        let now = self.clock.now();
        for rule in rules.iter().filter(|rule| rule.hits(endpoint, subjects, now)) {
            let fires = match rule.limit {
                FaultLimit::Until { .. } => true,
                FaultLimit::Probability { p } => self.draw() < p,
                FaultLimit::Requests { .. } => match self.registry.take_fault(rule.id).await {
                    Ok(taken) => taken,
                    Err(e) => {
                        tracing::warn!(error = %e, rule = %rule.id, "could not count a fault rule's request; not injecting");
                        false
                    }
                },
            };
            if fires {
                return Some(rule.clone());
            }
        }
        None
    }

    /// Writes an injected answer to the sign-in log: a failure whose ficus code is `injected`, with
    /// the AADSTS number of what it imitates.
    pub fn log(&self, rule: &FaultRule, who: InjectedSignIn) {
        let reason = rule.describe();
        self.sign_ins.record(SignInEvent {
            tenant_id: rule.tenant,
            kind: who.kind,
            principal: PrincipalRef::Logged(&who.principal),
            compute_resource: who.compute_resource.as_deref(),
            credential_id: None,
            resource: &who.resource,
            caller_address: who.caller,
            outcome: Outcome::Failure,
            status_code: rule.effect.aadsts(),
            error_code: "injected",
            reason: &reason,
            latency: Duration::ZERO,
            cached: false,
        });
    }

    /// A uniform draw in [0, 1).
    fn draw(&self) -> f64 {
        let mut bytes = [0u8; 8];
        if self.random.fill(&mut bytes).is_err() {
            return 1.0;
        }
        // 53 random bits, as an f64 holds them exactly.
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }
}
