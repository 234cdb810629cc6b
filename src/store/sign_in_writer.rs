//! The sign-in log's writer: request paths hand entries to a bounded queue without waiting; one
//! background task gathers them for a flush interval (or until the batch holds `batch_size`
//! distinct entries), merging identical requests into one entry with a count as they arrive, and
//! writes the batch in one transaction. When the queue is full, entries are dropped and counted
//! (`ficus_signin_log_dropped_total`) rather than slowing requests down. While the database is
//! unavailable the writer holds its batch and retries, so the queue fills and only what overflows
//! it is lost. `ficus_signin_log_written_total` counts requests written, not rows.
//! Every entry is also counted in `ficus_token_requests_total{kind,result,error_code}`, so
//! failures show in metrics even when the log drops them.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry as Metrics};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::domain::activity::Outcome;
use crate::domain::ports::{Registry, StoreError};
use crate::domain::sign_in::{Aggregation, SignIn, SignInKind, SignInSink};

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

pub struct BatchedSignInLog {
    queue: mpsc::Sender<SignIn>,
    dropped: IntCounter,
    /// Every token request by kind, result and error code (a bounded set of codes).
    requests: IntCounterVec,
    /// `requests`' success counters by kind (managed identity, application), resolved once: most
    /// requests succeed, and a label lookup hashes every label.
    succeeded: [IntCounter; 2],
}

