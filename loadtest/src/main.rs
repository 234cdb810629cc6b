//! `loadtest`: the load generator that ships with ficus. It talks HTTP only and shares no code with
//! the broker, so it measures what a client sees.
//!
//! It creates what it needs in the broker's registry through the admin API (see `setup`), runs
//! the scenarios (see `scenarios`) in a closed loop (`--concurrency` workers) or an open loop
//! (`--rate N` requests per second, or `--rate half`: half the closed loop's maximum, measured
//! first), and removes what it created. The load goes through its own HTTP/1.1 client (see
//! `client`). Every scenario's throughput is also reported as a ratio to baselines measured in the
//! same run: the floors (`--baseline`, a built-in axum server answering a token-sized JSON body
//! over HTTPS and plain HTTP) and the crypto ceiling (`--crypto-ceiling`, RS256 sign + verify pairs
//! per second on this machine's cores). With the floors, the client's own ceiling is measured for
//! each floor and scenario (the same requests against an empty server, per second of the client's
//! own CPU, see `baseline`), and a run that reaches 90% of it, or keeps 90% of the client's cores
//! busy, is reported client-bound, with no ratio. A closed loop that goes past its ceiling
//! (something else slowed that measurement) has the ceiling measured once more and is judged
//! against the higher; if it still goes past, it is reported disturbed, with no ratio and no
//! verdict either. Each row also says how often the client slept per answer (its threads'
//! voluntary context switches): on one machine the server's send pays for waking a sleeping
//! client, so a server that keeps it asleep more often pays more per answer than the floor does.
//! Given the answering process's id (`--server-pid`, `--floor-pid`), it is watched every 50 ms
//! while measuring (see `watch`): its CPU time per answer, overall and in the highest window, and
//! how long it and the load generator were ready to run but waiting for a CPU.
//! Results print as a table and go to `--json` and `--html` (latency over time, the watched
//! server's CPU per answer and both sides' waits over time, and histograms).
//!
//! `--wrk-scripts DIR` writes the scenarios that are one request (`discovery`, `exchange-hit`) as
//! wrk scripts instead of running them, and keeps the fixture they name until it is stopped:
//! `scripts/bench` measures the same requests with wrk.

mod baseline;
mod client;
mod issuer;
mod report;
mod run;
mod scenarios;
mod setup;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use crate::setup::Observer;

