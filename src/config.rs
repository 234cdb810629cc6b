//! Typed settings, layered (built-in `config/default.toml` -> `--config FILE` -> `FICUS_*`
//! environment variables), validated once at start-up and read nowhere else.
//!
//! Every failure names the setting and what is wrong in one line, so `main` can print it and exit
//! with status 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use url::Url;

use crate::signing::Algorithm;

/// The documented defaults, built into the binary so it starts from any working directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub keys: KeySettings,
    pub tokens: TokenSettings,
    pub storage: StorageSettings,
    pub cluster: ClusterSettings,
    pub log: LogSettings,
    pub world: WorldSettings,
    pub federation: FederationSettings,
    pub cache: CacheSettings,
    pub signin_log: SignInLogSettings,
    pub rate_limits: RateLimitSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// "ficus" (high throughput) or "azure" (Azure's documented per-VM limits on top).
    pub profile: String,
    pub application: String,
    pub application_burst: u32,
    pub identity: String,
    pub identity_burst: u32,
    pub address: String,
    pub address_burst: u32,
    pub max_tracked_keys: u64,
}

impl RateLimitSettings {
    /// What each scope allows, validated; the profile adds Azure's per-VM limits.
    pub fn limits(&self) -> Result<crate::rate_limit::Limits, ConfigError> {
        use crate::rate_limit::Rate;
        use std::num::NonZeroU32;
        let one = |name: &str, rate: &str, burst: u32| {
            let rate =
                crate::rate_limit::Rate::parse(rate).map_err(|e| ConfigError::new(format!("rate_limits.{name}"), e))?;
            let burst = std::num::NonZeroU32::new(burst)
                .ok_or_else(|| ConfigError::new(format!("rate_limits.{name}_burst"), "must be at least 1"))?;
            Ok::<_, ConfigError>((rate, burst))
        };
        // Azure's managed-identity endpoint: 20 requests per second and 5 concurrent requests per
        // VM (docs/guide.md cites the documentation).
        let (compute, compute_in_flight) = match self.profile.as_str() {
            "ficus" => ((Rate::Off, NonZeroU32::MIN), None),
            "azure" => {
                let twenty = NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN);
                ((Rate::PerSecond(twenty), twenty), NonZeroU32::new(5))
            }
            other => {
                return Err(ConfigError::new(
                    "rate_limits.profile",
                    format!("'{other}' is not a profile: use \"ficus\" or \"azure\""),
                ));
            }
        };
        Ok(crate::rate_limit::Limits {
            rates: [
                one("application", &self.application, self.application_burst)?,
                one("identity", &self.identity, self.identity_burst)?,
                compute,
                one("address", &self.address, self.address_burst)?,
            ],
            compute_in_flight,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub issued_tokens_capacity: u64,
    pub verified_assertions_capacity: u64,
    pub token_reuse_min_remaining: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInLogSettings {
    pub queue_capacity: usize,
    pub batch_size: usize,
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSettings {
    pub allow_http_loopback_issuers: bool,
    /// `"log"`, `"response"`, or empty: `"response"` with `tls.mode = "dev"`, else `"log"`.
    pub explain_mismatches: String,
    #[serde(deserialize_with = "empty_as_none")]
    pub ca_file: Option<PathBuf>,
    pub trusted_issuers: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub issuer_cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    pub max_document_bytes: usize,
    pub max_assertion_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub max_assertion_lifetime: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub addr: SocketAddr,
    pub mi_addr: SocketAddr,
    #[serde(deserialize_with = "empty_as_none")]
    pub public_url: Option<String>,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a stopping server keeps serving, with readiness failing, before it stops accepting.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Networks whose connections carry a PROXY protocol header.
    pub proxy_protocol_from: Vec<String>,
    pub max_body_bytes: usize,
    /// The compute resource IMDS serves every caller as (name or ARM id); empty: by address.
    pub imds_resource: String,
    /// The deprecated VM extension endpoint's listener (`localhost:50342`); empty: off.
    #[serde(deserialize_with = "empty_as_none_address")]
    pub vm_extension_addr: Option<SocketAddr>,
    /// The web console under `/console` (and its link endpoint); off: no console routes at all.
    pub console: bool,
}

impl Settings {
    /// Whether a failed credential match's diagnosis goes into the error response as well as the
    /// sign-in log: `federation.explain_mismatches`, by default only on a development broker.
    pub fn explain_mismatches_in_response(&self) -> bool {
        match self.federation.explain_mismatches.as_str() {
            "response" => true,
            "log" => false,
            _ => self.tls.mode == TlsMode::Dev,
        }
    }
}

impl ServerSettings {
    /// `proxy_protocol_from`, parsed: CIDRs, or single addresses (a /32 or /128).
    pub fn proxy_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.proxy_protocol_from
            .iter()
            .map(|raw| {
                raw.parse::<ipnet::IpNet>()
                    .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "server.proxy_protocol_from",
                            format!("'{raw}' is not a network (10.0.0.0/8) or an address"),
                        )
                    })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Dev,
    Files,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub mode: TlsMode,
    #[serde(deserialize_with = "empty_as_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(deserialize_with = "empty_as_none")]
    pub key_file: Option<PathBuf>,
    pub dev_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub dir: PathBuf,
    pub algorithm: Algorithm,
    #[serde(with = "humantime_serde")]
    pub prepublish: Duration,
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Cluster mode: a file holding the key-encryption key that seals signing keys in the database.
    #[serde(deserialize_with = "empty_as_none")]
    pub kek_file: Option<PathBuf>,
    /// Cluster mode: the key-encryption key itself (meant for `FICUS_KEYS__KEK`).
    #[serde(deserialize_with = "empty_as_none")]
    pub kek: Option<SecretText>,
}

/// A secret given as a setting; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretText {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub managed_identity_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub data_dir: PathBuf,
    /// `postgres://...`: the PostgreSQL registry shared by replicas; `None`: SQLite in `data_dir`.
    #[serde(deserialize_with = "empty_as_none")]
    pub url: Option<DatabaseUrl>,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Empty: `<hostname>:<port of server.addr>`.
    pub replica: String,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub replica_expiry: Duration,
}

/// A database URL; its password never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                f.write_str(url.as_str())
            }
            Err(_) => f.write_str("(unparseable database URL)"),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSettings {
    #[serde(deserialize_with = "empty_as_none")]
    pub file: Option<PathBuf>,
}

/// A setting that is wrong, and why. Displays as one line: `server.addr: invalid socket address`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { setting: setting.into(), problem: problem.into() }
    }
}

