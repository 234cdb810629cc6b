//! An indexed, read-only view of the whole directory: what request paths and validations read.
//! Built from a [`Directory`] load; replaced whole after each committed change.

use std::collections::HashMap;
use std::sync::Arc;

use super::application::Application;
use super::federated_credential::{CredentialOwner, FederatedCredential};
use super::ids::{ClientId, ObjectId};
use super::ports::Directory;
use super::resource::{ComputeResource, ManagedIdentity, ResourceId};
use super::role_assignment::RoleAssignment;
use super::tenant::{Tenant, TenantId, TenantName, TenantRef};

#[derive(Debug, Default)]
pub struct DirectoryView {
    tenants: HashMap<TenantId, Tenant>,
    tenants_by_name: HashMap<TenantName, TenantId>,
    subscriptions: HashMap<uuid::Uuid, TenantId>,
    applications: HashMap<ObjectId, Arc<Application>>,
    apps_by_client: HashMap<ClientId, ObjectId>,
    apps_by_sp: HashMap<ObjectId, ObjectId>,
    apps_by_uri: HashMap<(TenantId, String), ObjectId>,
    credentials: HashMap<ObjectId, Vec<FederatedCredential>>,
    identities: HashMap<ObjectId, ManagedIdentity>,
    identities_by_client: HashMap<ClientId, ObjectId>,
    identities_by_resource: HashMap<String, ObjectId>,
    resources: HashMap<String, ComputeResource>,
    role_assignments: HashMap<ObjectId, RoleAssignment>,
    roles_by_principal: HashMap<ObjectId, Vec<ObjectId>>,
    secret_hashes: HashMap<ObjectId, Vec<String>>,
    /// Bound networks, longest prefix first, with the resource key each belongs to.
    networks: Vec<(ipnet::IpNet, String)>,
    identity_headers: HashMap<String, String>,
    /// Every issuer some federated credential names: the only external issuers ever contacted.
    trusted_issuers: std::collections::HashSet<String>,
    generation: u64,
}

fn owner_key(owner: CredentialOwner) -> ObjectId {
    match owner {
        CredentialOwner::Application(id) | CredentialOwner::Identity(id) => id,
    }
}

impl DirectoryView {
    pub fn new(directory: Directory) -> Self {
        let mut view = Self::default();
        for tenant in directory.tenants {
            view.tenants_by_name.insert(tenant.name.clone(), tenant.id);
            view.tenants.insert(tenant.id, tenant);
        }
        view.subscriptions = directory.subscriptions.into_iter().collect();
        for app in directory.applications {
            view.apps_by_client.insert(app.app_id, app.object_id);
            view.apps_by_sp.insert(app.service_principal_id, app.object_id);
            for uri in &app.identifier_uris {
                view.apps_by_uri.insert((app.tenant_id, uri.key()), app.object_id);
            }
            view.applications.insert(app.object_id, Arc::new(app));
        }
        for credential in directory.credentials {
            view.trusted_issuers.insert(credential.issuer.as_str().to_owned());
            view.credentials.entry(owner_key(credential.owner)).or_default().push(credential);
        }
        for identity in directory.identities {
            view.identities_by_client.insert(identity.client_id, identity.principal_id);
            view.identities_by_resource.insert(identity.resource_id.key().to_owned(), identity.principal_id);
            view.identities.insert(identity.principal_id, identity);
        }
        for resource in directory.resources {
            for network in &resource.addresses {
                view.networks.push((*network, resource.id.key().to_owned()));
            }
            if let Some(header) = &resource.identity_header {
                view.identity_headers.insert(header.expose().to_owned(), resource.id.key().to_owned());
            }
            view.resources.insert(resource.id.key().to_owned(), resource);
        }
        view.networks.sort_by_key(|(network, _)| std::cmp::Reverse(network.prefix_len()));
        for assignment in directory.role_assignments {
            view.roles_by_principal.entry(assignment.principal.id()).or_default().push(assignment.id);
            view.role_assignments.insert(assignment.id, assignment);
        }
        for (application, hash) in directory.client_secrets {
            view.secret_hashes.entry(application).or_default().push(hash);
        }
        view
    }

    /// Marks this view as the `generation`-th load: caches compare generations to know whether
    /// what they hold was derived from the current directory.
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether some federated credential names `issuer`.
    pub fn is_trusted_issuer(&self, issuer: &str) -> bool {
        self.trusted_issuers.contains(issuer)
    }

    /// SHA-256 (hex) of the application's client secrets.
    pub fn secret_hashes(&self, application: ObjectId) -> &[String] {
        self.secret_hashes.get(&application).map_or(&[], Vec::as_slice)
    }

