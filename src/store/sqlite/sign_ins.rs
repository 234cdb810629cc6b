//! The sign-in log table: appended in batches by the background writer, read newest first.

use sqlx::{Sqlite, SqlitePool, Transaction};

use super::db_error;
use crate::domain::activity::Outcome;
use crate::domain::ports::StoreError;
use crate::domain::sign_in::{MsiType, SignIn, SignInPage, SignInQuery};
use crate::store::log_rows::{micros, page_rows, sign_in_page};

/// Rows per INSERT statement: 19 bound values each, well under SQLite's variable limit.
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts `entries` with multi-row statements (one round of parsing per 500 rows, not per row).
pub(super) async fn insert_all(tx: &mut Transaction<'static, Sqlite>, entries: &[SignIn]) -> Result<(), StoreError> {
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let mut insert = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO sign_ins (id, time_us, tenant_id, kind, principal_id, client_id, resource, caller_address, \
             outcome, error_code, reason, latency_us, cached, count, status_code, principal_name, msi_type, \
             compute_resource, credential_id) ",
        );
        insert.push_values(chunk, |mut row, entry| {
            row.push_bind(entry.id.to_string())
                .push_bind(micros(entry.time))
                .push_bind(entry.tenant_id.to_string())
                .push_bind(entry.kind.as_str())
                .push_bind(entry.principal.principal_id.map(|p| p.to_string()))
                .push_bind(entry.principal.client_id.clone())
                .push_bind(entry.resource.clone())
                .push_bind(entry.caller_address.map(|a| a.to_string()).unwrap_or_default())
                .push_bind(entry.outcome.as_str())
                .push_bind(entry.error_code.clone())
                .push_bind(entry.reason.clone())
                .push_bind(i64::try_from(entry.latency.as_micros()).unwrap_or(i64::MAX))
                .push_bind(entry.cached)
                .push_bind(i64::from(entry.count))
                .push_bind(i64::from(entry.status_code))
                .push_bind(entry.principal.name.clone())
                .push_bind(entry.principal.msi_type.map_or("", MsiType::as_str))
                .push_bind(entry.compute_resource.clone())
                .push_bind(entry.credential_id.map(|c| c.to_string()));
        });
        insert.build().execute(&mut **tx).await.map_err(db_error)?;
    }
    Ok(())
}

pub(super) async fn query(pool: &SqlitePool, q: &SignInQuery) -> Result<SignInPage, StoreError> {
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
    .bind(page_rows(q.limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    sign_in_page(&rows, q.limit)
}
