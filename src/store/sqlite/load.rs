//! Reading the directory for the in-memory snapshot: everything in one read transaction, or the
//! entities named by the change log after a cursor, each read whole as it is now.
//!
//! Rows are streamed, not collected: a registry of a million credentials is never held twice.

use std::collections::{BTreeSet, HashMap};

use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::{corrupt, db_error};
use crate::domain::application::{AppRole, Application, DisplayName, IdentifierUri, RoleValue};
use crate::domain::directory::Change;
use crate::domain::federated_credential::{
    Audience, CredentialName, CredentialOwner, FederatedCredential, Issuer, IssuerPolicy, Subject,
};
use crate::domain::ids::{ClientId, ObjectId};
use crate::domain::ports::{ChangeCursor, ChangeSet, Directory, StoreError};
use crate::domain::resource::{ComputeResource, IdentityHeader, ManagedIdentity, ResourceId, parse_network};
use crate::domain::role_assignment::{Principal, RoleAssignment};
use crate::domain::tenant::{Tenant, TenantId, TenantName};

type Tx = Transaction<'static, Sqlite>;

/// Beyond this many changed entities, reloading everything is cheaper than reading them one by one.
const MAX_CHANGED_ENTITIES: usize = 5_000;

/// Which rows a loader reads: all, or those of one entity (by the key its change names).
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    All,
    One(&'a str),
}

