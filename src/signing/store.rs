//! The key store on disk: `manifest.json` (kid, algorithm, creation and activation times) beside
//! one PKCS#8 PEM file per private key (mode 0600) and one certificate PEM per key.
//!
//! The CLI writes it (`keys rotate`) while a server may be reading it, so writes take an exclusive
//! lock and replace the manifest atomically; a reader never sees half a manifest. Private keys are created with `O_EXCL` and owner-only permissions from the start.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    #[error("{path}: no signing keys yet (the server creates the first one at start-up)")]
    Uninitialised { path: PathBuf },
    #[error("a next key {kid} is already scheduled for {activate_at}; use --now to activate a new key at once")]
    NextKeyPending { kid: String, activate_at: OffsetDateTime },
}

/// Identifies a version of the manifest cheaply, so a server can poll for rotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: SystemTime,
    len: u64,
}

#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stamp(&self) -> Option<Stamp> {
        let meta = fs::metadata(self.dir.join(MANIFEST)).ok()?;
        Some(Stamp { modified: meta.modified().ok()?, len: meta.len() })
    }

    /// Loads every key; fails if the store has never been initialised.
    pub fn load(&self) -> Result<Vec<KeyEntry>, KeyStoreError> {
        let manifest =
            self.read_manifest()?.ok_or_else(|| KeyStoreError::Uninitialised { path: self.dir.join(MANIFEST) })?;
        manifest.keys.iter().map(|entry| self.load_entry(entry)).collect()
    }

    /// Loads the keys, creating the store with one key active from `now` if it is empty.
    /// Returns whether a key was created.
    pub fn load_or_create(&self, alg: Algorithm, now: OffsetDateTime) -> Result<(Vec<KeyEntry>, bool), KeyStoreError> {
        self.ensure_dir()?;
        let _lock = self.lock()?;
        if self.read_manifest()?.is_some() {
            return Ok((self.load()?, false));
        }
        let entry = self.create_key(alg, now, now)?;
        self.write_manifest(std::slice::from_ref(&entry))?;
        Ok((vec![entry], true))
    }

    /// Adds a key that signs from `activate_at` and forgets keys retired by then.
    /// Refuses while another scheduled key has not started signing, unless `force` is set.
    pub fn rotate(
        &self,
        alg: Algorithm,
        now: OffsetDateTime,
        activate_at: OffsetDateTime,
        retire_after: Duration,
        force: bool,
    ) -> Result<KeyEntry, KeyStoreError> {
        self.ensure_dir()?;
        let _lock = self.lock()?;
        let mut entries = self.load()?;
        if let Some(pending) = entries.iter().find(|e| e.activate_at > now)
            && !force
        {
            return Err(KeyStoreError::NextKeyPending {
                kid: pending.key.kid().to_owned(),
                activate_at: pending.activate_at,
            });
        }
        let entry = self.create_key(alg, now, activate_at)?;
        entries.push(entry.clone());
        let ring = KeyRing::new(entries, retire_after);
        let (kept, retired): (Vec<_>, Vec<_>) =
            ring.states(now).into_iter().partition(|(_, state)| *state != KeyState::Retired);
        let kept: Vec<KeyEntry> = kept.into_iter().map(|(e, _)| e.clone()).collect();
        self.write_manifest(&kept)?;
        for (old, _) in retired {
            // The manifest no longer names these; a failed delete leaves only an unused file.
            let _ = fs::remove_file(self.key_path(old.key.kid()));
            let _ = fs::remove_file(self.cert_path(old.key.kid()));
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
        let io = |source| KeyStoreError::Io { path: path.clone(), source };
        let file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
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
        let store = KeyStore::new(dir.path().join("signing"));
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let (first, created) = store.load_or_create(Algorithm::ES256, t0).unwrap();
        assert!(created);
        let (again, created) = store.load_or_create(Algorithm::ES256, t0).unwrap();
        assert!(!created);
        assert_eq!(first[0].key.kid(), again[0].key.kid());
        let mode = fs::metadata(store.key_path(first[0].key.kid())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotation_refuses_a_second_pending_key_and_prunes_retired_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let (first, _) = store.load_or_create(Algorithm::ES256, t0).unwrap();
        store.rotate(Algorithm::ES256, t0, t0 + HOUR, HOUR, false).unwrap();
        let refused = store.rotate(Algorithm::ES256, t0, t0 + HOUR, HOUR, false);
        assert!(matches!(refused, Err(KeyStoreError::NextKeyPending { .. })));
        // Two hours after the second key took over, the first is retired and pruned.
        store.rotate(Algorithm::ES256, t0 + 2 * HOUR, t0 + 2 * HOUR, HOUR, false).unwrap();
        let kids: Vec<String> = store.load().unwrap().iter().map(|e| e.key.kid().to_owned()).collect();
        assert_eq!(kids.len(), 2);
        assert!(!kids.contains(&first[0].key.kid().to_owned()));
        assert!(!store.key_path(first[0].key.kid()).exists());
    }

    #[test]
    fn a_key_file_that_does_not_match_its_kid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let (first, _) = store.load_or_create(Algorithm::ES256, t0).unwrap();
        let kid = first[0].key.kid().to_owned();
        let other = SigningKey::generate(Algorithm::ES256, t0).unwrap();
        fs::remove_file(store.key_path(&kid)).unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", other.pkcs8_der));
        write_new_file(&store.key_path(&kid), pem.as_bytes(), 0o600).unwrap();
        assert!(matches!(store.load(), Err(KeyStoreError::KidMismatch { .. })));
    }
}
