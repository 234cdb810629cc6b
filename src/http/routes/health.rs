//! Operations: liveness, readiness, Prometheus metrics, and the admin API's OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::http::AppState;
use crate::http::metrics::HttpMetrics;
use crate::service::health::HealthService;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(check_liveness))
        .route("/readyz", get(check_readiness))
        .route("/metrics", get(get_metrics))
        .route("/openapi.json", get(get_openapi))
}

#[derive(Debug, Serialize)]
pub struct HealthResponse {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    degraded: Vec<String>,
}

/// The process is up and serving.
pub async fn check_liveness() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok", problems: vec![], degraded: vec![] })
}

/// 200 `ready`, or 200 `degraded` (still serving tokens; the reasons listed), or 503 `not ready`
/// with the reasons.
pub async fn check_readiness(State(health): State<Arc<HealthService>>) -> impl IntoResponse {
    let readiness = health.readiness().await;
    let (status, label) = match (readiness.is_ready(), readiness.degraded.is_empty()) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(HealthResponse { status: label, problems: readiness.problems, degraded: readiness.degraded }),
    )
}

pub async fn get_metrics(State(metrics): State<Arc<HttpMetrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

/// The admin API's OpenAPI document (`docs/openapi.json`).
pub async fn get_openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("../../../docs/openapi.json"))
}
