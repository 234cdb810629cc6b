//! The one middleware every route runs in ([`EdgeLayer`]): what happens to each request before
//! its handler and to each answer after it, in one service and one future.
//!
//! In order:
//! 1. the caller's address named by a trusted balancer (PROXY protocol) becomes the connection's
//!    (`ConnectInfo`), which axum had set to the balancer's;
//! 2. the request gets its [`RequestContext`] (trace and correlation ids), kept by the edge for
//!    its answer (it is not put in the request's extensions: nothing there reads it, and each
//!    extension is an allocation);
//! 3. the handler runs, under a deadline ([`REQUEST_TIMEOUT`] in service, then `408`) and with its panics
//!    caught (an opaque `500`, logged);
//! 4. a pending error is rendered with the request's context ([`super::error`]);
//! 5. while the server drains for shutdown, HTTP/1.1 clients are asked to close the connection,
//!    so keep-alive clients reconnect (through the balancer, to another replica);
//! 6. the ids are echoed in headers, the request is counted and timed under its route template
//!    ([`HttpMetrics`]), and one log line names the route, never the query or body (they may carry
//!    tokens).
//!
//! Why one service and not a stack of `from_fn` layers: axum nests every layer added with
//! `Router::layer` around each route in its own boxed, cloneable service, and each request clones
//! the whole nest at every level (seven layers cost tens of allocations per request, before
//! their boxed futures). Here the nest is two boxes deep (the route around the edge, and the
//! handler's), each cloned once per request, and the edge boxes one future of its own.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tower::{Layer, Service};
use uuid::Uuid;

use super::context::{CLIENT_REQUEST_ID, RequestContext, X_MS_REQUEST_ID};
use super::error::{PendingError, panic_response};
use super::metrics::HttpMetrics;
use super::proxy_protocol::ProxiedClient;
use crate::domain::clock::Clock;
use crate::service::health::HealthService;

/// How long a handler may take before the request is answered `408`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the edge needs besides the request, shared by every route.
pub struct Edge {
    pub metrics: Arc<HttpMetrics>,
    pub health: Arc<HealthService>,
    /// The time in rendered errors.
    pub clock: Arc<dyn Clock>,
    /// The public base URL rendered errors name.
    pub base_url: Arc<str>,
    /// How long a handler may take ([`REQUEST_TIMEOUT`]).
    pub timeout: Duration,
}

/// Wraps each route in [`EdgeService`].
#[derive(Clone)]
pub struct EdgeLayer(Arc<Edge>);

impl EdgeLayer {
    pub fn new(edge: Edge) -> Self {
        Self(Arc::new(edge))
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService { edge: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub struct EdgeService<S> {
    edge: Arc<Edge>,
    inner: S,
}

impl<S> Service<Request> for EdgeService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        if let Some(ProxiedClient(client)) = request.extensions_mut().remove::<ProxiedClient>() {
            request.extensions_mut().insert(ConnectInfo(client));
        }
        let context = RequestContext::from_request(&request);
        let served = Served {
            started,
            context,
            method: request.method().clone(),
            // Shared, not copied: the matched path is an `Arc<str>` inside.
            route: request.extensions().get::<MatchedPath>().cloned(),
            http1: request.version() == Version::HTTP_11,
        };
        let edge = self.edge.clone();
        // A route's `call` only clones it; the handler runs when the future is polled, inside
        // `catch_unwind`. The deadline counts from `started` (one clock read fewer).
        let deadline = tokio::time::Instant::from_std(started) + self.edge.timeout;
        let handler = tokio::time::timeout_at(deadline, self.inner.call(request));
        Box::pin(async move {
            let response = match AssertUnwindSafe(handler).catch_unwind().await {
                Ok(Ok(Ok(response))) => response,
                Ok(Ok(Err(infallible))) => match infallible {},
                Ok(Err(_elapsed)) => StatusCode::REQUEST_TIMEOUT.into_response(),
                Err(panic) => panic_response(panic),
            };
            Ok(edge.answer(served, response))
        })
    }
}

/// What the edge noted about a request before its handler ran.
struct Served {
    started: Instant,
    context: RequestContext,
    method: Method,
    route: Option<MatchedPath>,
    http1: bool,
}

impl Edge {
    fn answer(&self, served: Served, mut response: Response) -> Response {
        let Served { started, context, method, route, http1 } = served;
        let mut refusal = None;
        if let Some(pending) = response.extensions_mut().remove::<PendingError>() {
            refusal = Some(pending.summary());
            response = pending.render(&context, self.clock.now(), &self.base_url);
        }
        let headers = response.headers_mut();
        headers.insert(X_MS_REQUEST_ID, id_header(context.trace_id));
        headers.insert(CLIENT_REQUEST_ID, id_header(context.correlation_id));
        if http1 && self.health.is_draining() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }

