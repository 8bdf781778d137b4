//! Comet → logic calls (goim's logic gRPC service: Connect, Disconnect, Heartbeat,
//! RenewOnline, Receive) plus the reads a job needs. One request frame, one reply frame.
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{PushRecord, RpcError};
pub use crate::auth::AuthBody;

/// A comet as registered in the cluster (goim's discovery instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CometInfo {
    pub id: String,
    /// Public client addresses, as clients should dial them.
    pub tcp_addr: String,
    pub ws_addr: String,
    /// Where jobs open push streams to this comet.
    pub quic_addr: String,
    pub zone: String,
    pub weight: u32,
}

/// One live connection of a comet, as `Resync` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSession {
    pub key: String,
    pub mid: i64,
    pub conn: u64,
    pub room: String,
    pub accepts: Vec<i32>,
    pub ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogicRequest {
    Connect {
        comet: String,
        conn: u64,
        ip: String,
        auth: AuthBody,
    },
    Disconnect {
        comet: String,
        key: String,
        conn: u64,
    },
    ChangeRoom {
        comet: String,
        key: String,
        conn: u64,
        room: String,
    },
    /// Periodic (goim: every 10 s) registration + per-room connection counts of one comet.
    RenewOnline {
        comet: CometInfo,
        rooms: BTreeMap<String, u32>,
        conn_count: u32,
        ip_count: u32,
    },
    /// The comet's live connections, re-registered after logic had expired the comet (its
    /// renewals were not getting through): the session table is rebuilt from the comet.
    Resync {
        comet: String,
        sessions: Vec<LiveSession>,
    },
    /// An uplink message (op 4) from a client. `id` is unique per message (comet, conn and
    /// a per-connection counter): a retried call is applied once.
    Receive {
        id: String,
        comet: String,
        key: String,
        mid: i64,
        op: i32,
        body: Bytes,
    },
    /// Registered, unexpired comets (for jobs).
    Comets,
    /// Retained messages of `room` after offset `after`, up to `until` (inclusive), at most
    /// `limit`. The serving node first waits (briefly) until it has applied `until`.
    History {
        room: String,
        after: u64,
        until: u64,
        limit: u32,
    },
    /// A job asks to own (or keeps owning) a push-log partition for `ttl_ms`.
    AcquireLease {
        partition: u32,
        job: String,
        ttl_ms: u64,
    },
    /// A job gives its partition up (graceful stop).
    ReleaseLease {
        partition: u32,
        job: String,
    },
    /// Every comet acked the partition up to `seq`.
    CommitOffset {
        partition: u32,
        job: String,
        seq: u64,
    },
}

/// The answer to `Connect`: the session as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    pub key: String,
    pub mid: i64,
    pub room_id: String,
    pub accepts: Vec<i32>,
    pub heartbeat_secs: u64,
    /// The room's offset when the session was recorded: the last room push before it.
    pub room_seq: u64,
    /// The room's epoch (0 for no room).
    pub epoch: u64,
}

/// A room's offset and epoch where a session joined it (0s for no room).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub room_seq: u64,
    pub epoch: u64,
}

/// Retained room messages, dense and in order. They start after the requested offset only
/// if that part of the history is still retained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub epoch: u64,
    /// The room's newest offset as the serving node knows it.
    pub last_seq: u64,
    pub records: Vec<PushRecord>,
}

/// Lease outcome; when granted, `offset` is the committed offset to resume after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub granted: bool,
    pub holder: String,
    pub offset: u64,
}

/// The answer to `RenewOnline`: cluster-wide online count per room, and whether the comet
/// was registered before (when not, it must `Resync`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Online {
    pub counts: BTreeMap<String, u64>,
    pub known: bool,
}

/// What goes back on the wire; the failover client (goim-net) turns it into the typed
/// answer of each call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogicReply {
    Connected(Connected),
    /// After a room change.
    Joined(Joined),
    History(HistoryPage),
    Done,
    /// Cluster-wide online count per room, summed over every comet.
    RoomCounts(BTreeMap<String, u64>),
    /// As `RoomCounts`, but the comet had expired (or is new): it must `Resync`.
    Reregistered(BTreeMap<String, u64>),
    /// After a `Resync`: connections whose key now lives elsewhere; the comet closes them.
    Stale(Vec<(String, u64)>),
    Pushed {
        seq: u64,
    },
    Comets(Vec<CometInfo>),
    Lease(Lease),
    /// The partition's committed offset.
    Offset(u64),
}

pub type LogicResult = Result<LogicReply, RpcError>;
