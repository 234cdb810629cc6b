//! Liveness and readiness: ready once keys and the directory are loaded, and not while the server
//! is draining for shutdown. A registry database that stops answering makes the broker *degraded*,
//! not unready: token requests are served from memory and keep succeeding, only admin writes
//! fail (503) until it returns, so a load balancer should keep sending traffic to it.
//!
//! Readiness never waits for the database: it reads what the last heartbeat found
//! ([`StorageStatus`], refreshed every `cluster.heartbeat_interval`). A balancer's check that
//! waited on an unreachable database would time out on every replica at once, and the balancer
//! would take them all out while they could still serve tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::domain::keys::KeyPublisher;
use crate::domain::ports::StorageStatus;

/// The parts of readiness, each with a reason when not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Why the broker must not get traffic.
    pub problems: Vec<String>,
    /// What works less well, while token requests still succeed.
    pub degraded: Vec<String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.problems.is_empty()
    }
}

pub struct HealthService {
    keys: Arc<dyn KeyPublisher>,
    storage: Arc<dyn StorageStatus>,
    draining: AtomicBool,
}

impl HealthService {
    pub fn new(keys: Arc<dyn KeyPublisher>, storage: Arc<dyn StorageStatus>) -> Self {
        Self { keys, storage, draining: AtomicBool::new(false) }
    }

    /// Marks the server as shutting down: readiness fails so balancers stop sending new work.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub async fn readiness(&self) -> Readiness {
        let mut problems = Vec::new();
        let mut degraded = Vec::new();
        if self.draining.load(Ordering::SeqCst) {
            problems.push("shutting down".to_owned());
        }
        if !self.keys.can_sign() {
            problems.push("no signing key is active".to_owned());
        }
        if let Some(problem) = self.storage.problem() {
            degraded.push(format!("storage: {problem}; admin writes are refused, tokens are served from memory"));
        }
        Readiness { problems, degraded }
    }
}
