//! Federated token exchange against a fake external issuer: client assertions and RFC 8693
//! subject tokens succeed and fail in the same cases, with Entra's codes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ficus::domain::clock::Clock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_api::Admin;
use crate::fake_issuer::{FakeIssuer, IssuerKey};
use crate::helpers::TestApp;

const SUBJECT: &str = "repo:octo/app:ref:refs/heads/main";
const AUDIENCE: &str = "api://AzureADTokenExchange";

#[derive(Clone, Copy, Debug)]
enum Grant {
    ClientAssertion,
    TokenExchange,
}

const GRANTS: [Grant; 2] = [Grant::ClientAssertion, Grant::TokenExchange];

struct Setup {
    app: TestApp,
    issuer: FakeIssuer,
    client_id: String,
    fic_path: String,
}

async fn setup(extra: &str) -> Setup {
    let issuer = FakeIssuer::start().await;
    let config =
        format!("[federation]\nca_file = \"{}\"\njwks_refresh_interval = \"1h\"\n{extra}", issuer.ca_file.display());
    let app = TestApp::spawn_with(&config).await;
    let admin = Admin::new(&app).await;
    let (_, created) = admin
        .call(Method::POST, "/v1.0/applications", Some(json!({"displayName": "ci", "identifierUris": ["api://ci"]})))
        .await;
    let client_id = created["appId"].as_str().unwrap().to_owned();
    let fic_path = format!("/v1.0/applications/{}/federatedIdentityCredentials", created["id"].as_str().unwrap());
    let body = json!({"name": "github-main", "issuer": issuer.url, "subject": SUBJECT, "audiences": [AUDIENCE]});
    let (status, fic) = admin.call(Method::POST, &fic_path, Some(body)).await;
    assert_eq!(status, 201, "{fic}");
    Setup { app, issuer, client_id, fic_path }
}

