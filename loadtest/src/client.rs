//! The load generator's own HTTP/1.1 client, built to cost less per request than the servers it
//! measures: each worker holds one keep-alive connection per endpoint and drives it in its own
//! task (no connection task, no channel between the two, no pool), every request is encoded up
//! front into one buffer ([`Prepared`]: request line, headers and body), and sending one is one
//! write of that buffer (one TLS record over HTTPS). The answer is read into the connection's own
//! buffer and parsed with httparse; a body the caller does not keep is passed over, not copied.
//! TLS is rustls on aws-lc-rs, as in the broker.
//!
//! A connection the server closed (a `Connection: close` answer while a replica drains, a balancer
//! that let go of an idle connection) is replaced before the next request: an answer that says
//! `close` closes it, and a kept-alive connection on which anything arrived while it was idle
//! (the server's FIN, an alert) is not written to but replaced, as hyper does before sending.
//! That look costs nothing on the way: after an answer is read, the socket's readiness is clear
//! (the last read was short), so only an event the reactor saw since sets it. A request that
//! fails once written is a transport error (status 0) and is not sent again.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Uri;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

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
    /// `scheme://authority`, what wrk is pointed at for the same requests.
    origin: String,
    addresses: Vec<SocketAddr>,
    /// The `Host` header's value.
    host: String,
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
        let scheme = if https { "https" } else { "http" };
        Ok(Arc::new(Self {
            origin: format!("{scheme}://{authority}"),
            addresses,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            host: authority.clone(),
            tls,
            from,
        }))
    }

    /// The URL wrk would send this endpoint's requests to, and `None` where wrk cannot send them as
    /// loadtest does: connections from a bound local address (IMDS tells VMs apart by it).
    pub fn wrk_origin(&self) -> Option<&str> {
        self.from.is_none().then_some(self.origin.as_str())
    }

    async fn tcp(&self) -> io::Result<TcpStream> {
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
        Err(last.unwrap_or_else(|| io::Error::other("no address")))
    }

    /// A new keep-alive connection.
    async fn connect(&self) -> io::Result<Connection> {
        let tcp = self.tcp().await?;
        let stream = match &self.tls {
            Some((connector, name)) => Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?)),
            None => Stream::Plain(tcp),
        };
        Ok(Connection { stream, buffer: Vec::with_capacity(READ_BUFFER), used: false })
    }
}

/// How much of an answer one read may bring: a token answer and its head fit several times over.
const READ_BUFFER: usize = 16 * 1024;

/// One request, encoded up front: sending it writes these bytes as they are.
#[derive(Clone)]
pub struct Prepared {
    /// Which of the load's endpoints it goes to.
    pub endpoint: usize,
    bytes: Bytes,
}

impl Prepared {
    /// `GET path_and_query` with the given extra headers.
    pub fn get(endpoint: (usize, &Endpoint), path: &str, headers: &[(&'static str, &str)]) -> Result<Self, String> {
        Self::new("GET", endpoint, path, headers, &[])
    }

    /// `POST path` of a form (`application/x-www-form-urlencoded`), encoded once here.
    pub fn post_form(endpoint: (usize, &Endpoint), path: &str, form: &[(&str, &str)]) -> Result<Self, String> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        Self::new("POST", endpoint, path, &[("content-type", "application/x-www-form-urlencoded")], body.as_bytes())
    }

    fn new(
        method: &str,
        (index, endpoint): (usize, &Endpoint),
        path: &str,
        extra: &[(&'static str, &str)],
        body: &[u8],
    ) -> Result<Self, String> {
        let path = format!("{}{path}", endpoint.prefix);
        if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(format!("{path}: not a request path"));
        }
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", endpoint.host);
        for (name, value) in extra {
            if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!("{name}: a header value on more than one line"));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if method != "GET" || !body.is_empty() {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        Ok(Self { endpoint: index, bytes: Bytes::from([head.as_bytes(), body].concat()) })
    }
}

impl Prepared {
    /// This request as a wrk script (`wrk -s FILE ORIGIN`): the same method, path, headers and
    /// body, formatted once by wrk (no Lua per request, so wrk runs at its full speed). wrk adds
    /// `Host` and `Content-Length` itself.
    pub fn wrk_script(&self, origin: &str) -> Result<String, String> {
        let text = &self.bytes[..];
        let at = text.windows(4).position(|w| w == b"\r\n\r\n").ok_or("a prepared request without a head")?;
        let (head, body) = (std::str::from_utf8(&text[..at]).map_err(|e| e.to_string())?, &text[at + 4..]);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
        let mut script = format!(
            "-- loadtest's request, for the same run with wrk: wrk -s THIS_FILE {origin}\n-- origin: {origin}\n\
             wrk.method = {}\nwrk.path = {}\n",
            lua_string(method.as_bytes()),
            lua_string(path.as_bytes())
        );
        for (name, value) in lines.filter_map(|line| line.split_once(": ")) {
            if !name.eq_ignore_ascii_case("host") && !name.eq_ignore_ascii_case("content-length") {
                script.push_str(&format!(
                    "wrk.headers[{}] = {}\n",
                    lua_string(name.as_bytes()),
                    lua_string(value.as_bytes())
                ));
            }
        }
        if !body.is_empty() {
            script.push_str(&format!("wrk.body = {}\n", lua_string(body)));
        }
        Ok(script)
    }
}

/// A Lua string literal of any bytes: quotes and backslashes escaped, other bytes outside
/// printable ASCII written as decimal escapes.
fn lua_string(bytes: &[u8]) -> String {
    let mut literal = String::with_capacity(bytes.len() + 2);
    literal.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                literal.push('\\');
                literal.push(char::from(b));
            }
            0x20..=0x7e => literal.push(char::from(b)),
            _ => literal.push_str(&format!("\\{b:03}")),
        }
    }
    literal.push('"');
    literal
}

