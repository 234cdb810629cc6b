//! The admin commands of the `ficus` binary against a running broker.

use std::process::Output;

use serde_json::Value;

use crate::cli::ficus;
use crate::helpers::TestApp;

/// Runs the binary off the runtime's threads (the broker under test shares them).
async fn run(app: &TestApp, args: &[&str]) -> Output {
    let dir = app.dir.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let public_url = app.base.clone();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ficus(&dir, &args, &[("FICUS_SERVER__PUBLIC_URL", public_url.as_str())])
    })
    .await
    .unwrap()
}

pub(crate) async fn json(app: &TestApp, args: &[&str]) -> Value {
    let output = run(app, args).await;
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_manage_the_registry_through_the_admin_api() {
    let app = TestApp::spawn().await;

    let token = run(&app, &["admin", "token"]).await;
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let listed = app.client.get(format!("{}/v1.0/applications", app.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(listed.status(), 200, "the printed token is an admin token");

    let created =
        json(&app, &["app", "create", "orders", "--identifier-uri", "api://orders", "--role", "Orders.Read"]).await;
    let app_id = created["appId"].as_str().unwrap().to_owned();
    assert_eq!(created["appRoles"][0]["value"], "Orders.Read");

    let issuer = "https://token.actions.githubusercontent.com";
    let subject = "repo:octo/orders:ref:refs/heads/main";
    json(&app, &["fic", "add", &app_id, "--name", "gh-main", "--issuer", issuer, "--subject", subject]).await;
    let fics = json(&app, &["fic", "list", &app_id]).await;
    assert_eq!(fics["value"][0]["subject"], subject);
    assert_eq!(fics["value"][0]["audiences"][0], "api://AzureADTokenExchange");
    let expression = "claims['sub'] matches 'repo:octo/orders:environment:*'";
    let flexible =
        json(&app, &["fic", "add", &app_id, "--name", "gh-envs", "--issuer", issuer, "--expression", expression]).await;
    assert_eq!(flexible["claimsMatchingExpression"]["value"], expression, "{flexible}");
    assert!(flexible["subject"].is_null(), "{flexible}");
    let both = run(
        &app,
        &["fic", "add", &app_id, "--name", "x", "--issuer", issuer, "--subject", "s", "--expression", expression],
    )
    .await;
    assert!(!both.status.success(), "a subject and an expression together are refused by the CLI itself");

    let uami = json(&app, &["identity", "create", "uami-cli", "--resource-group", "rg-demo"]).await;
    assert!(uami["properties"]["clientId"].is_string());
    let vm = json(
        &app,
        &["resource", "set", "vm", "vm-cli", "--resource-group", "rg-demo", "--system", "--user-identity", "uami-cli"],
    )
    .await;
    assert_eq!(vm["identity"]["type"], "SystemAssigned, UserAssigned");
    let principal = vm["identity"]["principalId"].as_str().unwrap().to_owned();

    let grant =
        json(&app, &["role", "assign", "--principal", &principal, "--resource", &app_id, "--role", "Orders.Read"])
            .await;
    assert_eq!(grant["principalType"], "ManagedIdentity");

    let disabled = json(&app, &["resource", "set", "vm", "vm-cli", "--resource-group", "rg-demo"]).await;
    assert_eq!(disabled["identity"]["type"], "None");

    let limited = json(&app, &["app", "rate-limit", &app_id, "50/s"]).await;
    assert_eq!(limited["ficusRateLimit"], "50/s");
    let cleared = json(&app, &["app", "rate-limit", &app_id, "--clear"]).await;
    assert!(cleared.get("ficusRateLimit").is_none(), "{cleared}");
    let created = json(&app, &["app", "create", "throttled", "--rate-limit", "5/min"]).await;
    assert_eq!(created["ficusRateLimit"], "5/min");

    json(&app, &["fic", "delete", &app_id, "gh-main"]).await;
    json(&app, &["app", "delete", &app_id]).await;
    let apps = json(&app, &["app", "list"]).await;
    assert!(!apps["value"].as_array().unwrap().iter().any(|a| a["appId"] == app_id.as_str()));

    let missing = run(&app, &["app", "delete", "6a1f0e6c-0000-4000-8000-000000000000"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"), "{}", String::from_utf8_lossy(&missing.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_without_credentials_say_where_they_looked() {
    let app = TestApp::spawn().await;
    let output = run(&app, &["app", "list", "--tenant", "nowhere"]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("keys/admin/nowhere.json") && stderr.contains("no admin credentials"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_for_a_resource_prints_what_its_sdks_need() {
    let app = TestApp::spawn().await;
    let mi = app.mi_base.trim_start_matches("http://").to_owned();
    let mi_env = [("FICUS_SERVER__MI_ADDR", mi.as_str()), ("FICUS_SERVER__PUBLIC_URL", app.base.as_str())];
    let run_env = |args: &'static [&'static str]| {
        let dir = app.dir.clone();
        let env: Vec<(String, String)> = mi_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            ficus(&dir, args, &env)
        })
    };

    let vm = run_env(&["env", "--resource", "vm-demo"]).await.unwrap();
    assert!(vm.status.success(), "{}", String::from_utf8_lossy(&vm.stderr));
    let vm = String::from_utf8(vm.stdout).unwrap();
    assert!(vm.contains(&format!("export AZURE_POD_IDENTITY_AUTHORITY_HOST=http://{mi}")), "{vm}");
    assert!(vm.contains("unset IDENTITY_ENDPOINT IDENTITY_HEADER"), "{vm}");

    let web = run_env(&["env", "--resource", "web-demo"]).await.unwrap();
    assert!(web.status.success(), "{}", String::from_utf8_lossy(&web.stderr));
    let web = String::from_utf8(web.stdout).unwrap();
    assert!(web.contains(&format!("export IDENTITY_ENDPOINT=http://{mi}/msi/token")), "{web}");
    let header = web.lines().find_map(|l| l.strip_prefix("export IDENTITY_HEADER=")).unwrap();
    let (status, _) =
        app.mi_get("/msi/token?api-version=2019-08-01&resource=api://vault", &[("X-IDENTITY-HEADER", header)]).await;
    assert_eq!(status, 200, "the printed header works");

    let unknown = run_env(&["env", "--resource", "nope"]).await.unwrap();
    assert_eq!(unknown.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fic_explain_shows_what_the_token_endpoint_would_do_with_an_assertion() {
    let app = TestApp::spawn().await;
    let admin = crate::admin_api::Admin::new(&app).await;
    let uami_path = format!("{}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo", crate::admin_api::ARM_RG);
    let uami = admin.call(reqwest::Method::GET, &uami_path, None).await.1;
    let client_id = uami["properties"]["clientId"].as_str().unwrap();
    let query = format!(
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id={client_id}"
    );
    let (status, answer) = app.mi_get(&query, &[("Metadata", "true")]).await;
    assert_eq!(status, 200, "{answer}");
    let assertion = answer["access_token"].as_str().unwrap();
    let apps = json(&app, &["app", "list"]).await;
    let tracker = apps["value"].as_array().unwrap().iter().find(|a| a["displayName"] == "stock-tracker").unwrap();
    let tracker = tracker["appId"].as_str().unwrap();

    let report =
        json(&app, &["fic", "explain", "--app", tracker, "--assertion", assertion, "--resource", "api://vault"]).await;
    assert_eq!(report["result"]["wouldIssue"], true, "{report}");
    assert_eq!(report["result"]["roles"], serde_json::json!(["Secrets.Read"]), "{report}");
    assert_eq!(report["credentials"][0]["matches"], true, "{report}");
}
