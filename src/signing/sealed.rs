//! The sealed key store, for cluster mode: every replica reads the same signing keys from the
//! shared database ([`SealedKeyStorage`]), each private key sealed with AES-256-GCM under a
//! key-encryption key ([`Kek`]) that replicas read from `keys.kek_file` or `FICUS_KEYS__KEK` and
//! the database never holds. A dump of the database therefore yields no usable key.
//!
//! The sealed bytes are `nonce (12) || ciphertext || tag (16)`; the additional authenticated data
//! binds them to their record's kid and algorithm, so a sealed key copied into another row fails to
//! open. Each record names the key-encryption key that sealed it by an identifier derived from it,
//! so a replica given the wrong key says so instead of reporting a corrupt key.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;

use super::key::{Algorithm, SigningKey};
use super::ring::KeyEntry;
use super::store::{KeyStore, KeyStoreError, Rotation, generate};
use crate::domain::ports::{SealedKeyRecord, SealedKeyStorage};

/// Attempts at a compare-and-set before a rotation gives up (only another rotation racing this
/// one, over and over, makes it fail).
const ATTEMPTS: usize = 5;

/// A key-encryption key: 32 bytes. Its `Debug` shows its identifier only.
pub struct Kek {
    key: LessSafeKey,
    id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KekError {
    #[error("must be 32 random bytes in base64 (for instance from `openssl rand -base64 32`): {0}")]
    Format(String),
}

impl Kek {
    /// Parses the base64 text of a 32-byte key (surrounding whitespace ignored).
    pub fn parse(encoded: &str) -> Result<Self, KekError> {
        let bytes = STANDARD.decode(encoded.trim()).map_err(|e| KekError::Format(format!("not base64 ({e})")))?;
        if bytes.len() != 32 {
            return Err(KekError::Format(format!("found {} bytes", bytes.len())));
        }
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(b"ficus key-encryption key id\0");
        context.update(&bytes);
        let id = context.finish().as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KekError::Format("rejected".into()))?;
        Ok(Self { key: LessSafeKey::new(key), id })
    }