/// Runs `sql`, whose `{where}` is replaced by a filter on `column` for [`Scope::One`], and
/// converts each row as it streams in.
async fn each<T>(
    tx: &mut Tx,
    sql: &str,
    column: &str,
    scope: Scope<'_>,
    mut convert: impl FnMut(&SqliteRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let condition = match scope {
        Scope::All => "1".to_owned(),
        Scope::One(_) => format!("{column} = ?1"),
    };
    let sql = sql.replace("{where}", &condition);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Scope::One(key) = scope {
        query = query.bind(key);
    }
    let mut rows = query.fetch(&mut **tx);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await.map_err(db_error)? {
        out.push(convert(&row)?);
    }
    Ok(out)
}

fn object_id(row: &SqliteRow, column: &str) -> Result<ObjectId, StoreError> {
    ObjectId::parse(row.get(column)).map_err(corrupt)
}

fn tenant_id(row: &SqliteRow) -> Result<TenantId, StoreError> {
    TenantId::parse(row.get("tenant_id")).map_err(corrupt)
}

async fn cursor(tx: &mut Tx) -> Result<ChangeCursor, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'directory_changes'")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

pub(super) async fn load(tx: &mut Tx) -> Result<(Directory, ChangeCursor), StoreError> {
    let at = cursor(tx).await?;
    let directory = Directory {
        tenants: load_tenants(tx, Scope::All).await?,
        subscriptions: load_subscriptions(tx, Scope::All).await?,
        applications: load_applications(tx, Scope::All).await?,
        identities: load_identities(tx, Scope::All).await?,
        resources: load_resources(tx, Scope::All).await?,
        credentials: load_credentials(tx, Scope::All).await?,
        role_assignments: load_role_assignments(tx, Scope::All).await?,
        client_secrets: load_secrets(tx, Scope::All).await?,
    };
    Ok((directory, at))
}

/// The entities changed after `after`, as they are now; `None` when the log no longer reaches back
/// to `after` or names too many entities.
pub(super) async fn changes(tx: &mut Tx, after: ChangeCursor) -> Result<Option<ChangeSet>, StoreError> {
    let pruned: i64 = sqlx::query_scalar("SELECT through FROM directory_changes_pruned WHERE id = 1")
        .fetch_one(&mut **tx)
        .await
        .map_err(db_error)?;
    let after_seq = i64::try_from(after).map_err(corrupt)?;
    if after_seq < pruned {
        return Ok(None);
    }
    let rows = sqlx::query("SELECT seq, kind, key FROM directory_changes WHERE seq > ?1 ORDER BY seq")
        .bind(after_seq)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?;
    let mut cursor = after;
    let mut named: BTreeSet<(String, String)> = BTreeSet::new();
    for row in &rows {
        cursor = cursor.max(u64::try_from(row.get::<i64, _>("seq")).map_err(corrupt)?);
        named.insert((row.get("kind"), row.get("key")));
        if named.len() > MAX_CHANGED_ENTITIES {
            return Ok(None);
        }
    }
    let mut changes = Vec::with_capacity(named.len());
    for (kind, key) in &named {
        changes.push(current_state(tx, kind, key).await?);
    }
    Ok(Some(ChangeSet { cursor, changes }))
}

async fn current_state(tx: &mut Tx, kind: &str, key: &str) -> Result<Change, StoreError> {
    let one = Scope::One(key);
    Ok(match kind {
        "tenant" => Change::Tenant(TenantId::parse(key).map_err(corrupt)?, load_tenants(tx, one).await?.pop()),
        "subscription" => {
            let id = uuid::Uuid::try_parse(key).map_err(corrupt)?;
            Change::Subscription(id, load_subscriptions(tx, one).await?.pop().map(|(_, tenant)| tenant))
        }
        "application" => {
            let id = ObjectId::parse(key).map_err(corrupt)?;
            let application = load_applications(tx, one).await?.pop();
            let secrets = load_secrets(tx, one).await?.into_iter().map(|(_, hash)| hash).collect();
            Change::Application(id, application.map(|app| Box::new((app, secrets))))
        }
        "credentials" => Change::Credentials(ObjectId::parse(key).map_err(corrupt)?, load_credentials(tx, one).await?),
        "identity" => Change::Identity(ObjectId::parse(key).map_err(corrupt)?, load_identities(tx, one).await?.pop()),
        "resource" => Change::Resource(key.to_owned(), load_resources(tx, one).await?.pop().map(Box::new)),
        "role_assignment" => {
            Change::RoleAssignment(ObjectId::parse(key).map_err(corrupt)?, load_role_assignments(tx, one).await?.pop())
        }
        other => return Err(corrupt(format!("unknown change kind '{other}'"))),
    })
}

async fn load_tenants(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<Tenant>, StoreError> {
    each(tx, "SELECT id, name, display_name FROM tenants WHERE {where} ORDER BY name", "id", scope, |row| {
        Ok(Tenant {
            id: TenantId::parse(row.get("id")).map_err(corrupt)?,
            name: TenantName::parse(row.get("name")).map_err(corrupt)?,
            display_name: row.get("display_name"),
        })
    })
    .await
}

async fn load_subscriptions(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<(uuid::Uuid, TenantId)>, StoreError> {
    each(tx, "SELECT id, tenant_id FROM subscriptions WHERE {where}", "id", scope, |row| {
        Ok((uuid::Uuid::try_parse(row.get("id")).map_err(corrupt)?, tenant_id(row)?))
    })
    .await
}

async fn load_secrets(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<(ObjectId, String)>, StoreError> {
    let sql = "SELECT application_id, secret_sha256 FROM client_secrets WHERE {where}";
    each(tx, sql, "application_id", scope, |row| Ok((object_id(row, "application_id")?, row.get("secret_sha256"))))
        .await
}

async fn load_applications(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<Application>, StoreError> {
    let mut uris: HashMap<ObjectId, Vec<IdentifierUri>> = HashMap::new();
    let sql = "SELECT application_id, uri FROM identifier_uris WHERE {where} ORDER BY uri";
    for (application, uri) in each(tx, sql, "application_id", scope, |row| {
        Ok((object_id(row, "application_id")?, IdentifierUri::parse(row.get("uri")).map_err(corrupt)?))
    })
    .await?
    {
        uris.entry(application).or_default().push(uri);
    }
    let mut roles: HashMap<ObjectId, Vec<AppRole>> = HashMap::new();
    let sql = "SELECT id, application_id, value, display_name, description FROM app_roles WHERE {where} ORDER BY value";
    for (application, role) in each(tx, sql, "application_id", scope, |row| {
        let role = AppRole {
            id: object_id(row, "id")?,
            value: RoleValue::parse(row.get("value")).map_err(corrupt)?,
            display_name: row.get("display_name"),
            description: row.get("description"),
        };
        Ok((object_id(row, "application_id")?, role))
    })
    .await?
    {
        roles.entry(application).or_default().push(role);
    }
    let sql = "SELECT object_id, app_id, sp_id, tenant_id, display_name, rate_limit FROM applications WHERE {where} \
               ORDER BY created_at";
    each(tx, sql, "object_id", scope, |row| {
        let object_id = object_id(row, "object_id")?;
        Ok(Application {
            object_id,
            app_id: ClientId::parse(row.get("app_id")).map_err(corrupt)?,
            service_principal_id: self::object_id(row, "sp_id")?,
            tenant_id: tenant_id(row)?,
            display_name: DisplayName::parse(row.get("display_name")).map_err(corrupt)?,
            identifier_uris: uris.remove(&object_id).unwrap_or_default(),
            app_roles: roles.remove(&object_id).unwrap_or_default(),
            rate_limit: row
                .get::<Option<String>, _>("rate_limit")
                .map(|r| crate::domain::rate_limit::Rate::parse(&r))
                .transpose()
                .map_err(corrupt)?,
        })
    })
    .await
}

fn identity(row: &SqliteRow) -> Result<ManagedIdentity, StoreError> {
    Ok(ManagedIdentity {
        principal_id: object_id(row, "principal_id")?,
        client_id: ClientId::parse(row.get("client_id")).map_err(corrupt)?,
        tenant_id: tenant_id(row)?,
        resource_id: ResourceId::parse(row.get("resource_id")).map_err(corrupt)?,
    })
}

async fn load_identities(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<ManagedIdentity>, StoreError> {
    let sql = "SELECT principal_id, client_id, tenant_id, resource_id FROM managed_identities WHERE {where} \
               ORDER BY created_at";
    each(tx, sql, "principal_id", scope, identity).await
}

async fn load_resources(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<ComputeResource>, StoreError> {
    let mut system: HashMap<String, ManagedIdentity> = HashMap::new();
    let sql = "SELECT principal_id, client_id, tenant_id, resource_id, system_resource_key FROM managed_identities \
               WHERE system_resource_key IS NOT NULL AND {where}";
    for (key, identity) in
        each(tx, sql, "system_resource_key", scope, |row| Ok((row.get("system_resource_key"), identity(row)?))).await?
    {
        system.insert(key, identity);
    }
    let mut assigned: HashMap<String, Vec<ResourceId>> = HashMap::new();
    let sql = "SELECT a.resource_key AS resource_key, m.resource_id AS resource_id FROM identity_assignments a \
               JOIN managed_identities m ON m.principal_id = a.principal_id WHERE {where}";
    for (key, id) in each(tx, sql, "a.resource_key", scope, |row| {
        Ok((row.get::<String, _>("resource_key"), ResourceId::parse(row.get("resource_id")).map_err(corrupt)?))
    })
    .await?
    {
        assigned.entry(key).or_default().push(id);
    }
    let mut networks: HashMap<String, Vec<ipnet::IpNet>> = HashMap::new();
    let sql = "SELECT network, resource_key FROM resource_addresses WHERE {where}";
    for (key, network) in each(tx, sql, "resource_key", scope, |row| {
        Ok((row.get::<String, _>("resource_key"), parse_network(row.get("network")).map_err(corrupt)?))
    })
    .await?
    {
        networks.entry(key).or_default().push(network);
    }
    let sql = "SELECT resource_key, resource_id, tenant_id, identity_header FROM compute_resources WHERE {where} \
               ORDER BY created_at";
    each(tx, sql, "resource_key", scope, |row| {
        let key: String = row.get("resource_key");
        let mut user_identities = assigned.remove(&key).unwrap_or_default();
        user_identities.sort_by(|a, b| a.key().cmp(b.key()));
        let mut addresses = networks.remove(&key).unwrap_or_default();
        addresses.sort();
        Ok(ComputeResource {
            id: ResourceId::parse(row.get("resource_id")).map_err(corrupt)?,
            tenant_id: tenant_id(row)?,
            system_identity: system.remove(&key),
            user_identities,
            addresses,
            identity_header: row.get::<Option<String>, _>("identity_header").map(IdentityHeader::new),
        })
    })
    .await
}

async fn load_credentials(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<FederatedCredential>, StoreError> {
    // Stored values were validated when written; loopback http issuers may have been allowed then.
    // In insertion (rowid) order: the table's own order, so a full load sorts nothing.
    let lenient = IssuerPolicy { allow_http_loopback: true };
    let sql = "SELECT id, application_id, identity_id, name, issuer, subject, audience, description \
               FROM federated_credentials WHERE {where} ORDER BY rowid";
    each(tx, sql, "owner_id", scope, |row| {
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
    .await
}

async fn load_role_assignments(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<RoleAssignment>, StoreError> {
    let sql = "SELECT id, tenant_id, principal_app_sp, principal_identity, resource_sp_id, app_role_id \
               FROM role_assignments WHERE {where} ORDER BY created_at";
    each(tx, sql, "id", scope, |row| {
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
    .await
}