/// A connection's transport.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A keep-alive connection and what has been read from it and not yet used.
struct Connection {
    stream: Stream,
    buffer: Vec<u8>,
    /// Whether an answer has been read on it (a new connection has nothing to look at).
    used: bool,
}

/// What [`Connection::exchange`] read: the status, the body's place in the buffer (or the chunked
/// body, gathered), and whether the server will close the connection.
struct Read {
    status: u16,
    body: Body,
    /// Where the answer ends in the buffer (0 when a chunked body was gathered: already let go).
    end: usize,
    close: bool,
}

enum Body {
    /// `buffer[range]`, passed over once used.
    InBuffer(std::ops::Range<usize>),
    Gathered(Vec<u8>),
}

impl Connection {
    /// Whether the server closed the connection (or sent anything) while it was idle. Only an
    /// event the reactor saw since the last read sets the socket's readiness, and only then does
    /// this look (a peek); otherwise it costs no system call.
    fn went_away(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut peeked = ReadBuf::new(&mut byte);
        matches!(self.stream.tcp().poll_peek(&mut cx, &mut peeked), Poll::Ready(_))
    }

    /// Writes `request` and reads the whole answer into the buffer.
    async fn exchange(&mut self, request: &[u8]) -> io::Result<Read> {
        self.stream.write_all(request).await?;
        self.stream.flush().await?;
        self.used = true;
        let (status, head, length, close) = loop {
            if let Some(parsed) = parse_head(&self.buffer)? {
                break parsed;
            }
            self.fill().await?;
        };
        let (body, end) = match length {
            Length::Known(length) => {
                while self.buffer.len() < head + length {
                    self.fill().await?;
                }
                (Body::InBuffer(head..head + length), head + length)
            }
            Length::Chunked => (Body::Gathered(self.chunked(head).await?), 0),
            Length::UntilClose => {
                while self.fill().await.is_ok() {}
                (Body::InBuffer(head..self.buffer.len()), self.buffer.len())
            }
        };
        Ok(Read { status, body, end, close: close || matches!(length, Length::UntilClose) })
    }

    /// Reads once more into the buffer; the end of the stream is an error here (an answer was
    /// still expected).
    async fn fill(&mut self) -> io::Result<()> {
        if self.buffer.capacity() - self.buffer.len() < 4096 {
            self.buffer.reserve(READ_BUFFER);
        }
        match self.stream.read_buf(&mut self.buffer).await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    /// A chunked body starting at `at`, gathered; the buffer then starts after it.
    async fn chunked(&mut self, mut at: usize) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(end) = memchr(b'\n', &self.buffer[at..]) {
                    break at + end + 1;
                }
                self.fill().await?;
            };
            let text = std::str::from_utf8(&self.buffer[at..line]).map_err(io::Error::other)?;
            let size = text.split(';').next().map(str::trim).unwrap_or_default();
            let size = usize::from_str_radix(size, 16).map_err(io::Error::other)?;
            // The chunk and its CRLF (the last chunk: the empty trailer's CRLF).
            while self.buffer.len() < line + size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buffer[line..line + size]);
            at = line + size + 2;
            if size == 0 {
                self.buffer.drain(..at);
                return Ok(body);
            }
        }
    }

    /// Lets go of the buffer's first `end` bytes (an answer read to its end).
    fn consume(&mut self, end: usize) {
        if end == self.buffer.len() {
            self.buffer.clear();
        } else {
            self.buffer.drain(..end);
        }
    }
}

