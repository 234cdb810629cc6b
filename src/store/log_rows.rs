//! Rows of the activity and sign-in logs, read the same way from every backend: times as
//! microseconds since the epoch, a sequence number as the paging cursor, newest first.

use std::time::Duration;

use time::OffsetDateTime;

use super::load::{Cells, corrupt};
use crate::domain::activity::{ActivityEntry, ActivityPage, Actor, Outcome};
use crate::domain::ids::ObjectId;
use crate::domain::ports::StoreError;
use crate::domain::sign_in::{MsiType, SignIn, SignInKind, SignInPage, SignInPrincipal};
use crate::domain::tenant::TenantId;

/// Cells beyond text that log rows hold.
pub(crate) trait LogCells: Cells {
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
}

pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn time(row: &impl LogCells) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.int("time_us")?) * 1000).map_err(corrupt)
}

/// Rows asked for per page (one more than shown, to know whether another page follows).
pub(crate) fn page_rows(limit: usize) -> i64 {
    i64::try_from(limit.clamp(1, 1000) + 1).unwrap_or(1001)
}

/// Converts up to `limit` rows; the cursor of the next page when more rows came back.
fn page<R: LogCells, T>(
    rows: &[R],
    limit: usize,
    convert: impl Fn(&R) -> Result<T, StoreError>,
) -> Result<(Vec<T>, Option<i64>), StoreError> {
    let limit = limit.clamp(1, 1000);
    let mut entries = Vec::with_capacity(limit);
    let mut last = None;
    for row in rows.iter().take(limit) {
        last = Some(row.int("seq")?);
        entries.push(convert(row)?);
    }
    Ok((entries, if rows.len() > limit { last } else { None }))
}

const TARGET_TYPES: [&str; 8] = [
    "Application",
    "FederatedIdentityCredential",
    "ManagedIdentity",
    "ComputeResource",
    "RoleAssignment",
    "Tenant",
    "FaultRule",
    "SigningKey",
];

pub(crate) fn activity_page<R: LogCells>(rows: &[R], limit: usize) -> Result<ActivityPage, StoreError> {
    let (entries, next) = page(rows, limit, |row| {
        let target_type = row.text("target_type")?;
        Ok(ActivityEntry {
            id: uuid::Uuid::try_parse(row.text("id")?).map_err(corrupt)?,
            time: time(row)?,
            tenant_id: TenantId::parse(row.text("tenant_id")?).map_err(corrupt)?,
            actor: Actor { id: row.text("actor_id")?.to_owned(), display_name: row.text("actor_name")?.to_owned() },
            operation: row.text("operation")?.to_owned(),
            target_type: TARGET_TYPES.into_iter().find(|t| *t == target_type).ok_or_else(|| corrupt(target_type))?,
            target: row.text("target")?.to_owned(),
            outcome: Outcome::parse(row.text("outcome")?).ok_or_else(|| corrupt("outcome"))?,
            reason: row.text("reason")?.to_owned(),
        })
    })?;
    Ok(ActivityPage { entries, next })
}

pub(crate) fn sign_in_page<R: LogCells>(rows: &[R], limit: usize) -> Result<SignInPage, StoreError> {
    let (entries, next) = page(rows, limit, |row| {
        Ok(SignIn {
            id: uuid::Uuid::try_parse(row.text("id")?).map_err(corrupt)?,
            time: time(row)?,
            tenant_id: TenantId::parse(row.text("tenant_id")?).map_err(corrupt)?,
            kind: SignInKind::parse(row.text("kind")?).ok_or_else(|| corrupt("kind"))?,
            principal: SignInPrincipal {
                principal_id: row.opt_text("principal_id")?.map(ObjectId::parse).transpose().map_err(corrupt)?,
                client_id: row.opt_text("client_id")?.map(str::to_owned),
                name: row.text("principal_name")?.to_owned(),
                msi_type: MsiType::parse(row.text("msi_type")?),
            },
            compute_resource: row.opt_text("compute_resource")?.map(str::to_owned),
            credential_id: row.opt_text("credential_id")?.map(ObjectId::parse).transpose().map_err(corrupt)?,
            resource: row.text("resource")?.to_owned(),
            caller_address: row.text("caller_address")?.parse().ok(),
            outcome: Outcome::parse(row.text("outcome")?).ok_or_else(|| corrupt("outcome"))?,
            status_code: u32::try_from(row.int("status_code")?).map_err(corrupt)?,
            error_code: row.text("error_code")?.to_owned(),
            reason: row.text("reason")?.to_owned(),
            latency: Duration::from_micros(u64::try_from(row.int("latency_us")?).unwrap_or(0)),
            cached: row.flag("cached")?,
            count: u32::try_from(row.int("count")?).unwrap_or(u32::MAX),
        })
    })?;
    Ok(SignInPage { entries, next })
}
