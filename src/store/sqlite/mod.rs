//! The SQLite registry: one file, WAL journal, foreign keys on, migrations embedded in the binary.
//!
//! Multi-statement writes run in `BEGIN IMMEDIATE` transactions, so concurrent writers queue for
//! the write lock instead of failing to upgrade a read lock; the schema's triggers and constraints
//! hold the invariants (the 20-credential limit, uniqueness, cascades) whatever the interleaving.
//!
//! The database works on sqlx's worker threads (one per connection, named [`WORKER_THREAD`]), and
//! they run at a lower CPU priority ([`WORKER_NICE`]) than the threads that serve requests: the
//! token path never waits for the database, while a batch of sign-in rows or a WAL checkpoint on
//! the same core would otherwise hold the requests up for as long as it runs.

mod activity;
mod directory;
mod fetch;
mod sign_ins;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, Sqlite, SqlitePool, Transaction};

use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery};
use crate::domain::application::Application;
use crate::domain::federated_credential::{CredentialOwner, FederatedCredential};
use crate::domain::ids::ObjectId;
use crate::domain::ports::{
    BootstrapLock, ChangeCursor, ChangeSet, ClusterView, Conflict, Directory, NoBootstrapLock, Registry, ReplicaBeat,
    ReplicaRoster, StoreError,
};
use crate::domain::resource::{ComputeResource, ManagedIdentity, ResourceId};
use crate::domain::role_assignment::RoleAssignment;
use crate::domain::sign_in::{SignIn, SignInPage, SignInQuery};
use crate::domain::tenant::{Tenant, TenantId, TenantName};
use crate::store::load::{self, corrupt};
use fetch::SqliteFetch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// `created_at` values: the database's clock, for the record only (no rule reads them).
pub(crate) const NOW_SQL: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

#[derive(Debug, Clone)]
pub struct SqliteRegistry {
    pool: SqlitePool,
}

impl SqliteRegistry {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Switching a new file to WAL takes an exclusive lock that `busy_timeout` cannot wait
        // for, so pooled connections racing to open a fresh database could fail with "database
        // is locked": switch it once, on one connection, before the pool opens several.
        let first = SqliteConnection::connect_with(&options).await.map_err(|e| unavailable(e.to_string()))?;
        first.close().await.map_err(|e| unavailable(e.to_string()))?;
        Self::connect(options, 8).await
    }

    /// A private in-memory database (tests, contract suite).
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| unavailable(e.to_string()))?
            .foreign_keys(true);
        // One connection: every connection to `:memory:` would be a separate database.
        Self::connect(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions, max_connections: u32) -> Result<Self, StoreError> {
        let options = options.thread_name(|n| format!("{WORKER_THREAD}-{n}"));
        let pool = SqlitePoolOptions::new()
            // The connection's worker thread exists by now.
            .after_connect(|_, _| {
                Box::pin(async {
                    lower_worker_priority();
                    Ok(())
                })
            })
            .max_connections(max_connections)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        MIGRATOR.run(&pool).await.map_err(|e| unavailable(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }

    /// Runs a `DELETE` bound to `keys`; `NotFound(what)` when it removed nothing.
    async fn delete(&self, sql: &'static str, keys: &[String], what: String) -> Result<(), StoreError> {
        let mut query = sqlx::query(sql);
        for key in keys {
            query = query.bind(key);
        }
        let result = query.execute(&self.pool).await.map_err(db_error)?;
        expect_rows(result, what)
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
    }
}

/// The name (prefix) of this registry's SQLite worker threads.
pub const WORKER_THREAD: &str = "ficus-sqlite";

/// The nice value of the SQLite worker threads: below the request threads' (0). Measured with
/// `renice` on 2026-12-05: `mixed`'s p99 at 32,000 req/s, broker on one core, 3.6-3.9 ms at 0 and
/// 2.5 ms at 10.
pub const WORKER_NICE: i32 = 10;

/// Lowers the priority of every SQLite worker thread of this process still at nice 0. On Linux
/// the nice value is a thread's own, and `setpriority` with a thread id sets that thread's. A
/// failure is logged and changes nothing else.
fn lower_worker_priority() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
    for task in tasks.flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else { continue };
        if !comm.starts_with(WORKER_THREAD) {
            continue;
        }
        let pid = rustix::process::Pid::from_raw(tid);
        if pid.is_none() || rustix::process::getpriority_process(pid).is_ok_and(|nice| nice >= WORKER_NICE) {
            continue;
        }
        if let Err(e) = rustix::process::setpriority_process(pid, WORKER_NICE) {
            tracing::debug!(error = %e, tid, "could not lower a SQLite worker thread's priority");
        }
    }
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable(message)
}

