//! A fake external OIDC issuer: a real HTTPS server with its own CA, discovery document and JWKS,
//! whose keys can rotate and which can go down. It signs assertions with jsonwebtoken.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use ficus::signing::Algorithm as KeyAlgorithm;
use ficus::signing::key::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

pub struct IssuerKey {
    pub kid: String,
    pub pem: String,
    pub jwk: Value,
}

impl IssuerKey {
    pub fn generate(issuer: &str) -> Self {
        let generated = SigningKey::generate(KeyAlgorithm::RS256, time::OffsetDateTime::UNIX_EPOCH).unwrap();
        let mut jwk = serde_json::to_value(generated.key.jwk(issuer)).unwrap();
        jwk.as_object_mut().unwrap().retain(|k, _| ["kty", "use", "kid", "n", "e", "alg"].contains(&k.as_str()));
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", generated.pkcs8_der));
        Self { kid: generated.key.kid().to_owned(), pem, jwk }
    }
}

#[derive(Default)]
struct Shared {
    url: Mutex<String>,
    keys: Mutex<Vec<Arc<IssuerKey>>>,
    down: AtomicBool,
    jwks_fetches: AtomicUsize,
}

pub struct FakeIssuer {
    pub url: String,
    pub ca_file: PathBuf,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

async fn discovery(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let url = shared.url.lock().unwrap().clone();
    Json(
        json!({ "issuer": url, "jwks_uri": format!("{url}/keys"), "id_token_signing_alg_values_supported": ["RS256"] }),
    )
    .into_response()
}

async fn keys(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = shared.keys.lock().unwrap().iter().map(|k| k.jwk.clone()).collect();
    Json(json!({ "keys": keys })).into_response()
}

impl FakeIssuer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let ca = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_cert =
            CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&server_key, &ca).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();

        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            server_cert.pem().into_bytes(),
            server_key.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("https://127.0.0.1:{}", addr.port());
        let shared = Arc::new(Shared::default());
        *shared.url.lock().unwrap() = url.clone();
        shared.keys.lock().unwrap().push(Arc::new(IssuerKey::generate(&url)));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(keys))
            .with_state(shared.clone());
        let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
        tokio::spawn(server.serve(app.into_make_service()));
        Self { url, ca_file, shared, _dir: dir }
    }

    pub fn current_key(&self) -> Arc<IssuerKey> {
        self.shared.keys.lock().unwrap()[0].clone()
    }

    /// Replaces the published keys with a new one.
    pub fn rotate(&self) -> Arc<IssuerKey> {
        let key = Arc::new(IssuerKey::generate(&self.url));
        *self.shared.keys.lock().unwrap() = vec![key.clone()];
        key
    }

    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// An RS256 assertion signed with `key`, its `kid` in the header, with these claims.
    pub fn sign(&self, key: &IssuerKey, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(key.pem.as_bytes()).unwrap()).unwrap()
    }
}
