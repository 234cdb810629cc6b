//! Registry administration: the use cases behind the admin API, the CLI and the world file.
//!
//! Every write is validated against the current directory view first (for clear errors), then
//! committed (the database holds the same invariants under races), then recorded in the activity
//! log with its caller and outcome (failures too), and the view is refreshed before returning, so
//! a caller that reads after a write sees it.

use std::future::Future;
use std::sync::Arc;

use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery, Actor, Outcome};
use crate::domain::application::{
    AppRole, Application, ApplicationError, DisplayName, IdentifierUri, RoleValue, check_distinct_roles,
};
use crate::domain::clock::Clock;
use crate::domain::federated_credential::{
    Audience, CredentialError, CredentialName, CredentialOwner, FederatedCredential, Issuer, IssuerPolicy,
    MAX_PER_OWNER, Subject, parse_description,
};
use crate::domain::ids::{ClientId, IdError, ObjectId};
use crate::domain::ports::{Conflict, DirectorySource, Registry, StoreError};
use crate::domain::resource::{
    ComputeResource, IdentityType, ManagedIdentity, ResourceError, ResourceId, ResourceKind,
};
use crate::domain::role_assignment::{Principal, RoleAssignment, RoleAssignmentError};
use crate::domain::tenant::TenantId;

/// Who is asking, in which tenant.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub actor: Actor,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Application(#[from] ApplicationError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    RoleAssignment(#[from] RoleAssignmentError),
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error("{what} '{id}' does not exist in this tenant")]
    NotFound { what: &'static str, id: String },
    #[error("subscription '{0}' does not belong to this tenant")]
    ForeignSubscription(uuid::Uuid),
    #[error("{0}")]
    Conflict(String),
    /// Storage failed; the cause is logged, callers see an opaque error.
    #[error("storage failed")]
    Storage(#[source] StoreError),
}

/// An application as a caller describes it.
#[derive(Debug, Clone, Default)]
pub struct ApplicationInput {
    pub display_name: String,
    pub identifier_uris: Vec<String>,
    pub app_roles: Vec<AppRoleInput>,
}

#[derive(Debug, Clone, Default)]
pub struct AppRoleInput {
    pub id: Option<String>,
    pub value: String,
    pub display_name: String,
    pub description: String,
}

/// A federated identity credential as a caller describes it.
#[derive(Debug, Clone, Default)]
pub struct CredentialInput {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Option<Vec<String>>,
    pub description: Option<String>,
}

pub struct AdminService {
    registry: Arc<dyn Registry>,
    directory: Arc<dyn DirectorySource>,
    clock: Arc<dyn Clock>,
    issuer_policy: IssuerPolicy,
}

impl AdminService {
    pub fn new(
        registry: Arc<dyn Registry>,
        directory: Arc<dyn DirectorySource>,
        clock: Arc<dyn Clock>,
        issuer_policy: IssuerPolicy,
    ) -> Self {
        Self { registry, directory, clock, issuer_policy }
    }

    pub fn directory(&self) -> &Arc<dyn DirectorySource> {
        &self.directory
    }

    /// Runs a write, records it in the activity log (success or failure) and refreshes the view.
    async fn audited<T>(
        &self,
        caller: &Caller,
        operation: &str,
        target_type: &'static str,
        target: String,
        work: impl Future<Output = Result<T, AdminError>>,
    ) -> Result<T, AdminError> {
        let result = work.await;
        if result.is_ok()
            && let Err(e) = self.directory.refresh().await
        {
            tracing::error!(error = %e, "directory refresh failed after a committed write");
        }
        let entry = ActivityEntry {
            id: uuid::Uuid::new_v4(),
            time: self.clock.now(),
            tenant_id: caller.tenant,
            actor: caller.actor.clone(),
            operation: operation.to_owned(),
            target_type,
            target,
            outcome: if result.is_ok() { Outcome::Success } else { Outcome::Failure },
            reason: result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
        };
        if let Err(e) = self.registry.append_activity(&entry).await {
            tracing::error!(error = %e, operation, "could not write the activity log");
        }
        result
    }

    // ---- applications ----

    pub fn list_applications(&self, caller: &Caller) -> Vec<Arc<Application>> {
        self.directory.view().applications(caller.tenant).into_iter().cloned().collect()
    }

    /// Finds an application by object id or, with `by_app_id`, by appId.
    pub fn application(&self, caller: &Caller, id: &str, by_app_id: bool) -> Result<Arc<Application>, AdminError> {
        let view = self.directory.view();
        let found = if by_app_id {
            view.application_by_client(caller.tenant, ClientId::parse(id)?)
        } else {
            view.application(caller.tenant, ObjectId::parse(id)?)
        };
        found.cloned().ok_or_else(|| AdminError::NotFound { what: "application", id: id.to_owned() })
    }

    pub async fn create_application(
        &self,
        caller: &Caller,
        input: ApplicationInput,
    ) -> Result<Arc<Application>, AdminError> {
        self.insert_application(caller, input, None).await
    }

    async fn insert_application(
        &self,
        caller: &Caller,
        input: ApplicationInput,
        ids: Option<(ObjectId, ClientId, ObjectId)>,
    ) -> Result<Arc<Application>, AdminError> {
        let target = input.display_name.clone();
        self.audited(caller, "Add application", "Application", target, async {
            let app = self.build_application(caller.tenant, input, ids)?;
            self.registry.create_application(&app).await.map_err(store_error)?;
            Ok(Arc::new(app))
        })
        .await
    }

    fn build_application(
        &self,
        tenant: TenantId,
        input: ApplicationInput,
        ids: Option<(ObjectId, ClientId, ObjectId)>,
    ) -> Result<Application, AdminError> {
        let view = self.directory.view();
        let identifier_uris =
            input.identifier_uris.iter().map(|u| IdentifierUri::parse(u)).collect::<Result<Vec<_>, _>>()?;
        if let Some(taken) = identifier_uris.iter().find(|u| view.is_identifier_uri_taken(tenant, u.as_str())) {
            return Err(ApplicationError::IdentifierUriTaken(taken.as_str().to_owned()).into());
        }
        let app_roles = input
            .app_roles
            .into_iter()
            .map(|r| {
                Ok(AppRole {
                    id: r.id.as_deref().map(ObjectId::parse).transpose()?.unwrap_or_else(ObjectId::random),
                    value: RoleValue::parse(&r.value)?,
                    display_name: if r.display_name.is_empty() { r.value.clone() } else { r.display_name },
                    description: r.description,
                })
            })
            .collect::<Result<Vec<_>, AdminError>>()?;
        check_distinct_roles(&app_roles)?;
        let (object_id, app_id, sp_id) =
            ids.unwrap_or_else(|| (ObjectId::random(), ClientId::random(), ObjectId::random()));
        Ok(Application {
            object_id,
            app_id,
            service_principal_id: sp_id,
            tenant_id: tenant,
            display_name: DisplayName::parse(&input.display_name)?,
            identifier_uris,
            app_roles,
        })
    }

    /// Creates an application with fixed ids (the world file), or does nothing if it exists.
    pub async fn ensure_application(
        &self,
        caller: &Caller,
        input: ApplicationInput,
        ids: (ObjectId, ClientId, ObjectId),
    ) -> Result<Arc<Application>, AdminError> {
        if let Some(existing) = self.directory.view().application(caller.tenant, ids.0) {
            return Ok(existing.clone());
        }
        self.insert_application(caller, input, Some(ids)).await
    }

    pub async fn delete_application(&self, caller: &Caller, id: &str, by_app_id: bool) -> Result<(), AdminError> {
        self.audited(caller, "Delete application", "Application", id.to_owned(), async {
            let app = self.application(caller, id, by_app_id)?;
            self.registry.delete_application(caller.tenant, app.object_id).await.map_err(store_error)
        })
        .await
    }

    // ---- federated identity credentials ----

    pub fn credentials(&self, owner: CredentialOwner) -> Vec<FederatedCredential> {
        self.directory.view().credentials(owner).to_vec()
    }

    pub fn credential(&self, owner: CredentialOwner, id_or_name: &str) -> Result<FederatedCredential, AdminError> {
        self.directory
            .view()
            .credentials(owner)
            .iter()
            .find(|c| c.id.to_string() == id_or_name.to_ascii_lowercase() || c.name.as_str() == id_or_name)
            .cloned()
            .ok_or_else(|| AdminError::NotFound { what: "federated identity credential", id: id_or_name.to_owned() })
    }

    pub async fn add_credential(
        &self,
        caller: &Caller,
        owner: CredentialOwner,
        input: CredentialInput,
    ) -> Result<FederatedCredential, AdminError> {
        let target = format!("{}/{}", owner_id(owner), input.name);
        self.audited(caller, "Add federated identity credential", "FederatedIdentityCredential", target, async {
            let credential = FederatedCredential {
                id: ObjectId::random(),
                owner,
                name: CredentialName::parse(&input.name)?,
                issuer: Issuer::parse(&input.issuer, self.issuer_policy)?,
                subject: Subject::parse(&input.subject)?,
                audience: Audience::parse_list(input.audiences.as_deref())?,
                description: parse_description(input.description.as_deref())?,
            };
            let existing = self.directory.view().credentials(owner).to_vec();
            if existing.iter().any(|c| c.name == credential.name) {
                return Err(CredentialError::DuplicateName(input.name.clone()).into());
            }
            if existing.iter().any(|c| c.issuer == credential.issuer && c.subject == credential.subject) {
                return Err(CredentialError::DuplicateIssuerSubject.into());
            }
            if existing.len() >= MAX_PER_OWNER {
                return Err(CredentialError::LimitReached.into());
            }
            self.registry.add_credential(&credential).await.map_err(store_error)?;
            Ok(credential)
        })
        .await
    }

    /// Replaces issuer, subject, audiences and description; the name may be repeated but not changed.
    pub async fn update_credential(
        &self,
        caller: &Caller,
        owner: CredentialOwner,
        id_or_name: &str,
        input: CredentialInput,
    ) -> Result<FederatedCredential, AdminError> {
        let target = format!("{}/{id_or_name}", owner_id(owner));
        self.audited(caller, "Update federated identity credential", "FederatedIdentityCredential", target, async {
            let mut credential = self.credential(owner, id_or_name)?;
            if !input.name.is_empty() && input.name != credential.name.as_str() {
                return Err(CredentialError::NameIsImmutable.into());
            }
            credential.issuer = Issuer::parse(&input.issuer, self.issuer_policy)?;
            credential.subject = Subject::parse(&input.subject)?;
            credential.audience = Audience::parse_list(input.audiences.as_deref())?;
            credential.description = parse_description(input.description.as_deref())?;
            let clash = self
                .directory
                .view()
                .credentials(owner)
                .iter()
                .any(|c| c.id != credential.id && c.issuer == credential.issuer && c.subject == credential.subject);
            if clash {
                return Err(CredentialError::DuplicateIssuerSubject.into());
            }
            self.registry.update_credential(&credential).await.map_err(store_error)?;
            Ok(credential)
        })
        .await
    }

    pub async fn delete_credential(
        &self,
        caller: &Caller,
        owner: CredentialOwner,
        id_or_name: &str,
    ) -> Result<(), AdminError> {
        let target = format!("{}/{id_or_name}", owner_id(owner));
        self.audited(caller, "Delete federated identity credential", "FederatedIdentityCredential", target, async {
            let credential = self.credential(owner, id_or_name)?;
            self.registry.delete_credential(owner, credential.id).await.map_err(store_error)
        })
        .await
    }

    // ---- managed identities and compute resources ----

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

    // ---- role assignments ----

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

    // ---- activity log ----

    pub async fn activity(&self, query: &ActivityQuery) -> Result<ActivityPage, AdminError> {
        self.registry.query_activity(query).await.map_err(AdminError::Storage)
    }
}

fn owner_id(owner: CredentialOwner) -> ObjectId {
    match owner {
        CredentialOwner::Application(id) | CredentialOwner::Identity(id) => id,
    }
}

/// Storage outcomes that are the caller's business become specific errors; the rest is opaque.
fn store_error(e: StoreError) -> AdminError {
    match e {
        StoreError::Conflict(Conflict::CredentialLimit) => CredentialError::LimitReached.into(),
        StoreError::Conflict(Conflict::CredentialIssuerSubject) => CredentialError::DuplicateIssuerSubject.into(),
        StoreError::Conflict(Conflict::CredentialName) => {
            AdminError::Conflict("a federated identity credential with this name already exists".into())
        }
        StoreError::Conflict(Conflict::IdentifierUri) => {
            AdminError::Conflict("an identifier URI is already used by another application in this tenant".into())
        }
        StoreError::Conflict(Conflict::RoleAssignment) => {
            AdminError::Conflict("the principal already holds this app role".into())
        }
        StoreError::Conflict(Conflict::Exists(what) | Conflict::Other(what)) => AdminError::Conflict(what),
        StoreError::NotFound(what) => AdminError::NotFound { what: "object", id: what },
        other => AdminError::Storage(other),
    }
}
