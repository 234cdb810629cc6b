//! `TestApp`: a spawned broker plus a client that trusts its development CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ficus::config::Settings;
use ficus::domain::clock::{Clock, ManualClock, SystemClock};
use ficus::domain::ports::{DirectorySource, Registry};
use ficus::service::admin::AdminService;
use ficus::signing::KeyRingHandle;
use ficus::startup::{Application, Overrides, Reloader, StartupError};
use figment::providers::{Format, Toml};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The public URL replicas of one test cluster share.
pub const CLUSTER_URL: &str = "https://cluster.test";

/// The key-encryption key every test replica shares: random, made once per test run.
pub fn cluster_kek() -> &'static str {
    static KEK: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEK.get_or_init(|| {
        use aws_lc_rs::rand::SecureRandom;
        use base64::Engine;
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).unwrap();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    })
}

pub const DEMO_TENANT_ID: &str = "5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17";

pub struct TestApp {
    pub base: String,
    pub mi_base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub keys: KeyRingHandle,
    pub reloader: Reloader,
    pub directory: Arc<dyn DirectorySource>,
    pub registry: Arc<dyn Registry>,
    pub admin: Arc<AdminService>,
    pub dir: PathBuf,
    _tempdir: Option<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), StartupError>>>,
}

/// Settings for a test broker whose state lives in `dir`, with `overrides` (TOML) on top.
pub fn test_settings(dir: &Path, overrides: &str) -> Result<Settings, ficus::config::ConfigError> {
    let base = format!(
        r#"
        [server]
        addr = "127.0.0.1:0"
        mi_addr = "127.0.0.1:0"
        shutdown_grace = "2s"
        [keys]
        dir = "{keys}"
        reload_interval = "50ms"
        [storage]
        data_dir = "{data}"
        [log]
        level = "warn"
        [world]
        file = "{world}"
        "#,
        keys = dir.join("keys").display(),
        data = dir.join("data").display(),
        world = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-world.toml"),
    );
    Settings::from_figment(Settings::default_figment().merge(Toml::string(&base)).merge(Toml::string(overrides)))
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with("").await
    }

    pub async fn spawn_with(overrides: &str) -> Self {
        let tempdir = tempfile::tempdir().unwrap();
        let dir = tempdir.path().to_owned();
        let mut app = Self::spawn_in(&dir, overrides).await;
        app._tempdir = Some(tempdir);
        app
    }

    /// Spawns a broker whose keys and database live in `dir` (which outlives it, for restarts).
    pub async fn spawn_in(dir: &Path, overrides: &str) -> Self {
        Self::spawn_in_with(dir, overrides, Overrides::default()).await
    }

    /// Spawns with some adapters replaced (a deliberately slow sign-in store).
    pub async fn spawn_with_adapters(overrides: &str, adapters: Overrides) -> Self {
        let tempdir = tempfile::tempdir().unwrap();
        let dir = tempdir.path().to_owned();
        let mut app = Self::spawn_in_with(&dir, overrides, adapters).await;
        app._tempdir = Some(tempdir);
        app
    }

    /// Spawns a broker on a fresh PostgreSQL database (cluster mode), or `None` when the test
    /// server is not running (see `pg::server`).
    pub async fn spawn_on_postgres(overrides: &str) -> Option<Self> {
        let url = crate::pg::fresh_database().await?;
        Some(Self::spawn_on_database(&url, overrides).await)
    }

    /// Spawns a broker (in a directory of its own) on the PostgreSQL database at `url`.
    pub async fn spawn_on_database(url: &str, overrides: &str) -> Self {
        let tempdir = tempfile::tempdir().unwrap();
        let mut app = Self::spawn_replica(tempdir.path(), url, overrides).await;
        app._tempdir = Some(tempdir);
        app
    }

    /// Spawns a replica on the PostgreSQL database at `url` whose keys directory is `dir/keys`
    /// (replicas given the same `dir` share it, as a mounted volume would). Replicas share one
    /// public URL, `https://cluster.test` (the balancer's, so one issuer); this one is reached
    /// directly at `https://localhost:<its port>`.
    pub async fn spawn_replica(dir: &Path, url: &str, overrides: &str) -> Self {
        let settings = test_settings(dir, overrides)
            .map(|s| Settings {
                storage: ficus::config::StorageSettings { url: Some(url.to_owned().into()), ..s.storage },
                server: ficus::config::ServerSettings { public_url: Some(CLUSTER_URL.to_owned()), ..s.server },
                keys: ficus::config::KeySettings { kek: Some(cluster_kek().to_owned().into()), ..s.keys },
                ..s
            })
            .expect("test settings are valid");
        let mut app = Self::spawn_settings(dir, settings, Overrides::default()).await;
        app.base = format!("https://localhost:{}", app.addr.port());
        app
    }

    async fn spawn_in_with(dir: &Path, overrides: &str, adapters: Overrides) -> Self {
        let settings = test_settings(dir, overrides).expect("test settings are valid");
        Self::spawn_settings(dir, settings, adapters).await
    }

    async fn spawn_settings(dir: &Path, settings: Settings, adapters: Overrides) -> Self {
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let app = Application::build_with(settings, clock.clone(), adapters).await.expect("the broker starts");
        let addr = app.api_addr();
        let mi_base = format!("http://{}", app.mi_addr());
        let base = app.public_url().as_str().trim_end_matches('/').to_owned();
        let mut client = reqwest::Client::builder()
            .resolve("localhost", addr)
            .resolve("ficus.test", addr)
            .timeout(Duration::from_secs(10));
        if let Some(ca) = app.dev_ca() {
            let pem = std::fs::read(ca).unwrap();
            client = client.tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]);
        }
        let keys = app.key_ring();
        let reloader = app.reloader();
        let directory: Arc<dyn DirectorySource> = app.directory();
        let registry = app.registry();
        let admin = app.admin();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Self {
            base,
            mi_base,
            addr,
            client: client.build().unwrap(),
            clock,
            keys,
            reloader,
            directory,
            registry,
            admin,
            dir: dir.to_owned(),
            _tempdir: None,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the broker gracefully and returns how the run ended.
    pub async fn stop(mut self) -> Result<(), StartupError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }

    pub fn clock_now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (reqwest::StatusCode, Value) {
        let response = self.get(path).await;
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    pub async fn discovery(&self, tenant: &str) -> Value {
        let (status, body) = self.get_json(&format!("/{tenant}/v2.0/.well-known/openid-configuration")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The JWKS found by following the discovery document's `jwks_uri`.
    pub async fn jwks(&self) -> Value {
        let discovery = self.discovery("demo").await;
        let uri = discovery["jwks_uri"].as_str().unwrap();
        self.client.get(uri).send().await.unwrap().json().await.unwrap()
    }

    pub async fn published_kids(&self) -> Vec<String> {
        self.jwks().await["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    }

    /// A GET to the managed-identity listener.
    pub async fn mi_get(&self, path: &str, headers: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
        let mut request = self.client.get(format!("{}{path}", self.mi_base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// The value of one sample line of `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// The admin client's credentials the broker wrote at first start.
    pub fn admin_credentials(&self) -> Value {
        let path = self.dir.join("keys/admin/demo.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// POSTs a form to the demo tenant's token endpoint.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
        let response =
            self.client.post(format!("{}/demo/oauth2/v2.0/token", self.base)).form(form).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// An admin bearer token, obtained as an operator would: client credentials with the secret.
    pub async fn admin_token(&self) -> String {
        let creds = self.admin_credentials();
        let (status, body) = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_id", creds["client_id"].as_str().unwrap()),
                ("client_secret", creds["client_secret"].as_str().unwrap()),
                ("scope", "api://ficus-management/.default"),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Waits (bounded) until `check` holds; for changes that a background task applies.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..200 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting until {what}");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Decodes the JOSE header of a compact JWT.
pub fn jwt_header(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).unwrap()
}

/// Standard claims for a token the tests sign through the key ring.
pub fn claims(issuer: &str, now: time::OffsetDateTime, lifetime: Duration) -> ficus::domain::token::Claims {
    let now = now.unix_timestamp();
    let value = serde_json::json!({
        "iss": issuer,
        "aud": "api://vault",
        "sub": "test-subject",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime.as_secs() as i64,
    });
    value.as_object().unwrap().clone()
}
