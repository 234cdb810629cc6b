//! The admin API over HTTPS: authentication, Graph-shaped applications, credentials and role
//! assignments, ARM-shaped identities and compute resources, the activity log.

use std::time::Duration;

use ficus::domain::clock::Clock;
use ficus::domain::ports::TokenSigner;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{DEMO_TENANT_ID, TestApp};

pub(crate) const ARM_RG: &str = "/subscriptions/0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9/resourceGroups/rg-demo/providers";

/// A signed-in admin client.
pub(crate) struct Admin<'a> {
    app: &'a TestApp,
    token: String,
}

impl<'a> Admin<'a> {
    pub(crate) async fn new(app: &'a TestApp) -> Self {
        Self { app, token: app.admin_token().await }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.app.client.request(method, format!("{}{path}", self.app.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    async fn create_app(&self, name: &str) -> Value {
        let body = json!({ "displayName": name, "identifierUris": [format!("api://{name}")] });
        let (status, app) = self.call(Method::POST, "/v1.0/applications", Some(body)).await;
        assert_eq!(status, 201, "{app}");
        app
    }
}

fn fic(i: usize) -> Value {
    json!({
        "name": format!("fic-{i}"),
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": format!("repo:octo/app:environment:e{i}"),
        "audiences": ["api://AzureADTokenExchange"],
    })
}

/// A token signed by this broker's keys with chosen claims, as an attacker with a stolen but
/// under-privileged token would present it.
pub(crate) fn own_token(app: &TestApp, aud: &str, roles: &[&str]) -> String {
    let now = app.clock.now().unix_timestamp();
    let claims = json!({
        "iss": format!("{}/{DEMO_TENANT_ID}/v2.0", app.base), "aud": aud, "tid": DEMO_TENANT_ID,
        "appid": "00000000-0000-4000-8000-000000000001", "roles": roles, "iat": now, "nbf": now, "exp": now + 600,
    });
    app.keys.sign(claims.as_object().unwrap()).unwrap().expose().to_owned()
}

async fn status_with(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = app.client.request(method, format!("{}{path}", app.base)).json(&json!({"displayName": "x"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), challenge)
}

#[tokio::test]
async fn the_admin_api_refuses_missing_foreign_and_unprivileged_tokens() {
    let app = TestApp::spawn().await;
    let other_broker = TestApp::spawn().await;
    let foreign = other_broker.admin_token().await;
    let expired = {
        let token = own_token(&app, "api://ficus-management", &["Ficus.Admin"]);
        app.clock.advance(Duration::from_secs(3600));
        token
    };
    let vault_token = own_token(&app, "api://vault", &["Ficus.Admin"]);
    let cases = [
        (None, 401, "InvalidAuthenticationToken"),
        (Some("not-a-jwt"), 401, "InvalidAuthenticationToken"),
        (Some(foreign.as_str()), 401, "InvalidAuthenticationToken"),
        (Some(expired.as_str()), 401, "InvalidAuthenticationToken"),
        (Some(vault_token.as_str()), 401, "InvalidAuthenticationToken"),
    ];
    for (token, status, code) in cases {
        let (got, body, challenge) = status_with(&app, Method::POST, "/v1.0/applications", token).await;
        assert_eq!((got.as_u16(), body["error"]["code"].as_str()), (status, Some(code)), "{body}");
        assert!(body["error"]["innerError"]["request-id"].is_string(), "{body}");
        assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""));
    }

    let no_role = own_token(&app, "api://ficus-management", &[]);
    let (got, body, _) = status_with(&app, Method::GET, "/v1.0/applications", Some(&no_role)).await;
    assert_eq!((got.as_u16(), body["error"]["code"].as_str()), (403, Some("Authorization_RequestDenied")));

    let reader = own_token(&app, "api://ficus-management", &["Ficus.Reader"]);
    let (got, _, _) = status_with(&app, Method::GET, "/v1.0/applications", Some(&reader)).await;
    assert_eq!(got, 200, "a reader reads");
    let (got, body, _) = status_with(&app, Method::POST, "/v1.0/applications", Some(&reader)).await;
    assert_eq!((got.as_u16(), body["error"]["code"].as_str()), (403, Some("Authorization_RequestDenied")));

    let arm = format!("{ARM_RG}/Microsoft.Compute/virtualMachines/vm-demo");
    let (got, body, _) = status_with(&app, Method::GET, &arm, None).await;
    assert_eq!((got.as_u16(), body["error"]["code"].as_str()), (401, Some("AuthenticationFailed")), "ARM's shape");
}

#[tokio::test]
async fn applications_are_created_read_by_either_id_and_deleted() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let created = admin.create_app("orders").await;
    let (object_id, app_id) = (created["id"].as_str().unwrap(), created["appId"].as_str().unwrap());

    let (status, by_object) = admin.call(Method::GET, &format!("/v1.0/applications/{object_id}"), None).await;
    assert_eq!(status, 200);
    let (_, by_app_id) = admin.call(Method::GET, &format!("/v1.0/applications(appId='{app_id}')"), None).await;
    assert_eq!(by_object, by_app_id);
    let (_, list) = admin.call(Method::GET, "/v1.0/applications", None).await;
    assert!(list["value"].as_array().unwrap().iter().any(|a| a["id"] == object_id));

    let (status, _) = admin.call(Method::DELETE, &format!("/v1.0/applications(appId='{app_id}')"), None).await;
    assert_eq!(status, 204);
    let (status, body) = admin.call(Method::GET, &format!("/v1.0/applications/{object_id}"), None).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (404, Some("Request_ResourceNotFound")));
}

