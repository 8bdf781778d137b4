//! Durable state of a logic node, in one sled db: the Raft log and vote (`log_store`), the
//! replicated state machine (`state_machine`: sessions, comets and their online counts, the
//! push log, job offsets and leases, all under `tables`) and its snapshots (`snapshot`).
//! Commands are defined by the `raft` crate; they reach the tables through `Command`.
mod command;
mod error;
mod flusher;
mod log_store;
mod snapshot;
mod state_machine;
pub mod tables;

pub use command::Command;
pub use error::StorageError;
pub use log_store::LogStore;
pub use state_machine::{StateMachine, StateView};

use std::io::Cursor;
use std::path::Path;

use openraft::{BasicNode, RaftTypeConfig};

/// The Raft type configurations this crate stores: u64 node ids, `BasicNode` (its `addr` is
/// the node's QUIC address), openraft's `Entry`, snapshots as bytes, commands as `Command`.
pub trait GoimTypes:
    RaftTypeConfig<NodeId = u64, Node = BasicNode, Entry = openraft::Entry<Self>, SnapshotData = Cursor<Vec<u8>>>
{
}

impl<C> GoimTypes for C where
    C: RaftTypeConfig<
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<C>,
        SnapshotData = Cursor<Vec<u8>>,
    >
{
}

/// Opens (or creates) the node's db under `dir` and returns its two Raft halves.
pub async fn open<C>(dir: &Path) -> Result<(LogStore<C>, StateMachine<C>), StorageError>
where
    C: GoimTypes,
    C::D: Command<Reply = C::R>,
{
    let db = sled::Config::new().path(dir.join("db")).mode(sled::Mode::HighThroughput).open()?;
    let log = LogStore::open(&db)?;
    let sm = StateMachine::open(&db)?;
    Ok((log, sm))
}
