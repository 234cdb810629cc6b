//! Prometheus metrics for HTTP: requests by route, method and status, and latency histograms by
//! route, recorded by the edge middleware ([`super::edge`]). The registry is owned by the
//! application (no global state) and rendered by `/metrics`.

use std::time::Duration;

use axum::http::{Method, StatusCode};
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

    /// Counts and times a request under its route template (never the raw path: bounded labels).
    pub fn record(&self, route: &str, method: &Method, status: StatusCode, elapsed: Duration) {
        let method = method_label(method);
        self.requests.with_label_values(&[route, method, status.as_str()]).inc();
        self.latency.with_label_values(&[route, method]).observe(elapsed.as_secs_f64());
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

/// The static label text of a method (no label is allocated per request).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
