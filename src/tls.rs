//! TLS for the HTTPS listener: the development CA and server certificate generated on first start,
//! or the operator's certificate files, loaded into rustls and reloadable without a restart.
//!
//! The development CA's private key stays in `keys/` (mode 0600) so later starts can issue a new
//! server certificate (new host names, expiry) that clients trusting `keys/dev-ca.pem` accept.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::{Settings, TlsMode};
use crate::files;

const CA_CERT: &str = "dev-ca.pem";
const CA_KEY: &str = "dev-ca.key.pem";
const SERVER_DIR: &str = "tls";
const SERVER_CERT: &str = "server.crt.pem";
const SERVER_KEY: &str = "server.key.pem";
const SERVER_META: &str = "server.json";
/// Held while the development files are checked and written: replicas starting together on one
/// `keys/` directory take turns, so they end with one CA and a server certificate it signed.
const LOCK: &str = ".tls.lock";

/// Where the HTTPS listener's certificate chain and key are, and the CA clients should trust
/// (only for the development CA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_chain: PathBuf,
    pub key: PathBuf,
    pub dev_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("could not make the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// What the server certificate was made for, so a start with other host names makes a new one.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ServerCertMeta {
    hosts: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    not_after: OffsetDateTime,
}

/// Prepares the files the HTTPS listener serves; `None` when TLS is off.
pub fn prepare(settings: &Settings, public_host: &str, now: OffsetDateTime) -> Result<Option<TlsFiles>, TlsError> {
    match settings.tls.mode {
        TlsMode::Off => Ok(None),
        TlsMode::Files => Ok(Some(TlsFiles {
            cert_chain: settings.tls.cert_file.clone().unwrap_or_default(),
            key: settings.tls.key_file.clone().unwrap_or_default(),
            dev_ca: None,
        })),
        TlsMode::Dev => {
            let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
            hosts.push(public_host.to_owned());
            hosts.extend(settings.tls.dev_hosts.iter().cloned());
            hosts.sort();
            hosts.dedup();
            ensure_dev_certificates(&settings.keys.dir, &hosts, now).map(Some)
        }
    }
}

/// The development CA's certificate path under `keys_dir`.
pub fn dev_ca_path(keys_dir: &Path) -> PathBuf {
    keys_dir.join(CA_CERT)
}

fn ensure_dev_certificates(keys_dir: &Path, hosts: &[String], now: OffsetDateTime) -> Result<TlsFiles, TlsError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    files::create_private_dir(keys_dir).map_err(io(keys_dir))?;
    let server_dir = keys_dir.join(SERVER_DIR);
    files::create_private_dir(&server_dir).map_err(io(&server_dir))?;
    let lock_path = keys_dir.join(LOCK);
    let _lock = files::lock_exclusive(&lock_path).map_err(io(&lock_path))?;

    let ca_cert_path = keys_dir.join(CA_CERT);
    let ca_key_path = keys_dir.join(CA_KEY);
    let ca_key = if ca_cert_path.is_file() && ca_key_path.is_file() {
        let pem = fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        KeyPair::from_pem(&pem).map_err(|e| TlsError::Invalid { path: ca_key_path.clone(), reason: e.to_string() })?
    } else {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params(now).self_signed(&key)?;
        // Key first: a CA certificate without its key would be useless on the next start.
        files::replace(&ca_key_path, key.serialize_pem().as_bytes(), 0o600).map_err(io(&ca_key_path))?;
        files::replace(&ca_cert_path, cert.pem().as_bytes(), 0o644).map_err(io(&ca_cert_path))?;
        tracing::info!(ca = %ca_cert_path.display(), "generated a development CA");
        key
    };

    let cert_path = server_dir.join(SERVER_CERT);
    let key_path = server_dir.join(SERVER_KEY);
    let meta_path = server_dir.join(SERVER_META);
    let current: Option<ServerCertMeta> = fs::read(&meta_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let still_good = current.is_some_and(|m| m.hosts == hosts && m.not_after - time::Duration::days(30) > now)
        && cert_path.is_file()
        && key_path.is_file();
    if !still_good {
        let issuer = Issuer::new(ca_params(now), ca_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, "ficus development server");
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(365);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        files::replace(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(io(&key_path))?;
        files::replace(&cert_path, cert.pem().as_bytes(), 0o644).map_err(io(&cert_path))?;
        let meta = ServerCertMeta { hosts: hosts.to_vec(), not_after: params.not_after };
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| TlsError::Invalid { path: meta_path.clone(), reason: e.to_string() })?;
        files::replace(&meta_path, &json, 0o644).map_err(io(&meta_path))?;
        tracing::info!(hosts = ?hosts, "issued a development server certificate");
    }
    Ok(TlsFiles { cert_chain: cert_path, key: key_path, dev_ca: Some(ca_cert_path) })
}

