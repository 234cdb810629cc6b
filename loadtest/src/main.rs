//! `loadtest`: the load generator that ships with ficus. It talks HTTP only and shares no code with
//! the broker, so it measures what a client sees.
//!
//! The scenarios (`mi-token`, `exchange-hit`, `exchange-miss`, `external`, `discovery`, `mixed`),
//! the in-run HTTPS baseline and the crypto ceiling arrive with the throughput issue (#7); until
//! then this binary says so and exits with status 2 rather than pretend to measure anything.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("loadtest: no scenarios yet; they arrive with the throughput work (issue #7)");
    ExitCode::from(2)
}
