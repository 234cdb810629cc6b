//! Prometheus metrics for HTTP: requests by route, method and status, and latency histograms by
//! route, recorded by the edge middleware ([`super::edge`]). The registry is owned by the
//! application (no global state) and rendered by `/metrics`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    injected: IntCounterVec,
    /// The series each route has answered with, resolved once: a label lookup hashes every label
    /// byte by byte, twice a request. Routes are templates and statuses a handful per route, so
    /// this stays small.
    handles: RwLock<HashMap<String, RouteHandles, foldhash::fast::RandomState>>,
}

/// One route's resolved series, by method and status: the request counter and the method's
/// histogram (a handle to the one series, shared by the method's statuses).
type RouteHandles = Vec<(&'static str, StatusCode, IntCounter, Histogram)>;

/// The counter and histogram resolved for `method` and `status` on this route, if any.
fn series<'a>(route: &'a RouteHandles, method: &str, status: StatusCode) -> Option<(&'a IntCounter, &'a Histogram)> {
    route.iter().find(|(m, s, ..)| *m == method && *s == status).map(|(.., requests, latency)| (requests, latency))
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
        Ok(Self { registry, requests, latency, injected, handles: RwLock::default() })
    }

    /// Counts an answer a fault rule changed.
    pub fn count_injected(&self, endpoint: &str, effect: &str) {
        self.injected.with_label_values(&[endpoint, effect]).inc();
    }

    /// Counts and times a request under its route template (never the raw path: bounded labels).
    pub fn record(&self, route: &str, method: &Method, status: StatusCode, elapsed: Duration) {
        let method = method_label(method);
        let record = |(requests, latency): (&IntCounter, &Histogram)| {
            requests.inc();
            latency.observe(elapsed.as_secs_f64());
        };
        {
            let handles = self.handles.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(found) = handles.get(route).and_then(|route| series(route, method, status)) {
                return record(found);
            }
        }
        let mut handles = self.handles.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let resolved = handles.entry(route.to_owned()).or_default();
        if series(resolved, method, status).is_none() {
            let requests = self.requests.with_label_values(&[route, method, status.as_str()]);
            resolved.push((method, status, requests, self.latency.with_label_values(&[route, method])));
        }
        if let Some(found) = series(resolved, method, status) {
            record(found);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, prefix: &str) -> Option<String> {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).map(str::to_owned)
    }

    #[test]
    fn resolved_series_keep_routes_methods_and_statuses_apart() {
        let metrics = HttpMetrics::new(Registry::new()).unwrap();
        let ms = Duration::from_millis(1);
        for _ in 0..3 {
            metrics.record("/token", &Method::POST, StatusCode::OK, ms);
        }
        metrics.record("/token", &Method::POST, StatusCode::BAD_REQUEST, ms);
        metrics.record("/token", &Method::GET, StatusCode::METHOD_NOT_ALLOWED, ms);
        metrics.record("/jwks", &Method::GET, StatusCode::OK, ms);
        let text = metrics.render();
        let requests = |labels: &str| sample(&text, &format!("ficus_http_requests_total{{{labels}}}"));
        assert_eq!(requests(r#"method="POST",route="/token",status="200""#).as_deref(), Some("3"), "{text}");
        assert_eq!(requests(r#"method="POST",route="/token",status="400""#).as_deref(), Some("1"), "{text}");
        assert_eq!(requests(r#"method="GET",route="/token",status="405""#).as_deref(), Some("1"), "{text}");
        assert_eq!(requests(r#"method="GET",route="/jwks",status="200""#).as_deref(), Some("1"), "{text}");
        let timed = |labels: &str| sample(&text, &format!("ficus_http_request_duration_seconds_count{{{labels}}}"));
        assert_eq!(timed(r#"method="POST",route="/token""#).as_deref(), Some("4"), "{text}");
        assert_eq!(timed(r#"method="GET",route="/token""#).as_deref(), Some("1"), "{text}");
    }
}
