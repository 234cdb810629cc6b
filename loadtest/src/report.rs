//! The HTML report: one self-contained page with a summary table and, per scenario, SVG plots drawn
//! with plotters: latency over time (p50 and p99 per time slice); where the server's process
//! was watched (`--server-pid`, `--floor-pid`), its CPU time per answer over time and how long it
//! and the load generator waited for a CPU; and a latency histogram.

use plotters::prelude::*;

use crate::run::Outcome;

/// Time slices of the latency-over-time plot.
const SLICES: usize = 100;
/// Bars of the histogram.
const BARS: usize = 60;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// p50 and p99 (ms) of the latencies in each time slice, at the slice's middle (s).
fn slices(outcome: &Outcome) -> Vec<(f64, f64, f64)> {
    let Some(&(last, _)) = outcome.timeline.last() else { return Vec::new() };
    let width = (f64::from(last) / SLICES as f64).max(1.0);
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); SLICES + 1];
    for &(at, micros) in &outcome.timeline {
        let slot = ((f64::from(at) / width) as usize).min(SLICES);
        buckets[slot].push(micros);
    }
    buckets
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, mut b)| {
            b.sort_unstable();
            let q = |q: f64| f64::from(b[((b.len() - 1) as f64 * q) as usize]) / 1000.0;
            (((i as f64) + 0.5) * width / 1000.0, q(0.5), q(0.99))
        })
        .collect()
}

/// One line of a chart over time: its label, colour and (seconds, value) points.
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// A line chart over the seconds of the measured run.
fn chart_over_time(title: &str, y_desc: &str, lines: &[Line<'_>]) -> Result<String, String> {
    let points = || lines.iter().flat_map(|(_, _, points)| points.iter());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let x_max = points().map(|p| p.0).fold(0.0, f64::max).max(0.5) * 1.02;
        let y_max = points().map(|p| p.1).fold(0.1, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds into the measured run")
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        for (label, colour, points) in lines {
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), colour))
                .map_err(|e| e.to_string())?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour));
        }
        chart.configure_series_labels().border_style(BLACK).draw().map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn over_time(outcome: &Outcome) -> Result<String, String> {
    let points = slices(outcome);
    let p50 = points.iter().map(|p| (p.0, p.1)).collect();
    let p99 = points.iter().map(|p| (p.0, p.2)).collect();
    let title = format!("{}: latency over time", outcome.name);
    chart_over_time(&title, "latency (ms)", &[("p50", BLUE, p50), ("p99", RED, p99)])
}

/// Where the answering process was watched (see [`crate::watch`]): its CPU time per answer in
/// each window, and how long it and the load generator waited for a CPU: a latency spike with the
/// first up and nobody waiting is the server spending more per answer; with a wait, the machine.
fn server_over_time(outcome: &Outcome) -> Result<Option<String>, String> {
    let windows = outcome.server_windows();
    if windows.is_empty() {
        return Ok(None);
    }
    let per = format!("per {} ms", crate::watch::SAMPLE.as_millis());
    let cpu = windows.iter().filter_map(|w| w.cpu_us_per_answer.map(|us| (w.at_s, us))).collect();
    let title = format!("{}: the server's CPU time per answer", outcome.name);
    let mut svg = chart_over_time(&title, "CPU per answer (us)", &[(&per, GREEN, cpu)])?;
    let server = windows.iter().map(|w| (w.at_s, w.server_wait_ms)).collect();
    let client = windows.iter().map(|w| (w.at_s, w.client_wait_ms)).collect();
    let title = format!("{}: time ready to run but waiting for a CPU, {per}", outcome.name);
    svg += &chart_over_time(&title, "waited (ms)", &[("the server", MAGENTA, server), ("the client", CYAN, client)])?;
    Ok(Some(svg))
}

fn histogram(outcome: &Outcome) -> Result<String, String> {
    let h = outcome.histogram();
    // Up to the 99.9th percentile; slower requests are counted in the last bar.
    let top = (h.value_at_quantile(0.999) as f64 / 1000.0).max(0.01);
    let width = top / BARS as f64;
    let mut counts = vec![0u64; BARS];
    for v in h.iter_recorded() {
        let ms = v.value_iterated_to() as f64 / 1000.0;
        counts[((ms / width) as usize).min(BARS - 1)] += v.count_at_value();
    }
    let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: latency histogram", outcome.name), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..top, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("latency (ms), last bar: up to the maximum")
            .y_desc("requests")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &count)| {
                let x0 = i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, count as f64)], BLUE.mix(0.6).filled())
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The page: `rows` are (outcome, ratio to the floor if measured).
pub fn html(title: &str, context: &[String], rows: &[(&Outcome, Option<f64>)]) -> Result<String, String> {
    let mut page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:800px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th:first-child,td:first-child{{text-align:left}}\
         </style></head><body><h1>{t}</h1>",
        t = escape(title)
    );
    for line in context {
        page.push_str(&format!("<p>{}</p>", escape(line)));
    }
    page.push_str(
        "<table><tr><th>scenario</th><th>mode</th><th>req/s</th><th>ratio</th><th>p50 ms</th><th>p90 ms</th>\
         <th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>errors</th></tr>",
    );
    for (o, ratio) in rows {
        page.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            escape(&o.name),
            escape(&o.mode.describe()),
            o.rps(),
            ratio.map(|r| format!("{r:.2}x")).unwrap_or_default(),
            o.quantile_ms(0.5),
            o.quantile_ms(0.9),
            o.quantile_ms(0.99),
            o.quantile_ms(0.999),
            o.max_ms(),
            o.error_count(),
        ));
    }
    page.push_str("</table>");
    for (o, _) in rows {
        page.push_str(&format!("<h2>{} ({})</h2>", escape(&o.name), escape(&o.mode.describe())));
        for (key, count) in o.errors() {
            page.push_str(&format!("<p>error {}: {count}</p>", escape(key)));
        }
        for note in &o.all_notes() {
            page.push_str(&format!("<p>{}</p>", escape(note)));
        }
        page.push_str(&over_time(o)?);
        if let Some(server) = server_over_time(o)? {
            page.push_str(&server);
        }
        page.push_str(&histogram(o)?);
    }
    page.push_str("</body></html>");
    Ok(page)
}
