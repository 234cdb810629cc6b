//! The fault-rule admin API (a ficus extension, ARM-shaped errors): `GET /ficus/faults` lists the
//! caller's tenant's rules, `POST` adds one, `DELETE` removes all of them and
//! `DELETE /ficus/faults/{id}` one. Writes need `Ficus.Admin`, reads `Ficus.Reader`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::domain::fault::{FaultDuration, FaultEffect, FaultEndpoint, FaultError, FaultLimit, FaultRule, FaultTarget};
use crate::domain::ids::ObjectId;
use crate::http::AppState;
use crate::http::admin::{AdminCaller, AdminJson};
use crate::http::error::{ApiError, InShape};
use crate::service::admin::{AdminError, AdminService, FaultTargetInput};
use crate::service::faults::FaultService;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ficus/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/ficus/faults/{id}", delete(remove_fault))
}

/// Whom a rule hits: one of these, or none for everyone in the tenant.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRequest {
    compute_resource: Option<String>,
    identity: Option<String>,
    application: Option<String>,
}

/// A new rule: an endpoint, a target, one effect and one limit.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRequest {
    endpoint: String,
    #[serde(default)]
    target: TargetRequest,
    status: Option<u16>,
    retry_after: Option<u32>,
    latency_ms: Option<u32>,
    #[serde(default)]
    close_connection: bool,
    requests: Option<u32>,
    seconds: Option<u32>,
    probability: Option<f64>,
}

impl FaultRequest {
    fn parts(&self) -> Result<(FaultEndpoint, FaultTargetInput, FaultEffect, FaultDuration), FaultError> {
        let endpoint = FaultEndpoint::parse(&self.endpoint)?;
        let target = FaultTargetInput::from_parts(
            self.target.compute_resource.as_deref(),
            self.target.identity.as_deref(),
            self.target.application.as_deref(),
        )?;
        let effect = FaultEffect::from_parts(self.status, self.retry_after, self.latency_ms, self.close_connection)?;
        let duration = FaultDuration::from_parts(self.requests, self.seconds, self.probability)?;
        Ok((endpoint, target, effect, duration))
    }
}

/// A rule as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultResponse {
    id: String,
    endpoint: &'static str,
    target: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    close_connection: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    created_at: String,
    description: String,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl From<&FaultRule> for FaultResponse {
    fn from(rule: &FaultRule) -> Self {
        let target = match &rule.target {
            FaultTarget::Everyone => serde_json::json!({ "everyone": true }),
            FaultTarget::ComputeResource(key) => serde_json::json!({ "computeResource": key }),
            FaultTarget::Identity(id) => serde_json::json!({ "identity": id.to_string() }),
            FaultTarget::Application(id) => serde_json::json!({ "application": id.to_string() }),
        };
        let (status, retry_after, latency_ms, close_connection) = match rule.effect {
            FaultEffect::Status { status, retry_after } => (Some(status), retry_after, None, false),
            FaultEffect::Latency { millis } => (None, None, Some(millis), false),
            FaultEffect::CloseConnection => (None, None, None, true),
        };
        let (requests, until, probability) = match rule.limit {
            FaultLimit::Requests { count } => (Some(count), None, None),
            FaultLimit::Until { time } => (None, Some(rfc3339(time)), None),
            FaultLimit::Probability { p } => (None, None, Some(p)),
        };
        Self {
            id: rule.id.to_string(),
            endpoint: rule.endpoint.as_str(),
            target,
            status,
            retry_after,
            latency_ms,
            close_connection,
            requests,
            until,
            probability,
            created_at: rfc3339(rule.created_at),
            description: rule.describe(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ListResponse {
    value: Vec<FaultResponse>,
}

pub async fn list_faults(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
) -> Result<impl IntoResponse, ApiError> {
    let rules = admin.faults(&caller).await.arm()?;
    Ok(Json(ListResponse { value: rules.iter().map(FaultResponse::from).collect() }))
}

pub async fn add_fault(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    State(faults): State<Arc<FaultService>>,
    AdminJson(body): AdminJson<FaultRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (endpoint, target, effect, limit) = body.parts().map_err(AdminError::from).arm()?;
    let rule = admin.add_fault(&caller, None, endpoint, target, effect, limit).await.arm()?;
    reload(&faults).await;
    Ok((StatusCode::CREATED, Json(FaultResponse::from(&rule))))
}

pub async fn clear_faults(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    State(faults): State<Arc<FaultService>>,
) -> Result<impl IntoResponse, ApiError> {
    let removed = admin.clear_faults(&caller, None).await.arm()?;
    reload(&faults).await;
    Ok(Json(serde_json::json!({ "removed": removed })))
}

pub async fn remove_fault(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    State(faults): State<Arc<FaultService>>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = ObjectId::parse(&id).map_err(AdminError::from).arm()?;
    admin.clear_faults(&caller, Some(id)).await.arm()?;
    reload(&faults).await;
    Ok(StatusCode::NO_CONTENT)
}

/// This replica applies a change at once; the others within `storage.refresh_interval`.
async fn reload(faults: &FaultService) {
    if let Err(e) = faults.refresh().await {
        tracing::warn!(error = %e, "could not reload the fault rules after a change");
    }
}
