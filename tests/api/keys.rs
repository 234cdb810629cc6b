//! Signing keys: rotation through the CLI while the server runs, restarts, file permissions.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ficus::domain::clock::Clock;
use ficus::domain::ports::TokenSigner;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::cli::ficus;
use crate::helpers::{TestApp, claims, jwt_header};

const LIFETIMES: &str = "[tokens]\nlifetime = \"1h\"\nmanaged_identity_lifetime = \"2h\"\nclock_skew = \"5m\"\n[keys]\nprepublish = \"24h\"";
const LIFETIME_ENV: [(&str, &str); 4] = [
    ("FICUS_TOKENS__LIFETIME", "1h"),
    ("FICUS_TOKENS__MANAGED_IDENTITY_LIFETIME", "2h"),
    ("FICUS_TOKENS__CLOCK_SKEW", "5m"),
    ("FICUS_KEYS__PREPUBLISH", "24h"),
];

/// Verifies `token` against the JWKS the server publishes right now.
async fn verifies_through_jwks(app: &TestApp, token: &str) -> bool {
    let kid = jwt_header(token).kid.unwrap();
    let jwks = app.jwks().await;
    let Some(jwk) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()) else {
        return false;
    };
    let key = DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["api://vault"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
}

fn signing_kid(app: &TestApp, issuer: &str) -> String {
    let token = app.keys.sign(&claims(issuer, app.clock.now(), Duration::from_secs(60))).unwrap();
    jwt_header(token.expose()).kid.unwrap()
}

#[tokio::test]
async fn rotation_prepublishes_the_next_key_and_retires_the_previous_after_its_tokens_expire() {
    let app = TestApp::spawn_with(LIFETIMES).await;
    let issuer = app.discovery("demo").await["issuer"].as_str().unwrap().to_owned();
    let old_kid = app.published_kids().await.remove(0);
    let old_token = app.keys.sign(&claims(&issuer, app.clock.now(), Duration::from_secs(7200))).unwrap();

    let rotated = ficus(&app.dir, &["keys", "rotate"], &LIFETIME_ENV);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    app.eventually("the running server publishes the new key", || async { app.published_kids().await.len() == 2 })
        .await;
    let new_kid = app.published_kids().await.into_iter().find(|k| *k != old_kid).unwrap();

    // Published before it signs.
    assert_eq!(signing_kid(&app, &issuer), old_kid);
    let listing = String::from_utf8(ficus(&app.dir, &["keys", "list"], &LIFETIME_ENV).stdout).unwrap();
    assert!(listing.lines().any(|l| l.starts_with(&old_kid) && l.contains("current")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with(&new_kid) && l.contains("next")), "{listing}");

    // After the pre-publication period the new key signs; the old one still verifies its tokens.
    app.clock.advance(Duration::from_secs(24 * 3600 + 60));
    assert_eq!(signing_kid(&app, &issuer), new_kid);
    assert_eq!(app.published_kids().await, [new_kid.clone(), old_kid.clone()]);
    assert!(verifies_through_jwks(&app, old_token.expose()).await);

    // Once the longest token lifetime (2h) plus skew (5m) has passed, the old key is gone.
    app.clock.advance(Duration::from_secs(2 * 3600 + 5 * 60 + 60));
    assert_eq!(app.published_kids().await, [new_kid]);
    assert!(!verifies_through_jwks(&app, old_token.expose()).await);
}

#[tokio::test]
async fn rotate_now_signs_with_the_new_key_at_once_and_keeps_the_old_one_published() {
    let app = TestApp::spawn_with(LIFETIMES).await;
    let issuer = app.discovery("demo").await["issuer"].as_str().unwrap().to_owned();
    let old_kid = signing_kid(&app, &issuer);
    let rotated = ficus(&app.dir, &["keys", "rotate", "--now"], &LIFETIME_ENV);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    // The CLI stamped the activation with the wall clock, which has run ahead of the test's
    // frozen clock by the few seconds this test took; catch up with it.
    app.clock.advance(Duration::from_secs(60));
    app.eventually("the new key signs", || async { signing_kid(&app, &issuer) != old_kid }).await;
    assert!(app.published_kids().await.contains(&old_kid));
}

#[tokio::test]
async fn a_second_rotation_while_a_key_is_pending_is_refused_with_a_clear_message() {
    let app = TestApp::spawn_with(LIFETIMES).await;
    assert!(ficus(&app.dir, &["keys", "rotate"], &LIFETIME_ENV).status.success());
    let again = ficus(&app.dir, &["keys", "rotate"], &LIFETIME_ENV);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert!(stderr.contains("already scheduled") && stderr.contains("--now"), "{stderr}");
}

#[tokio::test]
async fn restart_keeps_the_same_keys_and_ca_and_secrets_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestApp::spawn_in(dir.path(), "").await;
    let kids = first.published_kids().await;
    let ca = std::fs::read(dir.path().join("keys/dev-ca.pem")).unwrap();
    first.stop().await.unwrap();

    let second = TestApp::spawn_in(dir.path(), "").await;
    assert_eq!(second.published_kids().await, kids);
    assert_eq!(std::fs::read(dir.path().join("keys/dev-ca.pem")).unwrap(), ca);
    second.stop().await.unwrap();

    let keys = dir.path().join("keys");
    let mut private = vec![keys.join("dev-ca.key.pem"), keys.join("tls/server.key.pem")];
    private.push(keys.join(format!("signing/{}.key.pem", kids[0])));
    for path in private {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    for path in [keys.clone(), keys.join("signing"), keys.join("tls")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", path.display());
    }
}
