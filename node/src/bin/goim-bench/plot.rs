//! `plot`: the picture docs/BENCHMARKS.md shows for issue [perf-fanout], drawn from the
//! JSON lines of `fanout --json` and `latency --json` runs (one run per subscriber count):
//! delivered msgs/s of the open-loop runs and p99 push → receive of the fixed-rate runs,
//! each against subscriber count, one line per system. Running and drawing are separate
//! so a sweep can be re-drawn without re-running it.
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use plotters::prelude::*;
use serde::Deserialize;

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// A file of JSON lines, each the `--json` output of one `fanout` or `latency` run.
    pub input: PathBuf,
    /// The SVG to write.
    #[arg(long, default_value = "fanout-sweep.svg")]
    pub out: PathBuf,
}

/// The part of a run's JSON object the plot needs.
#[derive(Deserialize)]
struct Run {
    bench: String,
    clients: u64,
    rate: u64,
    systems: Vec<SystemRun>,
}

#[derive(Deserialize)]
struct SystemRun {
    system: String,
    delivered_per_s: f64,
    latency: Latency,
}

#[derive(Deserialize)]
struct Latency {
    p99_ms: f64,
}

/// Points of one panel: system → (subscribers, value), sorted by subscribers.
type Series = BTreeMap<String, Vec<(u64, f64)>>;

pub fn run(args: &PlotArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let mut throughput = Series::new();
    let mut p99 = Series::new();
    let mut rates = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let run: Run = serde_json::from_str(line).with_context(|| {
            format!("{} line {}: not a fanout/latency --json object", args.input.display(), n + 1)
        })?;
        let fanout = run.bench == "fanout";
        if !fanout {
            rates.push(run.rate);
        }
        for s in run.systems {
            if fanout {
                throughput.entry(s.system).or_default().push((run.clients, s.delivered_per_s));
            } else {
                p99.entry(s.system).or_default().push((run.clients, s.latency.p99_ms));
            }
        }
    }
    anyhow::ensure!(!throughput.is_empty() || !p99.is_empty(), "{}: no runs", args.input.display());
    for series in [&mut throughput, &mut p99] {
        series.values_mut().for_each(|points| points.sort_by_key(|p| p.0));
    }
    rates.sort_unstable();
    rates.dedup();
    let rate = rates.iter().map(u64::to_string).collect::<Vec<_>>().join("/");

    let root = SVGBackend::new(&args.out, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let (left, right) = root.split_horizontally(550);
    panel(&left, "delivered msgs/s, open loop", "msgs/s", &throughput)?;
    panel(&right, &format!("p99 push → receive at {rate} msgs/s"), "ms", &p99)?;
    root.present().map_err(draw_error)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    series: &Series,
) -> anyhow::Result<()> {
    let points = series.values().flatten();
    let max_x = points.clone().map(|p| p.0).max().unwrap_or(1).max(1);
    let max_y = points.map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0..max_x + max_x / 20, 0.0..max_y)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc(unit)
        .y_label_formatter(&|v| short(*v))
        .draw()
        .map_err(draw_error)?;
    for (system, points) in series {
        // goim blue, the peer orange (colour-blind safe).
        let color = if system == "goim" { RGBColor(0, 114, 178) } else { RGBColor(213, 94, 0) };
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(draw_error)?
            .label(system.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(draw_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// 3_200_000 → "3.2M", 45_000 → "45k".
fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e:?}")
}
