//! Ports: the traits through which services reach storage, keys and tenants. Adapters live in
//! `store` and `signing`; services depend only on these traits.

use std::sync::Arc;

use async_trait::async_trait;

use super::activity::{ActivityEntry, ActivityPage, ActivityQuery};
use super::application::Application;
use super::federated_credential::{CredentialOwner, FederatedCredential};
use super::ids::ObjectId;
use super::resource::{ComputeResource, ManagedIdentity, ResourceId};
use super::role_assignment::RoleAssignment;
use super::tenant::{Tenant, TenantId, TenantRef};
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
    fn find(&self, tenant: &TenantRef) -> Option<Arc<Tenant>>;
}

/// The current directory view, and a way to refresh it after a committed change.
#[async_trait]
pub trait DirectorySource: Send + Sync {
    fn view(&self) -> std::sync::Arc<super::directory::DirectoryView>;
    /// Applies what the registry committed since the last refresh and swaps the new view in.
    async fn refresh(&self) -> Result<(), StoreError>;
}

/// Everything the registry holds, as loaded to build the in-memory snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub tenants: Vec<Tenant>,
    pub subscriptions: Vec<(uuid::Uuid, TenantId)>,
    pub applications: Vec<Application>,
    pub credentials: Vec<FederatedCredential>,
    /// System- and user-assigned identities.
    pub identities: Vec<ManagedIdentity>,
    pub resources: Vec<ComputeResource>,
    pub role_assignments: Vec<RoleAssignment>,
    /// (application object id, SHA-256 of a client secret, hex).
    pub client_secrets: Vec<(ObjectId, String)>,
}

/// The durable registry. Writes are atomic; the invariants the schema can hold (uniqueness, the
/// 20-credential limit, cascades) it holds whatever the interleaving of writers.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Creates the tenant or updates its display name; the pair (id, name) is immutable once made.
    async fn upsert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Closes connections once in-flight work is done (shutdown).
    async fn close(&self) {}

    /// Waits for the bootstrap lock: replicas starting together against one database take turns
    /// creating what must exist once (the world, admin clients, the first signing key). A
    /// backend with a single process per database may return at once.
    async fn lock_bootstrap(&self) -> Result<Box<dyn BootstrapLock>, StoreError>;

    /// Records that `subscription` belongs to `tenant` (idempotent; a subscription never moves).
    async fn upsert_subscription(&self, subscription: uuid::Uuid, tenant: TenantId) -> Result<(), StoreError>;

    async fn create_application(&self, application: &Application) -> Result<(), StoreError>;
    /// Sets the application's own rate limit (`None`: the configured default).
    async fn set_application_rate_limit(
        &self,
        tenant: TenantId,
        application: ObjectId,
        rate: Option<super::rate_limit::Rate>,
    ) -> Result<(), StoreError>;
    async fn delete_application(&self, tenant: TenantId, object_id: ObjectId) -> Result<(), StoreError>;
    /// Replaces the application's client secrets with one (its SHA-256, hex; `hint` is its first
    /// characters, for people to tell secrets apart).
    async fn set_client_secret(&self, application: ObjectId, sha256_hex: &str, hint: &str) -> Result<(), StoreError>;

    async fn add_credential(&self, credential: &FederatedCredential) -> Result<(), StoreError>;
    /// Replaces issuer, subject, audience and description (never the name).
    async fn update_credential(&self, credential: &FederatedCredential) -> Result<(), StoreError>;
    async fn delete_credential(&self, owner: CredentialOwner, id: ObjectId) -> Result<(), StoreError>;

    /// Creates a user-assigned identity.
    async fn create_identity(&self, identity: &ManagedIdentity) -> Result<(), StoreError>;
    /// Deletes a user-assigned identity with its assignments, credentials and role assignments.
    async fn delete_identity(&self, principal_id: ObjectId) -> Result<(), StoreError>;

    /// Creates or replaces a compute resource with its identity block: creates its system identity
    /// if newly enabled, deletes it if disabled, replaces the user-assigned identity list.
    async fn put_resource(&self, resource: &ComputeResource) -> Result<(), StoreError>;
    /// Deletes a compute resource and its system identity (and, for a web app, its slots).
    async fn delete_resource(&self, id: &ResourceId) -> Result<(), StoreError>;

    async fn create_role_assignment(&self, assignment: &RoleAssignment) -> Result<(), StoreError>;
    async fn delete_role_assignment(&self, tenant: TenantId, id: ObjectId) -> Result<(), StoreError>;

    /// Stores a fault rule (any tenant's); a rule whose id is stored already is left as it is.
    async fn add_fault(&self, rule: &super::fault::FaultRule) -> Result<(), StoreError>;
    /// Every tenant's fault rules that still have requests left.
    async fn list_faults(&self) -> Result<Vec<super::fault::FaultRule>, StoreError>;
    /// Removes one of `tenant`'s fault rules, or all of them; how many went.
    async fn remove_faults(&self, tenant: TenantId, id: Option<ObjectId>) -> Result<u64, StoreError>;
    /// Takes one of a counted rule's remaining requests, atomically for every process and replica:
    /// `false` when none is left.
    async fn take_fault(&self, id: ObjectId) -> Result<bool, StoreError>;

    async fn append_activity(&self, entry: &ActivityEntry) -> Result<(), StoreError>;
    async fn query_activity(&self, query: &ActivityQuery) -> Result<ActivityPage, StoreError>;

    /// Appends sign-ins in one transaction (the batched writer's unit of work).
    async fn append_sign_ins(&self, entries: &[super::sign_in::SignIn]) -> Result<(), StoreError>;
    async fn query_sign_ins(
        &self,
        query: &super::sign_in::SignInQuery,
    ) -> Result<super::sign_in::SignInPage, StoreError>;

    /// Everything, consistently (one read transaction), for the in-memory snapshot.
    async fn load_directory(&self) -> Result<Directory, StoreError> {
        Ok(self.load_directory_at().await?.0)
    }

    /// Everything, with the change cursor the load reflects: changes after it are what
    /// [`Registry::load_changes`] reports next.
    async fn load_directory_at(&self) -> Result<(Directory, ChangeCursor), StoreError>;

    /// The changes committed after `after`, each as the current state of the entity that changed,
    /// read consistently (one read transaction). `None` when changes after `after` have been
    /// pruned or are too many to be worth reading one by one: the caller loads everything.
    async fn load_changes(&self, after: ChangeCursor) -> Result<Option<ChangeSet>, StoreError>;

    /// Forgets changes at or before `through` (callers keep a margin for slower readers).
    async fn prune_changes(&self, through: ChangeCursor) -> Result<(), StoreError>;
}

