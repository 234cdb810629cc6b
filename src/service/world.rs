//! Applying a declarative world to the registry, idempotently: what exists is updated in place,
//! what is missing is created, nothing is deleted.

use crate::domain::ports::{Registry, StoreError};
use crate::domain::tenant::Tenant;

/// Applies `tenants` to the registry and returns how many were applied.
pub async fn apply_tenants(registry: &dyn Registry, tenants: &[Tenant]) -> Result<usize, StoreError> {
    for tenant in tenants {
        registry.upsert_tenant(tenant).await?;
    }
    Ok(tenants.len())
}
