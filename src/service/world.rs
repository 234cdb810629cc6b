//! The declarative world: tenants with their subscriptions, applications (and their federated
//! credentials), user-assigned identities, compute resources and role assignments, applied at
//! start-up idempotently through the admin use cases (so it shows in the activity log). What
//! exists is kept (a credential whose issuer or subject changed is updated), what is missing is
//! created, nothing is deleted. Ids derive from the tenant id and names (UUIDv5).

use serde::Deserialize;
use uuid::Uuid;

use super::admin::{
    AdminError, AdminService, AppRoleInput, ApplicationInput, Caller, CredentialInput, FaultTargetInput, ResourceSpec,
};
use crate::domain::activity::Actor;
use crate::domain::application::parse_rate_limit;
use crate::domain::claims_expression;
use crate::domain::fault::{FaultDuration, FaultEffect, FaultEndpoint, FaultError};
use crate::domain::federated_credential::CredentialOwner;
use crate::domain::ids::{ClientId, ObjectId, derived_id};
use crate::domain::ports::{Registry, StoreError};
use crate::domain::resource::{IdentityType, ResourceId, ResourceKind, parse_network};
use crate::domain::tenant::{Tenant, TenantError, TenantId, TenantName};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    #[serde(default)]
    pub tenants: Vec<WorldTenant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldTenant {
    pub name: String,
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub subscriptions: Vec<Uuid>,
    #[serde(default)]
    pub applications: Vec<WorldApplication>,
    #[serde(default)]
    pub identities: Vec<WorldIdentity>,
    #[serde(default)]
    pub resources: Vec<WorldResource>,
    #[serde(default)]
    pub role_assignments: Vec<WorldRoleAssignment>,
    #[serde(default)]
    pub faults: Vec<WorldFault>,
}

/// A fault rule (see `ficus fault add`). It is added once per registry, under an id derived from
/// its name: a restart does not bring back requests a counted rule has used, and `ficus fault
/// clear` removes it for good (until it is renamed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldFault {
    pub name: String,
    pub endpoint: String,
    pub resource: Option<String>,
    pub identity: Option<String>,
    pub application: Option<String>,
    pub status: Option<u16>,
    pub retry_after: Option<u32>,
    pub latency_ms: Option<u32>,
    #[serde(default)]
    pub close_connection: bool,
    pub requests: Option<u32>,
    pub seconds: Option<u32>,
    pub probability: Option<f64>,
}

