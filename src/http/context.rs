//! Per-request context: a trace id (ours) and a correlation id (the client's `client-request-id`
//! when it sends one, as MSAL does), echoed in headers and in every error body. The edge
//! middleware ([`super::edge`]) assigns it and hands it to error rendering.

use axum::extract::Request;
use axum::http::HeaderName;
use uuid::Uuid;

/// The client's correlation id, read from the request and echoed in the answer. A constant: a
/// header name given as text is parsed (checked, hashed as a standard name first) at every use.
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");
/// The broker's trace id for the request, in the answer (Entra's name for it).
pub const X_MS_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    pub trace_id: Uuid,
    pub correlation_id: Uuid,
}

impl RequestContext {
    pub(super) fn from_request(request: &Request) -> Self {
        let client_id = request
            .headers()
            .get(CLIENT_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::try_parse(v).ok());
        Self { trace_id: Uuid::new_v4(), correlation_id: client_id.unwrap_or_else(Uuid::new_v4) }
    }
}
