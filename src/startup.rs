//! The composition root: the only module that knows every concrete type. It binds the listeners it
//! is given (port 0 works, for tests), opens storage, applies the world, loads keys and TLS, wires
//! services into routers and runs both listeners until told to stop.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use url::Url;

use crate::cache::{CacheMetrics, IssuedTokens, VerifiedAssertions};
use crate::cluster::{self, LiveReplicas, Membership};
use crate::config::{ConfigError, Settings};
use crate::domain::activity::Actor;
use crate::domain::clock::Clock;
use crate::domain::federated_credential::IssuerPolicy;
use crate::domain::ports::{ChangeNotifications, DirectorySource, Registry, ReplicaBeat, ReplicaRoster, StoreError};
use crate::domain::rate_limit::RateLimiter;
use crate::domain::resource::ResourceId;
use crate::domain::tenant::Tenant;
use crate::http::proxy_protocol::ProxyProtocolAcceptor;
use crate::http::{self, AppState, metrics::HttpMetrics};
use crate::rate_limit::TokenRateLimits;
use crate::service::DiscoveryService;
use crate::service::admin::bootstrap::MANAGEMENT_API;
use crate::service::admin::{AdminService, Caller};
use crate::service::admin_auth::AdminAuthenticator;
use crate::service::assertion_check::{AssertionChecker, AssertionPolicy};
use crate::service::console::ConsoleService;
use crate::service::faults::FaultService;
use crate::service::health::HealthService;
use crate::service::managed_identity::ManagedIdentityService;
use crate::service::mint::TokenMint;
use crate::service::token::{TokenService, secret_matches};
use crate::service::world::{self, WorldError};
use crate::signing::{
    FileKeyStore, KeyEntry, KeyRing, KeyRingHandle, KeyState, KeyStore, KeyStoreError, Rotation, SealedKeyStore,
};
use crate::store::postgres::PoolSettings;
use crate::store::sign_in_writer::{BatchedSignInLog, RegistrySignIns, SignInStore};
use crate::store::{DirectorySnapshot, PostgresRegistry, SqliteRegistry};
use crate::tls::{self, TlsError, TlsFiles};
use crate::upstream::{ExternalIssuerKeys, UpstreamSettings};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{setting}: cannot listen on {addr}: {source}")]
    Bind { setting: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("storage ({location}): {source}")]
    Storage { location: String, source: StoreError },
    #[error("signing keys: {0}")]
    Keys(#[from] KeyStoreError),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server: {0}")]
    Serve(#[from] std::io::Error),
    #[error("admin bootstrap: {0}")]
    Admin(String),
    #[error("sandbox: {0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
}

impl StartupError {
    /// Exit status: 2 for a wrong setting, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Sandbox(_) => crate::sandbox::exit::SANDBOX_FAILED,
            _ => 1,
        }
    }
}

/// A built broker, listeners bound, ready to run.
pub struct Application {
    settings: Settings,
    api_listener: TcpListener,
    mi_listener: TcpListener,
    /// The deprecated VM extension endpoint's, when `server.vm_extension_addr` is set.
    vm_extension_listener: Option<TcpListener>,
    public_url: Url,
    tls: Option<(TlsFiles, RustlsConfig)>,
    keys: KeyRingHandle,
    registry: Arc<dyn Registry>,
    notifications: Option<Arc<dyn ChangeNotifications>>,
    directory: Arc<DirectorySnapshot>,
    admin: Arc<AdminService>,
    state: AppState,
    reloader: Reloader,
    membership: Arc<Membership>,
    sign_in_writer: tokio::task::JoinHandle<()>,
}

/// Adapters to use instead of the default ones.
#[derive(Default)]
pub struct Overrides {
    pub sign_in_store: Option<Arc<dyn SignInStore>>,
}