#[tokio::test]
async fn malformed_bodies_unknown_fields_oversized_bodies_and_bad_ids_write_nothing() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let before = app.registry.load_directory().await.unwrap();
    let url = format!("{}/v1.0/applications", app.base);

    let send = |body: String| {
        app.client.post(&url).bearer_auth(&admin.token).header("content-type", "application/json").body(body).send()
    };
    for (body, expected) in [
        ("{not json".to_owned(), 400),
        (r#"{"displayName":"x","signInAudience":"AzureADMyOrg"}"#.to_owned(), 400),
        (r#"{"displayName":42}"#.to_owned(), 400),
        (r#"{"displayName":""}"#.to_owned(), 400),
        (r#"{"displayName":"x","identifierUris":["http://plain"]}"#.to_owned(), 400),
        (format!(r#"{{"displayName":"{}"}}"#, "x".repeat(100_000)), 413),
    ] {
        let response = send(body.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{}", &body[..body.len().min(80)]);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "Request_BadRequest", "{error}");
    }
    let (status, body) = admin.call(Method::GET, "/v1.0/applications/not-a-guid", None).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("Request_BadRequest")));
    let (status, _) = admin.call(Method::DELETE, "/v1.0/applications/6a1f0e6c-0000-4000-8000-000000000000", None).await;
    assert_eq!(status, 404);
    assert_eq!(app.registry.load_directory().await.unwrap(), before, "nothing was written");
}

#[tokio::test]
async fn fifty_concurrent_credential_posts_admit_twenty_and_the_count_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(dir.path(), "").await;
    let admin = Admin::new(&app).await;
    let created = admin.create_app("crowded").await;
    let path = format!("/v1.0/applications/{}/federatedIdentityCredentials", created["id"].as_str().unwrap());

    let results = futures::future::join_all((0..50).map(|i| admin.call(Method::POST, &path, Some(fic(i))))).await;
    let admitted = results.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 400).collect();
    assert_eq!((admitted, refused.len()), (20, 30));
    for (_, body) in refused {
        assert_eq!(body["error"]["code"], "Request_BadRequest");
        assert_eq!(
            body["error"]["message"],
            "the limit of 20 federated identity credentials per application or identity is reached"
        );
    }
    app.stop().await.unwrap();

    let again = TestApp::spawn_in(dir.path(), "").await;
    let (status, list) = Admin::new(&again).await.call(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn credentials_are_read_patched_and_deleted_and_duplicates_conflict() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let created = admin.create_app("ci").await;
    let base =
        format!("/v1.0/applications(appId='{}')/federatedIdentityCredentials", created["appId"].as_str().unwrap());
    let (status, first) = admin.call(Method::POST, &base, Some(fic(0))).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["audiences"], json!(["api://AzureADTokenExchange"]));

    let (status, body) = admin.call(Method::POST, &base, Some(fic(0))).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (409, Some("Request_MultipleObjectsWithSameKeyValue"))
    );
    let (status, _) = admin
        .call(Method::PATCH, &format!("{base}/fic-0"), Some(json!({"subject": "repo:octo/app:ref:refs/heads/main"})))
        .await;
    assert_eq!(status, 204);
    let (_, read) = admin.call(Method::GET, &format!("{base}/{}", first["id"].as_str().unwrap()), None).await;
    assert_eq!(read["subject"], "repo:octo/app:ref:refs/heads/main");
    assert_eq!(read["issuer"], first["issuer"], "PATCH keeps what it does not name");
    let (status, body) = admin.call(Method::PATCH, &format!("{base}/fic-0"), Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = admin.call(Method::DELETE, &format!("{base}/fic-0"), None).await;
    assert_eq!(status, 204);
    let (_, list) = admin.call(Method::GET, &base, None).await;
    assert_eq!(list["value"], json!([]));
}

#[tokio::test]
async fn arm_identities_and_resources_follow_their_lifecycles() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let uami = format!("{ARM_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-ci");
    let (status, identity) = admin.call(Method::PUT, &uami, Some(json!({"location": "westeurope"}))).await;
    assert_eq!(status, 201, "{identity}");
    let (status, again) = admin.call(Method::PUT, &uami, Some(json!({"location": "westeurope"}))).await;
    assert_eq!((status.as_u16(), &again), (200, &identity), "PUT is idempotent");

    let fic_path = format!("{uami}/federatedIdentityCredentials/github");
    let body = json!({"properties": {"issuer": "https://token.actions.githubusercontent.com", "subject": "repo:o/r:ref:refs/heads/main", "audiences": ["api://AzureADTokenExchange"]}});
    let (status, _) = admin.call(Method::PUT, &fic_path, Some(body)).await;
    assert_eq!(status, 201);
    // ARM's 2025-01-31-preview shape: a flexible credential on a user-assigned identity.
    let expression = "claims['sub'] matches 'repo:o/r:environment:*'";
    let flexible = json!({"properties": {"issuer": "https://token.actions.githubusercontent.com",
        "claimsMatchingExpression": {"value": expression, "languageVersion": 1}, "audiences": ["api://AzureADTokenExchange"]}});
    let (status, created) =
        admin.call(Method::PUT, &format!("{uami}/federatedIdentityCredentials/gh-env"), Some(flexible)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["claimsMatchingExpression"]["value"], expression, "{created}");
    assert_eq!(created["properties"]["subject"], Value::Null, "{created}");
    let faulty = json!({"properties": {"issuer": "https://token.actions.githubusercontent.com",
        "claimsMatchingExpression": {"value": "claims['sub'] matches", "languageVersion": 1}}});
    let (status, refused) =
        admin.call(Method::PUT, &format!("{uami}/federatedIdentityCredentials/bad"), Some(faulty)).await;
    assert_eq!((status.as_u16(), refused["error"]["code"].as_str()), (400, Some("BadRequest")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("position 21"), "{refused}");

    let vm = format!("{ARM_RG}/Microsoft.Compute/virtualMachines/vm-ci");
    let block = json!({"location": "westeurope", "identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {uami.clone(): {}}}});
    let (status, created) = admin.call(Method::PUT, &vm, Some(block)).await;
    assert_eq!(status, 201, "{created}");
    assert!(created["identity"]["principalId"].is_string());
    assert_eq!(created["identity"]["userAssignedIdentities"][&uami]["clientId"], identity["properties"]["clientId"]);

    let (status, _) = admin.call(Method::DELETE, &uami, None).await;
    assert_eq!(status, 200);
    let (_, after) = admin.call(Method::GET, &vm, None).await;
    assert_eq!(after["identity"]["type"], "SystemAssigned", "deleting the identity removed its assignment");

    let (status, disabled) = admin.call(Method::PUT, &vm, Some(json!({"identity": {"type": "None"}}))).await;
    assert_eq!((status.as_u16(), disabled["identity"]["principalId"].is_null()), (200, true));
    let (status, body) = admin.call(Method::PUT, &vm, Some(json!({"identity": {"type": "Sometimes"}}))).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("BadRequest")));
    let foreign = "/subscriptions/11111111-2222-4333-8444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x";
    let (status, body) = admin.call(Method::PUT, foreign, Some(json!({"identity": {"type": "None"}}))).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (404, Some("SubscriptionNotFound")));
}

#[tokio::test]
async fn role_assignments_are_granted_once_and_revoked() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let client = admin.create_app("reporting").await;
    let (_, vault) = admin.call(Method::GET, "/v1.0/applications", None).await;
    let vault = vault["value"].as_array().unwrap().iter().find(|a| a["displayName"] == "vault").unwrap().clone();
    let vault_sp = vault["servicePrincipalId"].as_str().unwrap();
    let path = format!("/v1.0/servicePrincipals/{vault_sp}/appRoleAssignedTo");
    let grant = json!({"principalId": client["servicePrincipalId"], "resourceId": vault_sp, "appRoleId": vault["appRoles"][0]["id"]});

    let (status, assignment) = admin.call(Method::POST, &path, Some(grant.clone())).await;
    assert_eq!(status, 201, "{assignment}");
    let (status, body) = admin.call(Method::POST, &path, Some(grant.clone())).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (409, Some("Request_MultipleObjectsWithSameKeyValue"))
    );
    let mut bad_role = grant.clone();
    bad_role["appRoleId"] = json!("6a1f0e6c-0000-4000-8000-000000000000");
    let (status, _) = admin.call(Method::POST, &path, Some(bad_role)).await;
    assert_eq!(status, 400);

    let id = assignment["id"].as_str().unwrap();
    let (status, _) = admin.call(Method::DELETE, &format!("{path}/{id}"), None).await;
    assert_eq!(status, 204);
    let (_, list) = admin.call(Method::GET, &path, None).await;
    assert!(!list["value"].as_array().unwrap().iter().any(|a| a["id"] == id));
}