/// Held while a process bootstraps; others wait for it.
#[async_trait]
pub trait BootstrapLock: Send {
    /// Lets the next process in.
    async fn release(self: Box<Self>);
}

/// A bootstrap lock for a backend that needs none.
pub struct NoBootstrapLock;

#[async_trait]
impl BootstrapLock for NoBootstrapLock {
    async fn release(self: Box<Self>) {}
}

/// Wakes a follower of the change log when another writer may have committed (PostgreSQL's
/// `LISTEN/NOTIFY`). A hint only: the follower still reads the log, and polls without one.
#[async_trait]
pub trait ChangeNotifications: Send + Sync {
    /// Resolves at the next announced change (or when announcements may have been missed).
    async fn changed(&self);
}

/// A signing key as a shared database holds it: the public parts in clear, the private key sealed
/// (encrypted and authenticated) under a key-encryption key the database never sees.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKeyRecord {
    pub kid: String,
    pub alg: String,
    pub created_at: time::OffsetDateTime,
    pub activate_at: time::OffsetDateTime,
    /// Names the key-encryption key that sealed it (not the key itself).
    pub kek_id: String,
    /// `nonce || ciphertext || tag` of the PKCS#8 private key.
    pub sealed_key: Vec<u8>,
    /// The key's self-signed certificate, DER.
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for SealedKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKeyRecord").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// The stored key set at one generation (a counter every change advances).
#[derive(Debug, Clone, Default)]
pub struct KeyRecords {
    pub generation: i64,
    pub keys: Vec<SealedKeyRecord>,
}

/// Where replicas share their sealed signing keys. Changes are compare-and-set on the generation,
/// so two rotations racing on different replicas cannot both apply to the same set.
#[async_trait]
pub trait SealedKeyStorage: Send + Sync {
    async fn load(&self) -> Result<KeyRecords, StoreError>;
    /// The current generation alone, cheap enough to poll.
    async fn generation(&self) -> Result<i64, StoreError>;
    /// Adds `add` and deletes the keys named in `remove`, provided the set is still at
    /// `generation`. Returns `false`, changing nothing, when another writer got there first.
    async fn replace(&self, generation: i64, add: &SealedKeyRecord, remove: &[String]) -> Result<bool, StoreError>;
}

/// A position in the registry's change log.
pub type ChangeCursor = u64;

/// What a replica records about itself in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaBeat {
    /// Unique among the replicas sharing the registry (`<hostname>:<port>` by default).
    pub replica: String,
    pub version: String,
    pub started_at: time::OffsetDateTime,
}

/// What a heartbeat learns about the replicas sharing the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterView {
    /// Replicas whose last heartbeat is younger than the expiry, the caller included (at least 1).
    pub live_replicas: u32,
    /// The newest change in the registry's change log (0 when it is empty).
    pub newest_change: ChangeCursor,
}

/// Whether the registry's storage answered lately, as a background check last found it (read on
/// request paths such as readiness, which must never wait for the database).
pub trait StorageStatus: Send + Sync {
    /// Why storage did not answer the last check; `None` when it did.
    fn problem(&self) -> Option<String>;
}

/// Where replicas sharing a registry record that they are alive: each beats every second or so
/// and learns how many others did recently, to divide cluster-wide limits between the live ones.
/// Timestamps come from the store's own clock, so replicas' clocks need not agree.
#[async_trait]
pub trait ReplicaRoster: Send + Sync {
    /// Records `beat` now and returns the replicas alive within `expiry`, and the newest change.
    async fn beat(&self, beat: &ReplicaBeat, expiry: std::time::Duration) -> Result<ClusterView, StoreError>;
    /// Takes `replica` off the roster (a clean stop): the others stop counting it at once.
    async fn leave(&self, replica: &str) -> Result<(), StoreError>;
}

/// What changed after a cursor, up to `cursor`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSet {
    pub cursor: ChangeCursor,
    pub changes: Vec<super::directory::Change>,
}

/// Which uniqueness or limit rule a write broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    CredentialLimit,
    CredentialName,
    CredentialIssuerSubject,
    IdentifierUri,
    RoleAssignment,
    /// Something with this id or name exists already.
    Exists(String),
    Other(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}
