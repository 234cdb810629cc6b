//! Admin API errors in Microsoft Graph's shape (`/v1.0/...`) or ARM's (`/subscriptions/...`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;

use super::{ApiError, PendingError};
use crate::domain::application::ApplicationError;
use crate::domain::federated_credential::CredentialError;
use crate::domain::ports::StoreError;
use crate::domain::role_assignment::RoleAssignmentError;
use crate::http::context::RequestContext;
use crate::service::admin::AdminError;
use crate::service::admin_auth::AuthError;

/// Which API family an admin route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Graph,
    Arm,
}

/// Attaches the route's error shape to a use-case result.
pub trait InShape<T> {
    fn graph(self) -> Result<T, ApiError>;
    fn arm(self) -> Result<T, ApiError>;
}

impl<T> InShape<T> for Result<T, AdminError> {
    fn graph(self) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::Admin(Shape::Graph, e))
    }

    fn arm(self) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::Admin(Shape::Arm, e))
    }
}

fn pending(shape: Shape, status: StatusCode, graph: &'static str, arm: &'static str, message: String) -> PendingError {
    let code = match shape {
        Shape::Graph => graph,
        Shape::Arm => arm,
    };
    PendingError { status, retry_after: None, error: code, code: None, description: message, shape: Some(shape) }
}

pub(super) fn auth_error(shape: Shape, e: &AuthError) -> PendingError {
    match e {
        AuthError::Missing | AuthError::Invalid(_) => pending(
            shape,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "AuthenticationFailed",
            e.to_string(),
        ),
        AuthError::Forbidden(_) => {
            pending(shape, StatusCode::FORBIDDEN, "Authorization_RequestDenied", "AuthorizationFailed", e.to_string())
        }
    }
}

pub(super) fn admin_error(shape: Shape, e: &AdminError) -> PendingError {
    let bad = |message: String| pending(shape, StatusCode::BAD_REQUEST, "Request_BadRequest", "BadRequest", message);
    let conflict = |message: String| {
        pending(shape, StatusCode::CONFLICT, "Request_MultipleObjectsWithSameKeyValue", "Conflict", message)
    };
    let message = e.to_string();
    match e {
        AdminError::Application(inner) => match inner {
            ApplicationError::IdentifierUriTaken(_) => conflict(message),
            ApplicationError::InvalidDisplayName
            | ApplicationError::InvalidIdentifierUri(_)
            | ApplicationError::InvalidRoleValue(_)
            | ApplicationError::DuplicateRoleValue(_)
            | ApplicationError::InvalidRateLimit(_) => bad(message),
        },
        AdminError::Credential(inner) => match inner {
            CredentialError::DuplicateName(_) | CredentialError::DuplicateIssuerSubject => conflict(message),
            CredentialError::InvalidName(_)
            | CredentialError::InvalidIssuer(_)
            | CredentialError::InvalidSubject
            | CredentialError::AudienceCount(_)
            | CredentialError::InvalidAudience
            | CredentialError::DescriptionTooLong
            | CredentialError::LimitReached
            | CredentialError::NameIsImmutable
            | CredentialError::SubjectAndExpression
            | CredentialError::NoSubjectOrExpression
            | CredentialError::InvalidExpression(_) => bad(message),
        },
        AdminError::RoleAssignment(inner) => match inner {
            RoleAssignmentError::Duplicate { .. } => conflict(message),
            RoleAssignmentError::UnknownPrincipal(_)
            | RoleAssignmentError::UnknownResource(_)
            | RoleAssignmentError::UnknownRole { .. } => bad(message),
        },
        AdminError::Resource(_) | AdminError::InvalidId(_) | AdminError::Fault(_) => bad(message),
        AdminError::NotFound { .. } => {
            pending(shape, StatusCode::NOT_FOUND, "Request_ResourceNotFound", "ResourceNotFound", message)
        }
        AdminError::ForeignSubscription(_) => {
            pending(shape, StatusCode::NOT_FOUND, "Request_ResourceNotFound", "SubscriptionNotFound", message)
        }
        AdminError::Conflict(_) => conflict(message),
        AdminError::Storage(StoreError::Unavailable(cause)) => {
            tracing::error!(error = %cause, "admin write refused: the registry's database is unavailable");
            pending(
                shape,
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                "ServiceUnavailable",
                "The registry's database is unavailable, so nothing was changed; retry later. Token requests are \
                 not affected: they are served from memory."
                    .into(),
            )
        }
        AdminError::Storage(cause) => {
            tracing::error!(error = %cause, "admin storage failure");
            pending(
                shape,
                StatusCode::INTERNAL_SERVER_ERROR,
                "generalException",
                "InternalServerError",
                "An internal error occurred; quote the request id when reporting it.".into(),
            )
        }
    }
}

pub(super) fn invalid_body(shape: Shape, message: &str) -> PendingError {
    pending(shape, StatusCode::BAD_REQUEST, "Request_BadRequest", "InvalidRequestContent", message.to_owned())
}

pub(super) fn too_large(shape: Shape) -> PendingError {
    let message = "The request body exceeds the size limit (server.max_body_bytes).".to_owned();
    pending(shape, StatusCode::PAYLOAD_TOO_LARGE, "Request_BadRequest", "InvalidRequestContent", message)
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    inner_error: Option<InnerError>,
}

#[derive(Serialize)]
struct InnerError {
    date: String,
    #[serde(rename = "request-id")]
    request_id: String,
    #[serde(rename = "client-request-id")]
    client_request_id: String,
}

pub(super) fn render(
    shape: Shape,
    status: StatusCode,
    code: &str,
    message: &str,
    context: &RequestContext,
    now: OffsetDateTime,
) -> Response {
    let inner_error = (shape == Shape::Graph).then(|| InnerError {
        date: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        request_id: context.trace_id.to_string(),
        client_request_id: context.correlation_id.to_string(),
    });
    let body = ErrorEnvelope { error: ErrorBody { code, message, inner_error } };
    let mut response =
        (status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    if status == StatusCode::UNAUTHORIZED
        && let Ok(value) = header::HeaderValue::from_str("Bearer error=\"invalid_token\"")
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
