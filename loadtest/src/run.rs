//! The closed loop: workers, warm-up, HDR histograms, errors by status.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::Args;

/// One request of a scenario: resolves to the HTTP status, or 0 for a transport error.
pub type Request = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = u16> + Send>> + Send + Sync>;

pub struct Outcome {
    pub name: String,
    histogram: Histogram<u64>,
    elapsed: Duration,
    errors: BTreeMap<u16, u64>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.histogram.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.name,
            "rps": self.rps(),
            "requests": self.histogram.len(),
            "latency_ms": {
                "p50": self.quantile_ms(0.5), "p90": self.quantile_ms(0.9), "p99": self.quantile_ms(0.99),
                "p99.9": self.quantile_ms(0.999), "max": self.histogram.max() as f64 / 1000.0,
            },
            "errors": self.errors.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Runs `request` from `args.concurrency` workers: warm-up first (not recorded), then measured.
pub async fn closed_loop(name: &str, args: &Args, request: Request) -> Result<Outcome, String> {
    // Microseconds, up to 60 s, 3 significant digits.
    let empty = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let warm_until = Instant::now() + args.warmup;
    let stop_at = warm_until + args.duration;
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (request, mut latencies) = (request.clone(), empty.clone());
            tokio::spawn(async move {
                let mut errors: BTreeMap<u16, u64> = BTreeMap::new();
                loop {
                    let started = Instant::now();
                    if started >= stop_at {
                        break;
                    }
                    let status = request().await;
                    if started < warm_until {
                        continue;
                    }
                    if (200..300).contains(&status) {
                        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = latencies.record(micros.max(1));
                    } else {
                        *errors.entry(status).or_default() += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut total = empty;
    let mut errors: BTreeMap<u16, u64> = BTreeMap::new();
    for worker in workers {
        if let Ok((latencies, worker_errors)) = worker.await {
            let _ = total.add(&latencies);
            for (status, count) in worker_errors {
                *errors.entry(status).or_default() += count;
            }
        }
    }
    Ok(Outcome { name: name.to_owned(), histogram: total, elapsed: args.duration, errors })
}
