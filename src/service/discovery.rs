//! OpenID discovery: which tenant a request names, its issuer and endpoint URLs, its published
//! keys, and the instance metadata MSAL asks for before trusting an authority.

use std::sync::Arc;

use url::Url;

use crate::domain::keys::{JwkSet, KeyPublisher};
use crate::domain::ports::TenantLookup;
use crate::domain::tenant::{Tenant, TenantRef};

/// A tenant's issuer and endpoint URLs, all under the broker's public base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantEndpoints {
    pub tenant: Arc<Tenant>,
    /// `https://HOST/{tenant-guid}/v2.0`, the `iss` of every token for this tenant.
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub device_authorization_endpoint: String,
    pub end_session_endpoint: String,
    pub jwks_uri: String,
}

/// What `/common/discovery/instance` answers: where the tenant's discovery document is and which
/// host names are aliases of this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceMetadata {
    pub tenant_discovery_endpoint: String,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The tenant named in the path does not exist (or could not be a tenant at all).
    #[error("tenant '{0}' not found")]
    UnknownTenant(String),
}

pub struct DiscoveryService {
    /// Public base URL without a trailing slash.
    base: String,
    host: String,
    tenants: Arc<dyn TenantLookup>,
    keys: Arc<dyn KeyPublisher>,
}

