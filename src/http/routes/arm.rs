//! ARM-shaped managed identities and compute resources: user-assigned identities (with their
//! federated identity credentials), virtual machines, web apps and slots with their `identity`
//! block. Paths use ARM's canonical casing; `api-version` is accepted and ignored.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::domain::federated_credential::{CredentialOwner, FederatedCredential};
use crate::domain::resource::{ComputeResource, IdentityType, ManagedIdentity, ResourceId, parse_network};
use crate::http::AppState;
use crate::http::admin::{AdminCaller, AdminJson};
use crate::http::error::{ApiError, InShape};
use crate::http::routes::graph_applications::ExpressionBody;
use crate::service::admin::{AdminError, AdminService, Caller, CredentialInput, ResourceSpec};

const RG: &str = "/subscriptions/{sub}/resourceGroups/{rg}/providers";

pub fn router() -> Router<AppState> {
    let identity = format!("{RG}/Microsoft.ManagedIdentity/userAssignedIdentities/{{name}}");
    let compute = get(get_resource).put(put_resource).delete(delete_resource);
    let router = Router::new()
        .route(&format!("{RG}/Microsoft.ManagedIdentity/userAssignedIdentities"), get(list_identities))
        .route("/subscriptions/{sub}/providers/Microsoft.ManagedIdentity/userAssignedIdentities", get(list_identities))
        .route(&identity, get(get_identity).put(put_identity).delete(delete_identity))
        .route(&format!("{identity}/federatedIdentityCredentials"), get(list_identity_credentials))
        .route(
            &format!("{identity}/federatedIdentityCredentials/{{fic}}"),
            get(get_identity_credential).put(put_identity_credential).delete(delete_identity_credential),
        )
        .route(&format!("{RG}/Microsoft.Compute/virtualMachines/{{name}}"), compute.clone())
        .route(&format!("{RG}/Microsoft.Web/sites/{{name}}"), compute.clone())
        .route(&format!("{RG}/Microsoft.Web/sites/{{name}}/slots/{{slot}}"), compute);
    let mut router = router;
    for resource in [
        format!("{RG}/Microsoft.Compute/virtualMachines/{{name}}"),
        format!("{RG}/Microsoft.Web/sites/{{name}}"),
        format!("{RG}/Microsoft.Web/sites/{{name}}/slots/{{slot}}"),
    ] {
        router = router
            .route(&format!("{resource}/listIdentityHeader"), post(list_identity_header))
            .route(&format!("{resource}/regenerateIdentityHeader"), post(regenerate_identity_header));
    }
    router
}

/// The resource id named by the request path (up to the resource itself).
fn resource_id(uri: &Uri, depth: usize) -> Result<ResourceId, ApiError> {
    let segments: Vec<&str> = uri.path().split('/').collect();
    let path = segments[..segments.len().saturating_sub(depth)].join("/");
    ResourceId::parse(&path).map_err(AdminError::from).arm()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityResponse {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    location: &'static str,
    properties: IdentityProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProperties {
    tenant_id: String,
    principal_id: String,
    client_id: String,
}

impl From<&ManagedIdentity> for IdentityResponse {
    fn from(i: &ManagedIdentity) -> Self {
        Self {
            id: i.resource_id.to_string(),
            name: i.resource_id.name().to_owned(),
            kind: i.resource_id.kind().arm_type(),
            location: "local",
            properties: IdentityProperties {
                tenant_id: i.tenant_id.to_string(),
                principal_id: i.principal_id.to_string(),
                client_id: i.client_id.to_string(),
            },
        }
    }
}

/// ARM bodies carry `location` and `tags`; ficus keeps neither.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRequest {
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

/// `GET .../userAssignedIdentities` in a subscription, or in one of its resource groups, by name.
pub async fn list_identities(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let raw = params.get("sub").map(String::as_str).unwrap_or_default();
    let subscription = uuid::Uuid::try_parse(raw).map_err(|_| {
        ApiError::InvalidBody(crate::http::error::Shape::Arm, format!("'{raw}' is not a subscription id"))
    })?;
    let identities = admin.user_identities(&caller, subscription, params.get("rg").map(String::as_str)).arm()?;
    let value: Vec<_> = identities.iter().map(IdentityResponse::from).collect();
    Ok(Json(serde_json::json!({ "value": value })))
}

pub async fn get_identity(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
) -> Result<impl IntoResponse, ApiError> {
    let id = resource_id(&uri, 0)?;
    Ok(Json(IdentityResponse::from(&admin.caught_up(|| admin.user_identity(&caller, &id)).await.arm()?)))
}

pub async fn put_identity(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // The body is optional here (nothing in it is kept), but when present it must be valid.
    if !body.is_empty() {
        let parsed: IdentityRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::InvalidBody(crate::http::error::Shape::Arm, e.to_string()))?;
        let _ = (parsed.location, parsed.tags);
    }
    let id = resource_id(&uri, 0)?;
    let existed = admin.user_identity(&caller, &id).is_ok();
    let identity = admin.put_user_identity(&caller, &id, None).await.arm()?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(IdentityResponse::from(&identity))))
}

