//! Role assignments: a principal (an application's service principal or a managed identity) holds
//! an app role that a resource application defines. They become the `roles` claim.

use super::ids::ObjectId;
use super::tenant::TenantId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleAssignmentError {
    #[error("principal '{0}' is neither an application's service principal nor a managed identity in this tenant")]
    UnknownPrincipal(ObjectId),
    #[error("resource '{0}' is not an application's service principal in this tenant")]
    UnknownResource(ObjectId),
    #[error("app role '{role}' is not defined by resource '{resource}'")]
    UnknownRole { role: ObjectId, resource: ObjectId },
    #[error("principal '{principal}' already holds app role '{role}'")]
    Duplicate { principal: ObjectId, role: ObjectId },
}

/// Who holds a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// An application, by its service principal id.
    Application(ObjectId),
    /// A managed identity, by its principal id.
    Identity(ObjectId),
}

impl Principal {
    pub fn id(self) -> ObjectId {
        match self {
            Self::Application(id) | Self::Identity(id) => id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    pub id: ObjectId,
    pub tenant_id: TenantId,
    pub principal: Principal,
    /// The resource application's service principal id (Graph's `resourceId`).
    pub resource_id: ObjectId,
    pub app_role_id: ObjectId,
}
