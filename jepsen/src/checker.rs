//! The checker: decides from the history (and the replicas' push logs read after healing)
//! whether the cluster kept its promises: nothing acknowledged lost, nothing delivered twice,
//! out of order or that nobody pushed, no unexplained hole in a room's stream, every replica
//! holding the same log and every job caught up. It also measures availability (throughput,
//! latency, outages, failover times), which is reported but does not affect validity.
//!
//! The parts: `ops` indexes the push operations, `replicas` compares the final logs and
//! checks the first good one against the history, `clients` walks every client's stream,
//! `availability` measures, `verdict` prints the short human summary.
mod availability;
mod clients;
mod ops;
mod replicas;
#[cfg(test)]
mod tests;
mod verdict;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{Event, Phase, What};

pub use availability::{Availability, Fault, Second};
pub use replicas::ReplicaReport;
pub use verdict::print_verdict;

/// How many anomalies of one kind are named in full; the rest are only counted.
pub const LISTED: usize = 50;

/// What the harness reads from every node after healing (also written to `replicas.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalState {
    pub replicas: Vec<Replica>,
}

/// One node's push log and positions, or the error that kept the harness from reading them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub node: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub last_seq: u64,
    #[serde(default)]
    pub applied_index: Option<u64>,
    #[serde(default)]
    pub job_offset: Option<u64>,
    #[serde(default)]
    pub records: Vec<LogRecord>,
}

/// One record of `GET /goim/log`, flattened (its `target` object spread into kind, room,
/// room_seq and comet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub seq: u64,
    /// `room`, `keys`, `all` or `kick`.
    pub kind: String,
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub room_seq: Option<u64>,
    #[serde(default)]
    pub comet: Option<String>,
    pub op: i32,
    pub body: String,
}

/// Whether `body` is a value the workload made: `v`, digits, a dash, anything (`v12-3`).
/// Records with other bodies (the web demo, a human's curl) are not the checker's business.
pub fn is_harness_value(body: &str) -> bool {
    let Some(rest) = body.strip_prefix('v') else { return false };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && rest.as_bytes().get(digits) == Some(&b'-')
}

/// One anomaly, with everything known about it. Only the fields that apply are set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Anomaly {
    /// What exactly is wrong, in words.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
    /// The client that saw (or missed) it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The replica whose log showed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The room (or mid/key target) concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_seq: Option<u64>,
    /// Last room_seq of a range (a gap of several unknown messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_seq_end: Option<u64>,
    /// Milliseconds since the start: the push's invoke and acknowledgement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_t: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok_t: Option<f64>,
    /// When the client saw it (the delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t: Option<f64>,
}

/// The anomalies of one kind: the total, and the first [`LISTED`] in full.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomalyList {
    pub total: u64,
    pub first: Vec<Anomaly>,
}

impl AnomalyList {
    /// Records one anomaly standing for `weight` messages (a gap range counts each missing one).
    fn add(&mut self, anomaly: Anomaly, weight: u64) {
        self.total += weight;
        if self.first.len() < LISTED {
            self.first.push(anomaly);
        }
    }

    fn push(&mut self, anomaly: Anomaly) {
        self.add(anomaly, 1);
    }
}

/// Invoked / acknowledged / failed / indeterminate pushes of one kind (an op still open at
/// the end counts as indeterminate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// All push kinds together (an op still open at the end counts as info).
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// By push kind (`room`, `mid`, `key`).
    pub ops: BTreeMap<String, OpCounts>,
    pub deliveries: u64,
    pub clients: u64,
    /// Connected events after the first of a client.
    pub resumes: u64,
    /// Messages a resume reply said were not replayed (excused, not lost).
    pub unrecovered: u64,
    /// Nemesis Start events by kind.
    pub faults: BTreeMap<String, u64>,
    /// Leader events naming a leader other than the last one seen (or a new term).
    pub leader_changes: u64,
}

impl Counts {
    /// All kinds together.
    pub fn total_ops(&self) -> OpCounts {
        let mut t = OpCounts::default();
        for c in self.ops.values() {
            t.invoked += c.invoked;
            t.ok += c.ok;
            t.fail += c.fail;
            t.info += c.info;
        }
        t
    }
}

/// The checker's result (written to `summary.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// No lost, duplicated, reordered, unexpected or gap; replicas agree; jobs caught up.
    pub valid: bool,
    pub counts: Counts,
    pub lost: AnomalyList,
    pub duplicated: AnomalyList,
    pub reordered: AnomalyList,
    pub unexpected: AnomalyList,
    pub gaps: AnomalyList,
    pub replicas: ReplicaReport,
    pub availability: Availability,
    /// Oddities of the history itself (a value invoked twice, a completion without invoke…).
    pub notes: Vec<String>,
}

/// The anomaly lists the parts fill in.
#[derive(Default)]
struct Found {
    lost: AnomalyList,
    duplicated: AnomalyList,
    reordered: AnomalyList,
    unexpected: AnomalyList,
    gaps: AnomalyList,
    notes: Vec<String>,
}

/// Checks a whole history against the replicas' final state.
pub fn check(events: &[Event], final_state: &FinalState) -> Summary {
    let mut found = Found::default();
    let ops = ops::Ops::build(events, &mut found.notes);
    let replicas = replicas::check(final_state, &ops, &mut found);
    let log = replicas::LogIndex::build(replicas.reference.as_deref(), final_state);
    let client_counts = clients::check(events, &ops, &log, &mut found);
    let availability = availability::measure(events, &ops);

    let mut counts = Counts {
        ops: ops.counts(),
        deliveries: client_counts.deliveries,
        clients: client_counts.clients,
        resumes: client_counts.resumes,
        unrecovered: client_counts.unrecovered,
        ..Counts::default()
    };
    let total = counts.total_ops();
    (counts.invoked, counts.ok, counts.fail, counts.info) = (total.invoked, total.ok, total.fail, total.info);
    let mut leader: Option<(String, u64)> = None;
    for e in events {
        match &e.what {
            What::Nemesis { phase: Phase::Start, kind, .. } => {
                *counts.faults.entry(kind.clone()).or_default() += 1;
            }
            What::Leader { node: Some(node), term } => {
                let now = Some((node.clone(), *term));
                if leader.is_some() && leader != now {
                    counts.leader_changes += 1;
                }
                leader = now;
            }
            _ => {}
        }
    }

    let valid = found.lost.total == 0
        && found.duplicated.total == 0
        && found.reordered.total == 0
        && found.unexpected.total == 0
        && found.gaps.total == 0
        && replicas.agree
        && replicas.jobs_caught_up;
    Summary {
        valid,
        counts,
        lost: found.lost,
        duplicated: found.duplicated,
        reordered: found.reordered,
        unexpected: found.unexpected,
        gaps: found.gaps,
        replicas,
        availability,
        notes: found.notes,
    }
}
