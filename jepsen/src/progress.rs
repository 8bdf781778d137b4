//! The progress line printed while a test runs: elapsed time, pushes acknowledged / failed
//! / indeterminate, deliveries, resumes, the fault in force and the leader.
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::history::{History, Phase, What};
use crate::workload::Counters;

pub async fn run(counters: Arc<Counters>, history: History, total: Duration, stop: Arc<AtomicBool>) {
    let tty = std::io::stderr().is_terminal();
    let mut ticks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ticks += 1;
        // On a terminal: one line rewritten every second; in a log: one line every 10 s.
        if !tty && !ticks.is_multiple_of(10) {
            continue;
        }
        let (fault, leader) = current(&history);
        let c = &counters;
        let line = format!(
            "[{:>4}s/{}s] acked {} failed {} indeterminate {} | delivered {} resumes {} | {} | leader {}",
            history.now() as u64 / 1000,
            total.as_secs(),
            c.ok.load(Ordering::Relaxed),
            c.fail.load(Ordering::Relaxed),
            c.info.load(Ordering::Relaxed),
            c.delivered.load(Ordering::Relaxed),
            c.resumes.load(Ordering::Relaxed),
            fault,
            leader,
        );
        let mut err = std::io::stderr();
        if tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
    if tty {
        eprintln!();
    }
}

/// The faults in force and the latest leader, from the history so far.
fn current(history: &History) -> (String, String) {
    let events = history.snapshot();
    let mut faults: Vec<String> = Vec::new();
    let mut leader = "?".to_string();
    for e in &events {
        match &e.what {
            What::Nemesis { phase: Phase::Start, kind, detail } => faults.push(format!("{kind} {detail}")),
            What::Nemesis { phase: Phase::Stop, kind, detail } => {
                let f = format!("{kind} {detail}");
                faults.retain(|x| *x != f);
            }
            What::Leader { node, .. } => leader = node.clone().unwrap_or_else(|| "none".into()),
            _ => {}
        }
    }
    let mut fault = if faults.is_empty() { "no fault".to_string() } else { faults.join("; ") };
    if fault.len() > 60 {
        fault.truncate(57);
        fault.push_str("...");
    }
    (fault, leader)
}
