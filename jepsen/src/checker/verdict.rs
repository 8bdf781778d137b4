//! The short human summary printed at the end of a run; its last line is the verdict
//! (`valid: true`, or `INVALID: …` with every count), so scripts can grep for it.
use std::fmt::Write;

use super::Summary;

/// How many lost pushes the summary names.
const NAMED_LOST: usize = 10;

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}

/// The summary as text (what [`print_verdict`] prints).
pub fn verdict(s: &Summary) -> String {
    let mut out = String::new();
    let c = &s.counts;
    let t = c.total_ops();
    let _ =
        writeln!(out, "ops: {} invoked, {} ok, {} failed, {} indeterminate", t.invoked, t.ok, t.fail, t.info);
    for (kind, k) in &c.ops {
        let _ = writeln!(
            out,
            "  {kind}: {} invoked, {} ok, {} failed, {} indeterminate",
            k.invoked, k.ok, k.fail, k.info
        );
    }
    let _ = writeln!(
        out,
        "clients: {}, deliveries {}, resumes {}, unrecovered messages {}",
        c.clients, c.deliveries, c.resumes, c.unrecovered
    );
    let faults: Vec<String> = c.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "faults: {}; leader changes {}",
        if faults.is_empty() { "none".into() } else { faults.join(", ") },
        c.leader_changes
    );
    let a = &s.availability;
    let longest = a
        .unavailable
        .iter()
        .map(|w| w.duration_ms)
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
    let _ = writeln!(
        out,
        "latency p50 {} p99 {} max {}; failover p50 {} max {}; {} unavailable windows (longest {})",
        ms(a.latency_p50_ms),
        ms(a.latency_p99_ms),
        ms(a.latency_max_ms),
        ms(a.failover_p50_ms),
        ms(a.failover_max_ms),
        a.unavailable.len(),
        ms(longest)
    );
    let r = &s.replicas;
    let _ = writeln!(
        out,
        "replicas: {} read, reference {}, {} records; {}; {}",
        r.last_seq.len(),
        r.reference.as_deref().unwrap_or("-"),
        r.records,
        if r.agree { "agree".to_string() } else { "DO NOT AGREE".to_string() },
        if r.jobs_caught_up { "jobs caught up".to_string() } else { "jobs BEHIND".to_string() }
    );
    for e in &r.errors {
        let _ = writeln!(out, "  {}: {}", e.node, e.error);
    }
    for d in &r.divergences {
        let _ = writeln!(out, "  {} vs {}: {} at seq {:?}", d.node, d.reference, d.reason, d.seq);
    }
    for j in &r.jobs_behind {
        let _ = writeln!(out, "  {}: job offset {:?}, last seq {}", j.node, j.job_offset, j.last_seq);
    }
    for note in &s.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for (name, list) in [
        ("lost", &s.lost),
        ("duplicated", &s.duplicated),
        ("reordered", &s.reordered),
        ("unexpected", &s.unexpected),
        ("gaps", &s.gaps),
    ] {
        if let Some(first) = list.first.first() {
            let who = first.client.as_deref().or(first.node.as_deref()).unwrap_or("-");
            let value = first.value.as_deref().unwrap_or("-");
            let _ = writeln!(out, "{name}: {} (first: {value} at {who}: {})", list.total, first.reason);
        }
    }
    if s.lost.total > 0 {
        let mut values: Vec<&str> = Vec::new();
        for v in s.lost.first.iter().filter_map(|a| a.value.as_deref()) {
            if !values.contains(&v) && values.len() < NAMED_LOST {
                values.push(v);
            }
        }
        let _ = writeln!(out, "lost pushes: {}", values.join(", "));
    }
    if s.valid {
        out.push_str("valid: true\n");
    } else {
        let mut parts = vec![
            format!("{} lost", s.lost.total),
            format!("{} duplicated", s.duplicated.total),
            format!("{} reordered", s.reordered.total),
            format!("{} unexpected", s.unexpected.total),
            format!("{} gaps", s.gaps.total),
        ];
        if !r.agree {
            parts.push("replicas disagree".into());
        }
        if !r.jobs_caught_up {
            parts.push("jobs behind".into());
        }
        let _ = writeln!(out, "INVALID: {}", parts.join(", "));
    }
    out
}

/// Prints the summary to stdout, ending with the verdict line.
pub fn print_verdict(summary: &Summary) {
    print!("{}", verdict(summary));
}