impl Setup {
    fn claims(&self) -> Value {
        let now = self.app.clock.now().unix_timestamp();
        // A fresh `jti` makes every assertion distinct, as real issuers' are.
        json!({
            "iss": self.issuer.url, "sub": SUBJECT, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    fn assertion_with(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims();
        edit(&mut claims);
        self.issuer.sign(&self.issuer.current_key(), &claims)
    }

    async fn exchange(&self, grant: Grant, assertion: &str) -> (u16, Value) {
        let form: Vec<(&str, &str)> = match grant {
            Grant::ClientAssertion => vec![
                ("grant_type", "client_credentials"),
                ("client_id", &self.client_id),
                ("scope", "api://vault/.default"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion),
            ],
            Grant::TokenExchange => vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("client_id", &self.client_id),
                ("scope", "api://vault/.default"),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("subject_token", assertion),
            ],
        };
        let (status, body) = self.app.token_request(&form).await;
        (status.as_u16(), body)
    }

    /// Asserts a refusal with `aadsts`, in the error field the grant uses.
    async fn refused(&self, assertion: &str, aadsts: u64, description: &str) {
        for grant in GRANTS {
            let (status, body) = self.exchange(grant, assertion).await;
            assert_eq!(status, 400, "{grant:?}: {body}");
            let expected_error = match grant {
                Grant::ClientAssertion => "invalid_client",
                Grant::TokenExchange => "invalid_grant",
            };
            assert_eq!(body["error"], expected_error, "{grant:?}: {body}");
            assert_eq!(body["error_codes"], json!([aadsts]), "{grant:?}: {body}");
            let text = body["error_description"].as_str().unwrap();
            assert!(text.starts_with(&format!("AADSTS{aadsts}: ")) && text.contains(description), "{grant:?}: {text}");
        }
    }
}

pub(crate) fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn a_matching_assertion_gets_an_application_token_through_both_grants() {
    let s = setup("").await;
    let assertion = s.assertion_with(|_| {});
    for grant in GRANTS {
        let (status, body) = s.exchange(grant, &assertion).await;
        assert_eq!(status, 200, "{grant:?}: {body}");
        let claims = payload(body["access_token"].as_str().unwrap());
        assert_eq!(claims["appid"], s.client_id.as_str());
        assert_eq!(claims["aud"], "api://vault");
        assert_eq!(claims["appidacr"], "2");
        match grant {
            Grant::ClientAssertion => assert!(body.get("issued_token_type").is_none()),
            Grant::TokenExchange => {
                assert_eq!(body["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token")
            }
        }
    }
}

#[tokio::test]
async fn a_reused_assertion_is_answered_from_the_verified_assertion_cache() {
    let s = setup("").await;
    let assertion = s.current_key_token();
    let hits = r#"ficus_cache_lookups_total{cache="verified_assertions",result="hit"}"#;
    assert_eq!(s.exchange(Grant::ClientAssertion, &assertion).await.0, 200);
    assert_eq!(s.app.metric(hits).await, 0.0);
    s.issuer.set_down(true);
    assert_eq!(s.exchange(Grant::TokenExchange, &assertion).await.0, 200, "no signature check, no fetch");
    assert_eq!(s.app.metric(hits).await, 1.0);

    // The cache keeps the signature check, not the verdict: expiry still applies.
    s.app.clock.advance(std::time::Duration::from_secs(300 + 300 + 1));
    let (status, body) = s.exchange(Grant::ClientAssertion, &assertion).await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([700024])), "{body}");
}

#[tokio::test]
async fn a_wrong_issuer_audience_or_subject_gets_entras_code_for_that_field_and_names_what_was_presented() {
    let s = setup("").await;
    let wrong_subject = s.assertion_with(|c| c["sub"] = json!("repo:octo/app:ref:refs/heads/evil"));
    s.refused(
        &wrong_subject,
        700213,
        &format!(
            "No matching federated identity record found for presented assertion subject 'repo:octo/app:ref:refs/heads/evil'. \
             Check your federated identity credential Subject, Audience and Issuer against the presented assertion. \
             Assertion Issuer: '{}'. Assertion Subject: 'repo:octo/app:ref:refs/heads/evil'. Assertion Audience: '{AUDIENCE}'.",
            s.issuer.url
        ),
    )
    .await;
    let shouting = s.assertion_with(|c| c["sub"] = json!(c["sub"].as_str().unwrap().to_uppercase()));
    s.refused(&shouting, 7002138, "The subject matches with case-insensitive comparison, but not with case-sensitive")
        .await;
    let wrong_audience = s.assertion_with(|c| c["aud"] = json!(["api://somewhere-else"]));
    s.refused(&wrong_audience, 700212, "presented assertion audience 'api://somewhere-else'").await;

    let before = s.issuer.jwks_fetches();
    let wrong_issuer = s.assertion_with(|c| c["iss"] = json!("https://evil.example"));
    s.refused(&wrong_issuer, 700211, "presented assertion issuer 'https://evil.example'").await;
    assert_eq!(s.issuer.jwks_fetches(), before, "an issuer no credential names is never contacted");
}

#[tokio::test]
async fn expired_and_not_yet_valid_assertions_are_refused_with_700024() {
    let s = setup("").await;
    let now = s.app.clock.now().unix_timestamp();
    let expired = s.assertion_with(|c| {
        c["iat"] = json!(now - 4000);
        c["nbf"] = json!(now - 4000);
        c["exp"] = json!(now - 3600);
    });
    s.refused(&expired, 700024, "Client assertion is not within its valid time range.").await;
    let early = s.assertion_with(|c| {
        c["nbf"] = json!(now + 3600);
        c["exp"] = json!(now + 3900);
    });
    s.refused(&early, 700024, &format!("Current time: {now}")).await;
}

#[tokio::test]
async fn forged_signatures_none_and_hmac_with_the_public_key_are_refused() {
    let s = setup("").await;
    let real = s.current_key_token();
    let (head, rest) = real.split_once('.').unwrap();
    let (body, _) = rest.split_once('.').unwrap();
    let other = IssuerKey::generate(&s.issuer.url);
    let forged_sig = s.issuer.sign(&other, &s.claims()).rsplit_once('.').unwrap().1.to_owned();
    s.refused(&format!("{head}.{body}.{forged_sig}"), 700027, "failed signature validation").await;

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    s.refused(&format!("{none_header}.{body}."), 700027, "the algorithm 'none' is not accepted").await;

    // Algorithm confusion: HS256 "signed" with the issuer's public key as the HMAC secret.
    let key = s.issuer.current_key();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    let public = key.jwk.to_string();
    let hmac =
        jsonwebtoken::encode(&header, &s.claims(), &jsonwebtoken::EncodingKey::from_secret(public.as_bytes())).unwrap();
    s.refused(&hmac, 700027, "the algorithm 'HS256' is not accepted").await;
}

impl Setup {
    fn current_key_token(&self) -> String {
        self.assertion_with(|_| {})
    }
}

#[tokio::test]
async fn an_unpublished_kid_refreshes_the_keys_once_then_fails() {
    let s = setup("").await;
    assert_eq!(s.exchange(Grant::ClientAssertion, &s.current_key_token()).await.0, 200);
    let fetched = s.issuer.jwks_fetches();
    let stranger = IssuerKey::generate(&s.issuer.url);
    let unknown = s.issuer.sign(&stranger, &s.claims());

    let (status, body) = s.exchange(Grant::ClientAssertion, &unknown).await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([700027])), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains(&stranger.kid));
    assert_eq!(s.issuer.jwks_fetches(), fetched + 1, "one refresh for the unknown kid");

    let (status, _) = s.exchange(Grant::TokenExchange, &unknown).await;
    assert_eq!(status, 400);
    assert_eq!(s.issuer.jwks_fetches(), fetched + 1, "no second refresh within jwks_refresh_interval");
}

