//! Azure resource ids, compute resources (VMs, web apps, slots) with their `identity` block, and
//! managed identities (system-assigned: one per compute resource, living and dying with it;
//! user-assigned: standalone, assignable to many resources).

use std::fmt;

use super::ids::{ClientId, ObjectId};
use super::tenant::TenantId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "'{0}' is not a resource id this broker knows (virtual machine, web app, web app slot or user-assigned identity)"
    )]
    InvalidId(String),
    #[error("identity type '{0}' is invalid: use None, SystemAssigned, UserAssigned or 'SystemAssigned, UserAssigned'")]
    InvalidIdentityType(String),
    #[error("identity type {0} needs at least one user-assigned identity")]
    MissingUserIdentities(&'static str),
    #[error("identity type {0} does not take user-assigned identities")]
    UnexpectedUserIdentities(&'static str),
    #[error("'{0}' is not an IP address or CIDR network")]
    InvalidNetwork(String),
}

/// What a resource id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    VirtualMachine,
    WebApp,
    WebAppSlot,
    UserAssignedIdentity,
}

impl ResourceKind {
    pub fn is_compute(self) -> bool {
        !matches!(self, Self::UserAssignedIdentity)
    }

    /// ARM's `type` string.
    pub fn arm_type(self) -> &'static str {
        match self {
            Self::VirtualMachine => "Microsoft.Compute/virtualMachines",
            Self::WebApp => "Microsoft.Web/sites",
            Self::WebAppSlot => "Microsoft.Web/sites/slots",
            Self::UserAssignedIdentity => "Microsoft.ManagedIdentity/userAssignedIdentities",
        }
    }
}

/// An ARM resource id: `/subscriptions/{sub}/resourceGroups/{rg}/providers/{type}/{name}`.
/// Written back in canonical casing; compared case-insensitively, as ARM does.
#[derive(Debug, Clone)]
pub struct ResourceId {
    canonical: String,
    key: String,
    kind: ResourceKind,
    subscription: uuid::Uuid,
    resource_group: String,
    name: String,
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for ResourceId {}
impl std::hash::Hash for ResourceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

fn valid_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.ends_with('.')
}

impl ResourceId {
    pub fn parse(raw: &str) -> Result<Self, ResourceError> {
        let invalid = || ResourceError::InvalidId(raw.chars().take(300).collect());
        let parts: Vec<&str> = raw.trim_end_matches('/').split('/').collect();
        let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        let (kind, name) = match lower.as_slice() {
            ["", "subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", "virtualmachines", _] => {
                (ResourceKind::VirtualMachine, parts[8].to_owned())
            }
            ["", "subscriptions", _, "resourcegroups", _, "providers", "microsoft.web", "sites", _] => {
                (ResourceKind::WebApp, parts[8].to_owned())
            }
            ["", "subscriptions", _, "resourcegroups", _, "providers", "microsoft.web", "sites", _, "slots", _] => {
                if !valid_name(parts[10], 64) {
                    return Err(invalid());
                }
                (ResourceKind::WebAppSlot, format!("{}/slots/{}", parts[8], parts[10]))
            }
            [
                "",
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.managedidentity",
                "userassignedidentities",
                _,
            ] => (ResourceKind::UserAssignedIdentity, parts[8].to_owned()),
            _ => return Err(invalid()),
        };
        let subscription = uuid::Uuid::try_parse(parts[2]).map_err(|_| invalid())?;
        let resource_group = parts[4].to_owned();
        let base_name = name.split('/').next().unwrap_or_default();
        if !valid_name(&resource_group, 90) || !valid_name(base_name, 64) {
            return Err(invalid());
        }
        Ok(Self::build(kind, subscription, resource_group, name))
    }

    /// The id of a resource of `kind` named `name` (`app/slots/slot` for slots).
    pub fn new(
        kind: ResourceKind,
        subscription: uuid::Uuid,
        resource_group: &str,
        name: &str,
    ) -> Result<Self, ResourceError> {
        let path = match kind {
            ResourceKind::WebAppSlot => {
                let (app, slot) = name.split_once("/slots/").unwrap_or((name, ""));
                format!("Microsoft.Web/sites/{app}/slots/{slot}")
            }
            other => format!("{}/{name}", other.arm_type()),
        };
        Self::parse(&format!("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{path}"))
    }

    fn build(kind: ResourceKind, subscription: uuid::Uuid, resource_group: String, name: String) -> Self {
        let path = match kind {
            ResourceKind::WebAppSlot => {
                let (app, slot) = name.split_once("/slots/").unwrap_or((&name, ""));
                format!("Microsoft.Web/sites/{app}/slots/{slot}")
            }
            other => format!("{}/{name}", other.arm_type()),
        };
        let canonical = format!("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{path}");
        let key = canonical.to_ascii_lowercase();
        Self { canonical, key, kind, subscription, resource_group, name }
    }

    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Lower-cased: the form to index and compare by.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    pub fn subscription(&self) -> uuid::Uuid {
        self.subscription
    }

    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }

    /// The resource's name (`app/slots/slot` for a slot).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `xms_mirid` as Entra writes it for a system-assigned identity: `resourcegroups` in lower case.
    pub fn mirid(&self) -> String {
        self.canonical.replacen("/resourceGroups/", "/resourcegroups/", 1)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// The `identity.type` of a compute resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityType {
    None,
    SystemAssigned,
    UserAssigned,
    SystemAndUserAssigned,
}

