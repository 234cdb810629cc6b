//! Federated identity credentials of applications and user-assigned identities.

use super::*;

impl AdminService {
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
        let target = format!("{}/{}", owner.id(), input.name);
        self.audited(caller, "Add federated identity credential", "FederatedIdentityCredential", target, async {
            let credential = FederatedCredential {
                id: ObjectId::random(),
                owner,
                name: CredentialName::parse(&input.name)?,
                issuer: Issuer::parse(&input.issuer, self.issuer_policy)?,
                matching: input.matching()?,
                audience: Audience::parse_list(input.audiences.as_deref())?,
                description: parse_description(input.description.as_deref())?,
            };
            let existing = self.directory.view().credentials(owner).to_vec();
            if existing.iter().any(|c| c.name == credential.name) {
                return Err(CredentialError::DuplicateName(input.name.clone()).into());
            }
            if existing.iter().any(|c| c.issuer == credential.issuer && c.matching == credential.matching) {
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

    /// Replaces issuer, subject or expression, audiences and description; the name may be
    /// repeated but not changed.
    pub async fn update_credential(
        &self,
        caller: &Caller,
        owner: CredentialOwner,
        id_or_name: &str,
        input: CredentialInput,
    ) -> Result<FederatedCredential, AdminError> {
        let target = format!("{}/{id_or_name}", owner.id());
        self.audited(caller, "Update federated identity credential", "FederatedIdentityCredential", target, async {
            let mut credential = self.credential(owner, id_or_name)?;
            if !input.name.is_empty() && input.name != credential.name.as_str() {
                return Err(CredentialError::NameIsImmutable.into());
            }
            credential.issuer = Issuer::parse(&input.issuer, self.issuer_policy)?;
            credential.matching = input.matching()?;
            credential.audience = Audience::parse_list(input.audiences.as_deref())?;
            credential.description = parse_description(input.description.as_deref())?;
            let clash =
                self.directory.view().credentials(owner).iter().any(|c| {
                    c.id != credential.id && c.issuer == credential.issuer && c.matching == credential.matching
                });
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
        let target = format!("{}/{id_or_name}", owner.id());
        self.audited(caller, "Delete federated identity credential", "FederatedIdentityCredential", target, async {
            let credential = self.credential(owner, id_or_name)?;
            self.registry.delete_credential(owner, credential.id).await.map_err(store_error)
        })
        .await
    }
}
