//! Entra's status, `error`, AADSTS code and wording for tenant and token endpoint failures.

use axum::http::StatusCode;

use crate::domain::assertion::AssertionError;
use crate::domain::federated_credential::Mismatch;
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

/// Entra's status, `error` and wording for each token endpoint failure; the AADSTS code comes
/// from the service (`TokenError::aadsts`). Assertion and matching failures are `invalid_client`
/// for client credentials and `invalid_grant` for RFC 8693 (its subject token is a grant).
pub(super) fn token_error(e: &TokenError) -> (StatusCode, &'static str, Option<u32>, String) {
    let bad = StatusCode::BAD_REQUEST;
    let code = Some(e.aadsts());
    let client_or_grant = |exchange: bool| if exchange { "invalid_grant" } else { "invalid_client" };
    let (status, error, description) = match e {
        TokenError::Tenant(e) => return unknown_tenant(e),
        TokenError::MissingParameter(p) => {
            (bad, "invalid_request", format!("The request body must contain the following parameter: '{p}'."))
        }
        TokenError::RepeatedParameter(p) => (
            bad,
            "invalid_request",
            format!("Invalid request. The parameter '{p}' is included more than once (RFC 6749, section 3.2)."),
        ),
        TokenError::UnsupportedGrantType(g) => {
            (bad, "unsupported_grant_type", format!("The app requested an unsupported grant type '{g}'."))
        }
        TokenError::UnknownClient { client_id, tenant } => (
            bad,
            "unauthorized_client",
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. You may have sent your authentication request to the wrong tenant."
            ),
        ),
        TokenError::InvalidSecret { client_id } => (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ),
        TokenError::NoCredential => (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into(),
        ),
        TokenError::AssertionType => (
            bad,
            "invalid_request",
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.".into(),
        ),
        TokenError::SubjectTokenType(kind) => (
            bad,
            "invalid_request",
            format!(
                "subject_token_type '{kind}' is not supported: use urn:ietf:params:oauth:token-type:jwt, id_token or access_token."
            ),
        ),
        TokenError::InvalidScope(scope) => (
            bad,
            "invalid_scope",
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ),
        TokenError::UnknownResource { resource, tenant } => (
            bad,
            "invalid_resource",
            format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. You might have sent your authentication request to the wrong tenant."
            ),
        ),
        TokenError::Assertion { error, exchange } => (bad, client_or_grant(*exchange), assertion_description(error)),
        TokenError::NoFederatedCredentials { client_id, exchange } => (
            bad,
            client_or_grant(*exchange),
            format!("The client '{client_id}' has no configured federated identity credentials."),
        ),
        TokenError::NoMatch { issuer, subject, audiences, mismatch, diagnosis, disclose, exchange } => {
            let audience = audiences.join(",");
            let (field, value) = match mismatch {
                Mismatch::Issuer => ("issuer", issuer),
                Mismatch::Audience => ("audience", &audience),
                Mismatch::Subject | Mismatch::SubjectCase => ("subject", subject),
            };
            let case = match mismatch {
                Mismatch::SubjectCase => {
                    " The subject matches with case-insensitive comparison, but not with case-sensitive comparison."
                }
                _ => "",
            };
            (
                bad,
                client_or_grant(*exchange),
                format!(
                    "No matching federated identity record found for presented assertion {field} '{value}'.{case} \
                     Check your federated identity credential Subject, Audience and Issuer against the presented \
                     assertion. Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: '{audience}'.{}",
                    match diagnosis {
                        Some(diagnosis) if *disclose => format!(" Diagnosis: {diagnosis}."),
                        _ => String::new(),
                    }
                ),
            )
        }
        TokenError::Throttled(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "Too many requests for this client or address; retry after the Retry-After period.".into(),
        ),
        TokenError::Signing(cause) => {
            tracing::error!(error = %cause, "token signing failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "An internal error occurred.".into())
        }
    };
    (status, error, code, description)
}

fn assertion_description(e: &AssertionError) -> String {
    match e {
        AssertionError::TimeRange { now, nbf, exp } => {
            let show = |t: &Option<i64>| t.map_or_else(|| "(none)".to_owned(), |t| t.to_string());
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {}, expiry time of assertion {}.",
                show(nbf),
                show(exp)
            )
        }
        AssertionError::TooLong => {
            "Client assertion contains an invalid lifetime: it lives longer than federation.max_assertion_lifetime."
                .into()
        }
        AssertionError::BadSignature => "Client assertion failed signature validation.".into(),
        AssertionError::UnknownKey(kid) => {
            format!("Client assertion failed signature validation: the issuer publishes no key '{kid}'.")
        }
        AssertionError::Algorithm(alg) => format!(
            "Client assertion failed signature validation: the algorithm '{alg}' is not accepted (asymmetric algorithms only)."
        ),
        AssertionError::IssuerUnavailable(_) => "Request to External OIDC endpoint failed.".into(),
        AssertionError::TooLarge(_) | AssertionError::Malformed(_) | AssertionError::MissingClaim(_) => {
            format!("JWT token is invalid or malformed: {e}.")
        }
        AssertionError::UntrustedIssuer { issuer, .. } => {
            format!("No matching federated identity record found for presented assertion issuer '{issuer}'.")
        }
    }
}
