//! The sign-in log table: appended in batches by the background writer, read newest first.

use std::time::Duration;

use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;

use super::{corrupt, db_error};
use crate::domain::activity::Outcome;
use crate::domain::ids::ObjectId;
use crate::domain::ports::StoreError;
use crate::domain::sign_in::{SignIn, SignInKind, SignInPage, SignInQuery};
use crate::domain::tenant::TenantId;

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

pub(super) async fn insert(tx: &mut Transaction<'static, Sqlite>, entry: &SignIn) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sign_ins (id, time_us, tenant_id, kind, principal_id, client_id, resource, caller_address, \
         outcome, error_code, reason, latency_us, cached) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.id.to_string())
    .bind(micros(entry.time))
    .bind(entry.tenant_id.to_string())
    .bind(entry.kind.as_str())
    .bind(entry.principal_id.map(|p| p.to_string()))
    .bind(entry.client_id.as_deref())
    .bind(&entry.resource)
    .bind(entry.caller_address.map(|a| a.to_string()).unwrap_or_default())
    .bind(entry.outcome.as_str())
    .bind(&entry.error_code)
    .bind(&entry.reason)
    .bind(i64::try_from(entry.latency.as_micros()).unwrap_or(i64::MAX))
    .bind(entry.cached)
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(db_error)
}

pub(super) async fn query(pool: &SqlitePool, q: &SignInQuery) -> Result<SignInPage, StoreError> {
    let limit = q.limit.clamp(1, 1000);
    let rows = sqlx::query(
        "SELECT * FROM sign_ins WHERE tenant_id = ?1 \
         AND (?2 IS NULL OR time_us >= ?2) AND (?3 IS NULL OR time_us <= ?3) \
         AND (?4 IS NULL OR principal_id = ?4) AND (?5 IS NULL OR outcome = ?5) AND (?6 IS NULL OR seq < ?6) \
         ORDER BY seq DESC LIMIT ?7",
    )
    .bind(q.tenant_id.to_string())
    .bind(q.since.map(micros))
    .bind(q.until.map(micros))
    .bind(q.principal_id.map(|p| p.to_string()))
    .bind(q.outcome.map(Outcome::as_str))
    .bind(q.after)
    .bind(i64::try_from(limit + 1).unwrap_or(1001))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let more = rows.len() > limit;
    let mut entries = Vec::with_capacity(limit);
    let mut last = None;
    for row in rows.into_iter().take(limit) {
        last = Some(row.get::<i64, _>("seq"));
        let principal: Option<String> = row.get("principal_id");
        let address: String = row.get("caller_address");
        entries.push(SignIn {
            id: uuid::Uuid::try_parse(row.get("id")).map_err(corrupt)?,
            time: OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.get::<i64, _>("time_us")) * 1000)
                .map_err(corrupt)?,
            tenant_id: TenantId::parse(row.get("tenant_id")).map_err(corrupt)?,
            kind: SignInKind::parse(row.get("kind")).ok_or_else(|| corrupt("kind"))?,
            principal_id: principal.as_deref().map(ObjectId::parse).transpose().map_err(corrupt)?,
            client_id: row.get("client_id"),
            resource: row.get("resource"),
            caller_address: address.parse().ok(),
            outcome: Outcome::parse(row.get("outcome")).ok_or_else(|| corrupt("outcome"))?,
            error_code: row.get("error_code"),
            reason: row.get("reason"),
            latency: Duration::from_micros(u64::try_from(row.get::<i64, _>("latency_us")).unwrap_or(0)),
            cached: row.get("cached"),
        });
    }
    Ok(SignInPage { entries, next: if more { last } else { None } })
}
