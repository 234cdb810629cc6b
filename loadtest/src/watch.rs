//! Watching the answering process while a run is measured (`--server-pid`, `--floor-pid`): every
//! [`SAMPLE`], its threads' time on a CPU and time spent waiting for one, and the load generator's
//! own threads' wait, from `/proc/*/task/*/schedstat` (nanoseconds, where `stat` counts 10 ms
//! ticks). Per window, that gives the server's CPU time per answer, and how long each side was
//! ready to run but not running.
//!
//! Why: a latency spike with the server's CPU per answer up and nobody waiting for a CPU is the
//! server spending more per answer: more work, or the same work on a core running slower (its
//! profile over the window tells which). One where a side waited for a CPU had something else run
//! first: the server's own other threads (its wait sums all its threads', so its SQLite workers
//! queued behind its request thread count), another process, or, on a virtual machine, the
//! hypervisor not running the core (a `perf sched` trace tells which). One with neither is
//! queueing behind something else.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the answering process is sampled.
pub const SAMPLE: Duration = Duration::from_millis(50);

/// Fewer answers than this in a window leave its CPU time per answer out: a handful of answers
/// says more about the timer than the server.
const MIN_WINDOW_ANSWERS: usize = 20;

/// Running totals since the first sample, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Milliseconds since measurement began.
    pub at_ms: u32,
    /// The server's threads' time on a CPU.
    pub server_cpu: u64,
    /// The server's threads' time ready to run, waiting for a CPU.
    pub server_wait: u64,
    /// The load generator's threads' (its server threads left out) time waiting for a CPU.
    pub client_wait: u64,
}

/// One window between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Seconds into the measured run at the window's start.
    pub at_s: f64,
    /// The server's CPU time per answer ending in the window, in microseconds (`None` with fewer
    /// than [`MIN_WINDOW_ANSWERS`]).
    pub cpu_us_per_answer: Option<f64>,
    /// Milliseconds the server's threads waited for a CPU in the window (summed over threads).
    pub server_wait_ms: f64,
    /// Milliseconds the load generator's threads waited for a CPU in the window.
    pub client_wait_ms: f64,
}

/// A measured run's figures from its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The server's CPU time per answer over the run, in microseconds.
    pub cpu_us_per_answer: f64,
    /// The highest window's CPU time per answer and when it began (s).
    pub highest_us: f64,
    pub highest_at_s: f64,
    /// Milliseconds each side waited for a CPU over the run.
    pub server_wait_ms: f64,
    pub client_wait_ms: f64,
    /// The window in which the two sides together waited longest: when (s) and how long (ms).
    pub most_waited_at_s: f64,
    pub most_waited_ms: f64,
}

/// The samples taken within a run of `elapsed`: the last one at its end, not after the answers
/// still in flight, whose window would hold few answers and the server's idle work.
fn within(samples: &[Sample], elapsed: Duration) -> &[Sample] {
    let end = elapsed.as_millis() + SAMPLE.as_millis() / 2;
    &samples[..samples.partition_point(|s| u128::from(s.at_ms) <= end)]
}

/// Each window of a run of `elapsed`, given when each answer ended (`ends`, ms since measurement
/// began, sorted).
pub fn windows(samples: &[Sample], ends: &[u32], elapsed: Duration) -> Vec<Window> {
    let ms = |ns: u64| ns as f64 / 1e6;
    within(samples, elapsed)
        .windows(2)
        .map(|pair| {
            let (a, b) = (pair[0], pair[1]);
            let answers = ends.partition_point(|&at| at < b.at_ms) - ends.partition_point(|&at| at < a.at_ms);
            Window {
                at_s: f64::from(a.at_ms) / 1000.0,
                cpu_us_per_answer: (answers >= MIN_WINDOW_ANSWERS)
                    .then(|| b.server_cpu.saturating_sub(a.server_cpu) as f64 / 1000.0 / answers as f64),
                server_wait_ms: ms(b.server_wait.saturating_sub(a.server_wait)),
                client_wait_ms: ms(b.client_wait.saturating_sub(a.client_wait)),
            }
        })
        .collect()
}

