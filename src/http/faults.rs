//! The one place a fired fault rule becomes what the client sees: the endpoint's own error answer
//! for the rule's status (IMDS's and App Service's bodies, Entra's for the token endpoint,
//! discovery and the JWKS), the real answer later, or a connection closed without an answer.
//! Handlers call [`inject`] first; a request no rule hits costs one read of an empty list.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, set_retry_after};
use crate::domain::fault::{FaultEffect, FaultEndpoint, FaultRule, FaultSubjects};
use crate::service::faults::InjectedSignIn;

/// Applies the rule that fires on this request, if any: `Ok` to serve it (perhaps later), `Err`
/// with the injected answer. `subjects` says who is asking (worked out only when some rule is in
/// force); `who` names the caller for the sign-in log (`None`: not a sign-in).
pub async fn inject(
    state: &AppState,
    endpoint: FaultEndpoint,
    subjects: impl FnOnce() -> FaultSubjects,
    who: impl FnOnce(&FaultSubjects) -> Option<InjectedSignIn>,
) -> Result<(), ApiError> {
    if state.faults.is_idle() {
        return Ok(());
    }
    let subjects = subjects();
    let Some(rule) = state.faults.fire(endpoint, &subjects).await else {
        return Ok(());
    };
    state.metrics.count_injected(endpoint.as_str(), effect_label(&rule.effect));
    tracing::info!(rule = %rule.id, endpoint = endpoint.as_str(), effect = effect_label(&rule.effect), "fault injected");
    if let Some(latency) = rule.latency() {
        tokio::time::sleep(latency).await;
        return Ok(());
    }
    if let Some(who) = who(&subjects) {
        state.faults.log(&rule, who);
    }
    Err(ApiError::Injected(Box::new(rule)))
}

fn effect_label(effect: &FaultEffect) -> &'static str {
    match effect {
        FaultEffect::Status { .. } => "status",
        FaultEffect::Latency { .. } => "latency",
        FaultEffect::CloseConnection => "close",
    }
}

/// The answer a status or closing rule gives.
pub(super) fn render(rule: &FaultRule) -> Response {
    let FaultEffect::Status { status, retry_after } = rule.effect else {
        return closed_connection();
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let said = format!("Injected by ficus fault rule {}.", rule.id);
    let mut response = match rule.endpoint {
        FaultEndpoint::Imds => {
            let (error, description) = match status.as_u16() {
                404 => ("invalid_request", "Identity not found"),
                410 => {
                    ("service_unavailable", "The instance metadata service is being updated; retry within 70 seconds")
                }
                429 => ("too_many_requests", "Too many requests"),
                500 => ("unknown", "Failed to retrieve token from the Active directory"),
                _ => ("service_unavailable", "The service is temporarily unavailable"),
            };
            let body = serde_json::json!({ "error": error, "error_description": format!("{description}. {said}") });
            (status, axum::Json(body)).into_response()
        }
        FaultEndpoint::AppService => {
            let reason = status.canonical_reason().unwrap_or("Error");
            let body = serde_json::json!({ "statusCode": status.as_u16(), "message": format!("{reason}. {said}") });
            (status, axum::Json(body)).into_response()
        }
        FaultEndpoint::Token | FaultEndpoint::Discovery | FaultEndpoint::Jwks => {
            return ApiError::InjectedEntra { status, retry_after: retry_after.map(seconds), description: said }
                .into_response();
        }
    };
    if let Some(wait) = retry_after {
        set_retry_after(&mut response, seconds(wait));
    }
    response
}

fn seconds(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// A response whose body fails at once: the server drops the connection without a complete
/// answer, as a crashed or restarting endpoint would.
fn closed_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("fault rule: closed connection"))
    });
    (StatusCode::INTERNAL_SERVER_ERROR, Body::from_stream(failing)).into_response()
}
