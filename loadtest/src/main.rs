//! `loadtest`: the load generator that ships with ficus. It talks HTTP only and shares no code with
//! the broker, so it measures what a client sees.
//!
//! Closed loop: `--concurrency` workers each send the next request as soon as the previous one
//! answers, for `--duration` after a `--warmup` whose requests are not recorded. Latencies go to
//! HDR histograms. Every scenario's throughput is also reported as a ratio to a baseline measured
//! in the same run: the HTTPS floor (`--baseline`, a built-in axum + rustls server answering a
//! token-sized JSON body) and the crypto ceiling (`--crypto-ceiling`, RS256 sign + verify pairs per
//! second on this machine's cores).
//!
//! Scenarios today: `discovery`, `mi-token` (IMDS, cache hit), `exchange-hit` (the same
//! assertion, for stock-tracker through its credential trusting uami-demo). The `exchange-miss`,
//! `external` and `mixed` scenarios, open-loop mode and the HTML report are still to come.

mod baseline;
mod run;
mod scenarios;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
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
    /// Scenarios to run (repeatable): discovery, mi-token, exchange-hit
    #[arg(long = "scenario", default_values = ["discovery", "mi-token", "exchange-hit"])]
    pub scenarios: Vec<String>,
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
    /// Only serve the HTTPS floor on ADDR (certificate for localhost written to floor-ca.pem) and wait
    #[arg(long, value_name = "ADDR")]
    pub serve_floor: Option<String>,
    /// Also measure RS256 sign + verify pairs per second on this machine's cores
    #[arg(long)]
    pub crypto_ceiling: bool,
    /// Write the results as JSON
    #[arg(long)]
    pub json: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
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

async fn execute(args: &Args) -> Result<Value, String> {
    let baseline = if args.baseline {
        let result = baseline::measure(args).await?;
        print_row(&result, None);
        Some(result)
    } else {
        None
    };
    let ceiling = if args.crypto_ceiling {
        let pairs = baseline::crypto_ceiling(args.duration.min(Duration::from_secs(5)));
        println!("{:<14} {pairs:>10.0} RS256 sign+verify pairs/s on {} cores", "crypto-ceiling", threads());
        Some(pairs)
    } else {
        None
    };
    let client = scenarios::Client::connect(args).await?;
    let mut results = Vec::new();
    for name in &args.scenarios {
        let scenario = client.scenario(name).await?;
        let result = run::closed_loop(name, args, scenario).await?;
        print_row(&result, baseline.as_ref());
        results.push(result);
    }
    let report: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut row = r.to_json();
            if let Some(base) = &baseline {
                row["baseline_rps"] = json!(base.rps());
                row["ratio"] = json!(r.rps() / base.rps());
            }
            if let Some(pairs) = ceiling {
                row["crypto_ceiling"] = json!(pairs);
            }
            row
        })
        .collect();
    Ok(json!({
        "machine": { "cores": threads() },
        "concurrency": args.concurrency,
        "duration_s": args.duration.as_secs_f64(),
        "baseline": baseline.as_ref().map(run::Outcome::to_json),
        "crypto_ceiling_pairs_per_s": ceiling,
        "scenarios": report,
    }))
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn print_row(result: &run::Outcome, baseline: Option<&run::Outcome>) {
    let ratio = baseline.map(|b| format!("  {:.2}x floor", result.rps() / b.rps())).unwrap_or_default();
    println!(
        "{:<14} {:>10.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  errors {}{ratio}",
        result.name,
        result.rps(),
        result.quantile_ms(0.5),
        result.quantile_ms(0.99),
        result.quantile_ms(0.999),
        result.error_count(),
    );
}