/// [`Summary`] of a run of `elapsed` with answers ending at `ends` (sorted), where the server was
/// watched over at least one window with enough answers.
pub fn summary(samples: &[Sample], ends: &[u32], elapsed: Duration) -> Option<Summary> {
    let measured = within(samples, elapsed);
    let (first, last) = (measured.first()?, measured.last()?);
    let answers = ends.partition_point(|&at| at < last.at_ms) - ends.partition_point(|&at| at < first.at_ms);
    let windows = windows(samples, ends, elapsed);
    let (highest_at_s, highest_us) =
        windows.iter().filter_map(|w| w.cpu_us_per_answer.map(|us| (w.at_s, us))).max_by(|a, b| a.1.total_cmp(&b.1))?;
    let waited = |w: &Window| w.server_wait_ms + w.client_wait_ms;
    let most = windows.iter().max_by(|a, b| waited(a).total_cmp(&waited(b)))?;
    Some(Summary {
        cpu_us_per_answer: last.server_cpu.saturating_sub(first.server_cpu) as f64 / 1000.0 / answers.max(1) as f64,
        highest_us,
        highest_at_s,
        server_wait_ms: last.server_wait.saturating_sub(first.server_wait) as f64 / 1e6,
        client_wait_ms: last.client_wait.saturating_sub(first.client_wait) as f64 / 1e6,
        most_waited_at_s: most.at_s,
        most_waited_ms: waited(most),
    })
}

/// Each live thread's (time on a CPU, time waiting for one) so far, in nanoseconds by thread id,
/// from `/proc/{process}/task/*/schedstat`, leaving out threads whose name starts with `skip`.
/// `None` when the process is gone or `/proc` is not Linux's.
pub fn threads(process: &str, skip: Option<&str>) -> Option<HashMap<u64, (u64, u64)>> {
    let tasks = std::fs::read_dir(format!("/proc/{process}/task")).ok()?;
    let mut threads = HashMap::new();
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else { continue };
        if let Some(prefix) = skip {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if name.starts_with(prefix) {
                continue;
            }
        }
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        if let (Some(Some(cpu)), Some(Some(wait))) = (fields.next(), fields.next()) {
            threads.insert(tid, (cpu, wait));
        }
    }
    Some(threads)
}

/// What every thread alive in `after` added since `before` (all of a thread that started between),
/// as (time on a CPU, time waiting): a thread that ended takes with it only what it used since
/// `before`.
fn growth(before: &HashMap<u64, (u64, u64)>, after: &HashMap<u64, (u64, u64)>) -> (u64, u64) {
    after.iter().fold((0, 0), |(cpu, wait), (tid, &(c, w))| {
        let (c0, w0) = before.get(tid).copied().unwrap_or((0, 0));
        (cpu + c.saturating_sub(c0), wait + w.saturating_sub(w0))
    })
}