#[tokio::test]
async fn every_write_appears_in_the_directory_audits_with_its_caller_and_pages() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let created = admin.create_app("audited").await;
    let (status, _) = admin.call(Method::POST, "/v1.0/applications", Some(json!({"displayName": ""}))).await;
    assert_eq!(status, 400);

    let (status, page) = admin.call(Method::GET, "/v1.0/auditLogs/directoryAudits?$top=2", None).await;
    assert_eq!(status, 200, "{page}");
    let entries = page["value"].as_array().unwrap();
    let admin_client = app.admin_credentials()["client_id"].clone();
    assert_eq!(entries[0]["result"], "failure");
    assert_eq!(entries[1]["result"], "success");
    assert_eq!(entries[1]["targetResources"][0]["id"], "audited");
    for entry in entries {
        assert_eq!(entry["initiatedBy"]["app"]["appId"], admin_client);
        assert_eq!(entry["initiatedBy"]["app"]["displayName"], "ficus-admin");
    }
    let next = page["@odata.nextLink"].as_str().unwrap();
    let next = next.strip_prefix(app.base.as_str()).expect("an absolute link, as Graph's SDKs follow it");
    let (_, older) = admin.call(Method::GET, next, None).await;
    assert_eq!(older["value"].as_array().unwrap().len(), 2);
    assert_ne!(older["value"][0]["id"], entries[0]["id"]);

    let target = format!("/v1.0/auditLogs/directoryAudits?target={}", created["displayName"].as_str().unwrap());
    let (_, filtered) = admin.call(Method::GET, &target, None).await;
    assert!(filtered["value"].as_array().unwrap().iter().all(|e| e["targetResources"][0]["id"] == "audited"));
}

