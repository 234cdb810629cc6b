//! Discovery, the JWKS, and tokens signed by the key ring verified by an independent library.

use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ficus::domain::clock::Clock;
use ficus::domain::ports::TokenSigner;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::helpers::{DEMO_TENANT_ID, TestApp, claims, jwt_header};

#[tokio::test]
async fn discovery_names_the_tenants_guid_issuer_and_endpoints_over_tls() {
    let app = TestApp::spawn().await;

    let response = app.get("/demo/v2.0/.well-known/openid-configuration").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=3600");
    let body: Value = response.json().await.unwrap();

    let root = format!("{}/{DEMO_TENANT_ID}", app.base);
    assert_eq!(body["issuer"], format!("{root}/v2.0"));
    assert_eq!(body["token_endpoint"], format!("{root}/oauth2/v2.0/token"));
    assert_eq!(body["authorization_endpoint"], format!("{root}/oauth2/v2.0/authorize"));
    assert_eq!(body["jwks_uri"], format!("{root}/discovery/v2.0/keys"));
    for field in [
        "token_endpoint_auth_methods_supported",
        "grant_types_supported",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "scopes_supported",
        "claims_supported",
        "request_uri_parameter_supported",
        "tenant_region_scope",
        "cloud_instance_name",
    ] {
        assert!(body.get(field).is_some(), "discovery lacks {field}");
    }
    assert!(body["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&"private_key_jwt".into()));
}

#[tokio::test]
async fn a_tenant_is_the_same_whether_addressed_by_name_or_guid() {
    let app = TestApp::spawn().await;
    assert_eq!(app.discovery("demo").await, app.discovery(DEMO_TENANT_ID).await);
    assert_eq!(app.discovery("DEMO").await, app.discovery(&DEMO_TENANT_ID.to_uppercase()).await);
}

#[tokio::test]
async fn token_signed_by_the_key_ring_verifies_through_discovery_and_jwks_with_an_independent_library() {
    let app = TestApp::spawn().await;
    let issuer = app.discovery("demo").await["issuer"].as_str().unwrap().to_owned();
    let token = app.keys.sign(&claims(&issuer, app.clock.now(), Duration::from_secs(600))).unwrap();

    let header = jwt_header(token.expose());
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.alg, Algorithm::RS256);
    let jwks = app.jwks().await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header.kid.clone().unwrap().as_str())
        .expect("the token's kid is published");
    assert_eq!(header.x5t.as_deref(), jwk["x5t"].as_str());
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["issuer"], issuer.as_str());

    let key = DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["api://vault"]);
    validation.set_issuer(&[issuer.as_str()]);
    let decoded = jsonwebtoken::decode::<Value>(token.expose(), &key, &validation).expect("signature verifies");
    assert_eq!(decoded.claims["sub"], "test-subject");
}

#[tokio::test]
async fn published_certificate_matches_the_key_and_its_thumbprint() {
    let app = TestApp::spawn().await;
    let jwks = app.jwks().await;
    let jwk = &jwks["keys"][0];
    let der = STANDARD.decode(jwk["x5c"][0].as_str().unwrap()).unwrap();

    let x5t = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der));
    assert_eq!(jwk["x5t"].as_str().unwrap(), x5t);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let x509_parser::public_key::PublicKey::RSA(rsa) = cert.public_key().parsed().unwrap() else {
        panic!("the certificate holds an RSA key");
    };
    let modulus = rsa.modulus.iter().skip_while(|b| **b == 0).copied().collect::<Vec<_>>();
    assert_eq!(URL_SAFE_NO_PAD.encode(modulus), jwk["n"].as_str().unwrap());
}

#[tokio::test]
async fn kid_is_the_rfc_7638_thumbprint_of_the_published_key() {
    let app = TestApp::spawn().await;
    let jwks = app.jwks().await;
    let jwk = &jwks["keys"][0];
    let canonical =
        format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, jwk["e"].as_str().unwrap(), jwk["n"].as_str().unwrap());
    let thumbprint = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
    assert_eq!(jwk["kid"].as_str().unwrap(), thumbprint);
}

#[tokio::test]
async fn es256_keys_are_published_as_p256_jwks_and_verify() {
    let app = TestApp::spawn_with("[keys]\nalgorithm = \"ES256\"").await;
    let issuer = app.discovery("demo").await["issuer"].as_str().unwrap().to_owned();
    let token = app.keys.sign(&claims(&issuer, app.clock.now(), Duration::from_secs(600))).unwrap();
    let jwks = app.jwks().await;
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwt_header(token.expose()).alg, Algorithm::ES256);

    let key = DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["api://vault"]);
    jsonwebtoken::decode::<Value>(token.expose(), &key, &validation).expect("signature verifies");
}

#[tokio::test]
async fn unknown_tenant_gets_entras_error_shape_on_discovery_and_keys() {
    let app = TestApp::spawn().await;
    for path in ["/nope/v2.0/.well-known/openid-configuration", "/nope/discovery/v2.0/keys"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .header("client-request-id", "0b9a7f64-4c8e-4d6b-9f0e-6a3c2b1d0e9f")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let trace_header = response.headers()["x-ms-request-id"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_tenant");
        assert_eq!(body["error_codes"], serde_json::json!([90002]));
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with("AADSTS90002: Tenant 'nope' not found."), "{description}");
        assert!(description.contains(&format!("Trace ID: {trace_header}")), "{description}");
        assert_eq!(body["trace_id"], trace_header.as_str());
        assert_eq!(body["correlation_id"], "0b9a7f64-4c8e-4d6b-9f0e-6a3c2b1d0e9f");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn hostile_tenant_segments_get_the_unknown_tenant_error() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(5000);
    for segment in ["..%2F..%2Fetc", "%00", "a%20b", long.as_str(), "00000000-0000-0000-0000-000000000000"] {
        let (status, body) = app.get_json(&format!("/{segment}/discovery/v2.0/keys")).await;
        assert_eq!(status, 400, "{segment}");
        assert_eq!(body["error"], "invalid_tenant", "{segment}");
        assert!(body["error_description"].as_str().unwrap().len() < 1000, "echoed input is bounded");
    }
}

#[tokio::test]
async fn unknown_path_and_wrong_method_get_json_errors() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_json("/no/such/endpoint").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    assert!(body["error_description"].as_str().unwrap().starts_with("No endpoint at GET /no/such/endpoint."));

    let response = app.client.delete(format!("{}/demo/discovery/v2.0/keys", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn instance_discovery_points_msal_at_this_hosts_tenant_metadata() {
    let app = TestApp::spawn().await;
    let authorize = format!("{}/demo/oauth2/v2.0/authorize", app.base);
    let response = app
        .client
        .get(format!("{}/common/discovery/instance", app.base))
        .query(&[("api-version", "1.1"), ("authorization_endpoint", authorize.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tenant_discovery_endpoint"], format!("{}/demo/v2.0/.well-known/openid-configuration", app.base));
    let host = app.base.trim_start_matches("https://");
    assert_eq!(body["metadata"][0]["aliases"], serde_json::json!([host]));
}

#[tokio::test]
async fn interactive_endpoints_listed_in_discovery_refuse_clearly() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_json("/demo/oauth2/v2.0/authorize?client_id=x&response_type=code").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_response_type");
    assert!(body["error_description"].as_str().unwrap().contains("not supported"));
}
