//! Admin access: in each tenant, the management API application (`api://ficus-management`, roles
//! `Ficus.Admin` and `Ficus.Reader`) and the admin client application holding `Ficus.Admin`, whose
//! client secret the operator receives once, in a file.

use std::sync::Arc;

use super::*;
use crate::service::token::{hash_secret, new_secret};
use crate::service::world::app_ids;

pub use crate::domain::application::MANAGEMENT_API;
/// Read and write the registry.
pub const ADMIN_ROLE: &str = "Ficus.Admin";
/// Read the registry and the logs.
pub const READER_ROLE: &str = "Ficus.Reader";
const MANAGEMENT_APP: &str = "ficus management API";
const ADMIN_APP: &str = "ficus-admin";

impl AdminService {
    /// Ensures the management API and the admin client exist in the caller's tenant, the client
    /// holding `Ficus.Admin`; returns the admin client.
    pub async fn ensure_admin_client(&self, caller: &Caller) -> Result<Arc<Application>, AdminError> {
        let tenant = caller.tenant;
        let role = |value: &str| AppRoleInput {
            id: Some(derived_id(tenant.as_uuid(), "management-role", value).to_string()),
            value: value.to_owned(),
            display_name: value.to_owned(),
            description: String::new(),
        };
        let api_input = ApplicationInput {
            display_name: MANAGEMENT_APP.into(),
            identifier_uris: vec![MANAGEMENT_API.into()],
            app_roles: vec![role(ADMIN_ROLE), role(READER_ROLE)],
            rate_limit: None,
        };
        let api = self.ensure_application(caller, api_input, app_ids(tenant, MANAGEMENT_APP)).await?;
        let client_input = ApplicationInput { display_name: ADMIN_APP.into(), ..ApplicationInput::default() };
        let client = self.ensure_application(caller, client_input, app_ids(tenant, ADMIN_APP)).await?;
        let admin_role = api
            .role_by_value(ADMIN_ROLE)
            .map(|r| r.id)
            .ok_or(AdminError::NotFound { what: "app role", id: ADMIN_ROLE.into() })?;
        let holds =
            self.directory.view().role_assignments_of(client.service_principal_id).any(|a| a.app_role_id == admin_role);
        if !holds {
            self.assign_role(caller, client.service_principal_id, api.service_principal_id, admin_role).await?;
        }
        Ok(client)
    }

    /// Replaces an application's client secrets with a new one and returns it: the only time the
    /// secret exists in clear outside the caller.
    pub async fn reset_client_secret(&self, caller: &Caller, application: &Application) -> Result<Secret, AdminError> {
        let target = application.object_id.to_string();
        self.audited(caller, "Reset client secret", "Application", target, async {
            let secret =
                new_secret().ok_or_else(|| AdminError::Storage(StoreError::Unavailable("no randomness".into())))?;
            let hint: String = secret.chars().take(3).collect();
            self.registry
                .set_client_secret(application.object_id, &hash_secret(&secret), &hint)
                .await
                .map_err(store_error)?;
            Ok(Secret(secret))
        })
        .await
    }
}
