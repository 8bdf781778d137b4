//! What a worker process tells the parent, one JSON object a line on its stdout: progress
//! every 200 ms while it runs, then on `stop` (a line on its stdin) its final account with
//! its latency histogram. Parent and worker are the same binary, so both use these types.
use serde::{Deserialize, Serialize};

use crate::hist::Buckets;

/// The parent's one command.
pub const STOP: &str = "stop";

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Sockets subscribed (goim: auth accepted; NATS: SUB answered).
    pub subscribed: u64,
    /// Sockets that never got there (connect failed, auth refused, timed out).
    pub failed: u64,
    /// Subscribed sockets lost since (closed by the server, an error).
    pub closed: u64,
    /// Bench messages received.
    pub received: u64,
    /// Heartbeat replies received (goim op 3, NATS PONG).
    pub heartbeats: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.subscribed += o.subscribed;
        self.failed += o.failed;
        self.closed += o.closed;
        self.received += o.received;
        self.heartbeats += o.heartbeats;
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Report {
    Progress { counts: Counts },
    Final(Final),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Final {
    pub counts: Counts,
    /// Wall-clock ns of the first and last message received (0: none).
    pub first_ns: u64,
    pub last_ns: u64,
    pub latencies: Buckets,
    /// The first few distinct reasons sockets failed or closed.
    pub errors: Vec<String>,
}
