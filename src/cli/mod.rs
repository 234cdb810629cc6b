//! The command line: `serve`, `keys list|rotate`, `env`, `sandbox`, and the admin commands (`admin token`,
//! `app`, `fic`, `identity`, `resource`, `role`, `fault`) that talk to a running broker's admin API.
//! Parsing with clap; each command is a short function over settings.

mod admin;
pub(crate) mod env;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::config::Settings;
use crate::domain::clock::{Clock, SystemClock};
use crate::signing::{KeyRing, Rotation};
use crate::startup::{Application, StartupError};

#[derive(Debug, Parser)]
#[command(
    name = "ficus",
    version,
    about = "A workload identity federation broker: an OIDC issuer and token service that speaks Entra ID's and Azure managed identity's protocols",
    long_about = "ficus issues tokens to managed identities through IMDS- and App Service-shaped endpoints, \
exchanges trusted assertions for application tokens through federated identity credentials, and \
publishes OIDC discovery and a JWKS so resource servers validate its tokens offline. The official \
Azure SDKs and MSAL work against it unmodified.\n\n\
Start here:  ficus serve          (HTTPS on 127.0.0.1:8443, managed identity on 127.0.0.1:8480)\n\
Then:        eval \"$(ficus env)\"  (point the SDKs at it)\n\n\
Settings come from config/default.toml (built in), the --config file, then FICUS_<SECTION>__<SETTING> \
environment variables."
)]
pub struct Cli {
    /// A TOML file layered over the built-in defaults (see config/default.toml)
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker: creates the database, keys and development certificates on first start
    Serve,
    /// Inspect or rotate the token signing keys
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Admin access: print an admin bearer token
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Applications (Graph /v1.0/applications) of a running broker
    App {
        #[command(subcommand)]
        command: admin::AppCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Federated identity credentials of an application
    Fic {
        #[command(subcommand)]
        command: admin::FicCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// User-assigned managed identities
    Identity {
        #[command(subcommand)]
        command: admin::IdentityCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Compute resources (VMs, web apps, slots) and their identity blocks
    Resource {
        #[command(subcommand)]
        command: admin::ResourceCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// App role assignments
    Role {
        #[command(subcommand)]
        command: admin::RoleCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Fault rules: answers the broker gives on purpose (IMDS 410/429/503, token endpoint 429,
    /// latency, closed connections) to test clients' retry logic
    Fault {
        #[command(subcommand)]
        command: admin::FaultCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Print a one-time link that signs in to the web console (valid for two minutes)
    Console {
        /// A look-only session (Ficus.Reader), even for an admin
        #[arg(long)]
        reader: bool,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Print shell `export` lines that point the Azure SDKs and MSAL at this broker
    Env {
        /// Tenant (name or GUID) for AZURE_TENANT_ID; defaults to the first tenant of the world file
        #[arg(long)]
        tenant: Option<String>,
        /// Also print what a workload on this compute resource of the world file needs for its
        /// managed identity: the IMDS variables for a VM, IDENTITY_ENDPOINT and IDENTITY_HEADER
        /// (read from the running broker's admin API) for a web app
        #[arg(long)]
        resource: Option<String>,
    },
    /// Run COMMAND where IMDS is at its real address (169.254.169.254), in its own network
    /// namespace, as a compute resource's workload
    #[command(long_about = "Runs COMMAND in a new network namespace (in a user namespace unless run as root) whose \
loopback interface carries 169.254.169.254. A broker on the same registry serves IMDS there on port 80, \
as the compute resource --resource names, and the HTTPS API on localhost at server.addr's port. COMMAND gets \
the variables of `ficus env` and none that would send the SDKs anywhere but IMDS. The broker stops when \
COMMAND exits, and COMMAND's exit status is ficus's (2: a setting is wrong; 125: the sandbox could not be set up; 126: COMMAND \
could not run; 127: COMMAND was not found). Needs the SQLite registry.")]
    Sandbox {
        /// The compute resource COMMAND's processes are (a name, or an ARM id)
        #[arg(long, default_value = "vm-demo")]
        resource: String,
        /// The command and its arguments
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their state (next, current, previous, retired)
    List,
    /// Add a new signing key; it is published at once and signs after keys.prepublish
    Rotate {
        /// Sign with the new key immediately (for a suspected key compromise); the old key stays
        /// published until its tokens expire
        #[arg(long)]
        now: bool,
    },
}

/// Runs a command and returns its exit status (COMMAND's for `sandbox`, else 0); the error's
/// follows `StartupError::exit_code`.
pub async fn run(command: Command, settings: Settings) -> Result<u8, StartupError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let result = match command {
        Command::Serve => serve(settings, clock).await,
        Command::Keys { command: KeysCommand::List } => list_keys(&settings, clock.now()).await,
        Command::Keys { command: KeysCommand::Rotate { now } } => rotate_key(&settings, clock.now(), now).await,
        Command::Env { tenant, resource } => env::print_env(&settings, tenant.as_deref(), resource.as_deref()).await,
        Command::Admin { command: admin::AdminCommand::Token, target } => {
            run_admin(&settings, &target, admin::AdminCall::Token).await
        }
        Command::App { command, target } => run_admin(&settings, &target, admin::AdminCall::App(command)).await,
        Command::Fic { command, target } => run_admin(&settings, &target, admin::AdminCall::Fic(command)).await,
        Command::Identity { command, target } => {
            run_admin(&settings, &target, admin::AdminCall::Identity(command)).await
        }
        Command::Resource { command, target } => {
            run_admin(&settings, &target, admin::AdminCall::Resource(command)).await
        }
        Command::Role { command, target } => run_admin(&settings, &target, admin::AdminCall::Role(command)).await,
        Command::Fault { command, target } => run_admin(&settings, &target, admin::AdminCall::Fault(command)).await,
        Command::Console { reader, target } => {
            run_admin(&settings, &target, admin::AdminCall::ConsoleLink { reader }).await
        }
        Command::Sandbox { resource, command } => return crate::sandbox::run(settings, &resource, &command).await,
    };
    result.map(|()| 0)
}

/// Signs in as the tenant's admin client, makes the call and prints its answer.
async fn run_admin(settings: &Settings, target: &admin::Target, call: admin::AdminCall) -> Result<(), StartupError> {
    let client = admin::AdminClient::sign_in(settings, &target.tenant).await.map_err(client_error)?;
    let answer = admin::dispatch(&client, call).await.map_err(client_error)?;
    print(&answer.to_string());
    Ok(())
}

/// Writes `text` and a newline to stdout in one write. A reader that closes the pipe early
/// (`| head`) is not an error, and never a panic (as `println!` would make it).
fn print(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), format!("{text}\n").as_bytes());
}

fn client_error(e: admin::ClientError) -> StartupError {
    StartupError::Admin(e.to_string())
}

async fn serve(settings: Settings, clock: Arc<dyn Clock>) -> Result<(), StartupError> {
    let app = Application::build(settings, clock).await?;
    print(&banner(&app));
    let reloader = app.reloader();
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading keys and TLS certificate");
            reloader.reload().await;
        }
    });
    app.run_until_stopped(shutdown_signal()).await
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn banner(app: &Application) -> String {
    let base = app.public_url().as_str().trim_end_matches('/');
    let mut lines = vec![
        "ficus is running.".to_owned(),
        format!("  HTTPS API         {base}   (listening on {})", app.api_addr()),
        format!("  managed identity  http://{}", app.mi_addr()),
    ];
    if let Some(extension) = app.vm_extension_addr() {
        lines.push(format!("  VM extension      http://{extension}/oauth2/token   (deprecated in Azure; use IMDS)"));
    }
    if let Ok(endpoints) = app.discovery().tenant_endpoints("demo") {
        lines.push(format!("  demo issuer       {}", endpoints.issuer));
        lines.push(format!("  discovery         {base}/demo/v2.0/.well-known/openid-configuration"));
    }
    if let Some(ca) = app.dev_ca() {
        lines.push(format!("  development CA    {}", absolute(ca).display()));
    }
    lines.push(String::new());
    lines.push("Next:".to_owned());
    if let Some(ca) = app.dev_ca() {
        lines.push(format!(
            "  curl --cacert {} {base}/demo/v2.0/.well-known/openid-configuration",
            absolute(ca).display()
        ));
    }
    lines.push(
        "  eval \"$(cargo run --release -- env)\"   # SDK environment variables (AZURE_AUTHORITY_HOST, CA bundle, ...)"
            .to_owned(),
    );
    lines.push("  cargo run --release -- keys list        # signing keys and their state".to_owned());
    lines.push("Stop with Ctrl-C (in-flight requests finish first).".to_owned());
    lines.join("\n")
}

pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

async fn list_keys(settings: &Settings, now: OffsetDateTime) -> Result<(), StartupError> {
    let entries = crate::startup::open_key_store(settings).await?.load().await?;
    let ring = KeyRing::new(entries, settings.key_retire_after());
    let mut lines = vec![format!("{:<45} {:<6} {:<9} {:<22} PUBLISHED UNTIL", "KID", "ALG", "STATE", "SIGNS FROM")];
    for (entry, state) in ring.states(now) {
        let until = match state {
            crate::signing::KeyState::Previous { published_until } => rfc3339(published_until),
            crate::signing::KeyState::Retired => "-".to_owned(),
            _ => "(while current or next)".to_owned(),
        };
        lines.push(format!(
            "{:<45} {:<6} {:<9} {:<22} {until}",
            entry.key.kid(),
            entry.key.alg().as_str(),
            state.label(),
            rfc3339(entry.activate_at)
        ));
    }
    print(&lines.join("\n"));
    Ok(())
}

async fn rotate_key(settings: &Settings, now: OffsetDateTime, immediately: bool) -> Result<(), StartupError> {
    let store = crate::startup::open_key_store(settings).await?;
    let rotation = Rotation {
        alg: settings.keys.algorithm,
        now,
        activate_at: if immediately { now } else { now + settings.keys.prepublish },
        retire_after: settings.key_retire_after(),
        force: immediately,
    };
    let entry = store.rotate(rotation).await?;
    let reaches = match settings.storage.url {
        Some(_) => "every replica loads it at once (announced through the database)".to_owned(),
        None => format!(
            "running servers pick it up within {} (or at once on SIGHUP)",
            humantime::format_duration(settings.keys.reload_interval)
        ),
    };
    print(&format!(
        "Added signing key {} ({}) to {}.\n  published in the JWKS now; signs from {}\n  {reaches}",
        entry.key.kid(),
        entry.key.alg(),
        store.location(),
        rfc3339(entry.activate_at),
    ));
    Ok(())
}

fn rfc3339(instant: OffsetDateTime) -> String {
    instant
        .replace_nanosecond(0)
        .unwrap_or(instant)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
