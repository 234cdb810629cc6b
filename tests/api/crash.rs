//! The real binary as a process: a broker killed with SIGKILL during a stream of registry writes
//! restarts with every acknowledged write in place and a registry it can load; a broker confined
//! to one core (its runtime is then tokio's current-thread scheduler) serves tokens and writes;
//! its SQLite worker threads run at a lower CPU priority than the threads that serve requests.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(dir: &Path, api: u16, mi: u16) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ficus"));
    command.arg("serve");
    spawn_broker(command, dir, api, mi)
}

fn spawn_broker(mut command: Command, dir: &Path, api: u16, mi: u16) -> Child {
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FICUS_SERVER__ADDR", format!("127.0.0.1:{api}"))
        .env("FICUS_SERVER__MI_ADDR", format!("127.0.0.1:{mi}"))
        .env("FICUS_KEYS__DIR", dir.join("keys"))
        .env("FICUS_STORAGE__DATA_DIR", dir.join("data"))
        .env("FICUS_WORLD__FILE", concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-world.toml"))
        .env("FICUS_LOG__LEVEL", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (bounded) for readiness and returns a client trusting the broker's development CA.
async fn ready_client(dir: &Path, api: u16) -> reqwest::Client {
    let addr: SocketAddr = format!("127.0.0.1:{api}").parse().unwrap();
    for _ in 0..300 {
        if let Ok(pem) = std::fs::read(dir.join("keys/dev-ca.pem")) {
            let client = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
                .resolve("localhost", addr)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let ready = client.get(format!("https://localhost:{api}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the broker did not become ready");
}

async fn admin_token(client: &reqwest::Client, dir: &Path, api: u16) -> String {
    let creds: Value = serde_json::from_slice(&std::fs::read(dir.join("keys/admin/demo.json")).unwrap()).unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", creds["client_id"].as_str().unwrap()),
        ("client_secret", creds["client_secret"].as_str().unwrap()),
        ("scope", "api://ficus-management/.default"),
    ];
    let response =
        client.post(format!("https://localhost:{api}/demo/oauth2/v2.0/token")).form(&form).send().await.unwrap();
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_sigkill_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (api, mi) = (free_port(), free_port());
    let mut broker = start(dir.path(), api, mi);
    let client = ready_client(dir.path(), api).await;
    let token = admin_token(&client, dir.path(), api).await;

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, token, acknowledged) = (client.clone(), token.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("crash-{w}-{i}");
                    let body = json!({ "displayName": name, "identifierUris": [format!("api://{name}")] });
                    let sent = client
                        .post(format!("https://localhost:{api}/v1.0/applications"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => acknowledged.lock().unwrap().push(name),
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Bounded wait for the stream to be well under way (not a timing assertion).
    for _ in 0..3000 {
        if acknowledged.lock().unwrap().len() >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    broker.kill().unwrap(); // SIGKILL, while the writers are still writing
    broker.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 40, "the stream was running: {} writes", acknowledged.len());

    let mut restarted = start(dir.path(), api, mi);
    let client = ready_client(dir.path(), api).await;
    let token = admin_token(&client, dir.path(), api).await;
    let listed: Value = client
        .get(format!("https://localhost:{api}/v1.0/applications"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    restarted.kill().unwrap();
    restarted.wait().unwrap();
    let names: Vec<&str> =
        listed["value"].as_array().unwrap().iter().filter_map(|a| a["displayName"].as_str()).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !names.contains(&n.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

/// Creates an application named `name` through the admin API: the answer's status.
async fn create_application(client: &reqwest::Client, api: u16, token: &str, name: &str) -> reqwest::StatusCode {
    let body = json!({ "displayName": name, "identifierUris": [format!("api://{name}")] });
    let url = format!("https://localhost:{api}/v1.0/applications");
    client.post(url).bearer_auth(token).json(&body).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_confined_to_one_core_serves_tokens_and_registry_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (api, mi) = (free_port(), free_port());
    // taskset (util-linux) leaves the broker one core: available_parallelism() is then 1.
    let mut command = Command::new("taskset");
    command.args(["-c", "0", env!("CARGO_BIN_EXE_ficus"), "serve"]);
    let mut broker = spawn_broker(command, dir.path(), api, mi);
    let client = ready_client(dir.path(), api).await;
    let token = admin_token(&client, dir.path(), api).await;
    let created = create_application(&client, api, &token, "one-core").await;
    let imds = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{mi}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault"
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    let cores = std::fs::read_to_string(format!("/proc/{}/status", broker.id())).unwrap_or_default();
    broker.kill().unwrap();
    broker.wait().unwrap();
    assert_eq!(created, 201, "a registry write on one core");
    assert_eq!(imds.status(), 200, "an IMDS token on one core");
    let allowed = cores.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap_or_default();
    assert!(allowed.ends_with("\t0"), "the broker ran on core 0 alone: {allowed:?}");
}

/// (thread name, nice value) of every thread of process `pid`.
fn threads_of(pid: u32) -> Vec<(String, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            // After the name: the state is field 3 and the nice value field 19 (1-based).
            let nice = rest.split_whitespace().nth(16)?.parse().ok()?;
            Some((name, nice))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_database_threads_run_below_the_threads_that_serve_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (api, mi) = (free_port(), free_port());
    let mut broker = start(dir.path(), api, mi);
    let client = ready_client(dir.path(), api).await;
    // A token request and an admin write: both kinds of thread have worked.
    let token = admin_token(&client, dir.path(), api).await;
    let created = create_application(&client, api, &token, "niced").await;
    let threads = threads_of(broker.id());
    broker.kill().unwrap();
    broker.wait().unwrap();
    assert_eq!(created, 201);
    let database: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("ficus-sqlite")).collect();
    assert!(!database.is_empty(), "no SQLite worker thread among {threads:?}");
    assert!(database.iter().all(|(_, nice)| *nice == 10), "{database:?}");
    let serving: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("tokio-rt-worker")).collect();
    assert!(!serving.is_empty() && serving.iter().all(|(_, nice)| *nice == 0), "{threads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_turns_transparent_huge_pages_off_for_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (api, mi) = (free_port(), free_port());
    let mut broker = start(dir.path(), api, mi);
    ready_client(dir.path(), api).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.id())).unwrap_or_default();
    broker.kill().unwrap();
    broker.wait().unwrap();
    // The kernel reports the process's PR_SET_THP_DISABLE here (Linux 5.0 and later).
    let thp = status.lines().find(|l| l.starts_with("THP_enabled:")).unwrap_or_default();
    assert_eq!(thp.split_whitespace().nth(1), Some("0"), "{thp:?}");
}