impl IdentityType {
    pub fn parse(raw: &str) -> Result<Self, ResourceError> {
        let normal: String = raw.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        match normal.as_str() {
            "none" => Ok(Self::None),
            "systemassigned" => Ok(Self::SystemAssigned),
            "userassigned" => Ok(Self::UserAssigned),
            "systemassigned,userassigned" => Ok(Self::SystemAndUserAssigned),
            _ => Err(ResourceError::InvalidIdentityType(raw.chars().take(64).collect())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::SystemAssigned => "SystemAssigned",
            Self::UserAssigned => "UserAssigned",
            Self::SystemAndUserAssigned => "SystemAssigned, UserAssigned",
        }
    }

    pub fn has_system(self) -> bool {
        matches!(self, Self::SystemAssigned | Self::SystemAndUserAssigned)
    }

    pub fn has_user(self) -> bool {
        matches!(self, Self::UserAssigned | Self::SystemAndUserAssigned)
    }

    /// Checks the user-assigned list fits the type.
    pub fn check_user_identities(self, count: usize) -> Result<(), ResourceError> {
        match (self.has_user(), count) {
            (true, 0) => Err(ResourceError::MissingUserIdentities(self.as_str())),
            (false, n) if n > 0 => Err(ResourceError::UnexpectedUserIdentities(self.as_str())),
            _ => Ok(()),
        }
    }

    pub fn from_parts(system: bool, user: bool) -> Self {
        match (system, user) {
            (false, false) => Self::None,
            (true, false) => Self::SystemAssigned,
            (false, true) => Self::UserAssigned,
            (true, true) => Self::SystemAndUserAssigned,
        }
    }
}

/// A managed identity's principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedIdentity {
    pub principal_id: ObjectId,
    pub client_id: ClientId,
    pub tenant_id: TenantId,
    /// For a user-assigned identity its own id; for a system-assigned one its compute resource's.
    pub resource_id: ResourceId,
}

impl ManagedIdentity {
    pub fn is_user_assigned(&self) -> bool {
        self.resource_id.kind() == ResourceKind::UserAssignedIdentity
    }
}

/// A VM, web app or slot with its identity block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeResource {
    pub id: ResourceId,
    pub tenant_id: TenantId,
    pub system_identity: Option<ManagedIdentity>,
    /// User-assigned identities assigned to it, by resource id.
    pub user_identities: Vec<ResourceId>,
    /// Networks it calls from: the IMDS endpoint picks the resource by the caller's address.
    pub addresses: Vec<ipnet::IpNet>,
    /// The App Service endpoint's `X-IDENTITY-HEADER`; present while it has an identity.
    pub identity_header: Option<IdentityHeader>,
}

/// The per-resource secret of the App Service endpoint. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdentityHeader(String);

/// Hashes and compares as its text, so maps keyed by it can be searched with a `&str`.
impl std::borrow::Borrow<str> for IdentityHeader {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl IdentityHeader {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdentityHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityHeader(<redacted>)")
    }
}

/// Parses a network: an address (a host route) or a CIDR, kept in canonical form.
pub fn parse_network(raw: &str) -> Result<ipnet::IpNet, ResourceError> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| ResourceError::InvalidNetwork(raw.chars().take(64).collect()))
}

impl ComputeResource {
    pub fn identity_type(&self) -> IdentityType {
        IdentityType::from_parts(self.system_identity.is_some(), !self.user_identities.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9";

    #[test]
    fn resource_ids_parse_case_insensitively_into_canonical_form() {
        let id = ResourceId::parse(&format!(
            "/SUBSCRIPTIONS/{SUB}/resourcegroups/rg-demo/providers/microsoft.compute/VIRTUALMACHINES/vm-demo"
        ))
        .unwrap();
        assert_eq!(id.kind(), ResourceKind::VirtualMachine);
        assert_eq!(
            id.as_str(),
            format!("/subscriptions/{SUB}/resourceGroups/rg-demo/providers/Microsoft.Compute/virtualMachines/vm-demo")
        );
        assert_eq!(
            id.mirid(),
            format!("/subscriptions/{SUB}/resourcegroups/rg-demo/providers/Microsoft.Compute/virtualMachines/vm-demo")
        );
        let same = ResourceId::parse(id.as_str()).unwrap();
        assert_eq!(id, same);
    }

    #[test]
    fn slots_are_named_app_slots_slot() {
        let id = ResourceId::new(ResourceKind::WebAppSlot, SUB.parse().unwrap(), "rg", "web/slots/staging").unwrap();
        assert_eq!(id.name(), "web/slots/staging");
        assert!(id.as_str().ends_with("/providers/Microsoft.Web/sites/web/slots/staging"));
    }

    #[test]
    fn foreign_or_malformed_ids_are_refused() {
        for bad in [
            "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm".to_owned(),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x"),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/bad name"),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/../x"),
            String::new(),
        ] {
            assert!(ResourceId::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_parse_as_addresses_or_cidrs_in_canonical_form() {
        assert_eq!(parse_network("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parse_network("10.1.2.3/24").unwrap().to_string(), "10.1.2.0/24");
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("vm-demo").is_err());
    }

    #[test]
    fn identity_headers_are_redacted_in_debug() {
        assert_eq!(format!("{:?}", IdentityHeader::new("s3cret".into())), "IdentityHeader(<redacted>)");
    }

    #[test]
    fn identity_types_parse_as_arm_writes_them() {
        assert_eq!(IdentityType::parse("SystemAssigned, UserAssigned").unwrap(), IdentityType::SystemAndUserAssigned);
        assert_eq!(IdentityType::parse("systemassigned").unwrap(), IdentityType::SystemAssigned);
        assert!(IdentityType::parse("Both").is_err());
        assert!(IdentityType::UserAssigned.check_user_identities(0).is_err());
        assert!(IdentityType::SystemAssigned.check_user_identities(1).is_err());
    }
}
