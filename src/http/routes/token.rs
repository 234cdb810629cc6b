//! `POST /{tenant}/oauth2/v2.0/token`: form fields and HTTP Basic client credentials in, Entra's
//! token response out.

use std::net::SocketAddr;
use std::sync::Arc;

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::domain::fault::FaultEndpoint;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::faults::inject;
use crate::service::token::{
    JWT_BEARER, SUBJECT_TOKEN_TYPES, Secret, TOKEN_EXCHANGE, TokenError, TokenRequest, TokenService,
};

/// The form fields this endpoint reads; others (msal-node's `client-request-id`...) are ignored.
/// A value that needed no decoding is borrowed from the body.
#[derive(Debug, Default)]
pub struct TokenForm<'a> {
    grant_type: Option<Cow<'a, str>>,
    client_id: Option<Cow<'a, str>>,
    client_secret: Option<Cow<'a, str>>,
    scope: Option<Cow<'a, str>>,
    client_assertion_type: Option<Cow<'a, str>>,
    client_assertion: Option<Cow<'a, str>>,
    subject_token: Option<Cow<'a, str>>,
    subject_token_type: Option<Cow<'a, str>>,
    resource: Option<Cow<'a, str>>,
    audience: Option<Cow<'a, str>>,
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
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        super::token_json(&issued.access_token, &rest),
    ))
}

/// One `name=value` pair, decoded as `form_urlencoded` decodes it (`+` is a space, invalid UTF-8
/// is replaced). Token requests carry long values (assertions) made only of characters that need
/// no decoding: those are borrowed as they are.
fn decode_pair(raw: &[u8]) -> (Cow<'_, str>, Cow<'_, str>) {
    let (name, value) = match memchr::memchr(b'=', raw) {
        Some(at) => (&raw[..at], &raw[at + 1..]),
        None => (raw, &raw[raw.len()..]),
    };
    (decode_component(name), decode_component(value))
}

/// The protocol's URNs as every SDK form-encodes them (`:` as `%3A`), decoded once here: the
/// assertion type on every client-assertion request, the grant and token types of RFC 8693. Other
/// spellings of the same values go through the decoder.
const SPELLED: [(&[u8], &str); 5] = [
    (b"urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer", JWT_BEARER),
    (b"urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange", TOKEN_EXCHANGE),
    (b"urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt", SUBJECT_TOKEN_TYPES[0]),
    (b"urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token", SUBJECT_TOKEN_TYPES[1]),
    (b"urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token", SUBJECT_TOKEN_TYPES[2]),
];

/// One name or value. The decoded text is written into one buffer of the encoded length (it is
/// never longer): `form_urlencoded` grows its buffer a byte at a time, several allocations for a
/// `urn%3A...` value.
fn decode_component(raw: &[u8]) -> Cow<'_, str> {
    if let Some((_, text)) = SPELLED.iter().find(|(spelled, _)| *spelled == raw) {
        return Cow::Borrowed(text);
    }
    if memchr::memchr2(b'%', b'+', raw).is_none() {
        // Valid UTF-8 (an assertion always is) is checked on the fast path and borrowed; only
        // invalid bytes pay for the lossy walk.
        return match std::str::from_utf8(raw) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(raw),
        };
    }
    let mut bytes = Vec::with_capacity(raw.len());
    match memchr::memchr(b'+', raw) {
        None => bytes.extend(percent_encoding::percent_decode(raw)),
        Some(_) => {
            let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
            bytes.extend(percent_encoding::percent_decode(&spaced));
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => Cow::Owned(text),
        Err(invalid) => Cow::Owned(String::from_utf8_lossy(invalid.as_bytes()).into_owned()),
    }
}

impl<'a> TokenForm<'a> {
    /// Parses an `application/x-www-form-urlencoded` body. A parameter given twice is refused
    /// (RFC 6749, section 3.2); unknown ones are ignored.
    fn parse(body: &'a [u8]) -> Result<Self, TokenError> {
        let mut form = Self::default();
        let mut start = 0;
        // Split on '&' with memchr: an assertion is a kilobyte or two to pass over.
        let pairs = memchr::memchr_iter(b'&', body).chain(std::iter::once(body.len())).map(|end| {
            let pair = &body[start..end];
            start = end + 1;
            pair
        });
        for raw in pairs.filter(|p| !p.is_empty()) {
            let (name, value) = decode_pair(raw);
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
            if slot.replace(value).is_some() {
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
fn token_request(form: TokenForm<'_>, basic: Option<(String, String)>) -> TokenRequest<'_> {
    let (basic_id, basic_secret) =
        basic.map_or((None, None), |(id, secret)| (Some(Cow::Owned(id)), Some(Cow::Owned(secret))));
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
    fn each_pair_decodes_as_form_urlencoded_decodes_it() {
        let pairs: [&[u8]; 11] = [
            b"scope=api%3A%2F%2Fvault%2F.default",
            b"scope=a+b%2Bc",
            b"name%3Dx=value=with=equals",
            b"client_id=%E2%9C%93",
            b"bad=%FF%FE",
            b"half=%4",
            b"trailing=%",
            b"plus+name=+",
            b"lone",
            b"=novalue",
            b"raw=\xff",
        ];
        for raw in pairs {
            let expected = form_urlencoded::parse(raw).next().unwrap();
            assert_eq!(decode_pair(raw), expected, "{}", String::from_utf8_lossy(raw));
        }
        assert!(
            matches!(decode_pair(b"client_assertion=eyJ.e30.sig").1, Cow::Borrowed(_)),
            "plain values are borrowed"
        );
    }

    #[test]
    fn the_protocols_urns_in_their_usual_spelling_decode_as_the_decoder_would_without_it() {
        for (spelled, text) in SPELLED {
            let decoded: String = percent_encoding::percent_decode(spelled).decode_utf8().unwrap().into_owned();
            assert_eq!(decoded, text, "{}", String::from_utf8_lossy(spelled));
            assert!(matches!(decode_component(spelled), Cow::Borrowed(t) if t == text));
        }
        assert_eq!(decode_component(b"urn%3aietf%3aparams%3aoauth%3agrant-type%3atoken-exchange"), TOKEN_EXCHANGE);
    }

    #[test]
    fn a_repeated_parameter_is_refused_naming_it() {
        let refused = TokenForm::parse(b"scope=a&grant_type=client_credentials&scope=b");
        assert!(matches!(refused, Err(TokenError::RepeatedParameter("scope"))), "{refused:?}");
        let encoded_twice = TokenForm::parse(b"scope=a&sc%6Fpe=b");
        assert!(matches!(encoded_twice, Err(TokenError::RepeatedParameter("scope"))), "{encoded_twice:?}");
    }
}
