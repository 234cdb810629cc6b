//! The built-in fake external issuer (a CI system or a Kubernetes cluster, say): an RSA key made at
//! start, OIDC discovery and a JWKS served over HTTP on loopback, and RS256 assertions signed with
//! the key held parsed. The broker trusts it through the federated credentials the load test
//! creates; it needs `federation.allow_http_loopback_issuers = true` to accept a loopback
//! `http://` issuer.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;

/// The audience Entra expects in assertions exchanged through a federated credential.
pub const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

pub struct FakeIssuer {
    pub url: String,
    key: KeyPair,
    kid: String,
    rng: SystemRandom,
    server: tokio::task::JoinHandle<()>,
}

impl FakeIssuer {
    /// Starts serving on an ephemeral loopback port.
    pub async fn start() -> Result<Arc<Self>, String> {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|e| format!("RSA key generation: {e}"))?;
        let public = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let kid = "loadtest-1".to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let url = format!("http://127.0.0.1:{}", listener.local_addr().map_err(|e| e.to_string())?.port());
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/keys"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let jwks = json!({ "keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": B64.encode(&public.n), "e": B64.encode(&public.e),
        }]});
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { axum::Json(discovery) }))
            .route("/keys", get(move || async move { axum::Json(jwks) }));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Arc::new(Self { url, key, kid, rng: SystemRandom::new(), server }))
    }

    /// An RS256 assertion for `subject`, valid for ten minutes from `now` (Unix seconds); `nonce`
    /// makes each one unique (`jti`).
    pub fn assertion(&self, subject: &str, now: u64, nonce: u64) -> Result<String, String> {
        let header = B64.encode(json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}).to_string());
        let claims = json!({
            "iss": self.url, "sub": subject, "aud": EXCHANGE_AUDIENCE,
            "iat": now, "nbf": now, "exp": now + 600, "jti": format!("lt-{nonce}"),
        });
        let signing_input = format!("{header}.{}", B64.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, signing_input.as_bytes(), &mut signature)
            .map_err(|e| format!("signing: {e}"))?;
        Ok(format!("{signing_input}.{}", B64.encode(&signature)))
    }
}

impl Drop for FakeIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
