//! `ficus`: transparent huge pages off, CLI -> config -> telemetry -> runtime (current-thread on one
//! core) -> command.

use std::process::ExitCode;

use clap::Parser;
use ficus::cli::{self, Cli, Command};
use ficus::config::Settings;

/// mimalloc instead of glibc's allocator: the token path allocates small, short-lived buffers on
/// every request, where glibc's malloc spent about a tenth of the broker's time (free-list
/// consolidation included); see the README's design notes for the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only `serve`: the setting is inherited by child processes, and `sandbox` runs the user's
    // command as one.
    let huge_pages = if matches!(cli.command, Command::Serve) { without_transparent_huge_pages() } else { Ok(()) };
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("ficus: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Namespaces are entered while this is the only thread.
    if matches!(cli.command, Command::Sandbox { .. })
        && let Err(e) = ficus::sandbox::isolate()
    {
        eprintln!("ficus sandbox: {e}");
        return ExitCode::from(ficus::sandbox::exit::SANDBOX_FAILED);
    }
    ficus::telemetry::init(&settings.log);
    if let Err(e) = huge_pages {
        tracing::debug!(error = %e, "could not turn transparent huge pages off; latency may spike as memory grows");
    }
    // On one core (a pinned process, a container limited to one CPU) tokio's current-thread
    // scheduler runs the same tasks without the multi-threaded one's hand-offs between workers
    // (atomics, the injection queue, work stealing); blocking work still goes to its own pool.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_core {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ficus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command, settings)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ficus: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Turns transparent huge pages off for this process, before the server allocates much.
/// mimalloc asks the kernel for huge pages on its regions (`madvise(MADV_HUGEPAGE)`), and the first
/// touch of each 2 MiB then zeroes it, and may compact memory to find it, on whichever thread
/// touched it: a request's. With the verified-assertion cache growing by a few MB a second
/// (exchanges with fresh assertions), that stalled the token path for 5-10 ms a few times a
/// second; measured in the README's design notes. The setting belongs to the process (every
/// mapping, present and future) and children inherit it.
fn without_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}
