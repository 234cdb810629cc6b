//! The managed-identity listener: IMDS and App Service endpoints, their errors, the token cache
//! and the sign-in log.

use std::sync::Arc;

use async_trait::async_trait;
use ficus::domain::ports::StoreError;
use ficus::domain::sign_in::SignIn;
use ficus::startup::Overrides;
use ficus::store::sign_in_writer::SignInStore;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_api::{ARM_RG, Admin};
use crate::helpers::{DEMO_TENANT_ID, TestApp, jwt_header};

const IMDS: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault";
const META: (&str, &str) = ("Metadata", "true");

/// Verifies a token through the published JWKS and returns its claims.
async fn verified_claims(app: &TestApp, token: &str, audience: &str) -> Value {
    let kid = jwt_header(token).kid.unwrap();
    let jwks = app.jwks().await;
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let key = DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[format!("{}/{DEMO_TENANT_ID}/v2.0", app.base)]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims
}

async fn vm_demo(admin: &Admin<'_>) -> Value {
    admin.call(Method::GET, &format!("{ARM_RG}/Microsoft.Compute/virtualMachines/vm-demo"), None).await.1
}

async fn uami_demo(admin: &Admin<'_>) -> Value {
    admin
        .call(Method::GET, &format!("{ARM_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo"), None)
        .await
        .1
}

#[tokio::test]
async fn imds_gives_the_vms_system_identity_a_token_shaped_as_imds_answers() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let vm = vm_demo(&admin).await;

    let (status, body) = app.mi_get(IMDS, &[META]).await;
    assert_eq!(status, 200, "{body}");
    for field in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
        assert!(body[field].as_str().is_some_and(|v| v.parse::<i64>().is_ok()), "{field} is a number in a string");
    }
    assert_eq!((body["token_type"].as_str(), body["resource"].as_str()), (Some("Bearer"), Some("api://vault")));
    assert_eq!(body["refresh_token"], "");
    let claims = verified_claims(&app, body["access_token"].as_str().unwrap(), "api://vault").await;
    assert_eq!(claims["oid"], vm["identity"]["principalId"]);
    assert_eq!(claims["sub"], vm["identity"]["principalId"]);
    assert_eq!(claims["appid"], body["client_id"]);
    assert_eq!(claims["roles"], json!(["Secrets.Read"]));
    assert_eq!(claims["tid"], DEMO_TENANT_ID);
    assert_eq!(claims["idtyp"], "app");
    let mirid = vm["id"].as_str().unwrap().replace("/resourceGroups/", "/resourcegroups/");
    assert_eq!(claims["xms_mirid"], mirid);

    let (status, _) = app.mi_get(&IMDS.replace("/token?", "/token/?"), &[META]).await;
    assert_eq!(status, 200, "msal-node's trailing slash");
}

#[tokio::test]
async fn a_user_assigned_identity_is_picked_by_client_id_object_id_or_resource_id() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let uami = uami_demo(&admin).await;
    let props = &uami["properties"];
    for selector in [
        format!("client_id={}", props["clientId"].as_str().unwrap()),
        format!("object_id={}", props["principalId"].as_str().unwrap()),
        format!("msi_res_id={}", uami["id"].as_str().unwrap()),
        format!("mi_res_id={}", uami["id"].as_str().unwrap()),
    ] {
        let (status, body) = app.mi_get(&format!("{IMDS}&{selector}"), &[META]).await;
        assert_eq!(status, 200, "{selector}: {body}");
        assert_eq!(body["client_id"], props["clientId"]);
        let claims = verified_claims(&app, body["access_token"].as_str().unwrap(), "api://vault").await;
        assert_eq!(claims["oid"], props["principalId"]);
        assert!(claims.get("roles").is_none(), "uami-demo holds no role on vault");
        assert_eq!(claims["xms_mirid"], uami["id"].as_str().unwrap().replace("/resourceGroups/", "/resourcegroups/"));
    }
}

