//! External issuers (GitHub Actions, Kubernetes, other OIDC providers): their discovery documents
//! and JWKS, fetched only for issuers that a federated credential or the configuration names,
//! cached, refreshed on an unknown `kid` at most once per `federation.jwks_refresh_interval`, and
//! served from the last good copy while the issuer is unreachable.
//!
//! Only this module talks to external issuers; it verifies signatures with their keys and hands
//! back claims. Checks on the claims (time, audience, matching) belong to the service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::domain::assertion::{ExternalError, ExternalVerifier, JoseHeader};
use crate::domain::token::Claims;

/// How external issuers are reached and cached.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub cache_ttl: Duration,
    pub kid_refresh_interval: Duration,
    pub fetch_timeout: Duration,
    pub max_document_bytes: usize,
    pub extra_roots: Vec<Vec<u8>>,
    pub capacity: u64,
}

struct IssuerKeys {
    keys: Vec<Jwk>,
    fetched_at: Instant,
}

pub struct ExternalIssuerKeys {
    http: reqwest::Client,
    settings: UpstreamSettings,
    keys: moka::sync::Cache<String, Arc<IssuerKeys>>,
    /// When each issuer was last refreshed because of an unknown `kid`.
    kid_refreshes: Mutex<HashMap<String, Instant>>,
    events: IntCounterVec,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("federation.ca_file: {0}")]
    Certificate(String),
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl ExternalIssuerKeys {
    pub fn new(settings: UpstreamSettings, metrics: &Registry) -> Result<Self, UpstreamSetupError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .connect_timeout(settings.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ficus/", env!("CARGO_PKG_VERSION")));
        let mut roots = Vec::new();
        for pem in &settings.extra_roots {
            roots
                .push(reqwest::Certificate::from_pem(pem).map_err(|e| UpstreamSetupError::Certificate(e.to_string()))?);
        }
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        let events = IntCounterVec::new(
            Opts::new(
                "ficus_upstream_events_total",
                "External issuer metadata: fetches, failures, stale serves, kid refreshes",
            ),
            &["event"],
        )?;
        metrics.register(Box::new(events.clone()))?;
        Ok(Self {
            http: builder.build()?,
            keys: moka::sync::Cache::builder().max_capacity(settings.capacity).build(),
            settings,
            kid_refreshes: Mutex::new(HashMap::new()),
            events,
        })
    }

    fn count(&self, event: &str) {
        self.events.with_label_values(&[event]).inc();
    }

    /// The issuer's keys: fresh from the cache, else fetched, else the last good copy.
    async fn keys_for(&self, issuer: &str) -> Result<Arc<IssuerKeys>, ExternalError> {
        let cached = self.keys.get(issuer);
        if let Some(entry) = cached.as_ref().filter(|e| e.fetched_at.elapsed() < self.settings.cache_ttl) {
            return Ok(entry.clone());
        }
        match self.fetch(issuer).await {
            Ok(entry) => Ok(entry),
            Err(e) => match cached {
                Some(stale) => {
                    self.count("stale_served");
                    tracing::warn!(issuer, error = %e, "issuer unreachable; serving its last good keys");
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }

    /// Refreshes for an unknown `kid`, at most once per interval per issuer.
    async fn refresh_for_kid(&self, issuer: &str) -> Option<Arc<IssuerKeys>> {
        {
            let mut refreshes = self.kid_refreshes.lock().unwrap_or_else(|p| p.into_inner());
            if refreshes.get(issuer).is_some_and(|at| at.elapsed() < self.settings.kid_refresh_interval) {
                return None;
            }
            refreshes.insert(issuer.to_owned(), Instant::now());
        }
        self.count("kid_refresh");
        self.fetch(issuer).await.ok()
    }

    async fn fetch(&self, issuer: &str) -> Result<Arc<IssuerKeys>, ExternalError> {
        let result = self.fetch_uncounted(issuer).await;
        match &result {
            Ok(_) => self.count("fetch_ok"),
            Err(_) => self.count("fetch_error"),
        }
        result
    }

    async fn fetch_uncounted(&self, issuer: &str) -> Result<Arc<IssuerKeys>, ExternalError> {
        let discovery_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let discovery: serde_json::Value = serde_json::from_slice(&self.get_limited(&discovery_url).await?)
            .map_err(|e| ExternalError::Unavailable(format!("discovery document: {e}")))?;
        if discovery["issuer"].as_str() != Some(issuer) {
            return Err(ExternalError::Unavailable("the discovery document names another issuer".into()));
        }
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or_else(|| ExternalError::Unavailable("the discovery document has no jwks_uri".into()))?;
        let same_scheme =
            jwks_uri.starts_with("https://") || (issuer.starts_with("http://") && jwks_uri.starts_with("http://"));
        if !same_scheme {
            return Err(ExternalError::Unavailable("jwks_uri must use https".into()));
        }
        let jwks: serde_json::Value = serde_json::from_slice(&self.get_limited(jwks_uri).await?)
            .map_err(|e| ExternalError::Unavailable(format!("JWKS: {e}")))?;
        // Keys this broker cannot use (symmetric, unknown types) are skipped, not fatal.
        let keys: Vec<Jwk> = jwks["keys"]
            .as_array()
            .ok_or_else(|| ExternalError::Unavailable("the JWKS has no keys".into()))?
            .iter()
            .filter(|k| k["kty"] != "oct")
            .filter_map(|k| serde_json::from_value(k.clone()).ok())
            .collect();
        let entry = Arc::new(IssuerKeys { keys, fetched_at: Instant::now() });
        self.keys.insert(issuer.to_owned(), entry.clone());
        Ok(entry)
    }

    /// GETs `url`, refusing bodies over the configured size.
    async fn get_limited(&self, url: &str) -> Result<Vec<u8>, ExternalError> {
        let unavailable = |e: reqwest::Error| ExternalError::Unavailable(e.without_url().to_string());
        let mut response = self.http.get(url).send().await.map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(ExternalError::Unavailable(format!("{url} answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > self.settings.max_document_bytes {
                return Err(ExternalError::Unavailable(format!("{url} is larger than federation.max_document_bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "PS384" => Some(Algorithm::PS384),
        "PS512" => Some(Algorithm::PS512),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        _ => None,
    }
}

/// The key the header points at: by `kid` when given, else the only key.
fn find_key<'a>(keys: &'a [Jwk], header: &JoseHeader) -> Option<&'a Jwk> {
    match &header.kid {
        Some(kid) => keys.iter().find(|k| k.common.key_id.as_deref() == Some(kid.as_str())),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
}

#[async_trait]
impl ExternalVerifier for ExternalIssuerKeys {
    async fn verify(&self, issuer: &str, token: &str, header: &JoseHeader) -> Result<Claims, ExternalError> {
        let alg = algorithm(&header.alg).ok_or_else(|| ExternalError::Algorithm(header.alg.clone()))?;
        let mut entry = self.keys_for(issuer).await?;
        if find_key(&entry.keys, header).is_none()
            && let Some(refreshed) = self.refresh_for_kid(issuer).await
        {
            entry = refreshed;
        }
        let jwk = find_key(&entry.keys, header)
            .ok_or_else(|| ExternalError::UnknownKey(header.kid.clone().unwrap_or_default()))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|_| ExternalError::UnknownKey(header.kid.clone().unwrap_or_default()))?;
        // Signature only: the service checks time, audience and everything else with its clock.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Claims>(token, &key, &validation).map(|data| data.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => ExternalError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => ExternalError::Algorithm(header.alg.clone()),
            _ => ExternalError::BadSignature,
        })
    }
}
