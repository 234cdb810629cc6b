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
use crate::domain::ids::{ClientId, ObjectId};
use crate::domain::role_assignment::{Principal, RoleAssignment};
use crate::domain::sign_in::{SignIn, SignInQuery};
use crate::http::AppState;
use crate::http::admin::{AdminCaller, AdminJson};
use crate::http::error::{ApiError, InShape, Shape};
use crate::http::odata::{Comparison, Op, parse_filter};
use crate::service::admin::{AdminError, AdminService};
use crate::service::discovery::DiscoveryService;

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
    /// Microsoft's Graph SDKs name the type they send (`#microsoft.graph.application`); it is
    /// read and ignored.
    #[serde(rename = "@odata.type", default)]
    _odata_type: Option<String>,
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
/// `$filter` on `activityDateTime` (`ge`, `gt`, `le`, `lt`), and ficus's `since` / `until`
/// (RFC 3339) and `target` (an object or resource id).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(rename = "$top")]
    top: Option<usize>,
    #[serde(rename = "$skiptoken")]
    skip_token: Option<i64>,
    #[serde(rename = "$filter")]
    filter: Option<String>,
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
    logged_by_service: &'static str,
    operation_type: &'static str,
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
                "SigningKey" => "KeyManagement",
                _ => "ApplicationManagement",
            },
            logged_by_service: "Core Directory",
            operation_type: operation_type(&e.operation),
            result: e.outcome.as_str(),
            result_reason: e.reason.clone(),
            initiated_by: serde_json::json!({ "app": { "appId": e.actor.id, "displayName": e.actor.display_name } }),
            target_resources: [serde_json::json!({ "id": e.target, "type": e.target_type })],
        }
    }
}

/// Graph's `operationType` (Add, Assign, Update, Unassign, Delete) of an activity, by its verb.
/// (Entra's "Add app role assignment ..." is an Assign, its removal an Unassign.)
fn operation_type(operation: &str) -> &'static str {
    let assignment = operation.contains("role assignment");
    match operation.split(' ').next().unwrap_or_default() {
        "Add" | "Create" if assignment => "Assign",
        "Remove" | "Delete" if assignment => "Unassign",
        "Add" | "Create" => "Add",
        "Delete" | "Remove" => "Delete",
        _ => "Update",
    }
}

