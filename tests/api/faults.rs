//! Fault rules: the admin API that keeps them, and the answers they change on each endpoint,
//! across replicas, from the world file and the CLI.

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_api::{Admin, own_token};
use crate::helpers::{DEMO_TENANT_ID, TestApp};

const IMDS: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault";
const META: (&str, &str) = ("Metadata", "true");

async fn add(admin: &Admin<'_>, rule: Value) -> Value {
    let (status, body) = admin.call(Method::POST, "/ficus/faults", Some(rule)).await;
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn a_counted_imds_rule_answers_imds_errors_then_lets_requests_through_and_says_so_in_logs_and_metrics() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let rule = add(
        &admin,
        json!({"endpoint": "imds", "target": {"computeResource": "vm-demo"},
        "status": 429, "retryAfter": 3, "requests": 2}),
    )
    .await;
    assert_eq!(rule["requests"], 2);
    assert!(rule["target"]["computeResource"].as_str().unwrap().ends_with("/virtualmachines/vm-demo"), "{rule}");

    for _ in 0..2 {
        let response =
            app.client.get(format!("{}{IMDS}", app.mi_base)).header("Metadata", "true").send().await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "3");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "too_many_requests", "IMDS's shape: {body}");
        assert!(body["error_description"].as_str().unwrap().contains(rule["id"].as_str().unwrap()), "{body}");
    }
    assert_eq!(app.mi_get(IMDS, &[META]).await.0, 200, "the rule's two requests are used up");
    let (_, listed) = admin.call(Method::GET, "/ficus/faults", None).await;
    assert_eq!(listed["value"], json!([]), "a used-up rule is no longer in force");
    assert_eq!(app.metric(r#"ficus_faults_injected_total{effect="status",endpoint="imds"}"#).await, 2.0);

    let injected = || async {
        let (_, log) = admin.call(Method::GET, "/v1.0/auditLogs/signIns?result=failure", None).await;
        log["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ficusErrorCode"] == "injected")
            .map(|e| e["ficusRequestCount"].as_u64().unwrap())
            .sum::<u64>()
    };
    app.eventually("both injected answers are in the sign-in log", || async { injected().await == 2 }).await;
}

#[tokio::test]
async fn each_endpoint_answers_an_injected_status_in_its_own_shape() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    for endpoint in ["token", "discovery", "jwks"] {
        add(&admin, json!({"endpoint": endpoint, "status": 503, "retryAfter": 1, "requests": 1})).await;
    }
    let (status, body) = app.token_request(&[("grant_type", "client_credentials")]).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert!(body["trace_id"].is_string() && body["error_codes"].is_array(), "Entra's shape: {body}");
    let discovery = app.get("/demo/v2.0/.well-known/openid-configuration").await;
    assert_eq!((discovery.status().as_u16(), discovery.headers()["retry-after"].to_str().unwrap()), (503, "1"));
    assert_eq!(app.get(&format!("/{DEMO_TENANT_ID}/discovery/v2.0/keys")).await.status(), 503);
    assert_eq!(app.get("/demo/v2.0/.well-known/openid-configuration").await.status(), 200, "once only");

    let web =
        admin.call(Method::GET, &format!("{}/Microsoft.Web/sites/web-demo", crate::admin_api::ARM_RG), None).await.1;
    let (_, header) =
        admin.call(Method::POST, &format!("{}/listIdentityHeader", web["id"].as_str().unwrap()), None).await;
    add(
        &admin,
        json!({"endpoint": "appService", "target": {"computeResource": "web-demo"}, "status": 500, "requests": 1}),
    )
    .await;
    let path = "/msi/token?api-version=2019-08-01&resource=api://vault";
    let (status, body) = app.mi_get(path, &[("X-IDENTITY-HEADER", header["identityHeader"].as_str().unwrap())]).await;
    assert_eq!((status.as_u16(), body["statusCode"].as_u64()), (500, Some(500)), "App Service's shape: {body}");
}

#[tokio::test]
async fn latency_delays_the_real_answer_and_a_closed_connection_gives_none() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    add(&admin, json!({"endpoint": "imds", "latencyMs": 300, "requests": 1})).await;
    let started = std::time::Instant::now();
    let (status, body) = app.mi_get(IMDS, &[META]).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "served after the added latency");

    add(&admin, json!({"endpoint": "imds", "closeConnection": true, "requests": 1})).await;
    let closed = app.client.get(format!("{}{IMDS}", app.mi_base)).header("Metadata", "true").send().await;
    let incomplete = match closed {
        Err(_) => true,
        Ok(response) => response.bytes().await.is_err(),
    };
    assert!(incomplete, "no complete answer");
    assert_eq!(app.mi_get(IMDS, &[META]).await.0, 200);
}

#[tokio::test]
async fn a_rule_hits_only_its_target_and_a_probability_of_one_hits_every_time_until_cleared() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let creds = app.admin_credentials();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", creds["client_id"].as_str().unwrap()),
        ("client_secret", creds["client_secret"].as_str().unwrap()),
        ("scope", "api://ficus-management/.default"),
    ];
    add(
        &admin,
        json!({"endpoint": "token", "target": {"application": "stock-tracker"}, "status": 429, "probability": 1.0}),
    )
    .await;
    assert_eq!(app.token_request(&form).await.0, 200, "the admin client is another application");
    let (_, stock) = admin.call(Method::GET, "/v1.0/applications", None).await;
    let stock_tracker =
        stock["value"].as_array().unwrap().iter().find(|a| a["displayName"] == "stock-tracker").unwrap();
    for _ in 0..3 {
        let hit = [("grant_type", "client_credentials"), ("client_id", stock_tracker["appId"].as_str().unwrap())];
        assert_eq!(app.token_request(&hit).await.0, 429);
    }
    let (status, cleared) = admin.call(Method::DELETE, "/ficus/faults", None).await;
    assert_eq!((status.as_u16(), cleared["removed"].as_u64()), (200, Some(1)));
    let hit = [("grant_type", "client_credentials"), ("client_id", stock_tracker["appId"].as_str().unwrap())];
    let (status, body) = app.token_request(&hit).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_request")),
        "cleared: refused for what it is"
    );
}

