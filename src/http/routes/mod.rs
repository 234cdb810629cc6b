//! Route groups, one file per concern.

pub mod arm;
pub mod discovery;
pub mod faults;
pub mod graph_applications;
pub mod graph_directory;
pub mod health;
pub mod managed_identity;
pub mod token;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::token::SignedJwt;

/// A token answer's JSON body: `access_token` first, then `rest`'s fields as serde writes them, in
/// one buffer. A token that is base64url and dots (every JWS the key ring signs; checked once when
/// it was made) is copied in as it is: a cache hit neither clones nor escapes it.
pub fn token_json(token: &SignedJwt, rest: &impl Serialize) -> Response {
    let text = token.expose();
    let mut body = Vec::with_capacity(text.len() + 320);
    body.extend_from_slice(b"{\"access_token\":");
    if token.is_json_plain() {
        body.push(b'"');
        body.extend_from_slice(text.as_bytes());
        body.push(b'"');
    } else if serde_json::to_writer(&mut body, text).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let rest_at = body.len();
    if serde_json::to_writer(&mut body, rest).is_err() || body.get(rest_at) != Some(&b'{') {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if body.len() == rest_at + 2 {
        // `rest` has no fields: `{}` becomes the closing brace alone.
        body.truncate(rest_at);
        body.push(b'}');
    } else {
        body[rest_at] = b',';
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_token_answer_carries_the_token_and_every_other_field_as_json() {
        #[derive(Serialize)]
        struct Rest {
            token_type: &'static str,
            expires_in: u64,
            resource: &'static str,
        }
        let token = SignedJwt::new("eyJ0.eyJ1.c2ln".into());
        let rest = Rest { token_type: "Bearer", expires_in: 3599, resource: "api://a\"b" };
        let body = body_of(token_json(&token, &rest)).await;
        assert_eq!(
            body,
            serde_json::json!({"access_token": "eyJ0.eyJ1.c2ln", "token_type": "Bearer", "expires_in": 3599, "resource": "api://a\"b"})
        );
    }

    #[tokio::test]
    async fn a_token_that_is_not_plain_is_escaped_and_an_empty_rest_closes_the_object() {
        #[derive(Serialize)]
        struct Nothing {}
        let body = body_of(token_json(&SignedJwt::new("a\"b".into()), &Nothing {})).await;
        assert_eq!(body, serde_json::json!({"access_token": "a\"b"}));
    }
}
