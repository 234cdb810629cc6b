//! Signing in to the web console over real HTTPS: one-time links, the session cookie's
//! attributes, the security headers, CSRF, and what ends a session. (The pages themselves are
//! driven in Chromium by `tests/sdk/test_console.py`.)

use std::time::Duration;

use ficus::domain::tenant::TenantRef;
use ficus::service::admin::Caller;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin_api::Admin;
use crate::helpers::TestApp;

/// A sign-in link's URL (made by the admin API, as `ficus console` does).
async fn link(admin: &Admin<'_>, role: Option<&str>) -> String {
    let body = role.map_or(json!({}), |r| json!({ "role": r }));
    let (status, answer) = admin.call(Method::POST, "/ficus/console/links", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    answer["url"].as_str().unwrap().to_owned()
}

/// Opens a link: the answer's status and the session cookie it set.
async fn open(app: &TestApp, url: &str) -> (StatusCode, Option<String>) {
    let response = app.client.get(url).send().await.unwrap();
    let cookie = response.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    (response.status(), cookie)
}

fn session_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn page(app: &TestApp, session: &str, path: &str) -> reqwest::Response {
    app.client.get(format!("{}{path}", app.base)).header("cookie", session).send().await.unwrap()
}

/// The CSRF token of the session's forms, read off a page.
async fn csrf(app: &TestApp, session: &str) -> String {
    let html = page(app, session, "/console/applications").await.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a form with its CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_link_opens_one_strict_session_once_and_every_console_answer_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let url = link(&admin, None).await;
    assert!(url.starts_with(&format!("{}/console/sign-in?code=", app.base)), "{url}");

    let (status, cookie) = open(&app, &url).await;
    assert_eq!(status, 200);
    let cookie = cookie.expect("a session cookie");
    for attribute in ["__Host-ficus-console=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let (again, none) = open(&app, &url).await;
    assert_eq!((again, none), (StatusCode::UNAUTHORIZED, None), "a link works once");

    let session = session_of(&cookie);
    let signed_in = page(&app, &session, "/console/applications").await;
    assert_eq!(signed_in.status(), 200);
    let anonymous = page(&app, "", "/console/applications").await;
    assert_eq!(anonymous.status(), 401);
    for response in [&signed_in, &anonymous] {
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "no script at all: {csp}");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"), "{csp}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn links_expire_forged_codes_and_misused_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let url = link(&admin, None).await;
    app.clock.advance(Duration::from_secs(121));
    assert_eq!(open(&app, &url).await.0, 401, "a link lives two minutes");

    let url = link(&admin, None).await;
    let code = url.split("code=").nth(1).unwrap();
    let mut forged = code.to_owned();
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert_eq!(open(&app, &format!("{}/console/sign-in?code={forged}", app.base)).await.0, 401);
    let as_cookie = format!("__Host-ficus-console={code}");
    assert_eq!(page(&app, &as_cookie, "/console/applications").await.status(), 401, "a link is no session");
    let admin_token = format!("__Host-ficus-console={}", app.admin_token().await);
    assert_eq!(page(&app, &admin_token, "/console/applications").await.status(), 401, "an API token is no session");

    let (_, cookie) = open(&app, &url).await;
    let session = session_of(&cookie.unwrap());
    app.clock.advance(Duration::from_secs(8 * 3600 + 1));
    let expired = page(&app, &session, "/console/applications").await;
    assert_eq!(expired.status(), 401);
    assert!(expired.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn changes_need_the_forms_csrf_token_and_an_admin_session() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let (_, created) =
        admin.call(Method::POST, "/v1.0/applications", Some(json!({"displayName": "console-forms"}))).await;
    let action = format!("{}/console/applications/{}/credentials", app.base, created["id"].as_str().unwrap());
    let form = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("name", "from-console".to_owned()),
            ("issuer", "https://issuer.example".to_owned()),
            ("subject", "s".to_owned()),
        ]
    };
    let post = |session: String, body: Vec<(&'static str, String)>| {
        let request = app.client.post(&action).header("cookie", session).form(&body);
        async move { request.send().await.unwrap() }
    };
    let credentials = || async {
        let path = format!("/v1.0/applications/{}/federatedIdentityCredentials", created["id"].as_str().unwrap());
        admin.call(Method::GET, &path, None).await.1["value"].as_array().unwrap().len()
    };

    let (_, cookie) = open(&app, &link(&admin, None).await).await;
    let session = session_of(&cookie.unwrap());
    let token = csrf(&app, &session).await;
    let refused = post(session.clone(), form("")).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("CSRF token"));
    assert_eq!(post(session.clone(), form("not-the-token")).await.status(), 403);
    assert_eq!(credentials().await, 0);
    let added = post(session.clone(), form(&token)).await;
    let app_page = format!("/console/applications/{}", created["id"].as_str().unwrap());
    assert_eq!((added.status().as_u16(), added.url().path()), (200, app_page.as_str()), "back to the application");
    assert_eq!(credentials().await, 1);

    let (_, cookie) = open(&app, &link(&admin, Some("Ficus.Reader")).await).await;
    let reader = session_of(&cookie.unwrap());
    let html = page(&app, &reader, &format!("/console/applications/{}", created["id"].as_str().unwrap())).await;
    let html = html.text().await.unwrap();
    assert!(html.contains("(Reader)") && !html.contains("id=\"credential-form\"") && !html.contains(">Delete<"));
    let reader_token = csrf(&app, &reader).await;
    let mut body = form(&reader_token);
    body[1].1 = "from-reader".into();
    let refused = post(reader, body).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("A Reader's session changes nothing"));
    assert_eq!(credentials().await, 1);
}

