//! The in-memory snapshot of the directory that request paths read, without locks.
//!
//! Loaded whole once at start. After that, each refresh reads the registry's change log after the
//! snapshot's cursor, reloads only the entities it names, applies them to a copy of the view (an
//! O(1) clone of persistent maps) and swaps the copy in: the cost of a change does not grow with
//! the size of the registry. When the log no longer reaches back to the cursor (pruned) or names
//! too many entities, the refresh falls back to a full load.
//!
//! Staleness: none for the broker's own writes (a write returns after the refresh); a write made
//! by another process sharing the registry is seen at the next refresh, which `startup` runs every
//! `storage.refresh_interval`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use async_trait::async_trait;

use crate::domain::directory::DirectoryView;
use crate::domain::ports::{ChangeCursor, DirectorySource, Registry, StoreError, TenantLookup};
use crate::domain::tenant::{Tenant, TenantRef};

/// How many changes the log keeps behind the newest one a refresh applied, for other readers.
const RETAINED_CHANGES: u64 = 10_000;

pub struct DirectorySnapshot {
    view: ArcSwap<DirectoryView>,
    registry: Arc<dyn Registry>,
    // The cursor of the view in place; the lock serialises refreshes so an older read can never
    // replace a newer one.
    cursor: tokio::sync::Mutex<Cursor>,
    /// `cursor.at`, readable without the lock (for the lag gauge).
    applied: AtomicU64,
}

struct Cursor {
    at: ChangeCursor,
    pruned_through: ChangeCursor,
}

impl DirectorySnapshot {
    /// Loads the registry once.
    pub async fn load(registry: Arc<dyn Registry>) -> Result<Self, StoreError> {
        let (directory, at) = registry.load_directory_at().await?;
        Ok(Self {
            view: ArcSwap::from_pointee(DirectoryView::new(directory)),
            registry,
            cursor: tokio::sync::Mutex::new(Cursor { at, pruned_through: 0 }),
            applied: AtomicU64::new(at),
        })
    }

    /// The newest change of the registry's log the view in place reflects.
    pub fn applied(&self) -> ChangeCursor {
        self.applied.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl DirectorySource for DirectorySnapshot {
    fn view(&self) -> Arc<DirectoryView> {
        self.view.load_full()
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        let mut cursor = self.cursor.lock().await;
        match self.registry.load_changes(cursor.at).await? {
            Some(set) if set.changes.is_empty() => cursor.at = set.cursor,
            Some(set) => {
                let mut view = DirectoryView::clone(&self.view.load());
                for change in set.changes {
                    view.apply(change);
                }
                self.view.store(Arc::new(view));
                cursor.at = set.cursor;
            }
            None => {
                let (directory, at) = self.registry.load_directory_at().await?;
                self.view.store(Arc::new(DirectoryView::new(directory)));
                cursor.at = at;
            }
        }
        self.applied.store(cursor.at, Ordering::Relaxed);
        // Pruning is housekeeping, off the write's path: a failure leaves a longer log, never a
        // wrong view.
        let through = cursor.at.saturating_sub(RETAINED_CHANGES);
        if through >= cursor.pruned_through + RETAINED_CHANGES {
            cursor.pruned_through = through;
            let registry = Arc::clone(&self.registry);
            tokio::spawn(async move {
                if let Err(e) = registry.prune_changes(through).await {
                    tracing::warn!(error = %e, "could not prune the directory change log");
                }
            });
        }
        Ok(())
    }
}

impl TenantLookup for DirectorySnapshot {
    fn find(&self, tenant: &TenantRef) -> Option<Arc<Tenant>> {
        self.view.load().tenant(tenant).cloned()
    }
}
