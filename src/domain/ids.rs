//! GUID identifiers. Distinct types keep an application's object id from being passed where its
//! client id (appId) is expected, and vice versa.

use std::fmt;

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {what} (expected a GUID)")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
}

macro_rules! guid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const WHAT: &'static str = $what;

            pub fn new(id: Uuid) -> Self {
                Self(id)
            }

            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn parse(raw: &str) -> Result<Self, IdError> {
                Uuid::try_parse(raw.trim())
                    .map(Self)
                    .map_err(|_| IdError { what: $what, value: raw.chars().take(64).collect() })
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

guid_id!(
    /// A directory object's id: applications, service principals, managed identities' principals,
    /// federated credentials, role assignments, app roles.
    ObjectId,
    "object id"
);
guid_id!(
    /// A client id: an application's `appId` or a managed identity's `clientId`.
    ClientId,
    "client id"
);

/// A stable id for the `kind` object named `name` under `namespace` (UUIDv5): the same on every
/// machine, so declared objects (the world file, the admin application) are created once.
pub fn derived_id(namespace: Uuid, kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(&namespace, format!("{kind}/{name}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_guids_in_any_case_and_reject_the_rest() {
        let id = ObjectId::parse("5E2D1C0A-7F3B-4E8D-9A61-0C4B8F2E9D17").unwrap();
        assert_eq!(id.to_string(), "5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17");
        let err = ClientId::parse("not-a-guid").unwrap_err();
        assert_eq!(err.to_string(), "'not-a-guid' is not a valid client id (expected a GUID)");
    }
}
