//! `cargo run -p vault`: the example secret store, trusting the broker's demo tenant.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "vault", about = "An example secret store that trusts ficus through OIDC discovery")]
struct Args {
    /// The broker's base URL
    #[arg(long, default_value = "https://localhost:8443")]
    authority: String,
    /// Tenant (name or GUID) whose issuer to trust
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// The audience tokens must carry
    #[arg(long, default_value = "api://vault")]
    audience: String,
    /// The app role a caller needs
    #[arg(long, default_value = "Secrets.Read")]
    role: String,
    /// CA certificate (PEM) to trust for the broker
    #[arg(long, default_value = "keys/dev-ca.pem")]
    ca_file: String,
    /// Where to listen
    #[arg(long, default_value = "127.0.0.1:8600")]
    listen: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = vault::Config {
        discovery_url: format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            args.authority.trim_end_matches('/'),
            args.tenant
        ),
        audience: args.audience,
        role: args.role,
        ca_pem: std::fs::read(&args.ca_file).ok(),
        secrets: HashMap::from([("demo-secret".to_owned(), "the vault opened".to_owned())]),
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("vault: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("vault: serving GET http://{}/secrets/demo-secret", args.listen);
    match vault::serve(listener, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vault: {e}");
            ExitCode::FAILURE
        }
    }
}