#[tokio::test]
async fn every_operation_in_the_openapi_document_exists_and_requires_a_token() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 16);
    let mut checked = 0;
    for (template, item) in paths {
        let path = template
            .replace("{subscription}", "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9")
            .replace("{resourceGroup}", "rg-demo")
            .replace("{appId}", "6a1f0e6c-0000-4000-8000-000000000000")
            .replace(['{', '}'], "");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app.client.request(method.clone(), format!("{}{path}", app.base)).send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} is routed and authenticated");
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} operations");
}

#[tokio::test]
async fn a_user_assigned_identity_takes_at_most_twenty_credentials_too() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let uami = format!("{ARM_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-many");
    admin.call(Method::PUT, &uami, None).await;
    let credential = |i: usize| json!({"properties": {"issuer": "https://kubernetes.example", "subject": format!("system:serviceaccount:ns:sa-{i}")}});
    for i in 0..20 {
        let (status, body) =
            admin.call(Method::PUT, &format!("{uami}/federatedIdentityCredentials/k8s-{i}"), Some(credential(i))).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) =
        admin.call(Method::PUT, &format!("{uami}/federatedIdentityCredentials/k8s-20"), Some(credential(20))).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("BadRequest")));
    assert!(body["error"]["message"].as_str().unwrap().contains("limit of 20"));
    let (_, list) = admin.call(Method::GET, &format!("{uami}/federatedIdentityCredentials"), None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn admin_credentials_on_file_are_kept_across_restarts_and_replaced_when_written_for_another_database() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(dir.path(), "").await;
    let first = app.admin_credentials();
    app.stop().await.unwrap();

    let again = TestApp::spawn_in(dir.path(), "").await;
    assert_eq!(again.admin_credentials(), first, "a file this registry accepts is kept");
    again.stop().await.unwrap();

    // The registry is gone (data/ removed, or the keys directory served another database): the
    // file's secret means nothing to the new one, so it is replaced by one that works.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let fresh = TestApp::spawn_in(dir.path(), "").await;
    assert_ne!(fresh.admin_credentials()["client_secret"], first["client_secret"]);
    assert!(!fresh.admin_token().await.is_empty(), "the replaced credentials are accepted");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("keys/admin/demo.json")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn graphs_and_arms_audiences_name_the_management_api_so_microsofts_sdks_get_admin_tokens() {
    let app = TestApp::spawn().await;
    let creds = app.admin_credentials();
    let call_with = |token: String, path: &'static str| {
        let request = app.client.get(format!("{}{path}", app.base)).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for scope in [
        "https://graph.microsoft.com/.default",
        "https://management.azure.com//.default",
        "https://management.core.windows.net//.default",
    ] {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", creds["client_id"].as_str().unwrap()),
            ("client_secret", creds["client_secret"].as_str().unwrap()),
            ("scope", scope),
        ];
        let (status, body) = app.token_request(&form).await;
        assert_eq!(status, 200, "{scope}: {body}");
        let token = body["access_token"].as_str().unwrap().to_owned();
        let claims = crate::federation::payload(&token);
        assert_eq!(claims["aud"], scope.trim_end_matches("/.default"), "the audience asked for, as Entra's v1 tokens");
        assert_eq!(claims["roles"], json!(["Ficus.Admin"]));
        assert_eq!(call_with(token, "/v1.0/applications").await, 200, "{scope}");
    }

    // A managed identity gets an ARM token too, but it administers nothing until given a role.
    let arm = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/";
    let (status, body) = app.mi_get(arm, &[("Metadata", "true")]).await;
    assert_eq!(status, 200, "{body}");
    let vm_token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(vm_token, "/v1.0/applications").await, 403);
    let admin = Admin::new(&app).await;
    let vm = admin.call(Method::GET, &format!("{ARM_RG}/Microsoft.Compute/virtualMachines/vm-demo"), None).await.1;
    let (_, apps) = admin.call(Method::GET, "/v1.0/applications", None).await;
    let management = apps["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["identifierUris"] == json!(["api://ficus-management"]))
        .unwrap();
    let reader = management["appRoles"].as_array().unwrap().iter().find(|r| r["value"] == "Ficus.Reader").unwrap();
    let sp = management["servicePrincipalId"].as_str().unwrap();
    let assignment = json!({"principalId": vm["identity"]["principalId"], "resourceId": sp, "appRoleId": reader["id"]});
    let (status, body) =
        admin.call(Method::POST, &format!("/v1.0/servicePrincipals/{sp}/appRoleAssignedTo"), Some(assignment)).await;
    assert_eq!(status, 201, "{body}");
    let arm = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com";
    let (_, body) = app.mi_get(arm, &[("Metadata", "true")]).await;
    let vm_token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call_with(vm_token, "/v1.0/applications").await, 200, "a Reader reads");
}
