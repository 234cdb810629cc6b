//! An indexed, read-only view of the whole directory: what request paths and validations read.
//!
//! Built once from a full [`Directory`] load, then kept current by [`DirectoryView::apply`]ing
//! [`Change`]s, each the current state of one registry entity. Every map is persistent
//! (structurally shared), so cloning a view is O(1) and applying one change costs O(log n): the
//! snapshot clones, applies and swaps, without ever rebuilding the whole view, whatever the size
//! of the registry.

use std::net::IpAddr;
use std::sync::Arc;

use super::application::{Application, MANAGEMENT_API, is_microsoft_admin_resource};
use super::federated_credential::{CredentialOwner, FederatedCredential};
use super::ids::{ClientId, ObjectId};
use super::ports::Directory;
use super::resource::{ComputeResource, IdentityHeader, ManagedIdentity, ResourceId};
use super::role_assignment::RoleAssignment;
use super::tenant::{Tenant, TenantId, TenantName, TenantRef};

/// The snapshot's persistent maps, hashed with foldhash (seeded per map) rather than SipHash: the
/// token path looks up several string keys per request (resource ids, issuers, URIs). Keys only
/// enter through registry writes, which are authenticated, so nobody can flood them with
/// colliding keys; request values are only looked up.
type Map<K, V> = imbl::GenericHashMap<K, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