impl BatchedSignInLog {
    /// Starts the writer. It ends, after writing what is queued, once every sink clone is dropped.
    pub fn start(
        store: Arc<dyn SignInStore>,
        capacity: usize,
        batch_size: usize,
        flush_interval: std::time::Duration,
        metrics: &Metrics,
    ) -> Result<(Arc<Self>, JoinHandle<()>), prometheus::Error> {
        let dropped = IntCounter::new(
            "ficus_signin_log_dropped_total",
            "Sign-in log entries dropped (queue full or write failed)",
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
        let (queue, mut receiver) = mpsc::channel::<SignIn>(capacity.max(1));
        let lost = dropped.clone();
        let batch_size = batch_size.max(1);
        let writer = tokio::spawn(async move {
            let mut batch = Aggregation::default();
            while let Some(entry) = receiver.recv().await {
                batch.add(entry);
                gather(&mut receiver, &mut batch, batch_size, flush_interval).await;
                let count = batch.requests();
                let rows = batch.take();
                if write_with_retry(store.as_ref(), &rows, count).await {
                    written.inc_by(count);
                } else {
                    lost.inc_by(count);
                }
            }
        });
        let succeeded = [SignInKind::ManagedIdentity, SignInKind::Application]
            .map(|kind| requests.with_label_values(&[kind.as_str(), Outcome::Success.as_str(), ""]));
        Ok((Arc::new(Self { queue, dropped, requests, succeeded }), writer))
    }
}

/// How often a gathering writer looks whether a batch is full, so that requests never wake it.
const GATHER_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// Adds to `batch` from the queue for up to `flush_interval`, or until it holds `batch_size`
/// distinct entries or the queue closes. Identical requests merge as they arrive, so a busy
/// workload costs one row per interval whatever its rate, and the batch's memory is bounded by
/// `batch_size` rows. It looks at the queue every [`GATHER_TICK`] rather than waiting on it: a
/// writer waiting on the queue would be woken by every entry, one task wake-up per token request
/// on the request path's cores.
async fn gather(
    receiver: &mut mpsc::Receiver<SignIn>,
    batch: &mut Aggregation,
    batch_size: usize,
    flush_interval: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + flush_interval;
    loop {
        // At most what the queue holds at one time per look, so that a queue refilled as fast as
        // it drains still lets the writer see its deadline (and yield its core).
        let mut looked = 0;
        while batch.len() < batch_size && looked < receiver.max_capacity() {
            looked += 1;
            match receiver.try_recv() {
                Ok(entry) => batch.add(entry),
                Err(_) => break,
            }
        }
        let now = tokio::time::Instant::now();
        if batch.len() >= batch_size || now >= deadline || receiver.is_closed() {
            return;
        }
        tokio::time::sleep(GATHER_TICK.min(deadline - now)).await;
    }
}

/// Writes one batch. While the store is unavailable (the database is down) it retries with
/// backoff, holding this batch; meanwhile new entries wait in the bounded queue, and are dropped
/// and counted beyond it. A batch the store refuses for any other reason is lost (and counted).
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
    fn record(&self, entry: SignIn) {
        if entry.outcome == Outcome::Success && entry.error_code.is_empty() {
            self.succeeded[usize::from(entry.kind == SignInKind::Application)].inc();
        } else {
            self.requests.with_label_values(&[entry.kind.as_str(), entry.outcome.as_str(), &entry.error_code]).inc();
        }
        if self.queue.try_send(entry).is_err() {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::domain::sign_in::SignInPrincipal;
    use crate::domain::tenant::TenantId;

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

    fn entry(resource: &str) -> SignIn {
        SignIn {
            id: uuid::Uuid::new_v4(),
            time: OffsetDateTime::UNIX_EPOCH,
            tenant_id: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
            kind: SignInKind::Application,
            principal: SignInPrincipal::default(),
            compute_resource: None,
            credential_id: None,
            resource: resource.into(),
            caller_address: None,
            outcome: Outcome::Success,
            status_code: 0,
            error_code: String::new(),
            reason: String::new(),
            latency: Duration::from_millis(1),
            cached: true,
            count: 1,
        }
    }

    fn start(batch_size: usize, flush_interval: Duration) -> (Arc<Batches>, Arc<BatchedSignInLog>, JoinHandle<()>) {
        let store = Arc::new(Batches::default());
        let metrics = Metrics::new();
        let (log, writer) = BatchedSignInLog::start(store.clone(), 100, batch_size, flush_interval, &metrics).unwrap();
        (store, log, writer)
    }

    #[tokio::test]
    async fn entries_of_one_flush_interval_are_written_in_one_batch_with_identical_ones_merged() {
        let (store, log, writer) = start(100, Duration::from_millis(200));
        for resource in ["api://a", "api://a", "api://b"] {
            log.record(entry(resource));
        }
        drop(log);
        writer.await.unwrap();
        let batches = store.0.lock().unwrap();
        assert_eq!(batches.len(), 1, "one batch");
        let counts: Vec<(&str, u32)> = batches[0].iter().map(|e| (e.resource.as_str(), e.count)).collect();
        assert_eq!(counts, [("api://a", 2), ("api://b", 1)]);
    }

    #[tokio::test]
    async fn a_full_batch_is_written_without_waiting_for_the_flush_interval() {
        let (store, log, _writer) = start(2, Duration::from_secs(60));
        for resource in ["api://a", "api://b", "api://c"] {
            log.record(entry(resource));
        }
        // Well before the 60 s interval ends (the sink is kept, so the queue stays open).
        let written = tokio::time::timeout(Duration::from_secs(30), async {
            while store.0.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(written.is_ok(), "the full batch was not written");
        let first: Vec<String> = store.0.lock().unwrap()[0].iter().map(|e| e.resource.clone()).collect();
        assert_eq!(first, ["api://a", "api://b"], "a batch holds at most batch_size requests");
    }

    #[tokio::test]
    async fn identical_requests_merge_beyond_the_batch_size_which_bounds_distinct_entries() {
        let (store, log, writer) = start(2, Duration::from_millis(200));
        for _ in 0..50 {
            log.record(entry("api://a"));
        }
        log.record(entry("api://b"));
        log.record(entry("api://c"));
        drop(log);
        writer.await.unwrap();
        let batches = store.0.lock().unwrap();
        let rows: Vec<Vec<(&str, u32)>> =
            batches.iter().map(|b| b.iter().map(|e| (e.resource.as_str(), e.count)).collect()).collect();
        assert_eq!(rows, [vec![("api://a", 50), ("api://b", 1)], vec![("api://c", 1)]]);
    }

    #[tokio::test]
    async fn the_written_counter_counts_requests_not_rows() {
        let store = Arc::new(Batches::default());
        let metrics = Metrics::new();
        let (log, writer) =
            BatchedSignInLog::start(store.clone(), 100, 10, Duration::from_millis(50), &metrics).unwrap();
        for resource in ["api://a", "api://a", "api://a", "api://b"] {
            log.record(entry(resource));
        }
        drop(log);
        writer.await.unwrap();
        let written = metrics
            .gather()
            .into_iter()
            .find(|family| family.name() == "ficus_signin_log_written_total")
            .map(|family| family.get_metric()[0].get_counter().get_value());
        assert_eq!(written, Some(4.0), "four requests");
        assert_eq!(store.0.lock().unwrap().concat().len(), 2, "in two rows");
    }

    #[tokio::test]
    async fn requests_are_counted_by_kind_result_and_error_code() {
        let store = Arc::new(Batches::default());
        let metrics = Metrics::new();
        let (log, _writer) = BatchedSignInLog::start(store, 100, 10, Duration::from_secs(1), &metrics).unwrap();
        log.record(entry("api://a"));
        log.record(SignIn { outcome: Outcome::Failure, error_code: "AADSTS700213".into(), ..entry("api://a") });
        let count = |labels: [&str; 3]| log.requests.with_label_values(&labels).get();
        assert_eq!(count(["application", "success", ""]), 1);
        assert_eq!(count(["application", "failure", "AADSTS700213"]), 1);
        assert_eq!(count(["managedIdentity", "success", ""]), 0);
    }
}
