//! The activity log table: appended per change, read newest first with a sequence cursor.

use sqlx::SqlitePool;

use super::db_error;
use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery};
use crate::domain::ports::StoreError;
use crate::store::log_rows::{activity_page, micros, page_rows};

pub(super) async fn append(pool: &SqlitePool, entry: &ActivityEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO activity_log (id, time_us, tenant_id, actor_id, actor_name, operation, target_type, target, outcome, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.id.to_string())
    .bind(micros(entry.time))
    .bind(entry.tenant_id.to_string())
    .bind(&entry.actor.id)
    .bind(&entry.actor.display_name)
    .bind(&entry.operation)
    .bind(entry.target_type)
    .bind(&entry.target)
    .bind(entry.outcome.as_str())
    .bind(&entry.reason)
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(db_error)
}

pub(super) async fn query(pool: &SqlitePool, q: &ActivityQuery) -> Result<ActivityPage, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, id, time_us, tenant_id, actor_id, actor_name, operation, target_type, target, outcome, reason \
         FROM activity_log WHERE tenant_id = ?1 \
         AND (?2 IS NULL OR time_us >= ?2) AND (?3 IS NULL OR time_us <= ?3) \
         AND (?4 IS NULL OR target = ?4 COLLATE NOCASE) AND (?5 IS NULL OR seq < ?5) \
         ORDER BY seq DESC LIMIT ?6",
    )
    .bind(q.tenant_id.to_string())
    .bind(q.since.map(micros))
    .bind(q.until.map(micros))
    .bind(q.target.as_deref())
    .bind(q.after)
    .bind(page_rows(q.limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    activity_page(&rows, q.limit)
}
