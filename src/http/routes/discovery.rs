//! OpenID discovery, the JWKS, instance discovery, and clear refusals for interactive endpoints.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::domain::fault::{FaultEndpoint, FaultSubjects};
use crate::domain::keys::JwkSet;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::faults::inject;
use crate::service::{DiscoveryService, InstanceMetadata, TenantEndpoints};

/// Verifiers may cache metadata and keys this long; `keys.prepublish` must stay above it.
const METADATA_CACHE: &str = "public, max-age=3600";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(get_openid_configuration))
        .route("/{tenant}/discovery/v2.0/keys", get(get_keys))
        .route("/common/discovery/instance", get(get_instance_metadata))
        .route("/{tenant}/oauth2/v2.0/authorize", get(refuse_authorize).post(refuse_authorize))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(refuse_device_code))
        .route("/{tenant}/oauth2/v2.0/token", post(super::token::issue_token))
        .route("/{tenant}/oauth2/v2.0/logout", get(refuse_logout))
}

/// The discovery document, with the fields Entra publishes.
#[derive(Debug, Serialize)]
pub struct OpenIdConfigurationResponse {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    device_authorization_endpoint: String,
    end_session_endpoint: String,
    jwks_uri: String,
    token_endpoint_auth_methods_supported: [&'static str; 3],
    grant_types_supported: [&'static str; 2],
    response_types_supported: [&'static str; 1],
    response_modes_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 2],
    scopes_supported: [&'static str; 1],
    claims_supported: [&'static str; 16],
    request_uri_parameter_supported: bool,
    tenant_region_scope: Option<&'static str>,
    cloud_instance_name: String,
    cloud_graph_host_name: String,
    msgraph_host: String,
    http_logout_supported: bool,
    frontchannel_logout_supported: bool,
}

impl OpenIdConfigurationResponse {
    fn new(endpoints: TenantEndpoints, host: &str) -> Self {
        Self {
            issuer: endpoints.issuer,
            authorization_endpoint: endpoints.authorization_endpoint,
            token_endpoint: endpoints.token_endpoint,
            device_authorization_endpoint: endpoints.device_authorization_endpoint,
            end_session_endpoint: endpoints.end_session_endpoint,
            jwks_uri: endpoints.jwks_uri,
            token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            grant_types_supported: ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
            response_types_supported: ["token"],
            response_modes_supported: ["query"],
            subject_types_supported: ["pairwise"],
            id_token_signing_alg_values_supported: ["RS256", "ES256"],
            scopes_supported: [".default"],
            claims_supported: [
                "aud",
                "iss",
                "iat",
                "nbf",
                "exp",
                "azp",
                "azpacr",
                "appid",
                "appidacr",
                "oid",
                "sub",
                "tid",
                "roles",
                "idtyp",
                "uti",
                "xms_mirid",
            ],
            request_uri_parameter_supported: false,
            tenant_region_scope: None,
            cloud_instance_name: host.to_owned(),
            cloud_graph_host_name: host.to_owned(),
            msgraph_host: host.to_owned(),
            http_logout_supported: false,
            frontchannel_logout_supported: false,
        }
    }
}

/// The tenant a discovery or JWKS request names, for fault rules.
fn tenant_subjects(discovery: &DiscoveryService, tenant: &str) -> FaultSubjects {
    FaultSubjects { tenant: discovery.tenant(tenant).ok().map(|t| t.id), ..FaultSubjects::default() }
}

pub async fn get_openid_configuration(
    State(state): State<AppState>,
    State(discovery): State<Arc<DiscoveryService>>,
    Path(tenant): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    inject(&state, FaultEndpoint::Discovery, || tenant_subjects(&discovery, &tenant), |_| None).await?;
    let endpoints = discovery.tenant_endpoints(&tenant)?;
    let body = OpenIdConfigurationResponse::new(endpoints, discovery.host());
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static(METADATA_CACHE))], Json(body)))
}

pub async fn get_keys(
    State(state): State<AppState>,
    State(discovery): State<Arc<DiscoveryService>>,
    Path(tenant): Path<String>,
) -> Result<([(header::HeaderName, HeaderValue); 1], Json<JwkSet>), ApiError> {
    inject(&state, FaultEndpoint::Jwks, || tenant_subjects(&discovery, &tenant), |_| None).await?;
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static(METADATA_CACHE))], Json(discovery.jwks(&tenant)?)))
}

#[derive(Debug, Deserialize)]
pub struct InstanceDiscoveryQuery {
    authorization_endpoint: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct InstanceDiscoveryResponse {
    tenant_discovery_endpoint: String,
    #[serde(rename = "api-version")]
    api_version: &'static str,
    metadata: [InstanceAliasesResponse; 1],
}

#[derive(Debug, Serialize)]
pub struct InstanceAliasesResponse {
    preferred_network: String,
    preferred_cache: String,
    aliases: [String; 1],
}

impl From<InstanceMetadata> for InstanceDiscoveryResponse {
    fn from(meta: InstanceMetadata) -> Self {
        Self {
            tenant_discovery_endpoint: meta.tenant_discovery_endpoint,
            api_version: "1.1",
            metadata: [InstanceAliasesResponse {
                preferred_network: meta.host.clone(),
                preferred_cache: meta.host.clone(),
                aliases: [meta.host],
            }],
        }
    }
}

pub async fn get_instance_metadata(
    State(discovery): State<Arc<DiscoveryService>>,
    Query(query): Query<InstanceDiscoveryQuery>,
) -> impl IntoResponse {
    let meta = discovery.instance_metadata(query.authorization_endpoint.as_deref());
    ([(header::CACHE_CONTROL, HeaderValue::from_static(METADATA_CACHE))], Json(InstanceDiscoveryResponse::from(meta)))
}

pub async fn refuse_authorize() -> ApiError {
    ApiError::Unsupported("Interactive sign-in (the authorize endpoint)")
}

pub async fn refuse_device_code() -> ApiError {
    ApiError::Unsupported("The device code flow")
}

pub async fn refuse_logout() -> ApiError {
    ApiError::Unsupported("Sign-out")
}
