//! The official Rust SDK (`azure_identity`) as a client of ficus, for tests/sdk: gets a token for
//! `api://vault`, validates it with `jsonwebtoken` through the broker's discovery document and
//! JWKS, and prints `{"token", "claims"}`. A failure is the SDK's (or the validation's) error on
//! standard error, with exit status 1. Flows:
//!
//! - no argument: `ManagedIdentityCredential` configured with nothing, as on an Azure VM (IMDS at
//!   169.254.169.254: run it in `ficus sandbox`), printing only the token;
//! - `managed-identity`: the same, where the environment names App Service's `IDENTITY_ENDPOINT`
//!   and `IDENTITY_HEADER`;
//! - `client-assertion`: `ClientAssertionCredential` for `APP_ID` with the assertion `ASSERTION`,
//!   at `AZURE_AUTHORITY_HOST` / `AZURE_TENANT_ID`.
//!
//! The development CA is trusted through `SSL_CERT_FILE`, for the SDK and for the validation.

use std::process::ExitCode;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::ClientMethodOptions;
use azure_identity::{ClientAssertion, ClientAssertionCredential, ManagedIdentityCredential};
use serde_json::Value;

const SCOPE: &str = "api://vault/.default";

/// An assertion given up front (`ASSERTION`).
#[derive(Debug)]
struct Given(String);

#[async_trait::async_trait]
impl ClientAssertion for Given {
    async fn secret(&self, _options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        Ok(self.0.clone())
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn token(flow: Option<&str>) -> Result<String, String> {
    let credential: Arc<dyn TokenCredential> = match flow {
        None | Some("managed-identity") => ManagedIdentityCredential::new(None).map_err(|e| e.to_string())?,
        Some("client-assertion") => {
            let assertion = Given(env("ASSERTION")?);
            ClientAssertionCredential::new(env("AZURE_TENANT_ID")?, env("APP_ID")?, assertion, None)
                .map_err(|e| e.to_string())?
        }
        Some(other) => return Err(format!("unknown flow {other}")),
    };
    let token = credential.get_token(&[SCOPE], None).await.map_err(|e| format!("azure_identity: {e}"))?;
    Ok(token.token.secret().to_owned())
}

/// The token's claims, verified with the key the JWKS publishes for its `kid`, the issuer
/// discovery names, and the audience `api://vault`.
async fn validate(token: &str) -> Result<Value, String> {
    let ca = std::fs::read(env("SSL_CERT_FILE")?).map_err(|e| format!("SSL_CERT_FILE: {e}"))?;
    let ca = reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?;
    let http = reqwest::Client::builder().add_root_certificate(ca).build().map_err(|e| e.to_string())?;
    let get = |url: String| {
        let request = http.get(url);
        async move { request.send().await?.error_for_status()?.json::<Value>().await }
    };
    let base = format!("{}/{}", env("AZURE_AUTHORITY_HOST")?, env("AZURE_TENANT_ID")?);
    let discovery = get(format!("{base}/v2.0/.well-known/openid-configuration")).await.map_err(|e| e.to_string())?;
    let jwks_uri = discovery["jwks_uri"].as_str().ok_or("discovery names no jwks_uri")?;
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(get(jwks_uri.to_owned()).await.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let kid = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?.kid.ok_or("the token has no kid")?;
    let jwk = jwks.find(&kid).ok_or("the JWKS does not publish the token's key")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["api://vault"]);
    validation.set_issuer(&[discovery["issuer"].as_str().ok_or("discovery names no issuer")?]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| e.to_string())?;
    Ok(data.claims)
}

#[tokio::main]
async fn main() -> ExitCode {
    let flow = std::env::args().nth(1);
    let result = match token(flow.as_deref()).await {
        // Configured with nothing (in the sandbox): the token alone, validated by the caller.
        Ok(token) if flow.is_none() => Ok(token),
        Ok(token) => {
            validate(&token).await.map(|claims| serde_json::json!({ "token": token, "claims": claims }).to_string())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
