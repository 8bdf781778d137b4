//! Every client's stream against what it was entitled to. A client in room R must receive
//! every committed push to R after its first connect's room offset, densely and in order,
//! except what a resume reply said was not replayed (`recovered: false`: excused, counted as
//! unrecovered); mid and key pushes only reach their target, at most once, and must reach a
//! client that stayed connected throughout.
use std::collections::{BTreeMap, HashMap};

use super::ops::{Op, Ops, Outcome};
use super::replicas::LogIndex;
use super::{Anomaly, Found};
use crate::history::{Event, PushKind, What};

/// A client that stayed connected this long before a mid/key push was invoked must get it.
const SETTLE_MS: f64 = 1000.0;

#[derive(Debug, Default)]
pub struct ClientCounts {
    pub deliveries: u64,
    pub clients: u64,
    pub resumes: u64,
    pub unrecovered: u64,
}

#[derive(Default)]
struct Client {
    announced: bool,
    mid: Option<i64>,
    key: Option<String>,
    room: Option<String>,
    /// The first Connected's room offset: entitled to everything after it.
    start: Option<u64>,
    last_connect_t: Option<f64>,
    /// Last time the stream (re)started without replay: the first connect or an
    /// unrecovered resume.
    fresh_t: Option<f64>,
    gone_t: Option<f64>,
    /// Highest room offset delivered or excused so far.
    cursor: u64,
    /// Room offsets delivered or excused (ranges, inclusive).
    covered: Vec<(u64, u64)>,
    /// Room offsets a resume reply said were not replayed (ranges, inclusive).
    excused: Vec<(u64, u64)>,
    /// Value → time of its first delivery.
    delivered: HashMap<String, f64>,
}

impl Client {
    fn cover(&mut self, from: u64, to: u64) {
        self.covered.push((from, to));
        self.cursor = self.cursor.max(to);
    }
}

fn with_op(mut a: Anomaly, op: &Op) -> Anomaly {
    a.value = Some(op.value.clone());
    a.op = Some(op.op);
    a.invoke_t = Some(op.invoke_t);
    a.ok_t = op.ok_t();
    a
}

pub fn check(events: &[Event], ops: &Ops, log: &LogIndex, found: &mut Found) -> ClientCounts {
    let mut counts = ClientCounts::default();
    // Room pushes by room and offset (from the acknowledgement, else from the log), and
    // acknowledged ones whose offset is nowhere to be known (unsafe modes).
    let mut by_room: HashMap<&str, BTreeMap<u64, &Op>> = HashMap::new();
    let mut unplaced: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in ops.ops.iter().filter(|o| o.kind == PushKind::Room) {
        match op.room_seq.or_else(|| log.room_seq_of(&op.value)) {
            Some(rs) => {
                by_room.entry(&op.target).or_default().entry(rs).or_insert(op);
            }
            None if op.acked() => unplaced.entry(&op.target).or_default().push(op),
            None => {}
        }
    }

    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    for e in events {
        match &e.what {
            What::Client { client, mid, key, room, .. } => {
                let c = clients.entry(client.clone()).or_default();
                if !c.announced {
                    counts.clients += 1;
                }
                c.announced = true;
                c.mid = Some(*mid);
                c.key = Some(key.clone());
                c.room = Some(room.clone());
            }
            What::Connected { client, room_seq, recovered, resume, .. } => {
                let c = clients.entry(client.clone()).or_default();
                c.last_connect_t = Some(e.t);
                if c.start.is_none() {
                    c.start = Some(*room_seq);
                    c.cursor = *room_seq;
                    c.fresh_t = Some(e.t);
                    counts.resumes += u64::from(*resume);
                    continue;
                }
                counts.resumes += 1;
                if !*recovered || !*resume {
                    // Told that everything up to `room_seq` was not replayed: excused.
                    if *room_seq > c.cursor {
                        counts.unrecovered += room_seq - c.cursor;
                        let from = c.cursor + 1;
                        c.excused.push((from, *room_seq));
                        c.cover(from, *room_seq);
                    }
                    c.fresh_t = Some(e.t);
                }
            }
            What::ClientGone { client, .. } => {
                let c = clients.entry(client.clone()).or_default();
                c.gone_t.get_or_insert(e.t);
            }
            What::Deliver { client, room_seq, value, .. } => {
                counts.deliveries += 1;
                let c = clients.entry(client.clone()).or_default();
                deliver(c, client, e.t, room_seq.filter(|s| *s > 0), value, ops, log, found);
            }
            _ => {}
        }
    }

    let unannounced = clients.values().filter(|c| !c.announced).count();
    if unannounced > 0 {
        found.notes.push(format!("{unannounced} clients had events but no Client event"));
    }
    for (name, c) in &clients {
        if let Some(room) = &c.room {
            room_losses(name, c, room, by_room.get(room.as_str()), log, found);
            for op in unplaced.get(room.as_str()).into_iter().flatten() {
                let entitled = c.gone_t.is_none() && c.fresh_t.is_some_and(|t| t <= op.invoke_t);
                if entitled && !c.delivered.contains_key(&op.value) {
                    let a = Anomaly {
                        reason: "acknowledged (room_seq unknown), invoked after the client connected, never delivered"
                            .into(),
                        client: Some(name.clone()),
                        room: Some(room.clone()),
                        ..Anomaly::default()
                    };
                    found.lost.push(with_op(a, op));
                }
            }
        }
    }
    target_losses(&clients, ops, found);
    counts
}

