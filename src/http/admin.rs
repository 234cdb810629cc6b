//! Extractors for the admin API: the authenticated caller (bearer token checked by
//! `AdminAuthenticator`; GET, and POST to a read-only action such as `explainAssertion`, need
//! `Ficus.Reader` or `Ficus.Admin`; anything else `Ficus.Admin`)
//! and JSON bodies whose rejections (malformed, unknown fields, too large) answer in the route's
//! error shape.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::{ApiError, Shape};
use crate::service::admin::Caller;
use crate::service::admin_auth::Access;

/// Graph routes live under `/v1.0`; everything else in the admin API is ARM-shaped.
pub fn shape_of(path: &str) -> Shape {
    if path.starts_with("/v1.0/") { Shape::Graph } else { Shape::Arm }
}

/// POST actions that change nothing: a Reader may call them (a console link grants no more than
/// the caller holds).
const READ_ONLY_ACTIONS: [&str; 2] = ["/explainAssertion", "/ficus/console/links"];

/// The caller of an admin route, authenticated and authorised for the request's method.
pub struct AdminCaller(pub Caller);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let shape = shape_of(parts.uri.path());
        let reads = parts.method == Method::GET
            || parts.method == Method::HEAD
            || (parts.method == Method::POST && READ_ONLY_ACTIONS.iter().any(|a| parts.uri.path().ends_with(a)));
        let access = if reads { Access::Read } else { Access::Write };
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        state.admin_auth.authenticate(bearer, access).map(AdminCaller).map_err(|e| ApiError::Auth(shape, e))
    }
}

/// A JSON body for an admin route.
pub struct AdminJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AdminJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let shape = shape_of(request.uri().path());
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::AdminBodyTooLarge(shape))
            }
            Err(rejection) => Err(ApiError::InvalidBody(shape, rejection.body_text())),
        }
    }
}
