//! JSON Web Keys as Entra publishes them (`kty`, `use`, `kid`, `x5t`, `n`/`e` or `crv`/`x`/`y`,
//! `x5c`, `issuer`), and the port through which services read the published set.

use serde::Serialize;

/// One key of a JWKS document.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub kid: String,
    pub x5t: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub alg: &'static str,
    pub x5c: Vec<String>,
    pub issuer: String,
}

/// A JWKS document.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// Publishes the verification keys of tokens this broker signs.
pub trait KeyPublisher: Send + Sync {
    /// The keys verifiers must know now (current, next, previous), stamped with `issuer`.
    fn jwks(&self, issuer: &str) -> JwkSet;
    /// Whether a key is active now, i.e. tokens can be signed.
    fn can_sign(&self) -> bool;
}
