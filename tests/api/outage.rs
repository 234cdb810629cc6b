//! Cluster mode when PostgreSQL goes away: token requests keep succeeding from memory on every
//! replica, admin writes answer 503, `/readyz` says degraded (still 200), sign-ins wait in the
//! bounded queue (what overflows it is dropped and counted), and after the database returns each
//! replica reconnects and catches up from its cursor. The server here is the test's own, so
//! stopping it disturbs no other test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin_api::{ARM_RG, Admin};
use crate::helpers::TestApp;

const AUDIENCE: &str = "api://AzureADTokenExchange";
const META: (&str, &str) = ("Metadata", "true");

/// A PostgreSQL server owned by one test (`scripts/postgres`), stopped when dropped.
struct OwnServer {
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

impl OwnServer {
    fn start() -> (Self, String) {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(script()).arg("start").arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "scripts/postgres start: {}", String::from_utf8_lossy(&out.stderr));
        (Self { dir }, String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    fn run(&self, command: &str) {
        let out = std::process::Command::new(script()).arg(command).arg(self.dir.path()).output().unwrap();
        assert!(out.status.success(), "scripts/postgres {command}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script()).arg("stop").arg(self.dir.path()).output();
    }
}

async fn imds(app: &TestApp, query: &str) -> (StatusCode, Value) {
    app.mi_get(&format!("/metadata/identity/oauth2/token?api-version=2018-02-01&{query}"), &[META]).await
}

/// `uami-demo`'s token exchanged for a `stock-tracker` token for the vault (flow 2).
async fn exchange(app: &TestApp, uami: &str, client: &str) -> StatusCode {
    let (status, body) = imds(app, &format!("resource={AUDIENCE}&client_id={uami}")).await;
    assert_eq!(status, 200, "{body}");
    let assertion = body["access_token"].as_str().unwrap();
    let (status, body) = app
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("scope", "api://vault/.default"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    status
}

#[tokio::test]
async fn with_postgres_down_tokens_flow_from_memory_writes_get_503_and_replicas_catch_up_after() {
    if crate::pg::server().is_none() {
        return;
    }
    let (server, url) = OwnServer::start();
    let settings = "[storage]\nrefresh_interval = \"200ms\"\nacquire_timeout = \"1s\"";
    let shared = tempfile::tempdir().unwrap();
    let a = TestApp::spawn_replica(shared.path(), &url, settings).await;
    // B signs every token afresh (no issued-token cache), and its sign-in log holds one distinct
    // entry while the database is down.
    let b = TestApp::spawn_replica(
        shared.path(),
        &url,
        &format!("{settings}\n[cache]\nissued_tokens_capacity = 0\n[signin_log]\nqueue_capacity = 1\nbatch_size = 2"),
    )
    .await;
    let admin_a = Admin::new(&a).await;
    let uami = admin_a
        .call(Method::GET, &format!("{ARM_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo"), None)
        .await
        .1["properties"]["clientId"]
        .as_str()
        .unwrap()
        .to_owned();
    let apps = admin_a.call(Method::GET, "/v1.0/applications", None).await.1;
    let tracker = apps["value"].as_array().unwrap().iter().find(|x| x["displayName"] == "stock-tracker").unwrap();
    let tracker = tracker["appId"].as_str().unwrap().to_owned();
    assert_eq!(exchange(&a, &uami, &tracker).await, 200, "warm A's caches");

    server.run("stop");

    for replica in [&a, &b] {
        for round in 0..15 {
            let (status, body) = imds(replica, "resource=api://stock-tracker").await;
            assert_eq!(status, 200, "managed-identity token {round} during the outage: {body}");
            assert_eq!(exchange(replica, &uami, &tracker).await, 200, "exchange {round} during the outage");
        }
    }
    let (status, body) = admin_a.call(Method::POST, "/v1.0/applications", Some(json!({"displayName": "during"}))).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("database is unavailable"), "{body}");
    let (status, _) = admin_a.call(Method::GET, "/v1.0/applications", None).await;
    assert_eq!(status, 200, "reads come from memory");
    // Readiness reports what the last heartbeat found (it never waits for the database itself).
    a.eventually("A's heartbeat shows storage down in /metrics", || async {
        a.metric("ficus_storage_up").await == 0.0
    })
    .await;
    let (status, ready) = a.get_json("/readyz").await;
    assert_eq!((status.as_u16(), ready["status"].as_str()), (200, Some("degraded")), "{ready}");
    assert!(ready["degraded"][0].as_str().unwrap().starts_with("storage"), "{ready}");
    b.eventually("B's full log drops distinct requests and counts them", || async {
        b.metric("ficus_signin_log_dropped_total").await > 0.0
    })
    .await;

    server.run("resume");

    let mut created = None;
    for _ in 0..100 {
        let (status, body) =
            admin_a.call(Method::POST, "/v1.0/applications", Some(json!({"displayName": "after-the-outage"}))).await;
        if status == 201 {
            created = Some(body["id"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = created.expect("A writes again once the database is back");
    let admin_b = Admin::new(&b).await;
    b.eventually("B catches up with A's write from its cursor", || async {
        admin_b.call(Method::GET, &format!("/v1.0/applications/{created}"), None).await.0 == 200
    })
    .await;
    // Readiness follows the heartbeat (once a second), not the write that just succeeded.
    a.eventually("A's heartbeat shows storage up again", || async { a.metric("ficus_storage_up").await == 1.0 }).await;
    let (status, ready) = a.get_json("/readyz").await;
    assert_eq!((status.as_u16(), ready["status"].as_str()), (200, Some("ready")), "{ready}");

    // A's sign-ins from the outage waited in its queue and are in the shared log now.
    let mut logged = 0;
    for _ in 0..100 {
        let (_, page) = admin_b.call(Method::GET, "/v1.0/auditLogs/signIns?$top=1000", None).await;
        logged = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resourceDisplayName"] == "api://stock-tracker" || e["resourceId"] == "api://stock-tracker")
            .map(|e| e["ficusRequestCount"].as_u64().unwrap_or(1))
            .sum::<u64>();
        if logged >= 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(logged >= 15, "A's 15 managed-identity sign-ins from the outage reached the log ({logged} found)");
    assert_eq!(a.metric("ficus_signin_log_dropped_total").await, 0.0, "A's queue was large enough");
}
