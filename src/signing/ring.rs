//! The key ring: which key signs now, which keys are published, and the live handle the server
//! signs through.
//!
//! States follow from activation times alone. Sorted by activation, each key signs from its own
//! activation until the next key's; it then stays published for `retire_after` (the longest token
//! lifetime plus clock-skew leeway), so every token it signed still verifies until it expires.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use super::key::SigningKey;
use crate::domain::clock::Clock;
use crate::domain::keys::{JwkSet, KeyPublisher, OwnTokenVerifier, VerifyError};
use crate::domain::ports::{SignError, TokenSigner};
use crate::domain::token::{Claims, SignedJwt};

/// A key with its schedule.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub key: Arc<SigningKey>,
    pub created_at: OffsetDateTime,
    /// From this instant the key may sign (if no later key is active).
    pub activate_at: OffsetDateTime,
}

/// Where a key stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published so verifiers learn it, not signing yet.
    Next,
    /// The key that signs.
    Current,
    /// Superseded; published until `published_until` so its tokens still verify.
    Previous { published_until: OffsetDateTime },
    /// No longer published; safe to delete.
    Retired,
}

impl KeyState {
    pub fn is_published(self) -> bool {
        !matches!(self, Self::Retired)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Current => "current",
            Self::Previous { .. } => "previous",
            Self::Retired => "retired",
        }
    }
}

/// An immutable set of keys with their schedule.
#[derive(Debug, Clone)]
pub struct KeyRing {
    entries: Vec<KeyEntry>,
    retire_after: Duration,
}

impl KeyRing {
    pub fn new(mut entries: Vec<KeyEntry>, retire_after: Duration) -> Self {
        entries.sort_by_key(|e| (e.activate_at, e.created_at));
        Self { entries, retire_after }
    }

    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// Every key with its state at `now`, in activation order.
    pub fn states(&self, now: OffsetDateTime) -> Vec<(&KeyEntry, KeyState)> {
        let current = self.current_index(now);
        self.entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let state = match current {
                    Some(c) if i == c => KeyState::Current,
                    Some(c) if i < c => {
                        let superseded_at = self.entries[i + 1].activate_at;
                        let published_until = superseded_at + self.retire_after;
                        if now < published_until { KeyState::Previous { published_until } } else { KeyState::Retired }
                    }
                    _ => KeyState::Next,
                };
                (entry, state)
            })
            .collect()
    }

    fn current_index(&self, now: OffsetDateTime) -> Option<usize> {
        self.entries.iter().rposition(|e| e.activate_at <= now)
    }

    pub fn current(&self, now: OffsetDateTime) -> Option<&KeyEntry> {
        self.current_index(now).map(|i| &self.entries[i])
    }

    /// The JWKS for a tenant whose issuer is `issuer`: current key first, then next, then previous.
    pub fn jwks(&self, now: OffsetDateTime, issuer: &str) -> JwkSet {
        let mut published: Vec<_> = self.states(now).into_iter().filter(|(_, s)| s.is_published()).collect();
        published.sort_by_key(|(_, s)| match s {
            KeyState::Current => 0,
            KeyState::Next => 1,
            _ => 2,
        });
        JwkSet { keys: published.into_iter().map(|(e, _)| e.key.jwk(issuer)).collect() }
    }

    /// Signs `claims` with the key current at `now`.
    pub fn sign(&self, now: OffsetDateTime, claims: &Claims) -> Result<SignedJwt, SignError> {
        let key = &self.current(now).ok_or(SignError::NoActiveKey)?.key;
        let payload = serde_json::to_vec(claims).map_err(|e| SignError::Claims(e.to_string()))?;
        let header = key.header_b64();
        let mut compact = String::with_capacity(header.len() + payload.len() * 4 / 3 + 400);
        compact.push_str(header);
        compact.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut compact);
        let signature = key.sign(compact.as_bytes()).map_err(|_| SignError::Crypto)?;
        compact.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut compact);
        Ok(SignedJwt::new(compact))
    }
}

/// Largest token `verify` looks at; anything longer is refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

impl KeyRing {
    /// Verifies a compact JWS signed by one of the keys published at `now` and returns its claims.
    /// The key is found by `kid` among our own keys only; `jku`, `x5u` and embedded `jwk` headers
    /// are never followed, `crit` is refused, and `alg` must be the key's own algorithm.
    pub fn verify(&self, now: OffsetDateTime, token: &str) -> Result<Claims, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed);
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| VerifyError::Malformed);
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&decode(header)?).map_err(|_| VerifyError::Malformed)?;
        if header.contains_key("crit") {
            return Err(VerifyError::Malformed);
        }
        let alg = header.get("alg").and_then(|v| v.as_str()).ok_or(VerifyError::Malformed)?;
        let kid = header.get("kid").and_then(|v| v.as_str()).ok_or(VerifyError::UnknownKey)?;
        let key = self
            .states(now)
            .into_iter()
            .find(|(entry, state)| state.is_published() && entry.key.kid() == kid)
            .map(|(entry, _)| entry.key.clone())
            .ok_or(VerifyError::UnknownKey)?;
        if alg != key.alg().as_str() {
            return Err(VerifyError::Algorithm);
        }
        let signed = &token[..token.len() - signature.len() - 1];
        if !key.verify(signed.as_bytes(), &decode(signature)?) {
            return Err(VerifyError::BadSignature);
        }
        serde_json::from_slice(&decode(payload)?).map_err(|_| VerifyError::Malformed)
    }
}

