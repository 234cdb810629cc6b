//! The load generator's own HTTP/1.1 client, built to cost less than what it measures: each worker
//! holds one keep-alive connection per endpoint over hyper's connection API (no pool, no redirect
//! policy, no URL parsing per request), and every request is prepared up front ([`Prepared`]:
//! method, path, headers and body), so sending one clones reference-counted parts and nothing is
//! encoded on the way. TLS is rustls on aws-lc-rs, as in the broker.
//!
//! A connection the server closed (a `Connection: close` while a replica drains, a balancer that
//! let go) is replaced before the next request; a request hyper hands back unsent because the
//! connection closed under it is sent once more on a new one, as a browser or reqwest would.
//! Anything else that fails before a status arrives is a transport error (status 0).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::Value;

/// What one request got back.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status, or 0 when the request failed before one arrived.
    pub status: u16,
    /// The error code the body named (`AADSTS70021`, `invalid_request`...), for failures.
    pub error: Option<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// How failures are counted: by status and error code.
    pub fn key(&self) -> String {
        match (&self.error, self.status) {
            (_, 0) => "transport error".to_owned(),
            (Some(code), status) => format!("{status} {code}"),
            (None, status) => status.to_string(),
        }
    }

    fn transport() -> Self {
        Self { status: 0, error: None }
    }

    /// A failure's error code, from its JSON body: the first AADSTS number, OAuth's `error`, or
    /// the admin API's `error.code`.
    pub fn failed(status: u16, body: &[u8]) -> Self {
        let body: Option<Value> = serde_json::from_slice(body).ok();
        let error = body.as_ref().and_then(|b| {
            b["error_codes"][0]
                .as_u64()
                .map(|code| format!("AADSTS{code}"))
                .or_else(|| b["error"].as_str().map(str::to_owned))
                .or_else(|| b["error"]["code"].as_str().map(str::to_owned))
        });
        Self { status, error }
    }
}

/// A server the load is sent to: its address resolved once, and TLS when it is `https`.
pub struct Endpoint {
    addresses: Vec<SocketAddr>,
    host: HeaderValue,
    /// The base URL's path, which every request's path is under (empty for `https://host:port`).
    prefix: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// The local address connections are made from (IMDS binds a VM to its caller's address).
    from: Option<IpAddr>,
}

impl Endpoint {
    /// `base` is `http(s)://host:port[/prefix]`; an `https` endpoint trusts only the PEM certificates in
    /// `ca_pem`.
    pub async fn new(base: &str, ca_pem: &[u8], from: Option<IpAddr>) -> Result<Arc<Self>, String> {
        let uri: Uri = base.parse().map_err(|e| format!("{base}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{base}: use an http or https URL")),
        };
        let host = uri.host().ok_or_else(|| format!("{base}: no host"))?.trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut addresses: Vec<SocketAddr> =
            tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| format!("{base}: {e}"))?.collect();
        // Connections from a given local address need a peer of the same family.
        if let Some(from) = from {
            addresses.retain(|a| a.is_ipv4() == from.is_ipv4());
        }
        if addresses.is_empty() {
            return Err(format!("{base}: no address to connect to"));
        }
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem) {
                let certificate = certificate.map_err(|e| format!("CA certificate: {e}"))?;
                roots.add(certificate).map_err(|e| format!("CA certificate: {e}"))?;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(host).map_err(|e| format!("{base}: {e}"))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Arc::new(Self {
            addresses,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            host: HeaderValue::from_str(&authority).map_err(|e| e.to_string())?,
            tls,
            from,
        }))
    }

    async fn tcp(&self) -> std::io::Result<tokio::net::TcpStream> {
        let mut last = None;
        for address in &self.addresses {
            let socket =
                if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            if let Some(from) = self.from {
                socket.bind(SocketAddr::new(from, 0))?;
            }
            match socket.connect(*address).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    }

    /// A new keep-alive connection; hyper's half of it runs as its own task until it closes.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = self.tcp().await.map_err(|e| e.to_string())?;
        let sender = match &self.tls {
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| e.to_string())?;
                let (sender, connection) = http1::Builder::new()
                    .writev(false)
                    .handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                sender
            }
            None => {
                let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                sender
            }
        };
        Ok(sender)
    }
}

