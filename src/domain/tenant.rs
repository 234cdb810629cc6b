//! Tenants: isolated directories, each with its own issuer URL, addressed by GUID or by name.

use std::fmt;

use uuid::Uuid;

/// A tenant's immutable GUID, as it appears in issuer URLs and the `tid` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    pub fn new(id: Uuid) -> Self {
        Self(id)
    }

    pub fn parse(raw: &str) -> Result<Self, TenantError> {
        Uuid::try_parse(raw).map(Self).map_err(|_| TenantError::InvalidId(raw.chars().take(64).collect()))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A tenant's name (`demo`, `contoso.example`): lower-case letters, digits, `.` and `-`,
/// 1-64 characters, starting with a letter or digit. Names are compared case-insensitively, as
/// Entra compares tenant domain names, so they are stored lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(String);

impl TenantName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, TenantError> {
        let name = raw.to_ascii_lowercase();
        let valid_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        let starts_well = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !valid_chars || !starts_well || name.len() > Self::MAX_LEN || Uuid::try_parse(&name).is_ok() {
            return Err(TenantError::InvalidName(raw.chars().take(Self::MAX_LEN).collect()));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a request names a tenant: by GUID or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRef {
    Id(TenantId),
    Name(TenantName),
}

impl TenantRef {
    /// Reads a path segment. `None` when it can be neither a GUID nor a name, which callers answer
    /// exactly like an unknown tenant.
    pub fn parse(segment: &str) -> Option<Self> {
        // Not through `TenantId::parse`, whose error copies the segment for its message.
        match Uuid::try_parse(segment) {
            Ok(id) => Some(Self::Id(TenantId::new(id))),
            Err(_) => TenantName::parse(segment).map(Self::Name).ok(),
        }
    }
}

/// An isolated directory with its own issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: TenantName,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("'{0}' is not a tenant GUID")]
    InvalidId(String),
    #[error("'{0}' is not a valid tenant name (1-64 characters: letters, digits, '.', '-')")]
    InvalidName(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_case_insensitive() {
        assert_eq!(TenantName::parse("Demo").unwrap(), TenantName::parse("demo").unwrap());
    }

    #[test]
    fn tenant_names_reject_path_tricks_and_guids() {
        for bad in ["", "../etc", "a/b", "-lead", "a b", "f1c05000-0000-4000-8000-000000000001"] {
            assert!(TenantName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn tenant_ref_prefers_guid_reading() {
        let id = "f1c05000-0000-4000-8000-000000000001";
        assert!(matches!(TenantRef::parse(id), Some(TenantRef::Id(_))));
        assert!(matches!(TenantRef::parse("demo"), Some(TenantRef::Name(_))));
        assert_eq!(TenantRef::parse("no spaces"), None);
    }
}
