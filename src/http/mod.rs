//! Everything axum: routers, shared state, request context, metrics middleware, and the one file
//! that turns errors into status codes (`error.rs`).
//!
//! Handlers extract, call one service and map the result; they hold no SQL, crypto or cache code.
//! Two routers: the HTTPS API (discovery, keys, tokens, admin, operations) and the plain-HTTP
//! managed-identity listener.

pub mod admin;
pub mod console;
pub mod context;
pub mod edge;
pub mod error;
pub mod faults;
pub mod metrics;
pub mod odata;
pub mod proxy_protocol;
pub mod routes;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use state::AppState;

/// The HTTPS listener's routes (the web console's with `console`).
pub fn api_router(state: AppState, max_body_bytes: usize, console: bool) -> Router {
    let routes = Router::new()
        .merge(routes::discovery::router())
        .merge(routes::health::router())
        .merge(routes::graph_applications::router())
        .merge(routes::graph_directory::router())
        .merge(routes::arm::router())
        .merge(routes::faults::router());
    let routes = if console { routes.merge(self::console::router()) } else { routes };
    finish(routes, state, max_body_bytes)
}

/// The managed-identity listener's routes.
pub fn mi_router(state: AppState, max_body_bytes: usize) -> Router {
    let imds = get(routes::managed_identity::issue_imds_token);
    let routes = Router::new()
        .route("/healthz", get(routes::health::check_liveness))
        .route("/metadata/identity/oauth2/token", imds.clone())
        .route("/metadata/identity/oauth2/token/", imds)
        .route("/msi/token", get(routes::managed_identity::issue_app_service_token));
    finish(routes, state, max_body_bytes)
}

/// The deprecated managed-identity VM extension (`server.vm_extension_addr`).
pub fn vm_extension_router(state: AppState, max_body_bytes: usize) -> Router {
    let routes = Router::new()
        .route("/healthz", get(routes::health::check_liveness))
        .route("/oauth2/token", get(routes::managed_identity::issue_vm_extension_token));
    finish(routes, state, max_body_bytes)
}

/// Every route gets the body limit and the edge middleware, added in one `layer` call so that
/// axum boxes them once per route (see [`edge`]).
fn finish(routes: Router<AppState>, state: AppState, max_body_bytes: usize) -> Router {
    let edge = edge::EdgeLayer::new(edge::Edge {
        metrics: state.metrics.clone(),
        health: state.health.clone(),
        clock: state.clock.clone(),
        base_url: state.discovery.base_url().into(),
        timeout: edge::REQUEST_TIMEOUT,
    });
    routes
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer((edge, DefaultBodyLimit::max(max_body_bytes)))
        .with_state(state)
}
