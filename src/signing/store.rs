//! The key store port ([`KeyStore`]: load, create the first key, rotate, notice changes) with the
//! rotation rules every adapter shares, and its file adapter ([`FileKeyStore`]), the single-node
//! default: `manifest.json` (kid, algorithm, creation and activation times) beside one PKCS#8 PEM
//! file per private key (mode 0600) and one certificate PEM per key. The sealed database adapter
//! for cluster mode is [`super::sealed`]; the key ring does not know which one loaded it.
//!
//! The CLI writes the files (`keys rotate`) while a server may be reading them, so writes take an
//! exclusive lock and replace the manifest atomically; a reader never sees half a manifest.
//! Private keys are created with `O_EXCL` and owner-only permissions from the start.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::key::{Algorithm, KeyError, SigningKey};
use super::ring::{KeyEntry, KeyRing, KeyState};
use crate::files;

const MANIFEST: &str = "manifest.json";
const LOCK: &str = ".lock";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    keys: Vec<ManifestEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    kid: String,
    alg: Algorithm,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    activate_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid key manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: KeyError },
    #[error("{path}: the key's thumbprint is {found}, but the manifest names it {expected}")]
    KidMismatch { path: PathBuf, expected: String, found: String },
    #[error("{location}: no signing keys yet (the server creates the first one at start-up)")]
    Uninitialised { location: String },
    #[error("a next key {kid} is already scheduled for {activate_at}; use --now to activate a new key at once")]
    NextKeyPending { kid: String, activate_at: OffsetDateTime },
    #[error("{0}")]
    Storage(#[from] crate::domain::ports::StoreError),
    #[error("signing key {kid}: {reason}")]
    Sealed { kid: String, reason: String },
    #[error("the key store changed under this rotation several times in a row; try again")]
    Contended,
    #[error("key generation was interrupted: {0}")]
    Interrupted(String),
}

/// Where the signing keys live. Every adapter applies the same rules: the first key is created
/// once, a rotation refuses a second pending key unless forced, and keys retired by the new one
/// are forgotten.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Where the keys are, for messages (`keys/signing`, `the database, sealed under kek 1a2b...`).
    fn location(&self) -> String;
    /// Loads every key; fails if the store has never been initialised.
    async fn load(&self) -> Result<Vec<KeyEntry>, KeyStoreError>;
    /// Loads the keys, creating the store with one key active from `now` if it is empty.
    /// Returns whether a key was created.
    async fn load_or_create(&self, alg: Algorithm, now: OffsetDateTime)
    -> Result<(Vec<KeyEntry>, bool), KeyStoreError>;
    /// Adds a key that signs from `activate_at` and forgets keys retired by then.
    async fn rotate(&self, rotation: Rotation) -> Result<KeyEntry, KeyStoreError>;
    /// A value that changes whenever the stored keys do; running servers poll it.
    async fn version(&self) -> Option<String>;
}

/// What `keys rotate` asks for.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub alg: Algorithm,
    pub now: OffsetDateTime,
    pub activate_at: OffsetDateTime,
    /// How long a key stays published after it stops signing.
    pub retire_after: Duration,
    /// Add the key even though another one is still waiting to sign.
    pub force: bool,
}

impl Rotation {
    /// Refuses while another scheduled key has not started signing, unless forced.
    pub fn check(&self, entries: &[KeyEntry]) -> Result<(), KeyStoreError> {
        match entries.iter().find(|e| e.activate_at > self.now) {
            Some(pending) if !self.force => Err(KeyStoreError::NextKeyPending {
                kid: pending.key.kid().to_owned(),
                activate_at: pending.activate_at,
            }),
            _ => Ok(()),
        }
    }

    /// The kids of `entries` that are retired once `added` joins them.
    pub fn retired(&self, entries: &[KeyEntry], added: &KeyEntry) -> Vec<String> {
        let mut all = entries.to_vec();
        all.push(added.clone());
        KeyRing::new(all, self.retire_after)
            .states(self.now)
            .into_iter()
            .filter(|(_, state)| *state == KeyState::Retired)
            .map(|(entry, _)| entry.key.kid().to_owned())
            .collect()
    }
}

/// Runs key generation (RSA takes up to a second) off the async runtime's threads.
pub(super) async fn generate(alg: Algorithm, now: OffsetDateTime) -> Result<super::key::GeneratedKey, KeyStoreError> {
    tokio::task::spawn_blocking(move || SigningKey::generate(alg, now))
        .await
        .map_err(|e| KeyStoreError::Interrupted(e.to_string()))?
        .map_err(|source| KeyStoreError::Key { path: PathBuf::from("(new key)"), source })
}

/// Identifies a version of the manifest cheaply, so a server can poll for rotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: SystemTime,
    len: u64,
}

/// The file adapter: one directory per broker.
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    dir: PathBuf,
}

