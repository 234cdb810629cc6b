//! `vault`: an example resource server. It trusts ficus the way any OIDC resource server would:
//! it reads the tenant's discovery document, takes the issuer and the JWKS from it, caches the
//! keys and refreshes them when a token names a key it does not know (at most every 5 seconds).
//! A request needs a bearer token from that issuer, for its audience (`api://vault`), in time,
//! carrying the `Secrets.Read` app role; then it gets the secret.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::sync::RwLock;

/// How the vault trusts its issuer and what it guards.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the discovery document is: `https://ficus.example/{tenant}/v2.0/.well-known/openid-configuration`.
    pub discovery_url: String,
    pub audience: String,
    pub role: String,
    /// Extra CA (PEM) to trust for the issuer, e.g. ficus's development CA.
    pub ca_pem: Option<Vec<u8>>,
    pub secrets: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

struct Vault {
    http: reqwest::Client,
    issuer: String,
    jwks_uri: String,
    audience: String,
    role: String,
    secrets: HashMap<String, String>,
    keys: RwLock<Keys>,
}

const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(5);

impl Vault {
    async fn fetch_keys(&self) -> Result<JwkSet, reqwest::Error> {
        self.http.get(&self.jwks_uri).send().await?.error_for_status()?.json().await
    }

    /// The key named `kid`, refreshing the JWKS once if it is unknown and the last fetch is old.
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(jwk) = self.keys.read().await.set.find(kid) {
            return DecodingKey::from_jwk(jwk).ok();
        }
        let mut keys = self.keys.write().await;
        if keys.fetched.elapsed() >= REFRESH_AT_MOST_EVERY
            && let Ok(set) = self.fetch_keys().await
        {
            *keys = Keys { set, fetched: Instant::now() };
        }
        keys.set.find(kid).and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
    }

    async fn authorize(&self, headers: &HeaderMap) -> Result<Value, Response> {
        let unauthorized = |why: &str| {
            let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{why}\"");
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], Json(json!({ "error": why })))
                .into_response()
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("a bearer token is required"))?;
        let head = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        let kid = head.kid.ok_or_else(|| unauthorized("the token names no key"))?;
        let key = self.key(&kid).await.ok_or_else(|| unauthorized("unknown signing key"))?;
        // Only the asymmetric algorithms ficus signs with; never `none` or an HMAC.
        if !matches!(head.alg, jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::ES256) {
            return Err(unauthorized("algorithm not accepted"));
        }
        let mut validation = Validation::new(head.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = 60;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| unauthorized(&format!("invalid token: {e}")))?
            .claims;
        let has_role = claims["roles"].as_array().is_some_and(|roles| roles.iter().any(|r| r == self.role.as_str()));
        if !has_role {
            let body = Json(json!({ "error": "insufficient_scope", "required_role": self.role }));
            return Err((StatusCode::FORBIDDEN, body).into_response());
        }
        Ok(claims)
    }
}

async fn read_secret(State(vault): State<Arc<Vault>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let claims = match vault.authorize(&headers).await {
        Ok(claims) => claims,
        Err(refusal) => return refusal,
    };
    match vault.secrets.get(&name) {
        Some(value) => Json(json!({ "name": name, "value": value, "read_by": claims["appid"] })).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "no such secret" }))).into_response(),
    }
}

/// Reads discovery and the JWKS, then serves on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> Result<(), StartError> {
    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pem) = &config.ca_pem {
        http = http.tls_certs_merge([reqwest::Certificate::from_pem(pem)?]);
    }
    let http = http.build()?;
    let discovery: Value = http.get(&config.discovery_url).send().await?.error_for_status()?.json().await?;
    let text = |name: &str| {
        discovery[name].as_str().map(str::to_owned).ok_or_else(|| StartError::Discovery(format!("no {name}")))
    };
    let mut vault = Vault {
        http,
        issuer: text("issuer")?,
        jwks_uri: text("jwks_uri")?,
        audience: config.audience,
        role: config.role,
        secrets: config.secrets,
        keys: RwLock::new(Keys { set: JwkSet { keys: vec![] }, fetched: Instant::now() }),
    };
    let set = vault.fetch_keys().await?;
    vault.keys = RwLock::new(Keys { set, fetched: Instant::now() });
    let app = Router::new()
        .route("/secrets/{name}", get(read_secret))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Arc::new(vault));
    axum::serve(listener, app).await.map_err(|e| StartError::Discovery(e.to_string()))
}
