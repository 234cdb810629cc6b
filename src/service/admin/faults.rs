//! Fault rules, as an administrator writes them: whom a rule hits is named as a person would
//! (a compute resource or identity by name or ARM id, an application by appId, object id or display
//! name), resolved in the caller's tenant and stored by id.

use super::*;
use crate::domain::fault::{FaultDuration, FaultEffect, FaultEndpoint, FaultRule, FaultTarget};

/// Whom a new rule hits, as given.
#[derive(Debug, Clone)]
pub enum FaultTargetInput {
    Everyone,
    ComputeResource(String),
    Identity(String),
    Application(String),
}

impl FaultTargetInput {
    /// From what a request or a world file gives: at most one of a compute resource, an identity
    /// and an application; none for everyone.
    pub fn from_parts(
        resource: Option<&str>,
        identity: Option<&str>,
        application: Option<&str>,
    ) -> Result<Self, crate::domain::fault::FaultError> {
        match (resource, identity, application) {
            (None, None, None) => Ok(Self::Everyone),
            (Some(name), None, None) => Ok(Self::ComputeResource(name.to_owned())),
            (None, Some(name), None) => Ok(Self::Identity(name.to_owned())),
            (None, None, Some(name)) => Ok(Self::Application(name.to_owned())),
            _ => Err(crate::domain::fault::FaultError::Target),
        }
    }
}

impl AdminService {
    /// Stores a rule for the caller's tenant; every replica applies it within
    /// `storage.refresh_interval` (this one at once, once the caller refreshes its rules).
    pub async fn add_fault(
        &self,
        caller: &Caller,
        id: Option<ObjectId>,
        endpoint: FaultEndpoint,
        target: FaultTargetInput,
        effect: FaultEffect,
        duration: FaultDuration,
    ) -> Result<FaultRule, AdminError> {
        self.audited(caller, "Add fault rule", "FaultRule", endpoint.as_str().to_owned(), async {
            let target = self.fault_target(caller.tenant, &target)?;
            let rule = FaultRule::new(caller.tenant, endpoint, target, effect, duration, self.clock.now())?;
            let rule = match id {
                Some(id) => rule.with_id(id),
                None => rule,
            };
            self.registry.add_fault(&rule).await.map_err(AdminError::Storage)?;
            Ok(rule)
        })
        .await
    }

    /// The caller's tenant's rules still in force.
    pub async fn faults(&self, caller: &Caller) -> Result<Vec<FaultRule>, AdminError> {
        let now = self.clock.now();
        let mut rules = self.registry.list_faults().await.map_err(AdminError::Storage)?;
        rules.retain(|rule| rule.tenant == caller.tenant && !rule.is_expired(now));
        Ok(rules)
    }

    /// Removes one rule of the caller's tenant, or all of them; how many went.
    pub async fn clear_faults(&self, caller: &Caller, id: Option<ObjectId>) -> Result<u64, AdminError> {
        let target = id.map_or_else(|| "all".to_owned(), |id| id.to_string());
        self.audited(caller, "Remove fault rules", "FaultRule", target, async {
            let removed = self.registry.remove_faults(caller.tenant, id).await.map_err(AdminError::Storage)?;
            match (id, removed) {
                (Some(id), 0) => Err(AdminError::NotFound { what: "fault rule", id: id.to_string() }),
                _ => Ok(removed),
            }
        })
        .await
    }

    fn fault_target(&self, tenant: TenantId, target: &FaultTargetInput) -> Result<FaultTarget, AdminError> {
        let view = self.directory.view();
        let not_found = |what: &'static str, id: &str| AdminError::NotFound { what, id: id.to_owned() };
        match target {
            FaultTargetInput::Everyone => Ok(FaultTarget::Everyone),
            FaultTargetInput::ComputeResource(name) => {
                let found = match ResourceId::parse(name) {
                    Ok(id) => view.resource(&id).filter(|r| r.tenant_id == tenant).map(|r| r.id.key().to_owned()),
                    Err(_) => match view.resources_named(name).as_slice() {
                        [one] if one.tenant_id == tenant => Some(one.id.key().to_owned()),
                        _ => None,
                    },
                };
                found.map(FaultTarget::ComputeResource).ok_or_else(|| not_found("compute resource", name))
            }
            FaultTargetInput::Identity(name) => {
                let by_id = ObjectId::parse(name).ok().and_then(|id| view.identity(id));
                let by_client = ClientId::parse(name).ok().and_then(|id| view.identity_by_client(id));
                let by_arm = ResourceId::parse(name).ok().and_then(|id| view.identity_by_resource(&id));
                let by_name = || {
                    view.resources_named(name)
                        .into_iter()
                        .find_map(|r| r.system_identity.clone())
                        .or_else(|| view.identities_named(name).into_iter().next().cloned())
                };
                by_id
                    .or(by_client)
                    .or(by_arm)
                    .cloned()
                    .or_else(by_name)
                    .filter(|identity| identity.tenant_id == tenant)
                    .map(|identity| FaultTarget::Identity(identity.principal_id))
                    .ok_or_else(|| not_found("managed identity", name))
            }
            FaultTargetInput::Application(name) => {
                let by_client = ClientId::parse(name).ok().and_then(|id| view.application_by_client(tenant, id));
                let by_object = ObjectId::parse(name).ok().and_then(|id| view.application(tenant, id));
                let by_name = || view.applications(tenant).into_iter().find(|a| a.display_name.as_str() == name);
                by_client
                    .or(by_object)
                    .or_else(by_name)
                    .map(|app| FaultTarget::Application(app.app_id))
                    .ok_or_else(|| not_found("application", name))
            }
        }
    }
}