#[async_trait]
impl KeyStore for FileKeyStore {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    async fn load(&self) -> Result<Vec<KeyEntry>, KeyStoreError> {
        let store = self.clone();
        blocking(move || store.load_files()).await
    }

    async fn load_or_create(
        &self,
        alg: Algorithm,
        now: OffsetDateTime,
    ) -> Result<(Vec<KeyEntry>, bool), KeyStoreError> {
        let store = self.clone();
        blocking(move || store.load_or_create_files(alg, now)).await
    }

    async fn rotate(&self, rotation: Rotation) -> Result<KeyEntry, KeyStoreError> {
        let store = self.clone();
        blocking(move || store.rotate_files(rotation)).await
    }

    async fn version(&self) -> Option<String> {
        self.stamp().map(|s| format!("{:?}:{}", s.modified, s.len))
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KeyStoreError> + Send + 'static,
) -> Result<T, KeyStoreError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| KeyStoreError::Interrupted(e.to_string()))?
}

impl FileKeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn stamp(&self) -> Option<Stamp> {
        let meta = fs::metadata(self.dir.join(MANIFEST)).ok()?;
        Some(Stamp { modified: meta.modified().ok()?, len: meta.len() })
    }

    /// Loads every key; fails if the store has never been initialised.
    fn load_files(&self) -> Result<Vec<KeyEntry>, KeyStoreError> {
        let manifest = self
            .read_manifest()?
            .ok_or_else(|| KeyStoreError::Uninitialised { location: self.dir.join(MANIFEST).display().to_string() })?;
        manifest.keys.iter().map(|entry| self.load_entry(entry)).collect()
    }

    /// Loads the keys, creating the store with one key active from `now` if it is empty.
    /// Returns whether a key was created.
    fn load_or_create_files(
        &self,
        alg: Algorithm,
        now: OffsetDateTime,
    ) -> Result<(Vec<KeyEntry>, bool), KeyStoreError> {
        self.ensure_dir()?;
        let _lock = self.lock()?;
        if self.read_manifest()?.is_some() {
            return Ok((self.load_files()?, false));
        }
        let entry = self.create_key(alg, now, now)?;
        self.write_manifest(std::slice::from_ref(&entry))?;
        Ok((vec![entry], true))
    }

    /// Adds a key under the store's lock, by the rules of [`Rotation`].
    fn rotate_files(&self, rotation: Rotation) -> Result<KeyEntry, KeyStoreError> {
        self.ensure_dir()?;
        let _lock = self.lock()?;
        let mut entries = self.load_files()?;
        rotation.check(&entries)?;
        let entry = self.create_key(rotation.alg, rotation.now, rotation.activate_at)?;
        let retired = rotation.retired(&entries, &entry);
        entries.push(entry.clone());
        entries.retain(|e| !retired.iter().any(|kid| kid == e.key.kid()));
        self.write_manifest(&entries)?;
        for kid in retired {
            // The manifest no longer names these; a failed delete leaves only an unused file.
            let _ = fs::remove_file(self.key_path(&kid));
            let _ = fs::remove_file(self.cert_path(&kid));
        }
        Ok(entry)
    }

    fn create_key(
        &self,
        alg: Algorithm,
        now: OffsetDateTime,
        activate_at: OffsetDateTime,
    ) -> Result<KeyEntry, KeyStoreError> {
        let generated =
            SigningKey::generate(alg, now).map_err(|source| KeyStoreError::Key { path: self.dir.clone(), source })?;
        let kid = generated.key.kid().to_owned();
        let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", generated.pkcs8_der.clone()));
        write_new_file(&self.key_path(&kid), key_pem.as_bytes(), 0o600)?;
        let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", generated.key.cert_der().to_vec()));
        write_new_file(&self.cert_path(&kid), cert_pem.as_bytes(), 0o644)?;
        Ok(KeyEntry { key: Arc::new(generated.key), created_at: now, activate_at })
    }

    fn load_entry(&self, entry: &ManifestEntry) -> Result<KeyEntry, KeyStoreError> {
        let key_path = self.key_path(&entry.kid);
        let cert_path = self.cert_path(&entry.kid);
        warn_if_exposed(&key_path);
        let pkcs8 = read_pem(&key_path, "PRIVATE KEY")?;
        let cert = read_pem(&cert_path, "CERTIFICATE")?;
        let key = SigningKey::from_parts(entry.alg, &pkcs8, cert)
            .map_err(|source| KeyStoreError::Key { path: key_path.clone(), source })?;
        if key.kid() != entry.kid {
            return Err(KeyStoreError::KidMismatch {
                path: key_path,
                expected: entry.kid.clone(),
                found: key.kid().to_owned(),
            });
        }
        Ok(KeyEntry { key: Arc::new(key), created_at: entry.created_at, activate_at: entry.activate_at })
    }

    fn read_manifest(&self) -> Result<Option<Manifest>, KeyStoreError> {
        let path = self.dir.join(MANIFEST);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(KeyStoreError::Io { path, source }),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| KeyStoreError::Manifest { path: path.clone(), reason: e.to_string() })?;
        if manifest.version != 1 {
            return Err(KeyStoreError::Manifest { path, reason: format!("unsupported version {}", manifest.version) });
        }
        Ok(Some(manifest))
    }

    fn write_manifest(&self, entries: &[KeyEntry]) -> Result<(), KeyStoreError> {
        let manifest = Manifest {
            version: 1,
            keys: entries
                .iter()
                .map(|e| ManifestEntry {
                    kid: e.key.kid().to_owned(),
                    alg: e.key.alg(),
                    created_at: e.created_at,
                    activate_at: e.activate_at,
                })
                .collect(),
        };
        let path = self.dir.join(MANIFEST);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| KeyStoreError::Manifest { path: path.clone(), reason: e.to_string() })?;
        files::replace(&path, &json, 0o644).map_err(|source| KeyStoreError::Io { path, source })
    }

    fn ensure_dir(&self) -> Result<(), KeyStoreError> {
        files::create_private_dir(&self.dir).map_err(|source| KeyStoreError::Io { path: self.dir.clone(), source })
    }

    fn lock(&self) -> Result<File, KeyStoreError> {
        let path = self.dir.join(LOCK);
        files::lock_exclusive(&path).map_err(|source| KeyStoreError::Io { path, source })
    }

    fn key_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.key.pem"))
    }

    fn cert_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.crt.pem"))
    }
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyStoreError> {
    files::write_new(path, contents, mode).map_err(|source| KeyStoreError::Io { path: path.to_owned(), source })
}

