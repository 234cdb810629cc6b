//! Applications: create, read, delete.

use std::sync::Arc;

use super::*;

impl AdminService {
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
            rate_limit: input.rate_limit.as_deref().map(parse_rate_limit).transpose()?,
        })
    }

    /// Sets (or with `None` removes) the application's own token-request limit.
    pub async fn set_rate_limit(
        &self,
        caller: &Caller,
        id: &str,
        by_app_id: bool,
        rate_limit: Option<&str>,
    ) -> Result<Arc<Application>, AdminError> {
        let object_id = self
            .audited(caller, "Update application rate limit", "Application", id.to_owned(), async {
                let app = self.application(caller, id, by_app_id)?;
                let rate = rate_limit.map(parse_rate_limit).transpose()?;
                let registry = &self.registry;
                registry.set_application_rate_limit(caller.tenant, app.object_id, rate).await.map_err(store_error)?;
                Ok(app.object_id)
            })
            .await?;
        // Read after the audited write has refreshed the directory.
        self.application(caller, &object_id.to_string(), false)
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
}
