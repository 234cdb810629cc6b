//! The in-run baselines: the HTTPS floor (a minimal axum + rustls server answering a token-sized
//! JSON body, measured with the same client and loop as the scenarios) and the crypto ceiling
//! (RS256 sign + verify pairs per second, one key per core, held parsed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey};
use axum::Router;
use axum::routing::post;

use crate::Args;
use crate::run::{self, Answer, Outcome, Request};

/// About the size of an access token response.
fn token_sized_body() -> String {
    let token = "x".repeat(1400);
    format!(r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{token}"}}"#)
}

struct Floor {
    cert_pem: String,
    key_pem: String,
}

fn floor_identity() -> Result<Floor, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| e.to_string())?;
    Ok(Floor { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// `POST /token` (exchange-shaped) and `GET /token` (IMDS-shaped), both answering the same body.
fn floor_router() -> Router {
    let body = token_sized_body();
    let answer = move || {
        let body = body.clone();
        async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
    };
    Router::new().route("/token", post(answer.clone()).get(answer))
}

async fn floor_server(listener: std::net::TcpListener, floor: &Floor) -> Result<(), String> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        floor.cert_pem.clone().into_bytes(),
        floor.key_pem.clone().into_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let server = axum_server::from_tcp_rustls(listener, tls).map_err(|e| e.to_string())?;
    server.serve(floor_router().into_make_service()).await.map_err(|e| e.to_string())
}

/// The plain-HTTP floor, on the port after the HTTPS one: what the IMDS path is compared with.
async fn plain_floor_server(https_port: u16) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", https_port + 1)).await.map_err(|e| e.to_string())?;
    axum::serve(listener, floor_router()).await.map_err(|e| e.to_string())
}

/// `--serve-floor`: the floor server alone, for running on the broker's core.
pub async fn serve_floor(addr: &str) -> Result<(), String> {
    let floor = floor_identity()?;
    std::fs::write("floor-ca.pem", &floor.cert_pem).map_err(|e| e.to_string())?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    eprintln!(
        "loadtest: HTTPS floor on https://localhost:{port}/token (certificate in floor-ca.pem), \
         plain HTTP floor on http://127.0.0.1:{}/token",
        port + 1
    );
    let plain = tokio::spawn(plain_floor_server(port));
    let outcome = floor_server(listener, &floor).await;
    plain.abort();
    outcome
}

/// The port of a floor URL (`https://localhost:9443/token`).
fn port_of(url: &str) -> Option<u16> {
    url.split("://").nth(1)?.split('/').next()?.rsplit(':').next()?.parse().ok()
}

/// The HTTPS floor (POST) and the plain-HTTP floor (GET), measured with the same client settings.
pub async fn measure(args: &Args) -> Result<(Outcome, Outcome), String> {
    let (url, cert_pem, handle) = match &args.baseline_url {
        Some(url) => {
            (url.clone(), std::fs::read_to_string("floor-ca.pem").map_err(|e| format!("floor-ca.pem: {e}"))?, None)
        }
        None => {
            let floor = floor_identity()?;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let cert = floor.cert_pem.clone();
            let handle = tokio::spawn(async move {
                let plain = tokio::spawn(plain_floor_server(port));
                let outcome = floor_server(listener, &floor).await;
                plain.abort();
                outcome
            });
            (format!("https://localhost:{port}/token"), cert, Some(handle))
        }
    };
    let plain_url = format!("http://127.0.0.1:{}/token", port_of(&url).ok_or("the floor URL has no port")? + 1);
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?])
        .build()
        .map_err(|e| e.to_string())?;
    let answer = |sent: reqwest::RequestBuilder| async move {
        match sent.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                Answer { status, error: None }
            }
            Err(_) => Answer { status: 0, error: None },
        }
    };
    let https: Request = {
        let client = client.clone();
        Arc::new(move || Box::pin(answer(client.post(&url).form(&[("grant_type", "client_credentials")]))))
    };
    let plain: Request = Arc::new(move || Box::pin(answer(client.get(&plain_url).header("Metadata", "true"))));
    let https = run::closed_loop("https-floor", args, args.concurrency, https).await;
    let plain = run::closed_loop("http-floor", args, args.concurrency, plain).await;
    if let Some(handle) = handle {
        handle.abort();
    }
    Ok((https?, plain?))
}

pub fn crypto_ceiling(duration: Duration) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let started = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let Ok(key) = KeyPair::generate(KeySize::Rsa2048) else {
                        return 0;
                    };
                    let public =
                        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref().to_vec());
                    let rng = SystemRandom::new();
                    let message = [7u8; 600];
                    let mut signature = vec![0; key.public_modulus_len()];
                    let deadline = Instant::now() + duration;
                    let mut pairs = 0;
                    while Instant::now() < deadline {
                        if key.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut signature).is_ok()
                            && public.verify(&message, &signature).is_ok()
                        {
                            pairs += 1;
                        }
                    }
                    pairs
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).collect()
    });
    counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64()
}