#[allow(clippy::too_many_arguments)]
fn deliver(
    c: &mut Client,
    client: &str,
    t: f64,
    room_seq: Option<u64>,
    value: &str,
    ops: &Ops,
    log: &LogIndex,
    found: &mut Found,
) {
    let mut a = Anomaly {
        value: Some(value.to_string()),
        client: Some(client.to_string()),
        room: c.room.clone(),
        room_seq,
        t: Some(t),
        ..Anomaly::default()
    };
    let op = ops.by_value(value);
    if let Some(op) = op {
        a = with_op(a, op);
    }
    if let Some(first) = c.delivered.get(value) {
        a.reason = format!("delivered again (first at {first:.0} ms)");
        found.duplicated.push(a);
        return;
    }
    c.delivered.insert(value.to_string(), t);
    let Some(op) = op else {
        a.reason = "never pushed".into();
        found.unexpected.push(a);
        // It took an offset of the client's stream all the same.
        if let Some(rs) = room_seq {
            c.cover(rs, rs);
        }
        return;
    };
    let own_room = op.kind == PushKind::Room && c.room.as_deref() == Some(op.target.as_str());
    if op.outcome == Outcome::Fail {
        a.reason = "the push failed, yet it was delivered".into();
        found.unexpected.push(a);
        if let (true, Some(rs)) = (own_room, room_seq) {
            c.cover(rs, rs);
        }
        return;
    }
    match op.kind {
        PushKind::Room if !own_room => {
            a.reason = format!("pushed to room {}, delivered to a client in {:?}", op.target, c.room);
            found.unexpected.push(a);
        }
        PushKind::Room => {
            let placed = room_seq.or(op.room_seq).or_else(|| log.room_seq_of(value));
            a.room_seq = placed;
            let mut reason = None;
            if let (Some(got), Some(acked)) = (room_seq, op.room_seq) {
                if got != acked {
                    reason = Some(format!("delivered at room_seq {got}, acknowledged at room_seq {acked}"));
                }
            }
            if let (None, Some(rs), Some(start)) = (&reason, placed, c.start) {
                if rs <= start {
                    reason = Some(format!("room_seq {rs} is not after the client's start {start}"));
                } else if rs <= c.cursor {
                    reason = Some(format!("room_seq {rs} after room_seq {}", c.cursor));
                }
            }
            if let Some(reason) = reason {
                a.reason = reason;
                found.reordered.push(a);
            }
            if let Some(rs) = placed {
                c.cover(rs, rs);
            }
        }
        PushKind::Mid if c.mid.map(|m| m.to_string()).as_deref() != Some(op.target.as_str()) => {
            a.reason = format!("pushed to mid {}, delivered to mid {:?}", op.target, c.mid);
            a.room = Some(op.target.clone());
            found.unexpected.push(a);
        }
        PushKind::Key if c.key.as_deref() != Some(op.target.as_str()) => {
            a.reason = format!("pushed to key {}, delivered to key {:?}", op.target, c.key);
            a.room = Some(op.target.clone());
            found.unexpected.push(a);
        }
        PushKind::Mid | PushKind::Key => {}
    }
}

