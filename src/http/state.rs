//! Shared state: cheap clones of `Arc`s; handlers extract only the part they use.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::domain::clock::Clock;
use crate::http::metrics::HttpMetrics;
use crate::service::DiscoveryService;
use crate::service::admin::AdminService;
use crate::service::admin_auth::AdminAuthenticator;
use crate::service::health::HealthService;
use crate::service::managed_identity::ManagedIdentityService;
use crate::service::token::TokenService;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub discovery: Arc<DiscoveryService>,
    pub health: Arc<HealthService>,
    pub tokens: Arc<TokenService>,
    pub managed_identities: Arc<ManagedIdentityService>,
    pub admin: Arc<AdminService>,
    pub admin_auth: Arc<AdminAuthenticator>,
    pub metrics: Arc<HttpMetrics>,
    pub clock: Arc<dyn Clock>,
}