#[tokio::test]
async fn a_session_ends_when_the_admin_clients_secret_is_reissued_or_its_role_is_removed() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app).await;
    let (_, cookie) = open(&app, &link(&admin, None).await).await;
    let session = session_of(&cookie.unwrap());
    assert_eq!(page(&app, &session, "/console/activity").await.status(), 200);

    let tenant = app.directory.view().tenant(&TenantRef::parse("demo").unwrap()).unwrap().id;
    let creds = app.admin_credentials();
    let caller =
        Caller { tenant, actor: ficus::domain::activity::Actor { id: "test".into(), display_name: "test".into() } };
    let client = app.admin.application(&caller, creds["client_id"].as_str().unwrap(), true).unwrap();
    app.admin.reset_client_secret(&caller, &client).await.unwrap();
    let ended = page(&app, &session, "/console/activity").await;
    assert_eq!(ended.status(), 401);
    assert!(ended.text().await.unwrap().contains("secret was reissued"));

    // A managed identity holding Ficus.Reader signs in too, until its role is removed.
    let (_, apps) = admin.call(Method::GET, "/v1.0/applications", None).await;
    let management: &Value = apps["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["identifierUris"] == json!(["api://ficus-management"]))
        .unwrap();
    let sp = management["servicePrincipalId"].as_str().unwrap();
    let reader_role = management["appRoles"].as_array().unwrap().iter().find(|r| r["value"] == "Ficus.Reader").unwrap();
    let vm = admin
        .call(Method::GET, &format!("{}/Microsoft.Compute/virtualMachines/vm-demo", crate::admin_api::ARM_RG), None)
        .await
        .1;
    let body = json!({"principalId": vm["identity"]["principalId"], "resourceId": sp, "appRoleId": reader_role["id"]});
    let (_, assignment) =
        admin.call(Method::POST, &format!("/v1.0/servicePrincipals/{sp}/appRoleAssignedTo"), Some(body)).await;
    let (_, mi) = app
        .mi_get(
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://ficus-management",
            &[("Metadata", "true")],
        )
        .await;
    let answer = app
        .client
        .post(format!("{}/ficus/console/links", app.base))
        .bearer_auth(mi["access_token"].as_str().unwrap())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["role"], "Ficus.Reader", "{answer}");
    let (_, cookie) = open(&app, answer["url"].as_str().unwrap()).await;
    let identity_session = session_of(&cookie.unwrap());
    assert_eq!(page(&app, &identity_session, "/console/sign-ins").await.status(), 200);
    let path = format!("/v1.0/servicePrincipals/{sp}/appRoleAssignedTo/{}", assignment["id"].as_str().unwrap());
    admin.call(Method::DELETE, &path, None).await;
    let ended = page(&app, &identity_session, "/console/sign-ins").await;
    assert_eq!(ended.status(), 401, "the role was removed");
    let answer = app
        .client
        .post(format!("{}/ficus/console/links", app.base))
        .bearer_auth(mi["access_token"].as_str().unwrap())
        .json(&json!({"role": "Ficus.Admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403, "a Reader's token cannot ask for an Admin link");
}

#[tokio::test]
async fn a_broker_with_the_console_off_has_no_console_routes() {
    let app = TestApp::spawn_with("[server]\nconsole = false").await;
    let admin = Admin::new(&app).await;
    let (status, _) = admin.call(Method::POST, "/ficus/console/links", Some(json!({}))).await;
    assert_eq!(status, 404);
    for path in ["/console/applications", "/console/sign-in?code=x", "/console/static/console.css"] {
        assert_eq!(page(&app, "", path).await.status(), 404, "{path}");
    }
}
