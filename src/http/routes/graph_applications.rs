//! Microsoft Graph-shaped applications and their federated identity credentials:
//! `/v1.0/applications[/{object-id}]`, `/v1.0/applications(appId='{appId}')`, and
//! `.../federatedIdentityCredentials[/{id-or-name}]`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::domain::application::Application;
use crate::domain::claims_expression;
use crate::domain::federated_credential::{CredentialOwner, FederatedCredential};
use crate::http::AppState;
use crate::http::admin::{AdminCaller, AdminJson};
use crate::http::error::{ApiError, InShape};
use crate::service::admin::{AdminService, AppRoleInput, ApplicationInput, CredentialInput};

pub fn router() -> Router<AppState> {
    let fics = get(list_credentials).post(create_credential);
    let fic = get(get_credential).patch(update_credential).delete(delete_credential);
    Router::new()
        .route("/v1.0/applications", get(list_applications).post(create_application))
        .route("/v1.0/applications/{app}", get(get_application).patch(update_application).delete(delete_application))
        .route("/v1.0/{app}", get(get_application).patch(update_application).delete(delete_application))
        .route("/v1.0/applications/{app}/federatedIdentityCredentials", fics.clone())
        .route("/v1.0/{app}/federatedIdentityCredentials", fics)
        .route("/v1.0/applications/{app}/federatedIdentityCredentials/{fic}", fic.clone())
        .route("/v1.0/{app}/federatedIdentityCredentials/{fic}", fic)
        .route("/v1.0/applications/{app}/explainAssertion", axum::routing::post(explain_assertion))
        .route("/v1.0/{app}/explainAssertion", axum::routing::post(explain_assertion))
}

/// `{object-id}` or `applications(appId='{appId}')` (the latter as one path segment).
fn app_ref(segment: &str) -> (&str, bool) {
    let by_app_id = segment
        .strip_prefix("applications(appId=")
        .and_then(|rest| rest.strip_suffix(')'))
        .map(|quoted| quoted.trim_matches(|c| c == '\'' || c == '"'));
    match by_app_id {
        Some(app_id) => (app_id, true),
        None => (segment, false),
    }
}