fn memchr(byte: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == byte)
}

/// How an answer's body ends.
enum Length {
    Known(usize),
    Chunked,
    UntilClose,
}

/// An answer's head, once all of it has arrived: the status, the head's length, how the body
/// ends, and whether the server closes the connection after it.
fn parse_head(buffer: &[u8]) -> io::Result<Option<(u16, usize, Length, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buffer).map_err(io::Error::other)? {
        httparse::Status::Complete(head) => head,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.unwrap_or_default();
    let (mut length, mut close) = (None, response.version == Some(0));
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse().ok());
            length = Some(Length::Known(value.ok_or_else(|| io::Error::other("a bad content-length"))?));
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if header.value.eq_ignore_ascii_case(b"chunked") {
                length = Some(Length::Chunked);
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let length = match status {
        100..=199 | 204 | 304 => Length::Known(0),
        _ => length.unwrap_or(Length::UntilClose),
    };
    Ok(Some((status, head, length, close)))
}

/// One worker's connections: at most one open per endpoint, opened when first needed and again
/// after the server closed it.
pub struct Connections {
    endpoints: Arc<[Arc<Endpoint>]>,
    open: Vec<Option<Connection>>,
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
        if self.open[slot].as_ref().is_some_and(|c| c.used && c.went_away()) {
            self.open[slot] = None;
        }
        if self.open[slot].is_none() {
            match self.endpoints[slot].connect().await {
                Ok(connection) => self.open[slot] = Some(connection),
                Err(_) => return (Answer::transport(), None),
            }
        }
        let Some(connection) = self.open[slot].as_mut() else { return (Answer::transport(), None) };
        let read = match connection.exchange(&prepared.bytes).await {
            Ok(read) => read,
            Err(_) => {
                self.open[slot] = None;
                return (Answer::transport(), None);
            }
        };
        let ok = (200..300).contains(&read.status);
        let body = (keep_body || !ok).then(|| match read.body {
            Body::InBuffer(range) => Bytes::copy_from_slice(&connection.buffer[range]),
            Body::Gathered(body) => Bytes::from(body),
        });
        connection.consume(read.end);
        if read.close {
            self.open[slot] = None;
        }
        let answer = match (&body, ok) {
            (Some(body), false) => Answer::failed(read.status, body),
            _ => Answer { status: read.status, error: None },
        };
        (answer, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    }

