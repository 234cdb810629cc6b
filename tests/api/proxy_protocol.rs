//! Behind a TCP balancer: connections from `server.proxy_protocol_from` start with a PROXY
//! protocol header naming the caller, and IMDS identifies the VM by that address; a trusted
//! connection without one is closed, and anyone else's header is not believed.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

const IMDS_REQUEST: &str = "GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault HTTP/1.1\r\n\
                            Host: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n";

/// Sends `bytes` from `local` to the managed-identity listener and returns all it answers.
async fn exchange(app: &TestApp, local: &str, bytes: &[u8]) -> String {
    let target: SocketAddr = app.mi_base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(target).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 80\r\n{IMDS_REQUEST}").into_bytes()
}

fn v2(source: [u8; 4]) -> Vec<u8> {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    bytes.extend([0x21, 0x11, 0, 12]); // version 2, PROXY; TCP over IPv4; 12 address bytes
    bytes.extend(source);
    bytes.extend([127, 0, 0, 1]);
    bytes.extend(40000u16.to_be_bytes());
    bytes.extend(80u16.to_be_bytes());
    bytes.extend(IMDS_REQUEST.as_bytes());
    bytes
}

#[tokio::test]
async fn imds_identifies_the_vm_by_the_address_a_trusted_balancers_header_names() {
    let app = TestApp::spawn_with("[server]\nproxy_protocol_from = [\"127.0.0.1/32\"]").await;

    // vm-demo holds 127.0.0.0/8: a caller there gets its token, through either version.
    let answer = exchange(&app, "127.0.0.1", &v1("127.0.0.9")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = exchange(&app, "127.0.0.1", &v2([127, 0, 0, 9])).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A caller the balancer names outside every VM gets none, though the balancer's own address
    // is vm-demo's.
    let answer = exchange(&app, "127.0.0.1", &v2([10, 1, 2, 3])).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("bound to the caller's address 10.1.2.3"), "{answer}");
}

#[tokio::test]
async fn a_trusted_connection_without_a_header_is_closed_and_an_untrusted_callers_header_is_not_believed() {
    let app = TestApp::spawn_with("[server]\nproxy_protocol_from = [\"127.0.0.1\"]").await;

    let answer = exchange(&app, "127.0.0.1", IMDS_REQUEST.as_bytes()).await;
    assert_eq!(answer, "", "closed without an answer");
    let answer = exchange(&app, "127.0.0.1", b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n").await;
    assert_eq!(answer, "", "a malformed header: closed");

    // 127.0.0.2 is no balancer: what it sends is HTTP, and a PROXY line is not.
    let answer = exchange(&app, "127.0.0.2", &v1("10.1.2.3")).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!answer.contains("10.1.2.3"), "the claimed address was never used: {answer}");
    let answer = exchange(&app, "127.0.0.2", IMDS_REQUEST.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "served as usual: {answer}");
    let answer = exchange(&app, "127.0.0.1", &v1("127.0.0.9")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "the balancer is still served: {answer}");
}

#[test]
fn proxy_protocol_networks_are_checked_at_start_up() {
    use figment::providers::Format as _;
    let figment = ficus::config::Settings::default_figment()
        .merge(figment::providers::Toml::string("[server]\nproxy_protocol_from = [\"10.0.0.0/33\"]"));
    let error = ficus::config::Settings::from_figment(figment).unwrap_err();
    assert_eq!(error.setting, "server.proxy_protocol_from");
    assert!(error.problem.contains("10.0.0.0/33"), "{}", error.problem);
}
