//! Registry administration: the use cases behind the admin API, the CLI and the world file.
//!
//! Every write is validated against the current directory view first (for clear errors), then
//! committed (the database holds the same invariants under races), then recorded in the activity
//! log with its caller and outcome (failures too), and the view is refreshed before returning, so
//! a caller that reads after a write sees it.

mod applications;
pub mod bootstrap;
mod credentials;
mod faults;
pub use faults::FaultTargetInput;
mod resources;

pub use resources::ResourceSpec;
mod roles;

use std::future::Future;
use std::sync::Arc;

use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery, Actor, Outcome};
use crate::domain::application::{
    AppRole, Application, ApplicationError, DisplayName, IdentifierUri, RoleValue, check_distinct_roles,
    parse_rate_limit,
};
use crate::domain::clock::Clock;
use crate::domain::federated_credential::{
    Audience, CredentialError, CredentialName, CredentialOwner, FederatedCredential, Issuer, IssuerPolicy,
    MAX_PER_OWNER, SubjectMatch, parse_description,
};
use crate::domain::ids::{ClientId, IdError, ObjectId, derived_id};
use crate::domain::ports::{Conflict, DirectorySource, Registry, StoreError};
use crate::domain::resource::{
    ComputeResource, IdentityHeader, IdentityType, ManagedIdentity, ResourceError, ResourceId, ResourceKind,
};
use crate::domain::role_assignment::{Principal, RoleAssignment, RoleAssignmentError};
use crate::domain::sign_in::{SignInPage, SignInQuery};
use crate::domain::tenant::TenantId;
use crate::service::token::Secret;

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
    #[error(transparent)]
    Fault(#[from] crate::domain::fault::FaultError),
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
    /// Its own token-request limit ("500/s"...); `None` for the configured default.
    pub rate_limit: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AppRoleInput {
    pub id: Option<String>,
    pub value: String,
    pub display_name: String,
    pub description: String,
}

/// A federated identity credential as a caller describes it: a subject, or a claims-matching
/// expression (text and language version).
#[derive(Debug, Clone, Default)]
pub struct CredentialInput {
    pub name: String,
    pub issuer: String,
    pub subject: Option<String>,
    pub expression: Option<(String, u32)>,
    pub audiences: Option<Vec<String>>,
    pub description: Option<String>,
}

impl CredentialInput {
    fn matching(&self) -> Result<SubjectMatch, CredentialError> {
        SubjectMatch::parse(self.subject.as_deref(), self.expression.as_ref().map(|(text, v)| (text.as_str(), *v)))
    }
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

    pub async fn activity(&self, query: &ActivityQuery) -> Result<ActivityPage, AdminError> {
        self.registry.query_activity(query).await.map_err(AdminError::Storage)
    }

    /// Rotates the signing keys (see
    /// [`KeyAdministration::rotate`](crate::domain::keys::KeyAdministration::rotate)), in the
    /// activity log.
    pub async fn rotate_keys(
        &self,
        caller: &Caller,
        keys: &dyn crate::domain::keys::KeyAdministration,
        immediately: bool,
    ) -> Result<crate::domain::keys::KeyStatus, AdminError> {
        let operation = if immediately { "Rotate signing key now" } else { "Rotate signing key" };
        self.audited(caller, operation, "SigningKey", "signing keys".to_owned(), async {
            keys.rotate(immediately).await.map_err(AdminError::Conflict)
        })
        .await
    }

    /// `find`, and on a miss `find` again once this process has caught up with the registry: in
    /// a cluster another replica may have created the entity a moment ago, and a client going
    /// through a balancer expects to read its own write.
    pub async fn caught_up<T>(&self, find: impl Fn() -> Result<T, AdminError>) -> Result<T, AdminError> {
        match find() {
            Err(AdminError::NotFound { .. }) => {
                if let Err(e) = self.directory.refresh().await {
                    tracing::warn!(error = %e, "could not catch up with the registry before answering not found");
                }
                find()
            }
            found => found,
        }
    }

    pub async fn sign_ins(&self, query: &SignInQuery) -> Result<SignInPage, AdminError> {
        self.registry.query_sign_ins(query).await.map_err(AdminError::Storage)
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
