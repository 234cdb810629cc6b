//! User-assigned identities and compute resources with their identity blocks.

use super::*;

impl AdminService {
    fn check_subscription(&self, caller: &Caller, id: &ResourceId) -> Result<(), AdminError> {
        self.check_subscription_id(caller, id.subscription())
    }

    fn check_subscription_id(&self, caller: &Caller, subscription: uuid::Uuid) -> Result<(), AdminError> {
        match self.directory.view().subscription_tenant(subscription) {
            Some(tenant) if tenant == caller.tenant => Ok(()),
            _ => Err(AdminError::ForeignSubscription(subscription)),
        }
    }

    /// The user-assigned identities of a subscription (of one resource group, when named), by name.
    pub fn user_identities(
        &self,
        caller: &Caller,
        subscription: uuid::Uuid,
        resource_group: Option<&str>,
    ) -> Result<Vec<ManagedIdentity>, AdminError> {
        self.check_subscription_id(caller, subscription)?;
        Ok(self.directory.view().user_identities_in(subscription, resource_group).into_iter().cloned().collect())
    }

    pub fn user_identity(&self, caller: &Caller, id: &ResourceId) -> Result<ManagedIdentity, AdminError> {
        self.directory
            .view()
            .identity_by_resource(id)
            .filter(|i| i.tenant_id == caller.tenant && i.is_user_assigned())
            .cloned()
            .ok_or_else(|| AdminError::NotFound { what: "user-assigned identity", id: id.to_string() })
    }

    /// Creates a user-assigned identity, or returns the existing one (ARM PUT is idempotent).
    /// `ids` fixes its principal and client ids (the world file); otherwise they are random.
    pub async fn put_user_identity(
        &self,
        caller: &Caller,
        id: &ResourceId,
        ids: Option<(ObjectId, ClientId)>,
    ) -> Result<ManagedIdentity, AdminError> {
        if let Ok(existing) = self.user_identity(caller, id) {
            return Ok(existing);
        }
        self.audited(caller, "Create user-assigned identity", "ManagedIdentity", id.to_string(), async {
            if id.kind() != ResourceKind::UserAssignedIdentity {
                return Err(ResourceError::InvalidId(id.to_string()).into());
            }
            self.check_subscription(caller, id)?;
            let (principal_id, client_id) = ids.unwrap_or_else(|| (ObjectId::random(), ClientId::random()));
            let identity =
                ManagedIdentity { principal_id, client_id, tenant_id: caller.tenant, resource_id: id.clone() };
            self.registry.create_identity(&identity).await.map_err(store_error)?;
            Ok(identity)
        })
        .await
    }

    pub async fn delete_user_identity(&self, caller: &Caller, id: &ResourceId) -> Result<(), AdminError> {
        self.audited(caller, "Delete user-assigned identity", "ManagedIdentity", id.to_string(), async {
            let identity = self.user_identity(caller, id)?;
            self.registry.delete_identity(identity.principal_id).await.map_err(store_error)
        })
        .await
    }

    pub fn resource(&self, caller: &Caller, id: &ResourceId) -> Result<ComputeResource, AdminError> {
        self.directory
            .view()
            .resource(id)
            .filter(|r| r.tenant_id == caller.tenant)
            .cloned()
            .ok_or_else(|| AdminError::NotFound { what: "resource", id: id.to_string() })
    }

