//! User-assigned identities and compute resources with their identity blocks.

use super::*;

impl AdminService {
    fn check_subscription(&self, caller: &Caller, id: &ResourceId) -> Result<(), AdminError> {
        match self.directory.view().subscription_tenant(id.subscription()) {
            Some(tenant) if tenant == caller.tenant => Ok(()),
            _ => Err(AdminError::ForeignSubscription(id.subscription())),
        }
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
    /// creates it (with `system_ids` when given), disabling deletes it, keeping it keeps its ids.
    pub async fn put_resource(
        &self,
        caller: &Caller,
        id: &ResourceId,
        identity_type: IdentityType,
        user_identities: Vec<ResourceId>,
        system_ids: Option<(ObjectId, ClientId)>,
    ) -> Result<ComputeResource, AdminError> {
        self.audited(caller, "Put compute resource", "ComputeResource", id.to_string(), async {
            if !id.kind().is_compute() {
                return Err(ResourceError::InvalidId(id.to_string()).into());
            }
            self.check_subscription(caller, id)?;
            identity_type.check_user_identities(user_identities.len())?;
            let view = self.directory.view();
            if id.kind() == ResourceKind::WebAppSlot {
                let app_name = id.name().split('/').next().unwrap_or_default();
                let parent = ResourceId::new(ResourceKind::WebApp, id.subscription(), id.resource_group(), app_name)?;
                if view.resource(&parent).is_none() {
                    return Err(AdminError::NotFound { what: "web app", id: parent.to_string() });
                }
            }
            for user in &user_identities {
                if view
                    .identity_by_resource(user)
                    .filter(|i| i.tenant_id == caller.tenant && i.is_user_assigned())
                    .is_none()
                {
                    return Err(AdminError::NotFound { what: "user-assigned identity", id: user.to_string() });
                }
            }
            let current = view.resource(id).and_then(|r| r.system_identity.clone());
            let system_identity = match (identity_type.has_system(), current) {
                (false, _) => None,
                (true, Some(existing)) => Some(existing),
                (true, None) => {
                    let (principal_id, client_id) =
                        system_ids.unwrap_or_else(|| (ObjectId::random(), ClientId::random()));
                    Some(ManagedIdentity { principal_id, client_id, tenant_id: caller.tenant, resource_id: id.clone() })
                }
            };
            let mut user_identities = user_identities;
            user_identities.sort_by(|a, b| a.key().cmp(b.key()));
            user_identities.dedup();
            let resource =
                ComputeResource { id: id.clone(), tenant_id: caller.tenant, system_identity, user_identities };
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