    /// A short identifier derived from the key (a one-way hash: it reveals nothing of the key).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn seal(&self, kid: &str, alg: Algorithm, plaintext: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let failed = || KeyStoreError::Sealed { kid: kid.to_owned(), reason: "sealing failed".into() };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| failed())?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(kid, alg)), &mut sealed)
            .map_err(|_| failed())?;
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        Ok(out)
    }

    fn open(&self, kid: &str, alg: Algorithm, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self.key.open_in_place(nonce, Aad::from(aad(kid, alg)), &mut buffer).ok()?;
        Some(plaintext.to_vec())
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

fn aad(kid: &str, alg: Algorithm) -> Vec<u8> {
    format!("ficus signing key\0{kid}\0{}", alg.as_str()).into_bytes()
}

/// The key store of cluster mode.
pub struct SealedKeyStore {
    storage: Arc<dyn SealedKeyStorage>,
    kek: Arc<Kek>,
}

impl SealedKeyStore {
    pub fn new(storage: Arc<dyn SealedKeyStorage>, kek: Arc<Kek>) -> Self {
        Self { storage, kek }
    }

    fn open_all(&self, records: &[SealedKeyRecord]) -> Result<Vec<KeyEntry>, KeyStoreError> {
        records.iter().map(|record| self.open_record(record)).collect()
    }

    fn open_record(&self, record: &SealedKeyRecord) -> Result<KeyEntry, KeyStoreError> {
        let refuse = |reason: String| KeyStoreError::Sealed { kid: record.kid.clone(), reason };
        let alg = Algorithm::parse(&record.alg).ok_or_else(|| refuse(format!("unknown algorithm {:?}", record.alg)))?;
        if record.kek_id != self.kek.id {
            return Err(refuse(format!(
                "sealed under key-encryption key {}, but this process has {}; every replica needs the same keys.kek_file or FICUS_KEYS__KEK",
                record.kek_id, self.kek.id
            )));
        }
        let pkcs8 = self.kek.open(&record.kid, alg, &record.sealed_key).ok_or_else(|| {
            refuse("the sealed private key fails authentication (altered, or copied from another record)".into())
        })?;
        let key = SigningKey::from_parts(alg, &pkcs8, record.certificate.clone()).map_err(|e| refuse(e.to_string()))?;
        if key.kid() != record.kid {
            return Err(refuse(format!("the unsealed key's thumbprint is {}", key.kid())));
        }
        Ok(KeyEntry { key: Arc::new(key), created_at: record.created_at, activate_at: record.activate_at })
    }

    /// Generates a key and seals it into a record.
    async fn new_record(
        &self,
        alg: Algorithm,
        now: OffsetDateTime,
        activate_at: OffsetDateTime,
    ) -> Result<(KeyEntry, SealedKeyRecord), KeyStoreError> {
        let generated = generate(alg, now).await?;
        let kid = generated.key.kid().to_owned();
        let record = SealedKeyRecord {
            sealed_key: self.kek.seal(&kid, alg, &generated.pkcs8_der)?,
            certificate: generated.key.cert_der().to_vec(),
            kid,
            alg: alg.as_str().to_owned(),
            created_at: now,
            activate_at,
            kek_id: self.kek.id.clone(),
        };
        Ok((KeyEntry { key: Arc::new(generated.key), created_at: now, activate_at }, record))
    }
}

#[async_trait]
impl KeyStore for SealedKeyStore {
    fn location(&self) -> String {
        format!("the database (sealed under key-encryption key {})", self.kek.id)
    }

    async fn load(&self) -> Result<Vec<KeyEntry>, KeyStoreError> {
        let records = self.storage.load().await?;
        if records.keys.is_empty() {
            return Err(KeyStoreError::Uninitialised { location: self.location() });
        }
        self.open_all(&records.keys)
    }

    async fn load_or_create(
        &self,
        alg: Algorithm,
        now: OffsetDateTime,
    ) -> Result<(Vec<KeyEntry>, bool), KeyStoreError> {
        for _ in 0..ATTEMPTS {
            let records = self.storage.load().await?;
            if !records.keys.is_empty() {
                return Ok((self.open_all(&records.keys)?, false));
            }
            let (entry, record) = self.new_record(alg, now, now).await?;
            if self.storage.replace(records.generation, &record, &[]).await? {
                return Ok((vec![entry], true));
            }
            // Another replica created the first key meanwhile: use that one.
        }
        Err(KeyStoreError::Contended)
    }

    async fn rotate(&self, rotation: Rotation) -> Result<KeyEntry, KeyStoreError> {
        for _ in 0..ATTEMPTS {
            let records = self.storage.load().await?;
            if records.keys.is_empty() {
                return Err(KeyStoreError::Uninitialised { location: self.location() });
            }
            let entries = self.open_all(&records.keys)?;
            rotation.check(&entries)?;
            let (entry, record) = self.new_record(rotation.alg, rotation.now, rotation.activate_at).await?;
            let retired = rotation.retired(&entries, &entry);
            if self.storage.replace(records.generation, &record, &retired).await? {
                return Ok(entry);
            }
        }
        Err(KeyStoreError::Contended)
    }

    async fn version(&self) -> Option<String> {
        self.storage.generation().await.ok().map(|generation| generation.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ports::{KeyRecords, StoreError};
    use std::sync::Mutex;
    use time::macros::datetime;

    const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OTHER_KEK: &str = "//////////////////////////////////////////8=";

    /// Records in memory, with the same compare-and-set rule as the database adapter.
    #[derive(Default)]
    struct Memory(Mutex<KeyRecords>);

    #[async_trait]
    impl SealedKeyStorage for Memory {
        async fn load(&self) -> Result<KeyRecords, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn generation(&self) -> Result<i64, StoreError> {
            Ok(self.0.lock().unwrap().generation)
        }
        async fn replace(&self, generation: i64, add: &SealedKeyRecord, remove: &[String]) -> Result<bool, StoreError> {
            let mut records = self.0.lock().unwrap();
            if records.generation != generation {
                return Ok(false);
            }
            records.keys.retain(|r| !remove.contains(&r.kid));
            records.keys.push(add.clone());
            records.generation += 1;
            Ok(true)
        }
    }

    fn store(storage: &Arc<Memory>, kek: &str) -> SealedKeyStore {
        SealedKeyStore::new(storage.clone(), Arc::new(Kek::parse(kek).unwrap()))
    }

    #[test]
    fn a_key_encryption_key_must_be_32_bytes_of_base64() {
        assert!(Kek::parse(&format!("  {KEK}\n")).is_ok());
        assert!(matches!(Kek::parse("not base64!"), Err(KekError::Format(m)) if m.contains("not base64")));
        assert!(matches!(Kek::parse("AAEC"), Err(KekError::Format(m)) if m.contains("found 3 bytes")));
        let kek = Kek::parse(KEK).unwrap();
        assert_eq!(format!("{kek:?}"), format!("Kek({})", kek.id()));
        assert_ne!(kek.id(), Kek::parse(OTHER_KEK).unwrap().id());
    }

    #[tokio::test]
    async fn the_stored_record_holds_no_private_key_in_clear_and_unseals_only_under_its_own_kek() {
        let storage = Arc::new(Memory::default());
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let (created, fresh) = store(&storage, KEK).load_or_create(Algorithm::ES256, t0).await.unwrap();
        assert!(fresh);
        let record = storage.0.lock().unwrap().keys[0].clone();
        assert_eq!(record.kid, created[0].key.kid());
        assert!(SigningKey::from_parts(Algorithm::ES256, &record.sealed_key, record.certificate.clone()).is_err());
        assert!(
            SigningKey::from_parts(Algorithm::ES256, &record.sealed_key[NONCE_LEN..], record.certificate.clone())
                .is_err()
        );

        let reloaded = store(&storage, KEK).load().await.unwrap();
        assert_eq!(reloaded[0].key.kid(), created[0].key.kid());
        let refused = store(&storage, OTHER_KEK).load().await.unwrap_err().to_string();
        assert!(refused.contains("sealed under key-encryption key"), "{refused}");
    }

    #[tokio::test]
    async fn a_sealed_key_altered_or_moved_to_another_record_fails_to_open() {
        let storage = Arc::new(Memory::default());
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let sealed = store(&storage, KEK);
        sealed.load_or_create(Algorithm::ES256, t0).await.unwrap();
        let rotation = Rotation {
            alg: Algorithm::ES256,
            now: t0,
            activate_at: t0,
            retire_after: std::time::Duration::from_secs(3600),
            force: true,
        };
        sealed.rotate(rotation).await.unwrap();
        let original = storage.0.lock().unwrap().clone();

        let mut swapped = original.clone();
        let first = swapped.keys[0].sealed_key.clone();
        swapped.keys[1].sealed_key = first;
        *storage.0.lock().unwrap() = swapped;
        assert!(sealed.load().await.unwrap_err().to_string().contains("fails authentication"));

        let mut flipped = original;
        let last = flipped.keys[0].sealed_key.len() - 1;
        flipped.keys[0].sealed_key[last] ^= 1;
        *storage.0.lock().unwrap() = flipped;
        assert!(sealed.load().await.unwrap_err().to_string().contains("fails authentication"));
    }

    #[tokio::test]
    async fn a_rotation_on_another_replica_sees_the_pending_key_and_refuses_a_second_one() {
        let storage = Arc::new(Memory::default());
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let (a, b) = (store(&storage, KEK), store(&storage, KEK));
        a.load_or_create(Algorithm::ES256, t0).await.unwrap();
        let later = Rotation {
            alg: Algorithm::ES256,
            now: t0,
            activate_at: t0 + time::Duration::hours(24),
            retire_after: std::time::Duration::from_secs(3600),
            force: false,
        };
        a.rotate(later).await.unwrap();
        assert!(matches!(b.rotate(later).await, Err(KeyStoreError::NextKeyPending { .. })));
        assert_eq!(b.load().await.unwrap().len(), 2);
        assert_eq!(b.version().await, Some("2".to_owned()));
    }
}
