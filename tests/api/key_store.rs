//! The key store contract, run against both adapters from one suite: the key directory (SQLite
//! mode) and the sealed keys in PostgreSQL (cluster mode). Several handles on one backend stand
//! for several processes: the CLI and a server, or replicas.

use std::sync::Arc;
use std::time::Duration;

use ficus::signing::{Algorithm, FileKeyStore, Kek, KeyStore, KeyStoreError, Rotation, SealedKeyStore};
use ficus::store::PostgresRegistry;
use ficus::store::postgres::PoolSettings;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::helpers::cluster_kek;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
const HOUR: Duration = Duration::from_secs(3600);

enum Backend {
    Files(tempfile::TempDir),
    Sealed(String),
}

impl Backend {
    /// One more handle on the same keys, as another process would open it.
    async fn handle(&self) -> Arc<dyn KeyStore> {
        match self {
            Self::Files(dir) => Arc::new(FileKeyStore::new(dir.path().join("signing"))),
            Self::Sealed(url) => {
                let registry = PostgresRegistry::open(url, PoolSettings::default()).await.unwrap();
                let kek = Arc::new(Kek::parse(cluster_kek()).unwrap());
                Arc::new(SealedKeyStore::new(Arc::new(registry.sealed_keys()), kek))
            }
        }
    }
}

fn rotation(now: OffsetDateTime, activate_at: OffsetDateTime, force: bool) -> Rotation {
    Rotation { alg: Algorithm::ES256, now, activate_at, retire_after: HOUR, force }
}

fn kids(entries: &[ficus::signing::KeyEntry]) -> Vec<String> {
    let mut kids: Vec<String> = entries.iter().map(|e| e.key.kid().to_owned()).collect();
    kids.sort();
    kids
}

async fn an_empty_store_refuses_to_load_then_the_first_load_creates_one_key_that_later_loads_reuse(backend: Backend) {
    let store = backend.handle().await;
    assert!(matches!(store.load().await, Err(KeyStoreError::Uninitialised { .. })));
    let (first, created) = store.load_or_create(Algorithm::ES256, T0).await.unwrap();
    assert!(created);
    assert_eq!(first.len(), 1);
    let other = backend.handle().await;
    let (again, created) = other.load_or_create(Algorithm::ES256, T0).await.unwrap();
    assert!(!created);
    assert_eq!(kids(&again), kids(&first));
}

async fn a_rotation_publishes_one_pending_key_refuses_a_second_and_later_prunes_the_retired(backend: Backend) {
    let store = backend.handle().await;
    let (first, _) = store.load_or_create(Algorithm::ES256, T0).await.unwrap();
    let before = store.version().await;
    let next = store.rotate(rotation(T0, T0 + HOUR, false)).await.unwrap();
    assert_ne!(store.version().await, before, "the version moves with the keys");
    assert_eq!(store.load().await.unwrap().len(), 2);
    let refused = store.rotate(rotation(T0, T0 + HOUR, false)).await;
    assert!(matches!(refused, Err(KeyStoreError::NextKeyPending { ref kid, .. }) if kid == next.key.kid()));
    // Two hours after the second key took over, the first has expired everywhere and goes.
    let third = store.rotate(rotation(T0 + 3 * HOUR, T0 + 3 * HOUR, false)).await.unwrap();
    let left = kids(&backend.handle().await.load().await.unwrap());
    assert!(!left.contains(&first[0].key.kid().to_owned()), "{left:?}");
    assert!(left.contains(&next.key.kid().to_owned()) && left.contains(&third.key.kid().to_owned()));
}

async fn processes_racing_to_create_the_first_key_agree_on_one(backend: Backend) {
    let handles = [backend.handle().await, backend.handle().await, backend.handle().await];
    let racing = handles.iter().map(|store| {
        let store = store.clone();
        tokio::spawn(async move { store.load_or_create(Algorithm::ES256, T0).await.unwrap() })
    });
    let mut results = Vec::new();
    for task in racing {
        results.push(task.await.unwrap());
    }
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1, "exactly one created a key");
    assert!(results.iter().all(|(entries, _)| kids(entries) == kids(&results[0].0)), "all use that key");
}

async fn rotations_racing_on_two_processes_add_exactly_one_pending_key(backend: Backend) {
    let (a, b) = (backend.handle().await, backend.handle().await);
    a.load_or_create(Algorithm::ES256, T0).await.unwrap();
    let (left, right) =
        tokio::join!(a.rotate(rotation(T0, T0 + HOUR, false)), b.rotate(rotation(T0, T0 + HOUR, false)));
    let outcomes = [left, right];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "one rotation wins");
    assert!(outcomes.iter().any(|r| matches!(r, Err(KeyStoreError::NextKeyPending { .. }))), "the other is refused");
    assert_eq!(b.load().await.unwrap().len(), 2);
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod file_backend {
            $(#[tokio::test] async fn $name() {
                super::$name(super::Backend::Files(tempfile::tempdir().unwrap())).await;
            })*
        }
        mod sealed_postgres_backend {
            $(#[tokio::test] async fn $name() {
                if let Some(url) = crate::pg::fresh_database().await {
                    super::$name(super::Backend::Sealed(url)).await;
                }
            })*
        }
    };
}

contract!(
    an_empty_store_refuses_to_load_then_the_first_load_creates_one_key_that_later_loads_reuse,
    a_rotation_publishes_one_pending_key_refuses_a_second_and_later_prunes_the_retired,
    processes_racing_to_create_the_first_key_agree_on_one,
    rotations_racing_on_two_processes_add_exactly_one_pending_key,
);
