//! `ficus sandbox -- COMMAND`: runs a command where Azure's managed-identity endpoint is at its
//! real address. The process enters a new network namespace (inside a new user namespace that
//! maps only the caller's own uid and gid, unless it already runs as root), brings its loopback
//! interface up with `169.254.169.254` on it, and serves IMDS there on port 80 and the HTTPS API
//! on `127.0.0.1` at the configured port, as the compute resource named by `--resource`. The
//! broker opens the same registry as one running outside (a SQLite file; the change log keeps
//! both current). COMMAND runs with the SDK variables of `ficus env` and none of the variables
//! that would send the SDKs anywhere but IMDS; the broker stops when it exits, and its exit status
//! is the sandbox's. Nothing is added to the host's interfaces: they are not visible from here.
//!
//! The namespaces must be entered while the process has one thread ([`isolate`], before the async
//! runtime starts); the rest ([`run`]) runs in the runtime.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;

use futures_util::TryStreamExt;
use nix::sched::CloneFlags;

use crate::cli::env::sdk_variables;
use crate::config::Settings;
use crate::domain::clock::SystemClock;
use crate::domain::ports::DirectorySource;
use crate::startup::{Application, StartupError};

/// Where Azure's IMDS is.
pub const IMDS_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Variables that would point the SDKs at another managed-identity endpoint than IMDS (App
/// Service, Cloud Shell, Arc, Service Fabric, azure-identity's and msal's overrides).
const ENDPOINT_VARIABLES: [&str; 9] = [
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "MSAL_MANAGED_IDENTITY_ENDPOINT",
    "AZURE_FEDERATED_TOKEN_FILE",
];

/// Exit statuses of the sandbox itself, as `env`, `timeout` and container runtimes use them.
pub mod exit {
    /// The sandbox could not be set up.
    pub const SANDBOX_FAILED: u8 = 125;
    /// COMMAND was found but could not be run.
    pub const NOT_EXECUTABLE: u8 = 126;
    /// COMMAND was not found.
    pub const NOT_FOUND: u8 = 127;
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "cannot create a network namespace ({0}). Unprivileged user namespaces are disabled on this \
         machine (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces, or an AppArmor \
         policy such as kernel.apparmor_restrict_unprivileged_userns), or a container runtime's \
         seccomp profile forbids unshare. Run ficus sandbox as root, or allow them"
    )]
    Namespace(String),
    #[error("cannot map the user namespace's ids ({0})")]
    IdMap(std::io::Error),
    #[error("cannot configure the sandbox's loopback interface: {0}")]
    Loopback(String),
    #[error(
        "ficus sandbox needs the SQLite registry (storage.url is set): inside the namespace there is \
         no route to a database server"
    )]
    NeedsSqlite,
}

/// Enters a new network namespace; as anyone but root, inside a new user namespace where the
/// caller keeps its own uid and gid (and this process, not COMMAND, holds the capabilities that
/// configuring the namespace and binding port 80 take). Call it while the process has one thread.
pub fn isolate() -> Result<(), SandboxError> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    if uid.is_root() {
        return nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| SandboxError::Namespace(e.desc().to_owned()));
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)
        .map_err(|e| SandboxError::Namespace(e.desc().to_owned()))?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(SandboxError::IdMap)?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")).map_err(SandboxError::IdMap)?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1")).map_err(SandboxError::IdMap)?;
    Ok(())
}

/// Brings the namespace's loopback interface up and puts the IMDS address on it.
async fn bring_up_loopback() -> Result<(), SandboxError> {
    let error = |e: rtnetlink::Error| SandboxError::Loopback(e.to_string());
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| SandboxError::Loopback(e.to_string()))?;
    let connection = tokio::spawn(connection);
    let result = async {
        let lo = handle
            .link()
            .get()
            .match_name("lo".to_owned())
            .execute()
            .try_next()
            .await
            .map_err(error)?
            .ok_or_else(|| SandboxError::Loopback("no loopback interface".to_owned()))?;
        let index = lo.header.index;
        handle.link().set(rtnetlink::LinkUnspec::new_with_index(index).up().build()).execute().await.map_err(error)?;
        handle.address().add(index, IpAddr::V4(IMDS_ADDRESS), 32).execute().await.map_err(error)
    }
    .await;
    connection.abort();
    result
}

/// Serves IMDS and the HTTPS API inside the namespace as `resource`, runs `command` there and
/// returns its exit status once the broker has stopped.
pub async fn run(mut settings: Settings, resource: &str, command: &[OsString]) -> Result<u8, StartupError> {
    if settings.storage.url.is_some() {
        return Err(StartupError::Sandbox(SandboxError::NeedsSqlite));
    }
    bring_up_loopback().await?;
    let port = settings.server.addr.port();
    settings.server.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    settings.server.mi_addr = SocketAddr::from((IMDS_ADDRESS, 80));
    settings.server.imds_resource = resource.to_owned();
    settings.server.proxy_protocol_from.clear();
    settings.server.drain_delay = std::time::Duration::ZERO;
    let app = Application::build(settings.clone(), Arc::new(SystemClock)).await?;
    let compute =
        app.imds_resource().and_then(|id| app.directory().view().resource(id).map(|r| (r.id.clone(), r.tenant_id)));
    let Some((compute, tenant)) = compute else {
        return Err(StartupError::Admin(format!("no compute resource '{resource}'")));
    };
    tracing::info!(
        resource = %compute,
        imds = %format!("http://{IMDS_ADDRESS}"),
        api = %app.public_url(),
        "sandbox: serving IMDS at its real address"
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let broker = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let mut child = tokio::process::Command::new(&command[0]);
    child.args(&command[1..]);
    for name in ENDPOINT_VARIABLES {
        child.env_remove(name);
    }
    for variable in sdk_variables(&settings, tenant)? {
        child.env(variable.name, variable.value);
    }
    let status = match child.spawn() {
        Ok(child) => wait_forwarding_signals(child).await,
        Err(e) => Err(e),
    };
    let _ = stop.send(());
    broker.await.map_err(|e| StartupError::Serve(std::io::Error::other(e)))??;
    match status {
        Ok(status) => Ok(exit_code(status)),
        Err(e) => {
            eprintln!("ficus sandbox: cannot run {}: {e}", command[0].to_string_lossy());
            Ok(if e.kind() == std::io::ErrorKind::NotFound { exit::NOT_FOUND } else { exit::NOT_EXECUTABLE })
        }
    }
}

/// Waits for COMMAND. Ctrl-C reaches it from the terminal; SIGTERM sent to ficus is passed on.
async fn wait_forwarding_signals(mut child: tokio::process::Child) -> std::io::Result<ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            status = child.wait() => return status,
            _ = terminate.recv() => forward(&child, nix::sys::signal::Signal::SIGTERM),
            _ = interrupt.recv() => {}
        }
    }
}

fn forward(child: &tokio::process::Child, signal: nix::sys::signal::Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// A shell's view of how COMMAND ended: its code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_ended_by_a_signal_exits_as_a_shell_reports_it() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143, "SIGTERM");
    }
}
