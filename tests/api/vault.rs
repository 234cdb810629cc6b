//! The example vault trusts ficus only through its discovery document: allowed with the role,
//! 403 without it, 401 for another issuer's token, an expired token or a tampered signature.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ficus::domain::clock::Clock;
use ficus::domain::ports::TokenSigner;
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_api::{ARM_RG, Admin};
use crate::helpers::{DEMO_TENANT_ID, TestApp};

const IMDS: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault";

async fn start_vault(app: &TestApp) -> String {
    let config = vault::Config {
        discovery_url: format!("{}/demo/v2.0/.well-known/openid-configuration", app.base),
        audience: "api://vault".into(),
        role: "Secrets.Read".into(),
        ca_pem: Some(std::fs::read(app.dir.join("keys/dev-ca.pem")).unwrap()),
        secrets: HashMap::from([("demo-secret".to_owned(), "the vault opened".to_owned())]),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(vault::serve(listener, config));
    // The vault reads discovery before it serves; wait until it answers.
    for _ in 0..100 {
        if reqwest::get(format!("{url}/secrets/demo-secret")).await.is_ok() {
            return url;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the vault did not start");
}

async fn read(vault: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{vault}/secrets/demo-secret"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn mi_token(app: &TestApp, extra: &str) -> String {
    let (status, body) = app.mi_get(&format!("{IMDS}{extra}"), &[("Metadata", "true")]).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_serves_holders_of_the_role_and_refuses_everyone_else() {
    let app = TestApp::spawn().await;
    let vault = start_vault(&app).await;

    let (status, body) = read(&vault, Some(&mi_token(&app, "").await)).await;
    assert_eq!((status, body["value"].as_str()), (200, Some("the vault opened")), "vm-demo holds Secrets.Read");

    let admin = Admin::new(&app).await;
    let uami = admin
        .call(Method::GET, &format!("{ARM_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo"), None)
        .await
        .1;
    let without_role =
        mi_token(&app, &format!("&client_id={}", uami["properties"]["clientId"].as_str().unwrap())).await;
    let (status, body) = read(&vault, Some(&without_role)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")));

    let other_broker = TestApp::spawn().await;
    assert_eq!(read(&vault, Some(&mi_token(&other_broker, "").await)).await.0, 401, "another issuer");

    let now = app.clock.now().unix_timestamp();
    let expired = json!({
        "iss": format!("{}/{DEMO_TENANT_ID}/v2.0", app.base), "aud": "api://vault", "roles": ["Secrets.Read"],
        "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600,
    });
    let expired = app.keys.sign(expired.as_object().unwrap()).unwrap();
    assert_eq!(read(&vault, Some(expired.expose())).await.0, 401, "expired");

    let good = mi_token(&app, "").await;
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["appid"] = json!("someone-else");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert_eq!(read(&vault, Some(&parts.join("."))).await.0, 401, "tampered");

    assert_eq!(read(&vault, None).await.0, 401, "no token");
}