/// The current state of one registry entity (`None` or empty: it no longer exists), as read after
/// a committed change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Tenant(TenantId, Option<Tenant>),
    Subscription(uuid::Uuid, Option<TenantId>),
    /// An application with the SHA-256 (hex) of its client secrets.
    Application(ObjectId, Option<Box<(Application, Vec<String>)>>),
    /// Every federated credential of one owner (application object id or identity principal id).
    Credentials(ObjectId, Vec<FederatedCredential>),
    Identity(ObjectId, Option<ManagedIdentity>),
    /// A compute resource, by its resource key.
    Resource(String, Option<Box<ComputeResource>>),
    RoleAssignment(ObjectId, Option<RoleAssignment>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectoryView {
    tenants: Map<TenantId, Arc<Tenant>>,
    tenants_by_name: Map<TenantName, TenantId>,
    subscriptions: Map<uuid::Uuid, TenantId>,
    applications: Map<ObjectId, Arc<Application>>,
    apps_by_client: Map<ClientId, ObjectId>,
    apps_by_sp: Map<ObjectId, ObjectId>,
    apps_by_uri: Map<(TenantId, String), ObjectId>,
    secret_hashes: Map<ObjectId, Arc<[String]>>,
    credentials: Map<ObjectId, Arc<[FederatedCredential]>>,
    /// Every issuer some federated credential names, with how many do: the only external issuers
    /// ever contacted.
    trusted_issuers: Map<String, usize>,
    identities: Map<ObjectId, Arc<ManagedIdentity>>,
    identities_by_client: Map<ClientId, ObjectId>,
    identities_by_resource: Map<String, ObjectId>,
    resources: Map<String, Arc<ComputeResource>>,
    /// Bound networks (canonical) and the resource key each belongs to.
    networks: Map<ipnet::IpNet, String>,
    /// How many bound networks have each prefix length, per family: an address is matched by
    /// trying only the prefix lengths in use, longest first.
    v4_prefixes: PrefixCounts<33>,
    v6_prefixes: PrefixCounts<129>,
    identity_headers: Map<IdentityHeader, String>,
    role_assignments: Map<ObjectId, Arc<RoleAssignment>>,
    roles_by_principal: Map<ObjectId, Arc<[ObjectId]>>,
    roles_by_resource: Map<ObjectId, Arc<[ObjectId]>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct PrefixCounts<const N: usize>([u32; N]);

impl<const N: usize> Default for PrefixCounts<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

impl<const N: usize> PrefixCounts<N> {
    fn adjust(&mut self, len: u8, add: bool) {
        if let Some(count) = self.0.get_mut(usize::from(len)) {
            *count = if add { count.saturating_add(1) } else { count.saturating_sub(1) };
        }
    }

    fn longest_first(&self) -> impl Iterator<Item = u8> + '_ {
        (0..N).rev().filter(|&len| self.0[len] > 0).filter_map(|len| u8::try_from(len).ok())
    }
}

/// Removes `key` from an index only while it still points at `id`: within a batch of changes an
/// entity may have taken over a key another one released.
fn unindex<K, V>(index: &mut Map<K, V>, key: &K, id: &V) -> bool
where
    K: std::hash::Hash + Eq + Clone,
    V: PartialEq + Clone,
{
    if index.get(key) == Some(id) {
        index.remove(key);
        return true;
    }
    false
}

fn list_without(list: Option<Arc<[ObjectId]>>, id: ObjectId) -> Option<Arc<[ObjectId]>> {
    let rest: Vec<ObjectId> = list?.iter().copied().filter(|x| *x != id).collect();
    (!rest.is_empty()).then(|| rest.into())
}

fn list_with(list: Option<&Arc<[ObjectId]>>, id: ObjectId) -> Arc<[ObjectId]> {
    let mut all: Vec<ObjectId> = list.map(|l| l.to_vec()).unwrap_or_default();
    if let Err(at) = all.binary_search(&id) {
        all.insert(at, id);
    }
    all.into()
}

impl DirectoryView {
    pub fn new(directory: Directory) -> Self {
        let mut view = Self::default();
        for tenant in directory.tenants {
            view.apply(Change::Tenant(tenant.id, Some(tenant)));
        }
        for (subscription, tenant) in directory.subscriptions {
            view.apply(Change::Subscription(subscription, Some(tenant)));
        }
        let mut secrets: std::collections::HashMap<ObjectId, Vec<String>> = std::collections::HashMap::new();
        for (application, hash) in directory.client_secrets {
            secrets.entry(application).or_default().push(hash);
        }
        for app in directory.applications {
            let hashes = secrets.remove(&app.object_id).unwrap_or_default();
            view.apply(Change::Application(app.object_id, Some(Box::new((app, hashes)))));
        }
        let mut by_owner: std::collections::HashMap<ObjectId, Vec<FederatedCredential>> =
            std::collections::HashMap::new();
        for credential in directory.credentials {
            by_owner.entry(credential.owner.id()).or_default().push(credential);
        }
        for (owner, credentials) in by_owner {
            view.apply(Change::Credentials(owner, credentials));
        }
        for identity in directory.identities {
            view.apply(Change::Identity(identity.principal_id, Some(identity)));
        }
        for resource in directory.resources {
            view.apply(Change::Resource(resource.id.key().to_owned(), Some(Box::new(resource))));
        }
        for assignment in directory.role_assignments {
            view.apply(Change::RoleAssignment(assignment.id, Some(assignment)));
        }
        view
    }

    /// Brings the view to the entity's current state: drops what the entity indexed before, then
    /// indexes what it is now. Applying the same change twice is harmless.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Tenant(id, tenant) => {
                if let Some(old) = self.tenants.remove(&id) {
                    unindex(&mut self.tenants_by_name, &old.name, &id);
                }
                if let Some(tenant) = tenant {
                    self.tenants_by_name.insert(tenant.name.clone(), id);
                    self.tenants.insert(id, Arc::new(tenant));
                }
            }
            Change::Subscription(id, tenant) => match tenant {
                Some(tenant) => {
                    self.subscriptions.insert(id, tenant);
                }
                None => {
                    self.subscriptions.remove(&id);
                }
            },
            Change::Application(id, application) => self.apply_application(id, application),
            Change::Credentials(owner, credentials) => self.apply_credentials(owner, credentials),
            Change::Identity(id, identity) => {
                if let Some(old) = self.identities.remove(&id) {
                    unindex(&mut self.identities_by_client, &old.client_id, &id);
                    unindex(&mut self.identities_by_resource, &old.resource_id.key().to_owned(), &id);
                }
                if let Some(identity) = identity {
                    self.identities_by_client.insert(identity.client_id, id);
                    self.identities_by_resource.insert(identity.resource_id.key().to_owned(), id);
                    self.identities.insert(id, Arc::new(identity));
                }
            }
            Change::Resource(key, resource) => self.apply_resource(key, resource),
            Change::RoleAssignment(id, assignment) => {
                if let Some(old) = self.role_assignments.remove(&id) {
                    let principal = old.principal.id();
                    if let Some(rest) = list_without(self.roles_by_principal.remove(&principal), id) {
                        self.roles_by_principal.insert(principal, rest);
                    }
                    if let Some(rest) = list_without(self.roles_by_resource.remove(&old.resource_id), id) {
                        self.roles_by_resource.insert(old.resource_id, rest);
                    }
                }
                if let Some(assignment) = assignment {
                    let principal = assignment.principal.id();
                    let held = list_with(self.roles_by_principal.get(&principal), id);
                    self.roles_by_principal.insert(principal, held);
                    let on = list_with(self.roles_by_resource.get(&assignment.resource_id), id);
                    self.roles_by_resource.insert(assignment.resource_id, on);
                    self.role_assignments.insert(id, Arc::new(assignment));
                }
            }
        }
    }

    fn apply_application(&mut self, id: ObjectId, application: Option<Box<(Application, Vec<String>)>>) {
        if let Some(old) = self.applications.remove(&id) {
            unindex(&mut self.apps_by_client, &old.app_id, &id);
            unindex(&mut self.apps_by_sp, &old.service_principal_id, &id);
            for uri in &old.identifier_uris {
                unindex(&mut self.apps_by_uri, &(old.tenant_id, uri.key()), &id);
            }
        }
        self.secret_hashes.remove(&id);
        let Some((app, mut hashes)) = application.map(|b| *b) else { return };
        self.apps_by_client.insert(app.app_id, id);
        self.apps_by_sp.insert(app.service_principal_id, id);
        for uri in &app.identifier_uris {
            self.apps_by_uri.insert((app.tenant_id, uri.key()), id);
        }
        if !hashes.is_empty() {
            hashes.sort();
            self.secret_hashes.insert(id, hashes.into());
        }
        self.applications.insert(id, Arc::new(app));
    }

    fn apply_credentials(&mut self, owner: ObjectId, credentials: Vec<FederatedCredential>) {
        for old in self.credentials.remove(&owner).iter().flat_map(|c| c.iter()) {
            let issuer = old.issuer.as_str();
            match self.trusted_issuers.get(issuer).copied() {
                Some(n) if n > 1 => {
                    self.trusted_issuers.insert(issuer.to_owned(), n - 1);
                }
                _ => {
                    self.trusted_issuers.remove(issuer);
                }
            }
        }
        for credential in &credentials {
            let count = self.trusted_issuers.get(credential.issuer.as_str()).copied().unwrap_or(0);
            self.trusted_issuers.insert(credential.issuer.as_str().to_owned(), count + 1);
        }
        if !credentials.is_empty() {
            self.credentials.insert(owner, credentials.into());
        }
    }

    fn apply_resource(&mut self, key: String, resource: Option<Box<ComputeResource>>) {
        if let Some(old) = self.resources.remove(&key) {
            for network in &old.addresses {
                if unindex(&mut self.networks, &network.trunc(), &key) {
                    self.count_prefix(network, false);
                }
            }
            if let Some(header) = &old.identity_header {
                unindex(&mut self.identity_headers, header, &key);
            }
        }
        let Some(resource) = resource else { return };
        for network in &resource.addresses {
            if let Some(previous) = self.networks.insert(network.trunc(), key.clone())
                && previous != key
            {
                // Another resource held it within this batch; its own change releases nothing.
                continue;
            }
            self.count_prefix(network, true);
        }
        if let Some(header) = &resource.identity_header {
            self.identity_headers.insert(header.clone(), key.clone());
        }
        self.resources.insert(key, Arc::new(*resource));
    }

    fn count_prefix(&mut self, network: &ipnet::IpNet, add: bool) {
        match network {
            ipnet::IpNet::V4(net) => self.v4_prefixes.adjust(net.prefix_len(), add),
            ipnet::IpNet::V6(net) => self.v6_prefixes.adjust(net.prefix_len(), add),
        }
    }

    /// Whether some federated credential names `issuer`.
    pub fn is_trusted_issuer(&self, issuer: &str) -> bool {
        self.trusted_issuers.contains_key(issuer)
    }

    /// SHA-256 (hex) of the application's client secrets.
    pub fn secret_hashes(&self, application: ObjectId) -> &[String] {
        self.secret_hashes.get(&application).map_or(&[], |h| h)
    }

    pub fn tenant(&self, tenant: &TenantRef) -> Option<&Arc<Tenant>> {
        let id = match tenant {
            TenantRef::Id(id) => *id,
            TenantRef::Name(name) => *self.tenants_by_name.get(name)?,
        };
        self.tenants.get(&id)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values().map(|t| &**t)
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

    /// The application a client names as a resource: by identifier URI (case-insensitive) or
    /// appId; Graph's and ARM's resource URIs, unless an application claims them, name the
    /// management API.
    pub fn resource_application(&self, tenant: TenantId, name: &str) -> Option<&Arc<Application>> {
        if let Some(id) = self.apps_by_uri.get(&(tenant, name.to_ascii_lowercase())) {
            return self.application(tenant, *id);
        }
        if let Some(app) = ClientId::parse(name).ok().and_then(|app_id| self.application_by_client(tenant, app_id)) {
            return Some(app);
        }
        if is_microsoft_admin_resource(name) {
            return self.application(tenant, *self.apps_by_uri.get(&(tenant, MANAGEMENT_API.to_owned()))?);
        }
        None
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
        self.credentials.get(&owner.id()).map_or(&[], |c| c)
    }

    /// How many federated credentials the whole directory holds.
    pub fn credential_count(&self) -> usize {
        self.trusted_issuers.values().sum()
    }

    pub fn identity(&self, principal_id: ObjectId) -> Option<&ManagedIdentity> {
        self.identities.get(&principal_id).map(|i| &**i)
    }

    pub fn identity_by_client(&self, client_id: ClientId) -> Option<&ManagedIdentity> {
        self.identity(*self.identities_by_client.get(&client_id)?)
    }

    /// The principal whose client id (appId) is `client` in `tenant`: an application's service
    /// principal, else a managed identity's principal.
    pub fn principal_of_client(&self, tenant: TenantId, client: ClientId) -> Option<ObjectId> {
        if let Some(app) = self.application_by_client(tenant, client) {
            return Some(app.service_principal_id);
        }
        self.identity_by_client(client).filter(|i| i.tenant_id == tenant).map(|i| i.principal_id)
    }

    pub fn identity_by_resource(&self, id: &ResourceId) -> Option<&ManagedIdentity> {
        self.identity(*self.identities_by_resource.get(id.key())?)
    }

    pub fn resource(&self, id: &ResourceId) -> Option<&ComputeResource> {
        self.resource_by_key(id.key())
    }

    /// By [`ResourceId::key`] (the lower-cased id).
    pub fn resource_by_key(&self, key: &str) -> Option<&ComputeResource> {
        self.resources.get(key).map(|r| &**r)
    }

    /// User-assigned identities with this name, in any resource group (a scan, as below).
    pub fn identities_named(&self, name: &str) -> Vec<&ManagedIdentity> {
        self.identities
            .values()
            .filter(|i| i.is_user_assigned() && i.resource_id.name().eq_ignore_ascii_case(name))
            .map(|i| &**i)
            .collect()
    }

    /// User-assigned identities of a subscription, or of one of its resource groups
    /// (case-insensitive), by name (a scan, for the admin API).
    pub fn user_identities_in(&self, subscription: uuid::Uuid, resource_group: Option<&str>) -> Vec<&ManagedIdentity> {
        let mut found: Vec<&ManagedIdentity> = self
            .identities
            .values()
            .map(|i| &**i)
            .filter(|i| i.is_user_assigned() && i.resource_id.subscription() == subscription)
            .filter(|i| resource_group.is_none_or(|rg| i.resource_id.resource_group().eq_ignore_ascii_case(rg)))
            .collect();
        found.sort_by(|a, b| a.resource_id.key().cmp(b.resource_id.key()));
        found
    }

    /// A tenant's user-assigned identities and compute resources, by resource id (scans, for the
    /// console).
    pub fn tenant_resources(&self, tenant: TenantId) -> (Vec<&ManagedIdentity>, Vec<&ComputeResource>) {
        let mut identities: Vec<&ManagedIdentity> =
            self.identities.values().map(|i| &**i).filter(|i| i.tenant_id == tenant && i.is_user_assigned()).collect();
        identities.sort_by(|a, b| a.resource_id.key().cmp(b.resource_id.key()));
        let mut resources: Vec<&ComputeResource> =
            self.resources.values().map(|r| &**r).filter(|r| r.tenant_id == tenant).collect();
        resources.sort_by(|a, b| a.id.key().cmp(b.id.key()));
        (identities, resources)
    }

    /// Compute resources with this name, in any subscription and resource group (a scan: for
    /// start-up and commands, not the token path).
    pub fn resources_named(&self, name: &str) -> Vec<&ComputeResource> {
        self.resources.values().filter(|r| r.id.name().eq_ignore_ascii_case(name)).map(|r| &**r).collect()
    }

    /// The resource whose bound network most specifically contains `address` (longest prefix).
    pub fn resource_for_address(&self, address: IpAddr) -> Option<&ComputeResource> {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match address {
            IpAddr::V4(_) => self.longest_match(address, self.v4_prefixes.longest_first()),
            IpAddr::V6(_) => self.longest_match(address, self.v6_prefixes.longest_first()),
        }
    }

    fn longest_match(&self, address: IpAddr, lengths: impl Iterator<Item = u8>) -> Option<&ComputeResource> {
        lengths.into_iter().find_map(|len| {
            let network = ipnet::IpNet::new(address, len).ok()?.trunc();
            self.resources.get(self.networks.get(&network)?).map(|r| &**r)
        })
    }

    /// The resource a network is bound to exactly, if any.
    pub fn resource_bound_to(&self, network: &ipnet::IpNet) -> Option<&ResourceId> {
        self.resources.get(self.networks.get(&network.trunc())?).map(|r| &r.id)
    }

    /// The resource whose App Service identity header is `header`.
    pub fn resource_by_identity_header(&self, header: &str) -> Option<&ComputeResource> {
        let key = self.identity_headers.get(header)?;
        self.resources.get(key).map(|r| &**r)
    }

    /// Role assignments held by a principal (service principal or managed identity).
    pub fn role_assignments_of(&self, principal: ObjectId) -> impl Iterator<Item = &RoleAssignment> {
        self.roles_by_principal
            .get(&principal)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.role_assignments.get(id).map(|a| &**a))
    }

    /// Role assignments on a resource application (by its service principal id), by id.
    pub fn role_assignments_on(&self, resource_sp: ObjectId) -> Vec<&RoleAssignment> {
        self.roles_by_resource
            .get(&resource_sp)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.role_assignments.get(id).map(|a| &**a))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::application::{DisplayName, IdentifierUri};

    fn tenant() -> TenantId {
        TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap()
    }

    fn app(uri: &str) -> Application {
        Application {
            object_id: ObjectId::random(),
            app_id: ClientId::random(),
            service_principal_id: ObjectId::random(),
            tenant_id: tenant(),
            display_name: DisplayName::parse("app").unwrap(),
            identifier_uris: vec![IdentifierUri::parse(uri).unwrap()],
            app_roles: vec![],
            rate_limit: None,
        }
    }

    fn vm(name: &str, networks: &[&str]) -> ComputeResource {
        let id = format!(
            "/subscriptions/0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}"
        );
        ComputeResource {
            id: ResourceId::parse(&id).unwrap(),
            tenant_id: tenant(),
            system_identity: None,
            user_identities: vec![],
            addresses: networks.iter().map(|n| n.parse().unwrap()).collect(),
            identity_header: None,
        }
    }

    fn resource_change(resource: &ComputeResource, present: bool) -> Change {
        Change::Resource(resource.id.key().to_owned(), present.then(|| Box::new(resource.clone())))
    }

    #[test]
    fn an_identifier_uri_handed_over_within_one_batch_ends_with_its_new_owner_whatever_the_order() {
        let (old, new) = (app("api://orders"), app("api://orders"));
        let mut view = DirectoryView::new(Directory { applications: vec![old.clone()], ..Directory::default() });
        // The new owner's change is applied before the old owner's removal.
        view.apply(Change::Application(new.object_id, Some(Box::new((new.clone(), vec![])))));
        view.apply(Change::Application(old.object_id, None));
        assert_eq!(view.resource_application(tenant(), "api://orders").map(|a| a.object_id), Some(new.object_id));
        assert!(view.application(tenant(), old.object_id).is_none());
        let fresh = DirectoryView::new(Directory { applications: vec![new], ..Directory::default() });
        assert!(view == fresh, "the same view as built from the final state");
    }

    #[test]
    fn a_network_moved_between_resources_within_one_batch_resolves_to_its_new_resource() {
        let (first, second) = (vm("one", &["10.0.0.0/8", "10.1.2.3/32"]), vm("two", &["10.0.0.0/8"]));
        let first_after = vm("one", &["10.1.2.3/32"]);
        let mut view = DirectoryView::new(Directory { resources: vec![first.clone()], ..Directory::default() });
        view.apply(resource_change(&second, true));
        view.apply(resource_change(&first_after, true));
        let at = |address: &str| view.resource_for_address(address.parse().unwrap()).map(|r| r.id.clone());
        assert_eq!(at("10.9.9.9"), Some(second.id.clone()));
        assert_eq!(at("10.1.2.3"), Some(first.id.clone()), "the longest prefix still wins");
        let fresh = DirectoryView::new(Directory { resources: vec![first_after, second], ..Directory::default() });
        assert!(view == fresh, "prefix counts and indexes as built from the final state");
    }

    #[test]
    fn trusted_issuers_are_counted_so_the_last_credential_naming_one_removes_it() {
        use crate::domain::federated_credential::{
            Audience, CredentialName, Issuer, IssuerPolicy, Subject, SubjectMatch,
        };
        let fic = |owner: ObjectId, name: &str| FederatedCredential {
            id: ObjectId::random(),
            owner: CredentialOwner::Application(owner),
            name: CredentialName::parse(name).unwrap(),
            issuer: Issuer::parse("https://issuer.example", IssuerPolicy::default()).unwrap(),
            matching: SubjectMatch::Exact(Subject::parse(name).unwrap()),
            audience: Audience::parse("api://AzureADTokenExchange").unwrap(),
            description: None,
        };
        let (a, b) = (ObjectId::random(), ObjectId::random());
        let mut view = DirectoryView::default();
        view.apply(Change::Credentials(a, vec![fic(a, "one"), fic(a, "two")]));
        view.apply(Change::Credentials(b, vec![fic(b, "three")]));
        assert_eq!(view.credential_count(), 3);
        view.apply(Change::Credentials(a, vec![]));
        assert!(view.is_trusted_issuer("https://issuer.example"), "b still names it");
        view.apply(Change::Credentials(b, vec![]));
        assert!(!view.is_trusted_issuer("https://issuer.example"));
        assert_eq!(view.credential_count(), 0);
    }
}
