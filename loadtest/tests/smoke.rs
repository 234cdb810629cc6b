//! The real `loadtest` binary against a real broker (in this process, on real sockets, with real
//! TLS, keys and SQLite): every scenario runs without errors, the reports are written, what the
//! load test created in the registry is gone afterwards, and a broker without loopback issuers
//! allowed is refused with a hint. Load figures are not asserted: they belong to `scripts/bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use ficus::config::Settings;
use ficus::domain::clock::SystemClock;
use ficus::domain::tenant::TenantRef;
use ficus::startup::{Application, Overrides};
use figment::providers::{Format, Toml};
use serde_json::Value;

struct Broker {
    target: String,
    mi: String,
    dir: tempfile::TempDir,
    app_names: Box<dyn Fn() -> Vec<String>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn broker(extra: &str) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        r#"
        [server]
        addr = "127.0.0.1:0"
        mi_addr = "127.0.0.1:0"
        [keys]
        dir = "{keys}"
        [storage]
        data_dir = "{data}"
        [log]
        level = "warn"
        [world]
        file = "{world}"
        [rate_limits]
        application = "off"
        identity = "off"
        address = "off"
        "#,
        keys = dir.path().join("keys").display(),
        data = dir.path().join("data").display(),
        world = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/demo-world.toml"),
    );
    let figment = Settings::default_figment().merge(Toml::string(&base)).merge(Toml::string(extra));
    let settings = Settings::from_figment(figment).unwrap();
    let app = Application::build_with(settings, Arc::new(SystemClock), Overrides::default()).await.unwrap();
    let target = format!("https://localhost:{}", app.api_addr().port());
    let mi = format!("http://{}", app.mi_addr());
    let directory = app.directory();
    let app_names = Box::new(move || {
        use ficus::domain::ports::DirectorySource;
        let view = directory.view();
        let tenant = view.tenant(&TenantRef::parse("demo").unwrap()).unwrap().id;
        view.applications(tenant).iter().map(|a| a.display_name.as_str().to_owned()).collect()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Broker { target, mi, dir, app_names, _stop: stop }
}

fn loadtest(broker: &Broker, out: &Path, args: &[&str]) -> Output {
    let keys = broker.dir.path().join("keys");
    std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .current_dir(out)
        .args(["--target", &broker.target, "--mi", &broker.mi])
        .args(["--ca-file", &keys.join("dev-ca.pem").display().to_string()])
        .args(["--keys-dir", &keys.display().to_string()])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_cleanly_writes_its_reports_and_removes_what_it_created() {
    let broker = broker("[federation]\nallow_http_loopback_issuers = true").await;
    let before = (broker.app_names)();
    let out = tempfile::tempdir().unwrap();
    let args = [
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--concurrency",
        "4",
        "--apps",
        "2",
        "--assertions",
        "3000",
        "--measure-changes",
        "2",
        "--baseline",
        "--json",
        "report.json",
        "--html",
        "report.html",
    ];
    let scenarios = ["discovery", "mi-token", "exchange-hit", "exchange-miss", "external", "mixed"];
    let mut all: Vec<&str> = args.to_vec();
    for scenario in scenarios {
        all.extend(["--scenario", scenario]);
    }
    let output = tokio::task::block_in_place(|| loadtest(&broker, out.path(), &all));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let report: Value = serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let rows = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["scenario"].as_str().unwrap()).collect();
    assert_eq!(names, scenarios);
    for row in rows {
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["errors"], serde_json::json!({}), "{row}");
        assert!(row["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{row}");
        // Its client ceiling: the same requests answered by the empty server, every one of them.
        assert!(row["client_ceiling_rps"].as_f64().unwrap() > 0.0, "{row}");
    }
    let changes = &report["changes"];
    assert_eq!(changes["add_then_exchange_ms"]["rounds"], 2, "{changes}");
    for floor in ["baseline", "baseline_http"] {
        let floor = &report[floor];
        assert!(floor["requests"].as_u64().unwrap() > 0 && floor["errors"] == serde_json::json!({}), "{floor}");
        assert!(floor["client_ceiling_rps"].as_f64().unwrap() > 0.0, "{floor}");
    }
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    let plotted = scenarios.len() + 2;
    assert_eq!(html.matches("<svg").count(), 2 * plotted, "a latency-over-time plot and a histogram each, floors too");

    assert_eq!((broker.app_names)(), before, "the load test removed the applications it created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_servers_cpu_per_answer_and_both_sides_waits_for_a_cpu_are_reported_and_plotted() {
    // The broker runs in this process: its id is the server's.
    let broker = broker("").await;
    let out = tempfile::tempdir().unwrap();
    let pid = std::process::id().to_string();
    let args = ["--duration", "1s", "--warmup", "200ms", "--concurrency", "4", "--scenario", "exchange-hit"];
    let mut all = args.to_vec();
    all.extend(["--server-pid", &pid, "--json", "report.json", "--html", "report.html"]);
    let output = tokio::task::block_in_place(|| loadtest(&broker, out.path(), &all));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("us of CPU per answer, highest 50 ms:"), "{stdout}");
    assert!(stdout.contains("waited for a CPU: the server"), "{stdout}");

    let report: Value = serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let server = &report["scenarios"][0]["server"];
    let per_answer = server["cpu_us_per_answer"].as_f64().unwrap();
    // An exchange costs the broker microseconds of CPU, not nothing and not a second.
    assert!(per_answer > 0.0 && per_answer < 1_000_000.0, "{server}");
    assert!(server["highest_window_cpu_us_per_answer"].as_f64().unwrap() >= per_answer, "at least the mean: {server}");
    assert!(server["server_waited_for_a_cpu_ms"].as_f64().unwrap() >= 0.0, "{server}");
    assert!(server["client_waited_for_a_cpu_ms"].as_f64().unwrap() >= 0.0, "{server}");
    // About 20 windows of 50 ms in the measured second.
    let windows = server["windows"].as_array().unwrap();
    assert!((15..=21).contains(&windows.len()), "{server}");
    assert_eq!(server["window_ms"], 50, "{server}");
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("CPU time per answer") && html.contains("waiting for a CPU"), "the plots are in the report");
    assert_eq!(html.matches("<svg").count(), 4, "latency, CPU per answer, waits for a CPU, histogram");

    // Unwatched, the same run reports none.
    let plain = [&args[..], &["--json", "plain.json"]].concat();
    let output = tokio::task::block_in_place(|| loadtest(&broker, out.path(), &plain));
    assert!(output.status.success());
    let plain: Value = serde_json::from_slice(&std::fs::read(out.path().join("plain.json")).unwrap()).unwrap();
    assert!(plain["scenarios"][0]["server"].is_null(), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_refusing_loopback_issuers_is_named_with_the_setting_to_change() {
    let broker = broker("").await;
    let before = (broker.app_names)();
    let out = tempfile::tempdir().unwrap();
    let output = tokio::task::block_in_place(|| {
        loadtest(&broker, out.path(), &["--duration", "1s", "--warmup", "0s", "--scenario", "external"])
    });
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FICUS_FEDERATION__ALLOW_HTTP_LOOPBACK_ISSUERS=true"), "{stderr}");
    assert_eq!((broker.app_names)(), before, "what it had created before failing is removed");
}

/// The value of `wrk.NAME = "..."` in a wrk script (one without escapes, as form bodies and paths are).
fn lua_field(script: &str, name: &str) -> String {
    let prefix = format!("wrk.{name} = \"");
    let line = script.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("{script}"));
    let value = line.strip_suffix('"').unwrap();
    assert!(!value.contains('\\'), "{value}");
    value.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrk_scripts_hold_the_scenarios_own_requests_and_their_fixture_stays_until_the_process_is_stopped() {
    let broker = broker("").await;
    let before = (broker.app_names)();
    let out = tempfile::tempdir().unwrap();
    let keys = broker.dir.path().join("keys");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .current_dir(out.path())
        .args(["--target", &broker.target, "--mi", &broker.mi])
        .args(["--ca-file", &keys.join("dev-ca.pem").display().to_string()])
        .args(["--keys-dir", &keys.display().to_string()])
        .args([
            "--scenario",
            "exchange-hit",
            "--scenario",
            "discovery",
            "--scenario",
            "mi-token",
            "--wrk-scripts",
            "wrk",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let scripts = out.path().join("wrk");
    // The last script of the three is written just before loadtest starts waiting.
    for _ in 0..600 {
        if scripts.join("discovery.lua").exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let exchange = std::fs::read_to_string(scripts.join("exchange-hit.lua")).unwrap();
    let discovery = std::fs::read_to_string(scripts.join("discovery.lua")).unwrap();
    assert!(!scripts.join("mi-token.lua").exists(), "mi-token's request comes from its VM's address");
    assert_ne!((broker.app_names)(), before, "the fixture the scripts name is still there");

    // The scripts' requests, sent as wrk would send them, are answered as the scenarios' are.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(keys.join("dev-ca.pem")).unwrap()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    assert_eq!(lua_field(&exchange, "method"), "POST");
    let answer = http
        .post(format!("{}{}", broker.target, lua_field(&exchange, "path")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(lua_field(&exchange, "body"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.json::<Value>().await.unwrap()["access_token"].is_string());
    let answer = http.get(format!("{}{}", broker.target, lua_field(&discovery, "path"))).send().await.unwrap();
    assert_eq!(answer.status(), 200);

    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let output = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.lines().any(|l| l.starts_with("mi-token") && l.contains("no wrk script")), "{stdout}");
    assert_eq!((broker.app_names)(), before, "stopped, it removed what it had created");
}
