//! Sealed signing keys in PostgreSQL (`signing_keys`, `signing_key_set`): the storage half of the
//! cluster key store. It holds sealed bytes only; sealing and unsealing happen in `signing`.
//! A change is one transaction that advances the set's generation only if it is still the one the
//! writer read, then announces itself on the `ficus_keys` channel.

use async_trait::async_trait;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::db_error;
use crate::domain::ports::{KeyRecords, SealedKeyRecord, SealedKeyStorage, StoreError};
use crate::store::load::corrupt;
use crate::store::log_rows::micros;

/// The channel a committed key change is announced on.
pub(super) const KEYS_CHANNEL: &str = "ficus_keys";

/// The sealed key records of one database.
#[derive(Debug, Clone)]
pub struct PgSealedKeys {
    pool: PgPool,
}

impl PgSealedKeys {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn instant(us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).map_err(corrupt)
}

#[async_trait]
impl SealedKeyStorage for PgSealedKeys {
    async fn load(&self) -> Result<KeyRecords, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db_error)?;
        let generation: i64 = sqlx::query_scalar("SELECT generation FROM signing_key_set WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let rows = sqlx::query(
            "SELECT kid, alg, created_at_us, activate_at_us, kek_id, sealed_key, certificate \
             FROM signing_keys ORDER BY activate_at_us, kid",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        let keys = rows
            .iter()
            .map(|row| {
                Ok(SealedKeyRecord {
                    kid: row.try_get("kid").map_err(corrupt)?,
                    alg: row.try_get("alg").map_err(corrupt)?,
                    created_at: instant(row.try_get("created_at_us").map_err(corrupt)?)?,
                    activate_at: instant(row.try_get("activate_at_us").map_err(corrupt)?)?,
                    kek_id: row.try_get("kek_id").map_err(corrupt)?,
                    sealed_key: row.try_get("sealed_key").map_err(corrupt)?,
                    certificate: row.try_get("certificate").map_err(corrupt)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(KeyRecords { generation, keys })
    }

    async fn generation(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT generation FROM signing_key_set WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn replace(&self, generation: i64, add: &SealedKeyRecord, remove: &[String]) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // A concurrent writer holds the row until it commits; then the WHERE sees its generation.
        let advanced =
            sqlx::query("UPDATE signing_key_set SET generation = generation + 1 WHERE id = 1 AND generation = $1")
                .bind(generation)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        if advanced.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM signing_keys WHERE kid = ANY($1)")
            .bind(remove)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, created_at_us, activate_at_us, kek_id, sealed_key, certificate) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&add.kid)
        .bind(&add.alg)
        .bind(micros(add.created_at))
        .bind(micros(add.activate_at))
        .bind(&add.kek_id)
        .bind(&add.sealed_key)
        .bind(&add.certificate)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("SELECT pg_notify($1, '')").bind(KEYS_CHANNEL).execute(&mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }
}