#[tokio::test]
async fn a_rotated_issuer_key_is_accepted_after_a_refresh() {
    let s = setup("").await;
    assert_eq!(s.exchange(Grant::ClientAssertion, &s.current_key_token()).await.0, 200);
    let new_key = s.issuer.rotate();
    let assertion = s.issuer.sign(&new_key, &s.claims());
    for grant in GRANTS {
        let (status, body) = s.exchange(grant, &assertion).await;
        assert_eq!(status, 200, "{grant:?}: {body}");
    }
}

#[tokio::test]
async fn cached_keys_keep_serving_while_the_issuer_is_down() {
    // A zero cache lifetime makes every request try the issuer: the stale path.
    let s = setup("issuer_cache_ttl = \"0s\"").await;
    assert_eq!(s.exchange(Grant::ClientAssertion, &s.current_key_token()).await.0, 200);
    s.issuer.set_down(true);
    for grant in GRANTS {
        let (status, body) = s.exchange(grant, &s.current_key_token()).await;
        assert_eq!(status, 200, "{grant:?}: {body}");
    }
    let stale = s.app.metric(r#"ficus_upstream_events_total{event="stale_served"}"#).await;
    assert!(stale >= 2.0, "{stale}");
}

#[tokio::test]
async fn an_unreachable_issuer_with_nothing_cached_is_a_clear_error() {
    let s = setup("").await;
    s.issuer.set_down(true);
    s.refused(&s.current_key_token(), 50166, "Request to External OIDC endpoint failed.").await;
}

#[tokio::test]
async fn a_deleted_credential_stops_the_exchange_at_once() {
    let s = setup("").await;
    let assertion = s.current_key_token();
    assert_eq!(s.exchange(Grant::ClientAssertion, &assertion).await.0, 200);
    let admin = Admin::new(&s.app).await;
    let (status, _) = admin.call(Method::DELETE, &format!("{}/github-main", s.fic_path), None).await;
    assert_eq!(status, 204);
    // No credential names the issuer any more, so it is not even contacted.
    s.refused(&assertion, 700211, "No matching federated identity record found for presented assertion issuer").await;
}

#[tokio::test]
async fn a_one_megabyte_assertion_is_refused_before_it_is_read() {
    let s = setup("").await;
    let huge = format!("{}.{}.sig", "a".repeat(16), "b".repeat(1 << 20));
    for grant in GRANTS {
        let (status, _) = s.exchange_raw(grant, &huge).await;
        assert_eq!(status, 413, "{grant:?}");
    }
    let oversized = format!("{}.{}.sig", "a".repeat(16), "b".repeat(20_000));
    s.refused(&oversized, 50027, "larger than 16384 bytes").await;
}

impl Setup {
    async fn exchange_raw(&self, grant: Grant, assertion: &str) -> (u16, String) {
        let field = match grant {
            Grant::ClientAssertion => "client_assertion",
            Grant::TokenExchange => "subject_token",
        };
        let body = format!("grant_type=client_credentials&client_id={}&{field}={assertion}", self.client_id);
        let response = self
            .app
            .client
            .post(format!("{}/demo/oauth2/v2.0/token", self.app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

#[tokio::test]
async fn application_sign_ins_record_successes_and_failures() {
    let s = setup("").await;
    s.exchange(Grant::ClientAssertion, &s.current_key_token()).await;
    s.exchange(Grant::ClientAssertion, &s.assertion_with(|c| c["sub"] = json!("nobody"))).await;
    let admin = Admin::new(&s.app).await;
    let client = s.client_id.clone();
    let read = || async {
        let all = admin.call(Method::GET, "/v1.0/auditLogs/signIns", None).await.1["value"].clone();
        all.as_array().unwrap().iter().filter(|e| e["appId"] == client.as_str()).cloned().collect::<Vec<_>>()
    };
    s.app.eventually("both sign-ins are written", || async { read().await.len() == 2 }).await;
    let entries = read().await;
    assert_eq!(
        (entries[0]["status"]["errorCode"].as_u64(), entries[0]["ficusErrorCode"].as_str()),
        (Some(700213), Some("AADSTS700213"))
    );
    assert!(entries[0].get("federatedCredentialId").is_none(), "no credential admitted the failure: {}", entries[0]);
    assert_eq!(entries[1]["status"]["errorCode"], 0);
    assert_eq!(entries[1]["signInEventTypes"], json!(["servicePrincipal"]));
    let (_, credentials) = admin
        .call(Method::GET, &format!("/v1.0/applications(appId='{client}')/federatedIdentityCredentials"), None)
        .await;
    let admitted = credentials["value"].as_array().unwrap().iter().find(|c| c["name"] == "github-main").unwrap();
    assert_eq!(entries[1]["federatedCredentialId"], admitted["id"], "the credential that admitted the assertion");
    assert!(entries[1].get("managedServiceIdentity").is_none(), "an application is no managed identity");
    let (_, app) = admin.call(Method::GET, &format!("/v1.0/applications(appId='{client}')"), None).await;
    assert_eq!(entries[1]["appDisplayName"], app["displayName"]);
    assert_eq!(entries[1]["servicePrincipalId"], app["servicePrincipalId"]);
    let failures = r#"ficus_token_requests_total{error_code="AADSTS700213",kind="application",result="failure"}"#;
    assert_eq!(s.app.metric(failures).await, 1.0, "failures are counted by code");
}

#[tokio::test]
async fn an_application_without_credentials_and_malformed_grants_get_their_own_errors() {
    let s = setup("").await;
    let admin = Admin::new(&s.app).await;
    let (_, bare) = admin.call(Method::POST, "/v1.0/applications", Some(json!({"displayName": "bare"}))).await;
    let assertion = s.current_key_token();
    let form = |client: &str, assertion_type: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", client.to_owned()),
            ("scope", "api://vault/.default".to_owned()),
            ("client_assertion_type", assertion_type.to_owned()),
            ("client_assertion", assertion.clone()),
        ]
    };
    let jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let app = &s.app;
    let send = |form: Vec<(&'static str, String)>| async move {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        app.token_request(&pairs).await
    };
    let (status, body) = send(form(bare["appId"].as_str().unwrap(), jwt_bearer)).await;
    assert_eq!((status.as_u16(), body["error_codes"].clone()), (400, json!([70025])), "{body}");
    let (status, body) = send(form(&s.client_id, "urn:example:saml")).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_request")), "{body}");

    let exchange = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("client_id", s.client_id.as_str()),
        ("scope", "api://vault/.default"),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:saml2"),
        ("subject_token", assertion.as_str()),
    ];
    let (status, body) = s.app.token_request(&exchange).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("subject_token_type"), "{body}");
}

#[tokio::test]
async fn an_application_with_its_own_rate_limit_in_the_registry_is_held_to_it_until_it_is_removed() {
    let s = setup("").await;
    let admin = Admin::new(&s.app).await;
    let app_path = format!("/v1.0/applications(appId='{}')", s.client_id);
    let (status, patched) = admin.call(Method::PATCH, &app_path, Some(json!({"ficusRateLimit": "2/h"}))).await;
    assert_eq!((status.as_u16(), patched["ficusRateLimit"].clone()), (200, json!("2/h")), "{patched}");

    for _ in 0..2 {
        assert_eq!(s.exchange(Grant::ClientAssertion, &s.current_key_token()).await.0, 200);
    }
    let (status, body) = s.exchange(Grant::ClientAssertion, &s.current_key_token()).await;
    assert_eq!((status, body["error"].clone()), (429, json!("temporarily_unavailable")), "{body}");

    let (status, cleared) = admin.call(Method::PATCH, &app_path, Some(json!({"ficusRateLimit": null}))).await;
    assert_eq!(status, 200);
    assert!(cleared.get("ficusRateLimit").is_none(), "back to the configured limit: {cleared}");
    assert_eq!(s.exchange(Grant::ClientAssertion, &s.current_key_token()).await.0, 200);

    let (status, refused) = admin.call(Method::PATCH, &app_path, Some(json!({"ficusRateLimit": "lots"}))).await;
    assert_eq!(status, 400);
    assert!(refused["error"]["message"].as_str().unwrap().contains("rate limit 'lots' is invalid"), "{refused}");
    let body = json!({"displayName": "limited", "ficusRateLimit": "10/min"});
    let (status, created) = admin.call(Method::POST, "/v1.0/applications", Some(body)).await;
    assert_eq!((status.as_u16(), created["ficusRateLimit"].clone()), (201, json!("10/min")));
}

/// A flexible credential's body for the Graph API.
fn flexible(name: &str, issuer: &str, expression: &str) -> Value {
    json!({
        "name": name, "issuer": issuer, "audiences": [AUDIENCE],
        "claimsMatchingExpression": {"value": expression, "languageVersion": 1},
    })
}

#[tokio::test]
async fn flexible_credentials_match_the_claim_sets_of_each_ci_family_and_refuse_their_near_misses() {
    let s = setup("").await;
    let admin = Admin::new(&s.app).await;
    // (credential, expression, the claims a real run of that family carries, the near miss)
    let families: [(&str, &str, Value, Value); 4] = [
        (
            "github-production",
            "claims['sub'] matches 'repo:octo/app:environment:*' \
             and claims['job_workflow_ref'] matches 'octo/app/.github/workflows/deploy.yml@refs/heads/*' \
             and claims['repository_owner'] eq 'octo' and claims['environment'] eq 'production'",
            json!({"sub": "repo:octo/app:environment:production", "repository_owner": "octo", "environment": "production",
                   "job_workflow_ref": "octo/app/.github/workflows/deploy.yml@refs/heads/main"}),
            json!({"sub": "repo:octo/app:environment:staging", "repository_owner": "octo", "environment": "staging",
                   "job_workflow_ref": "octo/app/.github/workflows/deploy.yml@refs/heads/main"}),
        ),
        (
            "gitlab-releases",
            "claims['project_path'] eq 'group/project' and claims['ref_type'] eq 'branch' and claims['ref'] matches 'release/*'",
            json!({"sub": "project_path:group/project:ref_type:branch:ref:release/1.2", "project_path": "group/project",
                   "ref_type": "branch", "ref": "release/1.2"}),
            json!({"sub": "project_path:group/project:ref_type:tag:ref:release/1.2", "project_path": "group/project",
                   "ref_type": "tag", "ref": "release/1.2"}),
        ),
        (
            "terraform-apply",
            "claims['terraform_workspace_name'] matches 'prod-*' and claims['terraform_run_phase'] eq 'apply'",
            json!({"sub": "organization:acme:project:infra:workspace:prod-eu:run_phase:apply",
                   "terraform_workspace_name": "prod-eu", "terraform_run_phase": "apply"}),
            json!({"sub": "organization:acme:project:infra:workspace:prod-eu:run_phase:plan",
                   "terraform_workspace_name": "prod-eu", "terraform_run_phase": "plan"}),
        ),
        (
            "payments-namespace",
            "claims['sub'] matches 'system:serviceaccount:payments:*'",
            json!({"sub": "system:serviceaccount:payments:api"}),
            json!({"sub": "system:serviceaccount:payment:api"}),
        ),
    ];
    for (name, expression, _, _) in &families {
        let (status, body) =
            admin.call(Method::POST, &s.fic_path, Some(flexible(name, &s.issuer.url, expression))).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["subject"], Value::Null, "{body}");
        assert_eq!(body["claimsMatchingExpression"], json!({"value": expression, "languageVersion": 1}), "{body}");
    }
    let with = |claims: &Value| {
        s.assertion_with(|c| {
            for (key, value) in claims.as_object().unwrap() {
                c[key] = value.clone();
            }
        })
    };
    for (name, _, claims, near_miss) in &families {
        for grant in GRANTS {
            let (status, body) = s.exchange(grant, &with(claims)).await;
            assert_eq!(status, 200, "{name} {grant:?}: {body}");
        }
        let sub = near_miss["sub"].as_str().unwrap();
        s.refused(&with(near_miss), 700213, &format!("presented assertion subject '{sub}'")).await;
    }
    assert_eq!(
        s.exchange(Grant::ClientAssertion, &s.assertion_with(|_| ())).await.0,
        200,
        "the exact credential still matches"
    );

    // The limit of 20 counts flexible credentials too: 1 exact + 4 above + 15 more.
    for i in 0..15 {
        let body = flexible(&format!("more-{i}"), &s.issuer.url, &format!("claims['sub'] eq 'n{i}'"));
        assert_eq!(admin.call(Method::POST, &s.fic_path, Some(body)).await.0, 201);
    }
    let (status, body) = admin
        .call(Method::POST, &s.fic_path, Some(flexible("one-too-many", &s.issuer.url, "claims['sub'] eq 'x'")))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("limit of 20"), "{body}");
}

