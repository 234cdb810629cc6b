//! Errors of the managed-identity endpoints, as IMDS (`{"error","error_description"}`) and App
//! Service (`{"statusCode","message"}`) answer them. Bad requests are 400 (azure-identity reads a
//! 400 as "no identity here" and moves on in a chain); the word "unreachable" never appears in a
//! 403, which the SDKs would read as a Docker Desktop proxy.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::service::managed_identity::{IMDS_API_VERSIONS, MiError};

/// Which managed-identity endpoint failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiEndpoint {
    Imds,
    AppService,
    /// The deprecated VM extension (`localhost:50342/oauth2/token`).
    VmExtension,
}

fn status_and_code(e: &MiError) -> (StatusCode, &'static str) {
    match e {
        MiError::MissingMetadataHeader
        | MiError::Forwarded
        | MiError::MissingApiVersion
        | MiError::UnsupportedApiVersion(_)
        | MiError::MissingResource
        | MiError::UnboundAddress(_)
        | MiError::AmbiguousSelection
        | MiError::MultipleUserIdentities
        | MiError::IdentityNotFound => (StatusCode::BAD_REQUEST, "invalid_request"),
        MiError::MissingIdentityHeader | MiError::WrongIdentityHeader => (StatusCode::UNAUTHORIZED, "invalid_request"),
        MiError::UnknownResource { .. } => (StatusCode::BAD_REQUEST, "invalid_resource"),
        MiError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
        MiError::Signing(cause) => {
            tracing::error!(error = %cause, "managed-identity token signing failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    }
}

fn message(e: &MiError) -> String {
    match e {
        MiError::UnknownResource { .. } => format!("AADSTS500011: {e}"),
        MiError::MissingApiVersion | MiError::UnsupportedApiVersion(_) => {
            format!("{e}; supported versions: {}", IMDS_API_VERSIONS.join(", "))
        }
        MiError::Signing(_) => "An internal error occurred.".to_owned(),
        _ => e.to_string(),
    }
}

pub fn render(endpoint: MiEndpoint, e: &MiError) -> Response {
    let (status, code) = status_and_code(e);
    let message = match (endpoint, e) {
        (MiEndpoint::AppService, MiError::UnsupportedApiVersion(_) | MiError::MissingApiVersion) => {
            format!("{e}; use api-version=2019-08-01")
        }
        // The extension's documented code for an unknown resource.
        (MiEndpoint::VmExtension, MiError::UnknownResource { .. }) => format!("AADSTS50001: {e}"),
        _ => message(e),
    };
    let code = match (endpoint, e) {
        (MiEndpoint::VmExtension, MiError::MissingMetadataHeader) => "bad_request_102",
        _ => code,
    };
    let mut response = match endpoint {
        MiEndpoint::Imds | MiEndpoint::VmExtension => {
            (status, Json(serde_json::json!({ "error": code, "error_description": message }))).into_response()
        }
        MiEndpoint::AppService => {
            (status, Json(serde_json::json!({ "statusCode": status.as_u16(), "message": message }))).into_response()
        }
    };
    if let MiError::Throttled(wait) = e {
        super::set_retry_after(&mut response, *wait);
    }
    response
}