#[tokio::test]
async fn imds_errors_have_imds_statuses_and_messages() {
    let app = TestApp::spawn().await;
    let base = "/metadata/identity/oauth2/token";
    // Path, headers, status, `error`, what `error_description` contains.
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (IMDS.into(), vec![], 400, "invalid_request", "Required metadata header not specified"),
        (IMDS.into(), vec![("Metadata", "false")], 400, "invalid_request", "Required metadata header not specified"),
        (IMDS.into(), vec![META, ("X-Forwarded-For", "10.0.0.1")], 400, "invalid_request", "X-Forwarded-For"),
        (format!("{base}?resource=api://vault"), vec![META], 400, "invalid_request", "api-version was not specified"),
        (
            format!("{base}?api-version=2099-01-01&resource=api://vault"),
            vec![META],
            400,
            "invalid_request",
            "api-version '2099-01-01' is not supported; supported versions: 2018-02-01",
        ),
        (
            format!("{base}?api-version=2018-02-01"),
            vec![META],
            400,
            "invalid_request",
            "Required audience parameter not specified",
        ),
        (
            format!("{IMDS}&client_id=6a1f0e6c-0000-4000-8000-000000000000"),
            vec![META],
            400,
            "invalid_request",
            "Identity not found",
        ),
        (format!("{IMDS}&client_id=not-a-guid"), vec![META], 400, "invalid_request", "Identity not found"),
        (
            format!(
                "{IMDS}&client_id=6a1f0e6c-0000-4000-8000-000000000000&object_id=6a1f0e6c-0000-4000-8000-000000000001"
            ),
            vec![META],
            400,
            "invalid_request",
            "Only one of client_id, object_id and msi_res_id",
        ),
        (
            format!("{base}?api-version=2018-02-01&resource=https://vault.azure.net"),
            vec![META],
            400,
            "invalid_resource",
            "AADSTS500011: The resource principal named https://vault.azure.net was not found",
        ),
    ];
    for (path, headers, status, error, message) in cases {
        let (got, body) = app.mi_get(&path, &headers).await;
        assert_eq!(got.as_u16(), status, "{path}: {body}");
        assert_eq!(body["error"], error, "{path}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(message), "{path}: {description}");
        assert!(!description.contains("unreachable"));
    }
    let post = app.client.post(format!("{}{IMDS}", app.mi_base)).header("Metadata", "true").send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn the_sdk_probe_gets_an_answer_that_reads_as_available() {
    let app = TestApp::spawn().await;
    // msal-node's probe: the token path, no query, no Metadata header. Any answer but a 403 that
    // says "unreachable" means "an identity endpoint is here".
    let (status, body) = app.mi_get("/metadata/identity/oauth2/token", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("unreachable"));
}

#[tokio::test]
async fn the_callers_address_picks_the_resource_and_an_unbound_address_gets_no_identity() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    for name in ["uami-a", "uami-b"] {
        admin
            .call(Method::PUT, &format!("{ARM_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"), None)
            .await;
    }
    let ids: Vec<String> = ["uami-a", "uami-b"]
        .iter()
        .map(|n| format!("/subscriptions/0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9/resourceGroups/rg-demo/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}"))
        .collect();
    let body = json!({
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {ids[0].clone(): {}, ids[1].clone(): {}}},
        "properties": {"networkAddresses": ["127.0.0.2"]},
    });
    let (status, vm) =
        admin.call(Method::PUT, &format!("{ARM_RG}/Microsoft.Compute/virtualMachines/vm-multi"), Some(body)).await;
    assert_eq!(status, 201, "{vm}");

    let from =
        |ip: &str| reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let url = format!("{}{IMDS}", app.mi_base);
    let response = from("127.0.0.2").get(&url).header("Metadata", "true").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"].as_str().unwrap().starts_with("Multiple user assigned identities exist"),
        "{body}"
    );

    let client_id = vm["identity"]["userAssignedIdentities"][&ids[1]]["clientId"].as_str().unwrap();
    let response =
        from("127.0.0.2").get(format!("{url}&client_id={client_id}")).header("Metadata", "true").send().await.unwrap();
    assert_eq!(response.status(), 200, "127.0.0.2 is vm-multi's, more specific than vm-demo's 127.0.0.0/8");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["client_id"], client_id);

    let unbound = TestApp::spawn_with(&format!("[world]\nfile = \"{}\"", world_without_addresses().display())).await;
    let (status, body) = unbound.mi_get(IMDS, &[META]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "Identity not found: no compute resource is bound to the caller's address 127.0.0.1"
    );
}