impl WorldFault {
    fn parts(&self) -> Result<(FaultEndpoint, FaultTargetInput, FaultEffect, FaultDuration), FaultError> {
        let endpoint = FaultEndpoint::parse(&self.endpoint)?;
        let target = FaultTargetInput::from_parts(
            self.resource.as_deref(),
            self.identity.as_deref(),
            self.application.as_deref(),
        )?;
        let effect = FaultEffect::from_parts(self.status, self.retry_after, self.latency_ms, self.close_connection)?;
        let duration = FaultDuration::from_parts(self.requests, self.seconds, self.probability)?;
        Ok((endpoint, target, effect, duration))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldApplication {
    pub name: String,
    #[serde(default)]
    pub identifier_uris: Vec<String>,
    #[serde(default)]
    pub app_roles: Vec<String>,
    #[serde(default)]
    pub federated_credentials: Vec<WorldCredential>,
    /// Its own token-request limit ("500/s", "30/min", "off"); the configured default without.
    pub rate_limit: Option<String>,
}

/// Either `issuer` + `subject`, `issuer` + `claims_matching_expression` (a flexible credential,
/// language version 1), or `trust_identity` (a user-assigned identity of this world: issuer = this
/// tenant's issuer, subject = the identity's principal id).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldCredential {
    pub name: String,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub claims_matching_expression: Option<String>,
    pub trust_identity: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldIdentity {
    pub name: String,
    pub resource_group: String,
    pub subscription: Option<Uuid>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldResource {
    /// `VirtualMachine`, `WebApp` or `WebAppSlot` (named `app/slots/slot`).
    pub kind: String,
    pub name: String,
    pub resource_group: String,
    pub subscription: Option<Uuid>,
    #[serde(default = "no_identity")]
    pub identity: String,
    #[serde(default)]
    pub user_identities: Vec<String>,
    /// Networks (addresses or CIDRs) the resource calls the IMDS endpoint from.
    #[serde(default)]
    pub addresses: Vec<String>,
}

fn no_identity() -> String {
    "None".into()
}

/// `principal`: an application, a user-assigned identity or a compute resource (its system
/// identity) of this world, by name; `resource`: an application by name; `role`: its value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldRoleAssignment {
    pub principal: String,
    pub resource: String,
    pub role: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("{0}")]
    Invalid(String),
    #[error("tenant {tenant}: {source}")]
    Admin { tenant: String, source: AdminError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WorldTenant {
    pub fn tenant(&self) -> Result<Tenant, TenantError> {
        Ok(Tenant {
            id: TenantId::parse(&self.id)?,
            name: TenantName::parse(&self.name)?,
            display_name: if self.display_name.is_empty() { self.name.clone() } else { self.display_name.clone() },
        })
    }

    fn default_subscription(&self, given: Option<Uuid>) -> Result<Uuid, WorldError> {
        given.or_else(|| self.subscriptions.first().copied()).ok_or_else(|| {
            WorldError::Invalid(format!(
                "tenant {}: a resource needs a subscription; list one in `subscriptions`",
                self.name
            ))
        })
    }
}

impl World {
    /// Checks what can be checked without the registry.
    pub fn check(&self) -> Result<(), WorldError> {
        for tenant in &self.tenants {
            tenant.tenant().map_err(|e| WorldError::Invalid(e.to_string()))?;
            for resource in &tenant.resources {
                resource_kind(&resource.kind)?;
                IdentityType::parse(&resource.identity).map_err(|e| WorldError::Invalid(e.to_string()))?;
            }
        }
        Ok(())
    }
}

fn resource_kind(raw: &str) -> Result<ResourceKind, WorldError> {
    match raw {
        "VirtualMachine" => Ok(ResourceKind::VirtualMachine),
        "WebApp" => Ok(ResourceKind::WebApp),
        "WebAppSlot" => Ok(ResourceKind::WebAppSlot),
        other => Err(WorldError::Invalid(format!("resource kind '{other}': use VirtualMachine, WebApp or WebAppSlot"))),
    }
}

fn derived(tenant: TenantId, kind: &str, name: &str) -> Uuid {
    derived_id(tenant.as_uuid(), kind, name)
}

/// The object id, client id and service principal id of the application `name` of `tenant`.
pub fn app_ids(tenant: TenantId, name: &str) -> (ObjectId, ClientId, ObjectId) {
    (
        ObjectId::new(derived(tenant, "application/object", name)),
        ClientId::new(derived(tenant, "application/client", name)),
        ObjectId::new(derived(tenant, "application/service-principal", name)),
    )
}

fn identity_ids(tenant: TenantId, kind: &str, name: &str) -> (ObjectId, ClientId) {
    (
        ObjectId::new(derived(tenant, &format!("{kind}/principal"), name)),
        ClientId::new(derived(tenant, &format!("{kind}/client"), name)),
    )
}

/// Applies `world`. `issuer_of` gives a tenant's issuer URL (for credentials trusting an identity).
pub async fn apply(
    world: &World,
    registry: &dyn Registry,
    admin: &AdminService,
    issuer_of: &dyn Fn(&Tenant) -> String,
) -> Result<(), WorldError> {
    for spec in &world.tenants {
        let tenant = spec.tenant().map_err(|e| WorldError::Invalid(e.to_string()))?;
        registry.upsert_tenant(&tenant).await?;
        for subscription in &spec.subscriptions {
            registry.upsert_subscription(*subscription, tenant.id).await?;
        }
        admin.directory().refresh().await?;
        let caller = Caller { tenant: tenant.id, actor: Actor::system() };
        let in_tenant = |source| WorldError::Admin { tenant: spec.name.clone(), source };
        apply_tenant(spec, &tenant, &caller, admin, issuer_of).await.map_err(|e| match e {
            WorldError::Admin { source, .. } => in_tenant(source),
            other => other,
        })?;
    }
    Ok(())
}

async fn apply_tenant(
    spec: &WorldTenant,
    tenant: &Tenant,
    caller: &Caller,
    admin: &AdminService,
    issuer_of: &dyn Fn(&Tenant) -> String,
) -> Result<(), WorldError> {
    let admin_err = |source| WorldError::Admin { tenant: spec.name.clone(), source };
    let mut identity_ids_by_name = std::collections::HashMap::new();
    for identity in &spec.identities {
        let sub = spec.default_subscription(identity.subscription)?;
        let id = ResourceId::new(ResourceKind::UserAssignedIdentity, sub, &identity.resource_group, &identity.name)
            .map_err(|e| WorldError::Invalid(e.to_string()))?;
        let ids = identity_ids(tenant.id, "identity", &identity.name);
        let created = admin.put_user_identity(caller, &id, Some(ids)).await.map_err(admin_err)?;
        identity_ids_by_name.insert(identity.name.clone(), (created.principal_id, created.resource_id));
    }
    for app in &spec.applications {
        let input = ApplicationInput {
            display_name: app.name.clone(),
            identifier_uris: app.identifier_uris.clone(),
            app_roles: app
                .app_roles
                .iter()
                .map(|v| AppRoleInput {
                    id: Some(derived(tenant.id, &format!("app-role/{}", app.name), v).to_string()),
                    value: v.clone(),
                    ..AppRoleInput::default()
                })
                .collect(),
            rate_limit: app.rate_limit.clone(),
        };
        let created =
            admin.ensure_application(caller, input, app_ids(tenant.id, &app.name)).await.map_err(admin_err)?;
        let wanted = app.rate_limit.as_deref().map(parse_rate_limit).transpose().map_err(|e| admin_err(e.into()))?;
        if created.rate_limit != wanted {
            let id = created.object_id.to_string();
            admin.set_rate_limit(caller, &id, false, app.rate_limit.as_deref()).await.map_err(admin_err)?;
        }
    }
    let mut system_principals = std::collections::HashMap::new();
    for resource in &spec.resources {
        let sub = spec.default_subscription(resource.subscription)?;
        let kind = resource_kind(&resource.kind)?;
        let id = ResourceId::new(kind, sub, &resource.resource_group, &resource.name)
            .map_err(|e| WorldError::Invalid(e.to_string()))?;
        let identity_type = IdentityType::parse(&resource.identity).map_err(|e| WorldError::Invalid(e.to_string()))?;
        let addresses = resource
            .addresses
            .iter()
            .map(|a| parse_network(a).map_err(|e| WorldError::Invalid(format!("resource {}: {e}", resource.name))))
            .collect::<Result<Vec<_>, _>>()?;
        let users = resource
            .user_identities
            .iter()
            .map(|name| {
                identity_ids_by_name.get(name).map(|(_, rid)| rid.clone()).ok_or_else(|| {
                    WorldError::Invalid(format!("resource {}: unknown user-assigned identity '{name}'", resource.name))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let unchanged = admin.resource(caller, &id).is_ok_and(|r| {
            let mut wanted = users.clone();
            wanted.sort_by(|a, b| a.key().cmp(b.key()));
            let mut networks = addresses.clone();
            networks.sort();
            r.identity_type() == identity_type && r.user_identities == wanted && r.addresses == networks
        });
        let current = if unchanged {
            admin.resource(caller, &id).map_err(admin_err)?
        } else {
            let spec = ResourceSpec {
                identity_type,
                user_identities: users,
                addresses: Some(addresses.clone()),
                system_ids: Some(identity_ids(tenant.id, "system-identity", &resource.name)),
            };
            admin.put_resource(caller, &id, spec).await.map_err(admin_err)?
        };
        if let Some(system) = current.system_identity {
            system_principals.insert(resource.name.clone(), system.principal_id);
        }
    }
    for app in &spec.applications {
        let owner = CredentialOwner::Application(app_ids(tenant.id, &app.name).0);
        for credential in &app.federated_credentials {
            let expression = credential.claims_matching_expression.as_ref();
            let (issuer, subject) = match (
                &credential.trust_identity,
                &credential.issuer,
                &credential.subject,
                expression,
            ) {
                (Some(name), None, None, None) => {
                    let (principal, _) = identity_ids_by_name.get(name).ok_or_else(|| {
                        WorldError::Invalid(format!("credential {}: unknown identity '{name}'", credential.name))
                    })?;
                    (issuer_of(tenant), Some(principal.to_string()))
                }
                (None, Some(issuer), Some(subject), None) => (issuer.clone(), Some(subject.clone())),
                (None, Some(issuer), None, Some(_)) => (issuer.clone(), None),
                _ => {
                    return Err(WorldError::Invalid(format!(
                        "credential {}: give either trust_identity, or issuer with subject or claims_matching_expression",
                        credential.name
                    )));
                }
            };
            let input = CredentialInput {
                name: credential.name.clone(),
                issuer,
                subject,
                expression: expression.map(|text| (text.clone(), claims_expression::LANGUAGE_VERSION)),
                audiences: credential.audiences.clone(),
                description: credential.description.clone(),
            };
            match admin.credential(owner, &credential.name) {
                Ok(existing)
                    if existing.issuer.as_str() == input.issuer
                        && existing.matching.subject() == input.subject.as_deref()
                        && existing.matching.expression().map(|e| e.text()) == expression.map(String::as_str)
                        && existing.description == input.description => {}
                Ok(_) => {
                    admin.update_credential(caller, owner, &credential.name, input).await.map_err(admin_err)?;
                }
                Err(_) => {
                    admin.add_credential(caller, owner, input).await.map_err(admin_err)?;
                }
            }
        }
    }
    for grant in &spec.role_assignments {
        let view = admin.directory().view();
        let principal = if let Some(app) = spec.applications.iter().find(|a| a.name == grant.principal) {
            app_ids(tenant.id, &app.name).2
        } else if let Some((principal, _)) = identity_ids_by_name.get(&grant.principal) {
            *principal
        } else if let Some(principal) = system_principals.get(&grant.principal) {
            *principal
        } else {
            return Err(WorldError::Invalid(format!("role assignment: unknown principal '{}'", grant.principal)));
        };
        let resource_sp = app_ids(tenant.id, &grant.resource).2;
        let resource = view
            .application_by_sp(tenant.id, resource_sp)
            .ok_or_else(|| WorldError::Invalid(format!("role assignment: unknown resource '{}'", grant.resource)))?;
        let role = resource.role_by_value(&grant.role).ok_or_else(|| {
            WorldError::Invalid(format!("role assignment: '{}' defines no role '{}'", grant.resource, grant.role))
        })?;
        if view.role_assignments_of(principal).any(|a| a.app_role_id == role.id) {
            continue;
        }
        admin.assign_role(caller, principal, resource_sp, role.id).await.map_err(admin_err)?;
    }
    for fault in &spec.faults {
        let invalid = |e: FaultError| WorldError::Invalid(format!("fault {}: {e}", fault.name));
        let (endpoint, target, effect, duration) = fault.parts().map_err(invalid)?;
        let id = ObjectId::new(derived(tenant.id, "fault", &fault.name));
        admin.add_fault(caller, Some(id), endpoint, target, effect, duration).await.map_err(admin_err)?;
    }
    Ok(())
}
