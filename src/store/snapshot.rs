//! The in-memory snapshot of tenants that request paths read: built from the registry, swapped
//! whole and atomically after a change, read without locks.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::domain::ports::TenantLookup;
use crate::domain::tenant::{Tenant, TenantId, TenantName, TenantRef};

#[derive(Debug, Default)]
struct Index {
    by_id: HashMap<TenantId, Tenant>,
    by_name: HashMap<TenantName, TenantId>,
}

#[derive(Debug, Clone, Default)]
pub struct TenantSnapshot {
    index: Arc<ArcSwap<Index>>,
}

impl TenantSnapshot {
    pub fn new(tenants: Vec<Tenant>) -> Self {
        let snapshot = Self::default();
        snapshot.replace(tenants);
        snapshot
    }

    pub fn replace(&self, tenants: Vec<Tenant>) {
        let by_name = tenants.iter().map(|t| (t.name.clone(), t.id)).collect();
        let by_id = tenants.into_iter().map(|t| (t.id, t)).collect();
        self.index.store(Arc::new(Index { by_id, by_name }));
    }

    pub fn len(&self) -> usize {
        self.index.load().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TenantLookup for TenantSnapshot {
    fn find(&self, tenant: &TenantRef) -> Option<Tenant> {
        let index = self.index.load();
        let id = match tenant {
            TenantRef::Id(id) => *id,
            TenantRef::Name(name) => *index.by_name.get(name)?,
        };
        index.by_id.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_tenant_by_guid_or_name() {
        let tenant = Tenant {
            id: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
            name: TenantName::parse("demo").unwrap(),
            display_name: "Demo".into(),
        };
        let snapshot = TenantSnapshot::new(vec![tenant.clone()]);
        assert_eq!(snapshot.find(&TenantRef::parse("DEMO").unwrap()), Some(tenant.clone()));
        assert_eq!(snapshot.find(&TenantRef::parse("5E2D1C0A-7F3B-4E8D-9A61-0C4B8F2E9D17").unwrap()), Some(tenant));
        assert_eq!(snapshot.find(&TenantRef::parse("other").unwrap()), None);
    }
}
