//! App role assignments.

use super::*;

impl AdminService {
    /// Grants `app_role_id` of the resource application (service principal `resource_sp`) to
    /// `principal_id` (a service principal or managed identity). Granting it again is a conflict.
    pub async fn assign_role(
        &self,
        caller: &Caller,
        principal_id: ObjectId,
        resource_sp: ObjectId,
        app_role_id: ObjectId,
    ) -> Result<RoleAssignment, AdminError> {
        self.audited(
            caller,
            "Add app role assignment",
            "RoleAssignment",
            format!("{principal_id}/{app_role_id}"),
            async {
                let view = self.directory.view();
                let principal = if view.application_by_sp(caller.tenant, principal_id).is_some() {
                    Principal::Application(principal_id)
                } else if view.identity(principal_id).is_some_and(|i| i.tenant_id == caller.tenant) {
                    Principal::Identity(principal_id)
                } else {
                    return Err(RoleAssignmentError::UnknownPrincipal(principal_id).into());
                };
                let resource = view
                    .application_by_sp(caller.tenant, resource_sp)
                    .ok_or(RoleAssignmentError::UnknownResource(resource_sp))?;
                if resource.role(app_role_id).is_none() {
                    return Err(RoleAssignmentError::UnknownRole { role: app_role_id, resource: resource_sp }.into());
                }
                if view.role_assignments_of(principal_id).any(|a| a.app_role_id == app_role_id) {
                    return Err(RoleAssignmentError::Duplicate { principal: principal_id, role: app_role_id }.into());
                }
                let assignment = RoleAssignment {
                    id: ObjectId::random(),
                    tenant_id: caller.tenant,
                    principal,
                    resource_id: resource_sp,
                    app_role_id,
                };
                self.registry.create_role_assignment(&assignment).await.map_err(store_error)?;
                Ok(assignment)
            },
        )
        .await
    }

    pub async fn remove_role_assignment(&self, caller: &Caller, id: ObjectId) -> Result<(), AdminError> {
        self.audited(caller, "Remove app role assignment", "RoleAssignment", id.to_string(), async {
            self.registry.delete_role_assignment(caller.tenant, id).await.map_err(store_error)
        })
        .await
    }
}

impl AdminService {
    /// Role assignments on a resource application, by its service principal id.
    pub fn role_assignments_on(
        &self,
        caller: &Caller,
        resource_sp: ObjectId,
    ) -> Result<Vec<RoleAssignment>, AdminError> {
        let view = self.directory.view();
        if view.application_by_sp(caller.tenant, resource_sp).is_none() {
            return Err(AdminError::NotFound { what: "service principal", id: resource_sp.to_string() });
        }
        Ok(view.role_assignments_on(resource_sp).into_iter().cloned().collect())
    }
}
