//! The sign-in log's writer. Request paths merge each sign-in into a pending table without
//! waiting: a request identical to a pending one (the common case: a workload asking for the same
//! token again) adds to that entry's count and builds nothing; a new one becomes an entry with its
//! id and time. The table is sharded by request thread, so request threads do not contend. One
//! background task takes the table's entries a flush interval after the first arrives (or as soon
//! as `batch_size` distinct entries wait), merges those of different shards, and writes them in
//! transactions of at most `batch_size` rows.
//!
//! The table holds at most `capacity` distinct entries: beyond that a new distinct request is
//! dropped and counted (`ficus_signin_log_dropped_total`) rather than slowing requests down, while
//! identical requests still merge. While the database is unavailable the writer holds what it took
//! and retries, so the table fills and only distinct requests beyond it are lost.
//! `ficus_signin_log_written_total` counts requests written, not rows. Every request is also
//! counted in `ficus_token_requests_total{kind,result,error_code}`, so failures show in metrics
//! even when the log drops them.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry as Metrics};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::domain::activity::Outcome;
use crate::domain::clock::Clock;
use crate::domain::ports::{Registry, StoreError};
use crate::domain::sign_in::{Aggregation, Recorded, SignIn, SignInEvent, SignInKind, SignInSink};

/// Where batches go: the registry, or (in tests) something slower.
#[async_trait]
pub trait SignInStore: Send + Sync {
    async fn append(&self, entries: &[SignIn]) -> Result<(), StoreError>;
}

#[async_trait]
impl<T: Registry + ?Sized> SignInStore for T {
    async fn append(&self, entries: &[SignIn]) -> Result<(), StoreError> {
        self.append_sign_ins(entries).await
    }
}

/// The registry's sign-in log as the writer's store.
pub struct RegistrySignIns(pub Arc<dyn Registry>);

#[async_trait]
impl SignInStore for RegistrySignIns {
    async fn append(&self, entries: &[SignIn]) -> Result<(), StoreError> {
        self.0.append_sign_ins(entries).await
    }
}

/// Shards of the pending table. A request thread keeps to one shard (threads are spread over them
/// in turn), so two request threads share a lock only beyond this many threads.
const SHARDS: usize = 16;

thread_local! {
    /// This thread's shard.
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The next thread's shard.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard_of_this_thread() -> usize {
    SHARD.with(|shard| {
        shard.get().unwrap_or_else(|| {
            let assigned = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(Some(assigned));
            assigned
        })
    })
}

/// Sign-ins not yet taken by the writer.
struct Pending {
    shards: [Mutex<Aggregation>; SHARDS],
    /// Distinct entries held over all shards.
    distinct: AtomicUsize,
    capacity: usize,
    batch_size: usize,
    /// The first entry since the writer last took the table.
    arrived: Notify,
    /// `batch_size` distinct entries wait, or the log is closing: take them now.
    full: Notify,
    closed: AtomicBool,
}

