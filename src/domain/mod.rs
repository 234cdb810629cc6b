//! The vocabulary of ficus and its rules, free of any framework.
//!
//! This module owns the types every other layer speaks in (tenants, time, signed tokens) and the
//! ports (traits) through which services reach storage, keys and the clock. It must not import
//! axum, sqlx, moka, reqwest or governor: adapters in `store`, `signing` and `upstream` implement
//! the ports, and only `startup` knows which adapter stands behind which port.

pub mod activity;
pub mod application;
pub mod assertion;
pub mod claims_expression;
pub mod clock;
pub mod directory;
pub mod fault;
pub mod federated_credential;
pub mod ids;
pub mod issued_token;
pub mod keys;
pub mod ports;
pub mod rate_limit;
pub mod resource;
pub mod role_assignment;
pub mod sign_in;
pub mod tenant;
pub mod token;
