//! Applications (an app registration and its service principal in one): `appId`, object id,
//! service principal id (the `oid`/`sub` of its tokens), display name, identifier URIs and the app
//! roles it defines.

use super::ids::{ClientId, ObjectId};
use super::tenant::TenantId;

/// The admin API's resource, which each tenant's management API application claims.
pub const MANAGEMENT_API: &str = "api://ficus-management";

/// Microsoft Graph's and Azure Resource Manager's resource URIs. The admin plane speaks their
/// protocols, and Microsoft's SDKs ask for these audiences by default, so where no application
/// claims one it names the management API: a token for it is an admin token.
const MICROSOFT_ADMIN_RESOURCES: [&str; 3] =
    ["https://graph.microsoft.com", "https://management.azure.com", "https://management.core.windows.net"];

/// Whether `resource` is Graph's or ARM's resource URI (case-insensitive, a trailing `/` allowed,
/// as Entra accepts both spellings).
pub fn is_microsoft_admin_resource(resource: &str) -> bool {
    let resource = resource.strip_suffix('/').unwrap_or(resource);
    MICROSOFT_ADMIN_RESOURCES.iter().any(|known| known.eq_ignore_ascii_case(resource))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplicationError {
    #[error("displayName must be 1-256 characters without control characters")]
    InvalidDisplayName,
    #[error(
        "identifier URI '{0}' is invalid: use api://... or https://... without query or fragment, at most 255 characters"
    )]
    InvalidIdentifierUri(String),
    #[error("identifier URI '{0}' is already used by another application in this tenant")]
    IdentifierUriTaken(String),
    #[error("app role value '{0}' is invalid: 1-120 characters of letters, digits and . _ - : not starting with '.'")]
    InvalidRoleValue(String),
    #[error("app role value '{0}' is defined twice")]
    DuplicateRoleValue(String),
    #[error("rate limit '{0}' is invalid: use N/s, N/min, N/h or off")]
    InvalidRateLimit(String),
}

/// An application's own rate limit, as an administrator writes it.
pub fn parse_rate_limit(raw: &str) -> Result<super::rate_limit::Rate, ApplicationError> {
    super::rate_limit::Rate::parse(raw).map_err(|_| ApplicationError::InvalidRateLimit(raw.chars().take(32).collect()))
}

/// A display name: 1-256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, ApplicationError> {
        let ok = !raw.trim().is_empty() && raw.chars().count() <= 256 && !raw.chars().any(char::is_control);
        if ok { Ok(Self(raw.to_owned())) } else { Err(ApplicationError::InvalidDisplayName) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An identifier URI (`api://vault`, `https://vault.example.com`): how clients name the
/// application as a resource (`scope=api://vault/.default`). Unique per tenant, compared
/// case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentifierUri(String);

impl IdentifierUri {
    pub fn parse(raw: &str) -> Result<Self, ApplicationError> {
        let invalid = || ApplicationError::InvalidIdentifierUri(raw.chars().take(300).collect());
        if raw.len() > 255 || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid());
        }
        let url = url::Url::parse(raw).map_err(|_| invalid())?;
        let scheme_ok = matches!(url.scheme(), "api" | "https");
        if !scheme_ok || url.query().is_some() || url.fragment().is_some() || raw.ends_with('/') {
            return Err(invalid());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive lookup key.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// An app role's `value`, the string that appears in `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleValue(String);

impl RoleValue {
    pub fn parse(raw: &str) -> Result<Self, ApplicationError> {
        let ok = (1..=120).contains(&raw.len())
            && !raw.starts_with('.')
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApplicationError::InvalidRoleValue(raw.chars().take(130).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRole {
    pub id: ObjectId,
    pub value: RoleValue,
    pub display_name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub object_id: ObjectId,
    pub app_id: ClientId,
    pub service_principal_id: ObjectId,
    pub tenant_id: TenantId,
    pub display_name: DisplayName,
    pub identifier_uris: Vec<IdentifierUri>,
    pub app_roles: Vec<AppRole>,
    /// Its own token-request limit, overriding `rate_limits.application` (`None`: the default).
    pub rate_limit: Option<super::rate_limit::Rate>,
}

impl Application {
    pub fn role(&self, id: ObjectId) -> Option<&AppRole> {
        self.app_roles.iter().find(|r| r.id == id)
    }

    pub fn role_by_value(&self, value: &str) -> Option<&AppRole> {
        self.app_roles.iter().find(|r| r.value.as_str() == value)
    }
}

/// Checks that no role value is defined twice.
pub fn check_distinct_roles(roles: &[AppRole]) -> Result<(), ApplicationError> {
    let mut seen = std::collections::HashSet::new();
    for role in roles {
        if !seen.insert(role.value.as_str()) {
            return Err(ApplicationError::DuplicateRoleValue(role.value.as_str().to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_uris_accept_api_and_https_only() {
        assert!(IdentifierUri::parse("api://vault").is_ok());
        assert!(IdentifierUri::parse("https://vault.example.com").is_ok());
        for bad in
            ["http://vault", "vault", "api://vault/", "api://v?x=1", "api://v a", &format!("api://{}", "v".repeat(260))]
        {
            assert!(IdentifierUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_values_are_token_safe() {
        assert!(RoleValue::parse("Secrets.Read").is_ok());
        for bad in ["", ".x", "has space", "a,b", &"r".repeat(121)] {
            assert!(RoleValue::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_role_values_are_refused() {
        let role = |v: &str| AppRole {
            id: ObjectId::random(),
            value: RoleValue::parse(v).unwrap(),
            display_name: v.into(),
            description: String::new(),
        };
        assert!(check_distinct_roles(&[role("A"), role("B")]).is_ok());
        assert_eq!(
            check_distinct_roles(&[role("A"), role("A")]),
            Err(ApplicationError::DuplicateRoleValue("A".into()))
        );
    }
}
