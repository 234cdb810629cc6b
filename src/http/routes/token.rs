//! `POST /{tenant}/oauth2/v2.0/token`: form fields and HTTP Basic client credentials in, Entra's
//! token response out.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::service::token::{Secret, TokenError, TokenRequest, TokenService};

/// The form fields this endpoint reads; others (msal-node's `client-request-id`...) are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    resource: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    token_type: &'static str,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

pub async fn issue_token(
    State(tokens): State<Arc<TokenService>>,
    Path(tenant): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let form = form
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
            _ => TokenError::MissingParameter("grant_type").into(),
        })?
        .0;
    let mut request = token_request(form, &headers);
    request.caller = Some(peer.ip());
    let issued = tokens.issue(&tenant, request).await?;
    let body = TokenResponse {
        token_type: "Bearer",
        expires_in: issued.expires_in,
        ext_expires_in: issued.expires_in,
        access_token: issued.access_token.expose().to_owned(),
        issued_token_type: issued.issued_token_type,
    };
    Ok(([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(body)))
}

/// Merges the form with `Authorization: Basic` (RFC 6749 section 2.3.1: both parts form-encoded).
fn token_request(form: TokenForm, headers: &HeaderMap) -> TokenRequest {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let decode =
                |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            Some((decode(id)?, decode(secret)?))
        });
    let (basic_id, basic_secret) = basic.map_or((None, None), |(id, secret)| (Some(id), Some(secret)));
    TokenRequest {
        grant_type: form.grant_type,
        client_id: form.client_id.or(basic_id),
        client_secret: form.client_secret.or(basic_secret).map(Secret),
        scope: form.scope,
        client_assertion_type: form.client_assertion_type,
        client_assertion: form.client_assertion.map(Secret),
        subject_token: form.subject_token.map(Secret),
        subject_token_type: form.subject_token_type,
        resource: form.resource,
        audience: form.audience,
        caller: None,
    }
}