/// What the client should have had in its room and did not: acknowledged pushes are lost;
/// committed indeterminate pushes, and offsets inside its stream that nothing explains, are
/// gaps. A push counts as received when its value was delivered, whatever the offset.
fn room_losses(
    name: &str,
    c: &Client,
    room: &str,
    pushes: Option<&BTreeMap<u64, &Op>>,
    log: &LogIndex,
    found: &mut Found,
) {
    let Some(start) = c.start else { return };
    let mut covered = c.covered.clone();
    covered.sort_unstable();
    let excused: Vec<(u64, u64)> = c.excused.clone();
    let is_excused = |rs: u64| excused.iter().any(|&(a, b)| a <= rs && rs <= b);
    let top = covered.iter().map(|r| r.1).max().unwrap_or(start).max(start);
    let committed = log.committed(room);
    // A client that gave up is owed nothing after its last offset: when exactly it lost its
    // connection is not in the history. Otherwise the stream must reach the room's end.
    let hi = if c.gone_t.is_some() {
        top
    } else {
        let last_push = pushes.and_then(|p| p.keys().next_back()).copied().unwrap_or(0);
        let last_committed = committed.and_then(|p| p.keys().next_back()).copied().unwrap_or(0);
        top.max(last_push).max(last_committed)
    };
    if hi <= start {
        return;
    }
    let base = Anomaly { client: Some(name.to_string()), room: Some(room.to_string()), ..Anomaly::default() };
    let owed = start + 1..=hi;
    for (&rs, op) in pushes.into_iter().flat_map(|m| m.range(owed.clone())) {
        // Delivered (at whatever offset: a wrong one is reordered already), excused, or
        // failed (the log check names a failed push that committed): not missing.
        if c.delivered.contains_key(&op.value) || is_excused(rs) || op.outcome == Outcome::Fail {
            continue;
        }
        let a = Anomaly { room_seq: Some(rs), ..base.clone() };
        if op.acked() {
            found.lost.push(with_op(Anomaly { reason: "acknowledged, never delivered".into(), ..a }, op));
        } else {
            let reason = "indeterminate push committed, never delivered".into();
            found.gaps.push(with_op(Anomaly { reason, ..a }, op));
        }
    }
    for (&rs, body) in committed.into_iter().flat_map(|m| m.range(owed.clone())) {
        if pushes.is_some_and(|m| m.contains_key(&rs)) || c.delivered.contains_key(body) || is_excused(rs) {
            continue;
        }
        let reason = "committed (in the log), never delivered".into();
        found.gaps.push(Anomaly { reason, value: Some(body.clone()), room_seq: Some(rs), ..base.clone() });
    }
    // Offsets inside the stream that were neither delivered nor excused, and that no push
    // or log record accounts for, as ranges (split around the offsets that are known).
    let unknown_gap = |from: u64, to: u64, found: &mut Found| {
        let to = to.min(top);
        if from > to {
            return;
        }
        let mut known: Vec<u64> =
            pushes.into_iter().flat_map(|m| m.range(from..=to)).map(|(rs, _)| *rs).collect();
        known.extend(committed.into_iter().flat_map(|m| m.range(from..=to)).map(|(rs, _)| *rs));
        known.sort_unstable();
        known.push(to + 1);
        let mut run_from = from;
        for k in known {
            if k > run_from {
                let reason = "no push known at these offsets".into();
                let end = k - 1;
                let gap = Anomaly {
                    reason,
                    room_seq: Some(run_from),
                    room_seq_end: (end > run_from).then_some(end),
                    ..base.clone()
                };
                found.gaps.add(gap, end - run_from + 1);
            }
            run_from = run_from.max(k + 1);
        }
    };
    let mut next = start + 1;
    for &(a, b) in &covered {
        if a > next {
            unknown_gap(next, a - 1, found);
        }
        next = next.max(b.saturating_add(1));
    }
}

/// Acknowledged mid/key pushes that a target client connected throughout (from at least
/// [`SETTLE_MS`] before the invoke to the end) never received.
fn target_losses(clients: &BTreeMap<String, Client>, ops: &Ops, found: &mut Found) {
    let mut by_mid: HashMap<String, Vec<(&str, &Client)>> = HashMap::new();
    let mut by_key: HashMap<&str, Vec<(&str, &Client)>> = HashMap::new();
    for (name, c) in clients {
        if let Some(mid) = c.mid {
            by_mid.entry(mid.to_string()).or_default().push((name, c));
        }
        if let Some(key) = &c.key {
            by_key.entry(key).or_default().push((name, c));
        }
    }
    for op in ops.ops.iter().filter(|o| o.acked()) {
        let targets = match op.kind {
            PushKind::Room => continue,
            PushKind::Mid => by_mid.get(&op.target),
            PushKind::Key => by_key.get(op.target.as_str()),
        };
        for (name, c) in targets.into_iter().flatten() {
            let steady = c.gone_t.is_none() && c.last_connect_t.is_some_and(|t| t <= op.invoke_t - SETTLE_MS);
            if steady && !c.delivered.contains_key(&op.value) {
                let a = Anomaly {
                    reason: "acknowledged, never delivered to a client connected throughout".into(),
                    client: Some(name.to_string()),
                    room: Some(op.target.clone()),
                    ..Anomaly::default()
                };
                found.lost.push(with_op(a, op));
            }
        }
    }
}
