//! Ports: the traits through which services reach storage, keys and tenants. Adapters live in
//! `store` and `signing`; services depend only on these traits.

use async_trait::async_trait;

use super::tenant::{Tenant, TenantRef};
use super::token::{Claims, SignedJwt};

/// Signs tokens with the key that is current at the clock's time.
pub trait TokenSigner: Send + Sync {
    fn sign(&self, claims: &Claims) -> Result<SignedJwt, SignError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no signing key is active yet")]
    NoActiveKey,
    #[error("the signing operation failed")]
    Crypto,
    #[error("claims could not be serialised: {0}")]
    Claims(String),
}

/// Resolves a tenant from the in-memory snapshot (never the database: this sits on request paths).
pub trait TenantLookup: Send + Sync {
    fn find(&self, tenant: &TenantRef) -> Option<Tenant>;
}

/// The durable registry. Grows with the registry issue; today it holds tenants.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Creates the tenant or updates its display name; the pair (id, name) is immutable once made.
    async fn upsert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Cheap liveness check for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}
