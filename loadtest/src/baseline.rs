//! The in-run baselines:
//! - the floors: a minimal axum server answering a token-sized JSON body, over rustls (HTTPS, what
//!   exchanges are compared with) and plain HTTP (what IMDS is compared with), measured with the
//!   same client and loop as the scenarios;
//! - the client's ceiling: the same requests against an empty server (HTTP/1.1 parsed with
//!   httparse and nothing else: no routing, no header map, the answer written at once), which
//!   costs less per request than any real server, per second of the client's own CPU (so an empty
//!   server that is itself the bound, on a core it shares, does not lower it); a run that
//!   reaches 90% of it measured the client;
//! - the crypto ceiling: RS256 sign + verify pairs per second, one key per core, held parsed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey};
use axum::Router;
use axum::routing::post;

use crate::Args;
use crate::client::{Endpoint, Prepared};
use crate::run::{self, Load, Outcome};

/// About the size of an access token response.
fn token_sized_body() -> String {
    let token = "x".repeat(1400);
    format!(r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{token}"}}"#)
}

#[derive(Clone)]
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

/// The empty server's answer to every request: a status line, two headers and the same body.
fn empty_answer() -> Arc<[u8]> {
    let body = token_sized_body();
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
    [head.as_bytes(), body.as_bytes()].concat().into()
}

/// Serves the empty server on `listener`: over TLS with `tls`, plain otherwise.
async fn serve_empty(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    let answer = empty_answer();
    while let Ok((tcp, _)) = listener.accept().await {
        let (tls, answer) = (tls.clone(), Arc::clone(&answer));
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let _ = match tls {
                Some(tls) => match tls.accept(tcp).await {
                    Ok(stream) => answer_at_once(stream, &answer).await,
                    Err(e) => Err(e),
                },
                None => answer_at_once(tcp, &answer).await,
            };
        });
    }
}

/// For every complete request read (head parsed, body skipped by its content-length), `answer`;
/// the answers to what one read brought are written together. Ends when the client closes.
async fn answer_at_once<S>(mut stream: S, answer: &[u8]) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut input, mut output) = (Vec::with_capacity(16 * 1024), Vec::with_capacity(16 * 1024));
    loop {
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        let mut used = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            let head = match request.parse(&input[used..]) {
                Ok(httparse::Status::Complete(head)) => head,
                Ok(httparse::Status::Partial) => break,
                Err(e) => return Err(std::io::Error::other(e)),
            };
            let body = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if input.len() - used < head + body {
                break;
            }
            used += head + body;
            output.extend_from_slice(answer);
        }
        input.drain(..used);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
    }
}

/// The floor's certificate and key as a rustls server configuration (for the empty server).
fn tls_acceptor(floor: &Floor) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(floor.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(floor.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Where the floors and the empty servers listen.
#[derive(Debug, Clone, Copy)]
struct FloorPorts {
    https: u16,
    http: u16,
    empty_https: u16,
    empty_http: u16,
}

impl FloorPorts {
    /// A floor started apart (`--serve-floor`) on `port`: the plain-HTTP floor on the next port,
    /// the empty servers (HTTPS, plain HTTP) on the two after.
    fn beside(port: u16) -> Self {
        Self { https: port, http: port + 1, empty_https: port + 2, empty_http: port + 3 }
    }
}

/// The four listeners, bound before anything is served, so a taken port is an error at once.
struct FloorListeners {
    https: std::net::TcpListener,
    http: std::net::TcpListener,
    empty_https: std::net::TcpListener,
    empty_http: std::net::TcpListener,
}

impl FloorListeners {
    /// On `addr` and the three ports after it ([`FloorPorts::beside`]).
    fn bind_beside(addr: &str) -> Result<Self, String> {
        let https = std::net::TcpListener::bind(addr).map_err(|e| format!("{addr}: {e}"))?;
        let ports = FloorPorts::beside(https.local_addr().map_err(|e| e.to_string())?.port());
        let bind = |port: u16, what: &str| {
            std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("port {port} ({what}): {e}"))
        };
        Ok(Self {
            https,
            http: bind(ports.http, "the plain-HTTP floor")?,
            empty_https: bind(ports.empty_https, "the HTTPS empty server")?,
            empty_http: bind(ports.empty_http, "the plain-HTTP empty server")?,
        })
    }

    /// Each on a port of the system's choosing (a floor inside this process).
    fn bind_any() -> Result<Self, String> {
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string());
        Ok(Self { https: bind()?, http: bind()?, empty_https: bind()?, empty_http: bind()? })
    }

    fn ports(&self) -> Result<FloorPorts, String> {
        let port = |l: &std::net::TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
        Ok(FloorPorts {
            https: port(&self.https)?,
            http: port(&self.http)?,
            empty_https: port(&self.empty_https)?,
            empty_http: port(&self.empty_http)?,
        })
    }
}

fn tokio_listener(listener: std::net::TcpListener) -> Result<tokio::net::TcpListener, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())
}

