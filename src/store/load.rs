//! Reading the directory for the in-memory snapshot, for every backend: everything in one read
//! transaction, or the entities named by the change log after a cursor, each read whole as it is
//! now. The SQL is shared; a backend supplies only a [`Fetch`] (how to run it and read cells).
//!
//! Rows are streamed, not collected: a registry of a million credentials is never held twice.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use crate::domain::application::{AppRole, Application, DisplayName, IdentifierUri, RoleValue};
use crate::domain::directory::Change;
use crate::domain::federated_credential::{
    Audience, CredentialName, CredentialOwner, FederatedCredential, Issuer, IssuerPolicy, SubjectMatch,
};
use crate::domain::ids::{ClientId, ObjectId};
use crate::domain::ports::{ChangeCursor, ChangeSet, Directory, StoreError};
use crate::domain::resource::{ComputeResource, IdentityHeader, ManagedIdentity, ResourceId, parse_network};
use crate::domain::role_assignment::{Principal, RoleAssignment};
use crate::domain::tenant::{Tenant, TenantId, TenantName};

/// Beyond this many changed entities, reloading everything is cheaper than reading them one by one.
const MAX_CHANGED_ENTITIES: usize = 5_000;

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Which rows a loader reads: all, or those of one entity (by the key its change names).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    All,
    One(&'a str),
}

/// Text cells of a row, borrowed.
pub(crate) trait Cells {
    fn text(&self, column: &str) -> Result<&str, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<&str>, StoreError>;
}

/// What a backend provides to the shared loader, inside one read transaction.
pub(crate) trait Fetch: Send {
    type Row: Cells;

