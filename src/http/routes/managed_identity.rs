//! The managed-identity listener: IMDS (`/metadata/identity/oauth2/token`, with or without the
//! trailing slash msal-node sends) and App Service (`/msi/token`), answering as Azure does; and
//! the deprecated VM extension's `/oauth2/token` on a listener of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use std::borrow::Cow;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::domain::fault::FaultEndpoint;
use crate::domain::ids::ClientId;
use crate::http::AppState;
use crate::http::error::{ApiError, MiEndpoint};
use crate::http::faults::inject;
use crate::service::managed_identity::{
    AppServiceRequest, IdentitySelection, ImdsRequest, ManagedIdentityService, ManagedIdentityToken,
};

/// The query as name/value pairs; repeated names keep the first value.
fn query_pairs(raw: Option<&str>) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !pairs.iter().any(|(n, _)| *n == name) {
            pairs.push((name, value));
        }
    }
    pairs
}

fn get(pairs: &[(Cow<'_, str>, Cow<'_, str>)], name: &str) -> Option<String> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_ref().to_owned())
}

/// Both spellings of the resource-id selector are accepted on both endpoints (PROTOCOL.md).
fn selection(pairs: &[(Cow<'_, str>, Cow<'_, str>)]) -> IdentitySelection {
    IdentitySelection {
        client_id: get(pairs, "client_id"),
        object_id: get(pairs, "object_id"),
        resource_id: get(pairs, "msi_res_id").or_else(|| get(pairs, "mi_res_id")),
    }
}

/// IMDS's success body after `access_token` (see [`super::token_json`]): numbers as strings.
#[derive(Debug, Serialize)]
pub struct ImdsTokenResponse<'a> {
    refresh_token: &'static str,
    #[serde(serialize_with = "number_as_text")]
    expires_in: i64,
    #[serde(serialize_with = "number_as_text")]
    expires_on: i64,
    #[serde(serialize_with = "number_as_text")]
    ext_expires_in: i64,
    #[serde(serialize_with = "number_as_text")]
    not_before: i64,
    resource: &'a str,
    token_type: &'static str,
    #[serde(serialize_with = "id_as_text")]
    client_id: &'a ClientId,
}

/// A number written as a JSON string, as IMDS writes them, formatted on the stack.
fn number_as_text<S: serde::Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(itoa::Buffer::new().format(*value))
}

/// An id written as a JSON string, formatted on the stack.
fn id_as_text<S: serde::Serializer>(value: &&ClientId, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    serializer.serialize_str(value.as_uuid().hyphenated().encode_lower(&mut text))
}

impl<'a> From<&'a ManagedIdentityToken> for ImdsTokenResponse<'a> {
    fn from(t: &'a ManagedIdentityToken) -> Self {
        Self {
            refresh_token: "",
            expires_in: t.expires_in,
            expires_on: t.expires_on,
            ext_expires_in: t.expires_in,
            not_before: t.not_before,
            resource: &t.resource,
            token_type: "Bearer",
            client_id: &t.client_id,
        }
    }
}

fn imds_request(headers: &HeaderMap, query: Option<&str>) -> ImdsRequest {
    let pairs = query_pairs(query);
    ImdsRequest {
        metadata_header: headers
            .get("metadata")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        forwarded: headers.contains_key("x-forwarded-for"),
        api_version: get(&pairs, "api-version"),
        resource: get(&pairs, "resource"),
        selection: selection(&pairs),
    }
}

