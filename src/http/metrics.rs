//! Prometheus metrics for HTTP: requests by route, method and status, and latency histograms by
//! route. The registry is owned by the application (no global state) and rendered by `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    injected: IntCounterVec,
}

impl HttpMetrics {
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("ficus_http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("ficus_http_request_duration_seconds", "HTTP request latency by route")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
            &["route", "method"],
        )?;
        let injected = IntCounterVec::new(
            Opts::new("ficus_faults_injected_total", "Answers changed by a fault rule, by endpoint and effect"),
            &["endpoint", "effect"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(injected.clone()))?;
        Ok(Self { registry, requests, latency, injected })
    }

    /// Counts an answer a fault rule changed.
    pub fn count_injected(&self, endpoint: &str, effect: &str) {
        self.injected.with_label_values(&[endpoint, effect]).inc();
    }

    /// The registry other components add their metrics to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Counts and times every request under its route template (never the raw path: bounded labels).
pub async fn record(State(metrics): State<Arc<HttpMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // The matched path is shared (an `Arc<str>` inside); method and status are static text: no
    // label is allocated per request.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let response = next.run(request).await;
    let status = response.status();
    metrics.requests.with_label_values(&[route, method, status.as_str()]).inc();
    metrics.latency.with_label_values(&[route, method]).observe(started.elapsed().as_secs_f64());
    response
}
