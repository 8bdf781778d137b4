//! The run's report beside its history: `summary.json` (the checker's full result) and
//! `timeline.svg`, one picture of the run: acknowledged / failed / indeterminate pushes per
//! second and push latency per second, with the nemesis windows shaded and leader changes
//! marked, so an outage can be lined up with the fault that caused it at a glance.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::checker::{Fault, Second, Summary};
use crate::history::{Event, What};

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 860;

/// One colour per nemesis kind, in kind order.
const KIND_COLOURS: [RGBColor; 8] = [
    RGBColor(230, 85, 13),
    RGBColor(49, 130, 189),
    RGBColor(117, 107, 177),
    RGBColor(49, 163, 84),
    RGBColor(204, 160, 0),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(99, 99, 99),
];
const OK_COLOUR: RGBColor = RGBColor(0, 128, 0);
const FAIL_COLOUR: RGBColor = RGBColor(214, 39, 40);
const INFO_COLOUR: RGBColor = RGBColor(255, 127, 14);
const P50_COLOUR: RGBColor = RGBColor(31, 119, 180);
const MAX_COLOUR: RGBColor = RGBColor(148, 103, 189);

/// A line of a panel: its label, colour and value in one second.
type Series<T> = (&'static str, RGBColor, fn(&Second) -> T);

/// Writes `summary.json` and `timeline.svg` into `dir`.
pub fn write(dir: &Path, events: &[Event], summary: &Summary) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(summary)? + "\n";
    let path = dir.join("summary.json");
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    let svg = timeline(events, summary)?;
    let path = dir.join("timeline.svg");
    std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the timeline: {e:?}")
}

/// Times (ms) at which the leader changed (a leader other than the last one seen).
fn leader_changes(events: &[Event]) -> Vec<f64> {
    let mut last: Option<(&str, u64)> = None;
    let mut times = Vec::new();
    for e in events {
        if let What::Leader { node: Some(node), term } = &e.what {
            let now = Some((node.as_str(), *term));
            if last.is_some() && last != now {
                times.push(e.t);
            }
            last = now;
        }
    }
    times
}

/// The timeline as SVG text.
pub fn timeline(events: &[Event], summary: &Summary) -> anyhow::Result<String> {
    let end_ms = events.iter().map(|e| e.t).fold(0.0, f64::max);
    let x_max = (end_ms / 1000.0).ceil().max(1.0);
    let faults = &summary.availability.faults;
    let kinds: BTreeMap<&str, RGBColor> = {
        let mut names: Vec<&str> = faults.iter().map(|f| f.kind.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter().enumerate().map(|(i, k)| (k, KIND_COLOURS[i % KIND_COLOURS.len()])).collect()
    };
    let leaders = leader_changes(events);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let verdict = if summary.valid { "valid" } else { "INVALID" };
        let c = &summary.counts;
        let title = format!(
            "goim-jepsen: {verdict} | {} pushes, {} ok, {} failed, {} indeterminate | {} lost",
            c.invoked, c.ok, c.fail, c.info, summary.lost.total
        );
        let body = root.titled(&title, ("sans-serif", 22)).map_err(plot_err)?;
        let (top, bottom) = body.split_vertically(HEIGHT as i32 / 2 - 20);
        throughput(&top, summary, x_max, &kinds, &leaders)?;
        latency(&bottom, summary, x_max, &kinds, &leaders)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

type Chart<'a, 'b, Y> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

/// Shades every fault window and marks leader changes, between `lo` and `hi` on the y
/// axis; with `legend`, one legend entry per kind and one for the leader changes.
#[allow(clippy::too_many_arguments)]
fn backdrop<Y>(
    chart: &mut Chart<'_, '_, Y>,
    faults: &[Fault],
    kinds: &BTreeMap<&str, RGBColor>,
    leaders: &[f64],
    x_max: f64,
    (lo, hi): (f64, f64),
    legend: bool,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    for (&kind, &colour) in kinds {
        let windows = faults.iter().filter(|f| f.kind == kind).map(|f| {
            let from = f.start_ms / 1000.0;
            let to = f.stop_ms.map_or(x_max, |t| t / 1000.0).max(from + 0.05);
            Rectangle::new([(from, lo), (to, hi)], colour.mix(0.18).filled())
        });
        let drawn = chart.draw_series(windows).map_err(plot_err)?;
        if legend {
            drawn.label(format!("nemesis: {kind}")).legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 18, y + 6)], colour.mix(0.4).filled())
            });
        }
    }
    if !leaders.is_empty() {
        let lines = leaders
            .iter()
            .map(|t| PathElement::new(vec![(t / 1000.0, lo), (t / 1000.0, hi)], BLACK.mix(0.5)));
        let drawn = chart.draw_series(lines).map_err(plot_err)?;
        if legend {
            drawn
                .label("leader change")
                .legend(|(x, y)| PathElement::new(vec![(x + 9, y - 7), (x + 9, y + 7)], BLACK.mix(0.5)));
        }
    }
    Ok(())
}

