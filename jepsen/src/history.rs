//! The test's history: every operation the workload and the nemesis performed, as one JSON
//! object a line (`history.jsonl`), with a monotonic timestamp in milliseconds since the
//! test started. The checker reads nothing else, so a history file can be re-checked alone.
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What a push addressed (goim's routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    Room,
    Mid,
    Key,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the test started (monotonic clock).
    pub t: f64,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum What {
    /// A pusher starts operation `op`: push `value` (unique in the test) to `target` (room
    /// id `type://id`, mid, or key). `idem`: sent with an Idempotency-Key, so retries of
    /// the same op (to any node) apply at most once.
    Invoke { op: u64, process: String, kind: PushKind, target: String, value: String, idem: bool },
    /// One HTTP attempt of `op` (to `node`): retries of an idempotent op are attempts.
    Attempt { op: u64, node: String, result: String },
    /// The push is acknowledged: committed at log `seq` (and room offset `room_seq`).
    Ok { op: u64, node: String, seq: u64, room_seq: Option<u64> },
    /// Definitely not applied (refused before anything was proposed).
    Fail { op: u64, error: String },
    /// Indeterminate: may or may not have been applied (timeout, server error).
    Info { op: u64, error: String },
    /// A workload client: its mid, key (as first assigned) and room.
    Client { client: String, mid: i64, key: String, room: String, transport: String },
    /// A client's successful auth (first connect or resume): the auth reply's room offset
    /// and whether the missed messages were replayed.
    Connected { client: String, comet: String, room_seq: u64, epoch: String, recovered: bool, resume: bool },
    /// A push packet a client received: its op, its room offset when it is a room push
    /// (the header seq extended to 64 bits), and the body (the push's value).
    Deliver { client: String, op: i32, room_seq: Option<u64>, value: String },
    /// A client gave up (its resume failed for good): it is no longer entitled to anything.
    ClientGone { client: String, error: String },
    /// A fault starts or ends. `kind` is the nemesis (kill, pause, partition, …);
    /// `detail` says what exactly (which nodes, which links).
    Nemesis { phase: Phase, kind: String, detail: String },
    /// The harness saw a new Raft leader (`None`: no leader known).
    Leader { node: Option<String>, term: u64 },
    /// A note from the harness (healing done, quiet period, replica checks …).
    Note { text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Start,
    Stop,
}

/// Shared, cheap-to-clone writer of `history.jsonl`; also keeps the events in memory for
/// the checker.
#[derive(Clone)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
    started: Instant,
}

struct Inner {
    file: std::io::BufWriter<std::fs::File>,
    events: Vec<Event>,
}

impl History {
    pub fn create(path: &Path) -> std::io::Result<History> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        Ok(History {
            inner: Arc::new(Mutex::new(Inner { file, events: Vec::new() })),
            started: Instant::now(),
        })
    }

    /// Milliseconds since the test started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Appends one event stamped now.
    pub fn log(&self, what: What) {
        let event = Event { t: self.now(), what };
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = writeln!(inner.file, "{line}");
        }
        inner.events.push(event);
    }

    /// Flushes the file and returns a copy of every event so far.
    pub fn snapshot(&self) -> Vec<Event> {
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = inner.file.flush();
        inner.events.clone()
    }
}

/// Reads a `history.jsonl` back (for `goim-jepsen check`).
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut events = Vec::new();
    for (n, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?,
        );
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let h = History::create(&path).unwrap();
        h.log(What::Invoke {
            op: 1,
            process: "pusher-0".into(),
            kind: PushKind::Room,
            target: "live://1".into(),
            value: "v1".into(),
            idem: true,
        });
        h.log(What::Ok { op: 1, node: "n1".into(), seq: 7, room_seq: Some(3) });
        h.log(What::Nemesis { phase: Phase::Start, kind: "kill".into(), detail: "n2".into() });
        let mem = h.snapshot();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 3);
        for (m, b) in mem.iter().zip(&back) {
            assert_eq!(m.what, b.what);
            // JSON keeps the time to far better than a microsecond.
            assert!((m.t - b.t).abs() < 1e-6, "{} vs {}", m.t, b.t);
        }
        assert!(back[1].t >= back[0].t);
    }
}
