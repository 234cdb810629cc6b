//! The PROXY protocol (HAProxy's, versions 1 and 2; parsed by the `ppp` crate) on connections
//! from trusted balancers (`server.proxy_protocol_from`). A TCP balancer hides the caller's
//! address, which IMDS identifies the calling VM by and the address rate limit and the sign-in
//! log record; the balancer writes it in a header before the connection's first byte, and
//! [`ProxyProtocolAcceptor`] reads exactly that header off the stream before TLS or HTTP see it.
//!
//! Only connections from the listed networks may (and must) carry a header: anyone else's is an
//! HTTP request like any other, so a caller cannot claim an address by sending one. A header with
//! the `LOCAL` command or no address (a balancer's own health check) leaves the TCP peer's address.
//! The address reaches handlers as `ConnectInfo<SocketAddr>`, through the edge middleware
//! ([`super::edge`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum_server::accept::Accept;
use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, CRLF included.
const V1_MAX: usize = 107;
/// How long a trusted balancer gets to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The caller's address as a trusted balancer's PROXY header gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedClient(pub SocketAddr);

/// Reads the PROXY header on connections from `trusted` networks; passes others through.
#[derive(Debug, Clone)]
pub struct ProxyProtocolAcceptor {
    trusted: Arc<[IpNet]>,
}

impl ProxyProtocolAcceptor {
    pub fn new(trusted: &[IpNet]) -> Self {
        Self { trusted: trusted.into() }
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for ProxyProtocolAcceptor {
    type Stream = TcpStream;
    type Service = WithProxiedClient<S>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(TcpStream, WithProxiedClient<S>)>> + Send>>;

    fn accept(&self, mut stream: TcpStream, service: S) -> Self::Future {
        let trusted = self.trusted.clone();
        Box::pin(async move {
            if trusted.is_empty() {
                return Ok((stream, WithProxiedClient { inner: service, client: None }));
            }
            let peer = stream.peer_addr()?;
            if !trusted.iter().any(|net| net.contains(&peer.ip())) {
                return Ok((stream, WithProxiedClient { inner: service, client: None }));
            }
            let client = match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "refused a connection from a trusted balancer: bad PROXY protocol header");
                    return Err(e);
                }
                Err(_) => {
                    tracing::warn!(%peer, "refused a connection from a trusted balancer: no PROXY protocol header within 5s");
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no PROXY protocol header"));
                }
            };
            Ok((stream, WithProxiedClient { inner: service, client: client.map(ProxiedClient) }))
        })
    }
}

/// Reads exactly one header off `stream` (never a byte of what follows) and returns the source
/// address it names, `None` for a `LOCAL` or address-less header.
async fn read_header(stream: &mut TcpStream) -> io::Result<Option<SocketAddr>> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    // 15 bytes: the shortest header of either version ("PROXY UNKNOWN\r\n").
    let mut header = vec![0u8; 15];
    stream.read_exact(&mut header).await?;
    if header.starts_with(V2_SIGNATURE) {
        header.push(stream.read_u8().await?);
        let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
        let start = header.len();
        header.resize(start + length, 0);
        stream.read_exact(&mut header[start..]).await?;
    } else if header.starts_with(b"PROXY ") {
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(invalid("a version 1 header longer than 107 bytes".into()));
            }
            header.push(stream.read_u8().await?);
        }
    } else {
        return Err(invalid("the connection does not start with a PROXY protocol header".into()));
    }
    match ppp::HeaderResult::parse(&header) {
        ppp::HeaderResult::V1(Ok(parsed)) => Ok(match parsed.addresses {
            ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            ppp::v1::Addresses::Unknown => None,
        }),
        ppp::HeaderResult::V2(Ok(parsed)) => Ok(match (parsed.command, parsed.addresses) {
            (ppp::v2::Command::Local, _) => None,
            (_, ppp::v2::Addresses::IPv4(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (_, ppp::v2::Addresses::IPv6(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (_, _) => None,
        }),
        ppp::HeaderResult::V1(Err(e)) => Err(invalid(format!("version 1 header: {e}"))),
        ppp::HeaderResult::V2(Err(e)) => Err(invalid(format!("version 2 header: {e}"))),
    }
}

/// Adds the header's address to each request of the connection as [`ProxiedClient`].
#[derive(Debug, Clone)]
pub struct WithProxiedClient<S> {
    inner: S,
    client: Option<ProxiedClient>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for WithProxiedClient<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        if let Some(client) = self.client {
            request.extensions_mut().insert(client);
        }
        self.inner.call(request)
    }
}
