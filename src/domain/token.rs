//! Signed tokens and their claims, as values the core can pass around without leaking them.

use std::fmt;

/// The claims of a token to sign: a JSON object. Built by services, signed by the key ring.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// A compact-serialised JWS. Its `Debug` never shows the token, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedJwt(String);

impl SignedJwt {
    pub fn new(compact: String) -> Self {
        Self(compact)
    }

    /// The token itself, for the one place that sends it to its holder.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SignedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedJwt(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_token() {
        let token = SignedJwt::new("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".into());
        let shown = format!("{token:?}");
        assert!(!shown.contains("eyJ"), "{shown}");
    }
}
