//! Availability, reported but not part of validity: acknowledged pushes and their latency
//! per second, the windows in which pushes were being made and none was acknowledged, and
//! how long after each fault started the cluster acknowledged a new push again.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ops::{Ops, Outcome};
use crate::history::{Event, Phase, What};

/// An outage shorter than this is not reported.
const MIN_WINDOW_MS: f64 = 1000.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    /// Every second from 0 to the end of the history.
    pub per_second: Vec<Second>,
    /// Invoke → ok, milliseconds, over the whole test.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    /// Windows of at least a second in which pushes were outstanding and none was acked.
    pub unavailable: Vec<Window>,
    /// Every fault (Nemesis Start, with its matching Stop) and its failover time.
    pub faults: Vec<Fault>,
    pub failover_p50_ms: Option<f64>,
    pub failover_max_ms: Option<f64>,
    pub failover_by_kind: BTreeMap<String, FailoverStats>,
}

/// One second of the test: ops by the second they were invoked or completed in, latency of
/// those acknowledged in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub second: u64,
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    /// Info completions, plus ops never completed (at their invoke).
    pub info: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: f64,
    pub to_ms: f64,
    pub duration_ms: f64,
    /// Pushes outstanding during the window.
    pub ops: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: String,
    pub detail: String,
    pub start_ms: f64,
    /// The matching Stop (same kind and detail); None: never stopped.
    pub stop_ms: Option<f64>,
    /// From the start to the first Ok of an op invoked at or after it; None: never.
    pub failover_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailoverStats {
    pub faults: u64,
    /// Faults followed by an acknowledged push at all.
    pub recovered: u64,
    pub p50_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Nemesis Start..Stop pairs, matched by kind and detail, in start order.
pub fn faults(events: &[Event]) -> Vec<Fault> {
    let mut faults: Vec<Fault> = Vec::new();
    for e in events {
        let What::Nemesis { phase, kind, detail } = &e.what else { continue };
        match phase {
            Phase::Start => faults.push(Fault {
                kind: kind.clone(),
                detail: detail.clone(),
                start_ms: e.t,
                ..Fault::default()
            }),
            Phase::Stop => {
                let open =
                    faults.iter_mut().find(|f| f.stop_ms.is_none() && &f.kind == kind && &f.detail == detail);
                if let Some(f) = open {
                    f.stop_ms = Some(e.t);
                }
            }
        }
    }
    faults
}

pub fn measure(events: &[Event], ops: &Ops) -> Availability {
    let end = events.iter().map(|e| e.t).fold(0.0, f64::max);
    let sec = |t: f64| (t.max(0.0) / 1000.0) as usize;
    let mut per_second: Vec<Second> =
        (0..=sec(end)).map(|s| Second { second: s as u64, ..Second::default() }).collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); per_second.len()];
    let mut all = Vec::new();
    for o in &ops.ops {
        per_second[sec(o.invoke_t)].invoked += 1;
        match (o.outcome, o.done_t) {
            (Outcome::Ok, Some(t)) => {
                per_second[sec(t)].ok += 1;
                latencies[sec(t)].push(t - o.invoke_t);
                all.push(t - o.invoke_t);
            }
            (Outcome::Fail, Some(t)) => per_second[sec(t)].fail += 1,
            (Outcome::Info, Some(t)) => per_second[sec(t)].info += 1,
            _ => per_second[sec(o.invoke_t)].info += 1,
        }
    }
    for (s, l) in per_second.iter_mut().zip(latencies) {
        let l = sorted(l);
        s.p50_ms = percentile(&l, 0.5);
        s.p99_ms = percentile(&l, 0.99);
        s.max_ms = l.last().copied();
    }
    let all = sorted(all);

    let mut faults = faults(events);
    let acks = sorted(ops.ops.iter().filter_map(|o| o.ok_t()).collect());
    for f in &mut faults {
        f.failover_ms = ops
            .ops
            .iter()
            .filter(|o| o.invoke_t >= f.start_ms)
            .filter_map(|o| o.ok_t())
            .min_by(f64::total_cmp)
            .map(|t| t - f.start_ms);
    }
    let times = sorted(faults.iter().filter_map(|f| f.failover_ms).collect());
    let mut failover_by_kind: BTreeMap<String, FailoverStats> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for f in &faults {
        let stats = failover_by_kind.entry(f.kind.clone()).or_default();
        stats.faults += 1;
        if let Some(ms) = f.failover_ms {
            stats.recovered += 1;
            kinds.entry(&f.kind).or_default().push(ms);
        }
    }
    for (kind, ms) in kinds {
        let ms = sorted(ms);
        if let Some(stats) = failover_by_kind.get_mut(kind) {
            stats.p50_ms = percentile(&ms, 0.5);
            stats.max_ms = ms.last().copied();
        }
    }

    Availability {
        per_second,
        latency_p50_ms: percentile(&all, 0.5),
        latency_p99_ms: percentile(&all, 0.99),
        latency_max_ms: all.last().copied(),
        unavailable: outages(ops, &acks, end),
        faults,
        failover_p50_ms: percentile(&times, 0.5),
        failover_max_ms: times.last().copied(),
        failover_by_kind,
    }
}

/// Between consecutive acknowledgements (and before the first, after the last), a window of
/// at least [`MIN_WINDOW_MS`] during which some push was outstanding.
fn outages(ops: &Ops, acks: &[f64], end: f64) -> Vec<Window> {
    let first_invoke = ops.ops.iter().map(|o| o.invoke_t).fold(f64::INFINITY, f64::min);
    if !first_invoke.is_finite() {
        return Vec::new();
    }
    let mut bounds = vec![first_invoke];
    bounds.extend(acks.iter().copied().filter(|&t| t >= first_invoke));
    bounds.push(end);
    let mut windows = Vec::new();
    for pair in bounds.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b - a < MIN_WINDOW_MS {
            continue;
        }
        // Outstanding in (a, b): invoked before b, not completed by a.
        let waiting: Vec<_> =
            ops.ops.iter().filter(|o| o.invoke_t < b && o.done_t.is_none_or(|t| t > a)).collect();
        let Some(from) = waiting.iter().map(|o| o.invoke_t.max(a)).min_by(f64::total_cmp) else {
            continue;
        };
        if b - from >= MIN_WINDOW_MS {
            windows.push(Window {
                from_ms: from,
                to_ms: b,
                duration_ms: b - from,
                ops: waiting.len() as u64,
            });
        }
    }
    windows
}
