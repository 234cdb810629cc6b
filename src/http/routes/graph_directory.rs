//! Microsoft Graph-shaped role assignments (`/v1.0/servicePrincipals/{id}/appRoleAssignedTo`),
//! the activity log (`/v1.0/auditLogs/directoryAudits`) and the sign-in log
//! (`/v1.0/auditLogs/signIns`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::activity::{ActivityEntry, ActivityQuery, Outcome};
use crate::domain::ids::ObjectId;
use crate::domain::role_assignment::{Principal, RoleAssignment};
use crate::domain::sign_in::{SignIn, SignInQuery};
use crate::http::AppState;
use crate::http::admin::{AdminCaller, AdminJson};
use crate::http::error::{ApiError, InShape, Shape};
use crate::service::admin::{AdminError, AdminService};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.0/servicePrincipals/{id}/appRoleAssignedTo",
            get(list_role_assignments).post(create_role_assignment),
        )
        .route("/v1.0/servicePrincipals/{id}/appRoleAssignedTo/{assignment}", delete(delete_role_assignment))
        .route("/v1.0/auditLogs/directoryAudits", get(list_directory_audits))
        .route("/v1.0/auditLogs/signIns", get(list_sign_ins))
}

fn object_id(raw: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse(raw).map_err(AdminError::from).graph()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignmentRequest {
    principal_id: String,
    resource_id: String,
    app_role_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentResponse {
    id: String,
    principal_id: String,
    principal_type: &'static str,
    resource_id: String,
    app_role_id: String,
}

impl From<&RoleAssignment> for RoleAssignmentResponse {
    fn from(a: &RoleAssignment) -> Self {
        Self {
            id: a.id.to_string(),
            principal_id: a.principal.id().to_string(),
            principal_type: match a.principal {
                Principal::Application(_) => "ServicePrincipal",
                Principal::Identity(_) => "ManagedIdentity",
            },
            resource_id: a.resource_id.to_string(),
            app_role_id: a.app_role_id.to_string(),
        }
    }
}

pub async fn list_role_assignments(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let assignments = admin.role_assignments_on(&caller, object_id(&id)?).graph()?;
    let value: Vec<_> = assignments.iter().map(RoleAssignmentResponse::from).collect();
    Ok(Json(serde_json::json!({ "value": value })))
}

pub async fn create_role_assignment(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path(id): Path<String>,
    AdminJson(body): AdminJson<RoleAssignmentRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let resource = object_id(&id)?;
    if object_id(&body.resource_id)? != resource {
        return Err(ApiError::InvalidBody(Shape::Graph, "resourceId must be the service principal in the path".into()));
    }
    let (principal, role) = (object_id(&body.principal_id)?, object_id(&body.app_role_id)?);
    let assignment = admin.assign_role(&caller, principal, resource, role).await.graph()?;
    Ok((StatusCode::CREATED, Json(RoleAssignmentResponse::from(&assignment))))
}

pub async fn delete_role_assignment(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path((id, assignment)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (resource, assignment) = (object_id(&id)?, object_id(&assignment)?);
    let on_resource = admin.role_assignments_on(&caller, resource).graph()?.iter().any(|a| a.id == assignment);
    if !on_resource {
        let missing = AdminError::NotFound { what: "app role assignment", id: assignment.to_string() };
        return Err(ApiError::Admin(Shape::Graph, missing));
    }
    admin.remove_role_assignment(&caller, assignment).await.graph()?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging and filters: `$top` (1-1000, default 100), `$skiptoken` (from `@odata.nextLink`),
/// `since` / `until` (RFC 3339) and `target` (an object or resource id).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(rename = "$top")]
    top: Option<usize>,
    #[serde(rename = "$skiptoken")]
    skip_token: Option<i64>,
    since: Option<String>,
    until: Option<String>,
    target: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryAuditResponse {
    id: String,
    activity_date_time: String,
    activity_display_name: String,
    category: &'static str,
    result: &'static str,
    result_reason: String,
    initiated_by: serde_json::Value,
    target_resources: [serde_json::Value; 1],
}

impl From<&ActivityEntry> for DirectoryAuditResponse {
    fn from(e: &ActivityEntry) -> Self {
        Self {
            id: e.id.to_string(),
            activity_date_time: e.time.format(&Rfc3339).unwrap_or_default(),
            activity_display_name: e.operation.clone(),
            category: match e.target_type {
                "ManagedIdentity" | "ComputeResource" => "ResourceManagement",
                _ => "ApplicationManagement",
            },
            result: e.outcome.as_str(),
            result_reason: e.reason.clone(),
            initiated_by: serde_json::json!({ "app": { "appId": e.actor.id, "displayName": e.actor.display_name } }),
            target_resources: [serde_json::json!({ "id": e.target, "type": e.target_type })],
        }
    }
}

/// `@odata.nextLink`: the same query, from the next page on.
fn next_link(path: &str, limit: usize, next: i64, filters: &[(&str, &Option<String>)]) -> String {
    let mut link = format!("{path}?$top={limit}&$skiptoken={next}");
    for (name, value) in filters {
        if let Some(value) = value {
            link.push_str(&format!(
                "&{name}={}",
                form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
            ));
        }
    }
    link
}

fn instant(raw: Option<&str>, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    raw.map(|r| {
        OffsetDateTime::parse(r, &Rfc3339)
            .map_err(|_| ApiError::InvalidBody(Shape::Graph, format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

pub async fn list_directory_audits(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Query(query): Query<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = query.top.unwrap_or(100).clamp(1, 1000);
    let activity = ActivityQuery {
        tenant_id: caller.tenant,
        since: instant(query.since.as_deref(), "since")?,
        until: instant(query.until.as_deref(), "until")?,
        target: query.target.clone(),
        limit,
        after: query.skip_token,
    };
    let page = admin.activity(&activity).await.graph()?;
    let value: Vec<_> = page.entries.iter().map(DirectoryAuditResponse::from).collect();
    let mut body = serde_json::json!({ "value": value });
    if let Some(next) = page.next {
        let filters = [("since", &query.since), ("until", &query.until), ("target", &query.target)];
        body["@odata.nextLink"] = next_link("/v1.0/auditLogs/directoryAudits", limit, next, &filters).into();
    }
    Ok(Json(body))
}

/// Paging and filters of the sign-in log: `$top`, `$skiptoken`, `since`, `until`, `principal`
/// (service principal or managed identity principal id), `result` (`success` or `failure`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInsQuery {
    #[serde(rename = "$top")]
    top: Option<usize>,
    #[serde(rename = "$skiptoken")]
    skip_token: Option<i64>,
    since: Option<String>,
    until: Option<String>,
    principal: Option<String>,
    result: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInResponse {
    id: String,
    created_date_time: String,
    app_id: Option<String>,
    service_principal_id: Option<String>,
    resource_display_name: String,
    ip_address: String,
    sign_in_event_types: [&'static str; 1],
    status: serde_json::Value,
    processing_time_in_milliseconds: u128,
    served_from_cache: bool,
    /// How many identical requests this entry stands for (a ficus extension; see the sign-in log).
    request_count: u32,
}

impl From<&SignIn> for SignInResponse {
    fn from(e: &SignIn) -> Self {
        Self {
            id: e.id.to_string(),
            created_date_time: e.time.format(&Rfc3339).unwrap_or_default(),
            app_id: e.client_id.clone(),
            service_principal_id: e.principal_id.map(|p| p.to_string()),
            resource_display_name: e.resource.clone(),
            ip_address: e.caller_address.map(|a| a.to_string()).unwrap_or_default(),
            sign_in_event_types: [e.kind.as_str()],
            status: serde_json::json!({
                "result": e.outcome.as_str(), "errorCode": e.error_code, "failureReason": e.reason,
            }),
            processing_time_in_milliseconds: e.latency.as_millis(),
            served_from_cache: e.cached,
            request_count: e.count,
        }
    }
}

pub async fn list_sign_ins(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Query(query): Query<SignInsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = query.top.unwrap_or(100).clamp(1, 1000);
    let outcome = match query.result.as_deref() {
        None => None,
        Some(raw) => Some(
            Outcome::parse(raw)
                .ok_or_else(|| ApiError::InvalidBody(Shape::Graph, "result must be 'success' or 'failure'".into()))?,
        ),
    };
    let sign_ins = SignInQuery {
        tenant_id: caller.tenant,
        since: instant(query.since.as_deref(), "since")?,
        until: instant(query.until.as_deref(), "until")?,
        principal_id: query.principal.as_deref().map(object_id).transpose()?,
        outcome,
        limit,
        after: query.skip_token,
    };
    let page = admin.sign_ins(&sign_ins).await.graph()?;
    let value: Vec<_> = page.entries.iter().map(SignInResponse::from).collect();
    let mut body = serde_json::json!({ "value": value });
    if let Some(next) = page.next {
        let filters = [
            ("since", &query.since),
            ("until", &query.until),
            ("principal", &query.principal),
            ("result", &query.result),
        ];
        body["@odata.nextLink"] = next_link("/v1.0/auditLogs/signIns", limit, next, &filters).into();
    }
    Ok(Json(body))
}