impl Settings {
    /// The key-encryption key of cluster mode, read and checked (`None` without one).
    pub fn key_encryption_key(&self) -> Result<Option<crate::signing::Kek>, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let (setting, text) = match (&self.keys.kek_file, &self.keys.kek) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::new("keys.kek_file", format!("{}: {e}", path.display())))?;
                if let Ok(meta) = std::fs::metadata(path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    tracing::warn!(path = %path.display(), "the key-encryption key file is readable by other users; chmod 600 it");
                }
                ("keys.kek_file", text)
            }
            (None, Some(secret)) => ("keys.kek", secret.expose().to_owned()),
            (None, None) => return Ok(None),
        };
        crate::signing::Kek::parse(&text).map(Some).map_err(|e| ConfigError::new(setting, e.to_string()))
    }

    /// Reads the layers and validates the result. `file` is the `--config` argument.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::new("--config", format!("no such file: {}", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("FICUS_").split("__"));
        Self::from_figment(figment)
    }

    /// Extracts and validates; exposed so tests can layer settings without touching the process
    /// environment.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut settings: Self = figment.extract().map_err(figment_error)?;
        settings.anchor_paths(&figment);
        settings.validate()?;
        Ok(settings)
    }

    /// A relative path from a configuration file is relative to that file's directory, so
    /// `ficus --config /etc/ficus/ficus.toml ...` means the same from any directory. Paths from the
    /// built-in defaults and the environment stay relative to the working directory.
    fn anchor_paths(&mut self, figment: &Figment) {
        let anchor = |key: &str, path: &mut PathBuf| {
            if path.is_absolute() {
                return;
            }
            let file = figment.find_metadata(key).and_then(|m| match &m.source {
                Some(figment::Source::File(file)) => file.parent().map(Path::to_path_buf),
                _ => None,
            });
            if let Some(dir) = file {
                *path = dir.join(&*path);
            }
        };
        anchor("keys.dir", &mut self.keys.dir);
        anchor("storage.data_dir", &mut self.storage.data_dir);
        for (key, path) in [
            ("keys.kek_file", &mut self.keys.kek_file),
            ("tls.cert_file", &mut self.tls.cert_file),
            ("tls.key_file", &mut self.tls.key_file),
            ("federation.ca_file", &mut self.federation.ca_file),
            ("world.file", &mut self.world.file),
        ] {
            if let Some(path) = path {
                anchor(key, path);
            }
        }
    }

    /// The defaults alone, as a figment to merge test overrides into.
    pub fn default_figment() -> Figment {
        Figment::from(Toml::string(DEFAULT_TOML))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_tls()?;
        if let Some(url) = &self.server.public_url {
            parse_public_url(url)?;
        }
        if self.server.addr.port() != 0 && self.server.addr == self.server.mi_addr {
            return Err(ConfigError::new("server.mi_addr", "must differ from server.addr"));
        }
        if self.server.drain_delay > Duration::from_secs(60) {
            return Err(ConfigError::new("server.drain_delay", "must be at most 60s"));
        }
        self.server.proxy_networks()?;
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::new("server.max_body_bytes", "must be at least 1024"));
        }
        if self.keys.reload_interval < Duration::from_millis(50) {
            return Err(ConfigError::new("keys.reload_interval", "must be at least 50ms"));
        }
        let lifetime_range = Duration::from_secs(60)..=Duration::from_secs(48 * 3600);
        for (name, value) in [
            ("tokens.lifetime", self.tokens.lifetime),
            ("tokens.managed_identity_lifetime", self.tokens.managed_identity_lifetime),
        ] {
            if !lifetime_range.contains(&value) {
                return Err(ConfigError::new(name, "must be between 1m and 48h"));
            }
        }
        if let Some(ca) = &self.federation.ca_file
            && !ca.is_file()
        {
            return Err(ConfigError::new("federation.ca_file", format!("no such file: {}", shown(ca))));
        }
        if !["", "log", "response"].contains(&self.federation.explain_mismatches.as_str()) {
            return Err(ConfigError::new(
                "federation.explain_mismatches",
                "use \"log\" or \"response\" (empty: \"response\" with tls.mode = \"dev\", else \"log\")",
            ));
        }
        if !(1024..=1_048_576).contains(&self.federation.max_assertion_bytes) {
            return Err(ConfigError::new("federation.max_assertion_bytes", "must be between 1024 and 1048576"));
        }
        self.rate_limits.limits()?;
        if !(0.0..1.0).contains(&self.cache.token_reuse_min_remaining) {
            return Err(ConfigError::new("cache.token_reuse_min_remaining", "must be at least 0 and below 1"));
        }
        if self.signin_log.queue_capacity == 0 || self.signin_log.batch_size == 0 {
            return Err(ConfigError::new("signin_log", "queue_capacity and batch_size must be positive"));
        }
        if let Some(url) = &self.storage.url {
            let scheme = Url::parse(url.expose()).map(|u| u.scheme().to_owned()).unwrap_or_default();
            if scheme != "postgres" && scheme != "postgresql" {
                return Err(ConfigError::new(
                    "storage.url",
                    "must be a postgres:// URL (leave it empty for the SQLite file in storage.data_dir)",
                ));
            }
        }
        match (&self.keys.kek_file, &self.keys.kek) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new("keys.kek", "set keys.kek_file or keys.kek (FICUS_KEYS__KEK), not both"));
            }
            (None, None) if self.storage.url.is_some() => {
                return Err(ConfigError::new(
                    "keys.kek_file",
                    "cluster mode (storage.url) keeps the signing keys sealed in the database and needs a \
                     key-encryption key: set keys.kek_file to a file holding 32 random bytes in base64 \
                     (`openssl rand -base64 32`), or FICUS_KEYS__KEK to that text, the same on every replica",
                ));
            }
            _ => {}
        }
        if self.storage.max_connections == 0 {
            return Err(ConfigError::new("storage.max_connections", "must be at least 1"));
        }
        if self.storage.refresh_interval < Duration::from_millis(10) {
            return Err(ConfigError::new("storage.refresh_interval", "must be at least 10ms"));
        }
        if !(Duration::from_millis(50)..=Duration::from_secs(60)).contains(&self.cluster.heartbeat_interval) {
            return Err(ConfigError::new("cluster.heartbeat_interval", "must be between 50ms and 60s"));
        }
        if self.cluster.replica_expiry < 2 * self.cluster.heartbeat_interval {
            return Err(ConfigError::new(
                "cluster.replica_expiry",
                "must be at least twice cluster.heartbeat_interval, or a late heartbeat counts a live replica gone",
            ));
        }
        if self.cluster.replica.len() > 200 {
            return Err(ConfigError::new("cluster.replica", "must be at most 200 characters"));
        }
        if self.signin_log.flush_interval > Duration::from_secs(60) {
            return Err(ConfigError::new("signin_log.flush_interval", "must be at most 60s"));
        }
        if self.tokens.clock_skew > Duration::from_secs(3600) {
            return Err(ConfigError::new("tokens.clock_skew", "must be at most 1h"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::new("log.level", format!("not a tracing filter: {e}")))?;
        // The world file is checked by the commands that read it (serve, env), not by every one.
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        match self.tls.mode {
            TlsMode::Files => {
                for (name, file) in [("tls.cert_file", &self.tls.cert_file), ("tls.key_file", &self.tls.key_file)] {
                    match file {
                        None => return Err(ConfigError::new(name, "required when tls.mode = \"files\"")),
                        Some(path) if !path.is_file() => {
                            return Err(ConfigError::new(name, format!("no such file: {}", shown(path))));
                        }
                        Some(_) => {}
                    }
                }
            }
            TlsMode::Off if self.server.public_url.is_none() => {
                return Err(ConfigError::new(
                    "server.public_url",
                    "required when tls.mode = \"off\": the https URL of the proxy in front of ficus",
                ));
            }
            TlsMode::Off | TlsMode::Dev => {}
        }
        Ok(())
    }

    /// The external base URL, given the port the HTTPS listener actually bound.
    pub fn public_url(&self, bound_port: u16) -> Result<Url, ConfigError> {
        match &self.server.public_url {
            Some(url) => parse_public_url(url),
            None => parse_public_url(&format!("https://localhost:{bound_port}")),
        }
    }

    /// The longest time a token signed by a key can stay valid after the key stops signing:
    /// superseded keys stay published this long.
    pub fn key_retire_after(&self) -> Duration {
        self.tokens.lifetime.max(self.tokens.managed_identity_lifetime) + self.tokens.clock_skew
    }

    pub fn database_path(&self) -> PathBuf {
        self.storage.data_dir.join("ficus.db")
    }

    pub fn signing_key_dir(&self) -> PathBuf {
        self.keys.dir.join("signing")
    }
}

