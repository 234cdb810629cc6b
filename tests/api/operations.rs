//! Health, readiness, metrics and graceful shutdown.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn liveness_answers_on_both_listeners() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_json("/healthz").await;
    assert_eq!((status.as_u16(), body["status"].as_str()), (200, Some("ok")));
    let response = app.client.get(format!("{}/healthz", app.mi_base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn ready_once_keys_and_storage_are_loaded() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn not_ready_while_no_signing_key_is_active() {
    let app = TestApp::spawn().await;
    // Before the first key's activation time, nothing can be signed.
    app.clock.set(app.clock_now() - Duration::from_secs(3600));
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["problems"], serde_json::json!(["no signing key is active"]));
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_time_them() {
    let app = TestApp::spawn().await;
    app.discovery("demo").await;
    app.discovery("demo").await;
    app.get("/nope/discovery/v2.0/keys").await;

    let text = app.get("/metrics").await.text().await.unwrap();
    let discovery_route = r#"route="/{tenant}/v2.0/.well-known/openid-configuration""#;
    assert!(
        text.lines().any(|l| l.starts_with("ficus_http_requests_total")
            && l.contains(discovery_route)
            && l.contains(r#"status="200""#)
            && l.ends_with(" 2")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains(r#"route="/{tenant}/discovery/v2.0/keys""#) && l.contains(r#"status="400""#)),
        "{text}"
    );
    assert!(text.contains("ficus_http_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn metrics_name_the_replica_and_show_a_single_sqlite_broker_as_a_cluster_of_one_with_storage_up() {
    let app = TestApp::spawn_with("[cluster]\nreplica = \"laptop-1\"").await;
    let text = app.metrics().await;
    let info = format!("ficus_replica_info{{replica=\"laptop-1\",version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l == info), "{text}");
    assert_eq!(app.metric("ficus_cluster_live_replicas").await, 1.0, "{text}");
    assert_eq!(app.metric("ficus_storage_up").await, 1.0, "{text}");
    assert_eq!(app.metric("ficus_directory_changes_behind").await, 0.0, "{text}");
}

#[tokio::test]
async fn a_draining_server_fails_readiness_yet_keeps_serving_and_sends_keep_alive_clients_elsewhere() {
    let app = TestApp::spawn_with("[server]\ndrain_delay = \"2s\"").await;
    let (client, base, mi) = (app.client.clone(), app.base.clone(), app.mi_base.clone());
    let discovery = format!("{base}/demo/v2.0/.well-known/openid-configuration");
    let before = client.get(&discovery).send().await.unwrap();
    assert_eq!(before.version(), reqwest::Version::HTTP_11);
    assert!(before.headers().get("connection").is_none(), "keep-alive while serving normally");

    let stopping = tokio::spawn(app.stop());
    let mut readiness = 200;
    for _ in 0..200 {
        readiness = client.get(format!("{base}/readyz")).send().await.unwrap().status().as_u16();
        if readiness == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(readiness, 503, "readiness fails as soon as the drain starts");
    // Requests are still served, each telling its client to reconnect elsewhere.
    let during = client.get(&discovery).send().await.unwrap();
    assert_eq!(during.status(), 200);
    assert_eq!(during.headers()["connection"], "close");
    let imds = format!("{mi}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault");
    let token = client.get(imds).header("Metadata", "true").send().await.unwrap();
    assert_eq!(token.status(), 200);
    assert_eq!(token.headers()["connection"], "close");

    stopping.await.unwrap().expect("the broker stops without error after the drain");
    assert!(client.get(&discovery).send().await.is_err(), "no listener after shutdown");
}

#[tokio::test]
async fn graceful_shutdown_stops_cleanly_and_refuses_new_connections() {
    let app = TestApp::spawn().await;
    let (client, base) = (app.client.clone(), app.base.clone());
    let (status, _): (_, Value) = app.get_json("/healthz").await;
    assert_eq!(status, 200);

    app.stop().await.expect("the broker stops without error");
    let after = client.get(format!("{base}/healthz")).send().await;
    assert!(after.is_err(), "no listener after shutdown");
}

#[test]
fn the_deployment_examples_settings_file_is_valid_with_every_setting_known() {
    use figment::providers::{Format as _, Toml};
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/ficus.toml");
    // Its certificate files exist only in a pod; everything else must validate as written.
    let figment = ficus::config::Settings::default_figment()
        .merge(Toml::file_exact(file))
        .merge(Toml::string("[tls]\nmode = \"dev\""));
    let settings = ficus::config::Settings::from_figment(figment).unwrap();
    assert_eq!(settings.server.drain_delay, Duration::from_secs(3));
    assert_eq!(settings.cluster.replica_expiry, Duration::from_secs(3));
    assert!(settings.world.file.is_none(), "no world file in production");
}
