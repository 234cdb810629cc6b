//! The token endpoint with client secrets (what the admin client uses), and its Entra errors.

use std::os::unix::fs::PermissionsExt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::helpers::{DEMO_TENANT_ID, TestApp, jwt_header};

const SCOPE: &str = "api://ficus-management/.default";

/// Status, `error` and AADSTS code.
type Expected = (u16, &'static str, u64);

fn assert_entra_error(status: reqwest::StatusCode, body: &Value, expected: Expected) {
    let (code, error, aadsts) = expected;
    assert_eq!(status.as_u16(), code, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([aadsts]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.starts_with(&format!("AADSTS{aadsts}: ")), "{description}");
}

#[tokio::test]
async fn the_admin_secret_is_written_once_owner_only_and_stored_hashed() {
    let app = TestApp::spawn().await;
    let path = app.dir.join("keys/admin/demo.json");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let secret = app.admin_credentials()["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43);
    let db = std::fs::read(app.dir.join("data/ficus.db")).unwrap();
    let wal = std::fs::read(app.dir.join("data/ficus.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is not stored in clear");
    }
}

#[tokio::test]
async fn client_credentials_with_the_admin_secret_issue_a_verifiable_app_token() {
    let app = TestApp::spawn().await;
    let creds = app.admin_credentials();
    let token = app.admin_token().await;

    let kid = jwt_header(&token).kid.unwrap();
    let jwks = app.jwks().await;
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let key = DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["api://ficus-management"]);
    let issuer = format!("{}/{DEMO_TENANT_ID}/v2.0", app.base);
    validation.set_issuer(&[issuer.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap().claims;

    assert_eq!(claims["appid"], creds["client_id"]);
    assert_eq!(claims["azp"], creds["client_id"]);
    assert_eq!((claims["appidacr"].as_str(), claims["azpacr"].as_str()), (Some("1"), Some("1")));
    assert_eq!(claims["roles"], serde_json::json!(["Ficus.Admin"]));
    assert_eq!(claims["tid"], DEMO_TENANT_ID);
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["oid"], claims["sub"]);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert!(claims["uti"].as_str().is_some_and(|u| u.len() == 22));
}

#[tokio::test]
async fn client_secret_is_accepted_through_http_basic() {
    let app = TestApp::spawn().await;
    let creds = app.admin_credentials();
    let response = app
        .client
        .post(format!("{}/demo/oauth2/v2.0/token", app.base))
        .basic_auth(creds["client_id"].as_str().unwrap(), creds["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials"), ("scope", SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
}

#[tokio::test]
async fn token_endpoint_failures_answer_as_entra_does() {
    let app = TestApp::spawn().await;
    let creds = app.admin_credentials();
    let id = creds["client_id"].as_str().unwrap();
    let secret = creds["client_secret"].as_str().unwrap();
    let cc = ("grant_type", "client_credentials");
    let cases: Vec<(Vec<_>, Expected)> = vec![
        (vec![cc, ("client_id", id), ("client_secret", "wrong"), ("scope", SCOPE)], (401, "invalid_client", 7000215)),
        (vec![cc, ("client_id", id), ("scope", SCOPE)], (401, "invalid_client", 7000218)),
        (
            vec![
                cc,
                ("client_id", "6a1f0e6c-0000-4000-8000-000000000000"),
                ("client_secret", secret),
                ("scope", SCOPE),
            ],
            (400, "unauthorized_client", 700016),
        ),
        (
            vec![cc, ("client_id", "not-a-guid"), ("client_secret", secret), ("scope", SCOPE)],
            (400, "unauthorized_client", 700016),
        ),
        (vec![("client_id", id), ("client_secret", secret), ("scope", SCOPE)], (400, "invalid_request", 900144)),
        (vec![("grant_type", "password"), ("client_id", id)], (400, "unsupported_grant_type", 70003)),
        (vec![cc, ("client_secret", secret), ("scope", SCOPE)], (400, "invalid_request", 900144)),
        (vec![cc, ("client_id", id), ("client_secret", secret)], (400, "invalid_request", 900144)),
        (
            vec![cc, ("client_id", id), ("client_secret", secret), ("scope", "api://ficus-management")],
            (400, "invalid_scope", 1002012),
        ),
        (
            vec![cc, ("client_id", id), ("client_secret", secret), ("scope", "api://nothing/.default")],
            (400, "invalid_resource", 500011),
        ),
        (
            vec![cc, ("client_id", id), ("client_secret", secret), ("scope", SCOPE), ("scope", "api://other/.default")],
            (400, "invalid_request", 9002313),
        ),
    ];
    for (form, expected) in cases {
        let (status, body) = app.token_request(&form).await;
        assert_entra_error(status, &body, expected);
    }
}

#[tokio::test]
async fn a_token_without_a_granted_role_has_no_roles_claim() {
    let app = TestApp::spawn().await;
    let creds = app.admin_credentials();
    let (status, body) = app
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", creds["client_id"].as_str().unwrap()),
            ("client_secret", creds["client_secret"].as_str().unwrap()),
            ("scope", "api://vault/.default"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let payload = body["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "api://vault");
    assert!(claims.get("roles").is_none(), "{claims}");
}

#[tokio::test]
async fn malformed_or_oversized_token_requests_are_refused_cleanly() {
    let app = TestApp::spawn().await;
    let url = format!("{}/demo/oauth2/v2.0/token", app.base);
    let json =
        app.client.post(&url).json(&serde_json::json!({"grant_type": "client_credentials"})).send().await.unwrap();
    assert_eq!(json.status(), 400);
    let body: Value = json.json().await.unwrap();
    assert_eq!(body["error_codes"], serde_json::json!([900144]));

    let huge = format!("grant_type=client_credentials&client_assertion={}", "a".repeat(1 << 20));
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let (status, body) = app.get_json("/healthz").await;
    assert_eq!((status.as_u16(), body["status"].as_str()), (200, Some("ok")), "still serving");

    let unknown = app
        .client
        .post(format!("{}/nope/oauth2/v2.0/token", app.base))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error_codes"], serde_json::json!([90002]));
}