#[tokio::test]
async fn a_credential_with_both_neither_or_a_faulty_expression_is_refused_saying_why() {
    let s = setup("").await;
    let admin = Admin::new(&s.app).await;
    let mut both = flexible("both", &s.issuer.url, "claims['sub'] eq 'a'");
    both["subject"] = json!("a");
    let neither = json!({"name": "neither", "issuer": s.issuer.url, "audiences": [AUDIENCE]});
    let faulty = flexible("faulty", &s.issuer.url, "claims['sub'] equals 'a'");
    let cases = [
        (both, "give either subject or claimsMatchingExpression, not both"),
        (neither, "give subject or claimsMatchingExpression"),
        (faulty, "claimsMatchingExpression is invalid at position 14: expected the operator 'eq' or 'matches'"),
    ];
    for (body, message) in cases {
        let (status, answer) = admin.call(Method::POST, &s.fic_path, Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(message), "{answer}");
    }
    let (_, listed) = admin.call(Method::GET, &s.fic_path, None).await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 1, "nothing was written: {listed}");

    // PATCH swaps an exact credential for a flexible one, and back.
    let one = format!("{}/github-main", s.fic_path);
    let patch =
        json!({"claimsMatchingExpression": {"value": "claims['sub'] matches 'repo:octo/*'", "languageVersion": 1}});
    assert_eq!(admin.call(Method::PATCH, &one, Some(patch)).await.0, 204);
    let (_, now) = admin.call(Method::GET, &one, None).await;
    assert_eq!(
        (now["subject"].clone(), now["claimsMatchingExpression"]["languageVersion"].clone()),
        (Value::Null, json!(1))
    );
    let branch = s.assertion_with(|c| c["sub"] = json!("repo:octo/app:ref:refs/heads/feature"));
    assert_eq!(s.exchange(Grant::ClientAssertion, &branch).await.0, 200, "any branch now");
    assert_eq!(admin.call(Method::PATCH, &one, Some(json!({"subject": SUBJECT}))).await.0, 204);
    let (_, back) = admin.call(Method::GET, &one, None).await;
    assert_eq!((back["subject"].clone(), back["claimsMatchingExpression"].clone()), (json!(SUBJECT), Value::Null));
    s.refused(&branch, 700213, "presented assertion subject").await;
}