impl Pending {
    fn record(&self, event: &SignInEvent<'_>, clock: &dyn Clock) -> Recorded {
        let mut shard = self.shards[shard_of_this_thread()].lock().unwrap_or_else(PoisonError::into_inner);
        let mut held = 0;
        let recorded = shard.record(event, || {
            held = self.distinct.fetch_add(1, Ordering::AcqRel);
            if held >= self.capacity {
                self.distinct.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
            Some((uuid::Uuid::new_v4(), clock.now()))
        });
        drop(shard);
        if recorded == Recorded::Added {
            if held == 0 {
                self.arrived.notify_one();
            }
            if held + 1 == self.batch_size {
                self.full.notify_one();
            }
        }
        recorded
    }

    /// Everything pending, identical requests of different shards merged, in order of first
    /// appearance; the table starts again empty.
    fn take(&self) -> Vec<SignIn> {
        let mut all = Aggregation::default();
        for shard in &self.shards {
            let entries = shard.lock().unwrap_or_else(PoisonError::into_inner).take();
            self.distinct.fetch_sub(entries.len(), Ordering::AcqRel);
            entries.into_iter().for_each(|entry| all.add(entry));
        }
        let mut rows = all.take();
        // Each shard's are in order already; a stable sort interleaves the shards'.
        rows.sort_by_key(|entry| entry.time);
        rows
    }

    /// Waits `flush_interval` from now, or less once `batch_size` distinct entries wait or the log
    /// closes.
    async fn gather(&self, flush_interval: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + flush_interval;
        while !self.is_closed() && self.distinct.load(Ordering::Relaxed) < self.batch_size {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                // A notice left from an earlier batch only makes this look again.
                () = self.full.notified() => {}
            }
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.arrived.notify_one();
        self.full.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

pub struct BatchedSignInLog {
    pending: Arc<Pending>,
    clock: Arc<dyn Clock>,
    dropped: IntCounter,
    /// Every token request by kind, result and error code (a bounded set of codes).
    requests: IntCounterVec,
    /// `requests`' success counters by kind (managed identity, application), resolved once: most
    /// requests succeed, and a label lookup hashes every label.
    succeeded: [IntCounter; 2],
}

impl BatchedSignInLog {
    /// Starts the writer. It ends, after writing what is pending, once the log is dropped.
    pub fn start(
        store: Arc<dyn SignInStore>,
        clock: Arc<dyn Clock>,
        capacity: usize,
        batch_size: usize,
        flush_interval: std::time::Duration,
        metrics: &Metrics,
    ) -> Result<(Arc<Self>, JoinHandle<()>), prometheus::Error> {
        let dropped = IntCounter::new(
            "ficus_signin_log_dropped_total",
            "Sign-in log requests dropped (pending table full or write failed)",
        )?;
        let written =
            IntCounter::new("ficus_signin_log_written_total", "Requests written to the sign-in log (not rows)")?;
        let requests = IntCounterVec::new(
            Opts::new("ficus_token_requests_total", "Token requests by kind, result and error code"),
            &["kind", "result", "error_code"],
        )?;
        metrics.register(Box::new(dropped.clone()))?;
        metrics.register(Box::new(written.clone()))?;
        metrics.register(Box::new(requests.clone()))?;
        let batch_size = batch_size.max(1);
        let pending = Arc::new(Pending {
            shards: std::array::from_fn(|_| Mutex::default()),
            distinct: AtomicUsize::new(0),
            capacity: capacity.max(1),
            batch_size,
            arrived: Notify::new(),
            full: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let lost = dropped.clone();
        let table = pending.clone();
        let writer = tokio::spawn(async move {
            loop {
                // Entries may wait without a notice: one added to a shard already taken while
                // `take` was still on the others saw a count above zero. So the count decides,
                // and the notice only wakes a writer that found nothing (the first entry after
                // that finds the count at zero and leaves a notice, even before the writer waits).
                if table.distinct.load(Ordering::Acquire) == 0 {
                    if table.is_closed() {
                        return;
                    }
                    table.arrived.notified().await;
                    continue;
                }
                table.gather(flush_interval).await;
                let rows = table.take();
                for chunk in rows.chunks(batch_size) {
                    let count = chunk.iter().map(|e| u64::from(e.count)).sum();
                    if write_with_retry(store.as_ref(), chunk, count).await {
                        written.inc_by(count);
                    } else {
                        lost.inc_by(count);
                    }
                }
            }
        });
        let succeeded = [SignInKind::ManagedIdentity, SignInKind::Application]
            .map(|kind| requests.with_label_values(&[kind.as_str(), Outcome::Success.as_str(), ""]));
        Ok((Arc::new(Self { pending, clock, dropped, requests, succeeded }), writer))
    }
}

impl Drop for BatchedSignInLog {
    fn drop(&mut self) {
        self.pending.close();
    }
}

/// Writes one batch. While the store is unavailable (the database is down) it retries with
/// backoff, holding this batch; meanwhile new requests merge into the pending table, and distinct
/// ones beyond its capacity are dropped and counted. A batch the store refuses for any other
/// reason is lost (and counted).
async fn write_with_retry(store: &dyn SignInStore, rows: &[SignIn], count: u64) -> bool {
    let mut backoff = std::time::Duration::from_millis(100);
    let mut warned = false;
    loop {
        match store.append(rows).await {
            Ok(()) => {
                if warned {
                    tracing::info!(entries = count, "sign-in log written again after the store came back");
                }
                return true;
            }
            Err(StoreError::Unavailable(e)) => {
                if !warned {
                    tracing::warn!(error = %e, entries = count, "sign-in log store unavailable; holding the batch and retrying");
                    warned = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, entries = count, "sign-in log batch lost");
                return false;
            }
        }
    }
}

impl SignInSink for BatchedSignInLog {
    fn record(&self, event: SignInEvent<'_>) {
        if event.outcome == Outcome::Success && event.error_code.is_empty() {
            self.succeeded[usize::from(event.kind == SignInKind::Application)].inc();
        } else {
            self.requests.with_label_values(&[event.kind.as_str(), event.outcome.as_str(), event.error_code]).inc();
        }
        if self.pending.record(&event, self.clock.as_ref()) == Recorded::Refused {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::domain::clock::SystemClock;
    use crate::domain::sign_in::{PrincipalRef, sample_event};

    /// Keeps the batches it is given.
    #[derive(Default)]
    struct Batches(Mutex<Vec<Vec<SignIn>>>);

    #[async_trait]
    impl SignInStore for Batches {
        async fn append(&self, entries: &[SignIn]) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(entries.to_vec());
            Ok(())
        }
    }

    impl Batches {
        /// Each batch's rows as (resource, count).
        fn rows(&self) -> Vec<Vec<(String, u32)>> {
            let batches = self.0.lock().unwrap();
            batches.iter().map(|b| b.iter().map(|e| (e.resource.clone(), e.count)).collect()).collect()
        }
    }

    fn event(resource: &str) -> SignInEvent<'_> {
        sample_event(PrincipalRef::Unknown(None), resource)
    }

    fn start_with(
        capacity: usize,
        batch_size: usize,
        flush_interval: Duration,
    ) -> (Arc<Batches>, Metrics, Arc<BatchedSignInLog>, JoinHandle<()>) {
        let store = Arc::new(Batches::default());
        let metrics = Metrics::new();
        let (log, writer) = BatchedSignInLog::start(
            store.clone(),
            Arc::new(SystemClock),
            capacity,
            batch_size,
            flush_interval,
            &metrics,
        )
        .unwrap();
        (store, metrics, log, writer)
    }

    fn start(batch_size: usize, flush_interval: Duration) -> (Arc<Batches>, Arc<BatchedSignInLog>, JoinHandle<()>) {
        let (store, _, log, writer) = start_with(100, batch_size, flush_interval);
        (store, log, writer)
    }

    fn counter(metrics: &Metrics, name: &str) -> Option<f64> {
        metrics
            .gather()
            .into_iter()
            .find(|family| family.name() == name)
            .map(|family| family.get_metric()[0].get_counter().get_value())
    }

    fn rows(resources: &[(&str, u32)]) -> Vec<(String, u32)> {
        resources.iter().map(|&(r, n)| (r.to_owned(), n)).collect()
    }

    #[tokio::test]
    async fn entries_of_one_flush_interval_are_written_in_one_batch_with_identical_ones_merged() {
        let (store, log, writer) = start(100, Duration::from_millis(200));
        for resource in ["api://a", "api://a", "api://b"] {
            log.record(event(resource));
        }
        drop(log);
        writer.await.unwrap();
        assert_eq!(store.rows(), [rows(&[("api://a", 2), ("api://b", 1)])], "one batch");
    }

    #[tokio::test]
    async fn pending_entries_are_written_once_the_flush_interval_ends_while_the_log_stays_open() {
        let (store, log, _writer) = start(100, Duration::from_millis(50));
        log.record(event("api://a"));
        let written = tokio::time::timeout(Duration::from_secs(30), async {
            while store.0.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(written.is_ok(), "the entry was not written");
        assert_eq!(store.rows(), [rows(&[("api://a", 1)])]);
    }

    #[tokio::test]
    async fn a_full_batch_is_written_without_waiting_for_the_flush_interval() {
        let (store, log, _writer) = start(2, Duration::from_secs(60));
        for resource in ["api://a", "api://b", "api://c"] {
            log.record(event(resource));
        }
        // Well before the 60 s interval ends (the log is kept, so it stays open).
        let written = tokio::time::timeout(Duration::from_secs(30), async {
            while store.0.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(written.is_ok(), "the full batch was not written");
        assert_eq!(store.rows()[0], rows(&[("api://a", 1), ("api://b", 1)]), "a write holds at most batch_size rows");
    }

    #[tokio::test]
    async fn identical_requests_merge_beyond_the_batch_size_which_bounds_distinct_entries() {
        let (store, log, writer) = start(2, Duration::from_millis(200));
        for _ in 0..50 {
            log.record(event("api://a"));
        }
        log.record(event("api://b"));
        log.record(event("api://c"));
        drop(log);
        writer.await.unwrap();
        assert_eq!(store.rows(), [rows(&[("api://a", 50), ("api://b", 1)]), rows(&[("api://c", 1)])]);
    }

    #[tokio::test]
    async fn a_full_table_drops_new_distinct_requests_but_still_counts_identical_ones() {
        let (store, metrics, log, writer) = start_with(2, 100, Duration::from_secs(60));
        for resource in ["api://a", "api://b", "api://c", "api://a", "api://b", "api://d"] {
            log.record(event(resource));
        }
        assert_eq!(counter(&metrics, "ficus_signin_log_dropped_total"), Some(2.0), "c and d");
        drop(log);
        writer.await.unwrap();
        assert_eq!(store.rows(), [rows(&[("api://a", 2), ("api://b", 2)])]);
    }

    #[tokio::test]
    async fn identical_requests_from_many_threads_are_one_entry() {
        let (store, log, writer) = start(100, Duration::from_secs(60));
        std::thread::scope(|threads| {
            for _ in 0..8 {
                threads.spawn(|| (0..25).for_each(|_| log.record(event("api://a"))));
            }
        });
        drop(log);
        writer.await.unwrap();
        assert_eq!(store.rows(), [rows(&[("api://a", 200)])], "one row for the 8 threads' 200 requests");
    }

    /// Holds each write until the test lets it through.
    struct Gated {
        gate: tokio::sync::Semaphore,
        batches: Batches,
    }

    #[async_trait]
    impl SignInStore for Gated {
        async fn append(&self, entries: &[SignIn]) -> Result<(), StoreError> {
            self.gate.acquire().await.map_err(|e| StoreError::Unavailable(e.to_string()))?.forget();
            self.batches.append(entries).await
        }
    }

    #[tokio::test]
    async fn requests_made_while_a_batch_is_being_written_go_into_the_next_one() {
        let store = Arc::new(Gated { gate: tokio::sync::Semaphore::new(0), batches: Batches::default() });
        let metrics = Metrics::new();
        let (log, writer) =
            BatchedSignInLog::start(store.clone(), Arc::new(SystemClock), 100, 10, Duration::ZERO, &metrics).unwrap();
        log.record(event("api://a"));
        // The writer takes `a` at once and waits on the store; `b` and `c` arrive meanwhile.
        while log.pending.distinct.load(Ordering::Acquire) != 0 {
            tokio::task::yield_now().await;
        }
        log.record(event("api://b"));
        log.record(event("api://b"));
        log.record(event("api://c"));
        store.gate.add_permits(2);
        let written = tokio::time::timeout(Duration::from_secs(30), async {
            while store.batches.0.lock().unwrap().len() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(written.is_ok(), "the second batch was not written");
        assert_eq!(store.batches.rows(), [rows(&[("api://a", 1)]), rows(&[("api://b", 2), ("api://c", 1)])]);
        drop(log);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn the_written_counter_counts_requests_not_rows() {
        let (store, metrics, log, writer) = start_with(100, 10, Duration::from_millis(50));
        for resource in ["api://a", "api://a", "api://a", "api://b"] {
            log.record(event(resource));
        }
        drop(log);
        writer.await.unwrap();
        assert_eq!(counter(&metrics, "ficus_signin_log_written_total"), Some(4.0), "four requests");
        assert_eq!(store.0.lock().unwrap().concat().len(), 2, "in two rows");
    }

    #[tokio::test]
    async fn requests_are_counted_by_kind_result_and_error_code() {
        let (_, _, log, _writer) = start_with(100, 10, Duration::from_secs(1));
        log.record(event("api://a"));
        log.record(SignInEvent { outcome: Outcome::Failure, error_code: "AADSTS700213", ..event("api://a") });
        let count = |labels: [&str; 3]| log.requests.with_label_values(&labels).get();
        assert_eq!(count(["application", "success", ""]), 1);
        assert_eq!(count(["application", "failure", "AADSTS700213"]), 1);
        assert_eq!(count(["managedIdentity", "success", ""]), 0);
    }
}
