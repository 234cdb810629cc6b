//! Writes to the directory tables on PostgreSQL: applications, credentials, identities, compute
//! resources, role assignments. Each runs inside a write transaction that holds the registry's
//! write lock (see `mod.rs`); the schema's constraints and triggers judge what it may do.

use sqlx::{Postgres, Transaction};

use super::{db_error, expect_rows};
use crate::domain::application::Application;
use crate::domain::federated_credential::{CredentialOwner, FederatedCredential};
use crate::domain::ports::{Conflict, StoreError};
use crate::domain::resource::{ComputeResource, ManagedIdentity, ResourceId, ResourceKind};
use crate::domain::role_assignment::{Principal, RoleAssignment};

pub(super) type Tx = Transaction<'static, Postgres>;

pub(super) async fn insert_application(tx: &mut Tx, app: &Application) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO applications (object_id, app_id, sp_id, tenant_id, display_name, rate_limit) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(app.object_id.to_string())
    .bind(app.app_id.to_string())
    .bind(app.service_principal_id.to_string())
    .bind(app.tenant_id.to_string())
    .bind(app.display_name.as_str())
    .bind(app.rate_limit.map(|r| r.to_string()))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    for uri in &app.identifier_uris {
        sqlx::query("INSERT INTO identifier_uris (tenant_id, uri_key, uri, application_id) VALUES ($1, $2, $3, $4)")
            .bind(app.tenant_id.to_string())
            .bind(uri.key())
            .bind(uri.as_str())
            .bind(app.object_id.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
    }
    for role in &app.app_roles {
        sqlx::query(
            "INSERT INTO app_roles (id, application_id, value, display_name, description) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(role.id.to_string())
        .bind(app.object_id.to_string())
        .bind(role.value.as_str())
        .bind(&role.display_name)
        .bind(&role.description)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

pub(super) async fn insert_credential(tx: &mut Tx, credential: &FederatedCredential) -> Result<(), StoreError> {
    let (application, identity) = match credential.owner {
        CredentialOwner::Application(id) => (Some(id.to_string()), None),
        CredentialOwner::Identity(id) => (None, Some(id.to_string())),
    };
    // One statement: the limit trigger (which locks the owner's row) and the unique constraints
    // judge it atomically.
    sqlx::query(
        "INSERT INTO federated_credentials \
         (id, application_id, identity_id, owner_id, name, issuer, subject, audience, description, \
         claims_expression_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(credential.id.to_string())
    .bind(application)
    .bind(identity)
    .bind(credential.owner.id().to_string())
    .bind(credential.name.as_str())
    .bind(credential.issuer.as_str())
    .bind(credential.matching.stored().0)
    .bind(credential.audience.as_str())
    .bind(credential.description.as_deref())
    .bind(credential.matching.stored().1.map(|v| i32::try_from(v).unwrap_or(i32::MAX)))
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(db_error)
}

pub(super) async fn update_credential(tx: &mut Tx, credential: &FederatedCredential) -> Result<(), StoreError> {
    let result = sqlx::query(
        "UPDATE federated_credentials SET issuer = $1, subject = $2, audience = $3, description = $4, \
         claims_expression_version = $5 WHERE id = $6 AND owner_id = $7 AND name = $8",
    )
    .bind(credential.issuer.as_str())
    .bind(credential.matching.stored().0)
    .bind(credential.audience.as_str())
    .bind(credential.description.as_deref())
    .bind(credential.matching.stored().1.map(|v| i32::try_from(v).unwrap_or(i32::MAX)))
    .bind(credential.id.to_string())
    .bind(credential.owner.id().to_string())
    .bind(credential.name.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    expect_rows(result.rows_affected(), format!("federated identity credential {}", credential.id))
}

pub(super) async fn insert_identity(
    tx: &mut Tx,
    identity: &ManagedIdentity,
    system_resource: Option<&ResourceId>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO managed_identities \
         (principal_id, client_id, tenant_id, resource_id, resource_key, system_resource_key) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(identity.principal_id.to_string())
    .bind(identity.client_id.to_string())
    .bind(identity.tenant_id.to_string())
    .bind(identity.resource_id.as_str())
    .bind(identity.resource_id.key())
    .bind(system_resource.map(ResourceId::key))
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(db_error)
}

fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::VirtualMachine => "VirtualMachine",
        ResourceKind::WebApp => "WebApp",
        ResourceKind::WebAppSlot => "WebAppSlot",
        ResourceKind::UserAssignedIdentity => "UserAssignedIdentity",
    }
}

pub(super) async fn put_resource(tx: &mut Tx, resource: &ComputeResource) -> Result<(), StoreError> {
    let key = resource.id.key();
    let owner: Option<String> =
        sqlx::query_scalar("SELECT tenant_id FROM compute_resources WHERE resource_key = $1 FOR UPDATE")
            .bind(key)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
    match owner {
        Some(owner) if owner != resource.tenant_id.to_string() => {
            return Err(StoreError::Conflict(Conflict::Exists(format!("{} belongs to another tenant", resource.id))));
        }
        Some(_) => {}
        None => {
            sqlx::query(
                "INSERT INTO compute_resources (resource_key, resource_id, kind, tenant_id, subscription_id) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(key)
            .bind(resource.id.as_str())
            .bind(kind_name(resource.id.kind()))
            .bind(resource.tenant_id.to_string())
            .bind(resource.id.subscription().to_string())
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        }
    }
    put_system_identity(tx, resource).await?;
    sqlx::query("UPDATE compute_resources SET identity_header = $1 WHERE resource_key = $2")
        .bind(resource.identity_header.as_ref().map(|h| h.expose().to_owned()))
        .bind(key)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    put_addresses(tx, resource).await?;
    put_user_identities(tx, resource).await
}

async fn put_system_identity(tx: &mut Tx, resource: &ComputeResource) -> Result<(), StoreError> {
    let key = resource.id.key();
    let current: Option<String> =
        sqlx::query_scalar("SELECT principal_id FROM managed_identities WHERE system_resource_key = $1")
            .bind(key)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
    let wanted = resource.system_identity.as_ref().map(|mi| mi.principal_id.to_string());
    if current != wanted {
        sqlx::query("DELETE FROM managed_identities WHERE system_resource_key = $1")
            .bind(key)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        if let Some(identity) = &resource.system_identity {
            insert_identity(tx, identity, Some(&resource.id)).await?;
        }
    }
    Ok(())
}

async fn put_addresses(tx: &mut Tx, resource: &ComputeResource) -> Result<(), StoreError> {
    let key = resource.id.key();
    sqlx::query("DELETE FROM resource_addresses WHERE resource_key = $1")
        .bind(key)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    for network in &resource.addresses {
        sqlx::query("INSERT INTO resource_addresses (network, resource_key) VALUES ($1, $2)")
            .bind(network.to_string())
            .bind(key)
            .execute(&mut **tx)
            .await
            .map_err(|e| match db_error(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(Conflict::Exists(format!("network {network} is bound to another resource")))
                }
                other => other,
            })?;
    }
    Ok(())
}

async fn put_user_identities(tx: &mut Tx, resource: &ComputeResource) -> Result<(), StoreError> {
    let key = resource.id.key();
    sqlx::query("DELETE FROM identity_assignments WHERE resource_key = $1")
        .bind(key)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    for user_identity in &resource.user_identities {
        let result = sqlx::query(
            "INSERT INTO identity_assignments (resource_key, principal_id) \
             SELECT $1, principal_id FROM managed_identities \
             WHERE resource_key = $2 AND system_resource_key IS NULL AND tenant_id = $3",
        )
        .bind(key)
        .bind(user_identity.key())
        .bind(resource.tenant_id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        expect_rows(result.rows_affected(), format!("user-assigned identity {user_identity}"))?;
    }
    Ok(())
}

pub(super) async fn delete_resource(tx: &mut Tx, id: &ResourceId) -> Result<(), StoreError> {
    // A web app takes its slots with it; cascades remove their identities and assignments.
    let result = sqlx::query(
        "DELETE FROM compute_resources WHERE resource_key = $1 OR starts_with(resource_key, $1 || '/slots/')",
    )
    .bind(id.key())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    expect_rows(result.rows_affected(), id.to_string())
}

pub(super) async fn insert_role_assignment(tx: &mut Tx, assignment: &RoleAssignment) -> Result<(), StoreError> {
    let (app_sp, identity) = match assignment.principal {
        Principal::Application(id) => (Some(id.to_string()), None),
        Principal::Identity(id) => (None, Some(id.to_string())),
    };
    sqlx::query(
        "INSERT INTO role_assignments \
         (id, tenant_id, principal_id, principal_app_sp, principal_identity, resource_sp_id, app_role_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(assignment.id.to_string())
    .bind(assignment.tenant_id.to_string())
    .bind(assignment.principal.id().to_string())
    .bind(app_sp)
    .bind(identity)
    .bind(assignment.resource_id.to_string())
    .bind(assignment.app_role_id.to_string())
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(|e| match db_error(e) {
        StoreError::NotFound(m) if m.contains("app role") => {
            StoreError::NotFound(format!("app role {} of resource {}", assignment.app_role_id, assignment.resource_id))
        }
        other => other,
    })
}