fn parse_public_url(raw: &str) -> Result<Url, ConfigError> {
    let setting = "server.public_url";
    let url = Url::parse(raw).map_err(|e| ConfigError::new(setting, format!("not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(ConfigError::new(setting, "must be an https URL (the SDKs refuse plain-HTTP authorities)"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ConfigError::new(setting, "must be an origin only, like https://ficus.example.com"));
    }
    Ok(url)
}

fn figment_error(error: figment::Error) -> ConfigError {
    let path = error.path.join(".");
    let source = error.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
    match &error.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // Figment's path already ends with the unknown field.
            let setting = if error.path.last() == Some(field) { path } else { field.clone() };
            ConfigError::new(setting, format!("unknown setting{source}; expected one of: {}", expected.join(", ")))
        }
        figment::error::Kind::MissingField(field) => {
            let setting = if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
            ConfigError::new(setting, "missing")
        }
        kind => {
            ConfigError::new(if path.is_empty() { "configuration".into() } else { path }, format!("{kind}{source}"))
        }
    }
}

fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: From<String>,
{
    let raw = String::deserialize(deserializer)?;
    Ok((!raw.trim().is_empty()).then(|| T::from(raw)))
}

fn empty_as_none_address<'de, D>(deserializer: D) -> Result<Option<SocketAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = String::deserialize(deserializer)?;
    match raw.trim() {
        "" => Ok(None),
        address => address.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("'{address}' is not an address and port such as 127.0.0.1:50342"))
        }),
    }
}