/// The application a path names (caught up with the registry on a miss: see
/// [`AdminService::caught_up`]).
async fn resolve(
    admin: &AdminService,
    caller: &crate::service::admin::Caller,
    segment: &str,
) -> Result<Arc<Application>, ApiError> {
    let (id, by_app_id) = app_ref(segment);
    admin.caught_up(|| admin.application(caller, id, by_app_id)).await.graph()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationResponse {
    id: String,
    app_id: String,
    display_name: String,
    identifier_uris: Vec<String>,
    app_roles: Vec<AppRoleResponse>,
    /// Not in Graph's application resource: the service principal's id, which role assignments
    /// and the `oid` of tokens use.
    service_principal_id: String,
    /// A ficus extension: the application's own token-request limit ("500/s"), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    ficus_rate_limit: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleResponse {
    id: String,
    value: String,
    display_name: String,
    description: String,
    allowed_member_types: [&'static str; 1],
    is_enabled: bool,
}

impl From<&Application> for ApplicationResponse {
    fn from(app: &Application) -> Self {
        Self {
            id: app.object_id.to_string(),
            app_id: app.app_id.to_string(),
            display_name: app.display_name.as_str().to_owned(),
            identifier_uris: app.identifier_uris.iter().map(|u| u.as_str().to_owned()).collect(),
            app_roles: app
                .app_roles
                .iter()
                .map(|r| AppRoleResponse {
                    id: r.id.to_string(),
                    value: r.value.as_str().to_owned(),
                    display_name: r.display_name.clone(),
                    description: r.description.clone(),
                    allowed_member_types: ["Application"],
                    is_enabled: true,
                })
                .collect(),
            service_principal_id: app.service_principal_id.to_string(),
            ficus_rate_limit: app.rate_limit.map(|r| r.to_string()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ListResponse<T> {
    value: Vec<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApplicationRequest {
    /// Microsoft's Graph SDKs name the type they send (`#microsoft.graph.application`); it is
    /// read and ignored.
    #[serde(rename = "@odata.type", default)]
    _odata_type: Option<String>,
    display_name: String,
    #[serde(default)]
    identifier_uris: Vec<String>,
    #[serde(default)]
    app_roles: Vec<AppRoleRequest>,
    #[serde(default)]
    ficus_rate_limit: Option<String>,
}

/// What `PATCH` may change: `ficusRateLimit` (a string sets it, `null` removes it).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateApplicationRequest {
    /// Microsoft's Graph SDKs name the type they send (`#microsoft.graph.application`); it is
    /// read and ignored.
    #[serde(rename = "@odata.type", default)]
    _odata_type: Option<String>,
    #[serde(default, deserialize_with = "present")]
    ficus_rate_limit: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppRoleRequest {
    id: Option<String>,
    value: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    allowed_member_types: Vec<String>,
    #[serde(default)]
    is_enabled: Option<bool>,
}

pub async fn list_applications(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
) -> impl IntoResponse {
    let value = admin.list_applications(&caller).iter().map(|a| ApplicationResponse::from(a.as_ref())).collect();
    axum::Json(ListResponse { value })
}

pub async fn create_application(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    AdminJson(body): AdminJson<CreateApplicationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    // App roles here are for applications (app-only tokens), and always enabled.
    let unsupported = body.app_roles.iter().any(|r| {
        r.is_enabled == Some(false)
            || (!r.allowed_member_types.is_empty() && !r.allowed_member_types.iter().any(|t| t == "Application"))
    });
    if unsupported {
        let message = "appRoles must allow the member type 'Application' and be enabled".to_owned();
        return Err(ApiError::InvalidBody(crate::http::error::Shape::Graph, message));
    }
    let input = ApplicationInput {
        display_name: body.display_name,
        identifier_uris: body.identifier_uris,
        app_roles: body
            .app_roles
            .into_iter()
            .map(|r| AppRoleInput {
                id: r.id,
                value: r.value,
                display_name: r.display_name,
                description: r.description,
            })
            .collect(),
        rate_limit: body.ficus_rate_limit,
    };
    let app = admin.create_application(&caller, input).await.graph()?;
    Ok((StatusCode::CREATED, axum::Json(ApplicationResponse::from(app.as_ref()))))
}

pub async fn get_application(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path(app): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let app = resolve(&admin, &caller, &app).await?;
    Ok(axum::Json(ApplicationResponse::from(app.as_ref())))
}

pub async fn update_application(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path(app): Path<String>,
    AdminJson(body): AdminJson<UpdateApplicationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, by_app_id) = app_ref(&app);
    let updated = match body.ficus_rate_limit {
        Some(rate) => admin.set_rate_limit(&caller, id, by_app_id, rate.as_deref()).await.graph()?,
        None => admin.application(&caller, id, by_app_id).graph()?,
    };
    Ok(axum::Json(ApplicationResponse::from(updated.as_ref())))
}

pub async fn delete_application(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (id, by_app_id) = app_ref(&app);
    admin.delete_application(&caller, id, by_app_id).await.graph()?;
    Ok(StatusCode::NO_CONTENT)
}

/// A flexible credential's `claimsMatchingExpression`, as Graph (beta) and ARM shape it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpressionBody {
    pub value: String,
    pub language_version: u32,
}

impl ExpressionBody {
    pub fn of(credential: &FederatedCredential) -> Option<Self> {
        let expression = credential.matching.expression()?;
        Some(Self { value: expression.text().to_owned(), language_version: claims_expression::LANGUAGE_VERSION })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialResponse {
    id: String,
    name: String,
    issuer: String,
    /// `null` for a flexible credential.
    subject: Option<String>,
    /// Absent for an exact one (Graph v1.0 has no such property; beta's is `null` then).
    #[serde(skip_serializing_if = "Option::is_none")]
    claims_matching_expression: Option<ExpressionBody>,
    audiences: [String; 1],
    description: Option<String>,
}

impl From<&FederatedCredential> for CredentialResponse {
    fn from(c: &FederatedCredential) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.as_str().to_owned(),
            issuer: c.issuer.as_str().to_owned(),
            subject: c.matching.subject().map(str::to_owned),
            claims_matching_expression: ExpressionBody::of(c),
            audiences: [c.audience.as_str().to_owned()],
            description: c.description.clone(),
        }
    }
}

/// Graph's federatedIdentityCredential body (POST and PATCH).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialRequest {
    /// Microsoft's Graph SDKs name the type they send (`#microsoft.graph.application`); it is
    /// read and ignored.
    #[serde(rename = "@odata.type", default)]
    _odata_type: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    issuer: String,
    subject: Option<String>,
    claims_matching_expression: Option<ExpressionBody>,
    audiences: Option<Vec<String>>,
    description: Option<String>,
}

impl From<CredentialRequest> for CredentialInput {
    fn from(r: CredentialRequest) -> Self {
        Self {
            name: r.name,
            issuer: r.issuer,
            subject: r.subject,
            expression: r.claims_matching_expression.map(|e| (e.value, e.language_version)),
            audiences: r.audiences,
            description: r.description,
        }
    }
}

pub async fn list_credentials(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path(app): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let owner = CredentialOwner::Application(resolve(&admin, &caller, &app).await?.object_id);
    let value = admin.credentials(owner).iter().map(CredentialResponse::from).collect();
    Ok(axum::Json(ListResponse { value }))
}

pub async fn create_credential(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path(app): Path<String>,
    AdminJson(body): AdminJson<CredentialRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let owner = CredentialOwner::Application(resolve(&admin, &caller, &app).await?.object_id);
    let created = admin.add_credential(&caller, owner, body.into()).await.graph()?;
    Ok((StatusCode::CREATED, axum::Json(CredentialResponse::from(&created))))
}

pub async fn get_credential(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path((app, fic)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let owner = CredentialOwner::Application(resolve(&admin, &caller, &app).await?.object_id);
    Ok(axum::Json(CredentialResponse::from(&admin.credential(owner, &fic).graph()?)))
}

/// PATCH: fields left out keep their values; the name cannot change.
pub async fn update_credential(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path((app, fic)): Path<(String, String)>,
    AdminJson(body): AdminJson<CredentialRequest>,
) -> Result<StatusCode, ApiError> {
    let owner = CredentialOwner::Application(resolve(&admin, &caller, &app).await?.object_id);
    let current = admin.credential(owner, &fic).graph()?;
    // A subject or an expression given replaces whichever the credential had; neither keeps it.
    let (subject, expression) = match (body.subject, body.claims_matching_expression) {
        (None, None) => (
            current.matching.subject().map(str::to_owned),
            ExpressionBody::of(&current).map(|e| (e.value, e.language_version)),
        ),
        (subject, expression) => (subject, expression.map(|e| (e.value, e.language_version))),
    };
    let input = CredentialInput {
        name: body.name,
        issuer: if body.issuer.is_empty() { current.issuer.as_str().to_owned() } else { body.issuer },
        subject,
        expression,
        audiences: body.audiences.or_else(|| Some(vec![current.audience.as_str().to_owned()])),
        description: body.description.or(current.description),
    };
    admin.update_credential(&caller, owner, &fic, input).await.graph()?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_credential(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path((app, fic)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let owner = CredentialOwner::Application(resolve(&admin, &caller, &app).await?.object_id);
    admin.delete_credential(&caller, owner, &fic).await.graph()?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_references_read_both_graph_forms() {
        assert_eq!(app_ref("applications(appId='abc')"), ("abc", true));
        assert_eq!(app_ref("applications(appId=\"abc\")"), ("abc", true));
        assert_eq!(app_ref("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17"), ("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17", false));
    }
}

/// The dry run's body: the assertion, and optionally the resource whose roles to report.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExplainRequest {
    assertion: String,
    resource: Option<String>,
}

/// `POST /v1.0/applications/{app}/explainAssertion` (Ficus.Reader): what the token endpoint would
/// do with this assertion for this application, credential by credential. Issues nothing, logs
/// no sign-in, counts against no rate limit.
pub async fn explain_assertion(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    State(tokens): State<Arc<crate::service::token::TokenService>>,
    Path(app): Path<String>,
    AdminJson(body): AdminJson<ExplainRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let client = resolve(&admin, &caller, &app).await?;
    let report = tokens.explain(caller.tenant, &client, &body.assertion, body.resource.as_deref()).await;
    let assertion = match &report.assertion {
        Ok(a) => serde_json::json!({
            "verified": true, "issuer": a.issuer, "subject": a.subject, "audiences": a.audiences,
            "expiresAt": time::OffsetDateTime::from_unix_timestamp(a.expires_at).ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        }),
        Err(e) => serde_json::json!({ "verified": false, "reason": e.to_string() }),
    };
    let credentials: Vec<serde_json::Value> = report
        .credentials
        .iter()
        .map(|(c, checks)| {
            let checks: Vec<serde_json::Value> = checks
                .iter()
                .map(|check| {
                    serde_json::json!({
                        "check": check.what, "expected": check.expected, "presented": check.presented,
                        "holds": check.holds, "explanation": check.to_string(),
                    })
                })
                .collect();
            serde_json::json!({
                "name": c.name.as_str(), "matches": checks.iter().all(|c| c["holds"] == true), "checks": checks,
            })
        })
        .collect();
    let roles = match &report.roles {
        Some(Ok(roles)) => serde_json::json!(roles),
        Some(Err(e)) => serde_json::json!({ "error": crate::http::error::token_error_text(e) }),
        None => serde_json::Value::Null,
    };
    Ok(axum::Json(serde_json::json!({
        "assertion": assertion,
        "credentials": credentials,
        "result": {
            "wouldIssue": report.error.is_none(),
            "matchedCredential": report.matched,
            "error": report.error.as_ref().map(crate::http::error::token_error_text),
            "roles": roles,
        },
    })))
}
