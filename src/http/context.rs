//! Per-request context: a trace id (ours) and a correlation id (the client's `client-request-id`
//! when it sends one, as MSAL does), echoed in headers and in every error body; one log line per
//! request naming the route, never the query or body (they may carry tokens). While the server
//! drains for shutdown, responses ask HTTP/1.1 clients to close their connection.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use super::error::PendingError;
use crate::domain::clock::Clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    pub trace_id: Uuid,
    pub correlation_id: Uuid,
}

impl RequestContext {
    fn from_request(request: &Request) -> Self {
        let client_id = request
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::try_parse(v).ok());
        Self { trace_id: Uuid::new_v4(), correlation_id: client_id.unwrap_or_else(Uuid::new_v4) }
    }
}

/// Outermost middleware: assigns the context, renders pending errors with it, logs the outcome.
/// What rendering an error needs besides the request: the time and the public base URL.
#[derive(Debug, Clone)]
pub struct ErrorRendering {
    pub clock: Arc<dyn Clock>,
    pub base_url: Arc<str>,
}

pub async fn attach(State(rendering): State<ErrorRendering>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let context = RequestContext::from_request(&request);
    let method = request.method().clone();
    // Shared, not copied: the matched path is an `Arc<str>` inside.
    let route = request.extensions().get::<MatchedPath>().cloned();
    request.extensions_mut().insert(context);
    let mut response = next.run(request).await;

    let mut refusal = None;
    if let Some(pending) = response.extensions_mut().remove::<PendingError>() {
        refusal = Some(pending.summary());
        response = pending.render(&context, rendering.clock.now(), &rendering.base_url);
    }
    let refusal = refusal.unwrap_or_default();
    let headers = response.headers_mut();
    headers.insert("x-ms-request-id", id_header(context.trace_id));
    headers.insert("client-request-id", id_header(context.correlation_id));

    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Formatted only when the line is written (a served request logs at debug).
    let trace_id = tracing::field::display(context.trace_id);
    if response.status().is_server_error() {
        tracing::error!(%method, route, status, latency_ms, trace_id, refusal, "request failed");
    } else if response.status().is_client_error() {
        tracing::info!(%method, route, status, latency_ms, trace_id, refusal, "request refused");
    } else {
        tracing::debug!(%method, route, status, latency_ms, trace_id, "request served");
    }
    response
}

/// A UUID as a header value, formatted once on the stack (no interim `String`).
fn id_header(id: Uuid) -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_bytes(id.hyphenated().encode_lower(&mut text).as_bytes())
        .unwrap_or_else(|_| unreachable!("a hyphenated UUID is a valid header value"))
}

/// While the server drains for shutdown, asks HTTP/1.1 clients to close their connection after
/// this response, so keep-alive clients reconnect (through the balancer, to another replica)
/// instead of sending their next request to a server about to stop accepting.
pub async fn close_when_draining(
    State(health): State<Arc<crate::service::health::HealthService>>,
    request: Request,
    next: Next,
) -> Response {
    let http1 = request.version() == axum::http::Version::HTTP_11;
    let mut response = next.run(request).await;
    if http1 && health.is_draining() {
        response.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
