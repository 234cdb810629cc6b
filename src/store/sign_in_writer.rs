//! The sign-in log's writer: request paths hand entries to a bounded queue without waiting; one
//! background task gathers them for a flush interval (or until a batch is full), merges identical
//! requests into one entry with a count, and writes the batch in one transaction. When the queue is
//! full, entries are dropped and counted (`ficus_signin_log_dropped_total`) rather than slowing
//! requests down. While the database is unavailable the writer holds its batch and retries, so
//! the queue fills and only what overflows it is lost. `ficus_signin_log_written_total` counts requests written, not rows.
//! Every entry is also counted in `ficus_token_requests_total{kind,result,error_code}`, so
//! failures show in metrics even when the log drops them.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry as Metrics};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::domain::ports::{Registry, StoreError};
use crate::domain::sign_in::{SignIn, SignInSink, aggregate};

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
        let written = IntCounter::new("ficus_signin_log_written_total", "Sign-in log entries written")?;
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
            let mut batch = Vec::with_capacity(batch_size);
            while receiver.recv_many(&mut batch, batch_size).await > 0 {
                let deadline = tokio::time::Instant::now() + flush_interval;
                while batch.len() < batch_size {
                    let more = batch_size - batch.len();
                    match tokio::time::timeout_at(deadline, receiver.recv_many(&mut batch, more)).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let count = batch.len() as u64;
                let rows = aggregate(std::mem::take(&mut batch));
                if write_with_retry(store.as_ref(), &rows, count).await {
                    written.inc_by(count);
                } else {
                    lost.inc_by(count);
                }
            }
        });
        Ok((Arc::new(Self { queue, dropped, requests }), writer))
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
        self.requests.with_label_values(&[entry.kind.as_str(), entry.outcome.as_str(), &entry.error_code]).inc();
        if self.queue.try_send(entry).is_err() {
            self.dropped.inc();
        }
    }
}
