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

/// Why a token this broker is asked to trust as its own was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token was not signed by a key this broker publishes")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
}

/// Verifies the signature of a token this broker signed, from the keys in memory. Claims
/// (issuer, audience, time) are the caller's to check.
pub trait OwnTokenVerifier: Send + Sync {
    fn verify(&self, token: &str) -> Result<super::token::Claims, VerifyError>;
}

/// One signing key as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub kid: String,
    pub alg: String,
    /// `next`, `current`, `previous` or `retired`.
    pub state: &'static str,
    /// From when it signs (if no later key is active by then).
    pub signs_from: time::OffsetDateTime,
    /// For a previous key: until when it stays published.
    pub published_until: Option<time::OffsetDateTime>,
}

/// The running server's signing keys, for operators: their states, and rotation.
#[async_trait::async_trait]
pub trait KeyAdministration: Send + Sync {
    fn statuses(&self) -> Vec<KeyStatus>;
    /// Adds a key: published at once, signing after `keys.prepublish`, or at once with
    /// `immediately` (a suspected compromise). Every replica picks it up.
    async fn rotate(&self, immediately: bool) -> Result<KeyStatus, String>;
}