pub async fn delete_identity(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    admin.delete_user_identity(&caller, &resource_id(&uri, 0)?).await.arm()?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Serialize)]
pub struct ArmCredentialResponse {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    properties: ArmCredentialProperties,
}

/// ARM's federated identity credential properties (2025-01-31-preview adds
/// `claimsMatchingExpression`, given instead of `subject`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArmCredentialProperties {
    issuer: String,
    subject: Option<String>,
    claims_matching_expression: Option<ExpressionBody>,
    audiences: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmCredentialRequest {
    properties: ArmCredentialProperties,
}

fn credential_response(identity: &ResourceId, c: &FederatedCredential) -> ArmCredentialResponse {
    ArmCredentialResponse {
        id: format!("{identity}/federatedIdentityCredentials/{}", c.name.as_str()),
        name: c.name.as_str().to_owned(),
        kind: "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        properties: ArmCredentialProperties {
            issuer: c.issuer.as_str().to_owned(),
            subject: c.matching.subject().map(str::to_owned),
            claims_matching_expression: ExpressionBody::of(c),
            audiences: Some(vec![c.audience.as_str().to_owned()]),
        },
    }
}

/// The user-assigned identity a path names (caught up with the registry on a miss: see
/// [`AdminService::caught_up`]).
async fn identity_owner(
    admin: &AdminService,
    caller: &Caller,
    uri: &Uri,
    depth: usize,
) -> Result<(ResourceId, CredentialOwner), ApiError> {
    let id = resource_id(uri, depth)?;
    let identity = admin.caught_up(|| admin.user_identity(caller, &id)).await.arm()?;
    Ok((id, CredentialOwner::Identity(identity.principal_id)))
}

pub async fn list_identity_credentials(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
) -> Result<impl IntoResponse, ApiError> {
    let (id, owner) = identity_owner(&admin, &caller, &uri, 1).await?;
    let value: Vec<_> = admin.credentials(owner).iter().map(|c| credential_response(&id, c)).collect();
    Ok(Json(serde_json::json!({ "value": value })))
}

pub async fn get_identity_credential(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, owner) = identity_owner(&admin, &caller, &uri, 2).await?;
    let name = params.get("fic").map(String::as_str).unwrap_or_default();
    Ok(Json(credential_response(&id, &admin.credential(owner, name).arm()?)))
}

/// PUT creates the credential named in the path, or replaces its issuer, subject (or expression)
/// and audiences.
pub async fn put_identity_credential(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
    Path(params): Path<BTreeMap<String, String>>,
    AdminJson(body): AdminJson<ArmCredentialRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, owner) = identity_owner(&admin, &caller, &uri, 2).await?;
    let name = params.get("fic").cloned().unwrap_or_default();
    let input = CredentialInput {
        name: name.clone(),
        issuer: body.properties.issuer,
        subject: body.properties.subject,
        expression: body.properties.claims_matching_expression.map(|e| (e.value, e.language_version)),
        audiences: body.properties.audiences,
        description: None,
    };
    let (status, credential) = if admin.credential(owner, &name).is_ok() {
        (StatusCode::OK, admin.update_credential(&caller, owner, &name, input).await.arm()?)
    } else {
        (StatusCode::CREATED, admin.add_credential(&caller, owner, input).await.arm()?)
    };
    Ok((status, Json(credential_response(&id, &credential))))
}

pub async fn delete_identity_credential(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let (_, owner) = identity_owner(&admin, &caller, &uri, 2).await?;
    let name = params.get("fic").map(String::as_str).unwrap_or_default();
    admin.delete_credential(&caller, owner, name).await.arm()?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Serialize)]
