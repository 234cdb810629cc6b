//! The PostgreSQL registry, for several replicas sharing one database: the same ports and rules as
//! the SQLite adapter, migrations embedded (`migrations/postgres`).
//!
//! Every write runs in a transaction that first takes the registry's write lock (a transaction-
//! scoped advisory lock), so writers commit one at a time and the trigger-written change log
//! becomes visible in sequence order: a replica whose cursor has reached change N has seen every
//! change before N. Rules that span rows are held by the database itself, whichever replica
//! writes: the 20-credential limit locks the owner's row and counts, unique constraints cover
//! names and pairs, foreign keys tie role assignments to live resources. Reads for the snapshot
//! run in one `REPEATABLE READ` transaction, so a load is one consistent state.
//!
//! Committed changes are announced on the `ficus_directory` channel (`NOTIFY`, from the change
//! trigger), key changes on `ficus_keys`; [`PostgresRegistry::listen`] turns both into wake-ups,
//! for the snapshot's follower and the key reloader. The sealed signing keys are [`PgSealedKeys`];
//! the replicas' heartbeats, [`PgReplicaRoster`].

mod directory;
mod fetch;
mod keys;
mod logs;
mod roster;

pub use keys::PgSealedKeys;
pub use roster::PgReplicaRoster;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery};
use crate::domain::application::Application;
use crate::domain::federated_credential::{CredentialOwner, FederatedCredential};
use crate::domain::ids::ObjectId;
use crate::domain::ports::{
    BootstrapLock, ChangeCursor, ChangeNotifications, ChangeSet, Conflict, Directory, Registry, StoreError,
};
use crate::domain::resource::{ComputeResource, ManagedIdentity, ResourceId};
use crate::domain::role_assignment::RoleAssignment;
use crate::domain::sign_in::{SignIn, SignInPage, SignInQuery};
use crate::domain::tenant::{Tenant, TenantId, TenantName};
use crate::store::load::{self, corrupt};
use fetch::PgFetch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel the change trigger notifies on commit.
const CHANNEL: &str = "ficus_directory";

#[derive(Debug, Clone)]
pub struct PostgresRegistry {
    pool: PgPool,
}

/// Connection settings for [`PostgresRegistry::open`].
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 8, acquire_timeout: Duration::from_secs(3) }
    }
}

impl PostgresRegistry {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and brings the schema up
    /// to date. Replicas starting together migrate once: the migrator holds an advisory lock.
    pub async fn open(url: &str, settings: PoolSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("storage.url: {e}")))?
            .application_name("ficus");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }

    /// Starts listening for committed registry and key changes. The listener reconnects by
    /// itself after the database comes back, and then wakes both followers (notifications sent
    /// while it was away are lost; the change log and the key set's generation are not).
    pub async fn listen(&self) -> Result<PgNotifications, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db_error)?;
        listener.listen_all([CHANNEL, keys::KEYS_CHANNEL]).await.map_err(db_error)?;
        let directory = Arc::new(PgChangeNotifications { wake: tokio::sync::Notify::new() });
        let keys = Arc::new(PgChangeNotifications { wake: tokio::sync::Notify::new() });
        let (weak_directory, weak_keys) = (Arc::downgrade(&directory), Arc::downgrade(&keys));
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let received = listener.recv().await;
                let (directory, keys) = (weak_directory.upgrade(), weak_keys.upgrade());
                // Closing the pool waits for every connection, the listener's too: let it go.
                if pool.is_closed() || (directory.is_none() && keys.is_none()) {
                    return;
                }
                let wake = |target: &Option<Arc<PgChangeNotifications>>| {
                    if let Some(target) = target {
                        target.wake.notify_one();
                    }
                };
                match received {
                    Ok(notification) => {
                        if failing {
                            tracing::info!("listening for registry changes again");
                            failing = false;
                        }
                        if notification.channel() == keys::KEYS_CHANNEL {
                            wake(&keys);
                        } else {
                            wake(&directory);
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "lost the registry change channel; reconnecting");
                            failing = true;
                        }
                        // Whatever was announced meanwhile is in the change log: read it.
                        wake(&directory);
                        wake(&keys);
                        drop((directory, keys));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(PgNotifications { directory, keys })
    }

    /// The sealed signing keys in this database.
    pub fn sealed_keys(&self) -> PgSealedKeys {
        PgSealedKeys::new(self.pool.clone())
    }

    /// The replicas sharing this database, as their heartbeats record them.
    pub fn roster(&self) -> PgReplicaRoster {
        PgReplicaRoster::new(self.pool.clone())
    }

    /// A write transaction holding the registry's write lock.
    async fn write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("SELECT ficus_registry_write_lock()").execute(&mut *tx).await.map_err(db_error)?;
        Ok(tx)
    }

    /// Runs one statement bound to `keys` in a write transaction; `NotFound(what)` when it
    /// touched no row.
    async fn write_one(&self, sql: &'static str, keys: &[String], what: String) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let mut query = sqlx::query(sql);
        for key in keys {
            query = query.bind(key);
        }
        let result = query.execute(&mut *tx).await.map_err(db_error)?;
        expect_rows(result.rows_affected(), what)?;
        tx.commit().await.map_err(db_error)
    }

    async fn read(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db_error)
    }
}

