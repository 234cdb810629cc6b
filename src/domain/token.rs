//! Signed tokens and their claims, as values the core can pass around without leaking them.

use std::fmt;
use std::sync::Arc;

/// The claims of a token to sign: a JSON object. Built by services, signed by the key ring.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// A compact-serialised JWS. Its `Debug` never shows the token, so it cannot reach a log by accident.
/// Shared, not copied: a token served from the cache is the cached one.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedJwt {
    compact: Arc<str>,
    /// Checked once, when the token was made: see [`SignedJwt::is_json_plain`].
    json_plain: bool,
}

impl SignedJwt {
    pub fn new(compact: String) -> Self {
        let json_plain = compact.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        Self { compact: compact.into(), json_plain }
    }

    /// Whether the token is made only of base64url and dots (as every compact JWS is), so JSON
    /// carries it as it is: an answer served many times from the cache writes it without escaping.
    pub fn is_json_plain(&self) -> bool {
        self.json_plain
    }

    /// The token itself, for the one place that sends it to its holder.
    pub fn expose(&self) -> &str {
        &self.compact
    }
}

impl fmt::Debug for SignedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedJwt(<{} bytes redacted>)", self.compact.len())
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

    #[test]
    fn only_base64url_and_dots_are_written_to_json_as_they_are() {
        assert!(SignedJwt::new("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2-l_n".into()).is_json_plain());
        for odd in ["a\"b", "a\\b", "a\nb", "a b", "a+b/c="] {
            assert!(!SignedJwt::new(odd.into()).is_json_plain(), "{odd:?}");
        }
    }
}