/// Maps database errors to the rule they broke.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    let sqlx::Error::Database(db) = &e else {
        return StoreError::Unavailable(e.to_string());
    };
    let message = db.message();
    if message.contains("federated credential limit reached") {
        return StoreError::Conflict(Conflict::CredentialLimit);
    }
    if db.is_unique_violation() {
        let conflict = if message.contains("federated_credentials.name") {
            Conflict::CredentialName
        } else if message.contains("federated_credentials.issuer") {
            Conflict::CredentialIssuerSubject
        } else if message.contains("identifier_uris") {
            Conflict::IdentifierUri
        } else if message.contains("role_assignments") {
            Conflict::RoleAssignment
        } else {
            Conflict::Exists(message.to_owned())
        };
        return StoreError::Conflict(conflict);
    }
    if db.is_foreign_key_violation() {
        return StoreError::NotFound("a referenced object does not exist".to_owned());
    }
    StoreError::Unavailable(message.to_owned())
}

/// Fails with `NotFound(what)` when a statement touched no row.
pub(crate) fn expect_rows(result: sqlx::sqlite::SqliteQueryResult, what: impl Into<String>) -> Result<(), StoreError> {
    if result.rows_affected() == 0 { Err(StoreError::NotFound(what.into())) } else { Ok(()) }
}