#[tokio::test]
async fn bad_rules_are_refused_saying_why_and_a_reader_may_look_but_not_add() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let refused = [
        (
            json!({"endpoint": "token", "status": 410, "requests": 1}),
            "status 410 is not injectable on token: use one of 429, 500, 503",
        ),
        (json!({"endpoint": "imds", "status": 503, "latencyMs": 5, "requests": 1}), "a rule does one thing"),
        (json!({"endpoint": "imds", "status": 503}), "give exactly one"),
        (json!({"endpoint": "imds", "status": 500, "retryAfter": 1, "requests": 1}), "only with status 429 or 503"),
        (json!({"endpoint": "metadata", "status": 503, "requests": 1}), "endpoint 'metadata' is not one of"),
        (
            json!({"endpoint": "imds", "target": {"computeResource": "vm-nowhere"}, "status": 503, "requests": 1}),
            "vm-nowhere",
        ),
        (json!({"endpoint": "imds", "probability": 1.5, "status": 503}), "probability must be above 0 and at most 1"),
    ];
    for (rule, message) in refused {
        let (status, body) = admin.call(Method::POST, "/ficus/faults", Some(rule.clone())).await;
        let said = body["error"]["message"].as_str().unwrap_or_default();
        assert!(matches!(status.as_u16(), 400 | 404) && said.contains(message), "{rule}: {status} {body}");
    }
    let (_, listed) = admin.call(Method::GET, "/ficus/faults", None).await;
    assert_eq!(listed["value"], json!([]), "nothing was stored");

    let reader = own_token(&app, "api://ficus-management", &["Ficus.Reader"]);
    let url = format!("{}/ficus/faults", app.base);
    assert_eq!(app.client.get(&url).bearer_auth(&reader).send().await.unwrap().status(), 200);
    let body = json!({"endpoint": "imds", "status": 503, "requests": 1});
    assert_eq!(app.client.post(&url).bearer_auth(&reader).json(&body).send().await.unwrap().status(), 403);
    let (status, audit) = admin.call(Method::GET, "/v1.0/auditLogs/directoryAudits?$top=50", None).await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["value"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["activityDisplayName"] == "Add fault rule"),
        "the refused target is audited: {audit}"
    );
}

#[tokio::test]
async fn a_rule_written_on_one_replica_fires_on_another_and_a_count_is_the_clusters() {
    let Some(url) = crate::pg::fresh_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = TestApp::spawn_replica(dir.path(), &url, "").await;
    let b = TestApp::spawn_replica(dir.path(), &url, "").await;
    let admin = Admin::new(&a).await;
    add(&admin, json!({"endpoint": "imds", "status": 503, "requests": 2})).await;
    b.eventually("replica b loads the rule", || async { b.mi_get(IMDS, &[META]).await.0 == 503 }).await;
    assert_eq!(a.mi_get(IMDS, &[META]).await.0, 503, "the second of the two, on the other replica");
    assert_eq!(a.mi_get(IMDS, &[META]).await.0, 200);
    assert_eq!(b.mi_get(IMDS, &[META]).await.0, 200, "two in all, not two per replica");
}

#[tokio::test]
async fn a_world_file_rule_is_added_once_and_the_cli_lists_and_clears_it() {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-world.toml")).unwrap();
    let world = std::env::temp_dir().join(format!("ficus-world-{}.toml", uuid::Uuid::new_v4()));
    let fault = "\n[[tenants.faults]]\nname = \"imds-upgrading\"\nendpoint = \"imds\"\nresource = \"vm-demo\"\nstatus = 410\nrequests = 1\n";
    std::fs::write(&world, format!("{demo}{fault}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[world]\nfile = \"{}\"", world.display());
    let app = TestApp::spawn_in(dir.path(), &config).await;
    assert_eq!(app.mi_get(IMDS, &[META]).await.0, 410);
    assert_eq!(app.mi_get(IMDS, &[META]).await.0, 200);
    app.stop().await.unwrap();

    let again = TestApp::spawn_in(dir.path(), &config).await;
    assert_eq!(again.mi_get(IMDS, &[META]).await.0, 200, "a restart does not bring the used request back");

    let added =
        crate::admin_cli::json(&again, &["fault", "add", "--endpoint", "jwks", "--status", "503", "--seconds", "60"])
            .await;
    assert_eq!(added["endpoint"], "jwks", "{added}");
    let listed = crate::admin_cli::json(&again, &["fault", "list"]).await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(again.get(&format!("/{DEMO_TENANT_ID}/discovery/v2.0/keys")).await.status(), 503);
    crate::admin_cli::json(&again, &["fault", "clear"]).await;
    let listed = crate::admin_cli::json(&again, &["fault", "list"]).await;
    assert_eq!(listed["value"], json!([]), "{listed}");
    assert_eq!(again.get(&format!("/{DEMO_TENANT_ID}/discovery/v2.0/keys")).await.status(), 200);
}