/// The session-level advisory lock replicas take turns on while bootstrapping.
const BOOTSTRAP_LOCK: i64 = 7_046_029_254_386_353_132;

/// Holds the bootstrap lock on one pooled connection.
struct PgBootstrapLock(Option<sqlx::pool::PoolConnection<Postgres>>);

#[async_trait]
impl BootstrapLock for PgBootstrapLock {
    async fn release(mut self: Box<Self>) {
        if let Some(mut connection) = self.0.take() {
            let unlocked =
                sqlx::query("SELECT pg_advisory_unlock($1)").bind(BOOTSTRAP_LOCK).execute(&mut *connection).await;
            if unlocked.is_err() {
                // Never hand a connection that may still hold the lock back to the pool.
                connection.close_on_drop();
            }
        }
    }
}

impl Drop for PgBootstrapLock {
    fn drop(&mut self) {
        // Not released (start-up failed half-way): closing the session releases the lock.
        if let Some(connection) = self.0.take() {
            drop(connection.detach());
        }
    }
}

/// The wake-ups of one listening connection, per channel.
pub struct PgNotifications {
    /// Registry changes (`ficus_directory`).
    pub directory: Arc<PgChangeNotifications>,
    /// Signing key changes (`ficus_keys`).
    pub keys: Arc<PgChangeNotifications>,
}

/// Wake-ups from one channel.
pub struct PgChangeNotifications {
    wake: tokio::sync::Notify,
}

#[async_trait]
impl ChangeNotifications for PgChangeNotifications {
    async fn changed(&self) {
        self.wake.notified().await;
    }
}

/// Maps database errors to the rule they broke; anything else means the database is unavailable.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    let sqlx::Error::Database(db) = &e else {
        return StoreError::Unavailable(e.to_string());
    };
    let constraint = db.constraint().unwrap_or_default();
    match constraint {
        "federated_credentials_limit" => return StoreError::Conflict(Conflict::CredentialLimit),
        "federated_credentials_name_key" => return StoreError::Conflict(Conflict::CredentialName),
        "federated_credentials_issuer_subject_key" => return StoreError::Conflict(Conflict::CredentialIssuerSubject),
        "identifier_uris_pkey" => return StoreError::Conflict(Conflict::IdentifierUri),
        "role_assignments_principal_role_key" => return StoreError::Conflict(Conflict::RoleAssignment),
        "role_assignments_role_of_resource" => return StoreError::NotFound("app role".to_owned()),
        _ => {}
    }
    if db.is_unique_violation() {
        return StoreError::Conflict(Conflict::Exists(db.message().to_owned()));
    }
    if db.is_foreign_key_violation() {
        return StoreError::NotFound("a referenced object does not exist".to_owned());
    }
    StoreError::Unavailable(db.message().to_owned())
}

fn expect_rows(rows: u64, what: impl Into<String>) -> Result<(), StoreError> {
    if rows == 0 { Err(StoreError::NotFound(what.into())) } else { Ok(()) }
}