pub struct ResourceResponse {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    location: &'static str,
    identity: IdentityBlock,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    principal_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    user_assigned_identities: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequest {
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    identity: Option<IdentityBlock>,
    /// The resource's own properties (size, image, runtime...) are not modelled by ficus, except
    /// `networkAddresses` (a ficus extension): the addresses or CIDRs the resource calls IMDS from.
    #[serde(default)]
    properties: Option<serde_json::Value>,
}

fn resource_response(admin: &AdminService, caller: &Caller, r: &ComputeResource) -> ResourceResponse {
    let users: BTreeMap<String, serde_json::Value> = r
        .user_identities
        .iter()
        .filter_map(|id| admin.user_identity(caller, id).ok())
        .map(|i| {
            let ids =
                serde_json::json!({ "principalId": i.principal_id.to_string(), "clientId": i.client_id.to_string() });
            (i.resource_id.to_string(), ids)
        })
        .collect();
    ResourceResponse {
        id: r.id.to_string(),
        name: r.id.name().rsplit('/').next().unwrap_or_default().to_owned(),
        kind: r.id.kind().arm_type(),
        location: "local",
        identity: IdentityBlock {
            kind: r.identity_type().as_str().to_owned(),
            principal_id: r.system_identity.as_ref().map(|i| i.principal_id.to_string()),
            tenant_id: r.system_identity.as_ref().map(|i| i.tenant_id.to_string()),
            user_assigned_identities: (!users.is_empty()).then_some(users),
        },
    }
}

pub async fn get_resource(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
) -> Result<impl IntoResponse, ApiError> {
    let resource = admin.resource(&caller, &resource_id(&uri, 0)?).arm()?;
    Ok(Json(resource_response(&admin, &caller, &resource)))
}

pub async fn put_resource(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
    AdminJson(body): AdminJson<ResourceRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let _ = (body.location, body.tags);
    let id = resource_id(&uri, 0)?;
    let (identity_type, users) = match body.identity {
        None => (IdentityType::None, Vec::new()),
        Some(block) => {
            let kind = IdentityType::parse(&block.kind).map_err(AdminError::from).arm()?;
            let users = block
                .user_assigned_identities
                .unwrap_or_default()
                .keys()
                .map(|raw| ResourceId::parse(raw).map_err(AdminError::from).arm())
                .collect::<Result<Vec<_>, _>>()?;
            (kind, users)
        }
    };
    let addresses = body
        .properties
        .as_ref()
        .and_then(|p| p.get("networkAddresses"))
        .map(|list| {
            let items = list.as_array().ok_or_else(|| {
                ApiError::InvalidBody(
                    crate::http::error::Shape::Arm,
                    "properties.networkAddresses must be a list".into(),
                )
            })?;
            items
                .iter()
                .map(|a| parse_network(a.as_str().unwrap_or_default()).map_err(AdminError::from).arm())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let existed = admin.resource(&caller, &id).is_ok();
    let spec = ResourceSpec { identity_type, user_identities: users, addresses, system_ids: None };
    let resource = admin.put_resource(&caller, &id, spec).await.arm()?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(resource_response(&admin, &caller, &resource))))
}

pub async fn delete_resource(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    admin.delete_resource(&caller, &resource_id(&uri, 0)?).await.arm()?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityHeaderResponse {
    identity_endpoint_path: &'static str,
    identity_header: Option<String>,
}

fn identity_header_response(resource: &ComputeResource) -> IdentityHeaderResponse {
    IdentityHeaderResponse {
        identity_endpoint_path: "/msi/token",
        identity_header: resource.identity_header.as_ref().map(|h| h.expose().to_owned()),
    }
}

/// ARM-style "list secrets" action: the resource's App Service `IDENTITY_HEADER`.
pub async fn list_identity_header(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
) -> Result<impl IntoResponse, ApiError> {
    let resource = admin.resource(&caller, &resource_id(&uri, 1)?).arm()?;
    Ok(Json(identity_header_response(&resource)))
}

/// Replaces the identity header; the old one stops working at once.
pub async fn regenerate_identity_header(
    AdminCaller(caller): AdminCaller,
    State(admin): State<Arc<AdminService>>,
    uri: Uri,
) -> Result<impl IntoResponse, ApiError> {
    let resource = admin.regenerate_identity_header(&caller, &resource_id(&uri, 1)?).await.arm()?;
    Ok(Json(identity_header_response(&resource)))
}
