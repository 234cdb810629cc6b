//! Reading the whole directory in one transaction, to build the in-memory snapshot.

use std::collections::HashMap;

use sqlx::{Row, Sqlite, Transaction};

use super::{corrupt, db_error};
use crate::domain::application::{AppRole, Application, DisplayName, IdentifierUri, RoleValue};
use crate::domain::federated_credential::{
    Audience, CredentialName, CredentialOwner, FederatedCredential, Issuer, IssuerPolicy, Subject,
};
use crate::domain::ids::{ClientId, ObjectId};
use crate::domain::ports::{Directory, StoreError};
use crate::domain::resource::{ComputeResource, IdentityHeader, ManagedIdentity, ResourceId, parse_network};
use crate::domain::role_assignment::{Principal, RoleAssignment};
use crate::domain::tenant::{Tenant, TenantId, TenantName};

type Tx = Transaction<'static, Sqlite>;

fn object_id(row: &sqlx::sqlite::SqliteRow, column: &str) -> Result<ObjectId, StoreError> {
    ObjectId::parse(row.get(column)).map_err(corrupt)
}

fn tenant_id(row: &sqlx::sqlite::SqliteRow) -> Result<TenantId, StoreError> {
    TenantId::parse(row.get("tenant_id")).map_err(corrupt)
}

pub(super) async fn load(tx: &mut Tx) -> Result<Directory, StoreError> {
    let mut directory = Directory::default();
    for row in sqlx::query("SELECT id, name, display_name FROM tenants ORDER BY name")
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
    {
        directory.tenants.push(Tenant {
            id: TenantId::parse(row.get("id")).map_err(corrupt)?,
            name: TenantName::parse(row.get("name")).map_err(corrupt)?,
            display_name: row.get("display_name"),
        });
    }
    for row in sqlx::query("SELECT id, tenant_id FROM subscriptions").fetch_all(&mut **tx).await.map_err(db_error)? {
        directory.subscriptions.push((uuid::Uuid::try_parse(row.get("id")).map_err(corrupt)?, tenant_id(&row)?));
    }
    directory.applications = load_applications(tx).await?;
    directory.identities = load_identities(tx).await?;
    directory.resources = load_resources(tx, &directory.identities).await?;
    directory.credentials = load_credentials(tx).await?;
    directory.role_assignments = load_role_assignments(tx).await?;
    for row in sqlx::query("SELECT application_id, secret_sha256 FROM client_secrets")
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
    {
        directory.client_secrets.push((object_id(&row, "application_id")?, row.get("secret_sha256")));
    }
    Ok(directory)
}

async fn load_applications(tx: &mut Tx) -> Result<Vec<Application>, StoreError> {
    let mut uris: HashMap<String, Vec<IdentifierUri>> = HashMap::new();
    for row in sqlx::query("SELECT application_id, uri FROM identifier_uris ORDER BY uri")
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
    {
        let uri = IdentifierUri::parse(row.get("uri")).map_err(corrupt)?;
        uris.entry(row.get("application_id")).or_default().push(uri);
    }
    let mut roles: HashMap<String, Vec<AppRole>> = HashMap::new();
    for row in sqlx::query("SELECT id, application_id, value, display_name, description FROM app_roles ORDER BY value")
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
    {
        roles.entry(row.get("application_id")).or_default().push(AppRole {
            id: object_id(&row, "id")?,
            value: RoleValue::parse(row.get("value")).map_err(corrupt)?,
            display_name: row.get("display_name"),
            description: row.get("description"),
        });
    }
    let rows =
        sqlx::query("SELECT object_id, app_id, sp_id, tenant_id, display_name FROM applications ORDER BY created_at")
            .fetch_all(&mut **tx)
            .await
            .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let key: String = row.get("object_id");
            Ok(Application {
                object_id: object_id(row, "object_id")?,
                app_id: ClientId::parse(row.get("app_id")).map_err(corrupt)?,
                service_principal_id: object_id(row, "sp_id")?,
                tenant_id: tenant_id(row)?,
                display_name: DisplayName::parse(row.get("display_name")).map_err(corrupt)?,
                identifier_uris: uris.remove(&key).unwrap_or_default(),
                app_roles: roles.remove(&key).unwrap_or_default(),
            })
        })
        .collect()
}