fn throughput(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    summary: &Summary,
    x_max: f64,
    kinds: &BTreeMap<&str, RGBColor>,
    leaders: &[f64],
) -> anyhow::Result<()> {
    let seconds = &summary.availability.per_second;
    let y_max = seconds.iter().map(|s| s.ok.max(s.fail).max(s.info)).max().unwrap_or(0).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("pushes per second", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("pushes / s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    backdrop(&mut chart, &summary.availability.faults, kinds, leaders, x_max, (0.0, y_max), true)?;
    let series: [Series<u64>; 3] = [
        ("acknowledged", OK_COLOUR, |s| s.ok),
        ("indeterminate", INFO_COLOUR, |s| s.info),
        ("failed", FAIL_COLOUR, |s| s.fail),
    ];
    for (label, colour, get) in series {
        let points = seconds.iter().map(|s| (s.second as f64 + 0.5, get(s) as f64));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

fn latency(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    summary: &Summary,
    x_max: f64,
    kinds: &BTreeMap<&str, RGBColor>,
    leaders: &[f64],
) -> anyhow::Result<()> {
    const FLOOR_MS: f64 = 0.1;
    let seconds = &summary.availability.per_second;
    let y_max = seconds.iter().filter_map(|s| s.max_ms).fold(10.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption("push latency (invoke → ok), per second of acknowledgement", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, (FLOOR_MS..y_max).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("ms (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if *y < 1.0 { format!("{y:.1}") } else { format!("{y:.0}") })
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    backdrop(&mut chart, &summary.availability.faults, kinds, leaders, x_max, (FLOOR_MS, y_max), false)?;
    let series: [Series<Option<f64>>; 2] =
        [("p50", P50_COLOUR, |s| s.p50_ms), ("max", MAX_COLOUR, |s| s.max_ms)];
    for (label, colour, get) in series {
        // One line per run of seconds that had acknowledgements: no line across an outage.
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut last: Option<u64> = None;
        for s in seconds {
            let Some(ms) = get(s) else { continue };
            if last != Some(s.second.wrapping_sub(1)) || runs.is_empty() {
                runs.push(Vec::new());
            }
            if let Some(run) = runs.last_mut() {
                run.push((s.second as f64 + 0.5, ms.max(FLOOR_MS)));
            }
            last = Some(s.second);
        }
        for run in &runs {
            chart
                .draw_series(LineSeries::new(run.iter().copied(), colour.stroke_width(2)))
                .map_err(plot_err)?;
        }
        let points = runs.iter().flatten().map(|&p| Circle::new(p, 2, colour.filled()));
        chart
            .draw_series(points)
            .map_err(plot_err)?
            .label(format!("latency {label}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{check, FinalState};
    use crate::history::{Phase, PushKind};

    fn ev(t: f64, what: What) -> Event {
        Event { t, what }
    }

    /// A minute of pushes at ~20/s, a partition from 10 s to 25 s during which nothing is
    /// acknowledged, a kill at 40 s never stopped, two leader changes.
    fn history() -> Vec<Event> {
        let mut events = vec![ev(0.0, What::Leader { node: Some("n1".into()), term: 1 })];
        events.push(ev(
            10_000.0,
            What::Nemesis { phase: Phase::Start, kind: "partition".into(), detail: "n1|n2,n3".into() },
        ));
        events.push(ev(12_000.0, What::Leader { node: Some("n2".into()), term: 2 }));
        events.push(ev(
            25_000.0,
            What::Nemesis { phase: Phase::Stop, kind: "partition".into(), detail: "n1|n2,n3".into() },
        ));
        events.push(ev(
            40_000.0,
            What::Nemesis { phase: Phase::Start, kind: "kill".into(), detail: "n2".into() },
        ));
        events.push(ev(41_000.0, What::Leader { node: Some("n3".into()), term: 3 }));
        for op in 0..1200u64 {
            let t = op as f64 * 50.0;
            events.push(ev(
                t,
                What::Invoke {
                    op,
                    process: "p0".into(),
                    kind: PushKind::Room,
                    target: "live://1".into(),
                    value: format!("v{op}-0"),
                    idem: true,
                },
            ));
            let stalled = (10_000.0..25_000.0).contains(&t);
            let done = if stalled { 25_100.0 + op as f64 } else { t + 5.0 + (op % 7) as f64 * 3.0 };
            let what = if stalled && op % 3 == 0 {
                What::Info { op, error: "timeout".into() }
            } else if stalled && op % 3 == 1 {
                What::Fail { op, error: "no leader".into() }
            } else {
                What::Ok { op, node: "n1".into(), seq: op + 1, room_seq: Some(op + 1) }
            };
            events.push(ev(done, what));
        }
        events.sort_by(|a, b| a.t.total_cmp(&b.t));
        events
    }

    #[test]
    fn writes_the_summary_and_a_timeline() {
        let events = history();
        let summary = check(&events, &FinalState::default());
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &events, &summary).unwrap();
        let back: Summary =
            serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
        assert_eq!(back, summary);
        let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.len() > 10_000, "a timeline this short is empty: {} bytes", svg.len());
        for text in ["nemesis: partition", "nemesis: kill", "leader change", "acknowledged", "latency p50"] {
            assert!(svg.contains(text), "{text} missing from the timeline");
        }
        if let Some(out) = std::env::var_os("GOIM_JEPSEN_TIMELINE_OUT") {
            std::fs::write(out, &svg).unwrap();
        }
    }
}
