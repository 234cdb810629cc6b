//! The SQLite registry: one file, WAL journal, foreign keys on, migrations embedded in the binary.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::domain::ports::{Registry, StoreError};
use crate::domain::tenant::{Tenant, TenantId, TenantName};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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
            .busy_timeout(Duration::from_secs(5));
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
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        MIGRATOR.run(&pool).await.map_err(|e| unavailable(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable(message)
}

fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

#[async_trait]
impl Registry for SqliteRegistry {
    async fn upsert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let existing: Option<String> = sqlx::query_scalar("SELECT name FROM tenants WHERE id = ?")
            .bind(tenant.id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        match existing {
            Some(name) if name != tenant.name.as_str() => {
                return Err(StoreError::Conflict(format!(
                    "tenant {} is already named '{name}'; a tenant's name cannot change",
                    tenant.id
                )));
            }
            Some(_) => {
                sqlx::query("UPDATE tenants SET display_name = ? WHERE id = ?")
                    .bind(&tenant.display_name)
                    .bind(tenant.id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            None => {
                sqlx::query("INSERT INTO tenants (id, name, display_name) VALUES (?, ?, ?)")
                    .bind(tenant.id.to_string())
                    .bind(tenant.name.as_str())
                    .bind(&tenant.display_name)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match db_error(e) {
                        StoreError::Conflict(_) => {
                            StoreError::Conflict(format!("another tenant is already named '{}'", tenant.name))
                        }
                        other => other,
                    })?;
            }
        }
        tx.commit().await.map_err(db_error)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, display_name FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let id: String = row.get("id");
                let name: String = row.get("name");
                Ok(Tenant {
                    id: TenantId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    name: TenantName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    display_name: row.get("display_name"),
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(db_error)
    }
}
