//! The replica roster in PostgreSQL (`replica_heartbeats`): one row per replica, its `seen_at`
//! refreshed by each heartbeat with the database's clock. One statement per beat records it,
//! counts the rows seen within the expiry, reads the change log's head and forgets rows a day old.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use super::db_error;
use crate::domain::ports::{ClusterView, ReplicaBeat, ReplicaRoster, StoreError};
use crate::store::load::corrupt;

/// The roster of one database.
#[derive(Debug, Clone)]
pub struct PgReplicaRoster {
    pool: PgPool,
}

impl PgReplicaRoster {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl ReplicaRoster for PgReplicaRoster {
    async fn beat(&self, beat: &ReplicaBeat, expiry: Duration) -> Result<ClusterView, StoreError> {
        // The statement's other parts see the table as it was before the upsert: count the
        // others, then add this replica.
        let (others, newest): (i64, i64) = sqlx::query_as(
            "WITH beat AS ( \
                 INSERT INTO replica_heartbeats (replica, version, started_at, seen_at) \
                 VALUES ($1, $2, to_timestamp($3), now()) \
                 ON CONFLICT (replica) DO UPDATE \
                 SET version = EXCLUDED.version, started_at = EXCLUDED.started_at, seen_at = now() \
                 RETURNING replica), \
             forgotten AS ( \
                 DELETE FROM replica_heartbeats WHERE seen_at < now() - interval '1 day' AND replica <> $1) \
             SELECT (SELECT count(*) FROM replica_heartbeats \
                     WHERE replica <> $1 AND seen_at > now() - make_interval(secs => $4)), \
                    (SELECT coalesce(max(seq), 0) FROM directory_changes)",
        )
        .bind(&beat.replica)
        .bind(&beat.version)
        .bind(beat.started_at.unix_timestamp_nanos() as f64 / 1e9)
        .bind(expiry.as_secs_f64())
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(ClusterView {
            live_replicas: u32::try_from(others + 1).map_err(corrupt)?,
            newest_change: u64::try_from(newest).map_err(corrupt)?,
        })
    }

    async fn leave(&self, replica: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM replica_heartbeats WHERE replica = $1")
            .bind(replica)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
