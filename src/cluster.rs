//! Replica membership. Each replica records a heartbeat in the registry (the `ReplicaRoster`
//! port) every `cluster.heartbeat_interval` and learns how many replicas beat within
//! `cluster.replica_expiry`; [`LiveReplicas`] carries that count to the rate limiter, which divides
//! each cluster-wide limit between the live replicas. The heartbeat also feeds the cluster's gauges
//! in `/metrics`: the replica's identity, the live count, how many changes its in-memory directory
//! is behind the database, and whether storage answers (which readiness reports too, without a
//! query of its own). With SQLite the roster is this process alone and only the gauges move.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

use crate::domain::ports::{ReplicaBeat, ReplicaRoster, StorageStatus, StoreError};
use crate::store::DirectorySnapshot;

/// How many replicas share the cluster-wide limits, as the last heartbeat counted (at least 1).
#[derive(Debug)]
pub struct LiveReplicas(AtomicU32);

impl LiveReplicas {
    /// One replica: this one, until a heartbeat says otherwise.
    pub fn alone() -> Self {
        Self(AtomicU32::new(1))
    }

    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the count (at least 1) and returns the one before.
    pub(crate) fn set(&self, count: u32) -> u32 {
        self.0.swap(count.max(1), Ordering::Relaxed)
    }
}

/// This replica's place in the cluster: its heartbeat and the gauges it keeps current.
pub struct Membership {
    roster: Arc<dyn ReplicaRoster>,
    beat: ReplicaBeat,
    expiry: Duration,
    live: Arc<LiveReplicas>,
    directory: Arc<DirectorySnapshot>,
    live_gauge: IntGauge,
    behind_gauge: IntGauge,
    storage_up: IntGauge,
    /// Why the last heartbeat failed; `None` after one that succeeded.
    storage_problem: std::sync::Mutex<Option<String>>,
}

impl Membership {
    pub fn new(
        roster: Arc<dyn ReplicaRoster>,
        beat: ReplicaBeat,
        expiry: Duration,
        live: Arc<LiveReplicas>,
        directory: Arc<DirectorySnapshot>,
        metrics: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let info = IntGaugeVec::new(
            Opts::new("ficus_replica_info", "This replica: its name in the cluster and its version (always 1)"),
            &["replica", "version"],
        )?;
        info.with_label_values(&[beat.replica.as_str(), beat.version.as_str()]).set(1);
        let live_gauge =
            IntGauge::new("ficus_cluster_live_replicas", "Replicas whose heartbeat is within cluster.replica_expiry")?;
        let behind_gauge = IntGauge::new(
            "ficus_directory_changes_behind",
            "Changes in the registry's change log that this replica's in-memory directory has not applied yet",
        )?;
        let storage_up = IntGauge::new("ficus_storage_up", "1 when the last heartbeat reached the registry's storage")?;
        for gauge in [&live_gauge, &behind_gauge, &storage_up] {
            metrics.register(Box::new(gauge.clone()))?;
        }
        metrics.register(Box::new(info))?;
        live_gauge.set(i64::from(live.get()));
        Ok(Self {
            roster,
            beat,
            expiry,
            live,
            directory,
            live_gauge,
            behind_gauge,
            storage_up,
            storage_problem: std::sync::Mutex::default(),
        })
    }

    /// One heartbeat: records this replica, then updates the live count and the gauges.
    pub async fn beat(&self) -> Result<(), StoreError> {
        // Bounded like the expiry, so a database that does not answer at all is reported as
        // such before another beat is due.
        let answered = tokio::time::timeout(self.expiry, self.roster.beat(&self.beat, self.expiry)).await;
        let view = match answered.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!("no answer within {}", humantime::format_duration(self.expiry))))
        }) {
            Ok(view) => view,
            Err(e) => {
                // The last count stands: every replica loses the database together, and the
                // limits should not jump while it is away.
                self.storage_up.set(0);
                self.set_problem(Some(e.to_string()));
                return Err(e);
            }
        };
        self.storage_up.set(1);
        self.set_problem(None);
        let before = self.live.set(view.live_replicas);
        if before != view.live_replicas {
            tracing::info!(
                replica = %self.beat.replica,
                live = view.live_replicas,
                before,
                "live replicas changed: each enforces 1/{} of the rate limits",
                view.live_replicas
            );
        }
        self.live_gauge.set(i64::from(view.live_replicas));
        let behind = view.newest_change.saturating_sub(self.directory.applied());
        self.behind_gauge.set(i64::try_from(behind).unwrap_or(i64::MAX));
        Ok(())
    }

    fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut slot) = self.storage_problem.lock() {
            *slot = problem;
        }
    }

    /// Beats every `interval`, for as long as the task runs.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticker.tick().await;
            match self.beat().await {
                Ok(()) if failing => {
                    tracing::info!("heartbeat recorded again; storage answers");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "could not record this replica's heartbeat; keeping the last replica count");
                    }
                    failing = true;
                }
            }
        }
    }

    /// Takes this replica off the roster, so the others count it gone at once (a clean stop).
    pub async fn leave(&self) {
        if let Err(e) = self.roster.leave(&self.beat.replica).await {
            tracing::warn!(error = %e, "could not take this replica off the roster; the others count it gone after cluster.replica_expiry");
        }
    }
}

impl StorageStatus for Membership {
    fn problem(&self) -> Option<String> {
        self.storage_problem.lock().ok().and_then(|slot| slot.clone())
    }
}

/// The default replica name: `<hostname>:<port>`, unique per host and readable in dashboards.
pub fn default_replica_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}