    /// A server on loopback: on each connection it accepts, for each of up to `per_connection`
    /// requests read (GETs: a head alone), the next of `answers` is written; then it closes the
    /// connection. Gives the number of connections it accepted once the answers are used up.
    async fn server(
        answers: Vec<&'static [u8]>,
        per_connection: usize,
    ) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let (mut answers, mut accepted) = (answers.into_iter(), 0);
            while let Ok((mut tcp, _)) = listener.accept().await {
                accepted += 1;
                let mut input = Vec::new();
                for _ in 0..per_connection {
                    let head = loop {
                        let mut headers = [httparse::EMPTY_HEADER; 16];
                        let mut request = httparse::Request::new(&mut headers);
                        if let Ok(httparse::Status::Complete(head)) = request.parse(&input) {
                            break head;
                        }
                        if tcp.read_buf(&mut input).await.unwrap_or(0) == 0 {
                            return accepted;
                        }
                    };
                    input.drain(..head);
                    let Some(answer) = answers.next() else { return accepted };
                    tcp.write_all(answer).await.unwrap();
                }
                drop(tcp);
                if answers.len() == 0 {
                    return accepted;
                }
            }
            accepted
        });
        (address, handle)
    }

    async fn endpoint(address: SocketAddr) -> Arc<Endpoint> {
        Endpoint::new(&format!("http://{address}"), &[], None).await.unwrap()
    }

    #[test]
    fn a_prepared_request_is_one_http11_message_with_host_headers_and_body() {
        block_on(async {
            let target = Endpoint::new("http://127.0.0.1:9/base/", &[], None).await.unwrap();
            let post = Prepared::post_form((0, &target), "/token", &[("a", "b c"), ("d", "e&f")]).unwrap();
            assert_eq!(
                &post.bytes[..],
                b"POST /base/token HTTP/1.1\r\nhost: 127.0.0.1:9\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 13\r\n\r\na=b+c&d=e%26f"
            );
            let get = Prepared::get((1, &target), "/x?y=1", &[("metadata", "true")]).unwrap();
            assert_eq!(&get.bytes[..], b"GET /base/x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nmetadata: true\r\n\r\n");
            assert_eq!(get.endpoint, 1);
            assert!(Prepared::get((0, &target), "/x", &[("a", "b\r\nc: d")]).is_err(), "no header injection");
        });
    }

    #[test]
    fn a_prepared_request_as_a_wrk_script_has_its_method_path_headers_and_body_and_leaves_host_and_length_to_wrk() {
        block_on(async {
            let target = Endpoint::new("http://127.0.0.1:9/base/", &[], None).await.unwrap();
            assert_eq!(target.wrk_origin(), Some("http://127.0.0.1:9"));
            let post = Prepared::post_form((0, &target), "/token", &[("a", "b c"), ("q", "x\"y\\z")]).unwrap();
            assert_eq!(
                post.wrk_script("http://127.0.0.1:9").unwrap(),
                "-- loadtest's request, for the same run with wrk: wrk -s THIS_FILE http://127.0.0.1:9\n\
                 -- origin: http://127.0.0.1:9\n\
                 wrk.method = \"POST\"\n\
                 wrk.path = \"/base/token\"\n\
                 wrk.headers[\"content-type\"] = \"application/x-www-form-urlencoded\"\n\
                 wrk.body = \"a=b+c&q=x%22y%5Cz\"\n"
            );
            let get = Prepared::get((0, &target), "/x?y=1", &[("metadata", "true")]).unwrap();
            let script = get.wrk_script("http://127.0.0.1:9").unwrap();
            assert!(
                script.contains("wrk.headers[\"metadata\"] = \"true\"\n") && !script.contains("wrk.body"),
                "{script}"
            );
            let bound = Endpoint::new("http://127.0.0.1:9", &[], Some("127.0.0.77".parse().unwrap())).await.unwrap();
            assert_eq!(bound.wrk_origin(), None, "wrk cannot connect from the address a VM is bound to");
        });
    }

    #[test]
    fn any_bytes_make_a_lua_string_literal() {
        assert_eq!(lua_string(b"plain text"), "\"plain text\"");
        assert_eq!(lua_string(b"a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(lua_string(b"line\r\n\xff"), "\"line\\013\\010\\255\"");
    }

    #[test]
    fn answers_are_read_whole_over_one_kept_alive_connection_chunked_ones_included() {
        block_on(async {
            let answers: Vec<&'static [u8]> = vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 39\r\n\r\n{\"error\":\"x\",\"error_codes\":[700016]}   ",
            ];
            let (address, server) = server(answers, 3).await;
            let target = endpoint(address).await;
            let mut connections = Connections::new(Arc::from([Arc::clone(&target)]));
            let get = Prepared::get((0, &target), "/", &[]).unwrap();
            let (first, body) = connections.send(&get, true).await;
            assert_eq!((first.status, body.as_deref()), (200, Some(&b"hello"[..])));
            let (second, body) = connections.send(&get, true).await;
            assert_eq!((second.status, body.as_deref()), (200, Some(&b"abcde"[..])));
            let (third, _) = connections.send(&get, false).await;
            assert_eq!((third.status, third.error.as_deref()), (400, Some("AADSTS700016")), "a failure's code is read");
            assert_eq!(server.await.unwrap(), 1, "one connection carried all three");
        });
    }

    #[test]
    fn a_connection_the_server_asked_to_close_or_closed_while_idle_is_replaced_before_the_next_request() {
        block_on(async {
            let answers: Vec<&'static [u8]> = vec![
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\na",
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb",
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nc",
            ];
            // One answer per connection: the server closes each after it, without saying so for
            // the second.
            let (address, server) = server(answers, 1).await;
            let target = endpoint(address).await;
            let mut connections = Connections::new(Arc::from([Arc::clone(&target)]));
            let get = Prepared::get((0, &target), "/", &[]).unwrap();
            assert_eq!(connections.send(&get, true).await.1.as_deref(), Some(&b"a"[..]));
            assert_eq!(connections.send(&get, true).await.1.as_deref(), Some(&b"b"[..]));
            // Let the server's FIN arrive and the reactor see it.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            tokio::task::yield_now().await;
            let (third, body) = connections.send(&get, true).await;
            assert_eq!((third.status, body.as_deref()), (200, Some(&b"c"[..])), "{third:?}");
            assert_eq!(server.await.unwrap(), 3);
        });
    }

    #[test]
    fn a_server_that_closes_without_answering_is_a_transport_error() {
        block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let mut input = [0u8; 1024];
                let _ = tcp.read(&mut input).await;
            });
            let target = endpoint(address).await;
            let mut connections = Connections::new(Arc::from([Arc::clone(&target)]));
            let (answer, _) = connections.send(&Prepared::get((0, &target), "/", &[]).unwrap(), false).await;
            assert_eq!(answer.key(), "transport error");
        });
    }
}
