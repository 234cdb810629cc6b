//! Rate limits on the token paths: per managed identity, per application, per source address;
//! 429 with Retry-After in each endpoint's shape, a sign-in entry and a metric.

use reqwest::Method;
use serde_json::json;

use crate::admin_api::{ARM_RG, Admin};
use crate::helpers::TestApp;

const IMDS: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault";

#[tokio::test]
async fn a_managed_identity_over_its_limit_gets_429_and_others_do_not() {
    let app = TestApp::spawn_with("[rate_limits]\nidentity = \"1/h\"\nidentity_burst = 2").await;
    for _ in 0..2 {
        assert_eq!(app.mi_get(IMDS, &[("Metadata", "true")]).await.0, 200);
    }
    let response = app.client.get(format!("{}{IMDS}", app.mi_base)).header("Metadata", "true").send().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 60, "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");

    let admin = Admin::new(&app).await;
    let uami = admin
        .call(Method::GET, &format!("{ARM_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo"), None)
        .await
        .1;
    let other = format!("{IMDS}&client_id={}", uami["properties"]["clientId"].as_str().unwrap());
    assert_eq!(app.mi_get(&other, &[("Metadata", "true")]).await.0, 200, "another identity has its own bucket");
    assert_eq!(app.metric(r#"ficus_rate_limited_total{scope="identity"}"#).await, 1.0);

    let read =
        || async { admin.call(Method::GET, "/v1.0/auditLogs/signIns?result=failure", None).await.1["value"].clone() };
    app.eventually("the throttled request is in the sign-in log", || async {
        read().await.as_array().unwrap().iter().any(|e| e["ficusErrorCode"] == "throttled")
    })
    .await;
    let entries = read().await;
    let throttled = entries.as_array().unwrap().iter().find(|e| e["ficusErrorCode"] == "throttled").unwrap();
    assert_eq!(throttled["status"]["errorCode"], 90055, "Entra's TenantThrottlingError: {throttled}");
}

#[tokio::test]
async fn an_application_over_its_limit_gets_entras_429() {
    let app = TestApp::spawn_with("[rate_limits]\napplication = \"1/h\"\napplication_burst = 2").await;
    let creds = app.admin_credentials();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", creds["client_id"].as_str().unwrap()),
        ("client_secret", creds["client_secret"].as_str().unwrap()),
        ("scope", "api://ficus-management/.default"),
    ];
    for _ in 0..2 {
        assert_eq!(app.token_request(&form).await.0, 200);
    }
    let response = app.client.post(format!("{}/demo/oauth2/v2.0/token", app.base)).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(body["error_codes"], serde_json::json!([90055]), "Entra's throttling code: {body}");
    assert!(body["trace_id"].is_string(), "Entra's error shape");
    let throttled = r#"ficus_token_requests_total{error_code="throttled",kind="application",result="failure"}"#;
    assert_eq!(app.metric(throttled).await, 1.0);
}

#[tokio::test]
async fn a_source_address_over_its_limit_is_refused_on_both_listeners_and_others_pass() {
    let app = TestApp::spawn_with("[rate_limits]\naddress = \"1/h\"\naddress_burst = 2").await;
    assert_eq!(app.mi_get(IMDS, &[("Metadata", "true")]).await.0, 200);
    assert_eq!(
        app.token_request(&[("grant_type", "client_credentials")]).await.0,
        400,
        "counted, then refused for what it is"
    );
    assert_eq!(app.mi_get(IMDS, &[("Metadata", "true")]).await.0, 429);
    let (status, body) = app.token_request(&[("grant_type", "client_credentials")]).await;
    assert_eq!((status.as_u16(), body["error"].clone()), (429, json!("temporarily_unavailable")));

    let elsewhere =
        reqwest::Client::builder().local_address("127.0.0.3".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let response = elsewhere.get(format!("{}{IMDS}", app.mi_base)).header("Metadata", "true").send().await.unwrap();
    assert_eq!(response.status(), 200, "127.0.0.3 has its own bucket (and is vm-demo's too)");
}

#[tokio::test]
async fn the_azure_profile_answers_a_burst_over_twenty_a_second_per_vm_with_imds_429s() {
    let azure = TestApp::spawn_with("[rate_limits]\nprofile = \"azure\"").await;
    let started = std::time::Instant::now();
    let burst = futures::future::join_all(
        (0..40).map(|_| azure.client.get(format!("{}{IMDS}", azure.mi_base)).header("Metadata", "true").send()),
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let responses: Vec<reqwest::Response> = burst.into_iter().map(Result::unwrap).collect();
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    // Azure: 20 requests per second per VM. The bucket starts full (20) and refills one every 50 ms.
    let most = 20 + (elapsed * 20.0).ceil() as usize;
    assert!((20..=most).contains(&ok), "{ok} of 40 admitted in {elapsed:.3} s; at most {most} may be");
    let throttled: Vec<&reqwest::Response> = responses.iter().filter(|r| r.status() != 200).collect();
    assert_eq!(throttled.len(), 40 - ok);
    for response in &throttled {
        assert_eq!(response.status(), 429);
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "a token comes back within 50 ms: {retry_after}");
    }
    let body: serde_json::Value = responses.into_iter().find(|r| r.status() == 429).unwrap().json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests", "IMDS's shape: {body}");
    let limited = azure.metric(r#"ficus_rate_limited_total{scope="compute_resource"}"#).await;
    assert_eq!(limited as usize, 40 - ok);

    // The default profile has no per-VM limit: the same burst passes.
    let ficus = TestApp::spawn().await;
    let burst = futures::future::join_all((0..40).map(|_| ficus.mi_get(IMDS, &[("Metadata", "true")]))).await;
    assert!(burst.iter().all(|(status, _)| *status == 200));
}

#[tokio::test]
async fn the_azure_profile_holds_five_slow_imds_requests_of_a_vm_in_flight_and_refuses_the_others() {
    let app = TestApp::spawn_with("[rate_limits]\nprofile = \"azure\"").await;
    let admin = Admin::new(&app).await;
    // A slow IMDS: every answer to vm-demo takes a second, so requests pile up in flight.
    let slow = json!({"endpoint": "imds", "target": {"computeResource": "vm-demo"}, "latencyMs": 1000, "seconds": 60});
    let (status, body) = admin.call(Method::POST, "/ficus/faults", Some(slow)).await;
    assert_eq!(status, 201, "{body}");

    let burst = futures::future::join_all((0..8).map(|_| app.mi_get(IMDS, &[("Metadata", "true")]))).await;

    let mut statuses: Vec<u16> = burst.iter().map(|(status, _)| status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429], "Azure: 5 concurrent requests per VM");
    let refused = burst.iter().find(|(status, _)| status.as_u16() == 429).unwrap();
    assert_eq!(refused.1["error"], "too_many_requests", "{}", refused.1);
    let in_flight = r#"ficus_rate_limited_total{scope="compute_resource_in_flight"}"#;
    assert_eq!(app.metric(in_flight).await, 3.0);
}
