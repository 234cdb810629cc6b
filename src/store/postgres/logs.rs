//! The activity and sign-in logs in PostgreSQL: activity appended per change, sign-ins in
//! multi-row batches; both read newest first with a sequence cursor, as on SQLite.

use sqlx::{PgPool, Postgres, Transaction};

use super::db_error;
use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery, Outcome};
use crate::domain::ports::StoreError;
use crate::domain::sign_in::{MsiType, SignIn, SignInPage, SignInQuery};
use crate::store::log_rows::{activity_page, micros, page_rows, sign_in_page};

/// Rows per INSERT statement: 19 bound values each, far below PostgreSQL's 65,535.
const ROWS_PER_STATEMENT: usize = 500;

pub(super) async fn append_activity(pool: &PgPool, entry: &ActivityEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO activity_log (id, time_us, tenant_id, actor_id, actor_name, operation, target_type, target, outcome, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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

pub(super) async fn query_activity(pool: &PgPool, q: &ActivityQuery) -> Result<ActivityPage, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, id, time_us, tenant_id, actor_id, actor_name, operation, target_type, target, outcome, reason \
         FROM activity_log WHERE tenant_id = $1 \
         AND ($2::BIGINT IS NULL OR time_us >= $2) AND ($3::BIGINT IS NULL OR time_us <= $3) \
         AND ($4::TEXT IS NULL OR lower(target) = lower($4)) AND ($5::BIGINT IS NULL OR seq < $5) \
         ORDER BY seq DESC LIMIT $6",
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

pub(super) async fn insert_sign_ins(
    tx: &mut Transaction<'static, Postgres>,
    entries: &[SignIn],
) -> Result<(), StoreError> {
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let mut insert = sqlx::QueryBuilder::<Postgres>::new(
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
                .push_bind(i32::try_from(entry.count).unwrap_or(i32::MAX))
                .push_bind(i32::try_from(entry.status_code).unwrap_or(i32::MAX))
                .push_bind(entry.principal.name.clone())
                .push_bind(entry.principal.msi_type.map_or("", MsiType::as_str))
                .push_bind(entry.compute_resource.clone())
                .push_bind(entry.credential_id.map(|c| c.to_string()));
        });
        insert.build().execute(&mut **tx).await.map_err(db_error)?;
    }
    Ok(())
}

pub(super) async fn query_sign_ins(pool: &PgPool, q: &SignInQuery) -> Result<SignInPage, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM sign_ins WHERE tenant_id = $1 \
         AND ($2::BIGINT IS NULL OR time_us >= $2) AND ($3::BIGINT IS NULL OR time_us <= $3) \
         AND ($4::TEXT IS NULL OR principal_id = $4) AND ($5::TEXT IS NULL OR outcome = $5) \
         AND ($6::BIGINT IS NULL OR seq < $6) ORDER BY seq DESC LIMIT $7",
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