async fn load_identities(tx: &mut Tx) -> Result<Vec<ManagedIdentity>, StoreError> {
    let rows = sqlx::query(
        "SELECT principal_id, client_id, tenant_id, resource_id FROM managed_identities ORDER BY created_at",
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok(ManagedIdentity {
                principal_id: object_id(row, "principal_id")?,
                client_id: ClientId::parse(row.get("client_id")).map_err(corrupt)?,
                tenant_id: tenant_id(row)?,
                resource_id: ResourceId::parse(row.get("resource_id")).map_err(corrupt)?,
            })
        })
        .collect()
}

async fn load_resources(tx: &mut Tx, identities: &[ManagedIdentity]) -> Result<Vec<ComputeResource>, StoreError> {
    let by_principal: HashMap<ObjectId, &ManagedIdentity> = identities.iter().map(|i| (i.principal_id, i)).collect();
    let mut assigned: HashMap<String, Vec<ResourceId>> = HashMap::new();
    for row in sqlx::query("SELECT resource_key, principal_id FROM identity_assignments")
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
    {
        let identity =
            by_principal.get(&object_id(&row, "principal_id")?).ok_or_else(|| corrupt("dangling assignment"))?;
        assigned.entry(row.get("resource_key")).or_default().push(identity.resource_id.clone());
    }
    let mut networks: HashMap<String, Vec<ipnet::IpNet>> = HashMap::new();
    for row in sqlx::query("SELECT network, resource_key FROM resource_addresses ORDER BY network")
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
    {
        let network = parse_network(row.get("network")).map_err(corrupt)?;
        networks.entry(row.get("resource_key")).or_default().push(network);
    }
    let rows = sqlx::query(
        "SELECT resource_key, resource_id, tenant_id, identity_header FROM compute_resources ORDER BY created_at",
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let id = ResourceId::parse(row.get("resource_id")).map_err(corrupt)?;
            let system_identity = identities.iter().find(|i| i.resource_id == id).cloned();
            let key: String = row.get("resource_key");
            let mut user_identities = assigned.remove(&key).unwrap_or_default();
            user_identities.sort_by(|a, b| a.key().cmp(b.key()));
            let mut addresses = networks.remove(&key).unwrap_or_default();
            addresses.sort();
            let identity_header = row.get::<Option<String>, _>("identity_header").map(IdentityHeader::new);
            Ok(ComputeResource {
                id,
                tenant_id: tenant_id(row)?,
                system_identity,
                user_identities,
                addresses,
                identity_header,
            })
        })
        .collect()
}

async fn load_credentials(tx: &mut Tx) -> Result<Vec<FederatedCredential>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, application_id, identity_id, name, issuer, subject, audience, description \
         FROM federated_credentials ORDER BY created_at, name",
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    // Stored values were validated when written; loopback http issuers may have been allowed then.
    let lenient = IssuerPolicy { allow_http_loopback: true };
    rows.iter()
        .map(|row| {
            let application: Option<String> = row.get("application_id");
            let owner = match application {
                Some(id) => CredentialOwner::Application(ObjectId::parse(&id).map_err(corrupt)?),
                None => CredentialOwner::Identity(object_id(row, "identity_id")?),
            };
            Ok(FederatedCredential {
                id: object_id(row, "id")?,
                owner,
                name: CredentialName::parse(row.get("name")).map_err(corrupt)?,
                issuer: Issuer::parse(row.get("issuer"), lenient).map_err(corrupt)?,
                subject: Subject::parse(row.get("subject")).map_err(corrupt)?,
                audience: Audience::parse(row.get("audience")).map_err(corrupt)?,
                description: row.get("description"),
            })
        })
        .collect()
}

async fn load_role_assignments(tx: &mut Tx) -> Result<Vec<RoleAssignment>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, tenant_id, principal_app_sp, principal_identity, resource_sp_id, app_role_id \
         FROM role_assignments ORDER BY created_at",
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let app_sp: Option<String> = row.get("principal_app_sp");
            let principal = match app_sp {
                Some(id) => Principal::Application(ObjectId::parse(&id).map_err(corrupt)?),
                None => Principal::Identity(object_id(row, "principal_identity")?),
            };
            Ok(RoleAssignment {
                id: object_id(row, "id")?,
                tenant_id: tenant_id(row)?,
                principal,
                resource_id: object_id(row, "resource_sp_id")?,
                app_role_id: object_id(row, "app_role_id")?,
            })
        })
        .collect()
}
