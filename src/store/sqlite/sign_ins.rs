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

/// Rows per INSERT statement: 14 bound values each, well under SQLite's variable limit.
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts `entries` with multi-row statements (one round of parsing per 500 rows, not per row).
pub(super) async fn insert_all(tx: &mut Transaction<'static, Sqlite>, entries: &[SignIn]) -> Result<(), StoreError> {
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let mut insert = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO sign_ins (id, time_us, tenant_id, kind, principal_id, client_id, resource, caller_address, \
             outcome, error_code, reason, latency_us, cached, count) ",
        );
        insert.push_values(chunk, |mut row, entry| {
            row.push_bind(entry.id.to_string())
                .push_bind(micros(entry.time))
                .push_bind(entry.tenant_id.to_string())
                .push_bind(entry.kind.as_str())
                .push_bind(entry.principal_id.map(|p| p.to_string()))
                .push_bind(entry.client_id.clone())
                .push_bind(entry.resource.clone())
                .push_bind(entry.caller_address.map(|a| a.to_string()).unwrap_or_default())
                .push_bind(entry.outcome.as_str())
                .push_bind(entry.error_code.clone())
                .push_bind(entry.reason.clone())
                .push_bind(i64::try_from(entry.latency.as_micros()).unwrap_or(i64::MAX))
                .push_bind(entry.cached)
                .push_bind(i64::from(entry.count));
        });
        insert.build().execute(&mut **tx).await.map_err(db_error)?;
    }
    Ok(())
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
            count: u32::try_from(row.get::<i64, _>("count")).unwrap_or(u32::MAX),
        });
    }
    Ok(SignInPage { entries, next: if more { last } else { None } })
}
