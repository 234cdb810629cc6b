//! TLS: operator-supplied certificates, reloaded without a restart; plain HTTP behind a proxy.

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::helpers::TestApp;

/// A throwaway CA that issues server certificates for the given names.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Self { issuer: Issuer::new(params, key), pem }
    }

    fn issue(&self, names: &[&str], dir: &Path) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    }
}

fn client_trusting(ca: &TestCa, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .resolve("ficus.test", addr)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn operator_certificate_is_served_and_reloaded_without_a_restart() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    ca.issue(&["localhost"], certs.path());
    let overrides = format!(
        "[tls]\nmode = \"files\"\ncert_file = \"{0}/server.pem\"\nkey_file = \"{0}/server.key\"\n[server]\npublic_url = \"https://ficus.test\"",
        certs.path().display()
    );
    let app = TestApp::spawn_with(&overrides).await;
    let port = app.addr.port();
    let client = client_trusting(&ca, app.addr);

    let before = client.get(format!("https://localhost:{port}/healthz")).send().await.unwrap();
    assert_eq!(before.status(), 200);
    assert!(
        client.get(format!("https://ficus.test:{port}/healthz")).send().await.is_err(),
        "not yet valid for ficus.test"
    );

    ca.issue(&["ficus.test"], certs.path());
    app.reloader.reload().await;

    let after = client.get(format!("https://ficus.test:{port}/healthz")).send().await.unwrap();
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn plain_http_mode_serves_without_tls_and_issues_for_the_proxys_url() {
    let app = TestApp::spawn_with("[tls]\nmode = \"off\"\n[server]\npublic_url = \"https://ficus.example.com\"").await;
    let response =
        reqwest::get(format!("http://{}/demo/v2.0/.well-known/openid-configuration", app.addr)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["issuer"].as_str().unwrap().starts_with("https://ficus.example.com/"), "{body}");
}
