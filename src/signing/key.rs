//! One signing key: its private half held parsed for fast signing, its public JWK, its
//! self-signed certificate (for `x5t`/`x5c`) and the JWS header it stamps on every token.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256};
use aws_lc_rs::{digest, rsa};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::jwk::PublicParams;
use crate::domain::keys::Jwk;

/// JWS algorithms the broker signs with. RS256 is what Entra uses and every client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    RS256,
    ES256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::RS256, Self::ES256].into_iter().find(|alg| alg.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

enum Material {
    Rsa(rsa::KeyPair),
    Ec(EcdsaKeyPair),
}

/// A parsed signing key. Its `Debug` shows the `kid` only.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    material: Material,
    public: PublicParams,
    cert_der: Vec<u8>,
    x5t: String,
    /// `base64url({"typ":"JWT","alg":..,"kid":..,"x5t":..})`, computed once.
    header_b64: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// What a freshly generated key must persist: the PKCS#8 private key and the certificate.
pub struct GeneratedKey {
    pub key: SigningKey,
    pub pkcs8_der: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("the private key is not a valid {0} PKCS#8 key")]
    Parse(Algorithm),
    #[error("the certificate could not be made: {0}")]
    Certificate(String),
}

impl SigningKey {
    /// Generates a key of `alg` with a self-signed certificate valid from `now` for five years.
    pub fn generate(alg: Algorithm, now: OffsetDateTime) -> Result<GeneratedKey, KeyError> {
        let pkcs8_der = match alg {
            Algorithm::RS256 => rsa::KeyPair::generate(KeySize::Rsa2048)
                .and_then(|kp| kp.as_der())
                .map(|der| der.as_ref().to_vec())
                .map_err(|_| KeyError::Generate)?,
            Algorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|kp| kp.to_pkcs8v1())
                .map(|doc| doc.as_ref().to_vec())
                .map_err(|_| KeyError::Generate)?,
        };
        let cert_der = self_signed_certificate(alg, &pkcs8_der, now)?;
        let key = Self::from_parts(alg, &pkcs8_der, cert_der)?;
        Ok(GeneratedKey { key, pkcs8_der })
    }

    /// Parses a stored key. The `kid` is recomputed from the key, never trusted from a file.
    pub fn from_parts(alg: Algorithm, pkcs8_der: &[u8], cert_der: Vec<u8>) -> Result<Self, KeyError> {
        let (material, public) = match alg {
            Algorithm::RS256 => {
                let kp = rsa::KeyPair::from_pkcs8(pkcs8_der).map_err(|_| KeyError::Parse(alg))?;
                let public = PublicParams::rsa(
                    kp.public_key().modulus().big_endian_without_leading_zero(),
                    kp.public_key().exponent().big_endian_without_leading_zero(),
                );
                (Material::Rsa(kp), public)
            }
            Algorithm::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8_der)
                    .map_err(|_| KeyError::Parse(alg))?;
                let public = PublicParams::ec_p256(kp.public_key().as_ref()).ok_or(KeyError::Parse(alg))?;
                (Material::Ec(kp), public)
            }
        };
        let kid = public.thumbprint();
        let x5t = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der));
        let header = serde_json::json!({ "typ": "JWT", "alg": alg.as_str(), "kid": kid, "x5t": x5t });
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(Self { kid, alg, material, public, cert_der, x5t, header_b64 })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// Signs `message` (the JWS signing input) and returns the raw signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Rsa(kp) => {
                let mut signature = vec![0; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)?;
                Ok(signature)
            }
            Material::Ec(kp) => kp.sign(&rng, message).map(|sig| sig.as_ref().to_vec()),
        }
    }

    /// Checks `signature` over `message` with this key's public half.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
        match &self.material {
            Material::Rsa(kp) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, kp.public_key().as_ref())
                .verify(message, signature)
                .is_ok(),
            Material::Ec(kp) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, kp.public_key().as_ref())
                .verify(message, signature)
                .is_ok(),
        }
    }

    /// The key as a JWK carrying `issuer`, as Entra's tenant JWKS does.
    pub fn jwk(&self, issuer: &str) -> Jwk {
        let (n, e, crv, x, y) = match &self.public {
            PublicParams::Rsa { n, e } => (Some(n.clone()), Some(e.clone()), None, None, None),
            PublicParams::EcP256 { x, y } => (None, None, Some("P-256"), Some(x.clone()), Some(y.clone())),
        };
        Jwk {
            kty: match self.alg {
                Algorithm::RS256 => "RSA",
                Algorithm::ES256 => "EC",
            },
            use_: "sig",
            kid: self.kid.clone(),
            x5t: self.x5t.clone(),
            n,
            e,
            crv,
            x,
            y,
            alg: self.alg.as_str(),
            x5c: vec![STANDARD.encode(&self.cert_der)],
            issuer: issuer.to_owned(),
        }
    }
}

fn self_signed_certificate(alg: Algorithm, pkcs8_der: &[u8], now: OffsetDateTime) -> Result<Vec<u8>, KeyError> {
    let cert_err = |e: rcgen::Error| KeyError::Certificate(e.to_string());
    let sign_alg = match alg {
        Algorithm::RS256 => &rcgen::PKCS_RSA_SHA256,
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8_der), sign_alg)
        .map_err(cert_err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "ficus token signing key");
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(5 * 365);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    Ok(params.self_signed(&key_pair).map_err(cert_err)?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stored_key_reparses_to_the_same_kid() {
        let generated = SigningKey::generate(Algorithm::ES256, datetime!(2026-01-01 00:00 UTC)).unwrap();
        let cert = generated.key.cert_der().to_vec();
        let again = SigningKey::from_parts(Algorithm::ES256, &generated.pkcs8_der, cert).unwrap();
        assert_eq!(again.kid(), generated.key.kid());
    }

    #[test]
    fn debug_shows_kid_but_no_key_material() {
        let generated = SigningKey::generate(Algorithm::ES256, datetime!(2026-01-01 00:00 UTC)).unwrap();
        let shown = format!("{:?}", generated.key);
        assert!(shown.contains(generated.key.kid()));
        assert!(!shown.contains("Material"));
    }

    #[test]
    fn key_of_the_wrong_algorithm_is_rejected() {
        let generated = SigningKey::generate(Algorithm::ES256, datetime!(2026-01-01 00:00 UTC)).unwrap();
        let cert = generated.key.cert_der().to_vec();
        assert!(matches!(
            SigningKey::from_parts(Algorithm::RS256, &generated.pkcs8_der, cert),
            Err(KeyError::Parse(Algorithm::RS256))
        ));
    }
}
