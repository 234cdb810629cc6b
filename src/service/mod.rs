//! Use cases. Each service takes domain values and ports and returns domain values or its own
//! error enum; none of them knows about HTTP, SQL, caches or key files.

pub mod admin;
pub mod admin_auth;
pub mod assertion_check;
pub mod claims;
pub mod console;
pub mod discovery;
pub mod faults;
pub mod health;
pub mod managed_identity;
pub mod mint;
pub mod token;
pub mod world;

pub use discovery::{DiscoveryError, DiscoveryService, InstanceMetadata, TenantEndpoints};