/// The CA's parameters. Rebuilt identically on each start: an `Issuer` needs only the subject
/// name and key identifier method, which must match the stored CA certificate.
fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "ficus development CA");
    params.distinguished_name.push(DnType::OrganizationName, "ficus");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(3650);
    params
}

/// Loads the files into a rustls configuration for `axum-server`.
pub async fn rustls_config(files: &TlsFiles) -> Result<axum_server::tls_rustls::RustlsConfig, TlsError> {
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert_chain, &files.key).await.map_err(|e| {
        TlsError::Invalid { path: files.cert_chain.clone(), reason: format!("cannot load certificate and key: {e}") }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use time::macros::datetime;

    #[test]
    fn development_certificates_are_reused_until_hosts_change() {
        let dir = tempfile::tempdir().unwrap();
        let now = datetime!(2026-01-01 00:00 UTC);
        let hosts = vec!["localhost".to_owned()];
        let first = ensure_dev_certificates(dir.path(), &hosts, now).unwrap();
        let ca = fs::read(first.dev_ca.as_ref().unwrap()).unwrap();
        let cert = fs::read(&first.cert_chain).unwrap();

        let again = ensure_dev_certificates(dir.path(), &hosts, now).unwrap();
        assert_eq!(fs::read(&again.cert_chain).unwrap(), cert, "same hosts: same certificate");

        let more = vec!["localhost".to_owned(), "ficus.test".to_owned()];
        let changed = ensure_dev_certificates(dir.path(), &more, now).unwrap();
        assert_ne!(fs::read(&changed.cert_chain).unwrap(), cert, "new hosts: new certificate");
        assert_eq!(fs::read(changed.dev_ca.unwrap()).unwrap(), ca, "the CA is kept");
    }

    #[test]
    fn replicas_starting_together_end_with_one_ca_and_a_server_certificate_it_signed() {
        use rustls::RootCertStore;
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
        use rustls::sign::CertifiedKey;

        let dir = tempfile::tempdir().unwrap();
        let now = datetime!(2026-01-01 00:00 UTC);
        let hosts = vec!["localhost".to_owned()];
        let started: Vec<TlsFiles> = std::thread::scope(|scope| {
            let racers: Vec<_> =
                (0..8).map(|_| scope.spawn(|| ensure_dev_certificates(dir.path(), &hosts, now))).collect();
            racers.into_iter().map(|racer| racer.join().unwrap().unwrap()).collect()
        });
        let files = &started[0];
        assert!(started.iter().all(|f| f == files), "every replica serves the same files");

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let pair = |cert: &Path, key: &Path| {
            let cert = CertificateDer::from_pem_file(cert).unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            CertifiedKey::from_der(vec![cert.clone()], key, &provider).map(|_| cert)
        };
        let ca_path = files.dev_ca.as_ref().unwrap();
        let ca = pair(ca_path, &dir.path().join(CA_KEY)).expect("the CA certificate is the CA key's");
        let server = pair(&files.cert_chain, &files.key).expect("the server certificate is the server key's");

        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.unix_timestamp() as u64 + 60));
        let name = ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(&server, &[], &name, &[], at)
            .expect("the CA on disk signed the server certificate");
    }
}