#[async_trait]
impl Registry for PostgresRegistry {
    async fn upsert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let existing: Option<String> = sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1")
            .bind(tenant.id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        match existing {
            Some(name) if name != tenant.name.as_str() => {
                return Err(StoreError::Conflict(Conflict::Other(format!(
                    "tenant {} is already named '{name}'; a tenant's name cannot change",
                    tenant.id
                ))));
            }
            Some(_) => sqlx::query("UPDATE tenants SET display_name = $1 WHERE id = $2 AND name = $3"),
            None => sqlx::query("INSERT INTO tenants (display_name, id, name) VALUES ($1, $2, $3)"),
        }
        .bind(&tenant.display_name)
        .bind(tenant.id.to_string())
        .bind(tenant.name.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| match db_error(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(Conflict::Exists(format!("another tenant is already named '{}'", tenant.name)))
            }
            other => other,
        })?;
        tx.commit().await.map_err(db_error)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, name, display_name FROM tenants ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, name, display_name)| {
                Ok(Tenant {
                    id: TenantId::parse(&id).map_err(corrupt)?,
                    name: TenantName::parse(&name).map_err(corrupt)?,
                    display_name,
                })
            })
            .collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn lock_bootstrap(&self) -> Result<Box<dyn BootstrapLock>, StoreError> {
        let mut connection = self.pool.acquire().await.map_err(db_error)?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(BOOTSTRAP_LOCK)
            .execute(&mut *connection)
            .await
            .map_err(db_error)?;
        Ok(Box::new(PgBootstrapLock(Some(connection))))
    }

    async fn upsert_subscription(&self, subscription: uuid::Uuid, tenant: TenantId) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let owner: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM subscriptions WHERE id = $1")
            .bind(subscription.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        match owner {
            Some(owner) if owner != tenant.to_string() => {
                return Err(StoreError::Conflict(Conflict::Exists(format!(
                    "subscription {subscription} belongs to another tenant"
                ))));
            }
            Some(_) => {}
            None => {
                sqlx::query("INSERT INTO subscriptions (id, tenant_id) VALUES ($1, $2)")
                    .bind(subscription.to_string())
                    .bind(tenant.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
        }
        tx.commit().await.map_err(db_error)
    }

    async fn create_application(&self, application: &Application) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        directory::insert_application(&mut tx, application).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn set_application_rate_limit(
        &self,
        tenant: TenantId,
        application: ObjectId,
        rate: Option<crate::domain::rate_limit::Rate>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE applications SET rate_limit = $1 WHERE object_id = $2 AND tenant_id = $3";
        let mut tx = self.write().await?;
        let result = sqlx::query(sql)
            .bind(rate.map(|r| r.to_string()))
            .bind(application.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        expect_rows(result.rows_affected(), format!("application {application}"))?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_application(&self, tenant: TenantId, object_id: ObjectId) -> Result<(), StoreError> {
        let sql = "DELETE FROM applications WHERE object_id = $1 AND tenant_id = $2";
        self.write_one(sql, &[object_id.to_string(), tenant.to_string()], format!("application {object_id}")).await
    }

    async fn set_client_secret(&self, application: ObjectId, sha256_hex: &str, hint: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM client_secrets WHERE application_id = $1")
            .bind(application.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let result =
            sqlx::query("INSERT INTO client_secrets (id, application_id, secret_sha256, hint) VALUES ($1, $2, $3, $4)")
                .bind(ObjectId::random().to_string())
                .bind(application.to_string())
                .bind(sha256_hex)
                .bind(hint)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        expect_rows(result.rows_affected(), format!("application {application}"))?;
        tx.commit().await.map_err(db_error)
    }

    async fn add_credential(&self, credential: &FederatedCredential) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        directory::insert_credential(&mut tx, credential).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn update_credential(&self, credential: &FederatedCredential) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        directory::update_credential(&mut tx, credential).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_credential(&self, owner: CredentialOwner, id: ObjectId) -> Result<(), StoreError> {
        let sql = "DELETE FROM federated_credentials WHERE id = $1 AND owner_id = $2";
        let keys = [id.to_string(), owner.id().to_string()];
        self.write_one(sql, &keys, format!("federated identity credential {id}")).await
    }

    async fn create_identity(&self, identity: &ManagedIdentity) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        directory::insert_identity(&mut tx, identity, None).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_identity(&self, principal_id: ObjectId) -> Result<(), StoreError> {
        let sql = "DELETE FROM managed_identities WHERE principal_id = $1 AND system_resource_key IS NULL";
        self.write_one(sql, &[principal_id.to_string()], format!("user-assigned identity {principal_id}")).await
    }

    async fn put_resource(&self, resource: &ComputeResource) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        directory::put_resource(&mut tx, resource).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_resource(&self, id: &ResourceId) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        directory::delete_resource(&mut tx, id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn create_role_assignment(&self, assignment: &RoleAssignment) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        directory::insert_role_assignment(&mut tx, assignment).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_role_assignment(&self, tenant: TenantId, id: ObjectId) -> Result<(), StoreError> {
        let sql = "DELETE FROM role_assignments WHERE id = $1 AND tenant_id = $2";
        self.write_one(sql, &[id.to_string(), tenant.to_string()], format!("role assignment {id}")).await
    }

    async fn add_fault(&self, rule: &crate::domain::fault::FaultRule) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO fault_rules (id, tenant_id, rule, remaining) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
            .bind(rule.id.to_string())
            .bind(rule.tenant.to_string())
            .bind(crate::store::faults::encode(rule)?)
            .bind(crate::store::faults::initial_remaining(rule))
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    async fn list_faults(&self) -> Result<Vec<crate::domain::fault::FaultRule>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT rule FROM fault_rules WHERE remaining IS NULL OR remaining > 0 ORDER BY created")
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        rows.iter().map(|(text,)| crate::store::faults::decode(text)).collect()
    }

    async fn remove_faults(&self, tenant: TenantId, id: Option<ObjectId>) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM fault_rules WHERE tenant_id = $1 AND ($2::text IS NULL OR id = $2)")
            .bind(tenant.to_string())
            .bind(id.map(|id| id.to_string()))
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }

    async fn take_fault(&self, id: ObjectId) -> Result<bool, StoreError> {
        let taken = sqlx::query("UPDATE fault_rules SET remaining = remaining - 1 WHERE id = $1 AND remaining > 0")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(taken.rows_affected() == 1)
    }

    async fn append_activity(&self, entry: &ActivityEntry) -> Result<(), StoreError> {
        logs::append_activity(&self.pool, entry).await
    }

    async fn query_activity(&self, query: &ActivityQuery) -> Result<ActivityPage, StoreError> {
        logs::query_activity(&self.pool, query).await
    }

    async fn append_sign_ins(&self, entries: &[SignIn]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        logs::insert_sign_ins(&mut tx, entries).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn query_sign_ins(&self, query: &SignInQuery) -> Result<SignInPage, StoreError> {
        logs::query_sign_ins(&self.pool, query).await
    }

    async fn load_directory_at(&self) -> Result<(Directory, ChangeCursor), StoreError> {
        let mut tx = self.read().await?;
        let loaded = load::load(&mut PgFetch(&mut tx)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(loaded)
    }

    async fn load_changes(&self, after: ChangeCursor) -> Result<Option<ChangeSet>, StoreError> {
        let mut tx = self.read().await?;
        let changes = load::changes(&mut PgFetch(&mut tx), after).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(changes)
    }

    async fn prune_changes(&self, through: ChangeCursor) -> Result<(), StoreError> {
        let through = i64::try_from(through).map_err(corrupt)?;
        let mut tx = self.write().await?;
        // Never past the newest change: a full load's cursor is the newest change or this mark.
        sqlx::query(
            "UPDATE directory_changes_pruned SET through = greatest(through, \
             least($1, (SELECT coalesce(max(seq), 0) FROM directory_changes))) WHERE id = 1",
        )
        .bind(through)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "DELETE FROM directory_changes WHERE seq <= (SELECT through FROM directory_changes_pruned WHERE id = 1)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }
}
