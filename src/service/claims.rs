//! The claims of app-only access tokens (PROTOCOL.md), shared by every grant.

use crate::domain::ids::ObjectId;
use crate::domain::tenant::TenantId;
use crate::domain::token::Claims;

/// What an access token says.
#[derive(Debug, Clone)]
pub struct AccessToken<'a> {
    pub issuer: String,
    pub tenant: TenantId,
    /// The resource as the client named it (identifier URI or appId).
    pub audience: &'a str,
    /// The client: an application's appId or a managed identity's client id.
    pub client_id: String,
    /// The client's service principal or the managed identity's principal.
    pub principal_id: ObjectId,
    pub roles: Vec<String>,
    /// `"1"` for a client secret, `"2"` for an assertion, certificate or managed identity.
    pub acr: &'static str,
    /// The managed identity's resource id (`xms_mirid`).
    pub mirid: Option<String>,
    pub issued_at: i64,
    pub lifetime_secs: i64,
    pub unique_id: String,
}

impl AccessToken<'_> {
    pub fn expires_at(&self) -> i64 {
        self.issued_at + self.lifetime_secs
    }

    pub fn claims(&self) -> Claims {
        let mut claims = Claims::new();
        let mut put = |k: &str, v: serde_json::Value| {
            claims.insert(k.to_owned(), v);
        };
        put("aud", self.audience.into());
        put("iss", self.issuer.clone().into());
        put("iat", self.issued_at.into());
        put("nbf", self.issued_at.into());
        put("exp", self.expires_at().into());
        put("azp", self.client_id.clone().into());
        put("appid", self.client_id.clone().into());
        put("azpacr", self.acr.into());
        put("appidacr", self.acr.into());
        put("oid", self.principal_id.to_string().into());
        put("sub", self.principal_id.to_string().into());
        put("tid", self.tenant.to_string().into());
        if !self.roles.is_empty() {
            put("roles", self.roles.clone().into());
        }
        if let Some(mirid) = &self.mirid {
            put("xms_mirid", mirid.clone().into());
        }
        put("idtyp", "app".into());
        put("uti", self.unique_id.clone().into());
        put("ver", "2.0".into());
        claims
    }
}
