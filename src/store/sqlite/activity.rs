//! The activity log table: appended per change, read newest first with a sequence cursor.

use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;

use super::{corrupt, db_error};
use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery, Actor, Outcome};
use crate::domain::ports::StoreError;
use crate::domain::tenant::TenantId;

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

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

const TARGET_TYPES: [&str; 6] =
    ["Application", "FederatedIdentityCredential", "ManagedIdentity", "ComputeResource", "RoleAssignment", "Tenant"];

pub(super) async fn query(pool: &SqlitePool, q: &ActivityQuery) -> Result<ActivityPage, StoreError> {
    let limit = i64::try_from(q.limit.clamp(1, 1000)).unwrap_or(100);
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
    .bind(limit + 1)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let more = rows.len() > q.limit.clamp(1, 1000);
    let mut entries = Vec::with_capacity(rows.len());
    let mut last_seq = None;
    for row in rows.into_iter().take(q.limit.clamp(1, 1000)) {
        last_seq = Some(row.get::<i64, _>("seq"));
        let target_type: String = row.get("target_type");
        entries.push(ActivityEntry {
            id: uuid::Uuid::try_parse(row.get("id")).map_err(corrupt)?,
            time: OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.get::<i64, _>("time_us")) * 1000)
                .map_err(corrupt)?,
            tenant_id: TenantId::parse(row.get("tenant_id")).map_err(corrupt)?,
            actor: Actor { id: row.get("actor_id"), display_name: row.get("actor_name") },
            operation: row.get("operation"),
            target_type: TARGET_TYPES.into_iter().find(|t| *t == target_type).ok_or_else(|| corrupt(&target_type))?,
            target: row.get("target"),
            outcome: Outcome::parse(row.get("outcome")).ok_or_else(|| corrupt("outcome"))?,
            reason: row.get("reason"),
        });
    }
    Ok(ActivityPage { entries, next: if more { last_seq } else { None } })
}