    /// Creates or updates a compute resource's identity block. Enabling the system identity
    /// creates it (with `spec.system_ids` when given), disabling deletes it, keeping it keeps its
    /// ids. The App Service identity header exists while the resource has any identity.
    pub async fn put_resource(
        &self,
        caller: &Caller,
        id: &ResourceId,
        spec: ResourceSpec,
    ) -> Result<ComputeResource, AdminError> {
        self.audited(caller, "Put compute resource", "ComputeResource", id.to_string(), async {
            if !id.kind().is_compute() {
                return Err(ResourceError::InvalidId(id.to_string()).into());
            }
            self.check_subscription(caller, id)?;
            spec.identity_type.check_user_identities(spec.user_identities.len())?;
            let view = self.directory.view();
            if id.kind() == ResourceKind::WebAppSlot {
                let app_name = id.name().split('/').next().unwrap_or_default();
                let parent = ResourceId::new(ResourceKind::WebApp, id.subscription(), id.resource_group(), app_name)?;
                if view.resource(&parent).is_none() {
                    return Err(AdminError::NotFound { what: "web app", id: parent.to_string() });
                }
            }
            for user in &spec.user_identities {
                let known =
                    view.identity_by_resource(user).filter(|i| i.tenant_id == caller.tenant && i.is_user_assigned());
                if known.is_none() {
                    return Err(AdminError::NotFound { what: "user-assigned identity", id: user.to_string() });
                }
            }
            let current = view.resource(id);
            let addresses = match spec.addresses {
                Some(mut addresses) => {
                    addresses.sort();
                    addresses.dedup();
                    addresses
                }
                None => current.map(|r| r.addresses.clone()).unwrap_or_default(),
            };
            for network in &addresses {
                if let Some(owner) = view.resource_bound_to(network).filter(|owner| owner.key() != id.key()) {
                    return Err(AdminError::Conflict(format!("network {network} is already bound to {owner}")));
                }
            }
            let system_identity =
                match (spec.identity_type.has_system(), current.and_then(|r| r.system_identity.clone())) {
                    (false, _) => None,
                    (true, Some(existing)) => Some(existing),
                    (true, None) => {
                        let (principal_id, client_id) =
                            spec.system_ids.unwrap_or_else(|| (ObjectId::random(), ClientId::random()));
                        Some(ManagedIdentity {
                            principal_id,
                            client_id,
                            tenant_id: caller.tenant,
                            resource_id: id.clone(),
                        })
                    }
                };
            let identity_header = match (spec.identity_type, current.and_then(|r| r.identity_header.clone())) {
                (IdentityType::None, _) => None,
                (_, Some(existing)) => Some(existing),
                (_, None) => Some(new_identity_header()?),
            };
            let mut user_identities = spec.user_identities;
            user_identities.sort_by(|a, b| a.key().cmp(b.key()));
            user_identities.dedup();
            let resource = ComputeResource {
                id: id.clone(),
                tenant_id: caller.tenant,
                system_identity,
                user_identities,
                addresses,
                identity_header,
            };
            self.registry.put_resource(&resource).await.map_err(store_error)?;
            Ok(resource)
        })
        .await
    }

    /// Replaces the resource's App Service identity header; the old one stops working at once.
    pub async fn regenerate_identity_header(
        &self,
        caller: &Caller,
        id: &ResourceId,
    ) -> Result<ComputeResource, AdminError> {
        self.audited(caller, "Regenerate identity header", "ComputeResource", id.to_string(), async {
            let mut resource = self.resource(caller, id)?;
            if resource.identity_type() == IdentityType::None {
                return Err(AdminError::Conflict(format!("{id} has no managed identity, so no identity header")));
            }
            resource.identity_header = Some(new_identity_header()?);
            self.registry.put_resource(&resource).await.map_err(store_error)?;
            Ok(resource)
        })
        .await
    }

    pub async fn delete_resource(&self, caller: &Caller, id: &ResourceId) -> Result<(), AdminError> {
        self.audited(caller, "Delete compute resource", "ComputeResource", id.to_string(), async {
            self.resource(caller, id)?;
            self.registry.delete_resource(id).await.map_err(store_error)
        })
        .await
    }
}

/// What a compute resource should look like.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    pub identity_type: IdentityType,
    pub user_identities: Vec<ResourceId>,
    /// Networks it calls from; `None` keeps the current ones.
    pub addresses: Option<Vec<ipnet::IpNet>>,
    /// Ids for a newly enabled system identity (the world file); random otherwise.
    pub system_ids: Option<(ObjectId, ClientId)>,
}

impl ResourceSpec {
    pub fn new(identity_type: IdentityType, user_identities: Vec<ResourceId>) -> Self {
        Self { identity_type, user_identities, addresses: None, system_ids: None }
    }
}

fn new_identity_header() -> Result<IdentityHeader, AdminError> {
    crate::service::token::new_secret()
        .map(IdentityHeader::new)
        .ok_or_else(|| AdminError::Storage(StoreError::Unavailable("no randomness".into())))
}
