//! The push operations of a history, one entry per op: what was pushed where, and how it
//! ended. Every other check looks pushes up here, by op id or by value.
use std::collections::{BTreeMap, HashMap};

use super::OpCounts;
use crate::history::{Event, PushKind, What};

/// How an op ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No completion by the end of the history: indeterminate.
    Open,
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone)]
pub struct Op {
    pub op: u64,
    pub kind: PushKind,
    pub target: String,
    pub value: String,
    pub invoke_t: f64,
    pub outcome: Outcome,
    /// When it completed (Ok, Fail or Info).
    pub done_t: Option<f64>,
    /// Acknowledged log seq (0 counts as unknown).
    pub seq: Option<u64>,
    /// Acknowledged room offset (0 counts as unknown: unsafe modes leave it out).
    pub room_seq: Option<u64>,
}

impl Op {
    pub fn acked(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// Acknowledgement time, for acked ops.
    pub fn ok_t(&self) -> Option<f64> {
        if self.acked() {
            self.done_t
        } else {
            None
        }
    }
}

pub fn kind_name(kind: PushKind) -> &'static str {
    match kind {
        PushKind::Room => "room",
        PushKind::Mid => "mid",
        PushKind::Key => "key",
    }
}

pub struct Ops {
    /// In invoke order.
    pub ops: Vec<Op>,
    by_id: HashMap<u64, usize>,
    by_value: HashMap<String, usize>,
}

impl Ops {
    pub fn build(events: &[Event], notes: &mut Vec<String>) -> Ops {
        let mut ops = Ops { ops: Vec::new(), by_id: HashMap::new(), by_value: HashMap::new() };
        let mut orphans = 0u64;
        for e in events {
            match &e.what {
                What::Invoke { op, kind, target, value, .. } => {
                    if ops.by_id.contains_key(op) {
                        notes.push(format!("op {op} invoked twice; the second invoke is ignored"));
                        continue;
                    }
                    let i = ops.ops.len();
                    ops.ops.push(Op {
                        op: *op,
                        kind: *kind,
                        target: target.clone(),
                        value: value.clone(),
                        invoke_t: e.t,
                        outcome: Outcome::Open,
                        done_t: None,
                        seq: None,
                        room_seq: None,
                    });
                    ops.by_id.insert(*op, i);
                    if ops.by_value.insert(value.clone(), i).is_some() {
                        notes.push(format!("value {value} pushed by more than one op; the last one is used"));
                    }
                }
                What::Ok { op, seq, room_seq, .. } => match ops.by_id.get(op) {
                    // An Ok is the strongest claim (losing it is a violation): it overrides an
                    // earlier Info; a second Ok keeps the first.
                    Some(&i) if ops.ops[i].outcome != Outcome::Ok => {
                        let o = &mut ops.ops[i];
                        o.outcome = Outcome::Ok;
                        o.done_t = Some(e.t);
                        o.seq = Some(*seq).filter(|s| *s > 0);
                        o.room_seq = room_seq.filter(|s| *s > 0);
                    }
                    Some(_) => {}
                    None => orphans += 1,
                },
                What::Fail { op, .. } | What::Info { op, .. } => match ops.by_id.get(op) {
                    Some(&i) if ops.ops[i].outcome == Outcome::Open => {
                        let o = &mut ops.ops[i];
                        o.outcome =
                            if matches!(e.what, What::Fail { .. }) { Outcome::Fail } else { Outcome::Info };
                        o.done_t = Some(e.t);
                    }
                    Some(_) => {}
                    None => orphans += 1,
                },
                _ => {}
            }
        }
        if orphans > 0 {
            notes.push(format!("{orphans} completions of ops never invoked were ignored"));
        }
        ops
    }

    pub fn by_value(&self, value: &str) -> Option<&Op> {
        self.by_value.get(value).map(|&i| &self.ops[i])
    }

    /// Invoked/ok/fail/info by kind; open ops count as info.
    pub fn counts(&self) -> BTreeMap<String, OpCounts> {
        let mut counts: BTreeMap<String, OpCounts> = BTreeMap::new();
        for o in &self.ops {
            let c = counts.entry(kind_name(o.kind).to_string()).or_default();
            c.invoked += 1;
            match o.outcome {
                Outcome::Ok => c.ok += 1,
                Outcome::Fail => c.fail += 1,
                Outcome::Info | Outcome::Open => c.info += 1,
            }
        }
        counts
    }
}
