//! Assertions: signed JWTs a client presents (a client assertion or an RFC 8693 subject token),
//! parsed without trust first, then verified; and the port to external issuers' keys.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::token::Claims;

/// Asymmetric algorithms accepted in assertions. Never `none`, never an HMAC.
pub const ALLOWED_ALGORITHMS: [&str; 8] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"];

/// The parts of a JOSE header ficus reads. `jku`, `x5u`, `jwk` and `x5c` are never used to find
/// a key: keys come from the issuer's own published JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: String,
    pub kid: Option<String>,
}

/// Why an assertion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the assertion is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the assertion is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error("the algorithm '{0}' is not accepted (asymmetric algorithms only)")]
    Algorithm(String),
    #[error("the issuer is not trusted by any federated credential")]
    UntrustedIssuer { issuer: String, subject: String, audiences: Vec<String> },
    #[error("the signing key '{0}' is not published by the issuer")]
    UnknownKey(String),
    #[error("the signature is invalid")]
    BadSignature,
    #[error("the issuer's keys could not be fetched: {0}")]
    IssuerUnavailable(String),
    #[error("the assertion is not within its valid time range")]
    TimeRange { now: i64, nbf: Option<i64>, exp: Option<i64> },
    #[error("the assertion lives longer than the maximum assertion lifetime")]
    TooLong,
    #[error("the assertion has no '{0}' claim")]
    MissingClaim(&'static str),
}

/// What verifying an external issuer's token can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    #[error("{0}")]
    Unavailable(String),
    #[error("unknown key '{0}'")]
    UnknownKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("algorithm '{0}' not accepted")]
    Algorithm(String),
}

impl From<ExternalError> for AssertionError {
    fn from(e: ExternalError) -> Self {
        match e {
            ExternalError::Unavailable(why) => Self::IssuerUnavailable(why),
            ExternalError::UnknownKey(kid) => Self::UnknownKey(kid),
            ExternalError::BadSignature => Self::BadSignature,
            ExternalError::Algorithm(alg) => Self::Algorithm(alg),
        }
    }
}

/// Verifies a token's signature with an external issuer's published keys.
#[async_trait]
pub trait ExternalVerifier: Send + Sync {
    async fn verify(&self, issuer: &str, token: &str, header: &JoseHeader) -> Result<Claims, ExternalError>;
}

/// An assertion read but not yet trusted.
#[derive(Debug, Clone)]
pub struct UnverifiedAssertion {
    pub header: JoseHeader,
    pub claims: Claims,
}

impl UnverifiedAssertion {
    pub fn parse(raw: &str, max_bytes: usize) -> Result<Self, AssertionError> {
        if raw.len() > max_bytes {
            return Err(AssertionError::TooLarge(max_bytes));
        }
        let mut parts = raw.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AssertionError::Malformed("expected three dot-separated parts"));
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| AssertionError::Malformed("bad base64url"));
        let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&decode(header)?)
            .map_err(|_| AssertionError::Malformed("the header is not JSON"))?;
        let claims: Claims = serde_json::from_slice(&decode(payload)?)
            .map_err(|_| AssertionError::Malformed("the payload is not JSON"))?;
        if header.contains_key("crit") {
            return Err(AssertionError::Malformed("critical header parameters are not supported"));
        }
        let alg = header.get("alg").and_then(|v| v.as_str()).ok_or(AssertionError::Malformed("no alg"))?.to_owned();
        if !ALLOWED_ALGORITHMS.contains(&alg.as_str()) {
            return Err(AssertionError::Algorithm(alg.chars().take(32).collect()));
        }
        let kid = header.get("kid").and_then(|v| v.as_str()).map(str::to_owned);
        Ok(Self { header: JoseHeader { alg, kid }, claims })
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(|v| v.as_str())
    }

    /// `aud` as a list (it may be a string or an array).
    pub fn audiences(&self) -> Vec<String> {
        audiences(&self.claims)
    }
}

pub fn audiences(claims: &Claims) -> Vec<String> {
    match claims.get("aud") {
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        Some(serde_json::Value::Array(many)) => many.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// A verified assertion: who it speaks for, to whom, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub expires_at: i64,
    /// Every verified claim, for flexible credentials' expressions (shared, not copied, by the
    /// verified-assertion cache).
    pub claims: std::sync::Arc<Claims>,
    /// The token last issued for it ([`IssuedMemo`]).
    pub issued: super::issued_token::IssuedMemo,
}

/// Verified assertions by their exact text: a reused assertion costs no signature check.
pub trait VerifiedAssertionCache: Send + Sync {
    /// The assertion verified earlier with exactly this text, if any. Shared, not copied: a hit
    /// costs no allocation.
    fn get(&self, raw: &str) -> Option<std::sync::Arc<VerifiedAssertion>>;
    fn insert(&self, raw: &str, assertion: std::sync::Arc<VerifiedAssertion>);
    fn record(&self, hit: bool);
}

/// Checks `exp` (required), `nbf` and `iat` against `now` with `leeway`, and the lifetime bound.
pub fn check_times(claims: &Claims, now: i64, leeway: i64, max_lifetime: i64) -> Result<i64, AssertionError> {
    let number = |name: &str| claims.get(name).and_then(|v| v.as_i64());
    let (exp, nbf, iat) = (number("exp"), number("nbf"), number("iat"));
    let out_of_range = || AssertionError::TimeRange { now, nbf, exp };
    let exp = exp.ok_or_else(out_of_range)?;
    if exp + leeway <= now || nbf.is_some_and(|nbf| nbf - leeway > now) || iat.is_some_and(|iat| iat - leeway > now) {
        return Err(out_of_range());
    }
    let start = nbf.or(iat).unwrap_or(now);
    if exp - start > max_lifetime {
        return Err(AssertionError::TooLong);
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> Claims {
        json.as_object().unwrap().clone()
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn none_and_hmac_algorithms_are_refused_before_anything_else() {
        for alg in ["none", "HS256", "HS512", "None"] {
            let raw = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(UnverifiedAssertion::parse(&raw, 16384).unwrap_err(), AssertionError::Algorithm(alg.into()));
        }
    }

    #[test]
    fn oversized_and_malformed_assertions_are_refused() {
        assert_eq!(UnverifiedAssertion::parse(&"a".repeat(20000), 16384).unwrap_err(), AssertionError::TooLarge(16384));
        assert!(matches!(UnverifiedAssertion::parse("a.b", 16384), Err(AssertionError::Malformed(_))));
        let crit = token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}");
        assert!(matches!(UnverifiedAssertion::parse(&crit, 16384), Err(AssertionError::Malformed(_))));
    }

    #[test]
    fn times_are_checked_with_leeway_and_a_lifetime_bound() {
        let now = 1_000_000;
        assert_eq!(check_times(&claims(serde_json::json!({"exp": now + 60})), now, 300, 3600), Ok(now + 60));
        assert!(check_times(&claims(serde_json::json!({"exp": now - 301})), now, 300, 3600).is_err());
        assert!(check_times(&claims(serde_json::json!({"exp": now - 299})), now, 300, 3600).is_ok(), "within leeway");
        assert!(check_times(&claims(serde_json::json!({"exp": now + 60, "nbf": now + 400})), now, 300, 3600).is_err());
        assert_eq!(
            check_times(&claims(serde_json::json!({"exp": now + 7200, "iat": now})), now, 300, 3600),
            Err(AssertionError::TooLong)
        );
        assert!(check_times(&claims(serde_json::json!({})), now, 300, 3600).is_err(), "exp is required");
    }
}
