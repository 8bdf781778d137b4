//! The replicas' final state: every readable replica must hold the same push log up to the
//! same last seq, every job must have caught up with it, and the first good replica's log
//! must agree with the history (each acknowledged room push logged exactly once where its
//! acknowledgement said, nothing logged that was never pushed or that failed).
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::ops::{kind_name, Ops, Outcome};
use super::{is_harness_value, Anomaly, FinalState, Found, LogRecord};
use crate::history::PushKind;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// No replica with an error, and every replica the same records and last seq.
    pub agree: bool,
    /// Every replica's job offset equals its last seq.
    pub jobs_caught_up: bool,
    /// The first good replica: the one compared with the history.
    pub reference: Option<String>,
    /// Records in the reference log.
    pub records: u64,
    pub last_seq: BTreeMap<String, u64>,
    pub applied_index: BTreeMap<String, Option<u64>>,
    pub job_offset: BTreeMap<String, Option<u64>>,
    pub errors: Vec<ReplicaError>,
    pub divergences: Vec<Divergence>,
    pub jobs_behind: Vec<JobLag>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaError {
    pub node: String,
    pub error: String,
}

/// Where a replica's log first differs from the reference's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    pub node: String,
    pub reference: String,
    pub reason: String,
    /// The seq of the first differing record (None: the records agree, the last seqs not).
    pub seq: Option<u64>,
    pub reference_record: Option<LogRecord>,
    pub record: Option<LogRecord>,
    pub reference_last_seq: u64,
    pub last_seq: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobLag {
    pub node: String,
    pub job_offset: Option<u64>,
    pub last_seq: u64,
}

/// Compares the replicas with each other and the reference log with the history.
pub fn check(state: &FinalState, ops: &Ops, found: &mut Found) -> ReplicaReport {
    let mut report = ReplicaReport::default();
    for r in &state.replicas {
        report.last_seq.insert(r.node.clone(), r.last_seq);
        report.applied_index.insert(r.node.clone(), r.applied_index);
        report.job_offset.insert(r.node.clone(), r.job_offset);
        match &r.error {
            Some(error) => report.errors.push(ReplicaError { node: r.node.clone(), error: error.clone() }),
            None if r.job_offset != Some(r.last_seq) => report.jobs_behind.push(JobLag {
                node: r.node.clone(),
                job_offset: r.job_offset,
                last_seq: r.last_seq,
            }),
            None => {}
        }
    }
    let good: Vec<_> = state.replicas.iter().filter(|r| r.error.is_none()).collect();
    let Some(reference) = good.first() else {
        // Nothing to compare: no verdict can be "the replicas agree".
        if state.replicas.is_empty() {
            found.notes.push("no replica was read: the replicas are not checked".into());
        }
        return report;
    };
    report.reference = Some(reference.node.clone());
    report.records = reference.records.len() as u64;
    for other in &good[1..] {
        if let Some(d) = diverge(reference, other) {
            report.divergences.push(d);
        }
    }
    report.agree = report.errors.is_empty() && report.divergences.is_empty();
    report.jobs_caught_up = report.jobs_behind.is_empty();
    check_log(&reference.node, &reference.records, ops, found);
    report
}

fn diverge(reference: &super::Replica, other: &super::Replica) -> Option<Divergence> {
    let mut d = Divergence {
        node: other.node.clone(),
        reference: reference.node.clone(),
        reference_last_seq: reference.last_seq,
        last_seq: other.last_seq,
        ..Divergence::default()
    };
    let (a, b) = (&reference.records, &other.records);
    if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        d.reference_record = a.get(i).cloned();
        d.record = b.get(i).cloned();
        d.seq = d.reference_record.as_ref().or(d.record.as_ref()).map(|r| r.seq);
        d.reason = match (&d.reference_record, &d.record) {
            (Some(_), Some(_)) => "records differ".into(),
            (Some(_), None) => format!("{} is missing records", other.node),
            _ => format!("{} has extra records", other.node),
        };
        return Some(d);
    }
    if reference.last_seq != other.last_seq {
        d.reason = "last seqs differ".into();
        return Some(d);
    }
    None
}

