//! Signing cost: the key ring (aws-lc-rs key pair parsed once, header pre-encoded) against the
//! baseline a plain jsonwebtoken `encode` gives (its `EncodingKey` re-parses the RSA key per
//! call), and RS256 verification, which bounds the cache-miss exchange (one verify + one sign).
//! Read the results as ratios within one run: `cargo bench --bench signing`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ficus::domain::token::Claims;
use ficus::signing::key::SigningKey;
use ficus::signing::{Algorithm, KeyEntry, KeyRing};
use time::macros::datetime;

fn claims() -> Claims {
    let value = serde_json::json!({
        "aud": "api://vault", "iss": "https://localhost:8443/5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17/v2.0",
        "iat": 1767225600, "nbf": 1767225600, "exp": 1767229200,
        "azp": "69f92e01-bcf4-5253-abb2-9525b09a93bc", "appid": "69f92e01-bcf4-5253-abb2-9525b09a93bc",
        "oid": "bebaf091-aab0-59a7-8696-e11b4dc9c46e", "sub": "bebaf091-aab0-59a7-8696-e11b4dc9c46e",
        "tid": "5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17", "roles": ["Secrets.Read"], "idtyp": "app",
        "uti": "AbCdEfGhIjKlMnOpQrStUv", "ver": "2.0",
    });
    value.as_object().unwrap().clone()
}

fn rs256(c: &mut Criterion) {
    let now = datetime!(2026-01-01 00:00 UTC);
    let generated = SigningKey::generate(Algorithm::RS256, now).unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", generated.pkcs8_der.clone()));
    let entry = KeyEntry { key: Arc::new(generated.key), created_at: now, activate_at: now };
    let ring = KeyRing::new(vec![entry], std::time::Duration::from_secs(3600));
    let claims = claims();

    let mut group = c.benchmark_group("rs256");
    group.bench_function("sign: key ring (parsed once)", |b| b.iter(|| ring.sign(now, black_box(&claims)).unwrap()));
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    group.bench_function("sign: jsonwebtoken encode (baseline)", |b| {
        b.iter(|| {
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
            jsonwebtoken::encode(&header, black_box(&claims), &key).unwrap()
        })
    });

    let token = ring.sign(now, &claims).unwrap();
    let jwk = ring.entries()[0].key.jwk("issuer");
    let decoding =
        jsonwebtoken::DecodingKey::from_rsa_components(jwk.n.as_deref().unwrap(), jwk.e.as_deref().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.set_audience(&["api://vault"]);
    group.bench_function("verify: jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::decode::<serde_json::Value>(black_box(token.expose()), &decoding, &validation).unwrap())
    });
    group.finish();
}

criterion_group!(benches, rs256);
criterion_main!(benches);
