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
use crate::domain::keys::{JwkSet, KeyPublisher};
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