fn read_pem(path: &Path, tag: &str) -> Result<Vec<u8>, KeyStoreError> {
    let text = fs::read(path).map_err(|source| KeyStoreError::Io { path: path.to_owned(), source })?;
    let block =
        pem::parse(text).map_err(|e| KeyStoreError::Manifest { path: path.to_owned(), reason: e.to_string() })?;
    if block.tag() != tag {
        return Err(KeyStoreError::Manifest {
            path: path.to_owned(),
            reason: format!("expected a {tag} PEM block, found {}", block.tag()),
        });
    }
    Ok(block.into_contents())
}

fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "private key file is readable by other users; chmod 600 it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn first_load_creates_one_owner_only_key_and_later_loads_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("signing"));
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let (first, created) = store.load_or_create_files(Algorithm::ES256, t0).unwrap();
        assert!(created);
        let (again, created) = store.load_or_create_files(Algorithm::ES256, t0).unwrap();
        assert!(!created);
        assert_eq!(first[0].key.kid(), again[0].key.kid());
        let mode = fs::metadata(store.key_path(first[0].key.kid())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotation_refuses_a_second_pending_key_and_prunes_retired_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path());
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let (first, _) = store.load_or_create_files(Algorithm::ES256, t0).unwrap();
        store
            .rotate_files(Rotation {
                alg: Algorithm::ES256,
                now: t0,
                activate_at: t0 + HOUR,
                retire_after: HOUR,
                force: false,
            })
            .unwrap();
        let refused = store.rotate_files(Rotation {
            alg: Algorithm::ES256,
            now: t0,
            activate_at: t0 + HOUR,
            retire_after: HOUR,
            force: false,
        });
        assert!(matches!(refused, Err(KeyStoreError::NextKeyPending { .. })));
        // Two hours after the second key took over, the first is retired and pruned.
        store
            .rotate_files(Rotation {
                alg: Algorithm::ES256,
                now: t0 + 2 * HOUR,
                activate_at: t0 + 2 * HOUR,
                retire_after: HOUR,
                force: false,
            })
            .unwrap();
        let kids: Vec<String> = store.load_files().unwrap().iter().map(|e| e.key.kid().to_owned()).collect();
        assert_eq!(kids.len(), 2);
        assert!(!kids.contains(&first[0].key.kid().to_owned()));
        assert!(!store.key_path(first[0].key.kid()).exists());
    }

    #[test]
    fn a_key_file_that_does_not_match_its_kid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path());
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let (first, _) = store.load_or_create_files(Algorithm::ES256, t0).unwrap();
        let kid = first[0].key.kid().to_owned();
        let other = SigningKey::generate(Algorithm::ES256, t0).unwrap();
        fs::remove_file(store.key_path(&kid)).unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", other.pkcs8_der));
        write_new_file(&store.key_path(&kid), pem.as_bytes(), 0o600).unwrap();
        assert!(matches!(store.load_files(), Err(KeyStoreError::KidMismatch { .. })));
    }
}
