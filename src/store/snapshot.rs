//! The in-memory snapshot of the directory that request paths read: loaded from the registry,
//! indexed, swapped whole and atomically after each committed change, read without locks.
//!
//! Staleness: none for the broker's own writes (a write returns after the refresh); a write made
//! by another process (a second replica) is seen at its next refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use async_trait::async_trait;

use crate::domain::directory::DirectoryView;
use crate::domain::ports::{DirectorySource, Registry, StoreError, TenantLookup};
use crate::domain::tenant::{Tenant, TenantRef};

pub struct DirectorySnapshot {
    view: ArcSwap<DirectoryView>,
    generation: AtomicU64,
    registry: Arc<dyn Registry>,
    // Serialises refreshes so an older load can never replace a newer one.
    refreshing: tokio::sync::Mutex<()>,
}

impl DirectorySnapshot {
    /// Loads the registry once.
    pub async fn load(registry: Arc<dyn Registry>) -> Result<Self, StoreError> {
        let view = DirectoryView::new(registry.load_directory().await?);
        Ok(Self {
            view: ArcSwap::from_pointee(view),
            generation: AtomicU64::new(0),
            registry,
            refreshing: tokio::sync::Mutex::new(()),
        })
    }
}

#[async_trait]
impl DirectorySource for DirectorySnapshot {
    fn view(&self) -> Arc<DirectoryView> {
        self.view.load_full()
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        let _turn = self.refreshing.lock().await;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let view = DirectoryView::new(self.registry.load_directory().await?).with_generation(generation);
        self.view.store(Arc::new(view));
        Ok(())
    }
}

impl TenantLookup for DirectorySnapshot {
    fn find(&self, tenant: &TenantRef) -> Option<Tenant> {
        self.view.load().tenant(tenant).cloned()
    }
}