impl Application {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        Self::build_with(settings, clock, Overrides::default()).await
    }

    /// Builds with some adapters replaced (tests use a deliberately slow sign-in store).
    pub async fn build_with(
        settings: Settings,
        clock: Arc<dyn Clock>,
        overrides: Overrides,
    ) -> Result<Self, StartupError> {
        // Read first: a wrong world file stops start-up before anything is created.
        let world = settings.world.file.as_deref().map(crate::config::load_world).transpose()?;
        let api_listener = bind("server.addr", settings.server.addr)?;
        let mi_listener = bind("server.mi_addr", settings.server.mi_addr)?;
        let vm_extension_listener =
            settings.server.vm_extension_addr.map(|addr| bind("server.vm_extension_addr", addr)).transpose()?;
        let public_url = settings.public_url(api_listener.local_addr()?.port())?;

        let storage = Storage::open(&settings).await?;
        let location = storage.location.clone();
        let storage_error = |source| StartupError::Storage { location: location.clone(), source };
        let registry = storage.registry.clone();
        // Replicas starting together take turns from here until the shared state exists.
        let bootstrap = registry.lock_bootstrap().await.map_err(storage_error)?;
        let directory = Arc::new(DirectorySnapshot::load(registry.clone()).await.map_err(storage_error)?);

        let key_store = storage.keys.clone();
        let alg = settings.keys.algorithm;
        let (entries, created) = key_store.load_or_create(alg, clock.now()).await?;
        if created {
            tracing::info!(kid = entries[0].key.kid(), %alg, store = %key_store.location(), "generated the first signing key");
        }
        let retire_after = settings.key_retire_after();
        let keys = KeyRingHandle::new(KeyRing::new(entries, retire_after), clock.clone());

        let public_host = public_url.host_str().unwrap_or("localhost").to_owned();
        let tls = match tls::prepare(&settings, &public_host, clock.now())? {
            Some(files) => {
                let config = tls::rustls_config(&files).await?;
                Some((files, config))
            }
            None => None,
        };

        let metrics = Arc::new(HttpMetrics::new(prometheus::Registry::new())?);
        let discovery = Arc::new(DiscoveryService::new(&public_url, directory.clone(), Arc::new(keys.clone())));
        let issuer_policy = IssuerPolicy { allow_http_loopback: settings.federation.allow_http_loopback_issuers };
        let admin = Arc::new(AdminService::new(registry.clone(), directory.clone(), clock.clone(), issuer_policy));
        if let Some(world) = &world {
            let issuer_of = |tenant: &Tenant| discovery.issuer_for(tenant);
            world::apply(world, registry.as_ref(), &admin, &issuer_of).await.map_err(|e| match e {
                WorldError::Store(source) => StartupError::Storage { location: location.clone(), source },
                other => ConfigError { setting: "world.file".into(), problem: other.to_string() }.into(),
            })?;
        }
        let live_replicas = Arc::new(LiveReplicas::alone());
        let membership = Arc::new(Membership::new(
            storage.roster.clone(),
            ReplicaBeat {
                replica: match settings.cluster.replica.as_str() {
                    "" => cluster::default_replica_name(api_listener.local_addr()?.port()),
                    name => name.to_owned(),
                },
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at: clock.now(),
            },
            settings.cluster.replica_expiry,
            live_replicas.clone(),
            directory.clone(),
            metrics.registry(),
        )?);
        // Counted before the first request, so the first limits are already the right share.
        membership.beat().await.map_err(storage_error)?;
        let health = Arc::new(HealthService::new(Arc::new(keys.clone()), membership.clone()));
        write_admin_credentials(&settings, &admin, &discovery).await?;
        bootstrap.release().await;
        let admin_auth = Arc::new(AdminAuthenticator::new(
            Arc::new(keys.clone()),
            directory.clone(),
            discovery.clone(),
            clock.clone(),
            settings.tokens.clock_skew,
        ));
        let cache_metrics = CacheMetrics::new(metrics.registry())?;
        let issued_tokens = Arc::new(IssuedTokens::new(
            "issued_tokens",
            settings.cache.issued_tokens_capacity,
            settings.tokens.managed_identity_lifetime.max(settings.tokens.lifetime),
            &cache_metrics,
        ));
        let verified_assertions = Arc::new(VerifiedAssertions::new(
            "verified_assertions",
            settings.cache.verified_assertions_capacity,
            settings.federation.max_assertion_lifetime,
            &cache_metrics,
        ));
        let sign_in_store = overrides.sign_in_store.unwrap_or_else(|| Arc::new(RegistrySignIns(registry.clone())));
        let (sign_ins, sign_in_writer) = BatchedSignInLog::start(
            sign_in_store,
            clock.clone(),
            settings.signin_log.queue_capacity,
            settings.signin_log.batch_size,
            settings.signin_log.flush_interval,
            metrics.registry(),
        )?;
        let limits: Arc<dyn RateLimiter> = Arc::new(TokenRateLimits::new(
            settings.rate_limits.limits()?,
            settings.rate_limits.max_tracked_keys,
            live_replicas,
            metrics.registry(),
        )?);
        let mint = Arc::new(TokenMint::new(
            Arc::new(keys.clone()),
            clock.clone(),
            issued_tokens,
            settings.cache.token_reuse_min_remaining,
        ));
        let managed_identities = Arc::new(
            ManagedIdentityService::new(
                directory.clone(),
                discovery.clone(),
                settings.tokens.managed_identity_lifetime,
                mint.clone(),
                sign_ins.clone(),
                limits.clone(),
            )
            .serving_imds_as(imds_resource(&settings, &directory.view())?),
        );
        let external = Arc::new(external_issuers(&settings, metrics.registry())?);
        let assertions = Arc::new(AssertionChecker::new(
            Arc::new(keys.clone()),
            external,
            discovery.clone(),
            directory.clone(),
            clock.clone(),
            verified_assertions,
            AssertionPolicy {
                max_bytes: settings.federation.max_assertion_bytes,
                leeway: settings.tokens.clock_skew,
                max_lifetime: settings.federation.max_assertion_lifetime,
                trusted_issuers: settings.federation.trusted_issuers.iter().cloned().collect(),
            },
        ));
        let tokens = Arc::new(
            TokenService::new(
                directory.clone(),
                discovery.clone(),
                assertions,
                settings.tokens.lifetime,
                mint,
                sign_ins.clone(),
                limits,
            )
            .disclosing_mismatches(settings.explain_mismatches_in_response()),
        );
        let faults = Arc::new(FaultService::new(registry.clone(), clock.clone(), sign_ins));
        faults.refresh().await.map_err(storage_error)?;
        let console = Arc::new(ConsoleService::new(
            Arc::new(keys.clone()),
            Arc::new(keys.clone()),
            directory.clone(),
            discovery.clone(),
            clock.clone(),
        ));
        let reloader = Reloader {
            key_store,
            key_notifications: storage.key_notifications.clone(),
            keys: keys.clone(),
            retire_after,
            tls: tls.clone(),
        };
        let key_admin = Arc::new(KeyAdmin {
            reloader: reloader.clone(),
            clock: clock.clone(),
            alg: settings.keys.algorithm,
            prepublish: settings.keys.prepublish,
        });
        let state = AppState::new(http::state::Shared {
            discovery,
            health,
            tokens,
            managed_identities,
            admin: admin.clone(),
            admin_auth,
            faults: faults.clone(),
            console,
            key_admin,
            metrics,
            clock,
        });
        Ok(Self {
            sign_in_writer,
            membership,
            settings,
            api_listener,
            mi_listener,
            vm_extension_listener,
            public_url,
            tls,
            keys,
            registry,
            notifications: storage.notifications,
            directory,
            admin,
            state,
            reloader,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_listener.local_addr().unwrap_or(self.settings.server.addr)
    }

    pub fn mi_addr(&self) -> SocketAddr {
        self.mi_listener.local_addr().unwrap_or(self.settings.server.mi_addr)
    }

    /// Where the deprecated VM extension endpoint listens, when it is on.
    pub fn vm_extension_addr(&self) -> Option<SocketAddr> {
        self.vm_extension_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The compute resource IMDS serves every caller as (`server.imds_resource`), resolved.
    pub fn imds_resource(&self) -> Option<&ResourceId> {
        self.state.managed_identities.imds_resource()
    }

    /// The external base URL (issuers and endpoints are built from it).
    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    /// The development CA clients must trust, when TLS runs on it.
    pub fn dev_ca(&self) -> Option<&Path> {
        self.tls.as_ref().and_then(|(files, _)| files.dev_ca.as_deref())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn discovery(&self) -> &DiscoveryService {
        &self.state.discovery
    }

    /// The registry's in-memory view, as request paths read it.
    pub fn directory(&self) -> Arc<DirectorySnapshot> {
        self.directory.clone()
    }

    /// The registry itself (tests read the activity log through it).
    pub fn registry(&self) -> Arc<dyn crate::domain::ports::Registry> {
        self.registry.clone()
    }

    /// Registry administration, as the admin API and the world file use it.
    pub fn admin(&self) -> Arc<AdminService> {
        self.admin.clone()
    }

    /// The live key ring (tests sign through it to check what verifiers see).
    pub fn key_ring(&self) -> KeyRingHandle {
        self.keys.clone()
    }

    /// Reloads keys and TLS material; what SIGHUP does.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// (up to `server.shutdown_grace`) and closes storage.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let max_body = self.settings.server.max_body_bytes;
        let grace = self.settings.server.shutdown_grace;
        let api_handle: Handle<SocketAddr> = Handle::new();
        let mi_handle: Handle<SocketAddr> = Handle::new();

        let api_app = http::api_router(self.state.clone(), max_body, self.settings.server.console)
            .into_make_service_with_connect_info::<SocketAddr>();
        let mi_app = http::mi_router(self.state.clone(), max_body).into_make_service_with_connect_info::<SocketAddr>();
        let proxied = ProxyProtocolAcceptor::new(&self.settings.server.proxy_networks()?);
        let api_server = match &self.tls {
            Some((_, config)) => {
                let server = axum_server::from_tcp_rustls(self.api_listener, config.clone())?
                    .map(|tls| tls.acceptor(proxied.clone()))
                    .handle(api_handle.clone());
                tokio::spawn(server.serve(api_app))
            }
            None => {
                let server =
                    axum_server::from_tcp(self.api_listener)?.acceptor(proxied.clone()).handle(api_handle.clone());
                tokio::spawn(server.serve(api_app))
            }
        };
        let extension_handle: Handle<SocketAddr> = Handle::new();
        let extension_server = match self.vm_extension_listener {
            Some(listener) => {
                let app = http::vm_extension_router(self.state.clone(), max_body)
                    .into_make_service_with_connect_info::<SocketAddr>();
                let server =
                    axum_server::from_tcp(listener)?.acceptor(proxied.clone()).handle(extension_handle.clone());
                Some(tokio::spawn(server.serve(app)))
            }
            None => None,
        };
        let mi_server = axum_server::from_tcp(self.mi_listener)?.acceptor(proxied).handle(mi_handle.clone());
        let mi_server = tokio::spawn(mi_server.serve(mi_app));
        let poller = tokio::spawn(self.reloader.clone().poll_keys(self.settings.keys.reload_interval));
        let follower = tokio::spawn(follow_registry(
            self.directory.clone(),
            self.notifications.clone(),
            self.settings.storage.refresh_interval,
        ));
        let heartbeat = tokio::spawn(self.membership.clone().run(self.settings.cluster.heartbeat_interval));
        let fault_rules = tokio::spawn(self.state.faults.clone().follow(self.settings.storage.refresh_interval));

        shutdown.await;
        self.state.health.start_draining();
        let drain = self.settings.server.drain_delay;
        if !drain.is_zero() {
            // Still serving: the balancer sees /readyz fail and moves new work elsewhere, and
            // keep-alive clients are told to reconnect (Connection: close) before we stop accepting.
            tracing::info!(drain = ?drain, "draining: /readyz answers 503 while requests are still served");
            tokio::time::sleep(drain).await;
        }
        tracing::info!(grace = ?grace, "shutting down: finishing in-flight requests");
        api_handle.graceful_shutdown(Some(grace));
        mi_handle.graceful_shutdown(Some(grace));
        extension_handle.graceful_shutdown(Some(grace));
        poller.abort();
        follower.abort();
        fault_rules.abort();
        // It holds a sign-in sink: gone before the writer is waited for below.
        let _ = fault_rules.await;
        let joined = tokio::join!(api_server, mi_server);
        let extension = match extension_server {
            Some(server) => server.await,
            None => Ok(Ok(())),
        };
        heartbeat.abort();
        self.membership.leave().await;
        // The routers held the last sign-in sinks; with the state dropped too, the writer drains
        // its queue and ends.
        drop(self.state);
        if tokio::time::timeout(grace, self.sign_in_writer).await.is_err() {
            tracing::warn!("the sign-in log writer did not finish within the shutdown grace period");
        }
        self.registry.close().await;
        for result in [joined.0, joined.1, extension] {
            result.map_err(|e| StartupError::Serve(std::io::Error::other(e)))??;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// `server.imds_resource`: an ARM id, or the name of exactly one compute resource.
fn imds_resource(
    settings: &Settings,
    view: &crate::domain::directory::DirectoryView,
) -> Result<Option<ResourceId>, ConfigError> {
    let wanted = settings.server.imds_resource.trim();
    if wanted.is_empty() {
        return Ok(None);
    }
    let problem = |text: String| ConfigError { setting: "server.imds_resource".into(), problem: text };
    if wanted.starts_with('/') {
        let id = ResourceId::parse(wanted).map_err(|e| problem(e.to_string()))?;
        return match view.resource(&id) {
            Some(resource) if resource.id.kind().is_compute() => Ok(Some(resource.id.clone())),
            _ => Err(problem(format!("no compute resource {id} in the registry"))),
        };
    }
    match view.resources_named(wanted).as_slice() {
        [one] => Ok(Some(one.id.clone())),
        [] => Err(problem(format!("no compute resource named '{wanted}' in the registry"))),
        many => Err(problem(format!(
            "{} compute resources are named '{wanted}'; give the ARM id of one: {}",
            many.len(),
            many.iter().map(|r| r.id.to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The backend `storage.url` selects: the registry, where the signing keys live, and what
/// announces changes to either.
struct Storage {
    registry: Arc<dyn Registry>,
    notifications: Option<Arc<dyn ChangeNotifications>>,
    keys: Arc<dyn KeyStore>,
    key_notifications: Option<Arc<dyn ChangeNotifications>>,
    /// The replicas sharing it (this process alone with SQLite).
    roster: Arc<dyn ReplicaRoster>,
    /// Where it is, for messages (a PostgreSQL URL without its password).
    location: String,
}

impl Storage {
    async fn open(settings: &Settings) -> Result<Self, StartupError> {
        match &settings.storage.url {
            None => {
                let path = settings.database_path();
                let location = path.display().to_string();
                let registry = SqliteRegistry::open(&path)
                    .await
                    .map_err(|source| StartupError::Storage { location: location.clone(), source })?;
                let registry = Arc::new(registry);
                Ok(Self {
                    roster: registry.clone(),
                    registry,
                    notifications: None,
                    keys: Arc::new(FileKeyStore::new(settings.signing_key_dir())),
                    key_notifications: None,
                    location,
                })
            }
            Some(url) => {
                let location = url.to_string();
                let error = |source| StartupError::Storage { location: location.clone(), source };
                let pool = PoolSettings {
                    max_connections: settings.storage.max_connections,
                    acquire_timeout: settings.storage.acquire_timeout,
                };
                let kek = cluster_kek(settings)?;
                let registry = PostgresRegistry::open(url.expose(), pool).await.map_err(error)?;
                let keys = SealedKeyStore::new(Arc::new(registry.sealed_keys()), kek);
                let listening = registry.listen().await.map_err(error)?;
                Ok(Self {
                    roster: Arc::new(registry.roster()),
                    registry: Arc::new(registry),
                    notifications: Some(listening.directory),
                    keys: Arc::new(keys),
                    key_notifications: Some(listening.keys),
                    location,
                })
            }
        }
    }
}

/// The key store the settings select, for commands that work on keys without serving
/// (`keys list`, `keys rotate`): the key directory, or the sealed keys in the cluster's database.
pub async fn open_key_store(settings: &Settings) -> Result<Arc<dyn KeyStore>, StartupError> {
    match &settings.storage.url {
        None => Ok(Arc::new(FileKeyStore::new(settings.signing_key_dir()))),
        Some(url) => {
            let kek = cluster_kek(settings)?;
            let pool = PoolSettings { max_connections: 1, acquire_timeout: settings.storage.acquire_timeout };
            let registry = PostgresRegistry::open(url.expose(), pool)
                .await
                .map_err(|source| StartupError::Storage { location: url.to_string(), source })?;
            Ok(Arc::new(SealedKeyStore::new(Arc::new(registry.sealed_keys()), kek)))
        }
    }
}

/// The key-encryption key cluster mode seals signing keys under, read before connecting so a
/// bad one fails fast (settings validation already refused cluster mode without one).
fn cluster_kek(settings: &Settings) -> Result<Arc<crate::signing::Kek>, StartupError> {
    let kek = settings.key_encryption_key()?.ok_or_else(|| ConfigError {
        setting: "keys.kek_file".into(),
        problem: "cluster mode needs a key-encryption key".into(),
    })?;
    Ok(Arc::new(kek))
}

/// Applies changes other processes commit to the registry: at once when the backend announces
/// them (PostgreSQL), and every `interval` regardless, in case an announcement was missed.
async fn follow_registry(
    directory: Arc<DirectorySnapshot>,
    notifications: Option<Arc<dyn ChangeNotifications>>,
    interval: Duration,
) {
    use crate::domain::ports::DirectorySource;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick_or_announced(&mut ticker, notifications.as_ref()).await;
        match directory.refresh().await {
            Ok(()) if failing => {
                tracing::info!("reading the registry's change log again; the directory is current");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "reading the registry's change log failed; serving the last directory and retrying");
                }
                failing = true;
            }
        }
    }
}

/// Waits for the next tick, or for an announced change where the backend announces them.
async fn tick_or_announced(ticker: &mut tokio::time::Interval, feed: Option<&Arc<dyn ChangeNotifications>>) {
    match feed {
        Some(feed) => {
            tokio::select! {
                _ = ticker.tick() => {}
                () = feed.changed() => {}
            }
        }
        None => {
            ticker.tick().await;
        }
    }
}

/// The external issuers' key cache, trusting `federation.ca_file` besides the system roots.
fn external_issuers(settings: &Settings, metrics: &prometheus::Registry) -> Result<ExternalIssuerKeys, StartupError> {
    let federation = &settings.federation;
    let mut extra_roots = match &federation.ca_file {
        Some(path) => vec![std::fs::read(path).map_err(|e| ConfigError {
            setting: "federation.ca_file".into(),
            problem: format!("{}: {e}", path.display()),
        })?],
        None => Vec::new(),
    };
    // In development, issuers on this machine (examples/ci-issuer) hold certificates from the
    // development CA; trusting it here changes nothing for issuers elsewhere.
    if settings.tls.mode == crate::config::TlsMode::Dev
        && let Ok(pem) = std::fs::read(tls::dev_ca_path(&settings.keys.dir))
    {
        extra_roots.push(pem);
    }
    let upstream = UpstreamSettings {
        cache_ttl: federation.issuer_cache_ttl,
        kid_refresh_interval: federation.jwks_refresh_interval,
        fetch_timeout: federation.fetch_timeout,
        max_document_bytes: federation.max_document_bytes,
        extra_roots,
        capacity: 10_000,
    };
    ExternalIssuerKeys::new(upstream, metrics).map_err(|e| StartupError::Admin(e.to_string()))
}

/// Ensures each tenant has its admin client, and that `keys/admin/<tenant>.json` (mode 0600) holds
/// a secret this registry accepts: a file that does (a later start, or another replica's file
/// on a shared keys directory) is kept; otherwise a fresh secret is issued and written there (a
/// file left from another database, say after `data/` was removed or after a cluster run, is
/// replaced). The secret exists in clear only in that file. In cluster mode a secret already
/// issued by another replica is never replaced.
async fn write_admin_credentials(
    settings: &Settings,
    admin: &AdminService,
    discovery: &DiscoveryService,
) -> Result<(), StartupError> {
    let dir = settings.keys.dir.join("admin");
    let io = |source| StartupError::Serve(source);
    crate::files::create_private_dir(&dir).map_err(io)?;
    let tenants: Vec<Tenant> = admin.directory().view().tenants().cloned().collect();
    for tenant in tenants {
        let caller = Caller { tenant: tenant.id, actor: Actor::system() };
        let client = admin.ensure_admin_client(&caller).await.map_err(|e| StartupError::Admin(e.to_string()))?;
        let path = dir.join(format!("{}.json", tenant.name));
        let hashes = admin.directory().view().secret_hashes(client.object_id).to_vec();
        let on_file =
            std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
        if let Some(file) = &on_file
            && file["client_id"].as_str() == Some(client.app_id.to_string().as_str())
            && file["client_secret"].as_str().is_some_and(|secret| secret_matches(&hashes, secret))
        {
            continue;
        }
        if settings.storage.url.is_some() && !hashes.is_empty() {
            // Another replica issued the secret and wrote it to its own keys.dir; a new one here
            // would lock that replica's operators out.
            tracing::warn!(
                tenant = tenant.name.as_str(),
                path = %path.display(),
                "the admin client's secret was issued by another replica; copy its keys/admin file here (it is not reissued)"
            );
            continue;
        }
        let secret =
            admin.reset_client_secret(&caller, &client).await.map_err(|e| StartupError::Admin(e.to_string()))?;
        let credentials = serde_json::json!({
            "tenant_id": tenant.id.to_string(),
            "tenant": tenant.name.as_str(),
            "client_id": client.app_id.to_string(),
            "client_secret": secret.0,
            "scope": format!("{MANAGEMENT_API}/.default"),
            "token_endpoint": discovery.tenant_endpoints(tenant.id.to_string().as_str()).map(|e| e.token_endpoint).unwrap_or_default(),
        });
        let bytes = serde_json::to_vec_pretty(&credentials).map_err(|e| io(std::io::Error::other(e)))?;
        if path.exists() {
            tracing::warn!(path = %path.display(), "the admin credentials on file are not accepted by this registry (written for another database); replacing them with a new secret");
        }
        crate::files::replace(&path, &bytes, 0o600).map_err(io)?;
        tracing::info!(path = %path.display(), tenant = tenant.name.as_str(), "wrote the admin client's credentials");
    }
    Ok(())
}

fn bind(setting: &'static str, addr: SocketAddr) -> Result<TcpListener, StartupError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind { setting, addr, source })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The running server's keys for operators (the console's keys page): states from the ring in
/// memory; a rotation written to the key store, then loaded at once (other replicas follow
/// through the store's announcement or their next poll).
pub struct KeyAdmin {
    reloader: Reloader,
    clock: Arc<dyn Clock>,
    alg: crate::signing::Algorithm,
    prepublish: Duration,
}

#[async_trait::async_trait]
impl crate::domain::keys::KeyAdministration for KeyAdmin {
    fn statuses(&self) -> Vec<crate::domain::keys::KeyStatus> {
        let ring = self.reloader.keys.snapshot();
        ring.states(self.clock.now()).into_iter().map(|(entry, state)| key_status(entry, state)).collect()
    }

    async fn rotate(&self, immediately: bool) -> Result<crate::domain::keys::KeyStatus, String> {
        let now = self.clock.now();
        let rotation = Rotation {
            alg: self.alg,
            now,
            activate_at: if immediately { now } else { now + self.prepublish },
            retire_after: self.reloader.retire_after,
            force: immediately,
        };
        let entry = self.reloader.key_store.rotate(rotation).await.map_err(|e| e.to_string())?;
        self.reloader.reload_keys().await;
        let state = if immediately { KeyState::Current } else { KeyState::Next };
        Ok(key_status(&entry, state))
    }
}

fn key_status(entry: &KeyEntry, state: KeyState) -> crate::domain::keys::KeyStatus {
    crate::domain::keys::KeyStatus {
        kid: entry.key.kid().to_owned(),
        alg: entry.key.alg().as_str().to_owned(),
        state: state.label(),
        signs_from: entry.activate_at,
        published_until: match state {
            KeyState::Previous { published_until } => Some(published_until),
            _ => None,
        },
    }
}

/// Re-reads the key store and TLS files into the running server.
#[derive(Clone)]
pub struct Reloader {
    key_store: Arc<dyn KeyStore>,
    key_notifications: Option<Arc<dyn ChangeNotifications>>,
    keys: KeyRingHandle,
    retire_after: Duration,
    tls: Option<(TlsFiles, RustlsConfig)>,
}

impl Reloader {
    /// Reloads everything; failures are logged and the previous material keeps serving.
    pub async fn reload(&self) {
        self.reload_keys().await;
        if let Some((files, config)) = &self.tls {
            match config.reload_from_pem_file(&files.cert_chain, &files.key).await {
                Ok(()) => tracing::info!(cert = %files.cert_chain.display(), "reloaded the TLS certificate"),
                Err(e) => tracing::error!(error = %e, "TLS reload failed; the previous certificate keeps serving"),
            }
        }
    }

    /// Swaps in the key store's current contents. Returns whether it succeeded.
    pub async fn reload_keys(&self) -> bool {
        match self.key_store.load().await {
            Ok(entries) => {
                let kids: Vec<String> = entries.iter().map(|e| e.key.kid().to_owned()).collect();
                self.keys.replace(KeyRing::new(entries, self.retire_after));
                tracing::info!(?kids, "loaded signing keys");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "key reload failed; the previous keys keep serving");
                false
            }
        }
    }

    /// Reloads when the store's version moves: checked every `interval`, and at once when the
    /// store announces a change (cluster mode).
    async fn poll_keys(self, interval: Duration) {
        let mut last = self.key_store.version().await;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick_or_announced(&mut ticker, self.key_notifications.as_ref()).await;
            let version = self.key_store.version().await;
            if version.is_some() && version != last && self.reload_keys().await {
                last = version;
            }
        }
    }
}
