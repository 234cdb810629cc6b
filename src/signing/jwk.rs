//! Public key parameters in JWK form and the RFC 7638 thumbprint that names our keys.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The public half of a signing key, in JWK members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicParams {
    Rsa { n: String, e: String },
    EcP256 { x: String, y: String },
}

impl PublicParams {
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Self {
        Self::Rsa { n: URL_SAFE_NO_PAD.encode(modulus), e: URL_SAFE_NO_PAD.encode(exponent) }
    }

    /// From an uncompressed SEC1 point (`04 || x || y`).
    pub fn ec_p256(point: &[u8]) -> Option<Self> {
        match point {
            [0x04, rest @ ..] if rest.len() == 64 => {
                Some(Self::EcP256 { x: URL_SAFE_NO_PAD.encode(&rest[..32]), y: URL_SAFE_NO_PAD.encode(&rest[32..]) })
            }
            _ => None,
        }
    }

    /// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
    pub fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            Self::EcP256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
        };
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_thumbprint_matches_rfc_7638_example() {
        // The example key of RFC 7638, section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let params = PublicParams::Rsa { n: n.into(), e: "AQAB".into() };
        assert_eq!(params.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn ec_point_must_be_uncompressed_p256() {
        assert!(PublicParams::ec_p256(&[0x02; 33]).is_none());
        let mut point = vec![0x04];
        point.extend([1u8; 64]);
        assert!(matches!(PublicParams::ec_p256(&point), Some(PublicParams::EcP256 { .. })));
    }
}
