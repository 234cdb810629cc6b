//! Per-request context: a trace id (ours) and a correlation id (the client's `client-request-id`
//! when it sends one, as MSAL does), echoed in headers and in every error body. The edge
//! middleware ([`super::edge`]) assigns it and hands it to error rendering.

use axum::extract::Request;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    pub trace_id: Uuid,
    pub correlation_id: Uuid,
}

impl RequestContext {
    pub(super) fn from_request(request: &Request) -> Self {
        let client_id = request
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::try_parse(v).ok());
        Self { trace_id: Uuid::new_v4(), correlation_id: client_id.unwrap_or_else(Uuid::new_v4) }
    }
}
