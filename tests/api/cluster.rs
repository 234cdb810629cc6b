//! Cluster mode with real processes: three `ficus serve` replicas on one PostgreSQL database,
//! started at once, bootstrap the shared state once, hold the registry's rules together and sign
//! with one sealed key set that `ficus keys rotate` changes for all of them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::crash::free_port;
use crate::helpers::{CLUSTER_URL, cluster_kek};

struct Replica {
    child: Child,
    api: u16,
    mi: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, url: &str) -> Replica {
    start_with(dir, url, &[])
}

/// A replica with some settings of its own (`FICUS_*` variables).
fn start_with(dir: &Path, url: &str, extra: &[(&str, &str)]) -> Replica {
    let (api, mi) = (free_port(), free_port());
    let child = replica_command(dir, url, api, mi).envs(extra.iter().copied()).spawn().unwrap();
    Replica { child, api, mi }
}

fn replica_command(dir: &Path, url: &str, api: u16, mi: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ficus"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FICUS_SERVER__ADDR", format!("127.0.0.1:{api}"))
        .env("FICUS_SERVER__MI_ADDR", format!("127.0.0.1:{mi}"))
        .env("FICUS_SERVER__PUBLIC_URL", CLUSTER_URL)
        .env("FICUS_STORAGE__URL", url)
        .env("FICUS_KEYS__KEK", cluster_kek())
        .env("FICUS_KEYS__DIR", dir.join("keys"))
        .env("FICUS_WORLD__FILE", concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-world.toml"))
        .env("FICUS_RATE_LIMITS__APPLICATION", "off")
        .env("FICUS_RATE_LIMITS__ADDRESS", "off")
        .env("FICUS_LOG__LEVEL", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A client of the whole cluster (one development CA, made once by whichever replica started
/// first), once every replica is ready.
async fn ready(dir: &Path, replicas: &[Replica]) -> reqwest::Client {
    for _ in 0..600 {
        if let Ok(pem) = std::fs::read(dir.join("keys/dev-ca.pem")) {
            let client = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut all = true;
            for replica in replicas {
                let answer = client.get(format!("https://localhost:{}/readyz", replica.api)).send().await;
                all &= answer.is_ok_and(|r| r.status() == 200);
            }
            if all {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the replicas did not become ready");
}

async fn admin_token(client: &reqwest::Client, dir: &Path, replica: &Replica) -> String {
    let creds: Value = serde_json::from_slice(&std::fs::read(dir.join("keys/admin/demo.json")).unwrap()).unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", creds["client_id"].as_str().unwrap()),
        ("client_secret", creds["client_secret"].as_str().unwrap()),
        ("scope", "api://ficus-management/.default"),
    ];
    let url = format!("https://localhost:{}/demo/oauth2/v2.0/token", replica.api);
    let response = client.post(url).form(&form).send().await.unwrap();
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// An admin API call's JSON answer (`body` makes it a POST).
async fn call(client: &reqwest::Client, token: &str, url: String, body: Option<Value>) -> Value {
    let request = match body {
        Some(body) => client.post(url).json(&body),
        None => client.get(url),
    };
    request.bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let mut db = sqlx::PgConnection::connect(url).await.unwrap();
    let value: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut db).await.unwrap();
    db.close().await.unwrap();
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_started_at_once_bootstrap_once_and_enforce_the_registry_rules_together() {
    let Some(url) = crate::pg::fresh_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Replica> = (0..3).map(|_| start(dir.path(), &url)).collect();
    let client = ready(dir.path(), &replicas).await;

    // Bootstrapped once: one admin client with one secret, the world without duplicates, one key.
    assert_eq!(scalar(&url, "SELECT count(*) FROM applications WHERE display_name = 'ficus-admin'").await, 1);
    let admin_secrets = "SELECT count(*) FROM client_secrets s JOIN applications a ON a.object_id = s.application_id \
                         WHERE a.display_name = 'ficus-admin'";
    assert_eq!(scalar(&url, admin_secrets).await, 1);
    let duplicates = "SELECT count(*) FROM (SELECT tenant_id, display_name FROM applications \
                      GROUP BY 1, 2 HAVING count(*) > 1) d";
    assert_eq!(scalar(&url, duplicates).await, 0, "the world file was applied once");
    assert!(scalar(&url, "SELECT count(*) FROM federated_credentials").await >= 1, "the world's credentials exist");
    assert_eq!(scalar(&url, "SELECT count(*) FROM signing_keys").await, 1, "one initial signing key");
    assert!(!dir.path().join("keys/signing").exists(), "no signing key on local disk in cluster mode");

    // 50 concurrent credential creations for one application, spread over the three replicas.
    let token = admin_token(&client, dir.path(), &replicas[0]).await;
    let base = |i: usize| format!("https://localhost:{}", replicas[i % 3].api);
    // Read-your-writes through a balancer: what one replica created, the next finds at once (a
    // miss catches up with the registry before answering 404).
    for i in 0..3 {
        let body = json!({"displayName": format!("read-your-writes-{i}")});
        let app = call(&client, &token, format!("{}/v1.0/applications", base(i)), Some(body)).await;
        let path =
            format!("{}/v1.0/applications/{}/federatedIdentityCredentials", base(i + 1), app["id"].as_str().unwrap());
        let body = json!({"name": "next-replica", "issuer": "https://issuer.example", "subject": "s", "audiences": ["api://AzureADTokenExchange"]});
        let credential = call(&client, &token, path, Some(body)).await;
        assert_eq!(
            credential["name"],
            "next-replica",
            "replica {} finds replica {i}'s application: {credential}",
            (i + 1) % 3
        );
    }
    let created =
        call(&client, &token, format!("{}/v1.0/applications", base(0)), Some(json!({"displayName": "crowded"}))).await;
    let app_id = created["id"].as_str().unwrap().to_owned();
    let attempts = (0..50).map(|i| {
        let (client, token, url) = (client.clone(), token.clone(), base(i));
        let path = format!("{url}/v1.0/applications/{app_id}/federatedIdentityCredentials");
        // Every fifth pair reuses a name, so names race too.
        let name = if i % 5 == 0 { "shared-name".to_owned() } else { format!("fic-{i}") };
        let body = json!({"name": name, "issuer": "https://issuer.example", "subject": format!("s-{i}"), "audiences": ["api://AzureADTokenExchange"]});
        tokio::spawn(async move { client.post(path).bearer_auth(token).json(&body).send().await.unwrap().status() })
    });
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap().as_u16());
    }
    let admitted = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(admitted, 20, "exactly 20 admitted: {statuses:?}");
    assert!(statuses.iter().all(|s| [201, 400, 409].contains(s)), "the others got the documented errors: {statuses:?}");
    assert!(statuses.contains(&400), "the limit answered 400: {statuses:?}");
    let stored = format!("SELECT count(*) FROM federated_credentials WHERE application_id = '{app_id}'");
    assert_eq!(scalar(&url, &stored).await, 20);
    let named = format!(
        "SELECT count(*) FROM federated_credentials WHERE application_id = '{app_id}' AND name = 'shared-name'"
    );
    assert!(scalar(&url, &named).await <= 1, "names stay unique");
    for i in 0..3 {
        let path = format!("{}/v1.0/applications/{app_id}/federatedIdentityCredentials", base(i));
        let listed = call(&client, &token, path, None).await;
        assert_eq!(listed["value"].as_array().unwrap().len(), 20, "replica {i} agrees");
    }

    // A credential written on replica A reaches replica B's token path.
    let started = Instant::now();
    let uami_path = format!(
        "{}/subscriptions/0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9/resourceGroups/rg-demo/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo",
        base(0)
    );
    let uami = call(&client, &token, uami_path, None).await;
    let uami_client = uami["properties"]["clientId"].as_str().unwrap();
    let uami_principal = uami["properties"]["principalId"].as_str().unwrap();
    let late_app = json!({"displayName": "late", "identifierUris": ["api://late"]});
    let late = call(&client, &token, format!("{}/v1.0/applications", base(0)), Some(late_app)).await;
    let fic = json!({"name": "trust-uami", "issuer": format!("{CLUSTER_URL}/5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17/v2.0"),
                     "subject": uami_principal, "audiences": ["api://AzureADTokenExchange"]});
    let status = client
        .post(format!("{}/v1.0/applications/{}/federatedIdentityCredentials", base(0), late["id"].as_str().unwrap()))
        .bearer_auth(&token)
        .json(&fic)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    let acknowledged = started.elapsed();
    let imds = format!(
        "http://127.0.0.1:{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id={uami_client}",
        replicas[1].mi
    );
    let assertion: Value = client.get(imds).header("Metadata", "true").send().await.unwrap().json().await.unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", late["appId"].as_str().unwrap()),
        ("scope", "api://late/.default"),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion["access_token"].as_str().unwrap()),
    ];
    let mut answered = None;
    for _ in 0..100 {
        let response = client.post(format!("{}/demo/oauth2/v2.0/token", base(1))).form(&form).send().await.unwrap();
        if response.status() == 200 {
            answered = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered = answered.expect("replica B exchanges with the credential written on replica A");
    eprintln!("written on A in {acknowledged:?}; usable on B after {answered:?}");
}

/// The JWKS a replica publishes.
async fn jwks(client: &reqwest::Client, replica: &Replica) -> Value {
    let url = format!("https://localhost:{}/demo/discovery/v2.0/keys", replica.api);
    client.get(url).send().await.unwrap().json().await.unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// A managed-identity token for vm-demo from a replica's IMDS endpoint.
async fn imds_token(client: &reqwest::Client, replica: &Replica) -> String {
    let url = format!(
        "http://127.0.0.1:{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault",
        replica.mi
    );
    let answer: Value = client.get(url).header("Metadata", "true").send().await.unwrap().json().await.unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// Whether `token` verifies through `jwks`; the kid it names.
fn verify(token: &str, jwks: &Value) -> (bool, String) {
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let Some(jwk) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()) else {
        return (false, kid);
    };
    let key =
        jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["api://vault"]);
    (jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok(), kid)
}

fn ficus_keys(url: &str, kek: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ficus"))
        .arg("keys")
        .args(args)
        .env_clear()
        .env("FICUS_STORAGE__URL", url)
        .env("FICUS_KEYS__KEK", kek)
        .env("FICUS_LOG__LEVEL", "error")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sign_with_one_sealed_key_set_that_a_rotation_changes_for_all_of_them_without_a_restart() {
    let Some(url) = crate::pg::fresh_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    // No issued-token cache: every token is signed afresh, by whichever key is current.
    let uncached = [("FICUS_CACHE__ISSUED_TOKENS_CAPACITY", "0")];
    let replicas: Vec<Replica> = (0..3).map(|_| start_with(dir.path(), &url, &uncached)).collect();
    let client = ready(dir.path(), &replicas).await;

    // One key set: every replica publishes the same JWKS, and a token signed by any replica
    // verifies through the JWKS fetched from any other.
    let published = jwks(&client, &replicas[0]).await;
    assert_eq!(kids(&published).len(), 1);
    for replica in &replicas[1..] {
        assert_eq!(jwks(&client, replica).await, published, "every replica publishes the same JWKS");
    }
    for (i, signer) in replicas.iter().enumerate() {
        let token = imds_token(&client, signer).await;
        let other = jwks(&client, &replicas[(i + 1) % 3]).await;
        assert!(verify(&token, &other).0, "a token of replica {i} verifies through replica {}'s JWKS", (i + 1) % 3);
    }

    // The database alone yields no usable key: the stored bytes are no private key, and a replica
    // holding another key-encryption key refuses to start, saying why.
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let (sealed, kek_id): (Vec<u8>, String) =
        sqlx::query_as("SELECT sealed_key, kek_id FROM signing_keys").fetch_one(&mut db).await.unwrap();
    db.close().await.unwrap();
    assert!(aws_lc_rs::rsa::KeyPair::from_pkcs8(&sealed).is_err());
    assert!(aws_lc_rs::rsa::KeyPair::from_pkcs8(&sealed[12..]).is_err());
    assert!(!kek_id.is_empty() && !cluster_kek().contains(&kek_id));
    let (api, mi) = (free_port(), free_port());
    let mut stranger = replica_command(dir.path(), &url, api, mi)
        .env("FICUS_KEYS__KEK", "//////////////////////////////////////////8=")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = stranger.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "a replica with the wrong key-encryption key must not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(stranger.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("sealed under key-encryption key"), "{stderr}");

    // `ficus keys rotate` against the database reaches every running replica.
    let old_kid = kids(&published).remove(0);
    let rotated = ficus_keys(&url, cluster_kek(), &["rotate", "--now"]);
    let output = String::from_utf8_lossy(&rotated.stdout);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let new_kid = output.split_whitespace().nth(3).unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let started = Instant::now();
    for (i, replica) in replicas.iter().enumerate() {
        let mut signed_by_new = false;
        for _ in 0..250 {
            let token = imds_token(&client, replica).await;
            // `--now` signs at once: another replica publishes the key as soon as the database's
            // notification reaches it, a few milliseconds apart (a resource server refetches the
            // JWKS for an unknown kid).
            let mut checked = verify(&token, &jwks(&client, &replicas[(i + 2) % 3]).await);
            for _ in 0..50 {
                if checked.0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                checked = verify(&token, &jwks(&client, &replicas[(i + 2) % 3]).await);
            }
            let (verified, kid) = checked;
            assert!(verified, "replica {i}'s token verifies through another replica's JWKS within a second");
            if kid == new_kid {
                signed_by_new = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(signed_by_new, "replica {i} signs with the rotated key without a restart");
        let now_published = kids(&jwks(&client, replica).await);
        assert!(now_published.contains(&new_kid) && now_published.contains(&old_kid), "{now_published:?}");
    }
    eprintln!("every replica signed with the new key {:?} after the rotation", started.elapsed());
    let listing = String::from_utf8(ficus_keys(&url, cluster_kek(), &["list"]).stdout).unwrap();
    assert!(listing.lines().any(|l| l.starts_with(&new_kid) && l.contains("current")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with(&old_kid) && l.contains("previous")), "{listing}");
}

#[tokio::test]
async fn a_replica_on_postgresql_stops_when_told_to_releasing_its_connections() {
    let Some(url) = crate::pg::fresh_database().await else { return };
    let app = crate::helpers::TestApp::spawn_on_database(&url, "").await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    // Closing the pool waits for every connection, the change listener's included; the listener
    // must let go of it (it once held it forever and shutdown hung).
    let stopped = tokio::time::timeout(Duration::from_secs(60), app.stop()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "the replica stopped: {stopped:?}");
    let sessions =
        format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'", url.rsplit('/').next().unwrap());
    // A server process leaves pg_stat_activity a moment after its client hangs up: a bounded wait
    // for that, not for the replica (a session it kept open stays, and fails the test).
    let mut open = scalar(&crate::pg::server().unwrap(), &sessions).await;
    for _ in 0..100 {
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = scalar(&crate::pg::server().unwrap(), &sessions).await;
    }
    assert_eq!(open, 0, "no session left open");
}

/// A replica's `/metrics` text.
async fn metrics(client: &reqwest::Client, replica: &Replica) -> String {
    let url = format!("https://localhost:{}/metrics", replica.api);
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of an unlabelled gauge in a metrics text.
fn gauge(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until `replica`'s gauge `name` reads `value`, and returns its metrics then.
async fn until_gauge(client: &reqwest::Client, replica: &Replica, name: &str, value: i64) -> String {
    let started = Instant::now();
    loop {
        let text = metrics(client, replica).await;
        if gauge(&text, name) == Some(value) {
            eprintln!("{name} {value} after {:?}", started.elapsed());
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{name} never read {value}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `replica` counts `live` replicas, and returns its metrics then.
async fn until_live(client: &reqwest::Client, replica: &Replica, live: i64) -> String {
    until_gauge(client, replica, "ficus_cluster_live_replicas", live).await
}

/// How many of `n` IMDS token requests a replica accepts (the rest are throttled).
async fn imds_accepted(client: &reqwest::Client, replica: &Replica, n: usize) -> usize {
    let url = format!(
        "http://127.0.0.1:{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault",
        replica.mi
    );
    let mut accepted = 0;
    for _ in 0..n {
        let status = client.get(&url).header("Metadata", "true").send().await.unwrap().status();
        assert!(status == 200 || status == 429, "{status}");
        accepted += usize::from(status == 200);
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_count_each_other_by_heartbeat_and_divide_a_cluster_wide_limit_between_the_live_ones() {
    let Some(url) = crate::pg::fresh_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("FICUS_CLUSTER__HEARTBEAT_INTERVAL", "100ms"),
        ("FICUS_CLUSTER__REPLICA_EXPIRY", "500ms"),
        // Six an hour for the cluster: a burst of two per replica while three are alive.
        ("FICUS_RATE_LIMITS__IDENTITY", "6/h"),
        ("FICUS_RATE_LIMITS__IDENTITY_BURST", "6"),
    ];
    let mut replicas: Vec<Replica> = (0..3).map(|_| start_with(dir.path(), &url, &settings)).collect();
    let client = ready(dir.path(), &replicas).await;

    let text = until_live(&client, &replicas[0], 3).await;
    let name = format!(
        "ficus_replica_info{{replica=\"{}:{}\"",
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(),
        replicas[0].api
    );
    assert!(text.contains(&name), "names itself <hostname>:<port>:\n{text}");
    assert_eq!(gauge(&text, "ficus_storage_up"), Some(1));
    // The others' start-up writes reach it by its change-log poll: current once it has read them.
    until_gauge(&client, &replicas[0], "ficus_directory_changes_behind", 0).await;
    assert_eq!(scalar(&url, "SELECT count(*) FROM replica_heartbeats").await, 3, "one heartbeat row per replica");
    assert_eq!(imds_accepted(&client, &replicas[0], 5).await, 2, "a third of the cluster's burst of 6");

    // One replica dies without a word and is counted gone after the expiry; one stops cleanly
    // and leaves the roster at once.
    replicas[2].child.kill().unwrap();
    let signal = Command::new("kill").args(["-TERM", &replicas[1].child.id().to_string()]).status().unwrap();
    assert!(signal.success());
    assert!(replicas[1].child.wait().unwrap().success(), "the replica told to stop exits cleanly");
    until_live(&client, &replicas[0], 1).await;
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM replica_heartbeats").await,
        2,
        "the one that stopped left the roster"
    );
    assert_eq!(imds_accepted(&client, &replicas[0], 8).await, 6, "alone, the replica enforces the whole burst");
    replicas.truncate(1);
}

#[tokio::test]
async fn a_replica_refuses_a_database_whose_schema_is_newer_than_it_knows() {
    let Some(url) = crate::pg::fresh_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), &url);
    ready(dir.path(), std::slice::from_ref(&first)).await;
    drop(first);
    // As a later version would leave it: a migration this binary does not have.
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (20991231000000, 'from a later version', true, '\\x00', 1)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();

    let (api, mi) = (free_port(), free_port());
    let output = replica_command(dir.path(), &url, api, mi).stderr(Stdio::piped()).output().unwrap();
    assert!(!output.status.success(), "an older replica must not start on a newer schema");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("20991231000000"), "names the unknown migration: {stderr}");
}