    pub fn tenant(&self, tenant: &TenantRef) -> Option<&Tenant> {
        let id = match tenant {
            TenantRef::Id(id) => *id,
            TenantRef::Name(name) => *self.tenants_by_name.get(name)?,
        };
        self.tenants.get(&id)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    pub fn subscription_tenant(&self, subscription: uuid::Uuid) -> Option<TenantId> {
        self.subscriptions.get(&subscription).copied()
    }

    pub fn application(&self, tenant: TenantId, object_id: ObjectId) -> Option<&Arc<Application>> {
        self.applications.get(&object_id).filter(|a| a.tenant_id == tenant)
    }

    pub fn application_by_client(&self, tenant: TenantId, app_id: ClientId) -> Option<&Arc<Application>> {
        self.application(tenant, *self.apps_by_client.get(&app_id)?)
    }

    pub fn application_by_sp(&self, tenant: TenantId, sp_id: ObjectId) -> Option<&Arc<Application>> {
        self.application(tenant, *self.apps_by_sp.get(&sp_id)?)
    }

    /// The application a client names as a resource: by identifier URI (case-insensitive) or appId.
    pub fn resource_application(&self, tenant: TenantId, name: &str) -> Option<&Arc<Application>> {
        if let Some(id) = self.apps_by_uri.get(&(tenant, name.to_ascii_lowercase())) {
            return self.application(tenant, *id);
        }
        ClientId::parse(name).ok().and_then(|app_id| self.application_by_client(tenant, app_id))
    }

    pub fn applications(&self, tenant: TenantId) -> Vec<&Arc<Application>> {
        let mut apps: Vec<_> = self.applications.values().filter(|a| a.tenant_id == tenant).collect();
        apps.sort_by(|a, b| a.display_name.as_str().cmp(b.display_name.as_str()).then(a.object_id.cmp(&b.object_id)));
        apps
    }

    pub fn is_identifier_uri_taken(&self, tenant: TenantId, uri: &str) -> bool {
        self.apps_by_uri.contains_key(&(tenant, uri.to_ascii_lowercase()))
    }

    /// At most 20 per owner: the candidates an assertion is matched against.
    pub fn credentials(&self, owner: CredentialOwner) -> &[FederatedCredential] {
        self.credentials.get(&owner_key(owner)).map_or(&[], Vec::as_slice)
    }

    pub fn identity(&self, principal_id: ObjectId) -> Option<&ManagedIdentity> {
        self.identities.get(&principal_id)
    }

    pub fn identity_by_client(&self, client_id: ClientId) -> Option<&ManagedIdentity> {
        self.identity(*self.identities_by_client.get(&client_id)?)
    }

    pub fn identity_by_resource(&self, id: &ResourceId) -> Option<&ManagedIdentity> {
        self.identity(*self.identities_by_resource.get(id.key())?)
    }

    pub fn resource(&self, id: &ResourceId) -> Option<&ComputeResource> {
        self.resources.get(id.key())
    }

    /// The resource whose bound network most specifically contains `address` (longest prefix).
    pub fn resource_for_address(&self, address: std::net::IpAddr) -> Option<&ComputeResource> {
        let address = match address {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, std::net::IpAddr::V4),
            v4 => v4,
        };
        let (_, key) = self.networks.iter().find(|(network, _)| network.contains(&address))?;
        self.resources.get(key)
    }

    /// The resource a network is bound to exactly, if any.
    pub fn resource_bound_to(&self, network: &ipnet::IpNet) -> Option<&ResourceId> {
        let (_, key) = self.networks.iter().find(|(bound, _)| bound == network)?;
        self.resources.get(key).map(|r| &r.id)
    }

    /// The resource whose App Service identity header is `header`.
    pub fn resource_by_identity_header(&self, header: &str) -> Option<&ComputeResource> {
        self.resources.get(self.identity_headers.get(header)?)
    }

    /// Role assignments held by a principal (service principal or managed identity).
    pub fn role_assignments_of(&self, principal: ObjectId) -> impl Iterator<Item = &RoleAssignment> {
        self.roles_by_principal.get(&principal).into_iter().flatten().filter_map(|id| self.role_assignments.get(id))
    }

    /// Role assignments on a resource application (by its service principal id).
    pub fn role_assignments_on(&self, resource_sp: ObjectId) -> Vec<&RoleAssignment> {
        let mut all: Vec<_> = self.role_assignments.values().filter(|a| a.resource_id == resource_sp).collect();
        all.sort_by_key(|a| a.id);
        all
    }

    /// The `roles` claim: values of the app roles `principal` holds on `resource`, sorted.
    pub fn role_values(&self, principal: ObjectId, resource: &Application) -> Vec<String> {
        let mut values: Vec<String> = self
            .role_assignments_of(principal)
            .filter(|a| a.resource_id == resource.service_principal_id)
            .filter_map(|a| resource.role(a.app_role_id))
            .map(|r| r.value.as_str().to_owned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}