/// One request, prepared up front: sending it clones reference-counted parts only.
#[derive(Clone)]
pub struct Prepared {
    /// Which of the load's endpoints it goes to.
    pub endpoint: usize,
    method: Method,
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Prepared {
    /// `GET path_and_query` with the given extra headers.
    pub fn get(endpoint: (usize, &Endpoint), path: &str, headers: &[(&'static str, &str)]) -> Result<Self, String> {
        Self::new(Method::GET, endpoint, path, headers, Bytes::new())
    }

    /// `POST path` of a form (`application/x-www-form-urlencoded`), encoded once here.
    pub fn post_form(endpoint: (usize, &Endpoint), path: &str, form: &[(&str, &str)]) -> Result<Self, String> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        Self::new(
            Method::POST,
            endpoint,
            path,
            &[(CONTENT_TYPE.as_str(), "application/x-www-form-urlencoded")],
            Bytes::from(body),
        )
    }

    fn new(
        method: Method,
        (index, endpoint): (usize, &Endpoint),
        path: &str,
        extra: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::with_capacity(extra.len() + 1);
        headers.insert(HOST, endpoint.host.clone());
        for (name, value) in extra {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).map_err(|e| format!("{name}: {e}"))?,
            );
        }
        let path = format!("{}{path}", endpoint.prefix);
        Ok(Self { endpoint: index, method, path: path.parse().map_err(|e| format!("{path}: {e}"))?, headers, body })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// One worker's connections: at most one open per endpoint, opened when first needed and again
/// after the server closed it.
pub struct Connections {
    endpoints: Arc<[Arc<Endpoint>]>,
    open: Vec<Option<SendRequest<Full<Bytes>>>>,
}

impl Connections {
    pub fn new(endpoints: Arc<[Arc<Endpoint>]>) -> Self {
        let open = endpoints.iter().map(|_| None).collect();
        Self { endpoints, open }
    }

    /// Sends `prepared` and reads the whole answer. The body comes back when `keep_body` is set or
    /// the request failed (its error code is read from it).
    pub async fn send(&mut self, prepared: &Prepared, keep_body: bool) -> (Answer, Option<Bytes>) {
        let slot = prepared.endpoint;
        let mut request = prepared.request();
        // A request hyper gives back unsent (its connection closed first) gets one more try.
        for _ in 0..2 {
            let Some(sender) = self.ready(slot).await else { return (Answer::transport(), None) };
            match sender.try_send_request(request).await {
                Ok(response) => return read(response, keep_body).await,
                Err(mut failed) => {
                    self.open[slot] = None;
                    match failed.take_message() {
                        Some(unsent) => request = unsent,
                        None => return (Answer::transport(), None),
                    }
                }
            }
        }
        (Answer::transport(), None)
    }

    /// The endpoint's connection, ready for a request: the open one, or a new one.
    async fn ready(&mut self, slot: usize) -> Option<&mut SendRequest<Full<Bytes>>> {
        if let Some(sender) = &mut self.open[slot]
            && sender.ready().await.is_err()
        {
            self.open[slot] = None;
        }
        if self.open[slot].is_none() {
            let mut sender = self.endpoints[slot].connect().await.ok()?;
            sender.ready().await.ok()?;
            self.open[slot] = Some(sender);
        }
        self.open[slot].as_mut()
    }
}

async fn read(response: http::Response<hyper::body::Incoming>, keep_body: bool) -> (Answer, Option<Bytes>) {
    let status = response.status().as_u16();
    let ok = (200..300).contains(&status);
    let mut body = response.into_body();
    if ok && !keep_body {
        // Read and dropped frame by frame: nothing gathered.
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return (Answer::transport(), None);
            }
        }
        return (Answer { status, error: None }, None);
    }
    let Ok(collected) = body.collect().await else { return (Answer::transport(), None) };
    let bytes = collected.to_bytes();
    let answer = if ok { Answer { status, error: None } } else { Answer::failed(status, &bytes) };
    (answer, Some(bytes))
}