    /// Runs `sql`, whose `{where}` becomes a filter on `column` for [`Scope::One`] (or a true
    /// condition) and whose `{insertion}` names the column that orders rows as they were inserted;
    /// converts each row as it streams in.
    fn each<T: Send>(
        &mut self,
        sql: &str,
        column: &str,
        scope: Scope<'_>,
        convert: impl FnMut(&Self::Row) -> Result<T, StoreError> + Send,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send;

    /// The newest change the transaction sees (or where pruning left the log, if later).
    fn cursor(&mut self) -> impl Future<Output = Result<ChangeCursor, StoreError>> + Send;

    /// Changes at or before this have been pruned.
    fn pruned_through(&mut self) -> impl Future<Output = Result<ChangeCursor, StoreError>> + Send;

    /// `(seq, kind, key)` of every change after `after`, in order.
    fn changes_after(
        &mut self,
        after: ChangeCursor,
    ) -> impl Future<Output = Result<Vec<(ChangeCursor, String, String)>, StoreError>> + Send;
}

fn object_id(row: &impl Cells, column: &str) -> Result<ObjectId, StoreError> {
    ObjectId::parse(row.text(column)?).map_err(corrupt)
}

fn tenant_id(row: &impl Cells) -> Result<TenantId, StoreError> {
    TenantId::parse(row.text("tenant_id")?).map_err(corrupt)
}

pub(crate) async fn load(tx: &mut impl Fetch) -> Result<(Directory, ChangeCursor), StoreError> {
    let at = tx.cursor().await?;
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
pub(crate) async fn changes(tx: &mut impl Fetch, after: ChangeCursor) -> Result<Option<ChangeSet>, StoreError> {
    if after < tx.pruned_through().await? {
        return Ok(None);
    }
    let mut cursor = after;
    let mut named: BTreeSet<(String, String)> = BTreeSet::new();
    for (seq, kind, key) in tx.changes_after(after).await? {
        cursor = cursor.max(seq);
        named.insert((kind, key));
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

async fn current_state(tx: &mut impl Fetch, kind: &str, key: &str) -> Result<Change, StoreError> {
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

async fn load_tenants(tx: &mut impl Fetch, scope: Scope<'_>) -> Result<Vec<Tenant>, StoreError> {
    tx.each("SELECT id, name, display_name FROM tenants WHERE {where} ORDER BY name", "id", scope, |row| {
        Ok(Tenant {
            id: TenantId::parse(row.text("id")?).map_err(corrupt)?,
            name: TenantName::parse(row.text("name")?).map_err(corrupt)?,
            display_name: row.text("display_name")?.to_owned(),
        })
    })
    .await
}

async fn load_subscriptions(tx: &mut impl Fetch, scope: Scope<'_>) -> Result<Vec<(uuid::Uuid, TenantId)>, StoreError> {
    tx.each("SELECT id, tenant_id FROM subscriptions WHERE {where}", "id", scope, |row| {
        Ok((uuid::Uuid::try_parse(row.text("id")?).map_err(corrupt)?, tenant_id(row)?))
    })
    .await
}

async fn load_secrets(tx: &mut impl Fetch, scope: Scope<'_>) -> Result<Vec<(ObjectId, String)>, StoreError> {
    let sql = "SELECT application_id, secret_sha256 FROM client_secrets WHERE {where}";
    tx.each(sql, "application_id", scope, |row| {
        Ok((object_id(row, "application_id")?, row.text("secret_sha256")?.to_owned()))
    })
    .await
}

async fn load_applications(tx: &mut impl Fetch, scope: Scope<'_>) -> Result<Vec<Application>, StoreError> {
    let mut uris: HashMap<ObjectId, Vec<IdentifierUri>> = HashMap::new();
    let sql = "SELECT application_id, uri FROM identifier_uris WHERE {where} ORDER BY uri";
    for (application, uri) in tx
        .each(sql, "application_id", scope, |row| {
            Ok((object_id(row, "application_id")?, IdentifierUri::parse(row.text("uri")?).map_err(corrupt)?))
        })
        .await?
    {
        uris.entry(application).or_default().push(uri);
    }
    let mut roles: HashMap<ObjectId, Vec<AppRole>> = HashMap::new();
    let sql = "SELECT id, application_id, value, display_name, description FROM app_roles WHERE {where} ORDER BY value";
    for (application, role) in tx
        .each(sql, "application_id", scope, |row| {
            let role = AppRole {
                id: object_id(row, "id")?,
                value: RoleValue::parse(row.text("value")?).map_err(corrupt)?,
                display_name: row.text("display_name")?.to_owned(),
                description: row.text("description")?.to_owned(),
            };
            Ok((object_id(row, "application_id")?, role))
        })
        .await?
    {
        roles.entry(application).or_default().push(role);
    }
    let sql = "SELECT object_id, app_id, sp_id, tenant_id, display_name, rate_limit FROM applications WHERE {where} \
               ORDER BY created_at";
    tx.each(sql, "object_id", scope, |row| {
        let object_id = object_id(row, "object_id")?;
        Ok(Application {
            object_id,
            app_id: ClientId::parse(row.text("app_id")?).map_err(corrupt)?,
            service_principal_id: self::object_id(row, "sp_id")?,
            tenant_id: tenant_id(row)?,
            display_name: DisplayName::parse(row.text("display_name")?).map_err(corrupt)?,
            identifier_uris: uris.remove(&object_id).unwrap_or_default(),
            app_roles: roles.remove(&object_id).unwrap_or_default(),
            rate_limit: row
                .opt_text("rate_limit")?
                .map(crate::domain::rate_limit::Rate::parse)
                .transpose()
                .map_err(corrupt)?,
        })
    })
    .await
}

fn identity(row: &impl Cells) -> Result<ManagedIdentity, StoreError> {
    Ok(ManagedIdentity {
        principal_id: object_id(row, "principal_id")?,
        client_id: ClientId::parse(row.text("client_id")?).map_err(corrupt)?,
        tenant_id: tenant_id(row)?,
        resource_id: ResourceId::parse(row.text("resource_id")?).map_err(corrupt)?,
    })
}

async fn load_identities(tx: &mut impl Fetch, scope: Scope<'_>) -> Result<Vec<ManagedIdentity>, StoreError> {
    let sql = "SELECT principal_id, client_id, tenant_id, resource_id FROM managed_identities WHERE {where} \
               ORDER BY created_at";
    tx.each(sql, "principal_id", scope, identity).await
}

async fn load_resources(tx: &mut impl Fetch, scope: Scope<'_>) -> Result<Vec<ComputeResource>, StoreError> {
    let mut system: HashMap<String, ManagedIdentity> = HashMap::new();
    let sql = "SELECT principal_id, client_id, tenant_id, resource_id, system_resource_key FROM managed_identities \
               WHERE system_resource_key IS NOT NULL AND {where}";
    for (key, identity) in tx
        .each(sql, "system_resource_key", scope, |row| {
            Ok((row.text("system_resource_key")?.to_owned(), identity(row)?))
        })
        .await?
    {
        system.insert(key, identity);
    }
    let mut assigned: HashMap<String, Vec<ResourceId>> = HashMap::new();
    let sql = "SELECT a.resource_key AS resource_key, m.resource_id AS resource_id FROM identity_assignments a \
               JOIN managed_identities m ON m.principal_id = a.principal_id WHERE {where}";
    for (key, id) in tx
        .each(sql, "a.resource_key", scope, |row| {
            Ok((row.text("resource_key")?.to_owned(), ResourceId::parse(row.text("resource_id")?).map_err(corrupt)?))
        })
        .await?
    {
        assigned.entry(key).or_default().push(id);
    }
    let mut networks: HashMap<String, Vec<ipnet::IpNet>> = HashMap::new();
    let sql = "SELECT network, resource_key FROM resource_addresses WHERE {where}";
    for (key, network) in tx
        .each(sql, "resource_key", scope, |row| {
            Ok((row.text("resource_key")?.to_owned(), parse_network(row.text("network")?).map_err(corrupt)?))
        })
        .await?
    {
        networks.entry(key).or_default().push(network);
    }
    let sql = "SELECT resource_key, resource_id, tenant_id, identity_header FROM compute_resources WHERE {where} \
               ORDER BY created_at";
    tx.each(sql, "resource_key", scope, |row| {
        let key = row.text("resource_key")?;
        let mut user_identities = assigned.remove(key).unwrap_or_default();
        user_identities.sort_by(|a, b| a.key().cmp(b.key()));
        let mut addresses = networks.remove(key).unwrap_or_default();
        addresses.sort();
        Ok(ComputeResource {
            id: ResourceId::parse(row.text("resource_id")?).map_err(corrupt)?,
            tenant_id: tenant_id(row)?,
            system_identity: system.remove(key),
            user_identities,
            addresses,
            identity_header: row.opt_text("identity_header")?.map(|h| IdentityHeader::new(h.to_owned())),
        })
    })
    .await
}

async fn load_credentials(tx: &mut impl Fetch, scope: Scope<'_>) -> Result<Vec<FederatedCredential>, StoreError> {
    // Stored values were validated when written; loopback http issuers may have been allowed then.
    // In insertion order: the table's own order, so a full load sorts nothing.
    let lenient = IssuerPolicy { allow_http_loopback: true };
    let sql = "SELECT id, application_id, identity_id, name, issuer, subject, audience, description, \
               CAST(claims_expression_version AS TEXT) AS expression_version \
               FROM federated_credentials WHERE {where} ORDER BY {insertion}";
    tx.each(sql, "owner_id", scope, |row| {
        let application = row.opt_text("application_id")?;
        let owner = match application {
            Some(id) => CredentialOwner::Application(ObjectId::parse(id).map_err(corrupt)?),
            None => CredentialOwner::Identity(object_id(row, "identity_id")?),
        };
        Ok(FederatedCredential {
            id: object_id(row, "id")?,
            owner,
            name: CredentialName::parse(row.text("name")?).map_err(corrupt)?,
            issuer: Issuer::parse(row.text("issuer")?, lenient).map_err(corrupt)?,
            matching: stored_matching(row.text("subject")?, row.opt_text("expression_version")?)?,
            audience: Audience::parse(row.text("audience")?).map_err(corrupt)?,
            description: row.opt_text("description")?.map(str::to_owned),
        })
    })
    .await
}

/// A credential's subject, or its expression compiled again (from text validated when written).
fn stored_matching(subject: &str, version: Option<&str>) -> Result<SubjectMatch, StoreError> {
    let version = version.map(|v| v.parse::<u32>().map_err(corrupt)).transpose()?;
    let (subject, expression) = match version {
        Some(version) => (None, Some((subject, version))),
        None => (Some(subject), None),
    };
    SubjectMatch::parse(subject, expression).map_err(corrupt)
}

async fn load_role_assignments(tx: &mut impl Fetch, scope: Scope<'_>) -> Result<Vec<RoleAssignment>, StoreError> {
    let sql = "SELECT id, tenant_id, principal_app_sp, principal_identity, resource_sp_id, app_role_id \
               FROM role_assignments WHERE {where} ORDER BY created_at";
    tx.each(sql, "id", scope, |row| {
        let app_sp = row.opt_text("principal_app_sp")?;
        let principal = match app_sp {
            Some(id) => Principal::Application(ObjectId::parse(id).map_err(corrupt)?),
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