#[tokio::test]
async fn imds_serves_every_caller_as_the_resource_server_imds_resource_names_whatever_its_address() {
    let world = world_without_addresses();
    for named in ["vm-demo", &format!("{ARM_RG}/Microsoft.Compute/virtualMachines/vm-demo")] {
        let config = format!("[world]\nfile = \"{}\"\n[server]\nimds_resource = \"{named}\"", world.display());
        let app = TestApp::spawn_with(&config).await;
        let vm = vm_demo(&Admin::new(&app).await).await;
        let (status, body) = app.mi_get(IMDS, &[META]).await;
        assert_eq!(status, 200, "{named}: {body}");
        let claims = verified_claims(&app, body["access_token"].as_str().unwrap(), "api://vault").await;
        assert_eq!(claims["oid"], vm["identity"]["principalId"], "{named}");
    }
}

/// The demo world with no addresses bound to vm-demo.
fn world_without_addresses() -> std::path::PathBuf {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-world.toml")).unwrap();
    let edited: String = demo.lines().filter(|l| !l.starts_with("addresses")).collect::<Vec<_>>().join("\n");
    let path = std::env::temp_dir().join(format!("ficus-world-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, edited).unwrap();
    path
}

async fn identity_header(admin: &Admin<'_>, site: &str) -> String {
    let (status, body) = admin.call(Method::POST, &format!("{site}/listIdentityHeader"), None).await;
    assert_eq!(status, 200, "{body}");
    body["identityHeader"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn app_service_endpoint_serves_the_web_app_holding_the_identity_header() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let site = format!("{ARM_RG}/Microsoft.Web/sites/web-demo");
    let header = identity_header(&admin, &site).await;
    let web = admin.call(Method::GET, &site, None).await.1;
    let path = "/msi/token?api-version=2019-08-01&resource=api://vault";

    let (status, body) = app.mi_get(path, &[("X-IDENTITY-HEADER", &header)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expires_on"].as_str().is_some_and(|v| v.parse::<i64>().is_ok()));
    let claims = verified_claims(&app, body["access_token"].as_str().unwrap(), "api://vault").await;
    assert_eq!(claims["oid"], web["identity"]["principalId"]);

    for (headers, status, message) in [
        (vec![], 401, "The X-IDENTITY-HEADER header is missing"),
        (vec![("X-IDENTITY-HEADER", "guess")], 401, "The X-IDENTITY-HEADER header is not valid"),
    ] {
        let (got, body) = app.mi_get(path, &headers).await;
        assert_eq!((got.as_u16(), body["statusCode"].as_u64()), (status, Some(u64::from(status))), "{body}");
        assert_eq!(body["message"], message);
    }
    let (got, body) =
        app.mi_get("/msi/token?api-version=2017-09-01&resource=api://vault", &[("X-IDENTITY-HEADER", &header)]).await;
    assert_eq!(got, 400);
    assert!(body["message"].as_str().unwrap().contains("use api-version=2019-08-01"), "{body}");

    let (status, _) = admin.call(Method::POST, &format!("{site}/regenerateIdentityHeader"), None).await;
    assert_eq!(status, 200);
    let (got, _) = app.mi_get(path, &[("X-IDENTITY-HEADER", &header)]).await;
    assert_eq!(got, 401, "the old header stops working at once");
    let fresh = identity_header(&admin, &site).await;
    let (got, _) = app.mi_get(path, &[("X-IDENTITY-HEADER", &fresh)]).await;
    assert_eq!(got, 200);
}

#[tokio::test]
async fn a_second_request_is_served_from_the_cache_until_a_role_change_invalidates_it() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let hits = r#"ficus_cache_lookups_total{cache="issued_tokens",result="hit"}"#;

    let (_, first) = app.mi_get(IMDS, &[META]).await;
    let (_, second) = app.mi_get(IMDS, &[META]).await;
    assert_eq!(first["access_token"], second["access_token"]);
    assert_eq!(app.metric(hits).await, 1.0);

    let vm = vm_demo(&admin).await;
    let (_, apps) = admin.call(Method::GET, "/v1.0/applications", None).await;
    let vault = apps["value"].as_array().unwrap().iter().find(|a| a["displayName"] == "vault").unwrap().clone();
    let assignments_path =
        format!("/v1.0/servicePrincipals/{}/appRoleAssignedTo", vault["servicePrincipalId"].as_str().unwrap());
    let (_, assignments) = admin.call(Method::GET, &assignments_path, None).await;
    let vm_grant = assignments["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["principalId"] == vm["identity"]["principalId"])
        .unwrap()
        .clone();
    let (status, _) =
        admin.call(Method::DELETE, &format!("{assignments_path}/{}", vm_grant["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 204);

    let (_, third) = app.mi_get(IMDS, &[META]).await;
    assert_ne!(third["access_token"], second["access_token"], "the registry changed: a fresh token");
    let claims = verified_claims(&app, third["access_token"].as_str().unwrap(), "api://vault").await;
    assert!(claims.get("roles").is_none(), "the removed role is gone: {claims}");
    assert_eq!(app.metric(hits).await, 1.0);
}

#[tokio::test]
async fn a_registry_change_that_does_not_touch_the_token_leaves_it_cached() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let hits = r#"ficus_cache_lookups_total{cache="issued_tokens",result="hit"}"#;
    let (_, first) = app.mi_get(IMDS, &[META]).await;

    let body = serde_json::json!({"displayName": "unrelated", "identifierUris": ["api://unrelated"]});
    let (status, _) = admin.call(Method::POST, "/v1.0/applications", Some(body)).await;
    assert_eq!(status, 201);

    let (_, second) = app.mi_get(IMDS, &[META]).await;
    assert_eq!(first["access_token"], second["access_token"], "the same token, from the cache");
    assert_eq!(app.metric(hits).await, 1.0);
}

#[tokio::test]
async fn a_deleted_identity_gets_no_token_although_one_is_cached_for_it() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let uami_path = format!("{ARM_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo");
    let uami = admin.call(Method::GET, &uami_path, None).await.1;
    let url = format!("{IMDS}&client_id={}", uami["properties"]["clientId"].as_str().unwrap());
    assert_eq!(app.mi_get(&url, &[META]).await.0, 200);
    assert_eq!(app.mi_get(&url, &[META]).await.0, 200);
    assert_eq!(app.metric(r#"ficus_cache_lookups_total{cache="issued_tokens",result="hit"}"#).await, 1.0);

    let (status, _) = admin.call(Method::DELETE, &uami_path, None).await;
    assert!(status.is_success(), "{status}");
    let (status, body) = app.mi_get(&url, &[META]).await;
    assert_eq!((status.as_u16(), body["error"].clone()), (400, json!("invalid_request")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("Identity not found"), "{body}");
}

#[tokio::test]
async fn sign_ins_are_logged_for_successes_and_failures_and_readable_with_filters() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    app.mi_get(IMDS, &[META]).await;
    app.mi_get(IMDS, &[META]).await;
    app.mi_get(&format!("{IMDS}&client_id=6a1f0e6c-0000-4000-8000-000000000000"), &[META]).await;

    // The admin's own sign-in (its token request) is in the log too; these are the identity's.
    let read = || async {
        let all = admin.call(Method::GET, "/v1.0/auditLogs/signIns", None).await.1["value"].clone();
        let all = all.as_array().unwrap().clone();
        all.into_iter().filter(|e| e["signInEventTypes"] == json!(["managedIdentity"])).collect::<Vec<_>>()
    };
    app.eventually("the sign-ins are written", || async { read().await.len() == 3 }).await;
    let entries = read().await;
    let failure = &entries[0];
    assert_eq!(failure["status"]["errorCode"], 700016);
    assert_eq!(failure["ficusErrorCode"], "identity_not_found");
    assert_eq!(failure["ipAddress"], "127.0.0.1");
    assert_eq!(failure["resourceDisplayName"], "api://vault");
    assert_eq!(failure["signInEventTypes"], json!(["managedIdentity"]));
    let vm = vm_demo(&admin).await;
    assert_eq!(entries[1]["servicePrincipalId"], vm["identity"]["principalId"]);
    assert_eq!(
        (entries[1]["ficusServedFromCache"].as_bool(), entries[2]["ficusServedFromCache"].as_bool()),
        (Some(true), Some(false))
    );

    let (_, failures) = admin.call(Method::GET, "/v1.0/auditLogs/signIns?result=failure", None).await;
    assert_eq!(failures["value"].as_array().unwrap().len(), 1);
    assert_eq!(failures["value"][0]["ficusErrorCode"], "identity_not_found");
    let principal = vm["identity"]["principalId"].as_str().unwrap();
    let (_, mine) =
        admin.call(Method::GET, &format!("/v1.0/auditLogs/signIns?principal={principal}&$top=1"), None).await;
    assert_eq!(mine["value"].as_array().unwrap().len(), 1);
    assert!(mine["@odata.nextLink"].is_string());
}

#[tokio::test]
async fn identical_requests_close_together_are_one_sign_in_entry_with_their_count() {
    let app = TestApp::spawn_with("[signin_log]\nflush_interval = \"2s\"").await;
    let admin = Admin::new(&app).await;
    for _ in 0..6 {
        assert_eq!(app.mi_get(IMDS, &[META]).await.0, 200);
    }
    let read = || async {
        let all = admin.call(Method::GET, "/v1.0/auditLogs/signIns", None).await.1["value"].clone();
        let all = all.as_array().unwrap().clone();
        all.into_iter().filter(|e| e["signInEventTypes"] == json!(["managedIdentity"])).collect::<Vec<_>>()
    };
    app.eventually("the six requests are written", || async {
        read().await.iter().map(|e| e["ficusRequestCount"].as_u64().unwrap()).sum::<u64>() == 6
    })
    .await;
    let entries = read().await;
    let counts: Vec<(bool, u64)> = entries
        .iter()
        .map(|e| (e["ficusServedFromCache"].as_bool().unwrap(), e["ficusRequestCount"].as_u64().unwrap()))
        .collect();
    assert_eq!(counts, vec![(true, 5), (false, 1)], "newest first: the five cache hits are one entry");
    let requests = r#"ficus_token_requests_total{error_code="",kind="managedIdentity",result="success"}"#;
    assert_eq!(app.metric(requests).await, 6.0, "metrics still count every request");
}

/// A sign-in store that does not answer until released: the slowest possible log store.
struct StalledStore {
    gate: tokio::sync::Semaphore,
    /// Writes begun, requests written (the entries' counts summed) and the most rows one write
    /// held.
    inner: std::sync::Mutex<(usize, usize, usize)>,
}

#[async_trait]
impl SignInStore for StalledStore {
    async fn append(&self, entries: &[SignIn]) -> Result<(), StoreError> {
        self.inner.lock().unwrap().0 += 1;
        let _permit = self.gate.acquire().await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut inner = self.inner.lock().unwrap();
        inner.1 += entries.iter().map(|e| e.count as usize).sum::<usize>();
        inner.2 = inner.2.max(entries.len());
        Ok(())
    }
}

#[tokio::test]
async fn while_the_log_store_stalls_identical_requests_are_counted_and_distinct_ones_beyond_capacity_dropped() {
    let store =
        Arc::new(StalledStore { gate: tokio::sync::Semaphore::new(0), inner: std::sync::Mutex::new((0, 0, 0)) });
    let adapters = Overrides { sign_in_store: Some(store.clone()) };
    let app = TestApp::spawn_with_adapters(
        "[signin_log]\nqueue_capacity = 10\nbatch_size = 5\nflush_interval = \"0s\"",
        adapters,
    )
    .await;
    // The first request's entry is taken at once, and its write stalls.
    assert_eq!(app.mi_get(IMDS, &[META]).await.0, 200);
    app.eventually("the writer is stalled on its first write", || async { store.inner.lock().unwrap().0 == 1 }).await;

    for _ in 0..200 {
        let (status, _) = app.mi_get(IMDS, &[META]).await;
        assert_eq!(status, 200, "answered although the log store has not written anything");
    }
    assert_eq!(app.metric("ficus_signin_log_dropped_total").await, 0.0, "200 identical requests are one entry");
    for i in 0..30 {
        let distinct = IMDS.replace("api://vault", &format!("api://unknown-{i}"));
        assert_eq!(app.mi_get(&distinct, &[META]).await.0, 400, "an unknown resource");
    }
    // The table holds 10 distinct entries: the 200 cache hits and 9 unknown resources.
    assert_eq!(app.metric("ficus_signin_log_dropped_total").await, 21.0);

    store.gate.add_permits(1000);
    app.eventually("the held entries are written once the store answers", || async {
        store.inner.lock().unwrap().1 == 1 + 200 + 9
    })
    .await;
    let most_rows = store.inner.lock().unwrap().2;
    assert!((1..=5).contains(&most_rows), "a write holds at most batch_size rows: {most_rows}");
}

#[tokio::test]
async fn managed_identity_sign_ins_name_the_identity_its_kind_and_the_resource_asked_through_as_graph_does() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let (vm, uami) = (vm_demo(&admin).await, uami_demo(&admin).await);
    assert_eq!(app.mi_get(IMDS, &[META]).await.0, 200);
    let as_uami = format!("{IMDS}&msi_res_id={}", uami["id"].as_str().unwrap());
    assert_eq!(app.mi_get(&as_uami, &[META]).await.0, 200);

    let successes =
        "/v1.0/auditLogs/signIns?$filter=status/errorCode%20eq%200%20and%20createdDateTime%20ge%202020-01-01T00:00:00Z";
    let read = || async {
        let all = admin.call(Method::GET, successes, None).await.1["value"].clone();
        all.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["signInEventTypes"] == json!(["managedIdentity"]))
            .cloned()
            .collect::<Vec<_>>()
    };
    app.eventually("both sign-ins are written", || async { read().await.len() == 2 }).await;
    let entries = read().await;
    let (user, system) = (&entries[0], &entries[1]);
    assert_eq!(system["appDisplayName"], "vm-demo", "a system-assigned identity is named after its resource");
    assert_eq!(system["servicePrincipalName"], "vm-demo");
    assert_eq!(system["servicePrincipalId"], vm["identity"]["principalId"]);
    assert_eq!(
        system["managedServiceIdentity"],
        json!({"msiType": "systemAssigned", "associatedResourceId": vm["id"]})
    );
    assert_eq!(user["appDisplayName"], "uami-demo");
    assert_eq!(user["appId"], uami["properties"]["clientId"]);
    assert_eq!(user["managedServiceIdentity"], json!({"msiType": "userAssigned", "associatedResourceId": vm["id"]}));
    for entry in &entries {
        assert_eq!(entry["status"], json!({"errorCode": 0, "failureReason": "", "additionalDetails": null}));
        assert_eq!((entry["isInteractive"].as_bool(), entry["ficusErrorCode"].as_str()), (Some(false), Some("")));
    }

    let (status, body) = admin.call(Method::GET, "/v1.0/auditLogs/signIns?$filter=userId%20eq%20'x'", None).await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("'userId'") && message.contains("createdDateTime"), "says what is understood: {message}");
    let unknown_app = "/v1.0/auditLogs/signIns?$filter=appId%20eq%20'00000000-0000-4000-8000-000000000000'";
    let (status, body) = admin.call(Method::GET, unknown_app, None).await;
    assert_eq!((status.as_u16(), body["value"].clone()), (200, json!([])), "no principal has that appId");
}