#[tokio::test]
async fn a_failed_match_is_diagnosed_in_the_sign_in_log_and_in_the_response_only_where_configured() {
    let wrong = |s: &Setup| s.assertion_with(|c| c["sub"] = json!("repo:octo/app:ref:refs/heads/mian"));
    let diagnosis = format!(
        "nearest credential 'github-main': subject expected '{SUBJECT}', presented 'repo:octo/app:ref:refs/heads/mian'"
    );
    // A development broker (tls.mode = "dev", as the tests run) tells the caller.
    let dev = setup("").await;
    dev.refused(&wrong(&dev), 700213, &format!("Diagnosis: {diagnosis}.")).await;

    // Told to log only, it keeps the configuration to itself; the sign-in log has it.
    let quiet = setup("explain_mismatches = \"log\"").await;
    let (status, body) = quiet.exchange(Grant::ClientAssertion, &wrong(&quiet)).await;
    assert_eq!(status, 400);
    let text = body["error_description"].as_str().unwrap();
    assert!(text.starts_with("AADSTS700213") && !text.contains("nearest credential"), "{text}");
    let admin = Admin::new(&quiet.app).await;
    let logged = || async {
        let all = admin.call(Method::GET, "/v1.0/auditLogs/signIns", None).await.1["value"].clone();
        all.as_array().unwrap().iter().find(|e| e["appId"] == quiet.client_id.as_str()).cloned()
    };
    quiet.app.eventually("the failure is logged", || async { logged().await.is_some() }).await;
    let entry = logged().await.unwrap();
    let reason = entry["status"]["failureReason"].as_str().unwrap();
    assert!(reason.contains(&diagnosis), "{reason}");
}

