//! Entra's status, `error`, AADSTS code and wording for tenant and token endpoint failures.

use axum::http::StatusCode;

use crate::service::DiscoveryError;
use crate::service::token::TokenError;

pub(super) fn unknown_tenant(e: &DiscoveryError) -> (StatusCode, &'static str, Option<u32>, String) {
    let DiscoveryError::UnknownTenant(tenant) = e;
    (
        StatusCode::BAD_REQUEST,
        "invalid_tenant",
        Some(90002),
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// Entra's status, `error`, AADSTS code and wording for each token endpoint failure.
pub(super) fn token_error(e: &TokenError) -> (StatusCode, &'static str, Option<u32>, String) {
    let bad = StatusCode::BAD_REQUEST;
    match e {
        TokenError::Tenant(e) => unknown_tenant(e),
        TokenError::MissingParameter(p) => (
            bad,
            "invalid_request",
            Some(900144),
            format!("The request body must contain the following parameter: '{p}'."),
        ),
        TokenError::UnsupportedGrantType(g) => {
            (bad, "unsupported_grant_type", Some(70003), format!("The app requested an unsupported grant type '{g}'."))
        }
        TokenError::UnknownClient { client_id, tenant } => (
            bad,
            "unauthorized_client",
            Some(700016),
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. You may have sent your authentication request to the wrong tenant."
            ),
        ),
        TokenError::InvalidSecret { client_id } => (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Some(7000215),
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ),
        TokenError::NoCredential => (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Some(7000218),
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into(),
        ),
        TokenError::InvalidScope(scope) => (
            bad,
            "invalid_scope",
            Some(1002012),
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ),
        TokenError::UnknownResource { resource, tenant } => (
            bad,
            "invalid_resource",
            Some(500011),
            format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. You might have sent your authentication request to the wrong tenant."
            ),
        ),
        TokenError::NotImplemented(what) => {
            (bad, "invalid_request", None, format!("{what} are not implemented yet in this broker."))
        }
        TokenError::Signing(cause) => {
            tracing::error!(error = %cause, "token signing failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, "An internal error occurred.".into())
        }
    }
}
