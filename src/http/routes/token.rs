//! `POST /{tenant}/oauth2/v2.0/token`: form fields and HTTP Basic client credentials in, Entra's
//! token response out.

use std::net::SocketAddr;
use std::sync::Arc;

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::domain::fault::FaultEndpoint;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::faults::inject;
use crate::service::token::{Secret, TokenError, TokenRequest, TokenService};

/// The form fields this endpoint reads; others (msal-node's `client-request-id`...) are ignored.
#[derive(Debug, Default)]
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

/// The success body's fields after `access_token` (see [`super::token_json`]).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    token_type: &'static str,
    expires_in: u64,
    ext_expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

pub async fn issue_token(
    State(state): State<AppState>,
    State(tokens): State<Arc<TokenService>>,
    Path(tenant): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    asked: Request,
) -> Result<impl IntoResponse, ApiError> {
    // The headers are read in place before the body is taken (the `HeaderMap` extractor copies).
    let headers = asked.headers();
    let is_form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    let basic = basic_credentials(headers);
    let body = Bytes::from_request(asked, &()).await.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
        _ => TokenError::MissingParameter("grant_type").into(),
    })?;
    if !is_form {
        return Err(TokenError::MissingParameter("grant_type").into());
    }
    let form = TokenForm::parse(&body)?;
    let mut request = token_request(form, basic);
    request.caller = Some(peer.ip());
    let caller = || tokens.caller(&tenant, request.client_id.as_deref());
    inject(&state, FaultEndpoint::Token, caller, |subjects| tokens.injected_sign_in(subjects, &request)).await?;
    let issued = tokens.issue(&tenant, request).await?;
    let rest = TokenResponse {
        token_type: "Bearer",
        expires_in: issued.expires_in,
        ext_expires_in: issued.expires_in,
        issued_token_type: issued.issued_token_type,
    };
    Ok((
        [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
        super::token_json(&issued.access_token, &rest),
    ))
}

/// One `name=value` pair, decoded. Token requests carry long values (assertions) made only of
/// characters that need no decoding: those are taken as they are, in one pass.
fn decode_pair(raw: &[u8]) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    if memchr::memchr2(b'%', b'+', raw).is_none()
        && let Ok(text) = std::str::from_utf8(raw)
    {
        let (name, value) = text.split_once('=').unwrap_or((text, ""));
        return Some((Cow::Borrowed(name), Cow::Borrowed(value)));
    }
    form_urlencoded::parse(raw).next()
}

impl TokenForm {
    /// Parses an `application/x-www-form-urlencoded` body. A parameter given twice is refused
    /// (RFC 6749, section 3.2); unknown ones are ignored.
    fn parse(body: &[u8]) -> Result<Self, TokenError> {
        let mut form = Self::default();
        let mut start = 0;
        // Split on '&' with memchr: an assertion is a kilobyte or two to pass over.
        let pairs = memchr::memchr_iter(b'&', body).chain(std::iter::once(body.len())).map(|end| {
            let pair = &body[start..end];
            start = end + 1;
            pair
        });
        for raw in pairs.filter(|p| !p.is_empty()) {
            let Some((name, value)) = decode_pair(raw) else { continue };
            let (slot, name) = match name.as_ref() {
                "grant_type" => (&mut form.grant_type, "grant_type"),
                "client_id" => (&mut form.client_id, "client_id"),
                "client_secret" => (&mut form.client_secret, "client_secret"),
                "scope" => (&mut form.scope, "scope"),
                "client_assertion_type" => (&mut form.client_assertion_type, "client_assertion_type"),
                "client_assertion" => (&mut form.client_assertion, "client_assertion"),
                "subject_token" => (&mut form.subject_token, "subject_token"),
                "subject_token_type" => (&mut form.subject_token_type, "subject_token_type"),
                "resource" => (&mut form.resource, "resource"),
                "audience" => (&mut form.audience, "audience"),
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(TokenError::RepeatedParameter(name));
            }
        }
        Ok(form)
    }
}

/// The client id and secret of `Authorization: Basic` (RFC 6749 section 2.3.1: both parts
/// form-encoded).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    headers
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
        })
}

/// Merges the form with the `Authorization: Basic` credentials.
fn token_request(form: TokenForm, basic: Option<(String, String)>) -> TokenRequest {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_taken_as_they_are_and_encoded_ones_are_decoded() {
        let form = TokenForm::parse(b"grant_type=client_credentials&scope=api%3A%2F%2Fvault%2F.default&client_id=a+b&x=1&&client_assertion=eyJ.e30.sig").unwrap();
        assert_eq!(form.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(form.scope.as_deref(), Some("api://vault/.default"));
        assert_eq!(form.client_id.as_deref(), Some("a b"), "'+' is a space");
        assert_eq!(form.client_assertion.as_deref(), Some("eyJ.e30.sig"));
        assert_eq!(
            TokenForm::parse(b"resource").unwrap().resource.as_deref(),
            Some(""),
            "a name alone has an empty value"
        );
    }

    #[test]
    fn a_repeated_parameter_is_refused_naming_it() {
        let refused = TokenForm::parse(b"scope=a&grant_type=client_credentials&scope=b");
        assert!(matches!(refused, Err(TokenError::RepeatedParameter("scope"))), "{refused:?}");
        let encoded_twice = TokenForm::parse(b"scope=a&sc%6Fpe=b");
        assert!(matches!(encoded_twice, Err(TokenError::RepeatedParameter("scope"))), "{encoded_twice:?}");
    }
}