/// A path as a message shows it: a relative one with the directory it was resolved in.
pub fn shown(path: &Path) -> String {
    match std::env::current_dir() {
        Ok(dir) if path.is_relative() => format!("{} (relative to {})", path.display(), dir.display()),
        _ => path.display().to_string(),
    }
}

/// Reads a world file (see `config/demo-world.toml` for its shape).
pub fn load_world(path: &Path) -> Result<crate::service::world::World, ConfigError> {
    let setting = "world.file";
    let text = std::fs::read_to_string(path).map_err(|e| {
        let problem = if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_owned() } else { e.to_string() };
        ConfigError::new(setting, format!("{problem}: {}", shown(path)))
    })?;
    let world: crate::service::world::World =
        toml::from_str(&text).map_err(|e| ConfigError::new(setting, format!("{}: {}", path.display(), e.message())))?;
    world.check().map_err(|e| ConfigError::new(setting, format!("{}: {e}", path.display())))?;
    Ok(world)
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    fn with(overrides: &str) -> Result<Settings, ConfigError> {
        let figment =
            Settings::default_figment().merge(Toml::string(overrides)).merge(Serialized::default("world.file", ""));
        Settings::from_figment(figment)
    }

    #[test]
    fn defaults_are_valid() {
        let settings = with("").unwrap();
        assert_eq!(settings.server.addr.to_string(), "127.0.0.1:8443");
        assert_eq!(settings.server.mi_addr.to_string(), "127.0.0.1:8480");
        assert_eq!(settings.public_url(8443).unwrap().as_str(), "https://localhost:8443/");
    }

    #[test]
    fn mismatch_diagnoses_reach_responses_only_on_a_development_broker_unless_configured() {
        assert!(with("").unwrap().explain_mismatches_in_response(), "tls.mode = dev");
        let behind_proxy = "[tls]\nmode = \"off\"\n[server]\npublic_url = \"https://ficus.example\"";
        assert!(!with(behind_proxy).unwrap().explain_mismatches_in_response(), "a production broker logs only");
        let opted_in = format!("{behind_proxy}\n[federation]\nexplain_mismatches = \"response\"");
        assert!(with(&opted_in).unwrap().explain_mismatches_in_response());
        assert!(!with("[federation]\nexplain_mismatches = \"log\"").unwrap().explain_mismatches_in_response());
        assert_eq!(
            with("[federation]\nexplain_mismatches = \"always\"").unwrap_err().setting,
            "federation.explain_mismatches"
        );
    }

    #[test]
    fn unknown_setting_is_named_with_its_section() {
        let err = with("[server]\nadress = \"x\"").unwrap_err();
        assert_eq!(err.setting, "server.adress");
        assert!(err.problem.starts_with("unknown setting"), "{err}");
    }

    #[test]
    fn bad_port_is_named() {
        let err = with("[server]\naddr = \"127.0.0.1:99999\"").unwrap_err();
        assert_eq!(err.setting, "server.addr");
    }

    #[test]
    fn files_mode_needs_existing_certificate() {
        let err =
            with("[tls]\nmode = \"files\"\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"")
                .unwrap_err();
        assert_eq!(err.to_string(), "tls.cert_file: no such file: /nonexistent/cert.pem");
    }

    #[test]
    fn plain_http_mode_needs_a_public_url() {
        let err = with("[tls]\nmode = \"off\"").unwrap_err();
        assert_eq!(err.setting, "server.public_url");
    }

    #[test]
    fn the_azure_profile_adds_azures_per_vm_limits_and_an_unknown_profile_is_refused() {
        let ficus = with("").unwrap().rate_limits.limits().unwrap();
        assert_eq!((ficus.rates[2].0, ficus.compute_in_flight), (crate::rate_limit::Rate::Off, None));
        let azure = with("[rate_limits]\nprofile = \"azure\"").unwrap().rate_limits.limits().unwrap();
        assert_eq!(azure.rates[2].0.to_string(), "20/s");
        assert_eq!(azure.compute_in_flight.map(std::num::NonZeroU32::get), Some(5));
        let wrong = with("[rate_limits]\nprofile = \"aws\"").unwrap_err();
        assert_eq!(wrong.setting, "rate_limits.profile");
    }

    #[test]
    fn the_deprecated_vm_extension_endpoint_is_off_unless_given_an_address() {
        assert_eq!(with("").unwrap().server.vm_extension_addr, None);
        let on = with("[server]\nvm_extension_addr = \"127.0.0.1:50342\"").unwrap();
        assert_eq!(on.server.vm_extension_addr, Some(SocketAddr::from(([127, 0, 0, 1], 50342))));
        let wrong = with("[server]\nvm_extension_addr = \"localhost\"").unwrap_err();
        assert!(wrong.problem.contains("'localhost' is not an address and port"), "{}", wrong.problem);
    }

    #[test]
    fn public_url_must_be_an_https_origin() {
        assert_eq!(with("[server]\npublic_url = \"http://x\"").unwrap_err().setting, "server.public_url");
        assert_eq!(with("[server]\npublic_url = \"https://x/path\"").unwrap_err().setting, "server.public_url");
    }

    #[test]
    fn retired_keys_outlive_the_longest_token() {
        let settings =
            with("[tokens]\nlifetime = \"1h\"\nmanaged_identity_lifetime = \"2h\"\nclock_skew = \"1m\"").unwrap();
        assert_eq!(settings.key_retire_after(), Duration::from_secs(2 * 3600 + 60));
    }

    #[test]
    fn storage_url_must_be_postgres_and_never_shows_its_password() {
        assert_eq!(with("[storage]\nurl = \"mysql://x\"").unwrap_err().setting, "storage.url");
        let kek = "[keys]\nkek = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n";
        let settings = with(&format!("{kek}[storage]\nurl = \"postgres://ficus:hunter2@db:5432/ficus\"")).unwrap();
        let url = settings.storage.url.unwrap();
        assert_eq!(url.to_string(), "postgres://ficus:***@db:5432/ficus");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(with("").unwrap().storage.url.is_none(), "SQLite by default");
    }

    #[test]
    fn cluster_mode_needs_exactly_one_key_encryption_key_and_never_shows_it() {
        let cluster = "[storage]\nurl = \"postgres://db/ficus\"\n";
        let missing = with(cluster).unwrap_err();
        assert_eq!(missing.setting, "keys.kek_file");
        assert!(missing.problem.contains("openssl rand -base64 32"), "{}", missing.problem);
        let kek = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let both = with(&format!("{cluster}[keys]\nkek = \"{kek}\"\nkek_file = \"/etc/kek\"")).unwrap_err();
        assert_eq!(both.setting, "keys.kek");
        let settings = with(&format!("{cluster}[keys]\nkek = \"{kek}\"")).unwrap();
        assert!(!format!("{:?}", settings.keys).contains(kek));
        assert!(settings.key_encryption_key().unwrap().is_some());
        let short = with(&format!("{cluster}[keys]\nkek = \"AAEC\"")).unwrap();
        assert_eq!(short.key_encryption_key().unwrap_err().setting, "keys.kek");
        assert!(with("").unwrap().key_encryption_key().unwrap().is_none(), "SQLite mode needs none");
    }

    #[test]
    fn demo_world_parses() {
        let world = load_world(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-world.toml"))).unwrap();
        assert_eq!(world.tenants[0].tenant().unwrap().name.as_str(), "demo");
    }
}
