//! `ficus env`: shell `export` lines that point the Azure SDKs and MSAL at this broker, and, with
//! `--resource`, what a workload on one compute resource needs for its managed identity.

use super::absolute;
use super::admin::{AdminCall, AdminClient, ComputeKind, ComputeRef, ResourceCommand};
use crate::config::{Settings, TlsMode};
use crate::service::world::{World, WorldResource, WorldTenant};
use crate::startup::StartupError;

/// Appends a line to the output buffer (written once at the end, so a reader that stops early,
/// like `grep -q`, cannot make a later line fail).
macro_rules! say {
    ($out:ident, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Writes the buffer to standard output; a closed pipe is the reader's choice, not an error.
fn emit(out: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

pub async fn print_env(settings: &Settings, tenant: Option<&str>, resource: Option<&str>) -> Result<(), StartupError> {
    let mut out = String::new();
    let world = match &settings.world.file {
        Some(file) => crate::config::load_world(file)?,
        None => World::default(),
    };
    let tenants: Vec<_> = world.tenants.iter().filter_map(|t| t.tenant().ok()).collect();
    let chosen = match tenant {
        Some(wanted) => {
            let wanted = wanted.to_ascii_lowercase();
            tenants.iter().find(|t| t.name.as_str() == wanted || t.id.to_string() == wanted)
        }
        None => tenants.first(),
    };
    let Some(chosen) = chosen else {
        return Err(crate::config::ConfigError {
            setting: "world.file".into(),
            problem: format!("no tenant {} in the world file", tenant.unwrap_or("at all")),
        }
        .into());
    };
    say!(out, "# ficus: environment for the Azure SDKs and MSAL. Use: eval \"$(ficus env)\"");
    for variable in &sdk_variables(settings, chosen.id)? {
        if variable.name == "REQUESTS_CA_BUNDLE" {
            say!(
                out,
                "# Trust the development CA. These replace the default trust store of the processes that read them."
            );
        }
        match variable.read_by {
            "" => say!(out, "export {}={}", variable.name, variable.value),
            read_by => say!(out, "export {}={}   # {read_by}", variable.name, variable.value),
        }
    }
    say!(out, "# MSAL-based credentials must not ask Microsoft's host to validate this authority:");
    say!(out, "#   Python azure-identity  ClientAssertionCredential(..., disable_instance_discovery=True)");
    say!(out, "#   Python msal            ConfidentialClientApplication(..., instance_discovery=False)");
    say!(out, "#   JavaScript             new ClientAssertionCredential(..., {{ disableInstanceDiscovery: true }})");
    say!(out, "#   .NET Azure.Identity    new ClientAssertionCredentialOptions {{ DisableInstanceDiscovery = true }}");
    say!(out, "#   Java azure-identity    new ClientAssertionCredentialBuilder().disableInstanceDiscovery()");
    say!(
        out,
        "#   Go azidentity          &azidentity.ClientAssertionCredentialOptions{{DisableInstanceDiscovery: true}}"
    );
    if let Some(name) = resource {
        let spec = world
            .tenants
            .iter()
            .find(|t| t.id.eq_ignore_ascii_case(&chosen.id.to_string()))
            .and_then(|t| t.resources.iter().find(|r| r.name == name).map(|r| (t, r)));
        let Some((tenant_spec, resource_spec)) = spec else {
            return Err(StartupError::Admin(format!(
                "no compute resource '{name}' in tenant {} of the world file",
                chosen.name
            )));
        };
        print_resource_env(settings, tenant_spec, resource_spec, &mut out).await?;
    }
    emit(&out);
    Ok(())
}

/// An environment variable the SDKs read.
pub(crate) struct SdkVariable {
    pub name: &'static str,
    pub value: String,
    /// Which clients read it (empty: all of them).
    pub read_by: &'static str,
}

/// What points the SDKs at this broker: the authority host and the tenant, then, on a development
/// broker, the development CA for each family of clients.
pub(crate) fn sdk_variables(
    settings: &Settings,
    tenant: crate::domain::tenant::TenantId,
) -> Result<Vec<SdkVariable>, StartupError> {
    let authority = settings.public_url(settings.server.addr.port())?;
    let variable = |name, value, read_by| SdkVariable { name, value, read_by };
    let mut all = vec![
        variable("AZURE_AUTHORITY_HOST", authority.as_str().trim_end_matches('/').to_owned(), ""),
        variable("AZURE_TENANT_ID", tenant.to_string(), ""),
    ];
    if settings.tls.mode == TlsMode::Dev {
        let ca = absolute(&crate::tls::dev_ca_path(&settings.keys.dir)).display().to_string();
        all.extend([
            variable("REQUESTS_CA_BUNDLE", ca.clone(), "Python requests (azure-identity, msal)"),
            variable("SSL_CERT_FILE", ca.clone(), "OpenSSL-based clients, Go, Rust (rustls-native-certs)"),
            variable("CURL_CA_BUNDLE", ca.clone(), "curl"),
            variable("NODE_EXTRA_CA_CERTS", ca, "Node.js (added to its built-in roots)"),
        ]);
    }
    Ok(all)
}

async fn print_resource_env(
    settings: &Settings,
    tenant: &WorldTenant,
    resource: &WorldResource,
    out: &mut String,
) -> Result<(), StartupError> {
    let mi = settings.server.mi_addr;
    say!(out, "# Managed identity of {} ({}):", resource.name, resource.kind);
    if resource.kind == "VirtualMachine" {
        say!(out, "# IMDS picks the VM by the caller's address: run the workload from {:?}.", resource.addresses);
        say!(out, "unset IDENTITY_ENDPOINT IDENTITY_HEADER");
        say!(out, "export AZURE_POD_IDENTITY_AUTHORITY_HOST=http://{mi}   # azure-identity (Python, JavaScript), msal");
        say!(out, "export MSAL_MANAGED_IDENTITY_ENDPOINT=http://{mi}/metadata/identity/oauth2/token   # msal-python");
        return Ok(());
    }
    let admin_error = |e: super::admin::ClientError| StartupError::Admin(e.to_string());
    let client = AdminClient::sign_in(settings, &tenant.name).await.map_err(admin_error)?;
    let command = ResourceCommand::IdentityHeader {
        resource: ComputeRef {
            kind: ComputeKind::Webapp,
            name: resource.name.clone(),
            resource_group: resource.resource_group.clone(),
            subscription: resource.subscription.map(|s| s.to_string()),
        },
    };
    let answer = super::admin::dispatch(&client, AdminCall::Resource(command)).await.map_err(admin_error)?;
    let header: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    let Some(secret) = header["identityHeader"].as_str() else {
        return Err(StartupError::Admin(format!("{} has no managed identity", resource.name)));
    };
    say!(out, "export IDENTITY_ENDPOINT=http://{mi}/msi/token");
    say!(out, "export IDENTITY_HEADER={secret}");
    Ok(())
}
