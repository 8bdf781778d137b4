//! Every replicated write, one file per command. Commands carry everything `apply` needs
//! (including the proposer's clock), so applying them is deterministic on every replica.
//! Each command file also says what its apply answers (`Write`), so `Cluster::propose`
//! hands every caller its own type.

/// `Write` for a command: it becomes `Request::$cmd`, and `$pat` (a `Reply`) is its answer.
macro_rules! typed_write {
    ($cmd:ident => $out:ty, $pat:pat => $val:expr) => {
        impl From<$cmd> for super::Request {
            fn from(c: $cmd) -> super::Request {
                super::Request::$cmd(c)
            }
        }

        impl super::Write for $cmd {
            type Out = $out;

            fn out(reply: super::Reply) -> Result<$out, super::Reply> {
                match reply {
                    $pat => Ok($val),
                    other => Err(other),
                }
            }
        }
    };
}

mod batch;
mod change_room;
mod commit_offset;
mod connect;
mod disconnect;
mod lease;
mod push;
mod push_batch;
mod renew_online;
mod resync;
mod tick;
mod trim;

pub use change_room::ChangeRoom;
pub use commit_offset::CommitOffset;
pub use connect::{Connect, KEY_HELD};
pub use disconnect::Disconnect;
pub use lease::{AcquireLease, ReleaseLease};
pub use push::{Push, PushTo, Pushed};
pub use push_batch::PushBatch;
pub use renew_online::RenewOnline;
pub use resync::Resync;
pub use tick::{Tick, FORGET_AFTER_MS};
pub use trim::{Trim, MAX_PER_TRIM};

use std::collections::BTreeMap;

use goim_storage::tables::Txn;
use goim_storage::{Command, StorageError};
use serde::{Deserialize, Serialize};

/// A command proposed on its own (`Cluster::propose`) and the answer its apply gives.
pub trait Write: Into<Request> {
    type Out;
    /// This command's answer out of `reply`; a reply of another kind is given back.
    fn out(reply: Reply) -> Result<Self::Out, Reply>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Connect(Connect),
    Disconnect(Disconnect),
    ChangeRoom(ChangeRoom),
    RenewOnline(RenewOnline),
    Resync(Resync),
    Push(Push),
    Tick(Tick),
    Trim(Trim),
    AcquireLease(AcquireLease),
    ReleaseLease(ReleaseLease),
    CommitOffset(CommitOffset),
    /// Several writes committed as one entry (see `batch`).
    Batch(Vec<Request>),
    /// Many pushes of one client request, applied in order (see `push_batch`). Last, so
    /// the entries written before it existed decode as they were.
    PushBatch(PushBatch),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Blank and membership entries, and commands with nothing to say.
    #[default]
    Done,
    /// The push was appended; `seq` is the last record it produced (or the log head when
    /// nobody was targeted), `room_seq` the room offset for room pushes.
    Pushed { seq: u64, room_seq: u64 },
    /// Cluster-wide online count per room, after a comet's renewal; `known` is false when
    /// the comet was not registered before it.
    RoomCounts { counts: BTreeMap<String, u64>, known: bool },
    /// Connections (key, conn) a `Resync` found superseded.
    Stale(Vec<(String, u64)>),
    /// A session was recorded (or moved room); `room_seq` is its room's offset at that log
    /// position, `epoch` the room's epoch (both 0 for no room).
    Joined { room_seq: u64, epoch: u64 },
    /// Lease outcome: when granted, the partition's committed offset to resume from.
    Lease { granted: bool, holder: String, offset: u64 },
    /// The partition's committed offset after a commit.
    Offset(u64),
    /// One reply per request of a `Batch`, in order.
    Batch(Vec<Reply>),
    /// The command was refused for a reason the caller must see (not a storage failure).
    Refused(String),
    /// One outcome per push of a `PushBatch`, in order.
    PushedEach(Vec<Pushed>),
}

impl Command for Request {
    type Reply = Reply;

    fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        match self {
            Request::Connect(c) => c.apply(txn),
            Request::Disconnect(c) => c.apply(txn),
            Request::ChangeRoom(c) => c.apply(txn),
            Request::RenewOnline(c) => c.apply(txn),
            Request::Resync(c) => c.apply(txn),
            Request::Push(c) => c.apply(txn),
            Request::Tick(c) => c.apply(txn),
            Request::Trim(c) => c.apply(txn),
            Request::AcquireLease(c) => c.apply(txn),
            Request::ReleaseLease(c) => c.apply(txn),
            Request::CommitOffset(c) => c.apply(txn),
            Request::Batch(requests) => batch::apply(requests, txn),
            Request::PushBatch(c) => c.apply(txn),
        }
    }
}