/// The server's live key ring: swapped whole when the key store changes, read without locks.
#[derive(Debug, Clone)]
pub struct KeyRingHandle {
    ring: Arc<ArcSwap<KeyRing>>,
    clock: Arc<dyn Clock>,
}

impl KeyRingHandle {
    pub fn new(ring: KeyRing, clock: Arc<dyn Clock>) -> Self {
        Self { ring: Arc::new(ArcSwap::from_pointee(ring)), clock }
    }

    pub fn replace(&self, ring: KeyRing) {
        self.ring.store(Arc::new(ring));
    }

    pub fn snapshot(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }
}

impl KeyPublisher for KeyRingHandle {
    fn jwks(&self, issuer: &str) -> JwkSet {
        self.ring.load().jwks(self.clock.now(), issuer)
    }

    fn can_sign(&self) -> bool {
        self.ring.load().current(self.clock.now()).is_some()
    }
}

impl OwnTokenVerifier for KeyRingHandle {
    fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        self.ring.load().verify(self.clock.now(), token)
    }
}

impl TokenSigner for KeyRingHandle {
    fn sign(&self, claims: &Claims) -> Result<SignedJwt, SignError> {
        self.ring.load().sign(self.clock.now(), claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::key::Algorithm;
    use time::macros::datetime;

    const HOUR: Duration = Duration::from_secs(3600);

    fn entry(activate_at: OffsetDateTime) -> KeyEntry {
        let generated = SigningKey::generate(Algorithm::ES256, activate_at).unwrap();
        KeyEntry { key: Arc::new(generated.key), created_at: activate_at, activate_at }
    }

    fn labels(ring: &KeyRing, now: OffsetDateTime) -> Vec<&'static str> {
        ring.states(now).into_iter().map(|(_, s)| s.label()).collect()
    }

    #[test]
    fn key_states_follow_activation_times_and_retirement() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let ring = KeyRing::new(vec![entry(t0), entry(t0 + 2 * HOUR)], HOUR);
        assert_eq!(labels(&ring, t0), ["current", "next"]);
        assert_eq!(labels(&ring, t0 + 2 * HOUR), ["previous", "current"]);
        assert_eq!(labels(&ring, t0 + 3 * HOUR - Duration::from_secs(1)), ["previous", "current"]);
        assert_eq!(labels(&ring, t0 + 3 * HOUR), ["retired", "current"]);
    }

    #[test]
    fn no_key_signs_before_any_is_active() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let ring = KeyRing::new(vec![entry(t0)], HOUR);
        let result = ring.sign(t0 - HOUR, &Claims::new());
        assert!(matches!(result, Err(SignError::NoActiveKey)));
    }

    #[test]
    fn own_tokens_verify_and_tampering_or_foreign_keys_do_not() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let ring = KeyRing::new(vec![entry(t0)], HOUR);
        let mut claims = Claims::new();
        claims.insert("sub".into(), "x".into());
        let token = ring.sign(t0, &claims).unwrap();
        assert_eq!(ring.verify(t0, token.expose()).unwrap(), claims);

        let (head, rest) = token.expose().split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        assert_eq!(ring.verify(t0, &format!("{head}.{forged_payload}.{sig}")), Err(VerifyError::BadSignature));

        let other = KeyRing::new(vec![entry(t0)], HOUR);
        assert_eq!(other.verify(t0, token.expose()), Err(VerifyError::UnknownKey));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), forged_payload);
        assert!(ring.verify(t0, &none).is_err());
        assert_eq!(ring.verify(t0, "a.b"), Err(VerifyError::Malformed));
        assert_eq!(ring.verify(t0, &"a".repeat(MAX_TOKEN_BYTES + 1)), Err(VerifyError::Malformed));
    }

    #[test]
    fn a_header_naming_another_algorithm_for_our_key_is_refused() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let ring = KeyRing::new(vec![entry(t0)], HOUR);
        let kid = ring.entries()[0].key.kid().to_owned();
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#));
        let token = format!("{header}.{}.c2ln", URL_SAFE_NO_PAD.encode(b"{}"));
        assert_eq!(ring.verify(t0, &token), Err(VerifyError::Algorithm));
    }

    #[test]
    fn jwks_lists_current_key_first() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let ring = KeyRing::new(vec![entry(t0), entry(t0 + HOUR), entry(t0 + 2 * HOUR)], HOUR);
        let now = t0 + HOUR;
        let current = ring.current(now).unwrap().key.kid().to_owned();
        let jwks = ring.jwks(now, "https://issuer");
        assert_eq!(jwks.keys.len(), 3);
        assert_eq!(jwks.keys[0].kid, current);
    }
}