impl DiscoveryService {
    pub fn new(public_url: &Url, tenants: Arc<dyn TenantLookup>, keys: Arc<dyn KeyPublisher>) -> Self {
        let host = match (public_url.host_str(), public_url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        Self { base: public_url.as_str().trim_end_matches('/').to_owned(), host, tenants, keys }
    }

    /// Resolves the tenant named by a path segment (GUID or name).
    pub fn tenant(&self, segment: &str) -> Result<Arc<Tenant>, DiscoveryError> {
        TenantRef::parse(segment)
            .and_then(|r| self.tenants.find(&r))
            .ok_or_else(|| DiscoveryError::UnknownTenant(truncate(segment)))
    }

    /// `https://HOST/{tenant-guid}/v2.0`: the `iss` of every token this broker issues for `tenant`.
    pub fn issuer_for(&self, tenant: &Tenant) -> String {
        format!("{}/{}/v2.0", self.base, tenant.id)
    }

    /// The tenant whose issuer `issuer` is, if it is one of this broker's.
    pub fn own_issuer_tenant(&self, issuer: &str) -> Option<Arc<Tenant>> {
        let rest = issuer.strip_prefix(&self.base)?.strip_prefix('/')?;
        let segment = rest.strip_suffix("/v2.0")?;
        let tenant = self.tenant(segment).ok()?;
        // Only the tenant's id as `issuer_for` writes it (lower case), not its name or another
        // spelling of the id; compared without writing the issuer out.
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        (tenant.id.as_uuid().hyphenated().encode_lower(&mut id) == segment).then_some(tenant)
    }

    pub fn tenant_endpoints(&self, segment: &str) -> Result<TenantEndpoints, DiscoveryError> {
        let tenant = self.tenant(segment)?;
        let root = format!("{}/{}", self.base, tenant.id);
        Ok(TenantEndpoints {
            issuer: self.issuer_for(&tenant),
            authorization_endpoint: format!("{root}/oauth2/v2.0/authorize"),
            token_endpoint: format!("{root}/oauth2/v2.0/token"),
            device_authorization_endpoint: format!("{root}/oauth2/v2.0/devicecode"),
            end_session_endpoint: format!("{root}/oauth2/v2.0/logout"),
            jwks_uri: format!("{root}/discovery/v2.0/keys"),
            tenant,
        })
    }

    /// The published keys for the tenant, each stamped with the tenant's issuer as Entra does.
    pub fn jwks(&self, segment: &str) -> Result<JwkSet, DiscoveryError> {
        let endpoints = self.tenant_endpoints(segment)?;
        Ok(self.keys.jwks(&endpoints.issuer))
    }

    /// Instance discovery for an authorization endpoint such as
    /// `https://HOST/{tenant}/oauth2/v2.0/authorize`. The tenant is taken from its first path
    /// segment, as Entra does; an absent or unparsable endpoint yields `common`.
    pub fn instance_metadata(&self, authorization_endpoint: Option<&str>) -> InstanceMetadata {
        let tenant = authorization_endpoint
            .and_then(|raw| Url::parse(raw).ok())
            .and_then(|url| url.path_segments()?.next().map(str::to_owned))
            .filter(|segment| !segment.is_empty())
            .unwrap_or_else(|| "common".to_owned());
        InstanceMetadata {
            tenant_discovery_endpoint: format!("{}/{tenant}/v2.0/.well-known/openid-configuration", self.base),
            host: self.host.clone(),
        }
    }

    /// `host[:port]` of the public base URL.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }
}

fn truncate(segment: &str) -> String {
    segment.chars().take(128).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::keys::JwkSet;
    use crate::domain::tenant::{TenantId, TenantName};

    struct OneTenant(Tenant);
    impl TenantLookup for OneTenant {
        fn find(&self, tenant: &TenantRef) -> Option<Arc<Tenant>> {
            match tenant {
                TenantRef::Id(id) => (*id == self.0.id).then(|| Arc::new(self.0.clone())),
                TenantRef::Name(name) => (*name == self.0.name).then(|| Arc::new(self.0.clone())),
            }
        }
    }
    /// A key publisher with no key (for services that only need one to exist).
    pub(crate) struct NoKeys;
    impl KeyPublisher for NoKeys {
        fn jwks(&self, _issuer: &str) -> JwkSet {
            JwkSet { keys: vec![] }
        }
        fn can_sign(&self) -> bool {
            false
        }
    }

    fn service() -> DiscoveryService {
        let tenant = Tenant {
            id: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
            name: TenantName::parse("demo").unwrap(),
            display_name: "Demo".into(),
        };
        let url = Url::parse("https://localhost:8443").unwrap();
        DiscoveryService::new(&url, Arc::new(OneTenant(tenant)), Arc::new(NoKeys))
    }

    #[test]
    fn endpoints_use_the_tenant_guid_even_when_named_by_name() {
        let endpoints = service().tenant_endpoints("demo").unwrap();
        assert_eq!(endpoints.issuer, "https://localhost:8443/5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17/v2.0");
        assert_eq!(
            endpoints.token_endpoint,
            "https://localhost:8443/5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17/oauth2/v2.0/token"
        );
    }

    #[test]
    fn only_the_issuer_as_this_broker_writes_it_is_its_own() {
        let discovery = service();
        let id = "5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17";
        let own = discovery.own_issuer_tenant(&format!("https://localhost:8443/{id}/v2.0"));
        assert_eq!(own.map(|t| t.id.to_string()).as_deref(), Some(id));
        for other in [
            "https://localhost:8443/demo/v2.0".to_owned(),
            format!("https://localhost:8443/{}/v2.0", id.to_uppercase()),
            format!("https://localhost:8443/{id}/v2.0/"),
            format!("https://localhost:8443/{id}"),
            format!("https://elsewhere.example/{id}/v2.0"),
            "https://localhost:8443/00000000-0000-4000-8000-000000000000/v2.0".to_owned(),
        ] {
            assert_eq!(discovery.own_issuer_tenant(&other), None, "{other}");
        }
    }

    #[test]
    fn unknown_tenant_is_an_error_naming_it() {
        assert_eq!(service().tenant_endpoints("nope"), Err(DiscoveryError::UnknownTenant("nope".into())));
    }

    #[test]
    fn instance_metadata_points_at_the_tenant_of_the_authorization_endpoint() {
        let meta = service().instance_metadata(Some("https://localhost:8443/demo/oauth2/v2.0/authorize"));
        assert_eq!(meta.tenant_discovery_endpoint, "https://localhost:8443/demo/v2.0/.well-known/openid-configuration");
        assert_eq!(meta.host, "localhost:8443");
    }
}