/// The empty servers: HTTPS and plain HTTP.
async fn empty_servers(https: std::net::TcpListener, http: std::net::TcpListener, floor: &Floor) -> Result<(), String> {
    let (https, http) = (tokio_listener(https)?, tokio_listener(http)?);
    let tls = tls_acceptor(floor)?;
    tokio::join!(serve_empty(https, Some(tls)), serve_empty(http, None));
    Ok(())
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

/// The plain-HTTP floor: what the IMDS path is compared with.
async fn plain_floor_server(listener: std::net::TcpListener) -> Result<(), String> {
    axum::serve(tokio_listener(listener)?, floor_router()).await.map_err(|e| e.to_string())
}

/// `--serve-floor`: the floor server alone, for running on the broker's core.
pub async fn serve_floor(addr: &str) -> Result<(), String> {
    let floor = floor_identity()?;
    std::fs::write("floor-ca.pem", &floor.cert_pem).map_err(|e| e.to_string())?;
    let listeners = FloorListeners::bind_beside(addr)?;
    let ports = listeners.ports()?;
    eprintln!(
        "loadtest: HTTPS floor on https://localhost:{}/token (certificate in floor-ca.pem), \
         plain HTTP floor on http://127.0.0.1:{}/token, empty servers (the client's ceiling) on ports {} and {}",
        ports.https, ports.http, ports.empty_https, ports.empty_http
    );
    serve_all(listeners, floor).await
}

/// The floors and the empty servers beside them, until one fails.
async fn serve_all(listeners: FloorListeners, floor: Floor) -> Result<(), String> {
    let FloorListeners { https, http, empty_https, empty_http } = listeners;
    let plain = tokio::spawn(plain_floor_server(http));
    let empty = {
        let floor = floor.clone();
        tokio::spawn(async move { empty_servers(empty_https, empty_http, &floor).await })
    };
    let outcome = floor_server(https, &floor).await;
    plain.abort();
    empty.abort();
    outcome
}

/// The port of a floor URL (`https://localhost:9443/token`).
fn port_of(url: &str) -> Option<u16> {
    url.split("://").nth(1)?.split('/').next()?.rsplit(':').next()?.parse().ok()
}

/// The floors measured, and where the client's ceiling is measured.
pub struct Baselines {
    pub https: Outcome,
    pub http: Outcome,
    /// The floors in the open loop too (when the scenarios run in it): the tail a server that
    /// does nothing shows on this machine with this client, the control for the scenarios' tails.
    pub https_open: Option<Outcome>,
    pub http_open: Option<Outcome>,
    /// The empty servers, HTTPS and plain HTTP: in the order of the scenarios' endpoints (the
    /// broker's HTTPS listener, then its managed-identity one).
    empty: Arc<[Arc<Endpoint>]>,
    _servers: InProcess,
}

/// The floor and empty servers when they run in this process: on a thread of their own (named
/// [`run::SERVER_THREAD`], so their CPU time is not counted as the client's), stopped when dropped.
struct InProcess(Option<tokio::sync::oneshot::Sender<()>>);

impl InProcess {
    /// Serves the floors and empty servers on their own thread and runtime until dropped.
    fn start(listeners: FloorListeners, floor: Floor) -> Result<Self, String> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Scheduled as the broker is (one worker per core it may use, the current-thread
        // scheduler on one core), on threads of its own.
        let runtime =
            crate::runtime_builder().thread_name(run::SERVER_THREAD).enable_all().build().map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name(run::SERVER_THREAD.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        outcome = serve_all(listeners, floor) => {
                            if let Err(e) = outcome {
                                eprintln!("loadtest: the in-process floor stopped: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        Ok(Self(Some(stop)))
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

impl Baselines {
    /// The client's ceiling for `load` (printed): see [`client_ceiling`].
    pub async fn client_ceiling(&self, name: &str, args: &Args, load: &Load) -> Result<f64, String> {
        printed_ceiling(&self.empty, name, args, load, "").await
    }

    /// A closed loop of `load` judged against the client's ceiling (see [`judged_closed_loop`]).
    pub async fn judged_closed_loop(&self, name: &str, args: &Args, load: &Load) -> Result<run::Outcome, String> {
        judged_closed_loop(&self.empty, name, args, load).await
    }
}

/// A closed loop of `load`, judged against the client's ceiling for the same requests: measured
/// before it and, where the run went past that (something else slowed the measurement), once more
/// after it, keeping the higher. Each ceiling is printed.
async fn judged_closed_loop(
    empty: &Arc<[Arc<Endpoint>]>,
    name: &str,
    args: &Args,
    load: &Load,
) -> Result<run::Outcome, String> {
    let ceiling = printed_ceiling(empty, name, args, load, "").await?;
    let mut outcome = run::closed_loop(name, args, args.concurrency, load, Some(ceiling)).await?;
    if outcome.ceiling_disturbed() {
        let why = " (measured again: the run went past the first)";
        outcome.raise_ceiling(printed_ceiling(empty, name, args, load, why).await?);
    }
    Ok(outcome)
}

/// [`client_ceiling`], printed as a row of the table.
async fn printed_ceiling(
    empty: &Arc<[Arc<Endpoint>]>,
    name: &str,
    args: &Args,
    load: &Load,
    why: &str,
) -> Result<f64, String> {
    let (ceiling, reached) = client_ceiling(empty, name, args, load).await?;
    let busy = reached.client_busy.map_or(String::new(), |b| format!(", the client {:.0}% busy", b * 100.0));
    println!(
        "{name:<14} {ceiling:>10.0} req/s  the client's ceiling (the same requests against an empty server: {:.0} req/s{busy}){why}",
        reached.rps()
    );
    Ok(ceiling)
}

/// What the client can send of the same requests as `load`, and the run that measured it: a
/// closed loop (at most 5 s) against the empty servers, whose rate is divided by the share of its
/// cores the client kept busy. Where the client was the bound, that share is about 1 and the
/// ceiling is the rate it reached; where the empty server was (it shares the broker's core, and
/// its kernel and TLS work are a real server's), the client idled for the rest, and the ceiling is
/// the rate per second of the client's own CPU. Per request, a client does more work at a lower
/// rate (fewer answers per wake-up), so the scaled figure errs low: towards calling runs
/// client-bound, never away from it.
async fn client_ceiling(
    empty: &Arc<[Arc<Endpoint>]>,
    name: &str,
    args: &Args,
    load: &Load,
) -> Result<(f64, run::Outcome), String> {
    let args = Args { duration: args.duration.min(Duration::from_secs(5)), ..args.clone() };
    let outcome =
        run::closed_loop(&format!("{name} ceiling"), &args, args.concurrency, &load.against(empty), None).await?;
    if outcome.error_count() > 0 {
        return Err(format!(
            "the empty server failed {} requests of {name}: {:?}",
            outcome.error_count(),
            outcome.errors()
        ));
    }
    Ok((outcome.client_rate(), outcome))
}

/// The HTTPS floor (POST) and the plain-HTTP floor (GET), each after the client's ceiling for the
/// same request, measured with the same client settings; then, where `open_rate` gives a rate for
/// a floor's closed-loop throughput, the same floor in the open loop at that rate.
pub async fn measure(args: &Args, open_rate: impl Fn(f64) -> Option<f64>) -> Result<Baselines, String> {
    let (url, cert_pem, servers) = match &args.baseline_url {
        Some(url) => {
            (url.clone(), std::fs::read_to_string("floor-ca.pem").map_err(|e| format!("floor-ca.pem: {e}"))?, None)
        }
        None => {
            let floor = floor_identity()?;
            let listeners = FloorListeners::bind_any()?;
            let ports = listeners.ports()?;
            let cert = floor.cert_pem.clone();
            let servers = InProcess::start(listeners, floor)?;
            (format!("https://localhost:{}/token", ports.https), cert, Some((servers, ports)))
        }
    };
    let (servers, ports) = match servers {
        Some((servers, ports)) => (servers, ports),
        None => (InProcess(None), FloorPorts::beside(port_of(&url).ok_or("the floor URL has no port")?)),
    };
    let (base, path) = url.rsplit_once('/').ok_or("the floor URL has no path")?;
    let path = format!("/{path}");
    let floors: Arc<[Arc<Endpoint>]> = Arc::from([
        Endpoint::new(base, cert_pem.as_bytes(), None).await?,
        Endpoint::new(&format!("http://127.0.0.1:{}", ports.http), &[], None).await?,
    ]);
    let empty: Arc<[Arc<Endpoint>]> = Arc::from([
        Endpoint::new(&format!("https://localhost:{}", ports.empty_https), cert_pem.as_bytes(), None).await?,
        Endpoint::new(&format!("http://127.0.0.1:{}", ports.empty_http), &[], None).await?,
    ]);
    let https = Prepared::post_form((0, &floors[0]), &path, &[("grant_type", "client_credentials")])?;
    let plain = Prepared::get((1, &floors[1]), &path, &[("metadata", "true")])?;
    let https = Load::new(Arc::clone(&floors), vec![https])?.served_by(args.floor_pid);
    let plain = Load::new(floors, vec![plain])?.served_by(args.floor_pid);
    let https_closed = judged_closed_loop(&empty, "https-floor", args, &https).await?;
    let http_closed = judged_closed_loop(&empty, "http-floor", args, &plain).await?;
    let https_open = match open_rate(https_closed.rps()) {
        Some(rate) => Some(
            run::open_loop("https-floor", args, args.concurrency, rate, &https, https_closed.client_ceiling).await?,
        ),
        None => None,
    };
    let http_open = match open_rate(http_closed.rps()) {
        Some(rate) => {
            Some(run::open_loop("http-floor", args, args.concurrency, rate, &plain, http_closed.client_ceiling).await?)
        }
        None => None,
    };
    Ok(Baselines { https: https_closed, http: http_closed, https_open, http_open, empty, _servers: servers })
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