/// Samples process `pid` (and this process's own threads but those named `skip`) every [`SAMPLE`]
/// from `from` to a sample past `to`. Nothing without a process id.
pub fn watch(pid: Option<u32>, skip: &'static str, from: Instant, to: Instant) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let Some(pid) = pid else { return Vec::new() };
        let mut ticks = tokio::time::interval_at(from.into(), SAMPLE);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut samples, mut last, mut total) = (Vec::new(), None, Sample::default());
        loop {
            if ticks.tick().await.into_std() > to + SAMPLE {
                break;
            }
            let Some(server) = threads(&pid.to_string(), None) else { break };
            let client = threads("self", Some(skip)).unwrap_or_default();
            if let Some((server_before, client_before)) = &last {
                let (cpu, wait) = growth(server_before, &server);
                total.server_cpu += cpu;
                total.server_wait += wait;
                total.client_wait += growth(client_before, &client).1;
            }
            last = Some((server, client));
            total.at_ms = u32::try_from(Instant::now().saturating_duration_since(from).as_millis()).unwrap_or(u32::MAX);
            samples.push(total);
        }
        samples
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u32, server_cpu: u64, server_wait: u64, client_wait: u64) -> Sample {
        Sample { at_ms, server_cpu, server_wait, client_wait }
    }

    #[test]
    fn each_window_has_the_servers_cpu_per_answer_and_each_sides_wait_for_a_cpu() {
        // 100 answers end in each of the first two windows; the server spent 1 ms of CPU in the
        // first and 4 ms in the second, and waited 3 ms for a CPU in the second, the client 1 ms.
        let ends: Vec<u32> = (0..200).map(|i| i / 2).collect();
        let samples = [sample(0, 0, 0, 0), sample(50, 1_000_000, 0, 0), sample(100, 5_000_000, 3_000_000, 1_000_000)];
        let windows = windows(&samples, &ends, Duration::from_secs(1));
        assert_eq!(
            windows,
            vec![
                Window { at_s: 0.0, cpu_us_per_answer: Some(10.0), server_wait_ms: 0.0, client_wait_ms: 0.0 },
                Window { at_s: 0.05, cpu_us_per_answer: Some(40.0), server_wait_ms: 3.0, client_wait_ms: 1.0 },
            ]
        );
        let summary = summary(&samples, &ends, Duration::from_secs(1)).unwrap();
        assert_eq!(
            summary,
            Summary {
                cpu_us_per_answer: 25.0,
                highest_us: 40.0,
                highest_at_s: 0.05,
                server_wait_ms: 3.0,
                client_wait_ms: 1.0,
                most_waited_at_s: 0.05,
                most_waited_ms: 4.0,
            }
        );
    }

    #[test]
    fn a_window_with_few_answers_has_no_cpu_per_answer_and_one_after_the_run_is_left_out() {
        // 100 answers in the first window, 5 in the second, 100 after the one-second run ended.
        let ends: Vec<u32> = (0..100).map(|i| i / 2).chain(50..55).chain((0..100).map(|i| 1_000 + i / 2)).collect();
        let samples = [
            sample(0, 0, 0, 0),
            sample(50, 2_000_000, 0, 0),
            sample(1_000, 4_000_000, 0, 0),
            sample(1_050, 90_000_000, 0, 0),
        ];
        let windows = windows(&samples, &ends, Duration::from_secs(1));
        assert_eq!(windows.len(), 2, "the window after the run is not the run's: {windows:?}");
        assert_eq!(windows[0].cpu_us_per_answer, Some(20.0), "2 ms over 100 answers");
        assert_eq!(windows[1].cpu_us_per_answer, None, "5 answers are too few to judge a window by");
        let summary = summary(&samples, &ends, Duration::from_secs(1)).unwrap();
        assert_eq!(summary.cpu_us_per_answer, 4_000.0 / 105.0, "4 ms over the 105 answers of the run");
        assert_eq!(summary.highest_us, 20.0);
    }

    #[test]
    fn without_a_window_of_answers_there_is_no_summary() {
        assert_eq!(summary(&[], &[10, 20], Duration::from_secs(1)), None);
        assert_eq!(summary(&[sample(0, 0, 0, 0), sample(50, 10, 0, 0)], &[10, 20], Duration::from_secs(1)), None);
    }

    #[test]
    fn growth_counts_each_threads_increase_and_all_of_a_new_thread() {
        let before = HashMap::from([(1, (100, 10)), (2, (50, 5))]);
        // Thread 2 ended; thread 3 started.
        let after = HashMap::from([(1, (160, 12)), (3, (30, 4))]);
        assert_eq!(growth(&before, &after), (60 + 30, 2 + 4));
    }

    #[tokio::test]
    async fn a_watched_process_is_sampled_in_nanoseconds_until_the_run_ends() {
        // Another process spins meanwhile (not this one: the client's CPU time is measured by
        // other tests running beside this one).
        let mut spinner = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        let from = Instant::now() + Duration::from_millis(20);
        let to = from + Duration::from_millis(200);
        let samples = watch(Some(spinner.id()), "lt-server", from, to).await.unwrap();
        spinner.kill().unwrap();
        spinner.wait().unwrap();
        assert!(samples.len() >= 4, "one sample every 50 ms over 200 ms: {samples:?}");
        assert_eq!(samples[0], Sample { at_ms: samples[0].at_ms, ..Sample::default() }, "totals from the first");
        assert!(samples.windows(2).all(|w| w[0].at_ms < w[1].at_ms && w[0].server_cpu <= w[1].server_cpu));
        let spent = samples.last().unwrap().server_cpu;
        // The spinner shares the machine's cores with the tests running beside this one.
        assert!(spent >= 50_000_000, "the spinning process's time shows, to the nanosecond: {spent} ns");
        assert!(spent % 10_000_000 != 0, "not in 10 ms ticks: {spent} ns");
        assert!(watch(None, "lt-server", from, to).await.unwrap().is_empty(), "no process, no samples");
        assert!(threads(&u32::MAX.to_string(), None).is_none(), "a process that does not exist");
    }

    #[test]
    fn this_process_threads_are_read_but_those_named_to_skip() {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let skipped = std::thread::Builder::new()
            .name("watch-skip-me".into())
            .spawn(move || {
                tid_tx.send(crate::run::tests::own_tid()).unwrap();
                end_rx.recv()
            })
            .unwrap();
        let tid = tid_rx.recv().unwrap();
        let (all, some) = (threads("self", None).unwrap(), threads("self", Some("watch-skip")).unwrap());
        end_tx.send(()).unwrap();
        skipped.join().unwrap().unwrap();
        assert!(all.contains_key(&tid), "every thread is read");
        assert!(!some.contains_key(&tid), "the named one is left out");
        assert!(!some.is_empty(), "the others are read");
    }
}