#[tokio::test]
async fn the_dry_run_shows_each_credentials_verdict_and_the_token_it_would_issue_without_issuing_one() {
    // Two token requests an hour per application (the admin client takes its two): a dry run
    // that counted would use them up.
    let s = setup("[rate_limits]\napplication = \"2/h\"\napplication_burst = 2").await;
    let admin = Admin::new(&s.app).await;
    let expression = "claims['sub'] matches 'repo:octo/*' and claims['environment'] eq 'prod'";
    assert_eq!(admin.call(Method::POST, &s.fic_path, Some(flexible("envs", &s.issuer.url, expression))).await.0, 201);
    let reader = crate::admin_api::own_token(&s.app, "api://ficus-management", &["Ficus.Reader"]);
    let url = format!("{}{}", s.app.base, s.fic_path.replace("/federatedIdentityCredentials", "/explainAssertion"));
    let explain = |token: String, body: Value| {
        let request = s.app.client.post(&url).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };

    // A Reader may ask; what matches is named, with the roles the token would carry.
    let good = s.current_key_token();
    let (status, report) = explain(reader.clone(), json!({"assertion": good, "resource": "api://vault"})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["assertion"]["verified"], true, "{report}");
    assert_eq!(report["result"]["wouldIssue"], true, "{report}");
    assert_eq!(report["result"]["matchedCredential"], "github-main", "{report}");
    assert_eq!(report["result"]["roles"], json!([]), "the application holds no role on the vault");
    let envs = report["credentials"].as_array().unwrap().iter().find(|c| c["name"] == "envs").unwrap();
    assert_eq!(envs["matches"], false);
    let verdicts: Vec<(bool, &str)> = envs["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["holds"] == true, c["explanation"].as_str().unwrap()))
        .collect();
    assert_eq!(verdicts.len(), 4, "issuer, audience and two clauses: {verdicts:?}");
    assert!(verdicts[..3].iter().all(|(holds, _)| *holds), "{verdicts:?}");
    assert_eq!(verdicts[3], (false, "clause claims['environment'] eq 'prod' failed: claim 'environment' is absent"));

    // A near miss says what the endpoint would answer; a forged one is not verified at all.
    let near = s.assertion_with(|c| c["sub"] = json!("repo:other/app"));
    let (_, report) = explain(reader.clone(), json!({"assertion": near})).await;
    assert_eq!(report["result"]["wouldIssue"], false, "{report}");
    assert!(report["result"]["error"].as_str().unwrap().starts_with("AADSTS700213: "), "{report}");
    let stranger = crate::fake_issuer::IssuerKey::generate(&s.issuer.url);
    let forged = s.issuer.sign(&stranger, &s.claims());
    let (_, report) = explain(reader.clone(), json!({"assertion": forged})).await;
    assert_eq!(report["assertion"]["verified"], false, "{report}");
    assert!(report["result"]["error"].as_str().unwrap().starts_with("AADSTS700027"), "{report}");
    assert_eq!(report["credentials"], json!([]), "nothing unverified is compared: {report}");
    let (_, report) = explain(reader.clone(), json!({"assertion": good, "resource": "api://nowhere"})).await;
    assert!(report["result"]["roles"]["error"].as_str().unwrap().starts_with("AADSTS500011"), "{report}");

    // Nothing was issued or logged, and nothing counted against the application's limit.
    let no_role = crate::admin_api::own_token(&s.app, "api://ficus-management", &[]);
    assert_eq!(explain(no_role, json!({"assertion": good})).await.0, 403, "a token without a role may not");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, logs) = admin.call(Method::GET, "/v1.0/auditLogs/signIns", None).await;
    assert!(
        !logs["value"].as_array().unwrap().iter().any(|e| e["appId"] == s.client_id.as_str()),
        "the dry run writes no sign-in: {logs}"
    );
    for _ in 0..2 {
        assert_eq!(s.exchange(Grant::ClientAssertion, &good).await.0, 200, "the hour's two requests are still there");
    }
    assert_eq!(s.exchange(Grant::ClientAssertion, &good).await.0, 429, "and the limit is real");
}