        let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let status = response.status();
        let elapsed = started.elapsed();
        self.metrics.record(route, &method, status, elapsed);
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        // Formatted only when the line is written (a served request logs at debug).
        let trace_id = tracing::field::display(context.trace_id);
        let status = status.as_u16();
        let refusal = refusal.unwrap_or_default();
        if response.status().is_server_error() {
            tracing::error!(%method, route, status, latency_ms, trace_id, refusal, "request failed");
        } else if response.status().is_client_error() {
            tracing::info!(%method, route, status, latency_ms, trace_id, refusal, "request refused");
        } else {
            tracing::debug!(%method, route, status, latency_ms, trace_id, "request served");
        }
        response
    }
}

/// A UUID as a header value, formatted once on the stack (no interim `String`).
fn id_header(id: Uuid) -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_bytes(id.hyphenated().encode_lower(&mut text).as_bytes())
        .unwrap_or_else(|_| unreachable!("a hyphenated UUID is a valid header value"))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use prometheus::Registry;
    use tower::ServiceExt;

    use super::*;
    use crate::domain::clock::SystemClock;
    use crate::domain::ports::StorageStatus;
    use crate::service::discovery::tests::NoKeys;

    struct Healthy;
    impl StorageStatus for Healthy {
        fn problem(&self) -> Option<String> {
            None
        }
    }

    struct Fixture {
        metrics: Arc<HttpMetrics>,
        health: Arc<HealthService>,
        app: Router,
    }

    fn fixture() -> Fixture {
        let metrics = Arc::new(HttpMetrics::new(Registry::new()).unwrap());
        let health = Arc::new(HealthService::new(Arc::new(NoKeys), Arc::new(Healthy)));
        let edge = EdgeLayer::new(Edge {
            metrics: metrics.clone(),
            health: health.clone(),
            clock: Arc::new(SystemClock),
            base_url: "https://localhost:8443".into(),
            timeout: Duration::from_millis(50),
        });
        let app = Router::new()
            .route("/items/{id}", get(|| async { "item" }))
            .route("/panics", get(panics))
            .route(
                "/sleeps",
                get(|| async {
                    tokio::time::sleep(REQUEST_TIMEOUT).await;
                    "too late"
                }),
            )
            .layer(edge);
        Fixture { metrics, health, app }
    }

    async fn panics() -> &'static str {
        panic!("a bug")
    }

    async fn get_path(app: &Router, path: &str) -> Response {
        app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap()
    }

    fn request_id(response: &Response) -> Uuid {
        Uuid::try_parse(response.headers()["x-ms-request-id"].to_str().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn every_answer_carries_fresh_request_ids_and_echoes_the_clients_correlation_id() {
        let Fixture { app, .. } = fixture();
        let correlation = Uuid::new_v4();
        let request = Request::get("/items/7").header("client-request-id", correlation.to_string());
        let first = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let second = get_path(&app, "/items/7").await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()["client-request-id"], correlation.to_string().as_str());
        assert_ne!(request_id(&first), request_id(&second), "a trace id per request");
        assert!(!first.headers().contains_key(header::CONNECTION), "no close while serving");
    }

    #[tokio::test]
    async fn a_handler_that_panics_is_answered_an_opaque_500_naming_the_trace_id() {
        let Fixture { app, .. } = fixture();
        let response = get_path(&app, "/panics").await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let trace_id = request_id(&response);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("server_error") && body.contains(&trace_id.to_string()), "{body}");
        assert!(!body.contains("a bug"), "the panic's message stays in the log: {body}");
        // The server goes on serving.
        assert_eq!(get_path(&app, "/items/1").await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_handler_past_the_deadline_is_answered_408() {
        let Fixture { app, .. } = fixture();
        let response = get_path(&app, "/sleeps").await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(response.headers().contains_key("x-ms-request-id"));
    }

    #[tokio::test]
    async fn answers_are_counted_under_their_route_template_panics_and_unknown_paths_included() {
        let Fixture { app, metrics, .. } = fixture();
        get_path(&app, "/items/1").await;
        get_path(&app, "/items/2").await;
        get_path(&app, "/panics").await;
        let text = metrics.render();
        let count = |labels: &str| {
            text.lines()
                .find(|l| l.starts_with("ficus_http_requests_total{") && l.contains(labels))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(count(r#"route="/items/{id}",status="200""#).as_deref(), Some("2"), "{text}");
        assert_eq!(count(r#"route="/panics",status="500""#).as_deref(), Some("1"), "{text}");
        assert!(!text.contains("/items/1"), "raw paths are never labels: {text}");
    }

    #[tokio::test]
    async fn a_draining_server_asks_http1_clients_to_close_their_connection() {
        let Fixture { app, health, .. } = fixture();
        health.start_draining();
        let response = get_path(&app, "/items/1").await;
        assert_eq!(response.status(), StatusCode::OK, "still served");
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }
}
