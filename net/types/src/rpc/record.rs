//! One entry of the replicated push log, as stored by the state machine, streamed to jobs
//! and delivered to comets. Targets are already resolved (keys → comet) at apply time.
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Push-log partition. One partition today; the id travels with records and offsets so the
/// log can be split over several Raft groups later.
pub type Partition = u32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    pub partition: Partition,
    /// Dense log offset within the partition, starting at 1.
    pub seq: u64,
    /// Leader's clock when the push was proposed (ms since the epoch).
    pub ts_ms: u64,
    pub target: PushTarget,
    pub op: i32,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushTarget {
    /// Connections `keys` on comet `comet`; filtered by each connection's accepts.
    Keys { comet: String, keys: Vec<String> },
    /// Every connection in `room`; `room_seq` is the room's own dense offset (from 1).
    Room { room: String, room_seq: u64 },
    /// Every connection on every comet; filtered by accepts.
    All,
    /// Close connection `conn` of `key` on `comet`: the key reconnected elsewhere.
    Kick { comet: String, key: String, conn: u64 },
}

impl PushTarget {
    /// Whether a comet must see this record at all.
    pub fn concerns(&self, comet_id: &str) -> bool {
        match self {
            PushTarget::Keys { comet, .. } | PushTarget::Kick { comet, .. } => comet == comet_id,
            PushTarget::Room { .. } | PushTarget::All => true,
        }
    }
}

impl PushRecord {
    /// The room offset of a room push.
    pub fn room_seq(&self) -> Option<u64> {
        match self.target {
            PushTarget::Room { room_seq, .. } => Some(room_seq),
            _ => None,
        }
    }
}