#[tokio::test]
async fn a_user_assigned_identity_exchanges_an_assertion_its_own_flexible_credential_accepts_for_a_managed_identity_token()
 {
    let mut s = setup("").await;
    let admin = Admin::new(&s.app).await;
    let uami = format!("{}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-aks", crate::admin_api::ARM_RG);
    let (status, identity) = admin.call(Method::PUT, &uami, Some(json!({"location": "westeurope"}))).await;
    assert_eq!(status, 201, "{identity}");
    let body = json!({"properties": {"issuer": s.issuer.url, "audiences": [AUDIENCE],
        "claimsMatchingExpression": {"value": "claims['sub'] matches 'system:serviceaccount:payments:*'", "languageVersion": 1}}});
    let (status, created) =
        admin.call(Method::PUT, &format!("{uami}/federatedIdentityCredentials/aks"), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let client_id = identity["properties"]["clientId"].as_str().unwrap().to_owned();
    let principal_id = identity["properties"]["principalId"].as_str().unwrap().to_owned();
    s.client_id.clone_from(&client_id);
    let with_subject = |sub: &str| s.assertion_with(|c| c["sub"] = json!(sub));

    for grant in GRANTS {
        let (status, body) = s.exchange(grant, &with_subject("system:serviceaccount:payments:api")).await;
        assert_eq!(status, 200, "{grant:?}: {body}");
        let claims = payload(body["access_token"].as_str().unwrap());
        assert_eq!(claims["appid"], client_id.as_str(), "{claims}");
        assert_eq!(claims["oid"], principal_id.as_str(), "the identity's own principal: {claims}");
        assert_eq!(claims["xms_mirid"], uami.replacen("/resourceGroups/", "/resourcegroups/", 1), "{claims}");
        assert_eq!((claims["idtyp"].as_str(), claims["aud"].as_str()), (Some("app"), Some("api://vault")));
    }
    s.refused(&with_subject("system:serviceaccount:payment:api"), 700213, "'system:serviceaccount:payment:api'").await;

    // A managed identity has no secret to present.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id.as_str()),
        ("client_secret", "guess"),
        ("scope", "api://vault/.default"),
    ];
    let (status, body) = s.app.token_request(&form).await;
    assert_eq!((status.as_u16(), body["error_codes"].clone()), (401, json!([7000215])), "{body}");

    // Its sign-ins are managed-identity sign-ins, successes and failures alike.
    let mine = || async {
        let all = admin.call(Method::GET, "/v1.0/auditLogs/signIns", None).await.1["value"].clone();
        all.as_array().unwrap().iter().filter(|e| e["appId"] == client_id.as_str()).cloned().collect::<Vec<_>>()
    };
    // Identical requests close together are one entry with their count.
    let requests = |entries: Vec<Value>| entries.iter().map(|e| e["ficusRequestCount"].as_u64().unwrap()).sum::<u64>();
    s.app.eventually("the identity's sign-ins are logged", || async { requests(mine().await) == 5 }).await;
    for entry in mine().await {
        assert_eq!(entry["signInEventTypes"], json!(["managedIdentity"]), "{entry}");
        assert_eq!(entry["servicePrincipalId"], principal_id.as_str(), "{entry}");
    }
}
