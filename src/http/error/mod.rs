//! The one place where errors become status codes and bodies.
//!
//! Handlers return [`ApiError`]. Its `IntoResponse` decides the status and the body's fields and
//! leaves a [`PendingError`] in the response; the context middleware renders it with the request's
//! trace id, correlation id and timestamp, in Entra's OAuth error shape:
//! `error`, `error_description` (prefixed with an `AADSTS` code where Entra has one, and ending with
//! the trace id, correlation id and timestamp), `error_codes`, `timestamp`, `trace_id`,
//! `correlation_id`, `error_uri`; or, for the admin API, Microsoft Graph's or ARM's shape
//! (`{"error":{"code","message",...}}`). Internal causes are logged with the trace id, never
//! returned.

mod admin;
mod managed_identity;
mod oauth;

pub use admin::{InShape, Shape};
pub use managed_identity::MiEndpoint;

/// What the token endpoint's `error_description` would say for `e` (`AADSTS<code>: ...`), without
/// the per-request trace lines: for the dry run, which reports the answer it does not give.
pub fn token_error_text(e: &crate::service::token::TokenError) -> String {
    let (_, _, code, description) = oauth::token_error(e);
    match code {
        Some(code) => format!("AADSTS{code}: {description}"),
        None => description,
    }
}

use std::any::Any;

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;

use super::context::RequestContext;
use crate::service::DiscoveryError;
use crate::service::admin::AdminError;
use crate::service::admin_auth::AuthError;
use crate::service::token::TokenError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("no endpoint at {method} {path}")]
    NoRoute { method: Method, path: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("{1}")]
    Auth(Shape, AuthError),
    #[error("{1}")]
    Admin(Shape, AdminError),
    #[error("invalid request body: {1}")]
    InvalidBody(Shape, String),
    #[error("request body too large")]
    AdminBodyTooLarge(Shape),
    #[error("{1}")]
    ManagedIdentity(MiEndpoint, crate::service::managed_identity::MiError),
    /// A fault rule fired: its answer (see `http::faults`).
    #[error("{}", .0.describe())]
    Injected(Box<crate::domain::fault::FaultRule>),
    /// An injected status in Entra's error shape (token endpoint, discovery, JWKS).
    #[error("{description}")]
    InjectedEntra { status: StatusCode, retry_after: Option<std::time::Duration>, description: String },
}

/// An error decided but not yet rendered: the context middleware adds ids and time.
#[derive(Debug, Clone)]
pub struct PendingError {
    status: StatusCode,
    /// Seconds for `Retry-After` (throttled requests).
    retry_after: Option<std::time::Duration>,
    /// OAuth `error`, or the Graph/ARM `code`.
    error: &'static str,
    code: Option<u32>,
    description: String,
    shape: Option<Shape>,
}

#[derive(Serialize)]
struct OAuthErrorResponse<'a> {
    error: &'a str,
    error_description: String,
    error_codes: Vec<u32>,
    timestamp: String,
    trace_id: String,
    correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_uri: Option<String>,
}

impl ApiError {
    fn pending(&self) -> PendingError {
        let (status, error, code, description) = match self {
            Self::Discovery(e) | Self::Token(TokenError::Tenant(e)) => oauth::unknown_tenant(e),
            Self::Token(e) => oauth::token_error(e),
            Self::Auth(shape, e) => return admin::auth_error(*shape, e),
            Self::Admin(shape, e) => return admin::admin_error(*shape, e),
            Self::InvalidBody(shape, message) => return admin::invalid_body(*shape, message),
            Self::AdminBodyTooLarge(shape) => return admin::too_large(*shape),
            Self::ManagedIdentity(_, e) => (StatusCode::BAD_REQUEST, "invalid_request", None, e.to_string()),
            Self::Injected(rule) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", None, rule.describe()),
            Self::InjectedEntra { status, description, .. } => {
                let error = match status.as_u16() {
                    500 => "server_error",
                    _ => "temporarily_unavailable",
                };
                (*status, error, None, description.clone())
            }
            Self::NoRoute { method, path } => {
                (StatusCode::NOT_FOUND, "not_found", None, format!("No endpoint at {method} {path}."))
            }
            Self::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                None,
                "The request body exceeds the size limit (server.max_body_bytes).".to_owned(),
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                None,
                "This endpoint does not accept that HTTP method.".to_owned(),
            ),
            Self::Unsupported(what) => (
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                None,
                format!(
                    "{what} is not supported: ficus issues app-only tokens (client credentials, token exchange, managed identity)."
                ),
            ),
        };
        let retry_after = match self {
            Self::Token(TokenError::Throttled(wait)) => Some(*wait),
            Self::InjectedEntra { retry_after, .. } => *retry_after,
            _ => None,
        };
        PendingError { status, retry_after, error, code, description, shape: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The managed-identity endpoints answer in their own shapes, without Entra's ids.
        if let Self::ManagedIdentity(endpoint, e) = &self {
            return managed_identity::render(*endpoint, e);
        }
        if let Self::Injected(rule) = &self {
            return super::faults::render(rule);
        }
        let pending = self.pending();
        let mut response = pending.status.into_response();
        response.extensions_mut().insert(pending);
        response
    }
}

impl PendingError {
    /// Renders the body Entra would send.
    /// `invalid_tenant (90002)`: what the log line records (the description may echo client input,
    /// which is fine for a tenant name but is kept out of logs on principle).
    pub fn summary(&self) -> String {
        match self.code {
            Some(code) => format!("{} ({code})", self.error),
            None => self.error.to_owned(),
        }
    }

    pub fn render(self, context: &RequestContext, now: OffsetDateTime, base_url: &str) -> Response {
        if let Some(shape) = self.shape {
            return admin::render(shape, self.status, self.error, &self.description, context, now);
        }
        let timestamp = entra_timestamp(now);
        let prefix = self.code.map(|c| format!("AADSTS{c}: ")).unwrap_or_default();
        let body = OAuthErrorResponse {
            error: self.error,
            error_description: format!(
                "{prefix}{} Trace ID: {} Correlation ID: {} Timestamp: {timestamp}",
                self.description, context.trace_id, context.correlation_id
            ),
            error_codes: self.code.into_iter().collect(),
            timestamp,
            trace_id: context.trace_id.to_string(),
            correlation_id: context.correlation_id.to_string(),
            error_uri: self.code.map(|c| format!("{base_url}/error?code={c}")),
        };
        let mut response =
            (self.status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            set_retry_after(&mut response, wait);
        }
        response.extensions_mut().remove::<PendingError>();
        response
    }
}

/// `Retry-After` in whole seconds, rounded up (at least 1).
pub(crate) fn set_retry_after(response: &mut Response, wait: std::time::Duration) {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = header::HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// `2026-01-01 00:00:00Z`, the format of Entra's error timestamps.
fn entra_timestamp(now: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    now.format(&format).unwrap_or_default()
}

pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(256).collect();
    ApiError::NoRoute { method, path }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A handler panicked: log it, answer an opaque 500 (the context middleware adds the trace id).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(detail, "handler panicked");
    let pending = PendingError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "server_error",
        code: None,
        description: "An internal error occurred; quote the trace id when reporting it.".to_owned(),
        shape: None,
        retry_after: None,
    };
    let mut response = pending.status.into_response();
    response.extensions_mut().insert(pending);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_have_entras_format() {
        assert_eq!(entra_timestamp(datetime!(2026-01-02 03:04:05 UTC)), "2026-01-02 03:04:05Z");
    }
}