pub async fn issue_imds_token(
    State(state): State<AppState>,
    State(service): State<Arc<ManagedIdentityService>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    asked: Request,
) -> Result<impl IntoResponse, ApiError> {
    // The whole request, read in place (the `HeaderMap` and `RawQuery` extractors copy).
    let (headers, query) = (asked.headers(), asked.uri().query());
    let request = imds_request(headers, query);
    let resource = request.resource.as_deref();
    let _in_flight = service
        .admit_by_address(Some(peer.ip()), resource)
        .map_err(|e| ApiError::ManagedIdentity(MiEndpoint::Imds, e))?;
    let caller = || service.imds_caller(Some(peer.ip()), &request.selection);
    inject(&state, FaultEndpoint::Imds, caller, |subjects| service.injected_sign_in(subjects, resource, peer.ip()))
        .await?;
    let token =
        service.imds_token(Some(peer.ip()), request).map_err(|e| ApiError::ManagedIdentity(MiEndpoint::Imds, e))?;
    Ok(super::token_json(&token.access_token, &ImdsTokenResponse::from(&token)))
}

/// The VM extension's success body after `access_token`: IMDS's without `client_id` and
/// `ext_expires_in`.
#[derive(Debug, Serialize)]
pub struct VmExtensionTokenResponse {
    refresh_token: &'static str,
    expires_in: String,
    expires_on: String,
    not_before: String,
    resource: String,
    token_type: &'static str,
}

pub async fn issue_vm_extension_token(
    State(service): State<Arc<ManagedIdentityService>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    asked: Request,
) -> Result<impl IntoResponse, ApiError> {
    // The whole request, read in place (the `HeaderMap` and `RawQuery` extractors copy).
    let (headers, query) = (asked.headers(), asked.uri().query());
    let request = imds_request(headers, query);
    let _in_flight = service
        .admit_by_address(Some(peer.ip()), request.resource.as_deref())
        .map_err(|e| ApiError::ManagedIdentity(MiEndpoint::VmExtension, e))?;
    let token = service
        .vm_extension_token(Some(peer.ip()), request)
        .map_err(|e| ApiError::ManagedIdentity(MiEndpoint::VmExtension, e))?;
    let rest = VmExtensionTokenResponse {
        refresh_token: "",
        expires_in: token.expires_in.to_string(),
        expires_on: token.expires_on.to_string(),
        not_before: token.not_before.to_string(),
        resource: token.resource,
        token_type: "Bearer",
    };
    Ok(super::token_json(&token.access_token, &rest))
}

/// App Service's success body after `access_token`.
#[derive(Debug, Serialize)]
pub struct AppServiceTokenResponse {
    expires_on: String,
    resource: String,
    token_type: &'static str,
    client_id: String,
}

pub async fn issue_app_service_token(
    State(state): State<AppState>,
    State(service): State<Arc<ManagedIdentityService>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    asked: Request,
) -> Result<impl IntoResponse, ApiError> {
    // The whole request, read in place (the `HeaderMap` and `RawQuery` extractors copy).
    let (headers, query) = (asked.headers(), asked.uri().query());
    let pairs = query_pairs(query);
    let request = AppServiceRequest {
        identity_header: headers.get("x-identity-header").and_then(|v| v.to_str().ok()).map(str::to_owned),
        api_version: get(&pairs, "api-version"),
        resource: get(&pairs, "resource"),
        selection: selection(&pairs),
    };
    let resource = request.resource.as_deref();
    let _in_flight = service
        .admit_by_header(Some(peer.ip()), request.identity_header.as_deref(), resource)
        .map_err(|e| ApiError::ManagedIdentity(MiEndpoint::AppService, e))?;
    let caller = || service.app_service_caller(request.identity_header.as_deref(), &request.selection);
    inject(&state, FaultEndpoint::AppService, caller, |subjects| {
        service.injected_sign_in(subjects, resource, peer.ip())
    })
    .await?;
    let token = service
        .app_service_token(Some(peer.ip()), request)
        .map_err(|e| ApiError::ManagedIdentity(MiEndpoint::AppService, e))?;
    let rest = AppServiceTokenResponse {
        expires_on: token.expires_on.to_string(),
        resource: token.resource,
        token_type: "Bearer",
        client_id: token.client_id.to_string(),
    };
    Ok(super::token_json(&token.access_token, &rest))
}