#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", about = "Load generator for ficus (closed loop, HDR histograms, in-run baselines)")]
pub struct Args {
    /// The broker's HTTPS base URL
    #[arg(long, default_value = "https://localhost:8443")]
    pub target: String,
    /// The broker's managed-identity listener
    #[arg(long, default_value = "http://127.0.0.1:8480")]
    pub mi: String,
    /// CA certificate (PEM) to trust for the broker
    #[arg(long, default_value = "keys/dev-ca.pem")]
    pub ca_file: String,
    /// The broker's keys directory (for the admin client's credentials)
    #[arg(long, default_value = "keys")]
    pub keys_dir: String,
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    /// Scenarios to run (repeatable): discovery, mi-token, exchange-hit, exchange-miss, external,
    /// mixed. exchange-miss measures signing only when the broker's issued-token cache is off
    /// (FICUS_CACHE__ISSUED_TOKENS_CAPACITY=0); the load test reports repeated tokens otherwise
    #[arg(long = "scenario", default_values = ["discovery", "mi-token", "exchange-hit", "external", "mixed"])]
    pub scenarios: Vec<String>,
    /// Open loop at this many requests per second, or "half": half of the rate the closed loop
    /// sustains, measured first. Without it: closed loop only
    #[arg(long)]
    pub rate: Option<String>,
    /// The address the load test calls IMDS from; its VM is bound to it (a loopback address works
    /// against a broker on the same machine)
    #[arg(long, default_value = "127.0.0.77")]
    pub mi_address: std::net::IpAddr,
    /// The subscription the load test's identity and VM are created in
    #[arg(long, default_value = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9")]
    pub subscription: String,
    /// Applications (20 federated credentials each) trusting the fake issuer
    #[arg(long, default_value_t = 10)]
    pub apps: usize,
    /// Fresh assertions signed up front for exchange-miss (default: 5,000 per second of the run)
    #[arg(long)]
    pub assertions: Option<usize>,
    /// Also add and remove a federated credential this many times, checking each change on the
    /// token path right after the write (needs exchange-miss or external)
    #[arg(long, default_value_t = 0)]
    pub measure_changes: usize,
    /// With --measure-changes: write each change through --target but watch for it on this
    /// replica's token endpoint (another replica of the same cluster), polling until it shows
    #[arg(long, value_name = "URL", requires = "measure_changes")]
    pub changes_on: Option<String>,
    /// Give exchange-hit's client application its own rate limit in the registry (N/s), and
    /// report the accepted throughput as a ratio to it
    #[arg(long, value_name = "N/s")]
    pub app_rate_limit: Option<String>,
    /// Make the credential each exchange matches the last of 20 in its application, an exact one
    /// or a flexible one (a claims-matching expression): exchange-hit's client application and
    /// external's applications get 19 exact decoys first
    #[arg(long, value_parser = ["exact", "flexible"])]
    pub last_credential: Option<String>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Also measure the HTTPS floor with the same client, and report ratios to it. The floor
    /// server runs inside this process unless --baseline-url names one started with --serve-floor
    /// (pin that one to the broker's core for a fair ratio)
    #[arg(long)]
    pub baseline: bool,
    /// A floor server started separately with `loadtest --serve-floor ADDR`
    #[arg(long, requires = "baseline")]
    pub baseline_url: Option<String>,
    /// Measure the floors only (with --baseline), no broker needed: for comparing this client
    /// with another (scripts/bench alternates it with wrk)
    #[arg(long, requires = "baseline")]
    pub floors_only: bool,
    /// The broker's process id, on this machine: while each scenario is measured, its CPU time per
    /// answer and how long it and the load generator waited for a CPU are sampled every 50 ms and
    /// reported (overall, the highest window, and plots in the HTML report)
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// The same for the floor server started with --serve-floor (with --baseline-url)
    #[arg(long, value_name = "PID", requires = "baseline_url")]
    pub floor_pid: Option<u32>,
    /// Only serve the HTTPS floor on ADDR (certificate for localhost written to floor-ca.pem) and wait
    #[arg(long, value_name = "ADDR")]
    pub serve_floor: Option<String>,
    /// Also measure RS256 sign + verify pairs per second on this machine's cores
    #[arg(long)]
    pub crypto_ceiling: bool,
    /// Write the results as JSON
    #[arg(long)]
    pub json: Option<String>,
    /// Write every measured request of each scenario to DIR/<scenario>.csv (unix_ms, latency_ms,
    /// status): for latency in windows picked afterwards, such as each replica's restart
    #[arg(long, value_name = "DIR")]
    pub samples: Option<std::path::PathBuf>,
    /// Instead of running them, write the scenarios that are one request wrk can send (discovery,
    /// exchange-hit) as wrk scripts, DIR/<scenario>.lua: the same request, for measuring it with
    /// wrk in the same run (scripts/bench does)
    #[arg(long, value_name = "DIR")]
    pub wrk_scripts: Option<std::path::PathBuf>,
    /// Write an HTML report (summary, latency over time, latency histograms)
    #[arg(long)]
    pub html: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // On a single core, the current-thread scheduler (no handing of wake-ups between threads), as
    // the broker chooses it there: the floor server runs as the broker does, so the floor
    // compares like with like.
    let runtime = runtime_builder().enable_all().build();
    match runtime {
        Ok(runtime) => runtime.block_on(run_main(args)),
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_main(args: Args) -> ExitCode {
    if let Some(addr) = &args.serve_floor {
        return match baseline::serve_floor(addr).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadtest: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match execute(&args).await {
        Ok(report) => {
            if let Some(path) = &args.json
                && let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap_or_default())
            {
                eprintln!("loadtest: {path}: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The floors measured in this run, if any (and where each scenario's client ceiling is measured).
#[derive(Clone, Copy)]
struct Floors<'a>(Option<&'a baseline::Baselines>);

impl<'a> Floors<'a> {
    /// The floor a scenario is compared with: the IMDS path is plain HTTP, the rest HTTPS.
    fn of(&self, scenario: &str) -> Option<&'a run::Outcome> {
        self.0.map(|b| if scenario == "mi-token" { &b.http } else { &b.https })
    }
}

/// How the scenarios are driven.
enum Drive {
    Closed,
    Open(f64),
    Half,
}

fn drive(args: &Args) -> Result<Drive, String> {
    match args.rate.as_deref() {
        None => Ok(Drive::Closed),
        Some("half") => Ok(Drive::Half),
        Some(rate) => match rate.parse::<f64>() {
            Ok(r) if r > 0.0 => Ok(Drive::Open(r)),
            _ => Err(format!("--rate '{rate}': use a number of requests per second, or half")),
        },
    }
}

async fn execute(args: &Args) -> Result<Value, String> {
    let drive = drive(args)?;
    if let Some(unknown) = args.scenarios.iter().find(|s| !scenarios::NAMES.contains(&s.as_str())) {
        return Err(format!("unknown scenario '{unknown}' ({})", scenarios::NAMES.join(", ")));
    }
    let baselines = if args.baseline {
        let measured = baseline::measure(args, |closed| match drive {
            Drive::Closed => None,
            Drive::Open(rate) => Some(rate),
            Drive::Half => Some(closed / 2.0),
        })
        .await?;
        for floor in
            [Some(&measured.https), Some(&measured.http), measured.https_open.as_ref(), measured.http_open.as_ref()]
                .into_iter()
                .flatten()
        {
            print_row(floor, None);
        }
        Some(measured)
    } else {
        None
    };
    let (baseline, http_floor) = (baselines.as_ref().map(|b| &b.https), baselines.as_ref().map(|b| &b.http));
    let open_floors: Vec<&run::Outcome> =
        baselines.iter().flat_map(|b| b.https_open.iter().chain(b.http_open.iter())).collect();
    if let (true, Some(https), Some(http)) = (args.floors_only, baseline, http_floor) {
        return Ok(json!({
            "machine": { "cores": threads() },
            "baseline": https.to_json(),
            "baseline_http": http.to_json(),
            "baseline_open": open_floors.iter().map(|o| o.to_json()).collect::<Vec<_>>(),
        }));
    }
    let floors = Floors(baselines.as_ref());
    let ceiling = if args.crypto_ceiling {
        let pairs = baseline::crypto_ceiling(args.duration.min(Duration::from_secs(5)));
        println!("{:<14} {pairs:>10.0} RS256 sign+verify pairs/s on {} cores", "crypto-ceiling", threads());
        Some(pairs)
    } else {
        None
    };
    let ca = std::fs::read(&args.ca_file).map_err(|e| format!("{}: {e}", args.ca_file))?;
    let certificate = reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?;
    // reqwest for setup and change checks; the load itself goes through `client`'s connections.
    let reqwest_from = |from: Option<std::net::IpAddr>| {
        let builder = reqwest::Client::builder().tls_certs_only([certificate.clone()]);
        builder.local_address(from).build().map_err(|e| e.to_string())
    };
    let (http, mi_http) = (reqwest_from(None)?, reqwest_from(Some(args.mi_address))?);
    let endpoints = (
        client::Endpoint::new(&args.target, &ca, None).await?,
        client::Endpoint::new(&args.mi, &ca, Some(args.mi_address)).await?,
    );
    let admin = setup::Admin::sign_in(&http, args).await?;
    let fixture = admin.prepare(args, &args.scenarios).await?;
    let scenarios = scenarios::Scenarios::new(endpoints, (&http, &mi_http), args, &fixture);
    let outcome = tokio::select! {
        outcome = run_all(args, &drive, &scenarios, &fixture, &admin, floors) => outcome,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    if outcome.is_ok() && args.wrk_scripts.is_some() {
        // The scripts name the fixture's applications and assertions: kept until wrk is done.
        eprintln!(
            "loadtest: the wrk scripts are written; the fixture stays until this process is interrupted or terminated"
        );
        until_stopped().await;
    }
    admin.remove(&fixture).await;
    let (results, changes) = outcome?;

    let ratio = |o: &run::Outcome| floors.of(&o.name).and_then(|b| ratio_to(o, b).ok());
    let rows: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut row = r.to_json();
            if let Some(base) = floors.of(&r.name) {
                row["baseline"] = json!(base.name);
                row["baseline_rps"] = json!(base.rps());
                // No ratio where the load generator set either run's pace.
                row["ratio"] = json!(ratio_to(r, base).ok());
            }
            if let Some(pairs) = ceiling {
                row["crypto_ceiling"] = json!(pairs);
                row["ratio_to_crypto_ceiling"] = json!(r.rps() / pairs);
            }
            row
        })
        .collect();
    let context = vec![
        format!("target {} ({} tenant), {} cores for the load generator", args.target, args.tenant, threads()),
        baseline.map_or("no HTTPS floor measured".into(), |b| format!("HTTPS floor: {:.0} req/s", b.rps())),
        http_floor.map_or("no HTTP floor measured".into(), |b| {
            format!("plain-HTTP floor (mi-token's baseline): {:.0} req/s", b.rps())
        }),
        ceiling.map_or("no crypto ceiling measured".into(), |c| format!("crypto ceiling: {c:.0} RS256 pairs/s")),
    ];
    if let Some(path) = &args.html {
        let mut all: Vec<(&run::Outcome, Option<f64>)> =
            baseline.into_iter().chain(http_floor).chain(open_floors.iter().copied()).map(|b| (b, None)).collect();
        all.extend(results.iter().map(|r| (r, ratio(r))));
        let page = report::html("ficus load test", &context, &all)?;
        std::fs::write(path, page).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(json!({
        "machine": { "cores": threads() },
        "concurrency": args.concurrency,
        "duration_s": args.duration.as_secs_f64(),
        "baseline": baseline.map(run::Outcome::to_json),
        "baseline_http": http_floor.map(run::Outcome::to_json),
        "baseline_open": open_floors.iter().map(|o| o.to_json()).collect::<Vec<_>>(),
        "crypto_ceiling_pairs_per_s": ceiling,
        "scenarios": rows,
        "changes": changes,
    }))
}

/// Until SIGINT or SIGTERM (a script stops a background job with the latter: it may have been
/// started with SIGINT ignored).
async fn until_stopped() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `--wrk-scripts`: the scenario's request as DIR/<name>.lua, or why there is none.
fn write_wrk_script(dir: &std::path::Path, name: &str, load: &run::Load) -> Result<(), String> {
    match load.wrk_script() {
        Some(script) => {
            let (script, origin) = script?;
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join(format!("{name}.lua"));
            std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("{name:<14} wrk -s {} {origin}", path.display());
        }
        None => println!("{name:<14} no wrk script: not one request that wrk can send as loadtest does"),
    }
    Ok(())
}

async fn run_all(
    args: &Args,
    drive: &Drive,
    scenarios: &scenarios::Scenarios,
    fixture: &setup::Fixture,
    admin: &setup::Admin,
    floors: Floors<'_>,
) -> Result<(Vec<run::Outcome>, Option<Value>), String> {
    let mut results = Vec::new();
    for name in &args.scenarios {
        let load = scenarios.build(name, fixture).await?;
        if let Some(dir) = &args.wrk_scripts {
            write_wrk_script(dir, name, &load)?;
            continue;
        }
        // Judged against the client's ceiling where the floors were measured (see `baseline`).
        let closed_loop = async |load: &run::Load| match floors.0 {
            Some(baselines) => baselines.judged_closed_loop(name, args, load).await,
            None => run::closed_loop(name, args, args.concurrency, load, None).await,
        };
        let mut outcomes = Vec::new();
        match drive {
            Drive::Closed => outcomes.push(closed_loop(&load).await?),
            Drive::Open(rate) => {
                let ceiling = match floors.0 {
                    Some(baselines) => Some(baselines.client_ceiling(name, args, &load).await?),
                    None => None,
                };
                outcomes.push(run::open_loop(name, args, args.concurrency, *rate, &load, ceiling).await?);
            }
            Drive::Half => {
                let closed = closed_loop(&load).await?;
                let ceiling = closed.client_ceiling;
                let half = closed.rps() / 2.0;
                print_row(&closed, floors.of(name));
                outcomes.push(closed);
                // Built again: exchange-miss needs a new pool of fresh assertions.
                let load = scenarios.build(name, fixture).await?;
                outcomes.push(run::open_loop(name, args, args.concurrency, half, &load, ceiling).await?);
            }
        }
        if let (Some(limit), "exchange-hit") = (&args.app_rate_limit, name.as_str()) {
            let per_second: f64 =
                limit.trim_end_matches("/s").parse().map_err(|_| format!("--app-rate-limit '{limit}': use N/s"))?;
            for outcome in &mut outcomes {
                outcome.notes.push(format!(
                    "accepted {:.0} req/s against the application's limit of {per_second:.0}/s: {:.3}x",
                    outcome.rps(),
                    outcome.rps() / per_second
                ));
            }
        }
        if name == "exchange-miss" {
            let repeated = scenarios.repeats.repeated.swap(0, std::sync::atomic::Ordering::Relaxed);
            let reused = scenarios.repeats.reused_assertions.swap(0, std::sync::atomic::Ordering::Relaxed);
            for outcome in &mut outcomes {
                if repeated > 0 {
                    outcome.notes.push(format!(
                        "{repeated} tokens came back twice: the broker answered from its issued-token cache \
                         (start it with FICUS_CACHE__ISSUED_TOKENS_CAPACITY=0 to measure signing)"
                    ));
                }
                if reused > 0 {
                    outcome.notes.push(format!("{reused} assertions were sent a second time (raise --assertions)"));
                }
            }
        }
        let last = outcomes.len() - 1;
        if let Some(dir) = &args.samples {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            outcomes[last].write_samples(&dir.join(format!("{name}.csv")))?;
        }
        for (i, outcome) in outcomes.into_iter().enumerate() {
            if i == last {
                print_row(&outcome, floors.of(name));
            }
            for note in outcome.all_notes() {
                println!("{:<14} note: {note}", "");
            }
            results.push(outcome);
        }
    }
    let changes = if args.measure_changes > 0 {
        let observer = match &args.changes_on {
            Some(url) => Observer::Poll(scenarios.exchanger.on(url)),
            None => Observer::Once(scenarios.exchanger.clone()),
        };
        let measured = admin.measure_changes(fixture, &observer, args.measure_changes).await?;
        println!("{:<14} {measured}", "changes");
        Some(measured)
    } else {
        None
    };
    Ok((results, changes))
}

/// tokio's current-thread scheduler on one core, the multi-threaded one (a worker per core)
/// otherwise: as the broker chooses.
pub fn runtime_builder() -> tokio::runtime::Builder {
    if threads() == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A scenario's ratio to its floor, unless the load generator set the pace of either run. Only a
/// closed loop's throughput is measured: an open loop's is the rate it was given.
fn ratio_to(result: &run::Outcome, floor: &run::Outcome) -> Result<f64, String> {
    if let run::Mode::Open { .. } = result.mode {
        return Err("an open loop's rate is set, not measured".into());
    }
    match (result.client_bound(), floor.client_bound()) {
        (true, _) => Err(format!("client-bound ({})", busy(result))),
        (false, true) => Err(format!("client-bound floor ({})", busy(floor))),
        _ if result.ceiling_disturbed() || floor.ceiling_disturbed() => {
            Err("the client's ceiling measured below the run (disturbed): run it again".into())
        }
        (false, false) => Ok(result.rps() / floor.rps()),
    }
}

/// How close the load generator came to its limit in a run, and how often it slept per answer.
fn busy(outcome: &run::Outcome) -> String {
    let asleep = outcome.sleeps_per_request().map_or(String::new(), |s| format!(", asleep {s:.3}x a request"));
    let limit = match (outcome.client_ceiling, outcome.client_busy) {
        (Some(ceiling), Some(busy)) => format!(
            "the load generator at {:.0}% of its ceiling, {:.0}% busy",
            outcome.rps() / ceiling * 100.0,
            busy * 100.0
        ),
        (Some(ceiling), None) => {
            format!("the load generator at {:.0}% of its ceiling", outcome.rps() / ceiling * 100.0)
        }
        (None, Some(busy)) => format!("the load generator {:.0}% busy", busy * 100.0),
        (None, None) => "?".into(),
    };
    limit + &asleep
}

fn print_row(result: &run::Outcome, baseline: Option<&run::Outcome>) {
    let closed = matches!(result.mode, run::Mode::Closed { .. });
    let ratio = match baseline.filter(|_| closed).map(|b| ratio_to(result, b)) {
        Some(Ok(ratio)) => format!("  {ratio:.2}x floor"),
        Some(Err(why)) => format!("  no ratio: {why}"),
        None if result.client_bound() => "  client-bound".to_owned(),
        None if result.ceiling_disturbed() => "  ceiling disturbed".to_owned(),
        None => String::new(),
    };
    let errors: Vec<String> = result.errors().iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let client = if result.client_busy.is_some() { format!("  [{}]", busy(result)) } else { String::new() };
    let server = result.server_summary().map_or(String::new(), |server| {
        format!(
            "  [the server {:.1} us of CPU per answer, highest {} ms: {:.1} us at {:.2} s; waited for a CPU: \
             the server {:.1} ms, the client {:.1} ms, most in {:.2} s: {:.1} ms]",
            server.cpu_us_per_answer,
            watch::SAMPLE.as_millis(),
            server.highest_us,
            server.highest_at_s,
            server.server_wait_ms,
            server.client_wait_ms,
            server.most_waited_at_s,
            server.most_waited_ms,
        )
    });
    println!(
        "{:<14} {:>10.0} req/s  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms  [{}]  errors {}{}{client}{server}{ratio}",
        result.name,
        result.rps(),
        result.quantile_ms(0.5),
        result.quantile_ms(0.9),
        result.quantile_ms(0.99),
        result.quantile_ms(0.999),
        result.max_ms(),
        result.mode.describe(),
        result.error_count(),
        if errors.is_empty() { String::new() } else { format!(" ({})", errors.join(", ")) },
    );
}
