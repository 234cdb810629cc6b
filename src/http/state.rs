//! Shared state: cheap clones of `Arc`s; handlers extract only the part they use.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::domain::clock::Clock;
use crate::domain::keys::KeyAdministration;
use crate::http::metrics::HttpMetrics;
use crate::service::DiscoveryService;
use crate::service::admin::AdminService;
use crate::service::admin_auth::AdminAuthenticator;
use crate::service::console::ConsoleService;
use crate::service::faults::FaultService;
use crate::service::health::HealthService;
use crate::service::managed_identity::ManagedIdentityService;
use crate::service::token::TokenService;

/// What every request may need, behind one `Arc`: axum clones the state for each request, and
/// one reference count is cheaper than one per service.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub discovery: Arc<DiscoveryService>,
    pub health: Arc<HealthService>,
    pub tokens: Arc<TokenService>,
    pub managed_identities: Arc<ManagedIdentityService>,
    pub admin: Arc<AdminService>,
    pub admin_auth: Arc<AdminAuthenticator>,
    pub faults: Arc<FaultService>,
    pub console: Arc<ConsoleService>,
    pub key_admin: Arc<dyn KeyAdministration>,
    pub metrics: Arc<HttpMetrics>,
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Handlers extract only the part they use (`State<Arc<TokenService>>`...).
macro_rules! parts {
    ($($field:ident: $ty:ty),* $(,)?) => {
        $(impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.0.$field.clone()
            }
        })*
    };
}

parts!(
    discovery: Arc<DiscoveryService>,
    health: Arc<HealthService>,
    tokens: Arc<TokenService>,
    managed_identities: Arc<ManagedIdentityService>,
    admin: Arc<AdminService>,
    admin_auth: Arc<AdminAuthenticator>,
    faults: Arc<FaultService>,
    console: Arc<ConsoleService>,
    key_admin: Arc<dyn KeyAdministration>,
    metrics: Arc<HttpMetrics>,
    clock: Arc<dyn Clock>,
);