#[async_trait]
impl Registry for SqliteRegistry {
    async fn upsert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let existing: Option<String> = sqlx::query_scalar("SELECT name FROM tenants WHERE id = ?")
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
            Some(_) => sqlx::query("UPDATE tenants SET display_name = ? WHERE id = ? AND name = ?"),
            None => sqlx::query("INSERT INTO tenants (display_name, id, name) VALUES (?, ?, ?)"),
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
        let rows = sqlx::query("SELECT id, name, display_name FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                Ok(Tenant {
                    id: TenantId::parse(row.get("id")).map_err(corrupt)?,
                    name: TenantName::parse(row.get("name")).map_err(corrupt)?,
                    display_name: row.get("display_name"),
                })
            })
            .collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn lock_bootstrap(&self) -> Result<Box<dyn BootstrapLock>, StoreError> {
        // One broker per database file: nobody to take turns with.
        Ok(Box::new(NoBootstrapLock))
    }

    async fn upsert_subscription(&self, subscription: uuid::Uuid, tenant: TenantId) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let owner: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM subscriptions WHERE id = ?")
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
                sqlx::query("INSERT INTO subscriptions (id, tenant_id) VALUES (?, ?)")
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
        let result = sqlx::query("UPDATE applications SET rate_limit = ?1 WHERE object_id = ?2 AND tenant_id = ?3")
            .bind(rate.map(|r| r.to_string()))
            .bind(application.to_string())
            .bind(tenant.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        expect_rows(result, format!("application {application}"))
    }

    async fn delete_application(&self, tenant: TenantId, object_id: ObjectId) -> Result<(), StoreError> {
        let sql = "DELETE FROM applications WHERE object_id = ? AND tenant_id = ?";
        self.delete(sql, &[object_id.to_string(), tenant.to_string()], format!("application {object_id}")).await
    }

    async fn set_client_secret(&self, application: ObjectId, sha256_hex: &str, hint: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM client_secrets WHERE application_id = ?")
            .bind(application.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let sql = format!(
            "INSERT INTO client_secrets (id, application_id, secret_sha256, hint, created_at) VALUES (?, ?, ?, ?, {NOW_SQL})"
        );
        let result = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ObjectId::random().to_string())
            .bind(application.to_string())
            .bind(sha256_hex)
            .bind(hint)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        expect_rows(result, format!("application {application}"))?;
        tx.commit().await.map_err(db_error)
    }

    async fn add_credential(&self, credential: &FederatedCredential) -> Result<(), StoreError> {
        directory::insert_credential(&self.pool, credential).await
    }

    async fn update_credential(&self, credential: &FederatedCredential) -> Result<(), StoreError> {
        directory::update_credential(&self.pool, credential).await
    }

    async fn delete_credential(&self, owner: CredentialOwner, id: ObjectId) -> Result<(), StoreError> {
        let sql = "DELETE FROM federated_credentials WHERE id = ? AND owner_id = ?";
        let keys = [id.to_string(), owner.id().to_string()];
        self.delete(sql, &keys, format!("federated identity credential {id}")).await
    }

    async fn create_identity(&self, identity: &ManagedIdentity) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        directory::insert_identity(&mut tx, identity, None).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_identity(&self, principal_id: ObjectId) -> Result<(), StoreError> {
        let sql = "DELETE FROM managed_identities WHERE principal_id = ? AND system_resource_key IS NULL";
        self.delete(sql, &[principal_id.to_string()], format!("user-assigned identity {principal_id}")).await
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
        directory::insert_role_assignment(&self.pool, assignment).await
    }

    async fn delete_role_assignment(&self, tenant: TenantId, id: ObjectId) -> Result<(), StoreError> {
        let sql = "DELETE FROM role_assignments WHERE id = ? AND tenant_id = ?";
        self.delete(sql, &[id.to_string(), tenant.to_string()], format!("role assignment {id}")).await
    }

    async fn add_fault(&self, rule: &crate::domain::fault::FaultRule) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO fault_rules (id, tenant_id, rule, remaining) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
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
        let rows = sqlx::query("SELECT rule FROM fault_rules WHERE remaining IS NULL OR remaining > 0 ORDER BY rowid")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(|row| crate::store::faults::decode(row.get::<&str, _>(0))).collect()
    }

    async fn remove_faults(&self, tenant: TenantId, id: Option<ObjectId>) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM fault_rules WHERE tenant_id = ?1 AND (?2 IS NULL OR id = ?2)")
            .bind(tenant.to_string())
            .bind(id.map(|id| id.to_string()))
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }

    async fn take_fault(&self, id: ObjectId) -> Result<bool, StoreError> {
        let taken = sqlx::query("UPDATE fault_rules SET remaining = remaining - 1 WHERE id = ? AND remaining > 0")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(taken.rows_affected() == 1)
    }

    async fn append_activity(&self, entry: &ActivityEntry) -> Result<(), StoreError> {
        activity::append(&self.pool, entry).await
    }

    async fn query_activity(&self, query: &ActivityQuery) -> Result<ActivityPage, StoreError> {
        activity::query(&self.pool, query).await
    }

    async fn append_sign_ins(&self, entries: &[SignIn]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sign_ins::insert_all(&mut tx, entries).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn query_sign_ins(&self, query: &SignInQuery) -> Result<SignInPage, StoreError> {
        sign_ins::query(&self.pool, query).await
    }

    async fn load_directory_at(&self) -> Result<(Directory, ChangeCursor), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let loaded = load::load(&mut SqliteFetch(&mut tx)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(loaded)
    }

    async fn load_changes(&self, after: ChangeCursor) -> Result<Option<ChangeSet>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let changes = load::changes(&mut SqliteFetch(&mut tx), after).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(changes)
    }

    async fn prune_changes(&self, through: ChangeCursor) -> Result<(), StoreError> {
        let through = i64::try_from(through).map_err(corrupt)?;
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM directory_changes WHERE seq <= ?1")
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("UPDATE directory_changes_pruned SET through = max(through, ?1) WHERE id = 1")
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }
}

/// One file, one process: the roster is this replica alone; the beat still reads the change log's
/// head (for the lag gauge) and so shows whether the file answers.
#[async_trait]
impl ReplicaRoster for SqliteRegistry {
    async fn beat(&self, _beat: &ReplicaBeat, _expiry: Duration) -> Result<ClusterView, StoreError> {
        let newest: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM directory_changes")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(ClusterView { live_replicas: 1, newest_change: u64::try_from(newest).map_err(corrupt)? })
    }

    async fn leave(&self, _replica: &str) -> Result<(), StoreError> {
        Ok(())
    }
}
