//! `ci-issuer`: a GitHub-Actions-style OIDC issuer for trying federated credentials locally.
//!
//! `serve` publishes discovery and a JWKS at `https://localhost:8700`, with a server certificate
//! issued by ficus's development CA (from `keys/`), which a broker in `tls.mode = "dev"` trusts.
//! `mint` prints a token like the ones GitHub Actions hands a workflow: RS256, signed with the
//! issuer's key (kept in `data/ci-issuer/`, mode 0600).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "ci-issuer", about = "A GitHub-Actions-style OIDC issuer for local federation tests")]
struct Args {
    /// Where the issuer keeps its signing key
    #[arg(long, global = true, default_value = "data/ci-issuer")]
    state_dir: PathBuf,
    /// The issuer URL (its discovery document is served under it)
    #[arg(long, global = true, default_value = "https://localhost:8700")]
    issuer: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve discovery and the JWKS over HTTPS
    Serve {
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: String,
        /// ficus's keys directory: the development CA issues this server's certificate
        #[arg(long, default_value = "keys")]
        ficus_keys: PathBuf,
    },
    /// Print a signed token for a workflow
    Mint {
        #[arg(long, default_value = "repo:octo/orders:ref:refs/heads/main")]
        subject: String,
        #[arg(long, default_value = "api://AzureADTokenExchange")]
        audience: String,
        /// Lifetime in seconds
        #[arg(long, default_value_t = 300)]
        lifetime: i64,
    },
}

type Failure = Box<dyn std::error::Error>;

/// The issuer's RSA key: generated on first use, PKCS#8 PEM, mode 0600.
fn signing_key(dir: &Path) -> Result<(String, Value, String), Failure> {
    let path = dir.join("signing-key.pem");
    if !path.exists() {
        std::fs::create_dir_all(dir)?;
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| "key generation failed")?;
        let der = pair.as_der().map_err(|_| "key encoding failed")?;
        let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
    }
    let text = std::fs::read_to_string(&path)?;
    let der = pem::parse(&text)?.into_contents();
    let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| "not an RSA PKCS#8 key")?;
    let n = URL_SAFE_NO_PAD.encode(pair.public_key().modulus().big_endian_without_leading_zero());
    let e = URL_SAFE_NO_PAD.encode(pair.public_key().exponent().big_endian_without_leading_zero());
    let kid = format!("ci-{}", &n[..16]);
    let jwk = json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e });
    Ok((text, jwk, kid))
}

#[allow(clippy::disallowed_methods)] // an example tool, not the broker: the wall clock is its clock
fn mint(args: &Args, subject: &str, audience: &str, lifetime: i64) -> Result<String, Failure> {
    let (pem_text, _, kid) = signing_key(&args.state_dir)?;
    let now = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs())?;
    let (repository, git_ref) = subject.strip_prefix("repo:").and_then(|s| s.split_once(":ref:")).unwrap_or(("", ""));
    let claims = json!({
        "iss": args.issuer, "sub": subject, "aud": audience, "iat": now, "nbf": now, "exp": now + lifetime,
        "jti": uuid::Uuid::new_v4().to_string(), "repository": repository, "ref": git_ref,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid);
    Ok(jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(pem_text.as_bytes())?)?)
}

async fn serve(args: &Args, listen: &str, ficus_keys: &Path) -> Result<(), Failure> {
    let (_, jwk, _) = signing_key(&args.state_dir)?;
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(ficus_keys.join("dev-ca.key.pem"))?)?;
    let ca = rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(ficus_keys.join("dev-ca.pem"))?, ca_key)?;
    let server_key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert = params.signed_by(&server_key, &ca)?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.pem().into_bytes(),
        server_key.serialize_pem().into_bytes(),
    )
    .await?;
    let issuer = args.issuer.clone();
    let discovery = json!({
        "issuer": issuer, "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "subject_types_supported": ["public"], "response_types_supported": ["id_token"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let keys = json!({ "keys": [jwk] });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { Json(discovery) }))
        .route("/.well-known/jwks", get(move || async move { Json(keys) }));
    eprintln!("ci-issuer: {} (discovery at {}/.well-known/openid-configuration)", args.issuer, args.issuer);
    axum_server::bind_rustls(listen.parse::<std::net::SocketAddr>()?, tls).serve(app.into_make_service()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Command::Serve { listen, ficus_keys } => serve(&args, listen, ficus_keys).await,
        Command::Mint { subject, audience, lifetime } => {
            mint(&args, subject, audience, *lifetime).map(|t| println!("{t}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ci-issuer: {e}");
            ExitCode::FAILURE
        }
    }
}