/// `@odata.nextLink`: the same query, from the next page on, as an absolute URL (Graph's SDKs
/// follow it as given).
fn next_link(base: &str, path: &str, limit: usize, next: i64, filters: &[(&str, &Option<String>)]) -> String {
    let mut link = format!("{base}{path}?$top={limit}&$skiptoken={next}");
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

/// A time range from `$filter` comparisons on `property` (both bounds inclusive), narrowing
/// `since` and `until`; any other comparison is refused, naming what is understood.
fn time_range(
    comparisons: &[Comparison],
    property: &str,
    understood: &str,
    since: &mut Option<OffsetDateTime>,
    until: &mut Option<OffsetDateTime>,
) -> Result<(), ApiError> {
    for c in comparisons {
        if !c.property.eq_ignore_ascii_case(property) {
            return Err(unsupported_filter(c, understood));
        }
        let at = instant(Some(&c.value), property)?;
        match c.op {
            Op::Ge | Op::Gt => *since = (*since).max(at),
            Op::Le | Op::Lt => {
                *until = match (*until, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Op::Eq | Op::Ne => return Err(unsupported_filter(c, understood)),
        }
    }
    Ok(())
}

fn unsupported_filter(c: &Comparison, understood: &str) -> ApiError {
    ApiError::InvalidBody(
        Shape::Graph,
        format!("$filter on '{}' with this comparison is not supported: ficus filters {understood}", c.property),
    )
}

fn filter(raw: Option<&str>) -> Result<Vec<Comparison>, ApiError> {
    raw.map_or(Ok(Vec::new()), |raw| parse_filter(raw).map_err(|e| ApiError::InvalidBody(Shape::Graph, e)))
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
    State(discovery): State<Arc<DiscoveryService>>,
    Query(query): Query<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = query.top.unwrap_or(100).clamp(1, 1000);
    let (mut since, mut until) = (instant(query.since.as_deref(), "since")?, instant(query.until.as_deref(), "until")?);
    let understood = "directory audits by activityDateTime (ge, gt, le, lt)";
    time_range(&filter(query.filter.as_deref())?, "activityDateTime", understood, &mut since, &mut until)?;
    let activity = ActivityQuery {
        tenant_id: caller.tenant,
        since,
        until,
        target: query.target.clone(),
        limit,
        after: query.skip_token,
    };
    let page = admin.activity(&activity).await.graph()?;
    let value: Vec<_> = page.entries.iter().map(DirectoryAuditResponse::from).collect();
    let mut body = serde_json::json!({ "value": value });
    if let Some(next) = page.next {
        let filters =
            [("$filter", &query.filter), ("since", &query.since), ("until", &query.until), ("target", &query.target)];
        body["@odata.nextLink"] =
            next_link(discovery.base_url(), "/v1.0/auditLogs/directoryAudits", limit, next, &filters).into();
    }
    Ok(Json(body))
}

/// Paging and filters of the sign-in log: `$top`, `$skiptoken`, `$filter` (see
/// [`SIGN_IN_FILTERS`]), and ficus's `since`, `until`, `principal` (service principal or managed
/// identity principal id) and `result` (`success` or `failure`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInsQuery {
    #[serde(rename = "$top")]
    top: Option<usize>,
    #[serde(rename = "$skiptoken")]
    skip_token: Option<i64>,
    #[serde(rename = "$filter")]
    filter: Option<String>,
    since: Option<String>,
    until: Option<String>,
    principal: Option<String>,
    result: Option<String>,
}

/// Graph's `signIn` resource (v1.0 properties, and beta's where v1.0 has none: the event type,
/// the managed identity, the federated credential, the processing time), with ficus's extensions
/// prefixed `ficus`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInResponse {
    id: String,
    created_date_time: String,
    app_id: Option<String>,
    app_display_name: String,
    service_principal_id: Option<String>,
    service_principal_name: String,
    resource_display_name: String,
    ip_address: String,
    /// Token requests have no user in front of them.
    is_interactive: bool,
    status: SignInStatus,
    sign_in_event_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_service_identity: Option<ManagedServiceIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    federated_credential_id: Option<String>,
    /// For an aggregated entry, the slowest of its requests.
    processing_time_in_milliseconds: u64,
    /// ficus's own error code, finer than `status.errorCode` (`identity_not_found`, `throttled`,
    /// `injected`, `AADSTS700213`, ...); empty on success.
    ficus_error_code: String,
    ficus_served_from_cache: bool,
    /// How many identical requests this entry stands for (see the sign-in log).
    ficus_request_count: u32,
}

/// Graph's `signInStatus`: `errorCode` 0 is a success.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInStatus {
    error_code: u32,
    failure_reason: String,
    additional_details: Option<String>,
}

/// Graph's `managedIdentity` (beta): the identity's kind and the compute resource it was asked
/// through.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServiceIdentity {
    msi_type: &'static str,
    associated_resource_id: Option<String>,
}