/// The reference log against the history.
fn check_log(node: &str, records: &[LogRecord], ops: &Ops, found: &mut Found) {
    let anomaly = |r: &LogRecord, reason: String| Anomaly {
        reason,
        value: Some(r.body.clone()),
        op: ops.by_value(&r.body).map(|o| o.op),
        node: Some(node.to_string()),
        room: r.room.clone(),
        room_seq: r.room_seq,
        invoke_t: ops.by_value(&r.body).map(|o| o.invoke_t),
        ok_t: ops.by_value(&r.body).and_then(|o| o.ok_t()),
        ..Anomaly::default()
    };
    let mut rooms: HashMap<&str, Vec<&LogRecord>> = HashMap::new();
    let mut keys: HashMap<(&str, Option<&str>), u64> = HashMap::new();
    for r in records {
        if r.kind == "kick" || !is_harness_value(&r.body) {
            continue;
        }
        if r.kind == "room" {
            rooms.entry(&r.body).or_default().push(r);
        } else if r.kind == "keys" {
            let n = keys.entry((&r.body, r.comet.as_deref())).or_default();
            *n += 1;
            if *n > 1 {
                let comet = r.comet.as_deref().unwrap_or("?");
                found.duplicated.push(anomaly(r, format!("logged more than once for comet {comet}")));
            }
        }
        let Some(op) = ops.by_value(&r.body) else {
            found.unexpected.push(anomaly(r, format!("logged at seq {} but never pushed", r.seq)));
            continue;
        };
        if op.outcome == Outcome::Fail {
            found.unexpected.push(anomaly(r, format!("failed push is in the log at seq {}", r.seq)));
            continue;
        }
        let wanted = if op.kind == PushKind::Room { "room" } else { "keys" };
        if r.kind != wanted {
            let reason = format!("{} push logged as {} at seq {}", kind_name(op.kind), r.kind, r.seq);
            found.unexpected.push(anomaly(r, reason));
        } else if op.kind == PushKind::Room && r.room.as_deref() != Some(op.target.as_str()) {
            let reason = format!("pushed to {} but logged for room {:?}", op.target, r.room);
            found.unexpected.push(anomaly(r, reason));
        }
    }
    for (_, rs) in rooms.iter().filter(|(_, rs)| rs.len() > 1) {
        for r in &rs[1..] {
            found.duplicated.push(anomaly(r, format!("room push logged {} times", rs.len())));
        }
    }
    for op in ops.ops.iter().filter(|o| o.acked() && o.kind == PushKind::Room) {
        let lost = || Anomaly {
            reason: format!("acknowledged but not in the log of {node}"),
            value: Some(op.value.clone()),
            op: Some(op.op),
            node: Some(node.to_string()),
            room: Some(op.target.clone()),
            room_seq: op.room_seq,
            invoke_t: Some(op.invoke_t),
            ok_t: op.ok_t(),
            ..Anomaly::default()
        };
        let Some(r) = rooms.get(op.value.as_str()).and_then(|rs| rs.first()) else {
            found.lost.push(lost());
            continue;
        };
        let mut wrong = Vec::new();
        if op.seq.is_some_and(|s| s != r.seq) {
            wrong.push(format!("logged at seq {}, acknowledged at seq {}", r.seq, op.seq.unwrap_or(0)));
        }
        if let Some(acked) = op.room_seq {
            if r.room_seq != Some(acked) {
                wrong.push(format!("logged at room_seq {:?}, acknowledged at room_seq {acked}", r.room_seq));
            }
        }
        if !wrong.is_empty() {
            found.reordered.push(anomaly(r, wrong.join("; ")));
        }
    }
}

/// What the reference log says about rooms, for the clients' check: where each room push
/// landed, and every committed room offset.
#[derive(Default)]
pub struct LogIndex {
    room_seq_of: HashMap<String, u64>,
    /// room → room_seq → body.
    committed: HashMap<String, BTreeMap<u64, String>>,
}

impl LogIndex {
    pub fn build(reference: Option<&str>, state: &FinalState) -> LogIndex {
        let mut index = LogIndex::default();
        let Some(replica) = state.replicas.iter().find(|r| Some(r.node.as_str()) == reference) else {
            return index;
        };
        for r in replica.records.iter().filter(|r| r.kind == "room") {
            let (Some(room), Some(room_seq)) = (&r.room, r.room_seq.filter(|s| *s > 0)) else { continue };
            index.room_seq_of.entry(r.body.clone()).or_insert(room_seq);
            index.committed.entry(room.clone()).or_default().entry(room_seq).or_insert(r.body.clone());
        }
        index
    }

    /// Where the log put room push `value`.
    pub fn room_seq_of(&self, value: &str) -> Option<u64> {
        self.room_seq_of.get(value).copied()
    }

    /// The committed offsets of `room`, with their bodies.
    pub fn committed(&self, room: &str) -> Option<&BTreeMap<u64, String>> {
        self.committed.get(room)
    }
}