impl From<&SignIn> for SignInResponse {
    fn from(e: &SignIn) -> Self {
        Self {
            id: e.id.to_string(),
            created_date_time: e.time.format(&Rfc3339).unwrap_or_default(),
            app_id: e.principal.client_id.clone(),
            app_display_name: e.principal.name.clone(),
            service_principal_id: e.principal.principal_id.map(|p| p.to_string()),
            service_principal_name: e.principal.name.clone(),
            resource_display_name: e.resource.clone(),
            ip_address: e.caller_address.map(|a| a.to_string()).unwrap_or_default(),
            is_interactive: false,
            status: SignInStatus {
                error_code: e.status_code,
                failure_reason: e.reason.clone(),
                additional_details: (e.count > 1).then(|| format!("{} identical requests", e.count)),
            },
            sign_in_event_types: [e.kind.graph_event_type()],
            managed_service_identity: e.principal.msi_type.map(|t| ManagedServiceIdentity {
                msi_type: t.as_str(),
                associated_resource_id: e.compute_resource.clone(),
            }),
            federated_credential_id: e.credential_id.map(|c| c.to_string()),
            processing_time_in_milliseconds: u64::try_from(e.latency.as_millis()).unwrap_or(u64::MAX),
            ficus_error_code: e.error_code.clone(),
            ficus_served_from_cache: e.cached,
            ficus_request_count: e.count,
        }
    }
}

/// What `$filter` on the sign-in log understands.
const SIGN_IN_FILTERS: &str = "sign-ins by createdDateTime (ge, gt, le, lt), appId and servicePrincipalId (eq), \
     and status/errorCode (eq 0 for successes, ne 0 for failures)";

/// Narrows `query` by the sign-in log's `$filter`; `false` when nothing can match (an appId no
/// principal has, or two principals at once).
fn apply_sign_in_filter(
    comparisons: Vec<Comparison>,
    query: &mut SignInQuery,
    admin: &AdminService,
) -> Result<bool, ApiError> {
    let mut times = Vec::new();
    for c in comparisons {
        let principal = match (c.property.to_ascii_lowercase().as_str(), c.op) {
            ("createddatetime", _) => {
                times.push(c);
                continue;
            }
            ("appid", Op::Eq) => match ClientId::parse(&c.value)
                .ok()
                .and_then(|client| admin.directory().view().principal_of_client(query.tenant_id, client))
            {
                Some(principal) => principal,
                None => return Ok(false),
            },
            ("serviceprincipalid", Op::Eq) => object_id(&c.value)?,
            ("status/errorcode", op @ (Op::Eq | Op::Ne)) if c.value == "0" => {
                let outcome = if op == Op::Eq { Outcome::Success } else { Outcome::Failure };
                if query.outcome.is_some_and(|o| o != outcome) {
                    return Ok(false);
                }
                query.outcome = Some(outcome);
                continue;
            }
            _ => return Err(unsupported_filter(&c, SIGN_IN_FILTERS)),
        };
        if query.principal_id.is_some_and(|p| p != principal) {
            return Ok(false);
        }
        query.principal_id = Some(principal);
    }
    time_range(&times, "createdDateTime", SIGN_IN_FILTERS, &mut query.since, &mut query.until)?;
    Ok(true)
}

pub async fn list_sign_ins(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    State(discovery): State<Arc<DiscoveryService>>,
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
    let mut sign_ins = SignInQuery {
        tenant_id: caller.tenant,
        since: instant(query.since.as_deref(), "since")?,
        until: instant(query.until.as_deref(), "until")?,
        principal_id: query.principal.as_deref().map(object_id).transpose()?,
        outcome,
        limit,
        after: query.skip_token,
    };
    if !apply_sign_in_filter(filter(query.filter.as_deref())?, &mut sign_ins, &admin)? {
        return Ok(Json(serde_json::json!({ "value": [] })));
    }
    let page = admin.sign_ins(&sign_ins).await.graph()?;
    let value: Vec<_> = page.entries.iter().map(SignInResponse::from).collect();
    let mut body = serde_json::json!({ "value": value });
    if let Some(next) = page.next {
        let filters = [
            ("$filter", &query.filter),
            ("since", &query.since),
            ("until", &query.until),
            ("principal", &query.principal),
            ("result", &query.result),
        ];
        body["@odata.nextLink"] =
            next_link(discovery.base_url(), "/v1.0/auditLogs/signIns", limit, next, &filters).into();
    }
    Ok(Json(body))
}
